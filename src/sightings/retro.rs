//! The retro-hunt: when a compile adds IOCs the previous list did not
//! have, look them up in the name history (a `domain` IOC: the name and
//! every name below it; a `hostname`: the exact name). Each match becomes a
//! retro-sighting: a line of kind `retro` in the sightings log (first and
//! last seen, distinct clients, the client identifiers) and, for a feed
//! that takes sightings, a MISP sighting (type 0) stamped with the time the
//! name was *first* seen here, so the feed learns it was live before it was
//! shared.
//!
//! The hunt runs on the compile's thread and drops its findings into
//! `spool/retro/`; the sightings task (the one writer of the log and the
//! spool) takes them from there, and removes a file only once its lines
//! are written and its sightings durably spooled.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::log::rfc3339;
use super::quarantine::{self, Quarantined};
use super::spool::{Sighting, SpoolError};
use super::targets;
use crate::config::{Config, OnPopular};
use crate::history::History;
use crate::policy::{NewBlock, Policy, new_blocks};

/// Names below a domain IOC shown in one retro line.
const NAMES_SHOWN: usize = 20;

/// One retro-sighting: the log line and, if the feed takes sightings,
/// what is sent to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retro {
    pub line: RetroLine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sighting: Option<Sighting>,
}

/// A `retro` line of the sightings log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetroLine {
    pub time: String,
    /// Always `retro`.
    pub kind: String,
    /// The newly listed name and its type (`domain`, `hostname`...).
    pub ioc: String,
    pub ioc_type: String,
    pub feed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_uuid: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    /// Unix seconds of the first query (the sighting's timestamp).
    pub first_seen_unix: u64,
    /// Distinct clients over all days and names, approximately.
    pub clients: u64,
    /// Client identifiers (sightings.client_privacy's form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_ids: Vec<String>,
    /// Days with queries, and the names asked (the first few).
    pub days: u64,
    pub names: Vec<String>,
    /// At least `guard.popular_clients` distinct clients on at least
    /// `guard.popular_days` days: likely a false positive, or a wide
    /// compromise. Blocked and raised, or quarantined.
    #[serde(default)]
    pub popular: bool,
    /// Popular, and `guard.on_popular = "quarantine"`: log-only until
    /// `schild guard release`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
}

/// What a hunt found for one feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedRetro {
    pub feed: String,
    /// Retro-sightings.
    pub hits: u64,
    /// Of them, popular names (`guard.popular_*`).
    pub popular: u64,
    /// Of those, names newly quarantined (`guard.on_popular`).
    pub quarantined: u64,
}

/// The folder the sightings task takes retro-sightings from.
pub fn retro_dir(config: &Config) -> PathBuf {
    config.spool_dir().join("retro")
}

fn time(t: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_secs(t))
}

/// What the history says about one new IOC, over every day and name.
struct Found {
    first: u64,
    last: u64,
    sketch: u128,
    hashes: BTreeSet<u32>,
    overflow: bool,
    ids: Vec<String>,
    days: u64,
    /// Days on which at least `popular_clients` distinct clients asked.
    popular_days: u32,
    names: BTreeSet<String>,
}

/// Distinct clients of several records (names, days) together.
fn distinct_of<'a>(recs: impl Iterator<Item = &'a crate::history::DayRecord>) -> u64 {
    let (mut hashes, mut overflow, mut sketch) = (BTreeSet::new(), false, 0u128);
    for r in recs {
        sketch |= r.sketch;
        overflow |= r.hashes.len() >= crate::history::EXACT;
        hashes.extend(r.hashes.iter().copied());
    }
    let exact = if overflow {
        crate::history::EXACT
    } else {
        hashes.len().min(crate::history::EXACT)
    };
    crate::history::distinct(exact, sketch)
}

fn find(history: &History, b: &NewBlock, max_ids: usize, popular_clients: u64) -> Option<Found> {
    let days = history.lookup(&b.name, b.exact.is_some(), b.sub.is_some());
    let mut f = Found {
        first: u64::MAX,
        last: 0,
        sketch: 0,
        hashes: BTreeSet::new(),
        overflow: false,
        ids: Vec::new(),
        days: days.len() as u64,
        popular_days: 0,
        names: BTreeSet::new(),
    };
    for (_, recs) in &days {
        if distinct_of(recs.iter().map(|(_, r)| r)) >= popular_clients {
            f.popular_days += 1;
        }
        for (name, r) in recs {
            f.first = f.first.min(r.first);
            f.last = f.last.max(r.last);
            f.sketch |= r.sketch;
            f.overflow |= r.hashes.len() >= crate::history::EXACT;
            f.hashes.extend(r.hashes.iter().copied());
            for id in &r.clients {
                if f.ids.len() < max_ids && !f.ids.contains(id) {
                    f.ids.push(id.clone());
                }
            }
            if f.names.len() < NAMES_SHOWN {
                f.names.insert(name.clone());
            }
        }
    }
    (f.days > 0).then_some(f)
}

/// Hunt the IOCs `new` adds to `previous` in the history under
/// `history_dir`, drop the findings into the retro folder, and return the
/// retro-sightings (and popular names among them) per feed.
pub fn hunt(
    config: &Config,
    previous: &Policy,
    new: &Policy,
) -> Result<Vec<FeedRetro>, SpoolError> {
    // Names `schild allow` spared (or the feed dropped) leave quarantine
    // as this list is installed.
    match quarantine::prune(config, |n| quarantine::listed_in(new, n)) {
        Ok(gone) => {
            for q in gone {
                tracing::warn!(ioc = %q.name, feed = %q.feed, "no longer listed (allowed, or dropped by the feed): out of quarantine");
            }
        }
        Err(e) => {
            tracing::error!(error = %crate::error::error_chain(&e), "cannot update the quarantine state");
        }
    }
    let history = History::open(&config.history_dir());
    let targets = targets(config);
    let now = crate::clock::unix_now();
    let mut out: Vec<Retro> = Vec::new();
    new_blocks(Some(previous), new, |b| {
        let Some(f) = find(
            &history,
            &b,
            config.history.clients_per_name,
            config.guard.popular_clients,
        ) else {
            return;
        };
        let mut seen = BTreeSet::new();
        for set in [b.exact, b.sub].into_iter().flatten() {
            for p in new.provenance_of(set) {
                let feed = new.feed(p.feed).map(|x| x.name.clone()).unwrap_or_default();
                if !seen.insert((feed.clone(), p.attribute_uuid.clone())) {
                    continue;
                }
                let exact = if f.overflow {
                    crate::history::EXACT
                } else {
                    f.hashes.len().min(crate::history::EXACT)
                };
                let clients = crate::history::distinct(exact, f.sketch);
                let popular = f.popular_days >= config.guard.popular_days;
                let sighting = targets.contains_key(&feed).then(|| Sighting {
                    id: 0,
                    target: feed.clone(),
                    kind: "0".into(),
                    uuid: p.attribute_uuid.clone(),
                    value: b.name.clone(),
                    first_seen: f.first,
                    last_seen: f.last,
                    count: clients.max(1),
                    window: f.first,
                });
                out.push(Retro {
                    line: RetroLine {
                        time: time(now),
                        kind: "retro".into(),
                        ioc: b.name.clone(),
                        ioc_type: p.ioc_type.as_misp().to_string(),
                        feed,
                        event_uuid: new.event(p).map(|e| e.uuid.clone()),
                        attribute_uuid: p.attribute_uuid.clone(),
                        first_seen: time(f.first),
                        last_seen: time(f.last),
                        first_seen_unix: f.first,
                        clients,
                        client_ids: f.ids.clone(),
                        days: f.days,
                        names: f.names.iter().cloned().collect(),
                        popular,
                        quarantined: false,
                    },
                    sighting,
                });
            }
        }
    });
    if config.guard.on_popular == OnPopular::Quarantine {
        quarantine_popular(config, &mut out, now);
    }
    let mut per_feed: Vec<FeedRetro> = Vec::new();
    for r in &out {
        let l = &r.line;
        tracing::warn!(ioc = %l.ioc, feed = %l.feed, first_seen = %l.first_seen, clients = l.clients, days = l.days, "retro-hunt: a newly listed IOC was resolved here before it was listed");
        if l.quarantined {
            tracing::warn!(ioc = %l.ioc, feed = %l.feed, clients = l.clients, "a newly listed IOC is POPULAR here (guard.popular_clients on guard.popular_days days): it is QUARANTINED, answered normally and recorded until `schild guard release` enforces it; if it is a false positive, `schild allow` it");
        } else if l.popular {
            tracing::warn!(ioc = %l.ioc, feed = %l.feed, clients = l.clients, "a newly listed IOC is POPULAR here (guard.popular_clients on guard.popular_days days): it is blocked; if it is a false positive, `schild allow` it");
        }
        let i = match per_feed.iter().position(|f| f.feed == l.feed) {
            Some(i) => i,
            None => {
                per_feed.push(FeedRetro {
                    feed: l.feed.clone(),
                    ..FeedRetro::default()
                });
                per_feed.len() - 1
            }
        };
        per_feed[i].hits += 1;
        per_feed[i].popular += u64::from(l.popular);
        per_feed[i].quarantined += u64::from(l.quarantined);
    }
    if !out.is_empty() {
        write_retro(&retro_dir(config), &out)?;
    }
    Ok(per_feed)
}

/// Quarantine the popular names of `out` (marking their lines) before the
/// new list is installed. A name released before stays enforced; a state
/// that cannot be written leaves them blocked (fail closed), loudly.
fn quarantine_popular(config: &Config, out: &mut [Retro], now: u64) {
    let wanted: Vec<Quarantined> = out
        .iter()
        .filter(|r| r.line.popular)
        .map(|r| Quarantined {
            name: r.line.ioc.clone(),
            ioc_type: r.line.ioc_type.clone(),
            feed: r.line.feed.clone(),
            since: now,
            clients: r.line.clients,
            days: r.line.days,
        })
        .collect();
    match quarantine::add(config, wanted) {
        Ok(added) => {
            for r in out.iter_mut() {
                r.line.quarantined = added
                    .iter()
                    .any(|q| q.name == r.line.ioc && q.feed == r.line.feed);
            }
        }
        Err(e) => {
            tracing::error!(error = %crate::error::error_chain(&e), "cannot quarantine the popular names: they are BLOCKED");
        }
    }
}

fn write_retro(dir: &Path, batch: &[Retro]) -> Result<(), SpoolError> {
    let bytes = serde_json::to_vec(batch).map_err(|e| SpoolError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    std::fs::create_dir_all(dir).map_err(|source| SpoolError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let name = format!(
        "{:020}-{}.json",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        std::process::id()
    );
    let path = dir.join(name);
    crate::fs::write_atomic(&path, &bytes).map_err(|source| SpoolError::Io { path, source })
}

/// The retro files waiting in `dir`, oldest first, each with its findings
/// (an unreadable file is set aside as `.bad`).
pub(super) fn pending(dir: &Path) -> Vec<(PathBuf, Vec<Retro>)> {
    super::spool::json_files(dir)
        .into_iter()
        .filter_map(|f| {
            let bytes = std::fs::read(&f).ok()?;
            match serde_json::from_slice::<Vec<Retro>>(&bytes) {
                Ok(v) => Some((f, v)),
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "unreadable retro-hunt file set aside");
                    let _ = std::fs::rename(&f, f.with_extension("bad"));
                    None
                }
            }
        })
        .collect()
}
