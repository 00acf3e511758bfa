//! Policy core benchmarks: lookups, load (map + verify) and compile, on
//! deterministic synthetic lists (see `common/domains.rs`).
//!
//! ```text
//! cargo bench --bench policy                       # 1M cases (~4 min)
//! SCHILD_BENCH_10M=1 cargo bench --bench policy    # also 10M (+~3 min, ~2 GiB RAM)
//! SCHILD_BENCH_CLOCK=cpu cargo bench --bench policy # on-CPU time of the thread
//! cargo bench --bench policy -- lookup/1M          # a filter, as usual
//! ```
//!
//! Lookups cycle through 64Ki different query names per case, so the
//! figures include the cache misses a real query stream causes; timing one
//! name over and over would only measure a warm cache.
//!
//! `SCHILD_BENCH_CLOCK=cpu` measures the benchmark thread's time on a CPU
//! (`CLOCK_THREAD_CPUTIME_ID`, in nanoseconds) instead of wall
//! time: on a small box shared with other jobs, wall time mostly measures
//! the neighbours. Cache pollution by those neighbours still counts.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion};
use hickory_proto::rr::Name;
use schild::config::FeedKind;
use schild::feeds::plain::push_lines;
use schild::policy::groups::{ClientGroup, GroupAction, GroupTable, NameSet};
use schild::policy::{
    Action, AllowScope, AllowSource, Compiler, FeedInfo, IocRecord, Policy, Verdict, artifact,
};

#[path = "common/domains.rs"]
mod domains;

use domains::{DomainList, Rng, SEED};

/// Queries per case; a power of two so the index wraps with a mask.
const QUERIES: usize = 1 << 16;
/// Allowlisted subtrees (`safe.<listed name>`) in every fixture.
const ALLOWED: usize = 1_000;
/// IP triggers in every fixture.
const IPS: usize = 10_000;

fn feed() -> FeedInfo {
    FeedInfo {
        name: "synthetic".into(),
        kind: "domains".into(),
        action: Action::Nxdomain,
        location: "generated".into(),
    }
}

/// Listed two-label names, drawn from the list, to hang allowlist entries on.
fn two_label_names(list: &DomainList, count: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let n = list.get(rng.below(list.len() as u64) as usize);
        if n.bytes().filter(|&b| b == b'.').count() == 1 {
            out.push(n.to_string());
        }
    }
    out
}

/// Random public-looking IPv4 addresses (the compile-time guard refuses
/// the few that land in special-use ranges).
fn addresses(count: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let a = rng.next_u64() as u32;
            format!(
                "{}.{}.{}.{}",
                20 + (a >> 24) % 180,
                (a >> 16) & 255,
                (a >> 8) & 255,
                a & 255
            )
        })
        .collect()
}

/// Compile a list the way the pipeline does: allowlist first, then the
/// feed body through the `domains` reader, then IP indicators.
fn compile(list: &DomainList, allowed: &[String], ips: &[String]) -> Vec<u8> {
    let mut c = Compiler::new(vec![feed()]);
    let src = c.allow_source(AllowSource {
        kind: "file".into(),
        path: "allow.txt".into(),
        name: None,
    });
    for name in allowed {
        c.allow(src, &format!("safe.{name}"), AllowScope::Subtree)
            .expect("generated names are valid");
    }
    push_lines(FeedKind::Domains, list.text.as_bytes(), 0, &mut c);
    for ip in ips {
        c.add(0, &IocRecord::plain("ip-dst", ip));
    }
    c.finish().expect("compiles")
}

struct Fixture {
    label: &'static str,
    _dir: tempfile::TempDir,
    path: PathBuf,
    policy: Policy,
    exact: Vec<String>,
    sub: Vec<String>,
    sub4: Vec<String>,
    miss4: Vec<String>,
    allowed: Vec<String>,
    ips: Vec<IpAddr>,
}

fn fixture(n: usize, label: &'static str) -> Fixture {
    eprintln!("building the {label} fixture…");
    let list = DomainList::generate(n, SEED);
    let allow_bases = two_label_names(&list, ALLOWED, SEED + 1);
    let ip_list = addresses(IPS, SEED + 2);
    let bytes = compile(&list, &allow_bases, &ip_list);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(artifact::FILE_NAME);
    artifact::write_atomic(&path, &bytes).expect("writes");
    drop(bytes);
    let policy = Policy::load(&path).expect("loads");

    let mut rng = Rng::new(SEED + 3);
    let allowed = (0..QUERIES)
        .map(|i| {
            let base = &allow_bases[rng.below(allow_bases.len() as u64) as usize];
            format!("host{i:05}.safe.{base}")
        })
        .collect();
    let mut ips: Vec<IpAddr> = ip_list
        .iter()
        .map(|s| s.parse().expect("generated address"))
        .collect();
    // Half misses: addresses next to the listed ones.
    let misses: Vec<IpAddr> = ips
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(a) => IpAddr::V4((u32::from(*a) ^ 0x0000_0100).into()),
            v6 => *v6,
        })
        .collect();
    ips.extend(misses);
    let fx = Fixture {
        label,
        _dir: dir,
        path,
        exact: list.sample(QUERIES, SEED + 4),
        sub: domains::subdomain_queries(&list, QUERIES, SEED + 5),
        sub4: domains::sub4_queries(&list, QUERIES, SEED + 6),
        miss4: domains::miss_queries(QUERIES, SEED + 7),
        allowed,
        ips,
        policy,
    };
    fx.check();
    eprintln!(
        "{label}: {} names, artifact {} bytes, name index {:.2} bytes/name",
        fx.policy.name_count(),
        fx.policy.file_bytes(),
        fx.policy.index_bytes() as f64 / fx.policy.name_count() as f64
    );
    fx
}

impl Fixture {
    /// The benchmarks measure what they claim: every query gets the verdict
    /// its case is named after.
    fn check(&self) {
        let p = &self.policy;
        let all = |qs: &[String], want: fn(&Verdict) -> bool, what: &str| {
            let bad = qs.iter().filter(|q| !want(&p.lookup_str(q))).count();
            assert_eq!(
                bad, 0,
                "{}: {bad} {what} queries got another verdict",
                self.label
            );
        };
        all(
            &self.exact,
            |v| matches!(v, Verdict::Blocked(h) if h.exact),
            "exact",
        );
        all(
            &self.sub,
            |v| matches!(v, Verdict::Blocked(h) if !h.exact),
            "subdomain",
        );
        all(
            &self.sub4,
            |v| matches!(v, Verdict::Blocked(h) if !h.exact),
            "sub4",
        );
        all(&self.miss4, |v| matches!(v, Verdict::Pass), "miss");
        all(
            &self.allowed,
            |v| matches!(v, Verdict::Allowed { .. }),
            "allowed",
        );
        let hits = self
            .ips
            .iter()
            .filter(|ip| p.lookup_ip(**ip).is_some())
            .count();
        assert!(
            hits > IPS * 9 / 10 && hits < IPS * 11 / 10,
            "ip hits {hits}"
        );
    }
}

fn bench_lookups<M: Measurement>(c: &mut Criterion<M>, fx: &Fixture) {
    let mut g = c.benchmark_group(format!("lookup/{}", fx.label));
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let cases: [(&str, &[String]); 5] = [
        ("blocked-name", &fx.exact),
        ("random-subdomain", &fx.sub),
        ("4-label-blocked-parent", &fx.sub4),
        ("4-label-miss", &fx.miss4),
        ("allowlisted-path", &fx.allowed),
    ];
    for (name, queries) in cases {
        g.bench_function(name, |b| {
            let mut i = 0usize;
            b.iter(|| {
                let q = &queries[i & (QUERIES - 1)];
                i = i.wrapping_add(1);
                black_box(fx.policy.lookup_str(black_box(q)))
            })
        });
    }
    // The server's path: labels as hickory's `Name::iter()` yields them
    // (names parsed before timing, as the server gets them parsed).
    for (name, queries) in [
        ("4-label-miss-labels", &fx.miss4),
        ("4-label-blocked-parent-labels", &fx.sub4),
    ] {
        let names: Vec<Name> = queries
            .iter()
            .map(|q| Name::from_ascii(q).expect("generated names are valid"))
            .collect();
        g.bench_function(name, |b| {
            let mut i = 0usize;
            b.iter(|| {
                let n = &names[i & (QUERIES - 1)];
                i = i.wrapping_add(1);
                black_box(fx.policy.lookup_labels(black_box(n).iter()))
            })
        });
    }
    // The same miss as the server now asks it: plus the resolver-bypass
    // names (`policy.block_bypass`, on by default), and for a client in a
    // `[[client_group]]` with `feeds`, the group lookup and the
    // feed-restricted walk.
    let names: Vec<Name> = fx
        .miss4
        .iter()
        .map(|q| Name::from_ascii(q).expect("generated names are valid"))
        .collect();
    let bypass = NameSet::new([
        "use-application-dns.net",
        "mask.icloud.com",
        "mask-h2.icloud.com",
    ]);
    g.bench_function("4-label-miss-labels+bypass", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let n = &names[i & (QUERIES - 1)];
            i = i.wrapping_add(1);
            let v = fx.policy.lookup_labels(black_box(n).iter());
            black_box((v, bypass.matches_labels(n.iter())))
        })
    });
    let table = GroupTable::new(
        (0..16u8)
            .map(|k| {
                let g = ClientGroup {
                    name: format!("group-{k}").into(),
                    allow_only: None,
                    action: GroupAction::Feed,
                    feeds: Some(vec!["synthetic".into()]),
                };
                let net = format!("10.{k}.0.0/16").parse().expect("network");
                (g, vec![net])
            })
            .collect(),
    );
    let client: IpAddr = "10.15.3.4".parse().expect("address");
    g.bench_function("4-label-miss-labels-in-group", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let n = &names[i & (QUERIES - 1)];
            i = i.wrapping_add(1);
            let g = table.group_of(black_box(client)).expect("in a group");
            let keep = |id: u16| fx.policy.feed(id).is_some_and(|f| g.uses_feed(&f.name));
            let v = fx.policy.lookup_labels_where(black_box(n).iter(), keep);
            black_box((v, bypass.matches_labels(n.iter())))
        })
    });
    let ips = &fx.ips;
    g.bench_function("ip", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let ip = ips[i % ips.len()];
            i = i.wrapping_add(1);
            black_box(fx.policy.lookup_ip(black_box(ip)))
        })
    });
    g.finish();
}

fn bench_load<M: Measurement>(c: &mut Criterion<M>, fx: &Fixture) {
    let mut g = c.benchmark_group("load");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_with_input(
        BenchmarkId::from_parameter(fx.label),
        &fx.path,
        |b, path| b.iter(|| black_box(Policy::load(path).expect("loads"))),
    );
    g.finish();
}

fn bench_compile_1m<M: Measurement>(c: &mut Criterion<M>) {
    let list = DomainList::generate(1_000_000, SEED);
    let allow = two_label_names(&list, ALLOWED, SEED + 1);
    let ips = addresses(IPS, SEED + 2);
    let mut g = c.benchmark_group("compile");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30));
    g.bench_function("1M", |b| b.iter(|| black_box(compile(&list, &allow, &ips))));
    g.finish();
}

fn benches<M: Measurement>(c: &mut Criterion<M>) {
    let one = fixture(1_000_000, "1M");
    bench_lookups(c, &one);
    bench_load(c, &one);
    drop(one);
    if std::env::var_os("SCHILD_BENCH_10M").is_some() {
        let ten = fixture(10_000_000, "10M");
        bench_lookups(c, &ten);
        bench_load(c, &ten);
    } else {
        eprintln!("10M cases skipped: set SCHILD_BENCH_10M=1 to run them");
    }
    bench_compile_1m(c);
}

/// Time this thread spent on a CPU, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux supports.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Criterion measurement: on-CPU time of the benchmark thread.
struct ThreadCpu(WallTime);

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = Duration;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(thread_cpu_ns().saturating_sub(start))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, shown like wall time.
        self.0.formatter()
    }
}

fn main() {
    if std::env::var("SCHILD_BENCH_CLOCK").as_deref() == Ok("cpu") {
        let mut c = Criterion::default()
            .with_measurement(ThreadCpu(WallTime))
            .configure_from_args();
        benches(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default().configure_from_args();
        benches(&mut c);
        c.final_summary();
    }
}
