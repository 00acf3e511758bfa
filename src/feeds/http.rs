//! HTTP for every feed reader: one place that decides timeouts, the size
//! cap, retries and TLS.
//!
//! Feed servers are outside our control: they hang, reset connections,
//! answer 502 for a minute during a deploy, or send a body that never ends.
//! Every request here therefore has a connect timeout and a total timeout,
//! reads the body in chunks and stops as soon as it passes the feed's
//! `max_bytes` (so a hostile server cannot make us buffer more than the
//! cap), and retries what is worth retrying (connect errors, timeouts, 5xx,
//! 429) with jittered exponential backoff. Other 4xx answers are final: a
//! wrong API key does not get better by asking again.
//!
//! The client itself (TLS, User-Agent, redirects) is [`crate::http`]'s, the
//! one policy for everything schild sends out. API keys travel in headers
//! marked sensitive and never appear in an error: errors name the URL
//! without its query and user info.

use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::FeedError;
use crate::config::{FeedConfig, Secret};
pub use crate::http::redact;
use crate::http::{TlsClient, client};

/// First retry delay; doubled per attempt, with jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// No retry waits longer than this, whatever `Retry-After` says.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Validators of a cached copy, for conditional GETs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    fn from_headers(h: &HeaderMap) -> Validators {
        let get = |n: HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        Validators {
            etag: get(header::ETAG),
            last_modified: get(header::LAST_MODIFIED),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// One request.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    /// Send `If-None-Match` / `If-Modified-Since` from these.
    pub validators: Option<Validators>,
}

impl Request {
    pub fn get(url: Url) -> Request {
        Request {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            validators: None,
        }
    }

    pub fn post_json(url: Url, body: Vec<u8>) -> Request {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Request {
            method: Method::POST,
            url,
            headers,
            body: Some(body),
            validators: None,
        }
    }

    pub fn accept(mut self, media_type: &'static str) -> Request {
        self.headers
            .insert(header::ACCEPT, HeaderValue::from_static(media_type));
        self
    }

    /// `Authorization: <prefix><key>`, marked sensitive. A key that cannot
    /// be a header value is an error that does not show the key.
    pub fn authorization(mut self, prefix: &str, key: &Secret) -> Result<Request, FeedError> {
        let mut v = HeaderValue::from_str(&format!("{prefix}{}", key.expose())).map_err(|_| {
            FeedError::Http {
                url: redact(&self.url),
                message: "the API key contains characters that cannot be sent in an HTTP header (a stray newline in the key file?)".into(),
            }
        })?;
        v.set_sensitive(true);
        self.headers.insert(header::AUTHORIZATION, v);
        Ok(self)
    }

    pub fn conditional(mut self, validators: Option<Validators>) -> Request {
        self.validators = validators.filter(|v| !v.is_empty());
        self
    }
}

/// What a request gave.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the cached copy is current.
    NotModified,
    Body {
        bytes: Vec<u8>,
        validators: Validators,
        headers: HeaderMap,
    },
}

/// A client for one feed: its timeouts, cap and retry budget.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    max_bytes: u64,
    retries: u32,
    timeout: Duration,
}

impl Http {
    pub fn for_feed(feed: &FeedConfig) -> Result<Http, FeedError> {
        Http::new(feed.timeout, feed.max_bytes, feed.retries, &feed.tls)
    }

    pub fn new(
        timeout: Duration,
        max_bytes: u64,
        retries: u32,
        tls: &TlsClient,
    ) -> Result<Http, FeedError> {
        let client = client(timeout, tls)?;
        Ok(Http {
            client,
            max_bytes,
            retries,
            timeout,
        })
    }

    /// Send a request, retrying what is worth retrying.
    pub async fn send(&self, req: &Request) -> Result<Fetched, FeedError> {
        let mut attempt = 0u32;
        loop {
            match self.once(req).await {
                Ok(f) => return Ok(f),
                Err(Failure { error, retry_after }) => {
                    if attempt >= self.retries || !retryable(&error) {
                        return Err(error);
                    }
                    let wait = retry_after.unwrap_or_else(|| backoff(attempt));
                    tracing::warn!(url = %redact(&req.url), attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %error, "feed request failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn once(&self, req: &Request) -> Result<Fetched, Failure> {
        let shown = redact(&req.url);
        let mut b = self
            .client
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        if let Some(v) = &req.validators {
            if let Some(etag) = v
                .etag
                .as_deref()
                .and_then(|e| HeaderValue::from_str(e).ok())
            {
                b = b.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = v
                .last_modified
                .as_deref()
                .and_then(|e| HeaderValue::from_str(e).ok())
            {
                b = b.header(header::IF_MODIFIED_SINCE, lm);
            }
        }
        if let Some(body) = &req.body {
            b = b.body(body.clone());
        }
        let mut resp = b.send().await.map_err(|e| self.transport(&shown, &e))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED && req.validators.is_some() {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            let retry_after = if status == StatusCode::TOO_MANY_REQUESTS {
                resp.headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s).min(BACKOFF_MAX))
            } else {
                None
            };
            // A little of the body says why (MISP puts a `message` there);
            // never more than a few KiB of it.
            let mut detail = Vec::new();
            while detail.len() < 4096 {
                match resp.chunk().await {
                    Ok(Some(c)) => detail.extend_from_slice(&c),
                    _ => break,
                }
            }
            return Err(Failure {
                error: status_error(&shown, status, &detail, req),
                retry_after,
            });
        }
        if let Some(len) = resp.content_length()
            && len > self.max_bytes
        {
            return Err(FeedError::TooLarge {
                what: format!("{shown} (Content-Length {len})"),
                limit: self.max_bytes,
            }
            .into());
        }
        let headers = resp.headers().clone();
        let validators = Validators::from_headers(&headers);
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if bytes.len() as u64 + c.len() as u64 > self.max_bytes {
                        // Dropping `resp` closes the connection: the rest
                        // of the body is never read.
                        return Err(FeedError::TooLarge {
                            what: shown,
                            limit: self.max_bytes,
                        }
                        .into());
                    }
                    bytes.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport(&shown, &e)),
            }
        }
        Ok(Fetched::Body {
            bytes,
            validators,
            headers,
        })
    }

    fn transport(&self, url: &str, e: &reqwest::Error) -> Failure {
        let error = if e.is_timeout() {
            FeedError::Timeout {
                url: url.to_string(),
                secs: self.timeout.as_secs(),
            }
        } else {
            FeedError::Http {
                url: url.to_string(),
                message: chain(e),
            }
        };
        error.into()
    }
}

struct Failure {
    error: FeedError,
    retry_after: Option<Duration>,
}

impl From<FeedError> for Failure {
    fn from(error: FeedError) -> Failure {
        Failure {
            error,
            retry_after: None,
        }
    }
}

fn retryable(e: &FeedError) -> bool {
    match e {
        FeedError::Timeout { .. } | FeedError::Http { .. } => true,
        FeedError::Status { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// 250 ms, 500 ms, 1 s, … times a random factor in [0.5, 1.5), capped.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(10));
    let jitter: f64 = rand::random::<f64>() + 0.5;
    base.mul_f64(jitter).min(BACKOFF_MAX)
}

fn status_error(url: &str, status: StatusCode, body: &[u8], req: &Request) -> FeedError {
    if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
        let hint = if req.headers.contains_key(header::AUTHORIZATION) {
            "the API key is probably wrong, expired, or belongs to a user without API access (check api_key_file / api_key_env)"
        } else {
            "the server wants credentials: set api_key_file or api_key_env for this feed"
        };
        return FeedError::Forbidden {
            url: url.to_string(),
            status: status.as_u16(),
            hint,
        };
    }
    FeedError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        detail: detail(body, req),
    }
}

/// The server's own words, if short and printable: MISP's `message`, or the
/// start of the body. Anything that contains the request's credentials is
/// cut out.
fn detail(body: &[u8], req: &Request) -> String {
    #[derive(Deserialize)]
    struct Msg {
        message: Option<String>,
    }
    let text = match serde_json::from_slice::<Msg>(body) {
        Ok(Msg { message: Some(m) }) => m,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let mut text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if let Some(auth) = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let key = auth.rsplit(' ').next().unwrap_or(auth);
        if !key.is_empty() && text.contains(key) {
            text = text.replace(key, "<redacted>");
        }
    }
    text.trim().to_string()
}

/// An error and its causes, without the URL that reqwest's own `Display`
/// would add (it can carry a query string).
fn chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = String::from(if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else if e.is_redirect() {
        "redirect refused"
    } else if e.is_request() {
        "sending the request failed"
    } else {
        "request failed"
    });
    let mut src = e.source();
    while let Some(cause) = src {
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = cause.source();
    }
    s
}
