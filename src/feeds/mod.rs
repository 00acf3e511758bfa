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
mod xfr;

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
    /// The feed's TLS files (`ca_file`, client certificate) are unusable.
    #[error("TLS: {0}")]
    Tls(#[from] crate::http::ClientError),
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
    #[error("{path} is not a regular file ({kind}); a feed file must be one")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("reading {path} timed out after {secs} s (timeout_secs)")]
    FileTimeout { path: PathBuf, secs: u64 },
    #[error("the new copy of {what} is refused ({}): {message}; the last good copy stays in use", reason.as_str())]
    Refused {
        what: String,
        reason: Rejection,
        message: String,
    },
}

/// Why a fetched copy that arrived whole was still not good enough to
/// replace the last good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No entry at all, from a feed whose last good copy had some.
    Empty,
    /// More than `max_shrink_percent` fewer entries than the last good copy.
    Shrink,
    /// Mostly lines that are not entries: an HTML page, binary data.
    Garbage,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Empty => "empty",
            Rejection::Shrink => "shrink",
            Rejection::Garbage => "garbage",
        }
    }
}

/// Every value [`FeedError::reason`] gives: the `reason` label of
/// `schild_feed_fetch_failures_total`, and the prefix of a failed fetch's
/// error text in a feed's report (see [`failure_text`]).
pub const FAILURE_REASONS: [&str; 8] = [
    "http",
    "timeout",
    "too_large",
    "io",
    "format",
    "empty",
    "shrink",
    "garbage",
];

impl FeedError {
    /// A short, bounded name for what went wrong (one of [`FAILURE_REASONS`]).
    pub fn reason(&self) -> &'static str {
        match self {
            FeedError::Io { .. } | FeedError::Cache { .. } | FeedError::NotAFile { .. } => "io",
            FeedError::TooLarge { .. } => "too_large",
            FeedError::Format { .. } => "format",
            FeedError::Http { .. }
            | FeedError::Tls(_)
            | FeedError::Status { .. }
            | FeedError::Forbidden { .. } => "http",
            FeedError::Timeout { .. } | FeedError::FileTimeout { .. } => "timeout",
            FeedError::Refused { reason, .. } => reason.as_str(),
        }
    }
}

/// The text a feed report keeps for a failed fetch: `<reason>: <error chain>`,
/// so the reason survives in the artifact and [`failure_reason`] reads it back.
pub fn failure_text(e: &FeedError) -> String {
    format!("{}: {}", e.reason(), crate::error::error_chain(e))
}

/// The reason of a failed fetch's report text (see [`failure_text`]);
/// `other` for a text from an older schild.
pub fn failure_reason(text: &str) -> &'static str {
    // `http://…` starts an older text: the reason is followed by ": ".
    let head = text.split_once(": ").map_or("", |(h, _)| h);
    FAILURE_REASONS
        .iter()
        .find(|r| **r == head)
        .copied()
        .unwrap_or("other")
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

/// Judges a new copy of a structured feed just before it would be kept
/// (see [`check_refresh`]); an error refuses it.
pub type Judge<'a> = &'a (dyn Fn(Census) -> Result<(), FeedError> + Sync);

impl Pulled {
    /// What this copy holds, to judge the next one by.
    pub fn census(&self) -> Census {
        match self {
            Pulled::Lines { kind, bytes } => plain::census(*kind, bytes),
            Pulled::MispEvents(events) => misp::census(events),
            Pulled::MispAttributes(attrs) => misp_api::census(attrs),
            Pulled::Stix(set) => stix::census(set),
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
                let list = dir.join("list");
                let (bytes, validators) = match loc {
                    Location::Path(p) => {
                        (read_feed_file(p, feed.max_bytes, feed.timeout).await?, None)
                    }
                    Location::Xfr { server, zone } => {
                        match xfr::fetch(feed, *server, zone, &dir).await? {
                            ListFetch::NotModified(bytes) => {
                                return Ok(Pulled::Lines {
                                    kind: feed.kind,
                                    bytes,
                                });
                            }
                            ListFetch::New { bytes, validators } => (bytes, Some(validators)),
                        }
                    }
                    Location::Url(u) => match fetch_list(feed, u, &dir).await? {
                        ListFetch::NotModified(bytes) => {
                            // The kept copy itself: it earned its place before.
                            return Ok(Pulled::Lines {
                                kind: feed.kind,
                                bytes,
                            });
                        }
                        ListFetch::New { bytes, validators } => (bytes, Some(validators)),
                    },
                };
                let kept = read_cache(&list, feed.max_bytes)?;
                if kept.as_deref() == Some(bytes.as_slice()) {
                    // The list in use, again (a file feed nobody changed,
                    // a server without validators): judged and kept
                    // before, so it is neither counted nor rewritten and
                    // fsynced; its time says it was confirmed now, which
                    // is what a later failure reports as `cached_at`.
                    confirm(&list);
                    if let Some(v) = validators {
                        write_cache(&dir.join("list.http.json"), &v)?;
                    }
                    return Ok(Pulled::Lines {
                        kind: feed.kind,
                        bytes,
                    });
                }
                let what = format!("feed {}", feed.name);
                let old = kept.map(|b| {
                    kept_entries(&list, &b).unwrap_or_else(|| plain::census(feed.kind, &b).entries)
                });
                let new = plain::census(feed.kind, &bytes);
                let entries = new.entries;
                check_refresh(&what, new, old, feed.max_shrink_percent)?;
                write_cache(&list, &bytes)?;
                keep_entries(&list, &bytes, entries);
                if let Some(v) = validators {
                    // Only for a copy that was kept: a refused one must be
                    // fetched again in full, not answered with a 304.
                    write_cache(&dir.join("list.http.json"), &v)?;
                }
                Ok(Pulled::Lines {
                    kind: feed.kind,
                    bytes,
                })
            }
            // Structured feeds are judged like lists, just before the new
            // copy would replace the kept one, against what it holds.
            (kind, _) => {
                let what = format!("feed {}", feed.name);
                let judge = |new: Census| {
                    let old = self
                        .cached(feed)
                        .ok()
                        .flatten()
                        .map(|(p, _)| p.census().entries);
                    check_refresh(&what, new, old, feed.max_shrink_percent)
                };
                Ok(match kind {
                    FeedKind::MispFeed => Pulled::MispEvents(misp::pull(feed, &dir, &judge).await?),
                    FeedKind::MispApi => {
                        Pulled::MispAttributes(misp_api::pull(feed, &dir, &judge).await?)
                    }
                    FeedKind::Stix => Pulled::Stix(stix::pull(feed, &dir, &judge).await?),
                    _ => Pulled::Stix(taxii::pull(feed, &dir, &judge).await?),
                })
            }
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

/// How many entries a new copy has, against how many its lines could have
/// held, to judge it before it replaces the last good copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Entries that will be taken (names, addresses, triggers).
    pub entries: u64,
    /// Non-empty, non-comment lines.
    pub lines: u64,
    /// Of those, lines that hold no valid entry.
    pub bad: u64,
}

/// Judge a new copy before it replaces anything: mostly unreadable lines,
/// no entries where the last good copy (`old` entries) had some, or a
/// shrink of more than `max_shrink_percent` is refused.
/// `max_shrink_percent = 100` accepts any shrink, emptiness included.
pub fn check_refresh(
    what: &str,
    new: Census,
    old: Option<u64>,
    max_shrink_percent: u8,
) -> Result<(), FeedError> {
    let refuse = |reason, message: String| FeedError::Refused {
        what: what.to_string(),
        reason,
        message,
    };
    if new.lines > 0 && new.bad.saturating_mul(2) > new.lines {
        return Err(refuse(
            Rejection::Garbage,
            format!(
                "{} of its {} lines are not valid entries (an error page or binary data?)",
                new.bad, new.lines
            ),
        ));
    }
    let Some(old) = old.filter(|&o| o > 0) else {
        return Ok(());
    };
    if max_shrink_percent >= 100 {
        return Ok(());
    }
    if new.entries == 0 {
        return Err(refuse(
            Rejection::Empty,
            format!(
                "it has no entries, the last good copy has {old} (set max_shrink_percent = 100 to accept)"
            ),
        ));
    }
    let lost = old.saturating_sub(new.entries);
    // lost / old > max / 100, in integers.
    if u128::from(lost) * 100 > u128::from(old) * u128::from(max_shrink_percent) {
        return Err(refuse(
            Rejection::Shrink,
            format!(
                "it has {} entries, {lost} fewer than the last good copy's {old}, more than max_shrink_percent = {max_shrink_percent}%",
                new.entries
            ),
        ));
    }
    Ok(())
}

pub(crate) enum ListFetch {
    /// 304: the kept copy, as read back.
    NotModified(Vec<u8>),
    /// A new body and its validators (JSON), to keep once the body is.
    New { bytes: Vec<u8>, validators: Vec<u8> },
}

/// A plain list over HTTP, with a conditional GET against the kept copy.
async fn fetch_list(
    feed: &FeedConfig,
    url: &reqwest::Url,
    dir: &Path,
) -> Result<ListFetch, FeedError> {
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
        http::Fetched::NotModified => Ok(ListFetch::NotModified(
            read_cache(&list, feed.max_bytes)?.unwrap_or_default(),
        )),
        http::Fetched::Body {
            bytes, validators, ..
        } => Ok(ListFetch::New {
            bytes,
            validators: serde_json::to_vec(&validators).unwrap_or_default(),
        }),
    }
}

/// Write a cache file atomically (temp file + rename in the same folder).
/// Beside a kept list, how many entries it holds and a digest of its
/// bytes: the next refresh judges its new copy against that count without
/// parsing the old copy again (a third pass over a million lines).
fn entries_path(list: &Path) -> PathBuf {
    list.with_extension("entries")
}

/// The kept list's entry count, if its note is there and is about these
/// very bytes (a note left by a write cut short is not).
fn kept_entries(list: &Path, bytes: &[u8]) -> Option<u64> {
    let text = std::fs::read_to_string(entries_path(list)).ok()?;
    let (entries, digest) = text.trim().split_once(' ')?;
    let digest = u64::from_str_radix(digest, 16).ok()?;
    (digest == xxhash_rust::xxh3::xxh3_64(bytes))
        .then(|| entries.parse().ok())
        .flatten()
}

/// Note the kept list's entry count. Failing to is harmless (the next
/// refresh counts again), so it is only logged.
fn keep_entries(list: &Path, bytes: &[u8], entries: u64) {
    let note = format!("{entries} {:016x}\n", xxhash_rust::xxh3::xxh3_64(bytes));
    if let Err(e) = crate::fs::write_atomic(&entries_path(list), note.as_bytes()) {
        tracing::debug!(path = %list.display(), error = %e, "cannot note the kept list's entry count");
    }
}

/// Mark a kept copy as confirmed now (its modification time), without
/// writing it. Failing to is harmless (the copy is the same either way;
/// only its age would read older), so it is only logged.
fn confirm(path: &Path) {
    let now = std::time::SystemTime::now();
    let touched = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(now));
    if let Err(e) = touched {
        tracing::debug!(path = %path.display(), error = %e, "cannot mark the kept list as confirmed");
    }
}

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

/// Read a feed's local file like an HTTP body: capped at `limit` bytes
/// ([`read_capped`]) and given up after `timeout`. The read runs on a
/// thread of its own, so a file system that hangs (a dead NFS mount) costs
/// that thread, never the refresh; FIFOs and devices, which could block or
/// never end, are refused before they are opened.
pub async fn read_feed_file(
    path: &Path,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, FeedError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("schild-feed-read".into())
        .spawn(move || {
            let _ = tx.send(read_capped(&owned, limit));
        })
        .map_err(|source| FeedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(FeedError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("the reading thread ended without an answer"),
        }),
        Err(_) => Err(FeedError::FileTimeout {
            path: path.to_path_buf(),
            secs: timeout.as_secs(),
        }),
    }
}

/// What kind of non-regular file a path is, for the error.
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Read a local regular file, refusing one over `limit` bytes. The cap is
/// on what is read (at most `limit + 1` bytes), not on the length the file
/// claims; anything but a regular file (a device such as `/dev/zero`, a
/// FIFO, a directory) is refused: checked before opening, opened without
/// blocking, and checked again on the open file.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, FeedError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| FeedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = |t: std::fs::FileType| FeedError::NotAFile {
        path: path.to_path_buf(),
        kind: file_kind(t),
    };
    let too_large = || FeedError::TooLarge {
        what: path.display().to_string(),
        limit,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(not_a_file(meta.file_type()));
    }
    if meta.len() > limit {
        return Err(too_large());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        // Swapped for something else between the two looks.
        return Err(not_a_file(meta.file_type()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_count_stands_only_for_the_bytes_it_was_noted_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = dir.path().join("list");
        let kept = b"a.example\nb.example\n";
        assert_eq!(kept_entries(&list, kept), None, "no note yet");
        keep_entries(&list, kept, 2);
        assert_eq!(kept_entries(&list, kept), Some(2));
        // The list was replaced and the note not (a write cut short).
        assert_eq!(kept_entries(&list, b"a.example\n"), None);
        std::fs::write(entries_path(&list), "many\n").expect("write");
        assert_eq!(kept_entries(&list, kept), None, "a damaged note");
    }

    fn census(entries: u64, lines: u64, bad: u64) -> Census {
        Census {
            entries,
            lines,
            bad,
        }
    }

    fn reason(r: Result<(), FeedError>) -> Option<&'static str> {
        r.err().map(|e| e.reason())
    }

    #[test]
    fn a_new_copy_is_judged_against_the_last_good_one() {
        // Half lost is allowed at 50, a little more is not.
        assert_eq!(
            reason(check_refresh("f", census(500, 500, 0), Some(1000), 50)),
            None
        );
        assert_eq!(
            reason(check_refresh("f", census(499, 499, 0), Some(1000), 50)),
            Some("shrink")
        );
        assert_eq!(
            reason(check_refresh("f", census(0, 0, 0), Some(1000), 50)),
            Some("empty")
        );
        // 100 takes any shrink, emptiness included; garbage never passes.
        assert_eq!(
            reason(check_refresh("f", census(0, 0, 0), Some(1000), 100)),
            None
        );
        assert_eq!(
            reason(check_refresh("f", census(3, 10, 6), Some(1000), 100)),
            Some("garbage")
        );
        // Without a last good copy only garbage is refused.
        assert_eq!(reason(check_refresh("f", census(0, 0, 0), None, 0)), None);
        assert_eq!(
            reason(check_refresh("f", census(1, 3, 2), None, 50)),
            Some("garbage")
        );
        // Exactly half unreadable is still taken.
        assert_eq!(reason(check_refresh("f", census(5, 10, 5), None, 50)), None);
    }

    #[test]
    fn the_reason_survives_the_report_text() {
        let e = FeedError::Refused {
            what: "feed x".into(),
            reason: Rejection::Shrink,
            message: "it has 10 entries: a lot fewer".into(),
        };
        let text = failure_text(&e);
        assert!(
            text.starts_with("shrink: the new copy of feed x is refused (shrink)"),
            "{text}"
        );
        assert_eq!(failure_reason(&text), "shrink");
        let e = FeedError::NotAFile {
            path: "/dev/zero".into(),
            kind: "a character device",
        };
        assert_eq!(failure_reason(&failure_text(&e)), "io");
        assert_eq!(failure_reason("http://x answered HTTP 500"), "other");
        assert_eq!(failure_reason("http://x answered HTTP 500: down"), "other");
        for r in FAILURE_REASONS {
            assert_eq!(failure_reason(&format!("{r}: something")), r);
        }
    }

    #[test]
    fn lists_are_counted_without_compiling_them() {
        let n = plain::census(
            FeedKind::Domains,
            b"# c\nevil.test\n0.0.0.0 bad.test\n\n<html>\n",
        );
        assert_eq!((n.entries, n.lines, n.bad), (2, 3, 1));
        let n = plain::census(FeedKind::Domains, &[0xff, 0xfe, b'\n', 0x80]);
        assert_eq!((n.entries, n.bad), (0, 2));
        let n = plain::census(
            FeedKind::Hosts,
            b"127.0.0.1 localhost\n0.0.0.0 a.test b.test\nnot hosts\n",
        );
        assert_eq!((n.entries, n.lines, n.bad), (2, 3, 1));
        let n = plain::census(
            FeedKind::Rpz,
            b"$ORIGIN rpz.\n@ SOA ns. h. 1 2 3 4 5\nx.test CNAME .\n<p>We are down</p>\n",
        );
        assert_eq!((n.entries, n.bad), (1, 1));
    }

    #[test]
    fn file_reads_are_capped_by_what_is_read() {
        let e = read_capped(Path::new("/dev/zero"), 1024).expect_err("a device");
        assert!(
            matches!(
                e,
                FeedError::NotAFile {
                    kind: "a character device",
                    ..
                }
            ),
            "{e}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, vec![b'a'; 2048]).expect("write");
        assert!(matches!(
            read_capped(&p, 1024),
            Err(FeedError::TooLarge { .. })
        ));
        assert_eq!(read_capped(&p, 2048).expect("fits").len(), 2048);
    }
}
