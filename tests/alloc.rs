//! The lookup path allocates nothing: a counting global allocator watches
//! many lookups of every kind (blocked name, subdomain, miss, allowlisted,
//! address) and must see zero allocations.
//!
//! A test binary of its own (see `[[test]] name = "alloc"` in Cargo.toml):
//! a global allocator replaces the allocator of the whole binary, which must
//! not happen in the main integration-test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use schild::config::FeedKind;
use schild::feeds::plain::push_lines;
use schild::policy::{
    Action, AllowScope, AllowSource, Compiler, FeedInfo, IocRecord, Policy, RpzRule, Verdict,
};

#[path = "../benches/common/domains.rs"]
mod domains;

/// Counts allocations made by threads that opted in, so that the test
/// harness's own threads cannot disturb the count.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the allocator may run while thread-locals are torn down.
    if WATCHED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    WATCHED.with(|w| w.set(true));
    let out = f();
    WATCHED.with(|w| w.set(false));
    (out, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

#[test]
fn the_counter_sees_allocations() {
    // Without this, a broken counter would make the real test pass.
    let (v, n) = allocations_in(|| std::hint::black_box(vec![1u8; 64]));
    assert_eq!(v.len(), 64);
    assert!(n >= 1, "counting allocator saw {n} allocations");
}

#[test]
fn lookups_do_not_allocate() {
    let list = domains::DomainList::generate(20_000, domains::SEED);
    let mut c = Compiler::new(vec![FeedInfo {
        name: "synthetic".into(),
        kind: "domains".into(),
        action: Action::Nxdomain,
        location: "generated".into(),
    }]);
    let src = c.allow_source(AllowSource {
        kind: "file".into(),
        path: "allow.txt".into(),
        name: None,
    });
    let bases: Vec<&str> = (0..list.len())
        .map(|i| list.get(i))
        .filter(|n| n.bytes().filter(|&b| b == b'.').count() == 1)
        .take(100)
        .collect();
    for b in &bases {
        c.allow(src, &format!("safe.{b}"), AllowScope::Subtree)
            .expect("valid name");
    }
    push_lines(FeedKind::Domains, list.text.as_bytes(), 0, &mut c);
    c.add(0, &IocRecord::plain("ip-dst", "203.0.113.7"));
    c.add(0, &IocRecord::plain("ip-dst", "2001:db8::/48"));
    // An `rpz-client-ip` trigger: every query asks about its client.
    c.add_rpz_client(0, "10.20.0.0/16", RpzRule::Action(Action::Nxdomain));
    let policy = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");

    let exact = list.sample(2_000, 1);
    let sub = domains::subdomain_queries(&list, 2_000, 2);
    let miss = domains::miss_queries(2_000, 3);
    let allowed: Vec<String> = bases.iter().map(|b| format!("WWW.Safe.{b}.")).collect();
    let ips: Vec<IpAddr> = [
        "203.0.113.7",
        "203.0.113.8",
        "2001:db8::1",
        "::ffff:203.0.113.7",
    ]
    .iter()
    .map(|s| s.parse().expect("address"))
    .collect();
    let clients: Vec<IpAddr> = ["10.20.3.4", "127.0.0.1", "::1"]
        .iter()
        .map(|s| s.parse().expect("address"))
        .collect();

    let (counts, allocations) = allocations_in(|| {
        let mut counts = [0usize; 6];
        for _ in 0..5 {
            for q in &exact {
                counts[0] +=
                    usize::from(matches!(policy.lookup_str(q), Verdict::Blocked(h) if h.exact));
            }
            for q in &sub {
                let labels = q.split('.').map(str::as_bytes);
                counts[1] += usize::from(policy.lookup_labels(labels).hit().is_some());
            }
            for q in &miss {
                counts[2] += usize::from(policy.lookup_str(q) == Verdict::Pass);
            }
            for q in &allowed {
                counts[3] += usize::from(matches!(policy.lookup_str(q), Verdict::Allowed { .. }));
            }
            for ip in &ips {
                counts[4] += usize::from(policy.lookup_ip(*ip).is_some());
            }
            for ip in &clients {
                counts[5] += usize::from(policy.lookup_client(*ip).is_some());
            }
        }
        counts
    });
    // The lookups did their work (so the count is about real lookups)…
    assert_eq!(
        counts,
        [
            5 * exact.len(),
            5 * sub.len(),
            5 * miss.len(),
            5 * allowed.len(),
            5 * 3,
            5
        ]
    );
    // …and allocated nothing.
    assert_eq!(allocations, 0, "allocations on the lookup path");
}

#[test]
fn client_group_lookups_do_not_allocate() {
    use schild::policy::groups::{
        ClientGroup, GroupAction, GroupTable, NameSet, is_private_answer,
    };
    let mut c = Compiler::new(vec![
        FeedInfo {
            name: "first".into(),
            kind: "domains".into(),
            action: Action::Nxdomain,
            location: "generated".into(),
        },
        FeedInfo {
            name: "second".into(),
            kind: "domains".into(),
            action: Action::Sinkhole,
            location: "generated".into(),
        },
    ]);
    c.add(0, &IocRecord::plain("domain", "both.example"));
    c.add(1, &IocRecord::plain("domain", "both.example"));
    c.add(0, &IocRecord::plain("domain", "first.example"));
    c.add(1, &IocRecord::plain("ip-dst", "198.51.100.0/24"));
    let policy = Policy::from_bytes(c.finish().expect("compiles")).expect("loads");
    let group = |name: &str, allow: Option<NameSet>, feeds: Option<Vec<String>>| ClientGroup {
        name: name.into(),
        allow_only: allow,
        action: GroupAction::Feed,
        feeds,
    };
    let table = GroupTable::new(vec![
        (
            group(
                "devices",
                Some(NameSet::new(["vendor.example", "time.example"])),
                None,
            ),
            vec![
                "10.20.0.0/16".parse().expect("net"),
                "fd00:20::/48".parse().expect("net"),
            ],
        ),
        (
            group("second-only", None, Some(vec!["second".into()])),
            vec!["10.30.0.0/16".parse().expect("net")],
        ),
    ]);
    let clients: Vec<IpAddr> = [
        "10.20.1.1",
        "fd00:20::7",
        "10.30.4.4",
        "192.0.2.1",
        "::ffff:10.20.0.9",
    ]
    .iter()
    .map(|s| s.parse().expect("address"))
    .collect();
    let names = [
        "www.vendor.example",
        "evil.example",
        "a.b.time.example",
        "both.example",
        "x.first.example",
    ];
    let (counts, allocations) = allocations_in(|| {
        let mut counts = [0usize; 4];
        for _ in 0..100 {
            for &client in &clients {
                let Some(g) = table.group_of(client) else {
                    continue;
                };
                counts[0] += 1;
                for n in names {
                    let labels = || n.split('.').map(str::as_bytes);
                    if let Some(allow) = &g.allow_only {
                        counts[1] += usize::from(allow.matches_labels(labels()).is_some());
                    }
                    let keep = |id: u16| policy.feed(id).is_some_and(|f| g.uses_feed(&f.name));
                    counts[2] +=
                        usize::from(policy.lookup_labels_where(labels(), keep).hit().is_some());
                }
                let ip: IpAddr = "198.51.100.9".parse().expect("address");
                let keep = |id: u16| policy.feed(id).is_some_and(|f| g.uses_feed(&f.name));
                counts[3] += usize::from(policy.lookup_ip_where(ip, keep).is_some())
                    + usize::from(is_private_answer(client));
            }
        }
        counts
    });
    // 4 grouped clients; 3 of them devices (2 names each allowed); both
    // groups see both.example, only devices x.first.example.
    assert_eq!(counts, [400, 600, 700, 800]);
    assert_eq!(allocations, 0, "allocations on the client-group path");
}

/// The UDP fast path's wire work (`server::fast`): reading a query from
/// the datagram, writing a block's NXDOMAIN with its SOA and EDE into the
/// receive loop's buffer, and making the packet-cache key on the stack,
/// allocate nothing once the buffer has its size.
#[test]
fn the_fast_paths_wire_work_does_not_allocate() {
    use schild::server::{fast, packets};
    // dig's query for WwW.Evil.example A with EDNS (payload 1232, DO).
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    query.extend_from_slice(b"\x03WwW\x04Evil\x07example\x00\x00\x01\x00\x01");
    query.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    let text = "blocked by schild: feed zdn lists evil.example";
    let mut out = Vec::with_capacity(1232);
    let mut key = [0u8; packets::KEY_MAX];
    let ((), n) = allocations_in(|| {
        for _ in 0..10_000 {
            let q = fast::parse(&query).expect("a plain query");
            let negative = fast::Negative {
                rcode: 3,
                owner_at: fast::suffix_offset(q.name, 2),
                serial: 1,
                ttl: 300,
                payload: q.edns.map(|e| e.payload),
                ede_text: text,
                ede_code: 15,
            };
            assert!(fast::write_negative(&mut out, &q, &negative));
            let k = packets::key_into(&mut key, &q, Some(1232), false);
            assert_eq!(k.len(), q.name.len() + 5);
        }
    });
    assert_eq!(n, 0, "allocations in 10,000 fast-path answers");
    assert_eq!(out[3] & 0x0f, 3, "NXDOMAIN");
}
