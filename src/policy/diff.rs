//! What a new list blocks that the list in use did not: the names behind
//! `guard.max_new_blocks` (an update that newly blocks too much is held)
//! and the new IOCs a retro-hunt looks up in the name history.
//!
//! One merge walk over both indexes in key order (reversed names); for
//! commands and the refresh, never for the query path.

use super::matcher::{NameValue, Policy};

/// A listed name with a trigger the old list did not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBlock {
    /// The name, in normal form (not reversed).
    pub name: String,
    /// The provenance set of a new trigger for the name itself.
    pub exact: Option<u32>,
    /// The provenance set of a new trigger for the names below it.
    pub sub: Option<u32>,
}

/// Call `f` for every name that `new` blocks with a trigger `old` did not
/// have (every blocked name of `new` without `old`), in key order, and
/// return how many there were. A trigger counts as new when the old list
/// had no trigger of that kind (exact, subdomains) for the name; a name
/// moved from one feed to another is not new.
pub fn new_blocks(old: Option<&Policy>, new: &Policy, mut f: impl FnMut(NewBlock)) -> u64 {
    let mut count = 0;
    let mut old_it = old.map(Policy::entries);
    let mut old_cur: Option<(Vec<u8>, u64)> = None;
    let mut old_done = old_it.is_none();
    let mut it = new.entries();
    while let Some((key, v)) = it.next() {
        let NameValue::Block { exact, sub } = Policy::decode_name(v) else {
            continue;
        };
        if exact.is_none() && sub.is_none() {
            continue;
        }
        // Move the old walk up to this key.
        while !old_done && old_cur.as_ref().is_none_or(|(k, _)| k.as_slice() < key) {
            match old_it.as_mut().and_then(|o| o.next()) {
                Some((k, v)) => old_cur = Some((k.to_vec(), v)),
                None => {
                    old_done = true;
                    old_cur = None;
                }
            }
        }
        let (had_exact, had_sub) = match &old_cur {
            Some((k, v)) if k.as_slice() == key => match Policy::decode_name(*v) {
                NameValue::Block { exact, sub } => (exact.is_some(), sub.is_some()),
                NameValue::Allow { .. } => (false, false),
            },
            _ => (false, false),
        };
        let exact = exact.filter(|_| !had_exact);
        let sub = sub.filter(|_| !had_sub);
        if exact.is_none() && sub.is_none() {
            continue;
        }
        count += 1;
        let name: Vec<u8> = key.iter().rev().copied().collect();
        f(NewBlock {
            name: String::from_utf8_lossy(&name).into_owned(),
            exact,
            sub,
        });
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, Compiler, FeedInfo, IocRecord};

    fn compile(names: &[(&str, &str)]) -> Policy {
        let mut c = Compiler::new(vec![FeedInfo {
            name: "f".into(),
            kind: "domains".into(),
            action: Action::Nxdomain,
            location: "x".into(),
        }]);
        for (t, v) in names {
            c.add(0, &IocRecord::plain(t, v));
        }
        Policy::from_bytes(c.finish().expect("compile")).expect("load")
    }

    fn diff(old: Option<&Policy>, new: &Policy) -> Vec<NewBlock> {
        let mut v = Vec::new();
        let n = new_blocks(old, new, |b| v.push(b));
        assert_eq!(n as usize, v.len());
        v
    }

    #[test]
    fn only_triggers_the_old_list_lacked_are_new() {
        let old = compile(&[("domain", "a.example"), ("hostname", "b.example")]);
        let new = compile(&[
            ("domain", "a.example"),
            ("domain", "b.example"),
            ("hostname", "c.example"),
            ("hostname", "z.example"),
        ]);
        let got = diff(Some(&old), &new);
        let names: Vec<(&str, bool, bool)> = got
            .iter()
            .map(|b| (b.name.as_str(), b.exact.is_some(), b.sub.is_some()))
            .collect();
        // b.example gained its subdomains; c and z are new; a is not.
        assert_eq!(
            names,
            vec![
                ("b.example", false, true),
                ("c.example", true, false),
                ("z.example", true, false)
            ]
        );
        assert_eq!(diff(Some(&new), &new), vec![]);
        assert_eq!(diff(None, &old).len(), 2);
        assert_eq!(
            diff(Some(&new), &old),
            vec![],
            "a shrink blocks nothing new"
        );
    }
}
