//! Sightings: every blocked (or log-only) lookup recorded, and reported
//! back to the feed it came from, with none lost.
//!
//! The DNS handler hands each hit to a bounded queue (`server::hits`) and
//! moves on. The `task` takes hits from the queue, writes the local record
//! ([`log`]), folds hits on one indicator within a window into one
//! sighting, and appends each new sighting to the durable [`spool`] before
//! counting it as recorded. The `reporter` sends spooled sightings to MISP
//! or TAXII ([`report`]) and removes them from the spool only once the far
//! side has accepted them; failures are retried with jittered backoff.

mod allow;
pub mod guard;
mod hit;
pub mod log;
pub mod quarantine;
pub mod report;
mod reporter;
pub mod retro;
pub mod spool;
mod task;

use std::collections::HashMap;

use prometheus::{IntCounter, IntGauge, Registry};

use crate::config::{Config, FeedKind};
pub use allow::{AllowError, AllowOutcome, allow};
pub use hit::{HitEvent, NO_SET, Trigger};
use report::Target;
pub use task::Sightings;

/// How long a consumer of a query-path queue (the hits, the name history)
/// waits after taking a batch before it takes the next. A consumer parked
/// on an empty queue is woken by every `try_send`: a futex wake and a
/// thread switch per query, which cost more than the blocked answer
/// itself under load. Waiting lets the queue fill instead, so a busy
/// second costs a hundred wake-ups. At 100,000 hits a second a pace holds
/// 1,000, far inside the queues' room (the server's `HIT_QUEUE`, the name history's).
pub const PACE: std::time::Duration = std::time::Duration::from_millis(10);

/// Name of the target for STIX sightings posted to TAXII.
pub const TAXII_TARGET: &str = "taxii";

/// The sightings metrics, registered once at start-up.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub recorded: IntCounter,
    pub pending: IntGauge,
    pub sent: IntCounter,
    pub failed: IntCounter,
    pub rejected: IntCounter,
    pub spool_bytes: IntGauge,
    pub oldest_pending_age: IntGauge,
    pub merged: IntCounter,
    pub logged: IntCounter,
    pub log_errors: IntCounter,
}

impl Metrics {
    pub fn register(reg: &Registry) -> Result<Metrics, prometheus::Error> {
        let c = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let m = IntCounter::new(name, help)?;
            reg.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let g = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let m = IntGauge::new(name, help)?;
            reg.register(Box::new(m.clone()))?;
            Ok(m)
        };
        Ok(Metrics {
            recorded: c(
                "schild_sightings_recorded_total",
                "Sightings written durably to the spool.",
            )?,
            pending: g(
                "schild_sightings_pending",
                "Sightings in the spool not yet accepted by their feed.",
            )?,
            sent: c(
                "schild_sightings_sent_total",
                "Sightings accepted by their feed.",
            )?,
            failed: c(
                "schild_sightings_failed_total",
                "Attempts to send a sighting that failed and will be retried.",
            )?,
            rejected: c(
                "schild_sightings_rejected_total",
                "Sightings the feed refused for good (for example, the attribute no longer exists).",
            )?,
            spool_bytes: g(
                "schild_sightings_spool_bytes",
                "Bytes held by the sightings spool on disk.",
            )?,
            oldest_pending_age: g(
                "schild_sightings_oldest_pending_age_seconds",
                "Age of the oldest sighting not yet accepted (0 when none).",
            )?,
            merged: c(
                "schild_sightings_spool_merges_total",
                "Times the spool was full and merged unsent sightings into coarser windows.",
            )?,
            logged: c(
                "schild_sightings_log_lines_total",
                "Lines written to the local sightings log (identical hits within a second share one line).",
            )?,
            log_errors: c(
                "schild_sightings_log_errors_total",
                "Writes to the local sightings log that failed (lines lost from the local record; the spool is not affected).",
            )?,
        })
    }
}

/// Reporting targets by feed name, from the configuration.
pub fn targets(config: &Config) -> HashMap<String, Target> {
    let mut t = HashMap::new();
    for f in config.feeds.iter().filter(|f| f.report_sightings) {
        let target = match (&f.sightings_url, f.kind, &f.location) {
            (Some(url), _, _) => f
                .sightings_key
                .clone()
                .or_else(|| f.api_key.clone())
                .map(|key| Target::Misp {
                    base: with_slash(url),
                    key,
                    tls: f.tls.clone(),
                }),
            (None, FeedKind::MispApi, crate::config::Location::Url(url)) => {
                f.api_key.clone().map(|key| Target::Misp {
                    base: with_slash(url),
                    key,
                    tls: f.tls.clone(),
                })
            }
            _ => None,
        };
        match target {
            Some(target) => {
                t.insert(f.name.clone(), target);
            }
            None => {
                tracing::warn!(feed = %f.name, "report_sightings is set but there is no MISP URL and key; sightings stay local")
            }
        }
    }
    let s = &config.sightings;
    if let Some(url) = &s.taxii_collection {
        t.insert(
            TAXII_TARGET.to_string(),
            Target::Taxii {
                collection: with_slash(url),
                key: s.taxii_key.clone(),
                tls: s.taxii_tls.clone(),
            },
        );
    }
    t
}

fn with_slash(u: &reqwest::Url) -> reqwest::Url {
    let mut u = u.clone();
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    u
}

/// The STIX identity that sightings are attributed to, derived from the
/// configured source so it is stable across restarts.
pub fn identity(source: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, source.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50; // name-based version
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    format!("identity--{}", uuid::Uuid::from_bytes(b))
}
