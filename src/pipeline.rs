//! The compile pipeline: every feed and the allowlist in, one artifact out.
//!
//! Used by `schild compile` and by the server's refresh loop. The artifact
//! on disk is only ever replaced by a complete, verified new one; a compile
//! that would silently lose a feed's contribution is refused instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::Config;
use crate::error::error_chain;
use crate::feeds::Puller;
use crate::policy::{
    AllowScope, AllowSource, ArtifactError, Compiler, FeedInfo, FeedReport, FetchStatus,
    NewBlockCount, Policy, artifact,
};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot read allowlist {path}")]
    Allowlist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("warninglist {path} is not valid")]
    Warninglist {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("feed(s) {} failed with no cached copy; keeping the last good artifact so their indicators stay blocked", feeds.join(", "))]
    WouldDrop { feeds: Vec<String> },
    #[error("the update newly blocks {new} names, more than guard.max_new_blocks ({max}): it is held in {} and the list in use keeps serving; apply it with `schild guard accept`", path.display())]
    Held { new: u64, max: u64, path: PathBuf },
    #[error("feed(s) {} have never been fetched successfully (no last good copy); no list is written, so nothing passes for a complete list", feeds.join(", "))]
    NeverFetched { feeds: Vec<String> },
}

/// What a compile did.
#[derive(Debug, Clone)]
pub struct CompileOutcome {
    pub path: PathBuf,
    pub serial: u64,
    pub names: usize,
    pub ips: usize,
    pub bytes: usize,
    pub reports: Vec<FeedReport>,
}

impl CompileOutcome {
    /// What the artifact `policy`, to be found at `path`, holds.
    pub fn of(path: &Path, policy: &Policy) -> CompileOutcome {
        CompileOutcome {
            path: path.to_path_buf(),
            serial: policy.serial(),
            names: policy.name_count(),
            ips: policy.meta().ip_triggers.len(),
            bytes: policy.file_bytes(),
            reports: policy.meta().reports.clone(),
        }
    }

    /// Feeds whose fetch failed (cached copy used, or nothing).
    pub fn failed_feeds(&self) -> impl Iterator<Item = &FeedReport> {
        self.reports
            .iter()
            .filter(|r| r.fetch != FetchStatus::Fresh)
    }
}

/// Where a compile takes the feeds from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// Fetch every feed (falling back to its last good copy).
    Fetch,
    /// Only the last good copies: a quick local recompile, e.g. after the
    /// allowlist changed.
    CachedOnly,
    /// Fetch only the feed at this index (`schild ctl refresh FEED`), the
    /// others from their last good copies; `accept_shrink` lets this one
    /// fetch pass the shrink guard (as `max_shrink_percent = 100` would).
    One { feed: usize, accept_shrink: bool },
}

/// Pull every feed, compile, and write the artifact atomically into
/// `state_dir`. Returns the outcome; the artifact is left untouched on error.
pub async fn compile(config: &Config, puller: &Puller) -> Result<CompileOutcome, PipelineError> {
    compile_with(config, puller, Pull::Fetch).await
}

/// [`compile`], taking the feeds from where `pull` says.
pub async fn compile_with(
    config: &Config,
    puller: &Puller,
    pull: Pull,
) -> Result<CompileOutcome, PipelineError> {
    let path = config.artifact_path();
    remove_stale_temp_files(config);
    let previous = Policy::load(&path).ok();
    let feeds: Vec<FeedInfo> = config
        .feeds
        .iter()
        .map(|f| FeedInfo {
            name: f.name.clone(),
            kind: f.kind.as_str().to_string(),
            action: f.action,
            location: f.location.redacted(),
        })
        .collect();
    let mut compiler = Compiler::new(feeds);
    if let Some(prev) = &previous {
        compiler.set_previous(prev.serial(), prev.content_hash());
    } else if let Some(serial) = artifact::read_serial(&path) {
        compiler.set_previous_serial(serial);
    }
    load_allowlist(config, &mut compiler)?;

    let mut lost = Vec::new();
    for (i, feed) in config.feeds.iter().enumerate() {
        let id = i as u16;
        let fetched = match pull {
            Pull::Fetch => puller.pull(feed).await,
            Pull::One {
                feed: only,
                accept_shrink,
            } if only == i => {
                if accept_shrink {
                    tracing::warn!(feed = %feed.name, "this refresh accepts any shrink (--accept-shrink)");
                    let mut f = feed.clone();
                    f.max_shrink_percent = 100;
                    puller.pull(&f).await
                } else {
                    puller.pull(feed).await
                }
            }
            Pull::CachedOnly | Pull::One { .. } => match puller.cached(feed) {
                Ok(Some((pulled, _))) => {
                    // Not a fetch: keep what the last fetch reported.
                    let last = previous
                        .as_ref()
                        .and_then(|p| p.meta().reports.iter().find(|r| r.feed == feed.name))
                        .map(|r| r.fetch.clone())
                        .unwrap_or_default();
                    pulled.push_into(id, &mut compiler);
                    compiler.set_fetch_status(id, last);
                    continue;
                }
                Ok(None) => Err(crate::feeds::FeedError::Format {
                    what: format!("feed {}", feed.name),
                    message: "no cached copy to recompile from".into(),
                }),
                Err(e) => Err(e),
            },
        };
        match fetched {
            Ok(pulled) => {
                pulled.push_into(id, &mut compiler);
                tracing::info!(feed = %feed.name, "feed pulled");
            }
            Err(error) => {
                let error = crate::feeds::failure_text(&error);
                match puller.cached(feed) {
                    Ok(Some((pulled, cached_at))) => {
                        tracing::warn!(feed = %feed.name, %error, cached_at, "feed failed; using its last good copy");
                        pulled.push_into(id, &mut compiler);
                        compiler.set_fetch_status(id, FetchStatus::Cached { error, cached_at });
                    }
                    Ok(None) | Err(_) => {
                        // Never fetched successfully: compiling without it
                        // would pass an incomplete list for a whole one
                        // (on a first start, an empty one). An empty feed
                        // that was fetched fine is not this.
                        tracing::error!(feed = %feed.name, %error, "feed failed and has no last good copy");
                        lost.push(feed.name.clone());
                        compiler.set_fetch_status(id, FetchStatus::Failed { error });
                    }
                }
            }
        }
    }
    if !lost.is_empty() {
        return Err(if previous.is_some() {
            PipelineError::WouldDrop { feeds: lost }
        } else {
            PipelineError::NeverFetched { feeds: lost }
        });
    }
    // The guard's count of newly blocked names, taken as the index is
    // written (a second walk of a million names otherwise).
    let mut guard = previous
        .as_ref()
        .filter(|_| config.guard.max_new_blocks > 0)
        .map(NewBlockCount::new);
    let bytes = compiler.finish_with(|key, value| {
        if let Some(g) = guard.as_mut() {
            g.push(key, value);
        }
    })?;
    // Verify what we are about to install, exactly as the server will.
    let policy = Policy::from_bytes(bytes)?;
    warn_protected(&policy);
    let held = config.held_artifact_path();
    if let Some(guard) = &guard {
        let new = guard.count();
        let max = config.guard.max_new_blocks;
        if new > max {
            // Held beside the live one, for `schild guard accept`.
            artifact::write_atomic(&held, policy.raw_bytes())?;
            return Err(PipelineError::Held {
                new,
                max,
                path: held,
            });
        }
    }
    // A held update that a later one replaced is void.
    if held.exists()
        && let Err(e) = std::fs::remove_file(&held)
    {
        tracing::warn!(path = %held.display(), error = %e, "cannot remove the held update");
    }
    let outcome = CompileOutcome::of(&path, &policy);
    artifact::write_atomic(&path, policy.raw_bytes())?;
    Ok(outcome)
}

/// Hand the memory a compile freed back to the kernel. A compile of a big
/// list allocates several times the artifact's size (the names, their
/// provenance, the sort) and frees it all, but glibc keeps freed memory in
/// its arenas: without this a server's RSS stays at the compile's peak
/// (1M names: 36 MB serving, 218 MB after a reload) until it exits.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own
    // heaps to the kernel; it touches no memory in use.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A write cut short (a SIGKILL during a compile) leaves its temporary
/// file behind; one older than this is no write in progress.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(60);

/// Remove the temporary files of writes that never finished: in
/// `state_dir` (the artifact) and in each feed's cache folder.
fn remove_stale_temp_files(config: &Config) {
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let feeds = config.state_dir.join("feeds");
    let mut dirs = vec![config.state_dir.clone(), feeds.clone()];
    // A feed's folder and the folders in it (a MISP feed keeps `events/`).
    for feed in subdirs(&feeds) {
        dirs.extend(subdirs(&feed));
        dirs.push(feed);
    }
    for dir in dirs {
        match crate::fs::remove_stale_temp_files(&dir, STALE_TEMP) {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(dir = %dir.display(), removed, "removed temporary files left by an interrupted write")
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %error_chain(&e), "cannot clean up temporary files")
            }
        }
    }
}

#[derive(Deserialize)]
struct Warninglist {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    list: Vec<String>,
    #[serde(default)]
    matching_attributes: Vec<String>,
}

/// Read a list file (allowlist, protected names) and register it as an
/// allow source of `kind`.
fn read_list(c: &mut Compiler, kind: &str, path: &Path) -> Result<(u32, String), PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|source| PipelineError::Allowlist {
        path: path.to_path_buf(),
        source,
    })?;
    let src = c.allow_source(AllowSource {
        kind: kind.into(),
        path: path.display().to_string(),
        name: None,
    });
    Ok((src, text))
}

/// A list file's entries with their line numbers (from 1): `#` starts a
/// comment, blank lines are skipped.
fn list_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(n, line)| {
        let line = line.split('#').next().unwrap_or("").trim();
        (!line.is_empty()).then_some((n + 1, line))
    })
}

fn load_allowlist(config: &Config, c: &mut Compiler) -> Result<(), PipelineError> {
    // `schild allow` writes false positives to this file; it is always read.
    let local = config.local_allowlist_path();
    let local = local.exists().then_some(local);
    for path in config.allowlist.files.iter().chain(local.iter()) {
        let (src, text) = read_list(c, "file", path)?;
        for (n, line) in list_lines(&text) {
            if let Ok(net) = crate::policy::compile::parse_net(line)
                && line.parse::<std::net::IpAddr>().is_ok() | line.contains('/')
            {
                c.allow_net(src, net);
                continue;
            }
            if let Err(e) = c.allow(src, line, AllowScope::Subtree) {
                tracing::warn!(file = %path.display(), line = n, value = line, error = %e, "allowlist entry ignored");
            }
        }
    }
    for path in &config.allowlist.warninglists {
        load_warninglist(path, c)?;
    }
    load_protected(config, c)
}

/// `[guard] protected`: names of clinical systems, one a line (`#`
/// comments); each spares itself and every name below it.
fn load_protected(config: &Config, c: &mut Compiler) -> Result<(), PipelineError> {
    for path in &config.guard.protected {
        let (src, text) = read_list(c, "protected", path)?;
        for (n, line) in list_lines(&text) {
            if let Err(e) = c.protect(src, line) {
                tracing::warn!(file = %path.display(), line = n, value = line, error = %e, "protected entry ignored");
            }
        }
    }
    Ok(())
}

/// How many protected-name refusals are logged one by one per compile.
const PROTECTED_LOGGED: usize = 20;

/// A feed listed a clinical system: say so loudly (it is also a metric).
fn warn_protected(policy: &Policy) {
    let mut n = 0;
    for (feed, r) in policy.protected_refusals() {
        n += 1;
        if n <= PROTECTED_LOGGED
            && let crate::policy::RefusalReason::Protected { entry, source } = &r.reason
        {
            let file = policy
                .allow_source(*source)
                .map(|s| s.path.as_str())
                .unwrap_or("");
            tracing::warn!(feed, ioc = %r.value, protected = %entry, file, "a feed lists a protected clinical name; the IOC is refused, the name stays resolvable");
        }
    }
    if n > PROTECTED_LOGGED {
        tracing::warn!(
            refused = n,
            "IOCs refused as protected names (the first {PROTECTED_LOGGED} are logged)"
        );
    }
}

/// Attribute types a warninglist must cover to matter for schild.
const NAME_TYPES: [&str; 6] = ["domain", "hostname", "domain|ip", "url", "ip-dst", "ip-src"];

fn load_warninglist(path: &Path, c: &mut Compiler) -> Result<(), PipelineError> {
    let bytes = std::fs::read(path).map_err(|source| PipelineError::Allowlist {
        path: path.to_path_buf(),
        source,
    })?;
    let wl: Warninglist =
        serde_json::from_slice(&bytes).map_err(|source| PipelineError::Warninglist {
            path: path.to_path_buf(),
            source,
        })?;
    let applies = wl.matching_attributes.is_empty()
        || wl
            .matching_attributes
            .iter()
            .any(|t| NAME_TYPES.contains(&t.as_str()));
    if !applies {
        tracing::warn!(file = %path.display(), "warninglist does not cover any network attribute type; ignored");
        return Ok(());
    }
    let src = c.allow_source(AllowSource {
        kind: "warninglist".into(),
        path: path.display().to_string(),
        name: wl.name.clone(),
    });
    let mut bad = BTreeSet::new();
    match wl.kind.as_str() {
        "hostname" | "string" => {
            let scope = if wl.kind == "hostname" {
                AllowScope::Subtree
            } else {
                AllowScope::Exact
            };
            for v in &wl.list {
                let v = v.trim().trim_matches('.');
                if v.parse::<std::net::IpAddr>().is_ok() {
                    continue;
                }
                if c.allow(src, v, scope).is_err() {
                    bad.insert(v.to_string());
                }
            }
        }
        "cidr" => {
            for v in &wl.list {
                match crate::policy::compile::parse_net(v) {
                    Ok(net) => c.allow_net(src, net),
                    Err(_) => {
                        bad.insert(v.clone());
                    }
                }
            }
        }
        other => {
            tracing::warn!(file = %path.display(), kind = other, "warninglist type not supported (hostname, string and cidr are); ignored");
        }
    }
    if !bad.is_empty() {
        tracing::warn!(file = %path.display(), count = bad.len(), "warninglist entries that are not names were ignored");
    }
    Ok(())
}
