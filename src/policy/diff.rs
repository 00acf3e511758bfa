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
    let mut diff = Diff::new(old);
    let mut it = new.entries();
    while let Some((key, v)) = it.next() {
        if let Some(b) = diff.push(key, v) {
            f(b.to_owned_block(key));
        }
    }
    diff.count
}

/// [`new_blocks`] counted while the new list is being built: fed each key
/// and value of the new index in key order (`Compiler::finish_with`), so
/// the guard does not walk the new list again once it is written.
pub struct NewBlockCount<'a> {
    diff: Diff<'a>,
}

impl<'a> NewBlockCount<'a> {
    pub fn new(old: &'a Policy) -> Self {
        NewBlockCount {
            diff: Diff::new(Some(old)),
        }
    }

    /// The next key (reversed name) of the new list and its index value.
    pub fn push(&mut self, key: &[u8], value: u64) {
        self.diff.push(key, value);
    }

    pub fn count(&self) -> u64 {
        self.diff.count
    }
}

/// The new triggers of one name.
struct Triggers {
    exact: Option<u32>,
    sub: Option<u32>,
}

impl Triggers {
    fn to_owned_block(&self, key: &[u8]) -> NewBlock {
        let name: Vec<u8> = key.iter().rev().copied().collect();
        NewBlock {
            name: String::from_utf8_lossy(&name).into_owned(),
            exact: self.exact,
            sub: self.sub,
        }
    }
}

/// The merge walk: the old list's entries, moved up to each new key.
struct Diff<'a> {
    old_it: Option<super::index::Entries<'a>>,
    old_cur: Option<(Vec<u8>, u64)>,
    old_done: bool,
    count: u64,
}

impl<'a> Diff<'a> {
    fn new(old: Option<&'a Policy>) -> Self {
        let old_it = old.map(Policy::entries);
        Diff {
            old_done: old_it.is_none(),
            old_it,
            old_cur: None,
            count: 0,
        }
    }

    /// The triggers `key` has that the old list lacked, if any; keys come
    /// in ascending order.
    fn push(&mut self, key: &[u8], v: u64) -> Option<Triggers> {
        let NameValue::Block { exact, sub } = Policy::decode_name(v) else {
            return None;
        };
        if exact.is_none() && sub.is_none() {
            return None;
        }
        // Move the old walk up to this key.
        while !self.old_done
            && self
                .old_cur
                .as_ref()
                .is_none_or(|(k, _)| k.as_slice() < key)
        {
            match self.old_it.as_mut().and_then(|o| o.next()) {
                Some((k, v)) => self.old_cur = Some((k.to_vec(), v)),
                None => {
                    self.old_done = true;
                    self.old_cur = None;
                }
            }
        }
        let (had_exact, had_sub) = match &self.old_cur {
            Some((k, v)) if k.as_slice() == key => match Policy::decode_name(*v) {
                NameValue::Block { exact, sub } => (exact.is_some(), sub.is_some()),
                NameValue::Allow { .. } => (false, false),
            },
            _ => (false, false),
        };
        let exact = exact.filter(|_| !had_exact);
        let sub = sub.filter(|_| !had_sub);
        if exact.is_none() && sub.is_none() {
            return None;
        }
        self.count += 1;
        Some(Triggers { exact, sub })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::policy::{Action, Compiler, FeedInfo, IocRecord};

    fn compiler(names: &[(&str, &str)]) -> Compiler {
        let mut c = Compiler::new(vec![FeedInfo {
            name: "f".into(),
            kind: "domains".into(),
            action: Action::Nxdomain,
            location: "x".into(),
        }]);
        for (t, v) in names {
            c.add(0, &IocRecord::plain(t, v));
        }
        c
    }

    fn compile(names: &[(&str, &str)]) -> Policy {
        Policy::from_bytes(compiler(names).finish().expect("compile")).expect("load")
    }

    /// What the guard counts while `names` are compiled against `old`.
    fn counted(old: &Policy, names: &[(&str, &str)]) -> u64 {
        let mut count = NewBlockCount::new(old);
        compiler(names)
            .finish_with(|k, v| count.push(k, v))
            .expect("compile");
        count.count()
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
        // Counted while compiling, the same.
        let new_names = [
            ("domain", "a.example"),
            ("domain", "b.example"),
            ("hostname", "c.example"),
            ("hostname", "z.example"),
        ];
        assert_eq!(counted(&old, &new_names), 3);
        assert_eq!(counted(&new, &new_names), 0);
        assert_eq!(counted(&new, &[("hostname", "b.example")]), 0);
        assert_eq!(
            counted(&old, &[("domain", "0.example"), ("hostname", "zz.example")]),
            2,
            "before and after every old key"
        );
        assert_eq!(diff(None, &old).len(), 2);
        assert_eq!(
            diff(Some(&new), &old),
            vec![],
            "a shrink blocks nothing new"
        );
    }

    /// Names as a feed would give them: a few labels over a handful of
    /// parents, as domains (name and below) or hostnames (the name only).
    fn typed_names() -> impl Strategy<Value = Vec<(&'static str, String)>> {
        proptest::collection::vec(
            (
                prop_oneof![Just("domain"), Just("hostname")],
                "[a-c]{1,3}",
                prop_oneof![Just("a.example"), Just("b.example"), Just("c.test")],
            )
                .prop_map(|(t, l, parent)| (t, format!("{l}.{parent}"))),
            0..60,
        )
    }

    fn borrowed<'a>(names: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        names.iter().map(|(t, n)| (*t, n.as_str())).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The guard's count taken while the new list is written is the
        /// count of the walk over both written lists.
        #[test]
        fn counted_while_compiling_matches_the_walk(old in typed_names(), new in typed_names()) {
            let old = compile(&borrowed(&old));
            let new = borrowed(&new);
            prop_assert_eq!(
                counted(&old, &new),
                new_blocks(Some(&old), &compile(&new), |_| {})
            );
        }
    }
}
