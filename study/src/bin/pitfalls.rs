//! The epoll pitfalls that bit real event loops, reproduced on this kernel
//! and then run on edgeloop.
//!
//! Run: `cargo run --release -p edgeloop-study --bin pitfalls`. Each
//! pitfall prints one table: a column per mode or variant on raw syscalls,
//! then edgeloop's answer in the same situation. `docs/study.md` ("Where
//! epoll bites") explains each one; `study/tests/pitfalls.rs` pins
//! edgeloop's answers.

use clap::Parser;
use edgeloop_study::pitfalls;

/// Reproduces 14 epoll pitfalls with raw syscalls and shows edgeloop's
/// answer to each. Takes about ten seconds; forks (pitfall 2) and spawns
/// threads.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// Only these pitfalls, by number (1 to 14; repeat or separate with
    /// commas).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=14))]
    only: Vec<u32>,
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    for finding in pitfalls::run(&cli.only)? {
        println!("\n## {}\n", finding.pitfall);
        println!("| mode or variant | measured |");
        println!("|---|---|");
        for (mode, figure) in &finding.raw {
            println!("| {mode} | {figure} |");
        }
        println!("| **edgeloop** | {} |", finding.edgeloop);
    }
    Ok(())
}
