//! Sightings end to end: a blocked query through the real `schild serve`,
//! its local record, and the sighting MISP receives; nothing lost when MISP
//! is down and schild is killed; false positives from `schild allow`.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns;
use crate::harness::{Schild, Setup, wait_until};
use crate::misp_server::{Fault, MispServer};

const SOURCE: &str = "schild:test-hospital";
/// Attribute uuids of `domain` IOCs in the Sednit fixture event.
const MOVIEULTIMATE: (&str, &str) = ("movieultimate.com", "5a3c3045-ab0c-4d38-8efe-459002de0b81");
const METEOST: (&str, &str) = ("meteost.com", "5a3c3045-61dc-495c-ae8a-471e02de0b81");
const FSPORTAL: (&str, &str) = ("fsportal.net", "5a3c3045-eb44-433f-a13a-44b902de0b81");

fn config(misp: &MispServer) -> String {
    format!(
        r#"
[resolver]
mode = "forward"
upstreams = ["127.0.0.1:9"]
dnssec = false
timeout_secs = 1

[[feed]]
name = "zdn"
type = "misp-api"
location = "{url}"
api_key_file = "zdn.key"
report_sightings = true
refresh_secs = 3600
# The fixture event is not published.
published = false

[sightings]
window_secs = 300
source = "{SOURCE}"
"#,
        url = misp.url("")
    )
}

fn start(misp: &MispServer) -> Schild {
    let key = misp.key();
    Schild::start(&config(misp), &[("zdn.key", key.as_str())])
}

fn blocked(s: &Schild, name: &str) {
    let m = dns::udp(s.dns, &dns::query(&format!("{name}."), RecordType::A));
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "{name} is blocked"
    );
}

#[test]
fn a_blocked_query_is_recorded_and_sighted_in_misp() {
    let misp = MispServer::start();
    let s = start(&misp);
    // A subdomain of a `domain` IOC, twice: one sighting per window.
    blocked(&s, "www.MovieUltimate.com");
    blocked(&s, "cdn.movieultimate.com");

    let got = wait_until("the sighting", Duration::from_secs(15), || {
        let v = misp.sightings();
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(got[0].attribute_uuid, MOVIEULTIMATE.1);
    assert_eq!(got[0].kind, "0");
    assert_eq!(got[0].source, SOURCE);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        now.abs_diff(got[0].date_sighting) < 60,
        "time of the first hit"
    );

    // What left the hospital: the attribute, the source, the time; no
    // client address, no query name.
    let reqs = misp.requests_to("/sightings/add");
    assert!(!reqs.is_empty());
    for r in &reqs {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("127.0.0.1"), "{body}");
        assert!(!body.to_lowercase().contains("www.movieultimate"), "{body}");
        assert_eq!(r.header("authorization"), Some(misp.key().as_str()));
    }
    // The local record names the IOC, feed, event and attribute.
    let log = wait_until("the local record", Duration::from_secs(5), || {
        std::fs::read_to_string(s.path("state/sightings.jsonl"))
            .ok()
            .filter(|t| t.lines().count() >= 2)
    });
    let line: serde_json::Value =
        serde_json::from_str(log.lines().next().expect("line")).expect("JSON line");
    assert_eq!(line["qname"], "www.movieultimate.com");
    assert_eq!(line["ioc"], "movieultimate.com");
    assert_eq!(line["feed"], "zdn");
    assert_eq!(line["attribute_uuid"], MOVIEULTIMATE.1);
    assert_eq!(line["event_uuid"], "5a3c2fcd-8328-42bb-a95e-4f4402de0b81");
    // Give the reporter time to (wrongly) send a second one.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        misp.sightings().len(),
        1,
        "two hits in one window are one sighting"
    );
    let metrics = s.http("GET", "/metrics").1;
    assert!(
        metrics.contains("schild_sightings_sent_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("schild_sightings_pending 0"), "{metrics}");
}

#[test]
fn no_sighting_is_lost_when_misp_is_down_and_schild_is_killed() {
    let misp = MispServer::start();
    let s = start(&misp);
    // MISP goes down after the list was pulled.
    misp.set_fault(Fault::Status500);
    for (name, _) in [MOVIEULTIMATE, METEOST, FSPORTAL] {
        blocked(&s, &format!("x.{name}"));
        blocked(&s, name);
    }
    // Recorded durably (and retried against the failing MISP).
    wait_until("3 sightings recorded", Duration::from_secs(15), || {
        let m = s.http("GET", "/metrics").1;
        m.contains("schild_sightings_recorded_total 3")
            .then_some(())
    });
    wait_until("a failed attempt", Duration::from_secs(15), || {
        let m = s.http("GET", "/metrics").1;
        (!m.contains("schild_sightings_failed_total 0")).then_some(())
    });
    assert!(misp.sightings().is_empty());

    // SIGKILL: no shutdown, no flush.
    let dir = s.kill9();
    misp.set_fault(Fault::None);
    let key = misp.key();
    let cfg = config(&misp);
    let files = [("zdn.key", key.as_str())];
    let s = Schild::start_in(
        dir,
        Setup {
            config: &cfg,
            files: &files,
            wait_ready: true,
        },
    )
    .unwrap_or_else(|(st, log)| panic!("restart failed {st:?}:\n{log}"));

    let got = wait_until(
        "every sighting after the restart",
        Duration::from_secs(30),
        || {
            let v = misp.sightings();
            (v.len() >= 3).then_some(v)
        },
    );
    let mut uuids: Vec<&str> = got.iter().map(|g| g.attribute_uuid.as_str()).collect();
    uuids.sort();
    let mut want = vec![MOVIEULTIMATE.1, METEOST.1, FSPORTAL.1];
    want.sort();
    assert_eq!(uuids, want, "every sighted IOC, once per window");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(misp.sightings().len(), 3, "and none twice");
    drop(s);
}

#[test]
fn schild_allow_spares_the_name_at_once_and_reports_a_false_positive() {
    let misp = MispServer::start();
    let s = start(&misp);
    blocked(&s, "portal.meteost.com");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_schild"))
        .args(["allow", "--config"])
        .arg(s.path("schild.toml"))
        .args(["portal.meteost.com", "--reason", "clinical supplier portal"])
        .env("SCHILD_LOG", "warn")
        .output()
        .expect("schild allow");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("overrides meteost.com"), "{stdout}");
    // The running server applies it within seconds, without a restart...
    wait_until("the allowlist to apply", Duration::from_secs(15), || {
        let m = dns::udp(s.dns, &dns::query("portal.meteost.com.", RecordType::A));
        (m.metadata.response_code != ResponseCode::NXDomain).then_some(())
    });
    // ...while the rest of the IOC stays blocked.
    blocked(&s, "other.meteost.com");
    let fp = wait_until(
        "the false-positive sighting",
        Duration::from_secs(15),
        || misp.sightings().into_iter().find(|x| x.kind == "1"),
    );
    assert_eq!(fp.attribute_uuid, METEOST.1);
    assert_eq!(fp.source, SOURCE);
    let allow = std::fs::read_to_string(s.path("state/allowlist.local")).expect("allowlist");
    assert!(allow.contains("portal.meteost.com") && allow.contains("clinical supplier portal"));
}

#[test]
fn a_wrong_key_is_reported_loudly_and_retried() {
    let misp = MispServer::start();
    let s = start(&misp);
    blocked(&s, "fsportal.net");
    wait_until("the sighting", Duration::from_secs(15), || {
        (!misp.sightings().is_empty()).then_some(())
    });
    // The key is revoked: MISP answers 403.
    let good = misp.key();
    misp.state.lock().keys = vec!["another-key".into()];
    blocked(&s, "meteost.com");
    wait_until("the 403 in the log", Duration::from_secs(15), || {
        s.log().contains("refused our API key (403)").then_some(())
    });
    assert!(!s.log().contains(&good), "the key is never logged");
    // Fixed: the pending sighting goes out.
    misp.state.lock().keys = vec![good];
    wait_until("the retried sighting", Duration::from_secs(60), || {
        misp.sightings()
            .iter()
            .any(|x| x.attribute_uuid == METEOST.1)
            .then_some(())
    });
}

const FLOOD_CONFIG: &str = r#"
[resolver]
mode = "forward"
upstreams = ["127.0.0.1:9"]
dnssec = false
timeout_secs = 1

[[feed]]
name = "ioc"
type = "domains"
location = "ioc.txt"
"#;

/// The `count` of every local-log line for `qname`.
fn log_counts(s: &Schild, qname: &str) -> Vec<u64> {
    std::fs::read_to_string(s.path("state/sightings.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["qname"] == qname)
        .map(|v| v["count"].as_u64().unwrap_or(0))
        .collect()
}

#[test]
fn identical_hits_within_a_second_share_one_log_line() {
    let s = Schild::start(
        FLOOD_CONFIG,
        &[("ioc.txt", "flood.example\nother.example\n")],
    );
    // One infected host repeating one blocked name, and one other hit.
    for _ in 0..200 {
        blocked(&s, "c2.flood.example");
    }
    blocked(&s, "www.other.example");
    let counts = wait_until(
        "all 200 hits in the local record",
        Duration::from_secs(10),
        || {
            let c = log_counts(&s, "c2.flood.example");
            (c.iter().sum::<u64>() == 200).then_some(c)
        },
    );
    // 200 queries on loopback take well under a second or two: a handful
    // of lines at most, where there used to be 200.
    assert!(
        counts.len() <= 10,
        "{} lines for 200 identical hits",
        counts.len()
    );
    assert_eq!(log_counts(&s, "www.other.example"), [1]);
}

#[test]
fn a_broken_local_log_is_reported_once_not_per_query() {
    // The log's folder is a file: every write fails (like a full disk).
    let config = format!("{FLOOD_CONFIG}\n[sightings]\nlog = \"blocker/sightings.jsonl\"\n");
    let s = Schild::start(
        &config,
        &[
            ("ioc.txt", "flood.example\n"),
            ("state/blocker", "a file, not a folder\n"),
        ],
    );
    for i in 0..300 {
        blocked(&s, &format!("h{i}.flood.example"));
    }
    wait_until("the failed writes counted", Duration::from_secs(10), || {
        let m = s.http("GET", "/metrics").1;
        m.lines()
            .find_map(|l| l.strip_prefix("schild_sightings_log_errors_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|n| *n >= 300)
    });
    let errors = s
        .log()
        .lines()
        .filter(|l| l.contains("cannot write the sightings log"))
        .count();
    assert_eq!(errors, 1, "one ERROR line, not one per query:\n{}", s.log());
    // Blocking is not affected.
    blocked(&s, "again.flood.example");
}
