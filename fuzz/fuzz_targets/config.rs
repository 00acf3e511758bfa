//! Configuration text: any input is either a valid config or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schild::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text, std::path::Path::new("/nonexistent/schild.toml"));
    }
});
