//! Compile a large synthetic `domains` list and report time, peak memory,
//! artifact size and name-index bytes per domain.
//!
//! ```text
//! cargo run --release --example compile_big -- 10000000
//! cargo run --release --example compile_big -- 100 fuzz/corpus/artifact/seed   # keep the artifact
//! ```
//!
//! The list is generated in memory (see `benches/common/domains.rs`) and fed
//! through the same path as a `domains` feed (`feeds::plain::push_lines`),
//! so the figures include normalisation, the public-suffix guard, sorting,
//! the fst build and encoding. Peak memory is the kernel's `VmHWM`; it is
//! reset after generating the list (`/proc/self/clear_refs`), so the
//! compile figure still counts the list text the compiler reads from (as
//! the pipeline holds a feed's body), but not the generator's scratch.

use std::time::Instant;

use schild::config::FeedKind;
use schild::feeds::plain::push_lines;
use schild::policy::{Action, Compiler, FeedInfo, Policy, artifact};

#[path = "../benches/common/domains.rs"]
mod domains;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used: on a shared box the
/// wall-clock figures depend on the neighbours, this one much less.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    // USER_HZ is 100 on every Linux this runs on.
    f.iter().sum::<u64>() as f64 / 100.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.replace('_', "").parse()?,
        None => 10_000_000,
    };
    let t = Instant::now();
    let list = domains::DomainList::generate(n, domains::SEED);
    println!(
        "generated {} domains ({} MiB of text) in {:.2?}",
        list.len(),
        list.text.len() >> 20,
        t.elapsed()
    );
    let rss_list = status_kib("VmRSS:");
    // Reset the peak so it measures the compile, not the generator.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();

    let cpu0 = cpu_secs();
    let t = Instant::now();
    let mut c = Compiler::new(vec![FeedInfo {
        name: "synthetic".into(),
        kind: "domains".into(),
        action: Action::Nxdomain,
        location: format!("generated:{n}:{}", domains::SEED),
    }]);
    push_lines(FeedKind::Domains, list.text.as_bytes(), 0, &mut c);
    let t_add = t.elapsed();
    let t2 = Instant::now();
    let bytes = c.finish()?;
    let t_finish = t2.elapsed();
    let t_compile = t.elapsed();
    let cpu = cpu_secs() - cpu0;
    let hwm = status_kib("VmHWM:");
    println!(
        "compile: {t_compile:.2?} wall, {cpu:.2} s CPU (add {t_add:.2?}, finish {t_finish:.2?}); \
         peak RSS {:.0} MiB (list text held: {:.0} MiB; peak reset: {reset})",
        mib(hwm),
        mib(rss_list),
    );

    let dir = tempfile::tempdir()?;
    let path = match std::env::args().nth(2) {
        Some(out) => std::path::PathBuf::from(out),
        None => dir.path().join(artifact::FILE_NAME),
    };
    let t = Instant::now();
    artifact::write_atomic(&path, &bytes)?;
    println!("write_atomic: {:.2?}", t.elapsed());
    drop(bytes);
    drop(list);

    // The first load after the write, then two more: the figure to read is
    // the steady one (page cache warm, as for a reload of a running server).
    let mut loads = Vec::new();
    let mut p = None;
    for _ in 0..3 {
        let t = Instant::now();
        p = Some(Policy::load(&path)?);
        loads.push(t.elapsed());
    }
    let p = p.ok_or("no load")?;
    let t_load = loads[loads.len() - 1];
    println!("loads: {loads:.2?}");
    let names = p.name_count();
    println!(
        "load+verify: {t_load:.2?}; artifact {} bytes ({:.1} MiB); {} names; \
         name index {} bytes = {:.2} bytes/domain; artifact {:.2} bytes/domain",
        p.file_bytes(),
        p.file_bytes() as f64 / (1 << 20) as f64,
        names,
        p.index_bytes(),
        p.index_bytes() as f64 / names.max(1) as f64,
        p.file_bytes() as f64 / names.max(1) as f64,
    );
    let huge = std::fs::read_to_string("/proc/self/smaps_rollup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("AnonHugePages:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("anonymous huge pages after load: {huge}");
    println!("report: {:?}", p.meta().reports[0]);
    Ok(())
}
