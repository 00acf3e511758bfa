//! The name history: per day, every name schild answered, with first and
//! last time, an approximate count of distinct clients and a few client
//! identifiers (in `sightings.client_privacy`'s form, made by the caller).
//! The SOC's "who resolved this, and since when" (`schild history`), and
//! what the retro-hunt looks new IOCs up in. Nothing of it leaves the
//! hospital.
//!
//! Today is a table in memory ([`Today`]), bounded by
//! `history.max_names_per_day`; it is written to its day file when the day
//! ends, at shutdown and every minute while it changes. A day file
//! (`state_dir/history/YYYY-MM-DD.hist`) is an fst map from the
//! **reversed** name (so a domain and the names below it are one key range)
//! to the offset of its record in a postcard blob, behind a header with an
//! xxh3 checksum that is checked before the fst is read: a damaged file is
//! an error, never a panic. Files older than `history.days` are deleted.
//!
//! Distinct clients are counted exactly up to 64 a name and day (a 32-bit
//! hash of each address), and beyond with a 128-bit linear-counting sketch
//! (one bit per client, chosen by the same hash): within about 20% up to a
//! few hundred, saturating near 600. Days and names combine (a union of
//! hashes, an OR of sketches).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

const MAGIC: &[u8; 8] = b"SCHILDHS";
const VERSION: u32 = 1;
/// magic, version, reserved, checksum, fst length.
const HEADER: usize = 8 + 4 + 4 + 8 + 8;
const DAY: u64 = 86_400;
const EXT: &str = "hist";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged: {what}")]
    Corrupt { path: PathBuf, what: String },
}

/// One name on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayRecord {
    /// Unix seconds of the first and the last query.
    pub first: u64,
    pub last: u64,
    /// The distinct-client sketch (see the module text).
    pub sketch: u128,
    /// Hashes of the first [`EXACT`] distinct clients: the exact count
    /// while there are fewer.
    #[serde(default)]
    pub hashes: Vec<u32>,
    /// Up to `clients_per_name` client identifiers, first seen first.
    pub clients: Vec<String>,
}

impl DayRecord {
    /// Distinct clients: exact below [`EXACT`], approximate above.
    pub fn distinct(&self) -> u64 {
        distinct(self.hashes.len(), self.sketch)
    }
}

/// Clients counted exactly (by a 32-bit hash each) per name and day;
/// beyond, the sketch estimates.
pub const EXACT: usize = 64;

/// Distinct clients from `exact` hashes kept (at most [`EXACT`]) and the
/// sketch.
pub fn distinct(exact: usize, sketch: u128) -> u64 {
    if exact < EXACT {
        exact as u64
    } else {
        estimate(sketch).max(EXACT as u64)
    }
}

/// A client's hash: a fixed one, so that days combine. The low bits pick
/// its sketch bit, the high ones are its exact-count hash.
fn client_hash(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(a) => xxhash_rust::xxh3::xxh3_64(&a.octets()),
        IpAddr::V6(a) => xxhash_rust::xxh3::xxh3_64(&a.octets()),
    }
}

/// The sketch bit of a client.
pub fn client_bit(ip: IpAddr) -> u128 {
    1u128 << (client_hash(ip) % 128)
}

/// Distinct clients behind a sketch: linear counting, -m ln(zeros / m).
pub fn estimate(sketch: u128) -> u64 {
    let ones = sketch.count_ones();
    if ones == 0 {
        return 0;
    }
    let m = 128.0_f64;
    let zeros = f64::from(128 - ones).max(0.5);
    (-m * (zeros / m).ln()).round().max(f64::from(ones)) as u64
}

/// The day (days since the epoch) of unix time `t`.
pub fn day_of(t: u64) -> u64 {
    t / DAY
}

/// The history's clock: the wall clock, or for tests the fixed unix time
/// in `SCHILD_HISTORY_NOW` (a test clock, to record two days in seconds).
pub fn now() -> u64 {
    static TEST: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    TEST.get_or_init(|| {
        std::env::var("SCHILD_HISTORY_NOW")
            .ok()
            .and_then(|v| v.trim().parse().ok())
    })
    .unwrap_or_else(crate::clock::unix_now)
}

/// `YYYY-MM-DD` of a day (proleptic Gregorian, UTC).
pub fn date(day: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn day_path(dir: &Path, day: u64) -> PathBuf {
    dir.join(format!("{}.{EXT}", date(day)))
}

/// The day files in `dir`, oldest first: (day, path).
pub fn day_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut days: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let stem = p.file_stem()?.to_str()?;
            (p.extension()? == EXT).then_some(())?;
            let day = parse_date(stem)?;
            Some((day, p))
        })
        .collect();
    days.sort();
    days
}

fn parse_date(s: &str) -> Option<u64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d): (i64, i64, i64) = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // days_from_civil
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let day = u64::try_from(days).ok()?;
    (date(day) == s).then_some(day)
}

/// Delete day files older than `keep` days before `today` (today counts as
/// one); returns how many.
pub fn expire(dir: &Path, today: u64, keep: u32) -> usize {
    let oldest = today.saturating_sub(u64::from(keep).saturating_sub(1));
    let mut n = 0;
    for (day, path) in day_files(dir) {
        if day < oldest && std::fs::remove_file(&path).is_ok() {
            n += 1;
        }
    }
    n
}

/// One name of today's table. Its text is in the table's arena; client
/// identifiers are indices into the table's client list, so a client
/// asking for many names costs its identifier once.
#[derive(Debug, Clone)]
struct Entry {
    /// Where the name is in the arena.
    at: u32,
    len: u8,
    first: u64,
    last: u64,
    sketch: u128,
    hashes: SmallVec<[u32; 4]>,
    clients: SmallVec<[u32; 2]>,
}

/// Today's names, in memory: one hash (xxh3) and one probe a query, the
/// names in one arena, the first few client hashes inline, so a repeated
/// name allocates nothing and a new one only grows the table.
#[derive(Debug)]
pub struct Today {
    day: u64,
    max_names: usize,
    clients_per_name: usize,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// Indices into `entries`, by the name's hash.
    index: HashTable<u32>,
    /// Indices into `client_ids` and `client_addrs`, by the client's hash.
    client_index: HashTable<u32>,
    client_addrs: Vec<IpAddr>,
    client_ids: Vec<String>,
    /// Names not recorded because the table was full.
    pub dropped: u64,
    dirty: bool,
}

fn name_hash(name: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name)
}

fn name_of<'a>(arena: &'a [u8], e: &Entry) -> &'a [u8] {
    &arena[e.at as usize..e.at as usize + usize::from(e.len)]
}

impl Today {
    pub fn new(day: u64, max_names: usize, clients_per_name: usize) -> Today {
        Today {
            day,
            max_names,
            clients_per_name,
            arena: Vec::new(),
            entries: Vec::new(),
            index: HashTable::new(),
            client_index: HashTable::new(),
            client_addrs: Vec::new(),
            client_ids: Vec::new(),
            dropped: 0,
            dirty: false,
        }
    }

    /// Today's table, with what an earlier run wrote for this day (a
    /// restart keeps the day). A damaged file is reported and left out.
    pub fn resume(dir: &Path, day: u64, max_names: usize, clients_per_name: usize) -> Today {
        let mut t = Today::new(day, max_names, clients_per_name);
        let path = day_path(dir, day);
        if !path.exists() {
            return t;
        }
        match DayFile::open(&path) {
            Ok(f) => {
                f.each(|name, rec| {
                    let Some(i) = t.insert(name.as_bytes(), name_hash(name.as_bytes()), rec.first)
                    else {
                        return;
                    };
                    let mut clients = SmallVec::new();
                    for id in rec.clients.into_iter().take(clients_per_name) {
                        // Identifiers from a file have no address: they are
                        // kept, not looked up.
                        t.client_ids.push(id);
                        clients.push((t.client_ids.len() - 1) as u32);
                    }
                    let e = &mut t.entries[i as usize];
                    e.last = rec.last;
                    e.sketch = rec.sketch;
                    e.hashes = rec.hashes.into_iter().take(EXACT).collect();
                    e.clients = clients;
                });
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "today's name history is unreadable; starting it afresh")
            }
        }
        t
    }

    pub fn day(&self) -> u64 {
        self.day
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether something was recorded since the last write.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// What today holds for `name`.
    pub fn get(&self, name: &str) -> Option<DayRecord> {
        let name = name.as_bytes();
        let i = *self.index.find(name_hash(name), |&i| {
            name_of(&self.arena, &self.entries[i as usize]) == name
        })?;
        let e = &self.entries[i as usize];
        Some(DayRecord {
            first: e.first,
            last: e.last,
            sketch: e.sketch,
            hashes: e.hashes.to_vec(),
            clients: e
                .clients
                .iter()
                .filter_map(|&c| self.client_ids.get(c as usize).cloned())
                .collect(),
        })
    }

    /// A new name's entry (first and last `at`), or `None` when the table
    /// is full or the name too long.
    fn insert(&mut self, name: &[u8], hash: u64, at: u64) -> Option<u32> {
        let len = u8::try_from(name.len()).ok()?;
        let start = u32::try_from(self.arena.len()).ok()?;
        if self.entries.len() >= self.max_names {
            return None;
        }
        self.arena.extend_from_slice(name);
        self.entries.push(Entry {
            at: start,
            len,
            first: at,
            last: at,
            sketch: 0,
            hashes: SmallVec::new(),
            clients: SmallVec::new(),
        });
        let i = (self.entries.len() - 1) as u32;
        let (arena, entries) = (&self.arena, &self.entries);
        self.index.insert_unique(hash, i, |&j| {
            name_hash(name_of(arena, &entries[j as usize]))
        });
        Some(i)
    }

    /// Record `name` (normal form) asked by `client` at `at`. `id` makes
    /// the client's identifier, once per client and day (`None`: leave it
    /// out). False when the table is full and the name is new.
    pub fn record(
        &mut self,
        name: &str,
        client: IpAddr,
        at: u64,
        id: impl FnOnce(IpAddr) -> Option<String>,
    ) -> bool {
        let ch = client_hash(client);
        let (bit, h32) = (1u128 << (ch % 128), (ch >> 32) as u32);
        let name = name.as_bytes();
        let nh = name_hash(name);
        let (arena, entries) = (&self.arena, &self.entries);
        let found = self
            .index
            .find(nh, |&i| name_of(arena, &entries[i as usize]) == name)
            .copied();
        let i = match found {
            Some(i) => i,
            None => match self.insert(name, nh, at) {
                Some(i) => i,
                None => {
                    self.dropped += 1;
                    return false;
                }
            },
        } as usize;
        self.dirty = true;
        let e = &self.entries[i];
        let new_client = if e.hashes.len() < EXACT {
            !e.hashes.contains(&h32)
        } else {
            e.sketch & bit == 0
        };
        let idx = if new_client && e.clients.len() < self.clients_per_name {
            let addrs = &self.client_addrs;
            match self
                .client_index
                .find(ch, |&c| addrs[c as usize] == client)
                .copied()
            {
                Some(c) => Some(c),
                None => id(client).map(|text| {
                    self.client_ids.push(text);
                    self.client_addrs.push(client);
                    let c = (self.client_ids.len() - 1) as u32;
                    let addrs = &self.client_addrs;
                    self.client_index
                        .insert_unique(ch, c, |&d| client_hash(addrs[d as usize]));
                    c
                }),
            }
        } else {
            None
        };
        let e = &mut self.entries[i];
        e.first = e.first.min(at);
        e.last = e.last.max(at);
        e.sketch |= bit;
        if new_client && e.hashes.len() < EXACT {
            e.hashes.push(h32);
        }
        if let Some(c) = idx
            && !e.clients.contains(&c)
        {
            e.clients.push(c);
        }
        true
    }

    /// Write the table to its day file (atomically) and mark it clean.
    pub fn write(&mut self, dir: &Path) -> Result<PathBuf, HistoryError> {
        let path = day_path(dir, self.day);
        let failed = |e: &dyn std::fmt::Display| HistoryError::Write {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        };
        // The keys, reversed, in one buffer: (start, entry).
        let mut rev = Vec::with_capacity(self.arena.len());
        let mut keys: Vec<(u32, u32)> = Vec::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            let start = rev.len() as u32;
            rev.extend(name_of(&self.arena, e).iter().rev());
            keys.push((start, i as u32));
        }
        let key = |&(start, i): &(u32, u32)| {
            let len = usize::from(self.entries[i as usize].len);
            &rev[start as usize..start as usize + len]
        };
        keys.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        let mut blob = Vec::new();
        let mut builder = fst::MapBuilder::memory();
        let mut clients: Vec<&str> = Vec::new();
        for k in &keys {
            let e = &self.entries[k.1 as usize];
            let off = blob.len() as u64;
            clients.clear();
            clients.extend(
                e.clients
                    .iter()
                    .filter_map(|&c| self.client_ids.get(c as usize).map(String::as_str)),
            );
            // The layout of a postcard DayRecord, borrowed.
            let rec = (e.first, e.last, e.sketch, &e.hashes[..], &clients[..]);
            blob.extend_from_slice(&[0; 4]);
            blob = postcard::to_extend(&rec, blob).map_err(|e| failed(&e))?;
            let len = (blob.len() - off as usize - 4) as u32;
            blob[off as usize..off as usize + 4].copy_from_slice(&len.to_le_bytes());
            builder.insert(key(k), off).map_err(|e| failed(&e))?;
        }
        let fst_bytes = builder.into_inner().map_err(|e| failed(&e))?;
        // The two parts are written after the header as they are: a day of
        // a busy resolver is tens of MB, not to be copied once more.
        let mut sum = xxhash_rust::xxh3::Xxh3::new();
        sum.update(&fst_bytes);
        sum.update(&blob);
        let mut head = Vec::with_capacity(HEADER);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        head.extend_from_slice(&sum.digest().to_le_bytes());
        head.extend_from_slice(&(fst_bytes.len() as u64).to_le_bytes());
        debug_assert_eq!(head.len(), HEADER);
        std::fs::create_dir_all(dir).map_err(|source| HistoryError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        crate::fs::write_atomic_parts(&path, &[&head, &fst_bytes, &blob]).map_err(|source| {
            HistoryError::Write {
                path: path.clone(),
                source,
            }
        })?;
        self.dirty = false;
        Ok(path)
    }
}

/// A part of a memory-mapped file.
struct Part {
    map: std::sync::Arc<memmap2::Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

/// One day's file, mapped and checked (checksum first: the fst reader
/// trusts its bytes).
pub struct DayFile {
    path: PathBuf,
    map: fst::Map<Part>,
    blob: Part,
}

impl DayFile {
    pub fn open(path: &Path) -> Result<DayFile, HistoryError> {
        let read = |source| HistoryError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        // SAFETY: the file is ours (state_dir), replaced only by rename,
        // never written in place; a damaged one fails the checksum below.
        #[allow(unsafe_code)]
        let mapped = unsafe { memmap2::Mmap::map(&file) }.map_err(read)?;
        let mapped = std::sync::Arc::new(mapped);
        let bytes: &[u8] = &mapped;
        let corrupt = |what: &str| HistoryError::Corrupt {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(corrupt("not a name history file"));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut v = [0u8; 4];
        v.copy_from_slice(&bytes[8..12]);
        if u32::from_le_bytes(v) != VERSION {
            return Err(corrupt("another format version"));
        }
        if xxhash_rust::xxh3::xxh3_64(&bytes[HEADER..]) != u64_at(16) {
            return Err(corrupt("checksum mismatch"));
        }
        let fst_len = usize::try_from(u64_at(24)).unwrap_or(usize::MAX);
        if fst_len > bytes.len() - HEADER {
            return Err(corrupt("index longer than the file"));
        }
        let len = bytes.len();
        let blob = Part {
            map: mapped.clone(),
            start: HEADER + fst_len,
            end: len,
        };
        let map = fst::Map::new(Part {
            map: mapped.clone(),
            start: HEADER,
            end: HEADER + fst_len,
        })
        .map_err(|e| corrupt(&e.to_string()))?;
        Ok(DayFile {
            path: path.to_path_buf(),
            map,
            blob,
        })
    }

    fn record(&self, off: u64) -> Option<DayRecord> {
        let blob = self.blob.as_ref();
        let off = usize::try_from(off).ok()?;
        let len = blob.get(off..off.checked_add(4)?)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let bytes = blob.get(off + 4..(off + 4).checked_add(len)?)?;
        postcard::from_bytes(bytes).ok()
    }

    /// Every name and record, in key order.
    pub fn each(&self, mut f: impl FnMut(&str, DayRecord)) {
        use fst::Streamer;
        let mut s = self.map.stream();
        while let Some((k, off)) = s.next() {
            let name: Vec<u8> = k.iter().rev().copied().collect();
            if let (Ok(name), Some(rec)) = (std::str::from_utf8(&name), self.record(off)) {
                f(name, rec);
            }
        }
    }

    /// The records for `name` and (with `below`) the names under it.
    pub fn lookup(&self, name: &str, exact: bool, below: bool) -> Vec<(String, DayRecord)> {
        use fst::{IntoStreamer, Streamer};
        let key: Vec<u8> = name.bytes().rev().collect();
        let mut upper = key.clone();
        upper.push(b'.' + 1);
        let mut out = Vec::new();
        let mut s = self.map.range().ge(&key).lt(&upper).into_stream();
        while let Some((k, off)) = s.next() {
            let is_exact = k == key.as_slice();
            let is_below = k.len() > key.len() && k[key.len()] == b'.';
            if !((exact && is_exact) || (below && is_below)) {
                continue;
            }
            let n: Vec<u8> = k.iter().rev().copied().collect();
            match (String::from_utf8(n), self.record(off)) {
                (Ok(n), Some(rec)) => out.push((n, rec)),
                _ => {
                    tracing::warn!(file = %self.path.display(), "a damaged record in the name history skipped")
                }
            }
        }
        out
    }
}

/// The days on disk, opened once for many lookups (a retro-hunt).
pub struct History {
    days: Vec<(u64, DayFile)>,
}

impl History {
    /// Open every day file in `dir`; unreadable ones are reported and
    /// skipped.
    pub fn open(dir: &Path) -> History {
        let mut days = Vec::new();
        for (day, path) in day_files(dir) {
            match DayFile::open(&path) {
                Ok(f) => days.push((day, f)),
                Err(e) => {
                    tracing::warn!(error = %crate::error::error_chain(&e), "a day of the name history is unreadable; skipped")
                }
            }
        }
        History { days }
    }

    /// What the history holds for a name, day by day, oldest first: the
    /// day, then each matching name (`exact`: the name; `below`: the names
    /// under it) and its record.
    pub fn lookup(
        &self,
        name: &str,
        exact: bool,
        below: bool,
    ) -> Vec<(u64, Vec<(String, DayRecord)>)> {
        self.days
            .iter()
            .filter_map(|(day, f)| {
                let v = f.lookup(name, exact, below);
                (!v.is_empty()).then_some((*day, v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(19_723), "2024-01-01");
        for d in [0, 59, 60, 19_723, 20_000, 40_000] {
            assert_eq!(parse_date(&date(d)), Some(d));
        }
        assert_eq!(parse_date("2024-02-30"), None);
    }

    #[test]
    fn clients_are_counted_exactly_when_few_and_roughly_when_many() {
        let mut t = Today::new(1, 10, 1);
        for i in 0..40u8 {
            for _ in 0..2 {
                t.record("n.example", IpAddr::from([10, 0, 1, i]), 1, |_| None);
            }
        }
        assert_eq!(t.get("n.example").expect("recorded").distinct(), 40);
        let mut s = 0u128;
        for i in 0..200u8 {
            s |= client_bit(IpAddr::from([10, 0, 2, i]));
        }
        let n = distinct(EXACT, s);
        assert!((150..=260).contains(&n), "{n}");
        assert_eq!(estimate(0), 0);
    }

    #[test]
    fn a_day_is_written_read_and_looked_up_by_subtree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = Today::new(20_000, 10, 2);
        let id = |c: IpAddr| Some(format!("c-{c}"));
        assert!(t.record("a.shop.example", ip("127.0.0.2"), 100, id));
        assert!(t.record("a.shop.example", ip("127.0.0.3"), 50, id));
        assert!(t.record("a.shop.example", ip("127.0.0.4"), 200, id));
        assert!(t.record("b.shop.example", ip("127.0.0.3"), 150, id));
        assert!(t.record("shop.example", ip("127.0.0.3"), 150, id));
        assert!(t.record("othershop.example", ip("127.0.0.3"), 150, id));
        t.write(dir.path()).expect("write");
        let f = DayFile::open(&day_path(dir.path(), 20_000)).expect("open");
        let got = f.lookup("shop.example", true, true);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["shop.example", "a.shop.example", "b.shop.example"]);
        let a = &got[1].1;
        assert_eq!((a.first, a.last), (50, 200));
        assert_eq!(a.clients, ["c-127.0.0.2", "c-127.0.0.3"], "capped at 2");
        assert_eq!(a.distinct(), 3, "exact for few clients");
        assert_eq!(f.lookup("shop.example", false, true).len(), 2);
        assert_eq!(f.lookup("shop.example", true, false).len(), 1);
        // A restart resumes the day.
        let mut r = Today::resume(dir.path(), 20_000, 10, 2);
        assert_eq!(r.len(), 4);
        r.write(dir.path()).expect("write");
        let again = DayFile::open(&day_path(dir.path(), 20_000)).expect("open");
        assert_eq!(again.lookup("shop.example", true, true), got);
    }

    #[test]
    fn the_table_is_bounded_and_damage_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = Today::new(1, 3, 1);
        for i in 0..10 {
            t.record(&format!("n{i}.example"), ip("127.0.0.2"), 1, |_| None);
        }
        assert_eq!((t.len(), t.dropped), (3, 7));
        let path = t.write(dir.path()).expect("write");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        assert!(matches!(
            DayFile::open(&path),
            Err(HistoryError::Corrupt { .. })
        ));
        std::fs::write(&path, b"SCHILDHS").expect("write");
        assert!(DayFile::open(&path).is_err());
        assert!(
            History::open(dir.path())
                .lookup("n1.example", true, true)
                .is_empty()
        );
    }

    #[test]
    fn a_day_of_three_million_names_stays_within_its_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let max = 200_000;
        let mut t = Today::new(7, max, 2);
        let mut name = String::new();
        for i in 0..3_000_000u32 {
            use std::fmt::Write;
            name.clear();
            let _ = write!(name, "host{i}.d{}.example", i % 1000);
            t.record(&name, IpAddr::from(i.to_be_bytes()), u64::from(i), |_| None);
        }
        assert_eq!(t.len(), max);
        assert_eq!(t.dropped, 3_000_000 - max as u64);
        let path = t.write(dir.path()).expect("write");
        let bytes = std::fs::metadata(&path).expect("stat").len();
        // About 20 bytes a name here (fst keys share their tails).
        assert!(bytes < 40 * max as u64, "{bytes} bytes");
        let f = DayFile::open(&path).expect("open");
        assert_eq!(f.lookup("host7.d7.example", true, false).len(), 1);
        assert!(f.lookup("host2999999.d999.example", true, false).is_empty());
    }

    #[test]
    fn old_days_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in [10, 11, 12, 13] {
            Today::new(d, 1, 1).write(dir.path()).expect("write");
        }
        assert_eq!(expire(dir.path(), 13, 2), 2);
        let left: Vec<u64> = day_files(dir.path()).into_iter().map(|(d, _)| d).collect();
        assert_eq!(left, [12, 13]);
    }
}
