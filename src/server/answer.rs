//! The pieces of a blocked answer: the SOA that makes clients cache the
//! negative answer, the Extended DNS Error that explains it, the
//! sinkhole records, and the records of RPZ local data.
//!
//! The SOA is owned by the listed domain when the query name itself (or a
//! parent) is listed, so it is always the query name or one of its
//! ancestors: downstream resolvers only cache a negative answer whose SOA is
//! "in bailiwick" (RFC 2308 section 3), and an SOA at an unrelated
//! `rpz.invalid.` would be ignored or even distrusted. Its MNAME and RNAME
//! say who answered (`schild.invalid.`, a name that cannot exist).

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::policy::LocalRecord;
use crate::rpz::zone::local_rdata;

/// RFC 8914 info-codes schild uses.
pub mod ede {
    /// Other: the text says what.
    pub const OTHER: u16 = 0;
    /// An answer served past its TTL.
    pub const STALE_ANSWER: u16 = 3;
    pub const DNSSEC_BOGUS: u16 = 6;
    /// Blocked by the operator's policy (the feeds).
    pub const BLOCKED: u16 = 15;
    pub const PROHIBITED: u16 = 18;
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    pub const NETWORK_ERROR: u16 = 23;
}

/// The EDNS option code of Extended DNS Errors.
const EDE_CODE: u16 = 15;

/// An Extended DNS Error option (RFC 8914): info-code and UTF-8 text.
pub fn ede_option(info_code: u16, text: &str) -> EdnsOption {
    let mut data = Vec::with_capacity(2 + text.len());
    data.extend_from_slice(&info_code.to_be_bytes());
    // The whole OPT must fit a UDP answer; the text is a courtesy.
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    data.extend_from_slice(&text.as_bytes()[..end]);
    EdnsOption::Unknown(EDE_CODE, data)
}

/// The SOA that goes with a synthesised negative answer.
pub fn policy_soa(owner: Name, serial: u64, ttl: u32) -> Record {
    let mname = Name::from_labels(["schild", "invalid"]).unwrap_or_else(|_| Name::root());
    let rname =
        Name::from_labels(["hostmaster", "schild", "invalid"]).unwrap_or_else(|_| Name::root());
    let mut mname = mname;
    mname.set_fqdn(true);
    let mut rname = rname;
    rname.set_fqdn(true);
    // RFC 1982 serial arithmetic: the artifact serial is unix time, which
    // fits 32 bits until 2106; the low bits keep it increasing after that.
    let serial = (serial & 0xffff_ffff) as u32;
    Record::from_rdata(
        owner,
        ttl,
        RData::SOA(SOA::new(mname, rname, serial, 3600, 600, 86_400, ttl)),
    )
}

/// Sinkhole records for `qtype`; empty means answer NODATA.
pub fn sinkhole_records(
    name: &Name,
    qtype: RecordType,
    ttl: u32,
    v4: &[Ipv4Addr],
    v6: &[Ipv6Addr],
) -> Vec<Record> {
    match qtype {
        RecordType::A => v4
            .iter()
            .map(|ip| Record::from_rdata(name.clone(), ttl, RData::A(A(*ip))))
            .collect(),
        RecordType::AAAA => v6
            .iter()
            .map(|ip| Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(*ip))))
            .collect(),
        _ => Vec::new(),
    }
}

/// The records RPZ local data gives for `qtype` (every one for ANY);
/// empty means NODATA. The owner is the query name, so a `*.name`
/// trigger answers for each name under it.
pub fn local_records(
    name: &Name,
    qtype: RecordType,
    ttl: u32,
    local: &[LocalRecord],
) -> Vec<Record> {
    local
        .iter()
        .filter(|r| {
            let t = match r {
                LocalRecord::A(_) => RecordType::A,
                LocalRecord::Aaaa(_) => RecordType::AAAA,
                LocalRecord::Txt(_) => RecordType::TXT,
                LocalRecord::Cname(_) => RecordType::CNAME,
            };
            qtype == t || qtype == RecordType::ANY
        })
        .filter_map(|r| local_rdata(r).map(|d| Record::from_rdata(name.clone(), ttl, d)))
        .collect()
}

/// The CNAME of local data that sends the name to a walled garden, if it
/// holds one (a CNAME stands alone at its owner, RFC 1034 3.6.2).
pub fn local_cname(name: &Name, ttl: u32, local: &[LocalRecord]) -> Option<Record> {
    local
        .iter()
        .find(|r| matches!(r, LocalRecord::Cname(_)))
        .and_then(local_rdata)
        .map(|d| Record::from_rdata(name.clone(), ttl, d))
}

/// The number of labels of the last `octets` octets of a name (the
/// listed parent that matched), so the SOA owner can be cut from the query
/// name with its case intact.
pub fn suffix_labels(name: &Name, octets: u8) -> usize {
    let want = octets as usize;
    let mut len = 0usize;
    let mut labels = 0usize;
    for l in name.iter().rev() {
        if len >= want {
            break;
        }
        len += l.len() + usize::from(labels > 0);
        labels += 1;
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ede_wire_form() {
        let EdnsOption::Unknown(code, data) = ede_option(15, "feed zdn") else {
            panic!("unknown option expected");
        };
        assert_eq!(code, 15);
        assert_eq!(&data[..2], &[0, 15]);
        assert_eq!(&data[2..], b"feed zdn");
    }

    #[test]
    fn local_data_answers_its_type_or_nodata() {
        let q = Name::from_ascii("pc7.guest.example.").expect("name");
        let local = [
            LocalRecord::A("192.0.2.1".parse().expect("ip")),
            LocalRecord::Txt(vec!["see the helpdesk".into()]),
        ];
        let a = local_records(&q, RecordType::A, 60, &local);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].name, q);
        assert!(local_records(&q, RecordType::AAAA, 60, &local).is_empty());
        assert_eq!(local_records(&q, RecordType::ANY, 60, &local).len(), 2);
        assert!(local_cname(&q, 60, &local).is_none());
        let garden = [LocalRecord::Cname("walled.example".into())];
        let c = local_cname(&q, 60, &garden).expect("cname");
        assert_eq!(c.data.to_string(), "walled.example.");
    }

    #[test]
    fn soa_owner_is_cut_from_the_query_name() {
        let q = Name::from_ascii("www.Evil.Example.").expect("name");
        assert_eq!(suffix_labels(&q, "evil.example".len() as u8), 2);
        assert_eq!(suffix_labels(&q, "www.evil.example".len() as u8), 3);
        let soa = policy_soa(q.trim_to(2), 1_700_000_000, 300);
        assert_eq!(soa.name.to_string(), "Evil.Example.");
        let RData::SOA(s) = &soa.data else {
            panic!("soa")
        };
        assert_eq!(s.minimum, 300);
    }
}
