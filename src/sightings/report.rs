//! Reporting sightings back to where the indicators came from.
//!
//! MISP: `POST /sightings/add` with the attribute uuid (or, for indicators
//! without one, the value), `type` "0" (or "1" for a false positive), the
//! configured `source` and the time of the first hit in the window. STIX:
//! `sighting` objects posted to a TAXII 2.1 collection. Nothing about the
//! client or the query name is sent: only the indicator itself.

use std::time::Duration;

use serde_json::{Value, json};

use super::spool::Sighting;
use crate::config::Secret;
use crate::http::TlsClient;

/// Where sightings of one feed go.
#[derive(Debug, Clone)]
pub enum Target {
    Misp {
        base: reqwest::Url,
        key: Secret,
        tls: TlsClient,
    },
    Taxii {
        collection: reqwest::Url,
        key: Option<Secret>,
        tls: TlsClient,
    },
}

impl Target {
    /// The TLS setup its HTTPS client needs.
    pub fn tls(&self) -> &TlsClient {
        match self {
            Target::Misp { tls, .. } | Target::Taxii { tls, .. } => tls,
        }
    }
}

/// What the far side said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Refused for good (e.g. the attribute no longer exists): retrying
    /// would never succeed.
    Rejected(String),
    /// The key was refused (403): retried, and reported loudly.
    Forbidden,
    /// Network error, timeout, 5xx, 429: retried with backoff.
    Retry(String),
}

/// An HTTP client for reporting: the same client policy as feed pulls.
pub fn client(
    timeout: Duration,
    tls: &TlsClient,
) -> Result<reqwest::Client, crate::http::ClientError> {
    crate::http::client(timeout, tls)
}

/// The JSON body MISP's `/sightings/add` takes for one sighting.
pub fn misp_body(s: &Sighting, source: &str) -> Value {
    match &s.uuid {
        Some(uuid) => {
            json!({"uuid": uuid, "source": source, "type": s.kind, "timestamp": s.first_seen})
        }
        None => {
            json!({"values": [s.value], "source": source, "type": s.kind, "timestamp": s.first_seen})
        }
    }
}

/// Send one sighting to MISP.
pub async fn send_misp(
    http: &reqwest::Client,
    base: &reqwest::Url,
    key: &Secret,
    source: &str,
    s: &Sighting,
) -> Outcome {
    let url = match base.join("sightings/add") {
        Ok(u) => u,
        Err(e) => return Outcome::Rejected(format!("bad MISP URL: {e}")),
    };
    let resp = http
        .post(url)
        .header("Authorization", key.expose())
        .header("Accept", "application/json")
        .json(&misp_body(s, source))
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(crate::error::error_chain(&e)),
    };
    let status = resp.status();
    if status.as_u16() == 403 || status.as_u16() == 401 {
        return Outcome::Forbidden;
    }
    if status.is_server_error() || status.as_u16() == 429 {
        return Outcome::Retry(format!("HTTP {status}"));
    }
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Retry(crate::error::error_chain(&e)),
    };
    if !status.is_success() {
        return Outcome::Rejected(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    // MISP answers 200 both ways: `{"Sighting": {...}}` when it saved one,
    // `{"message": "Could not add the Sighting. Reason: ..."}` when not.
    match serde_json::from_slice::<Value>(&body) {
        Ok(v)
            if v.get("Sighting").is_some()
                || v.as_array()
                    .is_some_and(|a| a.iter().any(|x| x.get("Sighting").is_some())) =>
        {
            Outcome::Accepted
        }
        Ok(v) => match v.get("message").and_then(Value::as_str) {
            Some(m) => Outcome::Rejected(m.chars().take(200).collect()),
            None => Outcome::Retry("unexpected answer from MISP".into()),
        },
        Err(_) => Outcome::Retry("answer from MISP is not JSON".into()),
    }
}

/// STIX 2.1 `sighting` objects for a batch (indicators must have a uuid).
pub fn stix_sightings(batch: &[&Sighting], identity: &str) -> Value {
    let now = super::log::rfc3339(std::time::SystemTime::now());
    let t = |secs: u64| super::log::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(secs));
    let objects: Vec<Value> = batch
        .iter()
        .filter_map(|s| {
            let uuid = s.uuid.as_deref()?;
            let of = if uuid.contains("--") {
                uuid.to_string()
            } else {
                format!("indicator--{uuid}")
            };
            Some(json!({
                "type": "sighting",
                "spec_version": "2.1",
                "id": format!("sighting--{}", uuid::Uuid::new_v4()),
                "created": now,
                "modified": now,
                "first_seen": t(s.first_seen),
                "last_seen": t(s.last_seen.max(s.first_seen)),
                "count": s.count.min(999_999_999),
                "sighting_of_ref": of,
                "where_sighted_refs": [identity],
            }))
        })
        .collect();
    json!({ "objects": objects })
}

const TAXII: &str = "application/taxii+json;version=2.1";

/// Post a batch of sightings to a TAXII 2.1 collection.
pub async fn send_taxii(
    http: &reqwest::Client,
    collection: &reqwest::Url,
    key: Option<&Secret>,
    identity: &str,
    batch: &[&Sighting],
) -> Outcome {
    let url = match collection.join("objects/") {
        Ok(u) => u,
        Err(e) => return Outcome::Rejected(format!("bad TAXII URL: {e}")),
    };
    let mut req = http
        .post(url)
        .header("Accept", TAXII)
        .header("Content-Type", TAXII)
        .body(stix_sightings(batch, identity).to_string());
    if let Some(k) = key {
        req = req.bearer_auth(k.expose());
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Outcome::Accepted,
        Ok(r) if r.status().as_u16() == 401 || r.status().as_u16() == 403 => Outcome::Forbidden,
        Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
            Outcome::Retry(format!("HTTP {}", r.status()))
        }
        Ok(r) => Outcome::Rejected(format!("HTTP {}", r.status())),
        Err(e) => Outcome::Retry(crate::error::error_chain(&e)),
    }
}

/// Jittered exponential backoff: 1 s doubling to 5 minutes, ±50 %.
pub fn backoff(failures: u32) -> Duration {
    let base = 1u64 << failures.min(9);
    let secs = base.min(300) as f64;
    let jitter: f64 = rand::Rng::random_range(&mut rand::rng(), 0.5..1.5);
    Duration::from_secs_f64(secs * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(uuid: Option<&str>) -> Sighting {
        Sighting {
            id: 1,
            target: "zdn".into(),
            kind: "0".into(),
            uuid: uuid.map(str::to_string),
            value: "evil.example".into(),
            first_seen: 1_700_000_000,
            last_seen: 1_700_000_100,
            count: 3,
            window: 1_699_999_800,
        }
    }

    #[test]
    fn misp_body_names_only_the_indicator() {
        let b = misp_body(
            &s(Some("5a3c3045-ab0c-4d38-8efe-459002de0b81")),
            "schild:umc",
        );
        assert_eq!(
            b,
            json!({"uuid":"5a3c3045-ab0c-4d38-8efe-459002de0b81","source":"schild:umc","type":"0","timestamp":1_700_000_000u64})
        );
        let b = misp_body(&s(None), "schild:umc");
        assert_eq!(b["values"], json!(["evil.example"]));
    }

    #[test]
    fn stix_sighting_shape() {
        let a = s(Some("4bb235a7-7d25-4aef-802f-2c6b45c5eceb"));
        let v = stix_sightings(&[&a], "identity--5206ba14-478f-4b0b-9a48-395f690c20a2");
        let o = &v["objects"][0];
        assert_eq!(o["type"], "sighting");
        assert_eq!(
            o["sighting_of_ref"],
            "indicator--4bb235a7-7d25-4aef-802f-2c6b45c5eceb"
        );
        assert_eq!(o["count"], 3);
        assert_eq!(o["first_seen"], "2023-11-14T22:13:20Z");
        assert!(
            o["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("sighting--"))
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_secs_f64(1.5));
        assert!(backoff(20) <= Duration::from_secs(450));
        assert!(backoff(20) >= Duration::from_secs(150));
    }
}
