//! The name filter: answers "is any parent of this name, or the name,
//! listed?" from one cache line, so that the common query (listed nowhere)
//! never walks the index.
//!
//! It is a blocked Bloom filter over the keys of the index (reversed names,
//! `moc.elpmaxe.www`) with one twist: a key does not choose its 512-bit block
//! by its own hash but by the hash of its *anchor*, the shortest of its
//! label prefixes that is not *heavy*. A prefix is heavy when more than
//! [`HEAVY_ABOVE`] keys lie under it (`moc`, `ku.oc`, a feed's favourite
//! dynamic-DNS zone). So `www.example.com` and `example.com` share the block
//! of `example.com`, and a query, whose candidate keys are its own label
//! prefixes, reads a single block for all of them. On a box where one random
//! memory access costs 150-300 ns (benches/RESULTS.md) that is the difference
//! between one access per label and one per query.
//!
//! The heavy prefixes themselves are few (seven for ten million random
//! names) and sit in a small exact table next to the filter, with a bit that
//! says whether the prefix is itself a key. Exact, because a query that took
//! a light prefix for a heavy one would read the wrong block and miss a
//! listed name; a filter may only ever say "maybe" wrongly, never "no".
//!
//! Layout of the two artifact sections (little-endian):
//!
//! ```text
//! filter:  blocks of 8 u64 words (512 bits)
//! anchors: u32 slot count (a power of two, or 0), u32 zero,
//!          slots of (u64 hash, u32 offset, u16 length, u16 flags),
//!          then the prefix bytes the slots point into
//! ```

/// Bits per key (two bytes a name) and bits set per key. With 512-bit
/// blocks this gives well under 1% false positives for light anchors; a
/// false positive only costs the index walk that would have happened
/// anyway.
const BITS_PER_KEY: usize = 16;
/// Bits a key sets, all in one 64-bit word of its block.
const PROBES: u32 = 5;
const BLOCK_WORDS: usize = 8;
pub(crate) const BLOCK_BYTES: usize = BLOCK_WORDS * 8;

/// A prefix with more keys than this under it gets a block per child.
/// A block holds 32 keys on average; one anchor's keys may add half that.
pub(crate) const HEAVY_ABOVE: u32 = 16;

const SLOT_BYTES: usize = 16;
const ANCHORS_HEADER: usize = 8;
/// Flag of an anchor slot: the heavy prefix is itself a key of the index.
const FLAG_IS_KEY: u16 = 1;

/// Why the filter sections of an artifact cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterError {
    Blocks,
    AnchorTable,
    AnchorSlot,
}

impl FilterError {
    pub(crate) fn what(self) -> &'static str {
        match self {
            FilterError::Blocks => "name filter not a whole number of blocks",
            FilterError::AnchorTable => "anchor table size is not a power of two or is over-full",
            FilterError::AnchorSlot => "anchor table entry out of bounds",
        }
    }
}

/// The filter sections of a loaded artifact, checked once at load so that
/// lookups index without fear.
#[derive(Clone, Copy)]
pub(crate) struct Filter<'a> {
    blocks: &'a [u8],
    slots: &'a [u8],
    mask: usize,
    strings: &'a [u8],
}

impl<'a> Filter<'a> {
    /// Split the two sections without the full check: cheap enough for
    /// every lookup, and safe on any bytes (a table it cannot read is
    /// treated as empty, every probe stays in bounds). [`Filter::check`]
    /// runs once at load.
    #[inline]
    pub(crate) fn view(blocks: &'a [u8], anchors: &'a [u8]) -> Filter<'a> {
        let nslots = anchors
            .get(..4)
            .map_or(0, |h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize);
        let end = nslots
            .checked_mul(SLOT_BYTES)
            .and_then(|n| n.checked_add(ANCHORS_HEADER))
            .filter(|&e| e <= anchors.len() && nslots.is_power_of_two());
        match end {
            Some(end) => Filter {
                blocks,
                slots: &anchors[ANCHORS_HEADER..end],
                mask: nslots - 1,
                strings: &anchors[end..],
            },
            None => Filter {
                blocks,
                slots: &[],
                mask: 0,
                strings: &[],
            },
        }
    }

    /// Check the two sections: whole blocks; a power-of-two slot table at
    /// most half full; every slot pointing inside the string area.
    pub(crate) fn check(blocks: &'a [u8], anchors: &'a [u8]) -> Result<Filter<'a>, FilterError> {
        if !blocks.len().is_multiple_of(BLOCK_BYTES) {
            return Err(FilterError::Blocks);
        }
        let f = Filter::view(blocks, anchors);
        let nslots = f.slots.len() / SLOT_BYTES;
        let declared = anchors
            .get(..4)
            .map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize);
        if !anchors.is_empty() && declared != Some(nslots) {
            return Err(FilterError::AnchorTable);
        }
        let mut used = 0;
        for i in 0..nslots {
            let (_, off, len, _) = f.slot(i);
            if len == 0 {
                continue;
            }
            used += 1;
            if off.checked_add(len).is_none_or(|e| e > f.strings.len()) {
                return Err(FilterError::AnchorSlot);
            }
        }
        if used * 2 > nslots {
            return Err(FilterError::AnchorTable);
        }
        Ok(f)
    }

    pub(crate) fn bytes(&self) -> usize {
        self.blocks.len() + self.slots.len() + self.strings.len()
    }

    fn slot(&self, i: usize) -> (u64, usize, usize, u16) {
        let s = &self.slots[i * SLOT_BYTES..(i + 1) * SLOT_BYTES];
        let mut h = [0u8; 8];
        h.copy_from_slice(&s[..8]);
        (
            u64::from_le_bytes(h),
            u32::from_le_bytes([s[8], s[9], s[10], s[11]]) as usize,
            u16::from_le_bytes([s[12], s[13]]) as usize,
            u16::from_le_bytes([s[14], s[15]]),
        )
    }

    /// `Some(is_key)` when `prefix` (with hash `h`) is heavy.
    #[inline]
    fn heavy(&self, prefix: &[u8], h: u64) -> Option<bool> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = h as usize & self.mask;
        // At most half the slots are used (checked at load), so an empty
        // slot ends the probe long before the bound does.
        for _ in 0..=self.mask {
            let (sh, off, len, flags) = self.slot(i);
            if len == 0 {
                return None;
            }
            if sh == h && self.strings.get(off..off + len) == Some(prefix) {
                return Some(flags & FLAG_IS_KEY != 0);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// False when no label prefix of `key` (a reversed name: each parent
    /// domain, and the name) is a key of the index. True means "maybe".
    #[inline]
    pub(crate) fn may_match(&self, key: &[u8]) -> bool {
        let nblocks = self.blocks.len() / BLOCK_BYTES;
        if nblocks == 0 {
            return true;
        }
        // Walk down the heavy prefixes, shortest first; each answers
        // exactly for itself. The first light one is the anchor.
        let mut end = label_end(key, 0);
        let mut h = hash_label(None, &key[..end]);
        loop {
            match self.heavy(&key[..end], h) {
                Some(true) => return true,
                Some(false) if end < key.len() => {
                    let next = label_end(key, end + 1);
                    h = hash_label(Some(h), &key[end + 1..next]);
                    end = next;
                }
                Some(false) => return false,
                None => break,
            }
        }
        let block = block_of(h, nblocks);
        let b = &self.blocks[block * BLOCK_BYTES..(block + 1) * BLOCK_BYTES];
        let mut any = contains(b, h) as u8;
        while end < key.len() {
            let next = label_end(key, end + 1);
            h = hash_label(Some(h), &key[end + 1..next]);
            end = next;
            any |= contains(b, h) as u8;
        }
        any != 0
    }
}

/// The end of the label that starts at `from`: the next dot, or the end.
#[inline]
fn label_end(key: &[u8], from: usize) -> usize {
    key.get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == b'.'))
        .map_or(key.len(), |p| from + p)
}

/// The hash of a label prefix, one label at a time: the first label's
/// xxh3, then each further label's xxh3 seeded with the hash so far. A
/// query hashes all its label prefixes, and this way each byte only once.
/// (A hand-rolled word hash was tried and was slower than xxh3 on these
/// short inputs.)
#[inline]
fn hash_label(prev: Option<u64>, label: &[u8]) -> u64 {
    match prev {
        None => xxhash_rust::xxh3::xxh3_64(label),
        Some(seed) => xxhash_rust::xxh3::xxh3_64_with_seed(label, seed),
    }
}

/// The hash of a whole key or prefix, as [`hash_label`] builds it.
fn hash(p: &[u8]) -> u64 {
    let mut h = None;
    let mut start = 0;
    loop {
        let end = label_end(p, start);
        h = Some(hash_label(h, &p[start..end]));
        if end >= p.len() {
            return h.unwrap_or(0);
        }
        start = end + 1;
    }
}

#[inline]
fn block_of(anchor_hash: u64, nblocks: usize) -> usize {
    ((u128::from(anchor_hash) * nblocks as u128) >> 64) as usize
}

/// The bit pattern of a key, decorrelated from the block choice.
#[inline]
fn pattern(h: u64) -> u64 {
    (h ^ (h >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The word of the block a key uses and the key's bits in it: all of a
/// key's bits sit in one 64-bit word (a "register-blocked" Bloom filter),
/// so a test is one load and a compare instead of a load per bit. With
/// about four keys a word the false-positive rate stays well under 1%.
#[inline]
fn word_and_mask(h: u64) -> (usize, u64) {
    let g = pattern(h);
    let mut mask = 0u64;
    for j in 0..PROBES {
        mask |= 1 << ((g >> (3 + j * 6)) & 63);
    }
    ((g & 7) as usize, mask)
}

/// Whether all the key's bits are set in the block. Branch-free on
/// purpose: an early exit would branch on the loaded bits, mispredict,
/// and throw away the work the CPU had started on the next query while
/// this block was still on its way from memory.
#[inline]
fn contains(block: &[u8], h: u64) -> bool {
    let (w, mask) = word_and_mask(h);
    let mut word = [0u8; 8];
    word.copy_from_slice(&block[w * 8..w * 8 + 8]);
    u64::from_le_bytes(word) & mask == mask
}

/// The two filter sections, built from the index keys.
pub(crate) struct Built {
    pub words: Vec<u64>,
    pub anchors: Vec<u8>,
}

/// Build the filter over `keys`, which yields the distinct keys of the
/// index in ascending order (called twice: once to find the heavy
/// prefixes, once to fill the blocks).
pub(crate) fn build<'k, I, F>(keys: F, count: usize) -> Built
where
    I: Iterator<Item = &'k [u8]>,
    F: Fn() -> I,
{
    let heavy = heavy_prefixes(keys());
    let mut table = AnchorTable::new(&heavy);
    let nblocks = (count * BITS_PER_KEY).div_ceil(BLOCK_WORDS * 64);
    let mut words = vec![0u64; nblocks * BLOCK_WORDS];
    if nblocks > 0 {
        for key in keys() {
            let mut anchor = None;
            let mut start = 0;
            let mut h = None;
            loop {
                let end = label_end(key, start);
                h = Some(hash_label(h, &key[start..end]));
                match table.index.get(&key[..end]) {
                    Some(&slot) if end == key.len() => {
                        // The key is itself heavy: the table answers for it.
                        table.mark_key(slot);
                        break;
                    }
                    Some(_) => start = end + 1,
                    None => {
                        anchor = h;
                        break;
                    }
                }
            }
            if let Some(a) = anchor {
                let block = block_of(a, nblocks);
                let (w, mask) = word_and_mask(hash(key));
                words[block * BLOCK_WORDS + w] |= mask;
            }
        }
    }
    Built {
        words,
        anchors: table.encode(),
    }
}

/// The label prefixes with more than [`HEAVY_ABOVE`] keys strictly under
/// them, in one pass over the sorted keys: every key under `p` starts with
/// `p.`, so they are contiguous, and a stack of open prefixes (those of the
/// previous key) counts them.
fn heavy_prefixes<'k>(keys: impl Iterator<Item = &'k [u8]>) -> Vec<Vec<u8>> {
    let mut heavy = Vec::new();
    // (prefix length, keys under it so far), prefixes of `prev`.
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut prev: &[u8] = &[];
    let close = |prev: &[u8], (len, count): (usize, u32), heavy: &mut Vec<Vec<u8>>| {
        if count > HEAVY_ABOVE {
            heavy.push(prev[..len].to_vec());
        }
    };
    for key in keys {
        let common = prev.iter().zip(key).take_while(|(a, b)| a == b).count();
        // A prefix of `prev` of length L (prev[L] == '.') is one of `key`
        // too exactly when L < common.
        while let Some(&top) = stack.last() {
            if top.0 < common {
                break;
            }
            stack.pop();
            close(prev, top, &mut heavy);
        }
        for e in &mut stack {
            e.1 += 1;
        }
        let from = stack.last().map_or(0, |e| e.0 + 1);
        for (i, &b) in key.iter().enumerate().skip(from) {
            if b == b'.' {
                stack.push((i, 1));
            }
        }
        prev = key;
    }
    while let Some(top) = stack.pop() {
        close(prev, top, &mut heavy);
    }
    heavy
}

/// The heavy prefixes as an open-addressing table, built at compile time.
struct AnchorTable {
    index: std::collections::HashMap<Vec<u8>, usize>,
    slots: Vec<(u64, u32, u16, u16)>,
    strings: Vec<u8>,
}

impl AnchorTable {
    fn new(heavy: &[Vec<u8>]) -> AnchorTable {
        let nslots = if heavy.is_empty() {
            0
        } else {
            (heavy.len() * 2).next_power_of_two().max(8)
        };
        let mut t = AnchorTable {
            index: std::collections::HashMap::with_capacity(heavy.len()),
            slots: vec![(0, 0, 0, 0); nslots],
            strings: Vec::new(),
        };
        for p in heavy {
            let h = hash(p);
            let mut i = h as usize & (nslots - 1);
            while t.slots[i].2 != 0 {
                i = (i + 1) & (nslots - 1);
            }
            // Prefixes are proper prefixes of names: under 253 octets.
            t.slots[i] = (h, t.strings.len() as u32, p.len() as u16, 0);
            t.strings.extend_from_slice(p);
            t.index.insert(p.clone(), i);
        }
        t
    }

    fn mark_key(&mut self, slot: usize) {
        self.slots[slot].3 |= FLAG_IS_KEY;
    }

    fn encode(&self) -> Vec<u8> {
        if self.slots.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(ANCHORS_HEADER + self.slots.len() * SLOT_BYTES);
        out.extend_from_slice(&(self.slots.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for &(h, off, len, flags) in &self.slots {
            out.extend_from_slice(&h.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
        }
        out.extend_from_slice(&self.strings);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(name: &str) -> Vec<u8> {
        name.bytes().rev().collect()
    }

    fn built(names: &[&str]) -> (Vec<Vec<u8>>, Built) {
        let mut keys: Vec<Vec<u8>> = names.iter().map(|n| rev(n)).collect();
        keys.sort();
        keys.dedup();
        let b = build(|| keys.iter().map(Vec::as_slice), keys.len());
        (keys, b)
    }

    fn bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn heavy_prefixes_count_keys_strictly_under_them() {
        let mut names: Vec<String> = (0..17).map(|i| format!("h{i}.busy.com")).collect();
        names.extend((0..16).map(|i| format!("h{i}.quiet.com")));
        names.push("busy.com".into());
        // `busy.com-x` sorts between `moc.ysub` and `moc.ysub.*` when
        // reversed the other way round; make sure neighbours do not count.
        names.push("x-busy.com".into());
        let mut keys: Vec<Vec<u8>> = names.iter().map(|n| rev(n)).collect();
        keys.sort();
        let heavy = heavy_prefixes(keys.iter().map(Vec::as_slice));
        let mut heavy: Vec<String> = heavy
            .iter()
            .map(|p| String::from_utf8(p.iter().rev().copied().collect()).expect("test data"))
            .collect();
        heavy.sort();
        // com has 35 keys under it, busy.com 17, quiet.com only 16.
        assert_eq!(heavy, vec!["busy.com", "com"]);
    }

    #[test]
    fn every_key_and_every_name_under_a_key_may_match() {
        let mut names: Vec<String> = (0..2000)
            .map(|i| format!("n{i}.example{}.com", i % 7))
            .collect();
        names.extend((0..50).map(|i| format!("x{i}.co.uk")));
        names.push("co.uk".into());
        names.push("local".into());
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (keys, b) = built(&refs);
        let blocks = bytes(&b.words);
        let f = Filter::check(&blocks, &b.anchors).expect("test data");
        for k in &keys {
            assert!(f.may_match(k), "{:?}", String::from_utf8_lossy(k));
            let mut under = k.clone();
            under.extend_from_slice(b".www.deeper");
            assert!(f.may_match(&under));
        }
        // The heavy prefix that is a key answers for itself, exactly.
        assert!(f.may_match(&rev("co.uk")));
        assert!(f.may_match(&rev("a.b.local")));
        // Most names listed nowhere are refused.
        let misses = (0..10_000)
            .filter(|i| f.may_match(&rev(&format!("q{i}.other{i}.com"))))
            .count();
        assert!(misses < 300, "{misses} false positives of 10000");
        // A heavy prefix that is not a key, and nothing under it listed.
        assert!(!f.may_match(&rev("com")));
        assert!(!f.may_match(&rev("uk")));
    }

    #[test]
    fn damaged_sections_are_refused() {
        let (_, b) = built(
            &(0..100)
                .map(|i| format!("n{i}.example.com"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let blocks = bytes(&b.words);
        assert_eq!(
            Filter::check(&blocks[1..], &b.anchors).err(),
            Some(FilterError::Blocks)
        );
        let mut a = b.anchors.clone();
        a[0] = 3;
        assert_eq!(
            Filter::check(&blocks, &a).err(),
            Some(FilterError::AnchorTable)
        );
        let mut a = b.anchors.clone();
        a.truncate(a.len() - 1);
        assert!(Filter::check(&blocks, &a).is_err());
        let mut a = b.anchors.clone();
        // Point the first used slot far outside the strings.
        let used = (0..)
            .map(|i| ANCHORS_HEADER + i * SLOT_BYTES)
            .find(|&at| a[at + 12] != 0 || a[at + 13] != 0)
            .expect("test data");
        a[used + 8..used + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Filter::check(&blocks, &a).err(),
            Some(FilterError::AnchorSlot)
        );
    }
}
