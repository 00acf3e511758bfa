//! Installing and watching schild, each part checked with the real tool it
//! is for: the Debian package's default config (`schild check-config`, and
//! served), its systemd unit (`systemd-analyze security` and `verify`),
//! sd_notify from the real binary, the docker/ compose files
//! (`unbound-checkconf`, `promtool check config`), the container's health
//! check, the alert rules (`promtool check rules`, `promtool test rules`) and
//! the Grafana dashboard, whose every query a real Prometheus evaluates
//! against a real schild. The .deb itself is built, installed and removed by
//! .ci/run (dpkg needs the whole machine).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::dns::{addresses, ede, query, udp};
use crate::harness::have;
use crate::harness::{Schild, Setup};
use crate::hierarchy;
use crate::rpz::free_port;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn schild_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_schild"));
    c.env("SCHILD_LOG", "warn");
    c
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `schild check-config`, which must pass: its report.
fn check_config(path: &Path) -> String {
    let o = output(schild_bin().arg("check-config").arg("--config").arg(path));
    assert!(
        o.status.success(),
        "check-config {}:\n{}",
        path.display(),
        text(&o)
    );
    text(&o)
}

/// A `[resolver]` through the fake hierarchy, so nothing leaves loopback.
fn loopback_resolver() -> String {
    format!("{}dnssec = false\n", hierarchy::get().recursive_section())
}

// ------------------------------------------------------- the package config

const PACKAGED: &str = "packaging/schild.toml";

fn is_loopback_net(net: &str) -> bool {
    let net: ipnet::IpNet = net.parse().expect("a network");
    net.network().is_loopback() && net.broadcast().is_loopback()
}

#[test]
fn the_packaged_config_is_valid_and_loopback_only() {
    check_config(&repo(PACKAGED));
    let c: toml::Value = toml::from_str(&read(PACKAGED)).expect("toml");
    let listen = c["server"]["listen"].as_array().expect("listen");
    assert!(!listen.is_empty());
    for l in listen {
        let addr: std::net::SocketAddr = l.as_str().expect("str").parse().expect("address");
        assert!(addr.ip().is_loopback(), "{addr} is not loopback");
    }
    for a in c["server"]["allow"].as_array().expect("allow") {
        assert!(is_loopback_net(a.as_str().expect("str")), "allow {a}");
    }
    let admin: std::net::SocketAddr = c["admin"]["listen"]
        .as_str()
        .expect("admin")
        .parse()
        .expect("admin address");
    assert!(admin.ip().is_loopback());
    assert_eq!(c["resolver"]["mode"].as_str(), Some("recursive"));
    assert!(c.get("feed").is_none(), "no feeds by default");
}

/// The commented MISP example (and [sightings]) works once uncommented.
#[test]
fn the_packaged_misp_example_is_valid_when_uncommented() {
    let text = read(PACKAGED);
    let mut out = String::new();
    let mut in_example = false;
    for line in text.lines() {
        if line == "# [[feed]]" || line == "# [sightings]" {
            in_example = true;
        }
        if line.trim().is_empty() {
            in_example = false;
        }
        match line.strip_prefix("# ") {
            Some(l) if in_example => out.push_str(l),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(out.contains("\n[[feed]]\nname = \"zdn\"\ntype = \"misp-api\"\n"));
    assert!(out.contains("\n[sightings]\n"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("schild.toml"), &out).expect("write");
    std::fs::write(dir.path().join("zdn.key"), "an-api-key\n").expect("write");
    let report = check_config(&dir.path().join("schild.toml"));
    assert!(report.contains("zdn"), "{report}");
}

/// The packaged config serves as it is: only the addresses (and the root
/// hints, for the fake hierarchy on loopback) are changed for the test.
#[test]
fn the_packaged_config_serves() {
    let mut config = String::new();
    let mut section = "";
    for line in read(PACKAGED).lines() {
        if line.starts_with('[') {
            section = if line == "[resolver]" || line == "[admin]" {
                "skip"
            } else {
                ""
            };
        }
        let replaced = line.starts_with("state_dir") || line.starts_with("listen = ");
        if section != "skip" && !replaced {
            config.push_str(line);
            config.push('\n');
        }
    }
    config.push_str(&loopback_resolver());
    let s = Schild::start(&config, &[]);
    assert_eq!(s.http("GET", "/ready").0, 200, "{}", s.log());
    // The default ACL lets loopback clients in.
    let m = udp(s.dns, &query("www.example.test.", RecordType::A));
    assert_eq!(addresses(&m), ["192.0.2.80"], "{m:?}");
}

// ----------------------------------------------------------- systemd unit

const UNIT: &str = "packaging/debian/schild.service";

/// `Key=value` lines of a unit file (a key set twice keeps both values).
fn unit_keys(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            m.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    m
}

#[test]
fn the_systemd_unit_is_confined_and_scores_ok() {
    let unit = read(UNIT);
    let keys = unit_keys(&unit);
    let one = |k: &str| -> &str {
        match keys.get(k).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("{k}: {other:?}"),
        }
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("User"), "schild");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("StateDirectory"), "schild");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(keys.contains_key("SystemCallFilter"));
    // It runs what the package installs, on the config it installs.
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/schild serve --config /etc/schild/schild.toml"
    );
    let cargo: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let assets = cargo["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .expect("deb assets");
    let installs = |src: &str, dest: &str| {
        assets.iter().any(|a| {
            a.get(0).and_then(toml::Value::as_str) == Some(src)
                && a.get(1).and_then(toml::Value::as_str) == Some(dest)
        })
    };
    assert!(installs("target/release/schild", "usr/bin/"));
    assert!(installs(PACKAGED, "etc/schild/schild.toml"));

    if !have("systemd-analyze") {
        return;
    }
    let o = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(repo(UNIT)),
    );
    let report = text(&o);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for schild.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level:\n{report}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{report}");
}

/// `systemd-analyze verify` on the unit; the package's binary path is this
/// build's (.ci/run verifies the installed unit as it is).
#[test]
fn the_systemd_unit_verifies() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("schild.service");
    let unit = read(UNIT).replace("/usr/bin/schild", env!("CARGO_BIN_EXE_schild"));
    std::fs::write(&path, unit).expect("write");
    let o = output(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
    );
    let report = text(&o);
    assert!(o.status.success(), "{report}");
    assert!(!report.contains("schild.service"), "warnings:\n{report}");
}

// -------------------------------------------------------------- sd_notify

/// A plain-list feed over HTTP whose first answer waits until released.
struct HeldFeed {
    url: String,
    requests: mpsc::Receiver<()>,
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl HeldFeed {
    fn start(body: &'static str) -> HeldFeed {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/list.txt", l.local_addr().expect("addr"));
        let (tx, requests) = mpsc::channel();
        let released = Arc::new((Mutex::new(false), Condvar::new()));
        let gate = released.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut r = BufReader::new(c.try_clone().expect("clone"));
                let mut line = String::new();
                while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                    line.clear();
                }
                let _ = tx.send(());
                let (lock, cv) = &*gate;
                let mut open = lock.lock().expect("lock");
                while !*open {
                    open = cv.wait(open).expect("wait");
                }
                drop(open);
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        HeldFeed {
            url,
            requests,
            released,
        }
    }

    fn release(&self) {
        let (lock, cv) = &*self.released;
        *lock.lock().expect("lock") = true;
        cv.notify_all();
    }
}

fn recv_notification(sock: &UnixDatagram) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within 30 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// systemd's side of Type=notify, played by the test: an abstract unix
/// datagram socket in `NOTIFY_SOCKET`, as systemd may pass it.
#[test]
fn systemd_hears_ready_once_filtering_and_stopping_on_sigterm() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("schild-it-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .expect("abstract address");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind notify socket");
    let feed = HeldFeed::start("evil.example.test\n");
    let config = format!(
        "{}\n[[feed]]\nname = \"held\"\ntype = \"domains\"\nlocation = \"{}\"\n",
        loopback_resolver(),
        feed.url
    );
    let env = format!("@{name}");
    let starting = std::thread::spawn(move || {
        Schild::start_env(
            Setup {
                config: &config,
                files: &[],
                wait_ready: false,
            },
            &[("NOTIFY_SOCKET", &env)],
        )
    });
    // schild is compiling its first list (no artifact yet): not ready, and
    // systemd has not been told otherwise.
    feed.requests
        .recv_timeout(Duration::from_secs(30))
        .expect("schild fetches the feed");
    sock.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!(
            "a notification before the list was loaded: {:?}",
            other.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        ),
    }
    sock.set_nonblocking(false).expect("blocking");
    feed.release();

    let ready = recv_notification(&sock);
    let s = starting
        .join()
        .expect("start thread")
        .unwrap_or_else(|(st, log)| panic!("schild exited ({st:?}):\n{log}"));
    // When systemd hears READY=1, /ready says 200 and the list is in force.
    assert_eq!(s.http("GET", "/ready").0, 200, "{}", s.log());
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(ready.contains("STATUS=serving; list serial "), "{ready:?}");
    let m = udp(s.dns, &query("evil.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(ede(&m).is_some(), "blocked by the list: {m:?}");

    // systemctl reload: SIGHUP, RELOADING=1 while the feeds are refreshed,
    // READY=1 when done.
    signal(s.pid(), "-HUP");
    assert!(recv_notification(&sock).starts_with("RELOADING=1\n"));
    assert!(recv_notification(&sock).starts_with("READY=1\n"));

    // systemctl stop: SIGTERM, STOPPING=1, a clean exit.
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    assert!(recv_notification(&sock).starts_with("STOPPING=1\n"));
}

// ------------------------------------------------------------ alert rules

#[test]
fn the_alert_rules_check_and_pass_their_unit_tests() {
    let rules = read("monitoring/schild.rules.yml");
    let tests = read("monitoring/schild.rules.test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    for required in [
        "SchildFeedStale",
        "SchildFeedRefreshFailing",
        "SchildUnfiltered",
        "SchildSightingsSpoolGrowing",
        "SchildSightingsStuck",
        "SchildUpstreamErrors",
        "SchildTcpConnectionsAtCap",
    ] {
        assert!(alerts.contains(&required), "no alert {required}");
    }
    for a in &alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "alert {a} has no unit test"
        );
    }
    if !have("promtool") {
        return;
    }
    let o = output(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(repo("monitoring/schild.rules.yml")),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = output(
        Command::new("promtool")
            .args(["test", "rules", "schild.rules.test.yml"])
            .current_dir(repo("monitoring")),
    );
    assert!(o.status.success(), "{}", text(&o));
}

// ---------------------------------------------------------------- compose

/// One bind mount of docker/compose.yml: (service, source, container path).
struct Mount {
    service: String,
    source: PathBuf,
    target: String,
}

/// The bind mounts and fixed addresses in docker/compose.yml, read line by
/// line (the file keeps to one mount per `- source:target` line).
fn compose() -> (Vec<Mount>, BTreeMap<String, String>) {
    let text = read("docker/compose.yml");
    let (mut mounts, mut addrs) = (Vec::new(), BTreeMap::new());
    let (mut in_services, mut service) = (false, String::new());
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            in_services = line == "services:";
            continue;
        }
        if !in_services {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            service = name.to_string();
            continue;
        }
        let item = line.trim();
        if let Some(spec) = item.strip_prefix("- ")
            && (spec.starts_with("./") || spec.starts_with("../"))
        {
            let mut parts = spec.split(':');
            let (src, dst) = (parts.next().expect("src"), parts.next().expect("dst"));
            mounts.push(Mount {
                service: service.clone(),
                source: repo("docker").join(src),
                target: dst.to_string(),
            });
        }
        if let Some(ip) = item.strip_prefix("ipv4_address: ") {
            addrs.insert(service.clone(), ip.to_string());
        }
    }
    (mounts, addrs)
}

/// The files a service's container sees, laid out under a folder.
fn sandbox(mounts: &[Mount], service: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    for m in mounts.iter().filter(|m| m.service == service) {
        let to = root.path().join(m.target.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&m.source, &to).expect("copy");
    }
    root
}

#[test]
fn every_file_compose_mounts_is_in_the_repo_and_checks() {
    let (mounts, addrs) = compose();
    for service in ["schild", "unbound", "prometheus", "grafana"] {
        assert!(
            mounts.iter().any(|m| m.service == service),
            "{service} mounts nothing"
        );
    }
    for m in &mounts {
        assert!(
            m.source.is_file(),
            "{} mounts {}, which is not in the repo",
            m.service,
            m.source.display()
        );
    }

    // schild: its config, with the demo list mounted beside it.
    let root = sandbox(&mounts, "schild");
    let config_path = root.path().join("etc/schild/schild.toml");
    check_config(&config_path);
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(&config_path).expect("read")).expect("toml");
    let dns_port = config["server"]["listen"][0]
        .as_str()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .expect("listen")
        .port();
    let admin_port = config["admin"]["listen"]
        .as_str()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .expect("admin")
        .port();

    // Unbound transfers the RPZ from schild's address and port, and schild
    // allows Unbound's address and NOTIFYs it.
    let unbound = read("docker/unbound/unbound.conf");
    assert!(
        unbound.contains(&format!("primary: {}@{dns_port}\n", addrs["schild"])),
        "unbound's primary is not schild ({}@{dns_port})",
        addrs["schild"]
    );
    let rpz = &config["rpz"];
    assert!(unbound.contains(&format!(
        "name: \"{}.\"",
        rpz["zone"].as_str().expect("zone")
    )));
    assert_eq!(
        rpz["allow_transfer"][0].as_str(),
        Some(format!("{}/32", addrs["unbound"]).as_str())
    );
    assert_eq!(
        rpz["notify"][0].as_str(),
        Some(format!("{}:53", addrs["unbound"]).as_str())
    );
    if have("unbound-checkconf") {
        let root = sandbox(&mounts, "unbound");
        let o = output(
            Command::new("unbound-checkconf").arg(root.path().join("etc/unbound/unbound.conf")),
        );
        assert!(o.status.success(), "{}", text(&o));
    }

    // Prometheus scrapes schild's admin port, and its rules file is mounted
    // where prometheus.yml names it.
    let prom = read("docker/prometheus/prometheus.yml");
    assert!(prom.contains(&format!("targets: [\"schild:{admin_port}\"]")));
    assert!(
        prom.contains("job_name: schild"),
        "the rules select job=\"schild\""
    );
    if have("promtool") {
        let root = sandbox(&mounts, "prometheus");
        let o = output(
            Command::new("promtool")
                .args(["check", "config"])
                .arg(root.path().join("etc/prometheus/prometheus.yml")),
        );
        let report = text(&o);
        assert!(o.status.success(), "{report}");
        assert!(report.contains("schild.rules.yml"), "{report}");
    }

    // Grafana: the provider's folder holds the mounted dashboard; the data
    // source is the Prometheus service.
    let dashboards = read("docker/grafana/dashboards.yml");
    let dashboard = mounts
        .iter()
        .find(|m| m.service == "grafana" && m.target.ends_with(".json"))
        .expect("the dashboard is mounted");
    let folder = Path::new(&dashboard.target)
        .parent()
        .expect("folder")
        .display()
        .to_string();
    assert!(
        dashboards.contains(&format!("path: {folder}\n")),
        "{folder}"
    );
    serde_json::from_str::<Value>(
        &std::fs::read_to_string(&dashboard.source).expect("read dashboard"),
    )
    .expect("the dashboard is JSON");
    assert!(read("docker/grafana/datasources.yml").contains("url: http://prometheus:9090\n"));
}

// -------------------------------------------------------------- container

#[test]
fn the_dockerfile_exposes_what_its_config_listens_on() {
    let dockerfile = read("docker/Dockerfile");
    let exposed: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    let config: toml::Value = toml::from_str(&read("docker/schild/schild.toml")).expect("toml");
    let port = |a: &toml::Value| {
        a.as_str()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .expect("address")
            .port()
    };
    let mut wanted = Vec::new();
    for l in config["server"]["listen"].as_array().expect("listen") {
        wanted.push(format!("{}/udp", port(l)));
        wanted.push(format!("{}/tcp", port(l)));
    }
    wanted.push(format!("{}/tcp", port(&config["admin"]["listen"])));
    let mut exposed_sorted: Vec<String> = exposed.iter().map(|s| s.to_string()).collect();
    exposed_sorted.sort();
    wanted.sort();
    assert_eq!(
        exposed_sorted, wanted,
        "EXPOSE and docker/schild/schild.toml"
    );
    assert!(dockerfile.contains("\nUSER schild\n"), "runs as a user");
    assert!(dockerfile.contains("COPY docker/healthcheck.sh /usr/local/bin/schild-healthcheck\n"));
    assert!(dockerfile.contains("CMD [\"/usr/local/bin/schild-healthcheck\"]"));
    // The script's default is the admin port in the image's config.
    assert!(
        read("docker/healthcheck.sh")
            .contains(&format!("127.0.0.1:{}", port(&config["admin"]["listen"])))
    );
}

fn healthcheck(s: &Schild) -> Output {
    output(
        Command::new("bash")
            .arg(repo("docker/healthcheck.sh"))
            .env("SCHILD_ADMIN", s.admin.to_string()),
    )
}

#[test]
fn the_container_health_check_follows_ready() {
    let config = format!(
        "{}\n[[feed]]\nname = \"ioc\"\ntype = \"domains\"\nlocation = \"ioc.txt\"\n",
        loopback_resolver()
    );
    let s = Schild::start(&config, &[("ioc.txt", "evil.example.test\n")]);
    let o = healthcheck(&s);
    assert!(o.status.success(), "{}", text(&o));
    drop(s);

    // No list (an allowlist file is missing): alive, unfiltered, unhealthy.
    let s = Schild::start_with(Setup {
        config: &format!("{config}\n[allowlist]\nfiles = [\"missing.txt\"]\n"),
        files: &[("ioc.txt", "evil.example.test\n")],
        wait_ready: false,
    })
    .unwrap_or_else(|(_, log)| panic!("{log}"));
    let o = healthcheck(&s);
    assert!(!o.status.success());
    assert!(text(&o).contains("NOT filtered"), "{}", text(&o));
}

// ------------------------------------------- dashboard against Prometheus

/// A Prometheus from Debian on loopback, its storage in a temporary folder.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(scrape: std::net::SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            repo("monitoring/schild.rules.yml"),
            dir.path().join("schild.rules.yml"),
        )
        .expect("copy rules");
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - schild.rules.yml\n\
                 scrape_configs:\n  - job_name: schild\n    static_configs:\n      - targets: [\"{scrape}\"]\n"
            ),
        )
        .expect("write config");
        // Port 0 is not supported: take a free one, and retry if another
        // process took it first.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start prometheus");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if http_get(port, "/-/ready").is_some_and(|(status, _)| status == 200) {
                    return Prometheus {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("prometheus did not start");
    }

    fn api(&self, path: &str) -> Value {
        let (status, body) =
            http_get(self.port, path).unwrap_or_else(|| panic!("no answer to {path}"));
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {status} {body}"));
        v
    }

    /// An instant query: the result vector (an error names the query).
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let v = self.api(&format!("/api/v1/query?query={q}"));
        if v["status"] != "success" {
            return Err(format!("{expr}: {}", v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET over HTTP/1.0 on loopback: (status, body), or None if nothing listens.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Every `expr` in the dashboard, with Grafana's variables as the test's
/// Prometheus needs them: all instances, a rate window of several scrapes.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(&read("monitoring/grafana/schild.json")).expect("JSON");
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            let expr = expr
                .replace("$__rate_interval", "20s")
                .replace("$instance", ".*");
            assert!(!expr.contains('$'), "an unknown variable in {expr}");
            out.push((p["title"].as_str().expect("title").to_string(), expr));
        }
    }
    out
}

/// Every `schild_…` name in a file.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .match_indices("schild_")
        .filter(|(i, _)| {
            *i == 0
                || !text.as_bytes()[i - 1].is_ascii_alphanumeric() && text.as_bytes()[i - 1] != b'_'
        })
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_dashboard_query_returns_series_from_a_real_prometheus() {
    let queries = dashboard_queries();
    let all: String = queries.iter().map(|(_, q)| q.as_str()).collect();
    for needed in [
        "schild_queries_total",
        "schild_responses_total",
        "schild_blocked_answers_total",
        "schild_cache_hits_total",
        "schild_upstream_duration_seconds_bucket",
        "schild_feed_last_success_timestamp_seconds",
        "schild_sightings_pending",
        "schild_reloads_total",
    ] {
        assert!(all.contains(needed), "no panel shows {needed}");
    }
    if !have("prometheus") {
        return;
    }
    let config = format!(
        "{}\n[[feed]]\nname = \"ioc\"\ntype = \"domains\"\nlocation = \"ioc.txt\"\n",
        loopback_resolver()
    );
    let s = Schild::start(&config, &[("ioc.txt", "evil.example.test\n")]);
    // Some traffic: a block, a miss resolved upstream, then a cache hit.
    let m = udp(s.dns, &query("evil.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    for _ in 0..2 {
        let m = udp(s.dns, &query("www.example.test.", RecordType::A));
        assert_eq!(addresses(&m), ["192.0.2.80"]);
    }

    // The rules and the dashboard name only metrics schild exports.
    let (_, exported) = s.http("GET", "/metrics");
    let files = read("monitoring/schild.rules.yml") + &read("monitoring/grafana/schild.json");
    for name in metric_names(&files) {
        assert!(
            exported.lines().any(|l| l.starts_with(&name)),
            "schild does not export {name}"
        );
    }

    let prom = Prometheus::start(s.admin);
    // Scraped several times (rates need two samples in their window), and
    // every alert rule evaluated without error.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let scraped = prom
            .query("count_over_time(up{job=\"schild\"}[20s]) >= 5 and up{job=\"schild\"} == 1")
            .expect("query up");
        let rules = prom.api("/api/v1/rules");
        let evaluated = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (field("name"), field("health"))
            })
            .collect::<Vec<_>>();
        let healthy = !evaluated.is_empty() && evaluated.iter().all(|(_, h)| h == "ok");
        if !scraped.is_empty() && healthy {
            let alerts = read("monitoring/schild.rules.yml")
                .matches("- alert: ")
                .count();
            assert_eq!(evaluated.len(), alerts, "every rule is loaded");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape schild or evaluate the rules: {scraped:?} {evaluated:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let mut failures = Vec::new();
    for (title, expr) in &queries {
        match prom.query(expr) {
            Ok(r) if r.is_empty() => failures.push(format!("{title}: {expr}: no series")),
            Ok(_) => {}
            Err(e) => failures.push(format!("{title}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
