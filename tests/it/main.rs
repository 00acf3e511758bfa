//! The one integration-test binary: it links once. One module per area.

mod cli;
mod dns;
mod harness;
mod hierarchy;
mod serve;
