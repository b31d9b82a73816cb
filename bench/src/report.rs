//! The default sweep's outputs: the Markdown report with its goals, the
//! CSV, and the plots.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Duration;

use super::servers::Kind;
use super::{Cli, Row, plot};

fn fmt_dur(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

pub fn report(cli: &Cli, rows: &[Row], idle: &[(Kind, f64)], duration: Duration) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# edgeloop bench\n\nEcho, {} s per cell after {} s warm-up, pipeline {}, {} load thread(s){}, every byte verified. \
         CPU = server thread CPU time per echoed message. Syscalls per message from edgeloop's Stats \
         and raw's counters (mio and tokio keep none).\n",
        duration.as_secs_f64(),
        cli.warmup,
        cli.pipeline,
        cli.client_threads,
        cli.pin_server
            .map_or(String::new(), |c| format!(", server pinned to CPU {c}")),
    );
    let _ = writeln!(
        r,
        "| server | conns | size | msgs/s | p50 | p99 | errors | CPU µs/msg | syscalls/msg | wait | ctl | read | EAGAIN read | write |"
    );
    let _ = writeln!(
        r,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in rows {
        let sys = format!("| {} |", row.syscall_cells(" | ", 3, "-"));
        let _ = writeln!(
            r,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.3} {sys}",
            row.server.name(),
            row.connections,
            row.size,
            row.msgs_per_sec,
            fmt_dur(row.p50),
            fmt_dur(row.p99),
            row.errors,
            row.cpu_us_per_msg,
        );
    }
    if !idle.is_empty() {
        let _ = writeln!(
            r,
            "\n| server | user-space bytes per idle connection ({} connections, RSS delta of a child process) |\n|---|---:|",
            cli.idle_connections
        );
        for (server, bytes) in idle {
            let _ = writeln!(r, "| {} | {bytes:.0} |", server.name());
        }
    }
    let _ = writeln!(r, "\n## Goals (measured in this run)\n");
    goals(&mut r, rows, idle);
    r
}

fn find(rows: &[Row], server: Kind, connections: usize, size: usize) -> Option<&Row> {
    rows.iter()
        .find(|r| r.server == server && r.connections == connections && r.size == size)
}

fn goals(r: &mut String, rows: &[Row], idle: &[(Kind, f64)]) {
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for conns in [100, 1000] {
        for server in [Kind::EdgeloopEt, Kind::EdgeloopLt] {
            let Some(ours) = find(rows, server, conns, 64) else {
                continue;
            };
            for (peer, limit) in [(Kind::Raw, 1.03), (Kind::Mio, 0.95), (Kind::Tokio, 0.90)] {
                if let Some(theirs) = find(rows, peer, conns, 64) {
                    let ratio = ours.cpu_us_per_msg / theirs.cpu_us_per_msg;
                    let _ = writeln!(
                        r,
                        "- CPU/msg, {conns} conns, 64 B: {} / {} = {ratio:.3} (goal ≤ {limit}): {}",
                        server.name(),
                        peer.name(),
                        verdict(ratio <= limit)
                    );
                }
            }
        }
    }
    for row in rows.iter().filter(|r| r.size == 64 && r.connections >= 100) {
        let Some(s) = row.syscalls else { continue };
        if matches!(row.server, Kind::EdgeloopLt | Kind::EdgeloopEt) {
            let per = row.per_msg(s.total());
            let _ = writeln!(
                r,
                "- syscalls/msg, {} {} conns: {per:.3} (goal ≤ 2.05): {}",
                row.server.name(),
                row.connections,
                verdict(per <= 2.05)
            );
        }
        if row.server == Kind::EdgeloopEt {
            let _ = writeln!(
                r,
                "- epoll_ctl/msg, edgeloop-et {} conns: {:.4} (goal 0): {}",
                row.connections,
                row.per_msg(s.ctls),
                verdict(s.ctls == 0)
            );
        }
    }
    for (server, bytes) in idle
        .iter()
        .filter(|(k, _)| matches!(k, Kind::EdgeloopEt | Kind::EdgeloopLt))
    {
        let _ = writeln!(
            r,
            "- bytes per idle connection, {}: {bytes:.0} (goal ≤ 64): {}",
            server.name(),
            verdict(*bytes <= 64.0)
        );
    }
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    let _ = writeln!(
        r,
        "- errors in every cell: {errors} (goal 0): {}",
        verdict(errors == 0)
    );
    let _ = writeln!(
        r,
        "- user-space instructions per message: not measured by this command; run `scripts/instructions.sh` (callgrind)"
    );
}

pub fn csv(rows: &[Row], idle: &[(Kind, f64)]) -> String {
    let mut out = String::from(
        "server,connections,size,msgs_per_sec,p50_us,p99_us,errors,cpu_us_per_msg,syscalls_per_msg,waits_per_msg,ctls_per_msg,reads_per_msg,eagain_reads_per_msg,writes_per_msg,idle_bytes_per_conn\n",
    );
    for row in rows {
        let sys = row.syscall_cells(",", 4, "");
        let _ = writeln!(
            out,
            "{},{},{},{:.0},{:.1},{:.1},{},{:.4},{sys},",
            row.server.name(),
            row.connections,
            row.size,
            row.msgs_per_sec,
            row.p50.as_secs_f64() * 1e6,
            row.p99.as_secs_f64() * 1e6,
            row.errors,
            row.cpu_us_per_msg
        );
    }
    for (server, bytes) in idle {
        let _ = writeln!(out, "{},idle,,,,,,,,,,,,,{bytes:.0}", server.name());
    }
    out
}

pub fn plots(out: &Path, rows: &[Row]) -> io::Result<()> {
    let series = |value: &dyn Fn(&Row) -> f64| {
        let mut s: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for row in rows {
            let name = format!("{} {} B", row.server.name(), row.size);
            let point = (row.connections as f64, value(row).max(1e-9));
            match s.iter_mut().find(|(n, _)| *n == name) {
                Some((_, pts)) => pts.push(point),
                None => s.push((name, vec![point])),
            }
        }
        s
    };
    plot::lines(
        &out.join("throughput.svg"),
        "echo throughput vs connections",
        "connections",
        "messages / s",
        &series(&|r| r.msgs_per_sec),
    )?;
    plot::lines(
        &out.join("cpu_per_message.svg"),
        "server CPU per message vs connections",
        "connections",
        "server CPU µs / message",
        &series(&|r| r.cpu_us_per_msg),
    )
}
