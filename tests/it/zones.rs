//! Zone routing (issue 12) through the real binary: a hospital's Active
//! Directory names go to its domain controller (NSD serving
//! corp.hospital.test. and 10.in-addr.arpa. on [`host::DC`]), a stub
//! zone to its authoritative servers (one refusing, then [`host::LAB`],
//! which delegates kids.lab.hospital.test. to [`host::LAB_CHILD`] and
//! has a CNAME out of the zone), local records and a
//! hosts file are answered here, private reverse names and special-use
//! names are answered locally, and everything else is resolved from the
//! NSD root of [`NsdHierarchy`]. The root delegates in-addr.arpa. and
//! invalid. to [`host::LEAK`], which counts what reaches it.
//!
//! The same questions go to an Unbound configured with forward-zone,
//! stub-zone, local-zone and local-data; the answers must agree in rcode,
//! AA, answer set and the SOA of negative answers. Accepted differences:
//! [`ACCEPTED`].

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::differential::Unbound;
use crate::dns;
use crate::harness::{Schild, have};
use crate::hierarchy::{NsdHierarchy, host};

const CORP_ZONE: &str = "$ORIGIN corp.hospital.test.
$TTL 3600
@                       IN SOA dc1 hostmaster 1 3600 600 86400 300
@                       IN NS  dc1
dc1                     IN A   10.0.0.10
_ldap._tcp.dc._msdcs    IN SRV 0 100 389 dc1.corp.hospital.test.
_kerberos._tcp          IN SRV 0 100 88 dc1.corp.hospital.test.
listed                  IN A   10.0.0.99
";

const TEN_ZONE: &str = "$ORIGIN 10.in-addr.arpa.
$TTL 3600
@          IN SOA dc1.corp.hospital.test. hostmaster.corp.hospital.test. 1 3600 600 86400 300
@          IN NS  dc1.corp.hospital.test.
10.0.0     IN PTR dc1.corp.hospital.test.
";

const LAB_ZONE: &str = "$ORIGIN lab.hospital.test.
$TTL 3600
@          IN SOA ns hostmaster 1 3600 600 86400 300
@          IN NS  ns
ns         IN A   127.53.0.41
analyser   IN A   10.0.5.20
; a child zone on a server of its own: followed by the stub zone's
; iteration (a forwarder of the stub server would get this referral)
kids       IN NS  ns.kids
ns.kids    IN A   127.53.0.42
; a name outside the stub zone: resolved by its own route
portal     IN CNAME www.sig.test.
";

const KIDS_ZONE: &str = "$ORIGIN kids.lab.hospital.test.
$TTL 3600
@          IN SOA ns hostmaster 1 3600 600 86400 300
@          IN NS  ns
ns         IN A   127.53.0.42
pump       IN A   10.0.5.30
";

const HOSTS: &str = "# the ward's devices\n10.0.9.20  mri.ward.hospital.test mri\n";

/// Answers every UDP query REFUSED and counts it; counts TCP connections.
struct Leak {
    seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Leak {
    fn start(ip: std::net::Ipv4Addr) -> Leak {
        let seen = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let udp = UdpSocket::bind((ip, 53)).expect("bind the leak server");
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let tcp = std::net::TcpListener::bind((ip, 53)).expect("bind the leak server (tcp)");
        tcp.set_nonblocking(true).expect("nonblocking");
        let (s1, st1) = (seen.clone(), stop.clone());
        let u = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !st1.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buf)
                    && n >= 12
                {
                    s1.fetch_add(1, Ordering::Relaxed);
                    buf[2] |= 0x80;
                    buf[3] = (buf[3] & 0xf0) | 5;
                    let _ = udp.send_to(&buf[..n], from);
                }
            }
        });
        let (s2, st2) = (seen.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            while !st2.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok(_) => {
                        s2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Leak {
            seen,
            stop,
            threads: vec![u, t],
        }
    }

    fn seen(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }
}

impl Drop for Leak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The questions of the scenario, with what schild must answer: the rcode
/// and a word that must appear in the answer section ("" for none).
const QUESTIONS: &[(&str, RecordType, ResponseCode, &str)] = &[
    // Active Directory, through the forward zone.
    (
        "_ldap._tcp.dc._msdcs.corp.hospital.test.",
        RecordType::SRV,
        ResponseCode::NoError,
        "dc1.corp.hospital.test.",
    ),
    (
        "dc1.corp.hospital.test.",
        RecordType::A,
        ResponseCode::NoError,
        "10.0.0.10",
    ),
    (
        "10.0.0.10.in-addr.arpa.",
        RecordType::PTR,
        ResponseCode::NoError,
        "dc1.corp.hospital.test.",
    ),
    (
        "nope.corp.hospital.test.",
        RecordType::A,
        ResponseCode::NXDomain,
        "",
    ),
    (
        "99.0.0.10.in-addr.arpa.",
        RecordType::PTR,
        ResponseCode::NXDomain,
        "",
    ),
    // A local record inside the forward zone wins over it.
    (
        "printer.corp.hospital.test.",
        RecordType::A,
        ResponseCode::NoError,
        "10.0.9.9",
    ),
    (
        "printer.corp.hospital.test.",
        RecordType::MX,
        ResponseCode::NoError,
        "",
    ),
    // The hosts file, its PTR inside the forwarded 10.in-addr.arpa.
    (
        "mri.ward.hospital.test.",
        RecordType::A,
        ResponseCode::NoError,
        "10.0.9.20",
    ),
    (
        "20.9.0.10.in-addr.arpa.",
        RecordType::PTR,
        ResponseCode::NoError,
        "mri.ward.hospital.test.",
    ),
    // The stub zone.
    (
        "analyser.lab.hospital.test.",
        RecordType::A,
        ResponseCode::NoError,
        "10.0.5.20",
    ),
    (
        "nope.lab.hospital.test.",
        RecordType::A,
        ResponseCode::NXDomain,
        "",
    ),
    // Below the stub zone, delegated to another server.
    (
        "pump.kids.lab.hospital.test.",
        RecordType::A,
        ResponseCode::NoError,
        "10.0.5.30",
    ),
    (
        "nope.kids.lab.hospital.test.",
        RecordType::A,
        ResponseCode::NXDomain,
        "",
    ),
    // A CNAME out of the stub zone, to a name the root leads to.
    (
        "portal.lab.hospital.test.",
        RecordType::A,
        ResponseCode::NoError,
        "192.0.2.100",
    ),
    // Default local zones: answered here, never sent up.
    (
        "1.2.168.192.in-addr.arpa.",
        RecordType::PTR,
        ResponseCode::NXDomain,
        "",
    ),
    (
        "5.1.16.172.in-addr.arpa.",
        RecordType::PTR,
        ResponseCode::NXDomain,
        "",
    ),
    ("foo.invalid.", RecordType::A, ResponseCode::NXDomain, ""),
    (
        "invalid.",
        RecordType::SOA,
        ResponseCode::NoError,
        "localhost.",
    ),
    (
        "168.192.in-addr.arpa.",
        RecordType::NS,
        ResponseCode::NoError,
        "localhost.",
    ),
    ("x.y.onion.", RecordType::A, ResponseCode::NXDomain, ""),
    (
        "printer.home.arpa.",
        RecordType::A,
        ResponseCode::NXDomain,
        "",
    ),
    (
        "localhost.",
        RecordType::A,
        ResponseCode::NoError,
        "127.0.0.1",
    ),
    (
        "db.localhost.",
        RecordType::AAAA,
        ResponseCode::NoError,
        "::1",
    ),
    ("db.localhost.", RecordType::MX, ResponseCode::NoError, ""),
    (
        "1.0.0.127.in-addr.arpa.",
        RecordType::PTR,
        ResponseCode::NoError,
        "localhost.",
    ),
    // first = true, its forwarders dead: resolved normally.
    (
        "www.d.test.",
        RecordType::A,
        ResponseCode::NoError,
        "192.0.2.1",
    ),
    // first = false, its forwarders dead: SERVFAIL, never recursed.
    ("www.x.alt.", RecordType::A, ResponseCode::ServFail, ""),
    // Everything else: recursion from the root.
    (
        "www.sig.test.",
        RecordType::A,
        ResponseCode::NoError,
        "192.0.2.100",
    ),
];

/// Differences from Unbound 1.17 that follow from the RFCs: none so far
/// beyond configuration (Unbound needs `local-zone: "10.in-addr.arpa."
/// nodefault` where schild lets the forward zone replace the default
/// zone on its own; that is configuration, not an answer).
const ACCEPTED: &[(&str, RecordType, &str)] = &[];

/// What is compared: rcode, AA, the answer set (owner, type, RDATA; no
/// TTLs) and the SOA of the authority section.
fn shape(m: &Message) -> String {
    let mut answers: Vec<String> = m
        .answers
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r.name.to_lowercase(),
                r.record_type(),
                r.data.to_string().to_lowercase()
            )
        })
        .collect();
    answers.sort();
    let soa: Vec<String> = m
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .map(|r| format!("{} {}", r.name.to_lowercase(), r.data))
        .collect();
    format!(
        "{} aa={} answers={answers:?} soa={soa:?}",
        m.metadata.response_code, m.metadata.authoritative
    )
}

fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    dns::udp_timeout(server, &dns::query(name, qtype), Duration::from_secs(15))
        .unwrap_or_else(|| panic!("{server}: no answer to {name} {qtype}"))
        .0
}

/// schild's configuration for the scenario (`zones`: with the forward
/// zones, or without them).
fn schild_config(h: &NsdHierarchy) -> String {
    let mut c = h.recursive_section();
    c.push_str("timeout_secs = 1\n\n");
    c.push_str(&zone_sections(h));
    c.push_str(
        "[local]\nnodefault = [\"test\"]\nrecords = [\"printer.corp.hospital.test. 300 IN A 10.0.9.9\", \"kiosk.ward.hospital.test. 300 IN A 10.0.9.30\"]\nhosts_files = [\"hosts\"]\n\n",
    );
    c.push_str("[[feed]]\nname = \"ioc\"\ntype = \"domains\"\nlocation = \"ioc.txt\"\n");
    c
}

/// The forward and stub zones of [`schild_config`].
fn zone_sections(h: &NsdHierarchy) -> String {
    let dc = h.ip(host::DC);
    let lab = h.ip(host::LAB);
    let dead = h.ip(host::UNREACHABLE);
    // The stub zone's first server refuses everything: the next is asked.
    let refused = h.ip(host::REFUSED);
    format!(
        "[[forward_zone]]\nname = \"corp.hospital.test\"\nupstreams = [\"{dc}\"]\ndnssec = false\n\n\
         [[forward_zone]]\nname = \"10.in-addr.arpa\"\nupstreams = [\"{dc}\"]\ndnssec = false\n\n\
         [[forward_zone]]\nname = \"d.test\"\nupstreams = [\"{dead}\"]\nfirst = true\n\n\
         [[forward_zone]]\nname = \"x.alt\"\nupstreams = [\"{dead}\"]\nfirst = false\n\n\
         [[stub_zone]]\nname = \"lab.hospital.test\"\nservers = [\"{refused}\", \"{lab}\"]\n\n"
    )
}

/// The IOC list: a name the domain controller serves, and a local record.
const IOC: &str = "listed.corp.hospital.test\nkiosk.ward.hospital.test\n";

fn unbound_config(h: &NsdHierarchy) -> (String, String) {
    let dc = h.ip(host::DC);
    let lab = h.ip(host::LAB);
    let dead = h.ip(host::UNREACHABLE);
    let refused = h.ip(host::REFUSED);
    let server = "    local-zone: \"10.in-addr.arpa.\" nodefault
    local-data: \"printer.corp.hospital.test. 300 IN A 10.0.9.9\"
    local-data: \"mri.ward.hospital.test. 3600 IN A 10.0.9.20\"
    local-data: \"mri. 3600 IN A 10.0.9.20\"
    local-data: \"20.9.0.10.in-addr.arpa. 3600 IN PTR mri.ward.hospital.test.\"
"
    .to_string();
    let clauses = format!(
        "forward-zone:\n    name: \"corp.hospital.test.\"\n    forward-addr: {dc}@53\n\
         forward-zone:\n    name: \"10.in-addr.arpa.\"\n    forward-addr: {dc}@53\n\
         forward-zone:\n    name: \"d.test.\"\n    forward-addr: {dead}@53\n    forward-first: yes\n\
         forward-zone:\n    name: \"x.alt.\"\n    forward-addr: {dead}@53\n    forward-first: no\n\
         stub-zone:\n    name: \"lab.hospital.test.\"\n    stub-addr: {refused}@53\n    stub-addr: {lab}@53\n"
    );
    (server, clauses)
}

#[test]
fn zones_route_as_configured_and_as_unbound_answers() {
    if !have("unbound") {
        return;
    }
    let Some(mut h) = NsdHierarchy::start() else {
        return;
    };
    let leak = Leak::start(h.ip(host::LEAK));
    h.serve(
        host::DC,
        &[
            ("corp.hospital.test.", "corp.hospital.test.zone", CORP_ZONE),
            ("10.in-addr.arpa.", "10.in-addr.arpa.zone", TEN_ZONE),
        ],
    );
    h.serve(
        host::LAB,
        &[("lab.hospital.test.", "lab.hospital.test.zone", LAB_ZONE)],
    );
    h.serve(
        host::LAB_CHILD,
        &[(
            "kids.lab.hospital.test.",
            "kids.lab.hospital.test.zone",
            KIDS_ZONE,
        )],
    );
    let files = [("hosts", HOSTS), ("ioc.txt", IOC)];
    let schild = Schild::start(&schild_config(&h), &files);
    let (server, clauses) = unbound_config(&h);
    let unbound = Unbound::start_with(&h, "zones", host::FREE + 3, None, &server, &clauses);

    let mut diffs = Vec::new();
    for (name, qtype, rcode, want) in QUESTIONS {
        let s = ask(schild.dns, name, *qtype);
        // Unbound takes its time over dead forwarders: ask until it
        // answers (a bounded wait, not a timed assertion).
        let u = crate::harness::poll(Duration::from_secs(90), || {
            dns::udp_timeout(
                unbound.addr,
                &dns::query(name, *qtype),
                Duration::from_secs(5),
            )
            .map(|(m, _)| m)
        })
        .unwrap_or_else(|| panic!("unbound: no answer to {name} {qtype}"));
        assert_eq!(
            s.metadata.response_code,
            *rcode,
            "schild: {name} {qtype}: {}\n{}",
            shape(&s),
            schild.log()
        );
        if !want.is_empty() {
            let text = format!(
                "{:?}",
                s.answers
                    .iter()
                    .map(|r| r.data.to_string())
                    .collect::<Vec<_>>()
            );
            assert!(
                text.contains(want),
                "schild: {name} {qtype}: {text} lacks {want}"
            );
        }
        // Every negative answer carries the SOA of its zone.
        if s.answers.is_empty() && *rcode != ResponseCode::ServFail {
            assert!(
                dns::soa_owner(&s).is_some() || *name == "printer.corp.hospital.test.",
                "schild: {name} {qtype}: no SOA: {}",
                shape(&s)
            );
        }
        let (ss, us) = (shape(&s), shape(&u));
        if ss != us && !ACCEPTED.iter().any(|(n, t, _)| n == name && t == qtype) {
            diffs.push(format!("{name} {qtype}\n  schild:  {ss}\n  unbound: {us}"));
        }
    }
    // The IOC policy applies whichever way the answer came: forwarded to
    // the domain controller, or local data. (The name exists there.)
    let m = ask(unbound.addr, "listed.corp.hospital.test.", RecordType::A);
    assert_eq!(dns::addresses(&m), ["10.0.0.99"]);
    for name in ["listed.corp.hospital.test.", "kiosk.ward.hospital.test."] {
        let m = ask(schild.dns, name, RecordType::A);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}: {}",
            shape(&m)
        );
        assert_eq!(dns::ede(&m).map(|e| e.0), Some(15), "{name}: {m:?}");
    }
    // first = false: the EDE says why (22, No Reachable Authority).
    let m = ask(schild.dns, "other.x.alt.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(dns::ede(&m).map(|e| e.0), Some(22), "{m:?}");
    assert_eq!(
        leak.seen(),
        0,
        "a locally served name reached the internet's servers"
    );
    unbound.assert_running("zones");
    h.all_running()
        .unwrap_or_else(|log| panic!("an NSD exited during the test:\n{log}"));
    assert!(
        diffs.is_empty(),
        "schild and Unbound differ:\n{}",
        diffs.join("\n")
    );

    // The routes are counted by the names in the configuration.
    for route in [
        "corp.hospital.test.",
        "lab.hospital.test.",
        "local",
        "recursive",
        "x.alt.",
    ] {
        let n = schild
            .metric(&format!("schild_route_queries_total{{route=\"{route}\"}}"))
            .unwrap_or(0.0);
        assert!(n >= 1.0, "route {route} counted {n}");
    }

    // `schild check` names the route.
    let config = schild.path("schild.toml");
    for (name, says) in [
        ("dc1.corp.hospital.test", "forward_zone corp.hospital.test."),
        ("printer.corp.hospital.test", "local record"),
        (
            "1.2.168.192.in-addr.arpa",
            "local zone 168.192.in-addr.arpa.",
        ),
        ("analyser.lab.hospital.test", "stub_zone lab.hospital.test."),
        ("www.example.com", "route: recursive"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_schild"))
            .args(["check", "--config"])
            .arg(&config)
            .arg(name)
            .output()
            .expect("run schild check");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(says), "check {name}: {text}");
    }

    // Without the zones (SIGHUP re-reads the file), the AD names fail as
    // they did before: the test root knows no hospital.test., and
    // 10.in-addr.arpa. is a default local zone again.
    let text = std::fs::read_to_string(&config).expect("config");
    let zones = zone_sections(&h);
    assert!(text.contains(&zones));
    std::fs::write(&config, text.replace(&zones, "")).expect("config");
    let ok = Command::new("kill")
        .args(["-HUP", &schild.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let m = crate::harness::wait_until("the zones are gone", Duration::from_secs(20), || {
        let m = ask(
            schild.dns,
            "_ldap._tcp.dc._msdcs.corp.hospital.test.",
            RecordType::SRV,
        );
        (m.metadata.response_code == ResponseCode::NXDomain).then_some(m)
    });
    assert!(m.answers.is_empty(), "{}", shape(&m));
    let m = ask(schild.dns, "10.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "{}",
        shape(&m)
    );
    assert_eq!(dns::soa_owner(&m).as_deref(), Some("10.in-addr.arpa."));
    assert!(
        !m.answers.iter().any(|r| matches!(r.data, RData::PTR(_))),
        "{}",
        shape(&m)
    );
    // The local data stays.
    let m = ask(schild.dns, "printer.corp.hospital.test.", RecordType::A);
    assert_eq!(dns::addresses(&m), ["10.0.9.9"]);
    drop(schild);
    assert_eq!(
        leak.seen(),
        0,
        "a locally served name reached the internet's servers"
    );

    // And the leak server does see what is not served locally: the check
    // above could fail.
    let open = Schild::start(
        &format!(
            "{}timeout_secs = 1\n\n[local]\nzones = false\n",
            h.recursive_section()
        ),
        &[],
    );
    let _ = dns::udp_timeout(
        open.dns,
        &dns::query("1.2.168.192.in-addr.arpa.", RecordType::PTR),
        Duration::from_secs(15),
    );
    assert!(
        crate::harness::until(Duration::from_secs(10), || leak.seen() > 0),
        "with local.zones = false the private reverse name goes to the root's delegation"
    );
}

/// The AD names with validation on: `resolver.dnssec = true` and the
/// signed test root of tests/it/dnssec.rs as the trust anchor. The
/// domain controller's zones are unsigned and nothing delegates them
/// (the signed `test.` proves hospital.test. does not exist), so only
/// the forward zone (`dnssec = false`) reaches them: NOERROR, no AD, the
/// data of the zone. Without the forward zones the same names fail as
/// the signed root says (NXDOMAIN with its NSEC proof), and the PTR is answered by
/// the default local zone 10.in-addr.arpa.
#[test]
fn ad_names_resolve_through_the_forward_zone_under_a_signed_root() {
    let Some(mut h) = crate::dnssec::Signed::start() else {
        return;
    };
    h.serve(
        host::DC,
        &[
            ("corp.hospital.test.", "corp.hospital.test.zone", CORP_ZONE),
            ("10.in-addr.arpa.", "10.in-addr.arpa.zone", TEN_ZONE),
        ],
    );
    let dc = h.ip(host::DC);
    let dead = h.ip(host::UNREACHABLE);
    let resolver = format!(
        "[resolver]\nmode = \"recursive\"\nroot_hints = \"{}\"\nallow_servers = [\"127.0.0.0/8\"]\ndnssec = true\ntrust_anchor_file = \"{}\"\ntimeout_secs = 2\n\n",
        h.hints.display(),
        h.anchor.display()
    );
    let zones = format!(
        "[[forward_zone]]\nname = \"corp.hospital.test\"\nupstreams = [\"{dc}\"]\ndnssec = false\n\n\
         [[forward_zone]]\nname = \"10.in-addr.arpa\"\nupstreams = [\"{dc}\"]\ndnssec = false\n\n\
         [[forward_zone]]\nname = \"bogus.test\"\nupstreams = [\"{dead}\"]\nfirst = true\ndnssec = false\n\n"
    );
    // test. is the signed hierarchy's TLD here, not a default local zone.
    let local = "[local]\nnodefault = [\"test\"]\n";
    let with = Schild::start(&format!("{resolver}{zones}{local}"), &[]);
    let without = Schild::start(&format!("{resolver}{local}"), &[]);
    let ask_do = |server: SocketAddr, name: &str, qtype: RecordType| {
        let mut q = dns::query(name, qtype);
        if let Some(e) = q.edns.as_mut() {
            e.set_dnssec_ok(true);
        }
        dns::udp_timeout(server, &q, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{server}: no answer to {name} {qtype}"))
            .0
    };
    // Validation is on in both: a signed name of the test root is secure.
    for s in [&with, &without] {
        let m = ask_do(s.dns, "www.secure.test.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
        assert!(m.metadata.authentic_data, "validation is on: {m:?}");
    }
    let ad: &[(&str, RecordType, &str)] = &[
        (
            "_ldap._tcp.dc._msdcs.corp.hospital.test.",
            RecordType::SRV,
            "0 100 389 dc1.corp.hospital.test.",
        ),
        ("dc1.corp.hospital.test.", RecordType::A, "10.0.0.10"),
        (
            "10.0.0.10.in-addr.arpa.",
            RecordType::PTR,
            "dc1.corp.hospital.test.",
        ),
    ];
    for (name, qtype, data) in ad {
        let m = ask_do(with.dns, name, *qtype);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}: {}\n{}",
            shape(&m),
            with.log()
        );
        assert!(!m.metadata.authentic_data, "{name}: unsigned data, no AD");
        let got: Vec<String> = m
            .answers
            .iter()
            .filter(|r| r.record_type() == *qtype)
            .map(|r| r.data.to_string())
            .collect();
        assert_eq!(got, [*data], "{name} {qtype}: {}", shape(&m));
    }
    // A forward-first zone with dnssec = false whose server is dead falls
    // back to the recursor, which does not validate it either (as if in
    // domain_insecure): the tampered signature of bogus.test. is not
    // checked. Without the zone it is bogus.
    let m = ask_do(with.dns, "www.bogus.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert!(!m.metadata.authentic_data, "{m:?}");
    assert_eq!(dns::addresses(&m), ["192.0.2.3"]);
    let m = ask_do(without.dns, "www.bogus.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");

    // A name the domain controller does not have: its NXDOMAIN, unsigned.
    let m = ask_do(with.dns, "nope.corp.hospital.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
    assert!(!m.metadata.authentic_data, "{m:?}");
    assert_eq!(dns::soa_owner(&m).as_deref(), Some("corp.hospital.test."));

    // Without the forward zones: the signed test.'s NXDOMAIN with its
    // NSEC proof (schild sets no AD on it; hickory's recursor does not
    // mark a proven negative answer secure), and the default local zone for the private reverse name.
    for (name, qtype, _) in &ad[..2] {
        let m = ask_do(without.dns, name, *qtype);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "{name} {qtype}: {}",
            shape(&m)
        );
        assert!(m.answers.is_empty(), "{}", shape(&m));
        assert_eq!(dns::soa_owner(&m).as_deref(), Some("test."));
        assert!(
            m.authorities
                .iter()
                .any(|r| r.record_type() == RecordType::NSEC),
            "the signed test. proves it: {m:?}"
        );
    }
    let m = ask_do(without.dns, "10.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
    assert!(m.answers.is_empty(), "{}", shape(&m));
    assert_eq!(dns::soa_owner(&m).as_deref(), Some("10.in-addr.arpa."));
}
