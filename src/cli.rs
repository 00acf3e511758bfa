//! Command-line commands. `main.rs` parses flags and calls these; each
//! returns the process exit code.

pub mod ctl;
pub mod guard;

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use crate::config::Config;
use crate::error::error_chain;
use crate::exit;
use crate::feeds::Puller;
use crate::pipeline;
use crate::policy::{self, FetchStatus, Policy, Provenance, RefusalReason, Verdict};

/// The host of `query` if it is a URL (`https://host/path`, `host/path`,
/// defanged `hxxp://host[.]example/`), else `None`.
fn url_host(query: &str) -> Option<String> {
    let q = policy::name::refang(query.trim());
    let q = q.as_ref();
    if !q.contains("://") && !q.contains('/') {
        return None;
    }
    let with_scheme = if q.contains("://") {
        q.to_string()
    } else {
        format!("http://{q}")
    };
    let url = url::Url::parse(&with_scheme).ok()?;
    match url.host()? {
        url::Host::Domain(d) => Some(d.to_string()),
        url::Host::Ipv4(a) => Some(a.to_string()),
        url::Host::Ipv6(a) => Some(a.to_string()),
    }
}

/// Load the config or print why not.
pub fn load_config(path: &Path) -> Result<Config, i32> {
    Config::load(path).map_err(|e| {
        eprintln!("schild: {}", error_chain(&e));
        exit::CONFIG
    })
}

/// `schild check-config`: load everything and say what would run.
pub fn check_config(path: &Path) -> i32 {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // What serve will read: a missing or unreadable file fails here, not
    // at the next restart.
    let mut unreadable = 0;
    for (key, path) in config.referenced_files() {
        let readable = std::fs::File::open(&path).and_then(|f| {
            if f.metadata()?.is_file() {
                Ok(())
            } else {
                Err(std::io::Error::other("not a regular file"))
            }
        });
        if let Err(e) = readable {
            eprintln!(
                "schild: {}: {key}: cannot read {}: {e}",
                config.path.display(),
                path.display()
            );
            unreadable += 1;
        }
    }
    // The certificates must also parse: an HTTPS client is set up the way
    // the feed pulls and sightings will set it up.
    if unreadable == 0 {
        let mut tls = vec![("http".to_string(), config.http.clone())];
        for f in &config.feeds {
            tls.push((format!("feed {:?}", f.name), f.tls.clone()));
        }
        for (section, t) in tls {
            if let Err(e) = crate::http::client(std::time::Duration::from_secs(1), &t) {
                eprintln!(
                    "schild: {}: {section}: {}",
                    config.path.display(),
                    crate::error::error_chain(&e)
                );
                unreadable += 1;
            }
        }
    }
    if let (0, Some(path)) = (unreadable, &config.resolver.trust_anchor_file)
        && let Err(e) = crate::config::anchors::read_anchor_file(path)
    {
        eprintln!(
            "schild: {}: resolver.trust_anchor_file: {}",
            config.path.display(),
            crate::error::error_chain(&e)
        );
        unreadable += 1;
    }
    // The client groups' name lists must parse, as serve reads them.
    if unreadable == 0
        && let Err(e) = crate::config::groups::PerNetworkPolicy::load(&config)
    {
        eprintln!(
            "schild: {}: {}",
            config.path.display(),
            crate::error::error_chain(&e)
        );
        unreadable += 1;
    }
    if unreadable > 0 {
        return exit::CONFIG;
    }
    println!("config {} is valid", config.path.display());
    println!("  state_dir   {}", config.state_dir.display());
    println!("  listen      {:?}", config.server.listen);
    println!("  allow       {:?}", config.server.allow);
    println!("  resolver    {:?}", config.resolver.mode);
    for f in &config.feeds {
        println!(
            "  feed {:<12} {:<10} {:<9} {}",
            f.name,
            f.kind.as_str(),
            f.action,
            f.location.redacted()
        );
    }
    exit::OK
}

/// `schild compile`: pull every feed and write the artifact.
pub async fn compile(config: &Config) -> i32 {
    let puller = Puller::new(&config.state_dir);
    let previous = Policy::load(&config.artifact_path()).ok();
    match pipeline::compile(config, &puller).await {
        Ok(outcome) => {
            if let Ok(new) = Policy::load(&outcome.path)
                && let Err(e) =
                    crate::sightings::guard::report_protected(config, previous.as_ref(), &new)
            {
                eprintln!(
                    "schild: cannot queue the false-positive sightings of protected names: {}",
                    error_chain(&e)
                );
            }
            // Quarantined names the list no longer blocks (allowed, or
            // dropped by the feed) leave the quarantine.
            if let Ok(new) = Policy::load(&outcome.path)
                && let Err(e) = crate::sightings::quarantine::prune(config, |n| {
                    crate::sightings::quarantine::listed_in(&new, n)
                })
            {
                eprintln!(
                    "schild: cannot update the quarantine state: {}",
                    error_chain(&e)
                );
            }
            println!(
                "compiled {} names and {} address triggers into {} ({} bytes, serial {})",
                outcome.names,
                outcome.ips,
                outcome.path.display(),
                outcome.bytes,
                outcome.serial
            );
            let mut out = std::io::stdout().lock();
            for r in &outcome.reports {
                let _ = print_report(&mut out, r);
            }
            if outcome.failed_feeds().next().is_some() {
                exit::FAILURE
            } else {
                exit::OK
            }
        }
        Err(e) => {
            eprintln!("schild: compile failed: {}", error_chain(&e));
            eprintln!("schild: the last good artifact (if any) is still in place");
            exit::FAILURE
        }
    }
}

fn print_report(out: &mut impl Write, r: &policy::FeedReport) -> std::io::Result<()> {
    let status = match &r.fetch {
        FetchStatus::Fresh => "fresh".to_string(),
        FetchStatus::Cached { error, cached_at } => {
            format!("FAILED, using copy from unix time {cached_at}: {error}")
        }
        FetchStatus::Failed { error } => format!("FAILED, no copy: {error}"),
    };
    writeln!(out, "feed {}: {}", r.feed, status)?;
    writeln!(
        out,
        "  {} records: {} names, {} addresses; skipped {} not to_ids, {} deleted",
        r.records, r.names, r.ips, r.not_to_ids, r.deleted
    )?;
    if r.refused_allowlist + r.refused_public_suffix + r.refused_address > 0 {
        writeln!(
            out,
            "  refused: {} by the allowlist, {} public suffixes, {} special-use addresses",
            r.refused_allowlist, r.refused_public_suffix, r.refused_address
        )?;
    }
    for (t, n) in &r.skipped_types {
        writeln!(out, "  skipped type {t}: {n}")?;
    }
    for (why, n) in &r.invalid {
        writeln!(out, "  invalid ({why}): {n}")?;
    }
    for (v, why) in r.invalid_samples.iter().take(5) {
        writeln!(out, "    e.g. {v:?} ({why})")?;
    }
    if r.passthru + r.client_ips > 0 {
        writeln!(
            out,
            "  rpz: {} passthru exceptions (allowlist entries), {} client-ip triggers",
            r.passthru, r.client_ips
        )?;
    }
    for (why, n) in &r.unsupported {
        writeln!(out, "  unsupported ({why}): {n}")?;
    }
    Ok(())
}

fn load_policy(config: &Config) -> Result<Policy, i32> {
    Policy::load(&config.artifact_path()).map_err(|e| {
        eprintln!("schild: {}", error_chain(&e));
        eprintln!(
            "schild: run `schild compile --config {}` first",
            config.path.display()
        );
        exit::CHECK_ERROR
    })
}

/// `schild check NAME [--client ADDR]`: is it blocked (for that client),
/// and why? Exit 0 not blocked, 1 blocked, 2 error.
pub fn check(config: &Config, query: &str, client: Option<IpAddr>) -> i32 {
    let code = check_policy(config, query, client);
    // The route is said even without a compiled list.
    let host = url_host(query);
    let name = host.as_deref().unwrap_or(query).trim();
    let is_ip = name
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .is_ok();
    if !is_ip
        && let Ok(n) = policy::normalise(&policy::name::refang(name))
        && let Some(route) = route_of(config, n.as_str())
    {
        let _ = writeln!(std::io::stdout().lock(), "  route: {route}");
    }
    code
}

/// The policy part of [`check`].
fn check_policy(config: &Config, query: &str, client: Option<IpAddr>) -> i32 {
    let policy = match load_policy(config) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let per = match crate::config::groups::PerNetworkPolicy::load(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("schild: {}", error_chain(&e));
            return exit::CHECK_ERROR;
        }
    };
    let mut out = std::io::stdout().lock();
    let group = client.and_then(|c| per.table.group_of(c));
    if let Some(c) = client {
        let _ = match group {
            Some(g) => writeln!(
                out,
                "client {c}: client group {}{}",
                g.name,
                describe_group(g)
            ),
            None => writeln!(
                out,
                "client {c}: in no client group: the global policy applies"
            ),
        };
    }
    let keep =
        |id: u16| group.is_none_or(|g| policy.feed(id).is_some_and(|f| g.uses_feed(&f.name)));
    let as_group = |hit: policy::Hit| match group {
        Some(g) if g.action == policy::groups::GroupAction::LogOnly => policy::Hit {
            action: policy::Action::LogOnly,
            ..hit
        },
        _ => hit,
    };
    // A pasted URL (from a phishing mail, a proxy log) is judged by its host.
    let host = url_host(query);
    if let Some(h) = &host {
        let _ = writeln!(out, "{}: a URL; judging its host {h}", query.trim());
    }
    let query = host.as_deref().unwrap_or(query);
    let as_ip = query
        .trim()
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>();
    if let Ok(ip) = as_ip {
        return match policy.lookup_ip_where(ip, keep).map(as_group) {
            Some(hit) => {
                let trigger = policy
                    .meta()
                    .ip_triggers
                    .iter()
                    .filter(|t| t.set == hit.set && t.net.contains(&ip.to_canonical()))
                    .max_by_key(|t| t.net.prefix_len())
                    .map(|t| format!(" (listed: {})", t.net))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{ip}: BLOCKED as an answer address ({}) by feed {}{trigger}",
                    hit.action,
                    feed_name(&policy, hit.feed)
                );
                let _ = explain_set(&mut out, &policy, hit.set, None);
                if hit.action.enforces() {
                    exit::FAILURE
                } else {
                    exit::OK
                }
            }
            None => {
                let _ = writeln!(out, "{ip}: not blocked as an answer address");
                let _ = explain_refusals(&mut out, &policy, &ip.to_string());
                exit::OK
            }
        };
    }
    let name = match name_arg(query) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let n = name.as_str();
    if let Some(g) = group
        && let Some(names) = &g.allow_only
        && names.matches_str(n).is_none()
    {
        let _ = writeln!(
            out,
            "{n}: BLOCKED (nxdomain) by client group {}: not in its allow_only list (default-deny)",
            g.name
        );
        return exit::FAILURE;
    }
    let verdict = match policy.lookup_labels_where(n.split('.').map(str::as_bytes), keep) {
        Verdict::Blocked(hit) => Verdict::Blocked(as_group(hit)),
        v => v,
    };
    let bypass = per.bypass.as_ref().and_then(|b| b.matches_str(n));
    if let Some(allow) = &per.rebind_allow {
        let _ = if allow.matches_str(n).is_some() {
            writeln!(out, "  rebind protection: exempt (policy.rebind_allow)")
        } else {
            writeln!(
                out,
                "  rebind protection: on (an answer with a private, loopback or link-local address is blocked)"
            )
        };
    }
    if let (Some(len), Verdict::Pass) = (bypass, verdict) {
        let listed = policy::matched_suffix(n, len);
        let _ = writeln!(
            out,
            "{n}: BLOCKED (nxdomain) by policy.block_bypass: {listed} would let clients bypass this resolver"
        );
        return exit::FAILURE;
    }
    match verdict {
        Verdict::Blocked(mut hit) => {
            let listed = policy::matched_suffix(n, hit.matched_len);
            // As the server answers it: a quarantined listed name resolves.
            if hit.action.enforces()
                && crate::sightings::quarantine::load_set(config).contains(listed)
            {
                hit.action = crate::policy::Action::Quarantine;
            }
            let verb = if hit.action == crate::policy::Action::Quarantine {
                "QUARANTINED (guard.on_popular; resolves, recorded, until `schild guard release`)"
            } else if hit.action.enforces() {
                "BLOCKED"
            } else {
                "LOGGED (log-only, not blocked)"
            };
            let _ = writeln!(
                out,
                "{n}: {verb} ({}) by feed {}",
                hit.action,
                feed_name(&policy, hit.feed)
            );
            let how = if hit.exact {
                "the name itself"
            } else {
                "a parent domain, listed with its subdomains"
            };
            let _ = writeln!(out, "  listed name: {listed} ({how})");
            let _ = explain_set(&mut out, &policy, hit.set, Some(listed));
            if hit.action.enforces() {
                exit::FAILURE
            } else {
                exit::OK
            }
        }
        Verdict::Allowed { allow, blocked } => {
            let listed = policy::matched_suffix(n, blocked.matched_len);
            let spared = policy::matched_suffix(n, allow.matched_len);
            let _ = writeln!(
                out,
                "{n}: ALLOWED: listed under {listed} by feed {}, but the allowlist spares it",
                feed_name(&policy, blocked.feed)
            );
            let _ = writeln!(
                out,
                "  allowlist entry: {spared} ({})",
                allow_source(&policy, allow.source)
            );
            let _ = explain_set(&mut out, &policy, blocked.set, Some(listed));
            exit::OK
        }
        Verdict::AllowOnly(allow)
            if policy
                .allow_source(allow.source)
                .is_some_and(|s| s.kind == "protected") =>
        {
            let spared = policy::matched_suffix(n, allow.matched_len);
            let _ = writeln!(
                out,
                "{n}: PROTECTED, never blocked (entry {spared}, {})",
                allow_source(&policy, allow.source)
            );
            let _ = explain_refusals(&mut out, &policy, n);
            exit::OK
        }
        Verdict::AllowOnly(allow) => {
            let spared = policy::matched_suffix(n, allow.matched_len);
            let _ = writeln!(
                out,
                "{n}: not blocked (allowlist entry {spared}, {})",
                allow_source(&policy, allow.source)
            );
            let _ = explain_refusals(&mut out, &policy, n);
            exit::OK
        }
        Verdict::Pass => {
            let _ = writeln!(out, "{n}: not blocked");
            let _ = explain_refusals(&mut out, &policy, n);
            exit::OK
        }
    }
}

/// What a group does, for `check --client`.
fn describe_group(g: &policy::groups::ClientGroup) -> String {
    let mut parts = Vec::new();
    if let Some(names) = &g.allow_only {
        parts.push(format!("allow_only: {} names (default-deny)", names.len()));
    }
    if g.action == policy::groups::GroupAction::LogOnly {
        parts.push("action log-only (hits recorded, answered normally)".to_string());
    }
    if let Some(fs) = &g.feeds {
        parts.push(format!("feeds: {}", fs.join(", ")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

/// Which route answers `name` (a normalised name): a forward or stub
/// zone, local data, a default local zone, or the global mode. A function
/// of its own so per-client checks can say it too.
pub fn route_of(config: &Config, name: &str) -> Option<String> {
    let mut parsed = hickory_proto::rr::Name::from_ascii(name).ok()?;
    parsed.set_fqdn(true);
    let lower = hickory_proto::rr::LowerName::new(&parsed);
    Some(config.zones.describe(config.resolver.mode, &lower))
}

/// A name given on the command line (defanged forms too), normalised.
fn name_arg(query: &str) -> Result<policy::NormalName, i32> {
    policy::normalise(&policy::name::refang(query)).map_err(|e| {
        eprintln!("schild: {query:?} is not a valid name: {e}");
        exit::CHECK_ERROR
    })
}

fn feed_name(policy: &Policy, id: u16) -> String {
    policy
        .feed(id)
        .map(|f| f.name.clone())
        .unwrap_or_else(|| format!("#{id}"))
}

fn allow_source(policy: &Policy, id: u32) -> String {
    match policy.allow_source(id) {
        Some(s) => match &s.name {
            Some(name) => format!("{} {:?}, {}", s.kind, name, s.path),
            None => format!("{} {}", s.kind, s.path),
        },
        None => format!("allowlist #{id}"),
    }
}

fn explain_provenance(
    out: &mut impl Write,
    policy: &Policy,
    p: &Provenance,
    listed: Option<&str>,
) -> std::io::Result<()> {
    let feed = feed_name(policy, p.feed);
    let value = p.value.as_deref().or(listed).unwrap_or("");
    writeln!(out, "  ioc: {} {} (feed {feed})", p.ioc_type, value)?;
    if let Some(ev) = policy.event(p) {
        writeln!(out, "    event: {} {:?}", ev.uuid, ev.info)?;
        if !ev.tags.is_empty() {
            writeln!(out, "    event tags: {}", ev.tags.join(", "))?;
        }
    }
    if let Some(a) = &p.attribute_uuid {
        writeln!(out, "    attribute: {a}")?;
    }
    if !p.tags.is_empty() {
        writeln!(out, "    tags: {}", p.tags.join(", "))?;
    }
    Ok(())
}

fn explain_set(
    out: &mut impl Write,
    policy: &Policy,
    set: u32,
    listed: Option<&str>,
) -> std::io::Result<()> {
    for p in policy.provenance_of(set) {
        explain_provenance(out, policy, p, listed)?;
    }
    Ok(())
}

/// Indicators for this name (or a parent) that the guards refused.
fn explain_refusals(out: &mut impl Write, policy: &Policy, name: &str) -> std::io::Result<()> {
    let covers = |v: &str| v == name || name.ends_with(&format!(".{v}"));
    for r in policy.meta().refusals.iter().filter(|r| covers(&r.value)) {
        let why = match &r.reason {
            RefusalReason::Allowlist { entry, source } => {
                format!(
                    "refused by allowlist entry {entry} ({})",
                    allow_source(policy, *source)
                )
            }
            RefusalReason::PublicSuffix => "refused: a public suffix is never blocked".to_string(),
            RefusalReason::AddressGuard { why } => format!("refused: {why}"),
            RefusalReason::Protected { entry, source } => format!(
                "refused: a protected clinical name, spared by entry {entry} ({})",
                allow_source(policy, *source)
            ),
        };
        writeln!(out, "  {} {why}", r.value)?;
        if let Some(p) = policy.meta().provenance.get(r.prov as usize) {
            explain_provenance(out, policy, p, Some(&r.value))?;
        }
    }
    Ok(())
}

/// `schild stats`: what the current artifact holds and how each feed fared.
pub fn stats(config: &Config) -> i32 {
    let policy = match load_policy(config) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let m = policy.meta();
    let mut out = std::io::stdout().lock();
    let names = policy.name_count();
    let _ = writeln!(out, "artifact {}", config.artifact_path().display());
    let _ = writeln!(
        out,
        "  serial {}, compiled at unix time {}",
        m.serial, m.compiled_at
    );
    let _ = writeln!(
        out,
        "  {} bytes; name index {} bytes for {} names ({:.1} bytes/name)",
        policy.file_bytes(),
        policy.index_bytes(),
        names,
        if names > 0 {
            policy.index_bytes() as f64 / names as f64
        } else {
            0.0
        }
    );
    let _ = writeln!(
        out,
        "  {} address triggers, {} provenance records, {} events, {} refusals",
        m.ip_triggers.len(),
        m.provenance.len(),
        m.events.len(),
        m.refusals.len()
    );
    for r in &m.reports {
        let _ = print_report(&mut out, r);
        let protected = policy
            .protected_refusals()
            .filter(|(f, _)| *f == r.feed)
            .count();
        if protected > 0 {
            let _ = writeln!(
                out,
                "  refused: {protected} IOCs naming protected clinical systems (guard.protected)"
            );
        }
    }
    let _ = guard::print_held(&mut out, config, &policy);
    exit::OK
}

/// `schild export rpz`: the current artifact as a Response Policy Zone
/// file, on stdout or written atomically to `out`.
pub fn export_rpz(config: &Config, out: Option<&Path>) -> i32 {
    use crate::rpz::{ZoneError, ZoneSettings, write_zone};
    let settings = match ZoneSettings::from_config(config) {
        Ok(s) => s,
        Err(e @ ZoneError::NotConfigured) => {
            eprintln!("schild: {e}: add one (at least `zone = \"...\"`) to export RPZ");
            return exit::CONFIG;
        }
        Err(e) => {
            eprintln!("schild: {e}");
            return exit::CONFIG;
        }
    };
    let policy = match Policy::load(&config.artifact_path()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("schild: {}", error_chain(&e));
            eprintln!(
                "schild: run `schild compile --config {}` first",
                config.path.display()
            );
            return exit::FAILURE;
        }
    };
    let result = match out {
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            write_zone(&policy, &settings, &mut w)
        }
        Some(path) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            tempfile::NamedTempFile::new_in(dir).and_then(|mut tmp| {
                let stats = {
                    let mut w = std::io::BufWriter::new(tmp.as_file_mut());
                    write_zone(&policy, &settings, &mut w)?
                };
                tmp.as_file().sync_all()?;
                tmp.persist(path).map_err(|e| e.error)?;
                Ok(stats)
            })
        }
    };
    match result {
        Ok(stats) => {
            let target = out.map_or("stdout".to_string(), |p| p.display().to_string());
            eprintln!(
                "schild: wrote zone {} serial {} with {} triggers to {target}",
                settings.origin_text, stats.serial, stats.triggers
            );
            let s = &stats.skipped;
            if s.log_only + s.url_only + s.unsafe_names > 0 {
                eprintln!(
                    "schild: not exported: {} log-only, {} url-only (MISP exports no url), {} names unusable as RPZ triggers",
                    s.log_only, s.url_only, s.unsafe_names
                );
            }
            exit::OK
        }
        Err(e) => {
            let target = out.map_or("stdout".to_string(), |p| p.display().to_string());
            eprintln!("schild: cannot write the zone to {target}: {e}");
            exit::FAILURE
        }
    }
}

/// `schild allow NAME --reason TEXT`: record a false positive. NAME joins
/// the local allowlist, a false-positive sighting is queued for each
/// indicator it overrides, and a running server is asked to reload.
pub async fn allow(config: &Config, name: &str, reason: &str, force: bool) -> i32 {
    let policy = Policy::load(&config.artifact_path()).ok();
    let outcome = match crate::sightings::allow(config, policy.as_ref(), name, reason, force) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("schild: {}", error_chain(&e));
            return exit::FAILURE;
        }
    };
    println!("{name}: added to {}", outcome.file.display());
    println!(
        "  spares {} listed name(s) (the name and the names below it)",
        outcome.spared
    );
    for (ioc, feed) in &outcome.overridden {
        println!("  overrides {ioc} (feed {feed})");
    }
    if outcome.queued > 0 {
        println!(
            "  {} false-positive sighting(s) queued for the feed(s)",
            outcome.queued
        );
    }
    // A quarantined name it spares: the server's recompile takes it out.
    if let Ok(q) = crate::sightings::quarantine::load(&config.quarantine_path()) {
        let below = format!(".{}", outcome.name);
        for q in q
            .quarantined
            .iter()
            .filter(|q| q.name == outcome.name || q.name.ends_with(&below))
        {
            println!(
                "  {} is quarantined: it leaves the quarantine as a false positive when the list is recompiled",
                q.name
            );
        }
    }
    println!("  a running schild applies it within seconds (it watches its allowlist files)");
    exit::OK
}

/// `schild history NAME`: who resolved NAME (and the names below it), and
/// since when, day by day. Exit 0 found, 1 nothing recorded, 2 error.
pub fn history(config: &Config, query: &str) -> i32 {
    use std::time::{Duration, UNIX_EPOCH};
    if !config.history.enabled() {
        eprintln!("schild: the name history is off (history.days = 0)");
        return exit::CHECK_ERROR;
    }
    let host = url_host(query);
    let query = host.as_deref().unwrap_or(query);
    let name = match name_arg(query) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let n = name.as_str();
    let history = crate::history::History::open(&config.history_dir());
    let days = history.lookup(n, true, true);
    let mut out = std::io::stdout().lock();
    let time = |t: u64| crate::sightings::log::rfc3339(UNIX_EPOCH + Duration::from_secs(t));
    if days.is_empty() {
        let _ = writeln!(
            out,
            "{n}: not in the name history ({} days kept; a running server writes today's names every minute)",
            config.history.days
        );
        return exit::FAILURE;
    }
    let _ = writeln!(out, "{n}: resolved on {} day(s)", days.len());
    for (day, names) in &days {
        let _ = writeln!(out, "{}", crate::history::date(*day));
        for (name, r) in names {
            let _ = writeln!(
                out,
                "  {name}: ~{} client(s), first {}, last {}",
                r.distinct(),
                time(r.first),
                time(r.last)
            );
            if !r.clients.is_empty() {
                let _ = writeln!(out, "    clients: {}", r.clients.join(", "));
            }
        }
    }
    exit::OK
}
