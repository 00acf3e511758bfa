//! RPZ export as the hospital's resolvers consume it: the zone file checked
//! by `named-checkzone` and loaded by Knot Resolver, transfers from the real
//! `schild serve` checked by `dig`, and Unbound and BIND 9 pulling the zone
//! from it, following NOTIFY with IXFR, and enforcing it.
//!
//! schild runs through the harness with a `domains` feed, an `[rpz]`
//! section and a forward resolver whose upstream is unreachable: nothing
//! here needs schild to resolve. A feed change is a rewritten feed file and
//! `POST /reload`, as an operator (or the feed timer) does it. The peers
//! run from Debian's packages on loopback ports, with their files in the
//! test's folder, and are killed on drop.

use std::io::Write;
use std::net::{TcpListener as StdTcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{Name, RData, RecordType};

use crate::cli::Setup;
use crate::harness::{self, Daemon, Schild, have, until};

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let Ok(t) = StdTcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = t.local_addr().map(|a| a.port()) else {
            continue;
        };
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// `dig` output: the status and the answer lines.
#[derive(Debug)]
struct Dig {
    status: String,
    answers: Vec<String>,
    text: String,
}

impl Dig {
    /// Answer lines of the RPZ zone.
    fn zone_records(&self) -> Vec<&String> {
        self.answers
            .iter()
            .filter(|l| l.contains("zdn.rpz."))
            .collect()
    }
}

fn dig(port: u16, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=5"])
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

/// The serial of the zone's SOA as schild answers it.
fn soa_serial(port: u16, extra: &[&str]) -> u32 {
    let mut args = extra.to_vec();
    args.extend(["zdn.rpz", "SOA"]);
    let d = dig(port, &args);
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    d.answers
        .iter()
        .find(|l| l.starts_with("zdn.rpz. ") && l.contains(" SOA "))
        .and_then(|l| l.split(' ').nth(6))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no SOA serial in\n{}", d.text))
}

const KEY_SECRET: &str = "c2NoaWxkLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmctISE=";

fn key_text() -> String {
    format!("key \"zdn-xfr\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{KEY_SECRET}\";\n}};\n")
}

/// `schild serve` config: one `domains` feed (iocs.txt), an unreachable
/// forward upstream, and `[rpz]` with `rpz` appended (allow_transfer,
/// notify, tsig_key_file).
fn serve_config(rpz: &str) -> String {
    format!(
        r#"[resolver]
mode = "forward"
upstreams = ["127.0.0.1:9"]
dnssec = false

[[feed]]
name = "zdn"
type = "domains"
location = "iocs.txt"

[rpz]
zone = "zdn.rpz"
{rpz}
"#
    )
}

const ALLOW_LOOPBACK: &str = "allow_transfer = [\"127.0.0.1/32\"]\n";

/// Start schild serving `iocs` with the `[rpz]` lines `rpz`; with `tsig`
/// the key file `rpz.tsig` is written and configured.
fn serve(iocs: &str, rpz: &str, tsig: bool) -> Schild {
    serve_within("", iocs, rpz, tsig, Duration::from_secs(30))
}

/// [`serve`] with config text `before` the rest (a `[server]` section),
/// allowing `limit` for the start.
fn serve_within(before: &str, iocs: &str, rpz: &str, tsig: bool, limit: Duration) -> Schild {
    let key = key_text();
    let mut rpz = rpz.to_string();
    let mut files = vec![("iocs.txt", iocs)];
    if tsig {
        rpz.push_str("tsig_key_file = \"rpz.tsig\"\n");
        files.push(("rpz.tsig", &key));
    }
    let config = format!("{before}{}", serve_config(&rpz));
    Schild::start_within(&config, &files, limit)
}

/// A feed change: rewrite the feed file and reload.
fn change_feed(s: &Schild, iocs: &str) {
    harness::write(s.dir.path(), "iocs.txt", iocs);
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}\n{}", s.log());
}

/// Transfers schild logged as done, of `kind` (AXFR or IXFR).
fn transfers_done(s: &Schild, kind: &str) -> usize {
    s.log()
        .lines()
        .filter(|l| l.contains("RPZ transfer done") && l.contains(&format!("kind=\"{kind}\"")))
        .count()
}

fn numbered(n: usize, prefix: &str) -> String {
    (0..n).map(|i| format!("{prefix}{i}.example\n")).collect()
}

/// A config with one domains feed and an [rpz] section, for `export rpz`.
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

fn compile(s: &Setup, cfg: &Path) {
    let out = s.schild(&["compile", "--config", cfg.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

    // The serial only grows: a recompile of the same list keeps it (nothing
    // changed for the secondaries), a changed list gets a larger one.
    let serial = |z: &str| -> u64 {
        z.split("SOA ")
            .nth(1)
            .and_then(|x| x.split('(').nth(1))
            .and_then(|x| x.split_whitespace().next())
            .and_then(|x| x.parse().ok())
            .expect("serial")
    };
    compile(&s, &cfg);
    let same = s.schild(&["export", "rpz", "--config", cfg_s]);
    assert_eq!(
        serial(&String::from_utf8_lossy(&same.stdout)),
        serial(&zone)
    );
    let list = std::fs::read_to_string(s.path("iocs.txt")).expect("list");
    s.write("iocs.txt", &format!("{list}new-ioc.example\n"));
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

#[test]
fn axfr_streams_the_whole_zone_and_ixfr_only_the_change() {
    if !have("dig") {
        return;
    }
    let s = serve(&numbered(5000, "ioc"), ALLOW_LOOPBACK, false);
    let port = s.dns.port();
    let serial1 = soa_serial(port, &[]);

    let axfr = dig(port, &["zdn.rpz", "AXFR", "+onesoa"]);
    let records = axfr.zone_records();
    // SOA, NS and 2 triggers per domain (+onesoa hides the closing SOA).
    assert_eq!(
        records.len(),
        2 + 2 * 5000,
        "{}",
        &axfr.text[axfr.text.len().saturating_sub(500)..]
    );
    assert!(records[0].contains(&format!(" SOA localhost. hostmaster.localhost. {serial1} ")));
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

    // Change the list: one removed, one added.
    let mut iocs = numbered(5000, "ioc").replace("ioc7.example\n", "");
    iocs.push_str("fresh.example\n");
    change_feed(&s, &iocs);
    let serial2 = soa_serial(port, &[]);
    assert!(serial2 > serial1, "{serial1} -> {serial2}");
    let ixfr = dig(port, &["zdn.rpz", &format!("IXFR={serial1}")]);
    let lines = ixfr.zone_records();
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
        port,
        &["zdn.rpz", &format!("IXFR={}", serial1.wrapping_sub(100))],
    );
    assert!(old.zone_records().len() > 10_000, "{}", old.status);
    // An up-to-date client gets the SOA alone.
    let current = dig(port, &["zdn.rpz", &format!("IXFR={serial2}")]);
    assert_eq!(current.zone_records().len(), 1, "{}", current.text);
    // Over UDP the SOA alone tells the client to come back over TCP.
    let udp = dig(port, &["+notcp", "zdn.rpz", &format!("IXFR={serial1}")]);
    assert_eq!(udp.zone_records().len(), 1, "{}", udp.text);

    // The transfers are in the metrics, which stay valid Prometheus text.
    let (status, metrics) = s.http("GET", "/metrics");
    assert_eq!(status, 200);
    let axfr_queries = metrics
        .lines()
        .find(|l| l.starts_with("schild_queries_total{") && l.contains("qtype=\"AXFR\""))
        .unwrap_or_else(|| panic!("no AXFR queries counted:\n{metrics}"));
    assert!(axfr_queries.ends_with(" 1"), "{axfr_queries}");
    crate::serve::promtool_check(&metrics);
}

#[test]
fn the_serial_grows_across_a_restart_and_the_journal_survives_it() {
    if !have("dig") {
        return;
    }
    let config = serve_config(ALLOW_LOOPBACK);
    let s = Schild::start(&config, &[("iocs.txt", "evil.example\nc2.example\n")]);
    let serial1 = soa_serial(s.dns.port(), &[]);
    let dir = s.kill9();
    let s = Schild::start_in(
        dir,
        harness::Setup {
            config: &config,
            files: &[],
            wait_ready: true,
        },
    )
    .unwrap_or_else(|(status, log)| panic!("restart failed ({status:?}):\n{log}"));
    let port = s.dns.port();
    // The last good list is served again, with its serial.
    assert_eq!(soa_serial(port, &[]), serial1);
    change_feed(&s, "evil.example\nc2.example\nfresh.example\n");
    let serial2 = soa_serial(port, &[]);
    assert!(serial2 > serial1, "{serial1} -> {serial2}");
    // The step is journalled by the new process: IXFR, not the whole zone.
    let ixfr = dig(port, &["zdn.rpz", &format!("IXFR={serial1}")]);
    let lines = ixfr.zone_records();
    assert_eq!(lines.len(), 6, "{}", ixfr.text);
    assert!(
        lines.iter().all(|l| !l.contains("evil.example")),
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
}

#[test]
fn notify_follows_a_new_serial_and_not_an_unchanged_or_failed_reload() {
    if !have("dig") {
        return;
    }
    let secondary = UdpSocket::bind("127.0.0.1:0").expect("bind");
    secondary
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let at = secondary.local_addr().expect("addr");
    let s = Schild::start(
        &format!(
            "[allowlist]\nfiles = [\"allow.txt\"]\n\n{}",
            serve_config(&format!("{ALLOW_LOOPBACK}notify = [\"{at}\"]\n"))
        ),
        &[
            ("iocs.txt", "evil.example\n"),
            ("allow.txt", "good.example\n"),
        ],
    );
    let port = s.dns.port();
    // The NOTIFYs that arrive within `limit`, each acknowledged: their serials.
    let notifies = |limit: Duration| -> Vec<u32> {
        let mut got = Vec::new();
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let Ok((n, from)) = secondary.recv_from(&mut buf) else {
                continue;
            };
            let msg = Message::from_vec(&buf[..n]).expect("a DNS message");
            assert_eq!(msg.metadata.op_code, OpCode::Notify);
            assert_eq!(msg.queries[0].name().to_string(), "zdn.rpz.");
            let serial = msg.answers.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            });
            got.push(serial.expect("the new SOA as a hint"));
            let mut ack = msg.clone();
            ack.metadata.message_type = MessageType::Response;
            ack.answers.clear();
            secondary
                .send_to(&ack.to_vec().expect("encode"), from)
                .expect("ack");
        }
        got
    };
    // Whatever start-up sent is acknowledged and out of the way.
    notifies(Duration::from_secs(3));

    change_feed(&s, "evil.example\nfresh.example\n");
    let serial = soa_serial(port, &[]);
    assert_eq!(notifies(Duration::from_secs(8)), [serial]);
    assert!(
        until(Duration::from_secs(5), || s
            .log()
            .contains("NOTIFY acknowledged")),
        "{}",
        s.log()
    );

    // A reload that changes nothing keeps the serial and tells nobody.
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");
    assert_eq!(notifies(Duration::from_secs(3)), Vec::<u32>::new());
    assert_eq!(soa_serial(port, &[]), serial);

    // A reload that fails (the allowlist is gone) serves the old list and
    // tells nobody.
    std::fs::remove_file(s.path("allow.txt")).expect("rm");
    let (status, body) = s.http("POST", "/reload");
    assert_ne!(status, 200, "{body}");
    assert_eq!(notifies(Duration::from_secs(3)), Vec::<u32>::new());
    assert_eq!(soa_serial(port, &[]), serial);
}

#[test]
fn tsig_signs_every_message_and_refuses_the_rest() {
    if !have("dig") {
        return;
    }
    let s = serve(&numbered(3000, "ioc"), ALLOW_LOOPBACK, true);
    let port = s.dns.port();
    let key = format!("hmac-sha256:zdn-xfr:{KEY_SECRET}");
    // dig checks the TSIG of every message and fails the transfer on any error.
    let signed = dig(port, &["-y", &key, "zdn.rpz", "AXFR"]);
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
    let unsigned = dig(port, &["zdn.rpz", "AXFR"]);
    assert!(
        unsigned.text.contains("Transfer failed"),
        "{}",
        unsigned.text
    );
    let wrong = dig(
        port,
        &[
            "-y",
            "hmac-sha256:zdn-xfr:d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=",
            "zdn.rpz",
            "SOA",
        ],
    );
    assert_eq!(wrong.status, "NOTAUTH", "{}", wrong.text);
    let signed_soa = dig(port, &["-y", &key, "zdn.rpz", "SOA"]);
    assert_eq!(signed_soa.status, "NOERROR", "{}", signed_soa.text);
    // An IXFR after a change is signed too.
    let serial1 = soa_serial(port, &["-y", &key]);
    change_feed(&s, &numbered(3001, "ioc"));
    let ixfr = dig(port, &["-y", &key, "zdn.rpz", &format!("IXFR={serial1}")]);
    assert!(!ixfr.text.contains("Transfer failed"), "{}", ixfr.text);
    assert_eq!(ixfr.zone_records().len(), 6, "{}", ixfr.text);
}

#[test]
fn resolver_clients_cannot_query_the_zone_and_outsiders_cannot_transfer_it() {
    if !have("dig") {
        return;
    }
    let s = serve(
        "evil.example\n",
        "allow_transfer = [\"192.0.2.0/24\"]\n",
        false,
    );
    let port = s.dns.port();
    // 127.0.0.1 is a resolver client (server.allow): the list works for it...
    let blocked = dig(port, &["www.evil.example", "A"]);
    assert_eq!(blocked.status, "NXDOMAIN", "{}", blocked.text);
    // ...but the zone's names are not answered as ordinary queries,
    let inside = dig(port, &["evil.example.zdn.rpz", "A"]);
    assert_eq!(inside.status, "REFUSED", "{}", inside.text);
    // and neither SOA nor a transfer go to a client outside allow_transfer.
    assert_eq!(dig(port, &["zdn.rpz", "SOA"]).status, "REFUSED");
    let axfr = dig(port, &["zdn.rpz", "AXFR"]);
    assert!(axfr.text.contains("Transfer failed"), "{}", axfr.text);
    assert!(axfr.zone_records().is_empty(), "{}", axfr.text);
    let ixfr = dig(port, &["zdn.rpz", "IXFR=1"]);
    assert!(ixfr.zone_records().is_empty(), "{}", ixfr.text);
    // Other zones are never transferred.
    let other = dig(port, &["evil.example", "AXFR"]);
    assert!(other.text.contains("Transfer failed"), "{}", other.text);
    assert_eq!(transfers_done(&s, "AXFR") + transfers_done(&s, "IXFR"), 0);
    assert!(
        s.log().contains("client not in rpz.allow_transfer"),
        "{}",
        s.log()
    );
}

/// A secondary that asks for the zone and then stops reading (hung, or
/// hostile) must not hold the transfer and its connection slot forever.
#[test]
fn a_secondary_that_stops_reading_is_dropped() {
    let s = Schild::start(
        &format!(
            "[server]\ntcp_idle_secs = 1\n\n{}",
            serve_config(ALLOW_LOOPBACK)
        ),
        // Far more than the socket buffers on both ends hold.
        &[("iocs.txt", &numbered(200_000, "s"))],
    );
    let mut query = Message::query();
    query.add_query(Query::query(
        Name::from_ascii("zdn.rpz.").expect("name"),
        RecordType::AXFR,
    ));
    let bytes = query.to_vec().expect("encode");
    let mut conn = TcpStream::connect(s.dns).expect("connect");
    conn.write_all(&(bytes.len() as u16).to_be_bytes())
        .expect("write");
    conn.write_all(&bytes).expect("write");
    let connections = || {
        let (_, m) = s.http("GET", "/metrics");
        m.lines()
            .find(|l| l.starts_with("schild_tcp_connections "))
            .map(|l| l.to_string())
            .unwrap_or_default()
    };
    assert!(
        until(Duration::from_secs(10), || s
            .log()
            .contains("RPZ transfer started")),
        "{}",
        s.log()
    );
    assert_eq!(connections(), "schild_tcp_connections 1");
    assert!(
        until(Duration::from_secs(20), || s
            .log()
            .contains("RPZ transfer aborted")),
        "the transfer to a client that does not read never ended:\n{}",
        s.log()
    );
    assert!(
        until(Duration::from_secs(5), || connections()
            == "schild_tcp_connections 0"),
        "{}",
        connections()
    );
    drop(conn);
}

/// The `server:` clause of an Unbound with the rpz module on loopback
/// `port`, its files in `dir`, in the foreground, without remote control.
pub fn unbound_server(dir: &Path, port: u16, extra: &str) -> String {
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
{extra}remote-control:
    control-enable: no
"#,
        dir = dir.display()
    )
}

fn unbound_conf(dir: &Path, port: u16, primary: u16) -> String {
    format!(
        r#"{server}rpz:
    name: "zdn.rpz."
    primary: 127.0.0.1@{primary}
    rpz-log: yes
{auth}"#,
        server = unbound_server(dir, port, "    verbosity: 2\n"),
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

fn local_zones(dir: &Path) {
    for (name, ip) in [
        ("clean.example", "192.0.2.80"),
        ("evil.example", "192.0.2.66"),
        ("fresh.example", "192.0.2.67"),
    ] {
        harness::write(
            dir,
            &format!("{name}.db"),
            &format!(
                "$ORIGIN {name}.\n$TTL 60\n@ SOA ns.{name}. h.{name}. (1 60 60 600 60)\n  NS ns.{name}.\nns A 127.0.0.1\n@ A {ip}\nwww A {ip}\n"
            ),
        );
    }
}

#[test]
fn unbound_pulls_the_zone_and_follows_notify_with_ixfr() {
    if !have("unbound") || !have("dig") {
        return;
    }
    let ub_port = free_port();
    let s = serve(
        "evil.example\nc2.example\n",
        &format!("{ALLOW_LOOPBACK}notify = [\"127.0.0.1:{ub_port}\"]\n"),
        false,
    );
    let dir = s.dir.path();
    local_zones(dir);
    let conf = dir.join("unbound.conf");
    std::fs::write(&conf, unbound_conf(dir, ub_port, s.dns.port())).expect("conf");
    let ub = Daemon::start(
        Command::new("unbound").args(["-d", "-c", conf.to_str().expect("utf8")]),
        dir.join("unbound.log"),
    );
    let blocked = |name: &str| dig(ub_port, &[name, "A"]).status == "NXDOMAIN";
    assert!(
        until(Duration::from_secs(20), || blocked("evil.example")),
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
    assert_eq!(transfers_done(&s, "IXFR"), 0, "{}", s.log());

    change_feed(&s, "evil.example\nc2.example\nfresh.example\n");
    let serial = soa_serial(s.dns.port(), &[]);
    assert!(
        until(Duration::from_secs(10), || blocked("fresh.example")),
        "NOTIFY and IXFR did not bring unbound up to date:\n{}\n{}",
        ub.log(),
        s.log()
    );
    assert_eq!(transfers_done(&s, "IXFR"), 1, "{}", s.log());
    assert!(
        ub.log()
            .contains(&format!("received NOTIFY serial {serial} for zdn.rpz.")),
        "{}",
        ub.log()
    );
}

/// The `options` of a recursive named on loopback `port` without
/// validation, its files in `dir`, enforcing the response-policy `zones`
/// (the inside of `response-policy { ... }`).
pub fn named_options(dir: &Path, port: u16, zones: &str) -> String {
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
    response-policy {{ {zones} }} qname-wait-recurse no;
}};
"#,
        dir = dir.display()
    )
}

fn named_conf(dir: &Path, port: u16, primary: u16) -> String {
    format!(
        r#"{options}include "{dir}/rpz.tsig";
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
        options = named_options(
            dir,
            port,
            "zone \"zdn.rpz\" recursive-only no min-update-interval 0;"
        ),
        dir = dir.display()
    )
}

/// named as a secondary of `s` (which must have the TSIG key) on `port`.
fn start_named(s: &Schild, port: u16) -> Daemon {
    let dir = s.dir.path();
    local_zones(dir);
    let conf = dir.join("named.conf");
    std::fs::write(&conf, named_conf(dir, port, s.dns.port())).expect("conf");
    Daemon::start(
        Command::new("named").args(["-g", "-n", "1", "-4", "-c", conf.to_str().expect("utf8")]),
        dir.join("named.log"),
    )
}

#[test]
fn bind_pulls_the_zone_with_tsig_and_follows_notify_with_ixfr() {
    if !have("named") || !have("dig") {
        return;
    }
    let port = free_port();
    let s = serve(
        "evil.example\nc2.example\n",
        &format!("{ALLOW_LOOPBACK}notify = [\"127.0.0.1:{port}\"]\n"),
        true,
    );
    let named = start_named(&s, port);
    let blocked = |name: &str| dig(port, &[name, "A"]).status == "NXDOMAIN";
    assert!(
        until(Duration::from_secs(30), || blocked("evil.example")),
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
    assert_eq!(transfers_done(&s, "IXFR"), 0, "{}", s.log());

    change_feed(&s, "evil.example\nc2.example\nfresh.example\n");
    assert!(
        until(Duration::from_secs(15), || blocked("fresh.example")),
        "NOTIFY and IXFR did not bring named up to date:\n{}\n{}",
        named.log(),
        s.log()
    );
    assert_eq!(transfers_done(&s, "IXFR"), 1, "{}", s.log());
    // named followed the NOTIFY and took the change alone: new SOA, old
    // SOA, new SOA, the two added records, new SOA (the whole zone would
    // be nine).
    let log = named.log();
    assert!(
        log.contains("zone zdn.rpz/IN: notify from 127.0.0.1"),
        "{log}"
    );
    let last = log
        .lines()
        .rfind(|l| l.contains("'zdn.rpz/IN'") && l.contains("Transfer completed"))
        .unwrap_or("");
    assert!(last.contains(" 6 records,"), "{log}");
}

/// The whole list through the real server's TCP loop: 2M records in a few
/// thousand messages.
#[test]
fn bind_transfers_a_million_domains_completely() {
    if !have("named") || !have("dig") {
        return;
    }
    const N: usize = 1_000_000;
    let started = Instant::now();
    // The first compile of a million names runs before schild listens.
    // The transfer (about 5 s in a debug build) outlasts the idle timeout:
    // a connection busy sending is not idle.
    let s = serve_within(
        "[server]\ntcp_idle_secs = 2\n\n",
        &numbered(N, "d"),
        ALLOW_LOOPBACK,
        true,
        Duration::from_secs(300),
    );
    eprintln!("schild up with {N} domains in {:?}", started.elapsed());
    let port = free_port();
    let named = start_named(&s, port);
    // SOA, NS, a name and its `*.` twin per domain, closing SOA.
    let want = format!("{} records", 2 * N + 3);
    let done = until(Duration::from_secs(600), || {
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
        "{want} expected:\n{}\n{}",
        &log[log.len().saturating_sub(3000)..],
        s.log()
    );
    eprintln!("{line}; {:?} since start", started.elapsed());
    assert_eq!(transfers_done(&s, "AXFR"), 1, "{}", s.log());
    let blocked = |name: &str| dig(port, &[name, "A"]).status == "NXDOMAIN";
    assert!(
        until(Duration::from_secs(120), || blocked(&format!(
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
        until(Duration::from_secs(15), || blocked("evil.example")),
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

// ------------------------------------------------- an rpz feed by transfer

/// A `schild serve` whose one feed is the RPZ zone at `primary` by zone
/// transfer, with the test TSIG key.
fn pulling(primary: std::net::SocketAddr, zone: &str) -> Schild {
    pulling_on(primary, zone, None)
}

/// [`pulling`], listening on `port` (for a primary that sends NOTIFY).
fn pulling_on(primary: std::net::SocketAddr, zone: &str, port: Option<u16>) -> Schild {
    let key = key_text();
    let listen = port
        .map(|p| format!("[server]\nlisten = [\"127.0.0.1:{p}\"]\n\n"))
        .unwrap_or_default();
    let config = format!(
        "{listen}[resolver]\nmode = \"forward\"\nupstreams = [\"127.0.0.1:9\"]\ndnssec = false\ntimeout_secs = 1\n\n[[feed]]\nname = \"national\"\ntype = \"rpz\"\nlocation = \"axfr://{primary}/{zone}\"\ntsig_key_file = \"xfr.tsig\"\ntimeout_secs = 10\nretries = 0\n"
    );
    Schild::start(&config, &[("xfr.tsig", &key)])
}

/// Blocked: NXDOMAIN. A name that is not listed goes to the dead upstream
/// and comes back SERVFAIL after the resolver's deadline, so allow for it.
fn nxdomain(s: &Schild, name: &str) -> bool {
    let q = crate::dns::query(name, RecordType::A);
    let (m, _) = crate::dns::udp_timeout(s.dns, &q, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no answer for {name}:\n{}", s.log()));
    m.metadata.response_code == hickory_server::proto::op::ResponseCode::NXDomain
}

fn reload(s: &Schild) {
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}\n{}", s.log());
}

fn pulled(s: &Schild, how: &str) -> usize {
    s.log()
        .lines()
        .filter(|l| l.contains("RPZ zone transferred") && l.contains(&format!("how=\"{how}\"")))
        .count()
}

#[test]
fn an_rpz_feed_follows_another_schild_by_axfr_then_ixfr_with_tsig() {
    let primary = serve("evil.example\nc2.example\n", ALLOW_LOOPBACK, true);
    let s = pulling(primary.dns, "zdn.rpz");
    assert!(nxdomain(&s, "www.evil.example."), "{}", s.log());
    assert!(nxdomain(&s, "c2.example."));
    assert!(!nxdomain(&s, "fresh.example."));
    assert_eq!(pulled(&s, "AXFR"), 1, "{}", s.log());

    // Unchanged serial: no transfer at all.
    reload(&s);
    assert_eq!(pulled(&s, "AXFR") + pulled(&s, "IXFR"), 1, "{}", s.log());
    // A change on the primary arrives as differences.
    change_feed(&primary, "evil.example\nfresh.example\n");
    reload(&s);
    assert!(nxdomain(&s, "fresh.example."), "{}", s.log());
    assert!(!nxdomain(&s, "c2.example."), "removed on the primary");
    assert!(nxdomain(&s, "evil.example."));
    assert_eq!(pulled(&s, "IXFR"), 1, "{}", s.log());
    assert!(transfers_done(&primary, "IXFR") >= 1, "{}", primary.log());

    // A NOTIFY from anyone but the primary is refused and changes nothing.
    let mut n = Message::query();
    n.metadata.op_code = OpCode::Notify;
    n.metadata.id = 4711;
    n.add_query(Query::query(
        Name::from_ascii("zdn.rpz.").expect("name"),
        RecordType::SOA,
    ));
    let sock = UdpSocket::bind("127.0.0.2:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.send_to(&n.to_vec().expect("encode"), s.dns)
        .expect("send");
    let mut buf = [0u8; 512];
    let (len, _) = sock.recv_from(&mut buf).expect("an answer to the NOTIFY");
    let r = Message::from_vec(&buf[..len]).expect("parse");
    assert_eq!(
        r.metadata.response_code,
        hickory_server::proto::op::ResponseCode::Refused
    );
    assert!(
        !s.log().contains("NOTIFY from the feed's primary"),
        "{}",
        s.log()
    );
}

#[test]
fn an_rpz_feed_with_the_wrong_key_is_refused_and_keeps_nothing() {
    let primary = serve("evil.example\n", ALLOW_LOOPBACK, true);
    let config = format!(
        "[resolver]\nmode = \"forward\"\nupstreams = [\"127.0.0.1:9\"]\ndnssec = false\n\n[[feed]]\nname = \"national\"\ntype = \"rpz\"\nlocation = \"axfr://{}/zdn.rpz\"\ntsig_key_file = \"xfr.tsig\"\ntimeout_secs = 5\nretries = 0\n",
        primary.dns
    );
    let wrong = key_text().replace(KEY_SECRET, "d3JvbmctdGVzdC1rZXktMzItYnl0ZXMtbG9uZy0hISE=");
    let out = crate::harness::Schild::start_with(crate::harness::Setup {
        config: &config,
        files: &[("xfr.tsig", &wrong)],
        wait_ready: false,
    });
    // A feed never fetched fails the compile: no list, said loudly, never
    // a guess.
    let s = out.unwrap_or_else(|(st, log)| panic!("{st:?}\n{log}"));
    assert!(
        until(Duration::from_secs(10), || s
            .log()
            .contains("NO POLICY LOADED")),
        "{}",
        s.log()
    );
    assert_eq!(s.http("GET", "/ready").0, 503);
    let log = s.log();
    assert!(
        log.contains("axfr://") && log.contains("NOTAUTH"),
        "the error names the primary and what it said: {log}"
    );
}

#[test]
fn an_rpz_feed_pulls_from_bind_as_its_primary() {
    if !have("named") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let listen = free_port();
    let zone = |serial: u32, names: &[&str]| {
        let mut z = format!(
            "$TTL 300\n@ SOA ns.national.rpz. hostmaster.national.rpz. ({serial} 3600 600 86400 60)\n  NS ns.national.rpz.\nns A 127.0.0.1\n"
        );
        for n in names {
            z.push_str(&format!("{n} CNAME .\n*.{n} CNAME .\n"));
        }
        // Enough that the differences are smaller than the zone (BIND's
        // max-ixfr-ratio would send the whole zone otherwise).
        for i in 0..40 {
            z.push_str(&format!("filler{i}.example CNAME .\n"));
        }
        z
    };
    harness::write(
        d,
        "national.rpz.db",
        &zone(1, &["evil.example", "c2.example"]),
    );
    harness::write(d, "xfr.tsig", &key_text());
    let conf = format!(
        r#"options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify explicit;
    also-notify {{ 127.0.0.1 port {listen}; }};
    ixfr-from-differences yes;
}};
include "{dir}/xfr.tsig";
controls {{ }};
zone "national.rpz" {{
    type primary;
    file "national.rpz.db";
    allow-transfer {{ key "zdn-xfr"; }};
}};
"#,
        dir = d.display()
    );
    harness::write(d, "named.conf", &conf);
    let mut named = Daemon::start(
        Command::new("named")
            .args(["-g", "-n", "1", "-4", "-c"])
            .arg(d.join("named.conf")),
        d.join("named.log"),
    );
    let primary: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert!(
        until(Duration::from_secs(20), || TcpStream::connect(primary)
            .is_ok()),
        "named did not start:\n{}",
        named.log()
    );
    let s = pulling_on(primary, "national.rpz", Some(listen));
    assert!(nxdomain(&s, "www.c2.example."), "{}", s.log());
    assert_eq!(pulled(&s, "AXFR"), 1, "{}", s.log());

    // The operator edits the zone and reloads named; BIND keeps the
    // differences (ixfr-from-differences), so schild gets an IXFR.
    harness::write(
        d,
        "national.rpz.db",
        &zone(2, &["evil.example", "fresh.example"]),
    );
    let pid = std::fs::read_to_string(d.join("named.pid")).expect("named.pid");
    assert!(
        Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .expect("kill")
            .success()
    );
    assert!(
        until(Duration::from_secs(20), || {
            reload(&s);
            nxdomain(&s, "fresh.example.")
        }),
        "{}\n{}",
        s.log(),
        named.log()
    );
    assert!(!nxdomain(&s, "c2.example."), "removed on the primary");
    assert_eq!(pulled(&s, "IXFR"), 1, "{}\n{}", s.log(), named.log());
    assert!(named.running());
}
