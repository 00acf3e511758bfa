//! Configuration: TOML in, a validated [`Config`] out.
//!
//! The file is parsed into `Raw*` structs (serde, unknown fields refused),
//! then validated into runtime types whose values are known good, so that
//! nothing later has to check them again. Relative paths are relative to the
//! folder of the config file. Secrets are read from files or the
//! environment, held in [`Secret`], and never printed.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub use crate::http::TlsClient;
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
    #[error("{}{field}: {message}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Invalid {
        /// The config file, once known.
        path: Option<PathBuf>,
        field: String,
        message: String,
    },
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
        path: None,
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

pub mod anchors;
pub mod groups;
mod raw;
mod validate;

/// BIND's ceiling for servfail-ttl: a failure is a transient state.
pub const MAX_SERVFAIL_TTL_SECS: u64 = 30;

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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path of the config file it was read from.
    pub path: PathBuf,
    /// A digest of the file's text when this is exactly what the file says
    /// (read by [`Config::load`], nothing kept from an earlier one): a
    /// compile in a child process may then read the file again.
    pub file_digest: Option<u64>,
    pub state_dir: PathBuf,
    pub server: ServerConfig,
    pub resolver: ResolverConfig,
    pub policy: PolicyConfig,
    pub admin: AdminConfig,
    pub feeds: Vec<FeedConfig>,
    pub allowlist: AllowlistConfig,
    /// `[sightings]`, or its defaults: the local record is always kept.
    pub sightings: SightingsConfig,
    pub rpz: Option<RpzConfig>,
    /// `[dnstap]`: the query log, if configured.
    pub dnstap: Option<DnstapConfig>,
    /// `[http]`: the TLS defaults of every HTTPS client (feeds, sightings,
    /// TAXII); a feed's own keys override them.
    pub http: TlsClient,
    /// `[[forward_zone]]`, `[[stub_zone]]` and `[local]`.
    pub zones: ZonesConfig,
    /// `[guard]`: protected names, the cap on newly blocked names.
    pub guard: GuardConfig,
    /// `[history]`: the local name history (days 0: off).
    pub history: HistoryConfig,
    /// `[[client_group]]`s, in configuration order (the first that holds
    /// a client applies).
    pub client_groups: Vec<ClientGroupConfig>,
}

/// The zone routes: where names at or below a zone are answered.
#[derive(Debug, Clone, Default)]
pub struct ZonesConfig {
    pub forward: Vec<ForwardZone>,
    pub stub: Vec<StubZone>,
    /// Serve Unbound's default local zones (`local.zones`).
    pub default_zones: bool,
    /// `local.nodefault`: default zones left out.
    pub nodefault: Vec<hickory_proto::rr::Name>,
    /// `local.records` and the records of `local.hosts_files`.
    pub records: Vec<hickory_proto::rr::Record>,
    pub hosts_files: Vec<PathBuf>,
}

/// `[[forward_zone]]`: names at or below `name` go to `upstreams`.
#[derive(Debug, Clone)]
pub struct ForwardZone {
    /// Lower case, with the trailing dot.
    pub name: hickory_proto::rr::Name,
    pub upstreams: Vec<Upstream>,
    /// When every upstream fails, resolve by the global route.
    pub first: bool,
    pub dnssec: bool,
}

/// `[[stub_zone]]`: names at or below `name` are asked of `servers`.
#[derive(Debug, Clone)]
pub struct StubZone {
    pub name: hickory_proto::rr::Name,
    pub servers: Vec<SocketAddr>,
}

impl ZonesConfig {
    /// The zone table these settings describe (pure: the records were
    /// read when the configuration was loaded).
    pub fn table(&self) -> crate::zones::Zones {
        use crate::zones::{Way, ZoneSpec, Zones};
        let mut ways = Vec::new();
        for (i, z) in self.forward.iter().enumerate() {
            ways.push((z.name.clone(), Way::Forward(i)));
        }
        for (i, z) in self.stub.iter().enumerate() {
            ways.push((z.name.clone(), Way::Stub(i)));
        }
        Zones::new(ZoneSpec {
            defaults: self.default_zones,
            nodefault: self.nodefault.clone(),
            records: self.records.clone(),
            ways,
        })
    }

    /// Which route answers `name`, in words (for `schild check`).
    pub fn describe(&self, mode: ResolverMode, name: &hickory_proto::rr::LowerName) -> String {
        use crate::zones::{RouteKind, Way};
        match self.table().route_of(name) {
            RouteKind::LocalRecord => "local record ([local] records or hosts_files)".to_string(),
            RouteKind::LocalZone(zone) => {
                format!(
                    "local zone {zone} (a default local zone: answered here, never sent upstream)"
                )
            }
            RouteKind::Zone(way @ Way::Forward(i)) => {
                let first = self.forward.get(i).is_some_and(|f| f.first);
                let then = if first {
                    " (first = true: resolved normally when its upstreams fail)"
                } else {
                    " (never resolved elsewhere)"
                };
                format!("forward_zone {}{then}", self.way_name(way))
            }
            RouteKind::Zone(way @ Way::Stub(_)) => format!("stub_zone {}", self.way_name(way)),
            RouteKind::Global => match mode {
                ResolverMode::Forward => "forward (resolver.upstreams)".to_string(),
                ResolverMode::Recursive => "recursive".to_string(),
            },
        }
    }

    /// The name of a forward or stub zone, as `check` and the metrics
    /// name it (with its trailing dot).
    pub fn way_name(&self, way: crate::zones::Way) -> String {
        use crate::zones::Way;
        match way {
            Way::Forward(i) => self.forward.get(i).map(|z| z.name.to_ascii()),
            Way::Stub(i) => self.stub.get(i).map(|z| z.name.to_ascii()),
        }
        .unwrap_or_default()
    }
}

/// `[guard]`: the clinical guardrail.
#[derive(Debug, Clone, Default)]
pub struct GuardConfig {
    /// Files of names of clinical systems: a name and its subdomains are
    /// never blocked; an IOC for one is refused at compile time.
    pub protected: Vec<PathBuf>,
    /// Send a false-positive sighting for each IOC refused as protected.
    pub report_protected: bool,
    /// An update that newly blocks more names than this (compared with the
    /// artifact in use) is held until `schild guard accept`; 0: never held.
    pub max_new_blocks: u64,
    /// A newly listed name is popular when at least `popular_clients`
    /// distinct clients resolved it on at least `popular_days` days of
    /// the name history; `on_popular` says what happens to it.
    pub popular_clients: u64,
    pub popular_days: u32,
    pub on_popular: OnPopular,
}

/// `guard.on_popular`: what a newly listed popular name gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnPopular {
    /// Blocked, and raised (WARN, `schild_guard_popular_blocks_total`).
    #[default]
    Alert,
    /// Log-only until `schild guard release` (or `schild allow`): it
    /// resolves, each hit is a sighting with action `quarantine`.
    Quarantine,
}

/// `[history]`: per day, every name answered, for `schild history` and
/// the retro-hunt. Nothing of it leaves the hospital.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Days kept (today included); 0: no history, no retro-hunt.
    pub days: u32,
    /// Distinct names recorded per day; past it, new names are counted as
    /// dropped.
    pub max_names_per_day: usize,
    /// Client identifiers kept per name and day.
    pub clients_per_name: usize,
}

impl HistoryConfig {
    pub fn enabled(&self) -> bool {
        self.days > 0
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub allow: Vec<IpNet>,
    pub edns_payload: u16,
    pub tcp_idle: Duration,
    pub tcp_max_connections: usize,
    pub tcp_max_inflight: usize,
    pub tcp_max_per_client: usize,
    pub udp_sockets: usize,
    pub tls_listen: Vec<SocketAddr>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub drain: Duration,
    /// UDP answers a second per client (IPv4 address, IPv6 /56); 0 = off.
    pub client_qps: u32,
    /// Every this many limited UDP answers one is sent as TC=1 (0: none).
    pub client_qps_slip: u32,
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
    /// Whole UDP answers kept in wire form (`server::packets`), as many
    /// as `cache_entries`.
    pub packet_cache: bool,
    pub timeout: Duration,
    /// How long a failed resolution is answered SERVFAIL from memory;
    /// zero: never.
    pub servfail_ttl: Duration,
    /// Upstream lookups outstanding at once, in all and per client; past
    /// it the oldest is answered SERVFAIL.
    pub max_inflight: usize,
    pub max_inflight_per_client: usize,
    pub allow_servers: Vec<IpNet>,
    pub recursion_port: Option<u16>,
    /// DS and DNSKEY trust anchors; `None`: the built-in root keys.
    pub trust_anchor_file: Option<PathBuf>,
    /// `trust_anchor_file` with its DS records turned into keys, filled
    /// in by `server::anchors` when the resolver is built (never from the
    /// file's text); `None` in a loaded configuration.
    pub trust_anchors: Option<anchors::ResolvedAnchors>,
    /// Names at and below which nothing is validated, lower case with the
    /// trailing dot.
    pub domain_insecure: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Refuse to start without a loaded list.
    pub fail_closed: bool,
    /// TTL of synthesised answers (SOA minimum, sinkhole records).
    pub block_ttl: u32,
    pub sinkhole_ipv4: Vec<std::net::Ipv4Addr>,
    pub sinkhole_ipv6: Vec<std::net::Ipv6Addr>,
    /// Block public names whose answer holds a private, loopback or
    /// link-local address (DNS rebinding).
    pub rebind_protection: bool,
    /// Names (and their subdomains) exempt from `rebind_protection`, normalised.
    pub rebind_allow: Vec<String>,
    /// NXDOMAIN for the names browsers and phones ask before bypassing
    /// this resolver (Firefox's DoH canary, iCloud Private Relay).
    pub block_bypass: bool,
}

/// `[[client_group]]`: the policy of the clients in some networks.
#[derive(Debug, Clone)]
pub struct ClientGroupConfig {
    pub name: String,
    /// Host bits never set (checked).
    pub networks: Vec<IpNet>,
    /// Files of the only names (and subdomains) the group may resolve;
    /// empty: no such restriction.
    pub allow_only: Vec<PathBuf>,
    /// `action = "log-only"`: IOC hits are recorded, answered normally.
    pub log_only: bool,
    /// Only these feeds apply; `None`: all.
    pub feeds: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// With a token, every endpoint but `/health` and `/metrics` needs
    /// `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    pub max_connections: usize,
    pub header_timeout: Duration,
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
    /// `axfr://IP[:port]/zone`: an RPZ zone pulled from its primary by
    /// zone transfer (IXFR once a copy is kept, AXFR otherwise).
    Xfr {
        server: SocketAddr,
        zone: String,
    },
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
            Location::Xfr { server, zone } => format!("axfr://{server}/{zone}"),
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
    /// A refresh that loses more than this percentage of the last good
    /// copy's entries is a failed fetch; 100 accepts any shrink.
    pub max_shrink_percent: u8,
    pub filters: MispFilters,
    pub report_sightings: bool,
    pub sightings_url: Option<reqwest::Url>,
    pub sightings_key: Option<Secret>,
    /// TSIG key (BIND's key file) for an `axfr://` location.
    pub tsig_key_file: Option<PathBuf>,
    /// Its own TLS keys over `[http]`'s.
    pub tls: TlsClient,
}

#[derive(Debug, Clone, Default)]
pub struct AllowlistConfig {
    /// How many listed names one `schild allow` entry may spare without
    /// `--force`.
    pub max_spared: u64,
    pub files: Vec<PathBuf>,
    pub warninglists: Vec<PathBuf>,
}

/// `[dnstap]`: where the query log goes and what it holds.
#[derive(Debug, Clone)]
pub struct DnstapConfig {
    pub target: DnstapTarget,
    /// `Dnstap.identity`: which resolver sent it (default: the host name).
    pub identity: String,
    pub client_queries: bool,
    pub client_responses: bool,
    /// schild's own queries upstream (RESOLVER_QUERY and RESOLVER_RESPONSE).
    pub resolver_queries: bool,
    /// Default: `sightings.client_privacy`.
    pub client_addresses: ClientPrivacy,
}

/// A Frame Streams collector: a unix socket (`socket`) or TCP (`address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnstapTarget {
    Unix(PathBuf),
    Tcp(SocketAddr),
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
    /// `[http]`'s TLS, for the TAXII collection.
    pub taxii_tls: TlsClient,
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

/// The digest of a config file's text: the same text gives the same
/// digest in every process of this binary (SipHash with fixed keys).
pub fn text_digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.file_digest = Some(text_digest(&text));
        Ok(config)
    }

    /// Validate config text; `path` names the file (for relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        validate::validate(raw, path, &base).map_err(|e| match e {
            ConfigError::Invalid { field, message, .. } => ConfigError::Invalid {
                path: Some(path.to_path_buf()),
                field,
                message,
            },
            other => other,
        })
    }

    /// The artifact's path.
    pub fn artifact_path(&self) -> PathBuf {
        self.state_dir.join(crate::policy::artifact::FILE_NAME)
    }

    /// Every file the configuration names that `serve` will read, with its
    /// key: for `check-config` to try before a restart does. (Secret files
    /// are read, and so checked, when the config loads.)
    pub fn referenced_files(&self) -> Vec<(String, PathBuf)> {
        let mut files = Vec::new();
        let mut add = |key: String, p: &Option<PathBuf>| {
            if let Some(p) = p {
                files.push((key, p.clone()));
            }
        };
        add("server.tls_cert_file".into(), &self.server.tls_cert_file);
        add("server.tls_key_file".into(), &self.server.tls_key_file);
        add("resolver.root_hints".into(), &self.resolver.root_hints);
        for (i, p) in self.zones.hosts_files.iter().enumerate() {
            add(format!("local.hosts_files[{i}]"), &Some(p.clone()));
        }
        add(
            "resolver.trust_anchor_file".into(),
            &self.resolver.trust_anchor_file,
        );
        add(
            "rpz.tsig_key_file".into(),
            &self.rpz.as_ref().and_then(|r| r.tsig_key_file.clone()),
        );
        files.extend(self.http.files("http"));
        for f in &self.feeds {
            files.extend(f.tls.files(&format!("feed {:?}", f.name)));
            if let Some(k) = &f.tsig_key_file {
                files.push((format!("feed {:?}.tsig_key_file", f.name), k.clone()));
            }
        }
        for (i, p) in self.allowlist.files.iter().enumerate() {
            files.push((format!("allowlist.files[{i}]"), p.clone()));
        }
        for (i, p) in self.allowlist.warninglists.iter().enumerate() {
            files.push((format!("allowlist.warninglists[{i}]"), p.clone()));
        }
        for g in &self.client_groups {
            for (i, p) in g.allow_only.iter().enumerate() {
                files.push((
                    format!("client_group {:?}.allow_only[{i}]", g.name),
                    p.clone(),
                ));
            }
        }
        for (i, p) in self.guard.protected.iter().enumerate() {
            files.push((format!("guard.protected[{i}]"), p.clone()));
        }
        for f in &self.feeds {
            if let Location::Path(p) = &f.location {
                // A MISP feed on disk is a folder with its manifest.
                let p = if f.kind == FeedKind::MispFeed
                    && p.file_name().is_none_or(|n| n != "manifest.json")
                {
                    p.join("manifest.json")
                } else {
                    p.clone()
                };
                files.push((format!("feed {:?}.location", f.name), p));
            }
        }
        files
    }

    /// The local allowlist file that `schild allow` writes to (always read
    /// by the compile).
    pub fn local_allowlist_path(&self) -> PathBuf {
        self.state_dir.join("allowlist.local")
    }

    /// Where an update held by `guard.max_new_blocks` waits for
    /// `schild guard accept`, beside the live artifact.
    pub fn held_artifact_path(&self) -> PathBuf {
        self.state_dir.join("policy.held.artifact")
    }

    /// The names quarantined by `guard.on_popular = "quarantine"` and
    /// those released (`schild guard release`).
    pub fn quarantine_path(&self) -> PathBuf {
        self.state_dir.join("guard.quarantine.json")
    }

    /// The folder of the name history (`[history]`).
    pub fn history_dir(&self) -> PathBuf {
        self.state_dir.join("history")
    }

    /// The folder of the sightings spool.
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir.join("sightings").join("spool")
    }

    /// The key that pseudonymises client addresses in the local log.
    pub fn pseudonym_key_path(&self) -> PathBuf {
        self.state_dir.join("sightings").join("pseudonym.key")
    }
}

#[cfg(test)]
mod tests {
    use super::validate::parse_upstream;
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/schild/schild.toml"))
    }

    /// The README's configuration reference, as a user would copy it.
    fn readme_reference() -> String {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("## Configuration reference")
            .and_then(|i| readme[i..].find("```toml\n").map(|j| i + j + 8))
            .expect("the README has a configuration reference");
        let len = readme[start..].find("```").expect("closed block");
        readme[start..start + len].to_string()
    }

    #[test]
    fn the_readme_configuration_reference_is_a_valid_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The one secret file it names (secrets are read at load).
        std::fs::write(dir.path().join("zdn.key"), "0123456789abcdef").expect("key");
        std::fs::write(dir.path().join("admin.token"), "0123456789abcdef0123\n").expect("token");
        let load = |text: &str| {
            let path = dir.path().join("schild.toml");
            std::fs::write(&path, text).expect("write");
            Config::load(&path)
        };
        let text = readme_reference();
        let c = load(&text).unwrap_or_else(|e| panic!("README reference: {e}"));
        assert_eq!(c.feeds.len(), 1);
        assert!(c.http.ca_file.is_some());
        assert!(c.dnstap.as_ref().is_some_and(|d| !d.resolver_queries));
        assert!(c.admin.token.is_some());
        assert_eq!(c.server.client_qps_slip, 2);
        assert_eq!(c.admin.max_connections, 64);
        assert_eq!(c.client_groups.len(), 2);
        assert!(c.client_groups[1].log_only);
        assert!(c.policy.block_bypass);
        // Every commented-out key (`# key = value`) is a real key too: with
        // them uncommented (and the secrets they name present) it still
        // loads, so a documented option cannot be misspelt or gone.
        for f in ["misp.key", "taxii.key"] {
            std::fs::write(dir.path().join(f), "0123456789abcdef").expect("key");
        }
        std::fs::write(
            dir.path().join("hosts"),
            "10.0.9.10 mri.corp.hospital.example\n",
        )
        .expect("hosts");
        assert_eq!(c.zones.forward.len(), 1);
        assert_eq!(c.zones.stub.len(), 1);
        assert!(c.zones.default_zones);
        assert_eq!(c.zones.records.len(), 1);
        let mut uncommented = String::new();
        let mut n = 0;
        for line in text.lines() {
            let rest = line.strip_prefix("# ").unwrap_or("");
            let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
            if is_key {
                n += 1;
                uncommented.push_str(rest);
            } else {
                uncommented.push_str(line);
            }
            uncommented.push('\n');
        }
        assert!(n >= 5, "found {n} commented keys");
        let c = load(&uncommented).unwrap_or_else(|e| panic!("README reference, uncommented: {e}"));
        assert!(c.feeds[0].tls.client_cert.is_some());
        assert!(c.sightings.taxii_collection.is_some());
        assert_eq!(c.zones.records.len(), 3, "the hosts file's A and PTR");
        assert_eq!(c.guard.protected.len(), 1);
        assert_eq!(c.guard.max_new_blocks, 100_000);
        assert_eq!((c.guard.popular_clients, c.guard.popular_days), (50, 7));
        assert_eq!(c.history.clients_per_name, 8);
    }

    #[test]
    fn zones_are_validated() {
        let c = parse(
            "state_dir = \"s\"\n[resolver]\ndnssec = true\n[[forward_zone]]\nname = \"Corp.Hospital.NL\"\nupstreams = [\"10.0.0.10\", \"tls://10.0.0.11#dc2.corp\"]\n[[stub_zone]]\nname = \"lab.hospital.nl.\"\nservers = [\"10.0.5.2:5300\"]\n",
        )
        .expect("valid");
        let f = &c.zones.forward[0];
        assert_eq!(f.name.to_ascii(), "corp.hospital.nl.");
        assert!(f.dnssec, "defaults to resolver.dnssec");
        assert!(!f.first);
        assert_eq!(f.upstreams.len(), 2);
        assert_eq!(c.zones.stub[0].servers[0].port(), 5300);
        assert!(c.zones.default_zones, "on by default");
        let err = |text: &str| {
            parse(&format!("state_dir = \"s\"\n{text}"))
                .expect_err(text)
                .to_string()
        };
        let e = err(
            "[[forward_zone]]\nname = \"corp.nl\"\nupstreams = [\"10.0.0.1\"]\n[[stub_zone]]\nname = \"CORP.nl.\"\nservers = [\"10.0.0.2\"]\n",
        );
        assert!(
            e.contains("stub_zone[0].name") && e.contains("forward_zone[0]"),
            "{e}"
        );
        let e = err("[[forward_zone]]\nname = \"corp.nl\"\nupstreams = [\"nonsense\"]\n");
        assert!(e.contains("forward_zone \"corp.nl.\".upstreams"), "{e}");
        let e = err("[[forward_zone]]\nname = \"corp.nl\"\nupstreams = []\n");
        assert!(e.contains("forward_zone \"corp.nl.\".upstreams"), "{e}");
        let e = err("[[forward_zone]]\nname = \".\"\nupstreams = [\"10.0.0.1\"]\n");
        assert!(e.contains("forward_zone[0].name"), "{e}");
        let e = err("[local]\nnodefault = [\"example.com\"]\n");
        assert!(e.contains("local.nodefault[0]"), "{e}");
        let e = err("[local]\nrecords = [\"ok.example. A 10.0.0.1\", \"bad.example. A nope\"]\n");
        assert!(e.contains("local.records[1]"), "{e}");
        let e = err("[local]\nhosts_files = [\"/nonexistent/hosts\"]\n");
        assert!(e.contains("local.hosts_files[0]"), "{e}");
        let e = err("[[stub_zone]]\nname = \"lab.nl\"\nservers = [\"tls://10.0.0.1#x\"]\n");
        assert!(e.contains("stub_zone \"lab.nl.\".servers"), "{e}");
    }

    #[test]
    fn client_groups_are_validated_naming_the_key() {
        let feed = "[[feed]]\nname = \"zdn\"\ntype = \"domains\"\nlocation = \"x\"\n";
        let group = |body: &str| {
            parse(&format!(
                "state_dir = \"s\"\n{feed}[[client_group]]\nname = \"devices\"\n{body}"
            ))
        };
        let c = group(
            "networks = [\"10.20.0.0/16\", \"::1\"]\nallow_only = [\"a.txt\"]\nfeeds = [\"zdn\"]",
        )
        .expect("valid");
        let g = &c.client_groups[0];
        assert_eq!(g.networks.len(), 2);
        assert_eq!(g.allow_only, vec![PathBuf::from("/etc/schild/a.txt")]);
        assert_eq!(g.feeds.as_deref(), Some(&["zdn".to_string()][..]));
        for (body, key, says) in [
            (
                "networks = [\"10.20.1.0/16\"]",
                "client_group \"devices\".networks",
                "host bits",
            ),
            (
                "networks = [\"10.20.0.0/33\"]",
                "client_group \"devices\".networks",
                "not a network",
            ),
            (
                "networks = []",
                "client_group \"devices\".networks",
                "empty",
            ),
            (
                "networks = [\"10.0.0.0/8\"]\naction = \"nxdomain\"",
                "client_group \"devices\".action",
                "log-only",
            ),
            (
                "networks = [\"10.0.0.0/8\"]\nfeeds = [\"nope\"]",
                "client_group \"devices\".feeds[0]",
                "not a configured feed",
            ),
            (
                "networks = [\"10.0.0.0/8\"]\nallow_only = []",
                "client_group \"devices\".allow_only",
                "empty",
            ),
            (
                "networks = [\"10.0.0.0/8\"]\nallow_only = [\"a\"]\naction = \"log-only\"",
                "client_group \"devices\".action",
                "allow_only",
            ),
            (
                "networks = [\"10.0.0.0/8\"]\n[[client_group]]\nname = \"devices\"\nnetworks = [\"::1\"]",
                "client_group \"devices\".name",
                "twice",
            ),
        ] {
            let e = group(body).expect_err(body).to_string();
            assert!(e.contains(key) && e.contains(says), "{body}: {e}");
        }
        let e = parse("state_dir = \"s\"\n[[client_group]]\nname = \"a b\"\nnetworks = [\"::1\"]")
            .expect_err("bad name")
            .to_string();
        assert!(e.contains("client_group[0].name"), "{e}");
        let e = parse("state_dir = \"s\"\n[policy]\nrebind_allow = [\"a..b\"]")
            .expect_err("bad name")
            .to_string();
        assert!(e.contains("policy.rebind_allow[0]"), "{e}");
    }

    #[test]
    fn per_network_defaults() {
        let c = parse("state_dir = \"s\"").expect("valid");
        assert!(c.client_groups.is_empty());
        assert!(c.policy.block_bypass, "block_bypass is on by default");
        assert!(!c.policy.rebind_protection);
        let c = parse("state_dir = \"s\"\n[policy]\nfail_closed = true").expect("valid");
        assert!(c.policy.block_bypass, "also with a [policy] section");
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
    fn dnssec_anchors_and_insecure_domains() {
        let c = parse(
            "state_dir = \"s\"\n[resolver]\ntrust_anchor_file = \"anchors.key\"\ndomain_insecure = [\"Corp.Hospital.NL\", \"lab.test.\"]",
        )
        .expect("valid");
        assert_eq!(
            c.resolver.trust_anchor_file,
            Some(PathBuf::from("/etc/schild/anchors.key"))
        );
        assert_eq!(
            c.resolver.domain_insecure,
            ["corp.hospital.nl.", "lab.test."]
        );
        assert!(
            c.referenced_files()
                .iter()
                .any(|(k, _)| k == "resolver.trust_anchor_file"),
            "check-config reads it"
        );
        for bad in ["\".\"", "\"a..b\"", "\"bad name\"", "\"\""] {
            let e = parse(&format!(
                "state_dir = \"s\"\n[resolver]\ndomain_insecure = [{bad}]"
            ))
            .expect_err(bad);
            assert!(e.to_string().contains("resolver.domain_insecure"), "{e}");
        }
        let e = parse(
            "state_dir = \"s\"\n[resolver]\nmode = \"forward\"\nupstreams = [\"192.0.2.53\"]\ndomain_insecure = [\"corp.nl\"]",
        )
        .expect_err("forward mode");
        assert!(e.to_string().contains("recursive mode"), "{e}");
    }

    #[test]
    fn guard_and_history_are_validated() {
        let c = parse("state_dir = \"s\"\n[guard]\non_popular = \"quarantine\"").expect("valid");
        assert_eq!(c.guard.on_popular, OnPopular::Quarantine);
        let e = parse("state_dir = \"s\"\n[guard]\non_popular = \"block\"").expect_err("n/a");
        assert!(e.to_string().contains("guard.on_popular"), "{e}");
        let e = parse("state_dir = \"s\"\n[history]\nclients_per_name = 65").expect_err("too many");
        assert!(e.to_string().contains("history.clients_per_name"), "{e}");
        let c = parse("state_dir = \"s\"\n[history]\ndays = 0").expect("valid");
        assert!(!c.history.enabled());
        assert_eq!(c.guard.max_new_blocks, 100_000);
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
        assert!(e.to_string().contains("feed \"zdn\".type"), "{e}");
        assert!(
            e.to_string().starts_with("/etc/schild/schild.toml: "),
            "{e}"
        );
        let e = parse("state_dir = \"s\"\n[[feed]]\nname = \"zdn\"\ntype = \"misp-api\"\nlocation = \"https://misp.example\"")
            .expect_err("no key");
        assert!(e.to_string().contains("api_key"), "{e}");
        let e = parse("state_dir = \"s\"\n[[feed]]\nname = \"a\"\ntype = \"domains\"\nlocation = \"x\"\naction = \"sinkhole\"")
            .expect_err("sinkhole without addresses");
        assert!(e.to_string().contains("sinkhole"), "{e}");
        let e = parse("state_dir = \"s\"\n[[feed]]\nname = \"a\"\ntype = \"rpz\"\nlocation = \"x\"\naction = \"local-data\"")
            .expect_err("local-data is a record's action");
        assert!(e.to_string().contains("local-data"), "{e}");
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
    fn admin_limits_and_token_are_validated() {
        let c = parse("state_dir = \"s\"").expect("valid");
        assert_eq!(c.admin.max_connections, 64);
        assert_eq!(c.admin.header_timeout, Duration::from_secs(10));
        assert!(c.admin.token.is_none());
        for (text, key) in [
            ("max_connections = 0", "admin.max_connections"),
            ("max_connections = 100000", "admin.max_connections"),
            ("header_timeout_secs = 0", "admin.header_timeout_secs"),
            ("header_timeout_secs = 301", "admin.header_timeout_secs"),
        ] {
            let e = parse(&format!("state_dir = \"s\"\n[admin]\n{text}")).expect_err(text);
            assert!(e.to_string().contains(key), "{e}");
        }
        let c = parse("state_dir = \"s\"\n[admin]\nmax_connections = 8\nheader_timeout_secs = 3")
            .expect("valid");
        assert_eq!(c.admin.max_connections, 8);
        assert_eq!(c.admin.header_timeout, Duration::from_secs(3));

        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("schild.toml");
        let text = "state_dir = \"s\"\n[admin]\ntoken_file = \"admin.token\"";
        std::fs::write(dir.path().join("admin.token"), "short\n").expect("write");
        let e = Config::parse(text, &cfg).expect_err("a short token");
        assert!(e.to_string().contains("admin.token_file"), "{e}");
        std::fs::write(dir.path().join("admin.token"), "0123456789abcdef0123\n").expect("write");
        let c = Config::parse(text, &cfg).expect("valid");
        assert_eq!(
            c.admin.token.as_ref().map(Secret::expose),
            Some("0123456789abcdef0123")
        );
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        std::fs::remove_file(dir.path().join("admin.token")).expect("rm");
        let e = Config::parse(text, &cfg).expect_err("no token file");
        assert!(e.to_string().contains("admin.token_file"), "{e}");
    }

    #[test]
    fn client_qps_is_off_by_default_and_bounded() {
        let c = parse("state_dir = \"s\"").expect("valid");
        assert_eq!((c.server.client_qps, c.server.client_qps_slip), (0, 2));
        let e = parse("state_dir = \"s\"\n[server]\nclient_qps_slip = 11").expect_err("slip");
        assert!(e.to_string().contains("server.client_qps_slip"), "{e}");
        let c = parse("state_dir = \"s\"\n[server]\nclient_qps = 50\nclient_qps_slip = 0")
            .expect("valid");
        assert_eq!((c.server.client_qps, c.server.client_qps_slip), (50, 0));
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
