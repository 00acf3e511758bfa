//! Keeping the policy fresh without a gap.
//!
//! A refresh runs the compile pipeline (pull every feed, compile, verify,
//! write the artifact atomically) on a thread of its own, loads the new
//! artifact and swaps it in with one atomic store. Queries in flight keep
//! the policy they loaded; the old one is freed when the last of them is
//! done, so memory during a swap is the old plus the new artifact. A failed
//! refresh is logged and counted and changes nothing that is served. Timers,
//! SIGHUP and `POST /reload` all come through [`Refresher::refresh`], which
//! never runs two compiles at once and coalesces requests: at most one
//! compile runs and one is pending, and every request that arrives while
//! one is pending shares its result (30 concurrent `POST /reload` compile
//! twice, not 30 times). The pending compile starts after the running one,
//! so it sees every change made before its requests.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;

use super::compile_child::{ChildError, Ran};
use super::metrics::Metrics;
use crate::config::{Config, OnPopular};
use crate::error::error_chain;
use crate::feeds::Puller;
use crate::pipeline::{self, CompileOutcome, PipelineError, Pull};
use crate::policy::{ArtifactError, FetchStatus, Policy};
use crate::rpz::xfr::RpzPrimary;
use crate::sightings::quarantine::QuarantineSet;

/// Why a refresh changed nothing (the previous policy, if any, stays).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("cannot start the compile runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Compile(#[from] PipelineError),
    #[error("cannot load the new artifact")]
    Load(#[source] ArtifactError),
    /// The compile in its own process failed or was killed.
    #[error(transparent)]
    Child(ChildError),
    #[error("the compile task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("the refresh was abandoned before it finished")]
    Abandoned,
    #[error("there is no feed {0:?} in the configuration")]
    UnknownFeed(String),
}

/// A refresh's outcome, shared by every request it served.
pub type RefreshResult = Result<Refreshed, Arc<RefreshError>>;

/// The compile that waits for the running one; requests join it.
struct Pending {
    result: tokio::sync::watch::Receiver<Option<RefreshResult>>,
    /// Some request wants the feeds pulled (not only recompiled).
    fetch: bool,
}

/// What a successful refresh installed.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub serial: u64,
    pub names: usize,
    pub ips: usize,
    /// Feeds that could not be fetched (their cached copy, if any, was used).
    pub failed_feeds: Vec<String>,
}

pub struct Refresher {
    /// Swapped by a configuration reload (SIGHUP); each compile takes the
    /// one current when it starts.
    config: arc_swap::ArcSwap<Config>,
    puller: Puller,
    store: Arc<ArcSwapOption<Policy>>,
    metrics: Arc<Metrics>,
    lock: tokio::sync::Mutex<()>,
    /// The pending compile, if one waits for `lock`.
    pending: std::sync::Mutex<Option<Pending>>,
    /// The RPZ primary (with `[rpz]`): created with the first list, then
    /// told of every new one (journal step, NOTIFY).
    rpz: Arc<ArcSwapOption<RpzPrimary>>,
    /// Stops the RPZ NOTIFY tasks at shutdown.
    rpz_stop: CancellationToken,
    /// Today's name history (with `[history]`), written out before a
    /// retro-hunt.
    history: std::sync::OnceLock<super::history::TodayHandle>,
    /// The quarantined names (`guard.on_popular = "quarantine"`) the
    /// handler reads: loaded before each list is installed and whenever
    /// the state file changes (`schild guard release`, `schild allow`).
    quarantine: Arc<arc_swap::ArcSwap<QuarantineSet>>,
}

impl Refresher {
    pub fn new(
        config: Config,
        store: Arc<ArcSwapOption<Policy>>,
        metrics: Arc<Metrics>,
    ) -> Refresher {
        Refresher {
            puller: Puller::new(&config.state_dir),
            config: arc_swap::ArcSwap::from_pointee(config),
            store,
            metrics,
            lock: tokio::sync::Mutex::new(()),
            pending: std::sync::Mutex::new(None),
            rpz: Arc::new(ArcSwapOption::empty()),
            rpz_stop: CancellationToken::new(),
            history: std::sync::OnceLock::new(),
            quarantine: Arc::new(arc_swap::ArcSwap::from_pointee(QuarantineSet::default())),
        }
    }

    /// The quarantine slot the handler reads.
    pub fn quarantine(&self) -> Arc<arc_swap::ArcSwap<QuarantineSet>> {
        self.quarantine.clone()
    }

    /// Read the quarantine state again and swap it in.
    fn load_quarantine(&self) {
        let set = crate::sightings::quarantine::load_set(&self.config.load());
        let n = set.len();
        let was = self.quarantine.load().len();
        self.metrics
            .guard_quarantined
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        self.quarantine.store(Arc::new(set));
        if n != was {
            tracing::info!(quarantined = n, "quarantine state loaded");
        }
    }

    /// The configuration compiles use now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Use `config` from the next compile on (feeds, allowlists, policy).
    pub fn set_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    /// Give the refresher today's name history, for retro-hunts.
    pub fn set_history(&self, today: super::history::TodayHandle) {
        let _ = self.history.set(today);
    }

    /// The RPZ primary slot the handler reads.
    pub fn rpz(&self) -> Arc<ArcSwapOption<RpzPrimary>> {
        self.rpz.clone()
    }

    /// Stop the RPZ NOTIFY tasks.
    pub fn stop_rpz(&self) {
        self.rpz_stop.cancel();
    }

    /// Load the last good artifact from `state_dir`, if there is one.
    /// `Ok(false)`: there is none. A damaged artifact is an error.
    pub fn load_existing(&self) -> Result<bool, ArtifactError> {
        let path = self.config.load().artifact_path();
        match Policy::load(&path) {
            Ok(p) => {
                tracing::info!(
                    path = %path.display(),
                    serial = p.serial(),
                    names = p.name_count(),
                    ips = p.meta().ip_triggers.len(),
                    "policy loaded"
                );
                if let Ok(h) = Policy::load(&self.config.load().held_artifact_path()) {
                    let new = crate::policy::new_blocks(Some(&p), &h, |_| {});
                    tracing::warn!(
                        new_blocks = new,
                        "an update is HELD (guard.max_new_blocks); `schild guard accept` applies it"
                    );
                    self.metrics
                        .guard_held
                        .set(i64::try_from(new).unwrap_or(i64::MAX));
                }
                self.install(p);
                Ok(true)
            }
            Err(ArtifactError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Load the artifact `schild guard accept` put in place (the compile
    /// lock held, so no refresh overwrites it meanwhile).
    async fn load_accepted(&self) -> Result<(), ArtifactError> {
        let _one_at_a_time = self.lock.lock().await;
        let path = self.config.load().artifact_path();
        let p = Policy::load(&path)?;
        let serving = self.store.load().as_ref().map(|p| p.serial());
        if serving == Some(p.serial()) {
            return Ok(());
        }
        tracing::warn!(
            serial = p.serial(),
            names = p.name_count(),
            "held update accepted; now serving it"
        );
        let previous = self.store.load_full();
        let new = Arc::new(p);
        // Its new IOCs are hunted like those of any refresh, before it
        // serves (a popular name may be quarantined).
        if let (Some(prev), Some(today)) = (previous, self.history.get().cloned()) {
            let config = self.config.load_full();
            let hunted = new.clone();
            let retro =
                tokio::task::spawn_blocking(move || retro_hunt(&config, &today, &prev, &hunted))
                    .await;
            for r in retro.unwrap_or_default() {
                self.metrics.retro_hits(&r);
            }
        }
        self.install_arc(new);
        self.metrics.guard_held.set(0);
        self.metrics.reloads.inc();
        Ok(())
    }

    /// Seconds since the loaded artifact was compiled.
    pub fn age(&self) -> Option<Duration> {
        let guard = self.store.load();
        let p = guard.as_ref()?;
        let now = crate::clock::unix_now();
        Some(Duration::from_secs(
            now.saturating_sub(p.meta().compiled_at),
        ))
    }

    /// The shortest feed refresh interval (5 minutes without feeds).
    pub fn interval(&self) -> Duration {
        self.config
            .load()
            .feeds
            .iter()
            .map(|f| f.refresh)
            .min()
            .unwrap_or(Duration::from_secs(300))
    }

    fn install(&self, p: Policy) {
        self.install_arc(Arc::new(p));
    }

    fn install_arc(&self, p: Arc<Policy>) {
        // First the quarantine a retro-hunt of this list may have added
        // to, so no quarantined name is blocked for a moment.
        self.load_quarantine();
        self.metrics.set_policy(Some(&p));
        self.store.store(Some(p.clone()));
        if self.config.load().rpz.is_none() {
            return;
        }
        match self.rpz.load_full() {
            Some(primary) => {
                if let Err(e) = primary.update(p) {
                    tracing::warn!(error = %error_chain(&e), "RPZ journal not written; secondaries will get a full transfer");
                }
            }
            None => match RpzPrimary::new(&self.config.load(), p, Some(self.rpz_stop.clone())) {
                Ok(primary) => {
                    tracing::info!(zone = %primary.settings().origin_text, serial = primary.serial(), "RPZ primary serving");
                    self.rpz.store(Some(Arc::new(primary)));
                }
                Err(e) => tracing::error!(error = %error_chain(&e), "cannot serve the RPZ zone"),
            },
        }
    }

    /// Pull, compile, load and swap in. Joins the pending compile if there
    /// is one, else queues one behind the compile running.
    pub async fn refresh(self: &Arc<Self>, why: &'static str) -> RefreshResult {
        self.request(why, Pull::Fetch).await
    }

    /// Recompile from the feeds' last good copies (no network): for a
    /// change of the allowlist, which must apply at once.
    pub async fn recompile(self: &Arc<Self>, why: &'static str) -> RefreshResult {
        self.request(why, Pull::CachedOnly).await
    }

    /// Pull one feed now (every other from its last good copy) and
    /// recompile: `schild ctl refresh FEED`. With `accept_shrink` this one
    /// pull passes the shrink guard (garbage is still refused). It waits
    /// for a compile running, but is never merged with other requests.
    pub async fn refresh_feed(self: &Arc<Self>, name: &str, accept_shrink: bool) -> RefreshResult {
        let Some(feed) = self.config.load().feeds.iter().position(|f| f.name == name) else {
            return Err(Arc::new(RefreshError::UnknownFeed(name.to_string())));
        };
        self.metrics.reload_requests.inc();
        let me = self.clone();
        // Its own task, as in `request`: a client that hangs up must not
        // cancel a compile half way.
        let task = tokio::spawn(async move {
            let _one_at_a_time = me.lock.lock().await;
            me.refresh_with(
                "refresh of one feed",
                Pull::One {
                    feed,
                    accept_shrink,
                },
            )
            .await
            .map_err(Arc::new)
        });
        task.await
            .unwrap_or_else(|e| Err(Arc::new(RefreshError::Task(e))))
    }

    async fn request(self: &Arc<Self>, why: &'static str, pull: Pull) -> RefreshResult {
        self.metrics.reload_requests.inc();
        let fetch = matches!(pull, Pull::Fetch);
        let mut rx = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.as_mut() {
                Some(p) => {
                    self.metrics.reload_coalesced.inc();
                    p.fetch |= fetch;
                    p.result.clone()
                }
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    *pending = Some(Pending {
                        result: rx.clone(),
                        fetch,
                    });
                    // Its own task: a request that goes away (an HTTP
                    // client hanging up) must not cancel the compile the
                    // others wait for.
                    let me = self.clone();
                    tokio::spawn(async move {
                        let _one_at_a_time = me.lock.lock().await;
                        // Running now: later requests queue a new one.
                        let fetch = me
                            .pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .take()
                            .is_none_or(|p| p.fetch);
                        let pull = if fetch { Pull::Fetch } else { Pull::CachedOnly };
                        let result = me.refresh_with(why, pull).await.map_err(Arc::new);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(Err(Arc::new(RefreshError::Abandoned))),
            Err(_) => Err(Arc::new(RefreshError::Abandoned)),
        }
    }

    /// One compile; the caller holds `lock`.
    async fn refresh_with(&self, why: &'static str, pull: Pull) -> Result<Refreshed, RefreshError> {
        tracing::info!(why, "refreshing the policy");
        let config = self.config.load_full();
        let puller = self.puller.clone();
        let previous = self.store.load_full();
        let today = self.history.get().cloned();
        let metrics = self.metrics.clone();
        // A quarantine the hunt adds must be in place before the list that
        // would block those names; an alert can follow the install.
        let hunt_first = config.guard.on_popular == OnPopular::Quarantine;
        let later = (!hunt_first).then(|| (config.clone(), previous.clone(), today.clone()));
        // Compiling is CPU and file work: keep it off the threads that
        // answer queries, in a process of its own (`compile_child`) or on
        // a runtime of its own here (feeds may use HTTP).
        let joined = tokio::task::spawn_blocking(move || {
            let today = if hunt_first { today } else { None };
            let compiled = compile_and_hunt(&config, &puller, pull, previous, today, &metrics);
            // Whether it worked or not, what the compile held is free now.
            pipeline::release_freed_memory();
            compiled
        })
        .await;
        let result = joined.unwrap_or_else(|e| Err(RefreshError::Task(e)));
        match result {
            Ok((outcome, policy, retro)) => {
                for r in &retro {
                    self.metrics.retro_hits(r);
                }
                let mut failed_feeds = Vec::new();
                for r in &outcome.reports {
                    self.metrics.feed_refreshed(&r.feed, &r.fetch);
                    match &r.fetch {
                        FetchStatus::Fresh => {}
                        FetchStatus::Cached { error, .. } => {
                            tracing::warn!(feed = %r.feed, %error, "feed refresh failed; its last good copy stays in use");
                            failed_feeds.push(r.feed.clone());
                        }
                        FetchStatus::Failed { error } => {
                            tracing::error!(feed = %r.feed, %error, "feed refresh failed and there is no copy: the feed blocks nothing");
                            failed_feeds.push(r.feed.clone());
                        }
                    }
                }
                let done = Refreshed {
                    serial: policy.serial(),
                    names: outcome.names,
                    ips: outcome.ips,
                    failed_feeds,
                };
                let policy = Arc::new(policy);
                self.install_arc(policy.clone());
                self.metrics.guard_held.set(0);
                self.metrics.reloads.inc();
                tracing::info!(
                    why,
                    serial = done.serial,
                    names = done.names,
                    ips = done.ips,
                    "policy reloaded"
                );
                // The retro-hunt of an alerting guard, with the new list
                // already answering; the refresh ends when it is done.
                if let Some((config, Some(previous), Some(today))) = later {
                    let hunted = tokio::task::spawn_blocking(move || {
                        retro_hunt(&config, &today, &previous, &policy)
                    })
                    .await;
                    match hunted {
                        Ok(retro) => retro.iter().for_each(|r| self.metrics.retro_hits(r)),
                        Err(e) => {
                            tracing::error!(error = %error_chain(&e), "the retro-hunt failed")
                        }
                    }
                }
                Ok(done)
            }
            Err(RefreshError::Compile(PipelineError::Held { new, max, path })) => {
                // Not a failure of the feeds: the guard held it back.
                self.metrics
                    .guard_held
                    .set(i64::try_from(new).unwrap_or(i64::MAX));
                tracing::warn!(why, new_blocks = new, max_new_blocks = max, held = %path.display(), "update HELD: it newly blocks more names than guard.max_new_blocks; the list in use keeps serving until `schild guard accept`");
                Err(RefreshError::Compile(PipelineError::Held {
                    new,
                    max,
                    path,
                }))
            }
            Err(error) => {
                self.metrics.refresh_failures.inc();
                let text = error_chain(&error);
                if self.store.load().is_some() {
                    tracing::error!(why, error = %text, "policy refresh failed; the previous policy stays in place");
                } else {
                    tracing::error!(why, error = %text, "policy refresh failed and NO POLICY IS LOADED: answers are NOT filtered");
                }
                Err(error)
            }
        }
    }

    /// Recompile when an allowlist file changes (`schild allow`, or an
    /// operator's edit), checking every second until `shutdown`.
    pub async fn watch_allowlist(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        // Read again each round: a configuration reload may name others.
        let watched = |c: &Config| {
            let mut files = c.allowlist.files.clone();
            files.extend(c.allowlist.warninglists.iter().cloned());
            files.push(c.local_allowlist_path());
            files.extend(c.guard.protected.iter().cloned());
            files
        };
        let mut files = watched(&self.config.load());
        let stamp = |files: &[std::path::PathBuf]| -> Vec<Option<SystemTime>> {
            files
                .iter()
                .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
                .collect()
        };
        let mut seen = stamp(&files);
        let held = self.config.load().held_artifact_path();
        let mut was_held = held.exists();
        // `schild guard release` and `schild allow` change the quarantine.
        let quarantine = self.config.load().quarantine_path();
        let quarantine_stamp = || stamp(std::slice::from_ref(&quarantine));
        let mut quarantine_seen = quarantine_stamp();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
            let current = watched(&self.config.load());
            if current != files {
                // A reload recompiles anyway; watch the new files from here.
                files = current;
                seen = stamp(&files);
                continue;
            }
            let q = quarantine_stamp();
            if q != quarantine_seen {
                quarantine_seen = q;
                self.load_quarantine();
            }
            let now = stamp(&files);
            // `schild guard accept` moved the held update into place.
            let is_held = held.exists();
            let accepted = was_held && !is_held;
            was_held = is_held;
            if accepted {
                let _ = self.load_accepted().await;
            } else if now != seen {
                seen = now;
                let _ = self.recompile("allowlist changed").await;
            }
        }
    }

    /// Refresh on the feeds' schedule until `shutdown`. The compile
    /// pipeline pulls every feed, so the loop wakes at the shortest
    /// `refresh_secs`; a failed refresh is retried after a fifth of it.
    pub async fn run(
        self: Arc<Self>,
        first: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let interval = self.interval();
        let mut wait = first;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
            wait = match self.refresh("timer").await {
                Ok(_) => interval,
                Err(_) => (interval / 5).max(Duration::from_secs(10)),
            };
        }
    }
}

/// Retro-sightings per feed, from one compile.
type RetroHits = Vec<crate::sightings::retro::FeedRetro>;

/// The blocking part of a refresh: compile (in a child process, or on a
/// runtime of its own: feeds may use HTTP), load what was written, queue
/// the protected names' false-positive sightings, and, given `today`, hunt
/// the new IOCs in the name history.
fn compile_and_hunt(
    config: &Config,
    puller: &Puller,
    pull: Pull,
    previous: Option<Arc<Policy>>,
    today: Option<super::history::TodayHandle>,
    metrics: &Metrics,
) -> Result<(CompileOutcome, Policy, RetroHits), RefreshError> {
    let policy = match super::compile_child::run(config, &pull) {
        Ok(Ran::Compiled { peak_rss }) => {
            tracing::info!(
                peak_rss_mib = peak_rss / (1 << 20),
                "compiled in a child process"
            );
            metrics
                .compile_peak_rss
                .set(i64::try_from(peak_rss).unwrap_or(i64::MAX));
            Policy::load(&config.artifact_path()).map_err(RefreshError::Load)?
        }
        Ok(Ran::NotHere { why, broken }) => {
            if broken {
                tracing::warn!(%why, "compiling in the server's process");
            } else {
                tracing::info!(%why, "compiling in the server's process");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(RefreshError::Runtime)?;
            let outcome = rt.block_on(pipeline::compile_with(config, puller, pull))?;
            Policy::load(&outcome.path).map_err(RefreshError::Load)?
        }
        Err(ChildError::Held(e)) => return Err(RefreshError::Compile(e)),
        Err(e) => return Err(RefreshError::Child(e)),
    };
    let outcome = CompileOutcome::of(&config.artifact_path(), &policy);
    if let Err(e) = crate::sightings::guard::report_protected(config, previous.as_deref(), &policy)
    {
        tracing::error!(error = %error_chain(&e), "cannot queue the false-positive sightings of protected names");
    }
    let retro = match (&previous, today) {
        (Some(prev), Some(today)) => retro_hunt(config, &today, prev, &policy),
        _ => Vec::new(),
    };
    Ok((outcome, policy, retro))
}

/// Write today's names out, then look the IOCs `new` adds up in the name
/// history: retro-sightings per feed. Failures are logged; the new list is
/// installed regardless.
fn retro_hunt(
    config: &Config,
    today: &super::history::TodayHandle,
    previous: &Policy,
    new: &Policy,
) -> RetroHits {
    {
        let mut t = today.lock().unwrap_or_else(|e| e.into_inner());
        if t.dirty()
            && let Err(e) = t.write(&config.history_dir())
        {
            tracing::error!(error = %error_chain(&e), "cannot write today's name history; the retro-hunt misses today");
        }
    }
    match crate::sightings::retro::hunt(config, previous, new) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "the retro-hunt's findings cannot be stored");
            Vec::new()
        }
    }
}
