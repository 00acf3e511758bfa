//! Tests of the whole core: records in, verdicts out.

use std::collections::HashSet;
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn feed(name: &str, action: Action) -> FeedInfo {
    FeedInfo {
        name: name.into(),
        kind: "domains".into(),
        action,
        location: "test".into(),
    }
}

fn compile(records: &[(&str, &str)]) -> Policy {
    compile_with(records, &[])
}

fn compile_with(records: &[(&str, &str)], allow: &[(&str, AllowScope)]) -> Policy {
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    let src = c.allow_source(AllowSource {
        kind: "file".into(),
        path: "allow.txt".into(),
        name: None,
    });
    for (name, scope) in allow {
        c.allow(src, name, *scope).expect("valid allow entry");
    }
    for (t, v) in records {
        c.add(0, &IocRecord::plain(t, v));
    }
    Policy::from_bytes(c.finish().expect("compiles")).expect("loads")
}

fn blocked(p: &Policy, name: &str) -> bool {
    matches!(p.lookup_str(name), Verdict::Blocked(_))
}

#[test]
fn domain_blocks_name_and_subdomains() {
    let p = compile(&[("domain", "evil.example")]);
    assert!(blocked(&p, "evil.example"));
    assert!(blocked(&p, "www.evil.example"));
    assert!(blocked(&p, "a.b.c.evil.example."));
    assert!(!blocked(&p, "notevil.example"), "label boundary respected");
    assert!(!blocked(&p, "evil.example.org"));
    assert!(!blocked(&p, "example"));
}

#[test]
fn hostname_blocks_only_itself() {
    let p = compile(&[("hostname", "c2.bad.example")]);
    assert!(blocked(&p, "c2.bad.example"));
    assert!(!blocked(&p, "x.c2.bad.example"));
    assert!(!blocked(&p, "bad.example"));
}

#[test]
fn wildcard_blocks_only_subdomains() {
    let p = compile(&[("hostname", "*.wild.example")]);
    assert!(!blocked(&p, "wild.example"));
    assert!(blocked(&p, "a.wild.example"));
}

#[test]
fn case_is_ignored() {
    let p = compile(&[("domain", "Evil.Example")]);
    assert!(blocked(&p, "WWW.EVIL.example"));
    let labels: [&[u8]; 3] = [b"wWw", b"EvIl", b"EXAMPLE"];
    assert!(matches!(
        p.lookup_labels(labels.into_iter()),
        Verdict::Blocked(_)
    ));
}

#[test]
fn url_blocks_its_host_exactly() {
    let p = compile(&[("url", "hxxp://login.phish[.]example/secure")]);
    assert!(blocked(&p, "login.phish.example"));
    assert!(!blocked(&p, "phish.example"));
    let Verdict::Blocked(hit) = p.lookup_str("login.phish.example") else {
        panic!("blocked")
    };
    let prov: Vec<_> = p.provenance_of(hit.set).collect();
    assert_eq!(prov[0].ioc_type, IocType::Url);
    assert_eq!(
        prov[0].value.as_deref(),
        Some("hxxp://login.phish[.]example/secure")
    );
}

#[test]
fn domain_ip_gives_both_triggers() {
    let p = compile(&[("domain|ip", "phish.example|198.51.100.7")]);
    assert!(blocked(&p, "x.phish.example"));
    assert!(p.lookup_ip("198.51.100.7".parse().expect("ip")).is_some());
    assert!(p.lookup_ip("198.51.100.8".parse().expect("ip")).is_none());
}

#[test]
fn ip_triggers_match_addresses_and_networks() {
    let p = compile(&[
        ("ip-dst", "203.0.113.5"),
        ("ip-src", "192.0.2.0/24"),
        ("ip-dst", "2001:db8::1"),
    ]);
    let ip = |s: &str| p.lookup_ip(s.parse::<IpAddr>().expect("ip")).is_some();
    assert!(ip("203.0.113.5"));
    assert!(!ip("203.0.113.6"));
    assert!(ip("192.0.2.200"));
    assert!(ip("2001:db8::1"));
    assert!(
        ip("::ffff:203.0.113.5"),
        "v4-mapped v6 matches the v4 trigger"
    );
    assert!(!ip("2001:db8::2"));
}

#[test]
fn not_to_ids_deleted_and_other_types_are_skipped_and_counted() {
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    let mut r = IocRecord::plain("domain", "quiet.example");
    r.to_ids = false;
    c.add(0, &r);
    let mut r = IocRecord::plain("domain", "gone.example");
    r.deleted = true;
    c.add(0, &r);
    c.add(
        0,
        &IocRecord::plain("md5", "d41d8cd98f00b204e9800998ecf8427e"),
    );
    c.add(0, &IocRecord::plain("domain", "bad..example"));
    c.add(0, &IocRecord::plain("domain", "com"));
    c.add(0, &IocRecord::plain("ip-dst", "10.0.0.1"));
    let p = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
    assert!(!blocked(&p, "quiet.example"));
    assert!(!blocked(&p, "gone.example"));
    assert!(
        !blocked(&p, "anything.com"),
        "a public suffix is never blocked"
    );
    assert!(p.lookup_ip("10.0.0.1".parse().expect("ip")).is_none());
    let r = &p.meta().reports[0];
    assert_eq!(r.records, 6);
    assert_eq!(r.not_to_ids, 1);
    assert_eq!(r.deleted, 1);
    assert_eq!(r.skipped_types.get("md5"), Some(&1));
    assert_eq!(r.invalid.get("empty-label"), Some(&1));
    assert_eq!(r.refused_public_suffix, 1);
    assert_eq!(r.refused_address, 1);
    assert_eq!(r.names, 0);
    assert_eq!(p.meta().refusals.len(), 2);
}

#[test]
fn allowlist_wins() {
    let p = compile_with(
        &[
            ("domain", "evil.example"),
            ("hostname", "mail.google.com"),
            ("domain", "hospital.example"),
        ],
        &[
            ("safe.evil.example", AllowScope::Subtree),
            ("google.com", AllowScope::Subtree),
            ("hospital.example", AllowScope::Exact),
        ],
    );
    assert!(blocked(&p, "x.evil.example"));
    assert!(matches!(
        p.lookup_str("safe.evil.example"),
        Verdict::Allowed { .. }
    ));
    assert!(matches!(
        p.lookup_str("a.safe.evil.example"),
        Verdict::Allowed { .. }
    ));
    assert!(
        !blocked(&p, "mail.google.com"),
        "covered IOC refused at compile"
    );
    assert!(!blocked(&p, "hospital.example"));
    assert!(
        !blocked(&p, "www.hospital.example"),
        "an exactly allowlisted IOC is dropped whole"
    );
    let r = &p.meta().reports[0];
    assert_eq!(r.refused_allowlist, 2);
    let refused: Vec<_> = p.meta().refusals.iter().map(|r| r.value.as_str()).collect();
    assert!(refused.contains(&"mail.google.com"));
}

#[test]
fn enforcing_feed_beats_log_only_and_first_feed_wins() {
    let mut c = Compiler::new(vec![
        feed("trial", Action::LogOnly),
        feed("zdn", Action::Sinkhole),
        feed("other", Action::Refused),
    ]);
    c.add(0, &IocRecord::plain("domain", "both.example"));
    c.add(1, &IocRecord::plain("domain", "both.example"));
    c.add(2, &IocRecord::plain("domain", "both.example"));
    c.add(0, &IocRecord::plain("domain", "trial.example"));
    let p = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
    let hit = p.lookup_str("both.example").hit().expect("blocked");
    assert_eq!(hit.action, Action::Sinkhole);
    assert_eq!(hit.feed, 1);
    assert_eq!(p.provenance_of(hit.set).count(), 3, "all feeds are named");
    assert_eq!(
        p.lookup_str("trial.example").hit().map(|h| h.action),
        Some(Action::LogOnly)
    );
}

#[test]
fn most_specific_listed_name_wins() {
    let mut c = Compiler::new(vec![feed("a", Action::Nxdomain), feed("b", Action::Nodata)]);
    c.add(0, &IocRecord::plain("domain", "evil.example"));
    c.add(1, &IocRecord::plain("hostname", "deep.evil.example"));
    let p = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
    let h = p.lookup_str("deep.evil.example").hit().expect("blocked");
    assert_eq!((h.action, h.exact), (Action::Nodata, true));
    let h = p.lookup_str("x.deep.evil.example").hit().expect("blocked");
    assert_eq!(
        (h.action, h.exact, h.matched_len),
        (Action::Nxdomain, false, 12)
    );
    assert_eq!(
        matched_suffix("x.deep.evil.example.", h.matched_len),
        "evil.example"
    );
}

#[test]
fn damaged_artifacts_are_refused() {
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    c.add(0, &IocRecord::plain("domain", "evil.example"));
    let bytes = c.finish().expect("compiles");
    assert!(Policy::from_bytes(bytes.clone()).is_ok());
    for cut in [0, 10, 127, 128, bytes.len() / 2, bytes.len() - 1] {
        let err = Policy::from_bytes(bytes[..cut].to_vec())
            .err()
            .expect("truncated file refused");
        assert!(
            matches!(err, ArtifactError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
    }
    for at in [0, 9, 20, 60, 130, bytes.len() - 3] {
        let mut b = bytes.clone();
        b[at] ^= 0x55;
        assert!(Policy::from_bytes(b).is_err(), "flipped byte {at} refused");
    }
}

#[test]
fn artifact_round_trips_through_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(artifact::FILE_NAME);
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    c.add(0, &IocRecord::plain("domain", "evil.example"));
    c.set_previous_serial(u64::MAX / 4);
    artifact::write_atomic(&path, &c.finish().expect("compiles")).expect("writes");
    let p = Policy::load(&path).expect("loads");
    assert!(blocked(&p, "evil.example"));
    assert_eq!(p.serial(), u64::MAX / 4 + 1);
    assert_eq!(artifact::read_serial(&path), Some(u64::MAX / 4 + 1));
}

/// The naive reference: a set of (name, exact-only) and a parent walk.
fn naive(list: &[(String, bool)], q: &str) -> bool {
    let exact: HashSet<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    let subtree: HashSet<&str> = list
        .iter()
        .filter(|(_, e)| !e)
        .map(|(n, _)| n.as_str())
        .collect();
    if exact.contains(q) {
        return true;
    }
    let mut rest = q;
    while let Some((_, parent)) = rest.split_once('.') {
        if subtree.contains(parent) {
            return true;
        }
        rest = parent;
    }
    false
}

fn label() -> impl Strategy<Value = String> {
    // A small alphabet so that random names collide with listed ones.
    "[abc]{1,3}"
}

fn dname() -> impl Strategy<Value = String> {
    // Under a TLD that is not in the Public Suffix List, so the guard
    // against blocking public suffixes does not come into play.
    prop::collection::vec(label(), 1..4).prop_map(|v| format!("{}.zz", v.join(".")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn fst_matcher_agrees_with_naive(list in prop::collection::vec((dname(), any::<bool>()), 0..40),
                                     queries in prop::collection::vec(dname(), 1..40)) {
        let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
        for (n, exact) in &list {
            c.add(0, &IocRecord::plain(if *exact { "hostname" } else { "domain" }, n));
        }
        let p = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
        for q in queries.iter().chain(list.iter().map(|(n, _)| n)) {
            prop_assert_eq!(blocked(&p, q), naive(&list, q), "query {}", q);
            let sub = format!("x.{q}");
            prop_assert_eq!(blocked(&p, &sub), naive(&list, &sub), "query {}", sub);
        }
    }
}

#[test]
fn name_filter_never_hides_a_listed_name() {
    // Enough names for a filter of many blocks; every listed name and every
    // name under one must still be found, and unlisted ones pass.
    let names: Vec<String> = (0..5_000).map(|i| format!("n{i}.zz")).collect();
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    for n in &names {
        c.add(0, &IocRecord::plain("domain", n));
    }
    let p = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
    for n in &names {
        assert!(blocked(&p, n), "{n}");
        assert!(blocked(&p, &format!("a.b.{n}")), "under {n}");
    }
    let passed = (0..5_000)
        .filter(|i| p.lookup_str(&format!("m{i}.zz")) == Verdict::Pass)
        .count();
    assert_eq!(passed, 5_000);
}

#[test]
fn the_serial_changes_only_when_the_answers_do() {
    let build = |names: &[&str], previous: Option<&Policy>| {
        let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
        if let Some(p) = previous {
            c.set_previous(p.serial(), p.content_hash());
        }
        for n in names {
            c.add(0, &IocRecord::plain("domain", n));
        }
        Policy::from_bytes(c.finish().expect("compiles")).expect("loads")
    };
    let first = build(&["evil.example"], None);
    let same = build(&["evil.example"], Some(&first));
    assert_eq!(same.serial(), first.serial(), "same list, same serial");
    let changed = build(&["evil.example", "bad.example"], Some(&same));
    assert!(changed.serial() > same.serial());
    let mut c = Compiler::new(vec![feed("zdn", Action::Nodata)]);
    c.set_previous(changed.serial(), changed.content_hash());
    c.add(0, &IocRecord::plain("domain", "evil.example"));
    c.add(0, &IocRecord::plain("domain", "bad.example"));
    let other_action = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
    assert!(
        other_action.serial() > changed.serial(),
        "a new action is a change"
    );
}

/// Fuzz finding (session 2, `fuzz/artifact`): an artifact whose index
/// footer points the root at damaged bytes, with a valid file checksum.
/// Load used to ask the `fst` crate for the root node, which decoded it
/// and panicked. Now it must load or refuse, and a loaded policy must
/// answer and list its names without panicking.
#[test]
fn a_damaged_index_root_neither_panics_at_load_nor_after() {
    let mut bytes = include_bytes!("../../tests/fixtures/fuzz/artifact-root-node.bin").to_vec();
    // The fuzz target writes a correct checksum into every input.
    bytes[16..24].fill(0);
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
    bytes[16..24].copy_from_slice(&sum.to_le_bytes());
    if let Ok(p) = Policy::from_bytes(bytes) {
        for name in ["evil.example", "a.b.c.example", "x", "com"] {
            let _ = p.lookup_str(name);
        }
        let mut e = p.entries();
        let mut n = 0;
        while e.next().is_some() && n < 100_000 {
            n += 1;
        }
    }
}

#[test]
fn a_feed_restriction_keeps_only_the_kept_feeds_hits() {
    let mut c = Compiler::new(vec![
        feed("first", Action::Nxdomain),
        feed("second", Action::Sinkhole),
        feed("trial", Action::LogOnly),
    ]);
    // Both feeds list both.example; only the first lists one.example
    // (and with its subdomains, parent.example); the second lists
    // deep.parent.example.
    c.add(0, &IocRecord::plain("domain", "both.example"));
    c.add(1, &IocRecord::plain("domain", "both.example"));
    c.add(0, &IocRecord::plain("domain", "one.example"));
    c.add(0, &IocRecord::plain("domain", "parent.example"));
    c.add(1, &IocRecord::plain("domain", "deep.parent.example"));
    c.add(2, &IocRecord::plain("domain", "trial.example"));
    c.add(1, &IocRecord::plain("ip-dst", "198.51.100.0/24"));
    c.add(0, &IocRecord::plain("ip-dst", "198.51.0.0/16"));
    let p = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
    let labels = |n: &'static str| n.split('.').map(str::as_bytes);
    let only = |id: FeedId| move |f: FeedId| f == id;
    // A name two feeds list is blocked for a group that has either one,
    // with the kept feed's action.
    let hit = p
        .lookup_labels_where(labels("www.both.example"), only(1))
        .hit()
        .expect("blocked");
    assert_eq!((hit.feed, hit.action), (1, Action::Sinkhole));
    let hit = p
        .lookup_labels_where(labels("www.both.example"), only(0))
        .hit()
        .expect("blocked");
    assert_eq!((hit.feed, hit.action), (0, Action::Nxdomain));
    // Listed by another feed only: passes.
    assert_eq!(
        p.lookup_labels_where(labels("one.example"), only(1)),
        Verdict::Pass
    );
    // The most specific listing of a kept feed wins, a parent included.
    let hit = p
        .lookup_labels_where(labels("x.deep.parent.example"), only(0))
        .hit()
        .expect("parent");
    assert_eq!(
        (hit.feed, hit.matched_len),
        (0, "parent.example".len() as u8)
    );
    let hit = p
        .lookup_labels_where(labels("x.deep.parent.example"), |_| true)
        .hit()
        .expect("deep");
    assert_eq!(hit.feed, 1);
    assert_eq!(
        p.lookup_labels_where(labels("trial.example"), only(0)),
        Verdict::Pass
    );
    // Addresses: the most specific network of a kept feed.
    let ip: IpAddr = "198.51.100.7".parse().expect("ip");
    assert_eq!(p.lookup_ip_where(ip, only(1)).map(|h| h.feed), Some(1));
    assert_eq!(p.lookup_ip_where(ip, only(0)).map(|h| h.feed), Some(0));
    assert_eq!(p.lookup_ip_where(ip, only(2)), None);
    assert_eq!(p.lookup_ip(ip), p.lookup_ip_where(ip, |_| true));
}

#[test]
fn a_protected_name_is_never_blocked_and_its_iocs_are_refused() {
    let mut c = Compiler::new(vec![feed("zdn", Action::Nxdomain)]);
    let src = c.allow_source(AllowSource {
        kind: "protected".into(),
        path: "clinical.txt".into(),
        name: None,
    });
    c.protect(src, "ehr.hospital.example").expect("protect");
    assert!(c.protect(src, "nl").is_err(), "a public suffix");
    for (t, v) in [
        ("hostname", "ehr.hospital.example"),
        ("domain", "api.ehr.hospital.example"),
        ("domain", "hospital.example"),
        ("domain", "evil.example"),
    ] {
        c.add(0, &IocRecord::plain(t, v));
    }
    let p = Policy::from_bytes(c.finish().expect("compile")).expect("load");
    assert!(!blocked(&p, "ehr.hospital.example"));
    assert!(!blocked(&p, "x.api.ehr.hospital.example"));
    // The parent IOC stays, with the protected subtree carved out.
    assert!(blocked(&p, "mail.hospital.example"));
    assert!(blocked(&p, "evil.example"));
    let refused: Vec<(&str, &str)> = p
        .protected_refusals()
        .map(|(f, r)| (f, r.value.as_str()))
        .collect();
    assert_eq!(
        refused,
        vec![
            ("zdn", "ehr.hospital.example"),
            ("zdn", "api.ehr.hospital.example")
        ]
    );
    assert_eq!(p.protected_refusal_counts(), vec![("zdn", 2)]);
    assert_eq!(p.meta().reports[0].names, 2);
}
