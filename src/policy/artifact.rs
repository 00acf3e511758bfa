//! The artifact: one file holding the compiled policy.
//!
//! Layout (all integers little-endian, sections 8-byte aligned):
//!
//! ```text
//! 0   magic "SCHILDPA"
//! 8   format version (u32), header length (u32)
//! 16  xxh3-64 checksum of the whole file with this field zeroed
//! 24  compiled at (unix seconds), 32 serial
//! 40  seven sections as (offset u64, length u64):
//!     fst map, set meta (u32 each), set offsets (u32), set items (u32), meta (postcard),
//!     name filter (u64 words, 8 per block), filter anchors (see filter.rs)
//! 152 zero up to the header length (256)
//! ```
//!
//! The name filter (`filter.rs`) is a blocked Bloom filter over the keys of
//! the fst. Most queried names are listed nowhere; for them the filter
//! answers "no parent listed" from one cache line per query instead of a
//! walk of the index that misses the cache at nearly every step.
//!
//! The fst, the set tables and the filter are used in place from a memory
//! map; only the metadata (feeds, events, provenance, reports) is decoded at
//! load. A file that is truncated, damaged or of another version is refused
//! with an error, never a panic, and is never half-used.
//!
//! (Reading the file into memory backed by transparent huge pages made
//! index walks about 12% faster, but a first load on a fresh VM then took
//! over a second at 10M names, against ~20 ms for the map: the kernel and
//! hypervisor must first provide and zero that memory. Not worth it.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::filter::Filter;
use super::ioc::{EventInfo, FeedInfo, LocalRecord, Provenance};
use super::report::{AllowSource, FeedReport, Refusal};

/// Key flags in an fst value. Written by [`super::compile`], read by
/// [`super::matcher`]: two flag bits and two 30-bit set ids (exact, sub).
pub(crate) const FLAG_EXACT: u64 = 1 << 63;
pub(crate) const FLAG_SUB: u64 = 1 << 62;
pub(crate) const FLAG_ALLOW: u64 = 1 << 61;
pub(crate) const SET_BITS: u32 = 30;
pub(crate) const SET_MASK: u64 = (1 << SET_BITS) - 1;
/// "No set" in a value's exact or sub field.
pub(crate) const NO_SET: u64 = SET_MASK;

pub const MAGIC: &[u8; 8] = b"SCHILDPA";
/// 4: provenance carries a record's own action and local data; client-IP
/// triggers and the local data in the metadata.
pub const VERSION: u32 = 4;
pub const HEADER_LEN: usize = 256;
const CHECKSUM_AT: usize = 16;
const SECTIONS_AT: usize = 40;
const SECTION_COUNT: usize = 7;

/// File name of the artifact inside `state_dir`.
pub const FILE_NAME: &str = "policy.artifact";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read artifact {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write artifact {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("artifact {path} is damaged: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error(
        "artifact {path} has format version {found}, this schild reads version {VERSION}: run `schild compile`"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("cannot build the name index")]
    Build(#[source] super::index::IndexError),
    #[error("cannot encode the artifact metadata")]
    Encode(#[source] postcard::Error),
}

/// A response-IP trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpTrigger {
    pub net: IpNet,
    pub set: u32,
}

/// Everything in the artifact that is decoded at load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub compiled_at: u64,
    pub serial: u64,
    pub feeds: Vec<FeedInfo>,
    pub events: Vec<EventInfo>,
    pub provenance: Vec<Provenance>,
    pub allow_sources: Vec<AllowSource>,
    pub ip_triggers: Vec<IpTrigger>,
    /// `rpz-client-ip` triggers: matched against the client's address.
    pub client_triggers: Vec<IpTrigger>,
    /// RPZ local data, referred to by [`Provenance::local`].
    pub local_data: Vec<LocalRecord>,
    pub reports: Vec<FeedReport>,
    pub refusals: Vec<Refusal>,
}

pub(crate) struct Sections<'a> {
    pub fst: &'a [u8],
    pub set_meta: &'a [u32],
    pub set_offsets: &'a [u32],
    pub set_items: &'a [u32],
    pub meta: &'a Meta,
    pub filter: &'a [u64],
    pub anchors: &'a [u8],
}

fn pad8(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(8) {
        buf.push(0);
    }
}

/// Encode the artifact into bytes.
pub(crate) fn encode(s: &Sections<'_>) -> Result<Vec<u8>, ArtifactError> {
    let meta = postcard::to_stdvec(s.meta).map_err(ArtifactError::Encode)?;
    let u32s = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let parts: [Vec<u8>; SECTION_COUNT] = [
        Vec::new(), // fst: copied from the slice below, not cloned
        u32s(s.set_meta),
        u32s(s.set_offsets),
        u32s(s.set_items),
        meta,
        s.filter.iter().flat_map(|x| x.to_le_bytes()).collect(),
        s.anchors.to_vec(),
    ];
    let total = HEADER_LEN + s.fst.len() + parts.iter().map(|p| p.len() + 8).sum::<usize>() + 8;
    let mut buf = Vec::with_capacity(total);
    buf.resize(HEADER_LEN, 0);
    buf[..8].copy_from_slice(MAGIC);
    buf[8..12].copy_from_slice(&VERSION.to_le_bytes());
    buf[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    buf[24..32].copy_from_slice(&s.meta.compiled_at.to_le_bytes());
    buf[32..40].copy_from_slice(&s.meta.serial.to_le_bytes());
    for (i, part) in parts.iter().enumerate() {
        pad8(&mut buf);
        let off = buf.len() as u64;
        let data: &[u8] = if i == 0 { s.fst } else { part };
        buf.extend_from_slice(data);
        let at = SECTIONS_AT + i * 16;
        buf[at..at + 8].copy_from_slice(&off.to_le_bytes());
        buf[at + 8..at + 16].copy_from_slice(&(data.len() as u64).to_le_bytes());
    }
    let sum = checksum(&buf);
    buf[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
    Ok(buf)
}

fn checksum(file: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&file[..CHECKSUM_AT]);
    h.update(&[0u8; 8]);
    h.update(&file[CHECKSUM_AT + 8..]);
    h.digest()
}

/// Write artifact bytes to `path` atomically: a temporary file in the same
/// folder, fsync, rename, fsync of the folder. A crash leaves either the old
/// artifact or the new one, never a mix.
/// Write an artifact atomically (see [`crate::fs::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    crate::fs::write_atomic(path, bytes).map_err(|source| ArtifactError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Bytes of a loaded artifact: a memory map, or a buffer (tests, benches).
#[derive(Clone)]
pub(crate) enum Bytes {
    Mapped(Arc<memmap2::Mmap>),
    Owned(Arc<Vec<u8>>),
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A window into the artifact bytes, usable as fst storage.
#[derive(Clone)]
pub(crate) struct Section {
    bytes: Bytes,
    off: usize,
    len: usize,
}

impl AsRef<[u8]> for Section {
    fn as_ref(&self) -> &[u8] {
        &self.bytes.as_ref()[self.off..self.off + self.len]
    }
}

/// The artifact's parts after verification.
pub(crate) struct Parts {
    /// The name index's bytes (the `fst` crate's format). Only our
    /// bounds-checked walker reads them (`policy::index`): no `fst::Map`
    /// is kept, since its reader trusts the bytes and could panic on
    /// damage that the checksum does not catch.
    pub index: Section,
    /// Address of the index's root node (from the fst footer).
    pub root: usize,
    /// Number of keys (from the fst footer).
    pub names: usize,
    pub set_meta: Section,
    pub set_offsets: Section,
    pub set_items: Section,
    pub filter: Section,
    pub anchors: Section,
    pub meta: Meta,
    pub file_len: usize,
    pub bytes: Bytes,
}

/// A hash of what decides the answers: the index (names and their values),
/// each set's feed and action, the IP and client triggers and the local
/// data. Two compiles with the same hash answer every query alike, so they
/// share a serial.
pub(crate) fn content_hash(
    fst: &[u8],
    set_meta: &[u8],
    ips: &[IpTrigger],
    clients: &[IpTrigger],
    local: &[LocalRecord],
) -> u64 {
    let mut h = Xxh3::new();
    h.update(&(fst.len() as u64).to_le_bytes());
    h.update(fst);
    h.update(&(set_meta.len() as u64).to_le_bytes());
    h.update(set_meta);
    for t in ips {
        h.update(t.net.to_string().as_bytes());
        h.update(&t.set.to_le_bytes());
    }
    // Kept apart from the answer-IP triggers by a marker.
    h.update(b"\0client");
    for t in clients {
        h.update(t.net.to_string().as_bytes());
        h.update(&t.set.to_le_bytes());
    }
    for r in local {
        h.update(r.type_str().as_bytes());
        h.update(r.rdata_text().as_bytes());
        h.update(b"\0");
    }
    h.digest()
}

/// Map a file and verify it.
pub(crate) fn load_file(path: &Path) -> Result<Parts, ArtifactError> {
    let file = File::open(path).map_err(|source| ArtifactError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: the artifact is only ever replaced by rename (write_atomic),
    // never modified in place, so the mapped pages cannot change under us.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ArtifactError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    verify(Bytes::Mapped(Arc::new(map)), path)
}

/// Verify bytes held in memory.
pub(crate) fn load_bytes(bytes: Vec<u8>) -> Result<Parts, ArtifactError> {
    verify(Bytes::Owned(Arc::new(bytes)), Path::new("<memory>"))
}

fn verify(bytes: Bytes, path: &Path) -> Result<Parts, ArtifactError> {
    let corrupt = |what: &str| ArtifactError::Corrupt {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let b = bytes.as_ref();
    if b.len() < HEADER_LEN {
        return Err(corrupt("shorter than its header (truncated?)"));
    }
    if &b[..8] != MAGIC {
        return Err(corrupt("not a schild artifact (bad magic)"));
    }
    let version = u32::from_le_bytes(read4(b, 8));
    if version != VERSION {
        return Err(ArtifactError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let stored = u64::from_le_bytes(read8(b, CHECKSUM_AT));
    if checksum(b) != stored {
        return Err(corrupt("checksum mismatch (truncated or altered)"));
    }
    let mut sections = Vec::with_capacity(SECTION_COUNT);
    for i in 0..SECTION_COUNT {
        let at = SECTIONS_AT + i * 16;
        let off = u64::from_le_bytes(read8(b, at)) as usize;
        let len = u64::from_le_bytes(read8(b, at + 8)) as usize;
        if off < HEADER_LEN || off.checked_add(len).is_none_or(|end| end > b.len()) {
            return Err(corrupt("section out of bounds"));
        }
        sections.push(Section {
            bytes: bytes.clone(),
            off,
            len,
        });
    }
    let mut it = sections.into_iter();
    let (
        Some(fst_s),
        Some(set_meta),
        Some(set_offsets),
        Some(set_items),
        Some(meta_s),
        Some(filter),
        Some(anchors),
    ) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    )
    else {
        return Err(corrupt("missing section"));
    };
    Filter::check(filter.as_ref(), anchors.as_ref()).map_err(|e| corrupt(e.what()))?;
    let meta: Meta =
        postcard::from_bytes(meta_s.as_ref()).map_err(|e| corrupt(&format!("metadata: {e}")))?;
    // `fst` checks the index's header and footer; our walker checks the rest
    // as it goes.
    let names = fst::raw::Fst::new(fst_s.as_ref())
        .map_err(|e| corrupt(&format!("name index: {e}")))?
        .len();
    // The root address from the footer, read here: `fst`'s `root()` would
    // decode the root node, trusting its bytes (the fuzz target found it).
    let root = index_root(fst_s.as_ref());
    if set_meta.len % 4 != 0 || set_offsets.len % 4 != 0 || set_items.len % 4 != 0 {
        return Err(corrupt("set table not a whole number of entries"));
    }
    let nsets = set_meta.len / 4;
    if set_offsets.len / 4 != nsets + 1 {
        return Err(corrupt("set offsets do not match the set count"));
    }
    // Check the set tables once here so that lookups can index without
    // fear: offsets ascend, stay in bounds, and name real provenance.
    let offs = set_offsets.as_ref();
    let items = set_items.as_ref();
    let nitems = items.len() / 4;
    let mut prev = 0u32;
    for k in 0..=nsets {
        let o = u32::from_le_bytes(read4(offs, k * 4));
        if o < prev || o as usize > nitems {
            return Err(corrupt("set offsets out of order"));
        }
        prev = o;
    }
    let nprov = meta.provenance.len();
    for k in 0..nitems {
        if u32::from_le_bytes(read4(items, k * 4)) as usize >= nprov {
            return Err(corrupt("set refers to missing provenance"));
        }
    }
    if meta
        .ip_triggers
        .iter()
        .chain(&meta.client_triggers)
        .any(|t| t.set as usize >= nsets)
    {
        return Err(corrupt("address trigger refers to a missing set"));
    }
    if meta
        .provenance
        .iter()
        .any(|p| p.local.is_some_and(|l| l as usize >= meta.local_data.len()))
    {
        return Err(corrupt("provenance refers to missing local data"));
    }
    let file_len = b.len();
    Ok(Parts {
        bytes: bytes.clone(),
        index: fst_s,
        root,
        names,
        set_meta,
        set_offsets,
        set_items,
        filter,
        anchors,
        meta,
        file_len,
    })
}

/// The root address in an fst footer: the u64 before the checksum
/// (format 3 and later) or the last u64 (earlier formats). `fst::Map::new`
/// has checked the version and the length already.
fn index_root(fst: &[u8]) -> usize {
    let version = u64::from_le_bytes(read8(fst, 0));
    let at = if version >= 3 {
        fst.len().saturating_sub(12)
    } else {
        fst.len().saturating_sub(8)
    };
    u64::from_le_bytes(read8(fst, at)) as usize
}

pub(crate) fn read4(b: &[u8], at: usize) -> [u8; 4] {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    x
}

fn read8(b: &[u8], at: usize) -> [u8; 8] {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    x
}

/// Read just the serial of an artifact file, if there is a valid one.
pub fn read_serial(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut header = [0u8; HEADER_LEN];
    File::open(path).ok()?.read_exact(&mut header).ok()?;
    if &header[..8] != MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(read8(&header, 32)))
}
