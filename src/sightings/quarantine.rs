//! Quarantined names (`guard.on_popular = "quarantine"`): a newly listed
//! name that many clients here resolved on many days is not blocked at
//! once. It answers normally and every hit is recorded as a sighting with
//! action `quarantine` (and reported to the feed like any hit: a MISP
//! sighting of type 0, as the IOC is live here), until `schild guard
//! release` enforces it or `schild allow` makes it a false positive.
//!
//! The state is one JSON file in `state_dir` (`guard.quarantine.json`):
//! the names in quarantine and the names released. A released name is
//! never quarantined again, so the operator's decision survives restarts,
//! later compiles and a feed that drops and relists the IOC. The retro-hunt
//! (a compile's thread), `guard release` and `allow` (other processes)
//! change the file under an advisory lock, each write atomic; the server
//! reads it when it installs a list and when the file changes.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged")]
    Damaged {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A name in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The listed name (the IOC), lower case, no trailing dot.
    pub name: String,
    /// Its MISP type (`domain`: the name and every name below it).
    pub ioc_type: String,
    pub feed: String,
    /// Unix seconds when it was quarantined.
    pub since: u64,
    /// Distinct clients and days in the name history when it was listed.
    pub clients: u64,
    pub days: u64,
}

/// A name released from quarantine (enforced from then on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub name: String,
    /// Unix seconds of the release.
    pub at: u64,
}

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub quarantined: Vec<Quarantined>,
    #[serde(default)]
    pub released: Vec<Released>,
}

/// The quarantined names, for the query path: consulted only when a
/// lookup already hit (never on the pass path).
#[derive(Debug, Default)]
pub struct QuarantineSet {
    names: HashSet<Box<str>>,
}

impl QuarantineSet {
    pub fn from_state(s: &State) -> QuarantineSet {
        QuarantineSet {
            names: s
                .quarantined
                .iter()
                .map(|q| q.name.as_str().into())
                .collect(),
        }
    }

    /// Whether `listed` (the listed name a lookup matched) is quarantined.
    pub fn contains(&self, listed: &str) -> bool {
        !self.names.is_empty() && self.names.contains(listed)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuarantineError + '_ {
    move |source| QuarantineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read the state; a missing file is an empty one.
pub fn load(path: &Path) -> Result<State, QuarantineError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| QuarantineError::Damaged {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(io(path)(e)),
    }
}

/// The server's view: the set to answer from. A damaged or unreadable
/// file quarantines nothing (every listed name is blocked: fail closed),
/// loudly.
pub fn load_set(config: &Config) -> QuarantineSet {
    match load(&config.quarantine_path()) {
        Ok(s) => QuarantineSet::from_state(&s),
        Err(e) => {
            tracing::error!(error = %crate::error::error_chain(&e), "the quarantine state cannot be read: quarantined names are BLOCKED until it is repaired");
            QuarantineSet::default()
        }
    }
}

/// Change the state under the lock (`state_dir/guard.quarantine.lock`),
/// writing it back atomically if `f` says it changed.
fn update<T>(
    config: &Config,
    f: impl FnOnce(&mut State) -> (bool, T),
) -> Result<T, QuarantineError> {
    let path = config.quarantine_path();
    let lock_path = path.with_extension("lock");
    std::fs::create_dir_all(&config.state_dir).map_err(io(&config.state_dir))?;
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    // std's File::lock is newer than our MSRV.
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(&lock_path)(e.into()))?;
    let mut state = load(&path)?;
    let (changed, out) = f(&mut state);
    if changed {
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| QuarantineError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        crate::fs::write_atomic(&path, &bytes).map_err(io(&path))?;
    }
    drop(lock);
    Ok(out)
}

/// Quarantine `new` names, but none already in quarantine or released.
/// Returns those added.
pub fn add(config: &Config, new: Vec<Quarantined>) -> Result<Vec<Quarantined>, QuarantineError> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    update(config, |s| {
        let mut added = Vec::new();
        for q in new {
            let known = s.quarantined.iter().any(|x| x.name == q.name)
                || s.released.iter().any(|x| x.name == q.name);
            if !known {
                s.quarantined.push(q.clone());
                added.push(q);
            }
        }
        (!added.is_empty(), added)
    })
}

/// `schild guard release NAME`: enforce a quarantined name. `None`: it was
/// not in quarantine.
pub fn release(config: &Config, name: &str) -> Result<Option<Quarantined>, QuarantineError> {
    let now = crate::clock::unix_now();
    update(config, |s| {
        let Some(i) = s.quarantined.iter().position(|q| q.name == name) else {
            return (false, None);
        };
        let q = s.quarantined.remove(i);
        s.released.retain(|r| r.name != name);
        s.released.push(Released {
            name: q.name.clone(),
            at: now,
        });
        (true, Some(q))
    })
}

/// Drop the names a new list no longer blocks as listed (`schild allow`
/// made them false positives, or the feed dropped them): run by each
/// compile of the server before the list is installed, so a name leaves
/// quarantine exactly when the allowlist that spares it serves. Returns
/// them.
pub fn prune(
    config: &Config,
    still_listed: impl Fn(&str) -> bool,
) -> Result<Vec<Quarantined>, QuarantineError> {
    if !config.quarantine_path().exists() {
        return Ok(Vec::new());
    }
    update(config, |s| {
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut s.quarantined)
            .into_iter()
            .partition(|q| still_listed(&q.name));
        s.quarantined = kept;
        (!gone.is_empty(), gone)
    })
}

/// Whether `policy` blocks `name` as a listed name of its own (not only
/// under a listed parent): what keeps a name in quarantine.
pub fn listed_in(policy: &crate::policy::Policy, name: &str) -> bool {
    match policy.lookup_str(name) {
        crate::policy::Verdict::Blocked(h) => {
            crate::policy::matched_suffix(name, h.matched_len) == name
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let text = format!("state_dir = {:?}\n", dir.join("state"));
        Config::parse(&text, &dir.join("schild.toml")).expect("config")
    }

    fn q(name: &str) -> Quarantined {
        Quarantined {
            name: name.into(),
            ioc_type: "domain".into(),
            feed: "zdn".into(),
            since: 1,
            clients: 3,
            days: 2,
        }
    }

    #[test]
    fn a_released_name_is_never_quarantined_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        assert_eq!(
            add(&c, vec![q("a.example"), q("b.example")])
                .expect("add")
                .len(),
            2
        );
        assert!(add(&c, vec![q("a.example")]).expect("add").is_empty());
        assert_eq!(
            release(&c, "a.example").expect("release").map(|q| q.name),
            Some("a.example".into())
        );
        assert_eq!(release(&c, "a.example").expect("again"), None);
        assert!(add(&c, vec![q("a.example")]).expect("add").is_empty());
        let set = load_set(&c);
        assert!(!set.contains("a.example") && set.contains("b.example"));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn names_no_longer_listed_leave_quarantine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        assert!(prune(&c, |_| false).expect("no file").is_empty());
        add(
            &c,
            vec![q("cdn.b.example"), q("b.example"), q("xb.example")],
        )
        .expect("add");
        let gone = prune(&c, |n| n == "xb.example").expect("prune");
        assert_eq!(gone.len(), 2);
        let set = load_set(&c);
        assert!(set.contains("xb.example") && set.len() == 1);
    }

    #[test]
    fn a_damaged_file_quarantines_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        add(&c, vec![q("a.example")]).expect("add");
        std::fs::write(c.quarantine_path(), b"{not json").expect("damage");
        assert!(load_set(&c).is_empty());
        assert!(matches!(
            add(&c, vec![q("b.example")]),
            Err(QuarantineError::Damaged { .. })
        ));
    }
}
