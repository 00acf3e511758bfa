//! Per-client response rate limiting over UDP (`server.client_qps`), in
//! the spirit of Unbound's `ip-ratelimit` and BIND's `rate-limit`.
//!
//! Each client (an IPv4 address, an IPv6 /56 as BIND groups them by
//! default) has a token bucket of `client_qps` answers a second, as deep
//! as one second of them. A UDP query past it gets no answer, except that
//! every `client_qps_slip`-th one gets an empty TC=1 answer (BIND's
//! `slip`; 0 never slips), so a real client behind a busy address retries
//! over TCP, which is not limited: a TCP client cannot spoof its address,
//! and TCP has its own caps (`server.tcp_max_*`). A limited query reaches
//! neither the cache nor the upstream.
//!
//! The table is bounded: a fixed number of slots, two candidates per
//! client chosen by a keyed hash (so nobody outside can aim at a slot);
//! a client that finds neither takes over the one with the smaller debt.
//! Under a flood of spoofed addresses clients may share or lose buckets,
//! but memory and time per query stay fixed. Each slot is one atomic
//! word (a tag and the bucket as a GCRA "theoretical arrival time"): no
//! lock on the query path.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Slots in the table (a power of two): with the last-hit words, 1 MiB of
/// state, allocated only when `client_qps` is set.
const SLOTS: usize = 1 << 16;
/// Bits of a slot that hold the bucket; the rest hold the client's tag.
const TIME_BITS: u32 = 48;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// IPv6 clients are grouped by this prefix (BIND's `ipv6-prefix-length`).
pub const IPV6_PREFIX: u8 = 56;

/// What to do with one UDP query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    /// Over the limit: no answer.
    Drop,
    /// Over the limit: an empty TC=1 answer, so the client retries over TCP.
    Slip,
}

pub struct RateLimiter {
    /// Microseconds a token takes to come back (1e6 / qps).
    interval: u64,
    /// How far ahead of now the bucket may run: one second, less one token.
    tolerance: u64,
    slip: u64,
    limited: AtomicU64,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
    slots: Box<[AtomicU64]>,
    /// Per slot: a hash of the last blocked name recorded as a sighting
    /// while the client was limited (so a flood of one name is one).
    last_hit: Box<[AtomicU64]>,
}

/// The client as the limiter counts it: an address, or an IPv6 /56.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << (128 - u32::from(IPV6_PREFIX)));
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl RateLimiter {
    /// `None` when `qps` is 0 (off).
    pub fn new(qps: u32, slip: u32) -> Option<RateLimiter> {
        if qps == 0 {
            return None;
        }
        let interval = (1_000_000 / u64::from(qps)).max(1);
        let slots = (0..SLOTS).map(|_| AtomicU64::new(0)).collect();
        let last_hit = (0..SLOTS).map(|_| AtomicU64::new(0)).collect();
        Some(RateLimiter {
            interval,
            tolerance: 1_000_000u64.saturating_sub(interval),
            slip: u64::from(slip),
            limited: AtomicU64::new(0),
            epoch: Instant::now(),
            hasher: std::collections::hash_map::RandomState::new(),
            slots,
            last_hit,
        })
    }

    fn now(&self) -> u64 {
        // Past 2^48 µs (8.9 years) the clock wraps; buckets refill early once.
        (u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)) & TIME_MASK
    }

    fn hash(&self, v: impl Hash) -> u64 {
        self.hasher.hash_one(v)
    }

    /// The two candidate slots of a client and its tag (never 0: 0 is free).
    fn place(&self, key: IpAddr) -> (usize, usize, u64) {
        let h = self.hash(key);
        let a = (h as usize) & (SLOTS - 1);
        let b = ((h >> 20) as usize) & (SLOTS - 1);
        let tag = (h >> TIME_BITS).max(1);
        (a, b, tag)
    }

    /// Take a token for `ip`'s bucket; the slot it lives in.
    fn take(&self, ip: IpAddr) -> (bool, usize) {
        let (a, b, tag) = self.place(client_key(ip));
        let now = self.now();
        loop {
            let (va, vb) = (
                self.slots[a].load(Ordering::Relaxed),
                self.slots[b].load(Ordering::Relaxed),
            );
            let (slot, old) = if va >> TIME_BITS == tag {
                (a, va)
            } else if vb >> TIME_BITS == tag {
                (b, vb)
            } else {
                // A newcomer: the slot with the smaller debt (an idle one
                // has none) gets a full bucket for it.
                let debt = |v: u64| (v & TIME_MASK).saturating_sub(now);
                let (slot, old) = if debt(va) <= debt(vb) {
                    (a, va)
                } else {
                    (b, vb)
                };
                let fresh = (tag << TIME_BITS) | ((now + self.interval) & TIME_MASK);
                if self.slots[slot]
                    .compare_exchange(old, fresh, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    self.last_hit[slot].store(0, Ordering::Relaxed);
                    return (true, slot);
                }
                continue;
            };
            // GCRA: the bucket is "empty" when its theoretical arrival
            // time runs more than the tolerance ahead of now.
            let tat = (old & TIME_MASK).max(now);
            if tat - now > self.tolerance {
                return (false, slot);
            }
            let new = (tag << TIME_BITS) | ((tat + self.interval) & TIME_MASK);
            if self.slots[slot]
                .compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return (true, slot);
            }
        }
    }

    /// Answer, drop or slip one UDP query from `ip`. The slot comes back
    /// for [`RateLimiter::first_hit`].
    pub fn check(&self, ip: IpAddr) -> (Verdict, usize) {
        let (ok, slot) = self.take(ip);
        if ok {
            return (Verdict::Answer, slot);
        }
        let n = self.limited.fetch_add(1, Ordering::Relaxed) + 1;
        let verdict = if self.slip > 0 && n.is_multiple_of(self.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        };
        (verdict, slot)
    }

    /// Whether a blocked name hit by a limited client should be recorded:
    /// once per name in a row, so a flood of one name is one sighting and
    /// not a flood of the sightings path.
    pub fn first_hit(&self, slot: usize, name: impl Hash) -> bool {
        let h = self.hash(name).max(1);
        self.last_hit
            .get(slot)
            .is_some_and(|l| l.swap(h, Ordering::Relaxed) != h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_limited_and_slips_every_other_answer() {
        let rl = RateLimiter::new(10, 2).expect("on");
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let verdicts: Vec<Verdict> = (0..40).map(|_| rl.check(a).0).collect();
        let answered = verdicts.iter().filter(|v| **v == Verdict::Answer).count();
        // One second's worth, give or take a token that came back.
        assert!((10..=12).contains(&answered), "{verdicts:?}");
        let slipped = verdicts.iter().filter(|v| **v == Verdict::Slip).count();
        let dropped = verdicts.iter().filter(|v| **v == Verdict::Drop).count();
        assert!(slipped.abs_diff(dropped) <= 1, "{verdicts:?}");
        // Another client has its own bucket.
        assert_eq!(rl.check(b).0, Verdict::Answer);
    }

    #[test]
    fn slip_zero_never_slips_and_one_always_does() {
        for (slip, want) in [(0, Verdict::Drop), (1, Verdict::Slip)] {
            let rl = RateLimiter::new(1, slip).expect("on");
            let a: IpAddr = "192.0.2.1".parse().expect("ip");
            assert_eq!(rl.check(a).0, Verdict::Answer);
            for _ in 0..5 {
                assert_eq!(rl.check(a).0, want);
            }
        }
        assert!(RateLimiter::new(0, 2).is_none());
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_56() {
        let k = |s: &str| client_key(s.parse().expect("ip"));
        assert_eq!(k("2001:db8:0:1::1"), k("2001:db8:0:ff::2"));
        assert_ne!(k("2001:db8:0:100::1"), k("2001:db8:0:ff::2"));
        assert_eq!(k("::ffff:192.0.2.1"), k("192.0.2.1"));
        let rl = RateLimiter::new(2, 0).expect("on");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        rl.check(ip("2001:db8::1"));
        rl.check(ip("2001:db8::2"));
        assert_eq!(rl.check(ip("2001:db8::3")).0, Verdict::Drop);
    }

    #[test]
    fn a_flooded_name_is_recorded_once() {
        let rl = RateLimiter::new(1, 0).expect("on");
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let (_, slot) = rl.check(a);
        assert!(rl.first_hit(slot, "evil.test"));
        assert!(!rl.first_hit(slot, "evil.test"));
        assert!(rl.first_hit(slot, "other.test"));
    }

    #[test]
    fn many_clients_stay_within_the_table() {
        let rl = RateLimiter::new(5, 2).expect("on");
        for i in 0..200_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | i));
            rl.check(ip);
        }
        assert_eq!(rl.slots.len(), SLOTS);
    }
}
