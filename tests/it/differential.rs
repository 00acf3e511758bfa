//! The differential test of issue 11: schild's answers against Unbound's,
//! question by question, over one NSD-served hierarchy
//! ([`NsdHierarchy`], zones/test/differential/).
//!
//! Two pairs of resolvers are compared, each pair asked the same question
//! at the same moment:
//! - **recursive**: schild in recursive mode and an Unbound, both from the
//!   same root hints over the NSD hierarchy (port 53 of 127.53.N.x);
//! - **forward**: schild in forward mode and an Unbound forwarder, both
//!   forwarding to one third Unbound that recurses over the hierarchy.
//!   The same upstream for both, so every difference is the forwarder's.
//!
//! The questions about zones with a bad server (one answering REFUSED,
//! one silent, one where nothing listens: [`FALLBACK`]) are asked in
//! recursive mode only; the zone whose only server truncates every UDP
//! answer, and the lame delegation, in both. Where the two differ only by
//! a default, Unbound is set as schild is: `max-udp-size: 1232` (schild's
//! `edns_payload`), and test. resolved through the hierarchy instead of
//! answered from Unbound's special-use local zone.
//!
//! DNSSEC validation is off everywhere (schild `dnssec = false`, Unbound
//! `module-config: "iterator"`); sig.test. is signed only so that DNSSEC
//! records can be seen passing through.
//!
//! Every (name, type) of [`QUESTIONS`] is asked with every [`PROFILES`]
//! entry (UDP without EDNS, EDNS 512/1232/4096, TCP with and without EDNS,
//! DO, CD), plus unknown opcodes ([`OPCODE_PROFILES`]). Compared: the
//! rcode, the AA TC RA AD CD RD bits, the OPT record, the question as
//! echoed (0x20: byte for byte), the answer section (CNAME/DNAME chain in
//! order, the rest as a set; owner names and names in RDATA compared
//! case-insensitively, RFC 4343), in negative answers the SOA and its TTL,
//! and well-formedness on both sides: a strict walk of the raw message
//! (no trailing bytes, no forward compression pointers, one OPT in the
//! additional section, within the size the client allowed) and a full
//! parse by hickory-proto. TTLs may differ by [`TTL_SLACK`] seconds: the
//! two caches fill a moment apart.
//!
//! Every difference must be listed in tests/it/differential_accepted.toml:
//! either `[[accepted]]` with its RFC reason, or `[[expected_failure]]`,
//! a known bug of issue 11 (item N) that is still to be fixed. The test
//! fails on a difference listed in neither, and on an entry that matches
//! no difference any more (a fixed bug's entry must be removed). It prints
//! a summary on stderr (not captured), with the full table in
//! `$CARGO_TARGET_TMPDIR/differential-report.txt`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde::Deserialize;

use crate::dns::tcp_raw;
use crate::harness::{Daemon, Schild, have, until};
use crate::hierarchy::{self, NsdHierarchy, host};

/// How far two TTLs of one record may be apart, in seconds.
const TTL_SLACK: u32 = 3;
/// How long a client waits for one answer, over TCP, or over UDP in
/// [`UDP_TRIES`] sends of the same message (as dig does; schild gives up
/// on a silent server after about 5 s).
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);
const UDP_TRIES: u32 = 3;
/// Questions asked at once (each its own sequence of profiles).
const WORKERS: usize = 16;
/// All questions must be asked within this; the rest count as not run.
const TIME_BUDGET: Duration = Duration::from_secs(150);

const ACCEPTED_FILE: &str = "tests/it/differential_accepted.toml";

/// How one query is sent.
#[derive(Debug)]
struct Profile {
    name: &'static str,
    tcp: bool,
    /// The EDNS UDP payload size; `None`: no OPT record.
    edns: Option<u16>,
    dnssec_ok: bool,
    checking_disabled: bool,
    opcode: u8,
}

const fn profile(name: &'static str, tcp: bool, edns: Option<u16>) -> Profile {
    Profile {
        name,
        tcp,
        edns,
        dnssec_ok: false,
        checking_disabled: false,
        opcode: 0,
    }
}

const PROFILES: &[Profile] = &[
    profile("udp", false, None),
    profile("udp-edns512", false, Some(512)),
    profile("udp-edns1232", false, Some(1232)),
    profile("udp-edns4096", false, Some(4096)),
    profile("tcp", true, None),
    profile("tcp-edns1232", true, Some(1232)),
    Profile {
        dnssec_ok: true,
        ..profile("do", false, Some(1232))
    },
    Profile {
        checking_disabled: true,
        ..profile("cd", false, Some(1232))
    },
];

const fn opcode(name: &'static str, opcode: u8, edns_cd: bool) -> Profile {
    Profile {
        checking_disabled: edns_cd,
        opcode,
        ..profile(name, false, if edns_cd { Some(1232) } else { None })
    }
}

/// Obsolete IQUERY, STATUS, and two unassigned opcodes (ISC's genreport
/// `opcode` and `opcodeflg`).
const OPCODE_PROFILES: &[Profile] = &[
    opcode("opcode1", 1, false),
    opcode("opcode1-edns-cd", 1, true),
    opcode("opcode2", 2, false),
    opcode("opcode2-edns-cd", 2, true),
    opcode("opcode3", 3, false),
    opcode("opcode3-edns-cd", 3, true),
    opcode("opcode15", 15, false),
    opcode("opcode15-edns-cd", 15, true),
];

use RecordType::{A, AAAA, ANY, CAA, CNAME, DNAME, DNSKEY, DS, MX, NS, NSEC3PARAM, SOA, SRV, TXT};

/// What is asked, each with every profile. The zone files say what each
/// name is for.
const QUESTIONS: &[(&str, RecordType)] = &[
    // fallback: one good and one bad server (recursive mode only; see
    // [`FALLBACK`])
    ("www.silent1.d.test.", A),
    ("www.silent1.d.test.", AAAA),
    ("h1.silent1.d.test.", A),
    ("h2.silent1.d.test.", A),
    ("www.silent2.d.test.", A),
    ("www.silent2.d.test.", AAAA),
    ("h1.silent2.d.test.", A),
    ("h2.silent2.d.test.", A),
    ("www.unreach1.d.test.", A),
    ("www.unreach1.d.test.", AAAA),
    ("h1.unreach1.d.test.", A),
    ("h2.unreach1.d.test.", A),
    ("www.unreach2.d.test.", A),
    ("www.unreach2.d.test.", AAAA),
    ("h1.unreach2.d.test.", A),
    ("h2.unreach2.d.test.", A),
    ("www.refused1.d.test.", A),
    ("www.refused1.d.test.", AAAA),
    ("h1.refused1.d.test.", A),
    ("h2.refused1.d.test.", A),
    ("www.refused2.d.test.", A),
    ("www.refused2.d.test.", AAAA),
    ("h1.refused2.d.test.", A),
    ("h2.refused2.d.test.", A),
    // the only server truncates over UDP
    ("www.trunc.d.test.", A),
    ("www.trunc.d.test.", AAAA),
    ("trunc.d.test.", SOA),
    // a lame delegation (the server refuses the zone)
    ("www.lame.d.test.", A),
    ("lame.d.test.", SOA),
    // zone apex and plain data
    ("d.test.", SOA),
    ("d.test.", NS),
    ("d.test.", MX),
    ("d.test.", TXT),
    ("d.test.", A),
    ("www.d.test.", A),
    ("www.d.test.", AAAA),
    ("www.d.test.", MX),
    ("www.d.test.", TXT),
    ("www.d.test.", CAA),
    ("www.d.test.", ANY),
    ("multi.d.test.", A),
    ("v4only.d.test.", AAAA),
    ("caa.d.test.", CAA),
    ("mail.d.test.", A),
    ("nope.d.test.", A),
    ("nope.d.test.", AAAA),
    ("deeper.nope.d.test.", TXT),
    // CNAME chains
    ("c1.d.test.", A),
    ("c1.d.test.", AAAA),
    ("c1.d.test.", CNAME),
    ("c1.d.test.", TXT),
    ("c3.d.test.", A),
    ("cx.d.test.", A),
    ("cx.d.test.", AAAA),
    ("cxback.d.test.", A),
    ("cv4.d.test.", A),
    ("cv4.d.test.", AAAA),
    // CNAMEs to nowhere
    ("dangling.d.test.", A),
    ("dangling.d.test.", AAAA),
    ("dangling.d.test.", CNAME),
    ("danglingx.d.test.", A),
    ("danglingc.d.test.", A),
    // CNAME loops
    ("loop1.d.test.", A),
    ("loop2.d.test.", AAAA),
    ("self.d.test.", A),
    ("xloop.d.test.", A),
    // DNAME
    ("dn.d.test.", DNAME),
    ("dn.d.test.", A),
    ("www.dn.d.test.", A),
    ("www.dn.d.test.", AAAA),
    ("deep.er.dn.d.test.", A),
    ("back.dn.d.test.", A),
    ("nope.dn.d.test.", A),
    ("www.dnnx.d.test.", A),
    // wildcards
    ("foo.wild.d.test.", A),
    ("foo.wild.d.test.", TXT),
    ("foo.wild.d.test.", AAAA),
    ("a.b.wild.d.test.", A),
    ("host.wild.d.test.", A),
    ("host.wild.d.test.", TXT),
    ("*.wild.d.test.", A),
    ("any.wc.d.test.", A),
    ("any.wc.d.test.", AAAA),
    // empty non-terminals
    ("ent.d.test.", A),
    ("b.ent.d.test.", TXT),
    ("a.b.ent.d.test.", A),
    // services and text
    ("_sip._tcp.d.test.", SRV),
    ("_sip._udp.d.test.", SRV),
    ("txt.d.test.", TXT),
    ("longtxt.d.test.", TXT),
    // too large for 512 / 1232 bytes
    ("big512.d.test.", TXT),
    ("big1232.d.test.", TXT),
    ("bigA.d.test.", A),
    ("bigAAAA.d.test.", AAAA),
    // case
    ("mixed.d.test.", A),
    ("MIXED.D.TEST.", A),
    ("mIxEd.D.tEsT.", A),
    ("upper.d.test.", A),
    ("UpPeR.D.TeSt.", A),
    ("WWW.X.ALT.", A),
    ("camelcase.x.alt.", A),
    ("CAMELCASE.x.ALT.", A),
    // across zones and delegations
    ("www.x.alt.", A),
    ("x.alt.", SOA),
    ("www.sub.d.test.", A),
    ("up.sub.d.test.", A),
    ("nope.sub.d.test.", A),
    ("sub.d.test.", NS),
    ("sub.d.test.", SOA),
    ("sub.d.test.", DS),
    // the signed zone
    ("www.sig.test.", A),
    ("www.sig.test.", AAAA),
    ("nope.sig.test.", A),
    ("alias.sig.test.", A),
    ("foo.wild.sig.test.", A),
    ("sig.test.", SOA),
    ("sig.test.", DNSKEY),
    ("sig.test.", DS),
    ("sig.test.", NSEC3PARAM),
    // DNSSEC types of an unsigned zone
    ("d.test.", DNSKEY),
    ("d.test.", DS),
    ("d.test.", NSEC3PARAM),
    // TLDs and the root
    ("test.", SOA),
    ("alt.", NS),
    ("ns1.test.", A),
    ("nope.nonexistent.", A),
];

/// The question the unknown opcodes are sent with.
const OPCODE_QUESTION: (&str, RecordType) = ("www.d.test.", A);

/// One resolver of each kind, in one mode.
struct Pair {
    mode: &'static str,
    schild: SocketAddr,
    unbound: SocketAddr,
}

/// A question, a profile and what each resolver answered (`None`: no
/// answer in [`QUERY_TIMEOUT`]).
struct Outcome {
    /// (job, step): the order of the plan, for the report.
    seq: (usize, usize),
    mode: &'static str,
    name: &'static str,
    qtype: RecordType,
    profile: &'static Profile,
    query: Vec<u8>,
    schild: Option<Vec<u8>>,
    unbound: Option<Vec<u8>>,
}

#[test]
fn schild_answers_as_unbound_does() {
    if !have("unbound") {
        return;
    }
    let reviewed = Reviewed::load();
    let Some(mut h) = NsdHierarchy::start() else {
        return;
    };
    let started = Instant::now();
    let upstream = Unbound::start(&h, "upstream", host::FREE + 2, None);
    let ub_rec = Unbound::start(&h, "recursive", host::FREE, None);
    let ub_fwd = Unbound::start(&h, "forward", host::FREE + 1, Some(upstream.addr));
    let schild_rec = Schild::start(&h.recursive_section(), &[]);
    let schild_fwd = Schild::start(
        &format!(
            "[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = false\n",
            upstream.addr
        ),
        &[],
    );
    let pairs = [
        Pair {
            mode: "recursive",
            schild: schild_rec.dns,
            unbound: ub_rec.addr,
        },
        Pair {
            mode: "forward",
            schild: schild_fwd.dns,
            unbound: ub_fwd.addr,
        },
    ];
    let setup = started.elapsed();

    let jobs = plan(&pairs);
    let combinations: usize = jobs
        .iter()
        .map(|j| j.questions.len() * j.profiles.len())
        .sum();
    let (outcomes, not_run) = ask_all(&jobs);
    let asked = started.elapsed() - setup;
    let diffs: Vec<Diff> = outcomes.iter().flat_map(compare).collect();

    // A crashed peer would pass for a flood of differences.
    h.all_running()
        .unwrap_or_else(|log| panic!("an NSD exited during the test:\n{log}"));
    for (u, what) in [
        (&upstream, "upstream"),
        (&ub_rec, "recursive"),
        (&ub_fwd, "forward"),
    ] {
        u.assert_running(what);
    }
    for s in [&schild_rec, &schild_fwd] {
        assert_eq!(s.http("GET", "/health").0, 200, "schild died:\n{}", s.log());
    }

    let verdict = reviewed.judge(&diffs);
    let report = verdict.report(&Totals {
        combinations,
        cases: outcomes.len(),
        not_run,
        setup,
        asked,
    });
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential-report.txt");
    std::fs::write(&path, &report.full).expect("write the report");
    // Straight to stderr: libtest captures only the print macros, and the
    // known bugs must be seen on every run.
    let _ = std::io::stderr()
        .write_all(format!("{}\n(full table: {})\n", report.summary, path.display()).as_bytes());
    assert!(
        verdict.ok() && not_run == 0,
        "the differential test failed (full table in {}):\n{}",
        path.display(),
        report.summary
    );
}

/// The zones with one bad server ([`host::REFUSED`], [`host::SILENT`],
/// [`host::UNREACHABLE`]). Their questions are asked in recursive mode
/// only (server selection is the recursor's; in forward mode they would
/// only time the upstream Unbound), and those of one zone one after the
/// other: Unbound 1.17 now and then leaves a query unanswered when several
/// cold lookups wait on the same bad server at once.
const FALLBACK: &[&str] = &[
    "silent1", "silent2", "unreach1", "unreach2", "refused1", "refused2",
];

/// The fallback zone of a question, if it is one.
fn fallback_zone(name: &str) -> Option<&'static str> {
    FALLBACK
        .iter()
        .find(|z| name.ends_with(&format!(".{z}.d.test.")))
        .copied()
}

/// Questions asked one after the other, each with every profile in order,
/// so the first profile meets a cold cache on both sides alike.
struct Job<'a> {
    pair: &'a Pair,
    questions: Vec<(&'static str, RecordType)>,
    profiles: &'static [Profile],
}

fn plan(pairs: &[Pair]) -> Vec<Job<'_>> {
    let mut jobs = Vec::new();
    for pair in pairs {
        let recursive = pair.mode == "recursive";
        if recursive {
            for zone in FALLBACK {
                jobs.push(Job {
                    pair,
                    questions: QUESTIONS
                        .iter()
                        .filter(|(n, _)| fallback_zone(n) == Some(zone))
                        .copied()
                        .collect(),
                    profiles: PROFILES,
                });
            }
        }
        for q in QUESTIONS.iter().filter(|(n, _)| fallback_zone(n).is_none()) {
            jobs.push(Job {
                pair,
                questions: vec![*q],
                profiles: PROFILES,
            });
        }
        jobs.push(Job {
            pair,
            questions: vec![OPCODE_QUESTION],
            profiles: OPCODE_PROFILES,
        });
    }
    jobs
}

/// Ask every job's questions; also how many queries were not asked for
/// lack of time.
fn ask_all(jobs: &[Job<'_>]) -> (Vec<Outcome>, usize) {
    let deadline = Instant::now() + TIME_BUDGET;
    let next = AtomicUsize::new(0);
    let not_run = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(j) else { break };
                    for (step, ((name, qtype), p)) in job
                        .questions
                        .iter()
                        .flat_map(|q| job.profiles.iter().map(move |p| (q, p)))
                        .enumerate()
                    {
                        if Instant::now() > deadline {
                            not_run.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let query = build_query(name, *qtype, p);
                        let (schild, unbound) = std::thread::scope(|s2| {
                            let other = s2.spawn(|| ask(job.pair.schild, &query, p));
                            let unbound = ask(job.pair.unbound, &query, p);
                            (other.join().expect("query thread"), unbound)
                        });
                        outcomes.lock().expect("outcomes").push(Outcome {
                            seq: (j, step),
                            mode: job.pair.mode,
                            name,
                            qtype: *qtype,
                            profile: p,
                            query,
                            schild,
                            unbound,
                        });
                    }
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().expect("outcomes");
    outcomes.sort_by_key(|o| o.seq);
    (outcomes, not_run.into_inner())
}

fn build_query(name: &str, qtype: RecordType, p: &Profile) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = p.checking_disabled;
    m.metadata.op_code = OpCode::from_u8(p.opcode);
    m.add_query(Query::query(
        Name::from_ascii(name).expect("question name"),
        qtype,
    ));
    if let Some(size) = p.edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        e.set_dnssec_ok(p.dnssec_ok);
        m.set_edns(e);
    }
    m.to_vec().expect("encode the query")
}

fn ask(server: SocketAddr, query: &[u8], p: &Profile) -> Option<Vec<u8>> {
    if p.tcp {
        return tcp_raw(server, query, QUERY_TIMEOUT);
    }
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
    socket.connect(server).expect("connect");
    socket
        .set_read_timeout(Some(QUERY_TIMEOUT / UDP_TRIES))
        .expect("timeout");
    let mut buf = vec![0u8; 65_535];
    for _ in 0..UDP_TRIES {
        socket.send(query).expect("send");
        let until = Instant::now() + QUERY_TIMEOUT / UDP_TRIES;
        while Instant::now() < until {
            match socket.recv(&mut buf) {
                Ok(n) if n >= 2 && buf[..2] == query[..2] => return Some(buf[..n].to_vec()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    None
}

/// An Unbound on port 53 of one address of the hierarchy's /24: recursive
/// from the NSD root, or forwarding everything to `forward_to`.
pub struct Unbound {
    pub addr: SocketAddr,
    daemon: Mutex<Daemon>,
}

impl Unbound {
    fn start(h: &NsdHierarchy, name: &str, host: u8, forward_to: Option<SocketAddr>) -> Unbound {
        Unbound::start_with(h, name, host, forward_to, "", "")
    }

    /// [`Unbound::start`] with lines added to `server:` (indented) and
    /// clauses after it (`forward-zone:`, `stub-zone:`).
    pub fn start_with(
        h: &NsdHierarchy,
        name: &str,
        host: u8,
        forward_to: Option<SocketAddr>,
        server_lines: &str,
        clauses: &str,
    ) -> Unbound {
        Unbound::start_at(
            h.ip(host),
            h.dir.path(),
            &h.hints,
            name,
            forward_to,
            "module-config: \"iterator\"",
            server_lines,
            clauses,
        )
    }

    /// An Unbound on port 53 of `ip`, its files in `parent/unbound-{name}`,
    /// with `extra` lines in its `server:` clause (one `module-config` at
    /// least), `server_lines` after them and `clauses` after `server:`.
    #[allow(clippy::too_many_arguments)]
    pub fn start_at(
        ip: Ipv4Addr,
        parent: &Path,
        hints: &Path,
        name: &str,
        forward_to: Option<SocketAddr>,
        extra: &str,
        server_lines: &str,
        clauses: &str,
    ) -> Unbound {
        let dir = parent.join(format!("unbound-{name}"));
        std::fs::create_dir_all(&dir).expect("mkdir unbound");
        let forward = forward_to
            .map(|up| {
                format!(
                    "forward-zone:\n    name: \".\"\n    forward-addr: {}@{}\n",
                    up.ip(),
                    up.port()
                )
            })
            .unwrap_or_default();
        let conf = format!(
            r#"server:
    interface: {ip}@53
    do-daemonize: no
    use-syslog: no
    logfile: ""
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    do-ip6: no
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    {extra}
    root-hints: "{hints}"
    # test. is special-use (RFC 6761) and Unbound answers it locally by
    # default; here it is the hierarchy's TLD.
    local-zone: "test." nodefault
    # As schild's server.edns_payload (1232); Unbound 1.17 would send up
    # to 4096 bytes to a client that allows them.
    max-udp-size: 1232
    verbosity: 1
{server_lines}
remote-control:
    control-enable: no
{forward}{clauses}"#,
            dir = dir.display(),
            hints = hints.display(),
            extra = extra.replace('\n', "\n    "),
        );
        let path = dir.join("unbound.conf");
        std::fs::write(&path, conf).expect("unbound.conf");
        let mut daemon = Daemon::start(
            Command::new("unbound").arg("-d").arg("-c").arg(&path),
            dir.join("unbound.log"),
        );
        let addr = SocketAddr::new(IpAddr::V4(ip), 53);
        let up = until(Duration::from_secs(20), || {
            !daemon.running() || hierarchy::answers(addr, ".")
        });
        assert!(
            up && daemon.running(),
            "unbound ({name}) did not come up:\n{}",
            daemon.log()
        );
        Unbound {
            addr,
            daemon: Mutex::new(daemon),
        }
    }

    pub fn assert_running(&self, what: &str) {
        let mut d = self.daemon.lock().expect("daemon");
        assert!(d.running(), "unbound ({what}) exited:\n{}", d.log());
    }
}

// ---------------------------------------------------------------------
// What an answer looks like, for comparison.

/// A record as compared: `key` is owner, type and RDATA (names
/// lower-cased), the TTL apart.
#[derive(Debug, Clone)]
struct Rr {
    key: String,
    ttl: u32,
    /// CNAME or DNAME: part of the chain, whose order matters.
    chain: bool,
    rtype: RecordType,
}

impl Rr {
    fn new(r: &Record) -> Rr {
        let rtype = r.record_type();
        let mut data = match &r.data {
            // hickory-proto 0.26 keeps DNAME RDATA as unknown bytes.
            RData::Unknown { rdata, .. } if rtype == RecordType::DNAME => {
                wire_name(&rdata.anything)
            }
            d => d.to_string(),
        };
        if matches!(
            rtype,
            RecordType::CNAME
                | RecordType::DNAME
                | RecordType::NS
                | RecordType::MX
                | RecordType::SRV
                | RecordType::SOA
                | RecordType::PTR
        ) {
            data = data.to_ascii_lowercase();
        }
        Rr {
            key: format!("{} {rtype} {data}", r.name.to_ascii().to_ascii_lowercase()),
            ttl: r.ttl,
            chain: matches!(rtype, RecordType::CNAME | RecordType::DNAME),
            rtype,
        }
    }
}

/// An uncompressed name in wire form, as text.
fn wire_name(b: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while let Some(&len) = b.get(at) {
        let len = usize::from(len);
        if len == 0 {
            return if out.is_empty() { ".".into() } else { out };
        }
        match b.get(at + 1..at + 1 + len) {
            Some(label) if len < 64 => {
                out.push_str(&String::from_utf8_lossy(label));
                out.push('.');
            }
            _ => break,
        }
        at += 1 + len;
    }
    format!("(not a plain name: {b:02x?})")
}

/// One side's answer, taken apart.
struct View {
    /// Header bits, rcode, OPT and question, as shown in the table.
    fields: BTreeMap<&'static str, String>,
    /// "ok" or what is wrong with the message.
    wellformed: String,
    /// `None`: hickory-proto cannot parse it.
    answer: Option<Vec<Rr>>,
    /// The first SOA in the authority section.
    soa: Option<Rr>,
    /// NXDOMAIN, or NOERROR without a record of the asked type.
    negative: bool,
}

/// The byte offsets a strict walk found: where the question ends.
struct Walk {
    question_end: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

/// Skip the name at `at`, checking labels and pointers (each pointer
/// must go back, so following them ends); the offset after it.
fn skip_name(b: &[u8], at: usize) -> Result<usize, String> {
    let mut pos = at;
    let mut end = None;
    let mut length = 0usize;
    loop {
        let len = usize::from(*b.get(pos).ok_or("a name runs past the end")?);
        match len & 0xC0 {
            0x00 if len == 0 => return Ok(end.unwrap_or(pos + 1)),
            0x00 => {
                length += len + 1;
                if length > 255 {
                    return Err("a name longer than 255 octets".into());
                }
                pos += 1 + len;
            }
            0xC0 => {
                let target = u16_at(b, pos).ok_or("a pointer runs past the end")? & 0x3FFF;
                if target >= pos {
                    return Err(format!("a compression pointer forward (at {pos})"));
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(format!("label type {len:#x} at {pos}")),
        }
    }
}

/// Walk the whole message: every count, name, and RDLENGTH must add up to
/// exactly its length.
fn strict_walk(b: &[u8]) -> Result<Walk, String> {
    if b.len() < 12 {
        return Err(format!("{} bytes, shorter than a header", b.len()));
    }
    let count = |i| u16_at(b, i).unwrap_or(0);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
        if at > b.len() {
            return Err("the question runs past the end".into());
        }
    }
    let question_end = at;
    let mut opts = 0;
    for (section, n) in [("answer", an), ("authority", ns), ("additional", ar)] {
        for _ in 0..n {
            let owner = at;
            at = skip_name(b, at)?;
            let rtype = u16_at(b, at).ok_or(format!("a record in {section} runs past the end"))?;
            let rdlen =
                u16_at(b, at + 8).ok_or(format!("a record in {section} runs past the end"))?;
            at += 10 + rdlen;
            if at > b.len() {
                return Err(format!("RDATA in {section} runs past the end"));
            }
            if rtype == 41 {
                opts += 1;
                if section != "additional" || b[owner] != 0 {
                    return Err(format!("an OPT record in {section} or not at the root"));
                }
            }
        }
    }
    if opts > 1 {
        return Err(format!("{opts} OPT records"));
    }
    if at != b.len() {
        return Err(format!(
            "{} trailing bytes after the last record",
            b.len() - at
        ));
    }
    Ok(Walk { question_end })
}

fn bit(b: &[u8], byte: usize, mask: u8) -> String {
    if b[byte] & mask != 0 { "1" } else { "0" }.into()
}

fn view(query: &[u8], reply: &[u8], qtype: RecordType, p: &Profile) -> View {
    let mut problems = Vec::new();
    let mut fields = BTreeMap::new();
    let walk = strict_walk(reply);
    if let Err(e) = &walk {
        problems.push(e.clone());
    }
    let parsed = Message::from_vec(reply);
    if let Err(e) = &parsed {
        problems.push(format!("hickory-proto cannot parse it: {e}"));
    }
    if reply.len() >= 12 {
        if reply[..2] != query[..2] {
            problems.push("another message id".into());
        }
        if reply[2] & 0x80 == 0 {
            problems.push("QR=0".into());
        }
        if (reply[2] ^ query[2]) & 0x78 != 0 {
            problems.push("another opcode".into());
        }
        for (name, byte, mask) in [
            ("aa", 2, 0x04),
            ("tc", 2, 0x02),
            ("rd", 2, 0x01),
            ("ra", 3, 0x80),
            ("ad", 3, 0x20),
            ("cd", 3, 0x10),
        ] {
            fields.insert(name, bit(reply, byte, mask));
        }
    }
    if !p.tcp {
        let limit = p.edns.map_or(512, |e| usize::from(e.max(512)));
        if reply.len() > limit {
            problems.push(format!(
                "{} bytes over UDP, the client allowed {limit}",
                reply.len()
            ));
        }
    }
    let low = reply.get(3).map_or(0, |b| b & 0x0F);
    let high = parsed
        .as_ref()
        .ok()
        .and_then(|m| m.edns.as_ref())
        .map_or(0, |e| e.rcode_high());
    let rcode = ResponseCode::from(high, low);
    fields.insert("rcode", format!("{rcode:?}"));
    fields.insert(
        "opt",
        match parsed.as_ref().map(|m| m.edns.as_ref()) {
            Ok(Some(e)) => format!(
                "v{} udp={} do={}",
                e.version(),
                e.max_payload(),
                u8::from(e.flags().dnssec_ok)
            ),
            Ok(None) => "none".into(),
            Err(_) => "?".into(),
        },
    );
    // The question is compared where the query had it, so a broken rest
    // of the message does not hide it.
    let asked = &query[12..strict_walk(query).expect("our own query").question_end];
    let question = match reply.get(12..12 + asked.len()) {
        _ if u16_at(reply, 4) == Some(0) => "absent",
        Some(q) if q == asked => "echoed",
        Some(q) if q.eq_ignore_ascii_case(asked) => "echoed, case changed",
        _ => "another question",
    };
    fields.insert("question", question.to_string());
    let answer = parsed
        .as_ref()
        .ok()
        .map(|m| m.answers.iter().map(Rr::new).collect::<Vec<_>>());
    let soa = parsed.as_ref().ok().and_then(|m| {
        m.authorities
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .map(Rr::new)
    });
    let positive = answer.as_ref().is_some_and(|a| {
        a.iter()
            .any(|r| r.rtype == qtype || (qtype == RecordType::ANY && !a.is_empty()))
    });
    let tc = reply.get(2).is_some_and(|b| b & 0x02 != 0);
    let negative = rcode == ResponseCode::NXDomain
        || (rcode == ResponseCode::NoError && !positive && !tc && answer.is_some());
    View {
        fields,
        wellformed: if problems.is_empty() {
            "ok".into()
        } else {
            problems.join("; ")
        },
        answer,
        soa,
        negative,
    }
}

// ---------------------------------------------------------------------
// Comparing.

/// One way in which schild's answer differs from Unbound's.
#[derive(Debug, Clone)]
struct Diff {
    mode: &'static str,
    name: &'static str,
    qtype: RecordType,
    profile: &'static str,
    field: &'static str,
    schild: String,
    unbound: String,
    /// TC=1 on either side.
    truncated: bool,
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn render(records: &[Rr]) -> String {
    if records.is_empty() {
        return "(empty)".into();
    }
    let mut out: Vec<String> = records
        .iter()
        .take(4)
        .map(|r| format!("{} {}", short(&r.key, 60), r.ttl))
        .collect();
    if records.len() > 4 {
        out.push(format!("+{} more", records.len() - 4));
    }
    out.join(" | ")
}

/// The chain in order, then the other records sorted.
fn canonical(records: &[Rr]) -> Vec<&Rr> {
    let mut rest: Vec<&Rr> = records.iter().filter(|r| !r.chain).collect();
    rest.sort_by(|a, b| a.key.cmp(&b.key));
    records.iter().filter(|r| r.chain).chain(rest).collect()
}

/// `Some(field)` if the two answer sections differ.
fn compare_answers(a: &[Rr], b: &[Rr]) -> Option<&'static str> {
    let (a, b) = (canonical(a), canonical(b));
    if a.len() != b.len() || a.iter().zip(&b).any(|(x, y)| x.key != y.key) {
        return Some("answer");
    }
    if a.iter()
        .zip(&b)
        .any(|(x, y)| x.ttl.abs_diff(y.ttl) > TTL_SLACK)
    {
        return Some("answer-ttl");
    }
    None
}

fn compare(o: &Outcome) -> Vec<Diff> {
    let tc = |r: &Option<Vec<u8>>| {
        r.as_ref()
            .is_some_and(|b| b.get(2).is_some_and(|x| x & 0x02 != 0))
    };
    let truncated = tc(&o.schild) || tc(&o.unbound);
    let mut out = Vec::new();
    let mut diff = |field: &'static str, schild: String, unbound: String| {
        out.push(Diff {
            mode: o.mode,
            name: o.name,
            qtype: o.qtype,
            profile: o.profile.name,
            field,
            schild,
            unbound,
            truncated,
        });
    };
    let (s, u) = match (&o.schild, &o.unbound) {
        (Some(s), Some(u)) => (
            view(&o.query, s, o.qtype, o.profile),
            view(&o.query, u, o.qtype, o.profile),
        ),
        (s, u) => {
            let say = |r: &Option<Vec<u8>>| match r {
                Some(b) => format!(
                    "answered {:?}",
                    ResponseCode::from_low(b.get(3).map_or(0, |x| x & 0x0F))
                ),
                None => "no answer".to_string(),
            };
            diff("answered", say(s), say(u));
            return out;
        }
    };
    if s.wellformed != "ok" || u.wellformed != "ok" {
        diff("wellformed", s.wellformed.clone(), u.wellformed.clone());
    }
    for (field, value) in &s.fields {
        let theirs = u.fields.get(field).cloned().unwrap_or_default();
        if *value != theirs {
            diff(field, value.clone(), theirs);
        }
    }
    // An empty answer says whether an SOA came with it.
    let shown = |v: &View, a: &[Rr]| match (&v.soa, a.is_empty()) {
        (Some(soa), true) => format!("(empty; SOA {})", soa.key.split(' ').next().unwrap_or("")),
        (None, true) => "(empty; no SOA)".to_string(),
        _ => render(a),
    };
    match (&s.answer, &u.answer) {
        (Some(a), Some(b)) => {
            if let Some(field) = compare_answers(a, b) {
                diff(field, shown(&s, a), shown(&u, b));
            }
        }
        (None, None) => {}
        (a, b) => {
            let r = |x: &Option<Vec<Rr>>| x.as_deref().map_or("(unparseable)".into(), render);
            diff("answer", r(a), r(b));
        }
    }
    if s.negative && u.negative {
        let r = |x: &Option<Rr>| {
            x.as_ref()
                .map_or("(no SOA)".into(), |r| render(std::slice::from_ref(r)))
        };
        match (&s.soa, &u.soa) {
            (Some(a), Some(b)) if a.key == b.key => {
                if a.ttl.abs_diff(b.ttl) > TTL_SLACK {
                    diff("soa-ttl", a.ttl.to_string(), b.ttl.to_string());
                }
            }
            (None, None) => {}
            (a, b) => diff("soa", r(a), r(b)),
        }
    }
    out
}

// ---------------------------------------------------------------------
// The reviewed file of differences.

/// tests/it/differential_accepted.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reviewed {
    #[serde(default)]
    accepted: Vec<Entry>,
    #[serde(default)]
    expected_failure: Vec<Entry>,
}

/// Which differences an entry covers. Each pattern is `|`-separated
/// alternatives with `*` wildcards, matched case-insensitively.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default = "any")]
    mode: String,
    #[serde(default = "any")]
    name: String,
    #[serde(default = "any")]
    qtype: String,
    #[serde(default = "any")]
    profile: String,
    #[serde(default = "any")]
    field: String,
    /// Only answers with TC=1 (on either side), or only those without.
    truncated: Option<bool>,
    /// expected_failure only: the item of issue 11.
    item: Option<u8>,
    reason: String,
}

fn any() -> String {
    "*".into()
}

/// `*` matches any run of characters; case-insensitive.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((c, rest)) => t
                .split_first()
                .is_some_and(|(d, t)| c.eq_ignore_ascii_case(d) && go(rest, t)),
        }
    }
    pattern
        .split('|')
        .any(|alt| go(alt.trim().as_bytes(), text.as_bytes()))
}

impl Entry {
    fn matches(&self, d: &Diff) -> bool {
        glob(&self.mode, d.mode)
            && glob(&self.name, d.name)
            && glob(&self.qtype, &d.qtype.to_string())
            && glob(&self.profile, d.profile)
            && glob(&self.field, d.field)
            && self.truncated.is_none_or(|t| t == d.truncated)
    }

    fn describe(&self) -> String {
        let tc = match self.truncated {
            Some(t) => format!(" truncated={t}"),
            None => String::new(),
        };
        format!(
            "mode={} name={} qtype={} profile={} field={}{tc}",
            self.mode, self.name, self.qtype, self.profile, self.field
        )
    }
}

impl Reviewed {
    fn load() -> Reviewed {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(ACCEPTED_FILE);
        let text = std::fs::read_to_string(&path).expect("read the accepted differences");
        let r: Reviewed = toml::from_str(&text).unwrap_or_else(|e| panic!("{ACCEPTED_FILE}: {e}"));
        for e in &r.accepted {
            assert!(
                e.item.is_none() && e.reason.contains("RFC"),
                "{ACCEPTED_FILE}: an accepted difference names its RFC reason and no issue item: {}",
                e.describe()
            );
        }
        for e in &r.expected_failure {
            assert!(
                e.item.is_some_and(|i| (1..=9).contains(&i)) && !e.reason.trim().is_empty(),
                "{ACCEPTED_FILE}: an expected failure names its item of issue 11 (1-9) and what is wrong: {}",
                e.describe()
            );
        }
        r
    }

    fn judge<'a>(&'a self, diffs: &'a [Diff]) -> Verdict<'a> {
        let mut v = Verdict {
            reviewed: self,
            accepted: vec![Vec::new(); self.accepted.len()],
            known: vec![Vec::new(); self.expected_failure.len()],
            new: Vec::new(),
            counts: [0; 3],
        };
        for d in diffs {
            let acc: Vec<usize> = (0..self.accepted.len())
                .filter(|&i| self.accepted[i].matches(d))
                .collect();
            let known: Vec<usize> = (0..self.expected_failure.len())
                .filter(|&i| self.expected_failure[i].matches(d))
                .collect();
            // Every entry that matches is still needed; the first counts it.
            for &i in &acc {
                v.accepted[i].push(d);
            }
            if acc.is_empty() {
                for &i in &known {
                    v.known[i].push(d);
                }
            }
            if acc.is_empty() && known.is_empty() {
                v.new.push(d);
            }
            v.counts[if !acc.is_empty() {
                0
            } else if !known.is_empty() {
                1
            } else {
                2
            }] += 1;
        }
        v
    }
}

struct Verdict<'a> {
    reviewed: &'a Reviewed,
    /// The differences each entry covers.
    accepted: Vec<Vec<&'a Diff>>,
    known: Vec<Vec<&'a Diff>>,
    new: Vec<&'a Diff>,
    /// Differences accepted, known bugs, new (each counted once).
    counts: [usize; 3],
}

struct Totals {
    combinations: usize,
    cases: usize,
    not_run: usize,
    setup: Duration,
    asked: Duration,
}

struct Report {
    summary: String,
    full: String,
}

fn table(rows: &[&Diff], limit: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "    {:<9} {:<22} {:<10} {:<16} {:<11} {:<44} unbound",
        "mode", "name", "type", "profile", "field", "schild"
    );
    for d in rows.iter().take(limit) {
        let _ = writeln!(
            out,
            "    {:<9} {:<22} {:<10} {:<16} {:<11} {:<44} {}",
            d.mode,
            d.name,
            d.qtype.to_string(),
            d.profile,
            d.field,
            short(&d.schild, 44),
            short(&d.unbound, 120)
        );
    }
    if rows.len() > limit {
        let _ = writeln!(out, "    … and {} more", rows.len() - limit);
    }
    out
}

impl Verdict<'_> {
    fn stale(&self) -> impl Iterator<Item = (&'static str, &Entry)> {
        let acc = self
            .reviewed
            .accepted
            .iter()
            .zip(&self.accepted)
            .filter(|(_, d)| d.is_empty())
            .map(|(e, _)| ("accepted", e));
        let known = self
            .reviewed
            .expected_failure
            .iter()
            .zip(&self.known)
            .filter(|(_, d)| d.is_empty())
            .map(|(e, _)| ("expected_failure", e));
        acc.chain(known)
    }

    fn ok(&self) -> bool {
        self.new.is_empty() && self.stale().next().is_none()
    }

    fn report(&self, t: &Totals) -> Report {
        let [accepted, known, new] = self.counts;
        let mut head = String::new();
        let _ = writeln!(
            head,
            "differential test, schild against Unbound: {} (mode, name, type, flags) combinations, {} asked, {} not run; set-up {:.1} s, queries {:.1} s",
            t.combinations,
            t.cases,
            t.not_run,
            t.setup.as_secs_f64(),
            t.asked.as_secs_f64()
        );
        let _ = writeln!(
            head,
            "{} differences: {accepted} accepted, {known} KNOWN BUGS of issue 11, {new} NEW",
            accepted + known + new
        );
        let (mut summary, mut full) = (head.clone(), head);
        for (e, rows) in self.reviewed.expected_failure.iter().zip(&self.known) {
            let title = format!(
                "\nKNOWN BUG, issue 11 item {} — to be fixed, not accepted: {} ({} differences; {})\n",
                e.item.unwrap_or(0),
                e.reason.trim(),
                rows.len(),
                e.describe()
            );
            summary.push_str(&title);
            summary.push_str(&table(rows, 3));
            full.push_str(&title);
            full.push_str(&table(rows, usize::MAX));
        }
        for (e, rows) in self.reviewed.accepted.iter().zip(&self.accepted) {
            let title = format!(
                "\naccepted: {} ({} differences; {})\n",
                e.reason.trim(),
                rows.len(),
                e.describe()
            );
            summary.push_str(&title);
            full.push_str(&title);
            full.push_str(&table(rows, usize::MAX));
        }
        if !self.new.is_empty() {
            let title = format!(
                "\nNEW differences, in neither list of {ACCEPTED_FILE} ({}): fix them, or list them with their reason\n",
                self.new.len()
            );
            summary.push_str(&title);
            summary.push_str(&table(&self.new, 60));
            full.push_str(&title);
            full.push_str(&table(&self.new, usize::MAX));
        }
        for (list, e) in self.stale() {
            let line = format!(
                "\nremove this entry: [[{list}]] {} matches no difference any more ({})\n",
                e.describe(),
                e.reason.trim()
            );
            summary.push_str(&line);
            full.push_str(&line);
        }
        Report { summary, full }
    }
}

#[test]
fn the_strict_walk_finds_trailing_bytes_and_bad_pointers() {
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii("www.d.test.").expect("name"),
        RecordType::A,
    ));
    let good = q.to_vec().expect("encode");
    assert!(strict_walk(&good).is_ok());
    let mut junk = good.clone();
    junk.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        strict_walk(&junk).err().as_deref(),
        Some("3 trailing bytes after the last record")
    );
    // The question name as a pointer to itself.
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    assert!(strict_walk(&looped).is_err_and(|e| e.contains("forward")));
    assert!(glob("DS|DNSKEY", "dnskey") && glob("*.d.test.", "www.d.test."));
    assert!(!glob("www.*", "c1.d.test."));
}
