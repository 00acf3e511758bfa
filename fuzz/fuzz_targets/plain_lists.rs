//! Plain lists (domains, hosts, RPZ zone files) from a feed: every byte
//! string compiles, and what compiles loads and answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schild::config::FeedKind;
use schild::feeds::plain::push_lines;
use schild::policy::{Action, Compiler, FeedInfo, Policy};

fuzz_target!(|data: &[u8]| {
    for kind in [FeedKind::Domains, FeedKind::Hosts, FeedKind::Rpz] {
        let mut c = Compiler::new(vec![FeedInfo {
            name: "fuzz".into(),
            kind: kind.as_str().into(),
            action: Action::Nxdomain,
            location: "fuzz".into(),
        }]);
        push_lines(kind, data, 0, &mut c);
        let bytes = c.finish().expect("any list compiles");
        let p = Policy::from_bytes(bytes).expect("a fresh artifact loads");
        for line in data.split(|&b| b == b'\n').take(16) {
            if let Ok(s) = std::str::from_utf8(line) {
                if let Some(h) = p.lookup_str(s.trim()).hit() {
                    assert!(p.provenance_of(h.set).count() >= 1, "a hit names its source");
                }
            }
        }
    }
});
