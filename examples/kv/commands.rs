//! The commands `kv` answers over RESP, each replying as Redis 7.0 does for
//! the same request, errors included.
//!
//! Strings only, no expiry: `SET`'s `EX`, `PX`, `EXAT` and `PXAT` are
//! refused with an error that says so (`KEEPTTL` is accepted: there is no
//! time to live to keep). `COMMAND`, `CONFIG GET`, `HELLO`, `INFO` and
//! `SELECT 0` answer what redis-cli and redis-benchmark ask when they
//! start; RESP3 (`HELLO 3`) is refused with Redis' own `-NOPROTO`.

use super::Store;
use super::resp::{Args, parse_i64, reply};

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Continue,
    /// QUIT: its reply is written, then the connection closes.
    Close,
}

/// The commands and their arity, as Redis' command table gives it: `n` is
/// exactly n arguments (the name included), `-n` at least n.
const COMMANDS: &[(&str, i64)] = &[
    ("get", 2),
    ("set", -3),
    ("del", -2),
    ("exists", -2),
    ("incr", 2),
    ("mget", -2),
    ("mset", -3),
    ("ping", -1),
    ("echo", 2),
    ("dbsize", 1),
    ("flushall", -1),
    ("quit", -1),
    ("select", 2),
    ("command", -1),
    ("config", -2),
    ("hello", -1),
    ("info", -1),
];

/// Runs one request and appends its reply to `out`.
/// `client` is the connection's number (HELLO's `id`).
pub fn execute(store: &mut Store, client: u64, args: &Args<'_>, out: &mut Vec<u8>) -> After {
    store.commands += 1;
    let name = args.get(0);
    let Some(&(command, arity)) = COMMANDS
        .iter()
        .find(|(command, _)| name.eq_ignore_ascii_case(command.as_bytes()))
    else {
        unknown_command(args, out);
        return After::Continue;
    };
    let argc = args.len() as i64;
    if (arity > 0 && argc != arity) || argc < -arity {
        let message = format!("ERR wrong number of arguments for '{command}' command");
        reply::error(out, message.as_bytes());
        return After::Continue;
    }
    match command {
        "get" => match store.map.get(args.get(1)) {
            Some(value) => reply::bulk(out, value),
            None => reply::null(out),
        },
        "set" => set(store, args, out),
        "del" => {
            let removed = (1..args.len())
                .filter(|&i| store.map.remove(args.get(i)).is_some())
                .count();
            reply::integer(out, removed as i64);
        }
        "exists" => {
            let found = (1..args.len())
                .filter(|&i| store.map.contains_key(args.get(i)))
                .count();
            reply::integer(out, found as i64);
        }
        "incr" => incr(store, args.get(1), out),
        "mget" => {
            reply::array(out, args.len() - 1);
            for i in 1..args.len() {
                match store.map.get(args.get(i)) {
                    Some(value) => reply::bulk(out, value),
                    None => reply::null(out),
                }
            }
        }
        "mset" if args.len() % 2 == 0 => {
            reply::error(out, b"ERR wrong number of arguments for 'mset' command");
        }
        "mset" => {
            for i in (1..args.len()).step_by(2) {
                store.put(args.get(i), args.get(i + 1));
            }
            reply::simple(out, "OK");
        }
        "ping" if args.len() == 1 => reply::simple(out, "PONG"),
        "ping" if args.len() == 2 => reply::bulk(out, args.get(1)),
        "ping" => reply::error(out, b"ERR wrong number of arguments for 'ping' command"),
        "echo" => reply::bulk(out, args.get(1)),
        "dbsize" => reply::integer(out, store.map.len() as i64),
        "flushall" => {
            let mode = (args.len() == 2).then(|| args.get(1));
            if args.len() > 2
                || mode.is_some_and(|m| {
                    !m.eq_ignore_ascii_case(b"sync") && !m.eq_ignore_ascii_case(b"async")
                })
            {
                reply::error(out, b"ERR syntax error");
            } else {
                store.map = Default::default();
                reply::simple(out, "OK");
            }
        }
        "quit" => {
            reply::simple(out, "OK");
            return After::Close;
        }
        "select" => match parse_i64(args.get(1)) {
            Some(0) => reply::simple(out, "OK"),
            Some(_) => reply::error(out, b"ERR DB index is out of range"),
            None => reply::error(out, b"ERR value is not an integer or out of range"),
        },
        "command" => command_info(args, out),
        "config" => config(args, out),
        "hello" => hello(client, args, out),
        "info" => info(store, out),
        _ => unreachable!("every command in COMMANDS has an arm"),
    }
    After::Continue
}

/// SET key value [NX | XX] [GET] [KEEPTTL].
fn set(store: &mut Store, args: &Args<'_>, out: &mut Vec<u8>) {
    let (mut nx, mut xx, mut get) = (false, false, false);
    for i in 3..args.len() {
        let option = args.get(i);
        let is = |name: &[u8]| option.eq_ignore_ascii_case(name);
        if is(b"nx") && !xx {
            nx = true;
        } else if is(b"xx") && !nx {
            xx = true;
        } else if is(b"get") {
            get = true;
        } else if is(b"keepttl") {
        } else if [&b"ex"[..], b"px", b"exat", b"pxat"].iter().any(|n| is(n)) {
            let message = format!(
                "ERR {} is not supported: this server keeps no expiry",
                String::from_utf8_lossy(option).to_uppercase()
            );
            return reply::error(out, message.as_bytes());
        } else {
            return reply::error(out, b"ERR syntax error");
        }
    }
    let (key, value) = (args.get(1), args.get(2));
    let old = store.map.get(key);
    if get {
        match old {
            Some(old) => reply::bulk(out, old),
            None => reply::null(out),
        }
    }
    if (nx && old.is_some()) || (xx && old.is_none()) {
        if !get {
            reply::null(out);
        }
        return;
    }
    store.put(key, value);
    if !get {
        reply::simple(out, "OK");
    }
}

fn incr(store: &mut Store, key: &[u8], out: &mut Vec<u8>) {
    let current = match store.map.get(key) {
        None => 0,
        Some(value) => match parse_i64(value) {
            Some(n) if value.len() <= 20 => n,
            _ => return reply::error(out, b"ERR value is not an integer or out of range"),
        },
    };
    let Some(next) = current.checked_add(1) else {
        return reply::error(out, b"ERR increment or decrement would overflow");
    };
    store.put(key, itoa::Buffer::new().format(next).as_bytes());
    reply::integer(out, next);
}

/// `-ERR unknown command 'NAME', with args beginning with: 'a' 'b' `: the
/// name cut at 128 bytes, the arguments while the list is under 128.
fn unknown_command(args: &Args<'_>, out: &mut Vec<u8>) {
    let cut = |b: &[u8], n: usize| b[..b.len().min(n)].to_vec();
    let mut message = b"ERR unknown command '".to_vec();
    message.extend(cut(args.get(0), 128));
    message.extend_from_slice(b"', with args beginning with: ");
    let mut listed = Vec::new();
    for i in 1..args.len() {
        if listed.len() >= 128 {
            break;
        }
        listed.push(b'\'');
        listed.extend(cut(args.get(i), 128 - (listed.len() - 1)));
        listed.extend_from_slice(b"' ");
    }
    message.extend(listed);
    reply::error(out, &message);
}

/// COMMAND, COMMAND COUNT, COMMAND DOCS: what a client's startup asks.
fn command_info(args: &Args<'_>, out: &mut Vec<u8>) {
    if args.len() == 1 {
        // Each command as Redis 2.8 described it: name, arity, flags, first
        // key, last key, step.
        reply::array(out, COMMANDS.len());
        for &(name, arity) in COMMANDS {
            reply::array(out, 6);
            reply::bulk(out, name.as_bytes());
            reply::integer(out, arity);
            reply::array(out, 0);
            let keys = matches!(name, "get" | "set" | "del" | "exists" | "incr" | "mget");
            let (first, last, step) = match name {
                "del" | "exists" | "mget" => (1, -1, 1),
                "mset" => (1, -1, 2),
                _ if keys => (1, 1, 1),
                _ => (0, 0, 0),
            };
            reply::integer(out, first);
            reply::integer(out, last);
            reply::integer(out, step);
        }
        return;
    }
    let sub = args.get(1);
    if sub.eq_ignore_ascii_case(b"count") && args.len() > 2 {
        reply::error(
            out,
            b"ERR wrong number of arguments for 'command|count' command",
        );
    } else if sub.eq_ignore_ascii_case(b"count") {
        reply::integer(out, COMMANDS.len() as i64);
    } else if sub.eq_ignore_ascii_case(b"docs") {
        reply::array(out, 0); // no docs: a client falls back to its own
    } else {
        unknown_subcommand(sub, "COMMAND", out);
    }
}

/// CONFIG GET parameter [parameter ...]: the two redis-benchmark asks
/// (`save`, `appendonly`), as this server is: no persistence.
fn config(args: &Args<'_>, out: &mut Vec<u8>) {
    let sub = args.get(1);
    if !sub.eq_ignore_ascii_case(b"get") {
        return unknown_subcommand(sub, "CONFIG", out);
    }
    if args.len() < 3 {
        return reply::error(
            out,
            b"ERR wrong number of arguments for 'config|get' command",
        );
    }
    const CONFIG: &[(&str, &str)] = &[("save", ""), ("appendonly", "no")];
    // Each parameter once, named as asked (Redis echoes a name given
    // without a glob as it was written: `CONFIG GET SAVE` answers `SAVE`).
    let mut found: Vec<(&[u8], &str)> = Vec::new();
    for i in 2..args.len() {
        let pattern = args.get(i);
        for &(name, value) in CONFIG {
            let listed = found
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
            if pattern == b"*" && !listed {
                found.push((name.as_bytes(), value));
            } else if pattern.eq_ignore_ascii_case(name.as_bytes()) && !listed {
                found.push((pattern, value));
            }
        }
    }
    reply::array(out, found.len() * 2);
    for (name, value) in found {
        reply::bulk(out, name);
        reply::bulk(out, value.as_bytes());
    }
}

/// HELLO [2]: the handshake, in RESP2 (RESP3 is refused).
fn hello(client: u64, args: &Args<'_>, out: &mut Vec<u8>) {
    if args.len() > 1 {
        match parse_i64(args.get(1)) {
            Some(2) => {}
            Some(3) => {
                return reply::error(
                    out,
                    b"NOPROTO sorry, this protocol version is not supported",
                );
            }
            Some(_) => {
                return reply::error(out, b"NOPROTO unsupported protocol version");
            }
            None => {
                return reply::error(
                    out,
                    b"ERR Protocol version is not an integer or out of range",
                );
            }
        }
        if args.len() > 2 {
            return reply::error(out, b"ERR HELLO options (AUTH, SETNAME) are not supported");
        }
    }
    reply::array(out, 14);
    for (key, value) in [
        ("server", "edgeloop-kv"),
        ("version", env!("CARGO_PKG_VERSION")),
    ] {
        reply::bulk(out, key.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
    reply::bulk(out, b"proto");
    reply::integer(out, 2);
    reply::bulk(out, b"id");
    reply::integer(out, client as i64);
    for (key, value) in [("mode", "standalone"), ("role", "master")] {
        reply::bulk(out, key.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
    reply::bulk(out, b"modules");
    reply::array(out, 0);
}

/// INFO [section ...]: the fields a client reads, in Redis' format.
/// `redis_version` names the Redis release whose replies these are.
fn info(store: &Store, out: &mut Vec<u8>) {
    let text = format!(
        "# Server\r\nredis_version:7.0.0\r\nedgeloop_kv_version:{}\r\nredis_mode:standalone\r\n\
         process_id:{}\r\n\r\n# Clients\r\nconnected_clients:{}\r\n\r\n# Persistence\r\n\
         loading:0\r\n\r\n# Stats\r\ntotal_commands_processed:{}\r\n\r\n# Replication\r\n\
         role:master\r\n\r\n# Keyspace\r\n{}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        store.connections,
        store.commands,
        if store.map.is_empty() {
            String::new()
        } else {
            format!("db0:keys={},expires=0,avg_ttl=0\r\n", store.map.len())
        }
    );
    reply::bulk(out, text.as_bytes());
}

/// The subcommand's bytes as sent (at most 128), as Redis quotes them.
fn unknown_subcommand(sub: &[u8], command: &str, out: &mut Vec<u8>) {
    let mut message = b"ERR unknown subcommand '".to_vec();
    message.extend_from_slice(&sub[..sub.len().min(128)]);
    message.extend_from_slice(format!("'. Try {command} HELP.").as_bytes());
    reply::error(out, &message);
}
