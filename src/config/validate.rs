//! From the file's `Raw*` structs to the validated runtime types, one
//! function per section. Every error names its key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::raw::*;
use super::*;

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn parse_socket(field: &str, s: &str, default_port: u16) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(invalid(field, format!("{s:?} is not an address (IP:port)")))
}

fn parse_net(field: &str, s: &str) -> Result<IpNet, ConfigError> {
    if let Ok(n) = s.parse::<IpNet>() {
        // `10.1.2.3/8` is a typo for an address or for `10.0.0.0/8`:
        // which one decides who is let in, so ask rather than guess.
        if n != n.trunc() {
            return Err(invalid(
                field,
                format!(
                    "{s:?} has host bits set: write the network ({}) or the address ({})",
                    n.trunc(),
                    n.addr()
                ),
            ));
        }
        return Ok(n);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(invalid(
        field,
        format!("{s:?} is not a network (address/prefix)"),
    ))
}

/// A name that becomes a metric label and a log field: letters, digits, - and _.
fn label_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            field,
            format!("{name:?}: use letters, digits, - and _"),
        ));
    }
    Ok(())
}

fn read_secret(
    field: &str,
    base: &Path,
    file: Option<&PathBuf>,
    env: Option<&String>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(f) = file {
        let path = resolve(base, f);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Secret {
            field: field.into(),
            path: path.clone(),
            source,
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(invalid(field, format!("{} is empty", path.display())));
        }
        return Ok(Some(Secret(key.to_string())));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret(v.trim().to_string()))),
            _ => Err(invalid(
                field,
                format!("environment variable {var} is not set"),
            )),
        };
    }
    Ok(None)
}

fn parse_url(field: &str, s: &str) -> Result<reqwest::Url, ConfigError> {
    let u =
        reqwest::Url::parse(s).map_err(|e| invalid(field, format!("{s:?} is not a URL: {e}")))?;
    match u.scheme() {
        "http" | "https" => Ok(u),
        other => Err(invalid(
            field,
            format!("scheme {other:?} not supported (http or https)"),
        )),
    }
}

pub(super) fn validate(raw: RawConfig, path: &Path, base: &Path) -> Result<Config, ConfigError> {
    let state_dir = resolve(base, &raw.state_dir);
    let server = server(raw.server, base)?;
    let resolver = resolver(raw.resolver, base)?;
    let policy = policy(raw.policy)?;
    let http = tls(
        "http",
        base,
        raw.http.ca_file,
        raw.http.client_cert_file,
        raw.http.client_key_file,
    )?;
    let admin = admin(raw.admin, base)?;
    let mut feeds = Vec::with_capacity(raw.feeds.len());
    for (i, f) in raw.feeds.into_iter().enumerate() {
        let f = feed(i, f, base, &policy, &http)?;
        if feeds.iter().any(|x: &FeedConfig| x.name == f.name) {
            return Err(invalid(
                format!("feed {:?}.name", f.name),
                format!("{:?} is used twice (feed[{i}])", f.name),
            ));
        }
        feeds.push(f);
    }
    if feeds.len() > usize::from(u16::MAX) {
        return Err(invalid("feed", "too many feeds"));
    }
    let allowlist = AllowlistConfig {
        files: raw
            .allowlist
            .files
            .iter()
            .map(|p| resolve(base, p))
            .collect(),
        warninglists: raw
            .allowlist
            .warninglists
            .iter()
            .map(|p| resolve(base, p))
            .collect(),
        max_spared: raw.allowlist.max_spared,
    };
    let client_groups = client_groups(raw.client_groups, base, &feeds)?;
    let guard = guard(raw.guard, base)?;
    let history = history(raw.history)?;
    let sightings = sightings(raw.sightings, base, &state_dir, &http)?;
    let rpz = raw.rpz.map(|z| rpz(z, base)).transpose()?;
    let dnstap = raw
        .dnstap
        .map(|d| dnstap(d, base, sightings.client_privacy))
        .transpose()?;
    let zones = zones(
        raw.forward_zones,
        raw.stub_zones,
        raw.local,
        base,
        resolver.dnssec,
    )?;
    Ok(Config {
        zones,
        path: path.to_path_buf(),
        file_digest: None,
        state_dir,
        server,
        resolver,
        policy,
        admin,
        feeds,
        allowlist,
        sightings,
        rpz,
        dnstap,
        http,
        client_groups,
        guard,
        history,
    })
}

fn guard(g: RawGuard, base: &Path) -> Result<GuardConfig, ConfigError> {
    let on_popular = match g.on_popular.as_str() {
        "alert" => OnPopular::Alert,
        "quarantine" => OnPopular::Quarantine,
        other => {
            return Err(invalid(
                "guard.on_popular",
                format!("{other:?}: expected \"alert\" or \"quarantine\""),
            ));
        }
    };
    if g.popular_clients == 0 || g.popular_days == 0 {
        return Err(invalid(
            "guard.popular_clients",
            "popular_clients and popular_days must be at least 1",
        ));
    }
    Ok(GuardConfig {
        protected: g.protected.iter().map(|p| resolve(base, p)).collect(),
        report_protected: g.report_protected,
        max_new_blocks: g.max_new_blocks,
        popular_clients: g.popular_clients,
        popular_days: g.popular_days,
        on_popular,
    })
}

fn history(h: RawHistory) -> Result<HistoryConfig, ConfigError> {
    if h.days > 3660 {
        return Err(invalid("history.days", "at most 3660 (ten years)"));
    }
    if h.max_names_per_day == 0 || h.max_names_per_day > 100_000_000 {
        return Err(invalid(
            "history.max_names_per_day",
            "between 1 and 100000000",
        ));
    }
    if h.clients_per_name > 64 {
        return Err(invalid("history.clients_per_name", "at most 64"));
    }
    Ok(HistoryConfig {
        days: h.days,
        max_names_per_day: h.max_names_per_day as usize,
        clients_per_name: h.clients_per_name as usize,
    })
}

/// `IP[:port]/zone` of an `axfr://` location (the primary by address:
/// schild does not resolve the name of the server it trusts for its list).
fn xfr_location(field: &str, rest: &str) -> Result<Location, ConfigError> {
    let bad = |why: &str| {
        invalid(
            field,
            format!("axfr://{rest}: {why} (axfr://IP[:port]/zone)"),
        )
    };
    let (host, zone) = rest.split_once('/').ok_or_else(|| bad("no zone"))?;
    let server =
        parse_socket(field, host, 53).map_err(|_| bad("the primary must be an IP address"))?;
    let zone = crate::policy::normalise(zone.trim_end_matches('/'))
        .map_err(|e| bad(&e.to_string()))?
        .into_string();
    Ok(Location::Xfr { server, zone })
}

/// `full`, `pseudonymise` or `omit`.
fn client_privacy(field: &str, s: &str) -> Result<ClientPrivacy, ConfigError> {
    match s {
        "full" => Ok(ClientPrivacy::Full),
        "pseudonymise" | "pseudonymize" => Ok(ClientPrivacy::Pseudonymise),
        "omit" => Ok(ClientPrivacy::Omit),
        other => Err(invalid(
            field,
            format!("{other:?}: expected \"full\", \"pseudonymise\" or \"omit\""),
        )),
    }
}

/// `[dnstap]`: one collector, a unix socket or a TCP address.
fn dnstap(
    d: RawDnstap,
    base: &Path,
    default_privacy: ClientPrivacy,
) -> Result<DnstapConfig, ConfigError> {
    let target = match (d.socket, d.address) {
        (Some(p), None) => DnstapTarget::Unix(resolve(base, &p)),
        (None, Some(a)) => DnstapTarget::Tcp(
            a.parse()
                .map_err(|_| invalid("dnstap.address", format!("{a:?} is not an IP:port")))?,
        ),
        _ => {
            return Err(invalid(
                "dnstap.socket",
                "set exactly one of socket (a unix socket path) and address (IP:port)",
            ));
        }
    };
    let identity = match d.identity {
        Some(i) => i,
        None => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    Ok(DnstapConfig {
        target,
        identity,
        client_queries: d.client_queries,
        client_responses: d.client_responses,
        resolver_queries: d.resolver_queries,
        client_addresses: match d.client_addresses {
            Some(s) => client_privacy("dnstap.client_addresses", &s)?,
            None => default_privacy,
        },
    })
}

/// TLS keys of `[http]` or a feed: a client certificate comes with its key.
fn tls(
    section: &str,
    base: &Path,
    ca_file: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<TlsClient, ConfigError> {
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((resolve(base, &c), resolve(base, &k))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                format!("{section}.client_key_file"),
                "client_cert_file needs client_key_file",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                format!("{section}.client_cert_file"),
                "client_key_file needs client_cert_file",
            ));
        }
    };
    Ok(TlsClient {
        ca_file: ca_file.map(|p| resolve(base, &p)),
        client_cert,
    })
}

fn server(s: RawServer, base: &Path) -> Result<ServerConfig, ConfigError> {
    if s.listen.is_empty() {
        return Err(invalid("server.listen", "at least one address is needed"));
    }
    let listen = s
        .listen
        .iter()
        .map(|a| parse_socket("server.listen", a, 53))
        .collect::<Result<Vec<_>, _>>()?;
    let allow = s
        .allow
        .iter()
        .map(|n| parse_net("server.allow", n))
        .collect::<Result<Vec<_>, _>>()?;
    if allow.iter().any(|n| n.prefix_len() == 0) {
        tracing::warn!(
            "server.allow contains a /0 network: schild answers anyone who can reach it"
        );
    }
    if !(512..=4096).contains(&s.edns_payload) {
        return Err(invalid(
            "server.edns_payload",
            "must be between 512 and 4096",
        ));
    }
    let tls_listen = s
        .tls_listen
        .iter()
        .map(|a| parse_socket("server.tls_listen", a, 853))
        .collect::<Result<Vec<_>, _>>()?;
    if !tls_listen.is_empty() && (s.tls_cert_file.is_none() || s.tls_key_file.is_none()) {
        return Err(invalid(
            "server.tls_listen",
            "needs tls_cert_file and tls_key_file",
        ));
    }
    if s.tcp_max_connections == 0 {
        return Err(invalid("server.tcp_max_connections", "must be at least 1"));
    }
    if s.tcp_max_per_client == 0 {
        return Err(invalid("server.tcp_max_per_client", "must be at least 1"));
    }
    if s.tcp_max_inflight == 0 {
        return Err(invalid("server.tcp_max_inflight", "must be at least 1"));
    }
    if s.client_qps > 1_000_000 {
        return Err(invalid(
            "server.client_qps",
            "must be at most 1000000 (0 turns the limit off)",
        ));
    }
    if s.client_qps_slip > 10 {
        return Err(invalid(
            "server.client_qps_slip",
            "must be 0 to 10 (BIND's range; 0 never slips)",
        ));
    }
    Ok(ServerConfig {
        listen,
        allow,
        edns_payload: s.edns_payload,
        tcp_idle: Duration::from_secs(s.tcp_idle_secs.max(1)),
        tcp_max_connections: s.tcp_max_connections,
        tcp_max_inflight: s.tcp_max_inflight,
        tcp_max_per_client: s.tcp_max_per_client,
        udp_sockets: s.udp_sockets,
        tls_listen,
        tls_cert_file: s.tls_cert_file.map(|p| resolve(base, &p)),
        tls_key_file: s.tls_key_file.map(|p| resolve(base, &p)),
        drain: Duration::from_secs(s.drain_secs),
        client_qps: s.client_qps,
        client_qps_slip: s.client_qps_slip,
    })
}

/// Admin connections at most: each holds a descriptor.
const MAX_ADMIN_CONNECTIONS: usize = 4096;

fn admin(a: RawAdmin, base: &Path) -> Result<AdminConfig, ConfigError> {
    if !(1..=MAX_ADMIN_CONNECTIONS).contains(&a.max_connections) {
        return Err(invalid(
            "admin.max_connections",
            format!("must be 1 to {MAX_ADMIN_CONNECTIONS}"),
        ));
    }
    if !(1..=300).contains(&a.header_timeout_secs) {
        return Err(invalid("admin.header_timeout_secs", "must be 1 to 300"));
    }
    let token = read_secret("admin.token_file", base, a.token_file.as_ref(), None)?;
    if let Some(t) = &token
        && (t.expose().len() < 16 || !t.expose().bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(invalid(
            "admin.token_file",
            "the token must be at least 16 printable characters without spaces (e.g. `openssl rand -hex 32`)",
        ));
    }
    Ok(AdminConfig {
        listen: parse_socket("admin.listen", &a.listen, 9153)?,
        token,
        max_connections: a.max_connections,
        header_timeout: Duration::from_secs(a.header_timeout_secs),
    })
}

fn resolver(r: RawResolver, base: &Path) -> Result<ResolverConfig, ConfigError> {
    let mode = match r.mode.as_str() {
        "recursive" => ResolverMode::Recursive,
        "forward" => ResolverMode::Forward,
        other => {
            return Err(invalid(
                "resolver.mode",
                format!("{other:?}: expected \"recursive\" or \"forward\""),
            ));
        }
    };
    let upstreams = r
        .upstreams
        .iter()
        .map(|u| parse_upstream(u))
        .collect::<Result<Vec<_>, _>>()?;
    if mode == ResolverMode::Forward && upstreams.is_empty() {
        return Err(invalid(
            "resolver.upstreams",
            "forward mode needs at least one upstream",
        ));
    }
    if r.min_ttl_secs > r.max_ttl_secs {
        return Err(invalid(
            "resolver.min_ttl_secs",
            "is larger than max_ttl_secs",
        ));
    }
    if r.cache_entries == 0 {
        return Err(invalid("resolver.cache_entries", "must be at least 1"));
    }
    if r.servfail_ttl_secs > MAX_SERVFAIL_TTL_SECS {
        return Err(invalid(
            "resolver.servfail_ttl_secs",
            format!("must be at most {MAX_SERVFAIL_TTL_SECS} (0 turns it off)"),
        ));
    }
    if r.max_inflight == 0 || r.max_inflight_per_client == 0 {
        return Err(invalid(
            "resolver.max_inflight",
            "max_inflight and max_inflight_per_client must be at least 1",
        ));
    }
    if mode == ResolverMode::Forward && !r.domain_insecure.is_empty() {
        return Err(invalid(
            "resolver.domain_insecure",
            "is for recursive mode (in forward mode the upstream validates; set dnssec = false there)",
        ));
    }
    let domain_insecure = r
        .domain_insecure
        .iter()
        .map(|n| insecure_name(n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ResolverConfig {
        trust_anchor_file: r.trust_anchor_file.map(|p| resolve(base, &p)),
        trust_anchors: None,
        domain_insecure,
        max_inflight: r.max_inflight,
        max_inflight_per_client: r.max_inflight_per_client.min(r.max_inflight),
        mode,
        upstreams,
        root_hints: r.root_hints.map(|p| resolve(base, &p)),
        dnssec: r.dnssec,
        cache_entries: r.cache_entries,
        min_ttl: Duration::from_secs(r.min_ttl_secs.into()),
        max_ttl: Duration::from_secs(r.max_ttl_secs.into()),
        serve_stale: r.serve_stale,
        packet_cache: r.packet_cache,
        serve_stale_max: Duration::from_secs(r.serve_stale_max_secs),
        timeout: Duration::from_secs(r.timeout_secs.max(1)),
        servfail_ttl: Duration::from_secs(r.servfail_ttl_secs),
        allow_servers: r
            .allow_servers
            .iter()
            .map(|n| parse_net("resolver.allow_servers", n))
            .collect::<Result<Vec<_>, _>>()?,
        recursion_port: r.recursion_port,
    })
}

/// A `resolver.domain_insecure` entry: a domain name, lower case, with
/// its trailing dot. The root would switch validation off entirely: that
/// is `dnssec = false`.
fn insecure_name(n: &str) -> Result<String, ConfigError> {
    let field = "resolver.domain_insecure";
    let t = n.trim().trim_end_matches('.').to_ascii_lowercase();
    if t.is_empty() {
        return Err(invalid(
            field,
            format!("{n:?}: the root is not a domain to exempt (set dnssec = false)"),
        ));
    }
    let ok = t.len() <= 253
        && t.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        return Err(invalid(
            field,
            format!("{n:?} is not a domain name (ASCII labels; write IDNs as xn--)"),
        ));
    }
    Ok(format!("{t}."))
}

fn policy(p: RawPolicy) -> Result<PolicyConfig, ConfigError> {
    let mut rebind_allow = Vec::with_capacity(p.rebind_allow.len());
    for (i, n) in p.rebind_allow.iter().enumerate() {
        let name = crate::policy::normalise(n).map_err(|e| {
            invalid(
                format!("policy.rebind_allow[{i}]"),
                format!("{n:?} is not a name: {e}"),
            )
        })?;
        rebind_allow.push(name.into_string());
    }
    Ok(PolicyConfig {
        fail_closed: p.fail_closed,
        block_ttl: p.block_ttl_secs.unwrap_or(300),
        sinkhole_ipv4: p.sinkhole_ipv4,
        sinkhole_ipv6: p.sinkhole_ipv6,
        rebind_protection: p.rebind_protection,
        rebind_allow,
        block_bypass: p.block_bypass,
    })
}

/// `[[client_group]]`s: named like feeds, networks without host bits,
/// `feeds` naming configured feeds.
fn client_groups(
    raw: Vec<RawClientGroup>,
    base: &Path,
    feeds: &[FeedConfig],
) -> Result<Vec<ClientGroupConfig>, ConfigError> {
    let mut groups: Vec<ClientGroupConfig> = Vec::with_capacity(raw.len());
    if raw.len() > usize::from(u16::MAX) {
        return Err(invalid("client_group", "too many client groups"));
    }
    for (i, g) in raw.into_iter().enumerate() {
        label_name(&format!("client_group[{i}].name"), &g.name)?;
        let label = format!("client_group {:?}", g.name);
        let field = |k: &str| format!("{label}.{k}");
        if groups.iter().any(|x| x.name == g.name) {
            return Err(invalid(
                field("name"),
                format!("{:?} is used twice (client_group[{i}])", g.name),
            ));
        }
        if g.networks.is_empty() {
            return Err(invalid(
                field("networks"),
                "is empty: the group would hold no client",
            ));
        }
        let networks = g
            .networks
            .iter()
            .map(|n| parse_net(&field("networks"), n))
            .collect::<Result<Vec<_>, _>>()?;
        let log_only = match g.action.as_deref() {
            None => false,
            Some("log-only") => true,
            Some(other) => {
                return Err(invalid(
                    field("action"),
                    format!(
                        "{other:?}: only \"log-only\" (leave it out for the feeds' own actions)"
                    ),
                ));
            }
        };
        let allow_only: Vec<PathBuf> = g
            .allow_only
            .iter()
            .flatten()
            .map(|p| resolve(base, p))
            .collect();
        if g.allow_only.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid(
                field("allow_only"),
                "is empty: no name would resolve for the group (leave it out for no restriction)",
            ));
        }
        if log_only && !allow_only.is_empty() {
            return Err(invalid(
                field("action"),
                "\"log-only\" with allow_only: a default-deny group cannot also be log-only",
            ));
        }
        if let Some(fs) = &g.feeds {
            for (k, f) in fs.iter().enumerate() {
                if !feeds.iter().any(|x| &x.name == f) {
                    return Err(invalid(
                        format!("{label}.feeds[{k}]"),
                        format!("{f:?} is not a configured feed"),
                    ));
                }
            }
        }
        groups.push(ClientGroupConfig {
            name: g.name,
            networks,
            allow_only,
            log_only,
            feeds: g.feeds,
        });
    }
    Ok(groups)
}

fn feed(
    i: usize,
    f: RawFeed,
    base: &Path,
    policy: &PolicyConfig,
    http: &TlsClient,
) -> Result<FeedConfig, ConfigError> {
    {
        label_name(&format!("feed[{i}].name"), &f.name)?;
        // Named by its name from here on: `feed "zdn".location`.
        let label = format!("feed {:?}", f.name);
        let field = |k: &str| format!("{label}.{k}");
        let kind = FeedKind::parse(&f.kind).ok_or_else(|| {
            invalid(
                field("type"),
                format!(
                    "{:?}: expected misp-feed, misp-api, stix, taxii, domains, hosts or rpz",
                    f.kind
                ),
            )
        })?;
        let location = if f.location.starts_with("http://") || f.location.starts_with("https://") {
            Location::Url(parse_url(&field("location"), &f.location)?)
        } else if let Some(rest) = f.location.strip_prefix("axfr://") {
            if kind != FeedKind::Rpz {
                return Err(invalid(
                    field("location"),
                    "axfr:// is for rpz feeds (a zone transfer from the RPZ primary)",
                ));
            }
            xfr_location(&field("location"), rest)?
        } else {
            Location::Path(resolve(base, Path::new(&f.location)))
        };
        if matches!(kind, FeedKind::MispApi | FeedKind::Taxii)
            && !matches!(location, Location::Url(_))
        {
            return Err(invalid(
                field("location"),
                "must be an http(s) URL for this feed type",
            ));
        }
        let api_key = read_secret(
            &field("api_key_file"),
            base,
            f.api_key_file.as_ref(),
            f.api_key_env.as_ref(),
        )?;
        // A misp-feed key goes to the web server holding the feed; a
        // folder on disk has no one to send it to.
        if kind == FeedKind::MispFeed && api_key.is_some() && !matches!(location, Location::Url(_))
        {
            return Err(invalid(
                field("api_key_file"),
                "a misp-feed key is only sent to an http(s) location",
            ));
        }
        if kind == FeedKind::MispApi && api_key.is_none() {
            return Err(invalid(
                field("api_key_file"),
                "misp-api needs api_key_file or api_key_env",
            ));
        }
        if f.action == Action::LocalData {
            return Err(invalid(
                field("action"),
                "local-data is an RPZ record's own action, not a feed's (use sinkhole)",
            ));
        }
        if f.action == Action::Sinkhole
            && policy.sinkhole_ipv4.is_empty()
            && policy.sinkhole_ipv6.is_empty()
        {
            return Err(invalid(
                field("action"),
                "sinkhole needs policy.sinkhole_ipv4 or policy.sinkhole_ipv6",
            ));
        }
        if f.refresh_secs < 10 {
            return Err(invalid(field("refresh_secs"), "must be at least 10"));
        }
        if f.page_limit == 0 {
            return Err(invalid(field("page_limit"), "must be at least 1"));
        }
        if f.max_shrink_percent > 100 {
            return Err(invalid(
                field("max_shrink_percent"),
                "must be 0 to 100 (100 accepts any shrink)",
            ));
        }
        if let (Some(_), Location::Url(u)) = (&api_key, &location)
            && u.scheme() == "http"
        {
            tracing::warn!(
                feed = %f.name,
                location = %crate::http::redact(u),
                "the feed's API key is sent UNENCRYPTED over plain http://; anyone on the path can read it: use https://"
            );
        }
        let sightings_url = f
            .sightings_url
            .as_deref()
            .map(|u| parse_url(&field("sightings_url"), u))
            .transpose()?;
        let sightings_key = read_secret(
            &field("sightings_key_file"),
            base,
            f.sightings_key_file.as_ref(),
            None,
        )?;
        if f.report_sightings && kind != FeedKind::MispApi && sightings_url.is_none() {
            return Err(invalid(
                field("report_sightings"),
                "needs sightings_url for feeds that are not misp-api",
            ));
        }
        let tsig_key_file = match (f.tsig_key_file, &location) {
            (None, _) => None,
            (Some(k), Location::Xfr { .. }) => Some(resolve(base, &k)),
            (Some(_), _) => {
                return Err(invalid(
                    field("tsig_key_file"),
                    "only for an axfr:// location",
                ));
            }
        };

        Ok(FeedConfig {
            name: f.name,
            kind,
            location,
            api_key,
            action: f.action,
            refresh: Duration::from_secs(f.refresh_secs),
            timeout: Duration::from_secs(f.timeout_secs.max(1)),
            max_bytes: f.max_bytes.max(1024),
            retries: f.retries,
            max_shrink_percent: f.max_shrink_percent,
            filters: MispFilters {
                types: f
                    .types
                    .unwrap_or_else(|| DEFAULT_MISP_TYPES.iter().map(|s| s.to_string()).collect()),
                to_ids: f.to_ids,
                published: f.published,
                tags_include: f.tags_include,
                tags_exclude: f.tags_exclude,
                enforce_warninglist: f.enforce_warninglist,
                page_limit: f.page_limit,
                full_refresh: Duration::from_secs(f.full_refresh_secs),
            },
            report_sightings: f.report_sightings,
            sightings_url,
            sightings_key,
            tsig_key_file,
            tls: tls(
                &label,
                base,
                f.ca_file,
                f.client_cert_file,
                f.client_key_file,
            )?
            .or(http),
        })
    }
}

/// `[sightings]`; its defaults live in [`RawSightings`]'s `Default`, so a
/// config without the section gets exactly what an empty section gives.
fn sightings(
    s: RawSightings,
    base: &Path,
    state_dir: &Path,
    http: &TlsClient,
) -> Result<SightingsConfig, ConfigError> {
    {
        let client_privacy = client_privacy("sightings.client_privacy", &s.client_privacy)?;
        if s.window_secs == 0 {
            return Err(invalid("sightings.window_secs", "must be at least 1"));
        }
        Ok(SightingsConfig {
            log: resolve(state_dir, &s.log),
            window: Duration::from_secs(s.window_secs),
            source: s.source,
            client_privacy,
            log_max_bytes: s.log_max_bytes,
            log_keep: s.log_keep,
            spool_max_bytes: s.spool_max_bytes,
            pseudonym_rotate: Duration::from_secs(s.pseudonym_rotate_secs.max(60)),
            taxii_collection: s
                .taxii_collection
                .as_deref()
                .map(|u| parse_url("sightings.taxii_collection", u))
                .transpose()?,
            taxii_key: read_secret(
                "sightings.taxii_key_file",
                base,
                s.taxii_key_file.as_ref(),
                None,
            )?,
            taxii_tls: http.clone(),
        })
    }
}

fn rpz(z: RawRpz, base: &Path) -> Result<RpzConfig, ConfigError> {
    {
        let zone = crate::policy::normalise(&z.zone)
            .map_err(|e| invalid("rpz.zone", format!("{:?}: {e}", z.zone)))?
            .into_string();
        Ok(RpzConfig {
            zone,
            allow_transfer: z
                .allow_transfer
                .iter()
                .map(|n| parse_net("rpz.allow_transfer", n))
                .collect::<Result<Vec<_>, _>>()?,
            notify: z
                .notify
                .iter()
                .map(|a| parse_socket("rpz.notify", a, 53))
                .collect::<Result<Vec<_>, _>>()?,
            tsig_key_file: z.tsig_key_file.map(|p| resolve(base, &p)),
            ttl: z.ttl_secs,
            ns: z.ns,
            email: z.email,
            log_only: z.log_only,
        })
    }
}

/// `IP`, `IP:port`, `[v6]:port`, or `tls://IP[:port]#name`.
pub(super) fn parse_upstream(s: &str) -> Result<Upstream, ConfigError> {
    parse_upstream_at("resolver.upstreams", s)
}

/// [`parse_upstream`] for the key `field`.
fn parse_upstream_at(field: &str, s: &str) -> Result<Upstream, ConfigError> {
    if let Some(rest) = s.strip_prefix("tls://") {
        let (addr, name) = rest.split_once('#').ok_or_else(|| {
            invalid(
                field,
                format!("{s:?}: DoT needs the server name: tls://IP#name"),
            )
        })?;
        let addr = parse_socket(field, addr, 853)?;
        if name.is_empty() {
            return Err(invalid(field, format!("{s:?}: empty server name")));
        }
        return Ok(Upstream::Tls {
            addr,
            name: name.to_string(),
        });
    }
    Ok(Upstream::Plain(parse_socket(field, s, 53)?))
}

/// `[[forward_zone]]`, `[[stub_zone]]` and `[local]`: names normalised,
/// one zone per name, records and hosts files parsed now.
fn zones(
    forward: Vec<RawForwardZone>,
    stub: Vec<RawStubZone>,
    local: RawLocal,
    base: &Path,
    dnssec: bool,
) -> Result<ZonesConfig, ConfigError> {
    use crate::zones::{is_default_zone, parse_hosts, parse_record, zone_name};
    let mut seen: Vec<(hickory_proto::rr::Name, String)> = Vec::new();
    let mut claim = |key: String, raw: &str| {
        let name = zone_name(raw).map_err(|e| invalid(format!("{key}.name"), e.to_string()))?;
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("{raw:?} is already routed by {first}"),
            ));
        }
        seen.push((name.clone(), key));
        Ok(name)
    };
    let mut out = ZonesConfig {
        default_zones: local.zones,
        ..ZonesConfig::default()
    };
    for (i, z) in forward.into_iter().enumerate() {
        let key = format!("forward_zone[{i}]");
        let name = claim(key.clone(), &z.name)?;
        let field = format!("forward_zone {:?}.upstreams", name.to_ascii());
        if z.upstreams.is_empty() {
            return Err(invalid(field, "needs at least one upstream"));
        }
        let upstreams = z
            .upstreams
            .iter()
            .map(|u| parse_upstream_at(&field, u))
            .collect::<Result<Vec<_>, _>>()?;
        out.forward.push(ForwardZone {
            name,
            upstreams,
            first: z.first,
            dnssec: z.dnssec.unwrap_or(dnssec),
        });
    }
    for (i, z) in stub.into_iter().enumerate() {
        let key = format!("stub_zone[{i}]");
        let name = claim(key.clone(), &z.name)?;
        let field = format!("stub_zone {:?}.servers", name.to_ascii());
        if z.servers.is_empty() {
            return Err(invalid(field, "needs at least one server"));
        }
        let servers = z
            .servers
            .iter()
            .map(|s| parse_socket(&field, s, 53))
            .collect::<Result<Vec<_>, _>>()?;
        out.stub.push(StubZone { name, servers });
    }
    for (i, n) in local.nodefault.iter().enumerate() {
        let field = format!("local.nodefault[{i}]");
        let name = zone_name(n).map_err(|e| invalid(&field, e.to_string()))?;
        if !is_default_zone(&name) {
            return Err(invalid(
                field,
                crate::zones::ZoneError::NotDefault(name.to_ascii()).to_string(),
            ));
        }
        out.nodefault.push(name);
    }
    for (i, r) in local.records.iter().enumerate() {
        let records =
            parse_record(r).map_err(|e| invalid(format!("local.records[{i}]"), e.to_string()))?;
        out.records.extend(records);
    }
    for (i, p) in local.hosts_files.iter().enumerate() {
        let field = format!("local.hosts_files[{i}]");
        let path = resolve(base, p);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| invalid(&field, format!("cannot read {}: {e}", path.display())))?;
        let records =
            parse_hosts(&text).map_err(|e| invalid(&field, format!("{}: {e}", path.display())))?;
        out.records.extend(records);
        out.hosts_files.push(path);
    }
    Ok(out)
}
