//! A small DNS client over real sockets for the tests.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, Query};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

/// A recursive query with EDNS (payload 1232).
pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand::random();
    m.metadata.recursion_desired = true;
    m.metadata.op_code = OpCode::Query;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m
}

/// The same query without an OPT record.
pub fn query_no_edns(name: &str, qtype: RecordType) -> Message {
    let mut m = query(name, qtype);
    m.edns = None;
    m
}

/// Send raw bytes over UDP; `None` on timeout.
pub fn udp_raw(server: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let local: IpAddr = if server.is_ipv6() {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    };
    udp_raw_from(local, server, bytes, timeout)
}

/// [`udp_raw`] from a given source address (another loopback address, to
/// play a client of another network).
pub fn udp_raw_from(
    local: IpAddr,
    server: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    let s = UdpSocket::bind(SocketAddr::new(local, 0)).expect("bind");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.send_to(bytes, server).expect("send");
    let mut buf = vec![0u8; 65_535];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, _)) => {
                // Ignore anything that is not an answer to this id.
                if n >= 2 && buf[..2] == bytes[..2] {
                    return Some(buf[..n].to_vec());
                }
            }
            Err(_) => return None,
        }
    }
}

/// Send one raw message over TCP and read one back; `None` on timeout or
/// a closed connection.
pub fn tcp_raw(server: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let len = u16::try_from(bytes.len()).ok()?.to_be_bytes();
    s.write_all(&[&len[..], bytes].concat()).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Ask over UDP and decode; `None` if no answer came within `timeout`.
pub fn udp_timeout(server: SocketAddr, q: &Message, timeout: Duration) -> Option<(Message, usize)> {
    let bytes = q.to_vec().expect("encode");
    let answer = udp_raw(server, &bytes, timeout)?;
    let len = answer.len();
    Some((Message::from_vec(&answer).expect("decode"), len))
}

/// Ask over UDP from `local` (5 s timeout) and decode; panics without an answer.
pub fn udp_from(local: IpAddr, server: SocketAddr, q: &Message) -> Message {
    let bytes = q.to_vec().expect("encode");
    let answer =
        udp_raw_from(local, server, &bytes, Duration::from_secs(5)).expect("an answer over UDP");
    Message::from_vec(&answer).expect("decode")
}

/// Ask over UDP (5 s timeout) and decode; panics without an answer.
pub fn udp(server: SocketAddr, q: &Message) -> Message {
    udp_timeout(server, q, Duration::from_secs(5))
        .expect("an answer over UDP")
        .0
}

/// Send several queries on one TCP connection before reading any answer,
/// then read one answer per query (in whatever order they come).
pub fn tcp(server: SocketAddr, queries: &[Message]) -> Vec<Message> {
    let mut s = TcpStream::connect(server).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut out = Vec::new();
    for q in queries {
        let b = q.to_vec().expect("encode");
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(&b);
    }
    s.write_all(&out).expect("write");
    let mut answers = Vec::new();
    for _ in queries {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).expect("read length");
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).expect("read message");
        answers.push(Message::from_vec(&buf).expect("decode"));
    }
    answers
}

/// The Extended DNS Error of an answer: (info-code, text).
pub fn ede(m: &Message) -> Option<(u16, String)> {
    let opt = m.edns.as_ref()?.option(EdnsCode::from(15u16))?;
    match opt {
        EdnsOption::Unknown(15, data) if data.len() >= 2 => Some((
            u16::from_be_bytes([data[0], data[1]]),
            String::from_utf8_lossy(&data[2..]).into_owned(),
        )),
        _ => None,
    }
}

/// The A/AAAA addresses in the answer section, as strings.
pub fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The SOA owner in the authority section, as written.
pub fn soa_owner(m: &Message) -> Option<String> {
    m.authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
        .map(|r| r.name.to_string())
}

/// Send `q` over TCP and report whether schild closed the connection
/// without an answer (as it does at accept for a client outside `allow`).
pub fn tcp_closed_unanswered(server: SocketAddr, q: &Message) -> bool {
    let mut c = TcpStream::connect(server).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let q = q.to_vec().expect("encode");
    let _ = c.write_all(&(q.len() as u16).to_be_bytes());
    let _ = c.write_all(&q);
    let mut buf = [0u8; 2];
    match c.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}
