//! Names as feeds and analysts write them: normalising never panics, and a
//! name that normalises is stable and fits the DNS limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schild::policy::name::{MAX_NAME_LEN, NormalName, normalise, parse_name, refang};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = refang(s);
    if let Ok(p) = parse_name(s) {
        let n = p.name.as_str();
        assert!(n.len() <= MAX_NAME_LEN, "{n:?} too long");
        assert_eq!(normalise(n).as_ref(), Ok(&p.name), "normal form is stable");
        let key = p.name.reversed_key();
        assert_eq!(NormalName::from_reversed_key(&key).as_ref(), Some(&p.name));
        let _ = p.name.is_public_suffix();
    }
});
