//! The server from Python's selectors tutorial, upper-casing: replies with
//! the bytes it received, in upper case.
//!
//! Run: `cargo run --example upper -- --addr 127.0.0.1:7001`, then
//! `echo hello | nc -N 127.0.0.1 7001` prints `HELLO`. Same flags as `echo`.
//!
//! What to look for: `nc -N` half-closes after sending; the reply still
//! arrives in full, then EOF (the server closes only after its queue is
//! flushed).

mod common;

use clap::Parser;
use edgeloop::conn::{Conn, Handler};

/// Upper-casing echo server on edgeloop.
///
/// Replies with what it got, in upper case. Look for: `nc -N` half-closes
/// after sending, and still gets the whole reply, then EOF.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
}

struct Upper;

impl Handler for Upper {
    type Session = ();

    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(&data.to_ascii_uppercase());
    }
}

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    common::exit_on_error(common::serve_workers(&cli.server, || Upper));
}
