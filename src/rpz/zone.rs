//! The Response Policy Zone, produced from the artifact as it is read.
//!
//! One walk over the name index yields the triggers in key order (names
//! reversed, so a domain comes right before its subdomains); the address
//! triggers follow from the artifact's metadata. Nothing is collected first:
//! a zone of millions of triggers is written, or transferred, in constant
//! memory. The mapping is MISP's (`RPZExport.php`): a `domain` is the name
//! plus `*.name`, a `hostname` the name alone, an address a `rpz-ip` owner,
//! and the feed's action becomes the RPZ action.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_server::proto::rr::{Name, RData, Record};
use ipnet::IpNet;

use crate::config::{Config, RpzLogOnly};
use crate::policy::{Action, Entries, IocType, LocalRecord, NameValue, Policy, Verdict};

/// SOA timers. Secondaries hear of changes by NOTIFY; the refresh is the
/// fallback when a NOTIFY is lost. Expiry is long on purpose: a secondary
/// that cannot reach schild keeps blocking rather than failing open.
pub const REFRESH_SECS: i32 = 3600;
pub const RETRY_SECS: i32 = 600;
pub const EXPIRE_SECS: i32 = 30 * 86_400;

/// Last labels that make an owner name a non-QNAME trigger in RPZ. A listed
/// name ending in one of them would become an address or name-server
/// trigger in the consumer, so it is never exported.
const SPECIAL_TLDS: [&[u8]; 5] = [
    b"rpz-ip",
    b"rpz-nsip",
    b"rpz-nsdname",
    b"rpz-client-ip",
    b"rpz-drop",
];

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("the configuration has no [rpz] section")]
    NotConfigured,
    #[error("rpz.{field} {value:?} is not a valid domain name")]
    BadName { field: &'static str, value: String },
}

/// What the zone looks like apart from its triggers.
#[derive(Debug, Clone)]
pub struct ZoneSettings {
    /// The zone's name, absolute.
    pub origin: Name,
    /// The zone's name without the final dot (`zdn.rpz`).
    pub origin_text: String,
    pub ttl: u32,
    pub ns: Name,
    pub email: Name,
    pub log_only: RpzLogOnly,
    pub sinkhole_v4: Vec<Ipv4Addr>,
    pub sinkhole_v6: Vec<Ipv6Addr>,
}

fn absolute(field: &'static str, value: &str, origin: &Name) -> Result<Name, ZoneError> {
    let bad = || ZoneError::BadName {
        field,
        value: value.to_string(),
    };
    let name = Name::from_ascii(value).map_err(|_| bad())?;
    if name.is_fqdn() {
        Ok(name)
    } else {
        name.append_domain(origin).map_err(|_| bad())
    }
}

impl ZoneSettings {
    pub fn from_config(config: &Config) -> Result<ZoneSettings, ZoneError> {
        let rpz = config.rpz.as_ref().ok_or(ZoneError::NotConfigured)?;
        let origin_text = rpz.zone.trim_end_matches('.').to_string();
        let origin =
            Name::from_ascii(format!("{origin_text}.")).map_err(|_| ZoneError::BadName {
                field: "zone",
                value: rpz.zone.clone(),
            })?;
        Ok(ZoneSettings {
            ns: absolute("ns", &rpz.ns, &origin)?,
            email: absolute("email", &rpz.email, &origin)?,
            origin,
            origin_text,
            ttl: rpz.ttl,
            log_only: rpz.log_only,
            sinkhole_v4: config.policy.sinkhole_ipv4.clone(),
            sinkhole_v6: config.policy.sinkhole_ipv6.clone(),
        })
    }

    /// The zone serial for an artifact serial. Artifact serials are unix
    /// times (or one more than the last), so they fit 32 bits until 2106;
    /// past that, RFC 1982 arithmetic carries the wrap.
    pub fn serial_of(artifact_serial: u64) -> u32 {
        artifact_serial as u32
    }

    pub fn soa(&self, serial: u32) -> Record {
        Record::from_rdata(
            self.origin.clone(),
            self.ttl,
            RData::SOA(SOA::new(
                self.ns.clone(),
                self.email.clone(),
                serial,
                REFRESH_SECS,
                RETRY_SECS,
                EXPIRE_SECS,
                self.ttl,
            )),
        )
    }

    pub fn ns_record(&self) -> Record {
        Record::from_rdata(
            self.origin.clone(),
            self.ttl,
            RData::NS(NS(self.ns.clone())),
        )
    }

    /// An owner name relative to the zone (`*.evil.example`) made absolute.
    pub fn owner(&self, relative: &str) -> Option<Name> {
        let mut s = String::with_capacity(relative.len() + self.origin_text.len() + 2);
        s.push_str(relative);
        s.push('.');
        s.push_str(&self.origin_text);
        s.push('.');
        Name::from_ascii(&s).ok()
    }
}

/// The RPZ action of a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `CNAME .`
    Nxdomain,
    /// `CNAME *.`
    Nodata,
    /// `CNAME rpz-drop.`
    Drop,
    /// `CNAME rpz-passthru.`: log-only feeds (if so configured) and
    /// allowlist exceptions under a listed domain.
    Passthru,
    /// Local data: the sinkhole A/AAAA records.
    Sinkhole,
    /// `CNAME rpz-tcp-only.`
    TcpOnly,
    /// Local data of an `rpz` feed's record: [`Trigger::local`].
    Local,
}

impl Target {
    /// The target for a feed action; `None` when it is not exported.
    pub fn of(action: Action, log_only: RpzLogOnly) -> Option<Target> {
        Some(match action {
            Action::Nxdomain => Target::Nxdomain,
            // RPZ has no REFUSED; NXDOMAIN is the nearest answer that
            // blocks without making clients wait.
            Action::Refused => Target::Nxdomain,
            Action::Nodata => Target::Nodata,
            Action::Drop => Target::Drop,
            Action::Sinkhole => Target::Sinkhole,
            Action::TcpOnly => Target::TcpOnly,
            Action::LocalData => Target::Local,
            Action::LogOnly | Action::Quarantine => match log_only {
                RpzLogOnly::Omit => return None,
                RpzLogOnly::Passthru => Target::Passthru,
            },
        })
    }

    fn cname(self) -> Option<&'static str> {
        match self {
            Target::Nxdomain => Some("."),
            Target::Nodata => Some("*."),
            Target::Drop => Some("rpz-drop."),
            Target::Passthru => Some("rpz-passthru."),
            Target::TcpOnly => Some("rpz-tcp-only."),
            Target::Sinkhole | Target::Local => None,
        }
    }
}

/// The part of the zone a trigger belongs to; the file writes one section
/// after another, as MISP does, the transfer takes them all in one walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Ips,
    /// Names listed with their subdomains (`domain`, `domain|ip`).
    Domains,
    /// Names listed alone (`hostname`).
    Hostnames,
    /// Allowlisted names under a listed domain: `rpz-passthru.`.
    Exceptions,
    /// Everything, in index order (transfers).
    All,
}

/// One trigger: a relative owner name and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Relative owner name (`*.evil.example`, `32.5.113.0.203.rpz-ip`).
    pub owner: String,
    /// The network of an address trigger.
    pub net: Option<IpNet>,
    /// An address trigger on the client (`rpz-client-ip`), not the answer.
    pub client: bool,
    pub target: Target,
    /// Provenance set (for comments); `None` for allowlist exceptions.
    pub set: Option<u32>,
    /// The records of a [`Target::Local`] trigger, as the feed gave them.
    pub local: Vec<LocalRecord>,
}

/// What the walk left out, so an operator can see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Triggers of log-only feeds (with `log_only = "omit"`).
    pub log_only: u64,
    /// Names only a `url` indicator lists (MISP does not export those).
    pub url_only: u64,
    /// Names that cannot be an RPZ QNAME trigger (special last label,
    /// characters outside LDH, too long with the zone appended).
    pub unsafe_names: u64,
}

/// The walk over a policy's triggers. Call [`Triggers::next`] until it
/// returns `None`; the returned trigger borrows the walker's buffer.
pub struct Triggers<'p> {
    policy: &'p Policy,
    settings: &'p ZoneSettings,
    section: Section,
    stream: Option<Entries<'p>>,
    ip_next: usize,
    ips_done: bool,
    /// The second trigger of a name (`*.name`), waiting its turn.
    pending: Option<Trigger>,
    current: Trigger,
    targets: HashMap<u32, Option<Target>>,
    pub skipped: Skipped,
    /// The walk stopped early at damage in the name index (only a file
    /// crafted with a valid checksum gets this far): the triggers given
    /// out are not all of them, and the caller must not pass them off as
    /// the zone.
    pub index_damaged: bool,
}

impl<'p> Triggers<'p> {
    pub fn new(policy: &'p Policy, settings: &'p ZoneSettings, section: Section) -> Self {
        let names = matches!(
            section,
            Section::Domains | Section::Hostnames | Section::Exceptions | Section::All
        );
        Triggers {
            policy,
            settings,
            section,
            stream: names.then(|| policy.entries()),
            ip_next: 0,
            ips_done: !matches!(section, Section::Ips | Section::All),
            pending: None,
            current: Trigger {
                owner: String::new(),
                net: None,
                client: false,
                target: Target::Nxdomain,
                set: None,
                local: Vec::new(),
            },
            targets: HashMap::new(),
            skipped: Skipped::default(),
            index_damaged: false,
        }
    }

    /// The next trigger, or `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<&Trigger> {
        if let Some(t) = self.pending.take() {
            self.current = t;
            return Some(&self.current);
        }
        if self.stream.is_some() {
            if self.next_name() {
                return Some(&self.current);
            }
            self.stream = None;
        }
        if !self.ips_done {
            if self.next_ip() {
                return Some(&self.current);
            }
            self.ips_done = true;
        }
        None
    }

    /// The target for a provenance set, cached: most zones have few sets.
    fn target(&mut self, set: u32) -> Option<Target> {
        if let Some(t) = self.targets.get(&set) {
            return *t;
        }
        let (_, action) = self.policy.set_action(set);
        let only_urls = self
            .policy
            .provenance_of(set)
            .all(|p| p.ioc_type == IocType::Url);
        let t = if only_urls {
            None
        } else {
            Target::of(action, self.settings.log_only)
        };
        self.targets.insert(set, t);
        t
    }

    fn count_skip(&mut self, set: u32) {
        let (_, action) = self.policy.set_action(set);
        if action == Action::LogOnly {
            self.skipped.log_only += 1;
        } else {
            self.skipped.url_only += 1;
        }
    }

    fn next_name(&mut self) -> bool {
        // Taken out for the walk so the keys it lends do not borrow `self`.
        let Some(mut stream) = self.stream.take() else {
            return false;
        };
        let found = self.walk_names(&mut stream);
        if found {
            self.stream = Some(stream);
        } else {
            self.index_damaged |= stream.damaged();
        }
        found
    }

    fn walk_names(&mut self, stream: &mut Entries<'p>) -> bool {
        let policy = self.policy;
        while let Some((key, value)) = stream.next() {
            // (exact trigger, subdomain trigger) of this name.
            let (exact, sub) = match Policy::decode_name(value) {
                NameValue::Block { exact, sub } => {
                    let section = if sub.is_some() {
                        Section::Domains
                    } else {
                        Section::Hostnames
                    };
                    if self.section != Section::All && self.section != section {
                        continue;
                    }
                    if !safe_key(key, self.settings.origin_text.len()) {
                        self.skipped.unsafe_names += 1;
                        continue;
                    }
                    let e = exact.and_then(|s| self.exported(s).map(|t| (t, Some(s))));
                    let b = sub.and_then(|s| self.exported(s).map(|t| (t, Some(s))));
                    (e, b)
                }
                NameValue::Allow { exact, sub, .. } => {
                    if self.section != Section::All && self.section != Section::Exceptions {
                        continue;
                    }
                    // Only an allowlisted name under a listed domain needs
                    // an exception; elsewhere nothing blocks it.
                    if !matches!(policy.lookup_reversed(key), Verdict::Allowed { .. }) {
                        continue;
                    }
                    if !safe_key(key, self.settings.origin_text.len()) {
                        self.skipped.unsafe_names += 1;
                        continue;
                    }
                    (
                        exact.then_some((Target::Passthru, None)),
                        sub.then_some((Target::Passthru, None)),
                    )
                }
            };
            if exact.is_none() && sub.is_none() {
                continue;
            }
            self.set_owner_from_key(key);
            self.current.net = None;
            self.current.client = false;
            match (exact, sub) {
                (Some((t, set)), sub) => {
                    self.current.target = t;
                    self.current.set = set;
                    fill_local(policy, t, set, &mut self.current.local);
                    if let Some((st, sset)) = sub {
                        let mut owner = String::with_capacity(self.current.owner.len() + 2);
                        owner.push_str("*.");
                        owner.push_str(&self.current.owner);
                        let mut local = Vec::new();
                        fill_local(policy, st, sset, &mut local);
                        self.pending = Some(Trigger {
                            owner,
                            net: None,
                            client: false,
                            target: st,
                            set: sset,
                            local,
                        });
                    }
                }
                (None, Some((t, set))) => {
                    self.current.owner.insert_str(0, "*.");
                    self.current.target = t;
                    self.current.set = set;
                    fill_local(policy, t, set, &mut self.current.local);
                }
                (None, None) => continue,
            }
            return true;
        }
        false
    }

    /// The target of a set, or `None` (counted) when it is not exported.
    fn exported(&mut self, set: u32) -> Option<Target> {
        let t = self.target(set);
        if t.is_none() {
            self.count_skip(set);
        }
        t
    }

    fn set_owner_from_key(&mut self, key: &[u8]) {
        self.current.owner.clear();
        // Keys are ASCII (checked by `safe_key`), so this is the name.
        self.current
            .owner
            .extend(key.iter().rev().map(|&b| b as char));
    }

    /// The response-IP triggers, then the client-IP triggers.
    fn next_ip(&mut self) -> bool {
        let policy = self.policy;
        let meta = policy.meta();
        let answers = meta.ip_triggers.len();
        while let Some((t, client)) = meta
            .ip_triggers
            .get(self.ip_next)
            .map(|t| (t, false))
            .or_else(|| {
                meta.client_triggers
                    .get(self.ip_next - answers)
                    .map(|t| (t, true))
            })
        {
            self.ip_next += 1;
            let Some(target) = self.exported(t.set) else {
                continue;
            };
            self.current.owner.clear();
            rpz_ip_owner(&t.net, &mut self.current.owner);
            if client {
                // `.rpz-ip` -> `.rpz-client-ip`
                let len = self.current.owner.len().saturating_sub("ip".len());
                self.current.owner.truncate(len);
                self.current.owner.push_str("client-ip");
            }
            self.current.net = Some(t.net);
            self.current.client = client;
            self.current.target = target;
            self.current.set = Some(t.set);
            fill_local(policy, target, Some(t.set), &mut self.current.local);
            return true;
        }
        false
    }
}

/// The local data of a set, for a [`Target::Local`] trigger.
fn fill_local(policy: &Policy, target: Target, set: Option<u32>, out: &mut Vec<LocalRecord>) {
    out.clear();
    if let (Target::Local, Some(set)) = (target, set) {
        out.extend(policy.local_records(set).cloned());
    }
}

/// Whether a reversed key can be written as an RPZ QNAME trigger.
fn safe_key(key: &[u8], origin_len: usize) -> bool {
    // `*.` + name + `.` + zone must stay a valid name.
    if key.is_empty() || key.len() + 2 + 1 + origin_len > 253 {
        return false;
    }
    if !key.iter().all(|&b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
    }) {
        return false;
    }
    // The last label comes first in the reversed key.
    let last_rev = key.split(|&b| b == b'.').next().unwrap_or(key);
    !SPECIAL_TLDS.iter().any(|tld| {
        tld.len() == last_rev.len() && tld.iter().rev().zip(last_rev).all(|(a, b)| a == b)
    })
}

/// The `rpz-ip` owner of a network: `32.5.113.0.203.rpz-ip`,
/// `128.1.zz.db8.2001.rpz-ip`.
pub fn rpz_ip_owner(net: &IpNet, out: &mut String) {
    match net {
        IpNet::V4(n) => {
            let o = n.network().octets();
            let _ = write!(
                out,
                "{}.{}.{}.{}.{}.rpz-ip",
                n.prefix_len(),
                o[3],
                o[2],
                o[1],
                o[0]
            );
        }
        IpNet::V6(n) => {
            let g = n.network().segments();
            // The longest run of two or more zero groups becomes `zz`
            // (RFC 5952's `::`), the first one on a tie.
            let (mut best, mut best_len, mut i) = (8usize, 0usize, 0usize);
            while i < 8 {
                if g[i] == 0 {
                    let start = i;
                    while i < 8 && g[i] == 0 {
                        i += 1;
                    }
                    if i - start > best_len && i - start >= 2 {
                        best = start;
                        best_len = i - start;
                    }
                } else {
                    i += 1;
                }
            }
            let _ = write!(out, "{}", n.prefix_len());
            let mut k = 8;
            while k > 0 {
                k -= 1;
                if best_len > 0 && k >= best && k < best + best_len {
                    out.push_str(".zz");
                    k = best;
                    continue;
                }
                let _ = write!(out, ".{:x}", g[k]);
            }
            out.push_str(".rpz-ip");
        }
    }
}

/// Append the records of a trigger to `out` (owner made absolute).
/// Returns false when the owner does not make a valid name.
pub fn push_records(settings: &ZoneSettings, t: &Trigger, out: &mut Vec<Record>) -> bool {
    let Some(owner) = settings.owner(&t.owner) else {
        return false;
    };
    let ttl = settings.ttl;
    match t.target.cname() {
        Some(target) => {
            // The targets are constants that always parse.
            let Ok(target) = Name::from_ascii(target) else {
                return false;
            };
            out.push(Record::from_rdata(owner, ttl, RData::CNAME(CNAME(target))));
        }
        None if t.target == Target::Local => {
            for r in &t.local {
                let Some(rdata) = local_rdata(r) else {
                    return false;
                };
                out.push(Record::from_rdata(owner.clone(), ttl, rdata));
            }
        }
        None => {
            for ip in &settings.sinkhole_v4 {
                out.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))));
            }
            for ip in &settings.sinkhole_v6 {
                out.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::AAAA(AAAA(*ip)),
                ));
            }
        }
    }
    true
}

/// The record data of one local-data record; `None` for a CNAME target
/// that is not a name (the compiler validated it, so only damage).
pub fn local_rdata(r: &LocalRecord) -> Option<RData> {
    Some(match r {
        LocalRecord::A(a) => RData::A(A(*a)),
        LocalRecord::Aaaa(a) => RData::AAAA(AAAA(*a)),
        LocalRecord::Txt(parts) => RData::TXT(TXT::new(parts.clone())),
        LocalRecord::Cname(n) => {
            let mut name = Name::from_ascii(n).ok()?;
            name.set_fqdn(true);
            RData::CNAME(CNAME(name))
        }
    })
}

/// One line of zone text for each record of a trigger.
fn write_trigger(
    out: &mut impl Write,
    settings: &ZoneSettings,
    t: &Trigger,
    comment: &str,
) -> io::Result<()> {
    match t.target.cname() {
        Some(target) => writeln!(out, "{} CNAME {target}{comment}", t.owner),
        None if t.target == Target::Local => {
            for r in &t.local {
                writeln!(
                    out,
                    "{} {} {}{comment}",
                    t.owner,
                    r.type_str(),
                    r.rdata_text()
                )?;
            }
            Ok(())
        }
        None => {
            for ip in &settings.sinkhole_v4 {
                writeln!(out, "{} A {ip}{comment}", t.owner)?;
            }
            for ip in &settings.sinkhole_v6 {
                writeln!(out, "{} AAAA {ip}{comment}", t.owner)?;
            }
            Ok(())
        }
    }
}

/// Counts of what [`write_zone`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneStats {
    pub serial: u32,
    pub triggers: u64,
    pub skipped: Skipped,
}

/// Keep a comment to one harmless line.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// ` ; feed zdn, event 5f1c… "Phishing wave"` for a provenance set.
fn comment_for(policy: &Policy, set: Option<u32>) -> String {
    const MAX_SHOWN: usize = 3;
    let Some(set) = set else {
        return " ; allowlisted".to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    let mut total = 0usize;
    for p in policy.provenance_of(set) {
        let feed = policy
            .feed(p.feed)
            .map(|f| clean(&f.name, 64))
            .unwrap_or_else(|| format!("#{}", p.feed));
        let part = match policy.event(p) {
            Some(ev) => format!(
                "feed {feed}, event {} \"{}\"",
                clean(&ev.uuid, 40),
                clean(&ev.info, 80).replace('"', "'")
            ),
            None => format!("feed {feed}"),
        };
        if !parts.contains(&part) {
            total += 1;
            if parts.len() < MAX_SHOWN {
                parts.push(part);
            }
        }
    }
    let mut s = format!(" ; {}", parts.join("; "));
    if total > MAX_SHOWN {
        let _ = write!(s, "; and {} more", total - MAX_SHOWN);
    }
    s
}

/// Write the zone file: `$TTL`, SOA, NS, then the sections in MISP's order
/// (addresses, domains, hostnames), then allowlist exceptions. Owner names
/// are relative and there is no `$ORIGIN`, so the file loads under any
/// zone name, like MISP's.
pub fn write_zone(
    policy: &Policy,
    settings: &ZoneSettings,
    out: &mut impl Write,
) -> io::Result<ZoneStats> {
    let serial = ZoneSettings::serial_of(policy.serial());
    let meta = policy.meta();
    writeln!(
        out,
        "; Response Policy Zone {}. written by schild {} from policy serial {} (compiled at unix time {}).",
        settings.origin_text,
        env!("CARGO_PKG_VERSION"),
        policy.serial(),
        meta.compiled_at
    )?;
    for f in &meta.feeds {
        writeln!(
            out,
            "; feed {} ({}, {})",
            clean(&f.name, 64),
            clean(&f.kind, 32),
            f.action
        )?;
    }
    writeln!(out, "$TTL {}", settings.ttl)?;
    writeln!(
        out,
        "@               SOA {} {} ({serial} {REFRESH_SECS} {RETRY_SECS} {EXPIRE_SECS} {})",
        settings.ns, settings.email, settings.ttl
    )?;
    writeln!(out, "                NS {}", settings.ns)?;
    writeln!(out)?;

    let mut stats = ZoneStats {
        serial,
        ..ZoneStats::default()
    };
    let sections = [
        (
            Section::Ips,
            "; Response IP triggers: answers containing these addresses are rewritten.",
        ),
        (
            Section::Domains,
            "; Domains: the name and all of its subdomains are rewritten.",
        ),
        (
            Section::Hostnames,
            "; Hostnames: the exact name is rewritten.",
        ),
        (
            Section::Exceptions,
            "; Allowlisted names under a listed domain: answered normally.",
        ),
    ];
    let mut comments: HashMap<Option<u32>, String> = HashMap::new();
    for (section, heading) in sections {
        let mut walk = Triggers::new(policy, settings, section);
        let mut first = true;
        while let Some(t) = walk.next() {
            if first {
                writeln!(out, "{heading}")?;
                first = false;
            }
            let comment = comments
                .entry(t.set)
                .or_insert_with(|| comment_for(policy, t.set));
            write_trigger(out, settings, t, comment)?;
            stats.triggers += 1;
        }
        if !first {
            writeln!(out)?;
        }
        if walk.index_damaged {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the policy's name index is damaged; run `schild compile`",
            ));
        }
        let s = &walk.skipped;
        stats.skipped.log_only += s.log_only;
        stats.skipped.url_only += s.url_only;
        stats.skipped.unsafe_names += s.unsafe_names;
    }
    out.flush()?;
    Ok(stats)
}

#[cfg(test)]
pub(crate) mod tests;
