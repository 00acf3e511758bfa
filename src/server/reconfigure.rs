//! SIGHUP re-reads the configuration file, as `unbound-control reload` and
//! `rndc reconfig` do, and applies what can change under running queries:
//! the feeds, allowlists and policy (the next compile uses them), the
//! resolver and the zone routes (rebuilt when `[resolver]`, a forward or
//! stub zone or `[local]` changed; their caches start empty)
//! and the ACL, EDNS size, block TTL and sinkholes, the client groups
//! (their `allow_only` files read again), rebind protection and the
//! bypass names. What cannot change
//! without a restart (listen addresses, sockets, TCP limits, the admin
//! listener, sightings, RPZ, dnstap, `[http]`, `[history]`, `state_dir`) is logged by
//! key as needing one; the running values stay. A file that does not load
//! or validate changes nothing and says why.

use std::fmt::Debug;
use std::sync::Arc;

use super::handler::{HandlerConfig, Shared};
use super::reload::Refresher;
use crate::config::Config;
use crate::error::error_chain;

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// `[resolver]` or the zones changed and a new resolver serves.
    pub resolver: bool,
    /// Keys that changed but take effect only after a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Why the new configuration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReconfigureError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("the new [resolver] or zones cannot be set up: {0}")]
    Resolver(String),
    #[error(transparent)]
    Groups(#[from] crate::config::groups::GroupsError),
}

fn changed<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// The keys whose change needs a restart, in the order of the file.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let mut keys = Vec::new();
    let mut check = |key: &'static str, differs: bool| {
        if differs {
            keys.push(key);
        }
    };
    check("state_dir", old.state_dir != new.state_dir);
    check("server.listen", o.listen != n.listen);
    check("server.udp_sockets", o.udp_sockets != n.udp_sockets);
    check("server.tcp_idle_secs", o.tcp_idle != n.tcp_idle);
    check(
        "server.tcp_max_connections",
        o.tcp_max_connections != n.tcp_max_connections,
    );
    check(
        "server.tcp_max_per_client",
        o.tcp_max_per_client != n.tcp_max_per_client,
    );
    check(
        "server.tcp_max_inflight",
        o.tcp_max_inflight != n.tcp_max_inflight,
    );
    check("server.tls_listen", o.tls_listen != n.tls_listen);
    check(
        "server.tls_cert_file",
        o.tls_cert_file != n.tls_cert_file || o.tls_key_file != n.tls_key_file,
    );
    check("server.drain_secs", o.drain != n.drain);
    check(
        "server.client_qps",
        o.client_qps != n.client_qps || o.client_qps_slip != n.client_qps_slip,
    );
    check(
        "admin",
        changed(&old.admin, &new.admin) || old.admin.token != new.admin.token,
    );
    check("sightings", changed(&old.sightings, &new.sightings));
    check("rpz", changed(&old.rpz, &new.rpz));
    check("dnstap", changed(&old.dnstap, &new.dnstap));
    check("http", old.http != new.http);
    check("history", changed(&old.history, &new.history));
    keys
}

/// Load the configuration file again and apply it; the caller refreshes
/// the feeds afterwards (as SIGHUP always did).
pub async fn reconfigure(
    shared: &Shared,
    refresher: &Refresher,
) -> Result<Reconfigured, ReconfigureError> {
    let old = refresher.config();
    let mut new = Config::load(&old.path)?;
    super::fit_to_open_file_limit(&mut new);
    let mut done = Reconfigured {
        restart_needed: restart_needed(&old, &new),
        ..Reconfigured::default()
    };
    // The client groups' files, the resolver and the zone routes first
    // (the zones' resolvers are made from [resolver] too): if any cannot
    // be loaded or built, nothing changes.
    let groups = crate::config::groups::PerNetworkPolicy::load(&new)?;
    if changed(&old.resolver, &new.resolver) || changed(&old.zones, &new.zones) {
        let counters = shared.routes.load().counters();
        let tap = shared
            .dnstap
            .as_ref()
            .and_then(super::dnstap::Tap::resolver);
        let out = super::outgoing::Outgoing::new(tap, None);
        let anchors = super::anchors::resolve(&new, &out)
            .await
            .map_err(|e| ReconfigureError::Resolver(error_chain(&e)))?;
        let (r, routes) = super::route::build(
            &new,
            anchors.as_ref(),
            shared.metrics.clone(),
            counters,
            &out,
        )
        .map_err(|e| ReconfigureError::Resolver(error_chain(&e)))?;
        shared.resolver.store(Arc::new(r));
        shared.routes.store(Arc::new(routes));
        done.resolver = true;
    }
    // What needs a restart keeps its running value, so every later compile
    // and comparison sees what really runs.
    new.state_dir = old.state_dir.clone();
    new.server = crate::config::ServerConfig {
        allow: new.server.allow.clone(),
        edns_payload: new.server.edns_payload,
        ..old.server.clone()
    };
    new.admin = old.admin.clone();
    new.sightings = old.sightings.clone();
    new.rpz = old.rpz.clone();
    new.dnstap = old.dnstap.clone();
    new.http = old.http.clone();
    new.history = old.history.clone();
    if !done.restart_needed.is_empty() {
        // The running configuration is no longer what the file says: a
        // compile must not read the file again (see `compile_child`).
        new.file_digest = None;
    }
    shared.config.store(Arc::new(HandlerConfig::new(&new)));
    let metrics = shared.groups.load().metrics();
    shared
        .groups
        .store(Arc::new(super::groups::PerNetwork::new(groups, metrics)));
    if !done.restart_needed.is_empty() {
        tracing::warn!(
            keys = %done.restart_needed.join(", "),
            "configuration changed where it takes effect only after a restart; the running values stay"
        );
    }
    tracing::info!(
        path = %new.path.display(),
        resolver_rebuilt = done.resolver,
        feeds = new.feeds.len(),
        "configuration reloaded"
    );
    refresher.set_config(new);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("/etc/schild/schild.toml")).expect("valid")
    }

    #[test]
    fn only_what_cannot_change_live_asks_for_a_restart() {
        let base = "state_dir = \"s\"\n[server]\nlisten = [\"127.0.0.1:53\"]\n";
        let old = parse(base);
        // The ACL, the resolver and the policy change live.
        let live = parse(&format!(
            "{base}allow = [\"10.0.0.0/8\"]\n[resolver]\nmode = \"forward\"\nupstreams = [\"192.0.2.1\"]\n[policy]\nblock_ttl_secs = 60\n"
        ));
        assert!(restart_needed(&old, &live).is_empty());
        let restart = parse(
            "state_dir = \"t\"\n[server]\nlisten = [\"127.0.0.1:54\"]\n[admin]\nlisten = \"127.0.0.1:9999\"\n[sightings]\nwindow_secs = 60\n",
        );
        assert_eq!(
            restart_needed(&old, &restart),
            ["state_dir", "server.listen", "admin", "sightings"]
        );
    }
}
