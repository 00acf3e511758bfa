//! The one integration-test binary: it links once. One module per area.

mod cli;
mod ctl;
mod deploy;
mod differential;
mod dns;
mod dnssec;
mod dnstap;
mod fallback;
mod feeds;
mod groups;
mod guard;
mod hardening;
mod hardening_feeds;
mod harness;
mod hierarchy;
mod history;
mod misp_server;
mod pki;
mod resolver;
mod rpz;
mod rpz_actions;
mod safety;
mod serve;
mod sightings;
mod zones;
