//! STIX 2.1: bundles (`stix` feeds) and the objects TAXII hands out.
//!
//! Only `indicator` objects with the simple equality patterns MISP emits
//! (and that other producers commonly use) become IOCs:
//!
//! | pattern | MISP type |
//! |---|---|
//! | `[domain-name:value = 'x']` | `domain` (`hostname` with the label `misp:type="hostname"`) |
//! | `[domain-name:value = 'd' AND domain-name:resolves_to_refs[*].value = 'ip']` | `domain\|ip` |
//! | `[url:value = 'u']` | `url` |
//! | `[ipv4-addr:value = 'a']`, `[ipv6-addr:value = 'a']` | `ip-dst` |
//! | `[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = 'a']` | `ip-dst` (`src_ref`: `ip-src`) |
//!
//! Any other pattern is counted as unsupported with a short reason, never
//! guessed at: a DNS firewall that half-understands `OR`, `LIKE` or
//! `MATCHES` blocks the wrong names. Revoked indicators count as deleted;
//! indicators whose `valid_until` has passed are counted and skipped.
//!
//! Provenance: the indicator id's uuid is the attribute uuid. The event is
//! the `report` or `grouping` that lists the indicator (MISP exports an
//! event as one), else the bundle (or TAXII collection) itself.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::http::{self, Fetched, Http, Request, Validators};
use super::{Census, FeedError, Judge, lenient};
use crate::clock::unix_now;
use crate::config::{FeedConfig, Location};
use crate::policy::{Compiler, EventInfo, FeedId, IocRecord};

/// The STIX objects schild looks at; other properties are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StixObject {
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub pattern: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub pattern_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub revoked: bool,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_until: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub modified: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub labels: Vec<String>,
    #[serde(
        default,
        deserialize_with = "lenient::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub object_refs: Vec<String>,
}

impl StixObject {
    /// Only the objects schild uses are kept: indicators, and the reports
    /// and groupings that name their event.
    fn wanted(&self) -> bool {
        matches!(self.kind.as_str(), "indicator" | "report" | "grouping")
    }
}

/// A set of STIX objects with the container they came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StixSet {
    /// uuid of the bundle or TAXII collection: the fallback event.
    pub uuid: String,
    pub info: String,
    pub objects: Vec<StixObject>,
}

#[derive(Deserialize)]
struct Bundle {
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    kind: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient::vec")]
    objects: Vec<StixObject>,
}

/// The uuid part of a STIX id (`indicator--<uuid>`).
pub fn id_uuid(id: &str) -> &str {
    id.split_once("--").map(|(_, u)| u).unwrap_or(id)
}

/// Parse a bundle completely; `what` names the file or URL.
pub fn parse_bundle(bytes: &[u8], what: &str, info: &str) -> Result<StixSet, FeedError> {
    let b: Bundle = serde_json::from_slice(bytes).map_err(|e| FeedError::Format {
        what: what.to_string(),
        message: format!(
            "expected a STIX 2.1 bundle ({{\"type\": \"bundle\", \"objects\": [...]}}): {e}"
        ),
    })?;
    if b.kind != "bundle" {
        return Err(FeedError::Format {
            what: what.to_string(),
            message: format!("expected a STIX 2.1 bundle, found type {:?}", b.kind),
        });
    }
    let uuid = b.id.as_deref().map(id_uuid).unwrap_or("").to_string();
    Ok(StixSet {
        uuid,
        info: info.to_string(),
        objects: b.objects.into_iter().filter(StixObject::wanted).collect(),
    })
}

// ---------------------------------------------------------------- patterns

/// One `path = 'value'` comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub path: String,
    pub value: String,
}

/// Parse a pattern of one observation expression whose comparisons are all
/// `=` against a string, joined by `AND`. Anything else is an error with a
/// short reason.
pub fn parse_pattern(p: &str) -> Result<Vec<Comparison>, String> {
    let mut s = p.trim();
    s = s
        .strip_prefix('[')
        .ok_or_else(|| "does not start with [".to_string())?;
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.starts_with('(') {
            return Err("parentheses".into());
        }
        // An object path may index lists (`resolves_to_refs[*]`): a `]`
        // closes the observation only when no `[` of the path is open.
        let mut depth = 0u32;
        let path_end = s
            .find(|c: char| match c {
                '[' => {
                    depth += 1;
                    false
                }
                ']' if depth > 0 => {
                    depth -= 1;
                    false
                }
                c => c.is_whitespace() || matches!(c, '=' | '!' | '<' | '>' | ']'),
            })
            .unwrap_or(s.len());
        let path = &s[..path_end];
        if path.is_empty() || !path.contains(':') {
            return Err("expected an object path".into());
        }
        if path.eq_ignore_ascii_case("not") {
            return Err("NOT".into());
        }
        s = s[path_end..].trim_start();
        let Some(rest) = s.strip_prefix('=') else {
            let op: String = s
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '\'')
                .take(12)
                .collect();
            return Err(format!("operator {op}"));
        };
        s = rest.trim_start();
        let (value, rest) = string_literal(s)?;
        out.push(Comparison {
            path: path.to_string(),
            value,
        });
        s = rest.trim_start();
        if let Some(rest) = s.strip_prefix(']') {
            if !rest.trim().is_empty() {
                return Err("more than one observation, or a qualifier".into());
            }
            return Ok(out);
        }
        let word: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        match word.to_ascii_uppercase().as_str() {
            "AND" => s = &s[word.len()..],
            "OR" => return Err("OR".into()),
            "" => return Err("expected AND or ]".into()),
            other => return Err(format!("keyword {other}")),
        }
    }
}

/// `'...'` with `\'` and `\\` escapes; returns the value and the rest.
fn string_literal(s: &str) -> Result<(String, &str), String> {
    let Some(body) = s.strip_prefix('\'') else {
        return Err("compares with something other than a string".into());
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('\'' | '\\'))) => value.push(e),
                _ => return Err("bad escape in a string".into()),
            },
            '\'' => return Ok((value, &body[i + 1..])),
            c => value.push(c),
        }
    }
    Err("unterminated string".into())
}

/// The MISP type named by a `misp:type="..."` label, if any.
fn misp_type_label(labels: &[String]) -> Option<&str> {
    labels
        .iter()
        .find_map(|l| l.strip_prefix("misp:type=").map(|t| t.trim_matches('"')))
}

/// What one indicator pattern means as a MISP (type, value).
pub fn indicator_ioc(pattern: &str, labels: &[String]) -> Result<(&'static str, String), String> {
    let cmp = parse_pattern(pattern)?;
    let label = misp_type_label(labels);
    let find = |path: &str| {
        cmp.iter()
            .find(|c| c.path == path)
            .map(|c| c.value.as_str())
    };
    let paths: Vec<&str> = cmp.iter().map(|c| c.path.as_str()).collect();
    let unsupported = || Err(paths.join(" AND "));
    match paths.as_slice() {
        ["domain-name:value"] => {
            let t = if label == Some("hostname") {
                "hostname"
            } else {
                "domain"
            };
            Ok((t, cmp[0].value.clone()))
        }
        [_, _]
            if find("domain-name:value").is_some()
                && find("domain-name:resolves_to_refs[*].value").is_some() =>
        {
            let d = find("domain-name:value").unwrap_or_default();
            let ip = find("domain-name:resolves_to_refs[*].value").unwrap_or_default();
            Ok(("domain|ip", format!("{d}|{ip}")))
        }
        ["url:value"] => Ok(("url", cmp[0].value.clone())),
        ["ipv4-addr:value" | "ipv6-addr:value"] => {
            let t = if label == Some("ip-src") {
                "ip-src"
            } else {
                "ip-dst"
            };
            Ok((t, cmp[0].value.clone()))
        }
        [_, _] => {
            for (side, t) in [("dst_ref", "ip-dst"), ("src_ref", "ip-src")] {
                let ty = find(&format!("network-traffic:{side}.type"));
                let v = find(&format!("network-traffic:{side}.value"));
                if let (Some(ty), Some(v)) = (ty, v) {
                    if matches!(ty, "ipv4-addr" | "ipv6-addr") {
                        return Ok((t, v.to_string()));
                    }
                    return Err(format!("network-traffic:{side}.type {ty}"));
                }
            }
            unsupported()
        }
        _ => unsupported(),
    }
}

// ---------------------------------------------------------------- timestamps

/// Seconds since the epoch of an RFC 3339 timestamp
/// (`2020-10-25T16:22:00Z`, `…00.000Z`, `…00+02:00`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':' =>
        {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if rest.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

// ---------------------------------------------------------------- push

/// Give the indicators to the compiler.
pub fn push_set(set: &StixSet, feed: FeedId, c: &mut Compiler) {
    push_set_at(set, feed, c, unix_now() as i64);
}

fn push_set_at(set: &StixSet, feed: FeedId, c: &mut Compiler, now: i64) {
    // Which report or grouping lists each indicator.
    let mut container: HashMap<&str, usize> = HashMap::new();
    for (i, o) in set.objects.iter().enumerate() {
        if matches!(o.kind.as_str(), "report" | "grouping") {
            for r in &o.object_refs {
                container.entry(r.as_str()).or_insert(i);
            }
        }
    }
    let mut events: HashMap<Option<usize>, u32> = HashMap::new();
    for o in set.objects.iter().filter(|o| o.kind == "indicator") {
        let Some(pattern) = o.pattern.as_deref() else {
            c.report_mut(feed)
                .unsupported("stix-indicator-without-pattern");
            continue;
        };
        if let Some(t) = o.pattern_type.as_deref()
            && t != "stix"
        {
            c.report_mut(feed)
                .unsupported(&format!("stix-pattern-type: {}", short(t)));
            continue;
        }
        if let Some(until) = o.valid_until.as_deref() {
            match parse_rfc3339(until) {
                Some(t) if t <= now => {
                    c.report_mut(feed)
                        .unsupported("stix-expired (valid_until passed)");
                    continue;
                }
                Some(_) => {}
                None => {
                    c.report_mut(feed)
                        .unsupported("stix-valid_until-unreadable");
                    continue;
                }
            }
        }
        let (misp_type, value) = match indicator_ioc(pattern, &o.labels) {
            Ok(x) => x,
            Err(why) => {
                c.report_mut(feed)
                    .unsupported(&format!("stix-pattern: {}", short(&why)));
                continue;
            }
        };
        let holder = container.get(o.id.as_str()).copied();
        let event = *events.entry(holder).or_insert_with(|| {
            let (uuid, info) = match holder.map(|i| &set.objects[i]) {
                Some(r) => (
                    id_uuid(&r.id).to_string(),
                    r.name.clone().unwrap_or_default(),
                ),
                None => (set.uuid.clone(), set.info.clone()),
            };
            c.add_event(EventInfo {
                feed,
                uuid,
                info,
                tags: Vec::new(),
            })
        });
        c.add(
            feed,
            &IocRecord {
                misp_type,
                value: &value,
                to_ids: true,
                deleted: o.revoked,
                event: Some(event),
                attribute_uuid: Some(id_uuid(&o.id)),
                tags: &o.labels,
            },
        );
    }
}

/// What a set holds, to judge a new copy by: every indicator is a line;
/// one with a pattern schild reads (and not revoked) is an entry; one
/// without a pattern is bad. Patterns schild does not act on (file
/// hashes) are neither.
pub fn census(set: &StixSet) -> Census {
    let mut n = Census::default();
    for o in set.objects.iter().filter(|o| o.kind == "indicator") {
        n.lines += 1;
        match o.pattern.as_deref() {
            None => n.bad += 1,
            Some(p) => {
                if !o.revoked && indicator_ioc(p, &o.labels).is_ok() {
                    n.entries += 1;
                }
            }
        }
    }
    n
}

/// A reason short enough for a report key.
fn short(s: &str) -> String {
    let mut t: String = s.chars().take(80).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

// ---------------------------------------------------------------- stix feed

const BUNDLE_FILE: &str = "bundle.json";
const VALIDATORS_FILE: &str = "bundle.http.json";

/// Pull a bundle from a file or URL (conditional GET against the cached copy).
pub async fn pull(feed: &FeedConfig, dir: &Path, judge: Judge<'_>) -> Result<StixSet, FeedError> {
    let cached_path = dir.join(BUNDLE_FILE);
    let info = format!("STIX bundle {}", feed.location.redacted());
    let (bytes, validators, what) = match &feed.location {
        Location::Path(p) => (
            super::read_capped(p, feed.max_bytes)?,
            None,
            p.display().to_string(),
        ),
        Location::Url(u) => {
            let client = Http::for_feed(feed)?;
            let old = super::read_cache(&dir.join(VALIDATORS_FILE), 64 * 1024)?
                .and_then(|b| serde_json::from_slice::<Validators>(&b).ok())
                .filter(|_| cached_path.exists());
            let req = Request::get(u.clone())
                .accept("application/stix+json;version=2.1, application/json")
                .conditional(old.clone());
            match client.send(&req).await? {
                Fetched::NotModified => {
                    let bytes =
                        super::read_cache(&cached_path, feed.max_bytes)?.unwrap_or_default();
                    (bytes, old, http::redact(u))
                }
                Fetched::Body {
                    bytes, validators, ..
                } => (bytes, Some(validators), http::redact(u)),
            }
        }
        Location::Xfr { .. } => return Err(super::xfr::not_a_zone(feed)),
    };
    let set = parse_bundle(&bytes, &what, &info)?;
    judge(census(&set))?;
    super::write_cache(&cached_path, &bytes)?;
    if let Some(v) = validators {
        let v = serde_json::to_vec(&v).unwrap_or_default();
        super::write_cache(&dir.join(VALIDATORS_FILE), &v)?;
    }
    Ok(set)
}

pub fn cached(feed: &FeedConfig, dir: &Path) -> Result<Option<(StixSet, u64)>, FeedError> {
    let path = dir.join(BUNDLE_FILE);
    let Some(bytes) = super::read_cache(&path, feed.max_bytes)? else {
        return Ok(None);
    };
    let info = format!("STIX bundle {}", feed.location.redacted());
    let set = parse_bundle(&bytes, &path.display().to_string(), &info)?;
    Ok(Some((set, super::mtime(&path))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, labels: &[&str], expected: Result<(&str, &str), &str>) {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let got = indicator_ioc(pattern, &labels);
        let got = got
            .as_ref()
            .map(|(t, v)| (*t, v.as_str()))
            .map_err(String::as_str);
        assert_eq!(got, expected, "{pattern}");
    }

    #[test]
    fn patterns_misp_emits() {
        check(
            "[domain-name:value = 'circl.lu']",
            &[],
            Ok(("domain", "circl.lu")),
        );
        check(
            "[domain-name:value = 'c2.evil.example']",
            &[
                "misp:type=\"hostname\"",
                "misp:category=\"Network activity\"",
            ],
            Ok(("hostname", "c2.evil.example")),
        );
        check(
            "[domain-name:value = 'circl.lu' AND domain-name:resolves_to_refs[*].value = '149.13.33.14']",
            &[],
            Ok(("domain|ip", "circl.lu|149.13.33.14")),
        );
        check(
            "[url:value = 'http://evil.example/a?b=c']",
            &[],
            Ok(("url", "http://evil.example/a?b=c")),
        );
        check(
            "[ipv4-addr:value = '203.0.113.5']",
            &[],
            Ok(("ip-dst", "203.0.113.5")),
        );
        check(
            "[ipv6-addr:value='2001:db8::1']",
            &[],
            Ok(("ip-dst", "2001:db8::1")),
        );
        check(
            "[ipv4-addr:value = '192.0.2.0/24']",
            &[],
            Ok(("ip-dst", "192.0.2.0/24")),
        );
        check(
            "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '198.51.100.7']",
            &[],
            Ok(("ip-dst", "198.51.100.7")),
        );
        check(
            "[network-traffic:src_ref.type = 'ipv6-addr' AND network-traffic:src_ref.value = '2001:db8::5']",
            &[],
            Ok(("ip-src", "2001:db8::5")),
        );
        check(
            "[network-traffic:dst_ref.value = '198.51.100.7' AND network-traffic:dst_ref.type = 'ipv4-addr']",
            &[],
            Ok(("ip-dst", "198.51.100.7")),
        );
        check(
            "  [ domain-name:value='a.example' ]  ",
            &[],
            Ok(("domain", "a.example")),
        );
        check(
            r"[url:value = 'http://x.example/it\'s']",
            &[],
            Ok(("url", "http://x.example/it's")),
        );
    }

    #[test]
    fn other_patterns_are_refused_with_a_reason() {
        check("[file:name = 'test_file_name']", &[], Err("file:name"));
        check(
            "[domain-name:value = 'a.example' OR domain-name:value = 'b.example']",
            &[],
            Err("OR"),
        );
        check(
            "[domain-name:value LIKE '%.example']",
            &[],
            Err("operator LIKE"),
        );
        check(
            "[domain-name:value MATCHES '^a']",
            &[],
            Err("operator MATCHES"),
        );
        check(
            "[domain-name:value != 'a.example']",
            &[],
            Err("operator !="),
        );
        check(
            "[domain-name:value = 'a.example'] OR [domain-name:value = 'b.example']",
            &[],
            Err("more than one observation, or a qualifier"),
        );
        check(
            "[domain-name:value = 'a.example'] WITHIN 10 SECONDS",
            &[],
            Err("more than one observation, or a qualifier"),
        );
        check(
            "[ipv4-addr:value = 3]",
            &[],
            Err("compares with something other than a string"),
        );
        check(
            "domain-name:value = 'a.example'",
            &[],
            Err("does not start with ["),
        );
        check(
            "[domain-name:value = 'a.example",
            &[],
            Err("unterminated string"),
        );
        check(
            "[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = 'x.example']",
            &[],
            Err("network-traffic:dst_ref.type domain-name"),
        );
        check(
            "[domain-name:value = 'a.example' AND url:value = 'http://b.example/']",
            &[],
            Err("domain-name:value AND url:value"),
        );
        check(
            "[(domain-name:value = 'a.example')]",
            &[],
            Err("parentheses"),
        );
        check("", &[], Err("does not start with ["));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2020-10-25T16:22:00Z"), Some(1_603_642_920));
        assert_eq!(
            parse_rfc3339("2020-10-25T16:22:00.000Z"),
            Some(1_603_642_920)
        );
        assert_eq!(
            parse_rfc3339("2020-10-25T18:22:00+02:00"),
            Some(1_603_642_920)
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("2020-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2020-10-25T16:22:00"), None);
    }

    #[test]
    fn revoked_expired_and_provenance() {
        use crate::policy::{Action, FeedInfo, Policy};
        let bundle = br#"{"type": "bundle", "id": "bundle--a31158d6-4ac2-485d-8bd2-e05f2f0aa1a1", "objects": [
          {"type": "indicator", "id": "indicator--11111111-0000-4000-8000-000000000001", "pattern_type": "stix",
           "pattern": "[domain-name:value = 'live.example']", "labels": ["misp:type=\"domain\""]},
          {"type": "indicator", "id": "indicator--11111111-0000-4000-8000-000000000002", "pattern_type": "stix",
           "pattern": "[domain-name:value = 'revoked.example']", "revoked": true},
          {"type": "indicator", "id": "indicator--11111111-0000-4000-8000-000000000003", "pattern_type": "stix",
           "pattern": "[domain-name:value = 'expired.example']", "valid_until": "2001-01-01T00:00:00Z"},
          {"type": "indicator", "id": "indicator--11111111-0000-4000-8000-000000000004", "pattern_type": "stix",
           "pattern": "[domain-name:value = 'future.example']", "valid_until": "2999-01-01T00:00:00Z"},
          {"type": "indicator", "id": "indicator--11111111-0000-4000-8000-000000000005", "pattern_type": "sigma",
           "pattern": "title: x"},
          {"type": "indicator", "id": "indicator--11111111-0000-4000-8000-000000000006", "pattern_type": "stix",
           "pattern": "[domain-name:value = 'reported.example']"},
          {"type": "report", "id": "report--22222222-0000-4000-8000-000000000001", "name": "OSINT - a report",
           "object_refs": ["indicator--11111111-0000-4000-8000-000000000006"]},
          {"type": "identity", "id": "identity--33333333-0000-4000-8000-000000000001", "name": "ignored"}
        ]}"#;
        let set = parse_bundle(bundle, "b.json", "STIX bundle b.json").expect("parses");
        assert_eq!(set.uuid, "a31158d6-4ac2-485d-8bd2-e05f2f0aa1a1");
        assert_eq!(set.objects.len(), 7, "identity dropped");
        let mut c = Compiler::new(vec![FeedInfo {
            name: "s".into(),
            kind: "stix".into(),
            action: Action::Nxdomain,
            location: "b.json".into(),
        }]);
        push_set(&set, 0, &mut c);
        let p = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
        assert!(p.lookup_str("live.example").hit().is_some());
        assert!(p.lookup_str("future.example").hit().is_some());
        assert!(p.lookup_str("revoked.example").hit().is_none());
        assert!(p.lookup_str("expired.example").hit().is_none());
        let r = &p.meta().reports[0];
        assert_eq!(r.deleted, 1);
        assert_eq!(
            r.unsupported.get("stix-expired (valid_until passed)"),
            Some(&1)
        );
        assert_eq!(r.unsupported.get("stix-pattern-type: sigma"), Some(&1));

        let hit = p.lookup_str("live.example").hit().expect("hit");
        let prov = p.provenance_of(hit.set).next().expect("prov");
        assert_eq!(
            prov.attribute_uuid.as_deref(),
            Some("11111111-0000-4000-8000-000000000001")
        );
        let ev = p.event(prov).expect("event");
        assert_eq!(ev.uuid, "a31158d6-4ac2-485d-8bd2-e05f2f0aa1a1");
        assert_eq!(ev.info, "STIX bundle b.json");

        let hit = p.lookup_str("reported.example").hit().expect("hit");
        let prov = p.provenance_of(hit.set).next().expect("prov");
        let ev = p.event(prov).expect("event");
        assert_eq!(ev.uuid, "22222222-0000-4000-8000-000000000001");
        assert_eq!(ev.info, "OSINT - a report");
    }

    #[test]
    fn bad_bundles() {
        let check = |doc: &[u8], needle: &str| {
            let e = parse_bundle(doc, "feed.json", "i")
                .expect_err("bad")
                .to_string();
            assert!(e.contains("feed.json") && e.contains(needle), "{e}");
        };
        check(
            br#"{"type": "indicator", "id": "x"}"#,
            "found type \"indicator\"",
        );
        check(
            br#"{"type": "bundle", "objects": [{"type": "indicator"}]}"#,
            "missing field `id`",
        );
        check(
            br#"{"type": "bundle", "objects": {"a": 1}}"#,
            "invalid type",
        );
        check(
            b"{\"type\": \"bundle\", \"objects\": [",
            "expected a STIX 2.1 bundle",
        );
    }
}
