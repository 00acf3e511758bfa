//! Building hickory's `Recursor`, and the connection layer under it that
//! makes it fall back from a bad name server to the next one.
//!
//! hickory-resolver 0.26's name-server pool (`name_server_pool.rs`,
//! `PoolState::try_send`) asks a delegation's servers one at a time and
//! moves on to the next only on an I/O error, "no connections" or a
//! timeout. Any answer it takes as final: REFUSED and SERVFAIL from a lame
//! server end the lookup (and REFUSED is even cached as a negative answer).
//! Each server is also given the pool's whole 5 s deadline
//! (`ResolverOpts::default()`, not configurable through the recursor), so
//! a silent first server uses up all of it and the second is never asked.
//!
//! [`Authorities`] is the `ConnectionProvider` the recursor dials through.
//! Every connection it hands out ([`Guarded`]) does what Unbound's
//! iterator does with a server's answer (iterator.c, `process_response`,
//! and the RTT-based retransmit timeout of its infrastructure cache,
//! services/cache/infra.c and util/rtt.c):
//! - an answer with rcode REFUSED, SERVFAIL, NOTIMP or FORMERR is a failure
//!   of that server, not an answer: the pool hears an I/O error and asks the
//!   next server (and hickory's own smoothed RTT for the server takes its
//!   failure penalty, so the next lookups ask the good server first);
//! - each attempt has its own timeout, the server's retransmit timeout
//!   ([`Rtt::timeout`], RFC 6298 from the RTTs it showed: at least
//!   [`MIN_TIMEOUT`], at most [`MAX_TIMEOUT`], [`UNKNOWN_TIMEOUT`] for a
//!   server never heard from, doubled after each timeout), so a silent
//!   server costs one timeout and leaves the rest of the pool's 5 s to the
//!   others. hickory resends over UDP every 333 ms within an attempt.
//!
//! Which server goes first stays hickory's (its decaying smoothed RTT per
//! server address, shared by every zone the address serves, which after a
//! failure keeps the failed server last for about twenty minutes while the
//! others answer). A zone whose every server fails still ends in SERVFAIL.
//!
//! Tests run their hierarchy on loopback with `resolver.recursion_port`:
//! every port 53 the recursor dials is then rewritten to that port.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, Stream, StreamExt};

use hickory_proto::op::{DnsRequest, DnsResponse, Message, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, Record};
use hickory_resolver::config::ConnectionConfig;
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::DnsHandle;
use hickory_resolver::recursor::{
    DnssecConfig, DnssecPolicy, Recursor, RecursorError, RecursorOptions,
};
use hickory_resolver::{ConnectionProvider, PoolContext};

use super::outgoing::Outgoing;
use super::resolve::{ResolverSetupError, read_root_hints};
use crate::config::ResolverConfig;
use crate::config::anchors::configured;

/// The timeout of one attempt at a server never heard from. Unbound
/// starts at 376 ms and retries the same server; hickory's pool asks each
/// server once per lookup, so the first attempt is given longer.
pub const UNKNOWN_TIMEOUT: Duration = Duration::from_millis(1000);
/// The shortest attempt timeout, however fast the server was.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(400);
/// The longest: below the pool's 5 s, so two dead servers still leave
/// time for a third.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(2000);
/// How long a server that timed out (or refused the connection) is held
/// down after its first failure in a row; each further one doubles it, up
/// to [`MAX_HOLD_DOWN`] (Unbound's `infra-host-ttl`, 900 s).
pub const FIRST_HOLD_DOWN: Duration = Duration::from_secs(5);
pub const MAX_HOLD_DOWN: Duration = Duration::from_secs(900);
/// A held-down server told "busy" for a query is asked that same query if
/// the pool comes back to it within this (after every other server failed).
const COME_BACK: Duration = Duration::from_secs(1);
const TURNED_AWAY_CAP: usize = 64;
/// Server addresses whose RTTs are kept (Unbound's `infra-cache-numhosts`
/// is 10000); past it the table starts over.
const RTT_TABLE_CAP: usize = 10_000;

/// What is known of one server's round-trip time (RFC 6298, as Unbound's
/// util/rtt.c): the smoothed RTT and its variance, in microseconds, and
/// the current retransmit timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtt {
    srtt_us: u64,
    rttvar_us: u64,
    timeout: Duration,
}

impl Rtt {
    /// A server never measured.
    pub const UNKNOWN: Rtt = Rtt {
        srtt_us: 0,
        rttvar_us: 0,
        timeout: UNKNOWN_TIMEOUT,
    };

    /// The first measurement.
    fn first(sample: Duration) -> Rtt {
        let r = micros(sample).max(1);
        Rtt::with(r, r / 2)
    }

    fn with(srtt_us: u64, rttvar_us: u64) -> Rtt {
        let rto = Duration::from_micros(srtt_us.saturating_add(rttvar_us.saturating_mul(4)));
        Rtt {
            srtt_us,
            rttvar_us,
            timeout: rto.clamp(MIN_TIMEOUT, MAX_TIMEOUT),
        }
    }

    /// After an answer that took `sample`.
    pub fn answered(self, sample: Duration) -> Rtt {
        if self.srtt_us == 0 {
            return Rtt::first(sample);
        }
        let r = micros(sample);
        let rttvar = (3 * self.rttvar_us + self.srtt_us.abs_diff(r)) / 4;
        let srtt = (7 * self.srtt_us + r) / 8;
        Rtt::with(srtt, rttvar)
    }

    /// After an attempt that timed out: back off (RFC 6298 5.5).
    pub fn timed_out(self) -> Rtt {
        Rtt {
            timeout: (self.timeout * 2).min(MAX_TIMEOUT),
            ..self
        }
    }

    /// How long the next attempt at this server may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How long a server is held down after `failures` failures in a row.
pub fn hold_down(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_HOLD_DOWN * (1u32 << doublings)).min(MAX_HOLD_DOWN)
}

/// What is known of one server.
#[derive(Debug, Clone)]
struct Server {
    rtt: Rtt,
    /// Timeouts and refused connections since its last answer.
    failures: u32,
    /// Held down until then: asked only when no other server answered.
    down_until: Option<Instant>,
    /// The queries it was held down for in the last [`COME_BACK`], and
    /// when (at most [`TURNED_AWAY_CAP`]: lookups at once for one dead
    /// server's zones).
    turned_away: Vec<(Query, Instant)>,
}

impl Default for Server {
    fn default() -> Server {
        Server {
            rtt: Rtt::UNKNOWN,
            failures: 0,
            down_until: None,
            turned_away: Vec::new(),
        }
    }
}

/// Whether to ask a server now: `Err(())` when it is held down and this
/// query was not turned away from it a moment ago (the pool comes back to
/// a "busy" server only after every other one failed).
fn admit(s: &mut Server, query: Option<&Query>, now: Instant) -> Result<Duration, ()> {
    let down = s.down_until.is_some_and(|t| now < t);
    if down {
        s.turned_away
            .retain(|(_, at)| now.saturating_duration_since(*at) < COME_BACK);
        let back = query.and_then(|q| s.turned_away.iter().position(|(t, _)| t == q));
        match (back, query) {
            (Some(i), _) => {
                s.turned_away.swap_remove(i);
            }
            (None, Some(q)) => {
                if s.turned_away.len() >= TURNED_AWAY_CAP {
                    s.turned_away.remove(0);
                }
                s.turned_away.push((q.clone(), now));
                return Err(());
            }
            (None, None) => return Err(()),
        }
    }
    Ok(s.rtt.timeout())
}

impl Server {
    fn answered(&mut self, took: Duration) {
        self.rtt = self.rtt.answered(took);
        self.failures = 0;
        self.down_until = None;
        self.turned_away.clear();
    }

    fn failed(&mut self, now: Instant, timed_out: bool) {
        if timed_out {
            self.rtt = self.rtt.timed_out();
        }
        self.failures = self.failures.saturating_add(1);
        self.down_until = Some(now + hold_down(self.failures));
    }
}

/// Every server asked, shared by all connections.
#[derive(Default)]
struct RttTable(Mutex<HashMap<IpAddr, Server>>);

impl RttTable {
    fn admit(&self, ip: IpAddr, query: Option<&Query>) -> Result<Duration, ()> {
        self.update(ip, |s| admit(s, query, Instant::now()))
    }

    fn update<T>(&self, ip: IpAddr, f: impl FnOnce(&mut Server) -> T) -> T {
        let mut t = self.lock();
        if t.len() >= RTT_TABLE_CAP && !t.contains_key(&ip) {
            t.clear();
        }
        f(t.entry(ip).or_default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Server>> {
        // A panic while holding the lock leaves only numbers behind.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether an answer with this rcode means "ask another server"
/// (Unbound: REFUSED and SERVFAIL make a server lame for the query,
/// NOTIMP and FORMERR mean it cannot answer it).
pub fn is_server_failure(rcode: ResponseCode) -> bool {
    matches!(
        rcode,
        ResponseCode::Refused
            | ResponseCode::ServFail
            | ResponseCode::NotImp
            | ResponseCode::FormErr
    )
}

/// The connection provider of the recursor (see the module docs): over
/// [`Outgoing`]'s connections, which log to dnstap with
/// `resolver_queries`.
#[derive(Clone, Default)]
pub struct Authorities {
    inner: TokioRuntimeProvider,
    out: Outgoing,
    port: Option<u16>,
    rtt: Arc<RttTable>,
}

impl Authorities {
    pub fn new(port: Option<u16>, out: Outgoing) -> Authorities {
        Authorities {
            port,
            out,
            ..Authorities::default()
        }
    }
}

type InnerConn = <Outgoing as ConnectionProvider>::Conn;

/// One connection to one server, answering as described in the module docs.
#[derive(Clone)]
pub struct Guarded {
    inner: InnerConn,
    ip: IpAddr,
    rtt: Arc<RttTable>,
}

impl DnsHandle for Guarded {
    type Response = Pin<Box<dyn Stream<Item = Result<DnsResponse, NetError>> + Send>>;
    type Runtime = TokioRuntimeProvider;

    fn send(&self, request: DnsRequest) -> Self::Response {
        let (ip, rtt) = (self.ip, self.rtt.clone());
        let Ok(timeout) = rtt.admit(ip, request.queries.first()) else {
            // The pool asks the other servers, and comes back to this one
            // (after a short pause) only if they all fail.
            tracing::debug!(%ip, "name server held down: trying the others first");
            return Box::pin(stream::once(async { Err(NetError::Busy) }));
        };
        let mut answers = self.inner.send(request);
        Box::pin(stream::once(async move {
            let start = Instant::now();
            match tokio::time::timeout(timeout, answers.next()).await {
                Err(_) => {
                    rtt.update(ip, |s| s.failed(Instant::now(), true));
                    tracing::debug!(%ip, ?timeout, "name server did not answer in time");
                    Err(NetError::Timeout)
                }
                Ok(None) => Err(NetError::Msg(format!("no answer from {ip}"))),
                Ok(Some(Err(e))) => {
                    if matches!(e, NetError::Io(_) | NetError::Timeout) {
                        rtt.update(ip, |s| s.failed(Instant::now(), false));
                    }
                    Err(e)
                }
                Ok(Some(Ok(response))) => {
                    let took = start.elapsed();
                    rtt.update(ip, |s| s.answered(took));
                    let rcode = response.response_code;
                    if is_server_failure(rcode) {
                        tracing::debug!(%ip, %rcode, "name server failed the query: trying another");
                        Err(NetError::Io(Arc::new(std::io::Error::other(format!(
                            "name server {ip} answered {rcode}"
                        )))))
                    } else {
                        Ok(response)
                    }
                }
            }
        }))
    }
}

impl ConnectionProvider for Authorities {
    type Conn = Guarded;
    type FutureConn = Pin<Box<dyn Future<Output = Result<Guarded, NetError>> + Send>>;
    type RuntimeProvider = TokioRuntimeProvider;

    fn new_connection(
        &self,
        ip: IpAddr,
        config: &ConnectionConfig,
        cx: &PoolContext,
    ) -> Result<Self::FutureConn, NetError> {
        let connecting = match self.port {
            Some(port) if config.port == 53 => {
                let mut c = config.clone();
                c.port = port;
                self.out.new_connection(ip, &c, cx)?
            }
            _ => self.out.new_connection(ip, config, cx)?,
        };
        let rtt = self.rtt.clone();
        Ok(Box::pin(async move {
            let inner = connecting.await?;
            Ok(Guarded { inner, ip, rtt })
        }))
    }

    fn runtime_provider(&self) -> &TokioRuntimeProvider {
        &self.inner
    }
}

/// The recursion of `resolver.mode = "recursive"`: hickory's recursor, and
/// with `resolver.domain_insecure` a second, non-validating one for the
/// names at and below those domains (as Unbound's `domain-insecure`: their
/// answers are never bogus and never secure). Both dial through one
/// [`Authorities`], so they share what is known of every server.
pub struct Recursive {
    validating: Recursor<Authorities>,
    insecure: Option<(Recursor<Authorities>, Vec<LowerName>)>,
}

impl Recursive {
    /// One lookup, by the recursor the name belongs to.
    pub async fn resolve(
        &self,
        query: Query,
        now: Instant,
        dnssec_ok: bool,
    ) -> Result<Message, RecursorError> {
        let recursor = match &self.insecure {
            Some((r, names)) if insecure_at(names, query.name()) => r,
            _ => &self.validating,
        };
        recursor.resolve(query, now, dnssec_ok).await
    }
}

/// Whether `name` is at or below one of `names`.
pub fn insecure_at(names: &[LowerName], name: &Name) -> bool {
    let name = LowerName::from(name);
    names.iter().any(|d| d.zone_of(&name))
}

/// The RFC 8914 info-code when every server of a zone failed: the pool
/// ends with the last server's error, which after [`Guarded`] is an I/O
/// error (a lame answer or a refused connection), a timeout or "busy"
/// (held down). That is 22, No Reachable Authority, as Unbound says.
pub fn unreachable_ede(e: &NetError) -> Option<(u16, &'static str)> {
    matches!(
        e,
        NetError::Io(_) | NetError::Timeout | NetError::Busy | NetError::NoConnections
    )
    .then_some((22, "no reachable authority: every name server failed"))
}

/// The RFC 8914 info-code for a bogus answer, from what its records show
/// (hickory marks records bogus without saying why): every signature over
/// the data expired (7, Signature Expired) or not yet valid (8), an RRset
/// of data without any signature over it (10, RRSIGs Missing), else 6
/// (DNSSEC Bogus). Without DO the recursor hands back no signatures, and
/// then nothing more than 6 can be told. `now`: seconds since the epoch.
pub fn bogus_ede(records: &[Record], dnssec_ok: bool, now: u64) -> (u16, &'static str) {
    use hickory_proto::dnssec::rdata::DNSSECRData;
    use hickory_proto::rr::RData;
    const BOGUS: (u16, &str) = (6, "DNSSEC validation failed");
    let sigs: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some((&r.name, sig.input())),
            _ => None,
        })
        .collect();
    if !dnssec_ok && sigs.is_empty() {
        return BOGUS;
    }
    let data = records.iter().filter(|r| !r.record_type().is_dnssec());
    let mut covering = Vec::new();
    for r in data {
        let over: Vec<_> = sigs
            .iter()
            .filter(|(n, s)| *n == &r.name && s.type_covered == r.record_type())
            .map(|(_, s)| *s)
            .collect();
        if over.is_empty() {
            return (10, "DNSSEC validation failed: RRSIGs missing");
        }
        covering.extend(over);
    }
    // RFC 4034 3.1.5: 32-bit serial arithmetic; compare in the window
    // around now.
    let now32 = now as u32;
    let before = |t: u32| (now32.wrapping_sub(t) as i32) > 0;
    if !covering.is_empty() && covering.iter().all(|s| before(s.sig_expiration.get())) {
        return (7, "DNSSEC validation failed: signature expired");
    }
    if !covering.is_empty() && covering.iter().all(|s| !before(s.sig_inception.get())) {
        return (8, "DNSSEC validation failed: signature not yet valid");
    }
    BOGUS
}

/// The recursion the configuration asks for, dialling through `out`.
pub fn build(config: &ResolverConfig, out: Outgoing) -> Result<Recursive, ResolverSetupError> {
    let roots = match &config.root_hints {
        Some(p) => read_root_hints(p)?,
        None => hickory_proto::ROOTS.to_vec(),
    };
    let mut options = RecursorOptions {
        response_cache_size: config.cache_entries,
        ..RecursorOptions::default()
    };
    if !config.allow_servers.is_empty() {
        options.allow_server = config.allow_servers.clone();
    }
    let provider = Authorities::new(config.recursion_port, out);
    let make = |policy: DnssecPolicy, options: RecursorOptions| {
        Recursor::new(&roots, policy, None, options, provider.clone())
            .map_err(|e| ResolverSetupError::Recursor(e.to_string()))
    };
    // Not validating, DNSSEC records are still asked for and passed on to
    // DO clients (as Unbound without its validator), so a validator behind
    // schild can validate.
    if !config.dnssec {
        return Ok(Recursive {
            validating: make(DnssecPolicy::ValidationDisabled, options)?,
            insecure: None,
        });
    }
    let mut dnssec = DnssecConfig::default();
    // None: hickory's built-in root trust anchors (KSK-2017 and KSK-2024).
    dnssec.trust_anchor = configured(
        config.trust_anchor_file.as_deref(),
        config.trust_anchors.as_ref(),
    )
    .map_err(|e| ResolverSetupError::Recursor(crate::error::error_chain(&e)))?;
    let insecure = if config.domain_insecure.is_empty() {
        None
    } else {
        let names = config
            .domain_insecure
            .iter()
            .map(|n| {
                Name::from_ascii(n)
                    .map(|n| LowerName::from(&n))
                    .map_err(|e| ResolverSetupError::Recursor(format!("domain_insecure {n}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Some((
            make(DnssecPolicy::ValidationDisabled, options.clone())?,
            names,
        ))
    };
    Ok(Recursive {
        validating: make(DnssecPolicy::ValidateWithStaticKey(dnssec), options)?,
        insecure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lame_rcodes_ask_another_server() {
        for rc in [
            ResponseCode::Refused,
            ResponseCode::ServFail,
            ResponseCode::NotImp,
            ResponseCode::FormErr,
        ] {
            assert!(is_server_failure(rc), "{rc}");
        }
        // Answers, positive or negative, are final.
        for rc in [ResponseCode::NoError, ResponseCode::NXDomain] {
            assert!(!is_server_failure(rc), "{rc}");
        }
    }

    #[test]
    fn a_fast_server_gets_the_floor_and_a_slow_one_more() {
        let fast = Rtt::first(Duration::from_millis(2));
        assert_eq!(fast.timeout(), MIN_TIMEOUT);
        // 300 ms, then steady: srtt + 4 rttvar is above the floor.
        let mut slow = Rtt::first(Duration::from_millis(300));
        assert_eq!(slow.timeout(), Duration::from_millis(900));
        for _ in 0..50 {
            slow = slow.answered(Duration::from_millis(300));
        }
        assert!(slow.timeout() > Duration::from_millis(300), "{slow:?}");
        assert!(slow.timeout() < Duration::from_millis(900), "{slow:?}");
    }

    #[test]
    fn timeouts_back_off_up_to_the_cap() {
        assert_eq!(Rtt::UNKNOWN.timeout(), UNKNOWN_TIMEOUT);
        assert_eq!(Rtt::UNKNOWN.timed_out().timeout(), MAX_TIMEOUT);
        let mut r = Rtt::UNKNOWN.answered(Duration::from_millis(2));
        let mut last = r.timeout();
        for _ in 0..10 {
            r = r.timed_out();
            assert!(r.timeout() >= last);
            last = r.timeout();
        }
        assert_eq!(r.timeout(), MAX_TIMEOUT);
        // An answer brings it back down.
        assert_eq!(r.answered(Duration::from_millis(2)).timeout(), MIN_TIMEOUT);
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = RttTable::default();
        for i in 0..(RTT_TABLE_CAP as u32 + 10) {
            t.update(IpAddr::from(i.to_be_bytes()), |s| {
                s.answered(Duration::from_millis(5))
            });
        }
        assert!(t.lock().len() <= RTT_TABLE_CAP);
        assert_eq!(
            t.admit(IpAddr::from([1, 2, 3, 4]), None),
            Ok(UNKNOWN_TIMEOUT)
        );
    }

    #[test]
    fn hold_down_doubles_up_to_the_cap() {
        assert_eq!(hold_down(1), FIRST_HOLD_DOWN);
        assert_eq!(hold_down(2), FIRST_HOLD_DOWN * 2);
        assert_eq!(hold_down(100), MAX_HOLD_DOWN);
        assert_eq!(hold_down(u32::MAX), MAX_HOLD_DOWN);
    }

    fn q(name: &str) -> Query {
        Query::query(
            hickory_proto::rr::Name::from_ascii(name).expect("name"),
            hickory_proto::rr::RecordType::A,
        )
    }

    #[test]
    fn a_held_down_server_is_asked_only_when_the_pool_comes_back() {
        let now = Instant::now();
        let mut s = Server::default();
        assert_eq!(admit(&mut s, Some(&q("a.")), now), Ok(UNKNOWN_TIMEOUT));
        s.failed(now, true);
        // Held down: turned away first ...
        assert_eq!(admit(&mut s, Some(&q("a.")), now), Err(()));
        // ... asked when the same query comes back (the others failed) ...
        let soon = now + Duration::from_millis(20);
        assert_eq!(admit(&mut s, Some(&q("a.")), soon), Ok(MAX_TIMEOUT));
        // ... but another query is turned away first, and comes back
        // too, even with a third in between (lookups at once).
        assert_eq!(admit(&mut s, Some(&q("b.")), soon), Err(()));
        assert_eq!(admit(&mut s, Some(&q("e.")), soon), Err(()));
        assert_eq!(admit(&mut s, Some(&q("b.")), soon), Ok(MAX_TIMEOUT));
        assert_eq!(admit(&mut s, Some(&q("e.")), soon), Ok(MAX_TIMEOUT));
        assert_eq!(admit(&mut s, Some(&q("b.")), soon), Err(()));
        // A late comeback counts as a new query.
        let late = soon + COME_BACK * 2;
        assert_eq!(admit(&mut s, Some(&q("b.")), late), Err(()));
        // Past the hold-down it is asked again; an answer clears it all.
        let after = now + FIRST_HOLD_DOWN;
        assert!(admit(&mut s, Some(&q("c.")), after).is_ok());
        s.failed(after, true);
        assert_eq!(s.down_until, Some(after + FIRST_HOLD_DOWN * 2));
        s.answered(Duration::from_millis(3));
        assert_eq!(admit(&mut s, Some(&q("d.")), after), Ok(MIN_TIMEOUT));
    }

    #[test]
    fn insecure_covers_the_name_and_below_only() {
        let names = vec![LowerName::from(
            &Name::from_ascii("corp.example.").expect("name"),
        )];
        let at = |n: &str| insecure_at(&names, &Name::from_ascii(n).expect("name"));
        assert!(at("corp.example."));
        assert!(at("WWW.Corp.Example."));
        assert!(!at("example."));
        assert!(!at("notcorp.example."));
        assert!(!at("corp.example.org."));
    }

    fn a_record() -> Record {
        Record::from_rdata(
            Name::from_ascii("www.e.test.").expect("name"),
            300,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        )
    }

    /// An RRSIG over www.e.test. A valid from `inception` to `expiration`.
    fn sig(inception: u32, expiration: u32) -> Record {
        use hickory_proto::dnssec::Algorithm;
        use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG, SigInput};
        use hickory_proto::rr::SerialNumber;
        let input = SigInput {
            type_covered: hickory_proto::rr::RecordType::A,
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: 3,
            original_ttl: 300,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(inception),
            key_tag: 1,
            signer_name: Name::from_ascii("e.test.").expect("name"),
        };
        Record::from_rdata(
            Name::from_ascii("www.e.test.").expect("name"),
            300,
            hickory_proto::rr::RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(
                input,
                vec![0; 64],
            ))),
        )
    }

    /// 2026-12-01.
    const NOW: u64 = 1_796_083_200;
    const Y2020: u32 = 1_577_836_800;
    const Y2030: u32 = 1_893_456_000;

    #[test]
    fn bogus_answers_get_the_ede_their_records_show() {
        let with = |s: Record| vec![a_record(), s];
        assert_eq!(bogus_ede(&with(sig(Y2020, Y2020 + 86_400)), true, NOW).0, 7);
        assert_eq!(bogus_ede(&with(sig(Y2030, Y2030 + 86_400)), true, NOW).0, 8);
        assert_eq!(bogus_ede(&with(sig(Y2020, Y2030)), true, NOW).0, 6);
        assert_eq!(bogus_ede(&[a_record()], true, NOW).0, 10);
        // Without DO the signatures are not handed back: nothing to tell.
        assert_eq!(bogus_ede(&[a_record()], false, NOW).0, 6);
        assert_eq!(bogus_ede(&[], true, NOW).0, 6);
    }

    #[test]
    fn a_zone_whose_servers_all_failed_has_no_reachable_authority() {
        for e in [NetError::Timeout, NetError::Busy, NetError::NoConnections] {
            assert_eq!(unreachable_ede(&e).map(|(c, _)| c), Some(22), "{e}");
        }
        let lame = NetError::Io(Arc::new(std::io::Error::other("answered REFUSED")));
        assert_eq!(unreachable_ede(&lame).map(|(c, _)| c), Some(22));
        assert_eq!(unreachable_ede(&NetError::Msg("x".into())), None);
    }
}
