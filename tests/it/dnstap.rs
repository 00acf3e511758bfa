//! The SOC's query log: dnstap over Frame Streams, written by Debian's
//! `fstrm_capture` (fstrm-bin) and decoded by `dnstap-read`
//! (bind9-dnsutils), as a SOC would collect it from Unbound or BIND.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns;
use crate::harness::{Daemon, Schild, have, until, wait_until};
use crate::hierarchy::{NsdHierarchy, Upstream, host};

fn config(sock: &Path, extra: &str) -> String {
    forwarding(sock, "127.0.0.1:9".parse().expect("addr"), extra)
}

/// Forward mode to `upstream`, with a feed listing evil.example and
/// ransom.example, and a `[dnstap]` section ending in `extra`.
fn forwarding(sock: &Path, upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[resolver]
mode = "forward"
upstreams = ["{upstream}"]
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

/// Wait until schild has written `n` frames to the collector.
fn sent_at_least(s: &Schild, n: u32) {
    assert!(
        until(Duration::from_secs(10), || s
            .metric("schild_dnstap_sent_total")
            .is_some_and(|sent| sent >= f64::from(n))),
        "{n} frames sent: {:?}",
        s.metric("schild_dnstap_sent_total")
    );
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
    // A real upstream: the lookup that goes there is not logged, as
    // resolver_queries is off by default.
    let upstream = Upstream::start();
    let s = Schild::start(
        &forwarding(&sock, upstream.addr, "client_addresses = \"full\""),
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
    let m = dns::udp(s.dns, &dns::query("www.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    sent_at_least(&s, 6);
    // A stop ends the stream cleanly (STOP, FINISH); then the file is closed.
    assert!(s.terminate().success());
    drop(collector);

    let yaml = read(&out);
    let queries = messages(&yaml, "type: CLIENT_QUERY");
    let responses = messages(&yaml, "type: CLIENT_RESPONSE");
    assert_eq!(queries.len(), 3, "{yaml}");
    assert_eq!(responses.len(), 3, "{yaml}");
    assert!(
        messages(&yaml, "type: RESOLVER_").is_empty(),
        "resolver_queries is off: {yaml}"
    );
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
    sent_at_least(&s, 2);
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

/// Start a collector on a fresh socket and schild with `config` (made
/// from the socket's path), and wait until they are connected.
fn with_collector(
    config: impl FnOnce(&Path) -> String,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, Schild, Daemon) {
    let tap = tempfile::tempdir().expect("tempdir");
    let (sock, out) = (
        tap.path().join("tap.sock"),
        tap.path().join("capture.fstrm"),
    );
    let collector = capture(&sock, &out);
    let s = Schild::start(&config(&sock), files);
    wait_until(
        "schild connected to the collector",
        Duration::from_secs(30),
        || (s.metric("schild_dnstap_connected") == Some(1.0)).then_some(()),
    );
    (tap, s, collector)
}

/// Stop schild and the collector; what the capture holds.
fn finish(tap: &tempfile::TempDir, s: Schild, collector: Daemon) -> String {
    assert!(s.terminate().success());
    drop(collector);
    read(&tap.path().join("capture.fstrm"))
}

#[test]
fn resolver_queries_show_what_schild_asks_its_upstream() {
    if !have("fstrm_capture") || !have("dnstap-read") {
        return;
    }
    // The authoritative server of example.test, over UDP and TCP: the
    // upstream for everything, and as a forward zone's too.
    let upstream = crate::hierarchy::get().example_server();
    let (tap, s, collector) = with_collector(
        |sock| {
            format!(
                "{}\n[[forward_zone]]\nname = \"exact.example.test\"\nupstreams = [\"{}\"]\n\
                 \n[[stub_zone]]\nname = \"stub.example.test\"\nservers = [\"{}\"]\n",
                forwarding(sock, upstream, "resolver_queries = true"),
                upstream,
                upstream
            )
        },
        &[("iocs.txt", "evil.example\n")],
    );
    // Cache misses go upstream; a blocked name does not.
    let m = dns::udp(s.dns, &dns::query("www.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let m = dns::udp(s.dns, &dns::query("exact.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let m = dns::udp(s.dns, &dns::query("evil.example.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // A stub zone's iterator opens its own sockets: logged too.
    let m = dns::udp(s.dns, &dns::query("www.stub.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Too large for UDP: asked again over TCP.
    let m = dns::tcp(s.dns, &[dns::query("big.example.test.", RecordType::TXT)]);
    assert_eq!(m[0].metadata.response_code, ResponseCode::NoError);
    sent_at_least(&s, 20);
    let yaml = finish(&tap, s, collector);

    let resolver = messages(&yaml, "type: RESOLVER_");
    let upstream_ip = format!("response_address: \"{}\"", upstream.ip());
    let upstream_port = format!("response_port: {}", upstream.port());
    for m in &resolver {
        assert!(
            m.contains(&upstream_ip) && m.contains(&upstream_port),
            "{m}"
        );
        assert!(
            m.contains("query_address: \"127.0.0.1\""),
            "schild's source: {m}"
        );
        assert!(m.contains("identity: resolver-1"), "{m}");
        assert!(
            !m.contains("evil.example."),
            "a blocked name is never asked upstream: {m}"
        );
    }
    // Each name asked and answered, named by the zone it was asked for:
    // the global forwarder's root, or the forward zone.
    for (name, zone, address) in [
        ("'www.example.test. IN A'", "query_zone: .\n", "192.0.2.80"),
        (
            "'exact.example.test. IN A'",
            "query_zone: exact.example.test.\n",
            "192.0.2.94",
        ),
    ] {
        let about: Vec<_> = resolver.iter().filter(|m| m.contains(name)).collect();
        assert!(
            about.iter().any(|m| m.contains("type: RESOLVER_QUERY")),
            "{name} asked: {yaml}"
        );
        assert!(
            about.iter().any(|m| m.contains("type: RESOLVER_RESPONSE")
                && m.contains("NOERROR")
                && m.contains(address)),
            "{name} answered: {yaml}"
        );
        assert!(about.iter().all(|m| m.contains(zone)), "{zone}: {yaml}");
        assert!(
            about.iter().all(|m| m.contains("socket_protocol: UDP")),
            "{yaml}"
        );
    }
    let stub: Vec<_> = (resolver.iter())
        .filter(|m| m.contains("'www.stub.example.test. IN A'"))
        .collect();
    for kind in ["type: RESOLVER_QUERY", "type: RESOLVER_RESPONSE"] {
        assert!(
            stub.iter().any(|m| m.contains(kind)
                && m.contains("query_zone: stub.example.test.\n")
                && m.contains("socket_protocol: UDP")),
            "the stub zone's {kind}: {yaml}"
        );
    }
    assert!(
        stub.iter()
            .any(|m| m.contains("RESOLVER_RESPONSE") && m.contains("NXDOMAIN")),
        "{yaml}"
    );
    let big: Vec<_> = (resolver.iter())
        .filter(|m| m.contains("'big.example.test. IN TXT'"))
        .collect();
    let over = |kind: &str, protocol: &str| {
        big.iter()
            .any(|m| m.contains(kind) && m.contains(protocol) && m.contains("query_zone: .\n"))
    };
    for kind in ["type: RESOLVER_QUERY", "type: RESOLVER_RESPONSE"] {
        for protocol in ["socket_protocol: UDP", "socket_protocol: TCP"] {
            assert!(
                over(kind, protocol),
                "big.example.test {kind} {protocol}: {yaml}"
            );
        }
    }
    assert!(
        big.iter().any(|m| m.contains("socket_protocol: TCP")
            && m.contains("RESOLVER_RESPONSE")
            && m.contains("dddddddddd")),
        "the whole answer over TCP: {yaml}"
    );
}

#[test]
fn resolver_queries_in_recursion_show_every_name_server_asked() {
    if !have("fstrm_capture") || !have("dnstap-read") {
        return;
    }
    let Some(h) = NsdHierarchy::start() else {
        return;
    };
    let (tap, s, collector) = with_collector(
        |sock| {
            format!(
                "{}\n[dnstap]\nsocket = \"{}\"\nresolver_queries = true\n",
                h.recursive_section(),
                sock.display()
            )
        },
        &[],
    );
    let m = dns::udp(s.dns, &dns::query("www.d.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // Its only server truncates over UDP: the answer comes over TCP.
    let m = dns::udp(s.dns, &dns::query("www.trunc.d.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // Two client queries and answers, and at least root, test., d.test.
    // and the truncating server asked and answering.
    sent_at_least(&s, 12);
    let yaml = finish(&tap, s, collector);

    let at = |host: u8| format!("response_address: \"{}\"", h.ip(host));
    let asked = messages(&yaml, "type: RESOLVER_QUERY");
    let answered = messages(&yaml, "type: RESOLVER_RESPONSE");
    for server in [host::ROOT, host::TLD, host::D] {
        assert!(
            asked.iter().any(|m| m.contains(&at(server))),
            "a query to {}: {yaml}",
            h.ip(server)
        );
        assert!(
            answered.iter().any(|m| m.contains(&at(server))),
            "an answer from {}: {yaml}",
            h.ip(server)
        );
    }
    for m in asked.iter().chain(&answered) {
        assert!(m.contains("response_port: 53"), "{m}");
        assert!(m.contains("query_address: \"127.0.0.1\""), "{m}");
        assert!(!m.contains("query_zone:"), "not known in recursion: {m}");
    }
    assert!(
        answered.iter().any(|m| m.contains(&at(host::D))
            && m.contains("www.d.test.")
            && m.contains("192.0.2.1")),
        "the answer from d.test's server: {yaml}"
    );
    let trunc = at(host::TRUNCATING);
    let over = |p: &str| {
        answered
            .iter()
            .any(|m| m.contains(&trunc) && m.contains(p) && m.contains("www.trunc.d.test."))
    };
    assert!(over("socket_protocol: UDP"), "the truncated answer: {yaml}");
    assert!(
        over("socket_protocol: TCP")
            && answered
                .iter()
                .any(|m| m.contains(&trunc) && m.contains("TCP") && m.contains("192.0.2.95")),
        "the answer over TCP: {yaml}"
    );
    assert!(
        asked
            .iter()
            .any(|m| m.contains(&trunc) && m.contains("socket_protocol: TCP")),
        "the query over TCP: {yaml}"
    );
}
