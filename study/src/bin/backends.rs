//! select vs poll vs epoll, measured: the cost of one wait with N watched
//! fds of which k are ready, on the same reactor with only the backend
//! swapped, plus the cost of register + deregister.
//!
//! Run: `cargo run --release -p edgeloop-study --bin backends` (about 15 s). Prints a
//! markdown table and writes `target/edgeloop-report/backends.csv` and
//! `backends.svg`.
//!
//! What to look for: select and poll grow linearly with N whatever k is;
//! epoll stays flat in N and grows with k; select stops at FD_SETSIZE.

use std::fs;
use std::io;
use std::path::PathBuf;

use clap::Parser;
use edgeloop::Backend;
use edgeloop_bench::plot;
use edgeloop_study::wait_cost::{Fixture, ns_per_register_deregister, ns_per_turn};

/// select vs poll vs epoll scaling study.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Watched fds per cell.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    watched: Vec<usize>,
    /// Ready fds per cell.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    ready: Vec<usize>,
    /// Where the CSV and SVG go.
    #[arg(long, default_value = "target/edgeloop-report")]
    out: PathBuf,
}

struct Cell {
    backend: Backend,
    n: usize,
    k: usize,
    ns: Option<f64>,
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let mut cells = Vec::new();
    for backend in Backend::ALL.iter().copied() {
        for &k in &cli.ready {
            for &n in &cli.watched {
                if k > n {
                    continue;
                }
                let ns = Fixture::new(backend, n, k)
                    .ok()
                    .map(|mut f| ns_per_turn(&mut f));
                cells.push(Cell { backend, n, k, ns });
            }
        }
    }
    print_table(&cli, &cells);
    println!("\n| backend | register + deregister (ns), 100 others registered |\n|---|---:|");
    for backend in Backend::ALL.iter().copied() {
        let ns = ns_per_register_deregister(backend, 100)?;
        println!("| {} | {ns:.0} |", backend.name());
    }
    fs::create_dir_all(&cli.out)?;
    let mut csv = String::from("backend,watched,ready,ns_per_wait\n");
    for c in &cells {
        let ns = c.ns.map_or(String::new(), |v| format!("{v:.0}"));
        csv.push_str(&format!("{},{},{},{ns}\n", c.backend.name(), c.n, c.k));
    }
    fs::write(cli.out.join("backends.csv"), csv)?;
    plot::lines(
        &cli.out.join("backends.svg"),
        "one wait: N watched, k ready (LT)",
        "watched fds (N)",
        "µs per wait",
        &series(&cells),
    )?;
    println!(
        "\nwrote {}/backends.csv and backends.svg",
        std::path::absolute(&cli.out)?.display()
    );
    Ok(())
}

fn series(cells: &[Cell]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for c in cells {
        let Some(ns) = c.ns else { continue };
        let name = format!("{} k={}", c.backend.name(), c.k);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push((c.n as f64, ns / 1000.0)),
            None => out.push((name, vec![(c.n as f64, ns / 1000.0)])),
        }
    }
    out
}

fn print_table(cli: &Cli, cells: &[Cell]) {
    print!("| backend | k ready |");
    for n in &cli.watched {
        print!(" N={n} |");
    }
    print!("\n|---|---:|");
    for _ in &cli.watched {
        print!("---:|");
    }
    println!();
    for backend in Backend::ALL.iter().copied() {
        for &k in &cli.ready {
            print!("| {} | {k} |", backend.name());
            for &n in &cli.watched {
                let cell = cells
                    .iter()
                    .find(|c| c.backend == backend && c.n == n && c.k == k);
                match cell.and_then(|c| c.ns) {
                    Some(ns) => print!(" {:.2} µs |", ns / 1000.0),
                    None if k > n => print!(" - |"),
                    None => print!(" refused (FD_SETSIZE) |"),
                }
            }
            println!();
        }
    }
}
