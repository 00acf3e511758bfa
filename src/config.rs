//! Configuration: TOML in, a validated [`Config`] out.
//!
//! The file is parsed into `Raw*` structs (serde, unknown fields refused),
//! then validated into runtime types whose values are known good, so that
//! nothing later has to check them again. Relative paths are relative to the
//! folder of the config file. Secrets are read from files or the
//! environment, held in [`Secret`], and never printed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::policy::Action;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{field}: cannot read secret from {path}")]
    Secret {
        field: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A secret (API key, TSIG secret). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself: only for putting on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

// ---------------------------------------------------------------- raw file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: PathBuf,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    resolver: RawResolver,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default, rename = "feed")]
    feeds: Vec<RawFeed>,
    #[serde(default)]
    allowlist: RawAllowlist,
    #[serde(default)]
    sightings: Option<RawSightings>,
    #[serde(default)]
    rpz: Option<RawRpz>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: Vec<String>,
    #[serde(default = "default_allow")]
    allow: Vec<String>,
    #[serde(default = "default_edns_payload")]
    edns_payload: u16,
    #[serde(default = "default_tcp_idle_secs")]
    tcp_idle_secs: u64,
    #[serde(default = "default_tcp_max_connections")]
    tcp_max_connections: usize,
    /// Queries answered at once on one TCP or TLS connection.
    #[serde(default = "default_tcp_max_inflight")]
    tcp_max_inflight: usize,
    /// UDP sockets per address (SO_REUSEPORT); 0 = one per core.
    #[serde(default)]
    udp_sockets: usize,
    #[serde(default)]
    tls_listen: Vec<String>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    #[serde(default = "default_drain_secs")]
    drain_secs: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            allow: default_allow(),
            edns_payload: default_edns_payload(),
            tcp_idle_secs: default_tcp_idle_secs(),
            tcp_max_connections: default_tcp_max_connections(),
            tcp_max_inflight: default_tcp_max_inflight(),
            udp_sockets: 0,
            tls_listen: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            drain_secs: default_drain_secs(),
        }
    }
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:5353".into()]
}
fn default_allow() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}
fn default_edns_payload() -> u16 {
    1232
}
fn default_tcp_idle_secs() -> u64 {
    10
}
fn default_tcp_max_connections() -> usize {
    1024
}
fn default_tcp_max_inflight() -> usize {
    64
}
fn default_drain_secs() -> u64 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolver {
    #[serde(default = "default_mode")]
    mode: String,
    #[serde(default)]
    upstreams: Vec<String>,
    root_hints: Option<PathBuf>,
    #[serde(default = "default_true")]
    dnssec: bool,
    #[serde(default = "default_cache_entries")]
    cache_entries: u64,
    #[serde(default)]
    min_ttl_secs: u32,
    #[serde(default = "default_max_ttl_secs")]
    max_ttl_secs: u32,
    #[serde(default = "default_true")]
    serve_stale: bool,
    /// How long past its TTL a cached answer may still be served when the
    /// upstream fails (RFC 8767).
    #[serde(default = "default_serve_stale_max_secs")]
    serve_stale_max_secs: u64,
    #[serde(default = "default_upstream_timeout_secs")]
    timeout_secs: u64,
    /// How long a failed resolution is remembered (BIND's servfail-ttl);
    /// 0 turns it off.
    #[serde(default = "default_servfail_ttl_secs")]
    servfail_ttl_secs: u64,
    /// Networks the recursor may send queries to even though they are
    /// special-use (tests, internal authoritative servers).
    #[serde(default)]
    allow_servers: Vec<String>,
    /// Port used for every server contacted while recursing (tests only).
    #[serde(default)]
    recursion_port: Option<u16>,
}

impl Default for RawResolver {
    fn default() -> Self {
        RawResolver {
            mode: default_mode(),
            upstreams: Vec::new(),
            root_hints: None,
            dnssec: true,
            cache_entries: default_cache_entries(),
            min_ttl_secs: 0,
            max_ttl_secs: default_max_ttl_secs(),
            serve_stale: true,
            serve_stale_max_secs: default_serve_stale_max_secs(),
            timeout_secs: default_upstream_timeout_secs(),
            servfail_ttl_secs: default_servfail_ttl_secs(),
            allow_servers: Vec::new(),
            recursion_port: None,
        }
    }
}

fn default_mode() -> String {
    "recursive".into()
}
fn default_true() -> bool {
    true
}
fn default_cache_entries() -> u64 {
    100_000
}
fn default_max_ttl_secs() -> u32 {
    86_400
}
fn default_serve_stale_max_secs() -> u64 {
    86_400
}
fn default_upstream_timeout_secs() -> u64 {
    3
}
fn default_servfail_ttl_secs() -> u64 {
    1
}
/// BIND's ceiling for servfail-ttl: a failure is a transient state.
pub const MAX_SERVFAIL_TTL_SECS: u64 = 30;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    fail_closed: bool,
    block_ttl_secs: Option<u32>,
    #[serde(default)]
    sinkhole_ipv4: Vec<std::net::Ipv4Addr>,
    #[serde(default)]
    sinkhole_ipv6: Vec<std::net::Ipv6Addr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default = "default_admin_listen")]
    listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9153".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    location: String,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    #[serde(default)]
    action: Action,
    #[serde(default = "default_refresh_secs")]
    refresh_secs: u64,
    #[serde(default = "default_feed_timeout_secs")]
    timeout_secs: u64,
    #[serde(default = "default_max_bytes")]
    max_bytes: u64,
    #[serde(default = "default_retries")]
    retries: u32,
    // MISP restSearch filters
    types: Option<Vec<String>>,
    #[serde(default = "default_true")]
    to_ids: bool,
    #[serde(default = "default_true")]
    published: bool,
    #[serde(default)]
    tags_include: Vec<String>,
    #[serde(default)]
    tags_exclude: Vec<String>,
    #[serde(default = "default_true")]
    enforce_warninglist: bool,
    #[serde(default = "default_page_limit")]
    page_limit: u32,
    /// Full pull every this many seconds even when incremental pulls work.
    #[serde(default = "default_full_refresh_secs")]
    full_refresh_secs: u64,
    // sightings
    #[serde(default)]
    report_sightings: bool,
    sightings_url: Option<String>,
    sightings_key_file: Option<PathBuf>,
}

fn default_refresh_secs() -> u64 {
    300
}
fn default_feed_timeout_secs() -> u64 {
    60
}
fn default_max_bytes() -> u64 {
    512 * 1024 * 1024
}
fn default_retries() -> u32 {
    3
}
fn default_page_limit() -> u32 {
    5000
}
fn default_full_refresh_secs() -> u64 {
    86_400
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAllowlist {
    #[serde(default)]
    files: Vec<PathBuf>,
    #[serde(default)]
    warninglists: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSightings {
    #[serde(default = "default_sightings_log")]
    log: PathBuf,
    #[serde(default = "default_window_secs")]
    window_secs: u64,
    #[serde(default = "default_sightings_source")]
    source: String,
    #[serde(default = "default_client_privacy")]
    client_privacy: String,
    #[serde(default = "default_log_max_bytes")]
    log_max_bytes: u64,
    #[serde(default = "default_log_keep")]
    log_keep: u32,
    #[serde(default = "default_spool_max_bytes")]
    spool_max_bytes: u64,
    #[serde(default = "default_key_rotate_secs")]
    pseudonym_rotate_secs: u64,
    /// TAXII collection URL to post STIX sightings to.
    taxii_collection: Option<String>,
    taxii_key_file: Option<PathBuf>,
}

fn default_sightings_log() -> PathBuf {
    "sightings.jsonl".into()
}
fn default_window_secs() -> u64 {
    300
}
fn default_sightings_source() -> String {
    "schild".into()
}
fn default_client_privacy() -> String {
    "pseudonymise".into()
}
fn default_log_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_log_keep() -> u32 {
    14
}
fn default_spool_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_key_rotate_secs() -> u64 {
    86_400
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRpz {
    zone: String,
    #[serde(default)]
    allow_transfer: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    tsig_key_file: Option<PathBuf>,
    #[serde(default = "default_rpz_ttl")]
    ttl_secs: u32,
    #[serde(default = "default_rpz_ns")]
    ns: String,
    #[serde(default = "default_rpz_email")]
    email: String,
    #[serde(default)]
    log_only: RpzLogOnly,
}

fn default_rpz_ttl() -> u32 {
    300
}
fn default_rpz_ns() -> String {
    "localhost.".into()
}
fn default_rpz_email() -> String {
    "hostmaster.localhost.".into()
}

/// How `log-only` feeds appear in the RPZ export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RpzLogOnly {
    /// Not exported at all (default).
    #[default]
    Omit,
    /// Exported as `rpz-passthru.` (the consumer logs, but answers normally).
    Passthru,
}

// ---------------------------------------------------------------- validated

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path of the config file it was read from.
    pub path: PathBuf,
    pub state_dir: PathBuf,
    pub server: ServerConfig,
    pub resolver: ResolverConfig,
    pub policy: PolicyConfig,
    pub admin: AdminConfig,
    pub feeds: Vec<FeedConfig>,
    pub allowlist: AllowlistConfig,
    pub sightings: Option<SightingsConfig>,
    pub rpz: Option<RpzConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub allow: Vec<IpNet>,
    pub edns_payload: u16,
    pub tcp_idle: Duration,
    pub tcp_max_connections: usize,
    pub tcp_max_inflight: usize,
    pub udp_sockets: usize,
    pub tls_listen: Vec<SocketAddr>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub drain: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolverMode {
    Recursive,
    Forward,
}

/// An upstream for forward mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// UDP with TCP fallback.
    Plain(SocketAddr),
    /// DNS over TLS with the certificate verified for `name`.
    Tls { addr: SocketAddr, name: String },
}

#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub mode: ResolverMode,
    pub upstreams: Vec<Upstream>,
    /// Root hints zone file; `None` means hickory's built-in root servers.
    pub root_hints: Option<PathBuf>,
    pub dnssec: bool,
    pub cache_entries: u64,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    pub serve_stale: bool,
    pub serve_stale_max: Duration,
    pub timeout: Duration,
    /// How long a failed resolution is answered SERVFAIL from memory;
    /// zero: never.
    pub servfail_ttl: Duration,
    pub allow_servers: Vec<IpNet>,
    pub recursion_port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Refuse to start without a loaded list.
    pub fail_closed: bool,
    /// TTL of synthesised answers (SOA minimum, sinkhole records).
    pub block_ttl: u32,
    pub sinkhole_ipv4: Vec<std::net::Ipv4Addr>,
    pub sinkhole_ipv6: Vec<std::net::Ipv6Addr>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// Feed types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    MispFeed,
    MispApi,
    Stix,
    Taxii,
    Domains,
    Hosts,
    Rpz,
}

impl FeedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::MispFeed => "misp-feed",
            FeedKind::MispApi => "misp-api",
            FeedKind::Stix => "stix",
            FeedKind::Taxii => "taxii",
            FeedKind::Domains => "domains",
            FeedKind::Hosts => "hosts",
            FeedKind::Rpz => "rpz",
        }
    }
    fn parse(s: &str) -> Option<FeedKind> {
        Some(match s {
            "misp-feed" => FeedKind::MispFeed,
            "misp-api" => FeedKind::MispApi,
            "stix" => FeedKind::Stix,
            "taxii" => FeedKind::Taxii,
            "domains" => FeedKind::Domains,
            "hosts" => FeedKind::Hosts,
            "rpz" => FeedKind::Rpz,
            _ => return None,
        })
    }
}

/// Where a feed lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path(PathBuf),
    Url(reqwest::Url),
}

impl Location {
    /// For logs and the artifact: URLs without user info or query secrets.
    pub fn redacted(&self) -> String {
        match self {
            Location::Path(p) => p.display().to_string(),
            Location::Url(u) => {
                let mut u = u.clone();
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.set_query(None);
                u.to_string()
            }
        }
    }
}

/// restSearch filters for `misp-api` feeds.
#[derive(Debug, Clone)]
pub struct MispFilters {
    pub types: Vec<String>,
    pub to_ids: bool,
    pub published: bool,
    pub tags_include: Vec<String>,
    pub tags_exclude: Vec<String>,
    pub enforce_warninglist: bool,
    pub page_limit: u32,
    pub full_refresh: Duration,
}

/// The network types schild acts on: the default `type` filter.
pub const DEFAULT_MISP_TYPES: [&str; 6] =
    ["domain", "hostname", "domain|ip", "url", "ip-dst", "ip-src"];

#[derive(Debug, Clone)]
pub struct FeedConfig {
    pub name: String,
    pub kind: FeedKind,
    pub location: Location,
    pub api_key: Option<Secret>,
    pub action: Action,
    pub refresh: Duration,
    pub timeout: Duration,
    pub max_bytes: u64,
    pub retries: u32,
    pub filters: MispFilters,
    pub report_sightings: bool,
    pub sightings_url: Option<reqwest::Url>,
    pub sightings_key: Option<Secret>,
}

#[derive(Debug, Clone, Default)]
pub struct AllowlistConfig {
    pub files: Vec<PathBuf>,
    pub warninglists: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPrivacy {
    Full,
    Pseudonymise,
    Omit,
}

#[derive(Debug, Clone)]
pub struct SightingsConfig {
    pub log: PathBuf,
    pub window: Duration,
    pub source: String,
    pub client_privacy: ClientPrivacy,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    pub spool_max_bytes: u64,
    pub pseudonym_rotate: Duration,
    pub taxii_collection: Option<reqwest::Url>,
    pub taxii_key: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct RpzConfig {
    pub zone: String,
    pub allow_transfer: Vec<IpNet>,
    pub notify: Vec<SocketAddr>,
    pub tsig_key_file: Option<PathBuf>,
    pub ttl: u32,
    pub ns: String,
    pub email: String,
    pub log_only: RpzLogOnly,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validate config text; `path` names the file (for relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        validate(raw, path, &base)
    }

    /// The artifact's path.
    pub fn artifact_path(&self) -> PathBuf {
        self.state_dir.join(crate::policy::artifact::FILE_NAME)
    }
}

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
        return Ok(n.trunc());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(invalid(
        field,
        format!("{s:?} is not a network (address/prefix)"),
    ))
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

fn validate(raw: RawConfig, path: &Path, base: &Path) -> Result<Config, ConfigError> {
    let state_dir = resolve(base, &raw.state_dir);

    // server
    let s = raw.server;
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
    if s.tcp_max_inflight == 0 {
        return Err(invalid("server.tcp_max_inflight", "must be at least 1"));
    }
    let server = ServerConfig {
        listen,
        allow,
        edns_payload: s.edns_payload,
        tcp_idle: Duration::from_secs(s.tcp_idle_secs.max(1)),
        tcp_max_connections: s.tcp_max_connections,
        tcp_max_inflight: s.tcp_max_inflight,
        udp_sockets: s.udp_sockets,
        tls_listen,
        tls_cert_file: s.tls_cert_file.map(|p| resolve(base, &p)),
        tls_key_file: s.tls_key_file.map(|p| resolve(base, &p)),
        drain: Duration::from_secs(s.drain_secs),
    };

    // resolver
    let r = raw.resolver;
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
    let resolver = ResolverConfig {
        mode,
        upstreams,
        root_hints: r.root_hints.map(|p| resolve(base, &p)),
        dnssec: r.dnssec,
        cache_entries: r.cache_entries,
        min_ttl: Duration::from_secs(r.min_ttl_secs.into()),
        max_ttl: Duration::from_secs(r.max_ttl_secs.into()),
        serve_stale: r.serve_stale,
        serve_stale_max: Duration::from_secs(r.serve_stale_max_secs),
        timeout: Duration::from_secs(r.timeout_secs.max(1)),
        servfail_ttl: Duration::from_secs(r.servfail_ttl_secs),
        allow_servers: r
            .allow_servers
            .iter()
            .map(|n| parse_net("resolver.allow_servers", n))
            .collect::<Result<Vec<_>, _>>()?,
        recursion_port: r.recursion_port,
    };

    // policy
    let p = raw.policy;
    let policy = PolicyConfig {
        fail_closed: p.fail_closed,
        block_ttl: p.block_ttl_secs.unwrap_or(300),
        sinkhole_ipv4: p.sinkhole_ipv4,
        sinkhole_ipv6: p.sinkhole_ipv6,
    };

    let admin = AdminConfig {
        listen: parse_socket("admin.listen", &raw.admin.listen, 9153)?,
    };

    // feeds
    let mut feeds = Vec::with_capacity(raw.feeds.len());
    for (i, f) in raw.feeds.into_iter().enumerate() {
        let field = |k: &str| format!("feed[{i}].{k}");
        if f.name.is_empty()
            || !f
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                field("name"),
                format!("{:?}: use letters, digits, - and _", f.name),
            ));
        }
        if feeds.iter().any(|x: &FeedConfig| x.name == f.name) {
            return Err(invalid(
                field("name"),
                format!("{:?} is used twice", f.name),
            ));
        }
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
        feeds.push(FeedConfig {
            name: f.name,
            kind,
            location,
            api_key,
            action: f.action,
            refresh: Duration::from_secs(f.refresh_secs),
            timeout: Duration::from_secs(f.timeout_secs.max(1)),
            max_bytes: f.max_bytes.max(1024),
            retries: f.retries,
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
        });
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
    };

    let sightings = raw
        .sightings
        .map(|s| -> Result<SightingsConfig, ConfigError> {
            let client_privacy = match s.client_privacy.as_str() {
                "full" => ClientPrivacy::Full,
                "pseudonymise" | "pseudonymize" => ClientPrivacy::Pseudonymise,
                "omit" => ClientPrivacy::Omit,
                other => {
                    return Err(invalid(
                        "sightings.client_privacy",
                        format!("{other:?}: expected \"full\", \"pseudonymise\" or \"omit\""),
                    ));
                }
            };
            if s.window_secs == 0 {
                return Err(invalid("sightings.window_secs", "must be at least 1"));
            }
            Ok(SightingsConfig {
                log: resolve(&state_dir, &s.log),
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
            })
        })
        .transpose()?;

    let rpz = raw
        .rpz
        .map(|z| -> Result<RpzConfig, ConfigError> {
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
        })
        .transpose()?;

    Ok(Config {
        path: path.to_path_buf(),
        state_dir,
        server,
        resolver,
        policy,
        admin,
        feeds,
        allowlist,
        sightings,
        rpz,
    })
}

/// `IP`, `IP:port`, `[v6]:port`, or `tls://IP[:port]#name`.
fn parse_upstream(s: &str) -> Result<Upstream, ConfigError> {
    if let Some(rest) = s.strip_prefix("tls://") {
        let (addr, name) = rest.split_once('#').ok_or_else(|| {
            invalid(
                "resolver.upstreams",
                format!("{s:?}: DoT needs the server name: tls://IP#name"),
            )
        })?;
        let addr = parse_socket("resolver.upstreams", addr, 853)?;
        if name.is_empty() {
            return Err(invalid(
                "resolver.upstreams",
                format!("{s:?}: empty server name"),
            ));
        }
        return Ok(Upstream::Tls {
            addr,
            name: name.to_string(),
        });
    }
    Ok(Upstream::Plain(parse_socket("resolver.upstreams", s, 53)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/schild/schild.toml"))
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse("state_dir = \"state\"").expect("valid");
        assert_eq!(c.state_dir, PathBuf::from("/etc/schild/state"));
        assert_eq!(
            c.server.listen,
            vec!["127.0.0.1:5353".parse::<SocketAddr>().expect("addr")]
        );
        assert!(
            c.server.allow.iter().all(|n| n.addr().is_loopback()),
            "loopback only by default"
        );
        assert_eq!(c.resolver.mode, ResolverMode::Recursive);
        assert!(c.resolver.dnssec);
        assert_eq!(c.server.edns_payload, 1232);
        assert!(c.feeds.is_empty());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = parse("state_dir = \"s\"\n[server]\nlisten_on = []").expect_err("unknown field");
        assert!(format!("{:?}", e).contains("listen_on"), "{e:?}");
    }

    #[test]
    fn feeds_are_validated() {
        let e =
            parse("state_dir = \"s\"\n[[feed]]\nname = \"zdn\"\ntype = \"csv\"\nlocation = \"x\"")
                .expect_err("bad type");
        assert!(e.to_string().contains("feed[0].type"), "{e}");
        let e = parse("state_dir = \"s\"\n[[feed]]\nname = \"zdn\"\ntype = \"misp-api\"\nlocation = \"https://misp.example\"")
            .expect_err("no key");
        assert!(e.to_string().contains("api_key"), "{e}");
        let e = parse("state_dir = \"s\"\n[[feed]]\nname = \"a\"\ntype = \"domains\"\nlocation = \"x\"\naction = \"sinkhole\"")
            .expect_err("sinkhole without addresses");
        assert!(e.to_string().contains("sinkhole"), "{e}");
        let c = parse("state_dir = \"s\"\n[[feed]]\nname = \"a\"\ntype = \"domains\"\nlocation = \"lists/a.txt\"\naction = \"log-only\"")
            .expect("valid");
        assert_eq!(
            c.feeds[0].location,
            Location::Path("/etc/schild/lists/a.txt".into())
        );
        assert_eq!(c.feeds[0].action, Action::LogOnly);
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("zdn.key"), "s3cr3t-key\n").expect("write");
        let cfg = dir.path().join("schild.toml");
        let text = "state_dir = \"s\"\n[[feed]]\nname = \"zdn\"\ntype = \"misp-api\"\nlocation = \"https://misp.example\"\napi_key_file = \"zdn.key\"";
        let c = Config::parse(text, &cfg).expect("valid");
        assert_eq!(
            c.feeds[0].api_key.as_ref().map(Secret::expose),
            Some("s3cr3t-key")
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn upstreams() {
        assert_eq!(
            parse_upstream("9.9.9.9").expect("ok"),
            Upstream::Plain("9.9.9.9:53".parse().expect("addr"))
        );
        assert_eq!(
            parse_upstream("tls://9.9.9.9#dns.quad9.net").expect("ok"),
            Upstream::Tls {
                addr: "9.9.9.9:853".parse().expect("addr"),
                name: "dns.quad9.net".into()
            }
        );
        assert!(parse_upstream("tls://9.9.9.9").is_err());
        let e =
            parse("state_dir = \"s\"\n[resolver]\nmode = \"forward\"").expect_err("no upstream");
        assert!(e.to_string().contains("upstreams"));
    }

    #[test]
    fn servfail_ttl_defaults_to_one_second_and_is_capped() {
        let c = parse("state_dir = \"s\"").expect("valid");
        assert_eq!(c.resolver.servfail_ttl, Duration::from_secs(1));
        for (secs, ok) in [(0, true), (30, true), (31, false)] {
            let text = format!("state_dir = \"s\"\n[resolver]\nservfail_ttl_secs = {secs}");
            match parse(&text) {
                Ok(c) => {
                    assert!(ok, "{secs} accepted");
                    assert_eq!(c.resolver.servfail_ttl, Duration::from_secs(secs));
                }
                Err(e) => {
                    assert!(!ok, "{secs} refused: {e}");
                    assert!(e.to_string().contains("servfail_ttl_secs"), "{e}");
                }
            }
        }
    }

    #[test]
    fn misp_feed_key_needs_a_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("feed.key"), "k3y\n").expect("key");
        let cfg = dir.path().join("schild.toml");
        let feed = |loc: &str| {
            format!(
                "state_dir = \"s\"\n[[feed]]\nname = \"f\"\ntype = \"misp-feed\"\nlocation = \"{loc}\"\napi_key_file = \"feed.key\""
            )
        };
        let c = Config::parse(&feed("https://feed.example/misp/"), &cfg).expect("valid");
        assert_eq!(c.feeds[0].api_key.as_ref().map(Secret::expose), Some("k3y"));
        let e = Config::parse(&feed("feeds/misp"), &cfg).expect_err("no URL");
        assert!(e.to_string().contains("api_key_file"), "{e}");
    }

    #[test]
    fn redacted_location_hides_credentials() {
        let l = Location::Url(
            reqwest::Url::parse("https://user:pw@feed.example/x?key=abc").expect("url"),
        );
        assert_eq!(l.redacted(), "https://feed.example/x");
    }
}
