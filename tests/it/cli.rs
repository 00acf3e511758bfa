//! The `schild` command line as an operator uses it: compile, check, stats,
//! and what happens when things go wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch folder with a config file and its lists.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn schild(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_schild"))
            .args(args)
            .env("SCHILD_LOG", "warn")
            .output()
            .expect("run schild")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config(s: &Setup) -> PathBuf {
    s.write(
        "iocs.txt",
        "# ZDN test list\nevil.example\nRyuk-C2.Example.\n*.phish.example\nbad..name\nnl\nhospital.example\n",
    );
    s.write(
        "hosts.txt",
        "0.0.0.0 tracker.example\n127.0.0.1 localhost\n",
    );
    s.write(
        "allow.txt",
        "# false positives\nsafe.evil.example\nhospital.example\n",
    );
    s.write(
        "warninglist.json",
        r#"{"name":"Top sites","version":1,"description":"test","type":"hostname",
            "matching_attributes":["domain","hostname"],"list":["popular.example"]}"#,
    );
    s.write("more.txt", "cdn.popular.example\n");
    s.write(
        "schild.toml",
        r#"
state_dir = "state"

[[feed]]
name = "zdn"
type = "domains"
location = "iocs.txt"

[[feed]]
name = "trial"
type = "hosts"
location = "hosts.txt"
action = "log-only"

[[feed]]
name = "extra"
type = "domains"
location = "more.txt"
action = "refused"

[allowlist]
files = ["allow.txt"]
warninglists = ["warninglist.json"]
"#,
    )
}

#[test]
fn compile_then_check_explains_every_verdict() {
    let s = Setup::new();
    let cfg = config(&s);
    let cfg = cfg.to_str().expect("utf8");
    let o = s.schild(&["compile", "--config", cfg]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(s.path("state/policy.artifact").exists());
    let out = stdout(&o);
    assert!(out.contains("invalid (empty-label): 1"), "{out}");

    // A listed domain and its subdomains: blocked, exit 1, with the feed named.
    let o = s.schild(&["check", "--config", cfg, "WWW.Evil.Example."]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("BLOCKED (nxdomain) by feed zdn"), "{out}");
    assert!(out.contains("listed name: evil.example"), "{out}");

    // Normalised on the way in: case and trailing dot.
    let o = s.schild(&["check", "--config", cfg, "ryuk-c2.example"]);
    assert_eq!(o.status.code(), Some(1));

    // A wildcard entry covers subdomains only.
    assert_eq!(
        s.schild(&["check", "--config", cfg, "login.phish.example"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        s.schild(&["check", "--config", cfg, "phish.example"])
            .status
            .code(),
        Some(0)
    );

    // The allowlist wins and says so.
    let o = s.schild(&["check", "--config", cfg, "mail.safe.evil.example"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("ALLOWED"), "{}", stdout(&o));
    assert!(stdout(&o).contains("allow.txt"), "{}", stdout(&o));

    // An IOC refused at compile time because the allowlist covers it.
    let o = s.schild(&["check", "--config", cfg, "hospital.example"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("refused by allowlist entry hospital.example"),
        "{}",
        stdout(&o)
    );

    // Refused by a MISP warninglist (hostname type covers subdomains).
    let o = s.schild(&["check", "--config", cfg, "cdn.popular.example"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Top sites"), "{}", stdout(&o));

    // A public suffix in a feed is never blocked.
    let o = s.schild(&["check", "--config", cfg, "ziekenhuis.nl"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("public suffix"), "{}", stdout(&o));

    // log-only: reported, not blocked.
    let o = s.schild(&["check", "--config", cfg, "tracker.example"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("LOGGED"), "{}", stdout(&o));

    // Clean name.
    let o = s.schild(&["check", "--config", cfg, "www.zorg.example"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("not blocked"));

    // Not a name at all: exit 2.
    let o = s.schild(&["check", "--config", cfg, "bad name"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn stats_reports_each_feed() {
    let s = Setup::new();
    let cfg = config(&s);
    let cfg = cfg.to_str().expect("utf8");
    assert_eq!(
        s.schild(&["compile", "--config", cfg]).status.code(),
        Some(0)
    );
    let o = s.schild(&["stats", "--config", cfg]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for needle in [
        "feed zdn: fresh",
        "feed trial: fresh",
        "1 public suffixes",
        "1 by the allowlist",
        "invalid (empty-label): 1",
        "bytes/name",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn a_broken_feed_keeps_its_last_good_copy() {
    let s = Setup::new();
    let cfg = config(&s);
    let cfg = cfg.to_str().expect("utf8");
    assert_eq!(
        s.schild(&["compile", "--config", cfg]).status.code(),
        Some(0)
    );
    std::fs::remove_file(s.path("iocs.txt")).expect("rm");
    let o = s.schild(&["compile", "--config", cfg]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed feed is an error: {}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("feed zdn: FAILED, using copy"),
        "{}",
        stdout(&o)
    );
    // Still blocked from the cached copy.
    assert_eq!(
        s.schild(&["check", "--config", cfg, "evil.example"])
            .status
            .code(),
        Some(1)
    );
    let o = s.schild(&["stats", "--config", cfg]);
    assert!(stdout(&o).contains("FAILED"), "{}", stdout(&o));
}

#[test]
fn a_feed_lost_without_a_copy_never_empties_the_list() {
    let s = Setup::new();
    let cfg = config(&s);
    let cfg = cfg.to_str().expect("utf8");
    assert_eq!(
        s.schild(&["compile", "--config", cfg]).status.code(),
        Some(0)
    );
    let before = std::fs::read(s.path("state/policy.artifact")).expect("artifact");
    std::fs::remove_file(s.path("iocs.txt")).expect("rm");
    std::fs::remove_dir_all(s.path("state/feeds/zdn")).expect("rm cache");
    let o = s.schild(&["compile", "--config", cfg]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("keeping the last good artifact"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(s.path("state/policy.artifact")).expect("artifact"),
        before
    );
    assert_eq!(
        s.schild(&["check", "--config", cfg, "evil.example"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn a_damaged_artifact_is_refused_with_a_clear_error() {
    let s = Setup::new();
    let cfg = config(&s);
    let cfg = cfg.to_str().expect("utf8");
    assert_eq!(
        s.schild(&["compile", "--config", cfg]).status.code(),
        Some(0)
    );
    let path = s.path("state/policy.artifact");
    let bytes = std::fs::read(&path).expect("artifact");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let o = s.schild(&["check", "--config", cfg, "evil.example"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("damaged"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    // A new compile replaces it.
    assert_eq!(
        s.schild(&["compile", "--config", cfg]).status.code(),
        Some(0)
    );
    assert_eq!(
        s.schild(&["check", "--config", cfg, "evil.example"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn bad_config_exits_78_and_names_the_field() {
    let s = Setup::new();
    let cfg = s.write(
        "bad.toml",
        "state_dir = \"s\"\n[[feed]]\nname = \"x\"\ntype = \"csv\"\nlocation = \"y\"\n",
    );
    let o = s.schild(&["compile", "--config", cfg.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("feed \"x\".type"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bad.toml: "),
        "names the file: {}",
        stderr(&o)
    );
    let o = s.schild(&[
        "check-config",
        "--config",
        Path::new("/nonexistent/x.toml").to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(78));
}

/// A list of `n` names under `parent`, plus the same under `.com`.
fn wide_config(s: &Setup, max_spared: Option<u64>) -> PathBuf {
    let mut list = String::new();
    for i in 0..150 {
        list.push_str(&format!("c2-{i}.cdn.example.com\n"));
    }
    list.push_str("evil.example.net\nmalware.co.uk\n");
    s.write("iocs.txt", &list);
    let extra = max_spared.map_or(String::new(), |m| {
        format!("\n[allowlist]\nmax_spared = {m}\n")
    });
    s.write(
        "schild.toml",
        &format!(
            "state_dir = \"state\"\n\n[[feed]]\nname = \"zdn\"\ntype = \"domains\"\nlocation = \"iocs.txt\"\n{extra}"
        ),
    )
}

#[test]
fn allow_refuses_a_public_suffix_and_an_entry_that_spares_too_much() {
    let s = Setup::new();
    let cfg = wide_config(&s, None);
    let cfg = cfg.to_str().expect("utf-8 path");
    assert!(s.schild(&["compile", "--config", cfg]).status.success());
    let allow = |name: &str, extra: &[&str]| {
        let mut args = vec!["allow", "--config", cfg, name, "--reason", "test"];
        args.extend_from_slice(extra);
        s.schild(&args)
    };
    // A typo that would turn off every .com (or .co.uk) IOC.
    for suffix in ["com", "co.uk", "localhost"] {
        let o = allow(suffix, &[]);
        assert_eq!(o.status.code(), Some(1), "{suffix}: {}", stderr(&o));
        assert!(stderr(&o).contains("public suffix"), "{}", stderr(&o));
    }
    // Sparing 150 listed names is more than the default 100.
    let o = allow("example.com", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("would spare 150 listed names"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    // Nothing was written: the names stay blocked.
    let o = s.schild(&["check", "--config", cfg, "c2-1.cdn.example.com"]);
    assert_eq!(o.status.code(), Some(1), "still blocked: {}", stdout(&o));
    // A narrow entry is taken, and says what it spares.
    let o = allow("c2-7.cdn.example.com", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("spares 1 listed name"),
        "{}",
        stdout(&o)
    );
    // --force takes the wide one, and says how much it spares.
    let o = allow("example.com", &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("spares 150 listed name"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn allowlist_files_refuse_a_public_suffix_line() {
    let s = Setup::new();
    let cfg = wide_config(&s, Some(1000));
    s.write("allow.txt", "com\nco.uk\n");
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text = text.replace("[allowlist]\n", "[allowlist]\nfiles = [\"allow.txt\"]\n");
    std::fs::write(&cfg, text).expect("config");
    let cfg = cfg.to_str().expect("utf-8 path");
    let o = s.schild(&["compile", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("public suffix"),
        "warned: {}",
        stderr(&o)
    );
    for name in ["c2-1.cdn.example.com", "malware.co.uk"] {
        let o = s.schild(&["check", "--config", cfg, name]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{name} still blocked: {}",
            stdout(&o)
        );
    }
}

#[test]
fn check_judges_a_pasted_url_by_its_host_and_names_the_ip_trigger() {
    let s = Setup::new();
    s.write("iocs.txt", "evil.example\n");
    s.write(
        "zdn.rpz",
        "$TTL 300\n@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 300\n@ NS localhost.\n\
         24.0.113.0.203.rpz-ip CNAME .\n",
    );
    let cfg = s.write(
        "schild.toml",
        "state_dir = \"state\"\n\n[[feed]]\nname = \"zdn\"\ntype = \"domains\"\nlocation = \"iocs.txt\"\n\n\
         [[feed]]\nname = \"zdn-rpz\"\ntype = \"rpz\"\nlocation = \"zdn.rpz\"\n",
    );
    let cfg = cfg.to_str().expect("utf8");
    let o = s.schild(&["compile", "--config", cfg]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // As pasted from a phishing report, defanged or not.
    for url in [
        "https://login.evil.example/reset?user=x",
        "hxxps://login[.]evil[.]example/reset",
        "login.evil.example/reset",
    ] {
        let o = s.schild(&["check", "--config", cfg, url]);
        assert_eq!(o.status.code(), Some(1), "{url}: {}", stdout(&o));
        let out = stdout(&o);
        assert!(out.contains("judging its host login.evil.example"), "{out}");
        assert!(out.contains("listed name: evil.example"), "{out}");
    }
    let o = s.schild(&["check", "--config", cfg, "https://good.example/"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // An address inside an IP trigger names the listed network.
    for q in ["203.0.113.9", "http://203.0.113.9:8080/payload.exe"] {
        let o = s.schild(&["check", "--config", cfg, q]);
        assert_eq!(o.status.code(), Some(1), "{q}: {}", stdout(&o));
        assert!(
            stdout(&o).contains("(listed: 203.0.113.0/24)"),
            "{}",
            stdout(&o)
        );
    }
}

#[test]
fn check_config_tries_every_file_serve_will_read_and_names_file_and_key() {
    let s = Setup::new();
    s.write("iocs.txt", "evil.example\n");
    let cfg = s.write(
        "schild.toml",
        "state_dir = \"state\"\n[allowlist]\nfiles = [\"allow.txt\"]\n\n\
         [[feed]]\nname = \"zdn\"\ntype = \"domains\"\nlocation = \"iocs.txt\"\n\n\
         [[feed]]\nname = \"lab\"\ntype = \"domains\"\nlocation = \"lab-list.txt\"\n",
    );
    let cfg = cfg.to_str().expect("utf8");
    let o = s.schild(&["check-config", "--config", cfg]);
    assert_eq!(o.status.code(), Some(78), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("schild.toml: allowlist.files[0]: cannot read"),
        "{err}"
    );
    assert!(
        err.contains("schild.toml: feed \"lab\".location: cannot read"),
        "{err}"
    );
    assert!(
        !err.contains("feed \"zdn\""),
        "the present file is fine: {err}"
    );
    s.write("allow.txt", "");
    s.write("lab-list.txt", "");
    let o = s.schild(&["check-config", "--config", cfg]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn check_config_reads_the_trust_anchor_file() {
    let s = Setup::new();
    let cfg = s.write(
        "schild.toml",
        "state_dir = \"state\"\n[resolver]\ntrust_anchor_file = \"anchors.key\"\n",
    );
    let cfg = cfg.to_str().expect("utf8");
    let o = s.schild(&["check-config", "--config", cfg]);
    assert_eq!(o.status.code(), Some(78), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("resolver.trust_anchor_file: cannot read"),
        "{}",
        stderr(&o)
    );
    // Records that are not anchors.
    s.write("anchors.key", "corp.example. IN A 192.0.2.1\n");
    let o = s.schild(&["check-config", "--config", cfg]);
    assert_eq!(o.status.code(), Some(78), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("only DS and DNSKEY records are trust anchors"),
        "{}",
        stderr(&o)
    );
    // A DS anchor parses (its keys are fetched when serve starts).
    s.write(
        "anchors.key",
        "corp.example. IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n",
    );
    let o = s.schild(&["check-config", "--config", cfg]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    s.write(
        "anchors.key",
        "; dnssec-keygen's K*.key\ncorp.example. IN DNSKEY 257 3 13 aCxb+U4b3Hp41g3I23m6plJdh+L0k25uX6gP4yJNRcHSEJYch4JXBPb2 r22j/tvB1uJE2191auotOtNKmdLdsg==\n",
    );
    let o = s.schild(&["check-config", "--config", cfg]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_network_with_host_bits_is_an_error_that_names_the_value() {
    let s = Setup::new();
    let cfg = s.write(
        "schild.toml",
        "state_dir = \"state\"\n[server]\nallow = [\"127.0.0.1/32\", \"10.1.2.3/8\"]\n",
    );
    let o = s.schild(&["check-config", "--config", cfg.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(78));
    let err = stderr(&o);
    assert!(
        err.contains("server.allow: \"10.1.2.3/8\" has host bits set"),
        "{err}"
    );
    assert!(err.contains("10.0.0.0/8"), "{err}");
}

#[test]
fn json_log_format_writes_one_object_per_line_with_the_text_fields() {
    let s = Setup::new();
    let cfg = config(&s);
    let cfg = cfg.to_str().expect("utf-8 path");
    let run = |format: &str| {
        Command::new(env!("CARGO_BIN_EXE_schild"))
            .args(["--log-format", format, "compile", "--config", cfg])
            .env("SCHILD_LOG", "info")
            .output()
            .expect("run schild")
    };
    let json = run("json");
    assert!(json.status.success(), "{}", stderr(&json));
    let lines: Vec<serde_json::Value> = stderr(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "compile logged nothing at info");
    for l in &lines {
        assert!(l["timestamp"].is_string(), "{l}");
        assert!(l["level"].is_string(), "{l}");
        assert!(l["fields"]["message"].is_string(), "{l}");
    }
    // The same events, with the same structured fields, as the text format.
    let text = run("text");
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stderr(&text);
    for l in &lines {
        let message = l["fields"]["message"].as_str().expect("message");
        assert!(
            text.contains(message),
            "{message:?} not in the text log:\n{text}"
        );
        for (key, _) in l["fields"].as_object().expect("fields") {
            if key != "message" {
                assert!(text.contains(&format!("{key}=")), "{key} not in:\n{text}");
            }
        }
    }
    let bad = run("xml");
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("text or json"), "{}", stderr(&bad));
}
