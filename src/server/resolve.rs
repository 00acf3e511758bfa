//! Getting answers from the outside world: forward or recurse, with a cache.
//!
//! [`Upstream`] hides the two modes behind one call: forwarding to the
//! configured upstreams (UDP/TCP or DoT; [`Forwarder`]: hickory's
//! validating `TokioResolver` with `dnssec = true` and CD=0, else the
//! client's question passed through hickory's name-server pool as asked)
//! or hickory's `Recursor` (from the root hints, DNSSEC-validating by
//! default). In front
//! of both sits one answer cache ([`Resolver`]) sized in entries, with the
//! configured TTL bounds and serve-stale (RFC 8767): when the upstream fails
//! and an expired answer is still held, that answer is served with a short
//! TTL instead of SERVFAIL. The policy is applied by the caller to whatever
//! comes out of here, cached or not, so a reload takes effect at once.
//!
//! Two guards keep a crowd of clients from turning into a crowd of upstream
//! queries. Identical cache misses in flight at the same time share one
//! upstream lookup (Unbound's mesh, BIND's fetch de-duplication): the first
//! one asks, the others wait for its answer or its failure. And a question
//! whose resolution failed is answered SERVFAIL from memory for
//! `servfail_ttl_secs` (BIND's `servfail-ttl`), unless a stale answer can
//! be served instead.
//!
//! A question is the name, the type and the DO and CD bits: DO decides
//! whether DNSSEC records are in the answer, and CD (RFC 4035 3.2.2) lets a
//! client take data that failed validation, so a CD=1 answer is never
//! served to a CD=0 client. The class is always IN: the handler refuses
//! every other.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hickory_proto::op::{DnsRequest, DnsRequestOptions, Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_resolver::Resolver as HickoryResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig as HickoryConfig, ResolverOpts,
};
use hickory_resolver::net::dnssec::DnssecDnsHandle;
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::net::{DnsError, NetError, RetryDnsHandle};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};
use tokio::sync::watch;

use super::metrics::{Metrics, UpstreamError};
use super::outgoing::Outgoing;
use super::recursor::Recursive;
use crate::config::{ResolverConfig, ResolverMode, Upstream as UpstreamAddr};

/// TTL of an answer served stale (RFC 8767 recommends 30 seconds).
const STALE_TTL: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ResolverSetupError {
    #[error("cannot read root hints {path}")]
    Hints {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("root hints {path} hold no addresses")]
    EmptyHints { path: String },
    #[error("cannot set up the recursor: {0}")]
    Recursor(String),
    #[error("cannot set up the forwarder")]
    Forwarder(#[source] NetError),
}

/// An answer as it will be given to clients (before the policy looks at it).
#[derive(Debug, Clone)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// The answer section: the CNAME chain and the final records.
    pub answers: Vec<Record>,
    /// For negative answers: the SOA (and DNSSEC proofs if asked for).
    pub authorities: Vec<Record>,
    /// Every record validated as secure (AD may be set).
    pub secure: bool,
}

/// What [`Resolver::resolve`] returns.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub answer: Arc<Answer>,
    /// Seconds to take off every TTL (time spent in the cache).
    pub age: u32,
    /// Served stale because the upstream failed.
    pub stale: bool,
    /// The answer came from an internal route (a forward_zone, stub_zone
    /// or local data), not from the public DNS: `policy.rebind_protection`
    /// does not apply to it. Zone routing sets it; the global modes never do.
    pub internal: bool,
}

impl Resolved {
    /// A record's TTL as the client should see it.
    pub fn ttl(&self, original: u32) -> u32 {
        if self.stale {
            STALE_TTL
        } else {
            original.saturating_sub(self.age)
        }
    }
}

/// Why there is no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveFailure {
    pub kind: UpstreamError,
    /// A more specific Extended DNS Error than the kind's (RFC 8914).
    pub ede: Option<(u16, &'static str)>,
}

/// The header bits of a question that change its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// DO: the client wants DNSSEC records.
    pub dnssec_ok: bool,
    /// CD: the client does its own validation and wants the data even if
    /// it fails ours.
    pub checking_disabled: bool,
}

/// The ways of getting answers: the two global modes, and a stub zone's
/// servers asked iteratively ([`super::stub`]).
pub enum Upstream {
    Forward(Box<Forwarder>),
    Recursive(Box<Recursive>),
    Stub(Box<super::stub::Stub>),
}

impl Upstream {
    /// Build the upstream the configuration asks for.
    /// Every connection to an upstream or name server is `out`'s.
    pub fn new(config: &ResolverConfig, out: Outgoing) -> Result<Upstream, ResolverSetupError> {
        match config.mode {
            ResolverMode::Forward => forwarder(config, out).map(|r| Upstream::Forward(Box::new(r))),
            ResolverMode::Recursive => {
                super::recursor::build(config, out).map(|r| Upstream::Recursive(Box::new(r)))
            }
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Upstream::Forward(_) => "forward",
            Upstream::Recursive(_) => "recursive",
            Upstream::Stub(_) => "stub",
        }
    }

    /// One lookup. With CD=1 a bogus answer is returned, not refused: the
    /// recursor hands back bogus records marked as such, and the forwarder
    /// asks its upstream with CD=1 past hickory's validating client (which
    /// turns bogus into an error before we see the records,
    /// caching_client.rs: "doesn't yet take into account the CD flag").
    ///
    /// A negative answer reached through CNAMEs or a DNAME keeps the chain
    /// (RFC 1034 4.3.2, RFC 2308 2.1-2.2, RFC 6604): hickory follows the
    /// chain itself and reports only the last name's NXDOMAIN or NODATA,
    /// so the chain is asked for again, one CNAME at a time ([`chain`]).
    /// A chain that loops is SERVFAIL, as Unbound answers it.
    pub(super) async fn lookup(
        &self,
        name: Name,
        qtype: RecordType,
        flags: Flags,
    ) -> Result<Answer, ResolveFailure> {
        let (mut answer, about) = self.lookup_once(name.clone(), qtype, flags).await?;
        if cname_loop(&answer.answers, &name) {
            tracing::debug!(%name, "CNAME loop");
            return Err(ResolveFailure {
                kind: UpstreamError::ServFail,
                ede: None,
            });
        }
        let chased = !matches!(qtype, RecordType::CNAME | RecordType::ANY);
        // An NXDOMAIN about an ancestor of the question is hickory's
        // RFC 8020 short cut, not the end of a chain: below a name that
        // does not exist there is nothing, so no CNAME either.
        let nx = answer.rcode == ResponseCode::NXDomain;
        let followed = |last: &Name| *last != name && !(nx && last.zone_of(&name));
        if let Some(last) = about.filter(|last| chased && followed(last))
            && let Some(chain) = self.chain(&name, &last, flags).await?
        {
            answer.answers = chain;
        }
        Ok(answer)
    }

    /// The CNAME and DNAME records that lead from `from` to `to`, asked
    /// for name by name. `None` if the way cannot be found again (the
    /// negative answer then goes out as hickory gave it); a loop fails.
    async fn chain(
        &self,
        from: &Name,
        to: &Name,
        flags: Flags,
    ) -> Result<Option<Vec<Record>>, ResolveFailure> {
        let mut records = Vec::new();
        let mut seen = vec![from.clone()];
        let mut at = from.clone();
        for _ in 0..MAX_CHAIN {
            let Ok((hop, _)) = self.lookup_once(at.clone(), RecordType::CNAME, flags).await else {
                return Ok(None);
            };
            let target = hop.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(c) if r.name == at => Some(c.0.clone()),
                _ => None,
            });
            let Some(target) = target else {
                return Ok(None);
            };
            records.extend(synthesised_ttls(hop.answers));
            // `to` may be an ancestor of the chain's last name: hickory
            // stops at a parent that does not exist (RFC 8020).
            if to.zone_of(&target) {
                return Ok(Some(records));
            }
            if seen.contains(&target) {
                return Err(ResolveFailure {
                    kind: UpstreamError::ServFail,
                    ede: None,
                });
            }
            seen.push(target.clone());
            at = target;
        }
        Ok(None)
    }

    /// One question to the upstream, as hickory answers it: the answer,
    /// and for a negative one the name it is about (the last of a chain).
    async fn lookup_once(
        &self,
        name: Name,
        qtype: RecordType,
        flags: Flags,
    ) -> Result<(Answer, Option<Name>), ResolveFailure> {
        match self {
            Upstream::Forward(f) => match &f.validating {
                Some(r) if !flags.checking_disabled => match r.lookup(name.clone(), qtype).await {
                    Ok(lookup) => {
                        // The authority section too: a wildcard answer's
                        // NSEC/NSEC3 proof, for DO clients.
                        let answers = lookup.answers().to_vec();
                        let rcode = ResponseCode::NoError;
                        let auth =
                            authority_part(qtype, rcode, &answers, lookup.authorities().to_vec());
                        Ok((positive(qtype, rcode, answers, auth, flags)?, None))
                    }
                    // hickory's resolver keeps no records of a bogus
                    // answer: ask again through its validator alone.
                    Err(NetError::Dns(DnsError::DnssecBogus)) => {
                        f.recheck(name, qtype, flags).await
                    }
                    Err(e) => negative_or_failure(e, qtype, flags),
                },
                _ => f.ask(name, qtype, flags).await,
            },
            Upstream::Stub(stub) => {
                // Taken as the authoritative servers gave it; never
                // validated, so never secure (see super::stub).
                let msg = stub.lookup(&name, qtype, flags.dnssec_ok).await?;
                let rcode = msg.metadata.response_code;
                let auth = authority_part(qtype, rcode, &msg.answers, msg.authorities);
                let mut answer = positive(qtype, rcode, msg.answers, auth, flags)?;
                answer.secure = false;
                Ok((answer, None))
            }
            Upstream::Recursive(r) => {
                // The recursor always validates (the policy is fixed when
                // it is built) and hands back every record with its proof;
                // CD only changes what we do with a bogus result.
                match r
                    .resolve(Query::query(name, qtype), Instant::now(), flags.dnssec_ok)
                    .await
                {
                    Ok(msg) => {
                        let rcode = msg.metadata.response_code;
                        let auth = authority_part(qtype, rcode, &msg.answers, msg.authorities);
                        Ok((positive(qtype, rcode, msg.answers, auth, flags)?, None))
                    }
                    Err(e) => {
                        use hickory_resolver::recursor::RecursorError;
                        match e {
                            RecursorError::Net(net) => {
                                let ede = super::recursor::unreachable_ede(&net);
                                negative_or_failure(net, qtype, flags).map_err(|f| ResolveFailure {
                                    ede: f.ede.or(ede),
                                    ..f
                                })
                            }
                            RecursorError::Negative(neg) => {
                                let nx = neg.is_nx_domain();
                                let about = neg.query.name().clone();
                                let soa = neg.soa.map(|s| s.into_record_of_rdata());
                                Ok((negative(nx, soa), Some(about)))
                            }
                            e if e.is_nx_domain() || e.is_no_records_found() => {
                                let nx = e.is_nx_domain();
                                let soa = e.into_soa().map(|s| s.into_record_of_rdata());
                                Ok((negative(nx, soa), None))
                            }
                            RecursorError::Timeout => Err(ResolveFailure {
                                kind: UpstreamError::Timeout,
                                ede: None,
                            }),
                            e => {
                                tracing::debug!(error = %e, "recursion failed");
                                Err(ResolveFailure {
                                    kind: UpstreamError::Other,
                                    ede: None,
                                })
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A CNAME synthesised from a DNAME has the DNAME's TTL (RFC 6672 3.3;
/// an upstream answering from its cache may give it TTL 0, which would
/// keep the whole answer out of the cache).
fn synthesised_ttls(mut records: Vec<Record>) -> Vec<Record> {
    let dnames: Vec<(Name, u32)> = records
        .iter()
        .filter(|r| r.record_type() == RecordType::DNAME)
        .map(|r| (r.name.clone(), r.ttl))
        .collect();
    for r in records.iter_mut() {
        if let RData::CNAME(_) = r.data
            && let Some((_, ttl)) = dnames.iter().find(|(owner, _)| owner.zone_of(&r.name))
        {
            r.ttl = *ttl;
        }
    }
    records
}

/// At most this many CNAMEs are asked for to rebuild one chain (Unbound
/// follows at most 11 restarts, hickory 64).
const MAX_CHAIN: usize = 16;

/// Whether the CNAMEs of an answer, followed from `qname`, come back to a
/// name already seen.
fn cname_loop(answers: &[Record], qname: &Name) -> bool {
    let mut at = qname;
    // Each step moves to a new name or ends, so `answers.len()` steps
    // without an end mean a loop.
    for _ in 0..=answers.len() {
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == *at => Some(&c.0),
            _ => None,
        });
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
    true
}

/// Whether a record goes to a client that did not set DO (RFC 4035
/// 3.2.1): RRSIG, NSEC and NSEC3 only when asked for by type. DS, DNSKEY
/// and NSEC3PARAM are data like any other.
fn keep_without_do(rtype: RecordType, qtype: RecordType) -> bool {
    rtype == qtype
        || !matches!(
            rtype,
            RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3
        )
}

fn positive(
    qtype: RecordType,
    rcode: ResponseCode,
    mut answers: Vec<Record>,
    mut authorities: Vec<Record>,
    flags: Flags,
) -> Result<Answer, ResolveFailure> {
    use hickory_proto::dnssec::DnssecSummary;
    let all = || answers.iter().chain(authorities.iter());
    // A positive answer is as secure as its data: the proofs kept with it
    // (a wildcard's NSEC) are in the data's proof already.
    let summary = if is_positive(qtype, rcode, &answers) {
        DnssecSummary::from_records(answers.iter())
    } else {
        DnssecSummary::from_records(all())
    };
    // RFC 4035 3.2.2: with CD=1 the client gets the data and validates it
    // itself; AD stays clear (not secure).
    if matches!(summary, DnssecSummary::Bogus) && !flags.checking_disabled {
        let records: Vec<Record> = all().cloned().collect();
        return Err(ResolveFailure {
            kind: UpstreamError::Bogus,
            ede: Some(super::recursor::bogus_ede(
                &records,
                flags.dnssec_ok,
                crate::clock::unix_now(),
            )),
        });
    }
    // Only records carry proofs; an empty answer is not "secure".
    let secure = matches!(summary, DnssecSummary::Secure) && all().next().is_some();
    if !flags.dnssec_ok {
        let keep = |r: &Record| keep_without_do(r.record_type(), qtype);
        answers.retain(keep);
        authorities.retain(keep);
    }
    Ok(Answer {
        rcode,
        answers,
        authorities,
        secure,
    })
}

fn negative(nx: bool, soa: Option<Record>) -> Answer {
    Answer {
        rcode: if nx {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        },
        answers: Vec::new(),
        authorities: soa.into_iter().collect(),
        secure: false,
    }
}

/// A negative answer (with the name it is about, the last of a chain) or
/// the failure.
fn negative_or_failure(
    e: NetError,
    qtype: RecordType,
    flags: Flags,
) -> Result<(Answer, Option<Name>), ResolveFailure> {
    // A positive answer whose NSEC proof hickory rejected: a wildcard
    // answer, judged again.
    let e = match e {
        NetError::Dns(DnsError::Nsec {
            response, proof, ..
        }) if response.response_code == ResponseCode::NoError && !response.answers.is_empty() => {
            return judged(qtype, (*response).into_message(), proof, flags).map(|a| (a, None));
        }
        e => e,
    };
    if let NetError::Dns(DnsError::NoRecordsFound(no)) = e {
        let nx = no.response_code == ResponseCode::NXDomain;
        let about = no.query.name().clone();
        let soa = no.soa.map(|s| s.into_record_of_rdata());
        let mut answer = negative(nx, soa);
        // A DO client gets the whole authority section: the SOA, its
        // RRSIG and the NSEC/NSEC3 proofs.
        if flags.dnssec_ok
            && let Some(all) = no.authorities.filter(|a| !a.is_empty())
        {
            answer.authorities = all.to_vec();
        }
        return Ok((answer, Some(about)));
    }
    if e.is_nx_domain() || e.is_no_records_found() {
        let nx = e.is_nx_domain();
        let soa = e.into_soa().map(|s| s.into_record_of_rdata());
        return Ok((negative(nx, soa), None));
    }
    let kind = match &e {
        NetError::Timeout => UpstreamError::Timeout,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => UpstreamError::ServFail,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => UpstreamError::Refused,
        NetError::Dns(DnsError::DnssecBogus) => UpstreamError::Bogus,
        NetError::Dns(DnsError::Nsec {
            response, proof, ..
        }) => {
            if proof.is_bogus() && !flags.checking_disabled {
                UpstreamError::Bogus
            } else {
                // A negative answer: proven insecure, or bogus and CD=1.
                let soa = response.soa().map(|s| s.to_owned().into_record_of_rdata());
                let nx = response.response_code == ResponseCode::NXDomain;
                return Ok((negative(nx, soa), None));
            }
        }
        _ => UpstreamError::Other,
    };
    tracing::debug!(error = %e, "upstream failed");
    Err(ResolveFailure { kind, ede: None })
}

/// A positive answer that hickory's validator failed on its NSEC proof
/// (`DnsError::Nsec`, with hickory's `proof` of it), with every record and
/// its proof. A bogus proof: hickory rejects a good proof of a wildcard
/// answer, so it is judged again
/// ([`wildcard_proven`](super::wildcard::wildcard_proven)); unless it
/// holds, the data is bogus (SERVFAIL, or for CD=1 the data without AD).
/// A proof hickory found insecure (an NSEC3 iteration count past its soft
/// limit, RFC 9276) leaves the data insecure: served, never with AD.
fn judged(
    qtype: RecordType,
    mut msg: Message,
    proof: hickory_proto::dnssec::Proof,
    flags: Flags,
) -> Result<Answer, ResolveFailure> {
    use hickory_proto::dnssec::Proof;
    let verdict = if !proof.is_bogus() {
        Some(Proof::Insecure)
    } else if super::wildcard::wildcard_proven(&msg.answers, &msg.authorities) == Some(true) {
        None
    } else {
        Some(Proof::Bogus)
    };
    if let Some(verdict) = verdict {
        for r in msg
            .answers
            .iter_mut()
            .filter(|r| r.record_type() != RecordType::RRSIG && !r.proof.is_bogus())
        {
            r.proof = verdict;
        }
    }
    let rcode = msg.metadata.response_code;
    let auth = authority_part(qtype, rcode, &msg.answers, msg.authorities);
    positive(qtype, rcode, msg.answers, auth, flags)
}

/// The forward mode's two ways to the upstreams.
pub struct Forwarder {
    /// hickory's forwarding resolver, which validates; only with
    /// `resolver.dnssec = true`, and used for CD=0 questions.
    validating: Option<HickoryResolver<Outgoing>>,
    /// The question sent as the client asked it (DO and CD as the client
    /// set them, AD asked for) and the answer taken as it comes: every
    /// section, the upstream's AD bit, the RRSIGs for DO, the CNAME chain
    /// of a negative answer. Used when schild does not validate, and for
    /// CD=1 (the client validates, RFC 4035 3.2.2).
    direct: RetryDnsHandle<NameServerPool<Outgoing>>,
    /// hickory's validator over `direct` (with `validating`): a question
    /// `validating` called bogus is asked again through it, as it keeps
    /// the records of a bogus answer ([`Forwarder::recheck`]).
    validator: Option<Validator>,
}

type Validator = DnssecDnsHandle<RetryDnsHandle<NameServerPool<Outgoing>>>;

/// The largest answer asked of an upstream (as Unbound, RFC 9715's 1232).
const UPSTREAM_PAYLOAD: u16 = 1232;

impl Forwarder {
    /// One question through `direct`.
    async fn ask(
        &self,
        name: Name,
        qtype: RecordType,
        flags: Flags,
    ) -> Result<(Answer, Option<Name>), ResolveFailure> {
        let request = question(name, qtype, flags.dnssec_ok, flags.checking_disabled);
        let response = self.direct.send(request).first_answer().await;
        match response {
            Ok(response) => {
                let msg = response.into_message();
                let rcode = msg.metadata.response_code;
                // The upstream's AD is passed on only when schild does not
                // validate itself, and never for CD=1.
                let upstream_ad = msg.metadata.authentic_data
                    && self.validating.is_none()
                    && !flags.checking_disabled;
                let auth = authority_part(qtype, rcode, &msg.answers, msg.authorities);
                let mut answer = positive(qtype, rcode, msg.answers, auth, flags)?;
                answer.secure = upstream_ad && !answer.answers.is_empty();
                Ok((answer, None))
            }
            Err(e) => negative_or_failure(e, qtype, flags),
        }
    }

    /// A question hickory's validating resolver called bogus, asked again
    /// through `validator` (the same validation, with the records kept):
    /// a wildcard answer's proof is judged again ([`judged`]), and a bogus
    /// answer gets the EDE its records show.
    async fn recheck(
        &self,
        name: Name,
        qtype: RecordType,
        flags: Flags,
    ) -> Result<(Answer, Option<Name>), ResolveFailure> {
        let Some(validator) = &self.validator else {
            return Err(ResolveFailure {
                kind: UpstreamError::Bogus,
                ede: None,
            });
        };
        let request = question(name, qtype, true, false);
        match validator.send(request).first_answer().await {
            Ok(response) => {
                let msg = response.into_message();
                let rcode = msg.metadata.response_code;
                let auth = authority_part(qtype, rcode, &msg.answers, msg.authorities);
                Ok((positive(qtype, rcode, msg.answers, auth, flags)?, None))
            }
            Err(e) => negative_or_failure(e, qtype, flags),
        }
    }
}

/// The question as the client asked it (DO and CD as given, AD asked for).
fn question(name: Name, qtype: RecordType, dnssec_ok: bool, cd: bool) -> DnsRequest {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.metadata.checking_disabled = cd;
    // RFC 6840 5.7: AD in a query asks for AD in the answer.
    msg.metadata.authentic_data = true;
    msg.add_query(Query::query(name, qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_PAYLOAD);
    edns.set_dnssec_ok(dnssec_ok);
    msg.set_edns(edns);
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_payload_len = UPSTREAM_PAYLOAD;
    options.edns_set_dnssec_ok = dnssec_ok;
    options.recursion_desired = true;
    DnsRequest::new(msg, options)
}

/// Whether an answer has the data asked for.
fn is_positive(qtype: RecordType, rcode: ResponseCode, answers: &[Record]) -> bool {
    rcode == ResponseCode::NoError
        && answers
            .iter()
            .any(|r| r.record_type() == qtype || qtype == RecordType::ANY)
}

/// The authority section that goes out: with a positive answer only the
/// NSEC and NSEC3 records and their RRSIGs (minimal responses; a wildcard
/// answer needs them, RFC 4035 3.1.3.3, for a validator behind schild),
/// all of it with a negative one (the SOA, and the proofs for DO clients).
/// Without DO, `positive` drops the proofs.
fn authority_part(
    qtype: RecordType,
    rcode: ResponseCode,
    answers: &[Record],
    authorities: Vec<Record>,
) -> Vec<Record> {
    if !is_positive(qtype, rcode, answers) {
        return authorities;
    }
    let proof = |t: RecordType| matches!(t, RecordType::NSEC | RecordType::NSEC3);
    let covered = |r: &Record| match &r.data {
        RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(s)) => {
            proof(s.input().type_covered)
        }
        _ => proof(r.record_type()),
    };
    authorities.into_iter().filter(covered).collect()
}

fn forwarder(config: &ResolverConfig, out: Outgoing) -> Result<Forwarder, ResolverSetupError> {
    let servers: Vec<NameServerConfig> = config
        .upstreams
        .iter()
        .map(|u| match u {
            UpstreamAddr::Plain(addr) => {
                let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
                udp.port = addr.port();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            }
            UpstreamAddr::Tls { addr, name } => {
                let mut tls = ConnectionConfig::tls(Arc::from(name.as_str()));
                tls.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![tls])
            }
        })
        .collect();
    let mut opts = ResolverOpts::default();
    opts.timeout = config.timeout;
    opts.attempts = 2;
    // Our own cache sits in front (with metrics and serve-stale); a second
    // one inside hickory would only double the memory.
    opts.cache_size = 0;
    opts.preserve_intermediates = true;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    opts.max_active_requests = 256;
    opts.edns_payload_len = UPSTREAM_PAYLOAD;
    let anchors = if config.dnssec {
        crate::config::anchors::configured(
            config.trust_anchor_file.as_deref(),
            config.trust_anchors.as_ref(),
        )
        .map_err(|e| ResolverSetupError::Recursor(crate::error::error_chain(&e)))?
    } else {
        None
    };
    let validating = if config.dnssec {
        let mut opts = opts.clone();
        opts.validate = true;
        let hc = HickoryConfig::from_parts(None, vec![], servers.clone());
        let mut builder = HickoryResolver::builder_with_config(hc, out.clone()).with_options(opts);
        if let Some(anchors) = &anchors {
            builder = builder.with_trust_anchor(anchors.clone());
        }
        Some(builder.build().map_err(ResolverSetupError::Forwarder)?)
    } else {
        None
    };
    let attempts = opts.attempts;
    let tls = TlsConfig::new().map_err(ResolverSetupError::Forwarder)?;
    let cx = Arc::new(PoolContext::new(opts, tls));
    let pool = NameServerPool::from_config(servers, cx, out);
    let direct = RetryDnsHandle::new(pool, attempts);
    // None: hickory's built-in root trust anchors, as `validating` has.
    let validator = validating.as_ref().map(|_| match &anchors {
        Some(a) => DnssecDnsHandle::with_trust_anchor(direct.clone(), a.clone()),
        None => DnssecDnsHandle::new(direct.clone()),
    });
    Ok(Forwarder {
        validating,
        direct,
        validator,
    })
}

/// Addresses from a root hints zone file (A and AAAA records).
pub fn read_root_hints(path: &Path) -> Result<Vec<IpAddr>, ResolverSetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| ResolverSetupError::Hints {
        path: path.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("");
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(pos) = words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("A") || w.eq_ignore_ascii_case("AAAA"))
        else {
            continue;
        };
        if let Some(ip) = words.get(pos + 1).and_then(|w| w.parse::<IpAddr>().ok()) {
            out.push(ip);
        }
    }
    if out.is_empty() {
        return Err(ResolverSetupError::EmptyHints {
            path: path.display().to_string(),
        });
    }
    Ok(out)
}

/// The upstream lookups outstanding, oldest first: at most `max` in all
/// and `per_client` for one client address. A new lookup past a cap makes
/// the oldest one (of that client, or in all) give up with
/// [`UpstreamError::Overloaded`], so a dead upstream under a flood of
/// unique names holds bounded memory and descriptors, and the newest
/// questions (the ones clients still wait for) are the ones asked.
struct Admission {
    max: usize,
    per_client: usize,
    inner: Mutex<AdmissionTable>,
}

#[derive(Default)]
struct AdmissionTable {
    next: u64,
    open: std::collections::BTreeMap<u64, (IpAddr, tokio_util::sync::CancellationToken)>,
    per_ip: HashMap<IpAddr, usize>,
}

impl AdmissionTable {
    fn remove(&mut self, id: u64) -> Option<tokio_util::sync::CancellationToken> {
        let (ip, stop) = self.open.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        Some(stop)
    }
}

/// One admitted lookup; dropping it leaves the table.
struct Ticket<'a> {
    admission: &'a Admission,
    id: u64,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.admission
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.id);
    }
}

impl Admission {
    fn admit(&self, client: IpAddr, metrics: &Metrics) -> Ticket<'_> {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if t.per_ip.get(&client).copied().unwrap_or(0) >= self.per_client {
            let oldest = t
                .open
                .iter()
                .find(|(_, (ip, _))| *ip == client)
                .map(|(id, _)| *id);
            if let Some(stop) = oldest.and_then(|id| t.remove(id)) {
                stop.cancel();
                metrics.upstream_overflow.inc();
            }
        }
        while t.open.len() >= self.max {
            let Some(id) = t.open.keys().next().copied() else {
                break;
            };
            if let Some(stop) = t.remove(id) {
                stop.cancel();
                metrics.upstream_overflow.inc();
            }
        }
        let id = t.next;
        t.next += 1;
        let stop = tokio_util::sync::CancellationToken::new();
        t.open.insert(id, (client, stop.clone()));
        *t.per_ip.entry(client).or_insert(0) += 1;
        Ticket {
            admission: self,
            id,
            stop,
        }
    }
}

/// One question, as the cache and the in-flight table know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: LowerName,
    qtype: RecordType,
    flags: Flags,
}

struct Entry {
    answer: Arc<Answer>,
    stored: Instant,
    ttl: u32,
}

/// What one upstream lookup gave, shared with every waiter.
type Outcome = Result<Arc<Answer>, ResolveFailure>;

/// Lookups in flight: the question and where its outcome will appear.
/// The lock is only taken to look up, insert or remove, never across an
/// `.await`.
type Flights = Mutex<HashMap<Key, watch::Receiver<Option<Outcome>>>>;

fn lock(flights: &Flights) -> MutexGuard<'_, HashMap<Key, watch::Receiver<Option<Outcome>>>> {
    // Nothing panics while holding the lock (map operations only); if it
    // ever did, the map is still consistent.
    flights.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first of a set of identical misses: it asks upstream. Dropping it
/// (finished or cancelled) removes the question from the table; waiters of
/// a cancelled lead see the channel close and ask again themselves.
struct Lead<'a> {
    flights: &'a Flights,
    key: &'a Key,
    tx: watch::Sender<Option<Outcome>>,
}

impl Lead<'_> {
    fn finish(self, outcome: &Outcome) {
        self.tx.send_replace(Some(outcome.clone()));
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        // Only the lead inserted this key, and a new lead can only insert
        // after this removal, so the entry is ours.
        lock(self.flights).remove(self.key);
    }
}

enum Role<'a> {
    Lead(Lead<'a>),
    Wait(watch::Receiver<Option<Outcome>>),
}

/// The lead's outcome; `None` if the lead went away without one.
async fn wait_for(mut rx: watch::Receiver<Option<Outcome>>) -> Option<Outcome> {
    loop {
        if let Some(o) = rx.borrow_and_update().as_ref() {
            return Some(o.clone());
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone();
        }
    }
}

/// The upstream plus the answer cache.
pub struct Resolver {
    upstream: Upstream,
    cache: moka::sync::Cache<Key, Arc<Entry>>,
    /// Questions whose resolution failed lately (servfail-ttl); `None`
    /// when `servfail_ttl_secs = 0`.
    failures: Option<moka::sync::Cache<Key, ResolveFailure>>,
    flights: Flights,
    min_ttl: u32,
    max_ttl: u32,
    serve_stale: bool,
    deadline: Duration,
    admission: Admission,
    metrics: Arc<Metrics>,
}

impl Resolver {
    pub fn new(
        config: &ResolverConfig,
        metrics: Arc<Metrics>,
        out: Outgoing,
    ) -> Result<Resolver, ResolverSetupError> {
        Ok(Resolver::with_upstream(
            config,
            Upstream::new(config, out)?,
            metrics,
        ))
    }

    /// The cache and its guards of `config` in front of `upstream`.
    pub fn with_upstream(
        config: &ResolverConfig,
        upstream: Upstream,
        metrics: Arc<Metrics>,
    ) -> Resolver {
        let max_ttl = u32::try_from(config.max_ttl.as_secs()).unwrap_or(u32::MAX);
        let stale = if config.serve_stale {
            config.serve_stale_max
        } else {
            Duration::ZERO
        };
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.cache_entries)
            .time_to_live(config.max_ttl + stale + Duration::from_secs(1))
            .build();
        // One TTL for every entry, so moka's own expiry does the work.
        let failures = (!config.servfail_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(config.cache_entries.min(100_000))
                .time_to_live(config.servfail_ttl)
                .build()
        });
        // The recursor's own per-query timeout is fixed at 5 s; a whole
        // recursion (or a stub zone's referrals) may need several queries.
        let deadline = match &upstream {
            Upstream::Forward(_) => config.timeout * 3,
            Upstream::Recursive(_) | Upstream::Stub(_) => {
                (config.timeout * 4).max(Duration::from_secs(10))
            }
        };
        Resolver {
            upstream,
            cache,
            failures,
            flights: Mutex::new(HashMap::new()),
            min_ttl: u32::try_from(config.min_ttl.as_secs()).unwrap_or(u32::MAX),
            max_ttl,
            serve_stale: config.serve_stale,
            deadline,
            admission: Admission {
                max: config.max_inflight.max(1),
                per_client: config.max_inflight_per_client.max(1),
                inner: Mutex::new(AdmissionTable::default()),
            },
            metrics,
        }
    }

    pub fn mode(&self) -> &'static str {
        self.upstream.mode()
    }

    /// Answers held in the cache (approximate, for the metric).
    pub fn cache_entries(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Empty the answer cache (and the failure memory) for `name` only,
    /// every name at or below it (`subtree`), or everything (`None`).
    /// Returns how many answers were dropped. An admin action: it walks
    /// the cache once.
    pub fn flush(&self, name: Option<&LowerName>, subtree: bool) -> u64 {
        let Some(name) = name else {
            if let Upstream::Stub(stub) = &self.upstream {
                stub.flush();
            }
            self.cache.run_pending_tasks();
            let n = self.cache.entry_count();
            self.cache.invalidate_all();
            if let Some(f) = &self.failures {
                f.invalidate_all();
            }
            self.cache.run_pending_tasks();
            return n;
        };
        let hit = |k: &Key| {
            if subtree {
                name.zone_of(&k.name)
            } else {
                k.name == *name
            }
        };
        let mut n = 0;
        for (k, _) in self.cache.iter() {
            if hit(&k) {
                self.cache.invalidate(&*k);
                n += 1;
            }
        }
        if let Some(f) = &self.failures {
            for (k, _) in f.iter() {
                if hit(&k) {
                    f.invalidate(&*k);
                }
            }
        }
        n
    }

    /// Answer a question from the cache or upstream.
    pub async fn resolve(
        &self,
        name: &LowerName,
        qtype: RecordType,
        flags: Flags,
        client: IpAddr,
    ) -> Result<Resolved, ResolveFailure> {
        let key = Key {
            name: name.clone(),
            qtype,
            flags,
        };
        let cached = self.cache.get(&key);
        if let Some(e) = &cached {
            let age = e.stored.elapsed().as_secs();
            if age < u64::from(e.ttl) {
                self.metrics.cache_hits.inc();
                return Ok(Resolved {
                    answer: e.answer.clone(),
                    age: age as u32,
                    stale: false,
                    internal: false,
                });
            }
        }
        // Like BIND, CD=1 skips the failure memory: a name that just
        // failed validation can be fetched unchecked at once.
        if !flags.checking_disabled
            && let Some(failure) = self.failures.as_ref().and_then(|f| f.get(&key))
        {
            self.metrics.cache_servfail.inc();
            return self.failed(failure, cached);
        }
        self.metrics.cache_misses.inc();
        match self.fetch_shared(&key, client.to_canonical()).await {
            Ok(answer) => Ok(Resolved {
                answer,
                age: 0,
                stale: false,
                internal: false,
            }),
            Err(failure) => self.failed(failure, cached),
        }
    }

    /// No answer from upstream: a stale one if there is one, else the failure.
    fn failed(
        &self,
        failure: ResolveFailure,
        cached: Option<Arc<Entry>>,
    ) -> Result<Resolved, ResolveFailure> {
        // A bogus answer must never be replaced by an older one.
        if self.serve_stale
            && failure.kind != UpstreamError::Bogus
            && let Some(e) = cached
        {
            self.metrics.cache_stale.inc();
            return Ok(Resolved {
                answer: e.answer.clone(),
                age: 0,
                stale: true,
                internal: false,
            });
        }
        Err(failure)
    }

    /// Join the lookup already in flight for this question, or lead one.
    async fn fetch_shared(&self, key: &Key, client: IpAddr) -> Outcome {
        loop {
            let role = {
                let mut flights = lock(&self.flights);
                match flights.get(key) {
                    Some(rx) => Role::Wait(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        flights.insert(key.clone(), rx);
                        Role::Lead(Lead {
                            flights: &self.flights,
                            key,
                            tx,
                        })
                    }
                }
            };
            match role {
                Role::Lead(lead) => {
                    let outcome = self.fetch(key, client).await;
                    lead.finish(&outcome);
                    return outcome;
                }
                Role::Wait(rx) => {
                    // The lead gives up at `deadline`; this bound only
                    // matters if something went wrong with it.
                    let waited =
                        tokio::time::timeout(self.deadline + Duration::from_secs(1), wait_for(rx))
                            .await;
                    match waited {
                        Ok(Some(outcome)) => {
                            self.metrics.upstream_coalesced.inc();
                            return outcome;
                        }
                        // The lead was cancelled: ask again.
                        Ok(None) => continue,
                        Err(_) => {
                            return Err(ResolveFailure {
                                kind: UpstreamError::Timeout,
                                ede: None,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Ask upstream and remember the outcome: the answer in the cache, a
    /// failure for `servfail_ttl`.
    async fn fetch(&self, key: &Key, client: IpAddr) -> Outcome {
        let started = Instant::now();
        let ticket = self.admission.admit(client, &self.metrics);
        let lookup = tokio::time::timeout(
            self.deadline,
            self.upstream
                .lookup(Name::from(&key.name), key.qtype, key.flags),
        );
        let result = tokio::select! {
            r = lookup => match r {
                Ok(r) => r,
                Err(_) => Err(ResolveFailure {
                    kind: UpstreamError::Timeout,
                    ede: None,
                }),
            },
            // Made room for a newer lookup: not the name's fault, so
            // neither counted as an upstream error nor remembered.
            _ = ticket.stop.cancelled() => {
                return Err(ResolveFailure {
                    kind: UpstreamError::Overloaded,
                    ede: None,
                });
            }
        };
        drop(ticket);
        self.metrics
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(answer) => {
                let answer = Arc::new(self.bound_ttls(answer));
                let ttl = answer_ttl(&answer);
                if ttl > 0 {
                    self.cache.insert(
                        key.clone(),
                        Arc::new(Entry {
                            answer: answer.clone(),
                            stored: Instant::now(),
                            ttl,
                        }),
                    );
                }
                Ok(answer)
            }
            Err(failure) => {
                self.metrics.upstream_error(failure.kind);
                // CD=1 never reads the failure memory, so it need not write it.
                if !key.flags.checking_disabled
                    && let Some(f) = &self.failures
                {
                    f.insert(key.clone(), failure);
                }
                Err(failure)
            }
        }
    }

    /// Apply the configured TTL bounds to every record.
    fn bound_ttls(&self, mut a: Answer) -> Answer {
        let (lo, hi) = (self.min_ttl, self.max_ttl);
        for r in a.answers.iter_mut().chain(a.authorities.iter_mut()) {
            r.ttl = r.ttl.clamp(lo, hi);
            if let RData::SOA(soa) = &mut r.data {
                // The negative-caching TTL is min(SOA TTL, SOA minimum).
                soa.minimum = soa.minimum.clamp(lo, hi);
            }
        }
        a
    }
}

/// How long an answer may be cached.
fn answer_ttl(a: &Answer) -> u32 {
    if a.rcode != ResponseCode::NoError && a.rcode != ResponseCode::NXDomain {
        return 0;
    }
    if !a.answers.is_empty() && a.rcode == ResponseCode::NoError {
        return a.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
    }
    // Negative (or a CNAME chain ending in NXDOMAIN): RFC 2308.
    let neg = a
        .authorities
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })
        .unwrap_or(0);
    a.answers.iter().map(|r| r.ttl).fold(neg, u32::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            name: LowerName::from(Name::from_ascii(name).expect("name")),
            qtype: RecordType::A,
            flags: Flags::default(),
        }
    }

    fn lead<'a>(flights: &'a Flights, key: &'a Key) -> Lead<'a> {
        let (tx, rx) = watch::channel(None);
        lock(flights).insert(key.clone(), rx);
        Lead { flights, key, tx }
    }

    #[tokio::test]
    async fn waiters_get_the_outcome_and_the_table_empties() {
        let flights = Flights::default();
        let k = key("a.example.");
        let l = lead(&flights, &k);
        let early = lock(&flights).get(&k).cloned().expect("in flight");
        let waiter = tokio::spawn(wait_for(early));
        let failure = ResolveFailure {
            kind: UpstreamError::ServFail,
            ede: None,
        };
        l.finish(&Err(failure));
        assert!(lock(&flights).is_empty(), "finished leads leave the table");
        let got = waiter.await.expect("task");
        assert_eq!(got.map(|o| o.err()), Some(Some(failure)));
    }

    #[tokio::test]
    async fn a_cancelled_lead_releases_its_waiters() {
        let flights = Flights::default();
        let k = key("b.example.");
        let l = lead(&flights, &k);
        let rx = lock(&flights).get(&k).cloned().expect("in flight");
        let waiter = tokio::spawn(wait_for(rx));
        drop(l);
        assert!(lock(&flights).is_empty());
        // `None`: the waiter asks again instead of hanging.
        assert!(waiter.await.expect("task").is_none());
    }

    #[test]
    fn cd_keeps_bogus_data_and_clears_secure() {
        use hickory_proto::dnssec::Proof;
        use hickory_proto::rr::rdata::A;
        let mut r = Record::from_rdata(
            Name::from_ascii("x.example.").expect("name"),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        );
        r.proof = Proof::Bogus;
        let checked = Flags::default();
        let cd = Flags {
            checking_disabled: true,
            ..checked
        };
        let e = positive(
            RecordType::A,
            ResponseCode::NoError,
            vec![r.clone()],
            vec![],
            checked,
        )
        .expect_err("bogus without CD");
        assert_eq!(e.kind, UpstreamError::Bogus);
        let a = positive(RecordType::A, ResponseCode::NoError, vec![r], vec![], cd)
            .expect("data with CD");
        assert_eq!(a.answers.len(), 1);
        assert!(!a.secure);
    }

    fn cname(owner: &str, target: &str) -> Record {
        use hickory_proto::rr::rdata::CNAME;
        let n = |s: &str| Name::from_ascii(s).expect("name");
        Record::from_rdata(n(owner), 300, RData::CNAME(CNAME(n(target))))
    }

    #[test]
    fn cname_loops_are_found() {
        let q = Name::from_ascii("Loop1.example.").expect("name");
        let looped = [
            cname("loop1.example.", "loop2.example."),
            cname("loop2.example.", "LOOP1.example."),
        ];
        assert!(cname_loop(&looped, &q));
        let selfish = [cname("loop1.example.", "loop1.example.")];
        assert!(cname_loop(&selfish, &q));
        let chain = [
            cname("loop1.example.", "loop2.example."),
            cname("loop2.example.", "www.example."),
        ];
        assert!(!cname_loop(&chain, &q));
        assert!(!cname_loop(&[], &q));
    }

    #[test]
    fn negative_answers_keep_their_authority_and_positive_ones_only_proofs() {
        use hickory_proto::rr::rdata::A;
        let n = Name::from_ascii("www.example.").expect("name");
        let a = Record::from_rdata(n.clone(), 60, RData::A(A::new(192, 0, 2, 1)));
        let soa = policy_like_soa();
        let chain = [cname("alias.example.", "www.example.")];
        let nx = ResponseCode::NXDomain;
        let ok = ResponseCode::NoError;
        assert!(
            authority_part(
                RecordType::A,
                ok,
                std::slice::from_ref(&a),
                vec![soa.clone()]
            )
            .is_empty()
        );
        // A positive answer keeps its NSEC proof (a wildcard's, RFC 4035
        // 3.1.3.3), and only that.
        let nsec = Record::from_rdata(
            Name::from_ascii("*.example.").expect("name"),
            60,
            RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::NSEC(
                hickory_proto::dnssec::rdata::NSEC::new(n.clone(), [RecordType::A]),
            )),
        );
        let kept = authority_part(RecordType::A, ok, &[a], vec![soa.clone(), nsec]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].record_type(), RecordType::NSEC);
        // NODATA after a chain, and NXDOMAIN after one: the SOA stays.
        assert_eq!(
            authority_part(RecordType::TXT, ok, &chain, vec![soa.clone()]).len(),
            1
        );
        assert_eq!(
            authority_part(RecordType::A, nx, &chain, vec![soa]).len(),
            1
        );
    }

    #[test]
    fn an_nsec_failure_is_secure_only_with_a_proven_wildcard() {
        use hickory_proto::dnssec::Proof;
        use hickory_proto::rr::rdata::A;
        let n = Name::from_ascii("x.wild.example.").expect("name");
        let mut a = Record::from_rdata(n, 60, RData::A(A::new(192, 0, 2, 1)));
        a.proof = Proof::Secure;
        let mut msg = Message::query();
        msg.add_answer(a);
        let (plain, cd) = (
            Flags::default(),
            Flags {
                dnssec_ok: true,
                checking_disabled: true,
            },
        );
        let qt = RecordType::A;
        // No wildcard proof to judge: bogus, and for CD=1 data without AD.
        let bogus = judged(qt, msg.clone(), Proof::Bogus, plain).expect_err("bogus");
        assert_eq!(bogus.kind, UpstreamError::Bogus);
        let with_cd = judged(qt, msg.clone(), Proof::Bogus, cd).expect("CD=1 gets the data");
        assert!(!with_cd.secure && with_cd.answers.len() == 1);
        // An insecure proof: the data, never AD.
        let insecure = judged(qt, msg, Proof::Insecure, plain).expect("insecure data");
        assert!(!insecure.secure && insecure.answers.len() == 1);
    }

    fn policy_like_soa() -> Record {
        use hickory_proto::rr::rdata::SOA;
        let n = |s: &str| Name::from_ascii(s).expect("name");
        Record::from_rdata(
            n("example."),
            300,
            RData::SOA(SOA::new(n("ns.example."), n("h.example."), 1, 1, 1, 1, 60)),
        )
    }

    #[test]
    fn a_synthesised_cname_gets_the_dname_ttl() {
        let n = |s: &str| Name::from_ascii(s).expect("name");
        let dname = Record::from_rdata(
            n("dn.example."),
            300,
            RData::Unknown {
                code: RecordType::DNAME,
                rdata: hickory_proto::rr::rdata::NULL::with(b"\x01x\x03alt\x00".to_vec()),
            },
        );
        let mut synthesised = cname("www.dn.example.", "www.x.alt.");
        synthesised.ttl = 0;
        let mut other = cname("else.example.", "www.x.alt.");
        other.ttl = 5;
        let out = synthesised_ttls(vec![dname, synthesised, other]);
        assert_eq!(out.iter().map(|r| r.ttl).collect::<Vec<_>>(), [300, 300, 5]);
    }

    #[test]
    fn only_proofs_and_signatures_need_do() {
        use RecordType::*;
        for t in [DS, DNSKEY, NSEC3PARAM, A, CNAME] {
            assert!(keep_without_do(t, A), "{t} is data");
        }
        for t in [RRSIG, NSEC, NSEC3] {
            assert!(!keep_without_do(t, A), "{t} needs DO");
            assert!(keep_without_do(t, t), "{t} asked for by type");
        }
    }

    #[test]
    fn root_hints_give_addresses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("named.root");
        std::fs::write(
            &p,
            "; comment\n.  3600000  NS  A.ROOT-SERVERS.NET.\nA.ROOT-SERVERS.NET. 3600000 A 198.41.0.4\nA.ROOT-SERVERS.NET. 3600000 AAAA 2001:503:ba3e::2:30\n",
        )
        .expect("write");
        let ips = read_root_hints(&p).expect("hints");
        assert_eq!(ips.len(), 2);
        std::fs::write(&p, "; nothing\n").expect("write");
        assert!(read_root_hints(&p).is_err());
    }

    #[test]
    fn shipped_root_hints_match_hickory() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/named.root");
        let mut ips = read_root_hints(&p).expect("zones/named.root");
        let mut builtin = hickory_proto::ROOTS.to_vec();
        ips.sort();
        builtin.sort();
        assert_eq!(ips, builtin);
    }
}
