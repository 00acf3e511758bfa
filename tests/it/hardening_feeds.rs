//! Issue 15, the feed side, against the real binary: a refresh that would
//! empty or gut a list is refused and the last good copy keeps blocking;
//! file feeds refuse devices and FIFOs; stale temporary files go; an API
//! key over plain http:// is warned about; structured feeds (MISP, STIX,
//! TAXII) are judged like lists.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use schild::config::Config;
use schild::feeds::Puller;
use schild::pipeline::{self, CompileOutcome};
use schild::policy::FetchStatus;

use crate::dns::{ede, query, udp};
use crate::harness::{Schild, Setup};
use crate::hierarchy;
use crate::misp_server::{COLLECTION, MispServer};

/// Names in the lists: enough that a cut to 10 lines is a real shrink.
const NAMES: usize = 3000;

fn names(domain: &str) -> String {
    let mut s = String::from("# a list of indicators\n");
    for i in 0..NAMES {
        s.push_str(&format!("host{i}.{domain}\n"));
    }
    s
}

const MAINTENANCE: &str = "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\n<body>\n\
<h1>Down for maintenance</h1>\n<p>We will be back soon.</p>\n<p>The feed team</p>\n</body></html>\n";

/// A plain HTTP/1.1 server on loopback that answers every request with
/// 200 and the current body. It lives as long as the test process; each
/// test has its own.
struct ListServer {
    addr: SocketAddr,
    body: Arc<Mutex<Vec<u8>>>,
}

/// Read a request's head (up to the blank line), for at most 5 s.
fn read_head(conn: &mut std::net::TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
}

impl ListServer {
    fn start(body: &[u8]) -> ListServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let body = Arc::new(Mutex::new(body.to_vec()));
        let shared = body.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                read_head(&mut conn);
                let body = shared.lock().expect("body").clone();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            }
        });
        ListServer { addr, body }
    }

    fn url(&self) -> String {
        format!("http://{}/list.txt", self.addr)
    }

    fn set(&self, body: &[u8]) {
        *self.body.lock().expect("body") = body.to_vec();
    }
}

fn config(server: &ListServer, extra: &str) -> String {
    format!(
        "{}dnssec = false\n\n\
         [[feed]]\nname = \"remote\"\ntype = \"domains\"\nlocation = \"{}\"\napi_key_file = \"remote.key\"\nretries = 0\ntimeout_secs = 5\n{extra}\n\
         [[feed]]\nname = \"local\"\ntype = \"domains\"\nlocation = \"local.txt\"\ntimeout_secs = 5\n{extra}\n",
        hierarchy::get().recursive_section(),
        server.url(),
    )
}

/// Blocked by `feed`, as a client sees it: NXDOMAIN with EDE 15 naming it.
fn blocked_by(s: &Schild, name: &str, feed: &str) -> bool {
    let m = udp(s.dns, &query(name, RecordType::A));
    m.metadata.response_code == ResponseCode::NXDomain
        && ede(&m).is_some_and(|(code, text)| code == 15 && text.contains(&format!("feed {feed}")))
}

fn assert_still_blocking(s: &Schild, when: &str) {
    for i in [0, NAMES / 2, NAMES - 1] {
        for (feed, domain) in [("remote", "remote-ioc.test"), ("local", "local-ioc.test")] {
            let name = format!("host{i}.{domain}.");
            assert!(
                blocked_by(s, &name, feed),
                "{when}: {name} is no longer blocked\n{}",
                s.log()
            );
        }
    }
}

/// The value of one series in the text exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn failures(s: &Schild, feed: &str, reason: &str) -> f64 {
    let (status, text) = s.http("GET", "/metrics");
    assert_eq!(status, 200);
    metric(
        &text,
        &format!("schild_feed_fetch_failures_total{{feed=\"{feed}\",reason=\"{reason}\"}}"),
    )
    .unwrap_or_else(|| panic!("no failure series for {feed}/{reason}:\n{text}"))
}

fn stats(s: &Schild) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_schild"))
        .args(["stats", "--config"])
        .arg(s.path("schild.toml"))
        .output()
        .expect("run schild stats");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn reload(s: &Schild) -> String {
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}\n{}", s.log());
    body
}

#[test]
fn a_refresh_that_would_empty_or_gut_a_list_keeps_the_last_good_copy() {
    let remote = names("remote-ioc.test");
    let local = names("local-ioc.test");
    let server = ListServer::start(remote.as_bytes());
    let cfg = config(&server, "");
    let s = Schild::start(&cfg, &[("local.txt", &local), ("remote.key", "k3y\n")]);
    assert_still_blocking(&s, "at start");
    // The key goes out over plain http: said loudly, and the key is not.
    let log = s.log();
    assert!(
        log.contains("WARN") && log.contains("UNENCRYPTED") && log.contains("feed=remote"),
        "{log}"
    );
    assert!(!log.contains("k3y"), "{log}");

    let random: Vec<u8> = (0..256 * 1024).map(|_| rand::random::<u8>()).collect();
    let cut: String = local.lines().take(10).map(|l| format!("{l}\n")).collect();
    let cut_remote: String = remote.lines().take(10).map(|l| format!("{l}\n")).collect();
    let cases: [(&str, Vec<u8>, Vec<u8>, &str); 4] = [
        ("random bytes", random.clone(), random, "garbage"),
        ("an empty body", Vec::new(), Vec::new(), "empty"),
        (
            "an HTML maintenance page",
            MAINTENANCE.into(),
            MAINTENANCE.into(),
            "garbage",
        ),
        (
            "the list cut to 10 lines",
            cut_remote.into(),
            cut.into(),
            "shrink",
        ),
    ];
    for (what, remote_body, local_body, reason) in cases {
        let before = (
            failures(&s, "remote", reason),
            failures(&s, "local", reason),
        );
        server.set(&remote_body);
        std::fs::write(s.path("local.txt"), &local_body).expect("write local feed");
        let body = reload(&s);
        assert!(
            body.contains("remote") && body.contains("local"),
            "{what}: {body}"
        );
        assert_still_blocking(&s, what);
        assert_eq!(
            (
                failures(&s, "remote", reason),
                failures(&s, "local", reason)
            ),
            (before.0 + 1.0, before.1 + 1.0),
            "{what}: counted as {reason}"
        );
        let out = stats(&s);
        for feed in ["remote", "local"] {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("feed {feed}: ")))
                .unwrap_or_else(|| panic!("no line for {feed}:\n{out}"));
            assert!(
                line.contains("FAILED, using copy") && line.contains(reason),
                "{what}: {line}"
            );
        }
        // The last good copies stay the ones on disk.
        for (feed, good) in [("remote", &remote), ("local", &local)] {
            let kept = std::fs::read_to_string(s.path(&format!("state/feeds/{feed}/list")))
                .expect("kept copy");
            assert!(
                kept == *good,
                "{what}: the kept copy of {feed} was replaced"
            );
        }
        assert!(
            s.log().contains("WARN") && s.log().contains("the new copy of feed remote is refused"),
            "{}",
            s.log()
        );
    }

    // A copy that is merely a little smaller is taken.
    let mut smaller = remote
        .lines()
        .take(NAMES * 3 / 4)
        .collect::<Vec<_>>()
        .join("\n");
    smaller.push('\n');
    server.set(smaller.as_bytes());
    std::fs::write(s.path("local.txt"), &local).expect("restore local feed");
    let body = reload(&s);
    assert!(!body.contains("failed"), "{body}");
    assert!(!blocked_by(
        &s,
        &format!("host{}.remote-ioc.test.", NAMES - 1),
        "remote"
    ));
    assert!(blocked_by(&s, "host1.remote-ioc.test.", "remote"));

    // An operator who means to cut the list says so: max_shrink_percent = 100.
    server.set(
        &remote
            .lines()
            .take(10)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes(),
    );
    let dir = s.kill9();
    let s = Schild::start_in(
        dir,
        Setup {
            config: &config(&server, "max_shrink_percent = 100"),
            files: &[("local.txt", &cut_lines(&local, 10))],
            wait_ready: true,
        },
    )
    .unwrap_or_else(|(status, log)| panic!("schild exited ({status:?}):\n{log}"));
    // Serving starts from the kept artifact; a reload fetches for sure.
    let body = reload(&s);
    assert!(!body.contains("failed"), "{body}");
    for (feed, domain) in [("remote", "remote-ioc.test"), ("local", "local-ioc.test")] {
        assert!(
            blocked_by(&s, &format!("host1.{domain}."), feed),
            "{}",
            s.log()
        );
        assert!(
            !blocked_by(&s, &format!("host100.{domain}."), feed),
            "{feed}: the cut list is taken"
        );
        let kept = std::fs::read_to_string(s.path(&format!("state/feeds/{feed}/list")))
            .expect("kept copy");
        assert_eq!(
            kept.lines().count(),
            10,
            "{feed}: the cut list is the kept copy"
        );
    }
    assert!(!stats(&s).contains("FAILED"), "{}", stats(&s));
}

fn cut_lines(text: &str, n: usize) -> String {
    text.lines().take(n).map(|l| format!("{l}\n")).collect()
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(ok.success(), "mkfifo {}", path.display());
}

#[test]
fn file_feeds_refuse_devices_and_fifos_and_the_list_keeps_serving() {
    let server = ListServer::start(names("remote-ioc.test").as_bytes());
    let local = names("local-ioc.test");
    let s = Schild::start(
        &config(&server, ""),
        &[("local.txt", &local), ("remote.key", "k3y\n")],
    );
    assert_still_blocking(&s, "at start");
    let feed = s.path("local.txt");
    let before = failures(&s, "local", "io");

    // A device that never ends: refused, not read until memory runs out.
    std::fs::remove_file(&feed).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &feed).expect("symlink to /dev/zero");
    reload(&s);
    assert_still_blocking(&s, "feed file is /dev/zero");
    let out = stats(&s);
    assert!(out.contains("character device"), "{out}");
    assert_eq!(failures(&s, "local", "io"), before + 1.0);

    // A FIFO nobody writes to: refused, the reload does not hang.
    std::fs::remove_file(&feed).expect("rm");
    mkfifo(&feed);
    reload(&s);
    assert_still_blocking(&s, "feed file is a FIFO");
    let out = stats(&s);
    assert!(out.contains("named pipe"), "{out}");
    assert_eq!(failures(&s, "local", "io"), before + 2.0);
    // Both were refused before anything was read: the kept copy is intact.
    let kept = std::fs::read_to_string(s.path("state/feeds/local/list")).expect("kept copy");
    assert!(kept == local);

    // Back to a regular file: the next reload takes it.
    std::fs::remove_file(&feed).expect("rm");
    std::fs::write(&feed, format!("{local}late.local-ioc.test\n")).expect("write");
    let body = reload(&s);
    assert!(!body.contains("local"), "{body}");
    assert!(blocked_by(&s, "late.local-ioc.test.", "local"));
}

#[test]
fn temporary_files_left_by_a_killed_write_are_removed_at_the_next_compile() {
    let server = ListServer::start(names("remote-ioc.test").as_bytes());
    let s = Schild::start(
        &config(&server, ""),
        &[
            ("local.txt", &names("local-ioc.test")),
            ("remote.key", "k3y\n"),
        ],
    );
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let stale = [
        s.path("state/feeds/local/.tmpKilled1"),
        s.path("state/feeds/remote/.tmpKilled2"),
        s.path("state/.tmpKilled3"),
    ];
    for p in &stale {
        std::fs::write(p, vec![0u8; 4096]).expect("write");
        std::fs::File::options()
            .write(true)
            .open(p)
            .and_then(|f| f.set_modified(hour_ago))
            .expect("age the file");
    }
    // One being written right now is not touched.
    let young = s.path("state/feeds/local/.tmpInProgress");
    std::fs::write(&young, b"partial").expect("write");
    reload(&s);
    for p in &stale {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    assert!(young.exists());
    assert!(s.log().contains("removed temporary files"), "{}", s.log());
    assert_still_blocking(&s, "after the clean-up");
}

// ------------------------------------------------- structured feeds

/// The four structured feed types, all from one test MISP server (misp.md:
/// restSearch, a feed folder, a STIX bundle, a TAXII 2.1 collection), each
/// pulled in full every time so an emptied source is seen as one.
fn structured_feeds(server: &MispServer, key: &Path, extra: &str) -> String {
    let common = format!("timeout_secs = 5\nretries = 0\nfull_refresh_secs = 0\n{extra}\n");
    format!(
        "state_dir = \"state\"\n\
         [[feed]]\nname = \"api\"\ntype = \"misp-api\"\nlocation = \"{}\"\napi_key_file = \"{}\"\n{common}\
         [[feed]]\nname = \"feed\"\ntype = \"misp-feed\"\nlocation = \"{}\"\n{common}\
         [[feed]]\nname = \"bundle\"\ntype = \"stix\"\nlocation = \"{}\"\n{common}\
         [[feed]]\nname = \"taxii\"\ntype = \"taxii\"\nlocation = \"{}\"\n{common}",
        server.url(""),
        key.display(),
        server.url("/feed/"),
        server.url("/stix/bundle.json"),
        server.url(&format!("/api1/collections/{COLLECTION}/")),
    )
}

fn load(dir: &Path, text: &str) -> Config {
    let path = dir.join("schild.toml");
    std::fs::write(&path, text).expect("write config");
    Config::load(&path).expect("valid config")
}

fn compile_now(config: &Config) -> CompileOutcome {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(pipeline::compile(config, &Puller::new(&config.state_dir)))
        .expect("compiles")
}

/// Every file of each feed's last good copy, by feed.
fn kept_copies(state: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![state.join("feeds")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

/// Names and addresses each feed contributes, as `stats` shows them.
fn contributions(o: &CompileOutcome) -> Vec<(String, u64)> {
    o.reports
        .iter()
        .map(|r| (r.feed.clone(), r.names + r.ips))
        .collect()
}

#[test]
fn structured_feeds_emptied_or_gutted_keep_their_last_good_copy() {
    let server = MispServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("misp.key");
    std::fs::write(&key, format!("{}\n", server.key())).expect("key");
    let config = load(dir.path(), &structured_feeds(&server, &key, ""));
    let first = compile_now(&config);
    let good = contributions(&first);
    for (feed, n) in &good {
        assert!(*n > 0, "{feed} contributes nothing: {:?}", first.reports);
    }
    assert!(first.failed_feeds().next().is_none(), "{:?}", first.reports);
    let kept = kept_copies(&config.state_dir);

    // Every source still answers, well-formed, but with nothing in it.
    let (rows, feed_files, bundle, taxii) = {
        let mut st = server.state.lock();
        let saved = (
            st.rows.clone(),
            st.feed.clone(),
            st.bundle.clone(),
            st.taxii.clone(),
        );
        st.rows.clear();
        st.feed.insert("manifest.json".into(), b"{}".to_vec());
        st.bundle = br#"{"type": "bundle", "id": "bundle--6a2d0bbc-5c3b-4d1d-8e2a-6c6f5b0a8f11", "objects": []}"#.to_vec();
        st.taxii.clear();
        saved
    };
    let emptied = compile_now(&config);
    for r in &emptied.reports {
        match &r.fetch {
            FetchStatus::Cached { error, .. } => {
                assert!(error.starts_with("empty: "), "{}: {error}", r.feed)
            }
            other => panic!("{}: an empty source was taken: {other:?}", r.feed),
        }
    }
    assert_eq!(
        contributions(&emptied),
        good,
        "the last good copies still block"
    );
    assert_eq!(
        kept_copies(&config.state_dir),
        kept,
        "an empty copy replaced a kept one"
    );

    // Gutted: one restSearch row of many, one event of the feed's.
    {
        let mut st = server.state.lock();
        st.rows = rows.iter().take(1).cloned().collect();
        st.feed = feed_files.clone();
        st.bundle = bundle.clone();
        st.taxii = taxii.clone();
    }
    let gutted = compile_now(&config);
    let api = gutted
        .reports
        .iter()
        .find(|r| r.feed == "api")
        .expect("api report");
    assert!(
        matches!(&api.fetch, FetchStatus::Cached { error, .. } if error.starts_with("shrink: ")),
        "{:?}",
        api.fetch
    );
    assert_eq!(contributions(&gutted), good);
    // The others are whole again and taken.
    assert!(
        gutted
            .reports
            .iter()
            .filter(|r| r.feed != "api")
            .all(|r| r.fetch == FetchStatus::Fresh),
        "{:?}",
        gutted.reports
    );

    // A page that is not the document (a proxy's error page) is refused too.
    server.state.lock().bundle = MAINTENANCE.as_bytes().to_vec();
    let html = compile_now(&config);
    let b = html
        .reports
        .iter()
        .find(|r| r.feed == "bundle")
        .expect("bundle");
    assert!(
        matches!(&b.fetch, FetchStatus::Cached { error, .. } if error.starts_with("format: ")),
        "{:?}",
        b.fetch
    );
    assert_eq!(contributions(&html), contributions(&gutted));

    // An operator who means it: max_shrink_percent = 100 takes the cut.
    server.state.lock().bundle = bundle;
    let config = load(
        dir.path(),
        &structured_feeds(&server, &key, "max_shrink_percent = 100"),
    );
    let cut = compile_now(&config);
    let api = cut.reports.iter().find(|r| r.feed == "api").expect("api");
    assert_eq!(api.fetch, FetchStatus::Fresh, "{:?}", api.fetch);
    let before = good.iter().find(|(f, _)| f == "api").map(|x| x.1);
    assert!(Some(api.names + api.ips) < before, "{:?}", cut.reports);
}

/// The processes whose parent is `pid`, with their command lines.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            let cmd = std::fs::read(format!("/proc/{child}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            found.push((child, cmd));
        }
    }
    found
}

/// The refresh's compile runs in a process of its own. When that process
/// dies (the kernel's out-of-memory killer on a huge feed, an operator),
/// the refresh fails and says why, the list in use keeps blocking, and
/// nothing is left behind.
#[test]
fn a_killed_compile_process_fails_the_refresh_and_the_list_keeps_serving() {
    // Its answers after the first (the start's pull) wait for a gate that
    // this test never opens: the refresh hangs on it.
    let feed = crate::hardening::GatedFeed::serving(&names("remote-ioc.test"));
    let remote = feed.addr;
    let config = format!(
        "{}dnssec = false\n\n\
         [[feed]]\nname = \"remote\"\ntype = \"domains\"\nlocation = \"http://{remote}/list.txt\"\nretries = 0\ntimeout_secs = 60\n\n\
         [[feed]]\nname = \"local\"\ntype = \"domains\"\nlocation = \"local.txt\"\n",
        hierarchy::get().recursive_section(),
    );
    let s = Schild::start(&config, &[("local.txt", &names("local-ioc.test"))]);
    assert_still_blocking(&s, "at start");
    let pid = s.pid();
    let admin = s.admin;
    let refresh = std::thread::spawn(move || {
        crate::harness::http_raw(
            admin,
            "POST /reload HTTP/1.0\r\nHost: schild\r\nContent-Length: 0\r\n\r\n",
            Duration::from_secs(90),
        )
    });
    // The compile waits on the hanging feed, in its own process.
    let (child, cmd) =
        crate::harness::wait_until("the compile process", Duration::from_secs(20), || {
            children_of(pid)
                .into_iter()
                .find(|(_, c)| c.contains("compile-child"))
        });
    assert!(cmd.contains("--pull fetch"), "{cmd}");
    let killed = Command::new("kill")
        .args(["-KILL", &child.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (status, body) = refresh.join().expect("refresh thread");
    assert_eq!(status, 500, "{body}\n{}", s.log());
    assert!(
        body.contains("the compile process was killed by signal 9"),
        "{body}"
    );
    assert!(s.log().contains("killed by signal 9"), "{}", s.log());
    assert_eq!(s.metric("schild_refresh_failures_total"), Some(1.0));
    assert_still_blocking(&s, "after the compile process was killed");
    assert!(
        children_of(pid).is_empty(),
        "the dead compile is reaped: {:?}",
        children_of(pid)
    );
}
