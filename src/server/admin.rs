//! The admin listener: `/metrics`, `/health`, `/ready` and `POST /reload`.
//!
//! It listens on `admin.listen` (loopback by default) and has no
//! authentication, so it belongs on loopback or a management network
//! (schild warns at start when it listens beyond loopback).
//!
//! A client cannot hold it: at most [`MAX_CONNECTIONS`] connections are
//! open, and at the cap the oldest is closed to make room for the new one;
//! a request's headers must arrive within [`HEADER_TIMEOUT`], and a
//! connection with no request for that long is closed. `POST /reload`
//! refuses the content types an HTML form can send, so a web page cannot
//! make a browser on the management network reload.
//! `/ready` is 200 only while the DNS listeners are open *and* a policy is
//! loaded: a schild that serves unfiltered answers (no list, with
//! `policy.fail_closed = false`) is alive but not ready, so a load balancer
//! keeps it out while it keeps answering whoever still asks it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
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

/// Open admin connections at most; at the cap the oldest is closed.
pub const MAX_CONNECTIONS: usize = 64;
/// A request's headers must arrive within this, and an idle connection
/// is closed after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Content types a cross-origin HTML form may send without a CORS
/// preflight (the Fetch standard's "CORS-safelisted" ones).
fn is_form(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_TYPE).iter().any(|v| {
        let essence = v
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            essence.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        ) || v.to_str().is_err()
    })
}

async fn reload(State(s): State<AdminState>, headers: HeaderMap) -> (StatusCode, String) {
    if is_form(&headers) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "refused: POST /reload takes no form content type (send it without a body)\n"
                .to_string(),
        );
    }
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
                crate::error::error_chain(&*e)
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
    let metrics = state.shared.metrics.clone();
    let service = hyper_util::service::TowerToHyperService::new(router(state));
    // Open connections by age: the first is the oldest.
    let open: Arc<Mutex<BTreeMap<u64, CancellationToken>>> = Arc::default();
    let tracker = tokio_util::task::TaskTracker::new();
    let mut next: u64 = 0;
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, ?addr, "accepting an admin connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let id = next;
        next += 1;
        let stop = shutdown.child_token();
        {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            while open.len() >= MAX_CONNECTIONS {
                match open.pop_first() {
                    Some((_, oldest)) => {
                        oldest.cancel();
                        metrics.admin_connections_evicted.inc();
                    }
                    None => break,
                }
            }
            open.insert(id, stop.clone());
        }
        let service = service.clone();
        let open = open.clone();
        tracker.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "admin connection ended");
                    }
                }
                _ = stop.cancelled() => {}
            }
            open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
}

/// Say so when the admin listener is reachable beyond loopback.
pub fn warn_if_exposed(addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the admin listener is reachable beyond loopback and its endpoints are unauthenticated (/metrics, POST /reload): keep it on a management network"
        );
    }
}
