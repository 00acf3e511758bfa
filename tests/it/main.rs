//! The one integration-test binary: it links once. One module per area.

mod cli;
mod feeds;
mod misp_server;
