//! A hospital's own RPZ zone (tests/fixtures/rpz/hospital.rpz) as an `rpz`
//! feed: every record keeps its action, answered as BIND and Unbound
//! answer it (draft-vixie-dnsop-dns-rpz section 4), and the same zone
//! loaded into Unbound's rpz module, or into BIND 9 as a response-policy
//! zone, gives the same answers.
//!
//! schild recurses through the tests' hierarchy ([`hierarchy::get`]);
//! Unbound serves the same zones (zones/test/) as `auth-zone`s
//! `for-upstream`, BIND as primaries (`recursive-only no`), so the data
//! under the policy is the same on every side. Each case is asked of both
//! over real sockets, from 127.0.0.1 or (the quarantined workstation of
//! the zone's `rpz-client-ip` trigger) 127.0.0.2; compared: whether an
//! answer came, the rcode, TC, and the answer section as a set (owner,
//! type, data; TTLs aside: schild gives its `block_ttl`, the others the
//! zone's). A difference must be listed in [`UNBOUND_ACCEPTED`] or
//! [`BIND_ACCEPTED`] with its reason; one listed that does not happen
//! fails too.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::dns::tcp_raw;
use crate::harness::{Daemon, Schild, have, until};
use crate::hierarchy;
use crate::rpz::{free_port, named_options, unbound_server};

const FIXTURE: &str = include_str!("../fixtures/rpz/hospital.rpz");

/// The workstation the zone quarantines (`32.2.0.0.127.rpz-client-ip`).
const QUARANTINED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Udp,
    Tcp,
}

/// What a client sees: no answer, or the rcode, TC and the answer set.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Nothing,
    Answer {
        rcode: String,
        tc: bool,
        answers: BTreeSet<String>,
    },
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::Nothing => f.write_str("(no answer)"),
            Seen::Answer { rcode, tc, answers } => {
                write!(f, "{rcode}{}", if *tc { " TC" } else { "" })?;
                for a in answers {
                    write!(f, " [{a}]")?;
                }
                Ok(())
            }
        }
    }
}

fn answer(rcode: &str, answers: &[&str]) -> Seen {
    Seen::Answer {
        rcode: rcode.into(),
        tc: false,
        answers: answers.iter().map(|s| s.to_string()).collect(),
    }
}

/// One question and what BIND answers for it under the zone.
struct Case {
    what: &'static str,
    name: &'static str,
    qtype: RecordType,
    via: Via,
    from: Ipv4Addr,
    expect: fn() -> Seen,
}

const fn case(
    what: &'static str,
    name: &'static str,
    qtype: RecordType,
    expect: fn() -> Seen,
) -> Case {
    Case {
        what,
        name,
        qtype,
        via: Via::Udp,
        from: CLIENT,
        expect,
    }
}

const fn tcp(mut c: Case) -> Case {
    c.via = Via::Tcp;
    c
}

const fn from(mut c: Case, ip: Ipv4Addr) -> Case {
    c.from = ip;
    c
}

const A: RecordType = RecordType::A;

/// Every action of the zone, and the names around it that must pass.
const CASES: &[Case] = &[
    case("not listed", "www.example.test.", A, || {
        answer("NOERROR", &["www.example.test. A 192.0.2.80"])
    }),
    case("CNAME . (nxdomain)", "exact.example.test.", A, || {
        answer("NXDOMAIN", &[])
    }),
    case(
        "*. trigger (subdomain)",
        "sub.exact.example.test.",
        A,
        || answer("NXDOMAIN", &[]),
    ),
    case("CNAME *. (nodata)", "v4only.example.test.", A, || {
        answer("NOERROR", &[])
    }),
    case("rpz-drop.", "chain2.example.test.", A, || Seen::Nothing),
    case("CNAME to a dropped name", "chain1.example.test.", A, || {
        Seen::Nothing
    }),
    case("rpz-tcp-only. over UDP", "logged.example.test.", A, || {
        Seen::Answer {
            rcode: "NOERROR".into(),
            tc: true,
            answers: BTreeSet::new(),
        }
    }),
    tcp(case(
        "rpz-tcp-only. over TCP",
        "logged.example.test.",
        A,
        || answer("NOERROR", &["logged.example.test. A 192.0.2.90"]),
    )),
    case("walled garden CNAME", "cloaked.example.test.", A, || {
        answer(
            "NOERROR",
            &[
                "cloaked.example.test. CNAME www.example.test.",
                "www.example.test. A 192.0.2.80",
            ],
        )
    }),
    case("local data A", "late.example.test.", A, || {
        answer("NOERROR", &["late.example.test. A 192.0.2.200"])
    }),
    case(
        "local data AAAA",
        "late.example.test.",
        RecordType::AAAA,
        || answer("NOERROR", &["late.example.test. AAAA 2001:db8::200"]),
    ),
    case(
        "local data TXT",
        "late.example.test.",
        RecordType::TXT,
        || {
            answer(
                "NOERROR",
                &["late.example.test. TXT quarantined by IT security; call ext. 4444"],
            )
        },
    ),
    case(
        "local data, no record of the type (nodata)",
        "late.example.test.",
        RecordType::MX,
        || answer("NOERROR", &[]),
    ),
    case("*. local data", "pc7.guest.example.test.", A, || {
        answer("NOERROR", &["pc7.guest.example.test. A 192.0.2.201"])
    }),
    case(
        "*. is not the name itself",
        "guest.example.test.",
        A,
        || answer("NXDOMAIN", &[]),
    ),
    case("listed parent", "shady.example.test.", A, || {
        answer("NXDOMAIN", &[])
    }),
    case("listed parent, *.", "bad.shady.example.test.", A, || {
        answer("NXDOMAIN", &[])
    }),
    case(
        "rpz-passthru. exception",
        "ok.shady.example.test.",
        A,
        || answer("NOERROR", &["ok.shady.example.test. A 192.0.2.92"]),
    ),
    case("rpz-ip in the answer", "badip.example.test.", A, || {
        answer("NXDOMAIN", &[])
    }),
    from(
        case("rpz-client-ip", "www.example.test.", A, || {
            answer("NXDOMAIN", &[])
        }),
        QUARANTINED,
    ),
];

/// Differences from Unbound 1.17 that are not bugs of schild: (case,
/// reason).
const UNBOUND_ACCEPTED: &[(&str, &str)] = &[(
    "CNAME to a dropped name",
    "BIND applies QNAME triggers to every name of a CNAME chain (ARM, \
     response-policy: \"QNAME ... targets of CNAME records resolved to \
     generate the response\"), and so does schild (the handler checks each \
     CNAME target); Unbound 1.17 checks the query name only and answers \
     the chain chain1 -> chain2 -> www unrewritten",
)];

fn ask(server: SocketAddr, c: &Case) -> Seen {
    let mut m = Message::query();
    m.metadata.id = rand::random();
    m.metadata.recursion_desired = true;
    m.metadata.op_code = OpCode::Query;
    m.add_query(Query::query(
        Name::from_ascii(c.name).expect("name"),
        c.qtype,
    ));
    let bytes = m.to_vec().expect("encode");
    let reply = match c.via {
        Via::Tcp => tcp_raw(server, &bytes, Duration::from_secs(10)),
        Via::Udp => udp_from(c.from, server, &bytes),
    };
    let Some(reply) = reply else {
        return Seen::Nothing;
    };
    let m = Message::from_vec(&reply).expect("a well-formed answer");
    Seen::Answer {
        rcode: match m.metadata.response_code {
            ResponseCode::NoError => "NOERROR".into(),
            ResponseCode::NXDomain => "NXDOMAIN".into(),
            ResponseCode::ServFail => "SERVFAIL".into(),
            other => format!("{other:?}"),
        },
        tc: m.metadata.truncation,
        answers: m
            .answers
            .iter()
            .map(|r| {
                // Names compared case-insensitively (RFC 4343), text as is.
                let data = match &r.data {
                    hickory_proto::rr::RData::TXT(t) => t
                        .txt_data
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect::<Vec<_>>()
                        .join(""),
                    d => d.to_string().to_lowercase(),
                };
                format!("{} {} {data}", r.name.to_lowercase(), r.record_type())
            })
            .collect(),
    }
}

/// Ask over UDP from `src`; two tries (as a stub does), `None` if neither
/// is answered within its second.
fn udp_from(src: Ipv4Addr, server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind((IpAddr::V4(src), 0)).expect("bind client");
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let mut buf = vec![0u8; 65_535];
    for _ in 0..2 {
        s.send_to(bytes, server).expect("send");
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            if n >= 2 && buf[..2] == bytes[..2] {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

fn schild_config() -> String {
    format!(
        "{}dnssec = false\n\n[policy]\nblock_ttl_secs = 60\n\n[[feed]]\nname = \"hospital\"\ntype = \"rpz\"\nlocation = \"hospital.rpz\"\n",
        hierarchy::get().recursive_section()
    )
}

/// `stats` for the running schild's state.
fn stats(s: &Schild) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_schild"))
        .args(["stats", "--config"])
        .arg(s.dir.path().join("schild.toml"))
        .env("SCHILD_LOG", "warn")
        .output()
        .expect("run schild stats");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn table(rows: &[(String, Seen, Seen)]) -> String {
    let mut t = String::new();
    for (what, a, b) in rows {
        let _ = writeln!(t, "  {what}\n    schild:  {a}\n    expect:  {b}");
    }
    t
}

#[test]
fn each_rpz_action_answers_as_bind_does() {
    let s = Schild::start(&schild_config(), &[("hospital.rpz", FIXTURE)]);
    // Warm the recursion so the first case is not slower than the rest.
    until(Duration::from_secs(10), || {
        ask(s.dns, &CASES[0]) == (CASES[0].expect)()
    });
    let wrong: Vec<_> = CASES
        .iter()
        .map(|c| (c.what.to_string(), ask(s.dns, c), (c.expect)()))
        .filter(|(_, got, want)| got != want)
        .collect();
    assert!(
        wrong.is_empty(),
        "answers unlike BIND's:\n{}\n{}",
        table(&wrong),
        s.log()
    );
    // What schild cannot honour is counted, never guessed.
    let out = stats(&s);
    for needle in [
        "unsupported (rpz-nsdname): 1",
        "unsupported (rpz-nsip): 1",
        "1 passthru exceptions (allowlist entries), 1 client-ip triggers",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

fn unbound_conf(dir: &Path, port: u16) -> String {
    let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/test");
    let auth = [("example.test", "example.test.zone"), ("cdn.test", "cdn.test.zone")]
        .iter()
        .map(|(z, f)| {
            format!(
                "auth-zone:\n    name: \"{z}.\"\n    zonefile: \"{}\"\n    for-downstream: no\n    for-upstream: yes\n",
                zones.join(f).display()
            )
        })
        .collect::<String>();
    format!(
        r#"{server}rpz:
    name: "hospital.rpz."
    zonefile: "{dir}/hospital.rpz"
{auth}"#,
        server = unbound_server(
            dir,
            port,
            "    local-zone: \"test.\" nodefault\n    verbosity: 1\n"
        ),
        dir = dir.display(),
    )
}

#[test]
fn the_same_zone_in_unbound_gives_the_same_answers() {
    if !have("unbound") {
        return;
    }
    let s = Schild::start(&schild_config(), &[("hospital.rpz", FIXTURE)]);
    let dir = s.dir.path();
    let port = free_port();
    let conf = dir.join("unbound.conf");
    std::fs::write(&conf, unbound_conf(dir, port)).expect("conf");
    let ub = Daemon::start(
        Command::new("unbound").args(["-d", "-c", conf.to_str().expect("utf8")]),
        dir.join("unbound.log"),
    );
    let unbound = SocketAddr::from((CLIENT, port));
    assert!(
        until(Duration::from_secs(20), || ask(unbound, &CASES[0])
            == (CASES[0].expect)()),
        "unbound did not start answering:\n{}",
        ub.log()
    );
    agree(&s, unbound, "unbound", UNBOUND_ACCEPTED, &ub.log());
}

/// Ask every case of schild and of `peer`; fail on a difference not in
/// `accepted` and on an accepted one that did not happen.
fn agree(s: &Schild, peer: SocketAddr, who: &str, accepted: &[(&str, &str)], peer_log: &str) {
    let mut differ = Vec::new();
    for c in CASES {
        let (ours, theirs) = (ask(s.dns, c), ask(peer, c));
        if ours != theirs {
            differ.push((c.what.to_string(), ours, theirs));
        }
    }
    let unexplained: Vec<_> = differ
        .iter()
        .filter(|(what, ..)| !accepted.iter().any(|(a, _)| a == what))
        .cloned()
        .collect();
    let stale: Vec<_> = accepted
        .iter()
        .filter(|(a, _)| !differ.iter().any(|(what, ..)| what == a))
        .collect();
    eprintln!(
        "rpz actions vs {who}: {} cases, {} differences ({} accepted)",
        CASES.len(),
        differ.len(),
        differ.len() - unexplained.len()
    );
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "differences from {who} (schild, then {who}):\n{}\naccepted but not seen: {stale:?}\n{peer_log}",
        table(&unexplained).replace("expect:", "peer:  "),
    );
}

fn named_conf(dir: &Path, port: u16) -> String {
    let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/test");
    format!(
        r#"{options}controls {{ }};
zone "hospital.rpz" {{ type primary; file "{dir}/hospital.rpz"; }};
zone "example.test" {{ type primary; file "{zones}/example.test.zone"; }};
zone "cdn.test" {{ type primary; file "{zones}/cdn.test.zone"; }};
"#,
        options = named_options(dir, port, "zone \"hospital.rpz\" recursive-only no;"),
        dir = dir.display(),
        zones = zones.display(),
    )
}

/// Differences from BIND 9 (response-policy over the same zones served
/// as primaries): (case, reason).
const BIND_ACCEPTED: &[(&str, &str)] = &[];

#[test]
fn the_same_zone_in_bind_gives_the_same_answers() {
    if !have("named") {
        return;
    }
    let s = Schild::start(&schild_config(), &[("hospital.rpz", FIXTURE)]);
    let dir = s.dir.path();
    let port = free_port();
    let conf = dir.join("named.conf");
    std::fs::write(&conf, named_conf(dir, port)).expect("conf");
    let named = Daemon::start(
        Command::new("named").args(["-g", "-n", "1", "-4", "-c", conf.to_str().expect("utf8")]),
        dir.join("named.log"),
    );
    let bind = SocketAddr::from((CLIENT, port));
    assert!(
        until(Duration::from_secs(20), || ask(bind, &CASES[0])
            == (CASES[0].expect)()),
        "named did not start answering:\n{}",
        named.log()
    );
    agree(&s, bind, "bind", BIND_ACCEPTED, &named.log());
}
