//! The packet cache: whole UDP answers kept in wire form, in front of the
//! record cache, as PowerDNS Recursor keeps them.
//!
//! An answer the full path sent is kept when nothing about it depends on
//! more than the question: no policy hit was recorded while it was made
//! (a hit must be seen every time), the client is in no client group, and
//! it is a fresh NOERROR or NXDOMAIN from a route (not stale, not an
//! error). The key is the question as the answer depends on it: the
//! case-folded name, the type, EDNS or not, DO, CD, AD, the response's
//! payload size, and whether the allowlist exempted the name.
//!
//! An entry is replayed only while everything it was made under is still
//! in place: the policy, the handler settings, the resolver, the routes and
//! the client groups it saw (held as `Weak`s, so an old list is freed at
//! once and its address cannot be taken by a new one while an entry
//! points at it), no flush since, and its smallest TTL not yet run out. On
//! the way out the ID and the client's spelling of its name (0x20) are
//! restored and every TTL is aged by the time spent here.
//!
//! The store is set-associative, as a CPU cache is: a key's seeded hash
//! picks one set of [`WAYS`] entries under its own lock, a replay copies
//! the answer out under that lock, and a new entry takes an empty way, else
//! one that can no longer be replayed, else the least recently used. A
//! lookup costs one hash, one uncontended lock and at most [`WAYS`] key
//! compares, whatever the clients ask: no chain grows, so there is no hash
//! flood to fear, and nothing is bookkept on a read but a counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use hickory_proto::op::ResponseCode;
use prometheus::IntCounter;

use super::fast::Query;
use super::groups::PerNetwork;
use super::handler::HandlerConfig;
use super::resolve::Resolver;
use super::route::Routes;
use crate::policy::Policy;

/// Everything an answer was made under, compared by identity.
pub struct Generation {
    policy: Option<Weak<Policy>>,
    config: Weak<HandlerConfig>,
    resolver: Weak<Resolver>,
    routes: Weak<Routes>,
    groups: Weak<PerNetwork>,
}

/// The swappable parts of the server a [`Generation`] is taken of.
pub struct Parts<'a> {
    pub policy: &'a ArcSwapOption<Policy>,
    pub config: &'a arc_swap::ArcSwap<HandlerConfig>,
    pub resolver: &'a arc_swap::ArcSwap<Resolver>,
    pub routes: &'a arc_swap::ArcSwap<Routes>,
    pub groups: &'a arc_swap::ArcSwap<PerNetwork>,
}

impl Parts<'_> {
    pub fn generation(&self) -> Generation {
        Generation {
            policy: self.policy.load().as_ref().map(Arc::downgrade),
            config: Arc::downgrade(&self.config.load()),
            resolver: Arc::downgrade(&self.resolver.load()),
            routes: Arc::downgrade(&self.routes.load()),
            groups: Arc::downgrade(&self.groups.load()),
        }
    }

    fn current(&self, g: &Generation) -> bool {
        let policy = match (&g.policy, self.policy.load().as_ref()) {
            (Some(w), Some(p)) => std::ptr::eq(w.as_ptr(), Arc::as_ptr(p)),
            (None, None) => true,
            _ => false,
        };
        policy
            && std::ptr::eq(g.config.as_ptr(), Arc::as_ptr(&self.config.load()))
            && std::ptr::eq(g.resolver.as_ptr(), Arc::as_ptr(&self.resolver.load()))
            && std::ptr::eq(g.routes.as_ptr(), Arc::as_ptr(&self.routes.load()))
            && std::ptr::eq(g.groups.as_ptr(), Arc::as_ptr(&self.groups.load()))
    }
}

/// What the full path says of an answer it sent that may be kept.
pub struct Keep {
    pub generation: Generation,
    /// The flush epoch when the question came in: an answer resolved
    /// before a flush is not kept after it.
    pub epoch: u64,
    pub key: Vec<u8>,
    /// The route's query counter, counted again on every replay.
    pub route: IntCounter,
}

struct Packet {
    wire: Box<[u8]>,
    stored: Instant,
    /// Seconds it may be replayed: its smallest TTL.
    ttl: u32,
    /// Where each TTL field is (the OPT record's is not a TTL).
    ttl_at: Box<[u16]>,
    /// Where the question name is written out again in full (an owner
    /// hickory could not compress into the question, whose octets it
    /// copies as they came): each gets the asker's spelling too.
    spell_at: Box<[u16]>,
    rcode: ResponseCode,
    epoch: u64,
    generation: Generation,
    route: IntCounter,
}

impl Packet {
    /// Whether it may still be replayed `age` seconds after it was kept.
    fn live(&self, age: u64, epoch: u64, parts: &Parts<'_>) -> bool {
        age < u64::from(self.ttl) && self.epoch == epoch && parts.current(&self.generation)
    }
}

/// What a replay hands back for the metrics (the route's counter is
/// counted by the replay itself).
pub struct Replayed {
    pub rcode: ResponseCode,
}

/// The entries of one set.
pub const WAYS: usize = 4;

#[derive(Default)]
struct Set {
    /// Boxed, so an empty set is a few words: the table is made whole at
    /// start, the entries as answers come.
    ways: [Option<Box<Entry>>; WAYS],
    /// Bumped on every use of an entry of this set: the LRU clock.
    tick: u32,
}

struct Entry {
    key: Box<[u8]>,
    packet: Packet,
    used: u32,
}

pub struct PacketCache {
    sets: Box<[Mutex<Set>]>,
    /// `sets.len() - 1` (a power of two).
    mask: usize,
    /// The hash seed, drawn at start: which keys share a set cannot be
    /// known from outside.
    seed: u64,
    entries: AtomicU64,
    /// Bumped by a flush: every older entry is void.
    epoch: AtomicU64,
}

impl std::fmt::Debug for PacketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketCache")
            .field("entries", &self.entries())
            .field("sets", &self.sets.len())
            .finish()
    }
}

/// The key flags.
const EDNS: u8 = 1;
const DO: u8 = 2;
const CD: u8 = 4;
const AD: u8 = 8;
const EXEMPT: u8 = 16;

/// The longest key: a 255-octet name, type, flags, payload.
pub const KEY_MAX: usize = 255 + 2 + 1 + 2;

/// The key of `q` into `buf` (a stack buffer on the replay side).
pub fn key_into<'b>(
    buf: &'b mut [u8; KEY_MAX],
    q: &Query<'_>,
    payload: Option<u16>,
    exempt: bool,
) -> &'b [u8] {
    let n = q.name.len();
    for (d, s) in buf.iter_mut().zip(q.name) {
        *d = s.to_ascii_lowercase();
    }
    buf[n..n + 2].copy_from_slice(&q.qtype.to_be_bytes());
    let mut flags = 0;
    if let Some(e) = q.edns {
        flags |= EDNS;
        if e.dnssec_ok {
            flags |= DO;
        }
    }
    if q.flags & 0x0010 != 0 {
        flags |= CD;
    }
    if q.flags & 0x0020 != 0 {
        flags |= AD;
    }
    if exempt {
        flags |= EXEMPT;
    }
    buf[n + 2] = flags;
    buf[n + 3..n + 5].copy_from_slice(&payload.unwrap_or(0).to_be_bytes());
    &buf[..n + 5]
}

impl PacketCache {
    /// Room for about `entries` answers (a power of two of sets, at
    /// least one).
    pub fn new(entries: u64) -> PacketCache {
        let want = usize::try_from(entries / WAYS as u64).unwrap_or(usize::MAX);
        let sets = want.clamp(1, 1 << 24).next_power_of_two();
        PacketCache {
            sets: (0..sets).map(|_| Mutex::default()).collect(),
            mask: sets - 1,
            seed: rand::random(),
            entries: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        }
    }

    fn set(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Set> {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(key, self.seed);
        let i = (h as usize) & self.mask;
        // A panic while a set is held leaves it whole (every change is one
        // assignment): a poisoned set is used as it is.
        self.sets[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Void every entry (an admin flush).
    pub fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for set in &self.sets {
            let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
            for way in &mut set.ways {
                if way.take().is_some() {
                    self.entries.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// The flush epoch now (see [`Keep::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keep `wire`, the answer the full path sent, if it can be replayed.
    pub fn insert(&self, keep: Keep, wire: &[u8], parts: &Parts<'_>) {
        if !parts.current(&keep.generation) || keep.epoch != self.epoch() {
            return; // something was swapped, or a flush came, while it was made
        }
        let Some(Scan {
            ttl_at,
            spell_at,
            ttl,
            rcode,
        }) = scan(wire)
        else {
            return;
        };
        if ttl == 0 || !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
            return;
        }
        let packet = Packet {
            wire: wire.into(),
            stored: Instant::now(),
            ttl,
            ttl_at: ttl_at.into(),
            spell_at: spell_at.into(),
            rcode,
            epoch: keep.epoch,
            generation: keep.generation,
            route: keep.route,
        };
        let epoch = self.epoch();
        let now = Instant::now();
        let mut set = self.set(&keep.key);
        set.tick = set.tick.wrapping_add(1);
        let used = set.tick;
        let dead = |p: &Packet| !p.live(now.duration_since(p.stored).as_secs(), epoch, parts);
        let i = pick_way(&set, &keep.key, used, dead);
        if set.ways[i].is_none() {
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        set.ways[i] = Some(Box::new(Entry {
            key: keep.key.into(),
            packet,
            used,
        }));
    }

    /// Write the kept answer to `q` into `out`, if there is a current one.
    pub fn replay(
        &self,
        key: &[u8],
        q: &Query<'_>,
        parts: &Parts<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Replayed> {
        let epoch = self.epoch();
        let mut set = self.set(key);
        let tick = set.tick.wrapping_add(1);
        let e = set.ways.iter_mut().flatten().find(|e| *e.key == *key)?;
        let p = &e.packet;
        let age = p.stored.elapsed().as_secs();
        if !p.live(age, epoch, parts) {
            return None;
        }
        e.used = tick;
        let age = age as u32;
        out.clear();
        out.extend_from_slice(&p.wire);
        out[..2].copy_from_slice(&q.id.to_be_bytes());
        // The kept question has the same name, maybe spelled otherwise.
        out.get_mut(12..12 + q.name.len())?.copy_from_slice(q.name);
        for &at in p.spell_at.iter() {
            let at = usize::from(at);
            out.get_mut(at..at + q.name.len())?.copy_from_slice(q.name);
        }
        for &at in p.ttl_at.iter() {
            let at = usize::from(at);
            let field = out.get_mut(at..at + 4)?;
            let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
        }
        p.route.inc();
        let rcode = p.rcode;
        set.tick = tick;
        Some(Replayed { rcode })
    }
}

/// The way a new entry for `key` goes into: the one that holds `key`, an
/// empty one, a dead one, or the least recently used (ticks compared as
/// distances from `now_tick`, so a wrapped clock still orders them).
fn pick_way(set: &Set, key: &[u8], now_tick: u32, dead: impl Fn(&Packet) -> bool) -> usize {
    let ways = &set.ways;
    let find = |f: &dyn Fn(&Option<Box<Entry>>) -> bool| ways.iter().position(f);
    find(&|w| w.as_ref().is_some_and(|e| *e.key == *key))
        .or_else(|| find(&Option::is_none))
        .or_else(|| find(&|w| w.as_ref().is_some_and(|e| dead(&e.packet))))
        .or_else(|| {
            (0..WAYS).max_by_key(|&i| {
                ways[i]
                    .as_ref()
                    .map_or(u32::MAX, |e| now_tick.wrapping_sub(e.used))
            })
        })
        .unwrap_or(0)
}

/// What [`scan`] finds in an answer.
struct Scan {
    ttl_at: Vec<u16>,
    spell_at: Vec<u16>,
    /// The smallest TTL.
    ttl: u32,
    rcode: ResponseCode,
}

/// The TTL offsets of `wire`, where its owners repeat the question name in
/// full, its smallest TTL and its rcode; `None` if it does not read as one
/// question and whole records.
fn scan(wire: &[u8]) -> Option<Scan> {
    let u16_at = |at: usize| Some(u16::from_be_bytes([*wire.get(at)?, *wire.get(at + 1)?]));
    let rcode = ResponseCode::from(0, (u16_at(2)? & 0x000f) as u8);
    if u16_at(4)? != 1 {
        return None;
    }
    let records = usize::from(u16_at(6)?) + usize::from(u16_at(8)?) + usize::from(u16_at(10)?);
    let qname_end = skip_name(wire, 12)?;
    let qname = wire.get(12..qname_end)?;
    let mut at = qname_end + 4;
    let mut ttl_at = Vec::with_capacity(records);
    let mut spell_at = Vec::new();
    let mut min = u32::MAX;
    for _ in 0..records {
        if wire
            .get(at..at + qname.len())
            .is_some_and(|owner| owner.eq_ignore_ascii_case(qname))
        {
            spell_at.push(u16::try_from(at).ok()?);
        }
        at = skip_name(wire, at)?;
        let rtype = u16_at(at)?;
        let ttl = wire.get(at + 4..at + 8)?;
        if rtype != 41 {
            min = min.min(u32::from_be_bytes([ttl[0], ttl[1], ttl[2], ttl[3]]));
            ttl_at.push(u16::try_from(at + 4).ok()?);
        }
        let rdlen = usize::from(u16_at(at + 8)?);
        at += 10 + rdlen;
    }
    if at != wire.len() {
        return None;
    }
    // An answer with no records at all (no SOA) is not kept.
    (min != u32::MAX).then_some(Scan {
        ttl_at,
        spell_at,
        ttl: min,
        rcode,
    })
}

/// The offset after the name at `at` (labels, ending in the root or a
/// compression pointer).
fn skip_name(wire: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *wire.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => {
                wire.get(at + 1)?;
                return Some(at + 2);
            }
            l if l <= 63 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, Query as HQuery};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn answer(ttls: &[u32]) -> Vec<u8> {
        let mut m = Message::response(0x0101, hickory_proto::op::OpCode::Query);
        let name = Name::from_ascii("Host.Example.").expect("test data");
        m.add_query(HQuery::query(name.clone(), RecordType::A));
        for (i, ttl) in ttls.iter().enumerate() {
            m.add_answer(Record::from_rdata(
                name.clone(),
                *ttl,
                RData::A(A::new(10, 0, 0, i as u8)),
            ));
        }
        m.edns = Some(Edns::new());
        m.to_vec().expect("test data")
    }

    #[test]
    fn scan_finds_every_ttl_but_the_opts() {
        let wire = answer(&[300, 60]);
        let Scan {
            ttl_at: at,
            ttl: min,
            rcode,
            ..
        } = scan(&wire).expect("scans");
        assert_eq!(at.len(), 2);
        assert_eq!(min, 60);
        assert_eq!(rcode, ResponseCode::NoError);
        for a in at {
            let a = usize::from(a);
            let ttl = u32::from_be_bytes(wire[a..a + 4].try_into().expect("test data"));
            assert!(ttl == 300 || ttl == 60);
        }
        assert!(scan(&wire[..wire.len() - 1]).is_none(), "cut short");
        assert!(scan(&answer(&[])).is_none(), "no records");
    }

    fn entry(key: &[u8], used: u32, ttl: u32) -> Option<Box<Entry>> {
        Some(Box::new(Entry {
            key: key.into(),
            packet: Packet {
                wire: Box::new([]),
                stored: Instant::now(),
                ttl,
                ttl_at: Box::new([]),
                spell_at: Box::new([]),
                rcode: ResponseCode::NoError,
                epoch: 0,
                generation: Generation {
                    policy: None,
                    config: Weak::new(),
                    resolver: Weak::new(),
                    routes: Weak::new(),
                    groups: Weak::new(),
                },
                route: IntCounter::new("t", "t").expect("test counter"),
            },
            used,
        }))
    }

    #[test]
    fn a_new_answer_replaces_its_key_then_a_free_a_dead_and_the_least_used_way() {
        let dead = |p: &Packet| p.ttl == 0;
        let mut set = Set {
            ways: [
                entry(b"a", 5, 60),
                None,
                entry(b"c", 7, 0),
                entry(b"d", 1, 60),
            ],
            tick: 9,
        };
        assert_eq!(pick_way(&set, b"c", 9, dead), 2, "its own key, dead or not");
        assert_eq!(pick_way(&set, b"x", 9, dead), 1, "an empty way");
        set.ways[1] = entry(b"b", 8, 60);
        assert_eq!(pick_way(&set, b"x", 9, dead), 2, "a dead entry");
        set.ways[2] = entry(b"c", 9, 60);
        assert_eq!(pick_way(&set, b"x", 9, dead), 3, "the least recently used");
        // The clock wrapped: 3 is newer than u32::MAX - 1, so "a" is the
        // oldest.
        set.ways[0] = entry(b"a", u32::MAX - 1, 60);
        set.ways[3] = entry(b"d", 3, 60);
        set.ways[1] = entry(b"b", 2, 60);
        set.ways[2] = entry(b"c", 4, 60);
        assert_eq!(pick_way(&set, b"x", 5, dead), 0);
    }

    #[test]
    fn the_cache_is_sized_in_sets_of_ways_and_empty_at_start() {
        for (entries, sets) in [(1, 1), (4, 1), (5, 1), (8, 2), (100_000, 32_768)] {
            let c = PacketCache::new(entries);
            assert_eq!(c.sets.len(), sets, "{entries} entries");
            assert_eq!(c.mask, sets - 1);
            assert_eq!(c.entries(), 0);
        }
    }

    #[test]
    fn keys_fold_case_and_tell_the_flags_apart() {
        let q = |name: &'static [u8], flags: u16| Query {
            id: 1,
            flags,
            name,
            qtype: 1,
            edns: None,
        };
        let (mut a, mut b) = ([0u8; KEY_MAX], [0u8; KEY_MAX]);
        let upper = key_into(&mut a, &q(b"\x04HoSt\x00", 0x0100), None, false).to_vec();
        let lower = key_into(&mut b, &q(b"\x04host\x00", 0x0100), None, false);
        assert_eq!(upper, lower);
        let cd = key_into(&mut b, &q(b"\x04host\x00", 0x0110), None, false);
        assert_ne!(upper, cd);
        let exempt = key_into(&mut b, &q(b"\x04host\x00", 0x0100), None, true);
        assert_ne!(upper, exempt);
        let payload = key_into(&mut b, &q(b"\x04host\x00", 0x0100), Some(1232), false);
        assert_ne!(upper, payload);
    }
}
