//! The `schild` binary: parse flags, set up logging and the runtime, and
//! hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use schild::cli;
use schild::exit;

/// schild: a DNS firewall resolver fed by threat intelligence.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Log filter (RUST_LOG syntax), e.g. "info" or "schild=debug".
    #[arg(long, global = true, default_value = "info", env = "SCHILD_LOG")]
    log: String,
    /// Log line format: text, or json (one object per line).
    #[arg(long, global = true, default_value = "text", env = "SCHILD_LOG_FORMAT")]
    log_format: schild::telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull every feed and write the compiled artifact into state_dir.
    Compile {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Is NAME (or an address) blocked, and why? Exit 0 not blocked, 1 blocked, 2 error.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// A domain name or an IP address.
        name: String,
        /// Judge it as this client would get it: its [[client_group]].
        #[arg(long)]
        client: Option<std::net::IpAddr>,
    },
    /// What the current artifact holds and how each feed fared.
    Stats {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the DNS firewall resolver (until SIGTERM; SIGHUP re-reads the config and refreshes the feeds).
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Record a false positive: allowlist NAME (and its subdomains) at once,
    /// and report a false-positive sighting for each indicator it overrides.
    Allow {
        #[arg(long, short)]
        config: PathBuf,
        name: String,
        /// Why it is a false positive (kept in the allowlist file).
        #[arg(long)]
        reason: String,
        /// Allow it even if it spares more than allowlist.max_spared listed names.
        #[arg(long)]
        force: bool,
    },
    /// The compile of a running server's refresh, in a process of its own
    /// (started by `serve`; not for people).
    #[command(name = "compile-child", hide = true)]
    CompileChild {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        digest: u64,
        #[arg(long)]
        parent: u32,
        #[arg(long)]
        pull: String,
    },
    /// Load and validate the configuration, then exit.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write the current list in another format.
    #[command(subcommand)]
    Export(Export),
    /// Who resolved NAME (and the names below it), and since when: the
    /// local name history, day by day. Exit 0 found, 1 not found, 2 error.
    History {
        #[arg(long, short)]
        config: PathBuf,
        /// A domain name (or a URL: its host).
        name: String,
    },
    /// The clinical guardrail: list what it holds back, accept a held
    /// update, release a quarantined name.
    #[command(subcommand)]
    Guard(Guard),
    /// Control a running schild through its admin listener (address and
    /// token from the configuration).
    Ctl {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: Ctl,
    },
}

#[derive(Subcommand)]
enum Ctl {
    /// What is loaded: serial, names, each feed and its age.
    Status,
    /// Empty the answer cache for NAME (with --subtree: and everything
    /// below it), or with --all the whole cache.
    Flush {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        #[arg(long, requires = "name")]
        subtree: bool,
        #[arg(long)]
        all: bool,
    },
    /// Refresh one feed now (the others from their last good copies).
    Refresh {
        feed: String,
        /// Let this refresh pass the shrink guard (max_shrink_percent).
        #[arg(long)]
        accept_shrink: bool,
    },
}

#[derive(Subcommand)]
enum Guard {
    /// What is held back: an update held by guard.max_new_blocks, the
    /// names in quarantine, and the IOCs refused as protected names.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Apply the update held by guard.max_new_blocks.
    Accept {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Enforce a name quarantined by guard.on_popular = "quarantine":
    /// blocked from now on (a running serve within a second).
    Release {
        /// The quarantined name, as `schild guard list` shows it.
        name: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum Export {
    /// A Response Policy Zone file (for BIND, Unbound, Knot Resolver),
    /// from the compiled artifact. Needs an [rpz] section.
    Rpz {
        #[arg(long, short)]
        config: PathBuf,
        /// Write here (atomically) instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args = Args::try_parse().unwrap_or_else(|e| {
        // Help and version go to stdout with 0; a usage error exits USAGE.
        let _ = e.print();
        std::process::exit(if e.use_stderr() {
            exit::USAGE
        } else {
            exit::OK
        })
    });
    schild::telemetry::init_logging(&args.log, args.log_format);
    let code = match args.command {
        Command::CheckConfig { config } => cli::check_config(&config),
        Command::CompileChild {
            config,
            digest,
            parent,
            pull,
        } => schild::server::compile_child::child_main(&config, digest, parent, &pull),
        Command::Compile { config } => {
            with_config(&config, |c| runtime().block_on(cli::compile(&c)))
        }
        Command::Check {
            config,
            name,
            client,
        } => match cli::load_config(&config) {
            Ok(c) => cli::check(&c, &name, client),
            Err(_) => exit::CHECK_ERROR,
        },
        Command::Allow {
            config,
            name,
            reason,
            force,
        } => with_config(&config, |c| {
            runtime().block_on(cli::allow(&c, &name, &reason, force))
        }),
        Command::Stats { config } => with_config(&config, |c| cli::stats(&c)),
        Command::Export(Export::Rpz { config, out }) => {
            with_config(&config, |c| cli::export_rpz(&c, out.as_deref()))
        }
        Command::History { config, name } => match cli::load_config(&config) {
            Ok(c) => cli::history(&c, &name),
            Err(_) => exit::CHECK_ERROR,
        },
        Command::Guard(Guard::List { config }) => with_config(&config, |c| cli::guard::list(&c)),
        Command::Guard(Guard::Accept { config }) => {
            with_config(&config, |c| cli::guard::accept(&c))
        }
        Command::Guard(Guard::Release { name, config }) => {
            with_config(&config, |c| cli::guard::release(&c, &name))
        }
        Command::Ctl { config, action } => with_config(&config, |c| {
            let cmd = match action {
                Ctl::Status => cli::ctl::Command::Status,
                Ctl::Flush { name, subtree, .. } => cli::ctl::Command::Flush { name, subtree },
                Ctl::Refresh {
                    feed,
                    accept_shrink,
                } => cli::ctl::Command::Refresh {
                    feed,
                    accept_shrink,
                },
            };
            cli::ctl::run(&c, &cmd)
        }),
        Command::Serve { config } => {
            schild::server::compile_child::remember_log_flags(
                &args.log,
                match args.log_format {
                    schild::telemetry::LogFormat::Text => "text",
                    schild::telemetry::LogFormat::Json => "json",
                },
            );
            with_config(&config, |c| runtime().block_on(schild::server::run(c)))
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn with_config(path: &std::path::Path, f: impl FnOnce(schild::config::Config) -> i32) -> i32 {
    match cli::load_config(path) {
        Ok(c) => f(c),
        Err(code) => code,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("schild: cannot start the async runtime: {e}");
            std::process::exit(exit::UNAVAILABLE);
        }
    }
}
