//! A policy hit: what the query path hands to the sightings subsystem
//! (through `server::hits`' bounded queue).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

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
    /// The client's `[[client_group]]`, if it is in one.
    pub client_group: Option<Arc<str>>,
}

/// The `set` of a hit with no feed behind it (a name outside a client
/// group's `allow_only` list): logged locally, reported to no feed.
pub const NO_SET: u32 = u32::MAX;

impl std::fmt::Debug for HitEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the client address by accident.
        f.debug_struct("HitEvent")
            .field("qname", &self.qname)
            .field("qtype", &self.qtype)
            .field("action", &self.action)
            .field("trigger", &self.trigger)
            .field("set", &self.set)
            .field("client_group", &self.client_group)
            .finish_non_exhaustive()
    }
}
