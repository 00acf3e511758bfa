//! An `rpz` feed pulled from its primary by zone transfer
//! (`location = "axfr://10.0.0.53/zone.rpz"`), the way hospitals receive
//! commercial or national RPZ feeds into BIND or Unbound.
//!
//! Each pull asks the primary for the zone's SOA first: an unchanged serial
//! (RFC 1982 arithmetic) keeps the last good copy without a transfer. A
//! newer one is fetched by IXFR (RFC 1995) against the kept serial, whose
//! differences are applied to the kept copy, or by AXFR (RFC 5936) when
//! there is no copy or the primary answers the IXFR with the whole zone.
//! With `tsig_key_file` every request is signed and every answer message
//! must carry a valid TSIG (RFC 8945). The transfer is capped by the feed's
//! `max_bytes` and bounded by its `timeout_secs`.
//!
//! The zone is kept as a zone file (one record a line, absolute names,
//! sorted), so it passes through the same RPZ reader, census and shrink
//! guard as an `rpz` feed read from a file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::rr::{TSigVerifier, TSigner};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{FeedError, ListFetch, read_cache};
use crate::config::FeedConfig;

/// What is kept beside the zone: the serial it is at.
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    serial: u32,
}

/// The file (beside `list`) that holds [`Kept`]; the same name as an
/// HTTP list's validators, as it plays the same part.
const KEPT: &str = "list.http.json";

/// The error for a non-`rpz` feed with an `axfr://` location (the config
/// refuses it; this is for completeness).
pub(super) fn not_a_zone(feed: &FeedConfig) -> FeedError {
    FeedError::Format {
        what: format!("feed {}", feed.name),
        message: "axfr:// is for rpz feeds only".into(),
    }
}

fn failed(server: SocketAddr, zone: &str, message: impl Into<String>) -> FeedError {
    FeedError::Http {
        url: format!("axfr://{server}/{zone}"),
        message: message.into(),
    }
}

/// RFC 1982: is `a` newer than `b`?
fn newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// Pull the zone, or say the kept copy is current.
pub(super) async fn fetch(
    feed: &FeedConfig,
    server: SocketAddr,
    zone: &str,
    dir: &Path,
) -> Result<ListFetch, FeedError> {
    let secs = feed.timeout.as_secs();
    match tokio::time::timeout(feed.timeout, pull(feed, server, zone, dir)).await {
        Ok(r) => r,
        Err(_) => Err(FeedError::Timeout {
            url: format!("axfr://{server}/{zone}"),
            secs,
        }),
    }
}

async fn pull(
    feed: &FeedConfig,
    server: SocketAddr,
    zone: &str,
    dir: &Path,
) -> Result<ListFetch, FeedError> {
    let fail = |m: String| failed(server, zone, m);
    let origin =
        Name::from_ascii(format!("{zone}.")).map_err(|e| fail(format!("zone name: {e}")))?;
    let signer = match &feed.tsig_key_file {
        None => None,
        Some(path) => {
            let key = crate::tsig::TsigKey::load(path)
                .map_err(|e| fail(format!("tsig_key_file: {e}")))?;
            Some(
                key.signer()
                    .map_err(|e| fail(format!("tsig_key_file: {e}")))?,
            )
        }
    };
    let list = dir.join("list");
    let kept: Option<(u32, Vec<u8>)> = match read_cache(&dir.join(KEPT), 4096)?
        .and_then(|b| serde_json::from_slice::<Kept>(&b).ok())
    {
        Some(k) => read_cache(&list, feed.max_bytes)?.map(|bytes| (k.serial, bytes)),
        None => None,
    };
    let mut conn = Conn::open(server, signer, feed.max_bytes)
        .await
        .map_err(|e| fail(e.to_string()))?;

    // 1. The serial.
    let soa = conn
        .ask(&origin, RecordType::SOA, None)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let serial = soa
        .iter()
        .find_map(|r| soa_serial(r).filter(|_| r.name == origin))
        .ok_or_else(|| {
            fail(format!(
                "the primary has no SOA for {zone} (not authoritative?)"
            ))
        })?;
    if let Some((at, bytes)) = &kept
        && !newer(serial, *at)
    {
        tracing::debug!(feed = %feed.name, serial, "RPZ zone unchanged");
        return Ok(ListFetch::NotModified(bytes.clone()));
    }

    // 2. The transfer: IXFR from the kept serial, else AXFR.
    let records = match &kept {
        Some((at, _)) => {
            let mut since = soa
                .iter()
                .find(|r| soa_serial(r).is_some())
                .cloned()
                .ok_or_else(|| fail("no SOA".into()))?;
            if let RData::SOA(s) = &mut since.data {
                s.serial = *at;
            }
            conn.ask(&origin, RecordType::IXFR, Some(since)).await
        }
        None => conn.ask(&origin, RecordType::AXFR, None).await,
    }
    .map_err(|e| fail(e.to_string()))?;
    let zone_text = match (
        &kept,
        apply(&records, kept.as_ref().map(|(_, b)| b.as_slice())),
    ) {
        (_, Ok(Applied::Current)) => {
            if let Some((_, bytes)) = kept {
                return Ok(ListFetch::NotModified(bytes));
            }
            return Err(fail("the primary sent no zone".into()));
        }
        (_, Ok(Applied::Zone { lines, how })) => {
            tracing::info!(feed = %feed.name, serial, how, records = lines.len(), "RPZ zone transferred");
            render(&origin, &lines)
        }
        (_, Err(e)) => return Err(fail(e)),
    };
    let validators = serde_json::to_vec(&Kept { serial }).unwrap_or_default();
    Ok(ListFetch::New {
        bytes: zone_text.into_bytes(),
        validators,
    })
}

fn soa_serial(r: &Record) -> Option<u32> {
    match &r.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    }
}

/// One zone-file line of a record, and the key it is found by (the line
/// without its TTL: RFC 2136 equality, as IXFR deletions are matched).
fn line_of(r: &Record) -> String {
    r.to_string()
}

fn key_of(line: &str) -> String {
    let mut w = line.split_whitespace();
    let owner = w.next().unwrap_or("").to_ascii_lowercase();
    let _ttl = w.next();
    let rest: Vec<&str> = w.collect();
    format!("{owner} {}", rest.join(" "))
}

/// The kept copy as its lines, by key (the `$ORIGIN` line left out).
fn parse_kept(bytes: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.starts_with('$') && !l.trim().is_empty())
        .map(|l| (key_of(l), l.to_string()))
        .collect()
}

fn render(origin: &Name, lines: &BTreeMap<String, String>) -> String {
    let mut out = format!("$ORIGIN {origin}\n");
    // The SOA first, as a zone file has it.
    let (soa, rest): (Vec<&String>, Vec<&String>) = lines
        .values()
        .partition(|l| l.split_whitespace().nth(3) == Some("SOA"));
    for l in soa.into_iter().chain(rest) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[derive(Debug, PartialEq)]
enum Applied {
    /// The kept copy is current (a one-SOA IXFR answer).
    Current,
    Zone {
        lines: BTreeMap<String, String>,
        how: &'static str,
    },
}

/// Turn a transfer's records into the zone: a whole zone (AXFR, or an
/// IXFR answered in full), or the kept copy with the differences applied.
fn apply(records: &[Record], kept: Option<&[u8]>) -> Result<Applied, String> {
    let Some(first) = records.first().filter(|r| soa_serial(r).is_some()) else {
        return Err("the transfer does not start with the zone's SOA".into());
    };
    if records.len() == 1 {
        return Ok(Applied::Current);
    }
    let incremental = records.len() > 2 && soa_serial(&records[1]).is_some();
    let body = &records[1..records.len() - 1];
    if !incremental {
        let mut lines = BTreeMap::new();
        for r in std::iter::once(first).chain(body) {
            let l = line_of(r);
            lines.insert(key_of(&l), l);
        }
        return Ok(Applied::Zone { lines, how: "AXFR" });
    }
    let Some(kept) = kept else {
        return Err("an incremental transfer without a kept copy".into());
    };
    let mut lines = parse_kept(kept);
    // Sequences of: SOA(old) deletions... SOA(new) additions...
    let mut adding = true;
    for r in body {
        if soa_serial(r).is_some() {
            adding = !adding;
            if adding {
                // The new SOA replaces the old one.
                lines.retain(|_, l| l.split_whitespace().nth(3) != Some("SOA"));
                let l = line_of(r);
                lines.insert(key_of(&l), l);
            }
            continue;
        }
        let l = line_of(r);
        if adding {
            lines.insert(key_of(&l), l);
        } else {
            lines.remove(&key_of(&l));
        }
    }
    // The final SOA is the zone's.
    lines.retain(|_, l| l.split_whitespace().nth(3) != Some("SOA"));
    let l = line_of(first);
    lines.insert(key_of(&l), l);
    Ok(Applied::Zone { lines, how: "IXFR" })
}

/// One TCP connection to the primary.
struct Conn {
    stream: TcpStream,
    signer: Option<TSigner>,
    max_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
enum XfrError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Proto(#[from] hickory_proto::ProtoError),
    #[error("a malformed answer: {0}")]
    Decode(#[from] hickory_proto::serialize::binary::DecodeError),
    #[error(
        "the primary answered {0} (NOTAUTH: it refused our TSIG key, or is not authoritative; REFUSED: transfers not allowed to us)"
    )]
    Rcode(ResponseCode),
    #[error("the answer is not signed with the feed's TSIG key, or the signature is wrong: {0}")]
    Tsig(String),
    #[error("the answer does not match the question")]
    Mismatch,
    #[error("the zone is larger than max_bytes ({0})")]
    TooLarge(u64),
}

impl Conn {
    async fn open(
        server: SocketAddr,
        signer: Option<TSigner>,
        max_bytes: u64,
    ) -> Result<Conn, XfrError> {
        let stream = TcpStream::connect(server).await?;
        Ok(Conn {
            stream,
            signer,
            max_bytes,
        })
    }

    /// Ask one question and read the whole answer: one message, or for a
    /// transfer, messages until the closing SOA.
    async fn ask(
        &mut self,
        origin: &Name,
        qtype: RecordType,
        authority: Option<Record>,
    ) -> Result<Vec<Record>, XfrError> {
        let mut q = Message::query();
        q.metadata.id = rand::random();
        q.metadata.op_code = OpCode::Query;
        q.metadata.message_type = MessageType::Query;
        q.add_query(Query::query(origin.clone(), qtype));
        if let Some(a) = authority {
            q.add_authority(a);
        }
        let mut verifier: Option<TSigVerifier> = match &self.signer {
            Some(s) => q.finalize(s, crate::clock::unix_now())?,
            None => None,
        };
        let bytes = q.to_vec()?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        self.stream.write_all(&framed).await?;

        let transfer = matches!(qtype, RecordType::AXFR | RecordType::IXFR);
        let mut records: Vec<Record> = Vec::new();
        let mut total = 0u64;
        loop {
            let len = usize::from(self.stream.read_u16().await?);
            total += len as u64;
            if total > self.max_bytes {
                return Err(XfrError::TooLarge(self.max_bytes));
            }
            let mut buf = vec![0u8; len];
            self.stream.read_exact(&mut buf).await?;
            // An error answer is taken as it is, signed or not: it only
            // makes the pull fail (a primary that refuses our key answers
            // NOTAUTH with an unsigned BADSIG/BADKEY TSIG, RFC 8945 5.2).
            let plain = Message::from_vec(&buf)?;
            if plain.metadata.response_code != ResponseCode::NoError {
                return Err(XfrError::Rcode(plain.metadata.response_code));
            }
            let m = match verifier.as_mut() {
                Some(v) => v
                    .verify(&buf)
                    .map_err(|e| XfrError::Tsig(e.to_string()))?
                    .into_message(),
                None => plain,
            };
            if m.metadata.id != q.metadata.id || m.metadata.message_type != MessageType::Response {
                return Err(XfrError::Mismatch);
            }
            let first_message = records.is_empty();
            records.extend(m.answers);
            if !transfer {
                return Ok(records);
            }
            // The end: an IXFR answered with the SOA alone (current), the
            // second SOA of a whole zone, the third of the zone's serial in
            // an incremental one.
            let Some(serial) = records.first().and_then(soa_serial) else {
                return Err(XfrError::Mismatch);
            };
            if first_message && records.len() == 1 && qtype == RecordType::IXFR {
                return Ok(records);
            }
            let incremental = records.len() > 1 && soa_serial(&records[1]).is_some();
            let serial_seen = records
                .iter()
                .filter(|r| soa_serial(r) == Some(serial))
                .count();
            let done = if incremental {
                serial_seen >= 3
            } else {
                serial_seen >= 2
            };
            if done && records.last().and_then(soa_serial) == Some(serial) {
                return Ok(records);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{CNAME, SOA};

    fn soa(serial: u32) -> Record {
        Record::from_rdata(
            Name::from_ascii("zdn.rpz.").expect("name"),
            300,
            RData::SOA(SOA::new(
                Name::from_ascii("ns.zdn.rpz.").expect("name"),
                Name::from_ascii("hostmaster.zdn.rpz.").expect("name"),
                serial,
                3600,
                600,
                86400,
                60,
            )),
        )
    }

    fn nx(owner: &str) -> Record {
        Record::from_rdata(
            Name::from_ascii(format!("{owner}.zdn.rpz.")).expect("name"),
            300,
            RData::CNAME(CNAME(Name::root())),
        )
    }

    fn owners(a: &Applied) -> Vec<String> {
        match a {
            Applied::Zone { lines, .. } => lines
                .values()
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .collect(),
            Applied::Current => vec![],
        }
    }

    #[test]
    fn a_whole_zone_and_then_its_differences() {
        let axfr = [soa(1), nx("evil.example"), nx("bad.example"), soa(1)];
        let full = apply(&axfr, None).expect("applies");
        assert_eq!(
            owners(&full),
            ["bad.example.zdn.rpz.", "evil.example.zdn.rpz.", "zdn.rpz."]
        );
        let Applied::Zone { lines, how } = &full else {
            panic!("a zone")
        };
        assert_eq!(*how, "AXFR");
        let kept = render(&Name::from_ascii("zdn.rpz.").expect("name"), lines);
        assert!(
            kept.starts_with("$ORIGIN zdn.rpz.\nzdn.rpz. 300 IN SOA"),
            "{kept}"
        );
        // 1 -> 2: bad.example removed, new.example added; 2 -> 3: more.example.
        let ixfr = [
            soa(3),
            soa(1),
            nx("bad.example"),
            soa(2),
            nx("new.example"),
            soa(2),
            soa(3),
            nx("more.example"),
            soa(3),
        ];
        let inc = apply(&ixfr, Some(kept.as_bytes())).expect("applies");
        assert_eq!(
            owners(&inc),
            [
                "evil.example.zdn.rpz.",
                "more.example.zdn.rpz.",
                "new.example.zdn.rpz.",
                "zdn.rpz."
            ]
        );
        let Applied::Zone { lines, how } = &inc else {
            panic!("a zone")
        };
        assert_eq!(*how, "IXFR");
        assert!(
            lines
                .values()
                .any(|l| l.contains(" SOA ") && l.contains(" 3 "))
        );
        assert_eq!(
            apply(&[soa(3)], Some(kept.as_bytes())),
            Ok(Applied::Current)
        );
        assert!(apply(&[nx("x")], None).is_err(), "must start with the SOA");
        assert!(apply(&ixfr, None).is_err(), "differences need a kept copy");
    }

    #[test]
    fn serials_compare_as_rfc_1982_says() {
        assert!(newer(2, 1));
        assert!(!newer(1, 1));
        assert!(!newer(1, 2));
        assert!(newer(1, u32::MAX), "wraps");
    }
}
