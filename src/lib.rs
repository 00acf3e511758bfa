//! schild: a DNS firewall resolver fed by threat intelligence.
//!
//! The data path, one module per step:
//! feed ([`feeds`]) -> normalise and compile ([`policy`]) -> match
//! ([`policy::Policy`]) -> answer (`server`) -> sighting (`sightings`).

pub mod config;
pub mod policy;
