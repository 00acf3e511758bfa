//! What a compile reports: per feed, how its fetch fared and what was
//! taken or refused and why; where allowlist entries come from. The
//! compiler fills these in, the artifact stores them, `stats` and `check`
//! read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many rejected values each feed report keeps as examples.
const SAMPLES: usize = 20;

/// One allowlist entry's origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowSource {
    /// `file` or `warninglist`.
    pub kind: String,
    /// Path of the file.
    pub path: String,
    /// Warninglist name, if any.
    pub name: Option<String>,
}

/// Which names an allowlist entry spares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowScope {
    /// The name and every name under it (allowlist files, `hostname` warninglists).
    Subtree,
    /// The exact name (`string` warninglists, an RPZ `name CNAME rpz-passthru.`).
    Exact,
    /// The names under it, not the name (an RPZ `*.name CNAME rpz-passthru.`).
    Subdomains,
}

/// Why an indicator did not make it into the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// An allowlist entry covers it: the allowlisted name and its source.
    Allowlist { entry: String, source: u32 },
    /// It is a public suffix or a single label.
    PublicSuffix,
    /// A special-use or far too wide address range.
    AddressGuard { why: String },
    /// A protected name (`[guard] protected`: a clinical system): the
    /// protected entry covering it and its source (kind `protected`).
    /// Last, so artifacts written before it still decode.
    Protected { entry: String, source: u32 },
}

/// An indicator the guards refused, kept so `check` can explain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub value: String,
    pub prov: u32,
    pub reason: RefusalReason,
}

/// How a feed fared in this compile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchStatus {
    #[default]
    Fresh,
    /// The fetch failed and the last good copy was used.
    Cached { error: String, cached_at: u64 },
    /// The fetch failed and there was no copy: the feed contributes nothing.
    Failed { error: String },
}

/// Counters for one feed: what was taken, what was refused and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedReport {
    pub feed: String,
    pub fetch: FetchStatus,
    pub records: u64,
    pub names: u64,
    pub ips: u64,
    pub not_to_ids: u64,
    pub deleted: u64,
    /// Types schild does not act on, with counts.
    pub skipped_types: BTreeMap<String, u64>,
    /// Invalid values by reason.
    pub invalid: BTreeMap<String, u64>,
    /// A few of the invalid values: (value, reason).
    pub invalid_samples: Vec<(String, String)>,
    pub refused_allowlist: u64,
    pub refused_public_suffix: u64,
    pub refused_address: u64,
    /// `rpz-passthru.` records taken as allowlist entries.
    #[serde(default)]
    pub passthru: u64,
    /// `rpz-client-ip` triggers.
    #[serde(default)]
    pub client_ips: u64,
    /// Patterns or records the reader could not use (STIX patterns…), by reason.
    pub unsupported: BTreeMap<String, u64>,
}

impl FeedReport {
    pub(crate) fn invalid(&mut self, value: &str, reason: &str) {
        *self.invalid.entry(reason.to_string()).or_default() += 1;
        if self.invalid_samples.len() < SAMPLES {
            let shown: String = value.chars().take(120).collect();
            self.invalid_samples.push((shown, reason.to_string()));
        }
    }

    /// Count something the reader could not use, with a short reason.
    pub fn unsupported(&mut self, reason: &str) {
        *self.unsupported.entry(reason.to_string()).or_default() += 1;
    }
}
