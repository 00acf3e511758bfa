//! Which way a name is answered: the zone table (pure, no I/O).
//!
//! Three kinds of entry, looked up by the query name's most specific
//! ancestor that has one:
//!
//! - local records (`[local] records`, `hosts_files`), answered for their
//!   exact name as authoritative data: the records of the asked type, or
//!   NODATA;
//! - forward and stub zones (`[[forward_zone]]`, `[[stub_zone]]`), which
//!   send everything at or below their name to their own servers;
//! - the zones Unbound serves locally by default ([`DEFAULT_ZONES`], from
//!   its `services/localzone.c` and `util/as112.c`): static zones that
//!   answer NXDOMAIN with their SOA for every name below the apex (so a
//!   private reverse name never leaves the hospital), and `localhost.`,
//!   which answers 127.0.0.1 and ::1 for every name below it.
//!
//! A local record beats every zone; a forward or stub zone at or inside a
//! default zone takes its place (Unbound needs `local-zone: ... nodefault`
//! for that; a hospital that forwards `10.in-addr.arpa` to its domain
//! controllers means it). Names outside every entry take the global
//! route (`resolver.mode`).

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, NS, PTR, SOA};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

/// Every default zone's records have this TTL (Unbound's 10800).
const DEFAULT_TTL: u32 = 10800;

/// TTL of the records a hosts file gives.
pub const HOSTS_TTL: u32 = 3600;

/// The zones Unbound serves locally unless told `nodefault`, in its order:
/// `localhost.` (redirect), the loopback reverse zones, the special-use
/// names of RFC 6761, 7686, 8375, 9462 and 9665, and the AS112 zones (RFC
/// 6303, 7534: private and reserved address space).
pub const DEFAULT_ZONES: &[&str] = &[
    "localhost.",
    "127.in-addr.arpa.",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
    "test.",
    "invalid.",
    "onion.",
    "home.arpa.",
    "resolver.arpa.",
    "service.arpa.",
    "10.in-addr.arpa.",
    "16.172.in-addr.arpa.",
    "17.172.in-addr.arpa.",
    "18.172.in-addr.arpa.",
    "19.172.in-addr.arpa.",
    "20.172.in-addr.arpa.",
    "21.172.in-addr.arpa.",
    "22.172.in-addr.arpa.",
    "23.172.in-addr.arpa.",
    "24.172.in-addr.arpa.",
    "25.172.in-addr.arpa.",
    "26.172.in-addr.arpa.",
    "27.172.in-addr.arpa.",
    "28.172.in-addr.arpa.",
    "29.172.in-addr.arpa.",
    "30.172.in-addr.arpa.",
    "31.172.in-addr.arpa.",
    "168.192.in-addr.arpa.",
    "0.in-addr.arpa.",
    "64.100.in-addr.arpa.",
    "65.100.in-addr.arpa.",
    "66.100.in-addr.arpa.",
    "67.100.in-addr.arpa.",
    "68.100.in-addr.arpa.",
    "69.100.in-addr.arpa.",
    "70.100.in-addr.arpa.",
    "71.100.in-addr.arpa.",
    "72.100.in-addr.arpa.",
    "73.100.in-addr.arpa.",
    "74.100.in-addr.arpa.",
    "75.100.in-addr.arpa.",
    "76.100.in-addr.arpa.",
    "77.100.in-addr.arpa.",
    "78.100.in-addr.arpa.",
    "79.100.in-addr.arpa.",
    "80.100.in-addr.arpa.",
    "81.100.in-addr.arpa.",
    "82.100.in-addr.arpa.",
    "83.100.in-addr.arpa.",
    "84.100.in-addr.arpa.",
    "85.100.in-addr.arpa.",
    "86.100.in-addr.arpa.",
    "87.100.in-addr.arpa.",
    "88.100.in-addr.arpa.",
    "89.100.in-addr.arpa.",
    "90.100.in-addr.arpa.",
    "91.100.in-addr.arpa.",
    "92.100.in-addr.arpa.",
    "93.100.in-addr.arpa.",
    "94.100.in-addr.arpa.",
    "95.100.in-addr.arpa.",
    "96.100.in-addr.arpa.",
    "97.100.in-addr.arpa.",
    "98.100.in-addr.arpa.",
    "99.100.in-addr.arpa.",
    "100.100.in-addr.arpa.",
    "101.100.in-addr.arpa.",
    "102.100.in-addr.arpa.",
    "103.100.in-addr.arpa.",
    "104.100.in-addr.arpa.",
    "105.100.in-addr.arpa.",
    "106.100.in-addr.arpa.",
    "107.100.in-addr.arpa.",
    "108.100.in-addr.arpa.",
    "109.100.in-addr.arpa.",
    "110.100.in-addr.arpa.",
    "111.100.in-addr.arpa.",
    "112.100.in-addr.arpa.",
    "113.100.in-addr.arpa.",
    "114.100.in-addr.arpa.",
    "115.100.in-addr.arpa.",
    "116.100.in-addr.arpa.",
    "117.100.in-addr.arpa.",
    "118.100.in-addr.arpa.",
    "119.100.in-addr.arpa.",
    "120.100.in-addr.arpa.",
    "121.100.in-addr.arpa.",
    "122.100.in-addr.arpa.",
    "123.100.in-addr.arpa.",
    "124.100.in-addr.arpa.",
    "125.100.in-addr.arpa.",
    "126.100.in-addr.arpa.",
    "127.100.in-addr.arpa.",
    "254.169.in-addr.arpa.",
    "2.0.192.in-addr.arpa.",
    "100.51.198.in-addr.arpa.",
    "113.0.203.in-addr.arpa.",
    "255.255.255.255.in-addr.arpa.",
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
    "d.f.ip6.arpa.",
    "8.e.f.ip6.arpa.",
    "9.e.f.ip6.arpa.",
    "a.e.f.ip6.arpa.",
    "b.e.f.ip6.arpa.",
    "8.b.d.0.1.0.0.2.ip6.arpa.",
];

/// A forward or stub zone, by its index in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Forward(usize),
    Stub(usize),
}

/// What the table decided for one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answered here, authoritatively; nothing is sent anywhere.
    Local(LocalAnswer),
    /// Sent to a forward or stub zone's servers.
    Zone(Way),
    /// The global route (`resolver.mode`).
    Global,
}

/// A locally served answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalAnswer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    /// The zone's SOA for a negative answer (TTL: min(TTL, minimum)).
    pub authorities: Vec<Record>,
}

/// Why a route was chosen, for `schild check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    /// A local record (or an empty non-terminal above one) of `[local]`.
    LocalRecord,
    /// A default local zone, named.
    LocalZone(String),
    Zone(Way),
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefaultKind {
    Static,
    Redirect,
}

#[derive(Debug)]
struct DefaultZone {
    name: Name,
    kind: DefaultKind,
    /// Apex data (SOA, NS, and for localhost its addresses).
    apex: Vec<Record>,
    /// The negative-answer SOA.
    soa: Record,
    /// Records below the apex (the loopback PTR of 127.in-addr.arpa.).
    below: Vec<Record>,
}

#[derive(Debug, Default)]
struct Node {
    /// Local records owned by this name.
    records: Vec<Record>,
    /// An ancestor of a local record (an empty non-terminal, unless it
    /// has records of its own).
    above_records: bool,
    way: Option<Way>,
    default: Option<DefaultZone>,
}

/// The zone table, built once per configuration.
#[derive(Debug, Default)]
pub struct Zones {
    nodes: HashMap<LowerName, Node>,
}

/// The error of a zone definition; the caller adds the config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("{name:?} is not a valid domain name: {reason}")]
    BadName { name: String, reason: String },
    #[error("the root cannot be a zone here (that is resolver.mode)")]
    Root,
    #[error("{0:?} is not one of the default local zones")]
    NotDefault(String),
    #[error("{record:?}: {reason}")]
    BadRecord { record: String, reason: String },
    #[error("line {line}: {reason}")]
    BadHosts { line: usize, reason: String },
}

/// A zone name as written: case folded, trailing dot added; not the root.
pub fn zone_name(raw: &str) -> Result<Name, ZoneError> {
    let bad = |reason: String| ZoneError::BadName {
        name: raw.to_string(),
        reason,
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(bad("empty".to_string()));
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| bad(e.to_string()))?;
    name.set_fqdn(true);
    if name.is_root() {
        return Err(ZoneError::Root);
    }
    Ok(name.to_lowercase())
}

/// One local record in zone-file syntax (`name [ttl] [IN] type rdata`,
/// names absolute). Directives (`$INCLUDE`, `$ORIGIN`) are refused.
pub fn parse_record(line: &str) -> Result<Vec<Record>, ZoneError> {
    use hickory_proto::serialize::txt::Parser;
    let bad = |reason: String| ZoneError::BadRecord {
        record: line.to_string(),
        reason,
    };
    let text = line.trim();
    if text.starts_with('$') {
        return Err(bad("directives are not allowed".to_string()));
    }
    if text.contains('\n') || text.contains('(') {
        return Err(bad("one record on one line".to_string()));
    }
    // A TTL is needed when the record gives none; Unbound uses 3600.
    let input = format!("$TTL 3600\n{text}\n");
    let (_, sets) = Parser::new(input, None, Some(Name::root()))
        .parse()
        .map_err(|e| bad(e.to_string()))?;
    let records: Vec<Record> = sets
        .into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .map(|mut r| {
            r.name = r.name.to_lowercase();
            r
        })
        .collect();
    if records.len() != 1 {
        return Err(bad("expected exactly one record".to_string()));
    }
    if records.iter().any(|r| r.dns_class != DNSClass::IN) {
        return Err(bad("only class IN".to_string()));
    }
    Ok(records)
}

/// The records of an /etc/hosts file: an A or AAAA for every name of a
/// line, and a PTR from the address to the line's first name (as glibc
/// answers reverse lookups from the file).
pub fn parse_hosts(text: &str) -> Result<Vec<Record>, ZoneError> {
    let mut out = Vec::new();
    let mut ptr_seen: Vec<IpAddr> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(addr) = words.next() else { continue };
        let bad = |reason: String| ZoneError::BadHosts {
            line: i + 1,
            reason,
        };
        // A scope (fe80::1%eth0) has no meaning in DNS.
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| bad(format!("{addr:?} is not an address")))?;
        let names: Vec<&str> = words.collect();
        if names.is_empty() {
            return Err(bad(format!("no name for {addr}")));
        }
        for (j, n) in names.iter().enumerate() {
            let name = zone_name(n).map_err(|e| bad(e.to_string()))?;
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            out.push(Record::from_rdata(name.clone(), HOSTS_TTL, data));
            if j == 0 && !ptr_seen.contains(&ip) {
                ptr_seen.push(ip);
                out.push(Record::from_rdata(
                    reverse_name(ip),
                    HOSTS_TTL,
                    RData::PTR(PTR(name)),
                ));
            }
        }
    }
    Ok(out)
}

/// The in-addr.arpa or ip6.arpa name of an address.
pub fn reverse_name(ip: IpAddr) -> Name {
    let text = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(73);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    };
    // Only digits, hex letters and dots: always a valid name.
    Name::from_ascii(&text).unwrap_or_else(|_| Name::root())
}

fn name(s: &str) -> Name {
    // Literals of this file, checked by the unit tests.
    Name::from_ascii(s).unwrap_or_else(|_| Name::root())
}

fn default_zone(zone: &str) -> DefaultZone {
    let n = name(zone);
    let localhost = name("localhost.");
    let soa = Record::from_rdata(
        n.clone(),
        DEFAULT_TTL,
        RData::SOA(SOA::new(
            localhost.clone(),
            name("nobody.invalid."),
            1,
            3600,
            1200,
            604800,
            10800,
        )),
    );
    let mut apex = vec![
        soa.clone(),
        Record::from_rdata(n.clone(), DEFAULT_TTL, RData::NS(NS(localhost.clone()))),
    ];
    let mut below = Vec::new();
    let ptr =
        |owner: Name| Record::from_rdata(owner, DEFAULT_TTL, RData::PTR(PTR(localhost.clone())));
    if zone == "127.in-addr.arpa." {
        below.push(ptr(name("1.0.0.127.in-addr.arpa.")));
    } else if zone.len() == 73 && zone.starts_with("1.0.") {
        apex.push(ptr(n.clone()));
    }
    let kind = if zone == "localhost." {
        apex.push(Record::from_rdata(
            n.clone(),
            DEFAULT_TTL,
            RData::A(A::new(127, 0, 0, 1)),
        ));
        apex.push(Record::from_rdata(
            n.clone(),
            DEFAULT_TTL,
            RData::AAAA(AAAA(std::net::Ipv6Addr::LOCALHOST)),
        ));
        DefaultKind::Redirect
    } else {
        DefaultKind::Static
    };
    DefaultZone {
        name: n,
        kind,
        apex,
        soa,
        below,
    }
}

/// What a table is built from.
#[derive(Debug, Default)]
pub struct ZoneSpec {
    /// Serve [`DEFAULT_ZONES`].
    pub defaults: bool,
    /// Default zones left out (normalised names).
    pub nodefault: Vec<Name>,
    pub records: Vec<Record>,
    /// Forward and stub zones (normalised names, distinct).
    pub ways: Vec<(Name, Way)>,
}

/// Whether `name` names a default zone.
pub fn is_default_zone(name: &Name) -> bool {
    DEFAULT_ZONES
        .iter()
        .any(|z| Name::from_ascii(z).is_ok_and(|d| d == *name))
}

impl Zones {
    pub fn new(spec: ZoneSpec) -> Zones {
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        for (n, way) in &spec.ways {
            nodes.entry(LowerName::new(n)).or_default().way = Some(*way);
        }
        if spec.defaults {
            for z in DEFAULT_ZONES {
                let d = default_zone(z);
                if spec.nodefault.contains(&d.name) {
                    continue;
                }
                let node = nodes.entry(LowerName::new(&d.name)).or_default();
                // A forward or stub zone of the same name takes its place.
                if node.way.is_none() {
                    node.default = Some(d);
                }
            }
        }
        let below: Vec<Record> = nodes
            .values()
            .filter_map(|n| n.default.as_ref())
            .flat_map(|d| d.below.iter().cloned())
            .collect();
        for r in below.into_iter().chain(spec.records) {
            let owner = LowerName::new(&r.name);
            let mut up = owner.base_name();
            let mut depth = r.name.num_labels();
            while depth > 0 {
                nodes.entry(up.clone()).or_default().above_records = true;
                up = up.base_name();
                depth -= 1;
            }
            let node = nodes.entry(owner).or_default();
            if !node.records.contains(&r) {
                node.records.push(r);
            }
        }
        Zones { nodes }
    }

    /// The entries from `qname` up to the root, most specific first.
    fn walk<'a>(&'a self, qname: &LowerName) -> impl Iterator<Item = (LowerName, &'a Node)> + 'a {
        let mut at = Some(qname.clone());
        std::iter::from_fn(move || {
            loop {
                let here = at.take()?;
                if !here.is_root() {
                    at = Some(here.base_name());
                }
                if let Some(n) = self.nodes.get(&here) {
                    return Some((here, n));
                }
            }
        })
    }

    /// The zone that decides `qname`: a way or a default zone, the most
    /// specific first (on one name the way wins: defaults under a way
    /// were left out when the table was built).
    fn enclosing(&self, qname: &LowerName) -> Option<&Node> {
        self.walk(qname)
            .map(|(_, n)| n)
            .find(|n| n.way.is_some() || n.default.is_some())
    }

    /// Decide one question.
    pub fn decide(&self, qname: &LowerName, qtype: RecordType) -> Decision {
        let zone = self.enclosing(qname);
        let soa = || {
            zone.and_then(|z| z.default.as_ref())
                .map(|d| d.soa.clone())
                .into_iter()
                .collect::<Vec<_>>()
        };
        if let Some(node) = self.nodes.get(qname)
            && !node.records.is_empty()
        {
            return Decision::Local(records_answer(&node.records, qtype, soa()));
        }
        let Some(zone) = zone else {
            return Decision::Global;
        };
        if let Some(way) = zone.way {
            return Decision::Zone(way);
        }
        let Some(d) = &zone.default else {
            return Decision::Global;
        };
        let apex = LowerName::new(&d.name) == *qname;
        if apex || d.kind == DefaultKind::Redirect {
            let owned: Vec<Record> = d
                .apex
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.name = Name::from(qname);
                    r
                })
                .collect();
            return Decision::Local(records_answer(&owned, qtype, soa()));
        }
        // An empty non-terminal above a local record in the zone: NODATA.
        let ent = self.nodes.get(qname).is_some_and(|n| n.above_records);
        let rcode = if ent {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        Decision::Local(LocalAnswer {
            rcode,
            answers: Vec::new(),
            authorities: soa(),
        })
    }

    /// Which route `qname` takes (whatever the type).
    pub fn route_of(&self, qname: &LowerName) -> RouteKind {
        if self.nodes.get(qname).is_some_and(|n| !n.records.is_empty()) {
            return RouteKind::LocalRecord;
        }
        match self.enclosing(qname) {
            Some(Node { way: Some(w), .. }) => RouteKind::Zone(*w),
            Some(Node {
                default: Some(d), ..
            }) => RouteKind::LocalZone(d.name.to_ascii()),
            _ => RouteKind::Global,
        }
    }
}

/// The answer from a name's local records: those of `qtype`, a CNAME in
/// their place, or NODATA with the enclosing zone's SOA.
fn records_answer(records: &[Record], qtype: RecordType, soa: Vec<Record>) -> LocalAnswer {
    let mut answers: Vec<Record> = records
        .iter()
        .filter(|r| r.record_type() == qtype)
        .cloned()
        .collect();
    if answers.is_empty() {
        answers = records
            .iter()
            .filter(|r| r.record_type() == RecordType::CNAME)
            .cloned()
            .collect();
    }
    let authorities = if answers.is_empty() { soa } else { Vec::new() };
    LocalAnswer {
        rcode: ResponseCode::NoError,
        answers,
        authorities,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(s: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(s).expect("name"))
    }

    fn table(records: &[&str], ways: &[(&str, Way)], nodefault: &[&str]) -> Zones {
        Zones::new(ZoneSpec {
            defaults: true,
            nodefault: nodefault.iter().map(|n| zone_name(n).expect("n")).collect(),
            records: records
                .iter()
                .flat_map(|r| parse_record(r).expect("record"))
                .collect(),
            ways: ways
                .iter()
                .map(|(n, w)| (zone_name(n).expect("n"), *w))
                .collect(),
        })
    }

    fn soa_owner(a: &LocalAnswer) -> Option<String> {
        a.authorities.first().map(|r| r.name.to_ascii())
    }

    #[test]
    fn every_default_zone_is_a_name() {
        for z in DEFAULT_ZONES {
            let n = Name::from_ascii(z).expect(z);
            assert!(n.is_fqdn() && !n.is_root(), "{z}");
            assert_eq!(default_zone(z).name, n);
        }
        assert_eq!(DEFAULT_ZONES.len(), 104);
    }

    #[test]
    fn private_reverse_names_are_nxdomain_with_the_zone_soa() {
        let z = table(&[], &[], &[]);
        let Decision::Local(a) = z.decide(&lower("1.2.168.192.in-addr.arpa."), RecordType::PTR)
        else {
            panic!("not local");
        };
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        assert_eq!(soa_owner(&a).as_deref(), Some("168.192.in-addr.arpa."));
        assert_eq!(a.authorities[0].ttl, 10800);
        let Decision::Local(a) = z.decide(&lower("foo.invalid."), RecordType::A) else {
            panic!("not local");
        };
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        // The apex answers its SOA and NS.
        let Decision::Local(a) = z.decide(&lower("invalid."), RecordType::NS) else {
            panic!("not local");
        };
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(
            z.decide(&lower("www.example.com."), RecordType::A),
            Decision::Global
        );
        // 172.32/12 is not private.
        assert_eq!(
            z.decide(&lower("1.0.32.172.in-addr.arpa."), RecordType::PTR),
            Decision::Global
        );
    }

    #[test]
    fn localhost_redirects_and_loopback_reverse_has_its_ptr() {
        let z = table(&[], &[], &[]);
        for rev in [
            "1.0.0.127.in-addr.arpa.",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
        ] {
            let Decision::Local(a) = z.decide(&lower(rev), RecordType::PTR) else {
                panic!("not local");
            };
            assert_eq!(a.answers.len(), 1, "{rev}");
        }
        let Decision::Local(a) = z.decide(&lower("2.0.0.127.in-addr.arpa."), RecordType::PTR)
        else {
            panic!("not local");
        };
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        let Decision::Local(a) = z.decide(&lower("db.localhost."), RecordType::AAAA) else {
            panic!("not local");
        };
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].name.to_ascii(), "db.localhost.");
        let Decision::Local(a) = z.decide(&lower("db.localhost."), RecordType::MX) else {
            panic!("not local");
        };
        assert_eq!((a.rcode, a.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(soa_owner(&a).as_deref(), Some("localhost."));
    }

    #[test]
    fn most_specific_wins_and_ways_replace_defaults() {
        let ways = [
            ("corp.hospital.test", Way::Forward(0)),
            ("10.in-addr.arpa", Way::Forward(1)),
            ("lab.corp.hospital.test", Way::Stub(0)),
        ];
        let z = table(
            &["printer.corp.hospital.test. 300 IN A 10.0.9.9"],
            &ways,
            &[],
        );
        assert_eq!(
            z.decide(&lower("dc1.corp.hospital.test."), RecordType::A),
            Decision::Zone(Way::Forward(0))
        );
        assert_eq!(
            z.decide(&lower("x.lab.corp.hospital.test."), RecordType::A),
            Decision::Zone(Way::Stub(0))
        );
        assert_eq!(
            z.decide(&lower("10.in-addr.arpa."), RecordType::SOA),
            Decision::Zone(Way::Forward(1))
        );
        assert_eq!(
            z.decide(&lower("5.0.0.10.in-addr.arpa."), RecordType::PTR),
            Decision::Zone(Way::Forward(1))
        );
        let Decision::Local(a) = z.decide(&lower("PRINTER.corp.hospital.test."), RecordType::A)
        else {
            panic!("not local");
        };
        assert_eq!(a.answers.len(), 1);
        // The name exists locally: other types are NODATA, not forwarded.
        let Decision::Local(a) = z.decide(&lower("printer.corp.hospital.test."), RecordType::MX)
        else {
            panic!("not local");
        };
        assert_eq!((a.rcode, a.answers.len()), (ResponseCode::NoError, 0));
        // Everything else under test. is still the default zone.
        assert!(matches!(
            z.decide(&lower("other.test."), RecordType::A),
            Decision::Local(LocalAnswer {
                rcode: ResponseCode::NXDomain,
                ..
            })
        ));
        assert_eq!(
            z.route_of(&lower("dc1.corp.hospital.test.")),
            RouteKind::Zone(Way::Forward(0))
        );
        assert_eq!(
            z.route_of(&lower("printer.corp.hospital.test.")),
            RouteKind::LocalRecord
        );
        assert_eq!(
            z.route_of(&lower("a.b.onion.")),
            RouteKind::LocalZone("onion.".to_string())
        );
    }

    #[test]
    fn records_in_a_default_zone_and_nodefault() {
        let z = table(
            &["9.9.0.10.in-addr.arpa. PTR printer.corp."],
            &[],
            &["test"],
        );
        let Decision::Local(a) = z.decide(&lower("9.9.0.10.in-addr.arpa."), RecordType::PTR) else {
            panic!("not local");
        };
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].ttl, 3600);
        // An empty non-terminal above it: NODATA with the zone's SOA.
        let Decision::Local(a) = z.decide(&lower("9.0.10.in-addr.arpa."), RecordType::PTR) else {
            panic!("not local");
        };
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(soa_owner(&a).as_deref(), Some("10.in-addr.arpa."));
        assert_eq!(
            z.decide(&lower("www.d.test."), RecordType::A),
            Decision::Global
        );
        let none = Zones::new(ZoneSpec::default());
        assert_eq!(
            none.decide(&lower("x.invalid."), RecordType::A),
            Decision::Global
        );
    }

    #[test]
    fn hosts_files_give_addresses_and_pointers() {
        let r = parse_hosts(
            "# comment\n10.0.9.9  printer.corp.test printer\n\n2001:db8::5 mri.corp.test # x\n10.0.9.9 again.corp.test\n",
        )
        .expect("hosts");
        let z = Zones::new(ZoneSpec {
            records: r,
            ..ZoneSpec::default()
        });
        let Decision::Local(a) = z.decide(&lower("9.9.0.10.in-addr.arpa."), RecordType::PTR) else {
            panic!("not local");
        };
        assert_eq!(a.answers.len(), 1, "one PTR, to the first name");
        assert_eq!(
            a.answers[0].data,
            RData::PTR(PTR(name("printer.corp.test.")))
        );
        let rev = reverse_name("2001:db8::5".parse().expect("ip"));
        assert_eq!(
            rev.to_ascii(),
            "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        assert!(matches!(
            z.decide(&LowerName::new(&rev), RecordType::PTR),
            Decision::Local(LocalAnswer { ref answers, .. }) if answers.len() == 1
        ));
        assert!(matches!(
            z.decide(&lower("printer."), RecordType::A),
            Decision::Local(LocalAnswer { ref answers, .. }) if answers.len() == 1
        ));
        assert!(matches!(
            parse_hosts("10.0.0.1\n"),
            Err(ZoneError::BadHosts { line: 1, .. })
        ));
        assert!(parse_hosts("not-an-ip name\n").is_err());
    }

    #[test]
    fn records_are_checked() {
        assert!(parse_record("printer.corp. 300 IN A 10.0.9.9").is_ok());
        assert!(parse_record("printer.corp. IN A 10.0.9.999").is_err());
        assert!(parse_record("$INCLUDE /etc/passwd").is_err());
        assert!(parse_record("x. CH TXT \"a\"").is_err());
        assert!(parse_record("").is_err());
        assert!(zone_name(".").is_err());
        assert_eq!(
            zone_name("Corp.Hospital.NL").expect("ok").to_ascii(),
            "corp.hospital.nl."
        );
        assert!(zone_name("a..b").is_err());
    }
}
