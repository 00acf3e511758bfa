//! The name history's recorder: the query path hands each answered name
//! and its client to a bounded queue with `try_send` (a full queue drops
//! and counts, as `hits` does); one task aggregates them into today's
//! table ([`crate::history::Today`]), writes it to its day file every
//! minute while it changes, when the day ends and at shutdown, and expires
//! old days. The names travel in a fixed buffer: nothing is allocated on
//! the query path.
//!
//! A name a client asks again and again costs one hash and one look at a
//! lock-free table shared by the answering threads ([`Seen`]): a (name,
//! client) pair handed over in this minute is not handed over again until
//! the next (the recorder moves the minute on). So `last` is right to the minute, and a busy name costs the
//! recorder one update a minute per client, not one per query.
//!
//! The day file is rewritten whole (sorted, as an fst), so its cost grows
//! with the day: it is written every minute while the table changes, but
//! after a write that took `d`, not again for `WRITE_SHARE * d`, which
//! keeps the writes under 1/`WRITE_SHARE` of a core however large the
//! day grows.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::LowerName;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::error_chain;
use crate::history::{self, Today};
use crate::sightings::log::Pseudonymiser;

/// Queued names before new ones are dropped.
const QUEUE: usize = 65_536;
/// How often today's table is written while it changes.
const FLUSH: Duration = Duration::from_secs(60);
/// After a write that took `d`, the next periodic one waits at least
/// `WRITE_SHARE * d`.
const WRITE_SHARE: u32 = 100;

/// Slots of the "handed over this minute" table (512 KiB, one for all
/// the threads that answer: relaxed loads and stores, no lock).
const SEEN_SLOTS: usize = 1 << 16;

/// The (name, client) pairs handed over this minute, shared by the sink's
/// clones and the recorder, which moves the minute on.
struct Seen {
    /// A counter the recorder moves on every [`FLUSH`].
    minute: AtomicU32,
    /// Per slot: the high 48 bits of a (name, client) hash and the low 16
    /// bits of the minute it was handed over in. A collision only costs a
    /// hand-over; a false "seen" needs the same 48 bits in the same slot.
    slots: Box<[AtomicU64]>,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            minute: AtomicU32::new(1),
            slots: (0..SEEN_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The slot of a (name, client) hash, unless that pair was handed over
    /// already this minute (then nothing is new but `last`).
    fn first_this_minute(&self, h: u64) -> Option<usize> {
        let tag = (h & !0xffff) | u64::from(self.minute.load(Ordering::Relaxed) & 0xffff);
        let slot = (h as usize) % SEEN_SLOTS;
        let seen = &self.slots[slot];
        if seen.load(Ordering::Relaxed) == tag {
            return None;
        }
        seen.store(tag, Ordering::Relaxed);
        Some(slot)
    }

    /// A pair that was not handed over after all: the next query tries again.
    fn forget(&self, slot: usize) {
        self.slots[slot].store(0, Ordering::Relaxed);
    }

    fn next_minute(&self) {
        self.minute.fetch_add(1, Ordering::Relaxed);
    }
}

/// The bytes of a name the history keeps: lowercase letters, digits,
/// `-`, `_` and the dots between labels.
static NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    t
};

/// The client folded into the seed of the name's hash.
fn client_seed(client: IpAddr) -> u64 {
    match client.to_canonical() {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64).rotate_left(17)
        }
    }
}

/// A name as asked (lowercase labels joined by dots), inline.
struct Asked {
    len: u8,
    name: [u8; 255],
    client: IpAddr,
}

impl Asked {
    fn new(client: IpAddr) -> Asked {
        Asked {
            len: 0,
            name: [0; 255],
            client,
        }
    }

    /// The name so far.
    fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.len)]
    }

    /// Append a label (lowercased), after a dot unless it is the first;
    /// false when the name would be too long.
    fn push_label(&mut self, label: &[u8]) -> bool {
        let at = usize::from(self.len);
        let dot = usize::from(at > 0);
        let end = at + dot + label.len();
        if end > self.name.len() {
            return false;
        }
        if dot == 1 {
            self.name[at] = b'.';
        }
        for (d, s) in self.name[at + dot..end].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        self.len = end as u8;
        true
    }
}

/// The sending half, held by the query path. Never blocks, never allocates.
#[derive(Clone)]
pub struct HistorySink {
    tx: mpsc::Sender<Asked>,
    dropped: IntCounter,
    seen: Arc<Seen>,
}

impl HistorySink {
    /// Hand over an answered name, or count it as dropped.
    pub fn record(&self, name: &LowerName, client: IpAddr) {
        let mut a = Asked::new(client);
        for label in name.iter() {
            if !a.push_label(label) {
                return;
            }
        }
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(a.name(), client_seed(client));
        if let Some(slot) = self.seen.first_this_minute(h) {
            self.hand_over(a, slot);
        }
    }

    /// [`Self::record`] for a question's name in wire form (plain labels,
    /// as [`super::fast::parse`] leaves them), lowercased on the way.
    pub fn record_wire(&self, wire: &[u8], client: IpAddr) {
        // The wire form as asked is the key here (a 0x20 spelling is one
        // more hand-over, nothing else), so a repeat costs one hash.
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(wire, client_seed(client));
        let Some(slot) = self.seen.first_this_minute(h) else {
            return;
        };
        let mut a = Asked::new(client);
        let mut i = 0usize;
        while let Some(&len) = wire.get(i) {
            let len = usize::from(len);
            if len == 0 {
                break;
            }
            let (Some(label), true) = (wire.get(i + 1..i + 1 + len), len <= 63) else {
                return;
            };
            if !a.push_label(label) {
                return;
            }
            i += 1 + len;
        }
        self.hand_over(a, slot);
    }

    fn hand_over(&self, a: Asked, slot: usize) {
        if a.len == 0 {
            return; // the root
        }
        if self.tx.try_send(a).is_err() {
            self.dropped.inc();
            self.seen.forget(slot);
        }
    }
}

/// Today's table, shared with the retro-hunt.
pub type TodayHandle = Arc<Mutex<Today>>;

/// Start the recorder (with `[history]` days > 0): the sink for the
/// handler, today's table, and the task (until `cancel`, then a last
/// write).
pub fn start(
    config: &Config,
    dropped: IntCounter,
    cancel: CancellationToken,
) -> (HistorySink, TodayHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let seen = Arc::new(Seen::new());
    let h = &config.history;
    let dir = config.history_dir();
    let today = history::day_of(history::now());
    history::expire(&dir, today, h.days);
    let table = Arc::new(Mutex::new(Today::resume(
        &dir,
        today,
        h.max_names_per_day,
        h.clients_per_name,
    )));
    let pseudo = Pseudonymiser::new(
        config.sightings.client_privacy,
        config.pseudonym_key_path(),
        config.sightings.pseudonym_rotate,
    );
    let task = tokio::spawn(run(
        Recorder {
            dir,
            days: h.days,
            max_names: h.max_names_per_day,
            clients_per_name: h.clients_per_name,
            pseudo,
            table: table.clone(),
            dropped: dropped.clone(),
            reported_full: false,
            next_write: Instant::now(),
            seen: seen.clone(),
        },
        rx,
        cancel,
    ));
    (HistorySink { tx, dropped, seen }, table, task)
}

struct Recorder {
    dir: PathBuf,
    days: u32,
    max_names: usize,
    clients_per_name: usize,
    pseudo: Pseudonymiser,
    table: TodayHandle,
    dropped: IntCounter,
    reported_full: bool,
    /// No periodic write before this (see [`WRITE_SHARE`]).
    next_write: Instant,
    seen: Arc<Seen>,
}

impl Recorder {
    fn add(&mut self, batch: &[Asked]) {
        let now = history::now();
        let day = history::day_of(now);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.day() != day {
            // The day ended: write it, start the next, expire old ones.
            if let Err(e) = t.write(&self.dir) {
                tracing::error!(error = %error_chain(&e), "cannot write the name history of the day that ended");
            }
            *t = Today::new(day, self.max_names, self.clients_per_name);
            history::expire(&self.dir, day, self.days);
            self.reported_full = false;
        }
        for a in batch {
            let Ok(name) = std::str::from_utf8(a.name()) else {
                continue;
            };
            // Names as a resolver sees them; anything odd is not history.
            if !name.bytes().all(|b| NAME_BYTE[usize::from(b)]) {
                continue;
            }
            let pseudo = &mut self.pseudo;
            if !t.record(name, a.client, now, |ip| pseudo.client(ip)) {
                self.dropped.inc();
                if !self.reported_full {
                    self.reported_full = true;
                    tracing::warn!(
                        max_names_per_day = self.max_names,
                        "the name history of today is full; new names are not recorded until tomorrow"
                    );
                }
            }
        }
    }

    /// The minute's write, unless the last write asks for a longer pause.
    fn tick(&mut self) {
        self.seen.next_minute();
        if Instant::now() >= self.next_write {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !t.dirty() {
            return;
        }
        let started = Instant::now();
        if let Err(e) = t.write(&self.dir) {
            tracing::error!(error = %error_chain(&e), "cannot write the name history");
        }
        let took = started.elapsed();
        self.next_write = started + took * WRITE_SHARE;
        if took * WRITE_SHARE > FLUSH {
            tracing::debug!(
                names = t.len(),
                took_ms = took.as_millis() as u64,
                "the name history is large: written less often than every minute"
            );
        }
    }
}

async fn run(mut r: Recorder, mut rx: mpsc::Receiver<Asked>, cancel: CancellationToken) {
    // Ticks on the wall clock's minutes, so a new day starts with a new
    // minute for the query path's tables too.
    let into = crate::clock::unix_now() % FLUSH.as_secs();
    let first = tokio::time::Instant::now() + Duration::from_secs(FLUSH.as_secs() - into);
    let mut tick = tokio::time::interval_at(first, FLUSH);
    let mut batch = Vec::with_capacity(512);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 512) => {
                if n == 0 {
                    break;
                }
                r.add(&batch);
                batch.clear();
                // Let the queue fill a while before the next take: one
                // wake-up per pace, not one per query (see sightings::PACE).
                tokio::select! {
                    _ = tokio::time::sleep(crate::sightings::PACE) => {}
                    _ = cancel.cancelled() => break,
                }
            }
            _ = tick.tick() => r.tick(),
            _ = cancel.cancelled() => break,
        }
    }
    // What is still queued, then the last write.
    while let Ok(a) = rx.try_recv() {
        batch.push(a);
    }
    r.add(&batch);
    r.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(name: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for l in name.split('.') {
            w.push(l.len() as u8);
            w.extend_from_slice(l.as_bytes());
        }
        w.push(0);
        w
    }

    fn sink(capacity: usize) -> (HistorySink, mpsc::Receiver<Asked>) {
        let (tx, rx) = mpsc::channel(capacity);
        let dropped = IntCounter::new("d", "d").expect("counter");
        let seen = Arc::new(Seen::new());
        (HistorySink { tx, dropped, seen }, rx)
    }

    fn names(rx: &mut mpsc::Receiver<Asked>) -> Vec<(String, IpAddr)> {
        let mut v = Vec::new();
        while let Ok(a) = rx.try_recv() {
            let n = String::from_utf8_lossy(a.name()).into_owned();
            v.push((n, a.client));
        }
        v
    }

    #[test]
    fn a_pair_is_handed_over_once_a_minute_and_a_full_queue_loses_nothing_for_good() {
        let (s, mut rx) = sink(16);
        let (c1, c2): (IpAddr, IpAddr) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        for _ in 0..5 {
            s.record_wire(&wire("Www.Example.ORG"), c1);
        }
        s.record_wire(&wire("www.example.org"), c2);
        let got = names(&mut rx);
        assert_eq!(
            got,
            [
                ("www.example.org".to_string(), c1),
                ("www.example.org".to_string(), c2)
            ],
            "lowercased, once per client"
        );
        // The next minute hands the pair over again.
        s.seen.next_minute();
        s.record_wire(&wire("www.example.org"), c1);
        s.record_wire(&wire("www.example.org"), c1);
        assert_eq!(names(&mut rx).len(), 1);

        // A full queue counts the drop and forgets the pair: the next
        // query of it is handed over.
        let (s, mut rx) = sink(1);
        s.record_wire(&wire("a.example"), c1);
        s.record_wire(&wire("b.example"), c1);
        assert_eq!(s.dropped.get(), 1);
        assert_eq!(names(&mut rx).len(), 1);
        s.record_wire(&wire("b.example"), c1);
        assert_eq!(names(&mut rx), [("b.example".to_string(), c1)]);
        // Broken wire forms are not history.
        s.record_wire(&[3, b'a', b'b'], c1);
        s.record_wire(&[0], c1);
        assert!(names(&mut rx).is_empty());
    }
}
