//! DS trust anchors turned into keys when the resolver is built (at start
//! and on a reload that rebuilds it), as Unbound primes a DS anchor: the
//! zone's DNSKEY RRset is fetched with DO=1 and CD=1, without validation
//! (recursive mode: a non-validating recursor from the same root hints;
//! forward mode: the upstreams, or those of the forward zone holding the
//! anchor's name), and the keys its DS records match and that sign the
//! RRset become the zone's anchors ([`keys_from_ds`]). DNSKEY anchors of
//! the file are taken as they are.
//!
//! When a DS anchor yields no key (nothing fetched, no key matches, the
//! RRset is not signed by a matching key), schild does not start: the
//! error names the anchor and `serve` exits 78 (EX_CONFIG); a reload keeps
//! the running configuration. Validation is never left without the
//! anchor the file asks for.

use std::time::Duration;

use hickory_proto::rr::{Name, Record, RecordType};

use super::outgoing::Outgoing;
use super::resolve::{Flags, Upstream};
use crate::config::anchors::{
    DsMismatch, ResolvedAnchors, TrustAnchorError, keys_from_ds, read_anchor_file,
};
use crate::config::{Config, ResolverMode};

/// Why the trust anchors cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("resolver.trust_anchor_file")]
    File(#[from] TrustAnchorError),
    #[error("trust anchor {zone} (DS in {path}): cannot fetch the zone's DNSKEY records: {reason}")]
    Fetch {
        zone: Name,
        path: String,
        reason: String,
    },
    #[error("trust anchor {zone} (DS in {path}): {reason}")]
    Match {
        zone: Name,
        path: String,
        reason: DsMismatch,
    },
}

/// The trust anchors of `config` with every DS anchor turned into keys;
/// `None` without a `trust_anchor_file`, or when nothing is validated.
pub async fn resolve(
    config: &Config,
    out: &Outgoing,
) -> Result<Option<ResolvedAnchors>, AnchorError> {
    let Some(path) = &config.resolver.trust_anchor_file else {
        return Ok(None);
    };
    let validating = config.resolver.dnssec || config.zones.forward.iter().any(|f| f.dnssec);
    if !validating {
        return Ok(None);
    }
    let file = read_anchor_file(path)?;
    let shown = path.display().to_string();
    let mut keys = file.keys.clone();
    for zone in file.ds_zones() {
        let records = fetch(config, &zone, out)
            .await
            .map_err(|reason| AnchorError::Fetch {
                zone: zone.clone(),
                path: shown.clone(),
                reason,
            })?;
        let matched = keys_from_ds(
            &zone,
            &file.ds_of(&zone),
            &records,
            crate::clock::unix_now(),
        )
        .map_err(|reason| AnchorError::Match {
            zone: zone.clone(),
            path: shown.clone(),
            reason,
        })?;
        for key in matched {
            let key_tag = key.calculate_key_tag().unwrap_or_default();
            tracing::info!(%zone, key_tag, "DS trust anchor: the zone's key matches it");
            keys.push((zone.clone(), key));
        }
    }
    Ok(Some(ResolvedAnchors::new(&keys)))
}

/// `zone`'s DNSKEY RRset and its RRSIGs, not validated.
async fn fetch(config: &Config, zone: &Name, out: &Outgoing) -> Result<Vec<Record>, String> {
    let mut c = config.resolver.clone();
    c.dnssec = false;
    c.trust_anchor_file = None;
    c.trust_anchors = None;
    c.domain_insecure.clear();
    c.cache_entries = c.cache_entries.min(1000);
    let covering = config
        .zones
        .forward
        .iter()
        .filter(|f| f.name.zone_of(zone))
        .max_by_key(|f| f.name.num_labels());
    let label = match covering {
        Some(f) => {
            c.mode = ResolverMode::Forward;
            c.upstreams = f.upstreams.clone();
            Some(f.name.clone())
        }
        None => match c.mode {
            ResolverMode::Forward => Some(Name::root()),
            ResolverMode::Recursive => None,
        },
    };
    let upstream = Upstream::new(&c, out.for_zone(label.as_ref()))
        .map_err(|e| crate::error::error_chain(&e))?;
    let flags = Flags {
        dnssec_ok: true,
        checking_disabled: true,
    };
    let deadline = (c.timeout * 4).max(Duration::from_secs(10));
    match tokio::time::timeout(
        deadline,
        upstream.lookup(zone.clone(), RecordType::DNSKEY, flags),
    )
    .await
    {
        Err(_) => Err(format!("no answer within {deadline:?}")),
        Ok(Err(f)) => Err(format!("the lookup failed: {:?}", f.kind)),
        Ok(Ok(answer)) => Ok(answer.answers),
    }
}
