//! A TAXII 2.1 `objects/` page: any bytes are refused or read; the objects
//! read compile, load and answer as a STIX set does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schild::feeds::stix::{StixSet, push_set};
use schild::feeds::taxii::parse_envelope;
use schild::policy::{Action, Compiler, FeedInfo, Policy};

fuzz_target!(|data: &[u8]| {
    let Ok(env) = parse_envelope(data, "fuzz (page 1)".into()) else {
        return;
    };
    let _ = (env.more, env.next.as_deref().map(str::len));
    let set = StixSet {
        uuid: "fuzz".into(),
        info: "TAXII collection fuzz".into(),
        objects: env.objects,
    };
    let mut c = Compiler::new(vec![FeedInfo {
        name: "fuzz".into(),
        kind: "taxii".into(),
        action: Action::Nxdomain,
        location: "fuzz".into(),
    }]);
    push_set(&set, 0, &mut c);
    let bytes = c.finish().expect("any page compiles");
    Policy::from_bytes(bytes).expect("a fresh artifact loads");
});
