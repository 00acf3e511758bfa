//! Runs the real `schild serve` for a test: writes a config (listening on
//! port 0) into a temporary folder, starts the binary, reads the bound
//! addresses from its log, waits for `/ready`, and kills it on drop.
//! Also the pieces the interop tests share: is a Debian tool installed
//! ([`have`]), a peer daemon stopped on drop ([`Daemon`]), and polling
//! until something a user would see holds ([`poll`], [`until`], [`wait_until`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Schild {
    child: Child,
    /// UDP and TCP (same port).
    pub dns: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    /// `admin.token_file`'s token, if the config sets one.
    pub token: Option<String>,
}

/// Everything but the listen addresses and state_dir, which the harness sets.
pub struct Setup<'a> {
    pub config: &'a str,
    pub files: &'a [(&'a str, &'a str)],
    pub wait_ready: bool,
}

impl Schild {
    pub fn start(config: &str, files: &[(&str, &str)]) -> Schild {
        Schild::start_with(Setup {
            config,
            files,
            wait_ready: true,
        })
        .unwrap_or_else(|(status, log)| panic!("schild exited ({status:?}):\n{log}"))
    }

    /// Start; `Err((exit status, log))` if schild exits before listening.
    pub fn start_with(s: Setup<'_>) -> Result<Schild, (Option<ExitStatus>, String)> {
        Schild::start_in(tempfile::tempdir().expect("tempdir"), s)
    }

    /// Like [`Schild::start`], but allow `limit` for start-up: a first
    /// compile of a large list runs before schild listens.
    pub fn start_within(config: &str, files: &[(&str, &str)], limit: Duration) -> Schild {
        let s = Setup {
            config,
            files,
            wait_ready: true,
        };
        Schild::launch(tempfile::tempdir().expect("tempdir"), s, limit, &[])
            .unwrap_or_else(|(status, log)| panic!("schild exited ({status:?}):\n{log}"))
    }

    /// Start in an existing folder (a restart keeps state_dir).
    pub fn start_in(
        dir: tempfile::TempDir,
        s: Setup<'_>,
    ) -> Result<Schild, (Option<ExitStatus>, String)> {
        Schild::launch(dir, s, Duration::from_secs(30), &[])
    }

    /// [`Schild::start_in`] with extra environment for the process.
    pub fn start_in_env(
        dir: tempfile::TempDir,
        s: Setup<'_>,
        env: &[(&str, &str)],
    ) -> Result<Schild, (Option<ExitStatus>, String)> {
        Schild::launch(dir, s, Duration::from_secs(30), env)
    }

    /// Like [`Schild::start_with`], with extra environment for the process.
    pub fn start_env(
        s: Setup<'_>,
        env: &[(&str, &str)],
    ) -> Result<Schild, (Option<ExitStatus>, String)> {
        let dir = tempfile::tempdir().expect("tempdir");
        Schild::launch(dir, s, Duration::from_secs(30), env)
    }

    /// Start through a wrapper that execs the binary (`prlimit … --`).
    pub fn start_wrapped(
        s: Setup<'_>,
        wrapper: &[&str],
    ) -> Result<Schild, (Option<ExitStatus>, String)> {
        let dir = tempfile::tempdir().expect("tempdir");
        Schild::launch_with(dir, s, Duration::from_secs(30), &[], wrapper)
    }

    fn launch(
        dir: tempfile::TempDir,
        s: Setup<'_>,
        limit: Duration,
        env: &[(&str, &str)],
    ) -> Result<Schild, (Option<ExitStatus>, String)> {
        Schild::launch_with(dir, s, limit, env, &[])
    }

    fn launch_with(
        dir: tempfile::TempDir,
        s: Setup<'_>,
        limit: Duration,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Result<Schild, (Option<ExitStatus>, String)> {
        for (name, text) in s.files {
            write(dir.path(), name, text);
        }
        // A test that names its own DNS listeners keeps them.
        let listen = if s.config.lines().any(|l| l.starts_with("listen = ")) {
            "udp_sockets = 2\n"
        } else {
            "listen = [\"127.0.0.1:0\"]\nudp_sockets = 2\n"
        };
        let body = if s.config.contains("[server]\n") {
            s.config
                .replacen("[server]\n", &format!("[server]\n{listen}"), 1)
        } else {
            format!("[server]\n{listen}\n{}", s.config)
        };
        // A test with its own [admin] section keeps it; the listen address is ours.
        let config = if body.contains("[admin]\n") {
            let body = body.replacen("[admin]\n", "[admin]\nlisten = \"127.0.0.1:0\"\n", 1);
            format!("state_dir = \"state\"\n{body}\n")
        } else {
            format!("state_dir = \"state\"\n{body}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n")
        };
        // The test hierarchies live under test., a default local zone
        // (RFC 6761, as Unbound serves it): tests resolve it unless they
        // write their own [local] (the Unbound configurations of the
        // differential tests say `local-zone: "test." nodefault` alike).
        let config = if config.contains("[local]\n") {
            config
        } else {
            format!("{config}\n[local]\nnodefault = [\"test\"]\n")
        };
        // With `token_file`, `http` sends the token.
        let token = config
            .lines()
            .find_map(|l| l.strip_prefix("token_file = "))
            .map(|f| f.trim().trim_matches('"'))
            .and_then(|f| std::fs::read_to_string(dir.path().join(f)).ok())
            .map(|t| t.trim().to_string());
        let path = dir.path().join("schild.toml");
        std::fs::write(&path, &config).expect("write config");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_schild"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_schild")),
        };
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(&path)
            .env("SCHILD_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start schild");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().expect("log lock");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let deadline = Instant::now() + limit;
        let (mut dns, mut admin) = (None, None);
        while dns.is_none() || admin.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err((Some(status), log.lock().expect("log").clone()));
            }
            assert!(
                Instant::now() < deadline,
                "schild did not start:\n{}",
                log.lock().expect("log")
            );
            std::thread::sleep(Duration::from_millis(20));
            let text = log.lock().expect("log").clone();
            dns = find_addr(&text, "listening proto=udp addr=");
            admin = find_addr(&text, "admin listening addr=");
        }
        let me = Schild {
            child,
            dns: dns.expect("dns"),
            admin: admin.expect("admin"),
            dir,
            log,
            token,
        };
        if s.wait_ready {
            while me.http("GET", "/ready").0 != 200 {
                assert!(Instant::now() < deadline, "never ready:\n{}", me.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(me)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A tiny HTTP/1.0 client for the admin listener: (status, body).
    /// Sends the admin token when the config has one.
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        self.http_with(method, path, self.token.as_deref())
    }

    /// [`Schild::http`] with this token (or none).
    pub fn http_with(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        http_raw(
            self.admin,
            &format!("{method} {path} HTTP/1.0\r\nHost: schild\r\n{auth}Content-Length: 0\r\n\r\n"),
            Duration::from_secs(30),
        )
    }

    /// The value of one series (`name` or `name{labels}`) on `/metrics`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.http("GET", "/metrics").1;
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.starts_with(' ').then(|| rest.trim().parse().ok())?
        })
    }

    /// SIGKILL: no chance to clean up. Returns the folder for a restart.
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    /// SIGTERM, wait for a clean exit, and return the folder for a restart.
    pub fn stop(mut self) -> tempfile::TempDir {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let status = self.terminate();
        assert!(status.success(), "{status:?}");
        dir
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "schild did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Schild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server said.
        if std::thread::panicking() {
            eprintln!(
                "---- schild's log (pid {}) ----\n{}---- end of schild's log ----",
                self.child.id(),
                self.log()
            );
        }
    }
}

pub fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(p, text).expect("write file");
}

fn find_addr(log: &str, marker: &str) -> Option<SocketAddr> {
    let at = log.find(marker)? + marker.len();
    log[at..]
        .split(|c: char| c.is_whitespace())
        .next()?
        .parse()
        .ok()
}

/// Poll `f` every 50 ms until it returns `Some`, for at most `limit`:
/// the one way the tests wait for something a user would see (an answer, a
/// metric, a log line, a file), instead of sleeping and hoping.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`poll`] for a condition: whether it held within `limit`.
pub fn until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    poll(limit, || ok().then_some(())).is_some()
}

/// [`poll`], failing the test with `what` when the time is up.
pub fn wait_until<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(limit, f).unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Whether a Debian tool is there. Missing under CI=true is a failure.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI=true (apt-get install it)"
        );
        eprintln!("skipping: {tool} not installed");
    }
    found
}

/// A peer daemon run in the foreground, its stdout and stderr in `log`.
/// Dropping it sends SIGTERM (so a daemon with helper processes, like
/// NSD, takes them down too) and SIGKILL if it has not exited in 5 s.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(cmd: &mut Command, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start daemon");
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let child = &mut self.child;
            until(Duration::from_secs(5), || {
                !matches!(child.try_wait(), Ok(None))
            });
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send one raw HTTP/1.0 request to `addr` and read the answer to its end:
/// (status, body); status 0 when the answer is not HTTP.
pub fn http_raw(addr: SocketAddr, request: &str, timeout: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
