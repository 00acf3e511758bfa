//! Latency of one random memory access on this machine, by working-set
//! size: what a lookup that misses the CPU cache costs at the very least.
//!
//! ```text
//! cargo run --release --example memlat
//! ```
//!
//! A pointer chase over a random cyclic permutation of cache lines (each
//! load depends on the one before, so nothing overlaps), and four
//! independent chases at once (what memory-level parallelism buys).

use std::hint::black_box;
use std::time::Instant;

#[path = "../benches/common/domains.rs"]
mod domains;

fn main() {
    const LINE: usize = 8; // u64 words in a 64-byte cache line
    for mib in [1usize, 2, 4, 8, 16, 32, 64, 256] {
        let lines = (mib << 20) / 64;
        // A random cycle through all lines (Sattolo's algorithm).
        let mut order: Vec<usize> = (0..lines).collect();
        let mut rng = domains::Rng::new(domains::SEED);
        for i in (1..lines).rev() {
            let j = rng.below(i as u64) as usize;
            order.swap(i, j);
        }
        let mut next = vec![0u64; lines * LINE];
        for k in 0..lines {
            next[order[k] * LINE] = (order[(k + 1) % lines] * LINE) as u64;
        }
        let steps = 4_000_000;
        let mut p = 0usize;
        for _ in 0..lines.min(steps) {
            p = next[p] as usize;
        }
        let t = Instant::now();
        for _ in 0..steps {
            p = next[p] as usize;
        }
        let one = t.elapsed().as_nanos() as f64 / steps as f64;
        let mut q = [0, lines / 4, lines / 2, 3 * lines / 4].map(|i| order[i] * LINE);
        let t = Instant::now();
        for _ in 0..steps / 4 {
            for x in &mut q {
                *x = next[*x] as usize;
            }
        }
        let four = t.elapsed().as_nanos() as f64 / (steps / 4) as f64;
        black_box((p, q));
        println!(
            "{mib:4} MiB: {one:6.1} ns per dependent access; {four:6.1} ns per round of 4 independent"
        );
    }
}
