//! The connections schild opens to its upstreams (forward mode, forward
//! and stub zones) and to name servers (recursive mode), and the dnstap
//! RESOLVER_QUERY and RESOLVER_RESPONSE messages they log with
//! `dnstap.resolver_queries = true`.
//!
//! [`Outgoing`] is the `ConnectionProvider` hickory's forwarder pool and
//! (under [`super::recursor::Authorities`]) its recursor dial through.
//! Without a tap it hands out hickory's own connections untouched. With
//! one it logs every exchange where the bytes are plain:
//! - **UDP** at the socket ([`Dialer`] binds the sockets hickory asks
//!   for): every datagram sent is a RESOLVER_QUERY and every one received
//!   a RESOLVER_RESPONSE, with the exact bytes, IDs and ports on the wire
//!   (a resend is a second query, as it went out). The socket is bound to
//!   the unspecified address, so the source address shown is the one the
//!   kernel routes from towards that server (asked once per server).
//! - **TCP and DoT** at the message, above the TLS layer ([`Conn`]): the
//!   query as hickory sent it, with the ID its multiplexer gave it (taken
//!   from the answer), and the answer's bytes as received. The source
//!   address is the connection's own.
//!
//! `query_zone` is the forward or stub zone (`.` for the global
//! forwarder); in recursive mode it is left out (the connection layer does
//! not know which delegation a server was asked for).
//!
//! The tap only copies into dnstap's bounded queue (`try_send`), so an
//! exchange never waits for the collector.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{Stream, StreamExt};
use hickory_proto::op::{DnsRequest, DnsResponse};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::BinEncodable;
use hickory_resolver::config::{ConnectionConfig, ProtocolConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::{DnsUdpSocket, RuntimeProvider, TokioRuntimeProvider};
use hickory_resolver::net::xfer::{DnsExchange, DnsHandle};
use hickory_resolver::{ConnectionProvider, PoolContext};

use super::dnstap::{Ends, Tap, Transport};

type Tokio = TokioRuntimeProvider;

/// Servers whose route source address is remembered; past it the table
/// starts over.
const SOURCES_CAP: usize = 4_096;

/// Where the resolver messages go, and what every one of them shares.
struct Log {
    tap: Tap,
    /// `query_zone`, in wire format.
    zone: Option<Arc<[u8]>>,
    /// The source address the kernel picks towards a server.
    sources: Mutex<HashMap<IpAddr, IpAddr>>,
}

impl Log {
    /// The address a datagram to `server` leaves from, for a socket
    /// bound to the unspecified address.
    fn source(&self, server: SocketAddr) -> Option<IpAddr> {
        let lock = || self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = lock().get(&server.ip()) {
            return Some(*ip);
        }
        let any = unspecified(server);
        // A connected UDP socket sends nothing: connect() only asks the
        // routing table.
        let probe = std::net::UdpSocket::bind((any, 0)).ok()?;
        probe.connect(server).ok()?;
        let ip = probe.local_addr().ok()?.ip();
        let mut table = lock();
        if table.len() >= SOURCES_CAP {
            table.clear();
        }
        table.insert(server.ip(), ip);
        Some(ip)
    }
}

/// The unspecified address of `like`'s family.
fn unspecified(like: SocketAddr) -> IpAddr {
    match like {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// The connection provider of every upstream exchange (see the module docs).
#[derive(Clone, Default)]
pub struct Outgoing {
    runtime: Tokio,
    log: Option<Arc<Log>>,
}

impl Outgoing {
    /// Connections that log to `tap` (`None`: `resolver_queries` is off),
    /// naming `zone` as the `query_zone` when it is known.
    pub fn new(tap: Option<Tap>, zone: Option<&Name>) -> Outgoing {
        Outgoing {
            runtime: Tokio::default(),
            log: tap.map(|tap| {
                Arc::new(Log {
                    tap,
                    zone: zone.and_then(|z| z.to_bytes().ok()).map(Arc::from),
                    sources: Mutex::new(HashMap::new()),
                })
            }),
        }
    }

    /// The same connections with another `query_zone`.
    pub fn for_zone(&self, zone: Option<&Name>) -> Outgoing {
        Outgoing::new(self.log.as_ref().map(|l| l.tap.clone()), zone)
    }

    /// Log one exchange of code that opens its own sockets (the stub
    /// zones' iterator, `server::stub`): the query sent at `sent` from
    /// `local` (an unspecified address is replaced by the one the kernel
    /// routes from) and, if one came, its answer.
    pub fn log_exchange(
        &self,
        transport: Transport,
        local: SocketAddr,
        server: SocketAddr,
        sent: SystemTime,
        query: &[u8],
        answer: Option<&[u8]>,
    ) {
        let Some(log) = &self.log else { return };
        let local = if local.ip().is_unspecified() {
            SocketAddr::new(log.source(server).unwrap_or(local.ip()), local.port())
        } else {
            local
        };
        let ends = Ends {
            transport,
            local,
            upstream: server,
            zone: log.zone.clone(),
        };
        log.tap.resolver_query(&ends, sent, query);
        if let Some(answer) = answer {
            log.tap.resolver_response(&ends, sent, answer);
        }
    }
}

impl ConnectionProvider for Outgoing {
    type Conn = Conn;
    type FutureConn = Pin<Box<dyn Future<Output = Result<Conn, NetError>> + Send>>;
    type RuntimeProvider = Tokio;

    fn new_connection(
        &self,
        ip: IpAddr,
        config: &ConnectionConfig,
        cx: &PoolContext,
    ) -> Result<Self::FutureConn, NetError> {
        let mut dialer = Dialer {
            inner: self.runtime.clone(),
            udp: None,
            tcp_local: None,
        };
        let mut tap = None;
        if let Some(log) = &self.log {
            let transport = match &config.protocol {
                ProtocolConfig::Udp => None,
                ProtocolConfig::Tls { .. } => Some(Transport::Dot),
                _ => Some(Transport::Tcp),
            };
            match transport {
                None => dialer.udp = Some(log.clone()),
                Some(transport) => {
                    let local = Arc::new(OnceLock::new());
                    dialer.tcp_local = Some(local.clone());
                    tap = Some(Arc::new(StreamTap {
                        log: log.clone(),
                        transport,
                        server: SocketAddr::new(ip, config.port),
                        local,
                    }));
                }
            }
        }
        // hickory's own connection over our sockets (the blanket
        // `ConnectionProvider` of every `RuntimeProvider`).
        let connecting = ConnectionProvider::new_connection(&dialer, ip, config, cx)?;
        Ok(Box::pin(async move {
            Ok(Conn {
                inner: connecting.await?,
                tap,
            })
        }))
    }

    fn runtime_provider(&self) -> &Tokio {
        &self.runtime
    }
}

/// The sockets under one connection: tokio's, with UDP datagrams logged
/// (`udp`) or the TCP connection's source address kept (`tcp_local`).
#[derive(Clone)]
pub struct Dialer {
    inner: Tokio,
    udp: Option<Arc<Log>>,
    tcp_local: Option<Arc<OnceLock<SocketAddr>>>,
}

impl RuntimeProvider for Dialer {
    type Handle = <Tokio as RuntimeProvider>::Handle;
    type Timer = <Tokio as RuntimeProvider>::Timer;
    type Udp = TappedUdp;
    type Tcp = <Tokio as RuntimeProvider>::Tcp;

    fn create_handle(&self) -> Self::Handle {
        self.inner.create_handle()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Send + Future<Output = Result<Self::Tcp, io::Error>>>> {
        let connecting = self.inner.connect_tcp(server_addr, bind_addr, timeout);
        let slot = self.tcp_local.clone();
        Box::pin(async move {
            let stream = connecting.await?;
            if let (Some(slot), Ok(local)) = (slot, stream.0.local_addr()) {
                let _ = slot.set(local);
            }
            Ok(stream)
        })
    }

    fn bind_udp(
        &self,
        local_addr: SocketAddr,
        server_addr: SocketAddr,
    ) -> Pin<Box<dyn Send + Future<Output = Result<Self::Udp, io::Error>>>> {
        let binding = self.inner.bind_udp(local_addr, server_addr);
        let log = self.udp.clone();
        Box::pin(async move {
            let socket = binding.await?;
            let tap = match log {
                None => None,
                Some(log) => {
                    let mut local = socket.local_addr()?;
                    if local.ip().is_unspecified()
                        && let Some(ip) = log.source(server_addr)
                    {
                        local.set_ip(ip);
                    }
                    Some(DatagramTap {
                        log,
                        local,
                        sent_nanos: AtomicU64::new(0),
                    })
                }
            };
            Ok(TappedUdp { socket, tap })
        })
    }
}

/// A UDP socket whose datagrams are logged.
pub struct TappedUdp {
    socket: tokio::net::UdpSocket,
    tap: Option<DatagramTap>,
}

struct DatagramTap {
    log: Arc<Log>,
    local: SocketAddr,
    /// When the last query went out (ns since the epoch): the query time
    /// of the answer that follows.
    sent_nanos: AtomicU64,
}

impl DatagramTap {
    fn ends(&self, upstream: SocketAddr) -> Ends {
        Ends {
            transport: Transport::Udp,
            local: self.local,
            upstream,
            zone: self.log.zone.clone(),
        }
    }
}

fn nanos(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl DnsUdpSocket for TappedUdp {
    type Time = <tokio::net::UdpSocket as DnsUdpSocket>::Time;

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let polled = DnsUdpSocket::poll_recv_from(&self.socket, cx, buf);
        if let (Some(t), Poll::Ready(Ok((n, from)))) = (&self.tap, &polled) {
            let sent = UNIX_EPOCH + Duration::from_nanos(t.sent_nanos.load(Ordering::Relaxed));
            let message = buf.get(..*n).unwrap_or_default();
            t.log.tap.resolver_response(&t.ends(*from), sent, message);
        }
        polled
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let polled = DnsUdpSocket::poll_send_to(&self.socket, cx, buf, target);
        if let (Some(t), Poll::Ready(Ok(_))) = (&self.tap, &polled) {
            let now = SystemTime::now();
            t.sent_nanos.store(nanos(now), Ordering::Relaxed);
            t.log.tap.resolver_query(&t.ends(target), now, buf);
        }
        polled
    }
}

/// One connection to one upstream: hickory's, and over TCP and DoT its
/// exchanges logged.
#[derive(Clone)]
pub struct Conn {
    inner: DnsExchange<Dialer>,
    tap: Option<Arc<StreamTap>>,
}

/// What a TCP or DoT connection's messages are logged with.
struct StreamTap {
    log: Arc<Log>,
    transport: Transport,
    server: SocketAddr,
    local: Arc<OnceLock<SocketAddr>>,
}

impl StreamTap {
    fn ends(&self) -> Ends {
        Ends {
            transport: self.transport,
            local: (self.local.get().copied())
                .unwrap_or_else(|| SocketAddr::new(unspecified(self.server), 0)),
            upstream: self.server,
            zone: self.log.zone.clone(),
        }
    }
}

/// One query on a stream connection, logged once: with its answer, or
/// alone when it gets none (an error, or dropped at a timeout).
struct Pending {
    tap: Arc<StreamTap>,
    query: Vec<u8>,
    sent: SystemTime,
    logged: bool,
}

impl Pending {
    fn query(&mut self) {
        if !self.logged {
            self.logged = true;
            let t = &self.tap;
            t.log.tap.resolver_query(&t.ends(), self.sent, &self.query);
        }
    }

    fn answered(&mut self, response: &DnsResponse) {
        let answer = response.as_buffer();
        // The multiplexer gave the query its ID after we saw it; the
        // answer carries it.
        if !self.logged
            && let (Some(q), Some(id)) = (self.query.get_mut(..2), answer.get(..2))
        {
            q.copy_from_slice(id);
        }
        self.query();
        let t = &self.tap;
        t.log.tap.resolver_response(&t.ends(), self.sent, answer);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.query();
    }
}

impl DnsHandle for Conn {
    type Response = Pin<Box<dyn Stream<Item = Result<DnsResponse, NetError>> + Send>>;
    type Runtime = Dialer;

    fn send(&self, request: DnsRequest) -> Self::Response {
        let Some(tap) = &self.tap else {
            return Box::pin(self.inner.send(request));
        };
        let query = request.to_vec().unwrap_or_default();
        let mut pending = Pending {
            tap: tap.clone(),
            query,
            sent: SystemTime::now(),
            logged: false,
        };
        Box::pin(self.inner.send(request).map(move |answer| {
            match &answer {
                Ok(response) => pending.answered(response),
                Err(_) => pending.query(),
            }
            answer
        }))
    }
}
