//! The query log for the SOC: every client query and response (and with
//! `resolver_queries` schild's own queries upstream, RESOLVER_QUERY and
//! RESOLVER_RESPONSE, logged by [`super::outgoing`]) as a dnstap
//! message (<https://dnstap.info>, `dnstap.proto`) over Frame Streams
//! (`fstrm`, bidirectional: READY, ACCEPT, START, data frames, STOP,
//! FINISH) to a unix socket or a TCP address, as Unbound, BIND, Knot and
//! PowerDNS send it.
//!
//! The query path never waits for the collector: it copies the message
//! into a bounded queue with `try_send`, and when the queue is full (the
//! collector is slow, or gone and being reconnected) the frame is dropped
//! and counted in `schild_dnstap_dropped_total`. One writer task owns the
//! connection, turns client addresses into what `dnstap.client_addresses`
//! allows, encodes, and reconnects with a backoff on its own.
//!
//! The protobuf encoding is written here (a dozen fields of one message;
//! a code generator and its build step would be more than the encoder).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounter, IntGauge, Registry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ClientPrivacy, DnstapConfig, DnstapTarget};
use crate::sightings::log::Pseudonymiser;

/// The Frame Streams content type of dnstap.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// Frames waiting for the writer before new ones are dropped.
const QUEUE: usize = 8_192;
/// Reconnect backoff: first and longest wait.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How long the collector has to answer READY with ACCEPT (and STOP with FINISH).
const HANDSHAKE: Duration = Duration::from_secs(5);

// Frame Streams control frame types and the content-type field.
const FSTRM_ACCEPT: u32 = 0x01;
const FSTRM_START: u32 = 0x02;
const FSTRM_STOP: u32 = 0x03;
const FSTRM_READY: u32 = 0x04;
const FSTRM_FINISH: u32 = 0x05;
const FSTRM_FIELD_CONTENT_TYPE: u32 = 0x01;
/// A control frame longer than this is not from a dnstap collector.
const MAX_CONTROL: usize = 512;

/// `Message.Type` of dnstap.proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ResolverQuery = 3,
    ResolverResponse = 4,
    ClientQuery = 5,
    ClientResponse = 6,
}

impl Kind {
    /// Whether schild asked (the query address is its own, never a
    /// client's: `client_addresses` does not apply).
    fn is_resolver(self) -> bool {
        matches!(self, Kind::ResolverQuery | Kind::ResolverResponse)
    }

    fn is_query(self) -> bool {
        matches!(self, Kind::ResolverQuery | Kind::ClientQuery)
    }
}

/// `SocketProtocol` of dnstap.proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp = 1,
    Tcp = 2,
    Dot = 3,
}

/// One message as the query path hands it over.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub transport: Transport,
    /// The side that asked (`query_address`): the client, or for a
    /// resolver message schild's own source address.
    pub client: SocketAddr,
    /// The side that answered (`response_address`): the address schild
    /// answered on when the listener knows it, or the upstream.
    pub server: Option<SocketAddr>,
    /// `query_zone` (resolver messages only): the zone the upstream was
    /// asked as a server of, in wire format, when it is known.
    pub zone: Option<Arc<[u8]>>,
    /// When the query arrived (for a response too, as dnstap wants).
    pub query_time: SystemTime,
    /// When the response left (responses only).
    pub response_time: Option<SystemTime>,
    pub message: Vec<u8>,
}

/// An exchange schild started, as its resolver messages name it.
#[derive(Debug, Clone)]
pub struct Ends {
    pub transport: Transport,
    /// schild's source address (`query_address`).
    pub local: SocketAddr,
    /// The upstream or name server (`response_address`).
    pub upstream: SocketAddr,
    /// `query_zone` in wire format, when it is known.
    pub zone: Option<Arc<[u8]>>,
}

/// The query path's handle: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct Tap {
    tx: mpsc::Sender<Event>,
    queries: bool,
    responses: bool,
    resolver: bool,
    dropped: IntCounter,
}

impl Tap {
    /// Log a client query (if `client_queries`).
    pub fn query(
        &self,
        transport: Transport,
        client: SocketAddr,
        server: Option<SocketAddr>,
        message: &[u8],
    ) {
        if self.queries {
            self.send(Event {
                kind: Kind::ClientQuery,
                transport,
                client,
                server,
                zone: None,
                query_time: SystemTime::now(),
                response_time: None,
                message: message.to_vec(),
            });
        }
    }

    /// Log a response to a client (if `client_responses`).
    pub fn response(
        &self,
        transport: Transport,
        client: SocketAddr,
        server: Option<SocketAddr>,
        query_time: SystemTime,
        message: &[u8],
    ) {
        if self.responses {
            self.send(Event {
                kind: Kind::ClientResponse,
                transport,
                client,
                server,
                zone: None,
                query_time,
                response_time: Some(SystemTime::now()),
                message: message.to_vec(),
            });
        }
    }

    /// The handle for schild's own queries upstream: `Some` only with
    /// `resolver_queries`.
    pub fn resolver(&self) -> Option<Tap> {
        self.resolver.then(|| self.clone())
    }

    /// Log a query schild sent to an upstream or name server.
    pub fn resolver_query(&self, ends: &Ends, sent: SystemTime, message: &[u8]) {
        self.resolver_message(Kind::ResolverQuery, ends, sent, None, message);
    }

    /// Log an answer schild received from an upstream or name server to
    /// a query it sent at `sent`.
    pub fn resolver_response(&self, ends: &Ends, sent: SystemTime, message: &[u8]) {
        let now = Some(SystemTime::now());
        self.resolver_message(Kind::ResolverResponse, ends, sent, now, message);
    }

    fn resolver_message(
        &self,
        kind: Kind,
        ends: &Ends,
        query_time: SystemTime,
        response_time: Option<SystemTime>,
        message: &[u8],
    ) {
        self.send(Event {
            kind,
            transport: ends.transport,
            client: ends.local,
            server: Some(ends.upstream),
            zone: ends.zone.clone(),
            query_time,
            response_time,
            message: message.to_vec(),
        });
    }

    fn send(&self, e: Event) {
        if self.tx.try_send(e).is_err() {
            self.dropped.inc();
        }
    }
}

/// The metrics of the query log: registered whether or not `[dnstap]` is
/// configured, so rules and dashboards find them (at 0).
#[derive(Clone, Debug)]
pub struct Metrics {
    sent: IntCounter,
    dropped: IntCounter,
    connected: IntGauge,
}

impl Metrics {
    pub fn register(reg: &Registry) -> Result<Metrics, prometheus::Error> {
        let c = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let m = IntCounter::new(name, help)?;
            reg.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let connected = IntGauge::new(
            "schild_dnstap_connected",
            "1 while the dnstap collector is connected and has accepted the stream.",
        )?;
        reg.register(Box::new(connected.clone()))?;
        Ok(Metrics {
            sent: c(
                "schild_dnstap_sent_total",
                "dnstap frames written to the collector.",
            )?,
            dropped: c(
                "schild_dnstap_dropped_total",
                "dnstap frames dropped: the queue was full or the collector was gone.",
            )?,
            connected,
        })
    }
}

/// Start the writer; the returned [`Tap`] goes to the listeners.
pub fn start(
    config: &DnstapConfig,
    privacy: Pseudonymiser,
    metrics: Metrics,
    stop: CancellationToken,
) -> (Tap, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let tap = Tap {
        tx,
        queries: config.client_queries,
        responses: config.client_responses,
        resolver: config.resolver_queries,
        dropped: metrics.dropped.clone(),
    };
    let writer = Writer {
        target: config.target.clone(),
        identity: config.identity.clone().into_bytes(),
        privacy,
        metrics,
    };
    (tap, tokio::spawn(writer.run(rx, stop)))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[derive(Debug, thiserror::Error)]
enum TapError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the collector did not accept the dnstap content type")]
    NotAccepted,
    #[error("the collector sent a malformed control frame")]
    BadControl,
    #[error("the collector did not answer within {} s", HANDSHAKE.as_secs())]
    Timeout,
}

struct Writer {
    target: DnstapTarget,
    identity: Vec<u8>,
    privacy: Pseudonymiser,
    metrics: Metrics,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>, stop: CancellationToken) {
        let mut wait = RETRY_MIN;
        let mut warned = false;
        loop {
            let connected = tokio::select! {
                c = self.connect() => c,
                _ = stop.cancelled() => return,
            };
            match connected {
                Ok(stream) => {
                    tracing::info!(target = %self.target, "dnstap collector connected");
                    warned = false;
                    wait = RETRY_MIN;
                    self.metrics.connected.set(1);
                    let result = self.stream(stream, &mut rx, &stop).await;
                    self.metrics.connected.set(0);
                    match result {
                        Ok(()) => return, // stopped, stream finished
                        Err(e) => {
                            tracing::warn!(target = %self.target, error = %e, "dnstap collector lost; reconnecting, frames are dropped (counted) meanwhile");
                        }
                    }
                }
                Err(e) => {
                    // Once per outage at WARN; every retry at DEBUG.
                    if !warned {
                        tracing::warn!(target = %self.target, error = %e, "cannot connect to the dnstap collector; retrying, frames are dropped (counted) meanwhile");
                        warned = true;
                    } else {
                        tracing::debug!(target = %self.target, error = %e, "dnstap collector still unreachable");
                    }
                }
            }
            // Frames that arrive while there is no collector are dropped,
            // so the queue never holds a stale backlog.
            let until = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    e = rx.recv() => match e {
                        Some(_) => self.metrics.dropped.inc(),
                        None => return,
                    },
                    _ = tokio::time::sleep_until(until) => break,
                    _ = stop.cancelled() => return,
                }
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, TapError> {
        let mut s: Box<dyn Stream> = match &self.target {
            DnstapTarget::Unix(path) => Box::new(
                tokio::time::timeout(HANDSHAKE, tokio::net::UnixStream::connect(path))
                    .await
                    .map_err(|_| TapError::Timeout)??,
            ),
            DnstapTarget::Tcp(addr) => Box::new(
                tokio::time::timeout(HANDSHAKE, tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| TapError::Timeout)??,
            ),
        };
        s.write_all(&control(FSTRM_READY, true)).await?;
        s.flush().await?;
        let (kind, types) = tokio::time::timeout(HANDSHAKE, read_control(&mut s))
            .await
            .map_err(|_| TapError::Timeout)??;
        if kind != FSTRM_ACCEPT || !(types.is_empty() || types.iter().any(|t| t == CONTENT_TYPE)) {
            return Err(TapError::NotAccepted);
        }
        s.write_all(&control(FSTRM_START, true)).await?;
        Ok(s)
    }

    /// Write frames until stopped (`Ok`, after STOP/FINISH) or the
    /// connection fails (`Err`).
    async fn stream(
        &mut self,
        stream: Box<dyn Stream>,
        rx: &mut mpsc::Receiver<Event>,
        stop: &CancellationToken,
    ) -> Result<(), TapError> {
        let mut out = BufWriter::with_capacity(64 * 1024, stream);
        let mut frame = Vec::with_capacity(1024);
        loop {
            let event = tokio::select! {
                e = rx.recv() => e,
                _ = stop.cancelled() => None,
            };
            let Some(event) = event else {
                // Stopping: what is queued goes out first, then STOP.
                while let Ok(e) = rx.try_recv() {
                    self.write(&mut out, &mut frame, &e).await?;
                }
                out.write_all(&control(FSTRM_STOP, false)).await?;
                out.flush().await?;
                let mut s = out.into_inner();
                match tokio::time::timeout(Duration::from_secs(1), read_control(&mut s)).await {
                    Ok(Ok((FSTRM_FINISH, _))) => {}
                    _ => tracing::debug!("the dnstap collector did not FINISH the stream"),
                }
                return Ok(());
            };
            self.write(&mut out, &mut frame, &event).await?;
            if rx.is_empty() {
                out.flush().await?;
            }
        }
    }

    async fn write(
        &mut self,
        out: &mut BufWriter<Box<dyn Stream>>,
        frame: &mut Vec<u8>,
        e: &Event,
    ) -> Result<(), TapError> {
        let client = query_address(&mut self.privacy, e);
        frame.clear();
        encode(e, &self.identity, client, frame);
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if let Err(err) = async {
            out.write_all(&len.to_be_bytes()).await?;
            out.write_all(frame).await
        }
        .await
        {
            self.metrics.dropped.inc();
            return Err(err.into());
        }
        self.metrics.sent.inc();
        Ok(())
    }
}

/// The query address as it goes out: schild's own for a resolver message
/// (not client data), else the client's as `client_addresses` allows.
fn query_address(p: &mut Pseudonymiser, e: &Event) -> Option<IpAddr> {
    if e.kind.is_resolver() {
        Some(e.client.ip())
    } else {
        client_address(p, e.client.ip())
    }
}

/// The client address as `dnstap.client_addresses` allows it: the real
/// one, none, or a pseudonym shaped as an address so every dnstap tool
/// still reads it: 2001:db8::/32 (documentation space, never a real host)
/// followed by 96 bits of the rotating keyed hash the sightings log uses.
fn client_address(p: &mut Pseudonymiser, ip: IpAddr) -> Option<IpAddr> {
    match p.privacy() {
        ClientPrivacy::Full => Some(ip),
        ClientPrivacy::Omit => None,
        ClientPrivacy::Pseudonymise => {
            let tag = p.tag(ip)?;
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            o[4..].copy_from_slice(&tag[..12]);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
    }
}

/// A Frame Streams control frame, with the dnstap content type if asked.
fn control(kind: u32, content_type: bool) -> Vec<u8> {
    let mut body = kind.to_be_bytes().to_vec();
    if content_type {
        body.extend_from_slice(&FSTRM_FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        body.extend_from_slice(CONTENT_TYPE);
    }
    let mut f = vec![0, 0, 0, 0];
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(&body);
    f
}

/// Read one control frame: its type and the content types it names.
async fn read_control<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
) -> Result<(u32, Vec<Vec<u8>>), TapError> {
    let escape = s.read_u32().await?;
    let len = s.read_u32().await? as usize;
    if escape != 0 || !(4..=MAX_CONTROL).contains(&len) {
        return Err(TapError::BadControl);
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    parse_control(&body).ok_or(TapError::BadControl)
}

/// A control frame's body: its type and content-type fields.
fn parse_control(body: &[u8]) -> Option<(u32, Vec<Vec<u8>>)> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?))
    };
    let kind = u32_at(0)?;
    let mut types = Vec::new();
    let mut at = 4;
    while at < body.len() {
        let field = u32_at(at)?;
        let len = u32_at(at + 4)? as usize;
        let value = body.get(at + 8..(at + 8).checked_add(len)?)?;
        if field == FSTRM_FIELD_CONTENT_TYPE {
            types.push(value.to_vec());
        }
        at += 8 + len;
    }
    Some((kind, types))
}

// ------------------------------------------------------------- protobuf

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    varint(out, (field << 3) | wire_type);
}

fn uint(out: &mut Vec<u8>, field: u64, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn fixed32(out: &mut Vec<u8>, field: u64, v: u32) {
    key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Encode one `Dnstap` message (type MESSAGE) into `out`: the `Message`
/// with its type, socket family and protocol, the client address (as
/// `client` says: `None` leaves it out) and port, the server's address and
/// port, the query zone if known, the times, and the DNS message itself.
pub fn encode(e: &Event, identity: &[u8], client: Option<IpAddr>, out: &mut Vec<u8>) {
    let mut m = Vec::with_capacity(e.message.len() + 64);
    uint(&mut m, 1, e.kind as u64);
    let family_of = client.or(e.server.map(|s| s.ip())).unwrap_or(e.client.ip());
    uint(&mut m, 2, if family_of.is_ipv4() { 1 } else { 2 });
    uint(&mut m, 3, e.transport as u64);
    if let Some(ip) = client {
        bytes(&mut m, 4, &ip_bytes(ip));
    }
    if let Some(s) = e.server {
        // A pseudonymised v4 client is shown as v6: keep one family.
        let ip = match (client, s.ip()) {
            (Some(IpAddr::V6(_)), IpAddr::V4(a)) => IpAddr::V6(a.to_ipv6_mapped()),
            (_, ip) => ip,
        };
        bytes(&mut m, 5, &ip_bytes(ip));
    }
    if client.is_some() {
        uint(&mut m, 6, u64::from(e.client.port()));
    }
    if let Some(s) = e.server {
        uint(&mut m, 7, u64::from(s.port()));
    }
    let split = |t: SystemTime| {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        (d.as_secs(), d.subsec_nanos())
    };
    let (qs, qn) = split(e.query_time);
    uint(&mut m, 8, qs);
    fixed32(&mut m, 9, qn);
    if e.kind.is_query() {
        bytes(&mut m, 10, &e.message);
    }
    if let Some(zone) = &e.zone {
        bytes(&mut m, 11, zone);
    }
    if !e.kind.is_query() {
        let (rs, rn) = split(e.response_time.unwrap_or(e.query_time));
        uint(&mut m, 12, rs);
        fixed32(&mut m, 13, rn);
        bytes(&mut m, 14, &e.message);
    }
    out.reserve(m.len() + identity.len() + 48);
    bytes(out, 1, identity);
    bytes(
        out,
        2,
        concat!("schild ", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    bytes(out, 14, &m);
    uint(out, 15, 1); // Dnstap.Type MESSAGE
}

/// Where the collector is, as the config names it.
impl std::fmt::Display for DnstapTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnstapTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            DnstapTarget::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal protobuf reader for the tests: (field, wire type, value).
    fn fields(mut b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        fn read_varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let k = read_varint(&mut b);
            let (field, wt) = (k >> 3, k & 7);
            let value = match wt {
                0 => read_varint(&mut b).to_le_bytes().to_vec(),
                2 => {
                    let len = read_varint(&mut b) as usize;
                    let v = b[..len].to_vec();
                    b = &b[len..];
                    v
                }
                5 => {
                    let v = b[..4].to_vec();
                    b = &b[4..];
                    v
                }
                other => panic!("wire type {other}"),
            };
            out.push((field, wt, value));
        }
        out
    }

    fn get(f: &[(u64, u64, Vec<u8>)], n: u64) -> Option<&Vec<u8>> {
        f.iter().find(|(k, _, _)| *k == n).map(|(_, _, v)| v)
    }

    fn event(kind: Kind) -> Event {
        Event {
            kind,
            transport: Transport::Tcp,
            client: "10.1.2.3:40000".parse().expect("addr"),
            server: Some("10.0.0.53:53".parse().expect("addr")),
            zone: None,
            query_time: UNIX_EPOCH + Duration::new(1_700_000_000, 5),
            response_time: Some(UNIX_EPOCH + Duration::new(1_700_000_001, 7)),
            message: vec![0xab; 30],
        }
    }

    #[test]
    fn a_client_query_carries_what_dnstap_read_shows() {
        let e = event(Kind::ClientQuery);
        let mut out = Vec::new();
        encode(&e, b"resolver-1", Some(e.client.ip()), &mut out);
        let top = fields(&out);
        assert_eq!(get(&top, 1).map(Vec::as_slice), Some(&b"resolver-1"[..]));
        assert_eq!(get(&top, 15).map(|v| v[0]), Some(1), "type MESSAGE");
        let m = fields(get(&top, 14).expect("message"));
        assert_eq!(get(&m, 1).map(|v| v[0]), Some(5), "CLIENT_QUERY");
        assert_eq!(get(&m, 2).map(|v| v[0]), Some(1), "INET");
        assert_eq!(get(&m, 3).map(|v| v[0]), Some(2), "TCP");
        assert_eq!(get(&m, 4).map(Vec::as_slice), Some(&[10, 1, 2, 3][..]));
        assert_eq!(get(&m, 5).map(Vec::as_slice), Some(&[10, 0, 0, 53][..]));
        assert_eq!(
            get(&m, 6).map(|v| u64::from_le_bytes(v[..8].try_into().expect("8"))),
            Some(40000)
        );
        assert_eq!(
            get(&m, 8).map(|v| u64::from_le_bytes(v[..8].try_into().expect("8"))),
            Some(1_700_000_000)
        );
        assert_eq!(get(&m, 9).map(Vec::as_slice), Some(&5u32.to_le_bytes()[..]));
        assert_eq!(get(&m, 10).map(Vec::len), Some(30), "the query message");
        assert!(get(&m, 14).is_none(), "no response message in a query");
    }

    #[test]
    fn a_response_has_both_times_and_an_omitted_client_leaves_no_trace() {
        let e = event(Kind::ClientResponse);
        let mut out = Vec::new();
        encode(&e, b"r", None, &mut out);
        let m = fields(get(&fields(&out), 14).expect("message"));
        assert_eq!(get(&m, 1).map(|v| v[0]), Some(6), "CLIENT_RESPONSE");
        assert!(get(&m, 4).is_none() && get(&m, 6).is_none(), "no client");
        assert_eq!(
            get(&m, 13).map(Vec::as_slice),
            Some(&7u32.to_le_bytes()[..])
        );
        assert_eq!(get(&m, 14).map(Vec::len), Some(30));
        assert!(get(&m, 10).is_none());
    }

    #[test]
    fn a_resolver_query_names_schild_and_the_zone_whatever_the_privacy() {
        let mut e = event(Kind::ResolverQuery);
        e.zone = Some(Arc::from(&b"\x04corp\x00"[..]));
        let mut omit = Pseudonymiser::new(
            ClientPrivacy::Omit,
            std::path::PathBuf::from("/nonexistent/key"),
            Duration::from_secs(86_400),
        );
        let schild = query_address(&mut omit, &e);
        assert_eq!(schild, Some(e.client.ip()), "not a client address");
        assert_eq!(query_address(&mut omit, &event(Kind::ClientQuery)), None);
        let mut out = Vec::new();
        encode(&e, b"r", schild, &mut out);
        let m = fields(get(&fields(&out), 14).expect("message"));
        assert_eq!(get(&m, 1).map(|v| v[0]), Some(3), "RESOLVER_QUERY");
        assert_eq!(get(&m, 4).map(Vec::as_slice), Some(&[10, 1, 2, 3][..]));
        assert_eq!(get(&m, 10).map(Vec::len), Some(30), "the query message");
        assert_eq!(get(&m, 11).map(Vec::as_slice), Some(&b"\x04corp\x00"[..]));
        assert!(get(&m, 14).is_none());

        let e = event(Kind::ResolverResponse);
        let mut out = Vec::new();
        encode(&e, b"r", Some(e.client.ip()), &mut out);
        let m = fields(get(&fields(&out), 14).expect("message"));
        assert_eq!(get(&m, 1).map(|v| v[0]), Some(4), "RESOLVER_RESPONSE");
        assert_eq!(get(&m, 14).map(Vec::len), Some(30), "the response message");
        assert!(get(&m, 10).is_none() && get(&m, 11).is_none());
    }

    #[test]
    fn control_frames_round_trip_and_garbage_is_refused() {
        let f = control(FSTRM_READY, true);
        assert_eq!(&f[..4], &[0, 0, 0, 0], "escape");
        let len = u32::from_be_bytes(f[4..8].try_into().expect("4")) as usize;
        assert_eq!(len, f.len() - 8);
        let (kind, types) = parse_control(&f[8..]).expect("parses");
        assert_eq!(kind, FSTRM_READY);
        assert_eq!(types, vec![CONTENT_TYPE.to_vec()]);
        assert_eq!(
            parse_control(&control(FSTRM_STOP, false)[8..]),
            Some((FSTRM_STOP, vec![]))
        );
        // A field that claims more than there is.
        let mut bad = FSTRM_ACCEPT.to_be_bytes().to_vec();
        bad.extend_from_slice(&1u32.to_be_bytes());
        bad.extend_from_slice(&1000u32.to_be_bytes());
        assert_eq!(parse_control(&bad), None);
        assert_eq!(parse_control(&[0, 0]), None);
    }
}
