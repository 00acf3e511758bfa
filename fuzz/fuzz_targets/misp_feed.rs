//! A MISP feed: `manifest.json` and event documents. Any bytes are refused
//! or read; what is read compiles, loads and answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schild::feeds::misp::{parse_events, parse_manifest, push_events};
use schild::policy::{Action, Compiler, FeedInfo, Policy};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse_manifest(data, "fuzz/manifest.json") {
        assert!(
            m.keys().all(|k| !k.is_empty() && k.len() <= 64),
            "manifest keys are uuid-like"
        );
    }
    let Ok(events) = parse_events(data, "fuzz/event.json") else {
        return;
    };
    let mut c = Compiler::new(vec![FeedInfo {
        name: "fuzz".into(),
        kind: "misp".into(),
        action: Action::Nxdomain,
        location: "fuzz".into(),
    }]);
    push_events(&events, 0, &mut c);
    let bytes = c.finish().expect("any events compile");
    let p = Policy::from_bytes(bytes).expect("a fresh artifact loads");
    for ev in events.iter().take(4) {
        for a in ev.attributes.iter().take(16) {
            if let Some(h) = a
                .value
                .as_deref()
                .and_then(|v| p.lookup_str(v.trim()).hit())
            {
                assert!(
                    p.provenance_of(h.set).count() >= 1,
                    "a hit names its source"
                );
            }
        }
    }
});
