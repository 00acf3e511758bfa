use std::collections::BTreeSet;

use super::*;
use crate::policy::{AllowScope, AllowSource, Compiler, EventInfo, FeedInfo, IocRecord};

pub(crate) fn settings() -> ZoneSettings {
    let origin = Name::from_ascii("zdn.rpz.").expect("valid");
    ZoneSettings {
        ns: Name::from_ascii("localhost.").expect("valid"),
        email: Name::from_ascii("hostmaster.localhost.").expect("valid"),
        origin,
        origin_text: "zdn.rpz".into(),
        ttl: 300,
        log_only: RpzLogOnly::Omit,
        sinkhole_v4: vec!["192.0.2.1".parse().expect("ip")],
        sinkhole_v6: vec!["2001:db8::53".parse().expect("ip")],
    }
}

fn feed(name: &str, action: Action) -> FeedInfo {
    FeedInfo {
        name: name.into(),
        kind: "misp-feed".into(),
        action,
        location: "test".into(),
    }
}

fn rec<'a>(t: &'a str, v: &'a str) -> IocRecord<'a> {
    IocRecord::plain(t, v)
}

/// The trigger lines of a zone file, comments stripped, as a set.
pub(crate) fn triggers(zone: &str) -> BTreeSet<String> {
    zone.lines()
        .filter(|l| !l.is_empty() && !l.starts_with([';', '$', '@', ' ']))
        .map(|l| l.split(" ;").next().unwrap_or(l).trim().to_string())
        .collect()
}

fn write(policy: &Policy, s: &ZoneSettings) -> String {
    let mut out = Vec::new();
    write_zone(policy, s, &mut out).expect("write");
    String::from_utf8(out).expect("utf8")
}

fn set(lines: &[&str]) -> BTreeSet<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_misp_example_gives_misps_triggers() {
    // The input of misp.md §4.3, all under the default NXDOMAIN policy.
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    c.add(0, &rec("domain", "evil.example"));
    c.add(0, &rec("hostname", "c2.bad.example"));
    c.add(0, &rec("domain|ip", "phish.example|198.51.100.7"));
    c.add(0, &rec("ip-dst", "203.0.113.5"));
    c.add(0, &rec("ip-dst", "192.0.2.0/24"));
    c.add(0, &rec("ip-src", "2001:db8::1"));
    c.add(0, &rec("url", "http://evil.example/x"));
    c.add(
        0,
        &IocRecord {
            to_ids: false,
            ..rec("domain", "not-for-ids.example")
        },
    );
    let policy = Policy::from_bytes(c.finish().expect("compile")).expect("load");
    let zone = write(&policy, &settings());
    assert_eq!(
        triggers(&zone),
        set(&[
            "32.7.100.51.198.rpz-ip CNAME .",
            "32.5.113.0.203.rpz-ip CNAME .",
            "24.0.2.0.192.rpz-ip CNAME .",
            "128.1.zz.db8.2001.rpz-ip CNAME .",
            "evil.example CNAME .",
            "*.evil.example CNAME .",
            "phish.example CNAME .",
            "*.phish.example CNAME .",
            "c2.bad.example CNAME .",
        ]),
        "{zone}"
    );
    // Sections in MISP's order: addresses, domains, hostnames.
    let ip = zone.find("rpz-ip CNAME").expect("ip");
    let dom = zone.find("\nevil.example CNAME").expect("domain");
    let host = zone.find("\nc2.bad.example CNAME").expect("host");
    assert!(ip < dom && dom < host, "{zone}");
    let serial = ZoneSettings::serial_of(policy.serial());
    assert!(
        zone.contains(&format!(
            "@               SOA localhost. hostmaster.localhost. ({serial} "
        )),
        "{zone}"
    );
    assert!(zone.contains("\n$TTL 300\n"), "{zone}");
    assert!(zone.contains("\n                NS localhost.\n"), "{zone}");
}

#[test]
fn actions_map_to_rpz_actions() {
    let mut c = Compiler::new(vec![
        feed("nx", Action::Nxdomain),
        feed("nd", Action::Nodata),
        feed("dr", Action::Drop),
        feed("sh", Action::Sinkhole),
        feed("lo", Action::LogOnly),
        feed("rf", Action::Refused),
    ]);
    c.add(0, &rec("hostname", "nx.example"));
    c.add(1, &rec("hostname", "nd.example"));
    c.add(2, &rec("hostname", "dr.example"));
    c.add(3, &rec("hostname", "sh.example"));
    c.add(4, &rec("hostname", "lo.example"));
    c.add(5, &rec("hostname", "rf.example"));
    let policy = Policy::from_bytes(c.finish().expect("compile")).expect("load");
    let mut s = settings();
    let base = [
        "nx.example CNAME .",
        "nd.example CNAME *.",
        "dr.example CNAME rpz-drop.",
        "sh.example A 192.0.2.1",
        "sh.example AAAA 2001:db8::53",
        "rf.example CNAME .",
    ];
    assert_eq!(triggers(&write(&policy, &s)), set(&base));
    s.log_only = RpzLogOnly::Passthru;
    let mut with = base.to_vec();
    with.push("lo.example CNAME rpz-passthru.");
    assert_eq!(triggers(&write(&policy, &s)), set(&with));
}

#[test]
fn allowlisted_names_are_never_blocking_triggers() {
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    let src = c.allow_source(AllowSource {
        kind: "file".into(),
        path: "allow.txt".into(),
        name: None,
    });
    c.allow(src, "good.evil.example", AllowScope::Subtree)
        .expect("allow");
    c.allow(src, "cdn.example", AllowScope::Subtree)
        .expect("allow");
    c.add(0, &rec("domain", "evil.example"));
    c.add(0, &rec("domain", "cdn.example"));
    c.add(0, &rec("hostname", "x.cdn.example"));
    let policy = Policy::from_bytes(c.finish().expect("compile")).expect("load");
    let zone = write(&policy, &settings());
    assert_eq!(
        triggers(&zone),
        set(&[
            "evil.example CNAME .",
            "*.evil.example CNAME .",
            // The allowlist wins over the listed parent, as in schild itself.
            "good.evil.example CNAME rpz-passthru.",
            "*.good.evil.example CNAME rpz-passthru.",
        ]),
        "{zone}"
    );
}

#[test]
fn comments_name_the_feed_and_event() {
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    let ev = c.add_event(EventInfo {
        feed: 0,
        uuid: "5a0a9aa9-23a4-4607-b6df-41a9950d210f".into(),
        info: "Phishing wave\nwith a newline".into(),
        tags: vec![],
    });
    c.add(
        0,
        &IocRecord {
            event: Some(ev),
            ..rec("domain", "evil.example")
        },
    );
    let policy = Policy::from_bytes(c.finish().expect("compile")).expect("load");
    let zone = write(&policy, &settings());
    let line = zone
        .lines()
        .find(|l| l.starts_with("evil.example CNAME ."))
        .expect("trigger");
    assert_eq!(
        line,
        "evil.example CNAME . ; feed zdn, event 5a0a9aa9-23a4-4607-b6df-41a9950d210f \"Phishing wave with a newline\""
    );
}

#[test]
fn names_that_would_be_other_triggers_are_not_exported() {
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    c.add(0, &rec("domain", "32.1.0.0.10.rpz-ip"));
    c.add(0, &rec("domain", "ns.rpz-nsdname"));
    c.add(0, &rec("domain", "evil.example"));
    let policy = Policy::from_bytes(c.finish().expect("compile")).expect("load");
    let mut out = Vec::new();
    let stats = write_zone(&policy, &settings(), &mut out).expect("write");
    let zone = String::from_utf8(out).expect("utf8");
    assert_eq!(
        triggers(&zone),
        set(&["evil.example CNAME .", "*.evil.example CNAME ."]),
        "{zone}"
    );
    assert_eq!(stats.skipped.unsafe_names, 2);
}

fn owner(net: &str) -> String {
    let mut s = String::new();
    let net: IpNet = crate::policy::compile::parse_net(net).expect("valid");
    rpz_ip_owner(&net, &mut s);
    s
}

#[test]
fn rpz_ip_owners_as_misp_writes_them() {
    assert_eq!(owner("203.0.113.5"), "32.5.113.0.203.rpz-ip");
    assert_eq!(owner("192.0.2.0/24"), "24.0.2.0.192.rpz-ip");
    assert_eq!(owner("2001:db8::1"), "128.1.zz.db8.2001.rpz-ip");
    assert_eq!(owner("2001:db8::/48"), "48.zz.db8.2001.rpz-ip");
    // A single zero group is not compressed (RFC 5952).
    assert_eq!(
        owner("2001:db8:0:1:1:1:1:1"),
        "128.1.1.1.1.1.0.db8.2001.rpz-ip"
    );
    // The longest run wins, not the first.
    assert_eq!(owner("2001:0:0:1:0:0:0:1"), "128.1.zz.1.0.0.2001.rpz-ip");
}

#[test]
fn special_and_odd_names_are_unsafe() {
    let rev = |s: &str| s.bytes().rev().collect::<Vec<u8>>();
    assert!(safe_key(&rev("evil.example"), 7));
    assert!(safe_key(&rev("_dmarc.evil.example"), 7));
    assert!(!safe_key(&rev("32.1.0.0.10.rpz-ip"), 7));
    assert!(!safe_key(&rev("x.rpz-nsdname"), 7));
    assert!(!safe_key(&rev("evil;x.example"), 7));
    assert!(!safe_key(&rev(&"a".repeat(250)), 7));
    // Only the last label counts.
    assert!(safe_key(&rev("rpz-ip.example"), 7));
}

#[test]
fn the_journal_holds_the_difference() {
    use crate::rpz::journal::{Journal, read_changes};
    let build = |names: &[(&str, &str)], prev: u64| {
        let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
        c.set_previous_serial(prev);
        for (t, v) in names {
            c.add(0, &rec(t, v));
        }
        Policy::from_bytes(c.finish().expect("compile")).expect("load")
    };
    let old = build(
        &[
            ("domain", "a.example"),
            ("hostname", "b.example"),
            ("ip-dst", "203.0.113.5"),
        ],
        0,
    );
    let new = build(
        &[
            ("hostname", "a.example"),
            ("domain", "c.example"),
            ("ip-dst", "203.0.113.6"),
        ],
        old.serial(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::new(dir.path());
    let s = settings();
    let step = j.record(&old, &new, &s).expect("write").expect("a step");
    let (from, to) = (
        ZoneSettings::serial_of(old.serial()),
        ZoneSettings::serial_of(new.serial()),
    );
    assert_eq!((step.from, step.to), (from, to));
    let chain = j.chain(from, to).expect("chain");
    assert_eq!(chain.len(), 1);
    let owners = |added| {
        read_changes(&chain[0].2, added)
            .expect("read")
            .map(|t| t.owner)
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        owners(false),
        set(&["*.a.example", "b.example", "32.5.113.0.203.rpz-ip"])
    );
    assert_eq!(
        owners(true),
        set(&["c.example", "*.c.example", "32.6.113.0.203.rpz-ip"])
    );
    // Not reachable from an unknown serial: the caller falls back to AXFR.
    assert!(j.chain(from.wrapping_sub(5), to).is_none());
}

/// An `rpz` feed's own actions go out as they came in, so one schild can
/// feed another (or BIND, or Unbound) without flattening them.
#[test]
fn an_rpz_feeds_own_actions_are_exported_faithfully() {
    use crate::config::FeedKind;
    let zone_in = "$ORIGIN in.rpz.\n@ SOA ns. h. 1 2 3 4 5\n\
        nx.example CNAME .\n*.nx.example CNAME .\nnodata.example CNAME *.\n\
        drop.example CNAME rpz-drop.\ntcp.example CNAME rpz-tcp-only.\n\
        garden.example CNAME walled.hospital.example.\n\
        override.example A 192.0.2.10\noverride.example AAAA 2001:db8::10\n\
        override.example TXT \"call \\\"ext 1234\\\"\"\n\
        ok.nx.example CNAME rpz-passthru.\n\
        32.10.0.20.10.rpz-client-ip CNAME rpz-drop.\n\
        32.7.100.51.198.rpz-ip CNAME *.\n";
    let mut c = Compiler::new(vec![FeedInfo {
        name: "hospital".into(),
        kind: "rpz".into(),
        action: Action::Nxdomain,
        location: "test".into(),
    }]);
    crate::feeds::plain::push_lines(FeedKind::Rpz, zone_in.as_bytes(), 0, &mut c);
    let p = Policy::from_bytes(c.finish().expect("compile")).expect("load");
    let s = settings();
    let zone = write(&p, &s);
    assert_eq!(
        triggers(&zone),
        set(&[
            "nx.example CNAME .",
            "*.nx.example CNAME .",
            "nodata.example CNAME *.",
            "drop.example CNAME rpz-drop.",
            "tcp.example CNAME rpz-tcp-only.",
            "garden.example CNAME walled.hospital.example.",
            "override.example A 192.0.2.10",
            "override.example AAAA 2001:db8::10",
            "override.example TXT \"call \\\"ext 1234\\\"\"",
            "ok.nx.example CNAME rpz-passthru.",
            "32.10.0.20.10.rpz-client-ip CNAME rpz-drop.",
            "32.7.100.51.198.rpz-ip CNAME *.",
        ]),
        "{zone}"
    );
    // The zone read back gives the same policy: the export is a feed.
    let mut c = Compiler::new(vec![FeedInfo {
        name: "again".into(),
        kind: "rpz".into(),
        action: Action::Nxdomain,
        location: "test".into(),
    }]);
    crate::feeds::plain::push_lines(FeedKind::Rpz, zone.as_bytes(), 0, &mut c);
    let again = Policy::from_bytes(c.finish().expect("compile")).expect("load");
    assert_eq!(triggers(&write(&again, &s)), triggers(&zone));
    // And the transfer's records carry the same data.
    let mut walk = Triggers::new(&p, &s, Section::All);
    let mut records = Vec::new();
    while let Some(t) = walk.next() {
        assert!(push_records(&s, t, &mut records), "{t:?}");
    }
    let texts: BTreeSet<String> = records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    assert!(
        texts.contains("override.example.zdn.rpz. TXT \"call \\\"ext 1234\\\"\"")
            || texts
                .iter()
                .any(|t| t.starts_with("override.example.zdn.rpz. TXT")),
        "{texts:?}"
    );
    assert!(
        texts.contains("32.10.0.20.10.rpz-client-ip.zdn.rpz. CNAME rpz-drop."),
        "{texts:?}"
    );
}

/// A change of local data is a change (IXFR sends it), and its records,
/// the client flag and the new targets survive the journal.
#[test]
fn the_journal_carries_rpz_local_data() {
    use crate::config::FeedKind;
    use crate::rpz::journal::{Journal, read_changes};
    let build = |zone: &str, prev: u64| {
        let mut c = Compiler::new(vec![FeedInfo {
            name: "hospital".into(),
            kind: "rpz".into(),
            action: Action::Nxdomain,
            location: "test".into(),
        }]);
        c.set_previous_serial(prev);
        crate::feeds::plain::push_lines(FeedKind::Rpz, zone.as_bytes(), 0, &mut c);
        Policy::from_bytes(c.finish().expect("compile")).expect("load")
    };
    let old = build("g.example A 192.0.2.1\n", 0);
    let new = build(
        "g.example A 192.0.2.2\ng.example TXT \"a\\009b\"\nt.example CNAME rpz-tcp-only.\n\
         32.9.0.0.10.rpz-client-ip CNAME .\n",
        old.serial(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::new(dir.path());
    let s = settings();
    j.record(&old, &new, &s).expect("write").expect("a step");
    let (from, to) = (
        ZoneSettings::serial_of(old.serial()),
        ZoneSettings::serial_of(new.serial()),
    );
    let chain = j.chain(from, to).expect("chain");
    let changes =
        |added| -> Vec<Trigger> { read_changes(&chain[0].2, added).expect("read").collect() };
    let removed = changes(false);
    assert_eq!(removed.len(), 1);
    assert_eq!(
        removed[0].local,
        [LocalRecord::A("192.0.2.1".parse().expect("ip"))]
    );
    let added = changes(true);
    let g = added.iter().find(|t| t.owner == "g.example").expect("g");
    assert_eq!(
        g.local,
        [
            LocalRecord::A("192.0.2.2".parse().expect("ip")),
            LocalRecord::Txt(vec!["a\tb".into()])
        ]
    );
    assert!(
        added
            .iter()
            .any(|t| t.owner == "t.example" && t.target == Target::TcpOnly)
    );
    let client = added
        .iter()
        .find(|t| t.owner == "32.9.0.0.10.rpz-client-ip")
        .expect("client trigger");
    assert!(client.client);
    let mut records = Vec::new();
    for t in &added {
        assert!(push_records(&s, t, &mut records), "{t:?}");
    }
    assert_eq!(records.len(), 4, "{records:?}");
}
