//! The name history and the retro-hunt through the real `schild serve`:
//! names resolved from three clients on two days (a test clock), then the
//! test MISP publishes an IOC for their parent domain; after the refresh
//! MISP has a sighting stamped with the first resolution, the local log a
//! `retro` line (popular, by test thresholds), and `schild history` shows
//! both days.

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
"#,
        url = misp.url("")
    )
}

#[test]
fn a_new_ioc_resolved_on_earlier_days_is_sighted_from_its_first_resolution() {
    let misp = MispServer::start();
    let config = config(&misp);
    let key = misp.key();
    let files = [("zdn.key", key.as_str())];
    let setup = || Setup {
        config: &config,
        files: &files,
        wait_ready: true,
    };
    let day1 = DAY1.to_string();
    let s = Schild::start_in_env(
        tempfile::tempdir().expect("tempdir"),
        setup(),
        &[("SCHILD_HISTORY_NOW", &day1)],
    )
    .unwrap_or_else(|(st, log)| panic!("{st:?}\n{log}"));
    ask_from("127.0.0.2", s.dns, &format!("www.{PARENT}"));
    ask_from("127.0.0.3", s.dns, &format!("cdn.{PARENT}"));
    ask_from("127.0.0.4", s.dns, &format!("www.{PARENT}"));
    ask_from("127.0.0.2", s.dns, "unrelated.example");
    let dir = s.stop();

    // Day two (a restart keeps state_dir and the list).
    let day2 = DAY2.to_string();
    let s = Schild::start_in_env(dir, setup(), &[("SCHILD_HISTORY_NOW", &day2)])
        .unwrap_or_else(|(st, log)| panic!("{st:?}\n{log}"));
    ask_from("127.0.0.3", s.dns, &format!("www.{PARENT}"));

    // The feed now lists the parent domain.
    {
        let mut st = misp.state.lock();
        let mut row = st
            .rows
            .iter()
            .find(|r| r.attribute["type"] == "domain" && r.attribute["to_ids"] == true)
            .expect("a domain row")
            .clone();
        row.attribute["value"] = PARENT.into();
        row.attribute["uuid"] = UUID.into();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        row.attribute["timestamp"] = now.to_string().into();
        st.rows.push(row);
    }
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
