//! Write the side-by-side DNS benchmark inputs (see `benches/dnsperf/`):
//! the domain list, the RPZ zone of the same list (name + wildcard), the
//! query files and the `allowed.test` zone, all from the shared generator.
//!
//! ```text
//! cargo run --release --example gen_lists -- OUT_DIR [N=1000000]
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[path = "../benches/common/domains.rs"]
mod domains;

const QUERIES: usize = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: gen_lists OUT_DIR [N]")?,
    );
    let n: usize = std::env::args()
        .nth(2)
        .map(|a| a.replace('_', "").parse())
        .transpose()?
        .unwrap_or(1_000_000);
    std::fs::create_dir_all(&out)?;
    let list = domains::DomainList::generate(n, domains::SEED);
    std::fs::write(out.join("domains.txt"), &list.text)?;

    let mut z = BufWriter::new(File::create(out.join("rpz-wild.zone"))?);
    writeln!(
        z,
        "$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 300\n@ NS localhost."
    )?;
    for i in 0..list.len() {
        let d = list.get(i);
        writeln!(z, "{d} CNAME .\n*.{d} CNAME .")?;
    }
    z.flush()?;

    let write_queries = |name: &str, qs: &[String]| -> std::io::Result<()> {
        let mut f = BufWriter::new(File::create(out.join(name))?);
        for q in qs {
            writeln!(f, "{q} A")?;
        }
        f.flush()
    };
    write_queries("q-exact.txt", &list.sample(QUERIES, domains::SEED + 10))?;
    write_queries(
        "q-wild.txt",
        &domains::subdomain_queries(&list, QUERIES, domains::SEED + 11),
    )?;
    let allowed: Vec<String> = (0..10_000)
        .map(|i| format!("host{i:05}.allowed.test"))
        .collect();
    write_queries("q-allowed.txt", &allowed)?;

    let mut z = BufWriter::new(File::create(out.join("allowed.test.zone"))?);
    writeln!(
        z,
        "$ORIGIN allowed.test.\n$TTL 3600\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 127.0.0.1"
    )?;
    for (i, h) in allowed.iter().enumerate() {
        let host = h.trim_end_matches(".allowed.test");
        writeln!(z, "{host} A 192.0.2.{}", 1 + i % 250)?;
    }
    z.flush()?;
    println!(
        "wrote {n} domains to {}; probe name (last listed): {}",
        out.display(),
        list.get(list.len() - 1)
    );
    Ok(())
}
