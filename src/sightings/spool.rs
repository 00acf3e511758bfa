//! The durable spool: a sighting counts as recorded only once it is on
//! disk, and leaves the disk only once the feed has accepted it.
//!
//! Two append-only files in `state_dir/sightings/spool/`: `pending.jsonl`
//! (one sighting per line) and `acked.jsonl` (ids the feed accepted). Both
//! are fsynced before the caller is told the write happened. On start the
//! pending set is `pending - acked`; a line torn by a crash (SIGKILL mid
//! write) is skipped, and since the sighting it held was never confirmed as
//! recorded, nothing that counted is lost. When the files grow, they are
//! compacted by rewriting `pending.jsonl` atomically. When the pending
//! sightings alone exceed the size bound, they are merged into coarser
//! windows (one per indicator and target) instead of being dropped.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A sighting waiting to be reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    pub id: u64,
    /// Name of the feed (target) it is reported to.
    pub target: String,
    /// MISP sighting type: "0" sighting, "1" false positive.
    #[serde(rename = "type")]
    pub kind: String,
    /// Attribute (or STIX indicator) uuid, when the indicator has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The indicator value (listed name or address).
    pub value: String,
    /// Unix seconds of the first hit in the window.
    pub first_seen: u64,
    pub last_seen: u64,
    pub count: u64,
    /// Start of the aggregation window (unix seconds); 0 after merging.
    pub window: u64,
}

impl Sighting {
    /// Sightings with the same key in the same window are one sighting.
    pub fn key(&self) -> (String, String, String) {
        (
            self.target.clone(),
            self.kind.clone(),
            self.uuid.clone().unwrap_or_else(|| self.value.clone()),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("sightings spool {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode sightings for {path}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The spool. Not shared between processes: the server owns it; other
/// commands drop files into the inbox (see [`Spool::import_inbox`]).
pub struct Spool {
    dir: PathBuf,
    pending: BTreeMap<u64, Sighting>,
    pending_file: File,
    acked_file: File,
    acked_lines: u64,
    next_id: u64,
    max_bytes: u64,
    /// Bytes currently in pending.jsonl.
    bytes: u64,
    merges: u64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open_append(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

impl Spool {
    /// Open (or create) the spool in `dir`, replaying what is on disk.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        std::fs::create_dir_all(dir.join("inbox")).map_err(io_err(dir))?;
        let pending_path = dir.join("pending.jsonl");
        let acked_path = dir.join("acked.jsonl");
        let mut acked = HashSet::new();
        let mut acked_lines = 0;
        if let Ok(f) = File::open(&acked_path) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                if let Ok(id) = line.trim().parse::<u64>() {
                    acked.insert(id);
                    acked_lines += 1;
                }
            }
        }
        let mut pending = BTreeMap::new();
        let mut next_id = 1;
        let mut bytes = 0;
        if let Ok(f) = File::open(&pending_path) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                bytes += line.len() as u64 + 1;
                // A torn last line fails to parse and is skipped.
                if let Ok(s) = serde_json::from_str::<Sighting>(&line) {
                    next_id = next_id.max(s.id + 1);
                    if !acked.contains(&s.id) {
                        pending.insert(s.id, s);
                    }
                }
            }
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            pending,
            pending_file: open_append(&pending_path)?,
            acked_file: open_append(&acked_path)?,
            acked_lines,
            next_id,
            max_bytes: max_bytes.max(4096),
            bytes,
            merges: 0,
        };
        // Start from clean files: drop what was acked, and a torn tail.
        spool.compact()?;
        Ok(spool)
    }

    /// Append sightings durably (one fsync for the batch). Ids are assigned
    /// here. Returns the ids.
    pub fn append(&mut self, batch: Vec<Sighting>) -> Result<Vec<u64>, SpoolError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.dir.join("pending.jsonl");
        let mut buf = Vec::new();
        let mut ids = Vec::with_capacity(batch.len());
        let mut added = Vec::with_capacity(batch.len());
        for mut s in batch {
            s.id = self.next_id;
            self.next_id += 1;
            // Serialising plain data into a Vec cannot fail.
            if serde_json::to_writer(&mut buf, &s).is_ok() {
                buf.push(b'\n');
                ids.push(s.id);
                added.push(s);
            }
        }
        self.pending_file.write_all(&buf).map_err(io_err(&path))?;
        self.pending_file.sync_data().map_err(io_err(&path))?;
        self.bytes += buf.len() as u64;
        for s in added {
            self.pending.insert(s.id, s);
        }
        if self.bytes > self.max_bytes {
            self.compact()?;
            if self.bytes > self.max_bytes {
                self.merge()?;
            }
        }
        Ok(ids)
    }

    /// Mark sightings as accepted by their feed (durably), removing them.
    pub fn ack(&mut self, ids: &[u64]) -> Result<(), SpoolError> {
        if ids.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("acked.jsonl");
        let mut buf = String::new();
        for id in ids {
            buf.push_str(&id.to_string());
            buf.push('\n');
        }
        self.acked_file
            .write_all(buf.as_bytes())
            .map_err(io_err(&path))?;
        self.acked_file.sync_data().map_err(io_err(&path))?;
        self.acked_lines += ids.len() as u64;
        for id in ids {
            self.pending.remove(id);
        }
        if self.acked_lines > 10_000 || (self.pending.is_empty() && self.acked_lines > 0) {
            self.compact()?;
        }
        Ok(())
    }

    /// Sightings not yet accepted, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Sighting> {
        self.pending.values()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Bytes the spool holds on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How many times the spool had to merge sightings to stay in bounds.
    pub fn merges(&self) -> u64 {
        self.merges
    }

    /// First-seen time of the oldest unsent sighting.
    pub fn oldest_pending(&self) -> Option<u64> {
        self.pending.values().map(|s| s.first_seen).min()
    }

    /// Rewrite pending.jsonl with only what is pending; empty acked.jsonl.
    fn compact(&mut self) -> Result<(), SpoolError> {
        let pending_path = self.dir.join("pending.jsonl");
        let mut buf = Vec::new();
        for s in self.pending.values() {
            if serde_json::to_writer(&mut buf, s).is_ok() {
                buf.push(b'\n');
            }
        }
        write_atomic(&pending_path, &buf)?;
        // Only after the new pending file is in place may the acks go.
        let acked_path = self.dir.join("acked.jsonl");
        write_atomic(&acked_path, b"")?;
        self.pending_file = open_append(&pending_path)?;
        self.acked_file = open_append(&acked_path)?;
        self.acked_lines = 0;
        self.bytes = buf.len() as u64;
        Ok(())
    }

    /// Merge pending sightings of the same indicator and target into one,
    /// so the spool stays within bounds without losing any indicator.
    fn merge(&mut self) -> Result<(), SpoolError> {
        let before = self.pending.len();
        let mut merged: BTreeMap<(String, String, String), Sighting> = BTreeMap::new();
        for s in std::mem::take(&mut self.pending).into_values() {
            merged
                .entry(s.key())
                .and_modify(|m| {
                    m.first_seen = m.first_seen.min(s.first_seen);
                    m.last_seen = m.last_seen.max(s.last_seen);
                    m.count += s.count;
                    m.window = 0;
                    m.id = m.id.min(s.id);
                })
                .or_insert(s);
        }
        self.pending = merged.into_values().map(|s| (s.id, s)).collect();
        self.merges += 1;
        tracing::warn!(
            before,
            after = self.pending.len(),
            max_bytes = self.max_bytes,
            "sightings spool full: unsent sightings merged into coarser windows (none dropped)"
        );
        self.compact()
    }

    /// Move sightings dropped into `inbox/` by other commands (`schild
    /// allow`) into the spool. Each inbox file is a JSON array of sightings;
    /// it is removed only after its sightings are durably appended.
    pub fn import_inbox(&mut self) -> Result<usize, SpoolError> {
        let files = json_files(&self.dir.join("inbox"));
        let mut n = 0;
        for f in files {
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            match serde_json::from_slice::<Vec<Sighting>>(&bytes) {
                Ok(batch) => {
                    n += batch.len();
                    self.append(batch)?;
                }
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "unreadable sightings inbox file skipped");
                    let _ = std::fs::rename(&f, f.with_extension("bad"));
                    continue;
                }
            }
            std::fs::remove_file(&f).map_err(io_err(&f))?;
        }
        Ok(n)
    }
}

/// The `.json` files in `dir` (none if it is missing), in name order:
/// oldest first, as they are named by time.
pub(super) fn json_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// Drop a batch into a spool's inbox (for commands other than the server).
pub fn write_inbox(spool_dir: &Path, batch: &[Sighting]) -> Result<PathBuf, SpoolError> {
    let inbox = spool_dir.join("inbox");
    std::fs::create_dir_all(&inbox).map_err(io_err(&inbox))?;
    let name = format!(
        "{:020}-{}.json",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        std::process::id()
    );
    let path = inbox.join(name);
    let bytes = serde_json::to_vec(batch).map_err(|source| SpoolError::Encode {
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, &bytes)?;
    Ok(path)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    crate::fs::write_atomic(path, bytes).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(value: &str, window: u64) -> Sighting {
        Sighting {
            id: 0,
            target: "zdn".into(),
            kind: "0".into(),
            uuid: Some(format!("uuid-{value}")),
            value: value.into(),
            first_seen: window + 5,
            last_seen: window + 9,
            count: 2,
            window,
        }
    }

    #[test]
    fn survives_reopen_and_forgets_only_acked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sp = Spool::open(dir.path(), 1 << 20).expect("open");
        let ids = sp
            .append(vec![
                s("a.example", 0),
                s("b.example", 0),
                s("c.example", 300),
            ])
            .expect("append");
        sp.ack(&ids[1..2]).expect("ack");
        drop(sp);
        let sp = Spool::open(dir.path(), 1 << 20).expect("reopen");
        let values: Vec<_> = sp.pending().map(|s| s.value.as_str()).collect();
        assert_eq!(values, ["a.example", "c.example"]);
        // New ids never reuse old ones.
        let mut sp = sp;
        let more = sp.append(vec![s("d.example", 600)]).expect("append");
        assert!(more[0] > ids[2]);
    }

    #[test]
    fn a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sp = Spool::open(dir.path(), 1 << 20).expect("open");
        sp.append(vec![s("a.example", 0)]).expect("append");
        drop(sp);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("pending.jsonl"))
            .expect("open");
        f.write_all(b"{\"id\":9,\"target\":\"zd").expect("write");
        drop(f);
        let sp = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(sp.pending_count(), 1);
    }

    #[test]
    fn full_spool_merges_instead_of_dropping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sp = Spool::open(dir.path(), 4096).expect("open");
        for w in 0..100 {
            sp.append(vec![s("a.example", w * 300), s("b.example", w * 300)])
                .expect("append");
        }
        assert!(sp.merges() > 0);
        assert!(sp.bytes() <= 4096, "{}", sp.bytes());
        let values: HashSet<_> = sp.pending().map(|s| s.value.clone()).collect();
        assert_eq!(values.len(), 2, "every indicator is still there");
        assert!(sp.pending_count() < 200, "merged into fewer sightings");
        let first_a = sp
            .pending()
            .filter(|s| s.value == "a.example")
            .map(|s| s.first_seen)
            .min();
        assert_eq!(first_a, Some(5), "the first hit is kept");
        assert_eq!(
            sp.pending().map(|s| s.count).sum::<u64>(),
            400,
            "hits are summed, not lost"
        );
    }

    #[test]
    fn inbox_files_are_imported_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sp = Spool::open(dir.path(), 1 << 20).expect("open");
        write_inbox(dir.path(), &[s("fp.example", 0)]).expect("inbox");
        assert_eq!(sp.import_inbox().expect("import"), 1);
        assert_eq!(sp.import_inbox().expect("import"), 0);
        assert_eq!(sp.pending_count(), 1);
    }
}
