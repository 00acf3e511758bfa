//! DNS messages on their way out: the one encoding path from hickory's
//! `MessageResponse` to bytes, and the one builder of header-only answers.
//! The UDP and TCP loops, the handler and the RPZ primary all use these.

use hickory_proto::ProtoError;
use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::ResponseInfo;

/// The response type that hickory's `ResponseHandler::send_response` takes,
/// spelled once for every function that passes one on:
/// `response: message_response!('_, 'a)`. The two `ResponseHandler` impls
/// (server::listen) must spell the trait's signature out themselves:
/// `async_trait` rewrites their lifetimes before macros are expanded.
macro_rules! message_response {
    ($q:lifetime, $a:lifetime) => {
        hickory_server::zone_handler::MessageResponse<
            $q,
            $a,
            impl Iterator<Item = &$a hickory_proto::rr::Record> + Send + $a,
            impl Iterator<Item = &$a hickory_proto::rr::Record> + Send + $a,
            impl Iterator<Item = &$a hickory_proto::rr::Record> + Send + $a,
            impl Iterator<Item = &$a hickory_proto::rr::Record> + Send + $a,
        >
    };
}
pub(crate) use message_response;

/// Encode a response into at most `max_size` octets (a UDP answer is cut
/// at the client's EDNS size, a stream answer at 65535).
///
/// The whole message is encoded first; only one that does not fit is cut
/// ([`truncate`]), at an RRset boundary, keeping the OPT record. hickory's
/// own cut (its encoder's `max_size`) rolls back the record that did not
/// fit but leaves its bytes behind the message, goes on with the next
/// sections, and drops the OPT when it no longer fits.
pub fn encode<'a>(
    response: message_response!('_, 'a),
    max_size: u16,
    capacity: usize,
) -> Result<(Vec<u8>, ResponseInfo), ProtoError> {
    let mut msg = Vec::with_capacity(capacity);
    let (mut info, end) = {
        let mut enc = BinEncoder::new(&mut msg);
        enc.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut enc)?;
        (info, enc.offset())
    };
    // Bytes of a record rolled back (only past 65535 octets) are not part
    // of the message.
    msg.truncate(end);
    if msg.len() > usize::from(max_size) {
        truncate(&mut msg, usize::from(max_size));
        if let Ok(header) = Header::read(&mut BinDecoder::new(&msg)) {
            info = ResponseInfo::from(header);
        }
    }
    Ok((msg, info))
}

/// One resource record of an encoded message: where it is and what it is.
#[derive(Clone, Copy)]
struct RecordAt {
    start: usize,
    end: usize,
    /// 0 answer, 1 authority, 2 additional.
    section: usize,
    rtype: u16,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += 1 + usize::from(len),
            0xC0 => return (at + 2 <= b.len()).then_some(at + 2),
            _ => return None,
        }
    }
}

/// The label at `at` (following pointers, at most 64 of them) and the
/// offset of the next one; `None` at the root or on damage.
fn label_at(b: &[u8], mut at: usize) -> Option<(&[u8], usize)> {
    for _ in 0..64 {
        let len = *b.get(at)?;
        match len & 0xC0 {
            0x00 if len == 0 => return None,
            0x00 => {
                let label = b.get(at + 1..at + 1 + usize::from(len))?;
                return Some((label, at + 1 + usize::from(len)));
            }
            0xC0 => at = usize::from(u16_at(b, at)? & 0x3FFF),
            _ => return None,
        }
    }
    None
}

/// Whether the names at `x` and `y` are the same name (RFC 4343: ASCII
/// case-insensitive).
fn same_name(b: &[u8], mut x: usize, mut y: usize) -> bool {
    for _ in 0..128 {
        match (label_at(b, x), label_at(b, y)) {
            (None, None) => return true,
            (Some((l, nx)), Some((m, ny))) if l.eq_ignore_ascii_case(m) => {
                x = nx;
                y = ny;
            }
            _ => return false,
        }
    }
    false
}

/// Cut an encoded message that is longer than `max` octets to fit
/// (RFC 2181 section 9, RFC 1035 4.2.1): the question and whole RRsets
/// only, in order, as long as they fit with the OPT record, which is kept
/// (RFC 6891 section 7). TC is set when an RRset of the answer or
/// authority section is left out; left-out additional data does not set
/// it. Only what comes before a cut is kept, so every compression pointer
/// still points into the message.
pub fn truncate(msg: &mut Vec<u8>, max: usize) {
    if msg.len() <= max || msg.len() < 12 {
        return;
    }
    let count = |i| u16_at(msg, i).unwrap_or(0);
    let (qd, sections) = (count(4), [count(6), count(8), count(10)]);
    // The question; a message we cannot walk keeps only its header.
    let mut at = 12;
    let mut qd_kept = 0;
    for _ in 0..qd {
        match skip_name(msg, at).map(|e| e + 4) {
            Some(e) if e <= msg.len() && e <= max => {
                at = e;
                qd_kept += 1;
            }
            _ => break,
        }
    }
    let question_end = at;
    let mut records = Vec::new();
    if qd_kept == qd {
        'walk: for (section, &n) in sections.iter().enumerate() {
            for _ in 0..n {
                let Some(rdata) = skip_name(msg, at).map(|e| e + 10) else {
                    break 'walk;
                };
                let (Some(rtype), Some(rdlen)) = (u16_at(msg, rdata - 10), u16_at(msg, rdata - 2))
                else {
                    break 'walk;
                };
                let end = rdata + usize::from(rdlen);
                if end > msg.len() {
                    break 'walk;
                }
                records.push(RecordAt {
                    start: at,
                    end,
                    section,
                    rtype,
                });
                at = end;
            }
        }
    }
    const OPT: u16 = 41;
    let opt: Vec<u8> = records
        .iter()
        .find(|r| r.section == 2 && r.rtype == OPT)
        .map(|r| msg[r.start..r.end].to_vec())
        .unwrap_or_default();
    let total: usize = sections.iter().map(|&n| usize::from(n)).sum();
    // A message we could not walk to its end is cut where the walk ended.
    let mut tc = qd_kept != qd || records.len() != total;
    let budget = max.saturating_sub(opt.len());
    let mut kept = [0u16; 3];
    let mut end = question_end;
    let mut i = 0;
    // The records before the OPT (hickory writes it last but for a TSIG,
    // which a cut message could not carry anyway).
    let plain: Vec<RecordAt> = records
        .iter()
        .take_while(|r| !(r.section == 2 && r.rtype == OPT))
        .copied()
        .collect();
    while i < plain.len() {
        // One RRset: the records that follow with the same owner, type and
        // class, in the same section.
        let first = plain[i];
        let mut j = i + 1;
        while j < plain.len()
            && plain[j].section == first.section
            && plain[j].rtype == first.rtype
            && same_name(msg, plain[j].start, first.start)
            && class_of(msg, plain[j]) == class_of(msg, first)
        {
            j += 1;
        }
        let last = plain[j - 1];
        if last.end > budget {
            // Additional data is optional (RFC 2181 9): leaving it out
            // does not make the answer truncated.
            tc |= first.section < 2;
            break;
        }
        kept[first.section] += u16::try_from(j - i).unwrap_or(u16::MAX);
        end = last.end;
        i = j;
    }
    msg.truncate(end);
    if !opt.is_empty() && end + opt.len() <= max {
        msg.extend_from_slice(&opt);
        kept[2] += 1;
    }
    msg[4..6].copy_from_slice(&qd_kept.to_be_bytes());
    for (k, n) in kept.iter().enumerate() {
        msg[6 + 2 * k..8 + 2 * k].copy_from_slice(&n.to_be_bytes());
    }
    if tc {
        msg[2] |= 0x02;
    }
}

/// The CLASS of a record (the OPT's payload size; the same in one RRset).
fn class_of(b: &[u8], r: RecordAt) -> Option<u16> {
    skip_name(b, r.start).and_then(|at| u16_at(b, at + 2))
}

/// The header of an answer to `request` with `rcode` and no records: the
/// request's ID, opcode and RD/CD echoed as RFC 1035 asks.
pub fn header_only(request: &Metadata, rcode: ResponseCode) -> Header {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = rcode;
    Header {
        metadata,
        counts: HeaderCounts::default(),
    }
}

/// What to report (logs, metrics) for an answer that is `rcode` and empty,
/// such as one that could not be sent.
pub fn header_only_info(request: &Metadata, rcode: ResponseCode) -> ResponseInfo {
    ResponseInfo::from(header_only(request, rcode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::rdata::{A, CNAME, TXT};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn message(qname: &str, answers: Vec<Record>, additionals: Vec<Record>) -> Message {
        let mut m = Message::query();
        m.add_query(Query::query(name(qname), RecordType::A));
        m.answers = answers;
        m.additionals = additionals;
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
        m
    }

    fn many_a(owner: &str, n: u8) -> Vec<Record> {
        (0..n)
            .map(|i| Record::from_rdata(name(owner), 300, RData::A(A::new(198, 51, 100, i))))
            .collect()
    }

    /// Every count walks to exactly the end of the message.
    fn walks_exactly(b: &[u8]) -> bool {
        let c = |i| usize::from(u16_at(b, i).unwrap_or(0));
        let mut at = 12;
        for _ in 0..c(4) {
            at = skip_name(b, at).expect("question") + 4;
        }
        for _ in 0..c(6) + c(8) + c(10) {
            let rdata = skip_name(b, at).expect("owner") + 10;
            at = rdata + usize::from(u16_at(b, rdata - 2).expect("rdlength"));
        }
        at == b.len()
    }

    #[test]
    fn a_cut_rrset_goes_whole_and_the_opt_stays() {
        let mut chain = vec![Record::from_rdata(
            name("alias.example."),
            300,
            RData::CNAME(CNAME(name("big.example."))),
        )];
        chain.extend(many_a("big.example.", 60));
        let mut b = message("alias.example.", chain, vec![])
            .to_vec()
            .expect("encode");
        assert!(b.len() > 512);
        truncate(&mut b, 512);
        assert!(b.len() <= 512 && walks_exactly(&b));
        let m = Message::from_vec(&b).expect("parses");
        assert!(m.metadata.truncation);
        assert_eq!(m.answers.len(), 1, "the CNAME fits, the A RRset does not");
        assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(m.edns.map(|e| e.max_payload()), Some(1232));
    }

    #[test]
    fn left_out_additional_data_is_not_truncation() {
        let txt = Record::from_rdata(
            name("extra.example."),
            300,
            RData::TXT(TXT::new(vec!["x".repeat(250), "y".repeat(250)])),
        );
        let mut b = message("www.example.", many_a("www.example.", 2), vec![txt])
            .to_vec()
            .expect("encode");
        assert!(b.len() > 512);
        truncate(&mut b, 512);
        assert!(walks_exactly(&b));
        let m = Message::from_vec(&b).expect("parses");
        assert!(!m.metadata.truncation);
        assert_eq!((m.answers.len(), m.additionals.len()), (2, 0));
        assert!(m.edns.is_some());
    }

    #[test]
    fn what_fits_is_left_alone_and_damage_does_not_panic() {
        let mut b = message("www.example.", many_a("www.example.", 2), vec![])
            .to_vec()
            .expect("encode");
        let whole = b.clone();
        truncate(&mut b, 512);
        assert_eq!(b, whole);
        // A count that promises more than there is: cut where the walk ends.
        let mut damaged = whole.clone();
        damaged[7] = 200;
        damaged.extend_from_slice(&[0xC0; 600]);
        truncate(&mut damaged, 512);
        assert!(damaged.len() <= 512);
        assert!(damaged[2] & 0x02 != 0, "TC set");
        // Garbage of every shape: never a panic, never over the limit.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..2000 {
            let mut junk: Vec<u8> = (0..520 + round % 300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            truncate(&mut junk, 512);
            assert!(junk.len() <= 512);
        }
        for len in 0..whole.len() {
            let mut short = whole[..len].to_vec();
            short.resize(600, 0xC0);
            truncate(&mut short, 512);
            assert!(short.len() <= 512);
        }
    }
}
