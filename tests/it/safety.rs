//! Clinical safety: schild never passes an incomplete list for a whole one.
//! A feed that has never been fetched makes the first compile fail; `serve`
//! then refuses to start (`fail_closed`) or serves unfiltered and says so.

use std::process::Command;

use crate::harness::{Schild, Setup};

const RESOLVER: &str = "[resolver]\nmode = \"forward\"\nupstreams = [\"127.0.0.1:9\"]\ndnssec = false\ntimeout_secs = 1\n";

const GOOD_FEED: &str =
    "[[feed]]\nname = \"local\"\ntype = \"domains\"\nlocation = \"local.txt\"\n";

/// A `domains` feed whose file is not there.
const MISSING_FILE: &str =
    "[[feed]]\nname = \"zdn-file\"\ntype = \"domains\"\nlocation = \"not-there.txt\"\n";

/// A misp-api on a port where nothing listens.
const DEAD_MISP: &str = "[[feed]]\nname = \"zdn\"\ntype = \"misp-api\"\nlocation = \"http://127.0.0.1:9/\"\napi_key_file = \"zdn.key\"\ntimeout_secs = 1\nretries = 0\n";

const FILES: &[(&str, &str)] = &[
    ("local.txt", "evil.example\n"),
    ("zdn.key", "0123456789abcdef0123456789abcdef01234567"),
];

fn config(feeds: &[&str], fail_closed: bool) -> String {
    format!(
        "{RESOLVER}\n[policy]\nfail_closed = {fail_closed}\n\n{}",
        feeds.join("\n")
    )
}

#[test]
fn a_never_fetched_feed_means_no_list_and_exit_69_with_fail_closed() {
    for (what, feed) in [
        ("missing file", vec![GOOD_FEED, MISSING_FILE]),
        ("unreachable misp-api", vec![GOOD_FEED, DEAD_MISP]),
        ("both", vec![GOOD_FEED, MISSING_FILE, DEAD_MISP]),
    ] {
        let r = Schild::start_with(Setup {
            config: &config(&feed, true),
            files: FILES,
            wait_ready: false,
        });
        let (status, log) = match r {
            Ok(s) => panic!(
                "{what}: schild started without a complete list:\n{}",
                s.log()
            ),
            Err(e) => e,
        };
        assert_eq!(status.and_then(|s| s.code()), Some(69), "{what}:\n{log}");
        assert!(
            log.contains("never been fetched successfully"),
            "{what}:\n{log}"
        );
        assert!(log.contains("fail_closed"), "{what}:\n{log}");
    }
}

#[test]
fn without_fail_closed_it_serves_unfiltered_and_says_so_and_writes_no_artifact() {
    let s = Schild::start_with(Setup {
        config: &config(&[GOOD_FEED, MISSING_FILE, DEAD_MISP], false),
        files: FILES,
        wait_ready: false,
    })
    .unwrap_or_else(|(_, log)| panic!("{log}"));
    let (status, body) = s.http("GET", "/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("NOT filtered"), "{body}");
    let (_, metrics) = s.http("GET", "/metrics");
    assert!(metrics.contains("schild_policy_loaded 0"), "{metrics}");
    assert!(s.log().contains("NO POLICY LOADED"), "{}", s.log());
    assert!(
        !s.path("state/policy.artifact").exists(),
        "no artifact is written for an incomplete list"
    );
}

#[test]
fn compile_refuses_and_writes_nothing_but_an_empty_healthy_feed_is_fine() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in FILES {
        crate::harness::write(dir.path(), name, text);
    }
    let cfg = dir.path().join("schild.toml");
    let compile = |feeds: &[&str]| {
        std::fs::write(
            &cfg,
            format!("state_dir = \"state\"\n{}", config(feeds, true)),
        )
        .expect("config");
        Command::new(env!("CARGO_BIN_EXE_schild"))
            .args(["compile", "--config"])
            .arg(&cfg)
            .env("SCHILD_LOG", "warn")
            .output()
            .expect("run schild")
    };
    let o = compile(&[GOOD_FEED, MISSING_FILE]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("never been fetched"),
        "{o:?}"
    );
    assert!(!dir.path().join("state/policy.artifact").exists());
    // An intentionally empty feed (fetched fine, nothing in it) is no failure.
    crate::harness::write(dir.path(), "not-there.txt", "# nothing listed today\n");
    let o = compile(&[GOOD_FEED, MISSING_FILE]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(dir.path().join("state/policy.artifact").exists());
}
