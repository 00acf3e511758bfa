//! `schild serve`: start, run and stop the DNS firewall resolver.
//!
//! Start-up order matters: the last good artifact is loaded (or, when there
//! is none, compiled) *before* any listener opens, so the first answer is
//! already filtered. Without a policy, `policy.fail_closed = true` refuses
//! to start; otherwise schild starts unfiltered and says so in the log, in
//! `schild_policy_loaded 0` and in `/ready`. SIGHUP re-reads the
//! configuration file ([`reconfigure`]) and refreshes the feeds;
//! SIGTERM (or SIGINT) stops answering new queries, lets the ones in flight
//! finish (up to `server.drain_secs`) and exits 0. Under systemd
//! (`Type=notify`) each step is told to the service manager ([`notify`]).

pub mod admin;
pub mod anchors;
pub mod answer;
pub mod compile_child;
pub mod dnstap;
pub mod fast;
pub mod groups;
pub mod handler;
pub mod history;
pub mod hits;
pub mod listen;
pub mod metrics;
#[cfg(target_os = "linux")]
pub mod mmsg;
pub mod notify;
pub mod outgoing;
pub mod packets;
pub mod ratelimit;
pub mod reconfigure;
pub mod recursor;
pub mod reload;
pub mod resolve;
pub mod route;
pub mod stub;
pub mod wildcard;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::error_chain;
use crate::exit;
use crate::sightings::Sightings;
use admin::AdminState;
use handler::{Handler, HandlerConfig, InFlight, Shared};
use hits::HitSink;
use listen::StreamLimits;
use metrics::Metrics;
use reload::Refresher;

/// Hits waiting for the consumer before new ones are dropped (and counted).
const HIT_QUEUE: usize = 16_384;

/// Raise the open-file soft limit to the hard limit: every TCP connection
/// and upstream lookup needs a descriptor, and 1024 runs out under load.
#[cfg(unix)]
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current == now.maximum {
        return;
    }
    let want = Rlimit {
        current: now.maximum,
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, want) {
        Ok(()) => tracing::info!(
            from = now.current,
            to = now.maximum,
            "open-file limit raised to the hard limit"
        ),
        Err(e) => {
            tracing::warn!(error = %e, limit = now.current, "cannot raise the open-file limit")
        }
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() {}

/// The open-file soft limit (after [`raise_open_file_limit`]).
#[cfg(unix)]
fn open_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit};
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(not(unix))]
fn open_file_limit() -> u64 {
    u64::MAX
}

/// Descriptors schild holds besides connections and lookups: the log,
/// spool and artifact files, a feed fetch, the runtime's own.
const FD_BASE: u64 = 64;

/// How the open-file limit is shared out, so that upstream work runs out
/// before the listeners can no longer accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    pub tcp_max_connections: usize,
    pub max_inflight: usize,
}

/// Share `limit` descriptors out: the listeners and [`FD_BASE`] first,
/// then a reserve of every admin connection (`admin.max_connections`) and
/// up to half the rest for TCP and DoT connections; upstream lookups get
/// what is left, two descriptors each (a lookup may ask two servers, or
/// retry over TCP). Each is capped at its configured value.
pub fn fd_budget(limit: u64, config: &Config) -> FdBudget {
    let udp = match config.server.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let sockets = udp as u64 + 1;
    let listeners =
        config.server.listen.len() as u64 * sockets + config.server.tls_listen.len() as u64 + 1;
    let avail = limit
        .saturating_sub(FD_BASE + listeners)
        .saturating_sub(config.admin.max_connections as u64);
    let tcp = (config.server.tcp_max_connections as u64)
        .min(avail / 2)
        .max(1);
    let upstream = (config.resolver.max_inflight as u64)
        .min(avail.saturating_sub(tcp) / 2)
        .max(1);
    FdBudget {
        tcp_max_connections: usize::try_from(tcp).unwrap_or(usize::MAX),
        max_inflight: usize::try_from(upstream).unwrap_or(usize::MAX),
    }
}

/// Lower the TCP and upstream caps to what the open-file limit allows
/// (said in the log), so the admin listener and TCP still accept when
/// a dead upstream holds every lookup open.
pub(crate) fn fit_to_open_file_limit(config: &mut Config) {
    let limit = open_file_limit();
    let budget = fd_budget(limit, config);
    let (tcp, upstream) = (
        config.server.tcp_max_connections,
        config.resolver.max_inflight,
    );
    if budget.tcp_max_connections < tcp || budget.max_inflight < upstream {
        tracing::warn!(
            open_file_limit = limit,
            tcp_max_connections = budget.tcp_max_connections,
            max_inflight = budget.max_inflight,
            "the open-file limit is low: TCP connections and upstream lookups are capped lower than configured, keeping a reserve for the admin and TCP listeners (raise LimitNOFILE)"
        );
    }
    config.server.tcp_max_connections = budget.tcp_max_connections.min(tcp);
    config.resolver.max_inflight = budget.max_inflight.min(upstream);
    config.resolver.max_inflight_per_client = config
        .resolver
        .max_inflight_per_client
        .min(config.resolver.max_inflight);
}

/// Run the server until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(mut config: Config) -> i32 {
    raise_open_file_limit();
    fit_to_open_file_limit(&mut config);
    if let Some(path) = config.rpz.as_ref().and_then(|r| r.tsig_key_file.as_ref()) {
        let usable = crate::tsig::TsigKey::load(path)
            .map_err(|e| error_chain(&e))
            .and_then(|k| k.signer().map(|_| ()).map_err(|e| error_chain(&e)));
        if let Err(error) = usable {
            tracing::error!(%error, "rpz.tsig_key_file cannot be used");
            return exit::CONFIG;
        }
    }
    let feed_names: Vec<String> = config.feeds.iter().map(|f| f.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(&feed_names));
    metrics.set_policy(None);
    let store = Arc::new(ArcSwapOption::empty());
    let refresher = Arc::new(Refresher::new(
        config.clone(),
        store.clone(),
        metrics.clone(),
    ));

    // 1. The policy, before any listener opens.
    let loaded = match refresher.load_existing() {
        Ok(l) => l,
        // Expected once after an upgrade that changed the format.
        Err(e @ crate::policy::ArtifactError::Version { .. }) => {
            tracing::warn!(error = %error_chain(&e), "the artifact in state_dir is from another schild version");
            false
        }
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "the artifact in state_dir cannot be used");
            false
        }
    };
    if !loaded {
        tracing::info!("no usable artifact in state_dir: compiling the feeds now");
        if let Err(error) = refresher.refresh("start").await {
            if config.policy.fail_closed {
                tracing::error!(error = %error_chain(&error), "no policy could be loaded and policy.fail_closed is set: not starting");
                return exit::UNAVAILABLE;
            }
            tracing::error!(
                "NO POLICY LOADED: schild starts anyway (policy.fail_closed = false) and answers WITHOUT FILTERING until a refresh succeeds"
            );
        }
    }

    // 2a. The dnstap query log: a bounded queue to one writer task
    // (before the resolver, whose own queries it logs with
    // `resolver_queries`).
    let stop_dnstap = CancellationToken::new();
    let dnstap_metrics = match dnstap::Metrics::register(metrics.registry()) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the dnstap metrics");
            return exit::FAILURE;
        }
    };
    let (dnstap, dnstap_task) = match &config.dnstap {
        None => (None, None),
        Some(d) => {
            let privacy = crate::sightings::log::Pseudonymiser::new(
                d.client_addresses,
                config.pseudonym_key_path(),
                config.sightings.pseudonym_rotate,
            );
            let (tap, task) = dnstap::start(d, privacy, dnstap_metrics, stop_dnstap.clone());
            (Some(tap), Some(task))
        }
    };

    // 2. The resolver, and the forward and stub zones' own (their share
    // of max_inflight comes out of the global one).
    let counters = route::register(metrics.registry());
    let outgoing = outgoing::Outgoing::new(dnstap.as_ref().and_then(dnstap::Tap::resolver), None);
    // DS trust anchors become keys first: they need a fetch.
    let anchors = match anchors::resolve(&config, &outgoing).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "DNSSEC trust anchor unusable: not starting");
            return exit::CONFIG;
        }
    };
    let built = route::build(
        &config,
        anchors.as_ref(),
        metrics.clone(),
        counters,
        &outgoing,
    );
    let (resolver, routes) = match built {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "cannot set up the resolver");
            return exit::CONFIG;
        }
    };
    if config.resolver.mode == crate::config::ResolverMode::Recursive && !config.resolver.dnssec {
        tracing::warn!("DNSSEC validation is off (resolver.dnssec = false)");
    }

    // 3. Hits go to a bounded queue; for now, the log.
    let (sink, hit_rx) = HitSink::channel(HIT_QUEUE, metrics.hits_dropped.clone());
    let stop_sightings = CancellationToken::new();
    let sightings_task = match crate::sightings::Metrics::register(metrics.registry())
        .map_err(|e| e.to_string())
        .and_then(|m| Sightings::open(&config, m).map_err(|e| error_chain(&e)))
    {
        Ok(s) => tokio::spawn(s.run(hit_rx, stop_sightings.clone())),
        Err(error) => {
            // DNS goes on: an outage would be worse than hits only in the log.
            tracing::error!(%error, "SIGHTINGS ARE NOT RECORDED: the spool cannot be opened; hits are only logged");
            tokio::spawn(hits::log_hits(hit_rx))
        }
    };

    // NOTIFY from an `axfr://` feed's primary: refresh that feed, one
    // refresh for any number of NOTIFYs that arrive while one runs.
    let (notified, mut notify_rx) = tokio::sync::mpsc::channel::<String>(16);
    {
        let refresher = refresher.clone();
        tokio::spawn(async move {
            while let Some(first) = notify_rx.recv().await {
                let mut feeds = std::collections::BTreeSet::from([first]);
                while let Ok(more) = notify_rx.try_recv() {
                    feeds.insert(more);
                }
                for feed in feeds {
                    tracing::info!(%feed, "NOTIFY from the feed's primary: refreshing it");
                    if let Err(e) = refresher.refresh_feed(&feed, false).await {
                        tracing::warn!(%feed, error = %error_chain(&*e), "refresh after NOTIFY failed");
                    }
                }
            }
        });
    }

    // 3c. The name history: a bounded queue to one recorder task.
    let stop_history = CancellationToken::new();
    let (history_sink, history_task) = if config.history.enabled() {
        let (sink, today, task) = history::start(
            &config,
            metrics.history_dropped.clone(),
            stop_history.clone(),
        );
        refresher.set_history(today);
        (Some(sink), Some(task))
    } else {
        (None, None)
    };

    // 3c. Client groups and the [policy] extras (their files read now).
    let per_network = match crate::config::groups::PerNetworkPolicy::load(&config) {
        Ok(g) => groups::PerNetwork::new(g, groups::GroupMetrics::register(metrics.registry())),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "cannot load the client groups");
            return exit::CONFIG;
        }
    };

    let shared = Arc::new(Shared {
        config: arc_swap::ArcSwap::from_pointee(HandlerConfig::new(&config)),
        policy: store.clone(),
        resolver: arc_swap::ArcSwap::from_pointee(resolver),
        routes: arc_swap::ArcSwap::from_pointee(routes),
        metrics: metrics.clone(),
        hits: sink,
        history: history_sink,
        rpz: refresher.rpz(),
        in_flight: InFlight::default(),
        draining: AtomicBool::new(false),
        notified: Some(notified),
        dnstap,
        ratelimit: ratelimit::RateLimiter::new(
            config.server.client_qps,
            config.server.client_qps_slip,
        ),
        groups: arc_swap::ArcSwap::from_pointee(per_network),
        packets: (config.resolver.packet_cache)
            .then(|| packets::PacketCache::new(config.resolver.cache_entries)),
        quarantine: refresher.quarantine(),
    });
    let handler = Handler(shared.clone());

    // 4. Listeners.
    let udp_sockets = match config.server.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let tracker = TaskTracker::new();
    let stop_udp = CancellationToken::new();
    let stop_streams = CancellationToken::new();
    let connections = Arc::new(listen::Connections::new(
        config.server.tcp_max_connections,
        config.server.tcp_max_per_client,
    ));
    let limits = StreamLimits {
        idle: config.server.tcp_idle,
        max_inflight: config.server.tcp_max_inflight,
    };
    for addr in &config.server.listen {
        let bound = match listen::bind(*addr, udp_sockets) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen");
                return exit::UNAVAILABLE;
            }
        };
        let n = bound.udp.len();
        for s in bound.udp {
            let served =
                listen::spawn_udp_thread(s, handler.clone(), tracker.clone(), stop_udp.clone());
            if let Err(e) = served {
                tracing::error!(addr = %bound.addr, error = %e, "cannot start a UDP receive thread");
                return exit::UNAVAILABLE;
            }
        }
        tracing::info!("listening proto=udp addr={} sockets={n}", bound.addr);
        tracing::info!("listening proto=tcp addr={}", bound.addr);
        tracker.spawn(listen::accept_loop(
            bound.tcp,
            None,
            handler.clone(),
            limits,
            connections.clone(),
            tracker.clone(),
            stop_streams.clone(),
        ));
    }
    if !config.server.tls_listen.is_empty() {
        let (Some(cert), Some(key)) = (&config.server.tls_cert_file, &config.server.tls_key_file)
        else {
            tracing::error!("server.tls_listen needs tls_cert_file and tls_key_file");
            return exit::CONFIG;
        };
        let tls = match listen::tls_config(cert, key) {
            Ok(t) => tokio_rustls::TlsAcceptor::from(t),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "cannot set up DNS over TLS");
                return exit::CONFIG;
            }
        };
        for addr in &config.server.tls_listen {
            let l = match listen::bind_tls(*addr) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(%addr, error = %e, "cannot listen");
                    return exit::UNAVAILABLE;
                }
            };
            let local = l.local_addr().unwrap_or(*addr);
            tracing::info!("listening proto=tls addr={local}");
            tracker.spawn(listen::accept_loop(
                l,
                Some(tls.clone()),
                handler.clone(),
                limits,
                connections.clone(),
                tracker.clone(),
                stop_streams.clone(),
            ));
        }
    }

    // 5. Admin.
    let listening = Arc::new(AtomicBool::new(false));
    let stop_admin = CancellationToken::new();
    let admin_listener = match tokio::net::TcpListener::bind(config.admin.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %config.admin.listen, error = %e, "cannot listen (admin)");
            return exit::UNAVAILABLE;
        }
    };
    let admin_addr = admin_listener.local_addr().unwrap_or(config.admin.listen);
    tracing::info!("admin listening addr={admin_addr}");
    admin::warn_if_exposed(admin_addr, config.admin.token.is_some());
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        AdminState {
            shared: shared.clone(),
            refresher: refresher.clone(),
            listening: listening.clone(),
            token: config.admin.token.clone(),
            max_connections: config.admin.max_connections,
            header_timeout: config.admin.header_timeout,
        },
        stop_admin.clone(),
    ));
    listening.store(true, Ordering::Release);
    tracing::info!(
        mode = shared.resolver.load().mode(),
        policy = if store.load().is_some() {
            "loaded"
        } else {
            "NONE (unfiltered)"
        },
        "schild is serving"
    );
    let notify = Arc::new(notify::Notifier::from_env(store.clone()));
    notify.ready();

    // 6. Background refreshes: soon if the artifact is older than the
    // refresh interval (or missing), otherwise when it comes due.
    let stop_refresh = CancellationToken::new();
    let interval = refresher.interval();
    let first = match refresher.age() {
        Some(age) if age < interval => interval - age,
        Some(_) => Duration::from_secs(1),
        None => (interval / 5).max(Duration::from_secs(10)),
    };
    tokio::spawn(refresher.clone().run(first, stop_refresh.clone()));
    tokio::spawn(refresher.clone().watch_allowlist(stop_refresh.clone()));

    // 7. Signals.
    wait_for_stop(shared.clone(), refresher.clone(), notify.clone()).await;

    // 8. Drain.
    notify.stopping();
    tracing::info!("stopping: draining queries in flight");
    listening.store(false, Ordering::Release);
    stop_refresh.cancel();
    stop_streams.cancel();
    shared.draining.store(true, Ordering::Release);
    if tokio::time::timeout(config.server.drain, shared.in_flight.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            left = shared.in_flight.count(),
            "drain time is up; queries still in flight are dropped"
        );
    }
    stop_udp.cancel();
    refresher.stop_rpz();
    tracker.close();
    // Hits of the drained queries are in the queue: record them.
    stop_sightings.cancel();
    if tokio::time::timeout(Duration::from_secs(5), sightings_task)
        .await
        .is_err()
    {
        tracing::warn!("sightings did not finish in time; unsent ones stay in the spool");
    }
    // The drained queries' names are queued: record them, write the day.
    stop_history.cancel();
    if let Some(task) = history_task
        && tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_err()
    {
        tracing::warn!("the name history was not written in time");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    // The drained queries' frames are queued: send them, then STOP.
    stop_dnstap.cancel();
    if let Some(task) = dnstap_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    stop_admin.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
    tracing::info!("stopped");
    exit::OK
}

#[cfg(unix)]
async fn wait_for_stop(
    shared: Arc<Shared>,
    refresher: Arc<Refresher>,
    notify: Arc<notify::Notifier>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                let (s, r, n) = (shared.clone(), refresher.clone(), notify.clone());
                tokio::spawn(async move {
                    n.reloading();
                    // The file first: a refresh then compiles with it.
                    if let Err(e) = reconfigure::reconfigure(&s, &r).await {
                        // The reason first: whoever sees the counter move finds it logged.
                        tracing::error!(error = %error_chain(&e), "the configuration file was not reloaded; the running configuration stays");
                        s.metrics.config_reload_failures.inc();
                    }
                    let _ = r.refresh("SIGHUP").await;
                    n.ready();
                });
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_stop(
    _shared: Arc<Shared>,
    _refresher: Arc<Refresher>,
    _notify: Arc<notify::Notifier>,
) {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(
            &format!("state_dir = \"s\"\n{text}"),
            std::path::Path::new("/etc/schild/schild.toml"),
        )
        .expect("valid")
    }

    #[test]
    fn the_open_file_limit_keeps_a_reserve_for_the_listeners() {
        let c = config("[server]\nudp_sockets = 2");
        // Plenty: the configured caps stand.
        let b = fd_budget(1 << 20, &c);
        assert_eq!((b.tcp_max_connections, b.max_inflight), (1024, 1000));
        // 1024 (a common default): the admin reserve and base first, half
        // the rest for TCP, what is left for two descriptors a lookup.
        let b = fd_budget(1024, &c);
        // One address: 2 UDP sockets and a TCP listener, and the admin one.
        let rest = 1024 - FD_BASE - 4 - 64;
        assert_eq!((b.tcp_max_connections, b.max_inflight), (446, 223));
        assert_eq!(rest, 892);
        // Next to nothing: one of each, never zero.
        let b = fd_budget(10, &c);
        assert_eq!((b.tcp_max_connections, b.max_inflight), (1, 1));
    }
}
