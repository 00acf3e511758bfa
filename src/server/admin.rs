//! The admin listener: `/metrics`, `/health`, `/ready` and `POST /reload`.
//!
//! It listens on `admin.listen` (loopback by default) and has no
//! authentication, so it belongs on loopback or a management network.
//! `/ready` is 200 only while the DNS listeners are open *and* a policy is
//! loaded: a schild that serves unfiltered answers (no list, with
//! `policy.fail_closed = false`) is alive but not ready, so a load balancer
//! keeps it out while it keeps answering whoever still asks it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use super::handler::Shared;
use super::reload::Refresher;

/// What the admin endpoints look at.
#[derive(Clone)]
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub refresher: Arc<Refresher>,
    /// The DNS listeners are open (and not draining).
    pub listening: Arc<AtomicBool>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/reload", post(reload))
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let text = s.shared.metrics.render(s.shared.resolver.cache_entries());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    let listening = s.listening.load(Ordering::Acquire);
    let loaded = s.shared.policy.load().is_some();
    match (listening, loaded) {
        (true, true) => (StatusCode::OK, "ready\n"),
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: listeners not open\n",
        ),
        (true, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no policy loaded, answers are NOT filtered\n",
        ),
    }
}

async fn reload(State(s): State<AdminState>) -> impl IntoResponse {
    match s.refresher.refresh("admin").await {
        Ok(r) if r.failed_feeds.is_empty() => (
            StatusCode::OK,
            format!(
                "reloaded: serial {}, {} names, {} addresses\n",
                r.serial, r.names, r.ips
            ),
        ),
        Ok(r) => (
            StatusCode::OK,
            format!(
                "reloaded: serial {}, {} names, {} addresses; feeds that failed (cached copy used): {}\n",
                r.serial,
                r.names,
                r.ips,
                r.failed_feeds.join(", ")
            ),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "reload failed, the previous policy stays in place: {}\n",
                crate::error::error_chain(&e)
            ),
        ),
    }
}

/// Serve the admin endpoints on a bound listener until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    if let Err(e) = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, ?addr, "admin listener failed");
    }
}
