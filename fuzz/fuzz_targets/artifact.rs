//! Artifact bytes from disk: loading must refuse damage with an error, and
//! whatever loads must answer every lookup without panicking.
//!
//! The fuzzer's bytes get a correct checksum written into them, so that it
//! explores the layout behind the checksum instead of the checksum itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schild::policy::{Policy, Verdict};

const CHECKSUM_AT: usize = 16;

fn fix_checksum(bytes: &mut [u8]) {
    if bytes.len() < CHECKSUM_AT + 8 {
        return;
    }
    bytes[CHECKSUM_AT..CHECKSUM_AT + 8].fill(0);
    let sum = xxhash_rust::xxh3::xxh3_64(bytes);
    bytes[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    fix_checksum(&mut bytes);
    let Ok(p) = Policy::from_bytes(bytes) else {
        return;
    };
    let _ = (p.serial(), p.name_count(), p.index_bytes(), p.meta().feeds.len());
    let names = [
        "evil.example",
        "a.b.c.evil.example.",
        "WWW.Example.COM",
        "x",
        "",
        ".",
        "a..b",
    ];
    for n in names {
        check(&p, p.lookup_str(n));
    }
    // Keys of the index itself, and parts of the input as reversed keys.
    let mut stream = p.entries();
    let mut seen = 0;
    while let Some((k, _)) = stream.next() {
        let k = k.to_vec();
        check(&p, p.lookup_reversed(&k));
        seen += 1;
        if seen > 64 {
            break;
        }
    }
    for chunk in data.chunks(40).take(8) {
        check(&p, p.lookup_reversed(chunk));
    }
    for ip in ["203.0.113.5", "::1", "2001:db8::1", "::ffff:10.0.0.1"] {
        if let Some(h) = p.lookup_ip(ip.parse().expect("literal address")) {
            let _ = p.provenance_of(h.set).count();
        }
    }
});

fn check(p: &Policy, v: Verdict) {
    let hit = match v {
        Verdict::Blocked(h) | Verdict::Allowed { blocked: h, .. } => h,
        Verdict::AllowOnly(a) => {
            let _ = p.allow_source(a.source);
            return;
        }
        Verdict::Pass => return,
    };
    let _ = p.feed(hit.feed);
    for prov in p.provenance_of(hit.set) {
        let _ = p.event(prov);
    }
}
