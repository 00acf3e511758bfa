//! Feed readers: pull indicators from where they live and hand them to the
//! compiler.
//!
//! A pull has two halves. [`Puller::pull`] fetches a feed (file or HTTP),
//! parses it completely into a [`Pulled`] value and, only once it parsed,
//! keeps the raw documents in `state_dir/feeds/<name>/` as the feed's last
//! good copy. [`Pulled::push_into`] then gives the indicators to a
//! [`Compiler`]. When a fetch or parse fails, [`Puller::cached`] reads the
//! last good copy instead, so one broken feed never empties the list.

pub mod plain;

use std::path::{Path, PathBuf};

use crate::config::{FeedConfig, FeedKind, Location};
use crate::policy::{Compiler, FeedId};

/// Why a feed could not be pulled.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is larger than the {limit}-byte cap")]
    TooLarge { what: String, limit: u64 },
    #[error("{what} is not valid: {message}")]
    Format { what: String, message: String },
    #[error("fetching {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("{feed}: feed type {kind} is not supported yet")]
    Unsupported { feed: String, kind: &'static str },
}

/// A feed's content, parsed and ready to push.
#[derive(Debug)]
pub enum Pulled {
    /// A plain list (`domains`, `hosts`, `rpz`): bytes, read line by line
    /// when pushed, so ten million lines are never ten million strings.
    Lines { kind: FeedKind, bytes: Vec<u8> },
}

impl Pulled {
    /// Give every indicator to the compiler under feed id `feed`.
    pub fn push_into(&self, feed: FeedId, compiler: &mut Compiler) {
        match self {
            Pulled::Lines { kind, bytes } => plain::push_lines(*kind, bytes, feed, compiler),
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
        match (feed.kind, &feed.location) {
            (FeedKind::Domains | FeedKind::Hosts | FeedKind::Rpz, Location::Path(p)) => {
                let bytes = read_capped(p, feed.max_bytes)?;
                let pulled = Pulled::Lines {
                    kind: feed.kind,
                    bytes,
                };
                self.keep(feed, &pulled)?;
                Ok(pulled)
            }
            (kind, _) => Err(FeedError::Unsupported {
                feed: feed.name.clone(),
                kind: kind.as_str(),
            }),
        }
    }

    /// The last good copy, if there is one.
    pub fn cached(&self, feed: &FeedConfig) -> Result<Option<(Pulled, u64)>, FeedError> {
        let path = self.cache_dir(feed).join("list");
        match std::fs::metadata(&path) {
            Ok(m) => {
                let at = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let bytes = read_capped(&path, feed.max_bytes)?;
                Ok(Some((
                    Pulled::Lines {
                        kind: feed.kind,
                        bytes,
                    },
                    at,
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FeedError::Io { path, source }),
        }
    }

    fn keep(&self, feed: &FeedConfig, pulled: &Pulled) -> Result<(), FeedError> {
        let dir = self.cache_dir(feed);
        let Pulled::Lines { bytes, .. } = pulled;
        let path = dir.join("list");
        crate::policy::artifact::write_atomic(&path, bytes).map_err(|e| FeedError::Io {
            path,
            source: std::io::Error::other(e.to_string()),
        })
    }
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
