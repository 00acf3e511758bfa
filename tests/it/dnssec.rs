//! DNSSEC validation against Unbound (issue 11, items 6 and 8): a signed
//! hierarchy made at test time with dnssec-keygen/dnssec-signzone and
//! served by NSD on port 53 of 127.53.N.x, a signed root whose KSK is the
//! trust anchor of both resolvers (schild's `resolver.trust_anchor_file`,
//! Unbound's `trust-anchor-file`), and under the signed `test.`:
//!
//! | zone       | what                                               |
//! |------------|----------------------------------------------------|
//! | `secure`   | signed, DS in test.: AD for DO clients             |
//! | `insecure` | unsigned, no DS: an insecure delegation            |
//! | `bogus`    | signed, the RRSIG of `www A` tampered              |
//! | `expired`  | signed with signatures that expired in 2020        |
//! | `dsnokey`  | DS in test., but the zone is served unsigned       |
//! | `nosig`    | signed, the RRSIG of `www A` removed               |
//! | `nta`      | like `bogus`, and in `domain_insecure` on both     |
//! | `wildnsec` | signed, the RRSIG of `*.wild NSEC` tampered: the   |
//! |            | wildcard answer's proof of no closer name is bogus |
//! | `nsec3`    | signed with NSEC3 (no salt, 0 iterations)          |
//!
//! Two pairs are compared: schild recursive against a validating Unbound
//! (both with `nta.test.` insecure), and schild forwarding against a
//! validating Unbound forwarder, both to one non-validating Unbound (the
//! trust anchor applies in both modes; `domain_insecure` is recursive only).
//! `www.<zone>.test. A` and `x.wild.<zone>.test. A` (from the zone's
//! `*.wild`, whose signatures and proofs are intact in every signed zone
//! but `expired` and `wildnsec`) are asked with DO, without DO, and with
//! DO and CD. Compared: the rcode, AD, whether the address came back, the
//! EDE info-code (RFC 8914), and whether an NSEC or NSEC3 came back in the
//! authority section (the proof a wildcard answer needs). Every difference
//! that remains is in [`KNOWN`] with its reason; the test fails on any
//! other, and on a known one that went away.
//!
//! With the root's DS (dnssec-dsfromkey) as the anchor instead of its
//! DNSKEY, schild answers every case as with the DNSKEY, in both modes;
//! a DS that matches no key stops it (exit 78).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::differential::Unbound;
use crate::dns::{addresses, ede, query, udp_timeout};
use crate::harness::{Daemon, Schild, have};
use crate::hierarchy::{pick_net, sign_zone_with, start_nsd_up};

const ROOT: u8 = 1;
const TLD: u8 = 2;
const CHILD: u8 = 4;
const UNBOUND: u8 = 100;

/// (zone label, last octet of www's address)
const CHILDREN: &[(&str, u8)] = &[
    ("secure", 1),
    ("insecure", 2),
    ("bogus", 3),
    ("expired", 4),
    ("dsnokey", 5),
    ("nosig", 6),
    ("nta", 7),
    ("wildnsec", 8),
    ("nsec3", 9),
];

/// How each question is asked: (name, DO, CD).
const PROFILES: &[(&str, bool, bool)] = &[
    ("do", true, false),
    ("plain", false, false),
    ("cd", true, true),
];

/// Differences between schild and Unbound that remain, each with its
/// reason: (mode, zone, profile, field, reason). `*` matches every zone
/// or profile.
const KNOWN: &[(&str, &str, &str, &str, &str)] = &[
    (
        "forward",
        "*",
        "cd",
        "ad",
        "With CD=1 the client validates for itself (RFC 4035 3.2.2): schild's forwarder passes the question on with CD=1 and hands over the data without validating it, so it does not vouch for it with AD; Unbound validates anyway and sets AD for secure data (www.secure, and x.wild in every signed zone whose wildcard is intact), which RFC 6840 5.9 allows but does not require. The data and rcode agree.",
    ),
    (
        "forward",
        "dsnokey",
        "do",
        "ede",
        "As in recursive mode: Unbound says 9 (DNSKEY Missing), schild sees data without signatures and says 10 (RRSIGs Missing), true as well.",
    ),
    (
        "forward",
        "expired",
        "plain",
        "ede",
        "As in recursive mode: Unbound answers from the bogus message its cache kept from the DO=1 query, with the generic 6; schild judges the signatures again and says 7 (Signature Expired).",
    ),
    (
        "recursive",
        "expired",
        "plain",
        "ede",
        "Unbound answers from the bogus message its cache kept from the DO=1 query, with the generic 6; schild judges the signatures again and says 7 (Signature Expired). Both are RFC 8914 codes for the same SERVFAIL.",
    ),
    (
        "recursive",
        "dsnokey",
        "do",
        "ede",
        "Unbound says 9 (DNSKEY Missing): its fetch of the child's DNSKEY found none. hickory 0.26 marks the answer bogus without a reason, and schild sees only data without signatures: 10 (RRSIGs Missing), true as well.",
    ),
];

/// What one resolver said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    rcode: ResponseCode,
    ad: bool,
    data: bool,
    ede: Option<u16>,
    /// An NSEC or NSEC3 in the authority section: a wildcard answer's proof that
    /// no closer name exists, which a validator behind the resolver needs
    /// (RFC 4035 3.1.3.3).
    nsec: bool,
}

fn ask(server: SocketAddr, name: &str, dnssec_ok: bool, cd: bool) -> Option<Seen> {
    let mut q = query(name, RecordType::A);
    q.metadata.checking_disabled = cd;
    if let Some(e) = q.edns.as_mut() {
        e.set_dnssec_ok(dnssec_ok);
    }
    let (m, _): (Message, usize) = udp_timeout(server, &q, Duration::from_secs(12))?;
    Some(Seen {
        rcode: m.metadata.response_code,
        ad: m.metadata.authentic_data,
        data: !addresses(&m).is_empty(),
        ede: ede(&m).map(|(c, _)| c),
        nsec: m
            .authorities
            .iter()
            .any(|r| matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3)),
    })
}

/// Replace a character of the signature of `owner`'s RRSIG over `rtype`
/// in a signed zone file (one record a line), or remove that RRSIG.
fn tamper(file: &Path, owner: &str, rtype: &str, remove: bool) {
    let text = std::fs::read_to_string(file).expect("signed zone");
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let hit =
                w.first() == Some(&owner) && w.get(3) == Some(&"RRSIG") && w.get(4) == Some(&rtype);
            if !hit {
                return Some(l.to_string());
            }
            done = true;
            if remove {
                return None;
            }
            // Fields: owner ttl IN RRSIG A alg labels ttl exp inc tag signer sig...
            let mut w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            let sig = &mut w[12];
            let c = sig.as_bytes()[5];
            let to = if c == b'A' { "B" } else { "A" };
            sig.replace_range(5..6, to);
            Some(w.join(" "))
        })
        .collect();
    assert!(done, "no RRSIG {rtype} for {owner} in {}", file.display());
    std::fs::write(file, lines.join("\n") + "\n").expect("write zone");
}

/// The signed hierarchy; NSDs stop on drop. Also the signed test root of
/// the zone routing test (tests/it/zones.rs), which adds its own servers
/// with [`Signed::serve`].
pub struct Signed {
    net: [u8; 3],
    /// Root hints naming the signed root.
    pub hints: std::path::PathBuf,
    /// The root's KSK (a DNSKEY record): `resolver.trust_anchor_file`.
    pub anchor: std::path::PathBuf,
    nsd: Vec<Daemon>,
    pub dir: tempfile::TempDir,
}

impl Signed {
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }

    /// Start one more NSD on `host` serving `zones` (origin, file name,
    /// text with 127.53.0.x addresses), unsigned, stopped with the
    /// hierarchy.
    pub fn serve(&mut self, host: u8, zones: &[(&str, &str, &str)]) {
        let dir = self.dir.path().join("zones");
        let prefix = format!("{}.{}.{}.", self.net[0], self.net[1], self.net[2]);
        for (_, file, text) in zones {
            std::fs::write(dir.join(file), text.replace("127.53.0.", &prefix)).expect("write zone");
        }
        let served: Vec<(&str, &str)> = zones.iter().map(|(o, f, _)| (*o, *f)).collect();
        let d = start_nsd_up(self.dir.path(), self.ip(host), &served);
        self.nsd.push(d);
    }

    /// `None` when a tool or the privilege for port 53 is missing outside
    /// CI (under CI=true that is a failure).
    pub fn start() -> Option<Signed> {
        if !["nsd", "dnssec-keygen", "dnssec-signzone"]
            .iter()
            .all(|t| have(t))
        {
            return None;
        }
        let net = pick_net()?;
        let ip = |h: u8| Ipv4Addr::new(net[0], net[1], net[2], h);
        let dir = tempfile::tempdir().expect("tempdir");
        let zones = dir.path().join("zones");
        std::fs::create_dir_all(&zones).expect("mkdir zones");
        let soa = |origin: &str| {
            format!(
                "$ORIGIN {origin}\n$TTL 300\n@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 60\n"
            )
        };
        let root = format!(
            "{}@ IN NS ns.nic.\nns.nic. IN A {}\ntest. IN NS ns.test.\nns.test. IN A {}\n",
            soa("."),
            ip(ROOT),
            ip(TLD)
        )
        .replace("ns.. hostmaster..", "ns.nic. hostmaster.nic.");
        std::fs::write(zones.join("root.zone"), root).expect("root zone");
        let mut tld = format!("{}@ IN NS ns\nns IN A {}\n", soa("test."), ip(TLD));
        for (z, _) in CHILDREN {
            tld.push_str(&format!("{z} IN NS ns.{z}\nns.{z} IN A {}\n", ip(CHILD)));
        }
        std::fs::write(zones.join("test.zone"), tld).expect("test zone");
        for (z, n) in CHILDREN {
            let origin = format!("{z}.test.");
            let text = format!(
                "{}@ IN NS ns\nns IN A {}\nwww IN A 192.0.2.{n}\n*.wild IN A 192.0.2.{n}\n",
                soa(&origin),
                ip(CHILD)
            );
            let file = format!("{z}.zone");
            std::fs::write(zones.join(&file), &text).expect("child zone");
            let www = format!("www.{origin}");
            match *z {
                "insecure" => {}
                "expired" => {
                    sign_zone_with(
                        &zones,
                        &origin,
                        &file,
                        Some("test.zone"),
                        &["-P", "-s", "20200101000000", "-e", "20200201000000"],
                    );
                }
                "dsnokey" => {
                    sign_zone_with(&zones, &origin, &file, Some("test.zone"), &[]);
                    std::fs::write(zones.join(&file), &text).expect("unsigned again");
                }
                "bogus" | "nta" => {
                    sign_zone_with(&zones, &origin, &file, Some("test.zone"), &[]);
                    tamper(&zones.join(&file), &www, "A", false);
                }
                "nosig" => {
                    sign_zone_with(&zones, &origin, &file, Some("test.zone"), &[]);
                    tamper(&zones.join(&file), &www, "A", true);
                }
                "nsec3" => {
                    let nsec3 = ["-3", "-", "-H", "0"];
                    sign_zone_with(&zones, &origin, &file, Some("test.zone"), &nsec3);
                }
                "wildnsec" => {
                    sign_zone_with(&zones, &origin, &file, Some("test.zone"), &[]);
                    tamper(
                        &zones.join(&file),
                        &format!("*.wild.{origin}"),
                        "NSEC",
                        false,
                    );
                }
                _ => {
                    sign_zone_with(&zones, &origin, &file, Some("test.zone"), &[]);
                }
            }
        }
        sign_zone_with(&zones, "test.", "test.zone", Some("root.zone"), &[]);
        let anchor = sign_zone_with(&zones, ".", "root.zone", None, &[]);
        let children: Vec<(String, String)> = CHILDREN
            .iter()
            .map(|(z, _)| (format!("{z}.test."), format!("{z}.zone")))
            .collect();
        let children: Vec<(&str, &str)> = children
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let servers: Vec<(u8, Vec<(&str, &str)>)> = vec![
            (ROOT, vec![(".", "root.zone")]),
            (TLD, vec![("test.", "test.zone")]),
            (CHILD, children),
        ];
        let nsd = servers
            .iter()
            .map(|(h, served)| start_nsd_up(dir.path(), ip(*h), served))
            .collect();
        let hints = dir.path().join("root.hints");
        std::fs::write(
            &hints,
            format!(
                ".  3600000  NS  ns.nic.\nns.nic.  3600000  A  {}\n",
                ip(ROOT)
            ),
        )
        .expect("hints");
        Some(Signed {
            net,
            hints,
            anchor,
            nsd,
            dir,
        })
    }
}

#[test]
fn validation_agrees_with_unbound() {
    if !have("unbound")
        || !["nsd", "dnssec-keygen", "dnssec-signzone"]
            .iter()
            .all(|t| have(t))
    {
        return;
    }
    let Some(h) = Signed::start() else {
        return;
    };
    let anchor = format!(
        "trust-anchor-file: \"{}\"\nede: yes\nval-log-level: 2",
        h.anchor.display()
    );
    let unbound = Unbound::start_at(
        h.ip(UNBOUND),
        h.dir.path(),
        &h.hints,
        "validator",
        None,
        &format!("module-config: \"validator iterator\"\ndomain-insecure: \"nta.test.\"\n{anchor}"),
        "",
        "",
    );
    // Forward mode: schild and a validating Unbound forwarder, both to one
    // non-validating Unbound (so every difference is the forwarder's).
    // domain_insecure is for recursive mode: nta.test. is plain bogus here.
    let upstream = Unbound::start_at(
        h.ip(UNBOUND + 1),
        h.dir.path(),
        &h.hints,
        "upstream",
        None,
        "module-config: \"iterator\"",
        "",
        "",
    );
    let unbound_fwd = Unbound::start_at(
        h.ip(UNBOUND + 2),
        h.dir.path(),
        &h.hints,
        "forwarder",
        Some(upstream.addr),
        &format!("module-config: \"validator iterator\"\n{anchor}"),
        "",
        "",
    );
    let schild = Schild::start(
        &format!(
            "[resolver]\nmode = \"recursive\"\nroot_hints = \"{}\"\nallow_servers = [\"127.0.0.0/8\"]\ndnssec = true\ntrust_anchor_file = \"{}\"\ndomain_insecure = [\"nta.test\"]\n",
            h.hints.display(),
            h.anchor.display()
        ),
        &[],
    );
    let schild_fwd = Schild::start(
        &format!(
            "[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = true\ntrust_anchor_file = \"{}\"\n",
            upstream.addr,
            h.anchor.display()
        ),
        &[],
    );
    let pairs = [
        ("recursive", schild.dns, unbound.addr),
        ("forward", schild_fwd.dns, unbound_fwd.addr),
    ];
    let mut table = String::new();
    let mut unexpected = Vec::new();
    let mut matched = vec![false; KNOWN.len()];
    for ((mode, schild_at, unbound_at), (z, _), (p, dnssec_ok, cd)) in pairs
        .iter()
        .flat_map(|pair| CHILDREN.iter().map(move |c| (pair, c)))
        .flat_map(|(pair, c)| PROFILES.iter().map(move |p| (pair, c, p)))
    {
        // A plain name and one synthesised from a wildcard (its proof of
        // non-existence of the closer name must validate too).
        for host in ["www", "x.wild"] {
            let name = format!("{host}.{z}.test.");
            let u = ask(*unbound_at, &name, *dnssec_ok, *cd);
            let s = ask(*schild_at, &name, *dnssec_ok, *cd);
            table.push_str(&format!(
                "{mode:9} {z:9} {p:6} {host:6} schild  {s:?}\n{:33} unbound {u:?}\n",
                ""
            ));
            let (Some(s), Some(u)) = (s, u) else {
                unexpected.push(format!("{mode} {z} {p} {host}: no answer"));
                continue;
            };
            let fields = [
                ("rcode", s.rcode != u.rcode),
                ("ad", s.ad != u.ad),
                ("data", s.data != u.data),
                ("ede", s.ede != u.ede),
                ("nsec", s.nsec != u.nsec),
            ];
            for (field, differs) in fields {
                if !differs {
                    continue;
                }
                match KNOWN.iter().position(|(km, kz, kp, kf, _)| {
                    km == mode && (*kz == "*" || kz == z) && (*kp == "*" || kp == p) && *kf == field
                }) {
                    Some(i) => matched[i] = true,
                    None => unexpected.push(format!("{mode} {z} {p} {field} ({host})")),
                }
            }
        }
    }
    for (u, what) in [
        (&unbound, "validator"),
        (&upstream, "upstream"),
        (&unbound_fwd, "forwarder"),
    ] {
        u.assert_running(what);
    }
    eprintln!("dnssec: schild and Unbound, www.<zone>.test. and x.wild.<zone>.test. A\n{table}");
    for ((m, z, p, f, reason), _) in KNOWN.iter().zip(&matched).filter(|(_, m)| **m) {
        eprintln!("known difference, {m} {z} {p} {f}: {reason}");
    }
    let stale: Vec<_> = KNOWN
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(k, _)| format!("{} {} {} {}", k.0, k.1, k.2, k.3))
        .collect();
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "differences not listed: {unexpected:?}; listed but gone: {stale:?}\n{table}\nschild log:\n{}",
        schild.log()
    );
}

/// `dnssec-dsfromkey` of the key file `key`: its DS records (`-1`: SHA-1,
/// `-2`: SHA-256, as given in `digests`), one a line.
fn ds_from_key(key: &Path, digests: &[&str]) -> String {
    let mut ds = String::new();
    for d in digests {
        let out = std::process::Command::new("dnssec-dsfromkey")
            .arg(d)
            .arg(key)
            .output()
            .expect("run dnssec-dsfromkey");
        assert!(
            out.status.success(),
            "dnssec-dsfromkey {d}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ds.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    assert!(ds.contains(" DS "), "no DS record: {ds}");
    ds
}

/// The root's DS records (dnssec-dsfromkey, SHA-1 and SHA-256) as the trust
/// anchor instead of its DNSKEY: schild fetches the root's DNSKEY RRset,
/// takes the self-signed key the DS matches, and then validates every case
/// of the hierarchy exactly as with the DNSKEY anchor, recursive and (with
/// Unbound as the upstream) forwarding. A mixed file (the root's DNSKEY,
/// the DS of `secure.test.`) has its DS matched through recursion. A DS
/// that matches no key stops schild with 78 and an error naming the anchor.
#[test]
fn a_ds_anchor_validates_as_the_dnskey_anchor() {
    if !have("dnssec-dsfromkey") {
        return;
    }
    let Some(h) = Signed::start() else {
        return;
    };
    let ds = ds_from_key(&h.anchor, &["-1", "-2"]);
    let ds_file = h.dir.path().join("root.ds");
    std::fs::write(&ds_file, &ds).expect("write DS anchor");
    let recursive = |anchor: &Path| {
        format!(
            "[resolver]\nmode = \"recursive\"\nroot_hints = \"{}\"\nallow_servers = [\"127.0.0.0/8\"]\ndnssec = true\ntrust_anchor_file = \"{}\"\n",
            h.hints.display(),
            anchor.display()
        )
    };
    let mut pairs = vec![(
        "recursive",
        Schild::start(&recursive(&h.anchor), &[]),
        Schild::start(&recursive(&ds_file), &[]),
    )];
    // Forward mode asks the upstream for the root's keys with CD=1.
    let upstream = have("unbound").then(|| {
        Unbound::start_at(
            h.ip(UNBOUND + 3),
            h.dir.path(),
            &h.hints,
            "ds-upstream",
            None,
            "module-config: \"iterator\"",
            "",
            "",
        )
    });
    if let Some(u) = &upstream {
        let forward = |anchor: &Path| {
            format!(
                "[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = true\ntrust_anchor_file = \"{}\"\n",
                u.addr,
                anchor.display()
            )
        };
        pairs.push((
            "forward",
            Schild::start(&forward(&h.anchor), &[]),
            Schild::start(&forward(&ds_file), &[]),
        ));
    }
    let mut table = String::new();
    let mut differ = Vec::new();
    for (mode, by_key, by_ds) in &pairs {
        for (z, _) in CHILDREN {
            for (p, dnssec_ok, cd) in PROFILES {
                let name = format!("www.{z}.test.");
                let k = ask(by_key.dns, &name, *dnssec_ok, *cd);
                let d = ask(by_ds.dns, &name, *dnssec_ok, *cd);
                table.push_str(&format!(
                    "{mode:9} {z:9} {p:6} DNSKEY {k:?}\n{:26} DS     {d:?}\n",
                    ""
                ));
                if k != d || k.is_none() {
                    differ.push(format!("{mode} {z} {p}"));
                }
            }
        }
        // What a user sees: AD on the secure name, SERVFAIL EDE 6 on the
        // tampered one.
        let secure = ask(by_ds.dns, "www.secure.test.", true, false).expect("answer");
        assert!(
            secure.ad && secure.data && secure.rcode == ResponseCode::NoError,
            "{mode}: {secure:?}\n{}",
            by_ds.log()
        );
        let bogus = ask(by_ds.dns, "www.bogus.test.", true, false).expect("answer");
        assert_eq!(
            (bogus.rcode, bogus.ede),
            (ResponseCode::ServFail, Some(6)),
            "{mode}: {bogus:?}"
        );
        assert!(
            by_ds.log().contains("DS trust anchor"),
            "{mode}: the matched key is not logged:\n{}",
            by_ds.log()
        );
    }
    // A mixed file: the root's DNSKEY and the DS of secure.test. (its
    // dsset from dnssec-signzone), whose keys are fetched by recursion.
    let dsset = std::fs::read_to_string(h.dir.path().join("zones/keys/dsset-secure.test."))
        .expect("dsset of secure.test.");
    let root_key = std::fs::read_to_string(&h.anchor).expect("root key");
    let mixed_file = h.dir.path().join("mixed.anchors");
    std::fs::write(&mixed_file, format!("{root_key}{dsset}")).expect("write anchors");
    let mixed = Schild::start(&recursive(&mixed_file), &[]);
    let secure = ask(mixed.dns, "www.secure.test.", true, false).expect("answer");
    assert!(
        secure.ad && secure.data,
        "mixed: {secure:?}\n{}",
        mixed.log()
    );
    let bogus = ask(mixed.dns, "www.bogus.test.", true, false).expect("answer");
    assert_eq!((bogus.rcode, bogus.ede), (ResponseCode::ServFail, Some(6)));
    assert!(
        mixed
            .log()
            .lines()
            .any(|l| l.contains("DS trust anchor") && l.contains("secure.test.")),
        "the DS anchor of secure.test. is not logged:\n{}",
        mixed.log()
    );
    eprintln!("dnssec: the root's DNSKEY or its DS as the anchor\n{table}");
    assert!(
        differ.is_empty(),
        "DS and DNSKEY anchors differ: {differ:?}\n{table}"
    );

    // A DS whose digest matches no key of the root: no start, and the
    // error names the anchor.
    let wrong: String = ds
        .lines()
        .filter(|l| l.contains(" DS ") && l.split_whitespace().nth(5) == Some("2"))
        .map(|l| {
            let mut w: Vec<String> = l.split_whitespace().map(String::from).collect();
            let last = w.last_mut().expect("digest");
            let flipped = if last.starts_with('0') { "1" } else { "0" };
            last.replace_range(0..1, flipped);
            w.join(" ") + "\n"
        })
        .collect();
    assert!(!wrong.is_empty(), "no SHA-256 DS in {ds}");
    let wrong_file = h.dir.path().join("wrong.ds");
    std::fs::write(&wrong_file, &wrong).expect("write DS anchor");
    let config = recursive(&wrong_file);
    let refused = Schild::start_with(crate::harness::Setup {
        config: &config,
        files: &[],
        wait_ready: true,
    });
    let Err((status, log)) = refused else {
        panic!("schild started with a DS anchor that matches no key");
    };
    assert_eq!(status.and_then(|s| s.code()), Some(78), "{log}");
    assert!(
        log.contains("trust anchor .") && log.contains("no zone key"),
        "the error does not name the anchor:\n{log}"
    );
    if let Some(u) = &upstream {
        u.assert_running("ds-upstream");
    }
}
