//! The SOC's query log: dnstap over Frame Streams, written by Debian's
//! `fstrm_capture` (fstrm-bin) and decoded by `dnstap-read`
//! (bind9-dnsutils), as a SOC would collect it from Unbound or BIND.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns;
use crate::harness::{Daemon, Schild, have, until, wait_until};

fn config(sock: &Path, extra: &str) -> String {
    format!(
        r#"
[resolver]
mode = "forward"
upstreams = ["127.0.0.1:9"]
dnssec = false
timeout_secs = 1

[[feed]]
name = "zdn"
type = "domains"
location = "iocs.txt"

[dnstap]
socket = "{sock}"
identity = "resolver-1"
{extra}
"#,
        sock = sock.display()
    )
}

/// `fstrm_capture` reading dnstap from `sock` into `out`.
fn capture(sock: &Path, out: &Path) -> Daemon {
    Daemon::start(
        Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
            .arg(sock)
            .arg("-w")
            .arg(out),
        out.with_extension("log"),
    )
}

/// What `dnstap-read -y` decodes from a capture file.
fn read(out: &Path) -> String {
    let o = Command::new("dnstap-read")
        .arg("-y")
        .arg(out)
        .output()
        .expect("run dnstap-read");
    assert!(
        o.status.success(),
        "dnstap-read: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The YAML documents (one per dnstap message) that mention `needle`.
fn messages<'a>(yaml: &'a str, needle: &str) -> Vec<&'a str> {
    yaml.split("\n---").filter(|m| m.contains(needle)).collect()
}

#[test]
fn client_queries_and_responses_reach_a_real_collector() {
    if !have("fstrm_capture") || !have("dnstap-read") {
        return;
    }
    // The collector's folder outlives schild's.
    let tap = tempfile::tempdir().expect("tempdir");
    let (sock, out) = (
        tap.path().join("tap.sock"),
        tap.path().join("capture.fstrm"),
    );
    let s = Schild::start(
        &config(&sock, "client_addresses = \"full\""),
        &[("iocs.txt", "evil.example\nransom.example\n")],
    );
    // The collector comes up after schild: schild keeps trying.
    let collector = capture(&sock, &out);
    wait_until(
        "schild connected to the collector",
        Duration::from_secs(30),
        || (s.metric("schild_dnstap_connected") == Some(1.0)).then_some(()),
    );

    let m = dns::udp(s.dns, &dns::query("evil.example.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = dns::tcp(
        s.dns,
        &[dns::query("www.Ransom.example.", RecordType::AAAA)],
    );
    assert_eq!(m[0].metadata.response_code, ResponseCode::NXDomain);
    assert!(
        until(Duration::from_secs(10), || s
            .metric("schild_dnstap_sent_total")
            .is_some_and(|n| n >= 4.0)),
        "four frames sent: {:?}",
        s.metric("schild_dnstap_sent_total")
    );
    // A stop ends the stream cleanly (STOP, FINISH); then the file is closed.
    assert!(s.terminate().success());
    drop(collector);

    let yaml = read(&out);
    let queries = messages(&yaml, "type: CLIENT_QUERY");
    let responses = messages(&yaml, "type: CLIENT_RESPONSE");
    assert_eq!(queries.len(), 2, "{yaml}");
    assert_eq!(responses.len(), 2, "{yaml}");
    for m in queries.iter().chain(&responses) {
        assert!(m.contains("identity: resolver-1"), "{m}");
        assert!(m.contains("query_address: \"127.0.0.1\""), "{m}");
        assert!(m.contains("socket_family: INET"), "{m}");
    }
    let udp = messages(&yaml, "evil.example.");
    assert!(
        udp.iter().all(|m| m.contains("socket_protocol: UDP")),
        "{yaml}"
    );
    assert!(
        udp.iter()
            .any(|m| m.contains("CLIENT_RESPONSE") && m.contains("NXDOMAIN")),
        "{yaml}"
    );
    assert!(
        udp.iter()
            .any(|m| m.contains("CLIENT_QUERY") && m.contains("IN A'")),
        "{yaml}"
    );
    let tcp = messages(&yaml, "www.Ransom.example.");
    assert_eq!(tcp.len(), 2, "the 0x20 spelling as asked: {yaml}");
    assert!(
        tcp.iter().all(|m| m.contains("socket_protocol: TCP")),
        "{yaml}"
    );
    assert!(
        tcp.iter().any(|m| m.contains("CLIENT_RESPONSE")
            && m.contains("NXDOMAIN")
            && m.contains("IN AAAA'")),
        "{yaml}"
    );
}

#[test]
fn addresses_are_pseudonymised_by_default_and_a_missing_collector_costs_nothing() {
    if !have("fstrm_capture") || !have("dnstap-read") {
        return;
    }
    let tap = tempfile::tempdir().expect("tempdir");
    let (sock, out) = (
        tap.path().join("tap.sock"),
        tap.path().join("capture.fstrm"),
    );
    let s = Schild::start(&config(&sock, ""), &[("iocs.txt", "evil.example\n")]);
    // No collector: queries are answered, and the frames are dropped and counted.
    for _ in 0..5 {
        let m = dns::udp(s.dns, &dns::query("evil.example.", RecordType::A));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert!(
        until(Duration::from_secs(15), || s
            .metric("schild_dnstap_dropped_total")
            .is_some_and(|n| n >= 10.0)),
        "ten frames dropped: {:?}",
        s.metric("schild_dnstap_dropped_total")
    );
    assert!(
        s.log().contains("cannot connect to the dnstap collector"),
        "{}",
        s.log()
    );

    let collector = capture(&sock, &out);
    wait_until("schild reconnected", Duration::from_secs(30), || {
        (s.metric("schild_dnstap_connected") == Some(1.0)).then_some(())
    });
    dns::udp(s.dns, &dns::query("evil.example.", RecordType::A));
    assert!(until(Duration::from_secs(10), || s
        .metric("schild_dnstap_sent_total")
        .is_some_and(|n| n >= 2.0)));
    assert!(s.terminate().success());
    drop(collector);

    let yaml = read(&out);
    let all = messages(&yaml, "evil.example.");
    assert_eq!(all.len(), 2, "{yaml}");
    for m in all {
        assert!(
            !m.contains("query_address: \"127.0.0.1\""),
            "the client address left the resolver: {m}"
        );
        assert!(
            m.contains("query_address: \"2001:db8:"),
            "a pseudonym in documentation space: {m}"
        );
    }
}
