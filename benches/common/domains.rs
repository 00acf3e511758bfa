//! Deterministic synthetic domain lists, shared by the benchmarks, the
//! `compile_big` example and the allocation test.
//!
//! The recipe is the one the peer measurements used
//! (`shared/reference/benchmarks.md`): labels of 5-15 characters from
//! `[a-z0-9]` with letters weighted and a letter first, 8% of labels with one
//! inner `-`, TLD weights com 40 / net 12 / org 10 / nl 8 / ru 12 / xyz 9 /
//! top 9, and 30% of names with 1-3 extra labels in front. Lists are never
//! committed: they are generated in memory from a seed, so every run of every
//! machine sees the same names. The generator is our own SplitMix64 rather
//! than a crate's RNG, whose stream may change between versions.
//!
//! Included with `#[path]` by each target, so not every item is used by all.
#![allow(dead_code)]

/// The seed of every published figure.
pub const SEED: u64 = 20_240_601;

/// SplitMix64: tiny, fast, and its output is fixed forever.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the multiply-shift bias is far below
    /// anything a benchmark could notice.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

const TLDS: [(&str, u64); 7] = [
    ("com", 40),
    ("net", 12),
    ("org", 10),
    ("nl", 8),
    ("ru", 12),
    ("xyz", 9),
    ("top", 9),
];

/// Append one label: 5-15 characters, a letter first, letters three times
/// as likely as digits, 8% with one inner hyphen.
pub fn push_label(rng: &mut Rng, out: &mut String) {
    let len = 5 + rng.below(11) as usize;
    let start = out.len();
    for i in 0..len {
        let c = if i == 0 {
            b'a' + rng.below(26) as u8
        } else {
            let r = rng.below(26 * 3 + 10) as u8;
            if r < 78 {
                b'a' + r / 3
            } else {
                b'0' + (r - 78)
            }
        };
        out.push(c as char);
    }
    if rng.below(100) < 8 {
        // Not first, not last: a label may not start or end with '-'.
        let at = start + 1 + rng.below(len as u64 - 2) as usize;
        out.replace_range(at..at + 1, "-");
    }
}

pub fn push_tld(rng: &mut Rng, out: &mut String) {
    let mut r = rng.below(100);
    for (tld, w) in TLDS {
        if r < w {
            out.push_str(tld);
            return;
        }
        r -= w;
    }
    out.push_str("com");
}

/// Append one listed domain.
pub fn push_domain(rng: &mut Rng, out: &mut String) {
    if rng.below(100) < 30 {
        for _ in 0..1 + rng.below(3) {
            push_label(rng, out);
            out.push('.');
        }
    }
    push_label(rng, out);
    out.push('.');
    push_tld(rng, out);
}

/// A list of `n` domains as one newline-separated text (the shape of a
/// `domains` feed file) with the offset of each line, so that a 10M list
/// costs its text plus 4 bytes a name, not a `String` each.
pub struct DomainList {
    pub text: String,
    ends: Vec<u32>,
}

impl DomainList {
    pub fn generate(n: usize, seed: u64) -> DomainList {
        let mut rng = Rng::new(seed);
        let mut text = String::with_capacity(n * 20);
        let mut ends = Vec::with_capacity(n);
        for _ in 0..n {
            push_domain(&mut rng, &mut text);
            ends.push(u32::try_from(text.len()).expect("list text below 4 GiB"));
            text.push('\n');
        }
        DomainList { text, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize + 1
        };
        &self.text[start..self.ends[i] as usize]
    }

    /// `count` names drawn uniformly (with repetition) from the list.
    pub fn sample(&self, count: usize, seed: u64) -> Vec<String> {
        let mut rng = Rng::new(seed);
        (0..count)
            .map(|_| self.get(rng.below(self.len() as u64) as usize).to_string())
            .collect()
    }
}

/// `RANDLABEL.name` for `count` listed names: blocked only because a parent
/// is listed (the `q-wild` query file of the peer runs).
pub fn subdomain_queries(list: &DomainList, count: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let mut q = String::new();
            push_label(&mut rng, &mut q);
            q.push('.');
            q.push_str(list.get(rng.below(list.len() as u64) as usize));
            q
        })
        .collect()
}

/// Random 4-label names (`a.b.c.tld`) under the list's TLDs: misses that
/// still walk the index as far as a real clean name does. `c` has 16
/// characters, one more than any listed label, so that every name is a miss
/// by construction (random 2-label names do collide with a 10M list).
pub fn miss_queries(count: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let mut q = String::new();
            for _ in 0..2 {
                push_label(&mut rng, &mut q);
                q.push('.');
            }
            q.push((b'a' + rng.below(26) as u8) as char);
            for _ in 1..16 {
                let r = rng.below(36) as u8;
                q.push(if r < 26 { b'a' + r } else { b'0' + r - 26 } as char);
            }
            q.push('.');
            push_tld(&mut rng, &mut q);
            q
        })
        .collect()
}

/// Random 4-label names made of real listed names: `RAND.RAND.name.tld`
/// for a listed two-label `name.tld` (blocked through the parent), the
/// closest thing to the target's "4-label name".
pub fn sub4_queries(list: &DomainList, count: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let base = list.get(rng.below(list.len() as u64) as usize);
        if base.bytes().filter(|&b| b == b'.').count() != 1 {
            continue;
        }
        let mut q = String::new();
        push_label(&mut rng, &mut q);
        q.push('.');
        push_label(&mut rng, &mut q);
        q.push('.');
        q.push_str(base);
        out.push(q);
    }
    out
}
