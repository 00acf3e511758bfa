//! A MISP server for tests, on 127.0.0.1:0, that behaves as MISP documents
//! it (misp.md §3, §5): `POST /attributes/restSearch` with key checking,
//! MISP's filters and paging; a MISP feed folder under `/feed/` with ETags;
//! a STIX bundle at `/stix/bundle.json`; and a TAXII 2.1 server (`/taxii2/`,
//! api root `/api1/`, one collection).
//!
//! Everything a test may want to see or change lives in one [`State`]: the
//! data, the valid keys, the fault mode and every request received. A
//! later `POST /sightings/add` handler only needs another route on the
//! same state.
//!
//! The server runs on its own thread and runtime, so tests can be plain
//! `#[test]` functions that run the real binary or block on the library.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
pub const AUTH_FAILED: &str = "Authentication failed. Please make sure you pass the API key of an API enabled user along in the Authorization header.";
pub const TAXII_MEDIA: &str = "application/taxii+json;version=2.1";
pub const COLLECTION: &str = "91a7b528-80eb-42ed-a74d-c6fbd5a26116";

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Every request gets a 500.
    Status500,
    /// Answers only after this long.
    Slow(Duration),
    /// Connections are reset (RST) after the request arrived.
    Reset,
    /// A 200 whose body is this many bytes of JSON whitespace after a valid
    /// start, streamed from one static buffer (nothing is allocated).
    Huge(u64),
    /// A 200 with a truncated JSON document.
    Malformed,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A restSearch row and what MISP filters on besides its own fields.
#[derive(Debug, Clone)]
pub struct Row {
    /// The attribute as MISP returns it, with its `Event` mini-block and
    /// its own `Tag`s.
    pub attribute: Value,
    pub event_uuid: String,
    pub event_published: bool,
    pub event_tags: Vec<Value>,
}

/// One TAXII object with the time the server added it.
#[derive(Debug, Clone)]
pub struct TaxiiObject {
    pub date_added: String,
    pub object: Value,
}

#[derive(Debug)]
pub struct Inner {
    pub rows: Vec<Row>,
    /// Files under `/feed/` (`manifest.json`, `<uuid>.json`).
    pub feed: BTreeMap<String, Vec<u8>>,
    pub bundle: Vec<u8>,
    pub taxii: Vec<TaxiiObject>,
    /// Keys MISP accepts in `Authorization`.
    pub keys: Vec<String>,
    /// Keys the TAXII server accepts as `Bearer`; empty means no auth.
    pub taxii_keys: Vec<String>,
    /// The `/feed/` folder wants one of `keys` in `Authorization`, as a
    /// feed served by a MISP instance does (403 without it).
    pub feed_protected: bool,
    /// Hostnames `enforceWarninglist` drops (MISP's url-shortener list).
    pub warninglist: Vec<String>,
    pub fault: Fault,
    pub requests: Vec<Recorded>,
    /// Sightings stored by `POST /sightings/add`, as MISP stores them.
    pub sightings: Vec<StoredSighting>,
}

/// A sighting row as MISP keeps it (Sighting.php).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSighting {
    pub attribute_uuid: String,
    pub event_uuid: String,
    pub kind: String,
    pub source: String,
    pub date_sighting: u64,
}

/// Shared state of the server.
#[derive(Debug)]
pub struct State(Mutex<Inner>);

impl State {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock already failed.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct MispServer {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    /// Serving HTTPS (see [`MispServer::start_tls`]).
    tls: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for MispServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_json(rel: &str) -> Value {
    let path = Path::new(FIXTURES).join(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Flatten an event into restSearch rows, as MISP does (`flatten=1`):
/// object attributes become rows too.
pub fn rows_of_event(doc: &Value) -> Vec<Row> {
    let ev = doc.get("Event").unwrap_or(doc);
    let uuid = ev["uuid"].as_str().unwrap_or_default().to_string();
    let mini = json!({
        "id": ev.get("id").cloned().unwrap_or(json!("1")),
        "org_id": ev.get("org_id").cloned().unwrap_or(json!("1")),
        "distribution": ev.get("distribution").cloned().unwrap_or(json!("3")),
        "info": ev["info"].clone(),
        "orgc_id": ev.get("orgc_id").cloned().unwrap_or(json!("1")),
        "uuid": uuid,
    });
    let published = ev["published"].as_bool().unwrap_or(false);
    let event_tags: Vec<Value> = ev["Tag"].as_array().cloned().unwrap_or_default();
    let mut attrs: Vec<Value> = ev["Attribute"].as_array().cloned().unwrap_or_default();
    for o in ev["Object"].as_array().into_iter().flatten() {
        attrs.extend(o["Attribute"].as_array().cloned().unwrap_or_default());
    }
    attrs
        .into_iter()
        .map(|mut a| {
            if let Some(m) = a.as_object_mut() {
                for k in ["Sighting", "ShadowAttribute", "Galaxy", "value1", "value2"] {
                    m.remove(k);
                }
                m.entry("deleted").or_insert(json!(false));
                m.insert("Event".into(), mini.clone());
            }
            Row {
                attribute: a,
                event_uuid: uuid.clone(),
                event_published: published,
                event_tags: event_tags.clone(),
            }
        })
        .collect()
}

fn etag(bytes: &[u8]) -> String {
    // FNV-1a: stable, and enough to tell documents apart in a test.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("\"{h:016x}\"")
}

impl MispServer {
    /// A server holding the fixtures: restSearch rows from the two API
    /// events, the MISP feed folder, the STIX bundles, and a TAXII
    /// collection of the bundle's objects.
    pub fn start() -> MispServer {
        MispServer::with(MispServer::fixtures())
    }

    /// What [`MispServer::start`] serves.
    pub fn fixtures() -> Inner {
        let mut rows = rows_of_event(&read_json("misp-api/event_with_sightings.json"));
        rows.extend(rows_of_event(&read_json(
            "misp-api/event_view_sednit_domain-ip_objects.json",
        )));
        let mut feed = BTreeMap::new();
        for entry in std::fs::read_dir(Path::new(FIXTURES).join("misp-feed")).expect("fixtures") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            feed.insert(name, std::fs::read(entry.path()).expect("read"));
        }
        let bundle =
            std::fs::read(Path::new(FIXTURES).join("stix21/misp_attributes_as_stix21_bundle.json"))
                .expect("bundle");
        let mut taxii = Vec::new();
        let mut objects: Vec<Value> =
            read_json("stix21/misp_attributes_as_stix21_bundle.json")["objects"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        objects.extend(
            read_json("stix21/sighting-of-an-indicator.json")["objects"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        for (i, o) in objects.into_iter().enumerate() {
            taxii.push(TaxiiObject {
                date_added: format!("2024-01-01T00:00:{:02}.000Z", i),
                object: o,
            });
        }
        let wl = read_json("warninglists/url-shortener.json");
        let warninglist = wl["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        Inner {
            rows,
            feed,
            bundle,
            taxii,
            keys: vec!["0123456789abcdef0123456789abcdef01234567".into()],
            taxii_keys: Vec::new(),
            feed_protected: false,
            warninglist,
            fault: Fault::None,
            requests: Vec::new(),
            sightings: Vec::new(),
        }
    }

    /// [`MispServer::start`] over HTTPS with this TLS setup.
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> MispServer {
        MispServer::serve(MispServer::fixtures(), Some(tls))
    }

    pub fn with(inner: Inner) -> MispServer {
        MispServer::serve(inner, None)
    }

    fn serve(inner: Inner, tls: Option<Arc<rustls::ServerConfig>>) -> MispServer {
        let is_tls = tls.is_some();
        let state = Arc::new(State(Mutex::new(inner)));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                let _ = addr_tx.send(addr);
                let app = router(st.clone());
                let shutdown = async {
                    let _ = rx.await;
                };
                match tls {
                    None => {
                        let listener = FaultyListener {
                            inner: listener,
                            state: st,
                        };
                        let _ = axum::serve(listener, app)
                            .with_graceful_shutdown(shutdown)
                            .await;
                    }
                    Some(config) => {
                        let listener = TlsListener {
                            inner: FaultyListener {
                                inner: listener,
                                state: st,
                            },
                            acceptor: tokio_rustls::TlsAcceptor::from(config),
                        };
                        let _ = axum::serve(listener, app)
                            .with_graceful_shutdown(shutdown)
                            .await;
                    }
                }
            });
            // Streaming handlers may still run; do not wait for them.
            rt.shutdown_background();
        });
        let addr = addr_rx.recv().expect("server address");
        MispServer {
            addr,
            state,
            tls: is_tls,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    pub fn key(&self) -> String {
        self.state.lock().keys[0].clone()
    }

    /// Make the `/feed/` folder answer 403 without a valid key.
    pub fn protect_feed(&self) {
        self.state.lock().feed_protected = true;
    }

    pub fn set_fault(&self, f: Fault) {
        self.state.lock().fault = f;
    }

    /// Sightings MISP has stored so far.
    pub fn sightings(&self) -> Vec<StoredSighting> {
        self.state.lock().sightings.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().requests.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn clear_requests(&self) {
        self.state.lock().requests.clear();
    }
}

/// A listener that resets connections in [`Fault::Reset`] mode.
struct FaultyListener {
    inner: tokio::net::TcpListener,
    state: Arc<State>,
}

impl axum::serve::Listener for FaultyListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if self.state.lock().fault != Fault::Reset {
                return (stream, addr);
            }
            // Let the request arrive, then close with RST (linger 0).
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.readable()).await;
            let _ = stream.try_read(&mut buf);
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A [`FaultyListener`] that speaks TLS; a client whose handshake fails
/// (an unknown CA, no client certificate where one is required) is dropped.
struct TlsListener {
    inner: FaultyListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = self.inner.accept().await;
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.inner.local_addr()
    }
}

fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/attributes/restSearch", post(rest_search))
        .route("/sightings/add", post(sightings_add))
        .route("/feed/{file}", get(feed_file))
        .route("/stix/bundle.json", get(stix_bundle))
        .route("/taxii2/", get(taxii_discovery))
        .route("/api1/", get(taxii_api_root))
        .route("/api1/collections/", get(taxii_collections))
        .route("/api1/collections/{id}/", get(taxii_collection))
        .route("/api1/collections/{id}/objects/", get(taxii_objects))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_and_fault,
        ))
        .with_state(state)
}

/// Record every request; apply the fault mode before any handler runs.
async fn record_and_fault(AxState(st): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let fault = {
        let mut s = st.lock();
        s.requests.push(Recorded {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
            body: body.to_vec(),
        });
        s.fault
    };
    match fault {
        Fault::None | Fault::Reset => {}
        Fault::Status500 => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
        }
        Fault::Slow(d) => tokio::time::sleep(d).await,
        Fault::Huge(n) => return huge(n),
        Fault::Malformed => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"response": {"Attribute": [{"type": "domain", "value": "#,
            )
                .into_response();
        }
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

static SPACES: [u8; 64 * 1024] = [b' '; 64 * 1024];

fn huge(total: u64) -> Response {
    let start = futures_util::stream::once(async {
        Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{\"response\": {\"Attribute\": ["))
    });
    let rest = futures_util::stream::unfold(total, |left| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(SPACES.len() as u64) as usize;
        Some((
            Ok::<Bytes, std::io::Error>(Bytes::from_static(&SPACES[..n])),
            left - n as u64,
        ))
    });
    use futures_util::StreamExt;
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(start.chain(rest)),
    )
        .into_response()
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------- restSearch

fn authorised(headers: &HeaderMap, keys: &[String]) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .or_else(|| headers.get("x-misp-auth"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // MISP ignores Basic auth here and accepts comma-separated keys.
    !given.starts_with("Basic")
        && given
            .split(',')
            .any(|k| keys.iter().any(|good| good == k.trim()))
}

/// 0/1, "0"/"1", bools, or a list of them -> the allowed values.
fn flag_values(v: &Value) -> Option<Vec<bool>> {
    let one = |v: &Value| match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) if s == "exclude" => Some(false),
        Value::String(s) if s == "only" => Some(true),
        Value::String(s) => s.parse::<u64>().ok().map(|n| n != 0),
        _ => None,
    };
    match v {
        Value::Array(items) => Some(items.iter().filter_map(one).collect()),
        Value::Null => None,
        other => one(other).map(|b| vec![b]),
    }
}

/// A row's own flag (MISP's database holds 0/1; the JSON may say either).
fn flag(v: &Value) -> bool {
    flag_values(v).is_some_and(|f| f == [true])
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn tag_names(tags: &[Value]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

async fn rest_search(
    AxState(st): AxState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = st.lock();
    if !authorised(&headers, &s.keys) {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"name": AUTH_FAILED, "message": AUTH_FAILED, "url": "/attributes/restSearch"}),
        );
    }
    let Ok(mut q) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"name": "Either specify the search terms in the url, or POST a json with the filter parameters.",
                    "message": "Either specify the search terms in the url, or POST a json with the filter parameters.",
                    "url": "/attributes/restSearch"}),
        );
    };
    if let Some(inner) = q.get("request").cloned() {
        q = inner;
    }
    let format = q["returnFormat"].as_str().unwrap_or("json");
    if format != "json" {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"name": "Invalid output format.", "message": "Invalid output format.", "url": "/attributes/restSearch"}),
        );
    }
    let types: Option<Vec<String>> = match &q["type"] {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    };
    let to_ids = flag_values(&q["to_ids"]);
    let published = flag_values(&q["published"]);
    let deleted = flag_values(&q["deleted"]).unwrap_or(vec![false]);
    let since = as_u64(&q["timestamp"]);
    let (tags_or, tags_not): (Vec<String>, Vec<String>) = match &q["tags"] {
        Value::Array(a) => {
            let all: Vec<String> = a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect();
            (
                all.iter()
                    .filter(|t| !t.starts_with('!'))
                    .cloned()
                    .collect(),
                all.iter()
                    .filter_map(|t| t.strip_prefix('!').map(str::to_string))
                    .collect(),
            )
        }
        Value::Object(m) => {
            let list = |k: &str| -> Vec<String> {
                m.get(k)
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            };
            (list("OR"), list("NOT"))
        }
        _ => (Vec::new(), Vec::new()),
    };
    let enforce_wl = flag_values(&q["enforceWarninglist"]).is_some_and(|v| v == [true]);
    let include_event_uuid = flag_values(&q["includeEventUuid"]).is_some_and(|v| v == [true]);
    let include_event_tags = flag_values(&q["includeEventTags"]).is_some_and(|v| v == [true]);

    let matching: Vec<Value> = s
        .rows
        .iter()
        .filter(|r| {
            let a = &r.attribute;
            let t = a["type"].as_str().unwrap_or("");
            let attr_tags = tag_names(a["Tag"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            let all_tags: Vec<String> = attr_tags
                .iter()
                .cloned()
                .chain(tag_names(&r.event_tags))
                .collect();
            let value = a["value"].as_str().unwrap_or("");
            types.as_ref().is_none_or(|ts| ts.iter().any(|x| x == t))
                && to_ids
                    .as_ref()
                    .is_none_or(|v| v.contains(&flag(&a["to_ids"])))
                && published
                    .as_ref()
                    .is_none_or(|v| v.contains(&r.event_published))
                && deleted.contains(&flag(&a["deleted"]))
                && since.is_none_or(|ts| as_u64(&a["timestamp"]).unwrap_or(0) >= ts)
                && (tags_or.is_empty() || tags_or.iter().any(|x| all_tags.contains(x)))
                && !tags_not.iter().any(|x| all_tags.contains(x))
                && !(enforce_wl
                    && s.warninglist.iter().any(|w| {
                        let host = value.split('|').next().unwrap_or("");
                        host == w || host.ends_with(&format!(".{w}"))
                    }))
        })
        .map(|r| {
            let mut a = r.attribute.clone();
            if let Some(m) = a.as_object_mut() {
                if include_event_uuid {
                    m.insert("event_uuid".into(), json!(r.event_uuid));
                }
                if include_event_tags {
                    let mut tags = m
                        .get("Tag")
                        .and_then(|t| t.as_array().cloned())
                        .unwrap_or_default();
                    for t in &r.event_tags {
                        let mut t = t.clone();
                        if let Some(tm) = t.as_object_mut() {
                            tm.insert("inherited".into(), json!(1));
                        }
                        tags.push(t);
                    }
                    m.insert("Tag".into(), Value::Array(tags));
                }
            }
            a
        })
        .collect();
    let page_rows: Vec<Value> = match as_u64(&q["limit"]) {
        Some(limit) if limit > 0 => {
            let page = as_u64(&q["page"]).unwrap_or(1).max(1);
            matching
                .into_iter()
                .skip(((page - 1) * limit) as usize)
                .take(limit as usize)
                .collect()
        }
        _ => matching,
    };
    let n = page_rows.len();
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"response": {"Attribute": page_rows}}),
    );
    let h = resp.headers_mut();
    h.insert("x-result-count", HeaderValue::from(n));
    h.insert("x-response-format", HeaderValue::from_static("json"));
    resp
}

// ---------------------------------------------------------------- feed + STIX

fn conditional_file(headers: &HeaderMap, bytes: Option<Vec<u8>>) -> Response {
    let Some(bytes) = bytes else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let tag = etag(&bytes);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(tag.as_str())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::ETAG, tag),
        ],
        bytes,
    )
        .into_response()
}

async fn feed_file(
    AxState(st): AxState<Arc<State>>,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let s = st.lock();
    if s.feed_protected && !authorised(&headers, &s.keys) {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"name": AUTH_FAILED, "message": AUTH_FAILED, "url": format!("/feed/{file}")}),
        );
    }
    let bytes = s.feed.get(&file).cloned();
    drop(s);
    conditional_file(&headers, bytes)
}

async fn stix_bundle(AxState(st): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    let bytes = st.lock().bundle.clone();
    conditional_file(&headers, Some(bytes))
}

// ---------------------------------------------------------------- TAXII 2.1

fn taxii(status: StatusCode, v: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, TAXII_MEDIA)], v.to_string()).into_response()
}

/// TAXII checks: the media type in Accept, and the key when keys are set.
fn taxii_refused(headers: &HeaderMap, st: &Inner) -> Option<Response> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.contains("application/taxii+json") {
        return Some(taxii(
            StatusCode::NOT_ACCEPTABLE,
            &json!({"title": "Not Acceptable", "http_status": "406"}),
        ));
    }
    if !st.taxii_keys.is_empty() {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ok = auth
            .strip_prefix("Bearer ")
            .is_some_and(|k| st.taxii_keys.iter().any(|g| g == k));
        if !ok {
            return Some(taxii(
                StatusCode::UNAUTHORIZED,
                &json!({"title": "Unauthorized", "http_status": "401"}),
            ));
        }
    }
    None
}

fn collection_json() -> Value {
    json!({"id": COLLECTION, "title": "schild test indicators", "can_read": true, "can_write": false,
           "media_types": ["application/stix+json;version=2.1"]})
}

async fn taxii_discovery(AxState(st): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    if let Some(r) = taxii_refused(&headers, &st.lock()) {
        return r;
    }
    taxii(
        StatusCode::OK,
        &json!({"title": "schild test TAXII", "default": "/api1/", "api_roots": ["/api1/"]}),
    )
}

async fn taxii_api_root(AxState(st): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    if let Some(r) = taxii_refused(&headers, &st.lock()) {
        return r;
    }
    taxii(
        StatusCode::OK,
        &json!({"title": "api1", "versions": [TAXII_MEDIA], "max_content_length": 10_485_760}),
    )
}

async fn taxii_collections(AxState(st): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    if let Some(r) = taxii_refused(&headers, &st.lock()) {
        return r;
    }
    taxii(StatusCode::OK, &json!({"collections": [collection_json()]}))
}

async fn taxii_collection(
    AxState(st): AxState<Arc<State>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = taxii_refused(&headers, &st.lock()) {
        return r;
    }
    if id != COLLECTION {
        return taxii(
            StatusCode::NOT_FOUND,
            &json!({"title": "Not Found", "http_status": "404"}),
        );
    }
    taxii(StatusCode::OK, &collection_json())
}

async fn taxii_objects(
    AxState(st): AxState<Arc<State>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let s = st.lock();
    if let Some(r) = taxii_refused(&headers, &s) {
        return r;
    }
    if id != COLLECTION {
        return taxii(
            StatusCode::NOT_FOUND,
            &json!({"title": "Not Found", "http_status": "404"}),
        );
    }
    let q: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let types: Option<Vec<&str>> = q.get("match[type]").map(|t| t.split(',').collect());
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .max(1);
    let start: usize = q.get("next").and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut objs: Vec<&TaxiiObject> = s
        .taxii
        .iter()
        .filter(|o| {
            q.get("added_after")
                .is_none_or(|a| o.date_added.as_str() > a.as_str())
        })
        .filter(|o| {
            types
                .as_ref()
                .is_none_or(|ts| ts.contains(&o.object["type"].as_str().unwrap_or("")))
        })
        .collect();
    objs.sort_by(|a, b| a.date_added.cmp(&b.date_added));
    let page: Vec<&TaxiiObject> = objs.iter().skip(start).take(limit).copied().collect();
    let more = start + page.len() < objs.len();
    let mut body =
        json!({"more": more, "objects": page.iter().map(|o| o.object.clone()).collect::<Vec<_>>()});
    if more {
        body["next"] = json!((start + page.len()).to_string());
    }
    let mut resp = taxii(StatusCode::OK, &body);
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&first.date_added) {
            h.insert("x-taxii-date-added-first", v);
        }
        if let Ok(v) = HeaderValue::from_str(&last.date_added) {
            h.insert("x-taxii-date-added-last", v);
        }
    }
    resp
}

// ---------------------------------------------------------------- sightings

/// `POST /sightings/add` as SightingsController::add and
/// Sighting::saveSightings behave (misp.md §5): the body may be plain or
/// wrapped in `{"request":…}` / `{"Sighting":…}`; `uuid` (36 characters)
/// targets one attribute, `values` every attribute whose value (or either
/// half of a composite value) equals one of them, soft-deleted included;
/// `type` must be 0, 1 or 2; errors are HTTP 200 with a `message`.
async fn sightings_add(
    AxState(st): AxState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = st.lock();
    if !authorised(&headers, &s.keys) {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"name": AUTH_FAILED, "message": AUTH_FAILED, "url": "/sightings/add"}),
        );
    }
    let mut req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    for wrapper in ["request", "Sighting"] {
        if let Some(inner) = req.get(wrapper).cloned() {
            req = inner;
        }
    }
    let fail = |reason: &str| {
        json_response(
            StatusCode::OK,
            &json!({"message": format!("Could not add the Sighting. Reason: {reason}")}),
        )
    };
    let kind = match req.get("type") {
        None => "0".to_string(),
        Some(Value::String(t)) => t.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => String::new(),
    };
    if !["0", "1", "2"].contains(&kind.as_str()) {
        return fail("Invalid type, please change it before you POST 1000000 sightings.");
    }
    let mut values: Vec<String> = Vec::new();
    if let Some(v) = req.get("value").and_then(Value::as_str) {
        values.push(v.to_string());
    }
    if let Some(vs) = req.get("values").and_then(Value::as_array) {
        values.extend(vs.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    let uuid = req.get("uuid").and_then(Value::as_str).map(str::to_string);
    if uuid.is_none() && values.is_empty() {
        return fail("No valid attributes found.");
    }
    let matched: Vec<(String, String)> = s
        .rows
        .iter()
        .filter(|r| {
            let a = &r.attribute;
            match &uuid {
                Some(u) if u.len() == 36 => a["uuid"].as_str() == Some(u.as_str()),
                Some(_) => false,
                None => {
                    let v = a["value"].as_str().unwrap_or("");
                    let parts: Vec<&str> = match v.split_once('|') {
                        Some((x, y)) => vec![x, y],
                        None => vec![v],
                    };
                    values.iter().any(|want| parts.contains(&want.as_str()))
                }
            }
        })
        .map(|r| {
            (
                r.attribute["uuid"].as_str().unwrap_or("").to_string(),
                r.event_uuid.clone(),
            )
        })
        .collect();
    if matched.is_empty() {
        return fail("No valid attributes found that match the criteria.");
    }
    let source = req
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    let date_sighting = match req.get("timestamp") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(t)) => t.parse().unwrap_or(0),
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    for (attribute_uuid, event_uuid) in &matched {
        s.sightings.push(StoredSighting {
            attribute_uuid: attribute_uuid.clone(),
            event_uuid: event_uuid.clone(),
            kind: kind.clone(),
            source: source.clone(),
            date_sighting,
        });
    }
    let id = s.sightings.len();
    let last = &matched[matched.len() - 1];
    // Only the last sighting created is returned over REST.
    json_response(
        StatusCode::OK,
        &json!({"Sighting": {
            "id": id.to_string(), "attribute_id": "1", "event_id": "1", "org_id": "1",
            "date_sighting": date_sighting.to_string(), "uuid": format!("5a74745a-a190-4d04-b719-{:012}", id),
            "source": source, "type": kind, "attribute_uuid": last.0,
        }}),
    )
}
