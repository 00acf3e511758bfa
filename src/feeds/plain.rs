//! Plain lists: one domain per line, hosts files, and RPZ zone files.
//!
//! A `domains` or `hosts` entry blocks the name and its subdomains, like a
//! MISP `domain`. An RPZ file keeps its own triggers: `name` is exact,
//! `*.name` is the subdomains only, `N.d.c.b.a.rpz-ip` is an address in
//! the answer, `N.d.c.b.a.rpz-client-ip` the client's; and each record
//! keeps its own action (NXDOMAIN, NODATA, drop, TCP-only, passthru, or
//! local data). What schild cannot honour (`rpz-nsdname`, `rpz-nsip`,
//! local data of other types) is counted with its reason, never guessed.
//! A line that cannot be read is counted with its reason; it never stops
//! the rest of the file.

use super::Census;
use crate::config::FeedKind;
use crate::policy::{Action, Compiler, FeedId, IocRecord, LocalRecord, RpzRule};

/// Push every entry of a plain list into the compiler.
pub fn push_lines(kind: FeedKind, bytes: &[u8], feed: FeedId, compiler: &mut Compiler) {
    match kind {
        FeedKind::Rpz => push_rpz(bytes, feed, compiler),
        FeedKind::Hosts => push_hosts(bytes, feed, compiler),
        _ => push_domains(bytes, feed, compiler),
    }
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = Result<&str, ()>> {
    bytes.split(|&b| b == b'\n').map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        std::str::from_utf8(l).map_err(|_| ())
    })
}

fn strip_comment(line: &str, marker: char) -> &str {
    match line.find(marker) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Call `f` with each non-empty line of a `#`-commented list, trimmed;
/// lines that are not UTF-8 are counted.
fn each_entry(
    bytes: &[u8],
    feed: FeedId,
    c: &mut Compiler,
    mut f: impl FnMut(&str, &mut Compiler),
) {
    for line in lines(bytes) {
        let Ok(line) = line else {
            c.report_mut(feed).unsupported("line-not-utf8");
            continue;
        };
        let line = strip_comment(line, '#').trim();
        if !line.is_empty() {
            f(line, c);
        }
    }
}

fn push_domains(bytes: &[u8], feed: FeedId, c: &mut Compiler) {
    each_entry(bytes, feed, c, |line, c| {
        c.add(feed, &IocRecord::plain("domain", domains_name(line)));
    });
}

/// The name on a `domains` line; `0.0.0.0 name` lines are tolerated.
fn domains_name(line: &str) -> &str {
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or("");
    match words.next() {
        Some(second) if first.parse::<std::net::IpAddr>().is_ok() => second,
        _ => first,
    }
}

/// Names in hosts files that are never indicators.
const HOSTS_IGNORED: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

fn push_hosts(bytes: &[u8], feed: FeedId, c: &mut Compiler) {
    each_entry(bytes, feed, c, |line, c| {
        let mut words = line.split_whitespace();
        let Some(addr) = words.next() else { return };
        if addr.parse::<std::net::IpAddr>().is_err() {
            c.report_mut(feed).unsupported("hosts-line-without-address");
            return;
        }
        for name in words {
            if !HOSTS_IGNORED.contains(&name.to_ascii_lowercase().as_str()) {
                c.add(feed, &IocRecord::plain("domain", name));
            }
        }
    });
}

fn push_rpz(bytes: &[u8], feed: FeedId, c: &mut Compiler) {
    walk_rpz(bytes, |item| match item {
        RpzItem::NotUtf8 => c.report_mut(feed).unsupported("line-not-utf8"),
        RpzItem::NoType => {}
        RpzItem::Record(r) => push_rpz_record(&r, feed, c),
    });
}

/// What one line of an RPZ zone file holds.
enum RpzItem<'a> {
    NotUtf8,
    /// An owner without a record type.
    NoType,
    Record(RpzRecord<'a>),
}

/// One policy record: its trigger (the owner relative to the zone), its
/// type (upper case) and its data as written.
struct RpzRecord<'a> {
    owner: String,
    rtype: String,
    rdata: Vec<&'a str>,
    origin: Option<String>,
}

impl RpzRecord<'_> {
    /// Whether its type is a DNS record type an RPZ record can have.
    fn known(&self) -> bool {
        RPZ_TYPES.contains(&self.rtype.as_str())
    }
}

/// Record types an RPZ policy record can have.
const RPZ_TYPES: &[&str] = &[
    "CNAME", "A", "AAAA", "TXT", "DNAME", "MX", "PTR", "SRV", "HINFO", "NAPTR", "CAA",
];

/// A zone-file line cut into words: a quoted string is one word (quotes
/// kept), `;` outside quotes starts a comment.
fn zone_words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b';' => break,
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                words.push(&line[start..i]);
            }
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b' ' | b'\t' | b';' | b'"') {
                    i += 1;
                }
                words.push(&line[start..i]);
            }
        }
    }
    words
}

/// Walk an RPZ zone file line by line.
fn walk_rpz<'a>(bytes: &'a [u8], mut f: impl FnMut(RpzItem<'a>)) {
    let mut origin: Option<String> = None;
    let mut in_parens = false;
    let mut last_owner: Option<String> = None;
    for line in lines(bytes) {
        let Ok(raw) = line else {
            f(RpzItem::NotUtf8);
            continue;
        };
        let words = zone_words(raw);
        let has = |c: char| words.iter().any(|w| !w.starts_with('"') && w.contains(c));
        if in_parens {
            if has(')') {
                in_parens = false;
            }
            continue;
        }
        if has('(') && !has(')') {
            in_parens = true;
        }
        let Some(&first) = words.first() else {
            continue;
        };
        let continues = raw.starts_with(' ') || raw.starts_with('\t');
        if first.eq_ignore_ascii_case("$ORIGIN") {
            origin = words
                .get(1)
                .map(|o| o.trim_end_matches('.').to_ascii_lowercase());
            continue;
        }
        if first.starts_with('$') {
            continue; // $TTL, $INCLUDE (not followed)
        }
        let (owner, rest): (String, &[&str]) = if continues {
            let Some(o) = last_owner.clone() else {
                continue;
            };
            (o, &words[..])
        } else {
            (first.to_string(), &words[1..])
        };
        last_owner = Some(owner.clone());
        // Skip TTL and class to find the type.
        let skip = rest
            .iter()
            .take_while(|w| w.parse::<u32>().is_ok() || w.eq_ignore_ascii_case("IN"))
            .count();
        let Some(rtype) = rest.get(skip) else {
            f(RpzItem::NoType);
            continue;
        };
        let rtype = rtype.to_ascii_uppercase();
        if matches!(rtype.as_str(), "SOA" | "NS") {
            if rtype == "SOA" && origin.is_none() && owner.ends_with('.') {
                origin = Some(owner.trim_end_matches('.').to_ascii_lowercase());
            }
            continue;
        }
        if owner == "@" {
            continue;
        }
        f(RpzItem::Record(RpzRecord {
            owner: relative_owner(&owner, origin.as_deref()),
            rtype,
            rdata: rest[skip + 1..].to_vec(),
            origin: origin.clone(),
        }));
    }
}

/// What a policy record says to do, as BIND and Unbound read it
/// (draft-vixie-dnsop-dns-rpz section 4): `CNAME .` NXDOMAIN, `CNAME *.`
/// NODATA, `CNAME rpz-drop.`, `CNAME rpz-tcp-only.`, `CNAME rpz-passthru.`
/// (or, the old form, a CNAME to the trigger itself), and anything else
/// local data. `Err` is why schild cannot honour it.
fn rpz_rule(r: &RpzRecord<'_>) -> Result<RpzRule, String> {
    let one = || match r.rdata.as_slice() {
        [w] => Ok(*w),
        _ => Err(format!("{}-malformed", r.rtype.to_ascii_lowercase())),
    };
    match r.rtype.as_str() {
        "CNAME" => {
            let target = one()?.to_ascii_lowercase();
            Ok(match target.as_str() {
                "." => RpzRule::Action(Action::Nxdomain),
                "*." => RpzRule::Action(Action::Nodata),
                "rpz-drop." => RpzRule::Action(Action::Drop),
                "rpz-tcp-only." => RpzRule::Action(Action::TcpOnly),
                "rpz-passthru." => RpzRule::Passthru,
                t if t.starts_with("*.") => {
                    // BIND's `CNAME *.garden.example.`: the query name
                    // prefixed to the garden. Not done; never guessed.
                    return Err("cname-wildcard-target".into());
                }
                t if t.starts_with("rpz-") => return Err(format!("cname-{t}")),
                t => {
                    let abs = match (t.strip_suffix('.'), r.origin.as_deref()) {
                        (Some(abs), _) => abs.to_string(),
                        (None, Some(origin)) => format!("{t}.{origin}"),
                        (None, None) => t.to_string(),
                    };
                    let name = crate::policy::normalise(&abs)
                        .map_err(|_| "cname-target-invalid".to_string())?;
                    if name.as_str() == r.owner {
                        RpzRule::Passthru
                    } else {
                        RpzRule::Local(LocalRecord::Cname(name.into_string()))
                    }
                }
            })
        }
        "A" => one()?
            .parse()
            .map(|a| RpzRule::Local(LocalRecord::A(a)))
            .map_err(|_| "a-malformed".into()),
        "AAAA" => one()?
            .parse()
            .map(|a| RpzRule::Local(LocalRecord::Aaaa(a)))
            .map_err(|_| "aaaa-malformed".into()),
        "TXT" => {
            if r.rdata.is_empty() {
                return Err("txt-malformed".into());
            }
            Ok(RpzRule::Local(LocalRecord::Txt(
                r.rdata.iter().map(|w| txt_string(w)).collect(),
            )))
        }
        other => Err(format!("local-data {other}")),
    }
}

/// A TXT character-string as written: quotes removed, `\"`, `\\` and
/// `\DDD` escapes undone.
fn txt_string(word: &str) -> String {
    let inner = word
        .strip_prefix('"')
        .map(|w| w.strip_suffix('"').unwrap_or(w))
        .unwrap_or(word);
    let mut out = Vec::with_capacity(inner.len());
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let digits = b
                .get(i + 1..i + 4)
                .filter(|d| d.iter().all(u8::is_ascii_digit));
            if let Some(d) = digits
                && let Ok(v) = std::str::from_utf8(d).unwrap_or("").parse::<u8>()
            {
                out.push(v);
                i += 4;
                continue;
            }
            out.push(b[i + 1]);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn push_rpz_record(r: &RpzRecord<'_>, feed: FeedId, c: &mut Compiler) {
    let name = r.owner.as_str();
    for other in [".rpz-nsdname", ".rpz-nsip"] {
        if name.ends_with(other) {
            c.report_mut(feed).unsupported(&other[1..]);
            return;
        }
    }
    let rule = match rpz_rule(r) {
        Ok(rule) => rule,
        Err(why) => {
            c.report_mut(feed).unsupported(&why);
            return;
        }
    };
    if let Some(ip) = name.strip_suffix(".rpz-ip") {
        let net = rpz_ip(ip);
        c.add_rpz_ip(feed, net.as_deref().unwrap_or(name), rule);
    } else if let Some(ip) = name.strip_suffix(".rpz-client-ip") {
        let net = rpz_ip(ip);
        c.add_rpz_client(feed, net.as_deref().unwrap_or(name), rule);
    } else {
        // `name` is exact, `*.name` is subdomains only: the RPZ meaning.
        c.add_rpz_name(feed, name, rule);
    }
}

/// Count what a plain list holds without compiling it: its entries and the
/// lines that hold none (not UTF-8, not a name, not a record), so a new
/// copy can be judged before it replaces the last good one. Streams: no
/// line is kept.
pub fn census(kind: FeedKind, bytes: &[u8]) -> Census {
    let mut n = Census::default();
    let valid = |name: &str| crate::policy::name::parse_name(name).is_ok();
    match kind {
        FeedKind::Rpz => walk_rpz(bytes, |item| {
            n.lines += 1;
            match item {
                RpzItem::NotUtf8 | RpzItem::NoType => n.bad += 1,
                RpzItem::Record(r) if !r.known() => n.bad += 1,
                RpzItem::Record(_) => n.entries += 1,
            }
        }),
        FeedKind::Hosts => each_line(bytes, |line| {
            n.lines += 1;
            let Some(line) = line else {
                n.bad += 1;
                return;
            };
            let mut words = line.split_whitespace();
            if words
                .next()
                .is_none_or(|a| a.parse::<std::net::IpAddr>().is_err())
            {
                n.bad += 1;
                return;
            }
            for name in words {
                if !HOSTS_IGNORED.contains(&name.to_ascii_lowercase().as_str()) && valid(name) {
                    n.entries += 1;
                }
            }
        }),
        _ => each_line(bytes, |line| {
            n.lines += 1;
            match line.map(domains_name) {
                Some(name) if valid(name) => n.entries += 1,
                _ => n.bad += 1,
            }
        }),
    }
    n
}

/// Each non-empty line of a `#`-commented list, trimmed; `None` for a line
/// that is not UTF-8.
fn each_line(bytes: &[u8], mut f: impl FnMut(Option<&str>)) {
    for line in lines(bytes) {
        match line {
            Ok(line) => {
                let line = strip_comment(line, '#').trim();
                if !line.is_empty() {
                    f(Some(line));
                }
            }
            Err(()) => f(None),
        }
    }
}

/// An owner name relative to the zone origin.
fn relative_owner(owner: &str, origin: Option<&str>) -> String {
    let lower = owner.to_ascii_lowercase();
    match (lower.strip_suffix('.'), origin) {
        (Some(abs), Some(origin)) => match abs.strip_suffix(origin) {
            Some(rel) => rel.trim_end_matches('.').to_string(),
            None => abs.to_string(),
        },
        (Some(abs), None) => abs.to_string(),
        (None, _) => lower,
    }
}

/// `32.5.113.0.203` -> `203.0.113.5/32`; `128.1.zz.db8.2001` -> `2001:db8::1/128`.
pub fn rpz_ip(s: &str) -> Option<String> {
    let mut parts: Vec<&str> = s.split('.').collect();
    if parts.len() < 2 {
        return None;
    }
    let prefix: u8 = parts.remove(0).parse().ok()?;
    parts.reverse();
    if parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok()) {
        return Some(format!("{}/{prefix}", parts.join(".")));
    }
    let v6 = parts
        .iter()
        .map(|p| if *p == "zz" { "" } else { p })
        .collect::<Vec<_>>()
        .join(":");
    let v6 = if v6.starts_with(':') {
        format!(":{v6}")
    } else {
        v6
    };
    let v6 = if v6.ends_with(':') {
        format!("{v6}:")
    } else {
        v6
    };
    let addr: std::net::Ipv6Addr = v6.parse().ok()?;
    Some(format!("{addr}/{prefix}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{FeedInfo, Policy, Verdict};

    fn compile(kind: FeedKind, text: &str) -> Policy {
        let mut c = Compiler::new(vec![FeedInfo {
            name: "t".into(),
            kind: kind.as_str().into(),
            action: Action::Nxdomain,
            location: "t".into(),
        }]);
        push_lines(kind, text.as_bytes(), 0, &mut c);
        Policy::from_bytes(c.finish().expect("compiles")).expect("loads")
    }

    fn blocked(p: &Policy, n: &str) -> bool {
        p.lookup_str(n).hit().is_some()
    }

    #[test]
    fn domains_list() {
        let p = compile(
            FeedKind::Domains,
            "# comment\nevil.example\r\n\n  Bad.Example.  # trailing\n0.0.0.0 hosts-style.example\n",
        );
        assert!(blocked(&p, "evil.example"));
        assert!(
            blocked(&p, "sub.evil.example"),
            "a domains entry covers subdomains"
        );
        assert!(blocked(&p, "bad.example"));
        assert!(blocked(&p, "hosts-style.example"));
        assert_eq!(p.meta().reports[0].names, 3);
    }

    #[test]
    fn hosts_file() {
        let p = compile(
            FeedKind::Hosts,
            "127.0.0.1 localhost\n0.0.0.0 ads.example tracker.example\n::1 ip6-localhost\nnonsense\n",
        );
        assert!(blocked(&p, "ads.example"));
        assert!(blocked(&p, "x.tracker.example"));
        assert!(!blocked(&p, "localhost"));
        assert_eq!(
            p.meta().reports[0]
                .unsupported
                .get("hosts-line-without-address"),
            Some(&1)
        );
    }

    #[test]
    fn rpz_file_keeps_its_triggers() {
        let zone = "$TTL 1w;\n@               SOA localhost. root.localhost (2024102100 2h 30m 30d 1h)\n                NS localhost.\n\n\
            32.7.100.51.198.rpz-ip CNAME .\n24.0.2.0.192.rpz-ip CNAME .\n128.1.zz.db8.2001.rpz-ip CNAME .\n\
            evil.example CNAME .\n*.evil.example CNAME .\nc2.bad.example CNAME .\n*.wild.example CNAME .\n\
            ok.example CNAME rpz-passthru.\nns.example.rpz-nsdname CNAME .\n";
        let p = compile(FeedKind::Rpz, zone);
        assert!(blocked(&p, "evil.example"));
        assert!(blocked(&p, "a.evil.example"));
        assert!(blocked(&p, "c2.bad.example"));
        assert!(!blocked(&p, "x.c2.bad.example"));
        assert!(!blocked(&p, "wild.example"));
        assert!(blocked(&p, "a.wild.example"));
        assert!(!blocked(&p, "ok.example"));
        assert!(p.lookup_ip("198.51.100.7".parse().expect("ip")).is_some());
        assert!(p.lookup_ip("192.0.2.9".parse().expect("ip")).is_some());
        assert!(p.lookup_ip("2001:db8::1".parse().expect("ip")).is_some());
        let r = &p.meta().reports[0];
        assert_eq!(
            r.unsupported.keys().collect::<Vec<_>>(),
            ["rpz-nsdname"],
            "{:?}",
            r.unsupported
        );
        assert_eq!(r.passthru, 1);
    }

    fn action(p: &Policy, n: &str) -> Option<Action> {
        p.lookup_str(n).hit().map(|h| h.action)
    }

    fn local(p: &Policy, n: &str) -> Vec<LocalRecord> {
        let hit = p.lookup_str(n).hit().expect("listed");
        p.local_records(hit.set).cloned().collect()
    }

    /// A hand-kept zone as hospitals write them: every record keeps its
    /// own action, whatever the feed's `action` says.
    #[test]
    fn rpz_records_keep_their_own_action() {
        let zone = "$TTL 300\n$ORIGIN local.rpz.\n@ SOA ns. h. (1 2 3\n 4 5)\n NS ns.\n\
            nx.example CNAME .\n\
            nodata.example CNAME *.\n\
            drop.example CNAME rpz-drop.\n\
            tcp.example 60 IN CNAME rpz-tcp-only.\n\
            garden.example CNAME walled.hospital.example.\n\
            rel.example CNAME walled\n\
            override.example A 192.0.2.10\n\
            override.example AAAA 2001:db8::10\n\
            override.example TXT \"see the \\\"helpdesk\\\"; ext 1234\" \"two\" ; comment\n\
            *.wild.example A 192.0.2.11\n\
            bad.example CNAME .\n*.bad.example CNAME .\n\
            good.bad.example CNAME rpz-passthru.\n\
            legacy.bad.example CNAME legacy.bad.example.\n\
            *.kids.bad.example CNAME rpz-passthru.\n\
            32.10.0.20.10.rpz-client-ip CNAME rpz-drop.\n\
            24.0.0.30.10.rpz-client-ip A 192.0.2.99\n\
            32.7.100.51.198.rpz-ip CNAME *.\n\
            ns.example.rpz-nsdname CNAME .\n\
            32.1.2.0.192.rpz-nsip CNAME .\n\
            mx.example MX 10 mail.example.\n\
            sub.example CNAME *.garden.example.\n";
        let p = compile(FeedKind::Rpz, zone);
        assert_eq!(action(&p, "nx.example"), Some(Action::Nxdomain));
        assert_eq!(action(&p, "nodata.example"), Some(Action::Nodata));
        assert_eq!(action(&p, "drop.example"), Some(Action::Drop));
        assert_eq!(action(&p, "tcp.example"), Some(Action::TcpOnly));
        assert_eq!(action(&p, "garden.example"), Some(Action::LocalData));
        assert_eq!(
            local(&p, "garden.example"),
            [LocalRecord::Cname("walled.hospital.example".into())]
        );
        assert_eq!(
            local(&p, "rel.example"),
            [LocalRecord::Cname("walled.local.rpz".into())],
            "a relative target is under the origin"
        );
        assert_eq!(
            local(&p, "override.example"),
            [
                LocalRecord::A("192.0.2.10".parse().expect("ip")),
                LocalRecord::Aaaa("2001:db8::10".parse().expect("ip")),
                LocalRecord::Txt(vec!["see the \"helpdesk\"; ext 1234".into(), "two".into()]),
            ],
            "several records of one owner form one answer"
        );
        assert_eq!(action(&p, "wild.example"), None);
        assert_eq!(
            local(&p, "a.b.wild.example"),
            [LocalRecord::A("192.0.2.11".parse().expect("ip"))]
        );
        // Passthru: an allowlist entry for that trigger, which protects it
        // under a listed parent at query time.
        assert_eq!(action(&p, "x.bad.example"), Some(Action::Nxdomain));
        assert!(matches!(
            p.lookup_str("good.bad.example"),
            Verdict::Allowed { .. }
        ));
        assert!(matches!(
            p.lookup_str("legacy.bad.example"),
            Verdict::Allowed { .. }
        ));
        assert!(matches!(
            p.lookup_str("a.kids.bad.example"),
            Verdict::Allowed { .. }
        ));
        assert_eq!(
            action(&p, "kids.bad.example"),
            Some(Action::Nxdomain),
            "`*.name` passthru spares the subdomains only"
        );
        // Client triggers apply to the client, not to answers.
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        assert_eq!(
            p.lookup_client(ip("10.20.0.10")).map(|h| h.action),
            Some(Action::Drop)
        );
        assert_eq!(
            p.lookup_client(ip("10.30.0.77")).map(|h| h.action),
            Some(Action::LocalData)
        );
        assert!(p.lookup_client(ip("10.20.0.11")).is_none());
        assert!(p.lookup_ip(ip("10.20.0.10")).is_none());
        assert_eq!(
            p.lookup_ip(ip("198.51.100.7")).map(|h| h.action),
            Some(Action::Nodata)
        );
        let r = &p.meta().reports[0];
        let unsupported: Vec<_> = r
            .unsupported
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            unsupported,
            [
                ("cname-wildcard-target", 1),
                ("local-data MX", 1),
                ("rpz-nsdname", 1),
                ("rpz-nsip", 1)
            ]
        );
        assert_eq!((r.passthru, r.client_ips), (3, 2));
        // Census: the unsupported records are real records, not garbage.
        let n = census(FeedKind::Rpz, zone.as_bytes());
        assert_eq!(n.bad, 0, "{n:?}");
    }

    #[test]
    fn txt_local_data_survives_zone_text() {
        let r = LocalRecord::Txt(vec!["tab\there \"q\" é".into(), "\\".into()]);
        let text = r.rdata_text();
        assert_eq!(text, "\"tab\\009here \\\"q\\\" \\195\\169\" \"\\\\\"");
        let p = compile(FeedKind::Rpz, &format!("t.example TXT {text}\n"));
        assert_eq!(local(&p, "t.example"), [r]);
    }

    #[test]
    fn rpz_log_only_feed_answers_everything_normally() {
        let mut c = Compiler::new(vec![FeedInfo {
            name: "t".into(),
            kind: "rpz".into(),
            action: Action::LogOnly,
            location: "t".into(),
        }]);
        push_lines(
            FeedKind::Rpz,
            b"drop.example CNAME rpz-drop.\ngarden.example A 192.0.2.1\n",
            0,
            &mut c,
        );
        let p = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
        assert_eq!(action(&p, "drop.example"), Some(Action::LogOnly));
        assert_eq!(action(&p, "garden.example"), Some(Action::LogOnly));
    }

    #[test]
    fn rpz_local_data_changes_the_content_hash() {
        let hash = |zone: &str| compile(FeedKind::Rpz, zone).content_hash();
        assert_ne!(
            hash("g.example A 192.0.2.1\n"),
            hash("g.example A 192.0.2.2\n")
        );
        assert_ne!(
            hash("32.1.0.0.10.rpz-client-ip CNAME .\n"),
            hash("32.1.0.0.10.rpz-ip CNAME .\n")
        );
    }

    #[test]
    fn rpz_absolute_owners_lose_the_origin() {
        let zone = "$ORIGIN zdn.rpz.\n@ 300 IN SOA ns. host. 1 2 3 4 5\nevil.example.zdn.rpz. 300 IN CNAME .\nrel.example CNAME .\n";
        let p = compile(FeedKind::Rpz, zone);
        assert!(blocked(&p, "evil.example"));
        assert!(blocked(&p, "rel.example"));
    }

    #[test]
    fn rpz_ip_owner_names() {
        assert_eq!(rpz_ip("32.5.113.0.203").as_deref(), Some("203.0.113.5/32"));
        assert_eq!(rpz_ip("24.0.2.0.192").as_deref(), Some("192.0.2.0/24"));
        assert_eq!(
            rpz_ip("128.1.zz.db8.2001").as_deref(),
            Some("2001:db8::1/128")
        );
        assert_eq!(rpz_ip("48.zz.db8.2001").as_deref(), Some("2001:db8::/48"));
        assert_eq!(rpz_ip("x.y"), None);
    }
}
