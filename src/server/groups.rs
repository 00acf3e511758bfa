//! Per-network policy in the server: the client groups and the
//! `[policy]` extras read by `config::groups`, with their metrics. The
//! handler picks the client's group once per query
//! ([`PerNetwork::group_of`]: a sorted prefix table, no allocation) in its
//! policy step; the pure parts are `policy::groups`.

use std::net::IpAddr;
use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::config::groups::PerNetworkPolicy;
use crate::policy::groups::{ClientGroup, GroupTable, NameSet};

/// Counters of one group, fetched once.
struct GroupCounters {
    queries: IntCounter,
    denied: IntCounter,
    hits: IntCounter,
}

/// The metrics of the groups, registered once at start; a reload takes
/// the counters of its groups from them (a group dropped by a reload
/// keeps its last values).
pub struct GroupMetrics {
    queries: IntCounterVec,
    denied: IntCounterVec,
    hits: IntCounterVec,
    rebind_blocked: IntCounter,
    bypass_blocked: IntCounter,
}

impl GroupMetrics {
    /// Register in `registry`; labels are the configured group names only.
    pub fn register(registry: &Registry) -> Arc<GroupMetrics> {
        let vec = |name: &str, help: &str| {
            let v = IntCounterVec::new(Opts::new(name, help), &["group"]).expect(LITERAL);
            if let Err(e) = registry.register(Box::new(v.clone())) {
                tracing::error!(error = %e, "metric not registered");
            }
            v
        };
        let one = |name: &str, help: &str| {
            let c = IntCounter::with_opts(Opts::new(name, help)).expect(LITERAL);
            if let Err(e) = registry.register(Box::new(c.clone())) {
                tracing::error!(error = %e, "metric not registered");
            }
            c
        };
        Arc::new(GroupMetrics {
            queries: vec(
                "schild_client_group_queries_total",
                "Queries from the clients of each [[client_group]].",
            ),
            denied: vec(
                "schild_client_group_denied_total",
                "Queries a group's allow_only list denied (NXDOMAIN).",
            ),
            hits: vec(
                "schild_client_group_hits_total",
                "IOC hits of each group's clients (blocked, or recorded under action = \"log-only\").",
            ),
            rebind_blocked: one(
                "schild_rebind_blocked_total",
                "Answers blocked by policy.rebind_protection (a public name with a private address).",
            ),
            bypass_blocked: one(
                "schild_bypass_blocked_total",
                "Resolver-bypass names answered NXDOMAIN (policy.block_bypass).",
            ),
        })
    }
}

/// The client groups and the `[policy]` extras, with their counters:
/// behind an `ArcSwap` in the handler, swapped whole by a SIGHUP.
pub struct PerNetwork {
    table: GroupTable,
    /// `Some` with `rebind_protection`: the names exempt from it.
    pub rebind_allow: Option<NameSet>,
    /// `Some` with `block_bypass`.
    pub bypass: Option<NameSet>,
    counters: Vec<GroupCounters>,
    metrics: Arc<GroupMetrics>,
}

impl PerNetwork {
    pub fn new(p: PerNetworkPolicy, metrics: Arc<GroupMetrics>) -> PerNetwork {
        let PerNetworkPolicy {
            table,
            rebind_allow,
            bypass,
        } = p;
        let counters = table
            .groups()
            .iter()
            .map(|g| GroupCounters {
                queries: metrics.queries.with_label_values(&[&*g.name]),
                denied: metrics.denied.with_label_values(&[&*g.name]),
                hits: metrics.hits.with_label_values(&[&*g.name]),
            })
            .collect();
        PerNetwork {
            table,
            rebind_allow,
            bypass,
            counters,
            metrics,
        }
    }

    /// The metrics, for the next [`PerNetwork::new`].
    pub fn metrics(&self) -> Arc<GroupMetrics> {
        self.metrics.clone()
    }

    /// The client's group (index into `table.groups()` and the group).
    #[inline]
    pub fn group_of(&self, client: IpAddr) -> Option<(usize, &ClientGroup)> {
        let i = self.table.lookup(client)?;
        self.table.groups().get(i).map(|g| (i, g))
    }

    pub fn count_query(&self, group: usize) {
        if let Some(c) = self.counters.get(group) {
            c.queries.inc();
        }
    }

    pub fn count_denied(&self, group: usize) {
        if let Some(c) = self.counters.get(group) {
            c.denied.inc();
        }
    }

    pub fn count_hit(&self, group: usize) {
        if let Some(c) = self.counters.get(group) {
            c.hits.inc();
        }
    }

    pub fn count_rebind(&self) {
        self.metrics.rebind_blocked.inc();
    }

    pub fn count_bypass(&self) {
        self.metrics.bypass_blocked.inc();
    }
}

const LITERAL: &str = "metric names and labels are valid literals";
