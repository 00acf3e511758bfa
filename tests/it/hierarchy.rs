//! A fake DNS hierarchy on loopback: a root (127.0.0.10), the `test.` TLD
//! (127.0.0.11) and `example.test.` plus `cdn.test.` (127.0.0.12), all on
//! one port, served by hickory's authoritative server from zones/test/.
//! schild recurses through it with `resolver.recursion_port` set to that
//! port. It runs once per test binary, on a thread of its own.
//!
//! [`NsdHierarchy`] is the larger one the differential test compares
//! schild with Unbound over: NSD serving zones/test/differential/ on port
//! 53 of addresses in 127.53.N.0/24, plus the bad name servers of the
//! fallback cases. Port 53, because Unbound dials every delegation there
//! (it has nothing like `recursion_port`), so the test needs root or
//! CAP_NET_BIND_SERVICE; N is picked at run time so that two runs on one
//! machine do not collide.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name};
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

pub struct Hierarchy {
    pub port: u16,
    /// Root hints naming the fake root.
    pub hints: PathBuf,
    _dir: tempfile::TempDir,
}

pub const ROOT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
pub const TLD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
pub const EXAMPLE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);

impl Hierarchy {
    /// The authoritative server of example.test (for forward-mode tests).
    pub fn example_server(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(EXAMPLE), self.port)
    }

    /// A `[resolver]` section that recurses through this hierarchy (DNSSEC
    /// validation as configured by default; add lines to change it).
    pub fn recursive_section(&self) -> String {
        format!(
            "[resolver]\nmode = \"recursive\"\nroot_hints = \"{}\"\nallow_servers = [\"127.0.0.0/8\"]\nrecursion_port = {}\n",
            self.hints.display(),
            self.port
        )
    }
}

/// The shared hierarchy, started on first use.
pub fn get() -> &'static Hierarchy {
    static H: OnceLock<Hierarchy> = OnceLock::new();
    H.get_or_init(start)
}

fn zone_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/test")
}

pub fn catalog(zones: &[(&str, &str)]) -> Catalog {
    let mut catalog = Catalog::new();
    for (origin, file) in zones {
        let text = std::fs::read_to_string(zone_dir().join(file)).expect("zone file");
        let origin = Name::from_ascii(origin).expect("origin");
        let (origin, records) = Parser::new(text, None, Some(origin))
            .parse()
            .expect("zone parses");
        let handler =
            InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::new(
                origin.clone(),
                records,
                ZoneType::Primary,
                AxfrPolicy::Deny,
                None,
            )
            .expect("zone loads");
        let handler: Arc<dyn ZoneHandler> = Arc::new(handler);
        catalog.upsert(LowerName::new(&origin), vec![handler]);
    }
    catalog
}

fn start() -> Hierarchy {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let servers: [(Ipv4Addr, &[(&str, &str)]); 3] = [
                (ROOT, &[(".", "root.zone")]),
                (TLD, &[("test.", "test.zone")]),
                (
                    EXAMPLE,
                    &[
                        ("example.test.", "example.test.zone"),
                        ("cdn.test.", "cdn.test.zone"),
                    ],
                ),
            ];
            // The root picks the port; the others use the same one.
            let mut port = 0;
            let mut running = Vec::new();
            for (ip, zones) in servers {
                let udp = tokio::net::UdpSocket::bind((ip, port))
                    .await
                    .expect("bind hierarchy udp");
                port = udp.local_addr().expect("addr").port();
                let tcp = tokio::net::TcpListener::bind((ip, port))
                    .await
                    .expect("bind hierarchy tcp");
                let mut server = Server::new(catalog(zones));
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 65_535);
                running.push(server);
            }
            tx.send(port).expect("report port");
            for mut s in running {
                let _ = s.block_until_done().await;
            }
        });
    });
    let port = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("hierarchy started");
    let dir = tempfile::tempdir().expect("tempdir");
    let hints = dir.path().join("hints.root");
    std::fs::write(
        &hints,
        format!(".  3600000  NS  a.root.nic.\na.root.nic.  3600000  A  {ROOT}\n"),
    )
    .expect("hints");
    Hierarchy {
        port,
        hints,
        _dir: dir,
    }
}

/// A stand-alone authoritative server for example.test. that can be
/// stopped, to play a failing upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = udp.local_addr().expect("addr");
                let mut server = Server::new(catalog(&[("example.test.", "example.test.zone")]));
                server.register_socket(udp);
                tx.send(addr).expect("report addr");
                let _ = stop_rx.await;
                let _ = server.shutdown_gracefully().await;
            });
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("upstream started");
        Upstream {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stop answering (the socket is closed).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Hosts of [`NsdHierarchy`] in its /24 (the last octet; the zone files
/// write them as 127.53.0.x).
pub mod host {
    pub const ROOT: u8 = 1;
    /// test. and alt.
    pub const TLD: u8 = 2;
    /// d.test. and sig.test.
    pub const D: u8 = 4;
    /// x.alt., sub.d.test. and the fallback zones (the good server).
    pub const X: u8 = 5;
    /// Answers REFUSED to everything.
    pub const REFUSED: u8 = 20;
    /// Reads every query and never answers (UDP or TCP).
    pub const SILENT: u8 = 21;
    /// Nothing listens here.
    pub const UNREACHABLE: u8 = 22;
    /// Truncates every UDP answer; over TCP it relays to [`X`].
    pub const TRUNCATING: u8 = 23;
    /// Delegated from the root for in-addr.arpa. and invalid.: the zone
    /// routing test counts what reaches it (tests/it/zones.rs).
    pub const LEAK: u8 = 30;
    /// The zone routing test's domain controller (NSD: corp.hospital.test.
    /// and 10.in-addr.arpa.).
    pub const DC: u8 = 40;
    /// The zone routing test's stub zone server (NSD: lab.hospital.test.).
    pub const LAB: u8 = 41;
    /// A child zone of the stub zone (NSD: kids.lab.hospital.test.).
    pub const LAB_CHILD: u8 = 42;
    /// The first host free for the test's resolvers.
    pub const FREE: u8 = 100;
}

/// Which NSD serves which zones: (host, [(zone, file in zones/test/differential)]).
const NSD_SERVERS: &[(u8, &[(&str, &str)])] = &[
    (host::ROOT, &[(".", "root.zone")]),
    (host::TLD, &[("test.", "test.zone"), ("alt.", "alt.zone")]),
    (
        host::D,
        &[("d.test.", "d.test.zone"), ("sig.test.", "sig.test.zone")],
    ),
    (
        host::X,
        &[
            ("x.alt.", "x.alt.zone"),
            ("sub.d.test.", "sub.d.test.zone"),
            ("refused1.d.test.", "refused1.d.test.zone"),
            ("refused2.d.test.", "refused2.d.test.zone"),
            ("silent1.d.test.", "silent1.d.test.zone"),
            ("silent2.d.test.", "silent2.d.test.zone"),
            ("unreach1.d.test.", "unreach1.d.test.zone"),
            ("unreach2.d.test.", "unreach2.d.test.zone"),
            ("trunc.d.test.", "trunc.d.test.zone"),
        ],
    ),
];

/// A DNS hierarchy served by NSD, one NSD per server address (NSD serves
/// every zone it has on every address it listens on, so a root that also
/// served test. would answer for it instead of referring). Stopped on drop.
pub struct NsdHierarchy {
    /// The first three octets of the /24: 127.53.N.
    net: [u8; 3],
    /// Root hints naming the NSD root (for schild and Unbound alike).
    pub hints: PathBuf,
    nsd: Vec<crate::harness::Daemon>,
    _bad: BadServers,
    pub dir: tempfile::TempDir,
}

impl NsdHierarchy {
    /// `None` when a tool or the privilege for port 53 is missing outside
    /// CI (under CI=true that is a failure).
    pub fn start() -> Option<NsdHierarchy> {
        use crate::harness::have;
        if !["nsd", "dnssec-keygen", "dnssec-signzone"]
            .iter()
            .all(|t| have(t))
        {
            return None;
        }
        let net = pick_net()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let ip = |h: u8| Ipv4Addr::new(net[0], net[1], net[2], h);
        let zones = dir.path().join("zones");
        std::fs::create_dir_all(&zones).expect("mkdir zones");
        let prefix = format!("{}.{}.{}.", net[0], net[1], net[2]);
        for (_, served) in NSD_SERVERS {
            for (_, file) in *served {
                let text = std::fs::read_to_string(zone_dir().join("differential").join(file))
                    .expect("zone file");
                std::fs::write(zones.join(file), text.replace("127.53.0.", &prefix))
                    .expect("write zone");
            }
        }
        sign_zone(&zones, "sig.test.", "sig.test.zone", "test.zone");
        let mut nsd = Vec::new();
        for (h, served) in NSD_SERVERS {
            nsd.push(start_nsd(dir.path(), ip(*h), served));
        }
        let bad = BadServers::start(&[
            (ip(host::REFUSED), Bad::Refused),
            (ip(host::SILENT), Bad::Silent),
            (
                ip(host::TRUNCATING),
                Bad::Truncating(SocketAddr::new(IpAddr::V4(ip(host::X)), 53)),
            ),
        ]);
        for ((h, served), daemon) in NSD_SERVERS.iter().zip(nsd.iter_mut()) {
            let addr = SocketAddr::new(IpAddr::V4(ip(*h)), 53);
            let zone = served[0].0;
            let up = crate::harness::until(Duration::from_secs(20), || {
                !daemon.running() || answers(addr, zone)
            });
            assert!(
                up && daemon.running(),
                "NSD on {addr} did not come up:\n{}",
                daemon.log()
            );
        }
        let hints = dir.path().join("root.hints");
        std::fs::write(
            &hints,
            format!(
                ".  3600000  NS  ns.nic.\nns.nic.  3600000  A  {}\n",
                ip(host::ROOT)
            ),
        )
        .expect("hints");
        Some(NsdHierarchy {
            net,
            hints,
            nsd,
            _bad: bad,
            dir,
        })
    }

    /// Start one more NSD on `host` serving `zones` (origin, file name,
    /// text with 127.53.0.x addresses), stopped with the hierarchy.
    pub fn serve(&mut self, host: u8, zones: &[(&str, &str, &str)]) {
        let prefix = format!("{}.{}.{}.", self.net[0], self.net[1], self.net[2]);
        let dir = self.dir.path().to_path_buf();
        for (_, file, text) in zones {
            std::fs::write(
                dir.join("zones").join(file),
                text.replace("127.53.0.", &prefix),
            )
            .expect("write zone");
        }
        let served: Vec<(&str, &str)> = zones.iter().map(|(o, f, _)| (*o, *f)).collect();
        self.nsd.push(start_nsd_up(&dir, self.ip(host), &served));
    }

    /// An address of the hierarchy's /24.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }

    /// schild's `[resolver]` section recursing through this hierarchy on
    /// port 53, without DNSSEC validation.
    pub fn recursive_section(&self) -> String {
        format!(
            "[resolver]\nmode = \"recursive\"\nroot_hints = \"{}\"\nallow_servers = [\"127.0.0.0/8\"]\ndnssec = false\n",
            self.hints.display()
        )
    }

    /// Every NSD still running (checked after the test, so a crash under
    /// some query does not pass for a difference).
    pub fn all_running(&mut self) -> Result<(), String> {
        for d in &mut self.nsd {
            if !d.running() {
                return Err(d.log());
            }
        }
        Ok(())
    }
}

/// A /24 in 127.53.0.0/16 where nothing listens on port 53 yet. `None`
/// (outside CI) when binding port 53 is not permitted.
pub fn pick_net() -> Option<[u8; 3]> {
    // Taken by an earlier hierarchy of this process (two tests may start
    // theirs at once, before either has bound its addresses).
    static CLAIMED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    let start = std::process::id() % 200;
    for i in 0..200 {
        let n = u8::try_from(20 + (start + i) % 200).expect("below 220");
        if claimed.contains(&n) {
            continue;
        }
        match net_free(n) {
            Ok(true) => {
                claimed.push(n);
                return Some([127, 53, n]);
            }
            Ok(false) => continue,
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "binding port 53 on loopback is needed under CI=true: {e}"
                );
                eprintln!("skipping: binding port 53 needs root or CAP_NET_BIND_SERVICE ({e})");
                return None;
            }
        }
    }
    panic!("no free /24 in 127.53.0.0/16");
}

/// Whether port 53 (UDP and TCP) is free on every host the test uses in
/// 127.53.`n`.0/24; `Err` if binding is not permitted at all.
fn net_free(n: u8) -> std::io::Result<bool> {
    let hosts = [
        host::ROOT,
        host::TLD,
        host::D,
        host::X,
        host::REFUSED,
        host::SILENT,
        host::UNREACHABLE,
        host::TRUNCATING,
        host::LEAK,
        host::DC,
        host::LAB,
        host::LAB_CHILD,
        host::FREE,
        host::FREE + 1,
        host::FREE + 2,
        host::FREE + 3,
    ];
    for h in hosts {
        let addr = (Ipv4Addr::new(127, 53, n, h), 53);
        for r in [
            std::net::UdpSocket::bind(addr).map(drop),
            std::net::TcpListener::bind(addr).map(drop),
        ] {
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(e),
                Err(_) => return Ok(false),
            }
        }
    }
    Ok(true)
}

/// Sign `zone` (NSEC3, no salt, 0 iterations) with fresh keys, replace
/// its file with the signed zone, and append its DS to `parent_file`.
fn sign_zone(dir: &Path, zone: &str, file: &str, parent_file: &str) {
    sign_zone_with(dir, zone, file, Some(parent_file), &["-3", "-", "-H", "0"]);
}

/// Sign `zone` in `dir/zones`-style `dir` with a fresh KSK and ZSK
/// (ECDSAP256SHA256) and `extra` dnssec-signzone arguments, replace its
/// file with the signed zone (one record a line), append its DS to
/// `parent_file` if given; returns the KSK's `K*.key` file (a DNSKEY
/// record: a trust anchor).
pub fn sign_zone_with(
    dir: &Path,
    zone: &str,
    file: &str,
    parent_file: Option<&str>,
    extra: &[&str],
) -> PathBuf {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir keys");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(&keys)
            .output()
            .expect("run a bind9 tool");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mut ksk = String::new();
    for is_ksk in [true, false] {
        let mut args = vec!["dnssec-keygen", "-q", "-K", ".", "-a", "ECDSAP256SHA256"];
        if is_ksk {
            args.extend(["-f", "KSK"]);
        }
        args.extend(["-n", "ZONE", zone]);
        let name = run(&args);
        if is_ksk {
            ksk = name;
        }
    }
    let unsigned = dir.join(file);
    let signed = keys.join(format!("signed-{file}"));
    let (unsigned_s, signed_s) = (
        unsigned.to_str().expect("utf-8 path"),
        signed.to_str().expect("utf-8 path"),
    );
    let mut args = vec![
        "dnssec-signzone",
        "-q",
        "-K",
        ".",
        "-d",
        ".",
        "-S",
        "-O",
        "full",
    ];
    args.extend(extra);
    args.extend(["-o", zone, "-f", signed_s, unsigned_s]);
    run(&args);
    std::fs::rename(&signed, &unsigned).expect("signed zone");
    if let Some(parent_file) = parent_file {
        let ds = std::fs::read_to_string(keys.join(format!("dsset-{zone}"))).expect("dsset");
        let mut parent = std::fs::read_to_string(dir.join(parent_file)).expect("parent zone");
        parent.push_str(&ds);
        std::fs::write(dir.join(parent_file), parent).expect("parent zone");
    }
    keys.join(format!("{ksk}.key"))
}

/// [`start_nsd`], and wait until it answers for its first zone.
pub fn start_nsd_up(dir: &Path, ip: Ipv4Addr, zones: &[(&str, &str)]) -> crate::harness::Daemon {
    let mut daemon = start_nsd(dir, ip, zones);
    let addr = SocketAddr::new(IpAddr::V4(ip), 53);
    let up = crate::harness::until(Duration::from_secs(20), || {
        !daemon.running() || answers(addr, zones[0].0)
    });
    assert!(
        up && daemon.running(),
        "NSD on {addr} did not come up:\n{}",
        daemon.log()
    );
    daemon
}

pub fn start_nsd(dir: &Path, ip: Ipv4Addr, zones: &[(&str, &str)]) -> crate::harness::Daemon {
    let own = dir.join(format!("nsd-{ip}"));
    std::fs::create_dir_all(&own).expect("mkdir nsd");
    let zone_list: String = zones
        .iter()
        .map(|(name, file)| format!("zone:\n  name: \"{name}\"\n  zonefile: \"{file}\"\n"))
        .collect();
    let conf = format!(
        "server:\n  ip-address: {ip}@53\n  do-ip6: no\n  username: \"\"\n  chroot: \"\"\n  \
         zonesdir: \"{zones}\"\n  database: \"\"\n  pidfile: \"{own}/nsd.pid\"\n  \
         xfrdfile: \"{own}/xfrd.state\"\n  zonelistfile: \"{own}/zone.list\"\n  xfrdir: \"{own}\"\n  \
         logfile: \"{own}/nsd.log\"\n  server-count: 1\n  reuseport: no\n  verbosity: 1\n  \
         hide-version: yes\nremote-control:\n  control-enable: no\n{zone_list}",
        zones = dir.join("zones").display(),
        own = own.display(),
    );
    let path = own.join("nsd.conf");
    std::fs::write(&path, conf).expect("nsd.conf");
    crate::harness::Daemon::start(
        std::process::Command::new("nsd")
            .arg("-d")
            .arg("-c")
            .arg(&path),
        own.join("stderr.log"),
    )
}

/// Whether `server` answers a question about `zone` at all (RD=0).
pub fn answers(server: SocketAddr, zone: &str) -> bool {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::RecordType;
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii(zone).expect("zone name"),
        RecordType::SOA,
    ));
    let bytes = q.to_vec().expect("encode");
    crate::dns::udp_raw(server, &bytes, Duration::from_millis(500)).is_some()
}

/// What a bad name server does.
#[derive(Debug, Clone, Copy)]
enum Bad {
    Refused,
    Silent,
    /// TC=1 and no records over UDP; over TCP, relay to this server.
    Truncating(SocketAddr),
}

/// The bad name servers of the fallback cases, on port 53 of their
/// addresses, on a thread of their own; stopped on drop.
struct BadServers {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BadServers {
    fn start(servers: &[(Ipv4Addr, Bad)]) -> BadServers {
        let servers = servers.to_vec();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                for (ip, bad) in servers {
                    let udp = tokio::net::UdpSocket::bind((ip, 53))
                        .await
                        .expect("bind bad udp");
                    let tcp = tokio::net::TcpListener::bind((ip, 53))
                        .await
                        .expect("bind bad tcp");
                    tokio::spawn(bad_udp(udp, bad));
                    tokio::spawn(bad_tcp(tcp, bad));
                }
                tx.send(()).expect("report started");
                let _ = stop_rx.await;
            });
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("bad servers started");
        BadServers {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for BadServers {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer of a REFUSED or truncating server: the question, an OPT if
/// the query had one, no records.
fn bad_reply(query: &[u8], bad: Bad) -> Option<Vec<u8>> {
    use hickory_proto::op::{Edns, Message, ResponseCode};
    let q = Message::from_vec(query).ok()?;
    let mut m = Message::response(q.metadata.id, q.metadata.op_code);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    match bad {
        Bad::Refused => m.metadata.response_code = ResponseCode::Refused,
        Bad::Truncating(_) => {
            m.metadata.authoritative = true;
            m.metadata.truncation = true;
        }
        Bad::Silent => return None,
    }
    for query in q.queries {
        m.add_query(query);
    }
    if q.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().ok()
}

async fn bad_udp(socket: tokio::net::UdpSocket, bad: Bad) {
    let mut buf = vec![0u8; 4096];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if let Some(reply) = bad_reply(&buf[..n], bad) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

async fn bad_tcp(listener: tokio::net::TcpListener, bad: Bad) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(bad_tcp_connection(stream, bad));
    }
}

async fn read_frame(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg).await.ok()?;
    Some(msg)
}

async fn write_frame(stream: &mut tokio::net::TcpStream, msg: &[u8]) -> Option<()> {
    use tokio::io::AsyncWriteExt;
    let len = u16::try_from(msg.len()).ok()?.to_be_bytes();
    stream.write_all(&[&len[..], msg].concat()).await.ok()
}

async fn bad_tcp_connection(mut stream: tokio::net::TcpStream, bad: Bad) {
    while let Some(query) = read_frame(&mut stream).await {
        let reply = match bad {
            // Read on, answer nothing, until the client gives up.
            Bad::Silent => continue,
            Bad::Refused => bad_reply(&query, bad),
            Bad::Truncating(to) => relay(to, &query).await,
        };
        match reply {
            Some(r) if write_frame(&mut stream, &r).await.is_some() => {}
            _ => return,
        }
    }
}

/// Ask `to` over TCP (bounded by 10 s).
async fn relay(to: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let ask = async {
        let mut up = tokio::net::TcpStream::connect(to).await.ok()?;
        write_frame(&mut up, query).await?;
        read_frame(&mut up).await
    };
    tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .ok()
        .flatten()
}
