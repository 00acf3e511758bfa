//! Sockets: binding, and our own UDP, TCP and TLS handling.
//!
//! UDP: one receive loop per socket; several `SO_REUSEPORT` sockets per
//! address let the kernel spread datagrams over the cores. The loop reads
//! what is queued in one batch (`recvmmsg` on Linux) and sends the answers
//! the early step wrote in one more (`sendmmsg`); any other query is
//! answered in its own task, which sends its answer on the socket itself.
//! (hickory's `Server` sends every answer back through a channel to the
//! receive loop's task, so one task per socket did all the receiving *and*
//! all the sending; dnsperf showed it, benches/RESULTS.md.)
//!
//! TCP and DoT connections are served here too, because
//! hickory's loop answers the queries of one connection one after another
//! and has no connection cap: here each query of a connection runs as its
//! own task (up to `server.tcp_max_inflight`, answers written as they are
//! ready, RFC 7766), idle connections are closed after `server.tcp_idle_secs`
//! (as are those whose client takes no answer for that long), and at most
//! `server.tcp_max_connections` are open at once.
//!
//! A client cannot hold the slots: one outside `server.allow` is closed at
//! accept, before anything is read; a whole message must arrive within
//! `server.tcp_idle_secs` (the timer does not restart per byte); one
//! address has at most `server.tcp_max_per_client` connections; and at the
//! global cap the connection idle the longest is closed to make room for
//! the new one (as Unbound does) instead of refusing it. Messages with
//! QR=1 are ignored, as over UDP.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, MessageType, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dnstap::{self, Tap};
use super::handler::{Early, Handler};
use crate::wire;

/// One query as the dnstap log saw it arrive, to log its answer by.
#[derive(Clone)]
struct Tapped {
    tap: Tap,
    transport: dnstap::Transport,
    client: SocketAddr,
    server: Option<SocketAddr>,
    received: std::time::SystemTime,
}

impl Tapped {
    /// Log the query, if dnstap is on; the answer is logged by the result.
    fn query(
        handler: &Handler,
        transport: dnstap::Transport,
        client: SocketAddr,
        server: Option<SocketAddr>,
        msg: &[u8],
    ) -> Option<Tapped> {
        let tap = handler.0.dnstap.as_ref()?;
        tap.query(transport, client, server, msg);
        Some(Tapped {
            tap: tap.clone(),
            transport,
            client,
            server,
            received: std::time::SystemTime::now(),
        })
    }

    fn response(&self, msg: &[u8]) {
        self.tap
            .response(self.transport, self.client, self.server, self.received, msg);
    }
}

/// The sockets of one `server.listen` address.
pub struct Bound {
    pub addr: SocketAddr,
    pub udp: Vec<UdpSocket>,
    pub tcp: TcpListener,
}

fn socket(addr: SocketAddr, ty: Type) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, None)?;
    if addr.is_ipv6() {
        // So that `[::]` and `0.0.0.0` can both be listed.
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = socket(addr, Type::DGRAM)?;
    s.set_reuse_port(true)?;
    // Best effort: a larger buffer rides out bursts; the kernel caps it.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = socket(addr, Type::STREAM)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Bind `sockets` UDP sockets and one TCP listener on `addr`, all on the
/// same port (with port 0: the one the first socket got).
pub fn bind(addr: SocketAddr, sockets: usize) -> io::Result<Bound> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let first = udp_socket(addr)?;
        let actual = first.local_addr()?;
        let result = (|| {
            let mut udp = vec![first];
            for _ in 1..sockets.max(1) {
                udp.push(udp_socket(actual)?);
            }
            let tcp = tcp_listener(actual)?;
            Ok::<_, io::Error>(Bound {
                addr: actual,
                udp,
                tcp,
            })
        })();
        match result {
            // With port 0 the TCP port may be taken: pick another.
            Err(e) if addr.port() == 0 && attempt < 20 && e.kind() == io::ErrorKind::AddrInUse => {
                continue;
            }
            r => return r,
        }
    }
}

/// A TCP listener for DoT.
pub fn bind_tls(addr: SocketAddr) -> io::Result<TcpListener> {
    tcp_listener(addr)
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the certificate file {path}")]
    Cert {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot read the key file {path}")]
    Key {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate and key are not usable")]
    Rustls(#[source] rustls::Error),
}

/// The rustls server configuration for DoT (ALPN "dot", RFC 7858).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsSetupError::Cert {
            path: cert.display().to_string(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsSetupError::Key {
        path: key.display().to_string(),
        source,
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsSetupError::Rustls)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(TlsSetupError::Rustls)?;
    config.alpn_protocols = vec![b"dot".to_vec()];
    Ok(Arc::new(config))
}

/// Limits for stream connections.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub idle: Duration,
    pub max_inflight: usize,
}

/// One open connection, as the table sees it.
struct Conn {
    ip: IpAddr,
    stop: CancellationToken,
    /// Milliseconds since the table's epoch of the last whole message.
    active: Arc<AtomicU64>,
}

/// The open TCP and TLS connections of every listener: the global and
/// per-client caps, and who is idle the longest.
pub struct Connections {
    max: usize,
    per_client: usize,
    epoch: Instant,
    inner: Mutex<ConnTable>,
}

#[derive(Default)]
struct ConnTable {
    next: u64,
    open: HashMap<u64, Conn>,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnTable {
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let c = self.open.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&c.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&c.ip);
            }
        }
        Some(c)
    }
}

/// A connection's place in the table; leaving frees it.
struct Slot {
    table: Arc<Connections>,
    id: u64,
    stop: CancellationToken,
    active: Arc<AtomicU64>,
}

impl Slot {
    fn touch(&self) {
        self.active.store(self.table.now(), Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.id);
    }
}

/// Why a connection was not admitted.
enum Refused {
    PerClient,
}

impl Connections {
    pub fn new(max: usize, per_client: usize) -> Connections {
        Connections {
            max: max.max(1),
            per_client: per_client.max(1),
            epoch: Instant::now(),
            inner: Mutex::new(ConnTable::default()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Admit a connection from `ip`, closing the longest-idle one when the
    /// table is full (counted in `evicted`).
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        shutdown: &CancellationToken,
        evicted: &prometheus::IntCounter,
    ) -> Result<Slot, Refused> {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_client {
            return Err(Refused::PerClient);
        }
        while t.open.len() >= self.max {
            let oldest = t
                .open
                .iter()
                .min_by_key(|(_, c)| c.active.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            let Some(id) = oldest else { break };
            if let Some(c) = t.remove(id) {
                c.stop.cancel();
                evicted.inc();
            }
        }
        let id = t.next;
        t.next += 1;
        let stop = shutdown.child_token();
        let active = Arc::new(AtomicU64::new(self.now()));
        t.open.insert(
            id,
            Conn {
                ip,
                stop: stop.clone(),
                active: active.clone(),
            },
        );
        *t.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            table: self.clone(),
            id,
            stop,
            active,
        })
    }
}

/// Accept TCP (or, with `tls`, DoT) connections until `shutdown`.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Handler,
    limits: StreamLimits,
    connections: Arc<Connections>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let protocol = if tls.is_some() {
        Protocol::Tls
    } else {
        Protocol::Tcp
    };
    let local = listener.local_addr().ok();
    loop {
        let (stream, src) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let metrics = handler.0.metrics.clone();
        // Before anything is read: a client outside `allow` gets nothing,
        // not even a slot.
        if !handler.0.may_connect(src.ip()) {
            metrics.acl_refused.inc();
            metrics.tcp_rejected.inc();
            drop(stream);
            continue;
        }
        let slot = match connections.admit(src.ip().to_canonical(), &shutdown, &metrics.tcp_evicted)
        {
            Ok(s) => s,
            Err(Refused::PerClient) => {
                metrics.tcp_rejected.inc();
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        let inner = tracker.clone();
        tracker.spawn(async move {
            metrics.tcp_connections.inc();
            match tls {
                None => {
                    serve_stream(stream, src, local, protocol, handler, limits, inner, &slot).await
                }
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        r = tokio::time::timeout(limits.idle, acceptor.accept(stream)) => Some(r),
                        _ = slot.stop.cancelled() => None,
                    };
                    match handshake {
                        Some(Ok(Ok(s))) => {
                            serve_stream(s, src, local, protocol, handler, limits, inner, &slot)
                                .await
                        }
                        Some(Ok(Err(e))) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Some(Err(_)) => tracing::debug!("TLS handshake timed out"),
                        None => {}
                    }
                }
            }
            metrics.tcp_connections.dec();
            drop(slot);
        });
    }
}

/// Run [`udp_loop`] for `socket` on a thread of its own, with a
/// single-threaded runtime, as Unbound runs a thread per socket: a
/// datagram's arrival wakes that thread alone, not whichever worker of the
/// main runtime sleeps on its I/O driver, which then hands the task to
/// another (a futex wake and a thread switch per query, more than the fast
/// path's answer costs). Queries that need the full path are answered on
/// the main runtime. The thread holds a token of `tracker`, so a stop
/// waits for it.
pub fn spawn_udp_thread(
    socket: UdpSocket,
    handler: Handler,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let socket = socket.into_std()?;
    let main = tokio::runtime::Handle::current();
    let token = tracker.token();
    std::thread::Builder::new()
        .name("schild-udp".into())
        .spawn(move || {
            let _token = token;
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a UDP receive thread");
                    return;
                }
            };
            rt.block_on(async move {
                match UdpSocket::from_std(socket) {
                    Ok(socket) => udp_loop(socket, handler, tracker, shutdown, main).await,
                    Err(e) => tracing::error!(error = %e, "cannot serve a UDP socket"),
                }
            });
        })?;
    Ok(())
}

/// Receive queries on one UDP socket until `shutdown`. Each query the
/// fast path cannot answer is answered in its own task on `main` (tracked,
/// so a stop can drain them), which sends the answer straight back on the
/// socket. On Linux the loop reads what is queued with one `recvmmsg` and
/// sends the fast path's answers with one `sendmmsg` ([`super::mmsg`]).
pub async fn udp_loop(
    socket: UdpSocket,
    handler: Handler,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    main: tokio::runtime::Handle,
) {
    let ctx = UdpCtx {
        local: socket.local_addr().ok(),
        socket: Arc::new(socket),
        handler,
        tracker,
        main,
    };
    #[cfg(target_os = "linux")]
    batched_loop(&ctx, &shutdown).await;
    #[cfg(not(target_os = "linux"))]
    single_loop(&ctx, &shutdown).await;
}

/// What every datagram of a UDP socket's loop is handled with.
struct UdpCtx {
    socket: Arc<UdpSocket>,
    local: Option<SocketAddr>,
    handler: Handler,
    tracker: TaskTracker,
    main: tokio::runtime::Handle,
}

/// What became of one datagram.
enum Step {
    /// `out` holds the answer, to be sent to the query's sender; the
    /// query's dnstap entry, if any, logs it once sent.
    Send(Option<Tapped>),
    /// Nothing to send here: dropped, or answered by a task of its own.
    Done,
}

impl UdpCtx {
    /// Handle one datagram: the fast path writes its answer into `out`;
    /// anything else is answered in a task on the main runtime.
    fn step(&self, msg: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> Step {
        if src.port() == 0 {
            return Step::Done; // nothing can be sent back there
        }
        let handler = &self.handler;
        let pre = match handler.0.early_udp(msg, src, out) {
            Early::Send => {
                let tap = Tapped::query(handler, dnstap::Transport::Udp, src, self.local, msg);
                return Step::Send(tap);
            }
            Early::Dropped => {
                Tapped::query(handler, dnstap::Transport::Udp, src, self.local, msg);
                return Step::Done;
            }
            Early::Slow(pre) => pre,
        };
        // An answer that may go into the packet cache is kept here too.
        let kept = pre
            .as_ref()
            .filter(|p| p.may_keep())
            .map(|_| Arc::new(Mutex::new(Vec::new())));
        let mut responder = DatagramResponder {
            socket: self.socket.clone(),
            dst: src,
            tap: None,
            kept: kept.clone(),
        };
        match Request::from_bytes(msg.to_vec(), src, Protocol::Udp) {
            // Never answer an answer: that is how reflection loops start.
            Ok(request) if request.metadata.message_type == MessageType::Response => Step::Done,
            Ok(request) => {
                responder.tap =
                    Tapped::query(handler, dnstap::Transport::Udp, src, self.local, msg);
                let handler = handler.clone();
                self.main.spawn(self.tracker.track_future(async move {
                    let mut keep = None;
                    handler
                        .0
                        .handle_after(&request, responder, pre, &mut keep)
                        .await;
                    if let (Some(keep), Some(kept), Some(cache)) =
                        (keep, kept, handler.0.packets.as_ref())
                    {
                        let wire =
                            std::mem::take(&mut *kept.lock().unwrap_or_else(|e| e.into_inner()));
                        if !wire.is_empty() {
                            cache.insert(keep, &wire, &handler.0.parts());
                        }
                    }
                }));
                Step::Done
            }
            Err(_) => match formerr_reply(handler, src, msg) {
                Some(reply) => {
                    out.clear();
                    out.extend_from_slice(&reply);
                    Step::Send(None)
                }
                None => Step::Done,
            },
        }
    }
}

/// [`udp_loop`] on Linux: a batch of datagrams per wake-up and per call.
#[cfg(target_os = "linux")]
async fn batched_loop(ctx: &UdpCtx, shutdown: &CancellationToken) {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    use super::mmsg::{BATCH, Batch};

    let fd = ctx.socket.as_raw_fd();
    let mut batch = Batch::default();
    let mut ready: Vec<usize> = Vec::with_capacity(BATCH);
    let mut taps: Vec<Option<Tapped>> = (0..BATCH).map(|_| None).collect();
    loop {
        let n = tokio::select! {
            r = ctx.socket.readable() => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "a UDP socket stopped polling");
                    break;
                }
                match ctx.socket.try_io(Interest::READABLE, || batch.recv(fd)) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        // ICMP errors for earlier answers surface here on
                        // Linux; they concern a client, not this socket.
                        tracing::debug!(error = %e, "receiving datagrams failed");
                        tokio::task::yield_now().await;
                        continue;
                    }
                }
            }
            _ = shutdown.cancelled() => break,
        };
        ready.clear();
        for (i, tap_of) in taps.iter_mut().enumerate().take(n) {
            let (msg, src, out) = batch.slot(i);
            let Some(src) = src else { continue };
            if let Step::Send(tap) = ctx.step(msg, src, out) {
                ready.push(i);
                *tap_of = tap;
            }
        }
        let mut from = 0;
        while from < ready.len() {
            match ctx
                .socket
                .try_io(Interest::WRITABLE, || batch.send(fd, &ready[from..]))
            {
                Ok(k) => from += k.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if ctx.socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // That answer cannot go; the others still can.
                    tracing::debug!(error = %e, "sending a response failed");
                    from += 1;
                }
            }
        }
        for &i in &ready {
            if let Some(t) = taps[i].take() {
                t.response(batch.answer(i));
            }
        }
    }
}

/// [`udp_loop`] elsewhere: one datagram per call.
#[cfg(not(target_os = "linux"))]
async fn single_loop(ctx: &UdpCtx, shutdown: &CancellationToken) {
    // The largest datagram there is: a longer query must not be cut short
    // and then answered as if it were whole.
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(1232);
    loop {
        let (n, src) = tokio::select! {
            r = ctx.socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "receiving a datagram failed");
                    tokio::task::yield_now().await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        if let Step::Send(tap) = ctx.step(&buf[..n], src, &mut out) {
            send_now(&ctx.socket, &out, src).await;
            if let Some(t) = tap {
                t.response(&out);
            }
        }
    }
}

/// Send a datagram from the receive loop: at once when the socket can take
/// it (it nearly always can), else waiting for room.
#[cfg(not(target_os = "linux"))]
async fn send_now(socket: &UdpSocket, msg: &[u8], dst: SocketAddr) {
    let sent = match socket.try_send_to(msg, dst) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.send_to(msg, dst).await,
        other => other,
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "sending a response failed");
    }
}

/// Sends an answer as one datagram, cut to the size the answer's EDNS
/// allows (512 octets without EDNS, RFC 1035 4.2.1) with TC set when it
/// does not fit, as hickory's own UDP responder does.
#[derive(Clone)]
struct DatagramResponder {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
    tap: Option<Tapped>,
    /// Where the answer sent is copied for the packet cache, if wanted.
    kept: Option<Arc<Mutex<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for DatagramResponder {
    async fn send_response<'a>(
        &mut self,
        // The trait's own signature: async_trait reads it before macros expand.
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max = response.edns().map_or(512, |e| e.max_payload().max(512));
        let (msg, info) =
            wire::encode(response, max, 512).map_err(|e| NetError::from(e.to_string()))?;
        self.socket
            .send_to(&msg, self.dst)
            .await
            .map_err(|e| NetError::from(e.to_string()))?;
        if let Some(t) = &self.tap {
            t.response(&msg);
        }
        if let Some(k) = &self.kept {
            *k.lock().unwrap_or_else(|e| e.into_inner()) = msg;
        }
        Ok(info)
    }
}

/// Sends encoded answers to the connection's writer task.
#[derive(Clone)]
struct StreamResponder {
    tx: mpsc::Sender<Vec<u8>>,
    tap: Option<Tapped>,
}

#[async_trait::async_trait]
impl ResponseHandler for StreamResponder {
    async fn send_response<'a>(
        &mut self,
        // The trait's own signature: async_trait reads it before macros expand.
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // The two-octet length prefix caps a message at 65535 octets.
        let (msg, info) =
            wire::encode(response, u16::MAX, 512).map_err(|e| NetError::from(e.to_string()))?;
        let buf = framed(&msg);
        self.tx
            .send(buf)
            .await
            .map_err(|_| NetError::from("connection closed"))?;
        if let Some(t) = &self.tap {
            t.response(&msg);
        }
        Ok(info)
    }
}

/// A message with its two-octet length prefix (RFC 1035 section 4.2.2).
fn framed(msg: &[u8]) -> Vec<u8> {
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    let mut buf = Vec::with_capacity(msg.len() + 2);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(msg);
    buf
}

/// Serve one connection: read length-prefixed queries, answer each in its
/// own task, write answers as they complete.
#[allow(clippy::too_many_arguments)]
async fn serve_stream<S>(
    stream: S,
    src: SocketAddr,
    local: Option<SocketAddr>,
    protocol: Protocol,
    handler: Handler,
    limits: StreamLimits,
    tracker: TaskTracker,
    slot: &Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(limits.max_inflight);
    let idle = limits.idle;
    let writer = tokio::spawn(async move {
        while let Some(buf) = rx.recv().await {
            // A client that takes no answer for the idle time is gone: it
            // must not hold the connection (and an RPZ transfer that
            // waits on this queue) forever. Closing the queue ends both.
            match tokio::time::timeout(idle, wr.write_all(&buf)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
        let _ = wr.shutdown().await;
    });
    let inflight = Arc::new(Semaphore::new(limits.max_inflight));
    let responder = StreamResponder { tx, tap: None };
    let transport = match protocol {
        Protocol::Tls => dnstap::Transport::Dot,
        _ => dnstap::Transport::Tcp,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 4096];
    // Closed at shutdown, or to make room for a new connection.
    let shutdown = &slot.stop;
    // A whole message must arrive by then; each one moves it on.
    let mut deadline = tokio::time::Instant::now() + idle;
    'conn: loop {
        if responder.tx.is_closed() {
            break; // the writer gave up on the client
        }
        // Hand out every complete message in the buffer.
        while buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if buf.len() < 2 + len {
                break;
            }
            let msg: Vec<u8> = buf[2..2 + len].to_vec();
            buf.drain(..2 + len);
            deadline = tokio::time::Instant::now() + idle;
            slot.touch();
            // Backpressure: a client with many answers pending waits.
            let permit = tokio::select! {
                p = inflight.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break 'conn,
                },
                _ = shutdown.cancelled() => break 'conn,
            };
            match Request::from_bytes(msg.clone(), src, protocol) {
                // Never answer an answer (as over UDP).
                Ok(request) if request.metadata.message_type == MessageType::Response => {
                    drop(permit);
                }
                Ok(request) => {
                    let mut responder = responder.clone();
                    responder.tap = Tapped::query(&handler, transport, src, local, &msg);
                    let handler = handler.clone();
                    tracker.spawn(async move {
                        handler
                            .handle_request::<_, TokioTime>(&request, responder)
                            .await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    drop(permit);
                    if !formerr(&handler, src, &msg, &responder).await {
                        break 'conn;
                    }
                }
            }
        }
        // Read more; `read` is cancel safe, so the timer may fire at any
        // time without losing bytes. It is not moved on by a byte, only by
        // a whole message: a client sending a byte a second is closed.
        let n = tokio::select! {
            r = tokio::time::timeout_at(deadline, rd.read(&mut chunk)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => {
                    if buf.is_empty() && inflight.available_permits() < limits.max_inflight {
                        // Answers pending: not idle.
                        deadline = tokio::time::Instant::now() + idle;
                        continue;
                    }
                    if !buf.is_empty() {
                        handler.0.metrics.tcp_timeouts.inc();
                    }
                    break;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
    // Let the queries already read finish, then close.
    let _ = inflight
        .acquire_many(u32::try_from(limits.max_inflight).unwrap_or(u32::MAX))
        .await;
    drop(responder);
    let _ = writer.await;
}

/// Answer an unparsable message with FORMERR if its header can be read
/// and the client is allowed; `false` if the connection should close.
async fn formerr(handler: &Handler, src: SocketAddr, msg: &[u8], r: &StreamResponder) -> bool {
    let Some(reply) = formerr_reply(handler, src, msg) else {
        return false;
    };
    r.tx.send(framed(&reply)).await.is_ok()
}

/// The FORMERR answer to an unparsable message, if its header can be read
/// and the client is allowed (counted in the metrics).
fn formerr_reply(handler: &Handler, src: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(msg)).ok()?;
    if !handler.0.is_allowed(src.ip()) || header.metadata.message_type == MessageType::Response {
        return None;
    }
    let header = wire::header_only(&header.metadata, ResponseCode::FormErr);
    let mut reply = Vec::with_capacity(12);
    header.emit(&mut BinEncoder::new(&mut reply)).ok()?;
    handler.0.metrics.response(ResponseCode::FormErr);
    Some(reply)
}
