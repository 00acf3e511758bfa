//! The `misp-api` reader: `POST /attributes/restSearch` against a MISP
//! instance.
//!
//! The first pull (and one every `full_refresh_secs`) asks for the full
//! current set: the configured types, `to_ids`, `published`, tags, with
//! MISP's warninglists enforced, page by page until a short page. Later
//! pulls ask only for attributes changed since the last successful pull
//! (minus a clock-skew margin), deleted ones included, and merge them by
//! attribute uuid into the kept set: a row that is now deleted or no longer
//! `to_ids` leaves it. The merged set is the feed's last good copy.
//!
//! The API key goes in the `Authorization` header as MISP wants it (the raw
//! key, no scheme), marked sensitive; it never appears in logs or errors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use reqwest::Url;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::http::{self, Fetched, Http, Request};
use super::{Census, FeedError, Judge, lenient};
use crate::clock::unix_now;
use crate::config::{FeedConfig, Location};
use crate::policy::{Compiler, EventInfo, FeedId, IocRecord, IocType};

/// Incremental pulls ask from this long before the last pull started, so
/// that a MISP clock a little ahead of ours does not lose changes.
pub const SKEW_SECS: u64 = 300;
/// A MISP that keeps sending full pages is broken; stop rather than loop.
const MAX_PAGES: u32 = 100_000;
const CACHE_FILE: &str = "attributes.json";
const CACHE_FORMAT: u32 = 1;

/// One attribute as kept: what provenance and the compiler need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiAttribute {
    pub uuid: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub to_ids: bool,
    pub deleted: bool,
    pub event_uuid: Option<String>,
    pub event_info: Option<String>,
    /// The attribute's own tags.
    pub tags: Vec<String>,
    /// Tags inherited from its event (`includeEventTags`).
    pub event_tags: Vec<String>,
}

impl ApiAttribute {
    /// Merge key: the attribute uuid, or for rows without one, what would
    /// identify it in MISP.
    fn key(&self) -> String {
        match &self.uuid {
            Some(u) => u.clone(),
            None => format!(
                "{}|{}|{}",
                self.kind,
                self.value,
                self.event_uuid.as_deref().unwrap_or("")
            ),
        }
    }
}

// ------------------------------------------------------------ wire format

#[derive(Deserialize)]
struct Row {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    uuid: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "lenient::opt_string")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    value: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    to_ids: bool,
    #[serde(default, deserialize_with = "lenient::bool")]
    deleted: bool,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    event_uuid: Option<String>,
    #[serde(default, rename = "Event")]
    event: Option<RowEvent>,
    #[serde(default, rename = "Tag", deserialize_with = "lenient::vec")]
    tags: Vec<RowTag>,
}

#[derive(Deserialize)]
struct RowEvent {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    info: Option<String>,
}

#[derive(Deserialize)]
struct RowTag {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    inherited: bool,
}

/// `{"response": {"Attribute": [...]}}`; MISP answers an empty search with
/// `{"response": []}` in some versions.
#[derive(Deserialize)]
struct Response {
    response: Rows,
}

struct Rows(Vec<Row>);

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rows, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rows;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("{\"Attribute\": [...]}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Rows, A::Error> {
                let mut rows = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    if k == "Attribute" {
                        rows = m.next_value::<Option<Vec<Row>>>()?.unwrap_or_default();
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Rows(rows))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Rows, A::Error> {
                if s.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(
                        "a list of events (that is /events/restSearch; use /attributes/restSearch)",
                    ));
                }
                Ok(Rows(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse one restSearch page. Rows without a type or value are counted in
/// the second number and dropped: MISP never sends them for the types we
/// ask for.
pub fn parse_page(bytes: &[u8], what: &str) -> Result<(Vec<ApiAttribute>, usize), FeedError> {
    let r: Response = serde_json::from_slice(bytes).map_err(|e| FeedError::Format {
        what: what.to_string(),
        message: format!(
            "expected a restSearch answer ({{\"response\": {{\"Attribute\": [...]}}}}): {e}"
        ),
    })?;
    let total = r.response.0.len();
    let rows: Vec<ApiAttribute> = r
        .response
        .0
        .into_iter()
        .filter_map(|row| {
            let (kind, value) = (row.kind?, row.value?);
            let (event_uuid, event_info) = match row.event {
                Some(e) => (row.event_uuid.or(e.uuid), e.info),
                None => (row.event_uuid, None),
            };
            let mut tags = Vec::new();
            let mut event_tags = Vec::new();
            for t in row.tags {
                if let Some(n) = t.name {
                    if t.inherited {
                        event_tags.push(n);
                    } else {
                        tags.push(n);
                    }
                }
            }
            Some(ApiAttribute {
                uuid: row.uuid,
                kind,
                value,
                to_ids: row.to_ids,
                deleted: row.deleted,
                event_uuid,
                event_info,
                tags,
                event_tags,
            })
        })
        .collect();
    let dropped = total - rows.len();
    Ok((rows, dropped))
}

/// The restSearch filter body for this feed (without paging and without
/// the incremental keys).
pub fn search_body(feed: &FeedConfig) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{Value, json};
    let f = &feed.filters;
    let mut b = serde_json::Map::new();
    b.insert("returnFormat".into(), json!("json"));
    b.insert("type".into(), json!(f.types));
    if f.to_ids {
        b.insert("to_ids".into(), json!(1));
    }
    if f.published {
        b.insert("published".into(), json!(1));
    }
    if !f.tags_include.is_empty() || !f.tags_exclude.is_empty() {
        let mut tags = serde_json::Map::new();
        if !f.tags_include.is_empty() {
            tags.insert("OR".into(), json!(f.tags_include));
        }
        if !f.tags_exclude.is_empty() {
            tags.insert("NOT".into(), json!(f.tags_exclude));
        }
        b.insert("tags".into(), Value::Object(tags));
    }
    b.insert(
        "enforceWarninglist".into(),
        json!(u8::from(f.enforce_warninglist)),
    );
    b.insert("includeEventUuid".into(), json!(1));
    b.insert("includeEventTags".into(), json!(1));
    b
}

#[derive(Debug, Serialize, Deserialize)]
struct Cache {
    format: u32,
    /// The search body the set was built with: a changed filter means a
    /// full pull, not a merge into a set built with other filters.
    search: String,
    /// When the last full pull started (Unix seconds).
    full_at: u64,
    /// When the last successful pull started.
    pulled_at: u64,
    attributes: Vec<ApiAttribute>,
}

fn read_cache(feed: &FeedConfig, dir: &Path) -> Result<Option<Cache>, FeedError> {
    // The merged set can be larger than one page; allow a generous multiple.
    let limit = feed.max_bytes.saturating_mul(4);
    let cache: Option<Cache> = super::read_json_cache(
        &dir.join(CACHE_FILE),
        limit,
        "schild's cached restSearch set",
    )?;
    Ok(cache.filter(|c| c.format == CACHE_FORMAT))
}

/// Pull the feed: a full or an incremental restSearch, merged into the kept
/// set, which is then saved as the last good copy.
pub async fn pull(
    feed: &FeedConfig,
    dir: &Path,
    judge: Judge<'_>,
) -> Result<Vec<ApiAttribute>, FeedError> {
    let Location::Url(base) = &feed.location else {
        return Err(FeedError::Format {
            what: feed.location.redacted(),
            message: "misp-api needs an http(s) URL".into(),
        });
    };
    let key = feed.api_key.as_ref().ok_or_else(|| FeedError::Format {
        what: feed.name.clone(),
        message: "misp-api needs an API key (api_key_file or api_key_env)".into(),
    })?;
    let url = endpoint(base)?;
    let client = Http::for_feed(feed)?;
    let started = unix_now();
    let search = search_body(feed);
    let search_text = serde_json::Value::Object(search.clone()).to_string();
    // A damaged cache just means a full pull.
    let old = read_cache(feed, dir)
        .ok()
        .flatten()
        .filter(|c| c.search == search_text);
    let full_refresh = feed.filters.full_refresh.as_secs();
    let incremental = old
        .as_ref()
        .filter(|c| full_refresh > 0 && started.saturating_sub(c.full_at) < full_refresh);

    let mut body = search;
    if let Some(c) = incremental {
        body.insert(
            "timestamp".into(),
            serde_json::json!(c.pulled_at.saturating_sub(SKEW_SECS)),
        );
        body.insert("deleted".into(), serde_json::json!([0, 1]));
        // A flip to to_ids=false must reach us to take the IOC out.
        if feed.filters.to_ids {
            body.insert("to_ids".into(), serde_json::json!([0, 1]));
        }
    }
    let limit = feed.filters.page_limit;
    body.insert("limit".into(), serde_json::json!(limit));

    let mut rows = Vec::new();
    let mut dropped = 0;
    let mut page = 1u32;
    loop {
        body.insert("page".into(), serde_json::json!(page));
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let req = Request::post_json(url.clone(), bytes)
            .accept("application/json")
            .authorization("", key)?;
        let Fetched::Body { bytes, .. } = client.send(&req).await? else {
            return Err(FeedError::Format {
                what: http::redact(&url),
                message: "answered 304 Not Modified to a POST".into(),
            });
        };
        let what = format!("{} (page {page})", http::redact(&url));
        let (got, d) = parse_page(&bytes, &what)?;
        drop(bytes);
        dropped += d;
        let n = got.len() + d;
        rows.extend(got);
        if n < limit as usize {
            break;
        }
        page += 1;
        if page > MAX_PAGES {
            return Err(FeedError::Format {
                what: http::redact(&url),
                message: format!("still sending full pages after {MAX_PAGES} pages"),
            });
        }
    }
    if dropped > 0 {
        tracing::warn!(feed = %feed.name, dropped, "restSearch rows without type or value were skipped");
    }

    let keep = |a: &ApiAttribute| !a.deleted && (a.to_ids || !feed.filters.to_ids);
    let (attributes, full_at) = match incremental {
        Some(c) => {
            let mut set: BTreeMap<String, ApiAttribute> =
                c.attributes.iter().map(|a| (a.key(), a.clone())).collect();
            let changed = rows.len();
            for a in rows {
                if keep(&a) {
                    set.insert(a.key(), a);
                } else {
                    set.remove(&a.key());
                }
            }
            tracing::info!(feed = %feed.name, changed, total = set.len(), "incremental restSearch merged");
            (set.into_values().collect::<Vec<_>>(), c.full_at)
        }
        None => {
            let set: BTreeMap<String, ApiAttribute> = rows
                .into_iter()
                .filter(keep)
                .map(|a| (a.key(), a))
                .collect();
            tracing::info!(feed = %feed.name, total = set.len(), "full restSearch pulled");
            (set.into_values().collect(), started)
        }
    };
    let cache = Cache {
        format: CACHE_FORMAT,
        search: search_text,
        full_at,
        pulled_at: started,
        attributes,
    };
    // The merged set must earn its place before it is kept.
    judge(census(&cache.attributes))?;
    let bytes = serde_json::to_vec(&cache).map_err(|e| FeedError::Format {
        what: feed.name.clone(),
        message: format!("cannot encode the kept set: {e}"),
    })?;
    super::write_cache(&dir.join(CACHE_FILE), &bytes)?;
    Ok(cache.attributes)
}

/// `{location}/attributes/restSearch`, whether or not the location ends in `/`.
fn endpoint(base: &Url) -> Result<Url, FeedError> {
    let mut b = base.clone();
    if !b.path().ends_with('/') {
        let p = format!("{}/", b.path());
        b.set_path(&p);
    }
    b.join("attributes/restSearch")
        .map_err(|e| FeedError::Format {
            what: http::redact(base),
            message: format!("cannot form the restSearch URL: {e}"),
        })
}

/// What a kept set holds, to judge a new one by: every attribute is a
/// line, one schild would take (a network type, `to_ids`, not deleted)
/// an entry.
pub fn census(attrs: &[ApiAttribute]) -> Census {
    let mut n = Census::default();
    for a in attrs {
        n.lines += 1;
        if IocType::from_misp(&a.kind).is_some() && a.to_ids && !a.deleted {
            n.entries += 1;
        }
    }
    n
}

/// The last good copy: the kept set.
pub fn cached(
    feed: &FeedConfig,
    dir: &Path,
) -> Result<Option<(Vec<ApiAttribute>, u64)>, FeedError> {
    Ok(read_cache(feed, dir)?.map(|c| (c.attributes, c.pulled_at)))
}

/// Give the attributes to the compiler, one event entry per event uuid.
pub fn push_attributes(attrs: &[ApiAttribute], feed: FeedId, c: &mut Compiler) {
    let mut events: HashMap<&str, u32> = HashMap::new();
    for a in attrs {
        let event = a.event_uuid.as_deref().map(|uuid| {
            *events.entry(uuid).or_insert_with(|| {
                c.add_event(EventInfo {
                    feed,
                    uuid: uuid.to_string(),
                    info: a.event_info.clone().unwrap_or_default(),
                    tags: a.event_tags.clone(),
                })
            })
        });
        c.add(
            feed,
            &IocRecord {
                misp_type: &a.kind,
                value: &a.value,
                to_ids: a.to_ids,
                deleted: a.deleted,
                event,
                attribute_uuid: a.uuid.as_deref(),
                tags: &a.tags,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_as_misp_sends_them() {
        let page = br#"{"response": {"Attribute": [
            {"id": "1188759", "event_id": "9747", "object_id": "0", "object_relation": null,
             "category": "Network activity", "type": "domain", "to_ids": true,
             "uuid": "5a3c3045-ab0c-4d38-8efe-459002de0b81", "timestamp": "1513893957",
             "deleted": false, "value": "movieultimate.com",
             "Event": {"org_id": "2", "id": "9747", "info": "OSINT - Sednit update", "uuid": "5a3c2fcd-8328-42bb-a95e-4f4402de0b81"},
             "Tag": [{"id": "2", "name": "tlp:white", "inherited": 1}, {"name": "kill-chain:c2"}]},
            {"uuid": "x2", "type": "ip-dst", "value": "198.51.100.7", "to_ids": "0", "deleted": "1",
             "event_uuid": "e2"},
            {"uuid": "x3", "type": "domain"}
        ]}}"#;
        let (rows, dropped) = parse_page(page, "p").expect("parses");
        assert_eq!(dropped, 1);
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!(
            a.event_uuid.as_deref(),
            Some("5a3c2fcd-8328-42bb-a95e-4f4402de0b81")
        );
        assert_eq!(a.event_info.as_deref(), Some("OSINT - Sednit update"));
        assert_eq!(a.event_tags, vec!["tlp:white".to_string()]);
        assert_eq!(a.tags, vec!["kill-chain:c2".to_string()]);
        assert!(a.to_ids && !a.deleted);
        assert!(!rows[1].to_ids && rows[1].deleted);
        assert_eq!(rows[1].event_uuid.as_deref(), Some("e2"));
    }

    #[test]
    fn minimal_rows_from_misp_stix() {
        let read = |rel: &str| {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/misp-api")
                .join(rel);
            std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let (rows, dropped) =
            parse_page(&read("restsearch_attributes_domain.json"), "d").expect("d");
        assert_eq!(dropped, 0);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].kind.as_str(), rows[0].to_ids),
            ("AS", false),
            "missing to_ids is false"
        );
        assert_eq!((rows[1].value.as_str(), rows[1].to_ids), ("circl.lu", true));
        assert_eq!(rows[1].event_uuid, None);
        let (rows, _) =
            parse_page(&read("restsearch_attributes_domain-ip.json"), "di").expect("di");
        assert_eq!(rows[0].value, "circl.lu|149.13.33.14");
    }

    #[test]
    fn empty_answers_and_wrong_shapes() {
        assert_eq!(
            parse_page(br#"{"response": []}"#, "p")
                .expect("empty")
                .0
                .len(),
            0
        );
        assert_eq!(
            parse_page(br#"{"response": {"Attribute": []}}"#, "p")
                .expect("empty")
                .0
                .len(),
            0
        );
        let check = |doc: &[u8], needle: &str| {
            let e = parse_page(doc, "https://misp.example/attributes/restSearch")
                .expect_err("bad")
                .to_string();
            assert!(e.contains("restSearch"), "{e}");
            assert!(e.contains(needle), "{e}");
        };
        check(br#"{"response": [{"Event": {}}]}"#, "events/restSearch");
        check(br#"{"response": {"Attribute": {"a": 1}}}"#, "invalid type");
        check(
            br#"{"response": {"Attribute": [{"type": "domain", "value": ["x"]}]}}"#,
            "invalid type",
        );
        check(br#"{"name": "Not Found"}"#, "missing field `response`");
        check(b"<html>", "expected");
    }
}
