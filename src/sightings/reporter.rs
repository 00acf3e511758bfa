//! The reporter: sends spooled sightings to MISP or TAXII
//! ([`super::report`]) and removes them from the spool only once the far
//! side accepted them; failures are retried with jittered backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use super::report::{self, Outcome, Target};
use super::spool::{Sighting, Spool};
use super::task::update_gauges;
use crate::http::TlsClient;

/// Sends spooled sightings to their targets and settles the spool.
pub(super) struct Reporter {
    pub(super) spool: Arc<Mutex<Spool>>,
    pub(super) targets: HashMap<String, Target>,
    pub(super) source: String,
    pub(super) identity: String,
    pub(super) metrics: Metrics,
    pub(super) wake: Arc<Notify>,
}

impl Reporter {
    pub(super) async fn run(self, cancel: CancellationToken) {
        // One client per TLS setup (most targets share the [http] one).
        let mut clients: HashMap<&TlsClient, reqwest::Client> = HashMap::new();
        for (name, target) in &self.targets {
            if clients.contains_key(target.tls()) {
                continue;
            }
            match report::client(Duration::from_secs(15), target.tls()) {
                Ok(c) => {
                    clients.insert(target.tls(), c);
                }
                Err(e) => {
                    tracing::error!(target = %name, error = %crate::error::error_chain(&e), "cannot set up the HTTPS client for sightings; they stay in the spool");
                }
            }
        }
        let mut backoff: HashMap<String, (u32, Instant)> = HashMap::new();
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = cancel.cancelled() => return,
            }
            let now = Instant::now();
            let batch: Vec<Sighting> = match self.spool.lock() {
                Ok(sp) => sp
                    .pending()
                    .filter(|s| {
                        backoff
                            .get(&s.target)
                            .is_none_or(|(_, until)| *until <= now)
                    })
                    .take(500)
                    .cloned()
                    .collect(),
                Err(_) => return,
            };
            if batch.is_empty() {
                continue;
            }
            let mut done = Vec::new();
            let mut by_target: HashMap<&str, Vec<&Sighting>> = HashMap::new();
            for s in &batch {
                by_target.entry(s.target.as_str()).or_default().push(s);
            }
            for (name, list) in by_target {
                let Some(target) = self.targets.get(name) else {
                    tracing::warn!(
                        target = name,
                        count = list.len(),
                        "sightings for a feed that no longer reports sightings are dropped"
                    );
                    self.metrics.rejected.inc_by(list.len() as u64);
                    done.extend(list.iter().map(|s| s.id));
                    continue;
                };
                let Some(http) = clients.get(target.tls()) else {
                    // Logged at start; kept in the spool for a fixed config.
                    continue;
                };
                let mut failed: Option<Outcome> = None;
                match target {
                    Target::Misp { base, key, .. } => {
                        for s in list {
                            if cancel.is_cancelled() {
                                break;
                            }
                            let outcome = report::send_misp(http, base, key, &self.source, s).await;
                            if !self.settle(name, &[s], outcome.clone(), &mut done) {
                                failed = Some(outcome);
                                break;
                            }
                        }
                    }
                    Target::Taxii {
                        collection, key, ..
                    } => {
                        for chunk in list.chunks(100) {
                            let outcome = report::send_taxii(
                                http,
                                collection,
                                key.as_ref(),
                                &self.identity,
                                chunk,
                            )
                            .await;
                            if !self.settle(name, chunk, outcome.clone(), &mut done) {
                                failed = Some(outcome);
                                break;
                            }
                        }
                    }
                }
                match failed {
                    Some(outcome) => {
                        let entry = backoff.entry(name.to_string()).or_insert((0, now));
                        entry.0 += 1;
                        let wait = report::backoff(entry.0);
                        entry.1 = Instant::now() + wait;
                        match outcome {
                            Outcome::Forbidden => tracing::error!(
                                target = name,
                                retry_in_secs = wait.as_secs(),
                                "the feed refused our API key (403) for sightings: check the key file; retrying"
                            ),
                            Outcome::Retry(why) => {
                                tracing::warn!(target = name, error = %why, retry_in_secs = wait.as_secs(), "sending sightings failed; retrying")
                            }
                            _ => {}
                        }
                    }
                    None => {
                        backoff.remove(name);
                    }
                }
            }
            if let Ok(mut sp) = self.spool.lock() {
                if let Err(e) = sp.ack(&done) {
                    tracing::error!(error = %crate::error::error_chain(&e), "cannot record accepted sightings; they may be sent twice");
                }
                update_gauges(&sp, &self.metrics);
            }
        }
    }

    /// Account for an outcome. Returns false when the target should back off.
    fn settle(
        &self,
        target: &str,
        sent: &[&Sighting],
        outcome: Outcome,
        done: &mut Vec<u64>,
    ) -> bool {
        match outcome {
            Outcome::Accepted => {
                self.metrics.sent.inc_by(sent.len() as u64);
                done.extend(sent.iter().map(|s| s.id));
                true
            }
            Outcome::Rejected(why) => {
                tracing::warn!(target, error = %why, count = sent.len(), "feed refused a sighting for good; dropped");
                self.metrics.rejected.inc_by(sent.len() as u64);
                done.extend(sent.iter().map(|s| s.id));
                true
            }
            Outcome::Forbidden | Outcome::Retry(_) => {
                self.metrics.failed.inc_by(sent.len() as u64);
                false
            }
        }
    }
}
