//! A MISP restSearch answer (`/attributes/restSearch`): any bytes are
//! refused or read; what is read compiles, loads and answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schild::feeds::misp_api::{parse_page, push_attributes};
use schild::policy::{Action, Compiler, FeedInfo, Policy};

fuzz_target!(|data: &[u8]| {
    let Ok((attrs, _dropped)) = parse_page(data, "fuzz") else {
        return;
    };
    let mut c = Compiler::new(vec![FeedInfo {
        name: "fuzz".into(),
        kind: "misp_api".into(),
        action: Action::Nxdomain,
        location: "fuzz".into(),
    }]);
    push_attributes(&attrs, 0, &mut c);
    let bytes = c.finish().expect("any attributes compile");
    let p = Policy::from_bytes(bytes).expect("a fresh artifact loads");
    for a in attrs.iter().take(16) {
        if let Some(h) = p.lookup_str(a.value.trim()).hit() {
            assert!(
                p.provenance_of(h.set).count() >= 1,
                "a hit names its source"
            );
        }
    }
});
