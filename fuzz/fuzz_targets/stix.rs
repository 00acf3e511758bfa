//! A STIX 2.1 bundle, and the text as an indicator pattern: any bytes are
//! refused or read; what is read compiles, loads and answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schild::feeds::stix::{indicator_ioc, parse_bundle, parse_pattern, parse_rfc3339, push_set};
use schild::policy::{Action, Compiler, FeedInfo, Policy};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        // The pattern parser and the time parser on their own, so the
        // fuzzer reaches them without writing JSON around them.
        let _ = parse_pattern(s);
        let _ = indicator_ioc(s, &[]);
        let _ = indicator_ioc(s, &["misp:type=\"domain\"".to_string()]);
        let _ = parse_rfc3339(s);
    }
    let Ok(set) = parse_bundle(data, "fuzz", "fuzz bundle") else {
        return;
    };
    let mut c = Compiler::new(vec![FeedInfo {
        name: "fuzz".into(),
        kind: "stix".into(),
        action: Action::Nxdomain,
        location: "fuzz".into(),
    }]);
    push_set(&set, 0, &mut c);
    let bytes = c.finish().expect("any bundle compiles");
    let p = Policy::from_bytes(bytes).expect("a fresh artifact loads");
    for o in set.objects.iter().take(16) {
        if let Some(Ok((_, value))) = o
            .pattern
            .as_deref()
            .map(|pat| indicator_ioc(pat, &o.labels))
        {
            if let Some(h) = p.lookup_str(value.trim()).hit() {
                assert!(
                    p.provenance_of(h.set).count() >= 1,
                    "a hit names its source"
                );
            }
        }
    }
});
