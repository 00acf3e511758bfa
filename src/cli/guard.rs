//! `schild guard`: what the clinical guardrail holds back, applying an
//! update held by `guard.max_new_blocks`, and releasing a quarantined name
//! (`guard.on_popular = "quarantine"`).

use std::io::Write;

use crate::config::Config;
use crate::error::error_chain;
use crate::exit;
use crate::policy::{self, ArtifactError, Policy, RefusalReason};
use crate::sightings::quarantine;

/// How many newly blocked names `guard list` shows of a held update.
const SHOWN: usize = 20;

/// The held update, if there is one (a damaged one is an error).
fn held(config: &Config) -> Result<Option<Policy>, ArtifactError> {
    match Policy::load(&config.held_artifact_path()) {
        Ok(p) => Ok(Some(p)),
        Err(ArtifactError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// For `stats`: one line on a held update.
pub(crate) fn print_held(
    out: &mut impl Write,
    config: &Config,
    live: &Policy,
) -> std::io::Result<()> {
    match held(config) {
        Ok(Some(h)) => {
            let new = policy::new_blocks(Some(live), &h, |_| {});
            writeln!(
                out,
                "HELD update: serial {}, {} names, newly blocks {new} (guard.max_new_blocks {}); `schild guard list` shows it, `schild guard accept` applies it",
                h.serial(),
                h.name_count(),
                config.guard.max_new_blocks
            )
        }
        Ok(None) => Ok(()),
        Err(e) => writeln!(out, "HELD update unreadable: {}", error_chain(&e)),
    }
}

/// `schild guard list`: the held update (with the first names it would
/// newly block), the quarantined names and the IOCs refused as protected
/// names.
pub fn list(config: &Config) -> i32 {
    let live = Policy::load(&config.artifact_path()).ok();
    let mut out = std::io::stdout().lock();
    match held(config) {
        Ok(Some(h)) => {
            let mut names = Vec::new();
            let new = policy::new_blocks(live.as_ref(), &h, |b| {
                if names.len() < SHOWN {
                    names.push(b.name);
                }
            });
            let _ = writeln!(
                out,
                "held update: serial {}, {} names, newly blocks {new} (guard.max_new_blocks {})",
                h.serial(),
                h.name_count(),
                config.guard.max_new_blocks
            );
            for n in &names {
                let _ = writeln!(out, "  new: {n}");
            }
            if new as usize > names.len() {
                let _ = writeln!(out, "  ... and {} more", new as usize - names.len());
            }
            let _ = writeln!(
                out,
                "  apply it with: schild guard accept --config {}",
                config.path.display()
            );
        }
        Ok(None) => {
            let _ = writeln!(out, "no update held");
        }
        Err(e) => {
            eprintln!("schild: {}", error_chain(&e));
            return exit::FAILURE;
        }
    }
    if print_quarantine(&mut out, config).is_err() {
        return exit::FAILURE;
    }
    if let Some(live) = &live {
        let mut any = false;
        for (feed, r) in live.protected_refusals() {
            if let RefusalReason::Protected { entry, source } = &r.reason {
                if !any {
                    let _ = writeln!(out, "refused as protected:");
                    any = true;
                }
                let file = live.allow_source(*source).map_or("", |s| s.path.as_str());
                let _ = writeln!(
                    out,
                    "  {} (feed {feed}): protected by {entry} in {file}",
                    r.value
                );
            }
        }
        if !any {
            let _ = writeln!(out, "no IOC refused as protected");
        }
    }
    exit::OK
}

/// `schild guard accept`: make the held update the live artifact. A
/// running `schild serve` notices that the hold is gone and loads it.
pub fn accept(config: &Config) -> i32 {
    let h = match held(config) {
        Ok(Some(h)) => h,
        Ok(None) => {
            eprintln!("schild: no update is held");
            return exit::FAILURE;
        }
        Err(e) => {
            eprintln!("schild: {}", error_chain(&e));
            return exit::FAILURE;
        }
    };
    let live = Policy::load(&config.artifact_path()).ok();
    let new = policy::new_blocks(live.as_ref(), &h, |_| {});
    drop(h);
    let (from, to) = (config.held_artifact_path(), config.artifact_path());
    // Same folder: the rename is atomic, the live artifact is never half
    // written. The file was verified above.
    if let Err(e) = std::fs::rename(&from, &to) {
        eprintln!(
            "schild: cannot move {} to {}: {e}",
            from.display(),
            to.display()
        );
        return exit::FAILURE;
    }
    tracing::warn!(new_blocks = new, "held update accepted");
    println!(
        "accepted: {} now serves the held update ({new} newly blocked names)",
        to.display()
    );
    exit::OK
}

/// The quarantined names, for `guard list`. A damaged state is an error.
fn print_quarantine(out: &mut impl Write, config: &Config) -> Result<(), ()> {
    let state = quarantine::load(&config.quarantine_path()).map_err(|e| {
        eprintln!("schild: {}", error_chain(&e));
    })?;
    if state.quarantined.is_empty() {
        let _ = writeln!(out, "no name quarantined");
    } else {
        let _ = writeln!(
            out,
            "quarantined (guard.on_popular): {} name(s), answered normally and recorded until released",
            state.quarantined.len()
        );
        for q in &state.quarantined {
            let _ = writeln!(
                out,
                "  {} ({} of feed {}): ~{} client(s) on {} day(s), quarantined {}",
                q.name,
                q.ioc_type,
                q.feed,
                q.clients,
                q.days,
                time(q.since)
            );
        }
        let _ = writeln!(
            out,
            "  enforce one with: schild guard release NAME --config {}; a false positive: schild allow NAME",
            config.path.display()
        );
    }
    if !state.released.is_empty() {
        let _ = writeln!(out, "released (enforced): {}", state.released.len());
        for r in &state.released {
            let _ = writeln!(out, "  {} released {}", r.name, time(r.at));
        }
    }
    Ok(())
}

fn time(t: u64) -> String {
    crate::sightings::log::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
}

/// `schild guard release NAME`: enforce a quarantined name from now on. A
/// running `schild serve` notices the change within a second; the release
/// is kept in `state_dir`, so no restart or later compile quarantines the
/// name again.
pub fn release(config: &Config, name: &str) -> i32 {
    let name = match crate::policy::normalise(name) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("schild: {name:?} is not a valid name: {e}");
            return exit::USAGE;
        }
    };
    match quarantine::release(config, name.as_str()) {
        Ok(Some(q)) => {
            tracing::warn!(ioc = %q.name, feed = %q.feed, "released from quarantine: blocked from now on");
            println!(
                "released: {} (feed {}) is blocked from now on",
                q.name, q.feed
            );
            exit::OK
        }
        Ok(None) => {
            eprintln!(
                "schild: {} is not quarantined (`schild guard list` shows what is)",
                name.as_str()
            );
            exit::FAILURE
        }
        Err(e) => {
            eprintln!("schild: {}", error_chain(&e));
            exit::FAILURE
        }
    }
}
