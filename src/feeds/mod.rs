//! Feed readers: pull indicators from where they live and hand them to the
//! compiler.
//!
//! A pull has two halves. [`Puller::pull`] fetches a feed (file or HTTP),
//! parses it completely into a [`Pulled`] value and, only once it parsed,
//! keeps the raw documents in `state_dir/feeds/<name>/` as the feed's last
//! good copy. [`Pulled::push_into`] then gives the indicators to a
//! [`Compiler`]. When a fetch or parse fails, [`Puller::cached`] reads the
//! last good copy instead, so one broken feed never empties the list.

pub mod http;
mod lenient;
pub mod misp;
pub mod misp_api;
pub mod plain;
pub mod stix;
pub mod taxii;

use std::path::{Path, PathBuf};

use crate::config::{FeedConfig, FeedKind, Location};
use crate::policy::{Compiler, FeedId};

/// Why a feed could not be pulled. Messages name the file or URL (without
/// credentials) and what was expected; they never contain an API key.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is larger than the {limit}-byte cap (max_bytes)")]
    TooLarge { what: String, limit: u64 },
    #[error("{what} is not valid: {message}")]
    Format { what: String, message: String },
    #[error("fetching {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("fetching {url} timed out after {secs} s (timeout_secs)")]
    Timeout { url: String, secs: u64 },
    #[error("{url} answered HTTP {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url} refused access (HTTP {status}): {hint}")]
    Forbidden {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("cannot keep the last good copy in {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A feed's content, parsed completely and ready to push. Nothing is kept
/// or pushed before a whole pull parsed, so a malformed document never
/// half-applies.
#[derive(Debug)]
pub enum Pulled {
    /// A plain list (`domains`, `hosts`, `rpz`): bytes, read line by line
    /// when pushed, so ten million lines are never ten million strings.
    Lines { kind: FeedKind, bytes: Vec<u8> },
    /// MISP events (`misp-feed`).
    MispEvents(Vec<misp::Event>),
    /// restSearch attributes (`misp-api`), merged across pulls.
    MispAttributes(Vec<misp_api::ApiAttribute>),
    /// STIX 2.1 objects (`stix`, `taxii`).
    Stix(stix::StixSet),
}

impl Pulled {
    /// Give every indicator to the compiler under feed id `feed`.
    pub fn push_into(&self, feed: FeedId, compiler: &mut Compiler) {
        match self {
            Pulled::Lines { kind, bytes } => plain::push_lines(*kind, bytes, feed, compiler),
            Pulled::MispEvents(events) => misp::push_events(events, feed, compiler),
            Pulled::MispAttributes(attrs) => misp_api::push_attributes(attrs, feed, compiler),
            Pulled::Stix(set) => stix::push_set(set, feed, compiler),
        }
    }
}

/// Fetches feeds and keeps their last good copies under `state_dir/feeds`.
#[derive(Debug, Clone)]
pub struct Puller {
    state_dir: PathBuf,
}

impl Puller {
    pub fn new(state_dir: &Path) -> Puller {
        Puller {
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// Folder holding a feed's last good copy.
    pub fn cache_dir(&self, feed: &FeedConfig) -> PathBuf {
        self.state_dir.join("feeds").join(&feed.name)
    }

    /// Fetch and parse a feed; on success its documents become the last good copy.
    pub async fn pull(&self, feed: &FeedConfig) -> Result<Pulled, FeedError> {
        let dir = self.cache_dir(feed);
        match (feed.kind, &feed.location) {
            (FeedKind::Domains | FeedKind::Hosts | FeedKind::Rpz, loc) => {
                let bytes = match loc {
                    Location::Path(p) => read_capped(p, feed.max_bytes)?,
                    Location::Url(u) => fetch_list(feed, u, &dir).await?,
                };
                write_cache(&dir.join("list"), &bytes)?;
                Ok(Pulled::Lines {
                    kind: feed.kind,
                    bytes,
                })
            }
            (FeedKind::MispFeed, _) => Ok(Pulled::MispEvents(misp::pull(feed, &dir).await?)),
            (FeedKind::MispApi, _) => Ok(Pulled::MispAttributes(misp_api::pull(feed, &dir).await?)),
            (FeedKind::Stix, _) => Ok(Pulled::Stix(stix::pull(feed, &dir).await?)),
            (FeedKind::Taxii, _) => Ok(Pulled::Stix(taxii::pull(feed, &dir).await?)),
        }
    }

    /// The last good copy and when it was kept (Unix seconds), if there is one.
    pub fn cached(&self, feed: &FeedConfig) -> Result<Option<(Pulled, u64)>, FeedError> {
        let dir = self.cache_dir(feed);
        Ok(match feed.kind {
            FeedKind::Domains | FeedKind::Hosts | FeedKind::Rpz => {
                let path = dir.join("list");
                read_cache(&path, feed.max_bytes)?.map(|bytes| {
                    (
                        Pulled::Lines {
                            kind: feed.kind,
                            bytes,
                        },
                        mtime(&path),
                    )
                })
            }
            FeedKind::MispFeed => {
                misp::cached(feed, &dir)?.map(|(e, t)| (Pulled::MispEvents(e), t))
            }
            FeedKind::MispApi => {
                misp_api::cached(feed, &dir)?.map(|(a, t)| (Pulled::MispAttributes(a), t))
            }
            FeedKind::Stix => stix::cached(feed, &dir)?.map(|(s, t)| (Pulled::Stix(s), t)),
            FeedKind::Taxii => taxii::cached(feed, &dir)?.map(|(s, t)| (Pulled::Stix(s), t)),
        })
    }
}

/// A plain list over HTTP, with a conditional GET against the kept copy.
async fn fetch_list(
    feed: &FeedConfig,
    url: &reqwest::Url,
    dir: &Path,
) -> Result<Vec<u8>, FeedError> {
    let client = http::Http::for_feed(feed)?;
    let list = dir.join("list");
    let vpath = dir.join("list.http.json");
    let old = read_cache(&vpath, 64 * 1024)?
        .and_then(|b| serde_json::from_slice::<http::Validators>(&b).ok())
        .filter(|_| list.exists());
    let mut req = http::Request::get(url.clone())
        .accept("text/plain, */*")
        .conditional(old);
    if let Some(key) = &feed.api_key {
        req = req.authorization("Bearer ", key)?;
    }
    match client.send(&req).await? {
        http::Fetched::NotModified => Ok(read_cache(&list, feed.max_bytes)?.unwrap_or_default()),
        http::Fetched::Body {
            bytes, validators, ..
        } => {
            let v = serde_json::to_vec(&validators).unwrap_or_default();
            write_cache(&vpath, &v)?;
            Ok(bytes)
        }
    }
}

/// Write a cache file atomically (temp file + rename in the same folder).
pub(crate) fn write_cache(path: &Path, bytes: &[u8]) -> Result<(), FeedError> {
    crate::fs::write_atomic(path, bytes).map_err(|source| FeedError::Cache {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a cache file; `None` when there is none.
pub(crate) fn read_cache(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, FeedError> {
    match read_capped(path, limit) {
        Ok(b) => Ok(Some(b)),
        Err(FeedError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Read one of schild's own JSON caches: `None` when there is none, an
/// error naming the file and `what` was expected when it does not parse.
pub(crate) fn read_json_cache<T: serde::de::DeserializeOwned>(
    path: &Path,
    limit: u64,
    what: &str,
) -> Result<Option<T>, FeedError> {
    let Some(bytes) = read_cache(path, limit)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| FeedError::Format {
            what: path.display().to_string(),
            message: format!("expected {what}: {e}"),
        })
}

/// A file's modification time in Unix seconds (0 if unknown).
pub(crate) fn mtime(path: &Path) -> u64 {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| m.modified().ok())
        .map(crate::clock::unix)
        .unwrap_or(0)
}

/// Read a local file, refusing files over `limit` bytes.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, FeedError> {
    let io = |source| FeedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > limit {
        return Err(FeedError::TooLarge {
            what: path.display().to_string(),
            limit,
        });
    }
    std::fs::read(path).map_err(io)
}
