//! `schild allow`: record a false positive in the local allowlist and
//! queue a false-positive sighting for every indicator it overrides.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::spool::{self, Sighting};
use super::{log, targets};
use crate::clock::unix;
use crate::config::Config;
use crate::policy::{Policy, Verdict};

/// Why `schild allow` refused, or could not record, an entry.
#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    #[error("{name:?} is not a valid name")]
    Name {
        name: String,
        #[source]
        source: crate::policy::NameError,
    },
    #[error(
        "{name} is a public suffix or a single label: allowing it would stop blocking every IOC under it"
    )]
    PublicSuffix { name: String },
    #[error(
        "{name} would spare {spared} listed names (allowlist.max_spared is {max}); allow a narrower name, or use --force if you mean it"
    )]
    TooWide { name: String, spared: u64, max: u64 },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot queue the false-positive sightings")]
    Spool(#[from] spool::SpoolError),
}

/// What `schild allow` did.
#[derive(Debug)]
pub struct AllowOutcome {
    pub file: PathBuf,
    /// The name allowed, normalised.
    pub name: String,
    /// Listed names the entry spares (the name and every name below it).
    pub spared: u64,
    /// Indicators the name overrides, each with its feed (false-positive
    /// sightings were queued for those whose feed reports sightings).
    pub overridden: Vec<(String, String)>,
    pub queued: usize,
}

/// Record a false positive: allowlist `name` and queue a false-positive
/// sighting (type "1") for each indicator it overrides. Refuses a public
/// suffix or a single label, and (unless `force`) a name that would spare
/// more than `allowlist.max_spared` listed names, as the feeds' guard
/// refuses to block one: one typo must not turn off protection.
pub fn allow(
    config: &Config,
    policy: Option<&Policy>,
    name: &str,
    reason: &str,
    force: bool,
) -> Result<AllowOutcome, AllowError> {
    let name = crate::policy::normalise(&crate::policy::name::refang(name)).map_err(|source| {
        AllowError::Name {
            name: name.to_string(),
            source,
        }
    })?;
    if name.is_public_suffix() {
        return Err(AllowError::PublicSuffix {
            name: name.into_string(),
        });
    }
    let spared = policy.map_or(0, |p| p.listed_at_or_below(name.as_str()));
    let max = config.allowlist.max_spared;
    if spared > max && !force {
        return Err(AllowError::TooWide {
            name: name.into_string(),
            spared,
            max,
        });
    }
    let file = config.local_allowlist_path();
    append_allow(&file, name.as_str(), reason).map_err(|source| AllowError::Write {
        path: file.clone(),
        source,
    })?;

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
        spool::write_inbox(&config.spool_dir(), &batch)?;
    }
    Ok(AllowOutcome {
        file,
        name: name.as_str().to_string(),
        spared,
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
