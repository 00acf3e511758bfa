//! Policy hits, handed from the query path to whoever records them.
//!
//! The query path must never wait for a log file or a network peer, so a
//! hit is a small owned value put on a bounded queue with `try_send`; when
//! the queue is full the hit is counted as dropped and the answer goes out
//! regardless. The consumer here only logs; the sightings subsystem replaces
//! it with one that aggregates and reports hits back to the feeds.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::policy::{Action, Policy};

/// What matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A listed name (the query name, a parent of it, or a CNAME target),
    /// lower case, without the trailing dot.
    Name(String),
    /// An address in the answer matched an IP trigger.
    Ip(IpAddr),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Name(n) => f.write_str(n),
            Trigger::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// One policy hit: a blocked answer, or a `log-only` match.
#[derive(Clone)]
pub struct HitEvent {
    pub at: SystemTime,
    pub client: IpAddr,
    /// The query name as asked, lower case, without the trailing dot.
    pub qname: String,
    pub qtype: u16,
    pub transport: &'static str,
    pub action: Action,
    pub trigger: Trigger,
    /// Provenance set of the hit: see [`Policy::provenance_of`].
    pub set: u32,
    /// The policy that matched, so provenance can be read after a reload.
    pub policy: Arc<Policy>,
}

impl std::fmt::Debug for HitEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the client address by accident.
        f.debug_struct("HitEvent")
            .field("qname", &self.qname)
            .field("qtype", &self.qtype)
            .field("action", &self.action)
            .field("trigger", &self.trigger)
            .field("set", &self.set)
            .finish_non_exhaustive()
    }
}

/// The sending half, held by the query path. Never blocks.
#[derive(Clone)]
pub struct HitSink {
    tx: mpsc::Sender<HitEvent>,
    dropped: IntCounter,
}

impl HitSink {
    /// A queue of `capacity` hits; `dropped` counts hits that did not fit.
    pub fn channel(capacity: usize, dropped: IntCounter) -> (HitSink, mpsc::Receiver<HitEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (HitSink { tx, dropped }, rx)
    }

    /// Hand a hit over, or count it as dropped.
    pub fn record(&self, hit: HitEvent) {
        if self.tx.try_send(hit).is_err() {
            self.dropped.inc();
        }
    }
}

/// The interim consumer: one structured INFO line per hit. The client
/// address is only logged at DEBUG, as it is personal data.
pub async fn log_hits(mut rx: mpsc::Receiver<HitEvent>) {
    while let Some(hit) = rx.recv().await {
        let p = &hit.policy;
        let prov = p.provenance_of(hit.set).next();
        let feed = prov
            .and_then(|pr| p.feed(pr.feed))
            .map(|f| f.name.as_str())
            .unwrap_or("?");
        let event = prov
            .and_then(|pr| p.event(pr))
            .map(|e| e.uuid.as_str())
            .unwrap_or("");
        let attribute = prov
            .and_then(|pr| pr.attribute_uuid.as_deref())
            .unwrap_or("");
        let ioc = prov.map(|pr| pr.ioc_type.as_misp()).unwrap_or("");
        tracing::info!(
            feed,
            action = hit.action.as_str(),
            listed = %hit.trigger,
            ioc,
            qname = %hit.qname,
            qtype = hit.qtype,
            event,
            attribute,
            transport = hit.transport,
            "policy hit"
        );
        tracing::debug!(client = %hit.client, qname = %hit.qname, "policy hit client");
    }
}
