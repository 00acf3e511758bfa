//! The one integration-test binary: it links once. One module per area.

mod cli;
mod dns;
mod feeds;
mod hardening_feeds;
mod harness;
mod hierarchy;
mod misp_server;
mod resolver;
mod rpz;
mod serve;
mod sightings;
