//! The file as written: serde structs with their defaults, unknown fields
//! refused. [`super::validate`] turns them into the runtime types.

use std::path::PathBuf;

use serde::Deserialize;

use super::RpzLogOnly;
use crate::policy::Action;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) state_dir: PathBuf,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) resolver: RawResolver,
    #[serde(default)]
    pub(super) policy: RawPolicy,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    #[serde(default, rename = "feed")]
    pub(super) feeds: Vec<RawFeed>,
    #[serde(default)]
    pub(super) allowlist: RawAllowlist,
    #[serde(default)]
    pub(super) sightings: RawSightings,
    #[serde(default)]
    pub(super) rpz: Option<RawRpz>,
    #[serde(default)]
    pub(super) http: RawTls,
    #[serde(default)]
    pub(super) dnstap: Option<RawDnstap>,
    #[serde(default, rename = "client_group")]
    pub(super) client_groups: Vec<RawClientGroup>,
    #[serde(default, rename = "forward_zone")]
    pub(super) forward_zones: Vec<RawForwardZone>,
    #[serde(default, rename = "stub_zone")]
    pub(super) stub_zones: Vec<RawStubZone>,
    #[serde(default)]
    pub(super) local: RawLocal,
    #[serde(default)]
    pub(super) guard: RawGuard,
    #[serde(default)]
    pub(super) history: RawHistory,
}

/// `[[client_group]]`: a policy for the clients of some networks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientGroup {
    pub(super) name: String,
    pub(super) networks: Vec<String>,
    pub(super) allow_only: Option<Vec<PathBuf>>,
    pub(super) action: Option<String>,
    pub(super) feeds: Option<Vec<String>>,
}

/// `[[forward_zone]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwardZone {
    pub(super) name: String,
    pub(super) upstreams: Vec<String>,
    /// Resolve normally when every upstream fails (Unbound's forward-first).
    #[serde(default)]
    pub(super) first: bool,
    /// Default: `resolver.dnssec`.
    pub(super) dnssec: Option<bool>,
}

/// `[[stub_zone]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStubZone {
    pub(super) name: String,
    pub(super) servers: Vec<String>,
}

/// `[local]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocal {
    /// Serve Unbound's default local zones.
    #[serde(default = "default_true")]
    pub(super) zones: bool,
    #[serde(default)]
    pub(super) nodefault: Vec<String>,
    #[serde(default)]
    pub(super) records: Vec<String>,
    #[serde(default)]
    pub(super) hosts_files: Vec<PathBuf>,
}

impl Default for RawLocal {
    fn default() -> Self {
        RawLocal {
            zones: true,
            nodefault: Vec::new(),
            records: Vec::new(),
            hosts_files: Vec::new(),
        }
    }
}

/// `[guard]`: the clinical guardrail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuard {
    /// Files of names (with their subdomains) that no feed may block.
    #[serde(default)]
    pub(super) protected: Vec<PathBuf>,
    /// Send a false-positive sighting for an IOC refused as protected.
    #[serde(default)]
    pub(super) report_protected: bool,
    /// An update newly blocking more names than this is held (0: off).
    #[serde(default = "default_max_new_blocks")]
    pub(super) max_new_blocks: u64,
    /// A newly listed name that at least this many distinct clients
    /// resolved...
    #[serde(default = "default_popular_clients")]
    pub(super) popular_clients: u64,
    /// ...on at least this many days of the name history is popular.
    #[serde(default = "default_popular_days")]
    pub(super) popular_days: u32,
    #[serde(default = "default_on_popular")]
    pub(super) on_popular: String,
}

pub(super) fn default_popular_clients() -> u64 {
    50
}
pub(super) fn default_popular_days() -> u32 {
    7
}
pub(super) fn default_on_popular() -> String {
    "alert".into()
}

pub(super) fn default_max_new_blocks() -> u64 {
    100_000
}

impl Default for RawGuard {
    fn default() -> Self {
        RawGuard {
            protected: Vec::new(),
            report_protected: false,
            max_new_blocks: default_max_new_blocks(),
            popular_clients: default_popular_clients(),
            popular_days: default_popular_days(),
            on_popular: default_on_popular(),
        }
    }
}

/// `[history]`: the local name history behind retro-hunts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHistory {
    /// Days kept; 0 turns the history (and retro-hunt) off.
    #[serde(default = "default_history_days")]
    pub(super) days: u32,
    #[serde(default = "default_max_names_per_day")]
    pub(super) max_names_per_day: u64,
    #[serde(default = "default_clients_per_name")]
    pub(super) clients_per_name: u32,
}

pub(super) fn default_history_days() -> u32 {
    30
}
pub(super) fn default_max_names_per_day() -> u64 {
    2_000_000
}
pub(super) fn default_clients_per_name() -> u32 {
    8
}

impl Default for RawHistory {
    fn default() -> Self {
        RawHistory {
            days: default_history_days(),
            max_names_per_day: default_max_names_per_day(),
            clients_per_name: default_clients_per_name(),
        }
    }
}

/// `[dnstap]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDnstap {
    pub(super) socket: Option<PathBuf>,
    pub(super) address: Option<String>,
    pub(super) identity: Option<String>,
    #[serde(default = "default_true")]
    pub(super) client_queries: bool,
    #[serde(default = "default_true")]
    pub(super) client_responses: bool,
    #[serde(default)]
    pub(super) resolver_queries: bool,
    pub(super) client_addresses: Option<String>,
}

/// `[http]`, and the same keys in a `[[feed]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) ca_file: Option<PathBuf>,
    pub(super) client_cert_file: Option<PathBuf>,
    pub(super) client_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    #[serde(default = "default_listen")]
    pub(super) listen: Vec<String>,
    #[serde(default = "default_allow")]
    pub(super) allow: Vec<String>,
    #[serde(default = "default_edns_payload")]
    pub(super) edns_payload: u16,
    #[serde(default = "default_tcp_idle_secs")]
    pub(super) tcp_idle_secs: u64,
    #[serde(default = "default_tcp_max_connections")]
    pub(super) tcp_max_connections: usize,
    /// Queries answered at once on one TCP or TLS connection.
    #[serde(default = "default_tcp_max_per_client")]
    pub(super) tcp_max_per_client: usize,
    #[serde(default = "default_tcp_max_inflight")]
    pub(super) tcp_max_inflight: usize,
    /// UDP sockets per address (SO_REUSEPORT); 0 = one per core.
    #[serde(default)]
    pub(super) udp_sockets: usize,
    #[serde(default)]
    pub(super) tls_listen: Vec<String>,
    pub(super) tls_cert_file: Option<PathBuf>,
    pub(super) tls_key_file: Option<PathBuf>,
    #[serde(default = "default_drain_secs")]
    pub(super) drain_secs: u64,
    /// UDP answers a second per client address (IPv6: per /56); 0 = off.
    #[serde(default)]
    pub(super) client_qps: u32,
    /// Of the answers a limited client does not get, every this many is a
    /// TC=1 empty answer instead of nothing (BIND's `slip`); 0 = none.
    #[serde(default = "default_client_qps_slip")]
    pub(super) client_qps_slip: u32,
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
            tcp_max_per_client: default_tcp_max_per_client(),
            udp_sockets: 0,
            tls_listen: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            drain_secs: default_drain_secs(),
            client_qps: 0,
            client_qps_slip: default_client_qps_slip(),
        }
    }
}

pub(super) fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:5353".into()]
}
pub(super) fn default_allow() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}
pub(super) fn default_edns_payload() -> u16 {
    1232
}
pub(super) fn default_tcp_idle_secs() -> u64 {
    10
}
pub(super) fn default_tcp_max_connections() -> usize {
    1024
}
pub(super) fn default_tcp_max_per_client() -> usize {
    // One site's NAT may put many clients behind one address; a sixteenth
    // of the default global cap still leaves room for fifteen others.
    64
}
pub(super) fn default_tcp_max_inflight() -> usize {
    64
}
pub(super) fn default_drain_secs() -> u64 {
    5
}
/// BIND's default: every other limited answer slips.
pub(super) fn default_client_qps_slip() -> u32 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResolver {
    #[serde(default = "default_mode")]
    pub(super) mode: String,
    #[serde(default)]
    pub(super) upstreams: Vec<String>,
    pub(super) root_hints: Option<PathBuf>,
    #[serde(default = "default_true")]
    pub(super) dnssec: bool,
    #[serde(default = "default_cache_entries")]
    pub(super) cache_entries: u64,
    #[serde(default)]
    pub(super) min_ttl_secs: u32,
    #[serde(default = "default_max_ttl_secs")]
    pub(super) max_ttl_secs: u32,
    #[serde(default = "default_true")]
    pub(super) serve_stale: bool,
    /// Keep whole UDP answers in wire form in front of the record cache.
    #[serde(default = "default_true")]
    pub(super) packet_cache: bool,
    /// How long past its TTL a cached answer may still be served when the
    /// upstream fails (RFC 8767).
    #[serde(default = "default_serve_stale_max_secs")]
    pub(super) serve_stale_max_secs: u64,
    #[serde(default = "default_upstream_timeout_secs")]
    pub(super) timeout_secs: u64,
    /// How long a failed resolution is remembered (BIND's servfail-ttl);
    /// 0 turns it off.
    #[serde(default = "default_servfail_ttl_secs")]
    pub(super) servfail_ttl_secs: u64,
    #[serde(default = "default_max_inflight")]
    pub(super) max_inflight: usize,
    #[serde(default = "default_max_inflight_per_client")]
    pub(super) max_inflight_per_client: usize,
    /// Networks the recursor may send queries to even though they are
    /// special-use (tests, internal authoritative servers).
    #[serde(default)]
    pub(super) allow_servers: Vec<String>,
    /// Port used for every server contacted while recursing (tests only).
    #[serde(default)]
    pub(super) recursion_port: Option<u16>,
    /// DNSKEY records (zone-file syntax) to validate from instead of the
    /// built-in root keys (Unbound's trust-anchor-file).
    #[serde(default)]
    pub(super) trust_anchor_file: Option<PathBuf>,
    /// No validation at or below these names (negative trust anchors,
    /// RFC 7646; Unbound's domain-insecure).
    #[serde(default)]
    pub(super) domain_insecure: Vec<String>,
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
            packet_cache: true,
            serve_stale_max_secs: default_serve_stale_max_secs(),
            timeout_secs: default_upstream_timeout_secs(),
            servfail_ttl_secs: default_servfail_ttl_secs(),
            max_inflight: default_max_inflight(),
            max_inflight_per_client: default_max_inflight_per_client(),
            allow_servers: Vec::new(),
            recursion_port: None,
            trust_anchor_file: None,
            domain_insecure: Vec::new(),
        }
    }
}

pub(super) fn default_mode() -> String {
    "recursive".into()
}
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_cache_entries() -> u64 {
    100_000
}
pub(super) fn default_max_ttl_secs() -> u32 {
    86_400
}
pub(super) fn default_serve_stale_max_secs() -> u64 {
    86_400
}
pub(super) fn default_upstream_timeout_secs() -> u64 {
    3
}
/// BIND's `recursive-clients` default.
pub(super) fn default_max_inflight() -> usize {
    1000
}
/// A tenth of the global cap: one host cannot take it all.
pub(super) fn default_max_inflight_per_client() -> usize {
    100
}
pub(super) fn default_servfail_ttl_secs() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    pub(super) fail_closed: bool,
    pub(super) block_ttl_secs: Option<u32>,
    #[serde(default)]
    pub(super) sinkhole_ipv4: Vec<std::net::Ipv4Addr>,
    #[serde(default)]
    pub(super) sinkhole_ipv6: Vec<std::net::Ipv6Addr>,
    /// Block public names that answer with private addresses.
    #[serde(default)]
    pub(super) rebind_protection: bool,
    #[serde(default)]
    pub(super) rebind_allow: Vec<String>,
    /// NXDOMAIN for the DoH canary and iCloud Private Relay names.
    #[serde(default = "default_true")]
    pub(super) block_bypass: bool,
}

impl Default for RawPolicy {
    fn default() -> Self {
        RawPolicy {
            fail_closed: false,
            block_ttl_secs: None,
            sinkhole_ipv4: Vec::new(),
            sinkhole_ipv6: Vec::new(),
            rebind_protection: false,
            rebind_allow: Vec::new(),
            block_bypass: default_true(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    #[serde(default = "default_admin_listen")]
    pub(super) listen: String,
    /// A bearer token every endpoint but /health and /metrics then needs.
    pub(super) token_file: Option<PathBuf>,
    /// Open admin connections at most; at the cap the oldest is closed.
    #[serde(default = "default_admin_max_connections")]
    pub(super) max_connections: usize,
    /// A request's headers must arrive within this; an idle connection is
    /// closed after it.
    #[serde(default = "default_admin_header_timeout_secs")]
    pub(super) header_timeout_secs: u64,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: default_admin_listen(),
            token_file: None,
            max_connections: default_admin_max_connections(),
            header_timeout_secs: default_admin_header_timeout_secs(),
        }
    }
}

pub(super) fn default_admin_listen() -> String {
    "127.0.0.1:9153".into()
}
pub(super) fn default_admin_max_connections() -> usize {
    64
}
pub(super) fn default_admin_header_timeout_secs() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeed {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) location: String,
    pub(super) api_key_file: Option<PathBuf>,
    pub(super) api_key_env: Option<String>,
    #[serde(default)]
    pub(super) action: Action,
    #[serde(default = "default_refresh_secs")]
    pub(super) refresh_secs: u64,
    #[serde(default = "default_feed_timeout_secs")]
    pub(super) timeout_secs: u64,
    #[serde(default = "default_max_bytes")]
    pub(super) max_bytes: u64,
    #[serde(default = "default_retries")]
    pub(super) retries: u32,
    /// A refresh with more than this percentage fewer entries than the last
    /// good copy is refused; 100 accepts any shrink.
    #[serde(default = "default_max_shrink_percent")]
    pub(super) max_shrink_percent: u8,
    // MISP restSearch filters
    pub(super) types: Option<Vec<String>>,
    #[serde(default = "default_true")]
    pub(super) to_ids: bool,
    #[serde(default = "default_true")]
    pub(super) published: bool,
    #[serde(default)]
    pub(super) tags_include: Vec<String>,
    #[serde(default)]
    pub(super) tags_exclude: Vec<String>,
    #[serde(default = "default_true")]
    pub(super) enforce_warninglist: bool,
    #[serde(default = "default_page_limit")]
    pub(super) page_limit: u32,
    /// Full pull every this many seconds even when incremental pulls work.
    #[serde(default = "default_full_refresh_secs")]
    pub(super) full_refresh_secs: u64,
    // sightings
    #[serde(default)]
    pub(super) report_sightings: bool,
    pub(super) sightings_url: Option<String>,
    pub(super) sightings_key_file: Option<PathBuf>,
    /// TSIG for an `axfr://` location.
    pub(super) tsig_key_file: Option<PathBuf>,
    // TLS, over [http]'s
    pub(super) ca_file: Option<PathBuf>,
    pub(super) client_cert_file: Option<PathBuf>,
    pub(super) client_key_file: Option<PathBuf>,
}

pub(super) fn default_refresh_secs() -> u64 {
    300
}
pub(super) fn default_feed_timeout_secs() -> u64 {
    60
}
pub(super) fn default_max_bytes() -> u64 {
    512 * 1024 * 1024
}
pub(super) fn default_retries() -> u32 {
    3
}
pub(super) fn default_max_shrink_percent() -> u8 {
    50
}
pub(super) fn default_page_limit() -> u32 {
    5000
}
pub(super) fn default_full_refresh_secs() -> u64 {
    86_400
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllowlist {
    #[serde(default)]
    pub(super) files: Vec<PathBuf>,
    #[serde(default)]
    pub(super) warninglists: Vec<PathBuf>,
    /// `schild allow` refuses an entry that spares more listed names than
    /// this (unless `--force`).
    #[serde(default = "default_max_spared")]
    pub(super) max_spared: u64,
}

pub(super) fn default_max_spared() -> u64 {
    100
}

impl Default for RawAllowlist {
    fn default() -> Self {
        RawAllowlist {
            files: Vec::new(),
            warninglists: Vec::new(),
            max_spared: default_max_spared(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSightings {
    #[serde(default = "default_sightings_log")]
    pub(super) log: PathBuf,
    #[serde(default = "default_window_secs")]
    pub(super) window_secs: u64,
    #[serde(default = "default_sightings_source")]
    pub(super) source: String,
    #[serde(default = "default_client_privacy")]
    pub(super) client_privacy: String,
    #[serde(default = "default_log_max_bytes")]
    pub(super) log_max_bytes: u64,
    #[serde(default = "default_log_keep")]
    pub(super) log_keep: u32,
    #[serde(default = "default_spool_max_bytes")]
    pub(super) spool_max_bytes: u64,
    #[serde(default = "default_key_rotate_secs")]
    pub(super) pseudonym_rotate_secs: u64,
    /// TAXII collection URL to post STIX sightings to.
    pub(super) taxii_collection: Option<String>,
    pub(super) taxii_key_file: Option<PathBuf>,
}

/// The sightings defaults, the one place they are defined: a config with no
/// `[sightings]` section gets these (the local record is always kept).
impl Default for RawSightings {
    fn default() -> Self {
        RawSightings {
            log: default_sightings_log(),
            window_secs: default_window_secs(),
            source: default_sightings_source(),
            client_privacy: default_client_privacy(),
            log_max_bytes: default_log_max_bytes(),
            log_keep: default_log_keep(),
            spool_max_bytes: default_spool_max_bytes(),
            pseudonym_rotate_secs: default_key_rotate_secs(),
            taxii_collection: None,
            taxii_key_file: None,
        }
    }
}

pub(super) fn default_sightings_log() -> PathBuf {
    "sightings.jsonl".into()
}
pub(super) fn default_window_secs() -> u64 {
    300
}
pub(super) fn default_sightings_source() -> String {
    "schild".into()
}
pub(super) fn default_client_privacy() -> String {
    "pseudonymise".into()
}
pub(super) fn default_log_max_bytes() -> u64 {
    64 * 1024 * 1024
}
pub(super) fn default_log_keep() -> u32 {
    14
}
pub(super) fn default_spool_max_bytes() -> u64 {
    64 * 1024 * 1024
}
pub(super) fn default_key_rotate_secs() -> u64 {
    86_400
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRpz {
    pub(super) zone: String,
    #[serde(default)]
    pub(super) allow_transfer: Vec<String>,
    #[serde(default)]
    pub(super) notify: Vec<String>,
    pub(super) tsig_key_file: Option<PathBuf>,
    #[serde(default = "default_rpz_ttl")]
    pub(super) ttl_secs: u32,
    #[serde(default = "default_rpz_ns")]
    pub(super) ns: String,
    #[serde(default = "default_rpz_email")]
    pub(super) email: String,
    #[serde(default)]
    pub(super) log_only: RpzLogOnly,
}

pub(super) fn default_rpz_ttl() -> u32 {
    300
}
pub(super) fn default_rpz_ns() -> String {
    "localhost.".into()
}
pub(super) fn default_rpz_email() -> String {
    "hostmaster.localhost.".into()
}
