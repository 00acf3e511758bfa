//! `schild serve` over real sockets: recursion through a fake hierarchy on
//! loopback, every block action, the answer-side checks, ACL, TCP,
//! truncation, reload under load, metrics, and forward mode.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::dns::{self, addresses, ede, query, soa_owner, udp};
use crate::harness::{Schild, Setup, wait_until};
use crate::hierarchy;

const FEEDS: &str = r#"
[[feed]]
name = "ioc"
type = "domains"
location = "ioc.txt"

[[feed]]
name = "zdn-rpz"
type = "rpz"
location = "zdn.rpz"

[[feed]]
name = "trial-nodata"
type = "domains"
location = "nodata.txt"
action = "nodata"

[[feed]]
name = "trial-refused"
type = "domains"
location = "refused.txt"
action = "refused"

[[feed]]
name = "trial-drop"
type = "domains"
location = "drop.txt"
action = "drop"

[[feed]]
name = "trial-sinkhole"
type = "domains"
location = "sinkhole.txt"
action = "sinkhole"

[[feed]]
name = "trial-log"
type = "domains"
location = "log.txt"
action = "log-only"
"#;

const FILES: &[(&str, &str)] = &[
    (
        "ioc.txt",
        "# domain indicators: the name and its subdomains\nevil.example.test\ntracker.cdn.test\nshady.example.test\n",
    ),
    (
        "zdn.rpz",
        "$ORIGIN zdn.rpz.\n@ 300 IN SOA ns. hostmaster. 1 3600 600 86400 300\n\
         exact.example.test CNAME .\n32.66.113.0.203.rpz-ip CNAME .\n",
    ),
    ("nodata.txt", "nd.example.test\n"),
    ("refused.txt", "rf.example.test\n"),
    ("drop.txt", "dr.example.test\n"),
    ("sinkhole.txt", "sk.example.test\n"),
    ("log.txt", "logged.example.test\n"),
    ("allow.txt", "ok.shady.example.test\n"),
];

fn resolver_section() -> String {
    format!("{}dnssec = false\n", hierarchy::get().recursive_section())
}

fn config(server: &str) -> String {
    format!(
        "[server]\n{server}\n{}\n[policy]\nblock_ttl_secs = 120\nsinkhole_ipv4 = [\"0.0.0.0\"]\nsinkhole_ipv6 = [\"::\"]\n\n[allowlist]\nfiles = [\"allow.txt\"]\n{FEEDS}",
        resolver_section()
    )
}

fn schild() -> Schild {
    Schild::start(&config(""), FILES)
}

fn ask(s: &Schild, name: &str, qtype: RecordType) -> Message {
    udp(s.dns, &query(name, qtype))
}

fn assert_blocked_nxdomain(m: &Message, feed: &str, listed: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
    assert!(m.answers.is_empty());
    let (code, text) = ede(m).expect("an Extended DNS Error");
    assert_eq!(code, 15, "EDE Blocked");
    assert!(text.contains(&format!("feed {feed}")), "{text}");
    assert!(text.contains(listed), "{text}");
}

#[test]
fn resolves_through_the_hierarchy() {
    let s = schild();
    let m = ask(&s, "www.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.recursion_available);
    assert_eq!(addresses(&m), ["192.0.2.80"]);
    assert!(ede(&m).is_none());
    let m = ask(&s, "www.example.test.", RecordType::AAAA);
    assert_eq!(addresses(&m), ["2001:db8::80"]);
    // The second time from the cache, with the same answer.
    let m = ask(&s, "www.example.test.", RecordType::A);
    assert_eq!(addresses(&m), ["192.0.2.80"]);
    let (_, metrics) = s.http("GET", "/metrics");
    assert!(metrics.contains("schild_cache_hits_total 1"), "{metrics}");
}

#[test]
fn cname_chains_are_followed() {
    let s = schild();
    let m = ask(&s, "chain1.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let cnames: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(cnames, ["chain2.example.test.", "www.example.test."]);
    assert_eq!(addresses(&m), ["192.0.2.80"]);
}

#[test]
fn nxdomain_and_nodata_pass_through() {
    let s = schild();
    let m = ask(&s, "nothing-here.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_owner(&m).as_deref(), Some("example.test."));
    assert!(ede(&m).is_none(), "not a block");
    let m = ask(&s, "v4only.example.test.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(soa_owner(&m).as_deref(), Some("example.test."));
}

#[test]
fn every_action() {
    let s = schild();
    // nxdomain (the default), with an SOA at the listed domain.
    let m = ask(&s, "evil.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "ioc", "evil.example.test");
    assert_eq!(soa_owner(&m).as_deref(), Some("evil.example.test."));
    let soa = &m.authorities[0];
    assert_eq!(soa.ttl, 120, "block_ttl_secs");
    // nodata
    let m = ask(&s, "nd.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(soa_owner(&m).as_deref(), Some("nd.example.test."));
    assert_eq!(ede(&m).map(|e| e.0), Some(15));
    // refused
    let m = ask(&s, "rf.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(ede(&m).expect("EDE").1.contains("trial-refused"));
    // drop: no answer at all
    let q = query("dr.example.test.", RecordType::A);
    assert!(dns::udp_timeout(s.dns, &q, Duration::from_millis(1500)).is_none());
    // sinkhole: A and AAAA get the configured addresses, others NODATA
    let m = ask(&s, "sk.example.test.", RecordType::A);
    assert_eq!(addresses(&m), ["0.0.0.0"]);
    assert_eq!(m.answers[0].ttl, 120);
    assert!(ede(&m).expect("EDE").1.contains("trial-sinkhole"));
    let m = ask(&s, "sk.example.test.", RecordType::AAAA);
    assert_eq!(addresses(&m), ["::"]);
    let m = ask(&s, "sk.example.test.", RecordType::MX);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(soa_owner(&m).is_some());
    // log-only: answered normally, counted
    let m = ask(&s, "logged.example.test.", RecordType::A);
    assert_eq!(addresses(&m), ["192.0.2.90"]);
    assert!(ede(&m).is_none());
    let (_, metrics) = s.http("GET", "/metrics");
    for (feed, action) in [
        ("ioc", "nxdomain"),
        ("trial-nodata", "nodata"),
        ("trial-refused", "refused"),
        ("trial-drop", "drop"),
        ("trial-log", "log-only"),
    ] {
        let line = format!("schild_blocked_answers_total{{action=\"{action}\",feed=\"{feed}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(
        metrics.contains(
            "schild_blocked_answers_total{action=\"sinkhole\",feed=\"trial-sinkhole\"} 3"
        )
    );
    assert!(metrics.contains("schild_responses_total{rcode=\"dropped\"} 1"));
    // The hit is in the local sightings record with its feed, and the
    // client address is pseudonymised (the default).
    let line = crate::harness::poll(Duration::from_secs(5), || {
        std::fs::read_to_string(s.path("state/sightings.jsonl"))
            .ok()?
            .lines()
            .find(|l| l.contains("\"rf.example.test\""))
            .map(str::to_string)
    })
    .expect("hit recorded in state/sightings.jsonl");
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["feed"], "trial-refused", "{line}");
    assert_eq!(v["action"], "refused", "{line}");
    assert_eq!(v["ioc"], "rf.example.test", "{line}");
    assert!(
        v["client"].as_str().is_some_and(|c| c.starts_with("p-")),
        "{line}"
    );
    assert!(!line.contains("127.0.0.1"), "{line}");
}

#[test]
fn domain_indicators_cover_subdomains_and_hostnames_only_themselves() {
    let s = schild();
    let m = ask(&s, "a.b.evil.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "ioc", "evil.example.test");
    // The SOA is at the listed domain: an ancestor of the query name.
    assert_eq!(soa_owner(&m).as_deref(), Some("evil.example.test."));
    let m = ask(&s, "exact.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "zdn-rpz", "exact.example.test");
    let m = ask(&s, "sub.exact.example.test.", RecordType::A);
    assert_eq!(
        addresses(&m),
        ["192.0.2.93"],
        "a hostname indicator is exact"
    );
}

#[test]
fn query_case_is_kept() {
    let s = schild();
    let m = ask(&s, "a.EvIl.Example.TEST.", RecordType::A);
    assert_blocked_nxdomain(&m, "ioc", "evil.example.test");
    assert_eq!(m.queries[0].name().to_string(), "a.EvIl.Example.TEST.");
    assert_eq!(soa_owner(&m).as_deref(), Some("EvIl.Example.TEST."));
    let m = ask(&s, "WWW.Example.Test.", RecordType::A);
    assert_eq!(m.queries[0].name().to_string(), "WWW.Example.Test.");
    assert_eq!(m.answers[0].name.to_string(), "WWW.Example.Test.");
    assert_eq!(addresses(&m), ["192.0.2.80"]);
}

#[test]
fn answers_are_checked_cname_targets_and_addresses() {
    let s = schild();
    // cloaked.example.test is not listed, its CNAME target is.
    let m = ask(&s, "cloaked.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "ioc", "tracker.cdn.test");
    assert!(ede(&m).expect("EDE").1.contains("CNAME"));
    assert_eq!(soa_owner(&m).as_deref(), Some("cloaked.example.test."));
    // badip.example.test resolves to a listed address.
    let m = ask(&s, "badip.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "zdn-rpz", "203.0.113.66");
}

#[test]
fn the_allowlist_beats_the_blocklist() {
    let s = schild();
    let m = ask(&s, "ok.shady.example.test.", RecordType::A);
    assert_eq!(addresses(&m), ["192.0.2.92"]);
    let m = ask(&s, "bad.shady.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "ioc", "shady.example.test");
    let (_, metrics) = s.http("GET", "/metrics");
    assert!(
        metrics.contains("schild_allowlist_overrides_total 1"),
        "{metrics}"
    );
}

#[test]
fn clients_outside_server_allow_are_refused() {
    let s = Schild::start(&config("allow = [\"10.0.0.0/8\"]"), FILES);
    let m = ask(&s, "www.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    // Over TCP the connection is closed at accept, before anything is read.
    assert!(
        dns::tcp_closed_unanswered(s.dns, &query("www.example.test.", RecordType::A)),
        "closed without an answer"
    );
    let (_, metrics) = s.http("GET", "/metrics");
    assert!(metrics.contains("schild_acl_refused_total 2"), "{metrics}");
}

/// The UDP listener whose address the log gives as starting with `prefix`.
pub fn udp_listener(log: &str, prefix: &str) -> Option<SocketAddr> {
    let marker = "listening proto=udp addr=";
    log.match_indices(marker).find_map(|(at, _)| {
        let rest = &log[at + marker.len()..];
        if !rest.starts_with(prefix) {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[test]
fn ipv6_listeners_answer_and_keep_the_acl() {
    // An IPv6 listener next to an IPv4 one: both serve, blocks included.
    let s = Schild::start(
        &config("listen = [\"[::1]:0\", \"127.0.0.1:0\"]\nallow = [\"::1/128\", \"127.0.0.0/8\"]"),
        FILES,
    );
    let log = s.log();
    let v6 = udp_listener(&log, "[::1]:").expect("a UDP listener on [::1] in the log");
    assert!(v6.is_ipv6());
    let m = udp(v6, &query("www.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&m), ["192.0.2.80"]);
    assert_blocked_nxdomain(
        &udp(v6, &query("www.evil.example.test.", RecordType::A)),
        "ioc",
        "evil.example.test",
    );
    let m = dns::tcp(v6, &[query("evil.example.test.", RecordType::AAAA)]);
    assert_blocked_nxdomain(&m[0], "ioc", "evil.example.test");
    // The IPv4 listener of the same server still answers.
    let v4 = udp_listener(&log, "127.0.0.1:").expect("a UDP listener on 127.0.0.1 in the log");
    let m = udp(v4, &query("www.example.test.", RecordType::A));
    assert_eq!(addresses(&m), ["192.0.2.80"]);
    drop(s);

    // An IPv6 client outside `server.allow` is refused over UDP, and over
    // TCP closed at accept without an answer.
    let s = Schild::start(
        &config("listen = [\"[::1]:0\"]\nallow = [\"127.0.0.0/8\"]"),
        FILES,
    );
    assert!(s.dns.is_ipv6(), "{}", s.log());
    let m = udp(s.dns, &query("www.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(
        dns::tcp_closed_unanswered(s.dns, &query("www.example.test.", RecordType::A)),
        "closed without an answer"
    );
}

#[test]
fn tcp_answers_pipelined_queries() {
    let s = schild();
    let names = [
        "www.example.test.",
        "evil.example.test.",
        "chain1.example.test.",
        "v4only.example.test.",
        "sk.example.test.",
        "alias.example.test.",
    ];
    let queries: Vec<Message> = names.iter().map(|n| query(n, RecordType::A)).collect();
    let answers = dns::tcp(s.dns, &queries);
    for q in &queries {
        let a = answers
            .iter()
            .find(|a| a.metadata.id == q.metadata.id)
            .expect("an answer for every query");
        let name = q.queries[0].name().to_string();
        match name.as_str() {
            "evil.example.test." => assert_eq!(a.metadata.response_code, ResponseCode::NXDomain),
            "sk.example.test." => assert_eq!(addresses(a), ["0.0.0.0"]),
            "v4only.example.test." => assert_eq!(addresses(a), ["192.0.2.81"]),
            _ => assert_eq!(addresses(a), ["192.0.2.80"], "{name}"),
        }
    }
}

#[test]
fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let s = schild();
    let (m, len) = dns::udp_timeout(
        s.dns,
        &dns::query_no_edns("big.example.test.", RecordType::TXT),
        Duration::from_secs(5),
    )
    .expect("answer");
    assert!(m.metadata.truncation, "TC without EDNS");
    assert!(len <= 512, "{len} octets without EDNS");
    let mut q = query("big.example.test.", RecordType::TXT);
    q.edns.as_mut().expect("edns").set_max_payload(4096);
    let (m, len) = dns::udp_timeout(s.dns, &q, Duration::from_secs(5)).expect("answer");
    assert!(
        m.metadata.truncation,
        "capped at 1232 whatever the client offers"
    );
    assert!(len <= 1232, "{len}");
    assert_eq!(m.edns.as_ref().expect("OPT").max_payload(), 1232);
    let m = dns::tcp(s.dns, &[query("big.example.test.", RecordType::TXT)]);
    assert!(!m[0].metadata.truncation);
    assert_eq!(m[0].answers.len(), 14);
}

#[test]
fn protocol_errors() {
    let s = schild();
    // EDNS version 1: BADVERS.
    let mut q = query("www.example.test.", RecordType::A);
    q.edns.as_mut().expect("edns").set_version(1);
    let m = udp(s.dns, &q);
    // 16 is BADVERS in answers to queries (hickory decodes it as BADSIG,
    // which shares the number).
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert!(
        m.edns.is_some(),
        "BADVERS needs an OPT to carry the upper rcode bits"
    );
    // Another opcode: NOTIMP.
    let mut q = query("www.example.test.", RecordType::A);
    q.metadata.op_code = OpCode::Status;
    assert_eq!(udp(s.dns, &q).metadata.response_code, ResponseCode::NotImp);
    // Two questions: FORMERR.
    let mut q = query("www.example.test.", RecordType::A);
    q.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("alias.example.test.").expect("name"),
        RecordType::A,
    ));
    assert_eq!(udp(s.dns, &q).metadata.response_code, ResponseCode::FormErr);
    // Garbage after a valid header: FORMERR over TCP too.
    let mut q = query("www.example.test.", RecordType::A)
        .to_vec()
        .expect("encode");
    q.truncate(20);
    let b = dns::udp_raw(s.dns, &q, Duration::from_secs(5)).expect("answer");
    let m = Message::from_vec(&b).expect("decode");
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    // Zone transfers are not for clients.
    let m = ask(&s, "example.test.", RecordType::AXFR);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn reload_under_load_loses_no_query() {
    let s = schild();
    let server = s.dns;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..2 {
        let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
        clients.push(std::thread::spawn(move || {
            let names = [
                "www.example.test.",
                "evil.example.test.",
                "alias.example.test.",
            ];
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut i = c;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && i < 20_000 {
                let name = names[i % names.len()];
                i += 1;
                let q = query(name, RecordType::A);
                match dns::udp_timeout(server, &q, Duration::from_secs(3)) {
                    None => failures
                        .lock()
                        .expect("lock")
                        .push(format!("{name}: timeout")),
                    Some((m, _)) => {
                        let ok = match name {
                            "evil.example.test." => {
                                m.metadata.response_code == ResponseCode::NXDomain
                                    && ede(&m).is_some()
                            }
                            _ => addresses(&m) == ["192.0.2.80"],
                        };
                        if !ok {
                            failures
                                .lock()
                                .expect("lock")
                                .push(format!("{name}: {:?}", m.metadata.response_code));
                        }
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(200));
        if round == 4 {
            let mut ioc = std::fs::read_to_string(s.path("ioc.txt")).expect("feed");
            ioc.push_str("late.example.test\n");
            std::fs::write(s.path("ioc.txt"), ioc).expect("feed");
        }
        let (status, body) = s.http("POST", "/reload");
        assert_eq!(status, 200, "{body}");
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let failures = failures.lock().expect("lock");
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 100, "only {sent} queries sent");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let m = ask(&s, "late.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "ioc", "late.example.test");
    let (_, metrics) = s.http("GET", "/metrics");
    // One at start, five from /reload.
    assert!(metrics.contains("schild_reloads_total 6"), "{metrics}");
}

#[test]
fn metrics_are_valid_and_cover_the_basics() {
    let s = schild();
    ask(&s, "www.example.test.", RecordType::A);
    ask(&s, "evil.example.test.", RecordType::AAAA);
    dns::tcp(s.dns, &[query("www.example.test.", RecordType::MX)]);
    let (status, text) = s.http("GET", "/metrics");
    assert_eq!(status, 200);
    for needle in [
        "schild_build_info{version=",
        "schild_queries_total{qtype=\"A\",transport=\"udp\"} 1",
        "schild_queries_total{qtype=\"AAAA\",transport=\"udp\"} 1",
        "schild_queries_total{qtype=\"MX\",transport=\"tcp\"} 1",
        "schild_responses_total{rcode=\"nxdomain\"} 1",
        "schild_blocked_answers_total{action=\"nxdomain\",feed=\"ioc\"} 1",
        "schild_cache_misses_total 2",
        "schild_cache_entries",
        "schild_upstream_duration_seconds_bucket",
        "schild_upstream_errors_total{kind=\"timeout\"} 0",
        "schild_policy_entries{feed=\"ioc\",kind=\"names\"} 3",
        "schild_policy_entries{feed=\"zdn-rpz\",kind=\"ips\"} 1",
        "schild_policy_age_seconds",
        "schild_feed_last_success_timestamp_seconds{feed=\"ioc\"}",
        "schild_refresh_failures_total 0",
        "schild_reloads_total 1",
        "schild_policy_loaded 1",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    // No query name or client address ever becomes a label value.
    assert!(!text.contains("example.test"));
    assert!(!text.contains("127.0.0.1"));
    promtool_check(&text);
    assert_eq!(s.http("GET", "/health").0, 200);
    assert_eq!(s.http("GET", "/ready").0, 200);
}

pub fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is needed under CI: {e}"
            );
            eprintln!("promtool not installed; skipping the metrics lint");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn forward_mode_uses_the_upstream() {
    let h = hierarchy::get();
    let up: SocketAddr = h.example_server();
    let cfg = format!(
        "[resolver]\nmode = \"forward\"\nupstreams = [\"{up}\"]\ndnssec = false\n\n[allowlist]\nfiles = [\"allow.txt\"]\n{}",
        &FEEDS[..FEEDS
            .find("[[feed]]\nname = \"trial-nodata\"")
            .expect("feeds")]
    );
    let s = Schild::start(&cfg, FILES);
    let m = ask(&s, "www.example.test.", RecordType::A);
    assert_eq!(addresses(&m), ["192.0.2.80"]);
    let m = ask(&s, "alias.example.test.", RecordType::A);
    assert_eq!(addresses(&m), ["192.0.2.80"]);
    let m = ask(&s, "nothing-here.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(&s, "evil.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "ioc", "evil.example.test");
    let m = ask(&s, "cloaked.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "ioc", "tracker.cdn.test");
    let m = ask(&s, "badip.example.test.", RecordType::A);
    assert_blocked_nxdomain(&m, "zdn-rpz", "203.0.113.66");
}

#[test]
fn dnssec_validation_is_on_by_default() {
    // The fake hierarchy is unsigned, so the built-in root trust anchors
    // cannot be chained to it: a validating resolver must answer SERVFAIL.
    let s = Schild::start(&hierarchy::get().recursive_section(), &[]);
    let m = ask(&s, "www.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    assert!(m.answers.is_empty());
}

#[test]
fn fail_closed_refuses_to_start_without_a_policy() {
    // The allowlist file is missing: the compile fails, no artifact.
    let cfg = format!(
        "{}\n[policy]\nfail_closed = true\n\n[allowlist]\nfiles = [\"missing.txt\"]\n",
        resolver_section()
    );
    let r = Schild::start_with(Setup {
        config: &cfg,
        files: &[],
        wait_ready: false,
    });
    let Err((status, log)) = r else {
        panic!("schild started without a policy");
    };
    assert_eq!(status.and_then(|s| s.code()), Some(69), "{log}");
    assert!(log.contains("fail_closed"), "{log}");
}

#[test]
fn without_a_policy_schild_serves_unfiltered_and_says_so() {
    let cfg = format!(
        "{}\n[allowlist]\nfiles = [\"missing.txt\"]\n{}",
        resolver_section(),
        &FEEDS[..FEEDS.find("[[feed]]\nname = \"zdn-rpz\"").expect("feeds")]
    );
    let s = Schild::start_with(Setup {
        config: &cfg,
        files: FILES,
        wait_ready: false,
    })
    .unwrap_or_else(|(_, log)| panic!("{log}"));
    let m = ask(&s, "evil.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        ede(&m).is_none(),
        "not filtered: the upstream's own NXDOMAIN"
    );
    assert_eq!(
        addresses(&ask(&s, "www.example.test.", RecordType::A)),
        ["192.0.2.80"]
    );
    let (status, body) = s.http("GET", "/ready");
    assert_eq!(status, 503);
    assert!(body.contains("NOT filtered"), "{body}");
    let (_, metrics) = s.http("GET", "/metrics");
    assert!(metrics.contains("schild_policy_loaded 0"), "{metrics}");
    assert!(s.log().contains("NO POLICY LOADED"));
    // Once the list can be compiled, a reload brings filtering back.
    crate::harness::write(s.dir.path(), "missing.txt", "");
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");
    assert_blocked_nxdomain(
        &ask(&s, "evil.example.test.", RecordType::A),
        "ioc",
        "evil.example.test",
    );
    assert_eq!(s.http("GET", "/ready").0, 200);
}

#[test]
fn sigterm_stops_cleanly() {
    let s = schild();
    assert_eq!(
        addresses(&ask(&s, "www.example.test.", RecordType::A)),
        ["192.0.2.80"]
    );
    let status = s.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn stale_answers_are_served_when_the_upstream_fails() {
    let mut up = hierarchy::Upstream::start();
    let cfg = format!(
        "[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = false\nmax_ttl_secs = 1\ntimeout_secs = 1\n",
        up.addr
    );
    let s = Schild::start(&cfg, &[]);
    assert_eq!(
        addresses(&ask(&s, "www.example.test.", RecordType::A)),
        ["192.0.2.80"]
    );
    up.stop();
    // Once the cached answer (max_ttl_secs = 1) has expired, the next
    // query finds the upstream dead and gets the stale copy.
    let m = crate::harness::wait_until("a stale answer", Duration::from_secs(10), || {
        let m = udp(s.dns, &query("www.example.test.", RecordType::A));
        ede(&m).is_some().then_some(m)
    });
    assert_eq!(addresses(&m), ["192.0.2.80"], "served stale");
    assert_eq!(m.answers[0].ttl, 30);
    assert_eq!(ede(&m).map(|e| e.0), Some(3), "EDE Stale Answer");
    // Never seen before: nothing to serve, SERVFAIL.
    let m = udp(s.dns, &query("alias.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let (_, metrics) = s.http("GET", "/metrics");
    assert!(
        metrics.contains("schild_cache_stale_answers_total 1"),
        "{metrics}"
    );
}

#[test]
fn tcp_connections_are_capped_and_idle_ones_closed() {
    use std::io::{Read, Write};
    let s = Schild::start(&config("tcp_max_connections = 1\ntcp_idle_secs = 1"), FILES);
    let ask_on = |c: &mut std::net::TcpStream| {
        let q = query("www.example.test.", RecordType::A)
            .to_vec()
            .expect("encode");
        c.write_all(&(q.len() as u16).to_be_bytes()).expect("write");
        c.write_all(&q).expect("write");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut len = [0u8; 2];
        c.read_exact(&mut len).expect("answer");
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut msg).expect("answer");
        addresses(&Message::from_vec(&msg).expect("decode"))
    };
    let mut first = std::net::TcpStream::connect(s.dns).expect("connect");
    assert_eq!(ask_on(&mut first), ["192.0.2.80"]);
    // At the cap, a new connection is served and the idle one makes room.
    let mut second = std::net::TcpStream::connect(s.dns).expect("connect");
    assert_eq!(ask_on(&mut second), ["192.0.2.80"]);
    let mut buf = [0u8; 2];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert!(
        matches!(first.read(&mut buf), Ok(0) | Err(_)),
        "the longest idle is closed at the cap"
    );
    // The second is closed once idle for tcp_idle_secs.
    let started = Instant::now();
    assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed when idle"
    );
    let (_, metrics) = s.http("GET", "/metrics");
    assert!(metrics.contains("schild_tcp_evicted_total 1"), "{metrics}");
}

#[test]
fn dns_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=dot.schild.test",
            "-addext",
            "subjectAltName=DNS:dot.schild.test",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match made {
        Ok(st) => assert!(st.success(), "openssl failed"),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "openssl is needed under CI: {e}"
            );
            eprintln!("openssl not installed; skipping the DoT test");
            return;
        }
    }
    let server = format!(
        "tls_listen = [\"127.0.0.1:0\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        cert.display(),
        key.display()
    );
    let s = Schild::start(&config(&server), FILES);
    let log = s.log();
    let marker = "listening proto=tls addr=";
    let at = log.find(marker).expect("tls listener logged") + marker.len();
    let addr: SocketAddr = log[at..]
        .split_whitespace()
        .next()
        .expect("addr")
        .parse()
        .expect("addr");

    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).expect("pem") {
        roots.add(c.expect("cert")).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"dot".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("dot.schild.test").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("tls client");
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut out = Vec::new();
    let queries = [
        query("www.example.test.", RecordType::A),
        query("evil.example.test.", RecordType::A),
    ];
    for q in &queries {
        let b = q.to_vec().expect("encode");
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(&b);
    }
    tls.write_all(&out).expect("write");
    let mut seen = Vec::new();
    for _ in &queries {
        let mut len = [0u8; 2];
        tls.read_exact(&mut len).expect("read");
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        tls.read_exact(&mut msg).expect("read");
        seen.push(Message::from_vec(&msg).expect("decode"));
    }
    let www = seen
        .iter()
        .find(|m| m.metadata.id == queries[0].metadata.id)
        .expect("www");
    assert_eq!(addresses(www), ["192.0.2.80"]);
    let evil = seen
        .iter()
        .find(|m| m.metadata.id == queries[1].metadata.id)
        .expect("evil");
    assert_blocked_nxdomain(evil, "ioc", "evil.example.test");
    let (_, metrics) = s.http("GET", "/metrics");
    assert!(
        metrics.contains("schild_queries_total{qtype=\"A\",transport=\"tls\"} 2"),
        "{metrics}"
    );
}

#[test]
fn sighup_refreshes_the_feeds() {
    let s = schild();
    let m = ask(&s, "late.example.test.", RecordType::A);
    assert_eq!(addresses(&m), ["192.0.2.96"]);
    let mut ioc = std::fs::read_to_string(s.path("ioc.txt")).expect("feed");
    ioc.push_str("late.example.test\n");
    std::fs::write(s.path("ioc.txt"), ioc).expect("feed");
    sighup(&s);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = ask(&s, "late.example.test.", RecordType::A);
        if m.metadata.response_code == ResponseCode::NXDomain {
            assert_blocked_nxdomain(&m, "ioc", "late.example.test");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not refresh:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn sighup(s: &Schild) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// A refresh compiles the configuration schild runs, not a file edited
/// since: the compile process reads the file, sees that it changed, and
/// the refresh compiles the running configuration in the server instead.
/// SIGHUP then applies the edit.
#[test]
fn a_refresh_compiles_the_running_configuration_not_a_file_edited_since() {
    let config = "[resolver]\nmode = \"forward\"\nupstreams = [\"127.0.0.1:9\"]\ndnssec = false\ntimeout_secs = 1\n\n[[feed]]\nname = \"zdn\"\ntype = \"domains\"\nlocation = \"zdn.txt\"\n";
    let s = Schild::start(
        config,
        &[("zdn.txt", "evil.example\n"), ("more.txt", "new.example\n")],
    );
    assert!(
        s.log().contains("compiled in a child process"),
        "{}",
        s.log()
    );
    edit_config(&s, |t| {
        t + "\n[[feed]]\nname = \"more\"\ntype = \"domains\"\nlocation = \"more.txt\"\n"
    });
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}\n{}", s.log());
    assert!(
        s.log()
            .contains("the configuration file changed since it was read"),
        "{}",
        s.log()
    );
    let m = ask(&s, "new.example.", RecordType::A);
    assert!(
        ede(&m).is_none_or(|(code, _)| code != 15),
        "the edit is not applied before SIGHUP: {m:?}"
    );
    assert_blocked_nxdomain(
        &ask(&s, "evil.example.", RecordType::A),
        "zdn",
        "evil.example",
    );
    sighup(&s);
    let m = wait_until(
        "SIGHUP applies the new feed",
        Duration::from_secs(15),
        || {
            let m = ask(&s, "new.example.", RecordType::A);
            (m.metadata.response_code == ResponseCode::NXDomain).then_some(m)
        },
    );
    assert_blocked_nxdomain(&m, "more", "new.example");
}

/// Edit the running config file as an operator would.
pub fn edit_config(s: &Schild, f: impl FnOnce(String) -> String) {
    let path = s.path("schild.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(&path, f(text)).expect("config");
}

#[test]
fn sighup_rereads_the_configuration_and_keeps_it_when_the_new_one_is_bad() {
    // Forward mode to a test authority; one feed; the whole loopback net allowed.
    let mut first = crate::hierarchy::Upstream::start();
    let second = crate::hierarchy::Upstream::start();
    let config = format!(
        "[server]\nallow = [\"127.0.0.0/8\"]\n\n[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = false\ntimeout_secs = 1\n\n[[feed]]\nname = \"zdn\"\ntype = \"domains\"\nlocation = \"zdn.txt\"\n",
        first.addr
    );
    let s = Schild::start(
        &config,
        &[("zdn.txt", "evil.example\n"), ("more.txt", "new.example\n")],
    );
    let from = |ip: &str| {
        let sock = std::net::UdpSocket::bind(format!("{ip}:0")).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let q = query("www.example.test.", RecordType::A);
        sock.send_to(&q.to_vec().expect("encode"), s.dns)
            .expect("send");
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        Message::from_vec(&buf[..n]).expect("parse")
    };
    assert_eq!(addresses(&from("127.0.0.2")), ["192.0.2.80"]);
    let m = ask(&s, "new.example.", RecordType::A);
    assert!(
        ede(&m).is_none_or(|(code, _)| code != 15),
        "not listed yet: {m:?}"
    );

    // The refreshes so far compiled in a process of their own.
    assert!(
        s.log().contains("compiled in a child process"),
        "{}",
        s.log()
    );
    // A new feed, a narrower ACL, another upstream and a new listen address.
    first.stop();
    edit_config(&s, |t| {
        t.replace("allow = [\"127.0.0.0/8\"]", "allow = [\"127.0.0.1/32\"]")
            .replace(&first.addr.to_string(), &second.addr.to_string())
            .replace("udp_sockets = 2", "udp_sockets = 1")
            + "\n[[feed]]\nname = \"more\"\ntype = \"domains\"\nlocation = \"more.txt\"\n"
    });
    sighup(&s);
    let m = wait_until("the new feed blocks", Duration::from_secs(15), || {
        let m = ask(&s, "new.example.", RecordType::A);
        (m.metadata.response_code == ResponseCode::NXDomain).then_some(m)
    });
    assert_blocked_nxdomain(&m, "more", "new.example");
    assert_blocked_nxdomain(
        &ask(&s, "evil.example.", RecordType::A),
        "zdn",
        "evil.example",
    );
    // The new upstream answers (the old one is gone).
    assert_eq!(
        addresses(&ask(&s, "www.example.test.", RecordType::AAAA)),
        ["2001:db8::80"]
    );
    // 127.0.0.2 is outside the new ACL.
    assert_eq!(
        from("127.0.0.2").metadata.response_code,
        ResponseCode::Refused
    );
    // What needs a restart says so, and the old value runs on.
    let log = s.log();
    assert!(log.contains("configuration reloaded"), "{log}");
    // The running configuration is no longer the file's: the new feed was
    // compiled in the server's process, which has the running one.
    assert!(
        log.contains("compiling in the server's process")
            && log.contains("a SIGHUP kept keys that need a restart"),
        "{log}"
    );
    assert!(
        log.contains("takes effect only after a restart") && log.contains("server.udp_sockets"),
        "{log}"
    );

    // A config that does not validate changes nothing and says why.
    edit_config(&s, |t| {
        t.replace("allow = [\"127.0.0.1/32\"]", "allow = [\"10.1.2.3/8\"]")
    });
    sighup(&s);
    wait_until("the refusal is counted", Duration::from_secs(10), || {
        (s.metric("schild_config_reload_failures_total") == Some(1.0)).then_some(())
    });
    // The log reaches the test through a pipe and a reader thread, so it
    // can trail the counter by a moment.
    wait_until("the refusal is logged", Duration::from_secs(10), || {
        s.log()
            .contains("the running configuration stays")
            .then_some(())
    });
    assert_eq!(
        from("127.0.0.2").metadata.response_code,
        ResponseCode::Refused
    );
    assert_blocked_nxdomain(
        &ask(&s, "new.example.", RecordType::A),
        "more",
        "new.example",
    );
    assert_eq!(
        addresses(&ask(&s, "www.example.test.", RecordType::A)),
        ["192.0.2.80"]
    );
}
