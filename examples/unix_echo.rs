//! An echo server on a Unix stream socket.
//!
//! Run: `cargo run --example unix_echo -- --path /tmp/echo.sock`, then
//! `nc -U /tmp/echo.sock`. `--path @name` binds in the abstract namespace
//! (no file); `--socket-mode 600` sets the socket file's permissions;
//! `--mode lt|et` is the readiness mode, as in every example.
//!
//! What to look for: it prints `listening on PATH`. Started over a stale
//! socket file (left by a server that was killed), it takes the path over;
//! started while another server is alive on the path, it refuses with a
//! clear error and leaves that server alone. The file is removed on exit
//! (SIGINT/SIGTERM).

mod common;

use std::io;

use clap::Parser;
use edgeloop::conn::{Conn, Handler};
use edgeloop::server::{StreamServer, UnixPath};

/// Unix-socket echo server on edgeloop.
///
/// Look for: a stale socket file is replaced, a live server's is not, and
/// anything else at the path (a file, a symlink) is refused, never deleted.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Socket path; `@name` for the abstract namespace.
    #[arg(long, default_value = "/tmp/edgeloop-echo.sock")]
    path: String,
    /// Permissions of the socket file, in octal (e.g. 600).
    #[arg(long, value_parser = |s: &str| u32::from_str_radix(s, 8))]
    socket_mode: Option<u32>,
    /// Readiness mode of the connections [default: et].
    #[arg(long, value_enum)]
    mode: Option<common::Mode>,
    /// Close a connection that has sent nothing for this many seconds
    /// (0: never).
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
}

struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
    }
}

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    common::exit_on_error(run(&cli));
}

fn run(cli: &Cli) -> io::Result<()> {
    let mut options = edgeloop::server::ServerOptions::default();
    if let Some(common::Mode::Lt) = cli.mode {
        options.conn.trigger = edgeloop::Trigger::Level;
    }
    options.conn.idle_timeout =
        (cli.idle_timeout > 0).then(|| std::time::Duration::from_secs(cli.idle_timeout));
    let mut server =
        StreamServer::bind_unix(&UnixPath::parse(&cli.path), cli.socket_mode, Echo, options)?;
    let (shutdown, local) = (server.shutdown_handle(), server.local_addr().to_string());
    common::announce(server.reactor(), shutdown, &local)?;
    server.serve_forever()
}
