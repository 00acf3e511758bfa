//! Property tests of the two hand-written readers on the lookup path: the
//! index walk (checked against the `fst` crate's own reader) and the name
//! filter (which may say "maybe" wrongly, never "no").

use std::collections::BTreeMap;

use fst::{IntoStreamer, Streamer};
use proptest::prelude::*;

use super::filter::{self, Filter};
use super::index::{Index, IndexWriter};
use super::*;

/// A small alphabet, so that keys share prefixes and `.` makes label
/// boundaries often; now and then any byte.
fn key_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(b'a'),
        4 => Just(b'b'),
        2 => Just(b'c'),
        4 => Just(b'.'),
        1 => Just(b'-'),
        1 => any::<u8>(),
    ]
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(key_byte(), 1..12)
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..4, any::<u64>()]
}

/// A map of keys to values, and extra byte strings to ask about (mostly not
/// keys).
fn map_and_probes() -> impl Strategy<Value = (BTreeMap<Vec<u8>, u64>, Vec<Vec<u8>>)> {
    (
        proptest::collection::btree_map(key(), value(), 0..150),
        proptest::collection::vec(proptest::collection::vec(key_byte(), 0..14), 0..40),
    )
}

/// What `Index::walk` must report for `q`, worked out with `fst`'s lookup:
/// every prefix of `q` that ends where the next byte is a `.` and is a key,
/// then `q` itself if it is a key, shortest first.
fn expected_walk(map: &fst::Map<Vec<u8>>, q: &[u8]) -> Vec<(usize, u64)> {
    (0..=q.len())
        .filter(|&i| i == q.len() || q[i] == b'.')
        .filter_map(|i| map.get(&q[..i]).map(|v| (i, v)))
        .collect()
}

/// Every question to ask: the keys, each of their prefixes, each with a
/// byte or a label more, and the random probes.
fn questions(keys: &BTreeMap<Vec<u8>, u64>, probes: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut qs: Vec<Vec<u8>> = probes.to_vec();
    for k in keys.keys() {
        for i in 0..=k.len() {
            qs.push(k[..i].to_vec());
        }
        for tail in [&b"."[..], b"a", b".a", b".b.", b"\xff"] {
            let mut q = k.clone();
            q.extend_from_slice(tail);
            qs.push(q);
        }
    }
    // Two keys glued with a dot: a key below a key.
    let ks: Vec<&Vec<u8>> = keys.keys().collect();
    for w in ks.windows(2) {
        let mut q = w[0].clone();
        q.push(b'.');
        q.extend_from_slice(w[1]);
        qs.push(q);
    }
    qs
}

/// `idx` (our reader over `bytes`) answers as `fst` does over the same bytes.
fn agree_on(bytes: &[u8], idx: &Index<'_>, keys: &BTreeMap<Vec<u8>, u64>, probes: &[Vec<u8>]) {
    let map = fst::Map::new(bytes.to_vec()).expect("fst reads the bytes");
    assert_eq!(map.len(), keys.len());

    let mut e = idx.entries();
    let mut ours = Vec::new();
    while let Some((k, v)) = e.next() {
        ours.push((k.to_vec(), v));
    }
    assert!(!e.damaged(), "entries of a sound index report no damage");
    let mut theirs = Vec::new();
    let mut s = map.into_stream();
    while let Some((k, v)) = s.next() {
        theirs.push((k.to_vec(), v));
    }
    let listed: Vec<(Vec<u8>, u64)> = keys.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(theirs, listed, "fst streams the keys inserted");
    assert_eq!(ours, listed, "entries yields every key in order");

    let map = fst::Map::new(bytes.to_vec()).expect("fst reads the bytes");
    for q in questions(keys, probes) {
        assert_eq!(idx.get(&q), map.get(&q), "get {q:?}");
        let mut walked = Vec::new();
        idx.walk(&q, |len, v| walked.push((len, v)));
        assert_eq!(walked, expected_walk(&map, &q), "walk {q:?}");
    }
}

fn root_of(bytes: &[u8]) -> usize {
    fst::raw::Fst::new(bytes)
        .expect("fst reads the bytes")
        .root()
        .addr()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Written by `IndexWriter`, read by us and by `fst`: the same answers.
    #[test]
    fn index_writer_walk_agrees_with_fst((keys, probes) in map_and_probes()) {
        let mut w = IndexWriter::new();
        for (k, v) in &keys {
            w.insert(k, *v).expect("sorted distinct keys");
        }
        let bytes = w.finish();
        let idx = Index::new(&bytes, root_of(&bytes));
        agree_on(&bytes, &idx, &keys, &probes);
    }

    /// Written by `fst::MapBuilder`, read by us and by `fst`.
    #[test]
    fn fst_builder_bytes_walk_alike((keys, probes) in map_and_probes()) {
        let mut b = fst::MapBuilder::memory();
        for (k, v) in &keys {
            b.insert(k, *v).expect("sorted distinct keys");
        }
        let bytes = b.into_inner().expect("in memory");
        let idx = Index::new(&bytes, root_of(&bytes));
        agree_on(&bytes, &idx, &keys, &probes);
    }
}

/// A DNS label from a small alphabet (so that names collide and nest).
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-c]{1,2}",
        2 => "[a-z0-9]{1,8}",
        1 => "[a-z0-9][a-z0-9-]{0,5}[a-z0-9]",
    ]
}

/// A list of names with heavy parents: a few anchors, each with between a
/// handful and a few hundred children (some of which have children of
/// their own), plus scattered names.
fn heavy_names() -> impl Strategy<Value = Vec<String>> {
    let anchor = (
        proptest::collection::vec(label(), 1..3),
        prop_oneof![Just("com"), Just("net"), Just("example"), Just("co.uk")],
    )
        .prop_map(|(ls, tld)| format!("{}.{tld}", ls.join(".")));
    let group =
        (anchor, 1usize..300, any::<bool>(), 0usize..40).prop_map(|(anchor, n, listed, nested)| {
            let mut names = Vec::with_capacity(n + nested + 1);
            if listed {
                names.push(anchor.clone());
            }
            for i in 0..n {
                names.push(format!("h{i}.{anchor}"));
            }
            // A heavy child of a heavy parent.
            for i in 0..nested {
                names.push(format!("n{i}.h0.{anchor}"));
            }
            names
        });
    let scattered = proptest::collection::vec(
        proptest::collection::vec(label(), 2..5).prop_map(|ls| ls.join(".")),
        0..60,
    );
    (proptest::collection::vec(group, 0..4), scattered).prop_map(|(groups, mut names)| {
        names.extend(groups.into_iter().flatten());
        names
    })
}

fn rev(name: &str) -> Vec<u8> {
    name.bytes().rev().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The filter on its own, over reversed names as the index keys them:
    /// never "no" for a key or for anything below a key.
    #[test]
    fn filter_never_denies_a_listed_name_or_below(names in heavy_names(), sub in label()) {
        let mut keys: Vec<Vec<u8>> = names.iter().map(|n| rev(n)).collect();
        keys.sort();
        keys.dedup();
        let built = filter::build(|| keys.iter().map(Vec::as_slice), keys.len());
        let blocks: Vec<u8> = built.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let f = Filter::check(&blocks, &built.anchors).expect("a fresh filter checks");
        for k in &keys {
            prop_assert!(f.may_match(k), "listed {:?}", String::from_utf8_lossy(k));
            let mut below = k.clone();
            below.push(b'.');
            below.extend(sub.bytes().rev());
            prop_assert!(f.may_match(&below), "below {:?}", String::from_utf8_lossy(&below));
            let mut deeper = below.clone();
            deeper.extend_from_slice(b".x");
            prop_assert!(f.may_match(&deeper), "below {:?}", String::from_utf8_lossy(&deeper));
        }
    }

    /// End to end: compiled as domains, every listed name and a name below
    /// it is blocked (unless the compiler refused it as a public suffix).
    #[test]
    fn compiled_domains_block_name_and_below(names in heavy_names(), sub in label()) {
        let mut c = Compiler::new(vec![FeedInfo {
            name: "prop".into(),
            kind: "domains".into(),
            action: Action::Nxdomain,
            location: "test".into(),
        }]);
        for n in &names {
            c.add(0, &IocRecord::plain("domain", n));
        }
        let p = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
        for n in &names {
            let refused = parse_name(n).map_or(true, |pn| pn.name.is_public_suffix());
            if refused {
                continue;
            }
            prop_assert!(matches!(p.lookup_str(n), Verdict::Blocked(_)), "listed {n}");
            let below = format!("{sub}.{n}");
            prop_assert!(matches!(p.lookup_str(&below), Verdict::Blocked(_)), "below {below}");
        }
    }
}
