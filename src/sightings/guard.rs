//! False-positive sightings for IOCs refused as protected clinical names
//! (`[guard] report_protected`): the feed learns that its indicator names
//! a hospital's clinical system.

use std::collections::HashSet;

use super::spool::{self, Sighting};
use super::targets;
use crate::config::Config;
use crate::policy::Policy;

/// What identifies one refused IOC across compiles.
fn key(policy: &Policy, feed: &str, value: &str, prov: u32) -> (String, String, Option<String>) {
    let uuid = policy
        .meta()
        .provenance
        .get(prov as usize)
        .and_then(|p| p.attribute_uuid.clone());
    (feed.to_string(), value.to_string(), uuid)
}

/// Queue a false-positive sighting (type "1") for every IOC that `new`
/// refused as protected and `previous` did not (so one listing is
/// reported once, not at every refresh), for feeds that report
/// sightings. Returns how many were queued. Does nothing without
/// `guard.report_protected`.
pub fn report_protected(
    config: &Config,
    previous: Option<&Policy>,
    new: &Policy,
) -> Result<usize, spool::SpoolError> {
    if !config.guard.report_protected {
        return Ok(0);
    }
    let seen: HashSet<_> = previous
        .into_iter()
        .flat_map(|p| {
            p.protected_refusals()
                .map(move |(feed, r)| key(p, feed, &r.value, r.prov))
        })
        .collect();
    let targets = targets(config);
    let now = crate::clock::unix_now();
    let mut batch = Vec::new();
    for (feed, r) in new.protected_refusals() {
        if !targets.contains_key(feed) || seen.contains(&key(new, feed, &r.value, r.prov)) {
            continue;
        }
        let uuid = key(new, feed, &r.value, r.prov).2;
        batch.push(Sighting {
            id: 0,
            target: feed.to_string(),
            kind: "1".into(),
            uuid,
            value: r.value.clone(),
            first_seen: now,
            last_seen: now,
            count: 1,
            window: now,
        });
    }
    if !batch.is_empty() {
        spool::write_inbox(&config.spool_dir(), &batch)?;
        tracing::warn!(
            queued = batch.len(),
            "false-positive sightings queued for IOCs naming protected clinical systems"
        );
    }
    Ok(batch.len())
}
