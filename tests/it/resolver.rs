//! The resolver's guards against hammering upstream, seen from outside:
//! identical concurrent misses share one upstream query, a failed question
//! is not asked again within `servfail_ttl_secs` (unless a stale answer can
//! be served), CD=1 gets data that fails validation without that data
//! ever reaching a CD=0 client (in forward mode by asking the upstream
//! with CD=1), and a non-validating forwarder passes on its upstream's AD.
//!
//! [`CountingUpstream`] is a DNS server on loopback that counts every query
//! it receives (UDP and TCP; retransmissions of one message count once) and
//! answers, fails or stays silent on demand, after a configurable delay.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns::{addresses, ede, query, udp};
use crate::harness::Schild;
use crate::hierarchy;

/// What the counting upstream does with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `A 192.0.2.1` (TTL 300) for A queries, an empty NOERROR otherwise.
    Address,
    /// The same with AD=1, as a validating upstream says "secure".
    Authentic,
    /// SERVFAIL.
    ServFail,
    /// No answer at all.
    Silent,
}

struct UpState {
    reply: Reply,
    delay: Duration,
    /// Message ids received per lower-case name (with the trailing dot):
    /// a UDP retransmission keeps its id and is not a new query.
    seen: HashMap<String, HashSet<u16>>,
    /// Per name: whether a query for it came with CD=1, and with DO=1.
    bits: HashMap<String, (bool, bool)>,
}

/// A fake upstream DNS server that counts what it is asked.
pub struct CountingUpstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<UpState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(state: &Mutex<UpState>) -> MutexGuard<'_, UpState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Count the query and build the reply (`None`: stay silent).
async fn respond(state: &Mutex<UpState>, bytes: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(bytes).ok()?;
    let first = q.queries.first()?.clone();
    let (reply, delay) = {
        let mut s = lock(state);
        let name = first.name().to_lowercase().to_ascii();
        s.seen
            .entry(name.clone())
            .or_default()
            .insert(q.metadata.id);
        let dnssec_ok = q.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let bits = s.bits.entry(name).or_default();
        bits.0 |= q.metadata.checking_disabled;
        bits.1 |= dnssec_ok;
        (s.reply, s.delay)
    };
    tokio::time::sleep(delay).await;
    let mut m = Message::response(q.metadata.id, q.metadata.op_code);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_query(first.clone());
    match reply {
        Reply::Silent => return None,
        Reply::ServFail => m.metadata.response_code = ResponseCode::ServFail,
        Reply::Address | Reply::Authentic => {
            m.metadata.authentic_data = reply == Reply::Authentic;
            if first.query_type() == RecordType::A {
                m.add_answer(Record::from_rdata(
                    first.name().clone(),
                    300,
                    RData::A(A::new(192, 0, 2, 1)),
                ));
            }
        }
    }
    m.to_vec().ok()
}

impl CountingUpstream {
    pub fn start(reply: Reply, delay: Duration) -> CountingUpstream {
        let state = Arc::new(Mutex::new(UpState {
            reply,
            delay,
            seen: HashMap::new(),
            bits: HashMap::new(),
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                // A free UDP port whose TCP twin is free too (other tests
                // bind ports at the same time): try again when it is not.
                let mut attempt = 0;
                let (udp, tcp, addr) = loop {
                    attempt += 1;
                    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                        .await
                        .expect("bind udp");
                    let addr = udp.local_addr().expect("addr");
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(tcp) => break (Arc::new(udp), tcp, addr),
                        Err(e) if attempt < 50 => {
                            let _ = e;
                            continue;
                        }
                        Err(e) => panic!("no UDP+TCP port pair after 50 tries: {e}"),
                    }
                };
                tx.send(addr).expect("report addr");
                let udp_loop = {
                    let st = st.clone();
                    async move {
                        let mut buf = vec![0u8; 4096];
                        loop {
                            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                                continue;
                            };
                            let bytes = buf[..n].to_vec();
                            let (st, udp) = (st.clone(), udp.clone());
                            tokio::spawn(async move {
                                if let Some(out) = respond(&st, &bytes).await {
                                    let _ = udp.send_to(&out, peer).await;
                                }
                            });
                        }
                    }
                };
                let tcp_loop = async move {
                    loop {
                        let Ok((conn, _)) = tcp.accept().await else {
                            continue;
                        };
                        let st = st.clone();
                        tokio::spawn(async move {
                            // One message per connection is all a
                            // forwarder's TCP fallback needs here.
                            let mut conn = conn;
                            let mut len = [0u8; 2];
                            if conn.read_exact(&mut len).await.is_err() {
                                return;
                            }
                            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                            if conn.read_exact(&mut msg).await.is_err() {
                                return;
                            }
                            if let Some(out) = respond(&st, &msg).await {
                                let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                                framed.extend_from_slice(&out);
                                let _ = conn.write_all(&framed).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = udp_loop => {}
                    _ = tcp_loop => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("upstream started");
        CountingUpstream {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn set_reply(&self, reply: Reply) {
        lock(&self.state).reply = reply;
    }

    /// Queries received for `name` (lower case, trailing dot).
    pub fn count(&self, name: &str) -> usize {
        lock(&self.state).seen.get(name).map_or(0, HashSet::len)
    }

    /// Whether a query for `name` came with CD=1, and one with DO=1.
    pub fn bits(&self, name: &str) -> (bool, bool) {
        lock(&self.state)
            .bits
            .get(name)
            .copied()
            .unwrap_or_default()
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn forward_to(up: &CountingUpstream, extra: &str) -> Schild {
    let cfg = format!(
        "[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = false\n{extra}\n",
        up.addr
    );
    Schild::start(&cfg, &[])
}

/// The value of an unlabelled metric.
fn metric(s: &Schild, name: &str) -> u64 {
    let (_, text) = s.http("GET", "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
}

/// `n` clients ask the same question at the same moment.
fn ask_together(s: &Schild, name: &str, n: usize) -> Vec<Message> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (dns, barrier, name) = (s.dns, barrier.clone(), name.to_string());
            std::thread::spawn(move || {
                let q = query(&name, RecordType::A);
                barrier.wait();
                udp(dns, &q)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect()
}

#[test]
fn identical_concurrent_misses_share_one_upstream_query() {
    // Slow enough that every client asks while the first query is out.
    let up = CountingUpstream::start(Reply::Address, Duration::from_millis(700));
    let s = forward_to(&up, "timeout_secs = 1\nservfail_ttl_secs = 1");

    let answers = ask_together(&s, "same.example.", 20);
    for m in &answers {
        assert_eq!(addresses(m), ["192.0.2.1"], "{m:?}");
    }
    assert_eq!(
        up.count("same.example."),
        1,
        "one upstream query for 20 clients"
    );
    // hickory's name-server pool also merges identical wire queries, so the
    // count above would hold without schild's own coalescing; the metric
    // shows the 19 that never reached the forwarder (or the recursor).
    assert_eq!(metric(&s, "schild_upstream_coalesced_total"), 19);
    assert_eq!(metric(&s, "schild_cache_misses_total"), 20);

    // An upstream that never answers: every waiter gets the failure, none
    // hangs, and the question is not left behind as "in flight".
    up.set_reply(Reply::Silent);
    let answers = ask_together(&s, "down.example.", 10);
    for m in &answers {
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
        assert_eq!(ede(m).map(|e| e.0), Some(22), "EDE No Reachable Authority");
    }
    assert_eq!(metric(&s, "schild_upstream_coalesced_total"), 28);
    let asked = up.count("down.example.");
    assert!(asked >= 1);
    // Once servfail_ttl has passed, the next client asks upstream again.
    std::thread::sleep(Duration::from_millis(1200));
    up.set_reply(Reply::Address);
    let m = udp(s.dns, &query("down.example.", RecordType::A));
    assert_eq!(addresses(&m), ["192.0.2.1"], "{m:?}");
    assert_eq!(up.count("down.example."), asked + 1);
    crate::serve::promtool_check(&s.http("GET", "/metrics").1);
}

#[test]
fn a_failed_question_is_not_asked_again_within_servfail_ttl() {
    let up = CountingUpstream::start(Reply::ServFail, Duration::ZERO);
    let s = forward_to(&up, "servfail_ttl_secs = 2");
    let m = udp(s.dns, &query("broken.example.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let asked = up.count("broken.example.");
    assert!(asked >= 1);

    // A storm within servfail_ttl: answered from memory, upstream untouched.
    for _ in 0..20 {
        let m = udp(s.dns, &query("broken.example.", RecordType::A));
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(ede(&m).is_some(), "still says why: {m:?}");
    }
    assert_eq!(up.count("broken.example."), asked);
    assert_eq!(metric(&s, "schild_cache_servfail_answers_total"), 20);
    // Other questions are not affected.
    udp(s.dns, &query("other.example.", RecordType::A));
    assert_eq!(up.count("other.example."), asked);

    // Like BIND, CD=1 does not read the failure memory.
    let mut cd = query("broken.example.", RecordType::A);
    cd.metadata.checking_disabled = true;
    let m = udp(s.dns, &cd);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.metadata.checking_disabled, "CD is echoed");
    let with_cd = up.count("broken.example.");
    assert!(with_cd > asked);

    // After servfail_ttl the name is tried again, and a repaired upstream
    // is noticed.
    std::thread::sleep(Duration::from_millis(2200));
    up.set_reply(Reply::Address);
    let m = udp(s.dns, &query("broken.example.", RecordType::A));
    assert_eq!(addresses(&m), ["192.0.2.1"], "{m:?}");
    assert_eq!(up.count("broken.example."), with_cd + 1);

    // servfail_ttl_secs = 0: every query goes upstream.
    up.set_reply(Reply::ServFail);
    let s = forward_to(&up, "servfail_ttl_secs = 0");
    let before = up.count("again.example.");
    udp(s.dns, &query("again.example.", RecordType::A));
    let one = up.count("again.example.") - before;
    udp(s.dns, &query("again.example.", RecordType::A));
    assert_eq!(up.count("again.example.") - before, 2 * one);
}

#[test]
fn a_stale_answer_beats_a_remembered_failure() {
    let up = CountingUpstream::start(Reply::Address, Duration::ZERO);
    let s = forward_to(&up, "max_ttl_secs = 1\nservfail_ttl_secs = 10");
    let m = udp(s.dns, &query("stale.example.", RecordType::A));
    assert_eq!(addresses(&m), ["192.0.2.1"]);
    up.set_reply(Reply::ServFail);
    std::thread::sleep(Duration::from_millis(1500));
    // The upstream fails: the expired answer is served (RFC 8767)...
    let m = udp(s.dns, &query("stale.example.", RecordType::A));
    assert_eq!(addresses(&m), ["192.0.2.1"], "served stale: {m:?}");
    assert_eq!(ede(&m).map(|e| e.0), Some(3), "EDE Stale Answer");
    let asked = up.count("stale.example.");
    // ...and again while the failure is remembered, without asking.
    for _ in 0..5 {
        let m = udp(s.dns, &query("stale.example.", RecordType::A));
        assert_eq!(addresses(&m), ["192.0.2.1"], "served stale: {m:?}");
        assert_eq!(m.answers[0].ttl, 30);
    }
    assert_eq!(up.count("stale.example."), asked);
    assert_eq!(metric(&s, "schild_cache_stale_answers_total"), 6);
    assert_eq!(metric(&s, "schild_cache_servfail_answers_total"), 5);
}

#[test]
fn checking_disabled_gets_data_that_fails_validation() {
    // The fake hierarchy is unsigned while the built-in root trust anchor
    // says the root is signed: every answer from it is bogus.
    let s = Schild::start(&hierarchy::get().recursive_section(), &[]);
    let cd = |name: &str, qtype| {
        let mut q = query(name, qtype);
        q.metadata.checking_disabled = true;
        udp(s.dns, &q)
    };

    // CD=1 first: the data, CD echoed, AD clear.
    let m = cd("www.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(addresses(&m), ["192.0.2.80"]);
    assert!(m.metadata.checking_disabled);
    assert!(!m.metadata.authentic_data);
    // Now cached for CD=1, but never handed to a CD=0 client.
    let m = udp(s.dns, &query("www.example.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    assert!(m.answers.is_empty());
    assert_eq!(ede(&m).map(|e| e.0), Some(6), "EDE DNSSEC Bogus");
    assert!(!m.metadata.checking_disabled);
    // And the CD=0 failure does not stop the CD=1 client.
    let m = cd("www.example.test.", RecordType::A);
    assert_eq!(addresses(&m), ["192.0.2.80"]);
    // Negative answers too: NXDOMAIN with CD=1.
    let m = cd("nothing-here.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
}

#[test]
fn forward_mode_passes_cd_past_validation() {
    // schild validates with the built-in root keys; the upstream's answers
    // carry no signatures, so they cannot validate.
    let up = CountingUpstream::start(Reply::Address, Duration::ZERO);
    let s = Schild::start(
        &format!(
            "[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = true\n",
            up.addr
        ),
        &[],
    );
    let m = udp(s.dns, &query("cd.example.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    assert!(m.answers.is_empty());
    // CD=1: the client validates; the question goes upstream with CD=1 and
    // the data comes back, AD clear.
    let mut q = query("cd.example.", RecordType::A);
    q.metadata.checking_disabled = true;
    let m = udp(s.dns, &q);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(addresses(&m), ["192.0.2.1"]);
    assert!(m.metadata.checking_disabled && !m.metadata.authentic_data);
    assert!(up.bits("cd.example.").0, "CD=1 went upstream");
}

#[test]
fn forward_mode_passes_on_the_upstreams_ad_and_do() {
    let up = CountingUpstream::start(Reply::Authentic, Duration::ZERO);
    let s = forward_to(&up, "");
    let ask = |ad: bool, dnssec_ok: bool| {
        let mut q = query("ad.example.", RecordType::A);
        q.metadata.authentic_data = ad;
        if let Some(e) = q.edns.as_mut() {
            e.set_dnssec_ok(dnssec_ok);
        }
        udp(s.dns, &q)
    };
    // RFC 6840 5.7 and 5.8: AD only to a client that set AD or DO.
    let plain = ask(false, false);
    assert_eq!(addresses(&plain), ["192.0.2.1"]);
    assert!(!plain.metadata.authentic_data, "{plain:?}");
    assert!(ask(true, false).metadata.authentic_data);
    assert!(ask(false, true).metadata.authentic_data);
    assert!(up.bits("ad.example.").1, "DO=1 went upstream");
}

/// The packet cache (whole UDP answers in wire form) is only a faster way
/// to give the same answer: the second asking is not sent upstream and
/// comes back with its own ID, its own spelling of the name (0x20) and a
/// TTL aged by the time in the cache; a reload that lists the name, or a
/// flush, voids it; and a `log-only` hit is never replayed silently: each
/// asking is a sighting.
#[test]
fn the_packet_cache_replays_answers_and_never_outlives_the_policy() {
    let up = CountingUpstream::start(Reply::Address, Duration::ZERO);
    let cfg = format!(
        "[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = false\n\n\
         [[feed]]\nname = \"ioc\"\ntype = \"domains\"\nlocation = \"ioc.txt\"\naction = \"nxdomain\"\n\n\
         [[feed]]\nname = \"trial\"\ntype = \"domains\"\nlocation = \"trial.txt\"\naction = \"log-only\"\n",
        up.addr
    );
    let s = Schild::start(
        &cfg,
        &[("ioc.txt", "other.test\n"), ("trial.txt", "watched.test\n")],
    );

    let first = udp(s.dns, &query("cached.example.test.", RecordType::A));
    assert_eq!(addresses(&first), ["192.0.2.1"]);
    std::thread::sleep(Duration::from_millis(1100));
    let mut q = query("CaChEd.ExAmple.TEST.", RecordType::A);
    q.metadata.id = 0x4242;
    let again = udp(s.dns, &q);
    assert_eq!(
        up.count("cached.example.test."),
        1,
        "replayed, not asked again"
    );
    assert_eq!(again.metadata.id, 0x4242);
    assert_eq!(again.queries[0].name().to_ascii(), "CaChEd.ExAmple.TEST.");
    assert_eq!(again.answers[0].name.to_ascii(), "CaChEd.ExAmple.TEST.");
    assert_eq!(addresses(&again), ["192.0.2.1"]);
    assert!(
        again.answers[0].ttl < first.answers[0].ttl,
        "aged: {} then {}",
        first.answers[0].ttl,
        again.answers[0].ttl
    );
    assert!(metric(&s, "schild_packet_cache_hits_total") >= 1);

    // The feed lists it: the kept answer must not outlive the old list.
    crate::harness::write(s.dir.path(), "ioc.txt", "other.test\ncached.example.test\n");
    let (status, body) = s.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");
    let blocked = udp(s.dns, &query("cached.example.test.", RecordType::A));
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ede(&blocked).map(|(c, _)| c), Some(15));

    // A flush voids it too: the next asking goes upstream.
    udp(s.dns, &query("flushed.example.test.", RecordType::A));
    udp(s.dns, &query("flushed.example.test.", RecordType::A));
    assert_eq!(up.count("flushed.example.test."), 1);
    let (status, body) = s.http("POST", "/flush?all=1");
    assert_eq!(status, 200, "{body}");
    udp(s.dns, &query("flushed.example.test.", RecordType::A));
    assert_eq!(
        up.count("flushed.example.test."),
        2,
        "asked again after the flush"
    );

    // log-only: resolved every time, and every time a sighting.
    for _ in 0..3 {
        let m = udp(s.dns, &query("www.watched.test.", RecordType::A));
        assert_eq!(addresses(&m), ["192.0.2.1"]);
    }
    // The local record folds identical hits within a second into one line
    // with a count; the counts add up to every asking.
    let count = || -> u64 {
        std::fs::read_to_string(s.path("state/sightings.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["qname"] == "www.watched.test")
            .map(|v| v["count"].as_u64().unwrap_or(1))
            .sum()
    };
    crate::harness::until(Duration::from_secs(5), || count() >= 3);
    assert_eq!(count(), 3, "one sighting per asking");
    let (_, metrics) = s.http("GET", "/metrics");
    let line = "schild_blocked_answers_total{action=\"log-only\",feed=\"trial\"} 3";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}

/// A burst from several clients at once is read and answered in batches
/// (`recvmmsg`/`sendmmsg` on Linux): every query still gets its own answer,
/// on its own socket, with its own ID and spelling, whether it was blocked,
/// replayed from the packet cache or resolved by a task of its own.
#[test]
fn a_burst_from_many_clients_gets_each_query_its_own_answer() {
    let up = CountingUpstream::start(Reply::Address, Duration::ZERO);
    let cfg = format!(
        // All clients are 127.0.0.1: room for their 128 fresh names at once
        // (past max_inflight_per_client the oldest would get SERVFAIL).
        "[resolver]\nmode = \"forward\"\nupstreams = [\"{}\"]\ndnssec = false\n\
         max_inflight_per_client = 1000\n\n\
         [[feed]]\nname = \"ioc\"\ntype = \"domains\"\nlocation = \"ioc.txt\"\naction = \"nxdomain\"\n",
        up.addr
    );
    let listed: String = (0..10).map(|i| format!("b{i}.test\n")).collect();
    let s = Schild::start(&cfg, &[("ioc.txt", &listed)]);
    // Names asked again and again, so that most come from the packet cache.
    for i in 0..5 {
        let m = udp(s.dns, &query(&format!("c{i}.example.test."), RecordType::A));
        assert_eq!(addresses(&m), ["192.0.2.1"], "{m:?}");
    }

    const CLIENTS: usize = 8;
    const EACH: usize = 48;
    let clients: Vec<std::net::UdpSocket> = (0..CLIENTS)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("client socket"))
        .collect();
    // Per client: ID -> (name as asked, blocked?).
    let mut asked: Vec<HashMap<u16, (String, bool)>> = vec![HashMap::new(); CLIENTS];
    for round in 0..EACH {
        for (c, sock) in clients.iter().enumerate() {
            let (name, blocked) = match (round + c) % 3 {
                0 => (format!("B{}.TeSt.", round % 10), true),
                1 => (format!("C{}.eXample.test.", round % 5), false),
                _ => (format!("fresh-{c}-{round}.example.test."), false),
            };
            let mut q = query(&name, RecordType::A);
            q.metadata.id = (c * EACH + round) as u16;
            asked[c].insert(q.metadata.id, (name, blocked));
            sock.send_to(&q.to_vec().expect("encode"), s.dns)
                .expect("send");
        }
    }
    let mut buf = [0u8; 4096];
    for (c, sock) in clients.iter().enumerate() {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        for _ in 0..EACH {
            let (n, from) = sock
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("client {c}: an answer is missing: {e}"));
            assert_eq!(from, s.dns);
            let m = Message::from_vec(&buf[..n]).expect("an answer");
            let (name, blocked) = asked[c]
                .remove(&m.metadata.id)
                .unwrap_or_else(|| panic!("client {c} got an answer it never asked for: {m:?}"));
            assert_eq!(m.queries[0].name().to_ascii(), name, "{m:?}");
            if blocked {
                assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
            } else {
                assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
                assert_eq!(addresses(&m), ["192.0.2.1"], "{m:?}");
                assert_eq!(m.answers[0].name.to_ascii(), name, "{m:?}");
            }
        }
        assert!(asked[c].is_empty(), "client {c}: unanswered {:?}", asked[c]);
    }
    assert!(metric(&s, "schild_packet_cache_hits_total") >= 1);
}
