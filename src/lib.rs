//! schild: a DNS firewall resolver fed by threat intelligence.
//!
//! The data path, one module per step:
//! feed ([`feeds`]) -> normalise and compile ([`policy`], driven by
//! [`pipeline`]) -> match ([`policy::Policy`]) -> answer ([`server`]: our
//! own UDP/TCP/TLS loops, the handler, `server::resolve` for the upstream,
//! `server::reload` keeping the policy fresh) -> sighting (`server::hits`
//! hands each hit to [`sightings`]). [`rpz`] exports the list.
//!
//! The modules form layers, each using only the ones below it (checked by
//! `src/tidy.rs`): `cli`, `server` -> `pipeline`, `sightings`, `rpz` ->
//! `feeds`, `history` -> `config` -> `policy`, `zones` -> the leaves (`clock`, `error`,
//! `exit`, `fs`, `http`, `wire`).

pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod exit;
pub mod feeds;
pub mod fs;
pub mod history;
pub mod http;
pub mod pipeline;
pub mod policy;
pub mod rpz;
pub mod server;
pub mod sightings;
pub mod telemetry;
pub mod tsig;
pub mod wire;
pub mod zones;

#[cfg(test)]
mod tidy;
