//! schild: a DNS firewall resolver fed by threat intelligence.
//!
//! The data path, one module per step:
//! feed ([`feeds`]) -> normalise and compile ([`policy`], driven by
//! [`pipeline`]) -> match ([`policy::Policy`]) -> answer ([`server`], with
//! [`resolve`] for the upstream and [`reload`] keeping the policy fresh) ->
//! sighting ([`hits`], later `sightings`).

pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod exit;
pub mod feeds;
pub mod fs;
pub mod http;
pub mod pipeline;
pub mod policy;
pub mod rpz;
pub mod server;
pub mod sightings;
pub mod telemetry;
pub mod wire;

#[cfg(test)]
mod tidy;
