//! The matcher: "is this name blocked, and why?"
//!
//! A lookup reverses the query name into a stack buffer (lower-casing as it
//! goes) and walks the fst once. Every final state reached at a label
//! boundary is a listed parent domain; the walk ends at the query name
//! itself. The most specific block wins; any allowlist entry on the way wins
//! over every block. Nothing is allocated and nothing is locked.

use std::net::IpAddr;
use std::path::Path;

use super::artifact::IpTrigger;
use super::artifact::{
    self, ArtifactError, FLAG_ALLOW, FLAG_EXACT, FLAG_SUB, Meta, NO_SET, Parts, SET_BITS, SET_MASK,
    read4,
};
use super::filter::Filter;
use super::index::{Entries, Index};
use super::ioc::{Action, EventInfo, FeedId, FeedInfo, LocalRecord, Provenance};
use super::name::MAX_NAME_LEN;
use super::report::{AllowSource, Refusal, RefusalReason};

/// A block: which provenance set matched and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Provenance set: see [`Policy::provenance_of`].
    pub set: u32,
    pub action: Action,
    pub feed: FeedId,
    /// Length in octets of the listed name that matched (a parent of the
    /// query name, or the name itself).
    pub matched_len: u8,
    /// Whether the listed name is the query name itself.
    pub exact: bool,
}

/// An allowlist entry that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowHit {
    pub source: u32,
    /// Length of the allowlisted name (a parent of the query name or the name).
    pub matched_len: u8,
}

/// The answer of a name lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not listed.
    Pass,
    /// Listed, but an allowlist entry spares it.
    Allowed { allow: AllowHit, blocked: Hit },
    /// Allowlisted and not listed: nothing to do (kept apart for `check`).
    AllowOnly(AllowHit),
    /// Listed.
    Blocked(Hit),
}

impl Verdict {
    /// The hit to act on, if any.
    pub fn hit(&self) -> Option<Hit> {
        match self {
            Verdict::Blocked(h) => Some(*h),
            _ => None,
        }
    }
}

/// One entry of the name index, decoded (see [`Policy::decode_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameValue {
    /// A listed name: the provenance set of the name itself (`exact`) and
    /// of its subdomains (`sub`), either possibly absent.
    Block {
        exact: Option<u32>,
        sub: Option<u32>,
    },
    /// An allowlist entry: the name itself, and with `sub` its subdomains.
    Allow { source: u32, exact: bool, sub: bool },
}

/// IP triggers laid out for lookup: sorted by (prefix, network).
#[derive(Default)]
struct IpIndex {
    v4: Vec<(u8, u32, u32)>,
    v4_lens: Vec<u8>,
    v6: Vec<(u8, u128, u32)>,
    v6_lens: Vec<u8>,
}

impl IpIndex {
    fn build(triggers: &[IpTrigger]) -> IpIndex {
        let mut ips = IpIndex::default();
        for t in triggers {
            match t.net {
                ipnet::IpNet::V4(n) => ips.v4.push((n.prefix_len(), u32::from(n.network()), t.set)),
                ipnet::IpNet::V6(n) => {
                    ips.v6
                        .push((n.prefix_len(), u128::from(n.network()), t.set))
                }
            }
        }
        ips.v4.sort_unstable();
        ips.v6.sort_unstable();
        ips.v4_lens = ips.v4.iter().map(|e| e.0).collect();
        ips.v4_lens.dedup();
        ips.v4_lens.reverse();
        ips.v6_lens = ips.v6.iter().map(|e| e.0).collect();
        ips.v6_lens.dedup();
        ips.v6_lens.reverse();
        ips
    }

    /// The set of the longest network holding `ip` (an IPv4-mapped IPv6
    /// address is looked up as IPv4).
    fn lookup(&self, ip: IpAddr) -> Option<u32> {
        self.lookup_where(ip, |_| true)
    }

    /// The set of the longest network holding `ip` that `accept` takes.
    fn lookup_where(&self, ip: IpAddr, accept: impl Fn(u32) -> bool) -> Option<u32> {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4_lens.iter().find_map(|&len| {
                    let net = if len == 0 {
                        0
                    } else {
                        a & (u32::MAX << (32 - u32::from(len)))
                    };
                    self.v4
                        .binary_search_by(|e| (e.0, e.1).cmp(&(len, net)))
                        .ok()
                        .map(|i| self.v4[i].2)
                        .filter(|&set| accept(set))
                })
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6_lens.iter().find_map(|&len| {
                    let net = if len == 0 {
                        0
                    } else {
                        a & (u128::MAX << (128 - u32::from(len)))
                    };
                    self.v6
                        .binary_search_by(|e| (e.0, e.1).cmp(&(len, net)))
                        .ok()
                        .map(|i| self.v6[i].2)
                        .filter(|&set| accept(set))
                })
            }
        }
    }
}

/// A loaded, verified policy. Cheap to share behind an `Arc`.
pub struct Policy {
    parts: Parts,
    ips: IpIndex,
    clients: IpIndex,
}

impl Policy {
    /// Load and verify an artifact file (memory-mapped).
    pub fn load(path: &Path) -> Result<Policy, ArtifactError> {
        Ok(Policy::from_parts(artifact::load_file(path)?))
    }

    /// Verify and use artifact bytes from memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Policy, ArtifactError> {
        Ok(Policy::from_parts(artifact::load_bytes(bytes)?))
    }

    fn from_parts(parts: Parts) -> Policy {
        let ips = IpIndex::build(&parts.meta.ip_triggers);
        let clients = IpIndex::build(&parts.meta.client_triggers);
        Policy {
            parts,
            ips,
            clients,
        }
    }

    pub fn meta(&self) -> &Meta {
        &self.parts.meta
    }

    pub fn serial(&self) -> u64 {
        self.parts.meta.serial
    }

    /// Number of distinct names in the index (blocked and allowlisted).
    pub fn name_count(&self) -> usize {
        self.parts.names
    }

    /// Size of the name index in bytes: the fst and its filter.
    pub fn index_bytes(&self) -> usize {
        self.parts.index.as_ref().len() + self.filter().bytes()
    }

    /// A hash of what decides the answers (see `Compiler::set_previous`).
    pub fn content_hash(&self) -> u64 {
        artifact::content_hash(
            self.parts.index.as_ref(),
            self.parts.set_meta.as_ref(),
            &self.parts.meta.ip_triggers,
            &self.parts.meta.client_triggers,
            &self.parts.meta.local_data,
        )
    }

    /// The artifact file's bytes, exactly as verified.
    pub fn raw_bytes(&self) -> &[u8] {
        self.parts.bytes.as_ref()
    }

    /// Size of the whole artifact file in bytes.
    pub fn file_bytes(&self) -> usize {
        self.parts.file_len
    }

    /// Look up a name given as labels from the first (leftmost) to the last,
    /// as hickory's `Name::iter()` yields them. Case is ignored.
    pub fn lookup_labels<'a, I>(&self, labels: I) -> Verdict
    where
        I: DoubleEndedIterator<Item = &'a [u8]>,
    {
        self.lookup_labels_by(labels, |set| Some(self.set_meta(set)))
    }

    /// [`Policy::lookup_labels`] with only the feeds `keep` accepts: a
    /// listed name counts when one of its indicators comes from a kept
    /// feed (so a name two feeds list is still blocked for a group that
    /// uses one of them), and that feed decides the action (an enforcing
    /// feed over a log-only one, then the first in the configuration). The
    /// allowlist still wins. Allocation-free, like the plain lookup.
    pub fn lookup_labels_where<'a, I>(&self, labels: I, keep: impl Fn(FeedId) -> bool) -> Verdict
    where
        I: DoubleEndedIterator<Item = &'a [u8]>,
    {
        self.lookup_labels_by(labels, |set| self.decide_among(set, &keep))
    }

    #[inline]
    fn lookup_labels_by<'a, I>(
        &self,
        labels: I,
        decide: impl Fn(u32) -> Option<(FeedId, Action)>,
    ) -> Verdict
    where
        I: DoubleEndedIterator<Item = &'a [u8]>,
    {
        let mut buf = [0u8; MAX_NAME_LEN + 2];
        let mut n = 0;
        for (i, label) in labels.rev().enumerate() {
            if i > 0 {
                if n >= buf.len() {
                    return Verdict::Pass;
                }
                buf[n] = b'.';
                n += 1;
            }
            let Some(dst) = buf.get_mut(n..n + label.len()) else {
                // Longer than any listed name can be.
                return Verdict::Pass;
            };
            for (d, &b) in dst.iter_mut().zip(label.iter().rev()) {
                *d = b.to_ascii_lowercase();
            }
            n += label.len();
        }
        self.lookup_reversed_by(&buf[..n], decide)
    }

    /// Look up a name in presentation form (`www.Evil.example.`). Case and a
    /// trailing dot are ignored; no IDN or defang processing (use
    /// [`super::name::normalise`] first for user input).
    pub fn lookup_str(&self, name: &str) -> Verdict {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        if name.is_empty() || name.len() > MAX_NAME_LEN + 2 {
            // Longer than any listed name can be.
            return Verdict::Pass;
        }
        // The key is the name reversed: labels in reverse order, each
        // label's bytes reversed too.
        let mut buf = [0u8; MAX_NAME_LEN + 2];
        for (d, &b) in buf.iter_mut().zip(name.iter().rev()) {
            *d = b.to_ascii_lowercase();
        }
        self.lookup_reversed(&buf[..name.len()])
    }

    /// Look up a reversed, lower-case key (`moc.live.www`).
    pub fn lookup_reversed(&self, key: &[u8]) -> Verdict {
        self.lookup_reversed_by(key, |set| Some(self.set_meta(set)))
    }

    #[inline]
    fn lookup_reversed_by(
        &self,
        key: &[u8],
        decide: impl Fn(u32) -> Option<(FeedId, Action)>,
    ) -> Verdict {
        if !self.may_match(key) {
            return Verdict::Pass;
        }
        let mut block: Option<Hit> = None;
        let mut allow: Option<AllowHit> = None;
        // Every final state at a label boundary is a listed parent domain;
        // the walk ends at the query name itself.
        self.index().walk(key, |len, v| {
            self.consider(v, len == key.len(), len, &decide, &mut block, &mut allow);
        });
        finish(block, allow)
    }

    /// The name index, read in place by our bounds-checked walker.
    #[inline]
    fn index(&self) -> Index<'_> {
        Index::new(self.parts.index.as_ref(), self.parts.root)
    }

    /// Every name of the index with its value (see [`Policy::decode_name`]),
    /// in key order: reversed names, so a domain comes right before its
    /// subdomains.
    pub fn entries(&self) -> Entries<'_> {
        self.index().entries()
    }

    /// How many listed (blocked) names are `name` or below it: what an
    /// allowlist entry for `name` would spare. `name` is normalised. A walk
    /// of the index in key order (reversed names): for commands, not for
    /// the query path.
    pub fn listed_at_or_below(&self, name: &str) -> u64 {
        let key: Vec<u8> = name.bytes().rev().collect();
        let mut n = 0;
        let mut it = self.entries();
        while let Some((k, v)) = it.next() {
            if let Some(rest) = k.strip_prefix(key.as_slice()) {
                if (rest.is_empty() || rest[0] == b'.')
                    && matches!(Policy::decode_name(v), NameValue::Block { exact, sub } if exact.is_some() || sub.is_some())
                {
                    n += 1;
                }
            } else if k > key.as_slice() {
                break;
            }
        }
        n
    }

    fn may_match(&self, key: &[u8]) -> bool {
        self.filter().may_match(key)
    }

    #[inline]
    fn filter(&self) -> Filter<'_> {
        Filter::view(self.parts.filter.as_ref(), self.parts.anchors.as_ref())
    }

    fn consider(
        &self,
        v: u64,
        exact: bool,
        len: usize,
        decide: &impl Fn(u32) -> Option<(FeedId, Action)>,
        block: &mut Option<Hit>,
        allow: &mut Option<AllowHit>,
    ) {
        let applies = if exact {
            v & FLAG_EXACT != 0
        } else {
            v & FLAG_SUB != 0
        };
        if !applies {
            return;
        }
        let matched_len = len.min(u8::MAX as usize) as u8;
        if v & FLAG_ALLOW != 0 {
            if allow.is_none() {
                allow.replace(AllowHit {
                    source: (v & 0xffff_ffff) as u32,
                    matched_len,
                });
            }
            return;
        }
        let set = if exact {
            v & SET_MASK
        } else {
            (v >> SET_BITS) & SET_MASK
        };
        if set == NO_SET {
            return;
        }
        let set = set as u32;
        let Some((feed, action)) = decide(set) else {
            return;
        };
        // Deeper matches come later in the walk: the most specific wins.
        *block = Some(Hit {
            set,
            action,
            feed,
            matched_len,
            exact,
        });
    }

    /// Decode a value of [`Policy::names`]: which triggers a listed name
    /// carries, or which allowlist entry it is. For export (RPZ), where
    /// every name is visited once in key order.
    pub fn decode_name(v: u64) -> NameValue {
        if v & FLAG_ALLOW != 0 {
            return NameValue::Allow {
                source: (v & 0xffff_ffff) as u32,
                exact: v & FLAG_EXACT != 0,
                sub: v & FLAG_SUB != 0,
            };
        }
        let field = |flag: u64, set: u64| (v & flag != 0 && set != NO_SET).then_some(set as u32);
        NameValue::Block {
            exact: field(FLAG_EXACT, v & SET_MASK),
            sub: field(FLAG_SUB, (v >> SET_BITS) & SET_MASK),
        }
    }

    /// The feed that decides a provenance set's action, and the action.
    pub fn set_action(&self, set: u32) -> (FeedId, Action) {
        self.set_meta(set)
    }

    /// The deciding feed and action of a set among the feeds `keep`
    /// accepts (the compiler's rule: an enforcing feed beats a log-only
    /// one, then the first in the configuration); `None` when no indicator
    /// of the set comes from a kept feed.
    pub fn decide_among(
        &self,
        set: u32,
        keep: impl Fn(FeedId) -> bool,
    ) -> Option<(FeedId, Action)> {
        let (feed, action) = self.set_meta(set);
        if keep(feed) {
            return Some((feed, action));
        }
        let mut best: Option<(bool, FeedId, Action)> = None;
        for p in self.provenance_of(set) {
            if !keep(p.feed) {
                continue;
            }
            let Some(info) = self.feed(p.feed) else {
                continue;
            };
            let enforces = info.action.enforces();
            let better = match best {
                None => true,
                Some((be, bf, _)) => (enforces && !be) || (enforces == be && p.feed < bf),
            };
            if better {
                best = Some((enforces, p.feed, info.action));
            }
        }
        best.map(|(_, f, a)| (f, a))
    }

    fn set_meta(&self, set: u32) -> (FeedId, Action) {
        let m = u32::from_le_bytes(read4(self.parts.set_meta.as_ref(), set as usize * 4));
        ((m & 0xffff) as FeedId, Action::from_u8((m >> 16) as u8))
    }

    /// Look up an address from an answer (A/AAAA) against the IP triggers.
    pub fn lookup_ip(&self, ip: IpAddr) -> Option<Hit> {
        let set = self.ips.lookup(ip)?;
        Some(self.address_hit(set))
    }

    /// [`Policy::lookup_ip`] with only the feeds `keep` accepts (see
    /// [`Policy::lookup_labels_where`]): the most specific network a kept
    /// feed lists.
    pub fn lookup_ip_where(&self, ip: IpAddr, keep: impl Fn(FeedId) -> bool) -> Option<Hit> {
        let set = self
            .ips
            .lookup_where(ip, |set| self.decide_among(set, &keep).is_some())?;
        let (feed, action) = self.decide_among(set, &keep)?;
        Some(Hit {
            set,
            action,
            feed,
            matched_len: 0,
            exact: true,
        })
    }

    /// Look up a client's address against the `rpz-client-ip` triggers.
    /// No allocation; a policy without client triggers answers at once.
    pub fn lookup_client(&self, ip: IpAddr) -> Option<Hit> {
        if self.parts.meta.client_triggers.is_empty() {
            return None;
        }
        let set = self.clients.lookup(ip)?;
        Some(self.address_hit(set))
    }

    fn address_hit(&self, set: u32) -> Hit {
        let (feed, action) = self.set_meta(set);
        Hit {
            set,
            action,
            feed,
            matched_len: 0,
            exact: true,
        }
    }

    /// The local data of a set: the records of its deciding feed's
    /// provenance, in the order the zone gave them. For an answer being
    /// built (the blocked path) and the export, not the lookup.
    pub fn local_records(&self, set: u32) -> impl Iterator<Item = &LocalRecord> + '_ {
        let feed = self.set_meta(set).0;
        self.provenance_of(set)
            .filter(move |p| p.feed == feed)
            .filter_map(|p| p.local)
            .filter_map(|l| self.parts.meta.local_data.get(l as usize))
    }

    /// The provenance records behind a hit (at least one).
    pub fn provenance_of(&self, set: u32) -> impl Iterator<Item = &Provenance> + '_ {
        let offs = self.parts.set_offsets.as_ref();
        let start = u32::from_le_bytes(read4(offs, set as usize * 4)) as usize;
        let end = u32::from_le_bytes(read4(offs, set as usize * 4 + 4)) as usize;
        let items = self.parts.set_items.as_ref();
        (start..end.max(start)).filter_map(move |k| {
            let id = u32::from_le_bytes(read4(items, k * 4)) as usize;
            self.parts.meta.provenance.get(id)
        })
    }

    pub fn feed(&self, id: FeedId) -> Option<&FeedInfo> {
        self.parts.meta.feeds.get(id as usize)
    }

    pub fn event(&self, p: &Provenance) -> Option<&EventInfo> {
        p.event.and_then(|e| self.parts.meta.events.get(e as usize))
    }

    pub fn allow_source(&self, id: u32) -> Option<&AllowSource> {
        self.parts.meta.allow_sources.get(id as usize)
    }

    /// The refusals of protected names (`[guard] protected`), each with
    /// the name of the feed that listed it.
    pub fn protected_refusals(&self) -> impl Iterator<Item = (&str, &Refusal)> + '_ {
        let meta = &self.parts.meta;
        meta.refusals
            .iter()
            .filter(|r| matches!(r.reason, RefusalReason::Protected { .. }))
            .map(move |r| {
                let feed = meta
                    .provenance
                    .get(r.prov as usize)
                    .and_then(|p| meta.feeds.get(p.feed as usize))
                    .map_or("", |f| f.name.as_str());
                (feed, r)
            })
    }

    /// Per feed (every feed, in order), how many of its IOCs were refused
    /// as protected names.
    pub fn protected_refusal_counts(&self) -> Vec<(&str, u64)> {
        let mut counts: Vec<(&str, u64)> = self
            .parts
            .meta
            .feeds
            .iter()
            .map(|f| (f.name.as_str(), 0))
            .collect();
        for (feed, _) in self.protected_refusals() {
            if let Some(c) = counts.iter_mut().find(|(f, _)| *f == feed) {
                c.1 += 1;
            }
        }
        counts
    }
}

fn finish(block: Option<Hit>, allow: Option<AllowHit>) -> Verdict {
    match (block, allow) {
        (Some(b), Some(a)) => Verdict::Allowed {
            allow: a,
            blocked: b,
        },
        (Some(b), None) => Verdict::Blocked(b),
        (None, Some(a)) => Verdict::AllowOnly(a),
        (None, None) => Verdict::Pass,
    }
}

/// The listed name that matched, as a suffix of the query name.
pub fn matched_suffix(query: &str, matched_len: u8) -> &str {
    let q = query.strip_suffix('.').unwrap_or(query);
    let len = matched_len as usize;
    if len <= q.len() {
        &q[q.len() - len..]
    } else {
        q
    }
}
