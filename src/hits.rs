//! Hits: what the query path hands to the sightings subsystem.
//!
//! The handler builds a [`HitEvent`] for every blocked or log-only answer
//! and gives it to a [`HitSink`], which never waits: a full queue is
//! counted, not waited on, so a burst of hits cannot slow down DNS.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::policy::{Action, Policy};

/// What matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A listed name (the query name or a parent of it, or a CNAME target).
    Name(String),
    /// An answer address that hit an IP trigger.
    Ip(IpAddr),
}

/// One blocked (or log-only) lookup.
#[derive(Clone)]
pub struct HitEvent {
    pub at: SystemTime,
    pub client: IpAddr,
    pub qname: String,
    pub qtype: u16,
    pub transport: &'static str,
    pub action: Action,
    pub trigger: Trigger,
    /// Provenance set of the hit in `policy`.
    pub set: u32,
    /// The policy that matched: provenance is looked up in it later.
    pub policy: Arc<Policy>,
}

impl std::fmt::Debug for HitEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HitEvent")
            .field("qname", &self.qname)
            .field("action", &self.action)
            .field("trigger", &self.trigger)
            .field("set", &self.set)
            .finish_non_exhaustive()
    }
}

/// The sending side, held by the DNS handler.
#[derive(Clone, Debug)]
pub struct HitSink {
    tx: mpsc::Sender<HitEvent>,
    dropped: prometheus::IntCounter,
}

impl HitSink {
    /// A sink and its receiver, holding up to `capacity` hits in memory.
    pub fn new(
        capacity: usize,
        dropped: prometheus::IntCounter,
    ) -> (HitSink, mpsc::Receiver<HitEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (HitSink { tx, dropped }, rx)
    }

    /// Hand a hit over without waiting. Returns false (and counts it) when
    /// the queue is full or closed.
    pub fn record(&self, hit: HitEvent) -> bool {
        match self.tx.try_send(hit) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.inc();
                false
            }
        }
    }
}
