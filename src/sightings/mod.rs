//! Sightings: every blocked (or log-only) lookup recorded, and reported
//! back to the feed it came from, with none lost.
//!
//! The DNS handler hands each hit to a bounded queue ([`crate::hits`]) and
//! moves on. This task takes hits from the queue, writes the local record
//! ([`log`]), folds hits on one indicator within a window into one
//! sighting, and appends each new sighting to the durable [`spool`] before
//! counting it as recorded. A reporter task sends spooled sightings to MISP
//! or TAXII ([`report`]) and removes them from the spool only once the far
//! side has accepted them; failures are retried with jittered backoff.

pub mod log;
pub mod report;
pub mod spool;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::clock::unix;

use prometheus::{IntCounter, IntGauge, Registry};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, FeedKind, SightingsConfig};
use crate::hits::{HitEvent, Trigger};
use crate::policy::{Policy, Verdict};
use log::{HitLog, LogLine, Pseudonymiser};
use report::{Outcome, Target};
use spool::{Sighting, Spool, SpoolError};

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
                "Hits written to the local sightings log.",
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
                }),
            (None, FeedKind::MispApi, crate::config::Location::Url(url)) => {
                f.api_key.clone().map(|key| Target::Misp {
                    base: with_slash(url),
                    key,
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

/// The running sightings subsystem.
pub struct Sightings {
    settings: SightingsConfig,
    feed_targets: HashMap<String, Target>,
    feed_kinds: HashMap<String, FeedKind>,
    spool: Arc<Mutex<Spool>>,
    log: HitLog,
    pseudo: Pseudonymiser,
    windows: HashMap<(String, String), u64>,
    unspooled: Vec<Sighting>,
    metrics: Metrics,
    wake: Arc<Notify>,
}

impl Sightings {
    /// Open the spool and the log. Fails when the spool cannot be opened:
    /// the caller decides whether to serve without sightings.
    pub fn open(config: &Config, metrics: Metrics) -> Result<Sightings, SpoolError> {
        let settings = config.sightings.clone();
        let spool = Spool::open(&config.spool_dir(), settings.spool_max_bytes)?;
        let log = HitLog::new(
            settings.log.clone(),
            settings.log_max_bytes,
            settings.log_keep,
            Duration::from_secs(86_400),
        );
        let pseudo = Pseudonymiser::new(
            settings.client_privacy,
            config.pseudonym_key_path(),
            settings.pseudonym_rotate,
        );
        Ok(Sightings {
            feed_targets: targets(config),
            feed_kinds: config
                .feeds
                .iter()
                .map(|f| (f.name.clone(), f.kind))
                .collect(),
            settings,
            spool: Arc::new(Mutex::new(spool)),
            log,
            pseudo,
            windows: HashMap::new(),
            unspooled: Vec::new(),
            metrics,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Run until `cancel`, then drain what is queued. Spawns the reporter.
    pub async fn run(mut self, mut rx: mpsc::Receiver<HitEvent>, cancel: CancellationToken) {
        let reporter = Reporter {
            spool: self.spool.clone(),
            targets: self.feed_targets.clone(),
            source: self.settings.source.clone(),
            identity: identity(&self.settings.source),
            metrics: self.metrics.clone(),
            wake: self.wake.clone(),
        };
        let rcancel = cancel.clone();
        let reporter = tokio::spawn(reporter.run(rcancel));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                hit = rx.recv() => match hit {
                    Some(hit) => {
                        let mut batch = vec![hit];
                        while batch.len() < 1024 {
                            match rx.try_recv() {
                                Ok(h) => batch.push(h),
                                Err(_) => break,
                            }
                        }
                        self.process(batch);
                    }
                    None => break,
                },
                _ = tick.tick() => self.housekeeping(),
                _ = cancel.cancelled() => {
                    // Take what the handler already queued.
                    let mut batch = Vec::new();
                    while let Ok(h) = rx.try_recv() {
                        batch.push(h);
                    }
                    self.process(batch);
                    break;
                }
            }
        }
        self.housekeeping();
        let _ = self.log.flush();
        let _ = reporter.await;
    }

    /// Record a batch of hits: log lines, then new sightings to the spool.
    pub fn process(&mut self, batch: Vec<HitEvent>) {
        if batch.is_empty() {
            return;
        }
        let window_secs = self.settings.window.as_secs().max(1);
        let mut new = std::mem::take(&mut self.unspooled);
        for hit in &batch {
            self.write_log(hit);
            let t = unix(hit.at);
            let window = t - t % window_secs;
            let value = match &hit.trigger {
                Trigger::Name(n) => n.clone(),
                Trigger::Ip(ip) => ip.to_string(),
            };
            for p in hit.policy.provenance_of(hit.set) {
                let Some(feed) = hit.policy.feed(p.feed) else {
                    continue;
                };
                let mut targets = Vec::new();
                if self.feed_targets.contains_key(&feed.name) {
                    targets.push(feed.name.clone());
                }
                let stix = matches!(
                    self.feed_kinds.get(&feed.name),
                    Some(FeedKind::Stix | FeedKind::Taxii)
                );
                if stix
                    && p.attribute_uuid.is_some()
                    && self.feed_targets.contains_key(TAXII_TARGET)
                {
                    targets.push(TAXII_TARGET.to_string());
                }
                for target in targets {
                    let ioc = p.attribute_uuid.clone().unwrap_or_else(|| value.clone());
                    let key = (target.clone(), ioc);
                    if self.windows.get(&key) == Some(&window) {
                        continue; // already a sighting for this window
                    }
                    self.windows.insert(key, window);
                    new.push(Sighting {
                        id: 0,
                        target,
                        kind: "0".into(),
                        uuid: p.attribute_uuid.clone(),
                        value: value.clone(),
                        first_seen: t,
                        last_seen: t,
                        count: 1,
                        window,
                    });
                }
            }
        }
        // The log is flushed on the one-second tick (and when its buffer
        // fills), not per batch: under a flood of hits, a write per batch
        // cost a syscall per two answers. The spool, not the log, is what
        // must be durable.
        self.spool_new(new);
    }

    fn spool_new(&mut self, new: Vec<Sighting>) {
        if new.is_empty() {
            return;
        }
        let n = new.len();
        let result = match self.spool.lock() {
            Ok(mut sp) => sp.append(new.clone()).map(|_| sp.merges()),
            Err(_) => Err(SpoolError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other("spool lock poisoned"),
            }),
        };
        match result {
            Ok(_) => {
                self.metrics.recorded.inc_by(n as u64);
                self.wake.notify_one();
            }
            Err(e) => {
                // Kept in memory and retried every second; not counted as
                // recorded until it is on disk.
                tracing::error!(error = %crate::error::error_chain(&e), pending = n, "cannot write sightings to the spool; retrying");
                self.unspooled = new;
            }
        }
    }

    fn write_log(&mut self, hit: &HitEvent) {
        let prov = hit.policy.provenance_of(hit.set).next();
        let feed = prov
            .and_then(|p| hit.policy.feed(p.feed))
            .map(|f| f.name.as_str())
            .unwrap_or("");
        let event = prov.and_then(|p| hit.policy.event(p));
        let ioc = match &hit.trigger {
            Trigger::Name(n) => n.clone(),
            Trigger::Ip(ip) => ip.to_string(),
        };
        let line = LogLine {
            time: log::rfc3339(hit.at),
            client: self.pseudo.client(hit.client),
            qname: &hit.qname,
            qtype: qtype_name(hit.qtype),
            transport: hit.transport,
            action: hit.action.as_str(),
            ioc,
            feed,
            event_uuid: event.map(|e| e.uuid.as_str()),
            event_info: event.map(|e| e.info.as_str()),
            attribute_uuid: prov.and_then(|p| p.attribute_uuid.as_deref()),
            tags: prov.map(|p| p.tags.as_slice()).unwrap_or(&[]),
        };
        match self.log.write(&line) {
            Ok(()) => self.metrics.logged.inc(),
            Err(e) => {
                tracing::error!(file = %self.log.path().display(), error = %e, "cannot write the sightings log")
            }
        }
    }

    fn housekeeping(&mut self) {
        if let Err(e) = self.log.flush() {
            tracing::error!(file = %self.log.path().display(), error = %e, "cannot write the sightings log");
        }
        if !self.unspooled.is_empty() {
            let again = std::mem::take(&mut self.unspooled);
            self.spool_new(again);
        }
        if let Ok(mut sp) = self.spool.lock() {
            match sp.import_inbox() {
                Ok(n) if n > 0 => {
                    self.metrics.recorded.inc_by(n as u64);
                    self.wake.notify_one();
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %crate::error::error_chain(&e), "cannot import sightings inbox")
                }
            }
            update_gauges(&sp, &self.metrics);
        }
        // Forget windows that have ended.
        let now = unix(SystemTime::now());
        let w = self.settings.window.as_secs().max(1);
        self.windows.retain(|_, start| *start + w > now);
    }
}

fn update_gauges(sp: &Spool, m: &Metrics) {
    m.pending.set(sp.pending_count() as i64);
    m.spool_bytes.set(sp.bytes() as i64);
    let now = unix(SystemTime::now());
    m.oldest_pending_age.set(
        sp.oldest_pending()
            .map(|t| now.saturating_sub(t) as i64)
            .unwrap_or(0),
    );
    let merges = sp.merges();
    let seen = m.merged.get();
    if merges > seen {
        m.merged.inc_by(merges - seen);
    }
}

fn qtype_name(t: u16) -> String {
    hickory_proto::rr::RecordType::from(t).to_string()
}

struct Reporter {
    spool: Arc<Mutex<Spool>>,
    targets: HashMap<String, Target>,
    source: String,
    identity: String,
    metrics: Metrics,
    wake: Arc<Notify>,
}

impl Reporter {
    async fn run(self, cancel: CancellationToken) {
        let http = match report::client(Duration::from_secs(15)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client for sightings; they stay in the spool");
                return;
            }
        };
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
                let mut failed: Option<Outcome> = None;
                match target {
                    Target::Misp { base, key } => {
                        for s in list {
                            if cancel.is_cancelled() {
                                break;
                            }
                            let outcome =
                                report::send_misp(&http, base, key, &self.source, s).await;
                            if !self.settle(name, &[s], outcome.clone(), &mut done) {
                                failed = Some(outcome);
                                break;
                            }
                        }
                    }
                    Target::Taxii { collection, key } => {
                        for chunk in list.chunks(100) {
                            let outcome = report::send_taxii(
                                &http,
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

/// What `schild allow` did.
#[derive(Debug)]
pub struct AllowOutcome {
    pub file: PathBuf,
    /// Indicators the name overrides, each with its feed (false-positive
    /// sightings were queued for those whose feed reports sightings).
    pub overridden: Vec<(String, String)>,
    pub queued: usize,
}

/// Record a false positive: allowlist `name` and queue a false-positive
/// sighting (type "1") for each indicator it overrides.
pub fn allow(
    config: &Config,
    policy: Option<&Policy>,
    name: &str,
    reason: &str,
) -> Result<AllowOutcome, std::io::Error> {
    let name = crate::policy::normalise(&crate::policy::name::refang(name)).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{name:?}: {e}"))
    })?;
    let file = config.local_allowlist_path();
    append_allow(&file, name.as_str(), reason)?;

    let mut overridden = Vec::new();
    let mut batch = Vec::new();
    let targets = targets(config);
    let now = unix(SystemTime::now());
    if let Some(policy) = policy {
        let hit = match policy.lookup_str(name.as_str()) {
            Verdict::Blocked(h) => Some(h),
            Verdict::Allowed { blocked, .. } => Some(blocked),
            _ => None,
        };
        if let Some(hit) = hit {
            let listed = crate::policy::matched_suffix(name.as_str(), hit.matched_len).to_string();
            for p in policy.provenance_of(hit.set) {
                let feed = policy
                    .feed(p.feed)
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                overridden.push((
                    p.value.clone().unwrap_or_else(|| listed.clone()),
                    feed.clone(),
                ));
                if targets.contains_key(&feed) {
                    batch.push(Sighting {
                        id: 0,
                        target: feed,
                        kind: "1".into(),
                        uuid: p.attribute_uuid.clone(),
                        value: listed.clone(),
                        first_seen: now,
                        last_seen: now,
                        count: 1,
                        window: now,
                    });
                }
            }
        }
    }
    let queued = batch.len();
    if !batch.is_empty() {
        spool::write_inbox(&config.spool_dir(), &batch)
            .map_err(|e| std::io::Error::other(crate::error::error_chain(&e)))?;
    }
    Ok(AllowOutcome {
        file,
        overridden,
        queued,
    })
}

fn append_allow(file: &Path, name: &str, reason: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    writeln!(f, "{name}  # {} {reason}", log::rfc3339(SystemTime::now()))?;
    f.sync_data()
}
