//! The per-network policy files, read into the runtime types of
//! `policy::groups`: each `[[client_group]]`'s `allow_only` names, the
//! group table, `rebind_allow` and the resolver-bypass names. Read once
//! by `serve` (before it listens) and by `check --client`.

use std::path::PathBuf;
use std::sync::Arc;

use super::Config;
use crate::policy::groups::{ClientGroup, GroupAction, GroupTable, NameSet};
use crate::policy::{NameError, normalise};

/// The names browsers and phones ask before they stop using the local
/// resolver: an NXDOMAIN keeps them on it. Firefox's canary domain
/// (<https://support.mozilla.org/kb/canary-domain-use-application-dnsnet>)
/// and iCloud Private Relay's
/// (<https://developer.apple.com/support/prepare-your-network-for-icloud-private-relay/>).
pub const BYPASS_NAMES: [&str; 3] = [
    "use-application-dns.net",
    "mask.icloud.com",
    "mask-h2.icloud.com",
];

/// A problem reading a group's `allow_only` files.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("client_group {group:?}.allow_only: cannot read {}", path.display())]
    Read {
        group: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("client_group {group:?}.allow_only: {}:{line}: {value:?} is not a name", path.display())]
    Name {
        group: String,
        path: PathBuf,
        line: usize,
        value: String,
        #[source]
        source: NameError,
    },
}

/// The groups and the `[policy]` extras, ready for queries.
#[derive(Debug, Clone, Default)]
pub struct PerNetworkPolicy {
    pub table: GroupTable,
    /// `Some` with `rebind_protection`: the names exempt from it.
    pub rebind_allow: Option<NameSet>,
    /// `Some` with `block_bypass`.
    pub bypass: Option<NameSet>,
}

impl PerNetworkPolicy {
    /// Read every group's `allow_only` files.
    pub fn load(config: &Config) -> Result<PerNetworkPolicy, GroupsError> {
        let mut groups = Vec::with_capacity(config.client_groups.len());
        for g in &config.client_groups {
            let allow_only = if g.allow_only.is_empty() {
                None
            } else {
                Some(read_names(&g.name, &g.allow_only)?)
            };
            let group = ClientGroup {
                name: Arc::from(g.name.as_str()),
                allow_only,
                action: if g.log_only {
                    GroupAction::LogOnly
                } else {
                    GroupAction::Feed
                },
                feeds: g.feeds.clone(),
            };
            groups.push((group, g.networks.clone()));
        }
        let p = &config.policy;
        Ok(PerNetworkPolicy {
            table: GroupTable::new(groups),
            rebind_allow: p
                .rebind_protection
                .then(|| NameSet::new(p.rebind_allow.iter().map(String::as_str))),
            bypass: p.block_bypass.then(|| NameSet::new(BYPASS_NAMES)),
        })
    }
}

/// Names, one a line (`#` comments), each for itself and its subdomains.
fn read_names(group: &str, files: &[PathBuf]) -> Result<NameSet, GroupsError> {
    let mut names = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| GroupsError::Read {
            group: group.to_string(),
            path: path.clone(),
            source,
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let name = normalise(line).map_err(|source| GroupsError::Name {
                group: group.to_string(),
                path: path.clone(),
                line: n + 1,
                value: line.to_string(),
                source,
            })?;
            names.push(name.into_string());
        }
    }
    Ok(NameSet::new(names.iter().map(String::as_str)))
}
