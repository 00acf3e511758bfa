//! A stub zone's servers, asked iteratively (Unbound's `stub-zone`).
//!
//! The configured servers are authoritative for the stub zone. Each
//! question goes to them with RD=0; an authoritative answer (AA) is the
//! answer; a referral (no AA, NS records for a name below the zone the
//! servers were asked for, at or above the question) is followed to the
//! child zone's servers, from the glue in the referral or, for a name
//! server inside the stub zone without glue, by asking the stub zone for
//! its address. Referrals are followed at most [`MAX_REFERRALS`] deep and
//! at most [`MAX_QUERIES`] queries are sent for one question. A server
//! that does not answer, answers REFUSED, SERVFAIL or NOTIMP, or answers
//! without authority (lame) is skipped for the next one of its zone.
//!
//! The answer is taken as the servers give it: a CNAME whose target lies
//! outside what they serve is left dangling here, and
//! [`super::route`] follows it by the target's own route. Delegations
//! learnt are kept (bounded, for the NS TTL) so the next question starts
//! at the deepest known zone.
//!
//! Nothing here is validated (an internal zone has no chain of trust from
//! the public root): a stub zone behaves as if its name were in
//! `resolver.domain_insecure`, which is what Unbound needs for a private
//! stub zone below a signed tree. AD is never set on its answers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::dnstap::Transport;
use super::metrics::UpstreamError;
use super::outgoing::Outgoing;
use super::resolve::ResolveFailure;

/// Referrals followed for one question.
pub const MAX_REFERRALS: usize = 8;
/// Queries sent for one question (every server, glue look-ups included).
pub const MAX_QUERIES: usize = 32;
/// Delegations remembered per stub zone.
const MAX_CUTS: usize = 1024;
/// Longest a learnt delegation is kept.
const MAX_CUT_TTL: Duration = Duration::from_secs(3600);
/// Name servers of one delegation asked (the rest are ignored).
const MAX_SERVERS: usize = 8;
/// The largest answer asked for over UDP.
const PAYLOAD: u16 = 1232;

/// One stub zone's iterative client.
pub struct Stub {
    zone: Name,
    servers: Vec<SocketAddr>,
    /// Port of the servers named by glue (53, or `resolver.recursion_port`).
    port: u16,
    timeout: Duration,
    /// Delegations below the zone: child zone, its servers, until when.
    cuts: Mutex<HashMap<Name, (Vec<SocketAddr>, Instant)>>,
    /// dnstap's `resolver_queries` log of every exchange.
    out: Outgoing,
}

/// What one server's answer was.
enum Reply {
    /// The answer (authoritative, or a negative one).
    Answer(Message),
    /// A child zone and its servers (addresses from glue) and the name
    /// servers without glue.
    Referral {
        zone: Name,
        ttl: u32,
        glue: Vec<SocketAddr>,
        glueless: Vec<Name>,
    },
    /// Try the next server.
    Lame,
}

/// The question being resolved: its budget of queries.
struct Budget(AtomicUsize);

impl Budget {
    fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn fail(kind: UpstreamError) -> ResolveFailure {
    ResolveFailure { kind, ede: None }
}

impl Stub {
    /// `out` logs each exchange to dnstap (`dnstap.resolver_queries`).
    pub fn new(
        zone: Name,
        servers: Vec<SocketAddr>,
        port: u16,
        timeout: Duration,
        out: Outgoing,
    ) -> Stub {
        Stub {
            zone,
            servers,
            port,
            timeout,
            out,
            cuts: Mutex::new(HashMap::new()),
        }
    }

    /// One question: the servers' answer as it came (all sections), or
    /// why there is none.
    pub async fn lookup(
        &self,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
    ) -> Result<Message, ResolveFailure> {
        let budget = Budget(AtomicUsize::new(MAX_QUERIES));
        self.lookup_within(name, qtype, dnssec_ok, &budget, 0).await
    }

    /// The deepest delegation known for `name` (or the stub servers).
    fn start_at(&self, name: &Name) -> (Name, Vec<SocketAddr>) {
        let now = Instant::now();
        let cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
        let mut best: Option<(&Name, &Vec<SocketAddr>)> = None;
        for (zone, (servers, until)) in cuts.iter() {
            if *until > now
                && zone.zone_of(name)
                && best.is_none_or(|(b, _)| zone.num_labels() > b.num_labels())
            {
                best = Some((zone, servers));
            }
        }
        match best {
            Some((z, s)) => (z.clone(), s.clone()),
            None => (self.zone.clone(), self.servers.clone()),
        }
    }

    fn remember(&self, zone: &Name, servers: &[SocketAddr], ttl: u32) {
        let ttl = Duration::from_secs(u64::from(ttl)).min(MAX_CUT_TTL);
        if ttl.is_zero() || servers.is_empty() {
            return;
        }
        let mut cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
        if cuts.len() >= MAX_CUTS {
            let now = Instant::now();
            cuts.retain(|_, (_, until)| *until > now);
            if cuts.len() >= MAX_CUTS {
                cuts.clear();
            }
        }
        cuts.insert(zone.clone(), (servers.to_vec(), Instant::now() + ttl));
    }

    /// Forget the learnt delegations (with the answer cache's flush).
    pub fn flush(&self) {
        self.cuts.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn lookup_within(
        &self,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        budget: &Budget,
        depth: usize,
    ) -> Result<Message, ResolveFailure> {
        let (mut zone, mut servers) = self.start_at(name);
        for _ in 0..=MAX_REFERRALS {
            let mut next = None;
            let mut timeouts = 0;
            let mut tried = 0;
            for server in servers.iter().take(MAX_SERVERS) {
                if !budget.take() {
                    tracing::debug!(%name, "stub zone: query budget spent");
                    return Err(fail(UpstreamError::ServFail));
                }
                tried += 1;
                match self.ask(*server, name, qtype, dnssec_ok, &zone).await {
                    Ok(Reply::Answer(m)) => return Ok(m),
                    Ok(Reply::Referral {
                        zone: child,
                        ttl,
                        glue,
                        glueless,
                    }) => {
                        next = Some((child, ttl, glue, glueless));
                        break;
                    }
                    Ok(Reply::Lame) => {
                        tracing::debug!(%server, %zone, "stub zone: lame or refusing server");
                    }
                    Err(timeout) => {
                        if timeout {
                            timeouts += 1;
                        }
                        tracing::debug!(%server, %zone, "stub zone: no answer");
                    }
                }
            }
            let Some((child, ttl, mut glue, glueless)) = next else {
                let kind = if tried > 0 && timeouts == tried {
                    UpstreamError::Timeout
                } else {
                    UpstreamError::ServFail
                };
                return Err(fail(kind));
            };
            // Name servers inside the stub zone without glue: ask the
            // stub zone for their addresses (not from inside the child
            // they serve, which would need them).
            if glue.is_empty() && depth < 2 {
                for ns in glueless.iter().take(MAX_SERVERS) {
                    if !self.zone.zone_of(ns) || child.zone_of(ns) {
                        continue;
                    }
                    for t in [RecordType::A, RecordType::AAAA] {
                        let fut = Box::pin(self.lookup_within(ns, t, false, budget, depth + 1));
                        if let Ok(m) = fut.await {
                            glue.extend(m.answers.iter().filter_map(|r| self.addr_of(r, ns)));
                        }
                    }
                    if !glue.is_empty() {
                        break;
                    }
                }
            }
            if glue.is_empty() {
                tracing::debug!(%child, "stub zone: a delegation without usable addresses");
                return Err(fail(UpstreamError::ServFail));
            }
            self.remember(&child, &glue, ttl);
            zone = child;
            servers = glue;
        }
        tracing::debug!(%name, "stub zone: too many referrals");
        Err(fail(UpstreamError::ServFail))
    }

    fn addr_of(&self, r: &Record, owner: &Name) -> Option<SocketAddr> {
        if r.name != *owner {
            return None;
        }
        let ip = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.port))
    }

    /// One query to one server; `Err(true)` for a timeout, `Err(false)`
    /// for another failure to get an answer.
    async fn ask(
        &self,
        server: SocketAddr,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        zone: &Name,
    ) -> Result<Reply, bool> {
        let mut q = Message::query();
        q.metadata.id = rand::random();
        q.metadata.recursion_desired = false;
        q.add_query(Query::query(name.clone(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(PAYLOAD);
        edns.set_dnssec_ok(dnssec_ok);
        q.set_edns(edns);
        let bytes = q.to_vec().map_err(|_| false)?;
        let mut m = tokio::time::timeout(self.timeout, udp(server, &bytes, &self.out))
            .await
            .map_err(|_| true)?
            .ok_or(false)?;
        if !answers_question(&m, &q) {
            return Err(false);
        }
        if m.metadata.truncation {
            m = tokio::time::timeout(self.timeout, tcp(server, &bytes, &self.out))
                .await
                .map_err(|_| true)?
                .ok_or(false)?;
            if !answers_question(&m, &q) {
                return Err(false);
            }
        }
        Ok(self.classify(m, name, zone))
    }

    /// Answer, referral or lame (the zone asked is `zone`).
    fn classify(&self, m: Message, name: &Name, zone: &Name) -> Reply {
        let rcode = m.metadata.response_code;
        if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
            return Reply::Lame;
        }
        if m.metadata.authoritative {
            return Reply::Answer(m);
        }
        // A referral: NS records for a child of `zone`, at or above the
        // question, and no answer.
        let cut = m.authorities.iter().find_map(|r| match &r.data {
            RData::NS(_)
                if rcode == ResponseCode::NoError
                    && m.answers.is_empty()
                    && r.name != *zone
                    && zone.zone_of(&r.name)
                    && r.name.zone_of(name) =>
            {
                Some(r.name.clone())
            }
            _ => None,
        });
        let Some(child) = cut else {
            return Reply::Lame;
        };
        let mut ttl = u32::MAX;
        let mut glue = Vec::new();
        let mut glueless = Vec::new();
        for r in m.authorities.iter().filter(|r| r.name == child) {
            let RData::NS(ns) = &r.data else { continue };
            ttl = ttl.min(r.ttl);
            // Glue is taken only for names below the referring zone.
            let found: Vec<SocketAddr> = if zone.zone_of(&ns.0) {
                m.additionals
                    .iter()
                    .filter_map(|a| self.addr_of(a, &ns.0))
                    .collect()
            } else {
                Vec::new()
            };
            if found.is_empty() {
                glueless.push(ns.0.clone());
            }
            for a in found {
                if !glue.contains(&a) {
                    glue.push(a);
                }
            }
        }
        Reply::Referral {
            zone: child,
            ttl,
            glue,
            glueless,
        }
    }
}

/// The answer matches the query: the ID, a response, the question.
fn answers_question(m: &Message, q: &Message) -> bool {
    m.metadata.id == q.metadata.id
        && m.metadata.message_type == hickory_proto::op::MessageType::Response
        && m.queries.len() == 1
        && q.queries.first().is_some_and(|qq| {
            let a = &m.queries[0];
            a.query_type() == qq.query_type() && a.name().eq_case(qq.name())
        })
}

/// One UDP exchange from a fresh socket (a random source port); answers
/// from another address are ignored.
/// Both logged to dnstap through `out` (a query with no answer as a query
/// alone, once the wait ends).
async fn udp(server: SocketAddr, bytes: &[u8], out: &Outgoing) -> Option<Message> {
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await.ok()?;
    let local = socket.local_addr().unwrap_or(local);
    let sent = SystemTime::now();
    let mut logged = Logged::new(out, Transport::Udp, local, server, sent, bytes);
    socket.send_to(bytes, server).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await.ok()?;
        if from != server {
            continue;
        }
        logged.answered(&buf[..n]);
        return Message::from_vec(&buf[..n]).ok();
    }
}

async fn tcp(server: SocketAddr, bytes: &[u8], out: &Outgoing) -> Option<Message> {
    let mut s = tokio::net::TcpStream::connect(server).await.ok()?;
    let local = s.local_addr().ok()?;
    let mut logged = Logged::new(out, Transport::Tcp, local, server, SystemTime::now(), bytes);
    let len = u16::try_from(bytes.len()).ok()?.to_be_bytes();
    s.write_all(&[&len[..], bytes].concat()).await.ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).await.ok()?;
    logged.answered(&msg);
    Message::from_vec(&msg).ok()
}

/// One exchange for the dnstap log: logged with its answer, or alone when
/// dropped unanswered (a timeout, an error).
struct Logged<'a> {
    out: &'a Outgoing,
    transport: Transport,
    local: SocketAddr,
    server: SocketAddr,
    sent: SystemTime,
    query: &'a [u8],
    done: bool,
}

impl<'a> Logged<'a> {
    fn new(
        out: &'a Outgoing,
        transport: Transport,
        local: SocketAddr,
        server: SocketAddr,
        sent: SystemTime,
        query: &'a [u8],
    ) -> Logged<'a> {
        Logged {
            out,
            transport,
            local,
            server,
            sent,
            query,
            done: false,
        }
    }

    fn answered(&mut self, answer: &[u8]) {
        self.done = true;
        let (t, l, s) = (self.transport, self.local, self.server);
        self.out
            .log_exchange(t, l, s, self.sent, self.query, Some(answer));
    }
}

impl Drop for Logged<'_> {
    fn drop(&mut self) {
        if !self.done {
            let (t, l, s) = (self.transport, self.local, self.server);
            self.out.log_exchange(t, l, s, self.sent, self.query, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, NS};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn stub() -> Stub {
        Stub::new(
            name("lab.test."),
            vec!["127.0.0.1:53".parse().expect("addr")],
            53,
            Duration::from_secs(1),
            Outgoing::default(),
        )
    }

    fn referral(child: &str, ns: &str, glue: Option<&str>) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.authorities.push(Record::from_rdata(
            name(child),
            300,
            RData::NS(NS(name(ns))),
        ));
        if let Some(ip) = glue {
            m.additionals.push(Record::from_rdata(
                name(ns),
                300,
                RData::A(A(ip.parse().expect("ip"))),
            ));
        }
        m
    }

    #[test]
    fn a_referral_below_the_zone_is_followed() {
        let s = stub();
        let m = referral("kid.lab.test.", "ns.kid.lab.test.", Some("127.0.0.9"));
        match s.classify(m, &name("www.kid.lab.test."), &name("lab.test.")) {
            Reply::Referral { zone, glue, .. } => {
                assert_eq!(zone, name("kid.lab.test."));
                assert_eq!(glue, ["127.0.0.9:53".parse::<SocketAddr>().expect("a")]);
            }
            _ => panic!("not a referral"),
        }
    }

    #[test]
    fn upward_sideways_and_out_of_bailiwick_referrals_are_lame() {
        let s = stub();
        let q = name("www.kid.lab.test.");
        // Upward (to the root) and sideways (not above the question).
        for child in [".", "test.", "lab.test.", "other.lab.test."] {
            let m = referral(child, "ns.lab.test.", Some("127.0.0.9"));
            assert!(
                matches!(s.classify(m, &q, &name("lab.test.")), Reply::Lame),
                "{child}"
            );
        }
        // Glue for a name outside the referring zone is not taken.
        let m = referral("kid.lab.test.", "ns.elsewhere.", Some("192.0.2.1"));
        match s.classify(m, &q, &name("lab.test.")) {
            Reply::Referral { glue, glueless, .. } => {
                assert!(glue.is_empty());
                assert_eq!(glueless, [name("ns.elsewhere.")]);
            }
            _ => panic!("not a referral"),
        }
    }

    #[test]
    fn refusals_are_lame_and_aa_is_an_answer() {
        let s = stub();
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = ResponseCode::Refused;
        m.metadata.authoritative = true;
        assert!(matches!(
            s.classify(m.clone(), &name("a.lab.test."), &name("lab.test.")),
            Reply::Lame
        ));
        m.metadata.response_code = ResponseCode::NXDomain;
        assert!(matches!(
            s.classify(m, &name("a.lab.test."), &name("lab.test.")),
            Reply::Answer(_)
        ));
    }

    #[test]
    fn the_deepest_known_delegation_is_the_start() {
        let s = stub();
        let kid: SocketAddr = "127.0.0.9:53".parse().expect("a");
        s.remember(&name("kid.lab.test."), &[kid], 300);
        assert_eq!(s.start_at(&name("www.kid.lab.test.")).1, [kid]);
        assert_eq!(s.start_at(&name("www.lab.test.")).0, name("lab.test."));
        s.flush();
        assert_eq!(s.start_at(&name("www.kid.lab.test.")).0, name("lab.test."));
    }

    #[test]
    fn the_budget_runs_out() {
        let b = Budget(AtomicUsize::new(2));
        assert!(b.take() && b.take());
        assert!(!b.take());
    }
}
