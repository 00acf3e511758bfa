//! The proof of a positive answer synthesised from a wildcard (RFC 4035
//! 5.3.4), judged again where hickory 0.26 gets it wrong.
//!
//! hickory-net 0.26.3's validator (`dnssec/mod.rs`, `verify_nsec`, the
//! wildcard name at lines 1835-1846, the covering check at 1904-1927) checks
//! that the RRSIGs over the expanded RRset are good, then asks for an NSEC
//! *covering* `*.<parent of the query name>`. When the query name is one
//! label below the wildcard's closest encloser (`x.wild.example.` from
//! `*.wild.example.`, the everyday case) that wildcard is the one that
//! produced the answer: it exists, so nothing covers it, and the answer is
//! bogus (`DnsError::Nsec` with `Proof::Bogus`). Its only test expands a
//! name two labels below the encloser (upstream: hickory-dns PR 3812 adds
//! the failing case; no 0.26.x release fixes it).
//!
//! [`wildcard_proven`] is Unbound's check instead (validator/validator.c,
//! `validate_positive_response`; validator/val_nsec.c,
//! `val_nsec_proves_positive_wildcard`): for every wildcard-expanded RRset
//! of the answer (the RRSIG's Labels field below the owner's label count),
//! a validated NSEC from the same signer proves that the owner name does
//! not exist and that the closest encloser it shows is the wildcard's, so
//! no closer name could have answered. Nothing is taken on trust from
//! hickory but its verdicts on the signatures (each record's `proof`).
//! NSEC3 proofs (RFC 5155 8.8) are hickory's own, which checks the next
//! closer name as it should.

use hickory_proto::dnssec::Proof;
use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Whether the answer section holds an RRset expanded from a wildcard
/// (whose signatures validated), and if so, whether every such RRset has
/// its proof among `authorities`: `None` when there is no wildcard
/// expansion (hickory's verdict stands), `Some(false)` when one is not
/// proven (or its signatures disagree on the wildcard), `Some(true)` when
/// all are.
pub fn wildcard_proven(answers: &[Record], authorities: &[Record]) -> Option<bool> {
    let mut any = false;
    for (owner, rtype) in rrsets(answers) {
        let sigs: Vec<_> = answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(s))
                    if r.name == *owner && s.input().type_covered == rtype =>
                {
                    Some((r.proof, s.input()))
                }
                _ => None,
            })
            .collect();
        // The signature hickory validated the RRset with.
        let Some((_, used)) = sigs.iter().find(|(p, _)| *p == Proof::Secure) else {
            continue;
        };
        let labels = used.num_labels;
        if labels >= owner.num_labels() {
            continue;
        }
        any = true;
        // Signatures naming different wildcards: Unbound calls it bogus
        // (val_utils.c, `val_rrset_wildcard`).
        if sigs.iter().any(|(_, s)| s.num_labels != labels) {
            return Some(false);
        }
        let signer = &used.signer_name;
        let proven = nsecs(authorities, signer)
            .any(|(at, nsec)| proves_positive_wildcard(at, nsec, owner, labels));
        if !proven {
            return Some(false);
        }
    }
    any.then_some(true)
}

/// The (owner, type) of each RRset but the RRSIGs, in order, once each.
fn rrsets(records: &[Record]) -> Vec<(&Name, RecordType)> {
    let mut out: Vec<(&Name, RecordType)> = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.record_type() != RecordType::RRSIG)
    {
        let key = (&r.name, r.record_type());
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// The NSEC records hickory validated, signed by `signer` (an RRSIG by it
/// over that NSEC RRset validated too) and within its zone.
fn nsecs<'a>(
    authorities: &'a [Record],
    signer: &'a Name,
) -> impl Iterator<Item = (&'a Name, &'a NSEC)> + 'a {
    authorities.iter().filter_map(move |r| match &r.data {
        RData::DNSSEC(DNSSECRData::NSEC(nsec))
            if r.proof == Proof::Secure
                && signer.zone_of(&r.name)
                && authorities.iter().any(|s| match &s.data {
                    RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                        s.proof == Proof::Secure
                            && s.name == r.name
                            && sig.input().type_covered == RecordType::NSEC
                            && sig.input().signer_name == *signer
                    }
                    _ => false,
                }) =>
        {
            Some((&r.name, nsec))
        }
        _ => None,
    })
}

/// Whether the NSEC at `at` proves that `qname` does not exist and that
/// its closest encloser has `encloser_labels` labels, the wildcard's
/// (val_nsec.c: `val_nsec_proves_positive_wildcard`, with
/// `val_nsec_proves_name_error` and `nsec_closest_encloser`).
pub fn proves_positive_wildcard(at: &Name, nsec: &NSEC, qname: &Name, encloser_labels: u8) -> bool {
    if !proves_name_error(at, nsec, qname) {
        return false;
    }
    let next = nsec.next_domain_name();
    let encloser = common_labels(at, qname).max(common_labels(next, qname));
    encloser == usize::from(encloser_labels)
}

/// val_nsec.c, `val_nsec_proves_name_error`: the NSEC covers `qname`.
fn proves_name_error(at: &Name, nsec: &NSEC, qname: &Name) -> bool {
    if at == qname {
        return false;
    }
    // An NSEC above the name at a delegation or a DNAME says nothing
    // about the names below it.
    let types = nsec.type_set();
    if at.zone_of(qname)
        && (types.contains(RecordType::DNAME)
            || (types.contains(RecordType::NS) && !types.contains(RecordType::SOA)))
    {
        return false;
    }
    let next = nsec.next_domain_name();
    let strictly_below = |n: &Name| n != qname && n.zone_of(qname);
    if at == next {
        // The only NSEC of the zone: every other name below it is absent.
        strictly_below(next)
    } else if at > next {
        // The last NSEC, pointing back to the apex.
        at < qname && strictly_below(next)
    } else {
        at < qname && qname < next
    }
}

/// How many labels, from the root, two names share (case-insensitive).
fn common_labels(a: &Name, b: &Name) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x.eq_ignore_ascii_case(y))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::dnssec::Algorithm;
    use hickory_proto::dnssec::rdata::{RRSIG, SigInput};
    use hickory_proto::rr::SerialNumber;
    use hickory_proto::rr::rdata::A;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn nsec(next: &str, types: &[RecordType]) -> NSEC {
        NSEC::new(n(next), types.iter().copied())
    }

    fn sig(owner: &str, covered: RecordType, labels: u8, signer: &str, proof: Proof) -> Record {
        let input = SigInput {
            type_covered: covered,
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: labels,
            original_ttl: 300,
            sig_expiration: SerialNumber::new(0),
            sig_inception: SerialNumber::new(0),
            key_tag: 1,
            signer_name: n(signer),
        };
        let mut r = Record::from_rdata(
            n(owner),
            300,
            RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, vec![0; 64]))),
        );
        r.proof = proof;
        r
    }

    fn a(owner: &str, proof: Proof) -> Record {
        let mut r = Record::from_rdata(n(owner), 300, RData::A(A::new(192, 0, 2, 1)));
        r.proof = proof;
        r
    }

    fn nsec_rr(owner: &str, next: &str, proof: Proof) -> Vec<Record> {
        use RecordType::{A as TA, NSEC as TN, RRSIG as TR};
        let mut r = Record::from_rdata(
            n(owner),
            300,
            RData::DNSSEC(DNSSECRData::NSEC(nsec(next, &[TA, TN, TR]))),
        );
        r.proof = proof;
        let labels = n(owner).num_labels();
        vec![
            r,
            sig(owner, RecordType::NSEC, labels, "secure.test.", proof),
        ]
    }

    /// `owner A` with its RRSIG (Labels 3: from `*.wild.secure.test.`
    /// unless `owner` has 3 labels), both with `proof`.
    fn signed(owner: &str, proof: Proof) -> Vec<Record> {
        vec![
            a(owner, proof),
            sig(owner, RecordType::A, 3, "secure.test.", proof),
        ]
    }

    /// `x.wild.secure.test.` from `*.wild.secure.test.`, the zone: apex,
    /// ns, *.wild, www.
    fn answer(proof: Proof) -> Vec<Record> {
        signed("x.wild.secure.test.", proof)
    }

    #[test]
    fn one_label_below_the_encloser_is_proven() {
        let auth = nsec_rr("*.wild.secure.test.", "www.secure.test.", Proof::Secure);
        assert_eq!(wildcard_proven(&answer(Proof::Secure), &auth), Some(true));
        // Two labels below it too (RFC 4035 B.6's shape).
        let deep = signed("y.x.wild.secure.test.", Proof::Secure);
        assert_eq!(wildcard_proven(&deep, &auth), Some(true));
    }

    #[test]
    fn no_proof_or_a_wrong_one_is_not_proven() {
        let ans = answer(Proof::Secure);
        assert_eq!(wildcard_proven(&ans, &[]), Some(false));
        // The NSEC did not validate.
        let bogus = nsec_rr("*.wild.secure.test.", "www.secure.test.", Proof::Bogus);
        assert_eq!(wildcard_proven(&ans, &bogus), Some(false));
        // An NSEC that does not cover the name.
        let far = nsec_rr("secure.test.", "ns.secure.test.", Proof::Secure);
        assert_eq!(wildcard_proven(&ans, &far), Some(false));
        // A closer name exists (x.wild has a child): the NSEC shows an
        // encloser below the wildcard's, so the wildcard did not apply.
        let closer = nsec_rr("a.x.wild.secure.test.", "www.secure.test.", Proof::Secure);
        let q = signed("b.x.wild.secure.test.", Proof::Secure);
        assert_eq!(wildcard_proven(&q, &closer), Some(false));
        // An NSEC signed by another zone.
        let mut other = nsec_rr("*.wild.secure.test.", "www.secure.test.", Proof::Secure);
        other[1] = sig(
            "*.wild.secure.test.",
            RecordType::NSEC,
            3,
            "test.",
            Proof::Secure,
        );
        assert_eq!(wildcard_proven(&ans, &other), Some(false));
        // Signatures naming two different wildcards.
        let mut two = ans.clone();
        two.push(sig(
            "x.wild.secure.test.",
            RecordType::A,
            2,
            "secure.test.",
            Proof::Indeterminate,
        ));
        let auth = nsec_rr("*.wild.secure.test.", "www.secure.test.", Proof::Secure);
        assert_eq!(wildcard_proven(&two, &auth), Some(false));
    }

    #[test]
    fn not_a_wildcard_answer_is_left_alone() {
        let plain = signed("www.secure.test.", Proof::Secure);
        assert_eq!(wildcard_proven(&plain, &[]), None);
        // Signatures that did not validate prove nothing to judge.
        assert_eq!(wildcard_proven(&answer(Proof::Bogus), &[]), None);
    }

    #[test]
    fn name_error_proofs_follow_unbound() {
        use RecordType::{NS, SOA};
        // (NSEC owner, next, types, name, proves the name absent)
        let cases: &[(&str, &str, &[RecordType], &str, bool)] = &[
            // Regular, last (wrapping to the apex), and the only NSEC.
            ("a.example.", "c.example.", &[], "b.example.", true),
            ("c.example.", "d.example.", &[], "b.example.", false),
            ("a.example.", "example.", &[], "b.example.", true),
            // The last NSEC covers only the names after it.
            ("z.example.", "example.", &[], "b.example.", false),
            ("example.", "example.", &[SOA], "b.example.", true),
            // The name itself exists.
            ("b.example.", "c.example.", &[], "b.example.", false),
            // Below a delegation the parent's NSEC proves nothing.
            ("a.example.", "c.example.", &[NS], "x.a.example.", false),
            ("a.example.", "c.example.", &[NS, SOA], "x.a.example.", true),
        ];
        for (at, next, types, q, want) in cases {
            let got = proves_name_error(&n(at), &nsec(next, types), &n(q));
            assert_eq!(got, *want, "{at} NSEC {next} {types:?}, {q}");
        }
    }
}
