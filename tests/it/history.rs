//! The name history and the retro-hunt through the real `schild serve`:
//! names resolved from three clients on two days (a test clock), then the
//! test MISP publishes an IOC for their parent domain; after the refresh
//! MISP has a sighting stamped with the first resolution, the local log a
//! `retro` line (popular, by test thresholds), and `schild history` shows
//! both days. With `guard.on_popular = "quarantine"` the popular name
//! resolves and is recorded until `schild guard release` enforces it.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinEncodable;

use crate::dns;
use crate::harness::{Schild, Setup, wait_until};
use crate::misp_server::MispServer;

/// Noon, 2025-06-15 UTC: day one of the test clock.
const DAY1: u64 = 1_749_988_800;
const DAY2: u64 = DAY1 + 86_400;
const PARENT: &str = "retro-hunt.example";
const UUID: &str = "6b1d0c2e-0000-4000-8000-0000000e7a01";

/// One query from `from` (a loopback address); the answer does not matter
/// (the upstream is dead), only that schild answered it.
fn ask_from(from: &str, server: SocketAddr, name: &str) {
    let s = UdpSocket::bind(format!("{from}:0")).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let q = dns::query(&format!("{name}."), RecordType::A)
        .to_bytes()
        .expect("encode");
    s.send_to(&q, server).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).expect("an answer");
    assert!(n >= 12 && buf[..2] == q[..2]);
}

fn config(misp: &MispServer) -> String {
    config_with(misp, "")
}

/// The configuration with `extra` at the end of `[guard]`.
fn config_with(misp: &MispServer, extra: &str) -> String {
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
published = false

[sightings]
client_privacy = "full"

[history]
days = 30
clients_per_name = 2

# Test thresholds: one client a day, on both days.
[guard]
popular_clients = 1
popular_days = 2
{extra}
"#,
        url = misp.url("")
    )
}

/// The test MISP now lists `value` (a `domain`) under `uuid`.
fn publish(misp: &MispServer, value: &str, uuid: &str) {
    let mut st = misp.state.lock();
    let mut row = st
        .rows
        .iter()
        .find(|r| r.attribute["type"] == "domain" && r.attribute["to_ids"] == true)
        .expect("a domain row")
        .clone();
    row.attribute["value"] = value.into();
    row.attribute["uuid"] = uuid.into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    row.attribute["timestamp"] = now.to_string().into();
    st.rows.push(row);
}

/// Start `schild serve` with `config` (and the test MISP's key) on `day`
/// of the test clock, in `dir` (a restart) or a fresh folder.
fn start_on(config: &str, misp: &MispServer, dir: Option<tempfile::TempDir>, day: u64) -> Schild {
    let key = misp.key();
    let files = [("zdn.key", key.as_str())];
    let setup = Setup {
        config,
        files: &files,
        wait_ready: true,
    };
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
    Schild::start_in_env(dir, setup, &[("SCHILD_HISTORY_NOW", &day.to_string())])
        .unwrap_or_else(|(st, log)| panic!("{st:?}\n{log}"))
}

#[test]
fn a_new_ioc_resolved_on_earlier_days_is_sighted_from_its_first_resolution() {
    let misp = MispServer::start();
    let config = config(&misp);
    let s = start_on(&config, &misp, None, DAY1);
    ask_from("127.0.0.2", s.dns, &format!("www.{PARENT}"));
    ask_from("127.0.0.3", s.dns, &format!("cdn.{PARENT}"));
    ask_from("127.0.0.4", s.dns, &format!("www.{PARENT}"));
    ask_from("127.0.0.2", s.dns, "unrelated.example");
    let dir = s.stop();

    // Day two (a restart keeps state_dir and the list).
    let s = start_on(&config, &misp, Some(dir), DAY2);
    ask_from("127.0.0.3", s.dns, &format!("www.{PARENT}"));

    // The feed now lists the parent domain.
    publish(&misp, PARENT, UUID);
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");

    let got = wait_until("the retro-sighting", Duration::from_secs(20), || {
        misp.sightings()
            .into_iter()
            .find(|x| x.attribute_uuid == UUID)
    });
    assert_eq!(got.kind, "0");
    assert_eq!(got.date_sighting, DAY1, "stamped with the first resolution");
    assert_eq!(s.metric("schild_retro_hits_total{feed=\"zdn\"}"), Some(1.0));
    let line = wait_until("the retro line", Duration::from_secs(10), || {
        std::fs::read_to_string(s.path("state/sightings.jsonl"))
            .ok()?
            .lines()
            .find(|l| l.contains("\"retro\""))
            .map(str::to_string)
    });
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["ioc"], PARENT);
    assert_eq!(v["feed"], "zdn");
    assert_eq!(v["attribute_uuid"], UUID);
    assert_eq!(v["first_seen_unix"], DAY1);
    assert_eq!(v["days"], 2);
    assert_eq!(v["clients"], 3);
    assert_eq!(v["client_ids"].as_array().map(Vec::len), Some(2), "{v}");
    // Asked on both days: popular by the test thresholds, blocked and raised.
    assert_eq!(v["popular"], true);
    assert_eq!(
        s.metric("schild_guard_popular_blocks_total{feed=\"zdn\"}"),
        Some(1.0)
    );
    assert!(s.log().contains("is POPULAR here"), "{}", s.log());
    assert_eq!(
        dns::udp(s.dns, &dns::query(&format!("www.{PARENT}."), RecordType::A))
            .metadata
            .response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );

    let cfg = s.path("schild.toml");
    let dir = s.stop();
    let out = Command::new(env!("CARGO_BIN_EXE_schild"))
        .args(["history", PARENT, "--config"])
        .arg(&cfg)
        .env("SCHILD_LOG", "warn")
        .output()
        .expect("schild history");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("resolved on 2 day(s)"), "{text}");
    assert!(
        text.contains("2025-06-15") && text.contains("2025-06-16"),
        "{text}"
    );
    assert!(
        text.contains(&format!("www.{PARENT}: ~2 client(s)")),
        "{text}"
    );
    assert!(text.contains("127.0.0.2, 127.0.0.4"), "{text}");
    assert!(!text.contains("unrelated"), "{text}");
    drop(dir);
}

const QUARANTINED: &str = "popular-cdn.example";
const Q_UUID: &str = "6b1d0c2e-0000-4000-8000-0000000e7a02";
/// The local record that stands for the name's real answer.
const Q_ADDR: &str = "192.0.2.77";
/// A second popular name, which `schild allow` makes a false positive.
const FP: &str = "popular-portal.example";
const FP_UUID: &str = "6b1d0c2e-0000-4000-8000-0000000e7a03";
const FP_ADDR: &str = "192.0.2.78";

fn answer(s: &Schild) -> hickory_proto::op::Message {
    answer_for(s, QUARANTINED)
}

fn answer_for(s: &Schild, domain: &str) -> hickory_proto::op::Message {
    dns::udp(s.dns, &dns::query(&format!("www.{domain}."), RecordType::A))
}

fn blocked(m: &hickory_proto::op::Message) -> bool {
    m.metadata.response_code == hickory_proto::op::ResponseCode::NXDomain
        && dns::ede(m).is_some_and(|(code, text)| code == 15 && text.contains("feed zdn"))
}

#[test]
fn a_popular_new_ioc_is_quarantined_until_released() {
    let misp = MispServer::start();
    // The name's answer comes from local data (the upstream is dead): the
    // policy is applied before every route, so a block shows as NXDOMAIN.
    let config = format!(
        "{}\n[local]\nnodefault = [\"test\"]\nrecords = [\"www.{QUARANTINED}. 300 IN A {Q_ADDR}\", \"www.{FP}. 300 IN A {FP_ADDR}\"]\n",
        config_with(&misp, "on_popular = \"quarantine\"")
    );
    let s = start_on(&config, &misp, None, DAY1);
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        ask_from(from, s.dns, &format!("www.{QUARANTINED}"));
        ask_from(from, s.dns, &format!("www.{FP}"));
    }
    let dir = s.stop();
    let s = start_on(&config, &misp, Some(dir), DAY2);
    ask_from("127.0.0.3", s.dns, &format!("www.{QUARANTINED}"));
    ask_from("127.0.0.4", s.dns, &format!("www.{FP}"));
    assert_eq!(dns::addresses(&answer(&s)), [Q_ADDR], "not listed yet");

    publish(&misp, QUARANTINED, Q_UUID);
    publish(&misp, FP, FP_UUID);
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");

    // Popular (both days): quarantined, so it still resolves...
    let m = answer(&s);
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::NoError
    );
    assert_eq!(dns::addresses(&m), [Q_ADDR], "a quarantined name resolves");
    assert!(dns::ede(&m).is_none(), "{:?}", dns::ede(&m));
    assert_eq!(dns::addresses(&answer_for(&s, FP)), [FP_ADDR]);
    assert_eq!(s.metric("schild_guard_quarantined"), Some(2.0));
    assert_eq!(
        s.metric("schild_guard_popular_blocks_total{feed=\"zdn\"}"),
        Some(2.0)
    );
    assert!(s.log().contains("it is QUARANTINED"), "{}", s.log());
    // ...and each hit is a sighting with action `quarantine`: in the log,
    // and (type 0, stamped now, not at the first resolution) at MISP.
    let line = wait_until("the quarantine line", Duration::from_secs(10), || {
        std::fs::read_to_string(s.path("state/sightings.jsonl"))
            .ok()?
            .lines()
            .find(|l| l.contains("\"action\":\"quarantine\"") && l.contains(Q_UUID))
            .map(str::to_string)
    });
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["ioc"], QUARANTINED);
    assert_eq!(v["qname"], format!("www.{QUARANTINED}"));
    assert_eq!(v["feed"], "zdn");
    let retro = wait_until("the retro line", Duration::from_secs(10), || {
        std::fs::read_to_string(s.path("state/sightings.jsonl"))
            .ok()?
            .lines()
            .find(|l| l.contains("\"retro\"") && l.contains(Q_UUID))
            .map(str::to_string)
    });
    let r: serde_json::Value = serde_json::from_str(&retro).expect("JSON");
    assert_eq!(
        (&r["popular"], &r["quarantined"]),
        (&true.into(), &true.into()),
        "{r}"
    );
    let hit = wait_until("the hit's sighting", Duration::from_secs(20), || {
        misp.sightings()
            .into_iter()
            .find(|x| x.attribute_uuid == Q_UUID && x.date_sighting > DAY2)
    });
    assert_eq!(hit.kind, "0");

    let cfg = s.path("schild.toml");
    let (code, text) = crate::guard::schild(&["guard", "list"], &cfg);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("quarantined (guard.on_popular): 2 name(s)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{QUARANTINED} (domain of feed zdn)")),
        "{text}"
    );
    let www = format!("www.{QUARANTINED}");
    let (code, text) = crate::guard::schild(&["check", &www], &cfg);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("{www}: QUARANTINED")), "{text}");
    let (code, text) = crate::guard::schild(&["guard", "release", "www.other.example"], &cfg);
    assert_eq!(code, 1, "not quarantined: {text}");

    // Released: blocked from now on, without a restart.
    let (code, text) = crate::guard::schild(&["guard", "release", QUARANTINED], &cfg);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("is blocked from now on"), "{text}");
    wait_until("the release served", Duration::from_secs(10), || {
        blocked(&answer(&s)).then_some(())
    });
    assert_eq!(s.metric("schild_guard_quarantined"), Some(1.0));
    assert_eq!(
        dns::addresses(&answer_for(&s, FP)),
        [FP_ADDR],
        "still quarantined"
    );
    let (code, text) = crate::guard::schild(&["check", &www], &cfg);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("{www}: BLOCKED")), "{text}");

    // `schild allow`: a false positive, out of quarantine, resolving, and
    // reported to the feed (type 1).
    let (code, text) =
        crate::guard::schild(&["allow", FP, "--reason", "the patient portal's CDN"], &cfg);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("{FP} is quarantined")), "{text}");
    wait_until("the allow served", Duration::from_secs(15), || {
        (s.metric("schild_guard_quarantined") == Some(0.0)).then_some(())
    });
    assert_eq!(dns::addresses(&answer_for(&s, FP)), [FP_ADDR]);
    let fp = wait_until(
        "the false-positive sighting",
        Duration::from_secs(20),
        || {
            misp.sightings()
                .into_iter()
                .find(|x| x.attribute_uuid == FP_UUID && x.kind == "1")
        },
    );
    assert_eq!(fp.kind, "1");
    let (_, text) = crate::guard::schild(&["guard", "list"], &cfg);
    assert!(text.contains("no name quarantined"), "{text}");
    assert!(text.contains(&format!("{QUARANTINED} released")), "{text}");
    assert!(!text.contains(FP), "{text}");

    // A refresh (a compile and a retro-hunt) and a restart keep it enforced.
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");
    assert!(blocked(&answer(&s)), "{:?}", answer(&s));
    let dir = s.stop();
    let s = start_on(&config, &misp, Some(dir), DAY2);
    assert!(blocked(&answer(&s)), "after a restart: {:?}", answer(&s));
    assert_eq!(s.metric("schild_guard_quarantined"), Some(0.0));
}
