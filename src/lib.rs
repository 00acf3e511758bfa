//! schild: a DNS firewall resolver fed by threat intelligence.
//!
//! The data path, one module per step:
//! feed ([`feeds`]) -> normalise and compile ([`policy`], driven by
//! [`pipeline`]) -> match ([`policy::Policy`]) -> answer (`server`) ->
//! sighting (`sightings`).

pub mod cli;
pub mod config;
pub mod feeds;
pub mod hits;
pub mod pipeline;
pub mod policy;
pub mod sightings;
pub mod telemetry;
