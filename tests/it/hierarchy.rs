//! A fake DNS hierarchy on loopback: a root (127.0.0.10), the `test.` TLD
//! (127.0.0.11) and `example.test.` plus `cdn.test.` (127.0.0.12), all on
//! one port, served by hickory's authoritative server from zones/test/.
//! schild recurses through it with `resolver.recursion_port` set to that
//! port. It runs once per test binary, on a thread of its own.

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
