//! The admin listener: `/metrics`, `/health`, `/ready`, `/status` and the
//! runtime controls `POST /reload`, `POST /refresh?feed=NAME` and
//! `POST /flush?name=NAME[&subtree=1]` (or `?all=1`), which `schild ctl`
//! calls.
//!
//! With `admin.token_file` set, every endpoint but `/health` and
//! `/metrics` needs `Authorization: Bearer <token>` (compared in constant
//! time, never logged), and a request with it may `POST` any content
//! type. Without a token the listener belongs on loopback or a management
//! network (schild warns at start when it listens beyond loopback without
//! one), and a `POST` with a content type an HTML form can send is
//! refused, so a web page cannot make a browser on that network act.
//!
//! A client cannot hold it: at most `admin.max_connections` connections
//! are open, and at the cap the oldest is closed to make room for the new
//! one; a request's headers must arrive within `admin.header_timeout_secs`,
//! and a connection with no request for that long is closed.
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
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hickory_proto::rr::{LowerName, Name};
use tokio_util::sync::CancellationToken;

use super::handler::Shared;
use super::reload::{RefreshResult, Refresher};
use crate::config::Secret;
use crate::policy::FetchStatus;

/// What the admin endpoints look at.
#[derive(Clone)]
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub refresher: Arc<Refresher>,
    /// The DNS listeners are open (and not draining).
    pub listening: Arc<AtomicBool>,
    /// `admin.token_file`'s token.
    pub token: Option<Secret>,
    /// Open connections at most; at the cap the oldest is closed.
    pub max_connections: usize,
    /// A request's headers must arrive within this, and an idle
    /// connection is closed after it.
    pub header_timeout: Duration,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .route("/reload", post(reload))
        .route("/refresh", post(refresh))
        .route("/flush", post(flush))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Endpoints that need no token: probes and scrapers.
fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/metrics")
}

/// Equal in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer_ok(headers: &HeaderMap, token: &Secret) -> bool {
    headers.get_all(header::AUTHORIZATION).iter().any(|v| {
        let v = v.as_bytes();
        v.len() > 7
            && v[..7].eq_ignore_ascii_case(b"bearer ")
            && same(v[7..].trim_ascii(), token.expose().as_bytes())
    })
}

/// The token check (with a token) or the form check (without one).
async fn guard(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        if is_open(req.uri().path()) || bearer_ok(req.headers(), token) {
            // With the token any content type goes: a form cannot carry it.
            return next.run(req).await;
        }
        let mut r = (
            StatusCode::UNAUTHORIZED,
            "unauthorized: this endpoint needs Authorization: Bearer <admin.token_file's token>\n",
        )
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"schild\""),
        );
        return r;
    }
    if req.method() == Method::POST && is_form(req.headers()) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "refused: a POST takes no form content type (send it without a body)\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// The query string's `key=value` pairs.
fn params(uri: &axum::http::Uri) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn flag(p: &BTreeMap<String, String>, key: &str) -> bool {
    p.get(key)
        .is_some_and(|v| matches!(v.as_str(), "" | "1" | "true" | "yes"))
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let text = s
        .shared
        .metrics
        .render(s.shared.resolver.load().cache_entries() + s.shared.routes.load().cache_entries());
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

async fn reload(State(s): State<AdminState>) -> (StatusCode, String) {
    reloaded(s.refresher.refresh("admin").await)
}

fn reloaded(result: RefreshResult) -> (StatusCode, String) {
    match result {
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

/// `GET /status`: what is loaded and how each feed fared (JSON).
async fn status(State(s): State<AdminState>) -> Response {
    let now = crate::clock::unix_now();
    let guard = s.shared.policy.load();
    let body = match guard.as_ref() {
        None => serde_json::json!({
            "loaded": false,
            "listening": s.listening.load(Ordering::Acquire),
            "feeds": [],
        }),
        Some(p) => {
            let m = p.meta();
            let feeds: Vec<serde_json::Value> = m
                .reports
                .iter()
                .map(|r| {
                    let kind = m
                        .feeds
                        .iter()
                        .find(|f| f.name == r.feed)
                        .map(|f| f.kind.clone())
                        .unwrap_or_default();
                    let (state, error, since) = match &r.fetch {
                        FetchStatus::Fresh => ("fresh", None, Some(m.compiled_at)),
                        FetchStatus::Cached { error, cached_at } => {
                            ("cached", Some(error.clone()), Some(*cached_at))
                        }
                        FetchStatus::Failed { error } => ("failed", Some(error.clone()), None),
                    };
                    serde_json::json!({
                        "name": r.feed,
                        "kind": kind,
                        "status": state,
                        "error": error,
                        "age_secs": since.map(|t| now.saturating_sub(t)),
                        "names": r.names,
                        "ips": r.ips,
                    })
                })
                .collect();
            serde_json::json!({
                "loaded": true,
                "listening": s.listening.load(Ordering::Acquire),
                "serial": p.serial(),
                "compiled_at": m.compiled_at,
                "age_secs": now.saturating_sub(m.compiled_at),
                "names": p.name_count(),
                "ips": m.ip_triggers.len(),
                "feeds": feeds,
            })
        }
    };
    axum::Json(body).into_response()
}

/// `POST /refresh?feed=NAME[&accept_shrink=1]`: pull that one feed now
/// (the others from their last good copies) and recompile.
async fn refresh(State(s): State<AdminState>, uri: axum::http::Uri) -> (StatusCode, String) {
    let p = params(&uri);
    let Some(feed) = p.get("feed").filter(|f| !f.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            "refused: name the feed (?feed=NAME)\n".into(),
        );
    };
    let accept_shrink = flag(&p, "accept_shrink");
    let result = match s.refresher.refresh_feed(feed, accept_shrink).await {
        Err(e) if matches!(*e, super::reload::RefreshError::UnknownFeed(_)) => {
            return (StatusCode::NOT_FOUND, format!("refused: {e}\n"));
        }
        r => r,
    };
    let (code, text) = reloaded(result);
    if code != StatusCode::OK {
        return (code, text);
    }
    // How that one feed fared: a refused or failed fetch is no success.
    let guard = s.shared.policy.load();
    let fetch = guard
        .as_ref()
        .and_then(|p| p.meta().reports.iter().find(|r| r.feed == *feed))
        .map(|r| r.fetch.clone());
    match fetch {
        Some(FetchStatus::Fresh) => (
            StatusCode::OK,
            format!(
                "feed {feed} refreshed; {}",
                text.trim_start_matches("reloaded: ")
            ),
        ),
        Some(FetchStatus::Cached { error, .. }) => (
            StatusCode::BAD_GATEWAY,
            format!("feed {feed} was not refreshed, its last good copy stays in use: {error}\n"),
        ),
        Some(FetchStatus::Failed { error }) => (
            StatusCode::BAD_GATEWAY,
            format!("feed {feed} was not refreshed and has no copy: {error}\n"),
        ),
        None => (StatusCode::BAD_GATEWAY, format!("feed {feed}: no report\n")),
    }
}

/// `POST /flush?name=NAME[&subtree=1]` or `POST /flush?all=1`: empty the
/// answer cache for that name, that name and everything below it, or all.
async fn flush(State(s): State<AdminState>, uri: axum::http::Uri) -> (StatusCode, String) {
    let p = params(&uri);
    if flag(&p, "all") {
        let n =
            s.shared.resolver.load().flush(None, false) + s.shared.routes.load().flush(None, false);
        if let Some(p) = &s.shared.packets {
            p.flush();
        }
        tracing::info!(answers = n, "answer cache flushed");
        return (
            StatusCode::OK,
            format!("flushed the whole cache: {n} cached answers dropped\n"),
        );
    }
    let Some(raw) = p
        .get("name")
        .map(|n| n.trim().trim_end_matches('.'))
        .filter(|n| !n.is_empty())
    else {
        return (
            StatusCode::BAD_REQUEST,
            "refused: name what to flush (?name=NAME[&subtree=1], or ?all=1)\n".into(),
        );
    };
    let name = match Name::from_utf8(format!("{raw}.")) {
        Ok(n) => LowerName::from(n),
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("refused: {raw:?} is not a domain name: {e}\n"),
            );
        }
    };
    let subtree = flag(&p, "subtree");
    let n = s.shared.resolver.load().flush(Some(&name), subtree)
        + s.shared.routes.load().flush(Some(&name), subtree);
    // The packet cache is voided whole: it is not indexed by name.
    if let Some(p) = &s.shared.packets {
        p.flush();
    }
    tracing::info!(%name, subtree, answers = n, "answer cache flushed");
    let what = if subtree { " and below" } else { "" };
    (
        StatusCode::OK,
        format!("flushed {name}{what}: {n} cached answers dropped\n"),
    )
}

/// Serve the admin endpoints on a bound listener until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let metrics = state.shared.metrics.clone();
    let (max_connections, header_timeout) = (state.max_connections, state.header_timeout);
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
            while open.len() >= max_connections {
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
                .header_read_timeout(header_timeout)
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

/// Say so when the admin listener is reachable beyond loopback without a token.
pub fn warn_if_exposed(addr: SocketAddr, token: bool) {
    if !addr.ip().is_loopback() && !token {
        tracing::warn!(
            %addr,
            "the admin listener is reachable beyond loopback and its endpoints are unauthenticated (POST /reload, /flush, /refresh): set admin.token_file or keep it on a management network"
        );
    }
}
