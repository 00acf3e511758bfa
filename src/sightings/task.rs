//! The sightings task: takes hits from the queue, writes the local record,
//! folds hits on one indicator within a window into one sighting, and
//! spools each new sighting before counting it as recorded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::log::{self, HitLog, LogLine, Pseudonymiser};
use super::report::Target;
use super::reporter::Reporter;
use super::spool::{Sighting, Spool, SpoolError};
use super::{HitEvent, Metrics, TAXII_TARGET, Trigger, identity, targets};
use crate::clock::unix;
use crate::config::{Config, FeedKind, SightingsConfig};

/// The running sightings subsystem.
pub struct Sightings {
    settings: SightingsConfig,
    feed_targets: HashMap<String, Target>,
    feed_kinds: HashMap<String, FeedKind>,
    spool: Arc<Mutex<Spool>>,
    log: HitLog,
    pseudo: Pseudonymiser,
    /// The window each (target, indicator) was last sighted in, by
    /// target (every one of `feed_targets`, from the start) then
    /// indicator: looked up by reference, a key is made only for a new
    /// indicator.
    windows: HashMap<String, HashMap<String, u64>>,
    /// The RFC 3339 text of the last second a line was written for.
    time: log::TimeText,
    unspooled: Vec<Sighting>,
    metrics: Metrics,
    wake: Arc<Notify>,
    lines: LineFolder,
    /// The client as the log shows it, kept between lines.
    client: String,
    log_errors: ErrorThrottle,
    /// Where the retro-hunt leaves its findings (`retro::hunt`).
    retro_dir: PathBuf,
}

/// How many distinct (client, name, type) keys are folded before the lines
/// are written early: a bound on the memory a flood of unique names takes.
const MAX_FOLDED: usize = 8192;

/// Identical hits within a second, folded into one log line with a count:
/// a client repeating one blocked name (malware retries, a browser's
/// prefetch) costs one line a second, not one a query.
///
/// The index holds positions in `hits`, hashed by (client, name, type)
/// with std's keyed SipHash (the names come from clients: a fixed hash
/// would let them pick collisions); a hit moves in whole, nothing of it
/// is copied into a key.
#[derive(Default)]
struct LineFolder {
    index: hashbrown::HashTable<usize>,
    hasher: std::hash::RandomState,
    hits: Vec<(HitEvent, u32)>,
}

impl LineFolder {
    fn key(hit: &HitEvent) -> (IpAddr, &str, u16) {
        (hit.client, hit.qname.as_str(), hit.qtype)
    }

    fn add(&mut self, hit: HitEvent) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(Self::key(&hit));
        let hits = &mut self.hits;
        let same = |&i: &usize| {
            hits.get(i)
                .is_some_and(|h| Self::key(&h.0) == Self::key(&hit))
        };
        if let Some(&i) = self.index.find(hash, same) {
            if let Some(h) = hits.get_mut(i) {
                h.1 = h.1.saturating_add(1);
            }
            return;
        }
        let hasher = &self.hasher;
        let rehash = |&i: &usize| hits.get(i).map_or(0, |h| hasher.hash_one(Self::key(&h.0)));
        self.index.insert_unique(hash, hits.len(), rehash);
        hits.push((hit, 1));
    }

    fn len(&self) -> usize {
        self.hits.len()
    }

    fn take(&mut self) -> Vec<(HitEvent, u32)> {
        self.index.clear();
        std::mem::take(&mut self.hits)
    }
}

/// An I/O error of the local log is logged once per interval, with how many
/// lines failed since, not once per query (a full disk under a flood).
struct ErrorThrottle {
    last: Option<Instant>,
    failed_since: u64,
}

impl ErrorThrottle {
    const INTERVAL: Duration = Duration::from_secs(60);

    fn failed(&mut self, lines: u64, path: &std::path::Path, e: &std::io::Error) {
        self.failed_since += lines;
        if self.last.is_none_or(|t| t.elapsed() >= Self::INTERVAL) {
            tracing::error!(
                file = %path.display(),
                error = %e,
                lines_lost = self.failed_since,
                "cannot write the sightings log (logged at most once a minute; sightings to the feeds are not affected)"
            );
            self.last = Some(Instant::now());
            self.failed_since = 0;
        }
    }
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
        let feed_targets = targets(config);
        Ok(Sightings {
            windows: feed_targets
                .keys()
                .map(|t| (t.clone(), HashMap::new()))
                .collect(),
            feed_targets,
            feed_kinds: config
                .feeds
                .iter()
                .map(|f| (f.name.clone(), f.kind))
                .collect(),
            settings,
            spool: Arc::new(Mutex::new(spool)),
            log,
            pseudo,
            time: log::TimeText::default(),
            unspooled: Vec::new(),
            metrics,
            wake: Arc::new(Notify::new()),
            lines: LineFolder::default(),
            client: String::new(),
            log_errors: ErrorThrottle {
                last: None,
                failed_since: 0,
            },
            retro_dir: super::retro::retro_dir(config),
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
                        // Let the queue fill a while (sightings::PACE
                        // says why); the tick's housekeeping can wait.
                        tokio::select! {
                            _ = tokio::time::sleep(super::PACE) => {}
                            _ = cancel.cancelled() => {}
                        }
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
        for hit in batch {
            let t = unix(hit.at);
            let window = t - t % window_secs;
            let value: std::borrow::Cow<'_, str> = match &hit.trigger {
                Trigger::Name(n) => n.as_str().into(),
                Trigger::Ip(ip) => ip.to_string().into(),
            };
            for p in hit
                .policy
                .provenance_of(hit.set)
                .take_while(|_| hit.set != super::NO_SET)
            {
                let Some(feed) = hit.policy.feed(p.feed) else {
                    continue;
                };
                let stix = matches!(
                    self.feed_kinds.get(&feed.name),
                    Some(FeedKind::Stix | FeedKind::Taxii)
                );
                let targets = [
                    Some(feed.name.as_str()).filter(|f| self.feed_targets.contains_key(*f)),
                    Some(TAXII_TARGET).filter(|t| {
                        stix && p.attribute_uuid.is_some() && self.feed_targets.contains_key(*t)
                    }),
                ];
                let ioc = p.attribute_uuid.as_deref().unwrap_or(&value);
                for target in targets.into_iter().flatten() {
                    // Each target is a key of feed_targets, whose maps
                    // are made at open and never dropped.
                    let Some(seen) = self.windows.get_mut(target) else {
                        continue;
                    };
                    if seen.get(ioc) == Some(&window) {
                        continue; // already a sighting for this window
                    }
                    seen.insert(ioc.to_string(), window);
                    new.push(Sighting {
                        id: 0,
                        target: target.to_string(),
                        kind: "0".into(),
                        uuid: p.attribute_uuid.clone(),
                        value: value.to_string(),
                        first_seen: t,
                        last_seen: t,
                        count: 1,
                        window,
                    });
                }
            }
            drop(value);
            self.lines.add(hit);
        }
        // Log lines are folded and written on the one-second tick (and the
        // file flushed then), not per batch: under a flood of hits, a write
        // per batch cost a syscall per two answers. The spool, not the log,
        // is what must be durable.
        if self.lines.len() >= MAX_FOLDED {
            self.write_lines();
        }
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

    /// Take the retro-hunt's findings: their lines into the log, their
    /// sightings into the spool; a file goes only once both are done.
    fn import_retro(&mut self) {
        for (file, batch) in super::retro::pending(&self.retro_dir) {
            let mut lines_ok = true;
            for r in &batch {
                match self.log.write(&r.line) {
                    Ok(()) => self.metrics.logged.inc(),
                    Err(e) => {
                        lines_ok = false;
                        self.metrics.log_errors.inc();
                        let path = self.log.path().to_path_buf();
                        self.log_errors.failed(1, &path, &e);
                        break;
                    }
                }
            }
            if !lines_ok || self.log.flush().is_err() {
                return;
            }
            let new: Vec<Sighting> = batch.into_iter().filter_map(|r| r.sighting).collect();
            let n = new.len();
            let spooled = match self.spool.lock() {
                Ok(mut sp) => sp.append(new).map(|_| ()),
                Err(_) => return,
            };
            match spooled {
                Ok(()) => {
                    self.metrics.recorded.inc_by(n as u64);
                    self.wake.notify_one();
                    if let Err(e) = std::fs::remove_file(&file) {
                        tracing::error!(file = %file.display(), error = %e, "cannot remove a retro-hunt file; its lines may be logged again");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %crate::error::error_chain(&e), "cannot spool retro-sightings; retrying");
                    return;
                }
            }
        }
    }

    /// Write the folded lines of the last second.
    fn write_lines(&mut self) {
        for (hit, count) in self.lines.take() {
            self.write_log(&hit, count);
        }
    }

    fn write_log(&mut self, hit: &HitEvent, count: u32) {
        let prov = hit
            .policy
            .provenance_of(hit.set)
            .next()
            .filter(|_| hit.set != super::NO_SET);
        let feed = prov
            .and_then(|p| hit.policy.feed(p.feed))
            .map(|f| f.name.as_str())
            .unwrap_or("");
        let event = prov.and_then(|p| hit.policy.event(p));
        let ip;
        let ioc = match &hit.trigger {
            Trigger::Name(n) => n.as_str(),
            Trigger::Ip(a) => {
                ip = a.to_string();
                ip.as_str()
            }
        };
        let mut client = std::mem::take(&mut self.client);
        client.clear();
        let has_client = self.pseudo.client_into(hit.client, &mut client);
        let line = LogLine {
            time: self.time.at(hit.at),
            client: Some(client.as_str()).filter(|_| has_client),
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
            client_group: hit.client_group.as_deref(),
            count,
        };
        let written = self.log.write_hit(&line);
        self.client = client;
        match written {
            Ok(()) => self.metrics.logged.inc(),
            Err(e) => {
                self.metrics.log_errors.inc();
                let path = self.log.path().to_path_buf();
                self.log_errors.failed(1, &path, &e);
            }
        }
    }

    fn housekeeping(&mut self) {
        self.write_lines();
        if let Err(e) = self.log.flush() {
            self.metrics.log_errors.inc();
            let path = self.log.path().to_path_buf();
            self.log_errors.failed(0, &path, &e);
        }
        if !self.unspooled.is_empty() {
            let again = std::mem::take(&mut self.unspooled);
            self.spool_new(again);
        }
        self.import_retro();
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
        for windows in self.windows.values_mut() {
            windows.retain(|_, start| *start + w > now);
        }
    }
}

pub(super) fn update_gauges(sp: &Spool, m: &Metrics) {
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

fn qtype_name(t: u16) -> &'static str {
    hickory_proto::rr::RecordType::from(t).into()
}
