//! Zone routing: which way each question is answered.
//!
//! The table ([`crate::zones::Zones`], pure) decides; this module acts on
//! the decision. A local answer (a `[local]` record, a default local zone)
//! is built here and nothing is sent anywhere. A forward zone's questions
//! go to its own [`Resolver`] (the same forwarder as forward mode, with
//! its own upstreams, its own DNSSEC setting and its own cache); a stub
//! zone's to a non-validating forwarder of its authoritative servers.
//! Everything else goes to the global resolver (`resolver.mode`).
//!
//! A forward zone with `first = false` whose upstreams all fail answers
//! SERVFAIL (the handler adds EDE 22): its names never go to the
//! internet. With `first = true` the question is asked of the global
//! route instead (Unbound's forward-first).
//!
//! The handler applies the IOC policy to whatever comes out of here, so
//! every route is filtered alike.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use prometheus::{IntCounter, IntCounterVec, Opts};

use super::metrics::{Metrics, UpstreamError};
use super::outgoing::Outgoing;
use super::resolve::{
    Answer, Flags, ResolveFailure, Resolved, Resolver, ResolverSetupError, Upstream,
};
use super::stub::Stub;
use crate::config::anchors::ResolvedAnchors;
use crate::config::{Config, ResolverConfig, ResolverMode, Upstream as UpstreamAddr};
use crate::zones::{Decision, Way, Zones};

/// One forward or stub zone's resolver.
struct ZoneResolver {
    resolver: Resolver,
    /// Fall back to the global route when it fails (forward zones only).
    first: bool,
    /// `schild_route_queries_total{route="<zone name>"}`.
    queries: IntCounter,
}

/// The routes of one configuration.
pub struct Routes {
    zones: Zones,
    forward: Vec<ZoneResolver>,
    stub: Vec<ZoneResolver>,
    local_queries: IntCounter,
    global_queries: IntCounter,
    counters: IntCounterVec,
}

/// An answer and how it was obtained.
pub struct Routed {
    pub resolved: Resolved,
    /// Served from local data: AA is set, as Unbound sets it.
    pub authoritative: bool,
    /// The route's query counter (counted again when the packet cache
    /// replays the answer).
    pub counter: IntCounter,
}

/// Why a routed question has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteFailure {
    pub kind: UpstreamError,
    /// A forward or stub zone's servers all failed (and no fallback):
    /// EDE 22, No Reachable Authority.
    pub zone: bool,
    /// A more specific Extended DNS Error than the kind's (RFC 8914).
    pub ede: Option<(u16, &'static str)>,
}

/// The share of `resolver.max_inflight` each forward or stub zone gets:
/// together they take at most half, so the caps the open-file budget
/// was sized for still hold. Returns the per-zone cap and lowers the
/// global one by what the zones took.
pub fn share_inflight(resolver: &mut ResolverConfig, zones: usize) -> usize {
    if zones == 0 {
        return 0;
    }
    let each = (resolver.max_inflight / (2 * zones)).max(1);
    resolver.max_inflight = resolver.max_inflight.saturating_sub(each * zones).max(1);
    resolver.max_inflight_per_client = resolver.max_inflight_per_client.min(resolver.max_inflight);
    each
}

/// A forward zone with `dnssec = false` and every stub zone are added to
/// the recursor's `domain_insecure` (when it validates): a forward-first
/// zone whose servers failed is resolved by the recursor without
/// validation too, as Unbound does with `domain-insecure` for the zone.
fn insecure_zones(config: &Config, domain_insecure: &mut Vec<String>) {
    if config.resolver.mode != ResolverMode::Recursive || !config.resolver.dnssec {
        return;
    }
    let z = &config.zones;
    let names = z
        .forward
        .iter()
        .filter(|f| !f.dnssec)
        .map(|f| &f.name)
        .chain(z.stub.iter().map(|s| &s.name))
        // A zone for the root covers everything: no exemption there.
        .filter(|n| !n.is_root());
    for name in names {
        let name = name.to_ascii().to_ascii_lowercase();
        if !domain_insecure.contains(&name) {
            domain_insecure.push(name);
        }
    }
}

/// The global resolver and the routes of `config`: the forward and stub
/// zones take their share of `resolver.max_inflight` ([`share_inflight`])
/// from the global one. `counters` are the route metric's, registered
/// once ([`register`]) and kept across configuration reloads. Every
/// upstream exchange goes through `out` (which logs them to dnstap with
/// `resolver_queries`), named by its zone: the forward or stub zone's, `.`
/// for the global forwarder, none in recursion.
pub fn build(
    config: &Config,
    anchors: Option<&ResolvedAnchors>,
    metrics: Arc<Metrics>,
    counters: IntCounterVec,
    out: &Outgoing,
) -> Result<(Resolver, Routes), ResolverSetupError> {
    let ways = config.zones.forward.len() + config.zones.stub.len();
    let mut global = config.resolver.clone();
    global.trust_anchors = anchors.cloned();
    insecure_zones(config, &mut global.domain_insecure);
    let each = share_inflight(&mut global, ways);
    let routes = Routes::new(config, anchors, each, metrics.clone(), counters, out)?;
    let zone = match global.mode {
        ResolverMode::Forward => Some(Name::root()),
        ResolverMode::Recursive => None,
    };
    let resolver = Resolver::new(&global, metrics, out.for_zone(zone.as_ref()))?;
    Ok((resolver, routes))
}

impl Routes {
    /// Build every zone's resolver. `zone_inflight` is the per-zone cap
    /// from [`share_inflight`].
    fn new(
        config: &Config,
        anchors: Option<&ResolvedAnchors>,
        zone_inflight: usize,
        metrics: Arc<Metrics>,
        counters: IntCounterVec,
        out: &Outgoing,
    ) -> Result<Routes, ResolverSetupError> {
        let z = &config.zones;
        let global_label = match config.resolver.mode {
            ResolverMode::Forward => "forward",
            ResolverMode::Recursive => "recursive",
        };
        let base = |upstreams: Vec<UpstreamAddr>, dnssec: bool| {
            let mut c = config.resolver.clone();
            c.trust_anchors = anchors.cloned();
            c.mode = ResolverMode::Forward;
            c.upstreams = upstreams;
            c.dnssec = dnssec;
            c.max_inflight = zone_inflight.max(1);
            c.max_inflight_per_client = c.max_inflight_per_client.min(c.max_inflight);
            // A zone holds a few names: a tenth of the main cache.
            c.cache_entries = (c.cache_entries / 10).max(1000);
            c
        };
        let mut forward = Vec::with_capacity(z.forward.len());
        for f in &z.forward {
            // With dnssec = false nothing at or below the zone is
            // validated: its forwarder passes answers through as given.
            let c = base(f.upstreams.clone(), f.dnssec);
            forward.push(ZoneResolver {
                resolver: Resolver::new(&c, metrics.clone(), out.for_zone(Some(&f.name)))?,
                first: f.first,
                queries: counters.with_label_values(&[&f.name.to_ascii()]),
            });
        }
        let mut stub = Vec::with_capacity(z.stub.len());
        for s in &z.stub {
            // Iterative, from the stub servers, never validated (as if in
            // domain_insecure: super::stub).
            let c = base(Vec::new(), false);
            let iterative = Stub::new(
                s.name.clone(),
                s.servers.clone(),
                config.resolver.recursion_port.unwrap_or(53),
                config.resolver.timeout,
                out.for_zone(Some(&s.name)),
            );
            stub.push(ZoneResolver {
                resolver: Resolver::with_upstream(
                    &c,
                    Upstream::Stub(Box::new(iterative)),
                    metrics.clone(),
                ),
                first: false,
                queries: counters.with_label_values(&[&s.name.to_ascii()]),
            });
        }
        Ok(Routes {
            zones: z.table(),
            forward,
            stub,
            local_queries: counters.with_label_values(&["local"]),
            global_queries: counters.with_label_values(&[global_label]),
            counters,
        })
    }

    /// The route metric, for the next [`build`].
    pub fn counters(&self) -> IntCounterVec {
        self.counters.clone()
    }

    fn way(&self, way: Way) -> Option<&ZoneResolver> {
        match way {
            Way::Forward(i) => self.forward.get(i),
            Way::Stub(i) => self.stub.get(i),
        }
    }

    /// Answer one question by its route.
    pub async fn resolve(
        &self,
        global: &Resolver,
        name: &LowerName,
        qtype: RecordType,
        flags: Flags,
        client: IpAddr,
    ) -> Result<Routed, RouteFailure> {
        let ask = Ask {
            global,
            qtype,
            flags,
            client,
        };
        let mut routed = self.resolve_once(&ask, name).await?;
        // A stub zone's servers answer for what they serve: a CNAME to a
        // name outside it is followed here, by the target's own route.
        // (The other routes' resolvers follow chains themselves.)
        let mut asked = name.clone();
        let mut last = routed.resolved.clone();
        for _ in 0..MAX_STUB_CNAMES {
            if !self.stub_route(&asked, qtype) {
                break;
            }
            let Some(target) = dangling_cname(&last.answer, &asked, qtype) else {
                break;
            };
            asked = LowerName::new(&target);
            let next = self.resolve_once(&ask, &asked).await?;
            routed = Routed {
                resolved: joined(&routed.resolved, &next.resolved),
                authoritative: false,
                counter: routed.counter.clone(),
            };
            last = next.resolved;
        }
        Ok(routed)
    }

    /// [`Routes::resolve`] of `name` without following a stub zone's
    /// CNAMEs.
    async fn resolve_once(&self, ask: &Ask<'_>, name: &LowerName) -> Result<Routed, RouteFailure> {
        let Ask {
            global,
            qtype,
            flags,
            client,
        } = *ask;
        let from_global = |r: Result<Resolved, ResolveFailure>, counter: &IntCounter| {
            r.map(|resolved| Routed {
                resolved,
                authoritative: false,
                counter: counter.clone(),
            })
            .map_err(|f| RouteFailure {
                kind: f.kind,
                zone: false,
                ede: f.ede,
            })
        };
        match self.zones.decide(name, qtype) {
            Decision::Local(a) => {
                self.local_queries.inc();
                Ok(Routed {
                    resolved: Resolved {
                        answer: Arc::new(Answer {
                            rcode: a.rcode,
                            answers: a.answers,
                            authorities: a.authorities,
                            secure: false,
                        }),
                        age: 0,
                        stale: false,
                        // Local data: exempt from rebind protection.
                        internal: true,
                    },
                    authoritative: true,
                    counter: self.local_queries.clone(),
                })
            }
            Decision::Global => {
                self.global_queries.inc();
                from_global(
                    global.resolve(name, qtype, flags, client).await,
                    &self.global_queries,
                )
            }
            Decision::Zone(way) => {
                let Some(zone) = self.way(way) else {
                    self.global_queries.inc();
                    return from_global(
                        global.resolve(name, qtype, flags, client).await,
                        &self.global_queries,
                    );
                };
                zone.queries.inc();
                match zone.resolver.resolve(name, qtype, flags, client).await {
                    // The hospital's own servers: exempt from rebind
                    // protection (their private addresses are the point).
                    Ok(resolved) => Ok(Routed {
                        resolved: Resolved {
                            internal: true,
                            ..resolved
                        },
                        authoritative: false,
                        counter: zone.queries.clone(),
                    }),
                    // A bogus answer is an answer (validation failed), and
                    // a lookup shed at the cap says nothing about the
                    // forwarders: neither falls back.
                    Err(f)
                        if zone.first
                            && !matches!(
                                f.kind,
                                UpstreamError::Bogus | UpstreamError::Overloaded
                            ) =>
                    {
                        tracing::debug!(%name, "forward zone failed: forward-first falls back");
                        from_global(
                            global.resolve(name, qtype, flags, client).await,
                            &zone.queries,
                        )
                    }
                    Err(f) => Err(RouteFailure {
                        kind: f.kind,
                        zone: !matches!(f.kind, UpstreamError::Bogus | UpstreamError::Overloaded),
                        ede: f.ede,
                    }),
                }
            }
        }
    }

    /// Whether `name` takes a stub zone's route.
    fn stub_route(&self, name: &LowerName, qtype: RecordType) -> bool {
        matches!(self.zones.decide(name, qtype), Decision::Zone(Way::Stub(_)))
    }

    /// Empty every zone's cache too (see [`Resolver::flush`]).
    pub fn flush(&self, name: Option<&LowerName>, subtree: bool) -> u64 {
        self.forward
            .iter()
            .chain(self.stub.iter())
            .map(|z| z.resolver.flush(name, subtree))
            .sum()
    }

    /// Answers held in the zones' caches.
    pub fn cache_entries(&self) -> u64 {
        self.forward
            .iter()
            .chain(self.stub.iter())
            .map(|z| z.resolver.cache_entries())
            .sum()
    }
}

/// What stays the same along a CNAME chain: where to ask, how, for whom.
struct Ask<'a> {
    global: &'a Resolver,
    qtype: RecordType,
    flags: Flags,
    client: IpAddr,
}

/// CNAMEs to a name outside a stub zone followed for one question (as
/// [`super::resolve`]'s chains: Unbound restarts at most 11 times).
const MAX_STUB_CNAMES: usize = 8;

/// The target of the CNAME chain of `answer`, asked as `name`, when the
/// chain ends without data for `qtype` and without a negative answer: a
/// stub zone's server stops at the edge of what it serves.
fn dangling_cname(answer: &Answer, name: &LowerName, qtype: RecordType) -> Option<Name> {
    if matches!(qtype, RecordType::CNAME | RecordType::ANY)
        || answer.rcode != ResponseCode::NoError
        || !answer
            .authorities
            .iter()
            .all(|r| r.record_type() != RecordType::SOA)
    {
        return None;
    }
    let mut at = Name::from(name);
    let mut steps = 0;
    while let Some(next) = answer.answers.iter().find_map(|r| match &r.data {
        RData::CNAME(c) if r.name == at => Some(c.0.clone()),
        _ => None,
    }) {
        at = next;
        steps += 1;
        if steps > answer.answers.len() {
            return None;
        }
    }
    let answered = answer
        .answers
        .iter()
        .any(|r| r.name == at && r.record_type() == qtype);
    (steps > 0 && !answered).then_some(at)
}

/// A chain's first part and the answer for its target: the records of
/// both with the TTLs each had left, the target's rcode and authority.
fn joined(first: &Resolved, target: &Resolved) -> Resolved {
    let aged = |part: &Resolved, records: &[Record]| -> Vec<Record> {
        records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.ttl = part.ttl(r.ttl);
                r
            })
            .collect()
    };
    let mut answers = aged(first, &first.answer.answers);
    answers.extend(aged(target, &target.answer.answers));
    Resolved {
        answer: Arc::new(Answer {
            rcode: target.answer.rcode,
            answers,
            authorities: aged(target, &target.answer.authorities),
            secure: false,
        }),
        age: 0,
        stale: false,
        // Exempt from rebind protection only if the data came from an
        // internal route too.
        internal: target.internal,
    }
}

/// `schild_route_queries_total{route}`, registered once per process.
pub fn register(r: &prometheus::Registry) -> IntCounterVec {
    // A literal name and label: this cannot fail (the unit test below).
    let v = IntCounterVec::new(
        Opts::new(
            "schild_route_queries_total",
            "Questions by the route that answered them: a forward or stub zone by its name, local, or the global mode",
        ),
        &["route"],
    )
    .unwrap_or_else(|_| unreachable_metric());
    if let Err(e) = r.register(Box::new(v.clone())) {
        tracing::error!(error = %e, "metric not registered");
    }
    v
}

#[cold]
fn unreachable_metric() -> IntCounterVec {
    // Only reached if prometheus changes what a valid name is.
    tracing::error!("schild_route_queries_total could not be created");
    IntCounterVec::new(Opts::new("schild_route_queries_fallback", "-"), &["route"])
        .unwrap_or_else(|_| std::process::abort())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_is_valid() {
        let r = prometheus::Registry::new();
        let v = register(&r);
        v.with_label_values(&["corp.hospital.test."]).inc();
        assert_eq!(r.gather().len(), 1);
    }

    #[test]
    fn private_zones_are_insecure_for_a_validating_recursor() {
        let text = "state_dir = \"s\"\n[resolver]\nmode = \"recursive\"\ndomain_insecure = [\"corp.test\"]\n\
                    [[forward_zone]]\nname = \"Corp.Test\"\nupstreams = [\"192.0.2.1\"]\ndnssec = false\n\
                    [[forward_zone]]\nname = \"signed.test\"\nupstreams = [\"192.0.2.1\"]\n\
                    [[stub_zone]]\nname = \"lab.test\"\nservers = [\"192.0.2.2\"]\n";
        let c = Config::parse(text, std::path::Path::new("/x/s.toml")).expect("config");
        let mut list = c.resolver.domain_insecure.clone();
        insecure_zones(&c, &mut list);
        assert_eq!(list, ["corp.test.", "lab.test."]);
        // Not validating: nothing to exempt.
        let c = Config::parse(
            &text.replace("[resolver]\n", "[resolver]\ndnssec = false\n"),
            std::path::Path::new("/x/s.toml"),
        )
        .expect("config");
        let mut list = Vec::new();
        insecure_zones(&c, &mut list);
        assert!(list.is_empty());
    }

    #[test]
    fn inflight_is_shared() {
        let mut c = Config::parse("state_dir = \"s\"\n", std::path::Path::new("/x/s.toml"))
            .expect("config")
            .resolver;
        c.max_inflight = 1000;
        let each = share_inflight(&mut c, 4);
        assert_eq!(each, 125);
        assert_eq!(c.max_inflight, 500);
        assert_eq!(share_inflight(&mut c, 0), 0);
    }
}
