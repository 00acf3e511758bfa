//! The compiler: indicators in, one artifact out.
//!
//! Feed readers push borrowed [`IocRecord`]s; the compiler normalises each
//! one, applies the guards (allowlist, public suffixes, special-use
//! addresses), keeps a count and a reason for everything it refuses, and at
//! the end sorts the names into an `fst` map and writes the artifact.
//!
//! Memory is what decides how large a list we can compile on a small box, so
//! names go into one byte arena and each entry is 16 bytes.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::artifact::{
    self, ArtifactError, FLAG_ALLOW, FLAG_EXACT, FLAG_SUB, Meta, NO_SET, SET_BITS, Sections,
};
use super::index::IndexWriter;
use super::ioc::{
    Action, EventId, EventInfo, FeedId, FeedInfo, IocRecord, IocType, LocalRecord, Provenance,
    RpzRule,
};
use super::name::{self, NormalName};
use super::report::{AllowScope, AllowSource, FeedReport, FetchStatus, Refusal, RefusalReason};

/// How many refusals the artifact keeps for `check` to explain.
const MAX_REFUSALS: usize = 1_000_000;

/// Why an allowlist entry was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AllowEntryError {
    #[error("not a valid name")]
    Name(#[from] name::NameError),
    #[error("a public suffix or a single label: it would spare every IOC under it")]
    PublicSuffix,
}

/// One name of the list. The first key bytes are kept inline so that the
/// sort of ten million entries compares integers, and reaches into the arena
/// (a cache miss each time) only for names that share their first 16 bytes.
#[derive(Clone, Copy)]
struct Entry {
    /// Key bytes 0..16, big-endian, zero-padded: orders like the key.
    head: u128,
    key_off: u64,
    key_len: u8,
    /// FLAG_EXACT / FLAG_SUB bits shifted down, or allow.
    kind: u8,
    /// Provenance id, or allow-source id.
    id: u32,
}

const KIND_EXACT: u8 = 1;
const KIND_SUB: u8 = 2;
const KIND_ALLOW: u8 = 4;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PlainKey {
    feed: FeedId,
    ioc_type: IocType,
    wildcard: bool,
    action: Option<Action>,
}

/// A record's own action and local data (RPZ), or neither (the feed's
/// action).
#[derive(Clone, Copy, Default)]
struct Rule {
    action: Option<Action>,
    local: Option<u32>,
}

/// Builds an artifact. Add the allowlist first, then the feeds' records.
pub struct Compiler {
    feeds: Vec<FeedInfo>,
    reports: Vec<FeedReport>,
    events: Vec<EventInfo>,
    provenance: Vec<Provenance>,
    plain_prov: HashMap<PlainKey, u32>,
    allow_sources: Vec<AllowSource>,
    allow_names: HashMap<String, (AllowScope, u32)>,
    /// Protected names (`[guard] protected`) and their source: the name
    /// and its subdomains are never blocked.
    protected: HashMap<String, u32>,
    allow_nets: Vec<(IpNet, u32)>,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    ips: Vec<(IpNet, u32)>,
    /// `rpz-client-ip` triggers: the client's address, not the answer's.
    clients: Vec<(IpNet, u32)>,
    local_data: Vec<LocalRecord>,
    /// The allowlist source of each `rpz` feed's `rpz-passthru.` records.
    passthru_sources: HashMap<FeedId, u32>,
    refusals: Vec<Refusal>,
    previous_serial: u64,
    previous_hash: Option<u64>,
}

impl Compiler {
    pub fn new(feeds: Vec<FeedInfo>) -> Compiler {
        let reports = feeds
            .iter()
            .map(|f| FeedReport {
                feed: f.name.clone(),
                ..FeedReport::default()
            })
            .collect();
        Compiler {
            feeds,
            reports,
            events: Vec::new(),
            provenance: Vec::new(),
            plain_prov: HashMap::new(),
            allow_sources: Vec::new(),
            allow_names: HashMap::new(),
            protected: HashMap::new(),
            allow_nets: Vec::new(),
            arena: Vec::new(),
            entries: Vec::new(),
            ips: Vec::new(),
            clients: Vec::new(),
            local_data: Vec::new(),
            passthru_sources: HashMap::new(),
            refusals: Vec::new(),
            previous_serial: 0,
            previous_hash: None,
        }
    }

    /// The new artifact's serial will be greater than this one.
    pub fn set_previous_serial(&mut self, serial: u64) {
        self.previous_serial = serial;
    }

    /// The previous artifact: when the new one answers every query the same
    /// way (same [`Policy::content_hash`](super::Policy::content_hash)), it
    /// keeps the previous serial, so secondaries are not told of a change
    /// that is none.
    pub fn set_previous(&mut self, serial: u64, content_hash: u64) {
        self.previous_serial = serial;
        self.previous_hash = Some(content_hash);
    }

    /// Register an allowlist source; returns its id for [`Compiler::allow`].
    pub fn allow_source(&mut self, source: AllowSource) -> u32 {
        self.allow_sources.push(source);
        (self.allow_sources.len() - 1) as u32
    }

    /// Add an allowlist entry (a name, `*.name`, or for `Exact` scope one
    /// name). Fails for a value that is not a name, and for a public
    /// suffix or a single label: one such line would stop blocking every
    /// IOC under it (the feeds' guard refuses to block one, likewise).
    pub fn allow(
        &mut self,
        source: u32,
        value: &str,
        scope: AllowScope,
    ) -> Result<(), AllowEntryError> {
        let parsed = name::parse_name(value)?;
        if parsed.name.is_public_suffix() {
            return Err(AllowEntryError::PublicSuffix);
        }
        let key = parsed.name.into_string();
        // A wider scope wins over a narrower one for the same name.
        let entry = self.allow_names.entry(key).or_insert((scope, source));
        *entry = match (entry.0, scope) {
            (AllowScope::Subtree, _) => *entry,
            (_, AllowScope::Subtree) => (scope, source),
            (a, b) if a == b => *entry,
            // The name and its subdomains, from two entries.
            _ => (AllowScope::Subtree, source),
        };
        Ok(())
    }

    /// Protect a name of a clinical system: it and every name below it
    /// are never blocked. An IOC at or below it is refused (reason
    /// [`RefusalReason::Protected`]); one for a parent stays, and the
    /// protected subtree is carved out of it at query time, as an allowlist
    /// entry is. `source` is from [`Compiler::allow_source`] (kind
    /// `protected`). Fails like [`Compiler::allow`].
    pub fn protect(&mut self, source: u32, value: &str) -> Result<(), AllowEntryError> {
        let parsed = name::parse_name(value)?;
        if parsed.name.is_public_suffix() {
            return Err(AllowEntryError::PublicSuffix);
        }
        let key = parsed.name.into_string();
        self.protected.entry(key.clone()).or_insert(source);
        self.allow_names.insert(key, (AllowScope::Subtree, source));
        Ok(())
    }

    /// The protected entry covering `name` (itself or a parent), if any.
    fn protected_by(&self, name: &NormalName) -> Option<(String, u32)> {
        if self.protected.is_empty() {
            return None;
        }
        let mut rest = name.as_str();
        loop {
            if let Some(&source) = self.protected.get(rest) {
                return Some((rest.to_string(), source));
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// Add an allowlisted network: IP indicators inside it are refused.
    pub fn allow_net(&mut self, source: u32, net: IpNet) {
        self.allow_nets.push((net, source));
    }

    /// Register an event for a feed; records refer to it by the returned id.
    pub fn add_event(&mut self, event: EventInfo) -> EventId {
        self.events.push(event);
        (self.events.len() - 1) as EventId
    }

    /// The report of a feed, for readers to count what they could not use
    /// and for the feed layer to record how the fetch went.
    pub fn report_mut(&mut self, feed: FeedId) -> &mut FeedReport {
        &mut self.reports[feed as usize]
    }

    /// Add one indicator of a feed.
    pub fn add(&mut self, feed: FeedId, rec: &IocRecord<'_>) {
        let report = &mut self.reports[feed as usize];
        report.records += 1;
        let Some(ioc_type) = IocType::from_misp(rec.misp_type) else {
            *report
                .skipped_types
                .entry(rec.misp_type.to_string())
                .or_default() += 1;
            return;
        };
        if rec.deleted {
            report.deleted += 1;
            return;
        }
        if !rec.to_ids {
            report.not_to_ids += 1;
            return;
        }
        match ioc_type {
            IocType::Domain | IocType::Hostname => {
                self.add_name(feed, ioc_type, rec, rec.value, None, Rule::default());
            }
            IocType::DomainIp => {
                // Split on the first `|`, as MISP does.
                let Some((domain, ip)) = rec.value.split_once('|') else {
                    self.reports[feed as usize].invalid(rec.value, "domain|ip-without-pipe");
                    return;
                };
                self.add_name(
                    feed,
                    ioc_type,
                    rec,
                    domain,
                    Some(rec.value),
                    Rule::default(),
                );
                self.add_ip(feed, ioc_type, rec, ip, Some(rec.value), Rule::default());
            }
            IocType::Url => match url_host(rec.value) {
                Ok(UrlHost::Name(host)) => {
                    self.add_name(feed, ioc_type, rec, &host, Some(rec.value), Rule::default())
                }
                Ok(UrlHost::Ip) => {
                    *self.reports[feed as usize]
                        .unsupported
                        .entry("url-with-ip-host".into())
                        .or_default() += 1
                }
                Err(reason) => self.reports[feed as usize].invalid(rec.value, reason),
            },
            IocType::IpDst | IocType::IpSrc => {
                self.add_ip(feed, ioc_type, rec, rec.value, None, Rule::default())
            }
        }
    }

    /// Turn an RPZ record's rule into the provenance's action and local
    /// data; `None` for `rpz-passthru.`.
    fn rpz_rule(&mut self, rule: RpzRule) -> Option<Rule> {
        match rule {
            RpzRule::Action(action) => Some(Rule {
                action: Some(action),
                local: None,
            }),
            RpzRule::Local(record) => {
                self.local_data.push(record);
                Some(Rule {
                    action: Some(Action::LocalData),
                    local: Some((self.local_data.len() - 1) as u32),
                })
            }
            RpzRule::Passthru => None,
        }
    }

    /// One QNAME trigger of an `rpz` feed (`name` exact, `*.name` the
    /// subdomains) with its record's rule. `rpz-passthru.` becomes an
    /// allowlist entry for the trigger: it spares the name under a listed
    /// parent from every feed, at query time.
    pub fn add_rpz_name(&mut self, feed: FeedId, trigger: &str, rule: RpzRule) {
        self.reports[feed as usize].records += 1;
        let Some(rule) = self.rpz_rule(rule) else {
            let source = self.passthru_source(feed);
            let (value, scope) = match trigger.strip_prefix("*.") {
                Some(parent) => (parent, AllowScope::Subdomains),
                None => (trigger, AllowScope::Exact),
            };
            match self.allow(source, value, scope) {
                Ok(()) => self.reports[feed as usize].passthru += 1,
                Err(AllowEntryError::Name(e)) => {
                    self.reports[feed as usize].invalid(trigger, e.reason())
                }
                Err(AllowEntryError::PublicSuffix) => {
                    self.reports[feed as usize].invalid(trigger, "passthru-public-suffix")
                }
            }
            return;
        };
        let rec = IocRecord::plain("hostname", trigger);
        self.add_name(feed, IocType::Hostname, &rec, trigger, None, rule);
    }

    /// One response-IP trigger (`rpz-ip`) of an `rpz` feed, `net` in CIDR
    /// form, with its record's rule.
    pub fn add_rpz_ip(&mut self, feed: FeedId, net: &str, rule: RpzRule) {
        self.reports[feed as usize].records += 1;
        let Some(rule) = self.rpz_rule(rule) else {
            // A passthru for an answer address: the allowlist's networks
            // refuse IP indicators at compile time only, so there is no
            // query-time exception to make of it.
            self.reports[feed as usize].unsupported("rpz-ip passthru");
            return;
        };
        let rec = IocRecord::plain("ip-dst", net);
        self.add_ip(feed, IocType::IpDst, &rec, net, None, rule);
    }

    /// One `rpz-client-ip` trigger: the rule applies to every query from
    /// a client inside `net`. The address guard does not apply (the
    /// hospital's own networks are what these name), nor the allowlist.
    pub fn add_rpz_client(&mut self, feed: FeedId, net: &str, rule: RpzRule) {
        self.reports[feed as usize].records += 1;
        let parsed = match parse_net(net) {
            Ok(n) => n,
            Err(reason) => {
                self.reports[feed as usize].invalid(net, reason);
                return;
            }
        };
        let Some(rule) = self.rpz_rule(rule) else {
            self.reports[feed as usize].unsupported("rpz-client-ip passthru");
            return;
        };
        let rec = IocRecord::plain("ip-src", net);
        let prov = self.provenance(feed, IocType::IpSrc, &rec, None, false, rule);
        self.clients.push((parsed, prov));
        self.reports[feed as usize].client_ips += 1;
    }

    fn passthru_source(&mut self, feed: FeedId) -> u32 {
        if let Some(&s) = self.passthru_sources.get(&feed) {
            return s;
        }
        let info = &self.feeds[feed as usize];
        let source = AllowSource {
            kind: "rpz-passthru".into(),
            path: info.location.clone(),
            name: Some(info.name.clone()),
        };
        let id = self.allow_source(source);
        self.passthru_sources.insert(feed, id);
        id
    }

    fn provenance(
        &mut self,
        feed: FeedId,
        ioc_type: IocType,
        rec: &IocRecord<'_>,
        value: Option<&str>,
        wildcard: bool,
        rule: Rule,
    ) -> u32 {
        let plain = rec.event.is_none()
            && rec.attribute_uuid.is_none()
            && rec.tags.is_empty()
            && value.is_none()
            && rule.local.is_none();
        if plain {
            let key = PlainKey {
                feed,
                ioc_type,
                wildcard,
                action: rule.action,
            };
            if let Some(&id) = self.plain_prov.get(&key) {
                return id;
            }
            let id = self.push_prov(Provenance {
                feed,
                ioc_type,
                event: None,
                attribute_uuid: None,
                tags: Vec::new(),
                value: None,
                action: rule.action,
                local: None,
            });
            self.plain_prov.insert(key, id);
            return id;
        }
        self.push_prov(Provenance {
            feed,
            ioc_type,
            event: rec.event,
            attribute_uuid: rec.attribute_uuid.map(str::to_string),
            tags: rec.tags.to_vec(),
            value: value.map(str::to_string),
            action: rule.action,
            local: rule.local,
        })
    }

    fn push_prov(&mut self, p: Provenance) -> u32 {
        self.provenance.push(p);
        (self.provenance.len() - 1) as u32
    }

    fn add_name(
        &mut self,
        feed: FeedId,
        ioc_type: IocType,
        rec: &IocRecord<'_>,
        raw: &str,
        shown: Option<&str>,
        rule: Rule,
    ) {
        let parsed = match name::parse_name(raw) {
            Ok(p) => p,
            Err(e) => {
                self.reports[feed as usize].invalid(raw, e.reason());
                return;
            }
        };
        let kind = if parsed.wildcard {
            KIND_SUB
        } else {
            match ioc_type {
                IocType::Domain | IocType::DomainIp => KIND_EXACT | KIND_SUB,
                _ => KIND_EXACT,
            }
        };
        // Keep the value as written when the key alone would not show it.
        let shown = shown.or(if parsed.wildcard { Some(raw) } else { None });
        let name = parsed.name;
        if name.is_public_suffix() {
            let prov = self.provenance(feed, ioc_type, rec, shown, parsed.wildcard, rule);
            self.reports[feed as usize].refused_public_suffix += 1;
            self.refuse(name.as_str(), prov, RefusalReason::PublicSuffix);
            return;
        }
        if let Some((entry, source)) = self.protected_by(&name) {
            let prov = self.provenance(feed, ioc_type, rec, shown, parsed.wildcard, rule);
            self.refuse(
                name.as_str(),
                prov,
                RefusalReason::Protected { entry, source },
            );
            return;
        }
        if let Some((entry, source)) = self.allowlisted(&name) {
            let prov = self.provenance(feed, ioc_type, rec, shown, parsed.wildcard, rule);
            self.reports[feed as usize].refused_allowlist += 1;
            self.refuse(
                name.as_str(),
                prov,
                RefusalReason::Allowlist { entry, source },
            );
            return;
        }
        let prov = self.provenance(feed, ioc_type, rec, shown, parsed.wildcard, rule);
        self.push_entry(&name, kind, prov);
        self.reports[feed as usize].names += 1;
    }

    fn push_entry(&mut self, name: &NormalName, kind: u8, id: u32) {
        let off = self.arena.len();
        self.arena.extend(name.as_str().bytes().rev());
        self.entries.push(Entry {
            head: key_head(&self.arena[off..]),
            key_off: off as u64,
            // Validated names are at most 253 octets.
            key_len: name.as_str().len() as u8,
            kind,
            id,
        });
    }

    fn refuse(&mut self, value: &str, prov: u32, reason: RefusalReason) {
        if self.refusals.len() < MAX_REFUSALS {
            self.refusals.push(Refusal {
                value: value.to_string(),
                prov,
                reason,
            });
        }
    }

    /// The allowlist entry covering `name`, if any: the name itself
    /// (either scope) or a parent with subtree scope.
    fn allowlisted(&self, name: &NormalName) -> Option<(String, u32)> {
        if self.allow_names.is_empty() {
            return None;
        }
        let s = name.as_str();
        if let Some(&(scope, source)) = self.allow_names.get(s)
            && scope != AllowScope::Subdomains
        {
            return Some((s.to_string(), source));
        }
        let mut rest = s;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(&(AllowScope::Subtree | AllowScope::Subdomains, source)) =
                self.allow_names.get(parent)
            {
                return Some((parent.to_string(), source));
            }
            rest = parent;
        }
        None
    }

    fn add_ip(
        &mut self,
        feed: FeedId,
        ioc_type: IocType,
        rec: &IocRecord<'_>,
        raw: &str,
        shown: Option<&str>,
        rule: Rule,
    ) {
        let net = match parse_net(raw) {
            Ok(n) => n,
            Err(reason) => {
                self.reports[feed as usize].invalid(raw, reason);
                return;
            }
        };
        let prov = self.provenance(feed, ioc_type, rec, shown, false, rule);
        if let Some(why) = address_guard(&net) {
            self.reports[feed as usize].refused_address += 1;
            self.refuse(
                &net.to_string(),
                prov,
                RefusalReason::AddressGuard {
                    why: why.to_string(),
                },
            );
            return;
        }
        if let Some(&(allowed, source)) = self.allow_nets.iter().find(|(a, _)| a.contains(&net)) {
            self.reports[feed as usize].refused_allowlist += 1;
            self.refuse(
                &net.to_string(),
                prov,
                RefusalReason::Allowlist {
                    entry: allowed.to_string(),
                    source,
                },
            );
            return;
        }
        self.ips.push((net, prov));
        self.reports[feed as usize].ips += 1;
    }

    /// Record how a feed's fetch went.
    pub fn set_fetch_status(&mut self, feed: FeedId, status: FetchStatus) {
        self.reports[feed as usize].fetch = status;
    }

    /// Sort, merge and write the artifact bytes.
    pub fn finish(self) -> Result<Vec<u8>, ArtifactError> {
        self.finish_with(|_, _| {})
    }

    /// [`Compiler::finish`], calling `on_key` with every key of the name
    /// index (reversed names, ascending) and its value as it is written.
    pub fn finish_with(
        mut self,
        mut on_key: impl FnMut(&[u8], u64),
    ) -> Result<Vec<u8>, ArtifactError> {
        // Allowlist names become entries too: at query time an allowlisted
        // name under a blocked domain must still resolve.
        let allow: Vec<(String, (AllowScope, u32))> = self.allow_names.drain().collect();
        for (n, (scope, source)) in allow {
            let kind = KIND_ALLOW
                | match scope {
                    AllowScope::Subtree => KIND_EXACT | KIND_SUB,
                    AllowScope::Exact => KIND_EXACT,
                    AllowScope::Subdomains => KIND_SUB,
                };
            if let Ok(name) = name::normalise(&n) {
                self.push_entry(&name, kind, source);
            }
        }

        let arena = std::mem::take(&mut self.arena);
        let key = |e: &Entry| &arena[e.key_off as usize..e.key_off as usize + e.key_len as usize];
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_unstable_by(|a, b| {
            a.head
                .cmp(&b.head)
                .then_with(|| key(a).cmp(key(b)))
                .then(a.kind.cmp(&b.kind))
                .then(a.id.cmp(&b.id))
        });

        let mut sets = SetTable::new(&self.feeds, &self.provenance);
        let mut builder = IndexWriter::with_keys(entries.len());
        let mut i = 0;
        let mut exact: Vec<u32> = Vec::new();
        let mut sub: Vec<u32> = Vec::new();
        while i < entries.len() {
            let (head, k) = (entries[i].head, key(&entries[i]));
            let mut j = i;
            exact.clear();
            sub.clear();
            let mut allow: Option<(u8, u32)> = None;
            while j < entries.len() && entries[j].head == head && key(&entries[j]) == k {
                let e = entries[j];
                if e.kind & KIND_ALLOW != 0 {
                    // One allow entry per name (deduplicated above).
                    allow = Some((e.kind, e.id));
                } else {
                    if e.kind & KIND_EXACT != 0 {
                        exact.push(e.id);
                    }
                    if e.kind & KIND_SUB != 0 {
                        sub.push(e.id);
                    }
                }
                j += 1;
            }
            let value = match allow {
                // Blocked entries for an allowlisted name were refused
                // while adding, so an allow entry stands alone.
                Some((kind, source)) => {
                    let mut v = FLAG_ALLOW | u64::from(source);
                    if kind & KIND_EXACT != 0 {
                        v |= FLAG_EXACT;
                    }
                    if kind & KIND_SUB != 0 {
                        v |= FLAG_SUB;
                    }
                    v
                }
                None => {
                    let mut v = 0;
                    let e = if exact.is_empty() {
                        NO_SET
                    } else {
                        v |= FLAG_EXACT;
                        u64::from(sets.intern(&mut exact))
                    };
                    let s = if sub.is_empty() {
                        NO_SET
                    } else {
                        v |= FLAG_SUB;
                        u64::from(sets.intern(&mut sub))
                    };
                    v | e | (s << SET_BITS)
                }
            };
            builder.insert(k, value).map_err(ArtifactError::Build)?;
            on_key(k, value);
            i = j;
        }
        // The filter over the distinct keys, in order.
        let distinct = || {
            entries
                .iter()
                .map(key)
                .scan(None::<&[u8]>, |prev, k| {
                    let new = *prev != Some(k);
                    *prev = Some(k);
                    Some(new.then_some(k))
                })
                .flatten()
        };
        let filter = super::filter::build(distinct, builder.len() as usize);
        drop(entries);
        drop(arena);
        let fst_bytes = builder.finish();

        // IP triggers: merge identical networks into one set each.
        let ip_triggers = ip_sets(&mut self.ips, &mut sets);
        let client_triggers = ip_sets(&mut self.clients, &mut sets);

        let SetTable {
            meta: set_meta,
            offsets: set_offsets,
            items: set_items,
            ..
        } = sets;
        let set_meta_bytes: Vec<u8> = set_meta.iter().flat_map(|x| x.to_le_bytes()).collect();
        let hash = artifact::content_hash(
            &fst_bytes,
            &set_meta_bytes,
            &ip_triggers,
            &client_triggers,
            &self.local_data,
        );
        let serial = if self.previous_hash == Some(hash) && self.previous_serial > 0 {
            self.previous_serial
        } else {
            next_serial(self.previous_serial)
        };
        let meta = Meta {
            compiled_at: crate::clock::unix_now(),
            serial,
            feeds: self.feeds,
            events: self.events,
            provenance: self.provenance,
            allow_sources: self.allow_sources,
            ip_triggers,
            client_triggers,
            local_data: self.local_data,
            reports: self.reports,
            refusals: self.refusals,
        };
        artifact::encode(&Sections {
            fst: &fst_bytes,
            set_meta: &set_meta,
            set_offsets: &set_offsets,
            set_items: &set_items,
            meta: &meta,
            filter: &filter.words,
            anchors: &filter.anchors,
        })
    }
}

/// Address triggers, one set per distinct network, sorted.
fn ip_sets(ips: &mut [(IpNet, u32)], sets: &mut SetTable<'_>) -> Vec<artifact::IpTrigger> {
    ips.sort_unstable_by(|a, b| {
        (a.0.addr(), a.0.prefix_len(), a.1).cmp(&(b.0.addr(), b.0.prefix_len(), b.1))
    });
    let mut out = Vec::new();
    let mut i = 0;
    let mut ids = Vec::new();
    while i < ips.len() {
        let net = ips[i].0;
        ids.clear();
        while i < ips.len() && ips[i].0 == net {
            ids.push(ips[i].1);
            i += 1;
        }
        out.push(artifact::IpTrigger {
            net,
            set: sets.intern(&mut ids),
        });
    }
    out
}

/// The first 16 bytes of a key as a number that sorts like the bytes.
fn key_head(key: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(b)
}

/// Provenance sets, interned: ten million entries of one plain list share a
/// single set.
struct SetTable<'a> {
    feeds: &'a [FeedInfo],
    provenance: &'a [Provenance],
    single: HashMap<u32, u32>,
    multi: HashMap<Vec<u32>, u32>,
    meta: Vec<u32>,
    offsets: Vec<u32>,
    items: Vec<u32>,
}

impl<'a> SetTable<'a> {
    fn new(feeds: &'a [FeedInfo], provenance: &'a [Provenance]) -> Self {
        SetTable {
            feeds,
            provenance,
            single: HashMap::new(),
            multi: HashMap::new(),
            meta: Vec::new(),
            offsets: vec![0],
            items: Vec::new(),
        }
    }

    fn intern(&mut self, ids: &mut Vec<u32>) -> u32 {
        ids.sort_unstable();
        ids.dedup();
        if ids.len() == 1 {
            if let Some(&s) = self.single.get(&ids[0]) {
                return s;
            }
        } else if let Some(&s) = self.multi.get(ids.as_slice()) {
            return s;
        }
        let set = self.meta.len() as u32;
        self.meta.push(self.decide(ids));
        self.items.extend_from_slice(ids);
        self.offsets.push(self.items.len() as u32);
        if ids.len() == 1 {
            self.single.insert(ids[0], set);
        } else {
            self.multi.insert(ids.clone(), set);
        }
        set
    }

    /// The action a set takes: an enforcing feed beats a log-only one, and
    /// among enforcing feeds the first in the configuration wins; within
    /// a feed, the first record (ids ascend in the order records came).
    /// A record's own action (RPZ) stands unless its feed is `log-only`:
    /// trialling a zone answers everything normally.
    fn decide(&self, ids: &[u32]) -> u32 {
        let mut best: Option<(bool, FeedId, Action)> = None;
        for &id in ids {
            let p = &self.provenance[id as usize];
            let feed_action = self
                .feeds
                .get(p.feed as usize)
                .map(|f| f.action)
                .unwrap_or(Action::Nxdomain);
            let action = match (feed_action, p.action) {
                (Action::LogOnly, _) | (_, None) => feed_action,
                (_, Some(own)) => own,
            };
            let enforces = action.enforces();
            let better = match best {
                None => true,
                Some((be, bf, _)) => (enforces && !be) || (enforces == be && p.feed < bf),
            };
            if better {
                best = Some((enforces, p.feed, action));
            }
        }
        let (feed, action) = best.map(|b| (b.1, b.2)).unwrap_or((0, Action::Nxdomain));
        u32::from(feed) | (u32::from(action.to_u8()) << 16)
    }
}

enum UrlHost {
    Name(String),
    Ip,
}

/// The host of a URL indicator, refanged. Scheme-less values
/// (`evil.example/path`) are read as `http://`.
fn url_host(raw: &str) -> Result<UrlHost, &'static str> {
    let refanged = name::refang(raw.trim());
    let s = refanged.as_ref();
    let with_scheme = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|_| "url-unparsable")?;
    match url.host() {
        Some(url::Host::Domain(d)) => Ok(UrlHost::Name(d.to_string())),
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => Ok(UrlHost::Ip),
        None => Err("url-without-host"),
    }
}

/// Parse an address or CIDR network as MISP writes them (`/32` and `/128`
/// optional, host bits allowed and cleared).
pub fn parse_net(raw: &str) -> Result<IpNet, &'static str> {
    let s = name::refang(raw.trim());
    let s = s.as_ref().trim_matches(|c| c == '[' || c == ']');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| "ip-unparsable")
}

/// Address ranges that must never become response-IP triggers: blocking
/// them would break the hospital's own network, not an attacker's.
fn address_guard(net: &IpNet) -> Option<&'static str> {
    match net {
        IpNet::V4(n) => {
            let a = n.network();
            if n.prefix_len() < 16 {
                Some("network wider than /16")
            } else if a.is_unspecified() || a.is_loopback() {
                Some("loopback or unspecified")
            } else if a.is_private() || a.is_link_local() {
                Some("private or link-local")
            } else if a.is_multicast() || a.is_broadcast() {
                Some("multicast or broadcast")
            } else {
                None
            }
        }
        IpNet::V6(n) => {
            let a = n.network();
            let seg0 = a.segments()[0];
            if n.prefix_len() < 32 {
                Some("network wider than /32")
            } else if a.is_unspecified() || a.is_loopback() {
                Some("loopback or unspecified")
            } else if (seg0 & 0xfe00) == 0xfc00 || (seg0 & 0xffc0) == 0xfe80 {
                Some("unique-local or link-local")
            } else if a.is_multicast() {
                Some("multicast")
            } else if let Some(v4) = a.to_ipv4_mapped() {
                address_guard(&IpNet::from(IpAddr::V4(v4)))
            } else {
                None
            }
        }
    }
}

/// Serials only grow: the time in seconds, or one more than the last.
fn next_serial(previous: u64) -> u64 {
    crate::clock::unix_now().max(previous + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_host() {
        let host = |s: &str| match url_host(s) {
            Ok(UrlHost::Name(n)) => n,
            Ok(UrlHost::Ip) => "<ip>".into(),
            Err(e) => format!("<{e}>"),
        };
        assert_eq!(host("http://Evil.Example/x?y=1"), "evil.example");
        assert_eq!(host("hxxps://evil[.]example:8443/login"), "evil.example");
        assert_eq!(host("evil.example/path"), "evil.example");
        assert_eq!(host("http://203.0.113.5/x"), "<ip>");
        assert_eq!(host("http://[2001:db8::1]/x"), "<ip>");
        assert_eq!(host("http://"), "<url-unparsable>");
    }

    #[test]
    fn networks_as_misp_writes_them() {
        assert_eq!(
            parse_net("203.0.113.5").map(|n| n.to_string()),
            Ok("203.0.113.5/32".into())
        );
        assert_eq!(
            parse_net("203.0.113.5/32").map(|n| n.to_string()),
            Ok("203.0.113.5/32".into())
        );
        assert_eq!(
            parse_net("192.0.2.77/24").map(|n| n.to_string()),
            Ok("192.0.2.0/24".into())
        );
        assert_eq!(
            parse_net("2001:db8::1").map(|n| n.to_string()),
            Ok("2001:db8::1/128".into())
        );
        assert_eq!(
            parse_net("203.0.113[.]5").map(|n| n.to_string()),
            Ok("203.0.113.5/32".into())
        );
        assert_eq!(parse_net("evil.example"), Err("ip-unparsable"));
    }

    #[test]
    fn address_guard_spares_the_hospital_network() {
        let g = |s: &str| address_guard(&parse_net(s).expect("valid"));
        assert!(g("127.0.0.1").is_some());
        assert!(g("10.1.2.3").is_some());
        assert!(g("192.168.1.0/24").is_some());
        assert!(g("0.0.0.0").is_some());
        assert!(g("8.0.0.0/8").is_some());
        assert!(g("fe80::1").is_some());
        assert!(g("::ffff:10.0.0.1").is_some());
        assert!(g("203.0.113.5").is_none());
        assert!(g("198.51.100.0/24").is_none());
        assert!(g("2001:db8::1").is_none());
    }

    #[test]
    fn serial_only_grows() {
        let now = crate::clock::unix_now();
        assert!(next_serial(0) >= now);
        assert_eq!(next_serial(u64::MAX / 2), u64::MAX / 2 + 1);
    }
}
