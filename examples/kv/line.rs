//! `--protocol line`: one command per line, one reply line each, in order.
//!
//! `SET <key> <value>` → `OK`; `GET <key>` → `VALUE <value>` or
//! `NOT_FOUND`; `DEL <key>` → `DELETED` or `NOT_FOUND`; `STATS` →
//! `STATS keys=<n> connections=<n> commands=<n>`; `QUIT` → `BYE`, then the
//! connection closes; anything else → `ERROR <reason>`; a line over
//! 64 KiB → `ERROR line too long`, then the connection closes. Keys and values are bytes (anything but space and newline in a
//! key, anything but newline in a value), stored and returned as sent.

use super::Store;
use super::commands::After;

/// The longest command line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Splits `data` into lines, `partial` holding an unterminated tail
/// between calls, and runs each, stopping once `out` holds `cap` bytes.
/// Returns what next and how much of `data` it used (the rest is for a
/// later call). `Err` once a line passes [`MAX_LINE`] (its reply is in
/// `out`).
pub fn feed(
    store: &mut Store,
    partial: &mut Vec<u8>,
    data: &[u8],
    out: &mut Vec<u8>,
    cap: usize,
) -> Result<(After, usize), ()> {
    let mut used = 0;
    for chunk in data.split_inclusive(|&b| b == b'\n') {
        if out.len() >= cap && partial.is_empty() {
            return Ok((After::Continue, used));
        }
        used += chunk.len();
        let line = if partial.is_empty() && chunk.last() == Some(&b'\n') {
            chunk // the whole line is in this read: no copy
        } else {
            partial.extend_from_slice(chunk);
            &partial[..]
        };
        if line.len() > MAX_LINE + 1 {
            out.extend_from_slice(b"ERROR line too long\n");
            return Err(());
        }
        if line.last() != Some(&b'\n') {
            break; // the rest of this line comes in a later read
        }
        let command = &line[..line.len() - 1];
        let command = command.strip_suffix(b"\r").unwrap_or(command);
        let after = execute(store, command, out);
        partial.clear();
        if after == After::Close {
            return Ok((After::Close, used));
        }
    }
    Ok((After::Continue, used))
}

/// Runs one command and appends its reply.
fn execute(store: &mut Store, line: &[u8], out: &mut Vec<u8>) -> After {
    store.commands += 1;
    let mut words = line.splitn(3, |&b| b == b' ');
    match (words.next(), words.next(), words.next()) {
        (Some(b"SET"), Some(key), Some(value)) => {
            store.put(key, value);
            out.extend_from_slice(b"OK\n");
        }
        (Some(b"GET"), Some(key), None) => match store.map.get(key) {
            Some(value) => {
                out.extend_from_slice(b"VALUE ");
                out.extend_from_slice(value);
                out.push(b'\n');
            }
            None => out.extend_from_slice(b"NOT_FOUND\n"),
        },
        (Some(b"DEL"), Some(key), None) => match store.map.remove(key) {
            Some(_) => out.extend_from_slice(b"DELETED\n"),
            None => out.extend_from_slice(b"NOT_FOUND\n"),
        },
        (Some(b"STATS"), None, None) => {
            let reply = format!(
                "STATS keys={} connections={} commands={}\n",
                store.map.len(),
                store.connections,
                store.commands
            );
            out.extend_from_slice(reply.as_bytes());
        }
        (Some(b"QUIT"), None, None) => {
            out.extend_from_slice(b"BYE\n");
            return After::Close;
        }
        (Some(command @ (b"SET" | b"GET" | b"DEL" | b"STATS" | b"QUIT")), ..) => {
            let reply = format!(
                "ERROR wrong arguments for {}\n",
                String::from_utf8_lossy(command)
            );
            out.extend_from_slice(reply.as_bytes());
        }
        _ => out.extend_from_slice(b"ERROR unknown command\n"),
    }
    After::Continue
}
