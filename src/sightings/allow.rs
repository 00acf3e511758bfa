//! `schild allow`: record a false positive in the local allowlist and
//! queue a false-positive sighting for every indicator it overrides.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::spool::{self, Sighting};
use super::{log, targets};
use crate::clock::unix;
use crate::config::Config;
use crate::policy::{Policy, Verdict};

/// What `schild allow` did.
#[derive(Debug)]
pub struct AllowOutcome {
    pub file: PathBuf,
    /// Indicators the name overrides, each with its feed (false-positive
    /// sightings were queued for those whose feed reports sightings).
    pub overridden: Vec<(String, String)>,
    pub queued: usize,
}

/// Record a false positive: allowlist `name` and queue a false-positive
/// sighting (type "1") for each indicator it overrides.
pub fn allow(
    config: &Config,
    policy: Option<&Policy>,
    name: &str,
    reason: &str,
) -> Result<AllowOutcome, std::io::Error> {
    let name = crate::policy::normalise(&crate::policy::name::refang(name)).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{name:?}: {e}"))
    })?;
    let file = config.local_allowlist_path();
    append_allow(&file, name.as_str(), reason)?;

    let mut overridden = Vec::new();
    let mut batch = Vec::new();
    let targets = targets(config);
    let now = unix(SystemTime::now());
    if let Some(policy) = policy {
        let hit = match policy.lookup_str(name.as_str()) {
            Verdict::Blocked(h) => Some(h),
            Verdict::Allowed { blocked, .. } => Some(blocked),
            _ => None,
        };
        if let Some(hit) = hit {
            let listed = crate::policy::matched_suffix(name.as_str(), hit.matched_len).to_string();
            for p in policy.provenance_of(hit.set) {
                let feed = policy
                    .feed(p.feed)
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                overridden.push((
                    p.value.clone().unwrap_or_else(|| listed.clone()),
                    feed.clone(),
                ));
                if targets.contains_key(&feed) {
                    batch.push(Sighting {
                        id: 0,
                        target: feed,
                        kind: "1".into(),
                        uuid: p.attribute_uuid.clone(),
                        value: listed.clone(),
                        first_seen: now,
                        last_seen: now,
                        count: 1,
                        window: now,
                    });
                }
            }
        }
    }
    let queued = batch.len();
    if !batch.is_empty() {
        spool::write_inbox(&config.spool_dir(), &batch)
            .map_err(|e| std::io::Error::other(crate::error::error_chain(&e)))?;
    }
    Ok(AllowOutcome {
        file,
        overridden,
        queued,
    })
}

fn append_allow(file: &Path, name: &str, reason: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    writeln!(f, "{name}  # {} {reason}", log::rfc3339(SystemTime::now()))?;
    f.sync_data()
}
