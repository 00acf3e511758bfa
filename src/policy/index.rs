//! The name index: our own writer and reader of the `fst` crate's file
//! format (version 3).
//!
//! The artifact's name index is an fst map from reversed names to values,
//! byte for byte what `fst::MapBuilder` would accept and `fst::Map` reads
//! (the tests check both ways). We write and walk it ourselves for three
//! reasons, all measured (benches/RESULTS.md):
//!
//! - **Compile time.** `fst`'s builder spends 60% of a 10M-name compile in
//!   its node cache, whose cells own heap vectors that miss the CPU cache on
//!   every probe. Ours caches only the one-transition nodes that make up the
//!   tails of names, inline in a flat table.
//! - **Layout.** `fst` writes each node right after its subtree, so the top
//!   of the trie (`moc.`, `moc.a`, `moc.ab`, …), which every lookup crosses,
//!   ends up spread over the whole file: a cache and TLB miss per level.
//!   Ours holds back the nodes of the first [`HOT_DEPTH`] bytes and writes
//!   them together at the end, next to the root: a few megabytes at 10M
//!   names, a few hundred kilobytes at 1M, that stay in cache and in the
//!   TLB. (Every node still comes after its children, as the
//!   format requires.)
//! - **Safety.** `fst`'s reader trusts its bytes; a damaged index with a
//!   valid artifact checksum made it panic (fuzz/README.md). Every read
//!   here is bounds-checked: damage ends a walk, it never panics.
//!
//! Encoding, per node (addresses point at a node's last byte, transitions
//! are stored as deltas from the node's first byte; see the `fst` crate's
//! `raw/node.rs`, MIT/Unlicense, from which the constants below come):
//! `11iiiiii` one transition to the node written just before, no output;
//! `10iiiiii` one transition with an address delta and maybe an output;
//! `0fnnnnnn` any number of transitions, `f` = final. `iiiiii` is the index
//! of a common input byte, or 0 when the byte follows separately.

use std::fmt;

/// Format version written (the `fst` crate's current one).
const VERSION: u64 = 3;
/// Address of the final node with no transitions, which is never written.
const EMPTY: usize = 0;
/// Nodes with more transitions than this carry a 256-byte input index.
const TRANS_INDEX_THRESHOLD: usize = 32;
/// Bytes of the key whose nodes are written together at the end.
pub(crate) const HOT_DEPTH: usize = 6;
/// Most slots of the one-transition node cache (a power of two); small
/// lists get fewer (see [`IndexWriter::with_keys`]). 1024 slots of 40
/// bytes stay in the CPU's first two cache levels: at 32768 (1.3 MiB) the
/// probe's miss was a fifth of a compile, and the tails it found in the
/// bigger table saved 0.002 % of the index (benches/RESULTS.md, session 13).
const CACHE_SLOTS: usize = 1 << 10;

/// The 63 most common input bytes, most common first, as `fst` ranks them
/// (`raw/common_inputs.rs`): these fit in a state byte.
const COMMON: &[u8; 63] = b"te/oasripcnw.hlm-du012g=:bf3y5&_4v9678k%?xCDASFIBEjPTzRNM+LOqHG";

/// 1 + rank of each byte among [`COMMON`], or 0.
const COMMON_IDX: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < COMMON.len() {
        t[COMMON[i] as usize] = (i + 1) as u8;
        i += 1;
    }
    t
};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index keys out of order or repeated")]
    OutOfOrder,
    #[error("an empty key cannot be indexed")]
    EmptyKey,
}

// ---------------------------------------------------------------- writer

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Addr {
    Written(usize),
    /// A node held back for the hot region: its index in `deferred`.
    Deferred(u32),
}

#[derive(Clone, Copy, Debug)]
struct Trans {
    inp: u8,
    out: u64,
    addr: Addr,
}

#[derive(Default, Debug)]
struct Node {
    is_final: bool,
    final_out: u64,
    trans: Vec<Trans>,
}

#[derive(Debug)]
struct Unfinished {
    node: Node,
    /// The transition to the node above this one on the stack, whose
    /// address is not known until that node is compiled.
    last: Option<(u8, u64)>,
}

impl Unfinished {
    fn add_output_prefix(&mut self, prefix: u64) {
        if self.node.is_final {
            self.node.final_out += prefix;
        }
        for t in &mut self.node.trans {
            t.out += prefix;
        }
        if let Some((_, out)) = &mut self.last {
            *out += prefix;
        }
    }

    fn last_compiled(&mut self, addr: Addr) {
        if let Some((inp, out)) = self.last.take() {
            self.node.trans.push(Trans { inp, out, addr });
        }
    }
}

/// A cached one-transition (or no-transition) node: its content and where
/// it was written.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Small {
    is_final: bool,
    inp: u8,
    ntrans: u8,
    final_out: u64,
    out: u64,
    to: usize,
}

/// Builds an fst map from keys given in ascending order.
pub(crate) struct IndexWriter {
    buf: Vec<u8>,
    stack: Vec<Unfinished>,
    last_key: Vec<u8>,
    /// Address of the node written last (a one-transition node pointing
    /// to it needs no address).
    last_addr: Option<usize>,
    len: u64,
    cache: Vec<Option<(Small, usize)>>,
    deferred: Vec<Node>,
    spare: Vec<Vec<Trans>>,
}

impl Default for IndexWriter {
    fn default() -> Self {
        IndexWriter::new()
    }
}

impl IndexWriter {
    pub(crate) fn new() -> IndexWriter {
        IndexWriter::with_keys(usize::MAX)
    }

    /// A writer for about `keys` keys: the node cache is sized to the list
    /// (a 1.5 MiB table for a list of ten names was most of such a
    /// compile's work).
    pub(crate) fn with_keys(keys: usize) -> IndexWriter {
        let slots = (keys.min(CACHE_SLOTS) * 4)
            .next_power_of_two()
            .clamp(64, CACHE_SLOTS);
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        // Map type: 0, as `fst` writes it.
        buf.extend_from_slice(&0u64.to_le_bytes());
        IndexWriter {
            buf,
            stack: vec![Unfinished {
                node: Node::default(),
                last: None,
            }],
            last_key: Vec::new(),
            last_addr: None,
            len: 0,
            cache: vec![None; slots],
            deferred: Vec::new(),
            spare: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Add a key (after every smaller key) and its value.
    pub(crate) fn insert(&mut self, key: &[u8], value: u64) -> Result<(), IndexError> {
        if key.is_empty() {
            return Err(IndexError::EmptyKey);
        }
        if self.len > 0 && key <= self.last_key.as_slice() {
            return Err(IndexError::OutOfOrder);
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);

        // Walk the common prefix, pushing outputs down where they differ
        // (an fst output is the sum along the path; each transition keeps
        // the smallest share).
        let mut out = value;
        let mut i = 0;
        while i < key.len() {
            let add = match &mut self.stack[i].last {
                Some((inp, t_out)) if *inp == key[i] => {
                    let common = (*t_out).min(out);
                    let add = *t_out - common;
                    out -= common;
                    *t_out = common;
                    add
                }
                _ => break,
            };
            i += 1;
            if add != 0 {
                self.stack[i].add_output_prefix(add);
            }
        }
        // Keys ascend strictly, so the key is longer than the shared part.
        self.len += 1;
        self.compile_from(i);
        let top = self.stack.len() - 1;
        self.stack[top].last = Some((key[i], out));
        for &b in &key[i + 1..] {
            let node = self.fresh_node(false);
            self.stack.push(Unfinished {
                node,
                last: Some((b, 0)),
            });
        }
        let node = self.fresh_node(true);
        self.stack.push(Unfinished { node, last: None });
        Ok(())
    }

    fn fresh_node(&mut self, is_final: bool) -> Node {
        Node {
            is_final,
            final_out: 0,
            trans: self.spare.pop().unwrap_or_default(),
        }
    }

    /// Compile every node on the stack deeper than `depth`.
    fn compile_from(&mut self, depth: usize) {
        let mut addr = None;
        while depth + 1 < self.stack.len() {
            let Some(mut u) = self.stack.pop() else { break };
            if let Some(a) = addr {
                u.last_compiled(a);
            }
            addr = Some(self.compile(u.node, self.stack.len()));
        }
        if let (Some(a), Some(top)) = (addr, self.stack.last_mut()) {
            top.last_compiled(a);
        }
    }

    fn compile(&mut self, mut node: Node, depth: usize) -> Addr {
        if node.is_final && node.trans.is_empty() && node.final_out == 0 {
            self.recycle(node);
            return Addr::Written(EMPTY);
        }
        if depth <= HOT_DEPTH {
            self.deferred.push(node);
            return Addr::Deferred((self.deferred.len() - 1) as u32);
        }
        // Below the hot region every child is already written.
        let small = match node.trans.as_slice() {
            [] => Some((0, 0, 0, 0)),
            [t] => match t.addr {
                Addr::Written(to) => Some((1, t.inp, t.out, to)),
                Addr::Deferred(_) => None,
            },
            _ => None,
        };
        let addr = match small {
            Some((ntrans, inp, out, to)) => {
                let key = Small {
                    is_final: node.is_final,
                    inp,
                    ntrans,
                    final_out: node.final_out,
                    out,
                    to,
                };
                let slot = small_hash(&key) & (self.cache.len() - 1);
                match self.cache[slot] {
                    Some((k, at)) if k == key => at,
                    _ => {
                        let at = self.write(&node, &[]);
                        self.cache[slot] = Some((key, at));
                        at
                    }
                }
            }
            None => self.write(&node, &[]),
        };
        node.trans.clear();
        self.recycle(node);
        Addr::Written(addr)
    }

    fn recycle(&mut self, mut node: Node) {
        if node.trans.capacity() > 0 && self.spare.len() < 256 {
            node.trans.clear();
            self.spare.push(node.trans);
        }
    }

    /// Encode one node at the end of the buffer; `placed` resolves held
    /// back nodes. Returns the node's address (its last byte).
    fn write(&mut self, node: &Node, placed: &[usize]) -> usize {
        let resolve = |a: Addr| match a {
            Addr::Written(x) => x,
            Addr::Deferred(i) => placed.get(i as usize).copied().unwrap_or(EMPTY),
        };
        let start = self.buf.len();
        let delta = |to: usize| if to == EMPTY { 0 } else { (start - to) as u64 };
        if node.trans.len() == 1 && !node.is_final {
            let t = node.trans[0];
            let to = resolve(t.addr);
            let common = COMMON_IDX[t.inp as usize];
            if t.out == 0 && Some(to) == self.last_addr && to != EMPTY {
                // One transition to the node just before: 1-2 bytes.
                if common == 0 {
                    self.buf.push(t.inp);
                }
                self.buf.push(0b11_000000 | common);
            } else {
                let osize = if t.out == 0 { 0 } else { pack_size(t.out) };
                if osize > 0 {
                    pack_into(&mut self.buf, t.out, osize);
                }
                let d = delta(to);
                let tsize = pack_size(d);
                pack_into(&mut self.buf, d, tsize);
                self.buf.push((tsize << 4) | osize);
                if common == 0 {
                    self.buf.push(t.inp);
                }
                self.buf.push(0b10_000000 | common);
            }
        } else {
            let n = node.trans.len();
            let mut tsize = 0;
            let mut osize = pack_size(node.final_out);
            let mut any_outs = node.final_out != 0;
            for t in &node.trans {
                tsize = tsize.max(pack_size(delta(resolve(t.addr))));
                osize = osize.max(pack_size(t.out));
                any_outs |= t.out != 0;
            }
            let osize = if any_outs { osize } else { 0 };
            if any_outs {
                if node.is_final {
                    pack_into(&mut self.buf, node.final_out, osize);
                }
                for t in node.trans.iter().rev() {
                    pack_into(&mut self.buf, t.out, osize);
                }
            }
            for t in node.trans.iter().rev() {
                pack_into(&mut self.buf, delta(resolve(t.addr)), tsize);
            }
            for t in node.trans.iter().rev() {
                self.buf.push(t.inp);
            }
            if n > TRANS_INDEX_THRESHOLD {
                let mut index = [255u8; 256];
                for (i, t) in node.trans.iter().enumerate() {
                    index[t.inp as usize] = i as u8;
                }
                self.buf.extend_from_slice(&index);
            }
            self.buf.push((tsize << 4) | osize);
            let mut state = if node.is_final { 0b01_000000 } else { 0 };
            if (1..=63).contains(&n) {
                state |= n as u8;
            } else {
                // 256 cannot be a byte; 1 never needs this byte, so it
                // stands for 256.
                self.buf.push(if n == 256 { 1 } else { n as u8 });
            }
            self.buf.push(state);
        }
        let addr = self.buf.len() - 1;
        self.last_addr = Some(addr);
        addr
    }

    /// Write the held-back top of the trie and the footer.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.compile_from(0);
        let root = self.stack.pop().map(|u| u.node).unwrap_or_default();
        let root = self.compile_root(root);
        let deferred = std::mem::take(&mut self.deferred);
        let mut placed = Vec::with_capacity(deferred.len());
        // Held back in post-order: children before parents, as written.
        for node in &deferred {
            let at = if node.is_final && node.trans.is_empty() && node.final_out == 0 {
                EMPTY
            } else {
                self.write(node, &placed)
            };
            placed.push(at);
        }
        let root_addr = match root {
            Addr::Written(a) => a,
            Addr::Deferred(i) => placed.get(i as usize).copied().unwrap_or(EMPTY),
        };
        let mut buf = self.buf;
        buf.extend_from_slice(&self.len.to_le_bytes());
        buf.extend_from_slice(&(root_addr as u64).to_le_bytes());
        let sum = crc32c::crc32c(&buf);
        let masked = (sum.rotate_right(15)).wrapping_add(0xa282_ead8);
        buf.extend_from_slice(&masked.to_le_bytes());
        buf
    }

    /// The root is always written (even an empty map has one), so it is
    /// held back like the rest of the top.
    fn compile_root(&mut self, root: Node) -> Addr {
        self.deferred.push(root);
        Addr::Deferred((self.deferred.len() - 1) as u32)
    }
}

fn small_hash(k: &Small) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (k.to as u64) ^ (u64::from(k.inp) << 56) ^ (u64::from(k.ntrans) << 48);
    h = (h ^ u64::from(k.is_final)).wrapping_mul(K);
    h = (h ^ k.out).wrapping_mul(K);
    h = (h ^ k.final_out).wrapping_mul(K);
    (h >> 32) as usize
}

fn pack_size(n: u64) -> u8 {
    (((64 - n.leading_zeros()) as u8).div_ceil(8)).max(1)
}

fn pack_into(buf: &mut Vec<u8>, n: u64, size: u8) {
    buf.extend_from_slice(&n.to_le_bytes()[..size as usize]);
}

// ---------------------------------------------------------------- reader

/// A verified fst map, read in place. Every access is bounds-checked: a
/// damaged index ends a walk, it never panics.
#[derive(Clone, Copy)]
pub(crate) struct Index<'a> {
    data: &'a [u8],
    root: usize,
}

impl fmt::Debug for Index<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("bytes", &self.data.len())
            .field("root", &self.root)
            .finish()
    }
}

/// One decoded node.
///
/// # The arithmetic on a view
///
/// A `View` is only made by `view` / `view_one` / `view_any`, which compute
/// `end` with `checked_sub` from everything the node holds below its state
/// byte: `end = addr - head - index - ntrans - ntrans * tsize - outputs`
/// (for `One`: `addr - head - tsize - osize`; `tsize` and `osize` are at
/// most 8). A view that would underflow is never made (the walk ends).
/// So for every view `addr >= head + index + ntrans * (1 + tsize) + outs`,
/// and the plain subtractions in `trans`, `input` and `find`
/// (`addr - head - tsize`, `addr - head - index - ntrans`, and
/// `addr - head - 256 + b` with `index == 256`) cannot underflow; `debug_assert!`s restate it. Every read
/// goes through `byte` / `uint`, which are bounds-checked (`slice::get`), so
/// an offset that is wrong because the bytes are damaged reads `None` and
/// ends the walk: it never panics and never reads outside the index. The
/// output sums use `wrapping_add`, as the `fst` crate does: a damaged
/// index can give a wrong value, never a panic.
#[derive(Clone, Copy)]
struct View {
    /// First byte of the node.
    end: usize,
    /// Address of the state byte.
    addr: usize,
    kind: Kind,
    ntrans: usize,
    is_final: bool,
    tsize: usize,
    osize: usize,
    /// Bytes below the state byte before the transition inputs (the
    /// count byte and the pack-size byte).
    head: usize,
    index: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    /// One transition to the node just before; `inp` is its input.
    Next {
        inp: u8,
    },
    One {
        inp: u8,
    },
    Any,
}

impl<'a> Index<'a> {
    /// Use `data` (a map that `fst::Map::new` accepted) with its root at
    /// `root`.
    pub(crate) fn new(data: &'a [u8], root: usize) -> Index<'a> {
        Index { data, root }
    }

    #[inline]
    fn byte(&self, at: usize) -> Option<u8> {
        self.data.get(at).copied()
    }

    /// Read `size` bytes (little-endian) at `at`.
    #[inline]
    fn uint(&self, at: usize, size: usize) -> Option<u64> {
        let b = self.data.get(at..at.checked_add(size)?)?;
        let mut w = [0u8; 8];
        w.get_mut(..size)?.copy_from_slice(b);
        Some(u64::from_le_bytes(w))
    }

    #[inline]
    fn view(&self, addr: usize) -> Option<View> {
        if addr == EMPTY {
            return Some(View {
                end: EMPTY,
                addr,
                kind: Kind::Empty,
                ntrans: 0,
                is_final: true,
                tsize: 0,
                osize: 0,
                head: 0,
                index: 0,
            });
        }
        let s = self.byte(addr)?;
        if s >> 7 == 1 {
            // One transition; its input is common (in the state) or the
            // byte below.
            let common = s & 0b11_1111;
            let (inp, inp_len) = if common == 0 {
                (self.byte(addr.checked_sub(1)?)?, 1)
            } else {
                (*COMMON.get(common as usize - 1)?, 0)
            };
            return self.view_one(addr, s, inp, inp_len);
        }
        self.view_any(addr, s)
    }

    #[inline]
    fn view_one(&self, addr: usize, s: u8, inp: u8, inp_len: usize) -> Option<View> {
        match s >> 6 {
            0b11 => Some(View {
                end: addr.checked_sub(inp_len)?,
                addr,
                kind: Kind::Next { inp },
                ntrans: 1,
                is_final: false,
                tsize: 0,
                osize: 0,
                head: inp_len,
                index: 0,
            }),
            _ => {
                let sizes = self.byte(addr.checked_sub(inp_len + 1)?)?;
                let (tsize, osize) = ((sizes >> 4) as usize, (sizes & 15) as usize);
                if tsize > 8 || osize > 8 {
                    return None;
                }
                Some(View {
                    end: addr.checked_sub(inp_len + 1 + tsize + osize)?,
                    addr,
                    kind: Kind::One { inp },
                    ntrans: 1,
                    is_final: false,
                    tsize,
                    osize,
                    head: inp_len + 1,
                    index: 0,
                })
            }
        }
    }

    #[inline]
    fn view_any(&self, addr: usize, s: u8) -> Option<View> {
        let is_final = s & 0b01_000000 != 0;
        let (ntrans, nlen) = match s & 0b11_1111 {
            0 => match self.byte(addr.checked_sub(1)?)? {
                1 => (256, 1),
                n => (n as usize, 1),
            },
            n => (n as usize, 0),
        };
        let sizes = self.byte(addr.checked_sub(nlen + 1)?)?;
        let (tsize, osize) = ((sizes >> 4) as usize, (sizes & 15) as usize);
        if tsize > 8 || osize > 8 {
            return None;
        }
        let index = if ntrans > TRANS_INDEX_THRESHOLD {
            256
        } else {
            0
        };
        let trans_bytes = ntrans + ntrans * tsize + index;
        let outs = ntrans * osize + if is_final { osize } else { 0 };
        Some(View {
            end: addr.checked_sub(nlen + 1 + trans_bytes + outs)?,
            addr,
            kind: Kind::Any,
            ntrans,
            is_final,
            tsize,
            osize,
            head: nlen + 1,
            index,
        })
    }

    /// The target address and output of transition `i` of `v`.
    #[inline]
    fn trans(&self, v: &View, i: usize) -> Option<(usize, u64)> {
        match v.kind {
            Kind::Empty => None,
            Kind::Next { .. } => Some((v.end.checked_sub(1)?, 0)),
            Kind::One { .. } => {
                debug_assert!(v.addr >= v.head + v.tsize + v.osize);
                let at = v.addr - v.head - v.tsize;
                let d = self.uint(at, v.tsize)? as usize;
                let out = if v.osize == 0 {
                    0
                } else {
                    self.uint(at - v.osize, v.osize)?
                };
                Some((self.target(v.end, d)?, out))
            }
            Kind::Any => {
                debug_assert!(v.addr >= v.head + v.index + v.ntrans);
                let base = v.addr - v.head - v.index - v.ntrans;
                let at = base.checked_sub((i + 1) * v.tsize)?;
                let d = self.uint(at, v.tsize)? as usize;
                let out = if v.osize == 0 {
                    0
                } else {
                    let o = base
                        .checked_sub(v.ntrans * v.tsize)?
                        .checked_sub((i + 1) * v.osize)?;
                    self.uint(o, v.osize)?
                };
                Some((self.target(v.end, d)?, out))
            }
        }
    }

    #[inline]
    fn target(&self, end: usize, delta: usize) -> Option<usize> {
        if delta == 0 {
            Some(EMPTY)
        } else {
            end.checked_sub(delta)
        }
    }

    /// Input byte of transition `i` of `v`.
    #[inline]
    fn input(&self, v: &View, i: usize) -> Option<u8> {
        match v.kind {
            Kind::Empty => None,
            Kind::Next { inp } | Kind::One { inp } => Some(inp),
            Kind::Any => self.byte((v.addr - v.head - v.index).checked_sub(i + 1)?),
        }
    }

    /// The transition of `v` on byte `b`: its index.
    #[inline]
    fn find(&self, v: &View, b: u8) -> Option<usize> {
        match v.kind {
            Kind::Empty => None,
            Kind::Next { inp } | Kind::One { inp } => (inp == b).then_some(0),
            Kind::Any if v.index > 0 => {
                debug_assert!(v.index == 256 && v.addr >= v.head + 256);
                let i = self.byte(v.addr - v.head - 256 + b as usize)? as usize;
                (i < v.ntrans).then_some(i)
            }
            Kind::Any => {
                let start = (v.addr - v.head).checked_sub(v.ntrans)?;
                let inputs = self.data.get(start..start + v.ntrans)?;
                inputs
                    .iter()
                    .rposition(|&x| x == b)
                    .map(|p| v.ntrans - 1 - p)
            }
        }
    }

    #[inline]
    fn final_output(&self, v: &View) -> Option<u64> {
        if !v.is_final {
            return None;
        }
        if v.osize == 0 || v.kind != Kind::Any {
            return Some(0);
        }
        self.uint(v.end, v.osize)
    }

    /// Walk `key` from the root. `at_final(len, value)` is called, shortest
    /// first, for every prefix of `key` that ends at a label boundary (the
    /// byte after it is a `.`) and is a key of the map, and for `key` itself
    /// if it is one: a reversed name's listed parents, then the name. Ends
    /// early, without error, on a byte with no transition or on damage.
    #[inline]
    pub(crate) fn walk(&self, key: &[u8], mut at_final: impl FnMut(usize, u64)) {
        let mut addr = self.root;
        let mut out = 0u64;
        let mut i = 0;
        while i < key.len() {
            let b = key[i];
            // Fast path: most nodes below the top are one transition to
            // the node just before, never final.
            let Some(s) = self.byte(addr) else { return };
            if s >> 6 == 0b11 {
                let common = s & 0b11_1111;
                let (inp, len) = if common == 0 {
                    let Some(x) = addr.checked_sub(1).and_then(|a| self.byte(a)) else {
                        return;
                    };
                    (x, 1)
                } else {
                    (COMMON[common as usize - 1], 0)
                };
                if inp != b {
                    return;
                }
                let Some(to) = addr.checked_sub(len + 1) else {
                    return;
                };
                addr = to;
                i += 1;
                continue;
            }
            let Some(v) = self.view(addr) else { return };
            if v.kind == Kind::Any && v.addr - v.end > 64 {
                // A wide node spans several cache lines (inputs, index,
                // addresses): ask for them all at once rather than one
                // after the other.
                self.prefetch(v.end, v.addr);
            }
            if b == b'.'
                && v.is_final
                && let Some(f) = self.final_output(&v)
            {
                at_final(i, out.wrapping_add(f));
            }
            let Some(t) = self.find(&v, b) else { return };
            let Some((to, o)) = self.trans(&v, t) else {
                return;
            };
            // The next node ends at `to` and the rest of the name usually
            // sits just below it. Below a wide node the next one is often
            // wide too (a few hundred bytes): ask for all of it now, in one
            // round trip, instead of one line after the other.
            let below = if v.ntrans > 8 { 448 } else { 128 };
            self.prefetch(to.saturating_sub(below), to);
            out = out.wrapping_add(o);
            addr = to;
            i += 1;
        }
        if let Some(v) = self.view(addr)
            && let Some(f) = self.final_output(&v)
        {
            at_final(key.len(), out.wrapping_add(f));
        }
    }

    /// Hint the CPU to fetch the cache lines of `data[from..=to]`.
    #[inline]
    fn prefetch(&self, from: usize, to: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let mut at = from & !63;
            while at <= to {
                if let Some(p) = self.data.get(at.max(from)) {
                    // SAFETY: a prefetch is only a hint: it never faults and
                    // has no effect visible to the program. The pointer comes
                    // from an in-bounds element of a live slice anyway.
                    #[allow(unsafe_code)]
                    unsafe {
                        _mm_prefetch::<_MM_HINT_T0>((p as *const u8).cast::<i8>());
                    }
                }
                at += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (from, to);
    }

    /// The value of `key`, if it is a key of the map.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8]) -> Option<u64> {
        let mut addr = self.root;
        let mut out = 0u64;
        for &b in key {
            let v = self.view(addr)?;
            let (to, o) = self.trans(&v, self.find(&v, b)?)?;
            out = out.wrapping_add(o);
            addr = to;
        }
        let v = self.view(addr)?;
        Some(out.wrapping_add(self.final_output(&v)?))
    }

    /// Every key and value in ascending key order.
    pub(crate) fn entries(&self) -> Entries<'a> {
        let mut e = Entries {
            index: *self,
            stack: Vec::new(),
            key: Vec::new(),
            damaged: false,
        };
        match self.view(self.root) {
            Some(v) => e.stack.push(Frame {
                v,
                next: 0,
                out: 0,
                emitted: false,
            }),
            None => e.damaged = true,
        }
        e
    }
}

struct Frame {
    v: View,
    /// The next transition to follow.
    next: usize,
    /// Output summed on the way to this node.
    out: u64,
    /// Whether this node's own key (if final) was given out.
    emitted: bool,
}

/// A walk over every key of an [`Index`], in order; like `fst`'s streams,
/// each key is lent until the next call.
pub struct Entries<'a> {
    index: Index<'a>,
    stack: Vec<Frame>,
    key: Vec<u8>,
    damaged: bool,
}

impl Entries<'_> {
    /// The next key and its value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<(&[u8], u64)> {
        let value = self.advance()?;
        Some((&self.key, value))
    }

    /// Move to the next final state; its key is then in `self.key`.
    fn advance(&mut self) -> Option<u64> {
        loop {
            let idx = self.index;
            let depth = self.stack.len();
            let top = self.stack.last_mut()?;
            if !top.emitted {
                top.emitted = true;
                if let Some(f) = idx.final_output(&top.v) {
                    return Some(top.out.wrapping_add(f));
                }
            }
            if top.next >= top.v.ntrans {
                self.stack.pop();
                if depth > 1 {
                    self.key.pop();
                }
                continue;
            }
            let i = top.next;
            top.next += 1;
            let step = idx
                .input(&top.v, i)
                .zip(idx.trans(&top.v, i))
                .and_then(|(b, (to, o))| Some((b, idx.view(to)?, top.out.wrapping_add(o))));
            let Some((b, v, out)) = step.filter(|_| depth <= 512) else {
                // Damaged (or deeper than any key can be: a loop in a
                // damaged index): stop the walk rather than guess.
                self.damaged = true;
                self.stack.clear();
                return None;
            };
            self.key.push(b);
            self.stack.push(Frame {
                v,
                next: 0,
                out,
                emitted: false,
            });
        }
    }

    /// Whether the walk stopped at damage in the index.
    pub fn damaged(&self) -> bool {
        self.damaged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fst::{IntoStreamer, Streamer};
    use proptest::prelude::*;

    fn build(pairs: &[(Vec<u8>, u64)]) -> Vec<u8> {
        let mut w = IndexWriter::new();
        for (k, v) in pairs {
            w.insert(k, *v).expect("test data");
        }
        w.finish()
    }

    fn index(bytes: &[u8]) -> Index<'_> {
        let f = fst::raw::Fst::new(bytes).expect("fst accepts our bytes");
        f.verify().expect("checksum as fst computes it");
        Index::new(bytes, f.root().addr())
    }

    fn sorted(mut pairs: Vec<(Vec<u8>, u64)>) -> Vec<(Vec<u8>, u64)> {
        pairs.sort();
        pairs.dedup_by(|a, b| a.0 == b.0);
        pairs.retain(|p| !p.0.is_empty());
        pairs
    }

    /// The `fst` crate reads what we write, and we read what it reads.
    fn agree(pairs: &[(Vec<u8>, u64)]) {
        let bytes = build(pairs);
        let map = fst::Map::new(bytes.clone()).expect("test data");
        assert_eq!(map.len(), pairs.len());
        let mut theirs = Vec::new();
        let mut s = map.into_stream();
        while let Some((k, v)) = s.next() {
            theirs.push((k.to_vec(), v));
        }
        assert_eq!(theirs, pairs);
        let idx = index(&bytes);
        let mut ours = Vec::new();
        let mut e = idx.entries();
        while let Some((k, v)) = e.next() {
            ours.push((k.to_vec(), v));
        }
        assert!(!e.damaged());
        assert_eq!(ours, pairs);
        for (k, v) in pairs {
            assert_eq!(idx.get(k), Some(*v));
            let mut longer = k.clone();
            longer.push(b'~');
            assert_eq!(
                idx.get(&longer),
                pairs.iter().find(|p| p.0 == longer).map(|p| p.1)
            );
        }
        // And the same bytes `fst`'s own builder writes give the same answers.
        let mut b = fst::MapBuilder::memory();
        for (k, v) in pairs {
            b.insert(k, *v).expect("test data");
        }
        let reference = b.into_inner().expect("test data");
        let r = fst::raw::Fst::new(reference.as_slice()).expect("test data");
        let ridx = Index::new(&reference, r.root().addr());
        for (k, v) in pairs {
            assert_eq!(ridx.get(k), Some(*v));
        }
    }

    #[test]
    fn names_wide_nodes_outputs_and_uncommon_bytes() {
        let mut pairs = Vec::new();
        // Wide nodes (over 32 transitions get an input index), shared
        // tails, values that differ and that repeat.
        for a in 0u8..=255 {
            pairs.push((vec![b'x', a], u64::from(a) * 1000));
            pairs.push((vec![b'y', a, b'w', b'w', b'w'], 7));
        }
        for (i, name) in [
            "moc.elpmaxe",
            "moc.elpmaxe.www",
            "ln.ekaf",
            "ln.ekaf.a-b",
            "moc",
        ]
        .iter()
        .enumerate()
        {
            pairs.push((name.as_bytes().to_vec(), i as u64 + (1 << 40)));
        }
        agree(&sorted(pairs));
    }

    #[test]
    fn empty_and_single() {
        agree(&[]);
        agree(&[(b"a".to_vec(), 0)]);
        agree(&[(b"abc".to_vec(), u64::MAX)]);
    }

    #[test]
    fn keys_out_of_order_are_refused() {
        let mut w = IndexWriter::new();
        w.insert(b"b", 1).expect("test data");
        assert!(w.insert(b"a", 1).is_err());
        assert!(w.insert(b"b", 1).is_err());
        assert!(w.insert(b"", 1).is_err());
    }

    #[test]
    fn damage_never_panics() {
        let pairs: Vec<(Vec<u8>, u64)> = sorted(
            (0..300u64)
                .map(|i| (format!("moc.{i:x}name.{}", i % 7).into_bytes(), i % 5))
                .collect(),
        );
        let bytes = build(&pairs);
        let f = fst::raw::Fst::new(bytes.as_slice()).expect("test data");
        let root = f.root().addr();
        for at in 16..bytes.len() - 20 {
            for flip in [0x01u8, 0x80, 0xff, 0x3f] {
                let mut b = bytes.clone();
                b[at] ^= flip;
                let idx = Index::new(&b, root);
                for (k, _) in pairs.iter().step_by(37) {
                    let _ = idx.get(k);
                    idx.walk(k, |_, _| {});
                }
                let mut e = idx.entries();
                let mut n = 0;
                while e.next().is_some() && n < 10_000 {
                    n += 1;
                }
            }
        }
        // Roots anywhere, too.
        for root in 0..bytes.len() + 3 {
            let idx = Index::new(&bytes, root);
            let _ = idx.get(b"moc.1name.1");
            let mut e = idx.entries();
            let mut n = 0;
            while e.next().is_some() && n < 10_000 {
                n += 1;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn agrees_with_fst(keys in proptest::collection::vec(
            (proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'.'), Just(b'-'), any::<u8>()], 1..12), 0u64..4),
            0..200,
        )) {
            agree(&sorted(keys));
        }
    }
}
