//! Issue 10, runtime control, through the real binary: `schild ctl` against
//! a running `schild serve`, and the admin listener's bearer token.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns::{query, udp};
use crate::harness::{Schild, http_raw};
use crate::resolver::{CountingUpstream, Reply};

const TOKEN: &str = "s3cr3t-admin-token-0123456789abcdef";

/// A copy of the running schild's config with its real admin address (the
/// harness listens on port 0), in the same folder so relative paths hold;
/// `edit` changes the text further.
fn ctl_config(s: &Schild, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(s.path("schild.toml")).expect("config");
    let text = text.replacen(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[admin]\nlisten = \"{}\"\n", s.admin),
        1,
    );
    let path = s.path(name);
    std::fs::write(&path, edit(text)).expect("write ctl config");
    path
}

/// Run `schild ctl --config CONFIG ARGS`: (exit code, stdout, stderr).
fn ctl(config: &PathBuf, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_schild"))
        .arg("ctl")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run schild ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rcode(s: &Schild, name: &str) -> ResponseCode {
    udp(s.dns, &query(name, RecordType::A))
        .metadata
        .response_code
}

fn names(domain: &str, n: usize) -> String {
    (0..n).map(|i| format!("host{i}.{domain}\n")).collect()
}

const FEEDS: &str = "[[feed]]\nname = \"ioc\"\ntype = \"domains\"\nlocation = \"ioc.txt\"\n\n\
    [[feed]]\nname = \"other\"\ntype = \"domains\"\nlocation = \"other.txt\"\n";

#[test]
fn with_a_token_only_health_and_metrics_are_open() {
    let s = Schild::start(
        &format!("{FEEDS}\n[admin]\ntoken_file = \"admin.token\"\n"),
        &[
            ("ioc.txt", "evil.ioc.test\n"),
            ("other.txt", "a.other.test\n"),
            ("admin.token", &format!("{TOKEN}\n")),
        ],
    );
    assert_eq!(s.token.as_deref(), Some(TOKEN));
    for path in ["/health", "/metrics"] {
        assert_eq!(s.http_with("GET", path, None).0, 200, "{path}");
    }
    for (method, path) in [
        ("GET", "/ready"),
        ("GET", "/status"),
        ("POST", "/reload"),
        ("POST", "/flush?all=1"),
        ("POST", "/refresh?feed=ioc"),
    ] {
        for token in [None, Some("not-the-token-0123456789abcdef")] {
            let (status, body) = s.http_with(method, path, token);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
        }
        assert_ne!(
            s.http(method, path).0,
            401,
            "{method} {path} with the token"
        );
    }
    // With the token a POST may carry any content type, a form's too.
    let (status, body) = http_raw(
        s.admin,
        &format!(
            "POST /reload HTTP/1.0\r\nHost: schild\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
        ),
        Duration::from_secs(30),
    );
    assert_eq!(status, 200, "{body}");

    // ctl sends the token from the same configuration...
    let good = ctl_config(&s, "ctl.toml", |t| t);
    let (code, out, err) = ctl(&good, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    // ...and says what is wrong when it has the wrong one, or none.
    std::fs::write(s.path("wrong.token"), "wrong-token-0123456789abcdef\n").expect("write");
    let wrong = ctl_config(&s, "wrong.toml", |t| {
        t.replace(
            "token_file = \"admin.token\"",
            "token_file = \"wrong.token\"",
        )
    });
    let (code, _, err) = ctl(&wrong, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("token"), "{err}");
    let none = ctl_config(&s, "none.toml", |t| {
        t.replace("token_file = \"admin.token\"\n", "")
    });
    let (code, _, err) = ctl(&none, &["flush", "--all"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("set admin.token_file"), "{err}");
    // The token never shows up in the log.
    assert!(!s.log().contains(TOKEN), "{}", s.log());
    assert!(!s.log().contains("wrong-token"), "{}", s.log());
}

#[test]
fn ctl_status_and_refresh_of_one_feed() {
    // Names that are not listed go to a dead local upstream (SERVFAIL
    // within the resolver's deadline), never to the internet.
    let s = Schild::start(
        &format!(
            "[resolver]\nmode = \"forward\"\nupstreams = [\"127.0.0.1:9\"]\ndnssec = false\ntimeout_secs = 1\n\n{FEEDS}"
        ),
        &[
            ("ioc.txt", &names("ioc.test", 3000)),
            ("other.txt", "a.other.test\n"),
        ],
    );
    let config = ctl_config(&s, "ctl.toml", |t| t);
    let (code, out, err) = ctl(&config, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("serving, list loaded: serial "), "{out}");
    assert!(out.contains("3001 names"), "{out}");
    assert!(
        out.contains("feed ioc (domains): 3000 names, 0 addresses, age "),
        "{out}"
    );
    assert!(out.contains("feed other (domains): 1 names"), "{out}");
    assert_eq!(out.matches("; fresh").count(), 2, "{out}");

    // The list is cut to 10 lines; the other feed changes too.
    std::fs::write(s.path("ioc.txt"), names("ioc.test", 10)).expect("write");
    std::fs::write(s.path("other.txt"), "a.other.test\nlate.other.test\n").expect("write");
    let (code, out, err) = ctl(&config, &["refresh", "ioc"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("shrink") && err.contains("last good copy stays in use"),
        "{err}"
    );
    assert_eq!(rcode(&s, "host100.ioc.test."), ResponseCode::NXDomain);
    let (_, out, _) = ctl(&config, &["status"]);
    assert!(
        out.contains("feed ioc (domains): 3000 names")
            && out.contains("FAILED, using its last good copy: shrink: "),
        "{out}"
    );

    // The operator means it.
    let (code, out, err) = ctl(&config, &["refresh", "ioc", "--accept-shrink"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("feed ioc refreshed"), "{out}");
    assert_eq!(rcode(&s, "host1.ioc.test."), ResponseCode::NXDomain);
    assert_ne!(rcode(&s, "host100.ioc.test."), ResponseCode::NXDomain);
    // Only that feed was pulled: the other one's change waits.
    assert_ne!(rcode(&s, "late.other.test."), ResponseCode::NXDomain);
    assert_eq!(rcode(&s, "a.other.test."), ResponseCode::NXDomain);
    let (_, out, _) = ctl(&config, &["status"]);
    assert!(out.contains("feed ioc (domains): 10 names"), "{out}");
    assert!(!out.contains("FAILED"), "{out}");
    assert!(s.log().contains("--accept-shrink"), "{}", s.log());

    // --accept-shrink is no way around the garbage check.
    std::fs::write(
        s.path("ioc.txt"),
        "<html>\n<body>\n<p>down for maintenance</p>\n</body>\n</html>\n",
    )
    .expect("write");
    let (code, _, err) = ctl(&config, &["refresh", "ioc", "--accept-shrink"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("garbage"), "{err}");
    assert_eq!(rcode(&s, "host1.ioc.test."), ResponseCode::NXDomain);

    let (code, _, err) = ctl(&config, &["refresh", "nope"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no feed \"nope\""), "{err}");
}

#[test]
fn ctl_flush_a_name_a_subtree_or_everything() {
    let up = CountingUpstream::start(Reply::Address, Duration::ZERO);
    let s = Schild::start(
        &format!(
            "[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = false\n\n{FEEDS}",
            up.addr
        ),
        &[
            ("ioc.txt", "evil.ioc.test\n"),
            ("other.txt", "a.other.test\n"),
        ],
    );
    let config = ctl_config(&s, "ctl.toml", |t| t);
    let names = ["a.flush.test.", "b.sub.flush.test.", "c.elsewhere.test."];
    let ask_all = || {
        for n in names {
            assert_eq!(rcode(&s, n), ResponseCode::NoError, "{n}");
        }
    };
    let counts = || names.map(|n| up.count(n));
    ask_all();
    ask_all();
    assert_eq!(counts(), [1, 1, 1], "the second round came from the cache");

    let (code, out, err) = ctl(&config, &["flush", "A.Flush.Test"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("flushed a.flush.test.: 1 cached answers dropped"),
        "{out}"
    );
    ask_all();
    assert_eq!(counts(), [2, 1, 1]);

    let (code, out, err) = ctl(&config, &["flush", "flush.test", "--subtree"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("flushed flush.test. and below: 2 cached answers dropped"),
        "{out}"
    );
    ask_all();
    assert_eq!(counts(), [3, 2, 1]);

    let (code, out, err) = ctl(&config, &["flush", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("flushed the whole cache"), "{out}");
    ask_all();
    assert_eq!(counts(), [4, 3, 2]);

    // Usage errors are clap's; a name that is not one is refused.
    assert_eq!(ctl(&config, &["flush"]).0, 2);
    assert_eq!(ctl(&config, &["flush", "x.test", "--all"]).0, 2);
    let (code, _, err) = ctl(&config, &["flush", "a..b"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a domain name"), "{err}");
}

#[test]
fn ctl_says_so_when_nothing_listens() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on: one just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let path = dir.path().join("schild.toml");
    std::fs::write(
        &path,
        format!("state_dir = \"state\"\n[admin]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .expect("write");
    let (code, _, err) = ctl(&path, &["status"]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("cannot reach the admin listener"), "{err}");
}
