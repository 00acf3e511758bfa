//! The UDP fast path's wire work: read an ordinary query straight from the
//! datagram, and write a policy block's negative answer straight into a
//! reused buffer, with no hickory `Message` decoded or encoded.
//!
//! [`parse`] accepts only the plainest query: QUERY, RD=1, one IN question
//! of an ordinary type, no answer or authority records, at most one OPT
//! (version 0, well-formed COOKIE if any, nothing after it). Everything
//! else returns `None` and takes the full path, which knows every rule; so
//! this module never has to answer an error itself.
//!
//! [`write_negative`] writes what the full path's `send_block` sends for an
//! NXDOMAIN or NODATA block: the header (RD and CD echoed, RA set), the
//! question exactly as asked (its 0x20 spelling kept), the policy SOA with
//! its owner compressed into the question, and the response OPT with the
//! EDE (Blocked) when the query had EDNS.

/// The question section of a query, as [`parse`] read it.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub id: u16,
    /// The query's second header word: RD and CD are echoed from it.
    pub flags: u16,
    /// The question name in wire form, its root label included.
    pub name: &'a [u8],
    pub qtype: u16,
    pub edns: Option<QueryEdns>,
}

/// The query's OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryEdns {
    pub payload: u16,
    pub dnssec_ok: bool,
}

const QR: u16 = 0x8000;
const OPCODE: u16 = 0x7800;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const CD: u16 = 0x0010;
const HEADER: usize = 12;
const OPT: u16 = 41;
const COOKIE: u16 = 10;
const DO: u16 = 0x8000;

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// An ordinary query, or `None` for anything the full path must judge.
pub fn parse(msg: &[u8]) -> Option<Query<'_>> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    if flags & QR != 0 || flags & OPCODE != 0 || flags & RD == 0 {
        return None;
    }
    let counts = (
        u16_at(msg, 4)?,
        u16_at(msg, 6)?,
        u16_at(msg, 8)?,
        u16_at(msg, 10)?,
    );
    let additional = match counts {
        (1, 0, 0, ar @ (0 | 1)) => ar,
        _ => return None,
    };
    // The name: uncompressed labels of 1-63 octets, 255 octets in all.
    let mut at = HEADER;
    loop {
        let len = usize::from(*msg.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None; // a pointer, or a reserved label type
        }
        at += 1 + len;
        if at - HEADER >= 255 {
            return None;
        }
    }
    let name = &msg[HEADER..at];
    let qtype = u16_at(msg, at)?;
    let qclass = u16_at(msg, at + 2)?;
    at += 4;
    // Meta and special types (OPT, the transfers, ANY, TSIG...) and other
    // classes have their own rules on the full path.
    if qclass != 1 || qtype == 0 || qtype == OPT || (128..=255).contains(&qtype) {
        return None;
    }
    let edns = if additional == 1 {
        let (edns, end) = parse_opt(msg, at)?;
        at = end;
        Some(edns)
    } else {
        None
    };
    if at != msg.len() {
        return None;
    }
    Some(Query {
        id,
        flags,
        name,
        qtype,
        edns,
    })
}

/// The OPT record at `at`: root owner, version 0, no extended rcode, and
/// any COOKIE of a length RFC 7873 allows.
fn parse_opt(msg: &[u8], at: usize) -> Option<(QueryEdns, usize)> {
    if *msg.get(at)? != 0 || u16_at(msg, at + 1)? != OPT {
        return None;
    }
    let payload = u16_at(msg, at + 3)?;
    let (ext_rcode, version) = (*msg.get(at + 5)?, *msg.get(at + 6)?);
    if ext_rcode != 0 || version != 0 {
        return None;
    }
    let flags = u16_at(msg, at + 7)?;
    let rdlen = usize::from(u16_at(msg, at + 9)?);
    let start = at + 11;
    let end = start + rdlen;
    let mut o = start;
    while o < end {
        let code = u16_at(msg, o)?;
        let len = usize::from(u16_at(msg, o + 2)?);
        if code == COOKIE && !(len == 8 || (16..=40).contains(&len)) {
            return None;
        }
        o += 4 + len;
    }
    if o != end || end > msg.len() {
        return None;
    }
    Some((
        QueryEdns {
            payload,
            dnssec_ok: flags & DO != 0,
        },
        end,
    ))
}

/// The offset in `name` (wire form) where its last `labels` labels begin.
pub fn suffix_offset(name: &[u8], labels: usize) -> usize {
    let mut starts = [0usize; 128];
    let mut count = 0;
    let mut at = 0;
    while at < name.len() && name[at] != 0 && count < starts.len() {
        starts[count] = at;
        count += 1;
        at += 1 + usize::from(name[at]);
    }
    match count.checked_sub(labels) {
        Some(i) if i < count => starts[i],
        _ => at, // the root
    }
}

/// A policy block's negative answer, as [`write_negative`] writes it.
pub struct Negative<'a> {
    /// NXDOMAIN (3) or NOERROR (0, NODATA).
    pub rcode: u8,
    /// Where in the question name the SOA's owner (the listed name) begins.
    pub owner_at: usize,
    pub serial: u32,
    pub ttl: u32,
    /// The response OPT's payload size; `None` when the query had no EDNS.
    pub payload: Option<u16>,
    /// The EDE (Blocked) text.
    pub ede_text: &'a str,
    pub ede_code: u16,
}

/// `schild.invalid.`, the policy SOA's MNAME.
const MNAME: &[u8] = b"\x06schild\x07invalid\x00";
const HOSTMASTER: &[u8] = b"\x0ahostmaster";

/// Write the answer into `out` (cleared first). `false` when it would not
/// fit the size the client allows: the full path then answers instead.
pub fn write_negative(out: &mut Vec<u8>, q: &Query<'_>, n: &Negative<'_>) -> bool {
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    let flags = QR | (q.flags & (RD | CD)) | RA | u16::from(n.rcode & 0x0f);
    out.extend_from_slice(&flags.to_be_bytes());
    let additional: u16 = if n.payload.is_some() { 1 } else { 0 };
    for count in [1u16, 0, 1, additional] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(q.name);
    out.extend_from_slice(&q.qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    // The SOA, its owner a pointer into the question.
    if n.owner_at >= q.name.len() || n.owner_at == q.name.len() - 1 {
        out.push(0);
    } else {
        let ptr = 0xc000 | (HEADER + n.owner_at) as u16;
        out.extend_from_slice(&ptr.to_be_bytes());
    }
    out.extend_from_slice(&6u16.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&n.ttl.to_be_bytes());
    let rdlen_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let mname_at = out.len();
    out.extend_from_slice(MNAME);
    out.extend_from_slice(HOSTMASTER);
    let ptr = 0xc000 | mname_at as u16;
    out.extend_from_slice(&ptr.to_be_bytes());
    for v in [n.serial, 3600, 600, 86_400, n.ttl] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    let rdlen = (out.len() - rdlen_at - 2) as u16;
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    let max = match n.payload {
        Some(payload) => {
            out.push(0);
            out.extend_from_slice(&OPT.to_be_bytes());
            out.extend_from_slice(&payload.to_be_bytes());
            out.extend_from_slice(&[0, 0]); // extended rcode, version
            let do_bit = if q.edns.is_some_and(|e| e.dnssec_ok) {
                DO
            } else {
                0
            };
            out.extend_from_slice(&do_bit.to_be_bytes());
            let text = n.ede_text.as_bytes();
            let Ok(opt_len) = u16::try_from(4 + 2 + text.len()) else {
                return false;
            };
            out.extend_from_slice(&opt_len.to_be_bytes());
            out.extend_from_slice(&15u16.to_be_bytes()); // EDE
            out.extend_from_slice(&(opt_len - 4).to_be_bytes());
            out.extend_from_slice(&n.ede_code.to_be_bytes());
            out.extend_from_slice(text);
            usize::from(payload.max(512))
        }
        None => 512,
    };
    out.len() <= max
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery, ResponseCode};
    use hickory_proto::rr::rdata::opt::EdnsCode;
    use hickory_proto::rr::{Name, RData, RecordType};
    use hickory_proto::serialize::binary::BinDecodable;

    fn query(name: &str, qtype: RecordType, edns: Option<(u16, bool)>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.metadata.checking_disabled = true;
        m.add_query(HQuery::query(
            Name::from_ascii(name).expect("test data"),
            qtype,
        ));
        if let Some((payload, dnssec_ok)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            e.set_dnssec_ok(dnssec_ok);
            m.edns = Some(e);
        }
        m.to_vec().expect("test data")
    }

    #[test]
    fn parses_an_ordinary_query_and_its_edns() {
        let wire = query("WwW.Evil.example.", RecordType::AAAA, Some((1232, true)));
        let q = parse(&wire).expect("ordinary");
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.qtype, 28);
        assert_eq!(q.name, b"\x03WwW\x04Evil\x07example\x00");
        assert_eq!(
            q.edns,
            Some(QueryEdns {
                payload: 1232,
                dnssec_ok: true
            })
        );
        assert!(parse(&query("a.example.", RecordType::A, None)).is_some());
    }

    #[test]
    fn leaves_everything_unusual_to_the_full_path() {
        let ok = query("a.example.", RecordType::A, Some((1232, false)));
        let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut w = ok.clone();
            f(&mut w);
            parse(&w).is_none()
        };
        assert!(mutate(&|w| w[2] |= 0x80), "a response");
        assert!(mutate(&|w| w[2] |= 0x28), "opcode 5");
        assert!(mutate(&|w| w[2] &= !0x01), "RD=0");
        assert!(mutate(&|w| w[5] = 2), "two questions");
        assert!(mutate(&|w| w[7] = 1), "an answer record");
        assert!(mutate(&|w| w.push(0)), "trailing octets");
        assert!(mutate(&|w| w.truncate(w.len() - 3)), "cut short");
        // Version 1 gets BADVERS from the full path.
        let at = ok.len() - 11;
        assert!(mutate(&|w| w[at + 6] = 1), "EDNS version 1");
        for t in [RecordType::ANY, RecordType::AXFR, RecordType::IXFR] {
            assert!(parse(&query("a.example.", t, None)).is_none(), "{t}");
        }
        // Class CH.
        let mut ch = query("a.example.", RecordType::TXT, None);
        let n = ch.len();
        ch[n - 1] = 3;
        assert!(parse(&ch).is_none());
        // A malformed COOKIE is the full path's FORMERR.
        let mut m = Message::from_vec(&ok).expect("test data");
        let mut e = Edns::new();
        e.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                EdnsCode::Cookie.into(),
                vec![1; 5],
            ));
        m.edns = Some(e);
        assert!(parse(&m.to_vec().expect("test data")).is_none());
        assert!(parse(&[]).is_none());
        assert!(parse(&ok[..11]).is_none());
    }

    #[test]
    fn suffix_offsets_count_labels_from_the_root() {
        let name = b"\x03www\x04evil\x07example\x00";
        assert_eq!(suffix_offset(name, 2), 4);
        assert_eq!(suffix_offset(name, 3), 0);
        assert_eq!(suffix_offset(name, 1), 9);
        assert_eq!(suffix_offset(name, 0), 17);
    }

    #[test]
    fn writes_a_negative_answer_hickory_reads_back_as_sent() {
        let wire = query("WwW.Evil.example.", RecordType::A, Some((4096, true)));
        let q = parse(&wire).expect("test data");
        let mut out = Vec::new();
        let n = Negative {
            rcode: 3,
            owner_at: suffix_offset(q.name, 2),
            serial: 77,
            ttl: 300,
            payload: Some(1232),
            ede_text: "blocked by schild: feed f lists evil.example",
            ede_code: 15,
        };
        assert!(write_negative(&mut out, &q, &n));
        let m = Message::from_bytes(&out).expect("decodes");
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.op_code, OpCode::Query);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
        assert!(m.metadata.checking_disabled && !m.metadata.authoritative);
        assert_eq!(m.queries[0].name().to_ascii(), "WwW.Evil.example.");
        let soa = &m.authorities[0];
        assert_eq!(soa.name.to_ascii(), "Evil.example.");
        assert_eq!(soa.ttl, 300);
        let RData::SOA(s) = &soa.data else {
            panic!("not an SOA")
        };
        assert_eq!(s.mname.to_ascii(), "schild.invalid.");
        assert_eq!(s.rname.to_ascii(), "hostmaster.schild.invalid.");
        assert_eq!((s.serial, s.minimum), (77, 300));
        let e = m.edns.as_ref().expect("OPT");
        assert_eq!(e.max_payload(), 1232);
        assert!(e.flags().dnssec_ok);
        let ede = e.option(EdnsCode::Unknown(15)).expect("EDE");
        let hickory_proto::rr::rdata::opt::EdnsOption::Unknown(_, data) = ede else {
            panic!("{ede:?}")
        };
        assert_eq!(&data[..2], &[0, 15]);
        assert_eq!(&data[2..], n.ede_text.as_bytes());

        // NODATA without EDNS: no OPT, and the 512-octet limit.
        let plain = query("evil.example.", RecordType::A, None);
        let q = parse(&plain).expect("test data");
        let n = Negative {
            rcode: 0,
            payload: None,
            owner_at: 0,
            ..n
        };
        assert!(write_negative(&mut out, &q, &n));
        let m = Message::from_bytes(&out).expect("test data");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.edns.is_none() && m.answers.is_empty());
        assert_eq!(m.authorities[0].name.to_ascii(), "evil.example.");
    }

    #[test]
    fn an_answer_too_big_for_the_client_is_refused() {
        let wire = query("a.example.", RecordType::A, Some((512, false)));
        let q = parse(&wire).expect("test data");
        let text = "x".repeat(600);
        let n = Negative {
            rcode: 3,
            owner_at: 0,
            serial: 1,
            ttl: 1,
            payload: Some(512),
            ede_text: &text,
            ede_code: 15,
        };
        let mut out = Vec::new();
        assert!(!write_negative(&mut out, &q, &n));
    }
}
