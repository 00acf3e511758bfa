//! The `taxii` reader: STIX 2.1 objects from a TAXII 2.1 collection.
//!
//! `location` is the collection's URL (`…/collections/<id>/`). We GET
//! `objects/` with the TAXII media type, follow `more`/`next` paging, and
//! remember the server's `X-TAXII-Date-Added-Last` so the next pull asks
//! only for objects added after it (`added_after`). New objects are merged
//! by STIX id into the kept set (a later version replaces an earlier one;
//! a revoked version takes the indicator out). Every `full_refresh_secs`
//! the set is pulled in full again.
//!
//! Authentication: TAXII 2.1 makes HTTP Basic the mandatory-to-implement
//! scheme and allows others. An API key of the form `user:password` is sent
//! as HTTP Basic; any other key as `Authorization: Bearer <key>`, which
//! most hosted TAXII servers (and API-key gateways) accept.

use std::collections::BTreeMap;
use std::path::Path;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::http::{self, Fetched, Http, Request};
use super::stix::{StixObject, StixSet};
use super::{FeedError, Judge, lenient};
use crate::clock::unix_now;
use crate::config::{FeedConfig, Location};

pub const MEDIA_TYPE: &str = "application/taxii+json;version=2.1";
const CACHE_FILE: &str = "taxii.json";
const CACHE_FORMAT: u32 = 1;
const MAX_PAGES: u32 = 100_000;
/// Object types asked for: indicators, and what names their event.
const MATCH_TYPES: &str = "indicator,report,grouping";

/// One page of a TAXII 2.1 `objects/` answer.
#[derive(Deserialize)]
pub struct Envelope {
    #[serde(default, deserialize_with = "lenient::bool")]
    pub more: bool,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub next: Option<String>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub objects: Vec<StixObject>,
}

/// Parse one page; `what` names the URL and page for errors.
pub fn parse_envelope(bytes: &[u8], what: String) -> Result<Envelope, FeedError> {
    serde_json::from_slice(bytes).map_err(|e| FeedError::Format {
        what,
        message: format!(
            "expected a TAXII 2.1 envelope ({{\"more\": ..., \"objects\": [...]}}): {e}"
        ),
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct Cache {
    format: u32,
    /// The collection URL the set came from.
    location: String,
    full_at: u64,
    /// `X-TAXII-Date-Added-Last` of the last pull, for `added_after`.
    added_last: Option<String>,
    set: StixSet,
}

/// The collection id: the last path segment of the collection URL.
pub fn collection_id(u: &Url) -> String {
    u.path_segments()
        .and_then(|mut s| s.rfind(|p| !p.is_empty()))
        .unwrap_or("")
        .to_string()
}

fn objects_url(collection: &Url) -> Result<Url, FeedError> {
    let mut c = collection.clone();
    c.set_query(None);
    if !c.path().ends_with('/') {
        let p = format!("{}/", c.path());
        c.set_path(&p);
    }
    c.join("objects/").map_err(|e| FeedError::Format {
        what: http::redact(collection),
        message: format!("cannot form the objects URL: {e}"),
    })
}

fn read_cache(feed: &FeedConfig, dir: &Path) -> Result<Option<Cache>, FeedError> {
    // The merged set can be larger than one page; allow a generous multiple.
    let limit = feed.max_bytes.saturating_mul(4);
    let cache: Option<Cache> =
        super::read_json_cache(&dir.join(CACHE_FILE), limit, "schild's cached TAXII set")?;
    Ok(cache.filter(|c| c.format == CACHE_FORMAT))
}

/// Pull new objects (or all of them) and merge them into the kept set.
pub async fn pull(feed: &FeedConfig, dir: &Path, judge: Judge<'_>) -> Result<StixSet, FeedError> {
    let Location::Url(collection) = &feed.location else {
        return Err(FeedError::Format {
            what: feed.location.redacted(),
            message: "taxii needs the collection's http(s) URL".into(),
        });
    };
    let url = objects_url(collection)?;
    let client = Http::for_feed(feed)?;
    let started = unix_now();
    let location = http::redact(collection);
    let old = read_cache(feed, dir)
        .ok()
        .flatten()
        .filter(|c| c.location == location);
    let full_refresh = feed.filters.full_refresh.as_secs();
    let incremental = old.as_ref().filter(|c| {
        c.added_last.is_some()
            && full_refresh > 0
            && started.saturating_sub(c.full_at) < full_refresh
    });

    let mut objects = Vec::new();
    let mut added_last = incremental.and_then(|c| c.added_last.clone());
    let mut next: Option<String> = None;
    for page in 1..=MAX_PAGES {
        let mut u = url.clone();
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("match[type]", MATCH_TYPES);
            q.append_pair("limit", &feed.filters.page_limit.to_string());
            if let Some(after) = incremental.and_then(|c| c.added_last.as_deref()) {
                q.append_pair("added_after", after);
            }
            if let Some(n) = &next {
                q.append_pair("next", n);
            }
        }
        let mut req = Request::get(u).accept(MEDIA_TYPE);
        if let Some(key) = &feed.api_key {
            req = match key.expose().split_once(':') {
                Some(_) => {
                    let basic = crate::config::Secret::new(base64(key.expose().as_bytes()));
                    req.authorization("Basic ", &basic)?
                }
                None => req.authorization("Bearer ", key)?,
            };
        }
        let Fetched::Body { bytes, headers, .. } = client.send(&req).await? else {
            return Err(FeedError::Format {
                what: http::redact(&url),
                message: "answered 304 Not Modified to an unconditional GET".into(),
            });
        };
        let what = format!("{} (page {page})", http::redact(&url));
        let env = parse_envelope(&bytes, what)?;
        if let Some(last) = headers
            .get("x-taxii-date-added-last")
            .and_then(|v| v.to_str().ok())
        {
            added_last = Some(last.to_string());
        }
        objects.extend(
            env.objects
                .into_iter()
                .filter(|o| matches!(o.kind.as_str(), "indicator" | "report" | "grouping")),
        );
        match (env.more, env.next) {
            (true, Some(n)) if Some(&n) != next.as_ref() => next = Some(n),
            (true, _) => {
                return Err(FeedError::Format {
                    what: http::redact(&url),
                    message: "says there is more but gives no new `next` cursor".into(),
                });
            }
            (false, _) => break,
        }
        if page == MAX_PAGES {
            return Err(FeedError::Format {
                what: http::redact(&url),
                message: format!("still paging after {MAX_PAGES} pages"),
            });
        }
    }

    let id = collection_id(collection);
    let info = format!("TAXII collection {id}");
    let (base, full_at): (Vec<StixObject>, u64) = match incremental {
        Some(c) => (c.set.objects.clone(), c.full_at),
        None => (Vec::new(), started),
    };
    let changed = objects.len();
    let mut by_id: BTreeMap<String, StixObject> =
        base.into_iter().map(|o| (o.id.clone(), o)).collect();
    for o in objects {
        // Objects come in the order they were added: a later version wins,
        // unless it is older by `modified` (a re-added old version).
        let newer = match (by_id.get(&o.id), &o.modified) {
            (Some(have), Some(m)) => have.modified.as_ref().is_none_or(|h| {
                match (super::stix::parse_rfc3339(h), super::stix::parse_rfc3339(m)) {
                    (Some(h), Some(m)) => m >= h,
                    _ => true,
                }
            }),
            _ => true,
        };
        if newer {
            by_id.insert(o.id.clone(), o);
        }
    }
    tracing::info!(feed = %feed.name, changed, total = by_id.len(), incremental = incremental.is_some(), "TAXII collection pulled");
    let cache = Cache {
        format: CACHE_FORMAT,
        location,
        full_at,
        added_last,
        set: StixSet {
            uuid: id,
            info,
            objects: by_id.into_values().collect(),
        },
    };
    judge(super::stix::census(&cache.set))?;
    let bytes = serde_json::to_vec(&cache).map_err(|e| FeedError::Format {
        what: feed.name.clone(),
        message: format!("cannot encode the kept set: {e}"),
    })?;
    super::write_cache(&dir.join(CACHE_FILE), &bytes)?;
    Ok(cache.set)
}

pub fn cached(feed: &FeedConfig, dir: &Path) -> Result<Option<(StixSet, u64)>, FeedError> {
    let path = dir.join(CACHE_FILE);
    Ok(read_cache(feed, dir)?.map(|c| (c.set, super::mtime(&path))))
}

/// Standard base64 (RFC 4648) for HTTP Basic credentials.
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(i.as_bytes()), o, "{i}");
        }
    }

    #[test]
    fn collection_urls() {
        let u = Url::parse(
            "https://taxii.example/api1/collections/91a7b528-80eb-42ed-a74d-c6fbd5a26116/",
        )
        .expect("url");
        assert_eq!(collection_id(&u), "91a7b528-80eb-42ed-a74d-c6fbd5a26116");
        assert_eq!(
            objects_url(&u).expect("objects").as_str(),
            "https://taxii.example/api1/collections/91a7b528-80eb-42ed-a74d-c6fbd5a26116/objects/"
        );
        let u = Url::parse("https://taxii.example/api1/collections/abc").expect("url");
        assert_eq!(
            objects_url(&u).expect("objects").as_str(),
            "https://taxii.example/api1/collections/abc/objects/"
        );
    }
}
