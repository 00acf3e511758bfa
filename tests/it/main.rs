//! The one integration-test binary: it links once. One module per area.

mod cli;
mod deploy;
mod differential;
mod dns;
mod dnssec;
mod fallback;
mod feeds;
mod hardening;
mod hardening_feeds;
mod harness;
mod hierarchy;
mod misp_server;
mod resolver;
mod rpz;
mod safety;
mod serve;
mod sightings;
