//! A refresh's compile in a process of its own: `schild compile-child`,
//! the same binary (`/proc/self/exe`, so an upgrade that replaced the file
//! does not change the compiler under a running server), running
//! [`pipeline::compile_with`] exactly as the server would and writing the
//! artifact into `state_dir`; the server then loads it as before.
//!
//! Why: a compile holds several times the artifact's size (1M names:
//! ~110 MB beside a 22 MB artifact) and a hostile feed can make it hold
//! much more. In the child that memory is the child's; the resolver's own
//! stays at the list in use plus the new one, and if the kernel's
//! out-of-memory killer must pick, it picks the compile, not the DNS of a
//! hospital. A killed compile is a failed refresh: the last good list keeps
//! serving and the failure is counted and logged.
//!
//! The child reads the configuration file again, so it is used only while
//! the running configuration is exactly the file's (its digest, from
//! [`Config::load`], is passed and checked by the child). Otherwise (a
//! SIGHUP kept keys that need a restart, the file was edited since it was
//! read, or the child cannot be started) the compile runs in the server's
//! process, as it always did, and says so in the log.
//!
//! The child reports on stdout with one JSON line; its log goes to the
//! server's stderr, with the server's log flags. It dies with the server
//! (`PR_SET_PDEATHSIG`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::error_chain;
use crate::feeds::Puller;
use crate::pipeline::{self, PipelineError, Pull};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "compile-child";

static LOG_FLAGS: OnceLock<(String, String)> = OnceLock::new();

/// Remember the server's `--log` and `--log-format`, for its children.
pub fn remember_log_flags(filter: &str, format: &str) {
    let _ = LOG_FLAGS.set((filter.to_string(), format.to_string()));
}

/// The child's one line on stdout.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "snake_case")]
enum Report {
    /// The artifact is written.
    Compiled,
    /// `guard.max_new_blocks` held the update.
    Held { new: u64, max: u64, path: PathBuf },
    /// The file is not the configuration the server runs.
    Stale,
    /// The compile failed; the artifact is untouched.
    Failed { message: String },
}

/// What a compile in a child came to, when it ran.
#[derive(Debug)]
pub enum Ran {
    /// The artifact is written; the child's peak RSS in bytes.
    Compiled { peak_rss: u64 },
    /// The child did not compile: the configuration file is not the one
    /// the server runs (or the child could not be started). Compile in
    /// this process instead.
    NotHere {
        why: String,
        /// Something is wrong with this installation (the child could not
        /// be started), not merely with the configuration's state.
        broken: bool,
    },
}

/// A compile in a child that ran and failed.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error(transparent)]
    Held(PipelineError),
    /// The child's own error text (the compile's error chain).
    #[error("{0}")]
    Failed(String),
    #[error("the compile process was killed by signal {signal}{}", if *signal == libc::SIGKILL { " (SIGKILL: the kernel's out-of-memory killer, or an operator)" } else { "" })]
    Killed { signal: i32 },
    #[error("the compile process exited with status {status} without a result")]
    NoResult { status: i32 },
}

fn pull_arg(pull: &Pull) -> String {
    match pull {
        Pull::Fetch => "fetch".into(),
        Pull::CachedOnly => "cached".into(),
        Pull::One {
            feed,
            accept_shrink: false,
        } => format!("feed:{feed}"),
        Pull::One {
            feed,
            accept_shrink: true,
        } => format!("feed:{feed}:accept-shrink"),
    }
}

fn parse_pull(arg: &str, feeds: usize) -> Option<Pull> {
    match arg {
        "fetch" => Some(Pull::Fetch),
        "cached" => Some(Pull::CachedOnly),
        _ => {
            let rest = arg.strip_prefix("feed:")?;
            let (n, accept_shrink) = match rest.strip_suffix(":accept-shrink") {
                Some(n) => (n, true),
                None => (rest, false),
            };
            let feed: usize = n.parse().ok()?;
            (feed < feeds).then_some(Pull::One {
                feed,
                accept_shrink,
            })
        }
    }
}

/// Compile `config`'s feeds in a child process. `Ok(Ran::NotHere)` when
/// the child cannot do it; the caller compiles in-process then.
pub fn run(config: &Config, pull: &Pull) -> Result<Ran, ChildError> {
    let Some(digest) = config.file_digest else {
        return Ok(Ran::NotHere {
            why: "the running configuration is not the file's (a SIGHUP kept keys that need a restart)".into(),
            broken: false,
        });
    };
    let mut cmd = std::process::Command::new(self_exe());
    if let Some((filter, format)) = LOG_FLAGS.get() {
        cmd.args(["--log", filter, "--log-format", format]);
    }
    cmd.arg(SUBCOMMAND)
        .arg("--config")
        .arg(&config.path)
        .arg("--digest")
        .arg(digest.to_string())
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--pull")
        .arg(pull_arg(pull))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ok(Ran::NotHere {
                why: format!("cannot start the compile process: {e}"),
                broken: true,
            });
        }
    };
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        // Read errors show as a missing result below.
        let _ = stdout.read_to_end(&mut out);
    }
    let (status, peak_rss) = reap(&mut child);
    let report = std::str::from_utf8(&out)
        .ok()
        .and_then(|s| s.lines().last())
        .and_then(|l| serde_json::from_str::<Report>(l).ok());
    match (report, status) {
        (Some(Report::Compiled), Exit::Code(0)) => Ok(Ran::Compiled { peak_rss }),
        (Some(Report::Held { new, max, path }), _) => {
            Err(ChildError::Held(PipelineError::Held { new, max, path }))
        }
        (Some(Report::Stale), _) => Ok(Ran::NotHere {
            why: "the configuration file changed since it was read (SIGHUP applies it)".into(),
            broken: false,
        }),
        (Some(Report::Failed { message }), _) => Err(ChildError::Failed(message)),
        (_, Exit::Signal(signal)) => Err(ChildError::Killed { signal }),
        (_, Exit::Code(status)) => Err(ChildError::NoResult { status }),
    }
}

fn self_exe() -> PathBuf {
    #[cfg(target_os = "linux")]
    {
        PathBuf::from("/proc/self/exe")
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("schild"))
    }
}

enum Exit {
    Code(i32),
    Signal(i32),
}

/// Wait for the child; its exit and its peak RSS (bytes; 0 if unknown).
fn reap(child: &mut std::process::Child) -> (Exit, u64) {
    #[cfg(target_os = "linux")]
    {
        let pid = child.id() as libc::pid_t;
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data, zeroed is a valid value.
        #[allow(unsafe_code)]
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: wait4 writes only into the two locals passed; the
            // pid is our own child, which nothing else reaps (std's
            // `Child` is never waited on after this).
            #[allow(unsafe_code)]
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if r == pid {
                break;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return (Exit::Code(-1), 0);
            }
        }
        // ru_maxrss is in KiB on Linux.
        let peak = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
        let exit = if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        };
        (exit, peak)
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::os::unix::process::ExitStatusExt;
        match child.wait() {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) => (Exit::Code(c), 0),
                (None, Some(sig)) => (Exit::Signal(sig), 0),
                _ => (Exit::Code(-1), 0),
            },
            Err(_) => (Exit::Code(-1), 0),
        }
    }
}

/// The child: compile and report on stdout. Exit 0 when the artifact is
/// written, 1 otherwise.
pub fn child_main(config: &Path, digest: u64, parent: u32, pull: &str) -> i32 {
    die_with(parent);
    // Its lines in the server's log say whose they are.
    let _span = tracing::info_span!("compile_child", pid = std::process::id()).entered();
    let report = child_compile(config, digest, pull);
    let ok = report == Report::Compiled;
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => tracing::error!(error = %e, "cannot write the compile's result"),
    }
    if ok { 0 } else { 1 }
}

fn child_compile(path: &Path, digest: u64, pull: &str) -> Report {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            return Report::Failed {
                message: error_chain(&e),
            };
        }
    };
    if config.file_digest != Some(digest) {
        return Report::Stale;
    }
    let Some(pull) = parse_pull(pull, config.feeds.len()) else {
        return Report::Failed {
            message: format!("compile-child: bad --pull {pull:?}"),
        };
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Report::Failed {
                message: format!("cannot start the compile runtime: {e}"),
            };
        }
    };
    let puller = Puller::new(&config.state_dir);
    match rt.block_on(pipeline::compile_with(&config, &puller, pull)) {
        Ok(_) => Report::Compiled,
        Err(PipelineError::Held { new, max, path }) => Report::Held { new, max, path },
        Err(e) => Report::Failed {
            message: error_chain(&e),
        },
    }
}

/// Die with the server: a compile nobody waits for is memory for nothing.
fn die_with(parent: u32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and
        // touches no memory of ours.
        #[allow(unsafe_code)]
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        // The server may have gone before the line above took effect.
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(1);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pull_reads_back_as_itself() {
        for pull in [
            Pull::Fetch,
            Pull::CachedOnly,
            Pull::One {
                feed: 2,
                accept_shrink: false,
            },
            Pull::One {
                feed: 0,
                accept_shrink: true,
            },
        ] {
            let back = parse_pull(&pull_arg(&pull), 3).expect("parses");
            assert_eq!(pull_arg(&back), pull_arg(&pull));
        }
        assert!(parse_pull("feed:3", 3).is_none(), "no such feed");
        assert!(parse_pull("feed:x", 3).is_none());
        assert!(parse_pull("all", 3).is_none());
    }

    #[test]
    fn a_report_survives_the_pipe() {
        let r = Report::Held {
            new: 7,
            max: 5,
            path: "/s/policy.held.artifact".into(),
        };
        let line = serde_json::to_string(&r).expect("json");
        assert!(line.contains("\"result\":\"held\""), "{line}");
        assert_eq!(serde_json::from_str::<Report>(&line).expect("back"), r);
    }
}
