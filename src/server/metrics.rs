//! Every `schild_*` metric, created once at start-up.
//!
//! The query path only increments handles it already holds: no registry
//! lookup, no label formatting, no allocation. Label values come from fixed
//! sets (transport, a fixed list of query types plus "other", rcodes, action
//! names) or from the configuration (feed names); never from a query name or
//! a client address, so a hostile client cannot grow the metric set.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::policy::{Action, FetchStatus, Policy};

/// Transports, in the order of [`Transport`].
const TRANSPORTS: [&str; 3] = ["udp", "tcp", "tls"];

/// How a query reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp = 0,
    Tcp = 1,
    Tls = 2,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        TRANSPORTS[self as usize]
    }
}

/// Query types with their own label value; everything else is "other".
const QTYPES: [RecordType; 18] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
    RecordType::PTR,
    RecordType::SRV,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::DS,
    RecordType::DNSKEY,
    RecordType::CAA,
    RecordType::NAPTR,
    RecordType::ANY,
    RecordType::AXFR,
    RecordType::IXFR,
];

fn qtype_index(t: RecordType) -> usize {
    QTYPES.iter().position(|q| *q == t).unwrap_or(QTYPES.len())
}

/// Response codes with their own label value, then "other" and "dropped".
const RCODES: [&str; 9] = [
    "noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "badvers", "other",
    "dropped",
];

fn rcode_index(r: ResponseCode) -> usize {
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

/// Kinds of upstream failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Timeout = 0,
    ServFail = 1,
    Refused = 2,
    Bogus = 3,
    Other = 4,
    /// Dropped to make room at `resolver.max_inflight`.
    Overloaded = 5,
}

const UPSTREAM_ERRORS: [&str; 6] = [
    "timeout",
    "servfail",
    "refused",
    "dnssec-bogus",
    "other",
    "overloaded",
];

/// All metrics. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// [transport][qtype index]
    queries: Vec<Vec<IntCounter>>,
    responses: Vec<IntCounter>,
    pub acl_refused: IntCounter,
    /// [feed index in the config, or the last slot for unknown][action]
    blocked: Vec<Vec<IntCounter>>,
    feed_names: Vec<String>,
    pub allowlist_overrides: IntCounter,
    pub cache_hits: IntCounter,
    /// The part of `cache_hits` replayed whole from the packet cache.
    pub packet_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_stale: IntCounter,
    pub cache_servfail: IntCounter,
    pub upstream_coalesced: IntCounter,
    pub upstream_overflow: IntCounter,
    pub cache_entries: IntGauge,
    pub upstream_duration: Histogram,
    upstream_errors: Vec<IntCounter>,
    pub hits_dropped: IntCounter,
    pub tcp_connections: IntGauge,
    pub tcp_rejected: IntCounter,
    pub tcp_evicted: IntCounter,
    pub tcp_timeouts: IntCounter,
    policy_entries: IntGaugeVec,
    pub policy_loaded: IntGauge,
    pub policy_serial: IntGauge,
    policy_compiled_at: Gauge,
    policy_age: Gauge,
    feed_last_success: GaugeVec,
    feed_failures: IntCounterVec,
    pub refresh_failures: IntCounter,
    /// SIGHUP re-reads of the configuration file that were refused.
    pub config_reload_failures: IntCounter,
    pub reloads: IntCounter,
    pub reload_requests: IntCounter,
    pub reload_coalesced: IntCounter,
    pub admin_connections_evicted: IntCounter,
    /// `schild_ratelimited_total{action}`: [drop, slip].
    ratelimited: [IntCounter; 2],
    /// `schild_guard_protected_refusals{feed}`: IOCs refused as protected
    /// clinical names in the loaded list.
    guard_protected: IntGaugeVec,
    /// `schild_guard_held_new_blocks`: names a held update would newly
    /// block (0: nothing held).
    pub guard_held: IntGauge,
    /// `schild_compile_peak_rss_bytes`: the last compile process's peak.
    pub compile_peak_rss: IntGauge,
    /// `schild_guard_quarantined`: names in quarantine now
    /// (`guard.on_popular = "quarantine"`): resolving, recorded only.
    pub guard_quarantined: IntGauge,
    /// `schild_retro_hits_total{feed}`: new IOCs found in the name history.
    retro_hits: IntCounterVec,
    /// `schild_guard_popular_blocks_total{feed}`: newly listed names that
    /// were popular here (`guard.popular_*`).
    popular_blocks: IntCounterVec,
    /// `schild_history_dropped_total`: answered names the history did not
    /// record (queue full, or today's table at `max_names_per_day`).
    pub history_dropped: IntCounter,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    // Names are fixed and distinct, so registering can only fail on a
    // programming error; a missing metric must not stop the resolver.
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "metric not registered");
    }
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        r,
        IntCounter::with_opts(Opts::new(name, help)).expect(LITERAL),
    )
}

/// Metric constructors fail only for invalid names or label sets; ours are
/// literals, checked by the unit test below.
const LITERAL: &str = "metric names and labels are valid literals";

impl Metrics {
    /// Create and register every metric. `feeds` are the configured feed
    /// names: the only feed label values there will ever be (plus "unknown").
    pub fn new(feeds: &[String]) -> Metrics {
        let r = Registry::new();
        let build = register(
            &r,
            IntGaugeVec::new(
                Opts::new("schild_build_info", "Build information; always 1."),
                &["version"],
            )
            .expect(LITERAL),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

        let queries_vec = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "schild_queries_total",
                    "DNS queries received, by transport and query type.",
                ),
                &["transport", "qtype"],
            )
            .expect(LITERAL),
        );
        let queries = TRANSPORTS
            .iter()
            .map(|t| {
                QTYPES
                    .iter()
                    .map(|q| q.to_string())
                    .chain(std::iter::once("other".to_string()))
                    .map(|q| queries_vec.with_label_values(&[*t, q.as_str()]))
                    .collect()
            })
            .collect();

        let responses_vec = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "schild_responses_total",
                    "DNS responses sent, by rcode (\"dropped\": no response by policy).",
                ),
                &["rcode"],
            )
            .expect(LITERAL),
        );
        let responses = RCODES
            .iter()
            .map(|c| responses_vec.with_label_values(&[*c]))
            .collect();

        let blocked_vec = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "schild_blocked_answers_total",
                    "Answers changed by the policy, by feed and action (log-only: would have been blocked).",
                ),
                &["feed", "action"],
            )
            .expect(LITERAL),
        );
        let mut feed_names: Vec<String> = feeds.to_vec();
        let blocked = feeds
            .iter()
            .map(String::as_str)
            .chain(std::iter::once("unknown"))
            .map(|f| {
                Action::ALL
                    .iter()
                    .map(|a| blocked_vec.with_label_values(&[f, a.as_str()]))
                    .collect()
            })
            .collect();
        feed_names.shrink_to_fit();

        let upstream_errors_vec = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "schild_upstream_errors_total",
                    "Failed upstream lookups or recursions, by kind.",
                ),
                &["kind"],
            )
            .expect(LITERAL),
        );
        let upstream_errors = UPSTREAM_ERRORS
            .iter()
            .map(|k| upstream_errors_vec.with_label_values(&[*k]))
            .collect();

        let upstream_duration = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "schild_upstream_duration_seconds",
                    "Time spent forwarding or recursing for one cache miss.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )
            .expect(LITERAL),
        );

        let policy_entries = register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "schild_policy_entries",
                    "Indicators in the loaded artifact, by feed and kind (names, ips).",
                ),
                &["feed", "kind"],
            )
            .expect(LITERAL),
        );
        let feed_last_success = register(
            &r,
            GaugeVec::new(
                Opts::new(
                    "schild_feed_last_success_timestamp_seconds",
                    "Unix time of the last refresh in which the feed was fetched fresh.",
                ),
                &["feed"],
            )
            .expect(LITERAL),
        );
        let feed_failures = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "schild_feed_fetch_failures_total",
                    "Refreshes in which a feed could not be fetched or its new copy was refused (its cached copy, if any, was used), by reason.",
                ),
                &["feed", "reason"],
            )
            .expect(LITERAL),
        );
        for f in feeds {
            for reason in crate::feeds::FAILURE_REASONS {
                feed_failures.with_label_values(&[f.as_str(), reason]);
            }
            for kind in ["names", "ips"] {
                policy_entries.with_label_values(&[f.as_str(), kind]);
            }
        }

        let m = Metrics {
            queries,
            responses,
            acl_refused: counter(
                &r,
                "schild_acl_refused_total",
                "Queries refused because the client is outside server.allow.",
            ),
            blocked,
            feed_names,
            allowlist_overrides: counter(
                &r,
                "schild_allowlist_overrides_total",
                "Queries for a listed name that the allowlist let through.",
            ),
            cache_hits: counter(
                &r,
                "schild_cache_hits_total",
                "Answers served from the cache.",
            ),
            packet_hits: counter(
                &r,
                "schild_packet_cache_hits_total",
                "Answers replayed whole from the packet cache (counted in schild_cache_hits_total too).",
            ),
            cache_misses: counter(
                &r,
                "schild_cache_misses_total",
                "Queries not answered from the cache (those coalesced with an identical one in flight included).",
            ),
            cache_stale: counter(
                &r,
                "schild_cache_stale_answers_total",
                "Expired answers served because the upstream failed (serve-stale).",
            ),
            cache_servfail: counter(
                &r,
                "schild_cache_servfail_answers_total",
                "SERVFAILs answered from memory: the same question failed within resolver.servfail_ttl_secs.",
            ),
            upstream_coalesced: counter(
                &r,
                "schild_upstream_coalesced_total",
                "Cache misses that waited for an identical question already sent upstream instead of sending their own.",
            ),
            cache_entries: register(
                &r,
                IntGauge::new("schild_cache_entries", "Answers held in the cache.").expect(LITERAL),
            ),
            upstream_duration,
            upstream_errors,
            hits_dropped: counter(
                &r,
                "schild_hits_dropped_total",
                "Policy hits not recorded because the hit queue was full.",
            ),
            tcp_connections: register(
                &r,
                IntGauge::new(
                    "schild_tcp_connections",
                    "Open TCP and TLS client connections.",
                )
                .expect(LITERAL),
            ),
            tcp_rejected: counter(
                &r,
                "schild_tcp_rejected_total",
                "TCP and TLS connections closed at accept: client outside server.allow, or over server.tcp_max_per_client.",
            ),
            tcp_evicted: counter(
                &r,
                "schild_tcp_evicted_total",
                "TCP and TLS connections closed at server.tcp_max_connections to make room (the longest idle).",
            ),
            tcp_timeouts: counter(
                &r,
                "schild_tcp_timeouts_total",
                "TCP and TLS connections closed because a whole message did not arrive within server.tcp_idle_secs.",
            ),
            policy_entries,
            policy_loaded: register(
                &r,
                IntGauge::new(
                    "schild_policy_loaded",
                    "1 if a policy artifact is loaded; 0 means answers are NOT filtered.",
                )
                .expect(LITERAL),
            ),
            policy_serial: register(
                &r,
                IntGauge::new("schild_policy_serial", "Serial of the loaded artifact.")
                    .expect(LITERAL),
            ),
            policy_compiled_at: register(
                &r,
                Gauge::new(
                    "schild_policy_compiled_timestamp_seconds",
                    "Unix time at which the loaded artifact was compiled.",
                )
                .expect(LITERAL),
            ),
            policy_age: register(
                &r,
                Gauge::new(
                    "schild_policy_age_seconds",
                    "Age of the loaded artifact in seconds.",
                )
                .expect(LITERAL),
            ),
            feed_last_success,
            feed_failures,
            refresh_failures: counter(
                &r,
                "schild_refresh_failures_total",
                "Refreshes that failed as a whole; the previous policy stayed in place.",
            ),
            config_reload_failures: counter(
                &r,
                "schild_config_reload_failures_total",
                "Configuration reloads (SIGHUP) refused: the file did not load or validate; the running configuration stays.",
            ),
            reloads: counter(
                &r,
                "schild_reloads_total",
                "New policy artifacts swapped in.",
            ),
            upstream_overflow: counter(
                &r,
                "schild_upstream_overflow_total",
                "Upstream lookups given up (SERVFAIL, EDE 0) to make room at resolver.max_inflight or max_inflight_per_client.",
            ),
            reload_requests: counter(
                &r,
                "schild_reload_requests_total",
                "Refreshes asked for (timer, SIGHUP, POST /reload, allowlist change, start).",
            ),
            reload_coalesced: counter(
                &r,
                "schild_reload_coalesced_total",
                "Refresh requests that shared the result of a compile already pending.",
            ),
            admin_connections_evicted: counter(
                &r,
                "schild_admin_connections_evicted_total",
                "Admin connections closed to make room at the connection cap.",
            ),
            ratelimited: {
                let v = register(
                    &r,
                    IntCounterVec::new(
                        Opts::new(
                            "schild_ratelimited_total",
                            "UDP queries over server.client_qps, by what they got (drop: no answer; slip: an empty TC=1 answer).",
                        ),
                        &["action"],
                    )
                    .expect(LITERAL),
                );
                [
                    v.with_label_values(&["drop"]),
                    v.with_label_values(&["slip"]),
                ]
            },
            guard_protected: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "schild_guard_protected_refusals",
                        "IOCs of the loaded list refused because they name a protected clinical system (guard.protected), by feed.",
                    ),
                    &["feed"],
                )
                .expect(LITERAL),
            ),
            guard_held: register(
                &r,
                IntGauge::with_opts(Opts::new(
                    "schild_guard_held_new_blocks",
                    "Names an update held by guard.max_new_blocks would newly block (0: nothing held); `schild guard accept` applies it.",
                ))
                .expect(LITERAL),
            ),
            compile_peak_rss: register(
                &r,
                IntGauge::with_opts(Opts::new(
                    "schild_compile_peak_rss_bytes",
                    "Peak resident memory of the last refresh's compile process, in bytes (0: no compile in a process of its own yet).",
                ))
                .expect(LITERAL),
            ),
            guard_quarantined: register(
                &r,
                IntGauge::with_opts(Opts::new(
                    "schild_guard_quarantined",
                    "Newly listed popular names in quarantine (guard.on_popular = \"quarantine\"): they resolve and each hit is recorded with action quarantine until `schild guard release` enforces them.",
                ))
                .expect(LITERAL),
            ),
            retro_hits: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "schild_retro_hits_total",
                        "Newly listed IOCs that the name history shows were resolved here before, by feed.",
                    ),
                    &["feed"],
                )
                .expect(LITERAL),
            ),
            popular_blocks: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "schild_guard_popular_blocks_total",
                        "Newly listed names that many clients resolved on many days (guard.popular_clients, guard.popular_days): blocked (or quarantined, by guard.on_popular), and raised as a likely false positive or a wide compromise, by feed.",
                    ),
                    &["feed"],
                )
                .expect(LITERAL),
            ),
            history_dropped: counter(
                &r,
                "schild_history_dropped_total",
                "Answered names the name history did not record: its queue was full, or today's table reached history.max_names_per_day.",
            ),
            registry: r,
        };
        // Every configured feed has its series from the start, so rules
        // and dashboards see 0, not nothing.
        for f in &m.feed_names {
            m.guard_protected.with_label_values(&[f.as_str()]).set(0);
            m.retro_hits.with_label_values(&[f.as_str()]).inc_by(0);
            m.popular_blocks.with_label_values(&[f.as_str()]).inc_by(0);
        }
        m
    }

    /// Count a hunt's retro-sightings and popular names for a configured feed.
    pub fn retro_hits(&self, r: &crate::sightings::retro::FeedRetro) {
        if self.feed_names.contains(&r.feed) {
            self.retro_hits.with_label_values(&[&r.feed]).inc_by(r.hits);
            self.popular_blocks
                .with_label_values(&[&r.feed])
                .inc_by(r.popular);
        }
    }

    /// Count a query over its client's rate: slipped (TC=1) or dropped.
    #[inline]
    pub fn ratelimited(&self, slip: bool) {
        self.ratelimited[usize::from(slip)].inc();
    }

    #[inline]
    pub fn query(&self, transport: Transport, qtype: RecordType) {
        if let Some(c) = self
            .queries
            .get(transport as usize)
            .and_then(|v| v.get(qtype_index(qtype)))
        {
            c.inc();
        }
    }

    #[inline]
    pub fn response(&self, rcode: ResponseCode) {
        self.responses[rcode_index(rcode)].inc();
    }

    #[inline]
    pub fn dropped(&self) {
        self.responses[RCODES.len() - 1].inc();
    }

    #[inline]
    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].inc();
    }

    /// Count a policy hit. `feed` names the feed in the artifact; it is
    /// only used as a label if the configuration knows it.
    pub fn blocked(&self, feed_id: u16, feed: Option<&str>, action: Action) {
        let idx = feed_id as usize;
        let slot = match (self.feed_names.get(idx), feed) {
            (Some(configured), Some(name)) if configured == name => idx,
            _ => self.feed_names.len(),
        };
        let a = Action::ALL.iter().position(|x| *x == action).unwrap_or(0);
        self.blocked[slot][a].inc();
    }

    /// Reflect a newly loaded policy (or none).
    pub fn set_policy(&self, policy: Option<&Policy>) {
        let Some(p) = policy else {
            self.policy_loaded.set(0);
            return;
        };
        self.policy_loaded.set(1);
        let meta = p.meta();
        self.policy_serial
            .set(i64::try_from(meta.serial).unwrap_or(i64::MAX));
        self.policy_compiled_at.set(meta.compiled_at as f64);
        for (feed, n) in p.protected_refusal_counts() {
            if self.feed_names.iter().any(|f| f == feed) {
                self.guard_protected
                    .with_label_values(&[feed])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        for r in &meta.reports {
            if !self.feed_names.contains(&r.feed) {
                continue;
            }
            self.policy_entries
                .with_label_values(&[r.feed.as_str(), "names"])
                .set(i64::try_from(r.names).unwrap_or(i64::MAX));
            self.policy_entries
                .with_label_values(&[r.feed.as_str(), "ips"])
                .set(i64::try_from(r.ips).unwrap_or(i64::MAX));
        }
    }

    /// Record how each feed fared in a refresh.
    pub fn feed_refreshed(&self, feed: &str, status: &FetchStatus) {
        if !self.feed_names.iter().any(|f| f == feed) {
            return;
        }
        match status {
            FetchStatus::Fresh => self
                .feed_last_success
                .with_label_values(&[feed])
                .set(crate::clock::unix_now() as f64),
            FetchStatus::Cached { error, .. } | FetchStatus::Failed { error } => self
                .feed_failures
                .with_label_values(&[feed, crate::feeds::failure_reason(error)])
                .inc(),
        }
    }

    /// The text exposition format, with time-derived gauges brought up to date.
    /// The registry, for subsystems that add their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn render(&self, cache_entries: u64) -> String {
        self.cache_entries
            .set(i64::try_from(cache_entries).unwrap_or(i64::MAX));
        let compiled = self.policy_compiled_at.get();
        if self.policy_loaded.get() == 1 && compiled > 0.0 {
            self.policy_age
                .set((crate::clock::unix_now() as f64 - compiled).max(0.0));
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding metrics failed: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_created_and_rendered() {
        let m = Metrics::new(&["zdn".to_string()]);
        m.query(Transport::Udp, RecordType::A);
        m.blocked(0, Some("zdn"), Action::Sinkhole);
        m.blocked(7, Some("gone"), Action::Nxdomain);
        let text = m.render(3);
        assert!(
            text.contains("schild_queries_total{qtype=\"A\",transport=\"udp\"} 1"),
            "{text}"
        );
        assert!(text.contains("schild_blocked_answers_total{action=\"sinkhole\",feed=\"zdn\"} 1"));
        assert!(
            text.contains("schild_blocked_answers_total{action=\"nxdomain\",feed=\"unknown\"} 1")
        );
        assert!(text.contains("schild_cache_entries 3"));
        assert!(!text.contains("schild_invalid"));
    }
}
