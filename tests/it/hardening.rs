//! Issue 15, the server side: hostile or careless clients cannot take the
//! admin listener or DNS down. Loads are bounded and on loopback only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns::{self, query};
use crate::harness::Schild;

const FEED: &str = "evil.example.test\n";

/// A feed server whose answers after the first wait for `open`: a refresh
/// that pulls from it runs as long as the test wants.
struct GatedFeed {
    addr: SocketAddr,
    gate: Arc<(Mutex<bool>, Condvar)>,
    requests: Arc<AtomicUsize>,
}

impl GatedFeed {
    fn start() -> GatedFeed {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind feed server");
        let addr = listener.local_addr().expect("addr");
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (g, r) = (gate.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (g, r) = (g.clone(), r.clone());
                std::thread::spawn(move || {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    if r.fetch_add(1, Ordering::SeqCst) > 0 {
                        let (lock, cv) = &*g;
                        let mut open = lock.lock().expect("gate");
                        while !*open {
                            open = cv.wait(open).expect("gate");
                        }
                    }
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{FEED}",
                        FEED.len()
                    );
                });
            }
        });
        GatedFeed {
            addr,
            gate,
            requests,
        }
    }

    fn open(&self) {
        let (lock, cv) = &*self.gate;
        *lock.lock().expect("gate") = true;
        cv.notify_all();
    }
}

impl Drop for GatedFeed {
    fn drop(&mut self) {
        self.open();
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn http_raw(admin: SocketAddr, request: &str) -> (u16, String) {
    crate::harness::http_raw(admin, request, Duration::from_secs(60))
}

fn post_reload(admin: SocketAddr, extra_headers: &str) -> (u16, String) {
    http_raw(
        admin,
        &format!(
            "POST /reload HTTP/1.1\r\nHost: schild\r\nConnection: close\r\n{extra_headers}Content-Length: 0\r\n\r\n"
        ),
    )
}

#[test]
fn concurrent_reloads_coalesce_and_form_posts_are_refused() {
    let feed = GatedFeed::start();
    let config = format!(
        "[[feed]]\nname = \"gated\"\ntype = \"domains\"\nlocation = \"http://{}/ioc.txt\"\n",
        feed.addr
    );
    let s = Schild::start(&config, &[]);
    let (_, m) = s.http("GET", "/metrics");
    let reloads_at_start = metric(&m, "schild_reloads_total");
    let requests_at_start = metric(&m, "schild_reload_requests_total");

    // A cross-origin HTML form can send these without a preflight.
    for ct in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain;charset=UTF-8",
    ] {
        let (status, body) = post_reload(s.admin, &format!("Content-Type: {ct}\r\n"));
        assert!(status == 415 || status == 403, "{ct}: {status} {body}");
    }
    // Not one of them started a compile.
    let (_, m) = s.http("GET", "/metrics");
    assert_eq!(
        metric(&m, "schild_reload_requests_total"),
        requests_at_start
    );

    // 30 at once while the first compile hangs on the feed.
    let admin = s.admin;
    let clients: Vec<_> = (0..30)
        .map(|_| std::thread::spawn(move || post_reload(admin, "")))
        .collect();
    let all_asked = wait_for(Duration::from_secs(30), || {
        let (_, m) = s.http("GET", "/metrics");
        metric(&m, "schild_reload_requests_total") >= requests_at_start + 30
    });
    assert!(all_asked, "the 30 requests never arrived:\n{}", s.log());
    // SIGHUPs join in too.
    for _ in 0..5 {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &s.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
    feed.open();
    for c in clients {
        let (status, body) = c.join().expect("client");
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("reloaded"), "{body}");
    }
    // The SIGHUPs' compile (if they found none pending) finishes too.
    let settled = wait_for(Duration::from_secs(30), || {
        let log = s.log();
        log.matches("refreshing the policy").count() == log.matches("policy reloaded").count()
    });
    assert!(settled, "{}", s.log());
    let (_, m) = s.http("GET", "/metrics");
    let compiles = metric(&m, "schild_reloads_total") - reloads_at_start;
    assert!(
        (1..=3).contains(&compiles),
        "30 reloads and 5 SIGHUPs ran {compiles} compiles:\n{m}"
    );
    assert!(metric(&m, "schild_reload_coalesced_total") >= 27, "{m}");
    // A plain `curl -X POST` still works.
    let (status, body) = post_reload(s.admin, "");
    assert_eq!(status, 200, "{body}");
    // The feed server saw one pull per compile (the start's included).
    assert!(feed.requests.load(Ordering::SeqCst) as u64 <= compiles + 2);
}

#[test]
fn idle_admin_connections_do_not_stop_dns_or_ready() {
    let s = Schild::start(
        "[[feed]]\nname = \"ioc\"\ntype = \"domains\"\nlocation = \"ioc.txt\"\n",
        &[("ioc.txt", FEED)],
    );
    // 500 connections that never send a request (bounded, loopback).
    let mut idle = Vec::new();
    for _ in 0..500 {
        match TcpStream::connect(s.admin) {
            Ok(c) => idle.push(c),
            Err(e) => panic!("connect: {e}"),
        }
    }
    // DNS over UDP and TCP still answers.
    let m = dns::udp(s.dns, &query("evil.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = dns::tcp(s.dns, &[query("evil.example.test.", RecordType::A)]);
    assert_eq!(m[0].metadata.response_code, ResponseCode::NXDomain);
    // A fresh /ready gets in: the oldest idle connections make room.
    let started = Instant::now();
    let (status, body) = s.http("GET", "/ready");
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "/ready took {:?}",
        started.elapsed()
    );
    let (_, m) = s.http("GET", "/metrics");
    assert!(
        metric(&m, "schild_admin_connections_evicted_total") >= 400,
        "{m}"
    );
    // Those held connections were closed by schild, not left open.
    let mut closed = 0;
    for c in idle.iter_mut().take(100) {
        c.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut b = [0u8; 1];
        let gone = match c.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        if gone {
            closed += 1;
        }
    }
    assert_eq!(closed, 100, "the oldest idle connections stay open");
}

/// A TCP connection to `server` from the loopback address `from`.
fn connect_from(from: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: SocketAddr = format!("{from}:0").parse().expect("address");
    s.bind(&local.into())?;
    s.connect_timeout(&server.into(), Duration::from_secs(5))?;
    Ok(s.into())
}

#[test]
fn slow_tcp_clients_cannot_hold_the_slots() {
    let s = Schild::start(
        "[server]\nallow = [\"127.0.0.1/32\", \"127.0.0.3/32\"]\ntcp_idle_secs = 2\ntcp_max_connections = 32\ntcp_max_per_client = 8\n\n[[feed]]\nname = \"ioc\"\ntype = \"domains\"\nlocation = \"ioc.txt\"\n",
        &[("ioc.txt", FEED)],
    );
    let dns = s.dns;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 200 connections from 127.0.0.2 (outside allow) and 60 from 127.0.0.3
    // (allowed, over its per-client cap), each sending a byte a second of
    // a message that never ends; they reconnect when closed. Bounded: 20 s.
    let mut slow = Vec::new();
    for (from, n) in [("127.0.0.2", 200), ("127.0.0.3", 60)] {
        for _ in 0..n {
            let stop = stop.clone();
            slow.push(std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok(mut c) = connect_from(from, dns) else {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    };
                    // Length 300, then a byte a second.
                    let mut open = c.write_all(&[1, 44]).is_ok();
                    while open && !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_secs(1));
                        open = c.write_all(&[0]).is_ok();
                    }
                }
            }));
        }
    }
    // Queries from 127.0.0.1 over TCP keep working the whole time.
    let started = Instant::now();
    let mut asked = 0;
    let mut failed = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let r = std::panic::catch_unwind(|| {
            dns::tcp(dns, &[query("evil.example.test.", RecordType::A)])
        });
        asked += 1;
        match r {
            Ok(m) if m[0].metadata.response_code == ResponseCode::NXDomain => {}
            Ok(m) => failed.push(format!("{:?}", m[0].metadata.response_code)),
            Err(_) => failed.push("no answer".to_string()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        t.join().expect("slow client");
    }
    assert!(asked > 20, "only {asked} queries");
    assert!(
        failed.is_empty(),
        "{} of {asked} failed: {failed:?}",
        failed.len()
    );
    let (_, m) = s.http("GET", "/metrics");
    // 127.0.0.2 closed at accept; 127.0.0.3 over its cap closed too; the
    // whole-message timer closed the slow ones that got in.
    assert!(metric(&m, "schild_tcp_rejected_total") >= 200, "{m}");
    assert!(metric(&m, "schild_tcp_timeouts_total") >= 8, "{m}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_black_hole_upstream_holds_bounded_work() {
    // Reads every query and never answers (UDP and TCP).
    let hole = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let up = hole.local_addr().expect("addr");
    let tcp_hole = TcpListener::bind(up).expect("bind tcp");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while hole.recv_from(&mut buf).is_ok() {}
    });
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in tcp_hole.incoming().flatten() {
            held.push(c);
        }
    });
    let s = Schild::start(
        &format!(
            "[resolver]\nmode = \"forward\"\nupstreams = [\"{up}\"]\ndnssec = false\ntimeout_secs = 2\nmax_inflight = 200\nmax_inflight_per_client = 200\n\n[[feed]]\nname = \"ioc\"\ntype = \"domains\"\nlocation = \"ioc.txt\"\n"
        ),
        &[("ioc.txt", FEED)],
    );
    let rss_before = rss_kib(s.pid());
    // 20,000 unique names over 10 s from two sockets (bounded, loopback).
    let dns = s.dns;
    let sent = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..2)
        .map(|t| {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                sock.set_nonblocking(true).expect("nonblocking");
                let started = Instant::now();
                let mut buf = [0u8; 4096];
                for i in 0..10_000u32 {
                    let q = query(&format!("n{t}x{i}.flood.test."), RecordType::A)
                        .to_vec()
                        .expect("encode");
                    let _ = sock.send_to(&q, dns);
                    sent.fetch_add(1, Ordering::Relaxed);
                    while sock.recv_from(&mut buf).is_ok() {}
                    // 1,000 a second per socket.
                    let due = started + Duration::from_millis(u64::from(i));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
        })
        .collect();
    // Blocked names answer promptly all along.
    let mut worst = Duration::ZERO;
    let mut peak = rss_before;
    let mut asked = 0;
    while load.iter().any(|l| !l.is_finished()) {
        let t = Instant::now();
        let m = dns::udp_timeout(
            dns,
            &query("evil.example.test.", RecordType::A),
            Duration::from_secs(5),
        )
        .map(|(m, _)| m);
        worst = worst.max(t.elapsed());
        asked += 1;
        assert_eq!(
            m.map(|m| m.metadata.response_code),
            Some(ResponseCode::NXDomain),
            "a blocked name went unanswered under load"
        );
        peak = peak.max(rss_kib(s.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    for l in load {
        l.join().expect("load");
    }
    let (status, m) = s.http("GET", "/metrics");
    assert_eq!(status, 200);
    let overflow = metric(&m, "schild_upstream_overflow_total");
    eprintln!(
        "black hole: {} sent, RSS {rss_before} -> peak {peak} KiB, blocked worst {worst:?} over {asked}, overflow {overflow}",
        sent.load(Ordering::Relaxed)
    );
    assert!(asked > 10);
    assert!(overflow > 1_000, "{m}");
    assert!(
        worst < Duration::from_secs(2),
        "blocked answer took {worst:?}"
    );
    // Generous: the issue saw 13 MB grow to 652 MB.
    assert!(
        peak < rss_before + 150 * 1024,
        "RSS {rss_before} -> {peak} KiB"
    );
    // Past the cap the oldest waiting lookup gets SERVFAIL with EDE 0.
    let first = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    first
        .send_to(
            &query("oldest.flood.test.", RecordType::A)
                .to_vec()
                .expect("encode"),
            dns,
        )
        .expect("send");
    let push = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for i in 0..400 {
        let q = query(&format!("push{i}.flood.test."), RecordType::A)
            .to_vec()
            .expect("encode");
        push.send_to(&q, dns).expect("send");
    }
    let mut buf = [0u8; 4096];
    let (n, _) = first.recv_from(&mut buf).expect("the oldest is answered");
    let m = hickory_proto::op::Message::from_vec(&buf[..n]).expect("decode");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(dns::ede(&m).map(|(c, _)| c), Some(0), "{m:?}");
}
