//! A line-based broadcast chat: each line a client sends goes to every other
//! client, prefixed with the sender's number.
//!
//! Run: `cargo run --example chat -- --addr 127.0.0.1:7002`, then connect two
//! or more `nc 127.0.0.1 7002` and type. Same flags as `echo` (one reactor:
//! `--workers` above 1 is refused), plus `--max-line` and `--line-timeout`.
//!
//! What to look for: a line longer than `--max-line` gets
//! `error: line too long` and a disconnect, never unbounded memory; a client
//! that stops reading is disconnected once its queue passes `--max-pending`,
//! and the others carry on at full speed. A line must be completed within
//! `--line-timeout` seconds of its first byte (a slowloris trickling one
//! byte a second is disconnected), and a client silent for
//! `--idle-timeout` seconds is closed.

mod common;

use clap::Parser;
use edgeloop::conn::{CloseReason, Conn, ConnId, Handler, Others};

/// Broadcast chat server on edgeloop.
///
/// Each line goes to every other client. Look for: an overlong line, a line
/// not finished within --line-timeout, or a client that stops reading is
/// disconnected, and the others carry on.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
    /// Longest line accepted, in bytes (the newline excluded).
    #[arg(long, default_value_t = 4096)]
    max_line: usize,
    /// Seconds a client has to complete a line once it started it.
    #[arg(long, default_value_t = 30)]
    line_timeout: u64,
}

mod framing {
    /// Splits a byte stream into `\n`-terminated lines, whatever the read
    /// boundaries. `partial` holds the unterminated tail between calls.
    ///
    /// Calls `line` for each complete line (without the newline). Returns
    /// `Err(())` as soon as a line (complete or not) exceeds `max_line`.
    pub fn split_lines(
        partial: &mut Vec<u8>,
        mut data: &[u8],
        max_line: usize,
        mut line: impl FnMut(&[u8]),
    ) -> Result<(), ()> {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            if partial.is_empty() {
                if end > max_line {
                    return Err(());
                }
                line(&data[..end]);
            } else {
                if partial.len() + end > max_line {
                    return Err(());
                }
                partial.extend_from_slice(&data[..end]);
                line(partial);
                partial.clear();
            }
            data = &data[end + 1..];
        }
        if partial.len() + data.len() > max_line {
            return Err(());
        }
        partial.extend_from_slice(data);
        if partial.is_empty() {
            *partial = Vec::new(); // idle clients own no buffer
        }
        Ok(())
    }
}

struct Chat {
    max_line: usize,
    max_pending: usize,
    line_timeout: std::time::Duration,
    message: Vec<u8>,
}

/// What the server keeps per client.
#[derive(Default)]
struct Client {
    /// The unterminated tail of what the client sent.
    partial: Vec<u8>,
    /// When that tail's first byte came.
    line_started: common::RequestClock,
}

impl Handler for Chat {
    type Session = Client;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        log::info!("{:?} joined", conn.id());
    }

    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        let me = conn.id();
        let mut partial = std::mem::take(&mut conn.session().partial);
        let mut lines = Vec::new();
        let framed = framing::split_lines(&mut partial, data, self.max_line, |line| {
            lines.push(line.to_vec())
        });
        let session = conn.session();
        let unfinished = !partial.is_empty();
        session.partial = partial;
        // A line's clock starts at its first byte and stops at its newline.
        let too_slow =
            session
                .line_started
                .overdue(unfinished, !lines.is_empty(), self.line_timeout);
        let others: Vec<ConnId> = conn.ids().filter(|id| *id != me).collect();
        for line in lines {
            self.message.clear();
            self.message
                .extend_from_slice(format!("[{}] ", me.index()).as_bytes());
            self.message.extend_from_slice(&line);
            self.message.push(b'\n');
            for &other in &others {
                conn.write_to(other, &self.message);
                if conn.queued_of(other).is_some_and(|q| q > self.max_pending) {
                    log::info!("{other:?} is not reading: disconnected");
                    conn.abort_other(other);
                }
            }
        }
        if framed.is_err() {
            conn.write(format!("error: line too long (max {} bytes)\n", self.max_line).as_bytes());
            conn.close();
        } else if too_slow {
            let limit = self.line_timeout.as_secs();
            conn.write(format!("error: line not finished within {limit} s\n").as_bytes());
            conn.close();
        }
    }

    fn on_close(&mut self, _: &mut Others<'_, Self>, id: ConnId, _: Client, reason: CloseReason) {
        log::info!("{id:?} left: {reason:?}");
    }
}

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    let chat = Chat {
        max_line: cli.max_line,
        max_pending: cli.server.max_pending,
        line_timeout: std::time::Duration::from_secs(cli.line_timeout),
        message: Vec::new(),
    };
    common::exit_on_error(common::serve_one(&cli.server, "chat", chat));
}

#[cfg(test)]
mod tests {
    use super::framing::split_lines;

    #[test]
    fn lines_survive_any_split() {
        let input = b"hello\nworld\n\nlast line\npartial";
        for cut in 0..input.len() {
            let mut partial = Vec::new();
            let mut lines = Vec::new();
            for part in [&input[..cut], &input[cut..]] {
                split_lines(&mut partial, part, 64, |l| lines.push(l.to_vec())).unwrap();
            }
            assert_eq!(
                lines,
                [&b"hello"[..], b"world", b"", b"last line"],
                "cut at {cut}"
            );
            assert_eq!(partial, b"partial");
        }
    }

    proptest::proptest! {
        /// Fuzzing the framing (fuzz the framing by splitting
        /// arbitrary byte streams at arbitrary boundaries"): whatever the
        /// bytes and however reads split them, the lines are those of the
        /// whole stream, and an overlong line is an error.
        #[test]
        fn framing_is_independent_of_read_boundaries(
            data in proptest::collection::vec(proptest::prop_oneof![3 => proptest::prelude::any::<u8>(), 1 => proptest::strategy::Just(b'\n')], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..12),
            max_line in 1usize..40,
        ) {
            let expected: Result<Vec<&[u8]>, ()> = {
                let mut lines = Vec::new();
                let mut ok = true;
                let mut parts = data.split(|&b| b == b'\n').peekable();
                while let Some(part) = parts.next() {
                    if part.len() > max_line {
                        ok = false;
                        break;
                    }
                    if parts.peek().is_some() {
                        lines.push(part);
                    }
                }
                if ok { Ok(lines) } else { Err(()) }
            };
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            bounds.push(0);
            bounds.push(data.len());
            bounds.sort_unstable();
            let mut partial = Vec::new();
            let mut got = Vec::new();
            let mut result = Ok(());
            for w in bounds.windows(2) {
                result = split_lines(&mut partial, &data[w[0]..w[1]], max_line, |l| got.push(l.to_vec()));
                if result.is_err() {
                    break;
                }
            }
            match expected {
                Ok(lines) => {
                    proptest::prop_assert!(result.is_ok());
                    proptest::prop_assert_eq!(got, lines.iter().map(|l| l.to_vec()).collect::<Vec<_>>());
                }
                Err(()) => proptest::prop_assert!(result.is_err()),
            }
        }
    }

    #[test]
    fn an_overlong_line_is_an_error_even_before_its_newline() {
        let mut partial = Vec::new();
        assert!(split_lines(&mut partial, &[b'x'; 10], 8, |_| {}).is_err());
        let mut partial = b"1234".to_vec();
        assert!(split_lines(&mut partial, b"56789\n", 8, |_| {}).is_err());
        let mut partial = Vec::new();
        assert!(split_lines(&mut partial, b"12345678\n", 8, |_| {}).is_ok());
    }
}
