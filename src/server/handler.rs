//! The request handler: every query's path through schild.
//!
//! ACL -> EDNS -> opcode, class and type checks -> the policy on the query
//! name -> the cache or upstream -> the policy on every CNAME target and
//! address in the answer -> the answer, or the feed's block action.
//!
//! The policy is read with one `ArcSwapOption::load` per check and never
//! held across an `.await`, so a reload swaps it under running queries
//! without a lock and without any query seeing no policy. A query that is
//! not blocked allocates nothing for the policy checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use hickory_proto::op::{Edns, LowerQuery, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::HINFO;
use hickory_proto::rr::rdata::opt::EdnsCode;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use ipnet::IpNet;
use tokio::sync::Notify;

use super::answer::{self, ede};
use super::fast;
use super::groups::PerNetwork;
use super::hits::HitSink;
use super::metrics::{Metrics, Transport, UpstreamError};
use super::packets::{self, Keep};
use super::ratelimit::{RateLimiter, Verdict as Rate};
use super::resolve::{Flags, Resolved, Resolver};
use crate::policy::groups::{ClientGroup, GroupAction, is_private_answer};
use crate::policy::{Action, Hit, LocalRecord, Policy, Verdict, matched_suffix};
use crate::rpz::xfr::RpzPrimary;
use crate::sightings::quarantine::QuarantineSet;
use crate::sightings::{HitEvent, Trigger};
use crate::wire::{self, message_response};

/// Settings the handler needs, taken from the configuration once.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    pub allow: Vec<IpNet>,
    pub edns_payload: u16,
    pub block_ttl: u32,
    pub sinkhole_ipv4: Vec<Ipv4Addr>,
    pub sinkhole_ipv6: Vec<Ipv6Addr>,
    /// `rpz` feeds pulled by zone transfer: a NOTIFY for the zone from its
    /// primary refreshes the feed.
    pub xfr_feeds: Vec<XfrFeed>,
}

/// An `axfr://` feed, as NOTIFY needs it.
#[derive(Debug, Clone)]
pub struct XfrFeed {
    pub feed: String,
    pub zone: LowerName,
    pub primary: IpAddr,
}

impl HandlerConfig {
    /// Whether `ip` is a resolver client (`server.allow`).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.iter().any(|n| n.contains(&ip))
    }

    pub fn new(config: &crate::config::Config) -> HandlerConfig {
        HandlerConfig {
            allow: config.server.allow.clone(),
            edns_payload: config.server.edns_payload,
            block_ttl: config.policy.block_ttl,
            sinkhole_ipv4: config.policy.sinkhole_ipv4.clone(),
            sinkhole_ipv6: config.policy.sinkhole_ipv6.clone(),
            xfr_feeds: config
                .feeds
                .iter()
                .filter_map(|f| match &f.location {
                    crate::config::Location::Xfr { server, zone } => Some(XfrFeed {
                        feed: f.name.clone(),
                        zone: LowerName::from(Name::from_ascii(format!("{zone}.")).ok()?),
                        primary: server.ip(),
                    }),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// Counts queries being answered, so shutdown can wait for them.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self)
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Wait until no query is being answered.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Everything the handler shares with the rest of the server.
pub struct Shared {
    /// Swapped whole by a configuration reload.
    pub config: arc_swap::ArcSwap<HandlerConfig>,
    pub policy: Arc<ArcSwapOption<Policy>>,
    /// The global route (`resolver.mode`). Swapped by a configuration
    /// reload that changed `[resolver]` or the zones; a query in flight
    /// finishes on the one it started with.
    pub resolver: arc_swap::ArcSwap<Resolver>,
    /// Forward zones, stub zones and local data, in front of `resolver`;
    /// swapped with it.
    pub routes: arc_swap::ArcSwap<super::route::Routes>,
    pub metrics: Arc<Metrics>,
    pub hits: HitSink,
    /// The name history's queue (`[history]`), if kept.
    pub history: Option<super::history::HistorySink>,
    /// The RPZ primary, once `[rpz]` is configured and a list is loaded.
    pub rpz: Arc<ArcSwapOption<RpzPrimary>>,
    pub in_flight: InFlight,
    /// Set at shutdown: new queries get no answer, as if the socket were closed.
    pub draining: AtomicBool,
    /// Feeds to refresh because their primary sent a NOTIFY.
    pub notified: Option<tokio::sync::mpsc::Sender<String>>,
    /// The dnstap query log, when `[dnstap]` is configured.
    pub dnstap: Option<super::dnstap::Tap>,
    /// `server.client_qps` (UDP only); `None` when off.
    pub ratelimit: Option<RateLimiter>,
    /// `[[client_group]]`s, `rebind_protection`, `block_bypass`; swapped
    /// whole by a configuration reload. Each policy step loads it once.
    pub groups: arc_swap::ArcSwap<PerNetwork>,
    /// Whole UDP answers in wire form (`resolver.packet_cache`).
    pub packets: Option<super::packets::PacketCache>,
    /// Names quarantined by `guard.on_popular = "quarantine"`: a hit on
    /// one is answered normally and recorded with action `quarantine`.
    /// Swapped whole by the refresher; read only after a lookup hit.
    pub quarantine: Arc<arc_swap::ArcSwap<QuarantineSet>>,
}

/// The `RequestHandler` our own UDP, TCP and TLS loops (`server::listen`)
/// hand each parsed query to.
#[derive(Clone)]
pub struct Handler(pub Arc<Shared>);

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0.handle(request, response_handle).await
    }
}

/// A hit the answer must be replaced for.
struct Block {
    action: Action,
    /// The SOA owner of a negative answer: the query name's last
    /// `soa_labels` labels (the listed name, or the whole query name).
    soa_labels: u8,
    serial: u64,
    /// Extended DNS Error text.
    text: String,
    /// The records of an RPZ `local-data` action.
    local: Vec<LocalRecord>,
}

impl Block {
    fn new(p: &Policy, hit: &Hit, soa_labels: u8, text: String) -> Block {
        let local = if hit.action == Action::LocalData {
            p.local_records(hit.set).cloned().collect()
        } else {
            Vec::new()
        };
        Block {
            action: hit.action,
            soa_labels,
            serial: p.serial(),
            text,
            local,
        }
    }
}

/// Whether a hit changes the answer on this transport: `tcp-only` is
/// answered normally over TCP and TLS (RPZ's `rpz-tcp-only.`).
fn enforced(action: Action, transport: &str) -> bool {
    action.enforces() && !(action == Action::TcpOnly && transport != "udp")
}

fn no_response(request: &Request, rcode: ResponseCode) -> ResponseInfo {
    wire::header_only_info(&request.metadata, rcode)
}

fn transport_of(p: Protocol) -> Transport {
    match p {
        Protocol::Tcp => Transport::Tcp,
        Protocol::Tls => Transport::Tls,
        _ => Transport::Udp,
    }
}

/// `name.` as a lower-case string without the trailing dot, as hickory's
/// `to_lowercase().to_ascii()` writes it. Names of letters, digits, `-`
/// (not first), `_` and a leading `*` (nearly all) are copied label by
/// label; anything hickory would escape takes its own writer.
fn plain_lower(name: &Name) -> String {
    // Room for all but the longest names (`Name::len` would walk them).
    let mut s = String::with_capacity(64);
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        for (j, &b) in label.iter().enumerate() {
            let c = b.to_ascii_lowercase();
            let safe = c.is_ascii_alphanumeric()
                || c == b'_'
                || (c == b'-' && j > 0)
                || (c == b'*' && j == 0);
            if !safe {
                return plain_lower_escaped(name);
            }
            s.push(char::from(c));
        }
    }
    if s.is_empty() {
        s.push('.'); // the root
    }
    s
}

fn plain_lower_escaped(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if s.len() > 1 && s.ends_with('.') {
        s.pop();
    }
    s
}

impl Shared {
    pub(crate) fn is_allowed(&self, ip: IpAddr) -> bool {
        self.config.load().allows(ip)
    }

    /// May open a TCP/TLS connection: a resolver client, or an RPZ
    /// secondary (`rpz.allow_transfer` need not be inside `server.allow`).
    pub(crate) fn may_connect(&self, ip: IpAddr) -> bool {
        self.is_allowed(ip) || self.rpz.load().as_ref().is_some_and(|r| r.allowed(ip))
    }

    async fn send<'a, R: ResponseHandler>(
        &self,
        request: &Request,
        rh: &mut R,
        response: message_response!('_, 'a),
    ) -> ResponseInfo {
        match rh.send_response(response).await {
            Ok(info) => {
                self.metrics.response(info.response_code);
                info
            }
            Err(e) => {
                tracing::debug!(error = %e, "sending a response failed");
                no_response(request, ResponseCode::ServFail)
            }
        }
    }

    async fn error<R: ResponseHandler>(
        &self,
        request: &Request,
        rh: &mut R,
        edns: Option<&Edns>,
        rcode: ResponseCode,
    ) -> ResponseInfo {
        let mut msg =
            MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, rcode);
        let meta = msg.metadata_mut();
        if rcode == ResponseCode::NotImp {
            // An opcode we do not implement: no recursion was offered, and
            // CD (RFC 4035 3.2.2) belongs to the processing of a QUERY,
            // which did not happen (ISC's genreport `opcode`, `opcodeflg`).
            meta.recursion_available = false;
            meta.checking_disabled = false;
        } else {
            meta.recursion_available = true;
        }
        self.send(request, rh, msg).await
    }

    /// One query, in its steps: admit it (drain, RPZ transfer, ACL, EDNS,
    /// the question), the policy on the question, resolve, the policy on
    /// the answer, encode.
    async fn handle<R: ResponseHandler>(&self, request: &Request, rh: R) -> ResponseInfo {
        self.handle_after(request, rh, None, &mut None).await
    }

    /// [`Shared::handle`], for a UDP query whose first steps
    /// [`Shared::early_udp`] already took: it counted the query, recorded
    /// the name history and applied the policy to the question (`pre`).
    /// `keep` is set when the answer sent may go into the packet cache.
    pub(crate) async fn handle_after<R: ResponseHandler>(
        &self,
        request: &Request,
        mut rh: R,
        pre: Option<Box<Pre>>,
        keep: &mut Option<Keep>,
    ) -> ResponseInfo {
        if self.draining.load(Ordering::Acquire) {
            return no_response(request, ResponseCode::Refused);
        }
        let _in_flight = self.in_flight.enter();
        let transport = transport_of(request.protocol());
        let query = request.queries.queries().first();
        if pre.is_none() {
            self.metrics.query(
                transport,
                query.map(|q| q.query_type()).unwrap_or(RecordType::NULL),
            );
        }

        // The RPZ zone has its own ACL (`rpz.allow_transfer`) and TSIG:
        // secondaries need not be resolver clients.
        if let Some(rpz) = self.rpz.load_full()
            && rpz.claims(request)
        {
            return rpz.handle(request, rh).await;
        }

        // A NOTIFY from the primary of an `axfr://` feed (which need not
        // be a resolver client): refresh that feed (RFC 1996).
        if request.metadata.op_code == OpCode::Notify {
            return self.notify(request, rh).await;
        }

        // Every UDP answer counts against its client's rate, errors too
        // (a REFUSED is still a reflection), as with BIND's RRL.
        let rate = match &self.ratelimit {
            Some(rl) if transport == Transport::Udp => Some(rl.check(request.src().ip())),
            _ => None,
        }
        .filter(|(verdict, _)| *verdict != Rate::Answer);
        let mut resp_edns = self.response_edns(request);
        let query = match self.admit(request, &mut resp_edns) {
            Ok(q) => q,
            Err(rcode) => {
                if let Some((verdict, _)) = rate {
                    return self.shed(request, &mut rh, resp_edns, verdict).await;
                }
                return self
                    .error(request, &mut rh, resp_edns.as_ref(), rcode)
                    .await;
            }
        };
        let qtype = query.query_type();
        let qname: &Name = query.original().name();
        let lower: &LowerName = query.name();
        let recorded = AtomicBool::new(false);
        let hit_ctx = HitCtx {
            client: request.src().ip(),
            qname: lower,
            qtype,
            transport: transport.as_str(),
            group: None,
            per: None,
            recorded: Some(&recorded),
        };

        if let Some((verdict, slot)) = rate {
            self.sighting_while_limited(qname, &hit_ctx, slot);
            return self.shed(request, &mut rh, resp_edns, verdict).await;
        }
        let (on_question, candidate) = match pre {
            Some(pre) => (pre.0, pre.1),
            None => (
                {
                    // The name history (retro-hunt): a try_send, nothing more.
                    if let Some(h) = &self.history {
                        h.record(lower, hit_ctx.client);
                    }
                    self.policy_on_question(qname, &hit_ctx)
                },
                None,
            ),
        };
        let exempt = match on_question {
            OnQuestion::Block(b) => {
                return self
                    .send_block(request, &mut rh, resp_edns, qname, qtype, b)
                    .await;
            }
            OnQuestion::Exempt => true,
            OnQuestion::Pass => false,
        };

        if qtype == RecordType::ANY {
            return self.send_any(request, &mut rh, resp_edns, qname).await;
        }

        let dnssec_ok = resp_edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let flags = Flags {
            dnssec_ok,
            checking_disabled: request.metadata.checking_disabled,
        };
        let resolver = self.resolver.load_full();
        let routes = self.routes.load_full();
        let routed = routes
            .resolve(&resolver, lower, qtype, flags, request.src().ip())
            .await;
        let (resolved, authoritative, route) = match routed {
            Ok(r) => (r.resolved, r.authoritative, r.counter),
            Err(failure) => {
                let (code, text) = if failure.zone {
                    (
                        ede::NO_REACHABLE_AUTHORITY,
                        "no server of the forward or stub zone answered",
                    )
                } else {
                    failure.ede.unwrap_or_else(|| failure_ede(failure.kind))
                };
                if let Some(e) = resp_edns.as_mut() {
                    e.options_mut().insert(answer::ede_option(code, text));
                }
                return self
                    .error(request, &mut rh, resp_edns.as_ref(), ResponseCode::ServFail)
                    .await;
            }
        };

        // The policy on the answer: CNAME targets (cloaking) and addresses.
        if !exempt {
            let block = {
                let guard = self.policy.load();
                self.check_answer(guard.as_ref(), &resolved, qname, &hit_ctx)
            };
            if let Some(b) = block {
                return self
                    .send_block(request, &mut rh, resp_edns, qname, qtype, b)
                    .await;
            }
        }

        if let Some((generation, epoch, key)) = candidate
            && !recorded.load(Ordering::Relaxed)
            && !resolved.stale
        {
            *keep = Some(Keep {
                generation,
                epoch,
                key,
                route,
            });
        }
        let answer = Resolution {
            resolved: &resolved,
            dnssec_ok,
            authoritative,
        };
        self.send_resolved(request, &mut rh, resp_edns, qname, answer)
            .await
    }

    /// The UDP fast path, taken in the receive loop before the datagram is
    /// decoded: an ordinary query ([`fast::parse`]) from an allowed client
    /// gets the full path's first steps here (the query counted, the name
    /// history, the policy on the question) and, when that blocks it with
    /// NXDOMAIN or NODATA, its answer written straight into `out`
    /// ([`Early::Send`]): no `Message` decoded or encoded, no task spawned.
    /// Anything else continues on the full path, with what was done here
    /// ([`Early::Slow`] with a [`Pre`]) so that nothing is done twice.
    /// Off while `server.client_qps` is set: the rate limiter judges a
    /// query before anything else does.
    pub(crate) fn early_udp(&self, msg: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> Early {
        if self.draining.load(Ordering::Acquire) || self.ratelimit.is_some() {
            return Early::Slow(None);
        }
        let Some(q) = fast::parse(msg) else {
            return Early::Slow(None);
        };
        let client = src.ip();
        // One load of the settings for the whole early step.
        let config = self.config.load();
        if !config.allows(client) {
            return Early::Slow(None);
        }
        let Ok(qname) = Name::from_bytes(q.name) else {
            return Early::Slow(None);
        };
        let lower = LowerName::new(&qname);
        if self
            .rpz
            .load()
            .as_ref()
            .is_some_and(|rpz| rpz.claims_name(&lower))
        {
            return Early::Slow(None);
        }
        let qtype = RecordType::from(q.qtype);
        self.metrics.query(Transport::Udp, qtype);
        if let Some(h) = &self.history {
            h.record_wire(q.name, client);
        }
        let recorded = AtomicBool::new(false);
        let ctx = HitCtx {
            client,
            qname: &lower,
            qtype,
            transport: Transport::Udp.as_str(),
            group: None,
            per: None,
            recorded: Some(&recorded),
        };
        let payload = q.edns.map(|e| e.payload.clamp(512, config.edns_payload));
        let b = match self.policy_on_question(&qname, &ctx) {
            OnQuestion::Block(b) => b,
            other => {
                let exempt = matches!(other, OnQuestion::Exempt);
                let candidate = match &self.packets {
                    Some(cache)
                        if !recorded.load(Ordering::Relaxed)
                            && self.groups.load().group_of(client).is_none() =>
                    {
                        let mut buf = [0u8; packets::KEY_MAX];
                        let key = packets::key_into(&mut buf, &q, payload, exempt);
                        if let Some(r) = cache.replay(key, &q, &self.parts(), out) {
                            self.metrics.cache_hits.inc();
                            self.metrics.packet_hits.inc();
                            self.metrics.response(r.rcode);
                            return Early::Send;
                        }
                        Some((self.parts().generation(), cache.epoch(), key.to_vec()))
                    }
                    _ => None,
                };
                return Early::Slow(Some(Box::new(Pre(other, candidate))));
            }
        };
        let rcode = match b.action {
            Action::Nxdomain => ResponseCode::NXDomain,
            Action::Nodata => ResponseCode::NoError,
            Action::Drop => {
                self.metrics.dropped();
                return Early::Dropped;
            }
            _ => return Early::Slow(Some(Box::new(Pre(OnQuestion::Block(b), None)))),
        };
        let negative = fast::Negative {
            rcode: rcode.low(),
            owner_at: fast::suffix_offset(q.name, usize::from(b.soa_labels)),
            // As answer::policy_soa: RFC 1982 serial arithmetic.
            serial: (b.serial & 0xffff_ffff) as u32,
            ttl: config.block_ttl,
            payload,
            ede_text: &b.text,
            ede_code: ede::BLOCKED,
        };
        if !fast::write_negative(out, &q, &negative) {
            return Early::Slow(Some(Box::new(Pre(OnQuestion::Block(b), None))));
        }
        self.metrics.response(rcode);
        Early::Send
    }

    /// The swappable parts a packet-cache entry is made under.
    pub(crate) fn parts(&self) -> packets::Parts<'_> {
        packets::Parts {
            policy: &self.policy,
            config: &self.config,
            resolver: &self.resolver,
            routes: &self.routes,
            groups: &self.groups,
        }
    }

    /// The response OPT: only if the client sent one; our payload cap.
    fn response_edns(&self, request: &Request) -> Option<Edns> {
        request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(
                req.max_payload()
                    .clamp(512, self.config.load().edns_payload),
            );
            e.set_version(0);
            e.set_dnssec_ok(req.flags().dnssec_ok);
            e
        })
    }

    /// The checks before any lookup: the client, the EDNS version, the
    /// opcode and the question. `Err` is the rcode to answer with (an EDE
    /// goes into `resp_edns` where one applies).
    /// Answer a NOTIFY: NOERROR (AA) and a refresh of the feed when it
    /// comes from the feed's primary for its zone, REFUSED otherwise, as
    /// BIND answers a NOTIFY from a server that is not a primary.
    async fn notify<R: ResponseHandler>(&self, request: &Request, mut rh: R) -> ResponseInfo {
        let config = self.config.load();
        let from = request.src().ip().to_canonical();
        let feed = request.queries.queries().first().and_then(|q| {
            config
                .xfr_feeds
                .iter()
                .find(|f| f.primary.to_canonical() == from && &f.zone == q.name())
        });
        let Some(feed) = feed else {
            tracing::debug!(%from, "NOTIFY for no axfr:// feed of this primary; refused");
            return self
                .error(request, &mut rh, None, ResponseCode::Refused)
                .await;
        };
        if let Some(tx) = &self.notified {
            // A full queue already holds a refresh to come.
            let _ = tx.try_send(feed.feed.clone());
        }
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = true;
        let builder = MessageResponseBuilder::new(&request.queries, None);
        let msg = builder.build(meta, [], [], [], []);
        self.send(request, &mut rh, msg).await
    }

    fn admit<'r>(
        &self,
        request: &'r Request,
        resp_edns: &mut Option<Edns>,
    ) -> Result<&'r LowerQuery, ResponseCode> {
        if !self.is_allowed(request.src().ip()) {
            // schild must never be an open resolver.
            self.metrics.acl_refused.inc();
            if let Some(e) = resp_edns.as_mut() {
                e.options_mut()
                    .insert(answer::ede_option(ede::PROHIBITED, "client not allowed"));
            }
            return Err(ResponseCode::Refused);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Err(ResponseCode::BADVERS);
        }
        if request
            .edns
            .as_ref()
            .is_some_and(|e| !cookies_well_formed(e))
        {
            // RFC 7873 5.2.2: a malformed COOKIE option is a FORMERR.
            return Err(ResponseCode::FormErr);
        }
        if request.metadata.op_code != OpCode::Query {
            return Err(ResponseCode::NotImp);
        }
        let query = request
            .queries
            .queries()
            .first()
            .filter(|_| request.queries.len() == 1)
            .ok_or(ResponseCode::FormErr)?;
        if query.query_class() != DNSClass::IN {
            return Err(ResponseCode::Refused);
        }
        match query.query_type() {
            // Only the RPZ zone is transferred (claimed before this).
            RecordType::AXFR | RecordType::IXFR => return Err(ResponseCode::Refused),
            RecordType::OPT => return Err(ResponseCode::FormErr),
            _ => {}
        }
        if !request.metadata.recursion_desired {
            // A resolver, not an authority: non-recursive questions are
            // cache snooping at best.
            return Err(ResponseCode::Refused);
        }
        Ok(query)
    }

    /// A blocked name asked by a client over its rate is still recorded
    /// as a sighting, once per name in a row: a flooding infected host is
    /// seen without flooding the sightings path.
    fn sighting_while_limited(&self, qname: &Name, ctx: &HitCtx<'_>, slot: usize) {
        let Some(rl) = &self.ratelimit else { return };
        let per = self.groups.load();
        let ctx = &ctx.in_group(&per);
        let guard = self.policy.load();
        if let Some(p) = guard.as_ref()
            && let Verdict::Blocked(hit) = p.lookup_labels(qname.iter())
            && rl.first_hit(slot, ctx.qname)
        {
            let lower = plain_lower(qname);
            let listed = matched_suffix(&lower, hit.matched_len).to_string();
            self.hit(p, &hit, Trigger::Name(listed), lower, ctx);
        }
    }

    /// A UDP query over its client's rate (`server.client_qps`): no
    /// answer, or an empty TC=1 one (the slip), and no lookup.
    async fn shed<R: ResponseHandler>(
        &self,
        request: &Request,
        rh: &mut R,
        resp_edns: Option<Edns>,
        verdict: Rate,
    ) -> ResponseInfo {
        if verdict == Rate::Drop {
            self.metrics.ratelimited(false);
            return no_response(request, ResponseCode::Refused);
        }
        self.metrics.ratelimited(true);
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        meta.truncation = true;
        let msg = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref()).build(
            meta,
            [],
            [],
            [],
            [],
        );
        self.send(request, rh, msg).await
    }

    /// The policy on the query name: the client group's `allow_only`,
    /// the allowlist, the IOC lists (as the group sees them), the
    /// resolver-bypass names.
    fn policy_on_question(&self, qname: &Name, ctx: &HitCtx<'_>) -> OnQuestion {
        let per = self.groups.load();
        let ctx = &ctx.in_group(&per);
        if let Some((i, _)) = ctx.group {
            per.count_query(i);
        }
        let guard = self.policy.load();
        let p = guard.as_ref();
        // An `rpz-client-ip` trigger comes first, as in BIND and Unbound.
        // No sighting: the client's address must not leave the hospital.
        if let Some(p) = p
            && let Some(hit) = p.lookup_client(ctx.client)
        {
            let feed = p.feed(hit.feed).map(|f| f.name.as_str());
            self.metrics.blocked(hit.feed, feed, hit.action);
            if enforced(hit.action, ctx.transport) {
                let text = format!(
                    "blocked by schild: feed {} lists the client's network",
                    feed.unwrap_or("?")
                );
                return OnQuestion::Block(Block::new(p, &hit, qname.num_labels(), text));
            }
            if hit.action == Action::TcpOnly {
                return OnQuestion::Exempt;
            }
        }
        // Default-deny: outside the group's names nothing resolves, not
        // even an allowlisted name (the allowlist spares names from the
        // feeds; it does not open a closed group).
        if let Some((i, g)) = ctx.group
            && let Some(names) = &g.allow_only
            && names.matches_labels(qname.iter()).is_none()
        {
            per.count_denied(i);
            if let Some(p) = p {
                self.denied(p, ctx);
            }
            return OnQuestion::Block(Block {
                action: Action::Nxdomain,
                soa_labels: qname.num_labels(),
                serial: p.map_or(0, |p| p.serial()),
                text: format!(
                    "blocked by schild: client group {} allows only the names of its allow_only list",
                    g.name
                ),
                local: Vec::new(),
            });
        }
        if let Some(p) = p {
            match self.lookup_name(p, qname, ctx) {
                Verdict::Blocked(hit) => {
                    // The question's text, once: the listed name is its
                    // tail, and the hit carries both.
                    let lower = plain_lower(qname);
                    let listed = matched_suffix(&lower, hit.matched_len).to_string();
                    let owner = answer::suffix_labels(qname, hit.matched_len) as u8;
                    let text = block_text(p, &hit, &listed, "", ctx);
                    self.hit(p, &hit, Trigger::Name(listed), lower, ctx);
                    if enforced(hit.action, ctx.transport) {
                        return OnQuestion::Block(Block::new(p, &hit, owner, text));
                    }
                    if hit.action == Action::TcpOnly {
                        // Over TCP `rpz-tcp-only.` is a passthru.
                        return OnQuestion::Exempt;
                    }
                }
                Verdict::Allowed { .. } => {
                    self.metrics.allowlist_overrides.inc();
                    return OnQuestion::Exempt;
                }
                // Like RPZ-PASSTHRU: an allowlisted query name exempts its
                // whole answer, CNAME targets and addresses included.
                Verdict::AllowOnly(_) => return OnQuestion::Exempt,
                Verdict::Pass => {}
            }
        }
        if let Some(bypass) = &per.bypass
            && let Some(len) = bypass.matches_labels(qname.iter())
        {
            per.count_bypass();
            let owner = answer::suffix_labels(qname, len) as u8;
            let listed = matched_suffix(&plain_lower(qname), len).to_string();
            return OnQuestion::Block(Block {
                action: Action::Nxdomain,
                soa_labels: owner,
                serial: p.map_or(0, |p| p.serial()),
                text: format!(
                    "blocked by schild: {listed} would let clients bypass this resolver (policy.block_bypass)"
                ),
                local: Vec::new(),
            });
        }
        OnQuestion::Pass
    }

    /// A name lookup as the client's group sees it: only its `feeds`, and
    /// under `action = "log-only"` every hit recorded only.
    fn lookup_name(&self, p: &Policy, name: &Name, ctx: &HitCtx<'_>) -> Verdict {
        let Some((_, g)) = ctx.group else {
            return match p.lookup_labels(name.iter()) {
                Verdict::Blocked(hit) => Verdict::Blocked(self.quarantined(name, hit)),
                other => other,
            };
        };
        let v = if g.feeds.is_some() {
            p.lookup_labels_where(name.iter(), |id| {
                p.feed(id).is_some_and(|f| g.uses_feed(&f.name))
            })
        } else {
            p.lookup_labels(name.iter())
        };
        match v {
            Verdict::Blocked(hit) => Verdict::Blocked(self.quarantined(name, group_hit(g, hit))),
            other => other,
        }
    }

    /// A hit on a quarantined name (the listed name it matched) is
    /// recorded only, with action `quarantine`, until it is released.
    fn quarantined(&self, name: &Name, hit: Hit) -> Hit {
        if !hit.action.enforces() {
            return hit;
        }
        let q = self.quarantine.load();
        if q.is_empty() || !q.contains(matched_suffix(&plain_lower(name), hit.matched_len)) {
            return hit;
        }
        Hit {
            action: Action::Quarantine,
            ..hit
        }
    }

    /// An address lookup as the client's group sees it.
    fn lookup_addr(&self, p: &Policy, ip: IpAddr, ctx: &HitCtx<'_>) -> Option<Hit> {
        let Some((_, g)) = ctx.group else {
            return p.lookup_ip(ip);
        };
        let hit = if g.feeds.is_some() {
            p.lookup_ip_where(ip, |id| p.feed(id).is_some_and(|f| g.uses_feed(&f.name)))
        } else {
            p.lookup_ip(ip)
        };
        hit.map(|h| group_hit(g, h))
    }

    /// `policy.rebind_protection`: the first private, loopback or
    /// link-local address in the answer of a public name (not under
    /// `rebind_allow`, not from an internal route).
    fn rebinding(&self, per: &PerNetwork, resolved: &Resolved, qname: &Name) -> Option<Block> {
        let exempt = per.rebind_allow.as_ref()?;
        if resolved.internal || exempt.matches_labels(qname.iter()).is_some() {
            return None;
        }
        for r in &resolved.answer.answers {
            let ip = match &r.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => continue,
            };
            if !is_private_answer(ip) || exempt.matches_labels(r.name.iter()).is_some() {
                continue;
            }
            per.count_rebind();
            return Some(Block {
                action: Action::Nxdomain,
                soa_labels: qname.num_labels(),
                serial: self.policy.load().as_ref().map_or(0, |p| p.serial()),
                text: format!(
                    "blocked by schild: a public name answered with the private address {ip} (policy.rebind_protection)"
                ),
                local: Vec::new(),
            });
        }
        None
    }

    /// A name outside an `allow_only` group's list: recorded like a hit,
    /// with no feed behind it (so nothing is reported to a feed).
    fn denied(&self, p: &Arc<Policy>, ctx: &HitCtx<'_>) {
        tracing::debug!(qname = %ctx.qname, "denied by the client group's allow_only");
        let lower = plain_lower(ctx.qname);
        let trigger = Trigger::Name(lower.clone());
        let set = crate::sightings::NO_SET;
        self.record(p, Action::Nxdomain, trigger, set, lower, ctx);
    }

    /// RFC 8482: a minimal answer to ANY instead of everything we have.
    async fn send_any<R: ResponseHandler>(
        &self,
        request: &Request,
        rh: &mut R,
        resp_edns: Option<Edns>,
        qname: &Name,
    ) -> ResponseInfo {
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let hinfo = [Record::from_rdata(
            qname.clone(),
            3600,
            RData::HINFO(HINFO::new("RFC8482".into(), String::new())),
        )];
        let msg = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref()).build(
            meta,
            hinfo.iter(),
            [],
            [],
            [],
        );
        self.send(request, rh, msg).await
    }

    /// The first enforcing hit among the answer's CNAME targets and
    /// addresses; `log-only` hits on the way are recorded.
    fn check_answer(
        &self,
        p: Option<&Arc<Policy>>,
        resolved: &Resolved,
        qname: &Name,
        ctx: &HitCtx<'_>,
    ) -> Option<Block> {
        let per = self.groups.load();
        let ctx = &ctx.in_group(&per);
        let Some(p) = p else {
            return self.rebinding(&per, resolved, qname);
        };
        for r in &resolved.answer.answers {
            let (hit, trigger, what) = match &r.data {
                RData::CNAME(target) => match self.lookup_name(p, &target.0, ctx) {
                    Verdict::Blocked(hit) => {
                        let listed =
                            matched_suffix(&plain_lower(&target.0), hit.matched_len).to_string();
                        (hit, Trigger::Name(listed), " (CNAME target)")
                    }
                    Verdict::Allowed { .. } => {
                        self.metrics.allowlist_overrides.inc();
                        continue;
                    }
                    _ => continue,
                },
                RData::A(a) => match self.lookup_addr(p, IpAddr::V4(a.0), ctx) {
                    Some(hit) => (hit, Trigger::Ip(IpAddr::V4(a.0)), " (address in answer)"),
                    None => continue,
                },
                RData::AAAA(a) => match self.lookup_addr(p, IpAddr::V6(a.0), ctx) {
                    Some(hit) => (hit, Trigger::Ip(IpAddr::V6(a.0)), " (address in answer)"),
                    None => continue,
                },
                _ => continue,
            };
            let text = block_text(p, &hit, &trigger.to_string(), what, ctx);
            self.hit(p, &hit, trigger, plain_lower(ctx.qname), ctx);
            if enforced(hit.action, ctx.transport) {
                // The listed name is not an ancestor of the query name:
                // the SOA sits at the query name itself.
                return Some(Block::new(p, &hit, qname.num_labels(), text));
            }
        }
        self.rebinding(&per, resolved, qname)
    }

    /// `qname` is the question as [`plain_lower`] writes it.
    fn hit(&self, p: &Arc<Policy>, hit: &Hit, trigger: Trigger, qname: String, ctx: &HitCtx<'_>) {
        let feed = p.feed(hit.feed).map(|f| f.name.as_str());
        self.metrics.blocked(hit.feed, feed, hit.action);
        if let (Some(per), Some((i, _))) = (ctx.per, ctx.group) {
            per.count_hit(i);
        }
        tracing::debug!(qname = %ctx.qname, feed, action = hit.action.as_str(), "policy hit");
        self.record(p, hit.action, trigger, hit.set, qname, ctx);
    }

    /// Hand a hit to the sightings queue.
    fn record(
        &self,
        p: &Arc<Policy>,
        action: Action,
        trigger: Trigger,
        set: u32,
        qname: String,
        ctx: &HitCtx<'_>,
    ) {
        if let Some(r) = ctx.recorded {
            r.store(true, Ordering::Relaxed);
        }
        self.hits.record(HitEvent {
            at: SystemTime::now(),
            client: ctx.client,
            qname,
            qtype: u16::from(ctx.qtype),
            transport: ctx.transport,
            action,
            trigger,
            set,
            policy: p.clone(),
            client_group: ctx.group.map(|(_, g)| g.name.clone()),
        });
    }

    async fn send_block<R: ResponseHandler>(
        &self,
        request: &Request,
        rh: &mut R,
        mut resp_edns: Option<Edns>,
        qname: &Name,
        qtype: RecordType,
        b: Block,
    ) -> ResponseInfo {
        if b.action == Action::Drop {
            self.metrics.dropped();
            return no_response(request, ResponseCode::ServFail);
        }
        if b.action == Action::TcpOnly {
            // UDP only (over TCP it is answered normally): an empty
            // answer with TC=1, so the client asks again over TCP.
            let mut meta = Metadata::response_from_request(&request.metadata);
            meta.recursion_available = true;
            meta.truncation = true;
            let msg = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref()).build(
                meta,
                [],
                [],
                [],
                [],
            );
            return self.send(request, rh, msg).await;
        }
        if let Some(e) = resp_edns.as_mut() {
            e.options_mut()
                .insert(answer::ede_option(ede::BLOCKED, &b.text));
        }
        // Resolved before the settings are loaded: no guard across an await.
        let local = if b.action == Action::LocalData {
            let ttl = self.config.load().block_ttl;
            Some(
                self.local_answer(request, qname, qtype, ttl, &b.local)
                    .await,
            )
        } else {
            None
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let config = self.config.load();
        let ttl = config.block_ttl;
        let builder = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref());
        let soa = answer::policy_soa(qname.trim_to(usize::from(b.soa_labels)), b.serial, ttl);
        match b.action {
            Action::Refused => {
                let mut msg = builder.error_msg(&request.metadata, ResponseCode::Refused);
                msg.metadata_mut().recursion_available = true;
                self.send(request, rh, msg).await
            }
            Action::Sinkhole | Action::LocalData => {
                let records = local.unwrap_or_else(|| {
                    answer::sinkhole_records(
                        qname,
                        qtype,
                        ttl,
                        &config.sinkhole_ipv4,
                        &config.sinkhole_ipv6,
                    )
                });
                let soa_part: &[Record] = if records.is_empty() {
                    std::slice::from_ref(&soa)
                } else {
                    &[]
                };
                let msg = builder.build(meta, records.iter(), [], soa_part.iter(), []);
                self.send(request, rh, msg).await
            }
            Action::Nodata => {
                let msg = builder.build(meta, [], [], std::iter::once(&soa), []);
                self.send(request, rh, msg).await
            }
            // Nxdomain, and LogOnly which never gets here.
            _ => {
                meta.response_code = ResponseCode::NXDomain;
                let msg = builder.build(meta, [], [], std::iter::once(&soa), []);
                self.send(request, rh, msg).await
            }
        }
    }

    /// The answer RPZ local data gives for `qtype`: the records of that
    /// type (every one for ANY), or a CNAME to a walled garden followed by
    /// its resolution, as BIND answers it. Empty means NODATA. The garden's
    /// answer goes through the policy too; if the policy blocks it, or it
    /// cannot be resolved, the CNAME stands alone for the client to follow.
    async fn local_answer(
        &self,
        request: &Request,
        qname: &Name,
        qtype: RecordType,
        ttl: u32,
        local: &[LocalRecord],
    ) -> Vec<Record> {
        let Some(cname) = answer::local_cname(qname, ttl, local) else {
            return answer::local_records(qname, qtype, ttl, local);
        };
        let RData::CNAME(target) = &cname.data else {
            return Vec::new();
        };
        let target = target.0.clone();
        let mut out = vec![cname];
        if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
            return out;
        }
        let flags = Flags {
            dnssec_ok: false,
            checking_disabled: request.metadata.checking_disabled,
        };
        let lower = LowerName::from(&target);
        let resolver = self.resolver.load_full();
        if let Ok(resolved) = resolver
            .resolve(&lower, qtype, flags, request.src().ip())
            .await
            && resolved.answer.rcode == ResponseCode::NoError
        {
            let ctx = HitCtx {
                client: request.src().ip(),
                qname: &lower,
                qtype,
                transport: transport_of(request.protocol()).as_str(),
                group: None,
                per: None,
                recorded: None,
            };
            let blocked = {
                let guard = self.policy.load();
                guard.as_ref().is_some_and(|p| {
                    matches!(p.lookup_labels(target.iter()), Verdict::Blocked(h) if h.action.enforces())
                        || self.check_answer(Some(p), &resolved, &target, &ctx).is_some()
                })
            };
            if !blocked {
                out.extend(resolved.answer.answers.iter().map(|r| {
                    let mut r = r.clone();
                    r.ttl = resolved.ttl(r.ttl);
                    r
                }));
            }
        }
        out
    }

    async fn send_resolved<R: ResponseHandler>(
        &self,
        request: &Request,
        rh: &mut R,
        mut resp_edns: Option<Edns>,
        qname: &Name,
        resolution: Resolution<'_>,
    ) -> ResponseInfo {
        let Resolution {
            resolved,
            dnssec_ok,
            authoritative,
        } = resolution;
        let a = &resolved.answer;
        let fix = |r: &Record| {
            let mut r = r.clone();
            r.ttl = resolved.ttl(r.ttl);
            // Keep the client's spelling of its own name (0x20).
            if r.name == *qname {
                r.name = qname.clone();
            }
            r
        };
        let answers: Vec<Record> = a.answers.iter().map(fix).collect();
        let authorities: Vec<Record> = a.authorities.iter().map(fix).collect();
        if resolved.stale
            && let Some(e) = resp_edns.as_mut()
        {
            e.options_mut()
                .insert(answer::ede_option(ede::STALE_ANSWER, "upstream failed"));
        }
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        meta.response_code = a.rcode;
        // Local data is ours: AA, as Unbound sets it for its local zones.
        meta.authoritative = authoritative;
        meta.authentic_data = a.secure && (request.metadata.authentic_data || dnssec_ok);
        let msg = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref()).build(
            meta,
            answers.iter(),
            authorities.iter(),
            [],
            [],
        );
        self.send(request, rh, msg).await
    }
}

/// A resolved answer and how it goes out.
struct Resolution<'a> {
    resolved: &'a Resolved,
    dnssec_ok: bool,
    /// Answered from local data.
    authoritative: bool,
}

/// What the policy on the question decided.
/// What [`Shared::early_udp`] did with a datagram.
pub(crate) enum Early {
    /// The answer is in the buffer, counted: send it.
    Send,
    /// No answer is to be sent (an `rpz-drop.` block).
    Dropped,
    /// The full path answers, after what was done already, if anything.
    Slow(Option<Box<Pre>>),
}

/// The first steps of a query, taken by [`Shared::early_udp`], and when
/// its answer may be kept, what it is made under (the generation and the
/// flush epoch) and its packet-cache key.
pub(crate) struct Pre(OnQuestion, Option<(packets::Generation, u64, Vec<u8>)>);

impl Pre {
    /// Whether the answer may be kept by the packet cache.
    pub(crate) fn may_keep(&self) -> bool {
        self.1.is_some()
    }
}

enum OnQuestion {
    /// Answer with the block instead of resolving.
    Block(Block),
    /// An allowlisted name: resolve, and exempt the whole answer.
    Exempt,
    /// Resolve, then apply the policy to the answer.
    Pass,
}

/// The EDE of a failed resolution (RFC 8914).
fn failure_ede(kind: UpstreamError) -> (u16, &'static str) {
    match kind {
        UpstreamError::Bogus => (ede::DNSSEC_BOGUS, "DNSSEC validation failed"),
        UpstreamError::Timeout => (ede::NO_REACHABLE_AUTHORITY, "upstream timed out"),
        UpstreamError::Overloaded => (
            ede::OTHER,
            "too many lookups outstanding: the oldest was given up (resolver.max_inflight)",
        ),
        _ => (ede::NETWORK_ERROR, "upstream failed"),
    }
}

/// Every COOKIE option has a legal length (RFC 7873 4): a client cookie
/// of 8 octets alone, or with a server cookie of 8 to 32 (16 to 40 in all).
fn cookies_well_formed(edns: &Edns) -> bool {
    use hickory_proto::rr::rdata::opt::EdnsOption;
    edns.options()
        .as_ref()
        .iter()
        .filter(|(code, _)| *code == EdnsCode::Cookie)
        .all(|(_, option)| match option {
            EdnsOption::Unknown(_, data) => data.len() == 8 || (16..=40).contains(&data.len()),
            _ => false,
        })
}

/// What a hit needs to know about the query.
struct HitCtx<'a> {
    client: IpAddr,
    qname: &'a LowerName,
    qtype: RecordType,
    transport: &'static str,
    /// The client's `[[client_group]]` (its index and the group), and the
    /// table it is from: set by each policy step ([`HitCtx::in_group`]).
    group: Option<(usize, &'a ClientGroup)>,
    per: Option<&'a PerNetwork>,
    /// Set when a hit is recorded: such an answer is never kept whole
    /// (the packet cache), since each hit must be seen.
    recorded: Option<&'a AtomicBool>,
}

impl<'a> HitCtx<'a> {
    /// The same query with the client's group looked up in `per`.
    fn in_group<'b>(&self, per: &'b PerNetwork) -> HitCtx<'b>
    where
        'a: 'b,
    {
        HitCtx {
            client: self.client,
            qname: self.qname,
            qtype: self.qtype,
            transport: self.transport,
            group: per.group_of(self.client),
            per: Some(per),
            recorded: self.recorded,
        }
    }
}

/// A hit as a group acts on it: under `action = "log-only"`, recorded only.
fn group_hit(g: &ClientGroup, hit: Hit) -> Hit {
    match g.action {
        GroupAction::LogOnly => Hit {
            action: Action::LogOnly,
            ..hit
        },
        GroupAction::Feed => hit,
    }
}

/// The Extended DNS Error text of a block: names the feed and the indicator.
fn block_text(p: &Policy, hit: &Hit, listed: &str, what: &str, ctx: &HitCtx<'_>) -> String {
    let feed = p.feed(hit.feed).map(|f| f.name.as_str()).unwrap_or("?");
    // Once per blocked answer: one allocation, no formatter.
    let mut s = String::with_capacity(96);
    s.push_str("blocked by schild: feed ");
    s.push_str(feed);
    s.push_str(" lists ");
    s.push_str(listed);
    s.push_str(what);
    if let Some((_, g)) = ctx.group {
        s.push_str(" (client group ");
        s.push_str(&g.name);
        s.push(')');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: hickory's own writer, which `plain_lower` falls back on.
    use super::plain_lower_escaped as hickory_form;

    #[test]
    fn plain_names_are_written_as_hickory_writes_them() {
        let cases: [&[&[u8]]; 12] = [
            &[],
            &[b"Example", b"COM"],
            &[b"*", b"evil", b"example"],
            &[b"_dmarc", b"Example", b"org"],
            &[b"a-b", b"c-d"],
            &[b"-lead", b"example"],
            &[b"x.y", b"example"],
            &[b"sp ace", b"example"],
            &[b"\x80bin", b"example"],
            &[b"caf\xc3\xa9", b"example"],
            &[b"XN--BCHER-KVA", b"example"],
            &[b"a*b", b"*"],
        ];
        for labels in cases {
            let name = Name::from_labels(labels.iter().copied()).expect("test name");
            assert_eq!(plain_lower(&name), hickory_form(&name), "{labels:?}");
        }
    }

    proptest! {
        #[test]
        fn any_wire_name_is_written_as_hickory_writes_it(
            labels in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 0..5)
        ) {
            let name = Name::from_labels(labels).expect("short labels");
            prop_assert_eq!(plain_lower(&name), hickory_form(&name));
        }
    }
}
