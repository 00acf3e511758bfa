//! Plain lists: one domain per line, hosts files, and RPZ zone files.
//!
//! A `domains` or `hosts` entry blocks the name and its subdomains, like a
//! MISP `domain`. An RPZ file keeps its own triggers: `name` is exact,
//! `*.name` is the subdomains only, `N.d.c.b.a.rpz-ip` is an address.
//! A line that cannot be read is counted with its reason; it never stops
//! the rest of the file.

use super::Census;
use crate::config::FeedKind;
use crate::policy::{Compiler, FeedId, IocRecord};

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
        RpzItem::Passthru => c
            .report_mut(feed)
            .unsupported("rpz-passthru (use [allowlist] instead)"),
        RpzItem::NoType => {}
        RpzItem::Trigger { name, .. } => push_rpz_trigger(&name, feed, c),
    });
}

/// What one line of an RPZ zone file holds.
enum RpzItem {
    NotUtf8,
    /// An owner without a record type.
    NoType,
    Passthru,
    /// A policy record; `known` when its type is a DNS record type.
    Trigger {
        name: String,
        known: bool,
    },
}

/// Record types an RPZ policy record can have.
const RPZ_TYPES: &[&str] = &[
    "CNAME", "A", "AAAA", "TXT", "DNAME", "MX", "PTR", "SRV", "HINFO",
];

/// Walk an RPZ zone file line by line.
fn walk_rpz(bytes: &[u8], mut f: impl FnMut(RpzItem)) {
    let mut origin: Option<String> = None;
    let mut in_parens = false;
    let mut last_owner: Option<String> = None;
    for line in lines(bytes) {
        let Ok(raw) = line else {
            f(RpzItem::NotUtf8);
            continue;
        };
        let line = strip_comment(raw, ';');
        if in_parens {
            if line.contains(')') {
                in_parens = false;
            }
            continue;
        }
        if line.contains('(') && !line.contains(')') {
            in_parens = true;
        }
        if line.trim().is_empty() {
            continue;
        }
        let continues = line.starts_with(' ') || line.starts_with('\t');
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if first.eq_ignore_ascii_case("$ORIGIN") {
            origin = words
                .next()
                .map(|o| o.trim_end_matches('.').to_ascii_lowercase());
            continue;
        }
        if first.starts_with('$') {
            continue; // $TTL, $INCLUDE (not followed)
        }
        let (owner, rest): (String, Vec<&str>) = if continues {
            let Some(o) = last_owner.clone() else {
                continue;
            };
            (o, std::iter::once(first).chain(words).collect())
        } else {
            (first.to_string(), words.collect())
        };
        last_owner = Some(owner.clone());
        // Skip TTL and class to find the type.
        let mut it = rest
            .iter()
            .skip_while(|w| w.parse::<u32>().is_ok() || w.eq_ignore_ascii_case("IN"));
        let Some(rtype) = it.next() else {
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
        let target = it.next().map(|t| t.to_ascii_lowercase());
        if rtype == "CNAME" && target.as_deref() == Some("rpz-passthru.") {
            f(RpzItem::Passthru);
            continue;
        }
        f(RpzItem::Trigger {
            name: relative_owner(&owner, origin.as_deref()),
            known: RPZ_TYPES.contains(&rtype.as_str()),
        });
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
                RpzItem::NotUtf8 | RpzItem::NoType | RpzItem::Trigger { known: false, .. } => {
                    n.bad += 1
                }
                RpzItem::Trigger { known: true, .. } => n.entries += 1,
                RpzItem::Passthru => {}
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

fn push_rpz_trigger(name: &str, feed: FeedId, c: &mut Compiler) {
    if let Some(ip) = name.strip_suffix(".rpz-ip") {
        match rpz_ip(ip) {
            Some(net) => c.add(feed, &IocRecord::plain("ip-dst", &net)),
            None => c.add(feed, &IocRecord::plain("ip-dst", name)),
        }
        return;
    }
    for other in [".rpz-nsdname", ".rpz-nsip", ".rpz-client-ip"] {
        if name.ends_with(other) {
            c.report_mut(feed).unsupported(&other[1..]);
            return;
        }
    }
    // `name` is exact, `*.name` is subdomains only: the RPZ meaning.
    c.add(feed, &IocRecord::plain("hostname", name));
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
    use crate::policy::{Action, FeedInfo, Policy};

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
        assert_eq!(r.unsupported.len(), 2, "{:?}", r.unsupported);
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
