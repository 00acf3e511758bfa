//! The clinical guardrail through the real `schild serve`: a protected
//! clinical name listed by a feed is never blocked and is reported back
//! as a false positive; an update that newly blocks too much is held
//! until `schild guard accept`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns;
use crate::harness::{Schild, wait_until};
use crate::misp_server::MispServer;

const RESOLVER: &str = "[resolver]\nmode = \"forward\"\nupstreams = [\"127.0.0.1:9\"]\ndnssec = false\ntimeout_secs = 1\n";
const EHR: &str = "ehr.hospital-x.example";
const EHR_UUID: &str = "6b1d0c2e-0000-4000-8000-00000000e4a1";

fn rcode(s: &Schild, name: &str) -> ResponseCode {
    dns::udp(s.dns, &dns::query(&format!("{name}."), RecordType::A))
        .metadata
        .response_code
}

/// Run `schild ARGS --config CONFIG`: its exit code and output.
pub(crate) fn schild(args: &[&str], config: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_schild"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SCHILD_LOG", "warn")
        .output()
        .expect("run schild");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_protected_ehr_name_listed_by_misp_is_not_blocked_and_reported_as_false_positive() {
    let mut inner = MispServer::fixtures();
    // The feed lists the hospital's EHR, as a mistaken IOC would.
    let mut row = inner
        .rows
        .iter()
        .find(|r| r.attribute["type"] == "domain" && r.attribute["to_ids"] == true)
        .expect("a domain row")
        .clone();
    row.attribute["value"] = EHR.into();
    row.attribute["uuid"] = EHR_UUID.into();
    inner.rows.push(row);
    let misp = MispServer::with(inner);
    let config = format!(
        r#"{RESOLVER}
[[feed]]
name = "zdn"
type = "misp-api"
location = "{url}"
api_key_file = "zdn.key"
report_sightings = true
refresh_secs = 3600
published = false

[guard]
protected = ["clinical.txt"]
report_protected = true
"#,
        url = misp.url("")
    );
    let key = misp.key();
    let s = Schild::start(
        &config,
        &[
            ("zdn.key", key.as_str()),
            (
                "clinical.txt",
                "# clinical systems\nehr.hospital-x.example  # EHR\n",
            ),
        ],
    );
    // The EHR and everything below it resolve (here: the dead upstream's
    // SERVFAIL, not the block's NXDOMAIN); other IOCs are blocked.
    assert_ne!(rcode(&s, EHR), ResponseCode::NXDomain);
    assert_ne!(rcode(&s, &format!("portal.{EHR}")), ResponseCode::NXDomain);
    assert_eq!(rcode(&s, "movieultimate.com"), ResponseCode::NXDomain);

    let fp = wait_until(
        "the false-positive sighting",
        Duration::from_secs(15),
        || {
            misp.sightings()
                .into_iter()
                .find(|x| x.attribute_uuid == EHR_UUID)
        },
    );
    assert_eq!(fp.kind, "1");
    assert_eq!(
        s.metric("schild_guard_protected_refusals{feed=\"zdn\"}"),
        Some(1.0)
    );
    let log = s.log();
    assert!(
        log.contains("WARN") && log.contains("protected clinical name"),
        "{log}"
    );

    let cfg = s.path("schild.toml");
    let (code, out) = schild(&["check", EHR], &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PROTECTED"), "{out}");
    assert!(out.contains("clinical.txt"), "which file spared it: {out}");
    assert!(out.contains(EHR_UUID), "which IOC was refused: {out}");
    let (code, out) = schild(&["stats"], &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("refused: 1 IOCs naming protected clinical systems"),
        "{out}"
    );
    // A refresh does not report the same listing again.
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_secs(2));
    let fps = misp
        .sightings()
        .into_iter()
        .filter(|x| x.attribute_uuid == EHR_UUID)
        .count();
    assert_eq!(fps, 1, "one false positive per listing");
}

#[test]
fn an_update_that_newly_blocks_too_much_is_held_until_accepted() {
    let config = format!(
        r#"{RESOLVER}
[[feed]]
name = "local"
type = "domains"
location = "list.txt"
refresh_secs = 3600

[guard]
max_new_blocks = 3
"#
    );
    let s = Schild::start(&config, &[("list.txt", "a.example\nb.example\n")]);
    assert_eq!(rcode(&s, "a.example"), ResponseCode::NXDomain);
    // Two more names pass; then an update of eight more is held.
    std::fs::write(
        s.path("list.txt"),
        "a.example\nb.example\nc.example\nd.example\n",
    )
    .expect("write");
    assert_eq!(s.http("POST", "/reload").0, 200);
    assert_eq!(rcode(&s, "d.example"), ResponseCode::NXDomain);
    let big: String = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]
        .iter()
        .map(|n| format!("{n}.example\n"))
        .collect();
    std::fs::write(s.path("list.txt"), big).expect("write");
    let (status, body) = s.http("POST", "/reload");
    assert_ne!(status, 200, "{body}");
    assert_ne!(rcode(&s, "l.example"), ResponseCode::NXDomain, "held");
    assert_eq!(
        rcode(&s, "a.example"),
        ResponseCode::NXDomain,
        "old list serves"
    );
    assert_eq!(s.metric("schild_guard_held_new_blocks"), Some(8.0));
    assert!(s.log().contains("update HELD"), "{}", s.log());

    let cfg = s.path("schild.toml");
    let (code, out) = schild(&["guard", "list"], &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("newly blocks 8"), "{out}");
    assert!(out.contains("new: e.example"), "{out}");
    let (_, out) = schild(&["stats"], &cfg);
    assert!(out.contains("HELD update"), "{out}");

    let (code, out) = schild(&["guard", "accept"], &cfg);
    assert_eq!(code, 0, "{out}");
    wait_until(
        "the accepted update to serve",
        Duration::from_secs(15),
        || (rcode(&s, "l.example") == ResponseCode::NXDomain).then_some(()),
    );
    assert_eq!(s.metric("schild_guard_held_new_blocks"), Some(0.0));
    let (code, out) = schild(&["guard", "list"], &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no update held"), "{out}");
    // The accepted list is the one in use: a refresh holds nothing.
    assert_eq!(s.http("POST", "/reload").0, 200);
    assert_eq!(rcode(&s, "l.example"), ResponseCode::NXDomain);
}
