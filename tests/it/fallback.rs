//! Recursive mode falls back from a bad name server to a good one (issue
//! 11 item 1): over [`NsdHierarchy`], each fallback zone has one good
//! server and one that answers REFUSED, never answers, or has nothing
//! listening, listed first or second. Every cold lookup must resolve, and
//! within a generous bound: hickory's pool alone gave SERVFAIL at once on
//! REFUSED and after 5 s on a silent or unreachable server.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns::{addresses, query, udp_timeout};
use crate::harness::Schild;
use crate::hierarchy::NsdHierarchy;

/// Far above one attempt's timeout at an unknown server (1 s), below the
/// 5 s that meant the pool never reached the good server.
const COLD_BOUND: Duration = Duration::from_secs(4);

const ZONES: &[&str] = &[
    "refused1", "refused2", "silent1", "silent2", "unreach1", "unreach2",
];

/// (first label, type, the address in the zone file)
const NAMES: &[(&str, RecordType, &str)] = &[
    ("www", RecordType::A, "192.0.2.90"),
    ("h1", RecordType::A, "192.0.2.91"),
    ("h2", RecordType::A, "192.0.2.92"),
    ("www", RecordType::AAAA, "2001:db8::90"),
    ("nope", RecordType::A, ""),
];

#[test]
fn every_cold_lookup_falls_back_to_the_good_server() {
    let Some(h) = NsdHierarchy::start() else {
        return;
    };
    let schild = Schild::start(&h.recursive_section(), &[]);
    let mut report = String::new();
    let mut slowest = Duration::ZERO;
    let mut resolved = 0;
    for zone in ZONES {
        for (i, (label, qtype, want)) in NAMES.iter().enumerate() {
            let name = format!("{label}.{zone}.d.test.");
            let started = Instant::now();
            let (answer, _) =
                udp_timeout(schild.dns, &query(&name, *qtype), Duration::from_secs(10))
                    .unwrap_or_else(|| panic!("no answer to {name} {qtype}:\n{}", schild.log()));
            let took = started.elapsed();
            slowest = slowest.max(took);
            report.push_str(&format!(
                "{name} {qtype}: {:?} in {took:?}{}\n",
                answer.metadata.response_code,
                if i == 0 { " (first in the zone)" } else { "" }
            ));
            if want.is_empty() {
                assert_eq!(
                    answer.metadata.response_code,
                    ResponseCode::NXDomain,
                    "{name}"
                );
            } else {
                assert_eq!(
                    answer.metadata.response_code,
                    ResponseCode::NoError,
                    "{name} {qtype}:\n{report}"
                );
                assert_eq!(addresses(&answer), vec![want.to_string()], "{name} {qtype}");
            }
            assert!(took < COLD_BOUND, "{name} {qtype} took {took:?}:\n{report}");
            resolved += 1;
        }
    }
    eprintln!("fallback: {resolved} cold lookups resolved, the slowest in {slowest:?}\n{report}");
}
