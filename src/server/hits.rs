//! Policy hits, handed from the query path to whoever records them (the
//! hit itself, [`HitEvent`], is the sightings subsystem's input type).
//!
//! The query path must never wait for a log file or a network peer, so a
//! hit is a small owned value put on a bounded queue with `try_send`; when
//! the queue is full the hit is counted as dropped and the answer goes out
//! regardless. The consumer here only logs; the sightings subsystem replaces
//! it with one that aggregates and reports hits back to the feeds.

use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::sightings::HitEvent;

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
