//! RPZ export as the hospital's resolvers consume it: the zone file checked
//! by `named-checkzone`, transfers checked by `dig`, and Unbound and BIND 9
//! pulling the zone from schild and enforcing it.
//!
//! The primary runs in this process inside a minimal hickory `Server` that
//! hands every request it claims to `RpzPrimary::handle`, as `schild serve`
//! does. The peers run from Debian's packages on loopback ports.

use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::RecordType;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use schild::config::Config;
use schild::policy::Policy;
use schild::rpz::xfr::RpzPrimary;
use tokio_util::sync::CancellationToken;

use crate::cli::Setup;

/// Whether a Debian tool is there. Missing under CI=true is a failure.
fn have(tool: &str) -> bool {
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

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..50 {
        let Ok(t) = StdTcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = t.local_addr().map(|a| a.port()) else {
            continue;
        };
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// A peer daemon, killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(cmd: &mut Command, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start daemon");
        Daemon { child, log }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dig` output: the status and the answer lines.
#[derive(Debug)]
struct Dig {
    status: String,
    answers: Vec<String>,
    text: String,
}

fn dig(port: u16, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    Dig {
        status,
        answers,
        text,
    }
}

/// Poll until `ok` holds, at most `limit`.
fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ok()
}

/// The in-process primary: a hickory Server that gives RpzPrimary what it
/// claims and refuses the rest, and notes the transfer types asked for.
struct Handler {
    primary: Arc<RpzPrimary>,
    seen: Arc<Mutex<Vec<RecordType>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        if let (Ok(info), Ok(mut seen)) = (request.request_info(), self.seen.lock()) {
            seen.push(info.query.query_type());
        }
        if self.primary.claims(request) {
            return self.primary.handle(request, response_handle).await;
        }
        let msg = MessageResponseBuilder::new(&request.queries, None)
            .error_msg(&request.metadata, ResponseCode::Refused);
        match response_handle.send_response(msg).await {
            Ok(info) => info,
            Err(e) => panic!("send: {e}"),
        }
    }
}

struct Primary {
    primary: Arc<RpzPrimary>,
    seen: Arc<Mutex<Vec<RecordType>>>,
    port: u16,
    token: CancellationToken,
    _rt: tokio::runtime::Runtime,
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl Primary {
    fn start(config: &Config) -> Primary {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let token = CancellationToken::new();
        let policy = Arc::new(Policy::load(&config.artifact_path()).expect("artifact"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (primary, port) = rt.block_on(async {
            let primary =
                Arc::new(RpzPrimary::new(config, policy, Some(token.clone())).expect("primary"));
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("tcp");
            let port = tcp.local_addr().expect("addr").port();
            let udp = tokio::net::UdpSocket::bind(("127.0.0.1", port))
                .await
                .expect("udp");
            let mut server = Server::new(Handler {
                primary: primary.clone(),
                seen: seen.clone(),
            });
            server.register_socket(udp);
            // A small send queue, so the transfer must wait for the client.
            server.register_listener(tcp, Duration::from_secs(300), 16);
            let t = token.clone();
            tokio::spawn(async move {
                t.cancelled().await;
                let _ = server.shutdown_gracefully().await;
            });
            (primary, port)
        });
        Primary {
            primary,
            seen,
            port,
            token,
            _rt: rt,
        }
    }

    fn reload(&self, config: &Config) {
        let policy = Arc::new(Policy::load(&config.artifact_path()).expect("artifact"));
        self.primary.update(policy).expect("journal");
    }

    fn seen(&self, t: RecordType) -> usize {
        self.seen
            .lock()
            .map(|s| s.iter().filter(|&&x| x == t).count())
            .unwrap_or(0)
    }
}

const KEY_SECRET: &str = "c2NoaWxkLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmctISE=";

fn key_file(s: &Setup) -> PathBuf {
    s.write(
        "rpz.tsig",
        &format!("key \"zdn-xfr\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{KEY_SECRET}\";\n}};\n"),
    )
}

/// A config with one domains feed and an [rpz] section.
fn setup(iocs: &str, rpz_extra: &str) -> (Setup, PathBuf) {
    let s = Setup::new();
    s.write("iocs.txt", iocs);
    let cfg = s.write(
        "schild.toml",
        &format!(
            r#"
state_dir = "state"

[[feed]]
name = "zdn"
type = "domains"
location = "iocs.txt"

[rpz]
zone = "zdn.rpz"
allow_transfer = ["127.0.0.1/32"]
{rpz_extra}
"#
        ),
    );
    (s, cfg)
}

fn compile(s: &Setup, cfg: &Path) -> Config {
    let out = s.schild(&["compile", "--config", cfg.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Config::load(cfg).expect("config")
}

#[test]
fn export_writes_a_zone_named_checkzone_accepts() {
    let (s, cfg) = setup("evil.example\nc2.bad.example\n*.phish.example\n", "");
    compile(&s, &cfg);
    let cfg_s = cfg.to_str().expect("utf8");
    let to_stdout = s.schild(&["export", "rpz", "--config", cfg_s]);
    assert!(to_stdout.status.success());
    let zone = String::from_utf8_lossy(&to_stdout.stdout).into_owned();
    for line in [
        "evil.example CNAME . ; feed zdn",
        "*.evil.example CNAME . ; feed zdn",
        "*.phish.example CNAME . ; feed zdn",
    ] {
        assert!(zone.contains(line), "{line:?} missing in\n{zone}");
    }
    assert!(!zone.contains("\nphish.example CNAME"), "{zone}");

    let out = s.path("out/zdn.rpz");
    std::fs::create_dir_all(s.path("out")).expect("mkdir");
    let r = s.schild(&[
        "export",
        "rpz",
        "--config",
        cfg_s,
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read_to_string(&out).expect("file"), zone);
    // Nothing but the file is left behind (the write is atomic).
    assert_eq!(std::fs::read_dir(s.path("out")).expect("dir").count(), 1);

    if !have("named-checkzone") {
        return;
    }
    let check = Command::new("named-checkzone")
        .args(["zdn.rpz", out.to_str().expect("utf8")])
        .output()
        .expect("named-checkzone");
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The serial only grows: a recompile gives a larger one.
    let serial = |z: &str| -> u64 {
        z.split("SOA ")
            .nth(1)
            .and_then(|x| x.split('(').nth(1))
            .and_then(|x| x.split_whitespace().next())
            .and_then(|x| x.parse().ok())
            .expect("serial")
    };
    compile(&s, &cfg);
    let again = s.schild(&["export", "rpz", "--config", cfg_s]);
    assert!(serial(&String::from_utf8_lossy(&again.stdout)) > serial(&zone));
}

#[test]
fn export_without_an_rpz_section_is_a_config_error() {
    let s = Setup::new();
    s.write("iocs.txt", "evil.example\n");
    let cfg = s.write(
        "schild.toml",
        "state_dir = \"state\"\n[[feed]]\nname = \"zdn\"\ntype = \"domains\"\nlocation = \"iocs.txt\"\n",
    );
    let out = s.schild(&["export", "rpz", "--config", cfg.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[rpz]"));
}

fn numbered(n: usize, prefix: &str) -> String {
    (0..n).map(|i| format!("{prefix}{i}.example\n")).collect()
}

#[test]
fn axfr_streams_the_whole_zone_and_ixfr_only_the_change() {
    if !have("dig") {
        return;
    }
    let (s, cfg) = setup(&numbered(5000, "ioc"), "");
    let config = compile(&s, &cfg);
    let p = Primary::start(&config);
    let serial1 = p.primary.serial();

    let axfr = dig(p.port, &["zdn.rpz", "AXFR", "+onesoa"]);
    let records: Vec<_> = axfr
        .answers
        .iter()
        .filter(|l| l.contains("zdn.rpz."))
        .collect();
    // SOA, NS and 2 triggers per domain (+onesoa hides the closing SOA).
    assert_eq!(
        records.len(),
        2 + 2 * 5000,
        "{}",
        &axfr.text[axfr.text.len().saturating_sub(500)..]
    );
    assert!(
        records
            .iter()
            .any(|l| l.starts_with("*.ioc4999.example.zdn.rpz. 300 IN CNAME ."))
    );
    let messages: u32 = axfr
        .text
        .split("XFR size: ")
        .nth(1)
        .and_then(|x| x.split("(messages ").nth(1))
        .and_then(|x| x.split(',').next())
        .and_then(|x| x.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        messages > 10,
        "one message would be hickory's limit: {}",
        axfr.text.lines().last().unwrap_or("")
    );

    // Names inside the zone are not for ordinary queries.
    let q = dig(p.port, &["ioc1.example.zdn.rpz", "CNAME"]);
    assert_eq!(q.status, "REFUSED");
    let soa = dig(p.port, &["zdn.rpz", "SOA"]);
    assert_eq!(soa.status, "NOERROR");
    // Other loopback addresses are not in allow_transfer.
    let other = dig(p.port, &["-b", "127.0.0.2", "zdn.rpz", "AXFR"]);
    assert!(other.text.contains("Transfer failed"), "{}", other.text);

    // Change the list: one removed, one added.
    let mut iocs = numbered(5000, "ioc").replace("ioc7.example\n", "");
    iocs.push_str("fresh.example\n");
    s.write("iocs.txt", &iocs);
    let config = compile(&s, &cfg);
    p.reload(&config);
    let serial2 = p.primary.serial();
    assert_ne!(serial1, serial2);
    let ixfr = dig(p.port, &["zdn.rpz", &format!("IXFR={serial1}")]);
    let lines: Vec<_> = ixfr
        .answers
        .iter()
        .filter(|l| l.contains("zdn.rpz."))
        .collect();
    // SOA new, SOA old, 2 removed, SOA new, 2 added, SOA new.
    assert_eq!(lines.len(), 8, "{}", ixfr.text);
    assert!(lines[1].contains(&format!(" {serial1} ")), "{}", ixfr.text);
    assert!(
        lines[2].starts_with("ioc7.example.zdn.rpz.") || lines[2].starts_with("*.ioc7"),
        "{}",
        ixfr.text
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("*.fresh.example.zdn.rpz.")),
        "{}",
        ixfr.text
    );
    // A serial the journal does not reach gets the whole zone.
    let old = dig(
        p.port,
        &["zdn.rpz", &format!("IXFR={}", serial1.wrapping_sub(100))],
    );
    assert!(
        old.answers
            .iter()
            .filter(|l| l.contains("zdn.rpz."))
            .count()
            > 10_000
    );
    // An up-to-date client gets the SOA alone.
    let current = dig(p.port, &["zdn.rpz", &format!("IXFR={serial2}")]);
    assert_eq!(
        current
            .answers
            .iter()
            .filter(|l| l.contains("zdn.rpz."))
            .count(),
        1
    );
}

#[test]
fn tsig_signs_every_message_and_refuses_the_rest() {
    if !have("dig") {
        return;
    }
    let (s, cfg) = setup(&numbered(3000, "ioc"), "tsig_key_file = \"rpz.tsig\"");
    key_file(&s);
    let config = compile(&s, &cfg);
    let p = Primary::start(&config);
    let key = format!("hmac-sha256:zdn-xfr:{KEY_SECRET}");
    // dig checks the TSIG of every message and fails the transfer on any error.
    let signed = dig(p.port, &["-y", &key, "zdn.rpz", "AXFR"]);
    assert!(!signed.text.contains("Transfer failed"), "{}", signed.text);
    assert!(
        !signed.text.to_lowercase().contains("tsig verify failure"),
        "{}",
        signed.text
    );
    assert_eq!(
        signed
            .answers
            .iter()
            .filter(|l| l.contains(" CNAME "))
            .count(),
        6000
    );
    let unsigned = dig(p.port, &["zdn.rpz", "AXFR"]);
    assert!(
        unsigned.text.contains("Transfer failed"),
        "{}",
        unsigned.text
    );
    let wrong = dig(
        p.port,
        &[
            "-y",
            "hmac-sha256:zdn-xfr:d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=",
            "zdn.rpz",
            "SOA",
        ],
    );
    assert_eq!(wrong.status, "NOTAUTH", "{}", wrong.text);
    let signed_soa = dig(p.port, &["-y", &key, "zdn.rpz", "SOA"]);
    assert_eq!(signed_soa.status, "NOERROR", "{}", signed_soa.text);
}

fn unbound_conf(dir: &Path, port: u16, primary: u16) -> String {
    format!(
        r#"server:
    interface: 127.0.0.1
    port: {port}
    do-daemonize: no
    use-syslog: no
    logfile: ""
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    module-config: "respip iterator"
    verbosity: 1
remote-control:
    control-enable: no
rpz:
    name: "zdn.rpz."
    primary: 127.0.0.1@{primary}
    rpz-log: yes
{auth}"#,
        dir = dir.display(),
        // Local data the iterator resolves from (unbound answers its
        // local-zones before RPZ, so those would hide the rewrite).
        auth = ["clean.example", "evil.example", "fresh.example"]
            .iter()
            .map(|z| format!(
                "auth-zone:\n    name: \"{z}.\"\n    zonefile: \"{}/{z}.db\"\n    for-downstream: no\n    for-upstream: yes\n",
                dir.display()
            ))
            .collect::<String>()
    )
}

#[test]
fn unbound_pulls_the_zone_and_follows_notify_with_ixfr() {
    if !have("unbound") || !have("dig") {
        return;
    }
    let ub_port = free_port();
    let (s, cfg) = setup(
        "evil.example\nc2.example\n",
        &format!("notify = [\"127.0.0.1:{ub_port}\"]"),
    );
    let config = compile(&s, &cfg);
    let p = Primary::start(&config);
    for (z, ip) in [
        ("clean.example", "192.0.2.80"),
        ("evil.example", "192.0.2.66"),
        ("fresh.example", "192.0.2.67"),
    ] {
        local_zone(&s, z, ip);
    }
    let conf = s.write("unbound.conf", &unbound_conf(s.dir.path(), ub_port, p.port));
    let ub = Daemon::start(
        Command::new("unbound").args(["-d", "-c", conf.to_str().expect("utf8")]),
        s.path("unbound.log"),
    );
    let blocked = |name: &str| dig(ub_port, &[name, "A"]).status == "NXDOMAIN";
    assert!(
        wait_for(Duration::from_secs(20), || blocked("evil.example")),
        "unbound did not enforce the RPZ:\n{}",
        ub.log()
    );
    assert!(blocked("www.evil.example"), "subdomain");
    let clean = dig(ub_port, &["www.clean.example", "A"]);
    assert_eq!(clean.status, "NOERROR", "{}", ub.log());
    assert!(
        clean.answers.iter().any(|a| a.ends_with("A 192.0.2.80")),
        "{clean:?}"
    );
    let fresh = dig(ub_port, &["fresh.example", "A"]);
    assert_eq!(fresh.status, "NOERROR", "not listed yet");

    s.write("iocs.txt", "evil.example\nc2.example\nfresh.example\n");
    let config = compile(&s, &cfg);
    let ixfr_before = p.seen(RecordType::IXFR);
    p.reload(&config);
    assert!(
        wait_for(Duration::from_secs(10), || blocked("fresh.example")),
        "NOTIFY and IXFR did not bring unbound up to date:\n{}",
        ub.log()
    );
    assert!(
        p.seen(RecordType::IXFR) > ixfr_before,
        "unbound asked by IXFR"
    );
}

fn named_conf(dir: &Path, port: u16, primary: u16) -> String {
    format!(
        r#"options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ 127.0.0.0/8; }};
    dnssec-validation no;
    notify no;
    response-policy {{ zone "zdn.rpz" recursive-only no min-update-interval 0; }} qname-wait-recurse no;
}};
include "{dir}/rpz.tsig";
controls {{ }};
zone "zdn.rpz" {{
    type secondary;
    primaries port {primary} {{ 127.0.0.1 key "zdn-xfr"; }};
    file "zdn.rpz.db";
}};
zone "clean.example" {{ type primary; file "clean.example.db"; }};
zone "evil.example" {{ type primary; file "evil.example.db"; }};
zone "fresh.example" {{ type primary; file "fresh.example.db"; }};
"#,
        dir = dir.display()
    )
}

fn local_zone(s: &Setup, name: &str, ip: &str) {
    s.write(
        &format!("{name}.db"),
        &format!(
            "$ORIGIN {name}.\n$TTL 60\n@ SOA ns.{name}. h.{name}. (1 60 60 600 60)\n  NS ns.{name}.\nns A 127.0.0.1\n@ A {ip}\nwww A {ip}\n"
        ),
    );
}

#[test]
fn bind_pulls_the_zone_with_tsig_and_follows_notify_with_ixfr() {
    if !have("named") || !have("dig") {
        return;
    }
    let bind_port = free_port();
    let (s, cfg) = setup(
        "evil.example\nc2.example\n",
        &format!("tsig_key_file = \"rpz.tsig\"\nnotify = [\"127.0.0.1:{bind_port}\"]"),
    );
    key_file(&s);
    let config = compile(&s, &cfg);
    let p = Primary::start(&config);
    let (named, port) = start_named_on(&s, p.port, bind_port);
    let blocked = |name: &str| dig(port, &[name, "A"]).status == "NXDOMAIN";
    assert!(
        wait_for(Duration::from_secs(30), || blocked("evil.example")),
        "named did not enforce the RPZ:\n{}",
        named.log()
    );
    assert!(blocked("www.evil.example"), "subdomain");
    let clean = dig(port, &["www.clean.example", "A"]);
    assert_eq!(clean.status, "NOERROR", "{clean:?}");
    assert!(
        clean.answers.iter().any(|a| a.ends_with("A 192.0.2.80")),
        "{clean:?}"
    );
    assert_eq!(dig(port, &["fresh.example", "A"]).status, "NOERROR");

    s.write("iocs.txt", "evil.example\nc2.example\nfresh.example\n");
    let config = compile(&s, &cfg);
    let ixfr_before = p.seen(RecordType::IXFR);
    p.reload(&config);
    assert!(
        wait_for(Duration::from_secs(15), || blocked("fresh.example")),
        "NOTIFY and IXFR did not bring named up to date:\n{}",
        named.log()
    );
    assert!(
        p.seen(RecordType::IXFR) > ixfr_before,
        "named asked by IXFR"
    );
}

fn start_named_on(s: &Setup, primary: u16, port: u16) -> (Daemon, u16) {
    local_zone(s, "clean.example", "192.0.2.80");
    local_zone(s, "evil.example", "192.0.2.66");
    local_zone(s, "fresh.example", "192.0.2.67");
    let conf = s.write("named.conf", &named_conf(s.dir.path(), port, primary));
    let d = Daemon::start(
        Command::new("named").args(["-g", "-n", "1", "-4", "-c", conf.to_str().expect("utf8")]),
        s.path("named.log"),
    );
    (d, port)
}

/// About 35 s in a debug build on 2 cores (20 s of it the transfer).
#[test]
fn bind_transfers_a_million_domains_completely() {
    if !have("named") || !have("dig") {
        return;
    }
    const N: usize = 1_000_000;
    let (s, cfg) = setup(&numbered(N, "d"), "tsig_key_file = \"rpz.tsig\"");
    key_file(&s);
    let started = Instant::now();
    let config = compile(&s, &cfg);
    eprintln!("compiled {N} domains in {:?}", started.elapsed());
    let p = Primary::start(&config);
    let (named, port) = start_named_on(&s, p.port, free_port());
    // SOA, NS, a name and its `*.` twin per domain, closing SOA.
    let want = format!("{} records", 2 * N + 3);
    let done = wait_for(Duration::from_secs(600), || {
        let log = named.log();
        log.contains("Transfer completed") || log.contains("failed")
    });
    let log = named.log();
    let line = log
        .lines()
        .find(|l| l.contains("Transfer completed"))
        .unwrap_or("");
    assert!(
        done && line.contains(&want),
        "{want} expected:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
    eprintln!("{line}; {:?} since start", started.elapsed());
    let blocked = |name: &str| dig(port, &[name, "A"]).status == "NXDOMAIN";
    assert!(
        wait_for(Duration::from_secs(120), || blocked(&format!(
            "www.d{}.example",
            N - 1
        ))),
        "named did not enforce the last name"
    );
    assert!(blocked("d0.example"));
}

#[test]
fn the_exported_file_loads_in_knot_resolver() {
    if !have("kresd") || !have("dig") {
        return;
    }
    let (s, cfg) = setup("evil.example\n*.phish.example\n", "");
    compile(&s, &cfg);
    let zone = s.path("zdn.rpz");
    let r = s.schild(&[
        "export",
        "rpz",
        "--config",
        cfg.to_str().expect("utf8"),
        "--out",
        zone.to_str().expect("utf8"),
    ]);
    assert!(r.status.success());
    let port = free_port();
    let conf = s.write(
        "kresd.conf",
        &format!(
            "net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})\nmodules = {{ 'policy' }}\npolicy.add(policy.rpz(policy.DENY, '{}', true))\n",
            zone.display()
        ),
    );
    std::fs::create_dir_all(s.path("kresd")).expect("mkdir");
    let kresd = Daemon::start(
        Command::new("kresd").args([
            "-n",
            "-c",
            conf.to_str().expect("utf8"),
            s.path("kresd").to_str().expect("utf8"),
        ]),
        s.path("kresd.log"),
    );
    let blocked = |name: &str| dig(port, &[name, "A"]).status == "NXDOMAIN";
    assert!(
        wait_for(Duration::from_secs(15), || blocked("evil.example")),
        "kresd did not enforce the file:\n{}",
        kresd.log()
    );
    assert!(blocked("www.evil.example"));
    assert!(blocked("x.phish.example"));
    assert!(
        !kresd.log().to_lowercase().contains("error"),
        "{}",
        kresd.log()
    );
}
