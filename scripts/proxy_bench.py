#!/usr/bin/env python3
"""The proxy example beside HAProxy (TCP mode, `nbthread 1`, and its
splice mode), same machine, same upstreams, one run.

For each proxy it measures:
  bulk      CPU time of the proxy process per GB carried: CONNS clients
            each send their share of BULK_MB through the proxy to the
            shipped `echo` and read it back (each byte crosses the proxy
            twice; a GB is counted once per direction), checked by hash.
  requests  CPU time of the proxy per request: 1,000 clients, each sends
            64 bytes and waits for their echo, for SECONDS.
            (bulk and requests: ROUNDS rounds, the proxies taking turns,
            the median; the user-space share beside the total.)
  idle      memory per idle pair: IDLE clients connected through the
            proxy to `echo`, each after one 64-byte round trip; the
            proxy's VmRSS after, minus before, per pair.
  slow      300 clients GET a 10 MB file from nginx through the proxy,
            read nothing for 14 s, then read to the end: how many arrive
            intact (length and hash), how long they took after the
            readers resumed, the longest gap between two reads, and the
            kernel's TCP memory-pressure counters (nstat) over the run.

The proxies: the shipped `proxy` example at its default flags
(target/release/examples, built by `cargo build --release --examples`)
and haproxy from PATH (Debian's 2.6: `apt-get install -y haproxy`).
Every process is started here on loopback from a config in a temp dir
and stopped by its pid; every loop is bounded in time.

Usage: scripts/proxy_bench.py [--only bulk,requests,idle,slow]
                              [--proxies edgeloop,haproxy,haproxy-splice]
                              [--rounds 3] [--seconds 8] [--bulk-mb 2048]
"""

import argparse
import hashlib
import os
import selectors
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "target", "release", "examples")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid):
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, limit=10.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Process:
    """A child started here, stopped by its pid."""

    def __init__(self, args, listen_line=False, env=None, stderr=None):
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE if listen_line else subprocess.DEVNULL,
            stderr=stderr or subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.addr = None
        if listen_line:
            line = self.proc.stdout.readline().strip()
            if not line.startswith("listening on "):
                raise RuntimeError(f"{args[0]} printed {line!r}")
            self.addr = line.split()[-1]

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_echo():
    return Process([os.path.join(EXAMPLES, "echo"), "--addr", "127.0.0.1:0"], listen_line=True)


def start_proxy(kind, upstream, tmp, log=None):
    """The proxy `kind` in front of `upstream` (HOST:PORT): (process, port).
    `edgeloop-lt` is the example with `--mode lt`."""
    if kind.startswith("edgeloop"):
        mode = ["--mode", "lt"] if kind == "edgeloop-lt" else []
        env = dict(os.environ, RUST_LOG="info") if log else None
        p = Process(
            [os.path.join(EXAMPLES, "proxy"), "--listen", "127.0.0.1:0", "--upstream", upstream]
            + mode,
            listen_line=True,
            env=env,
            stderr=log,
        )
        return p, int(p.addr.rsplit(":", 1)[1])
    port = free_port()
    splice = "    option splice-auto\n" if kind == "haproxy-splice" else ""
    cfg = os.path.join(tmp, f"{kind}.cfg")
    with open(cfg, "w") as f:
        f.write(
            "global\n    nbthread 1\n    maxconn 8000\n    maxpipes 1000\n    ulimit-n 20000\n"
            "defaults\n    mode tcp\n    timeout connect 5s\n"
            "    timeout client 60s\n    timeout server 60s\n" + splice +
            f"frontend f\n    bind 127.0.0.1:{port}\n    default_backend b\n"
            f"backend b\n    server s1 {upstream}\n"
        )
    p = Process(["haproxy", "-f", cfg, "-db"], stderr=log)
    wait_listening(port)
    return p, port


# ---------------------------------------------------------------- bulk

def bulk(port, total_mb, conns):
    """Each connection sends its share and reads it back: (bytes one way, errors)."""
    share = total_mb * (1 << 20) // conns
    block = os.urandom(1 << 20)
    errors = []

    def one():
        try:
            s = socket.create_connection(("127.0.0.1", port))
            sent_hash = hashlib.sha256()

            def send():
                left = share
                while left:
                    chunk = block[: min(left, len(block))]
                    s.sendall(chunk)
                    sent_hash.update(chunk)
                    left -= len(chunk)
                s.shutdown(socket.SHUT_WR)

            t = threading.Thread(target=send)
            t.start()
            got = hashlib.sha256()
            n = 0
            while True:
                b = s.recv(1 << 18)
                if not b:
                    break
                got.update(b)
                n += len(b)
            t.join()
            s.close()
            if n != share or got.digest() != sent_hash.digest():
                errors.append(f"got {n} of {share}, hash ok {got.digest() == sent_hash.digest()}")
        except OSError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=one) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return share * conns, errors


# ------------------------------------------------------------ requests

def requests(port, conns, seconds):
    """Closed loop, 64 bytes each: (requests answered, errors)."""
    sel = selectors.DefaultSelector()
    msg = b"x" * 64
    socks = []
    errors = 0
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, [0])
    for s in socks:
        s.send(msg)
    done = 0
    end = time.time() + seconds
    while time.time() < end:
        for key, _ in sel.select(timeout=1.0):
            s, got = key.fileobj, key.data
            try:
                b = s.recv(4096)
            except OSError:
                errors += 1
                sel.unregister(s)
                continue
            if not b:
                errors += 1
                sel.unregister(s)
                continue
            got[0] += len(b)
            while got[0] >= 64:
                got[0] -= 64
                done += 1
                s.send(msg)
    for s in socks:
        s.close()
    return done, errors


# ---------------------------------------------------------------- idle

def idle(port, pid, n):
    """RSS per idle pair: (bytes per pair, errors)."""
    time.sleep(0.5)
    before = rss_bytes(pid)
    socks = []
    errors = 0
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"y" * 64)
        socks.append(s)
    for s in socks:
        s.settimeout(10)
        got = b""
        try:
            while len(got) < 64:
                b = s.recv(64 - len(got))
                if not b:
                    break
                got += b
        except OSError:
            pass
        if len(got) != 64:
            errors += 1
    time.sleep(1.0)
    after = rss_bytes(pid)
    for s in socks:
        s.close()
    return (after - before) / n, errors


# ---------------------------------------------------------------- slow

def nstat():
    out = subprocess.run(["nstat", "-az"], capture_output=True, text=True).stdout
    counters = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            counters[parts[0]] = int(parts[1])
    return counters


def slow(port, body_hash, body_len, clients, pause):
    """Slow readers: (intact, seconds after resume to the last byte, longest gap, errors)."""
    socks = []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /f HTTP/1.0\r\nHost: x\r\n\r\n")
        socks.append(s)
    time.sleep(pause)
    resumed = time.time()
    sel = selectors.DefaultSelector()
    state = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        state[s] = {"buf": bytearray(), "last": resumed, "gap": 0.0, "done": None}
    left = len(socks)
    errors = 0
    deadline = resumed + 300
    while left and time.time() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            st = state[s]
            try:
                b = s.recv(1 << 18)
            except OSError:
                b = b""
                errors += 1
            now = time.time()
            st["gap"] = max(st["gap"], now - st["last"])
            st["last"] = now
            if b:
                st["buf"] += b
            else:
                st["done"] = now
                sel.unregister(s)
                left -= 1
    intact = 0
    for s, st in state.items():
        head, _, body = bytes(st["buf"]).partition(b"\r\n\r\n")
        if len(body) == body_len and hashlib.sha256(body).digest() == body_hash:
            intact += 1
        s.close()
    finished = [st["done"] for st in state.values() if st["done"]]
    took = (max(finished) - resumed) if finished else float("nan")
    gap = max(st["gap"] for st in state.values())
    return intact, took, gap, errors + left


def start_nginx(tmp, body):
    root = os.path.join(tmp, "www")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "f"), "wb") as f:
        f.write(body)
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
            f"error_log {tmp}/nginx.err;\nevents {{ worker_connections 4096; }}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {tmp};\n"
            f"  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n"
            f"  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n"
            f"  server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n"
        )
    p = Process(["nginx", "-c", conf, "-p", tmp])
    wait_listening(port)
    return p, port


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="bulk,requests,idle,slow")
    ap.add_argument("--proxies", default="edgeloop,haproxy,haproxy-splice")
    ap.add_argument("--bulk-mb", type=int, default=2048)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--report", help="also write the results as markdown here "
                    "(docs/proxy-report.md is this script's output)")
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--slow-clients", type=int, default=300)
    ap.add_argument("--pause", type=float, default=14)
    args = ap.parse_args()
    only = args.only.split(",")
    proxies = args.proxies.split(",")
    for tool in ["proxy", "echo"]:
        if not os.path.exists(os.path.join(EXAMPLES, tool)):
            sys.exit(f"build first: cargo build --release --examples ({tool} missing)")
    if any(p.startswith("haproxy") for p in proxies) and not shutil.which("haproxy"):
        sys.exit("haproxy not found: apt-get install -y haproxy")

    tmp = tempfile.mkdtemp(prefix="proxy_bench.")
    echo = start_echo()
    rows = {}
    try:
        body = os.urandom(10 * 1000 * 1000)
        nginx, nginx_port = start_nginx(tmp, body) if "slow" in only else (None, None)
        # The CPU figures are noisy on 2 cores (the client, the echo and
        # the proxy share them): ROUNDS rounds, the proxies taking turns
        # within each, and the median of each figure.
        samples = {}
        for _ in range(args.rounds):
            for kind in proxies:
                got = samples.setdefault(kind, {})
                if "bulk" in only:
                    p, port = start_proxy(kind, echo.addr, tmp)
                    u0, s0 = cpu_times(p.pid)
                    carried, errors = bulk(port, args.bulk_mb, args.conns)
                    u1, s1 = cpu_times(p.pid)
                    got.setdefault("cpu_per_gb", []).append((u1 + s1 - u0 - s0) / (carried / 1e9))
                    got.setdefault("user_per_gb", []).append((u1 - u0) / (carried / 1e9))
                    got.setdefault("bulk_errors", []).append(len(errors))
                    for e in errors:
                        print(f"{kind} bulk error: {e}", flush=True)
                    p.stop()
                if "requests" in only:
                    p, port = start_proxy(kind, echo.addr, tmp)
                    u0, s0 = cpu_times(p.pid)
                    done, errors = requests(port, 1000, args.seconds)
                    u1, s1 = cpu_times(p.pid)
                    got.setdefault("cpu_us_per_request", []).append(
                        (u1 + s1 - u0 - s0) / max(done, 1) * 1e6)
                    got.setdefault("user_us_per_request", []).append(
                        (u1 - u0) / max(done, 1) * 1e6)
                    got.setdefault("request_errors", []).append(errors)
                    p.stop()
        for kind in proxies:
            row = rows.setdefault(kind, {})
            for key, values in samples.get(kind, {}).items():
                if key.endswith("errors"):
                    row[key] = sum(values)
                else:
                    row[key] = statistics.median(values)
                    row[key + "_all"] = [round(v, 3) for v in values]
            if "idle" in only:
                p, port = start_proxy(kind, echo.addr, tmp)
                per_pair, errors = idle(port, p.pid, args.idle)
                row["bytes_per_idle_pair"] = per_pair
                row["idle_errors"] = errors
                p.stop()
            if "slow" in only:
                log = open(os.path.join(tmp, f"{kind}.log"), "w")
                p, port = start_proxy(kind, f"127.0.0.1:{nginx_port}", tmp, log=log)
                before = nstat()
                intact, took, gap, errors = slow(
                    port, hashlib.sha256(body).digest(), len(body), args.slow_clients, args.pause
                )
                after = nstat()
                row.update(slow_intact=intact, slow_s=took, slow_gap_s=gap, slow_errors=errors)
                row["nstat"] = {
                    k: after.get(k, 0) - before.get(k, 0)
                    for k in ["TcpExtTCPMemoryPressures", "TcpExtTCPRcvQDrop", "TcpExtTCPOFODrop",
                              "TcpExtTCPBacklogDrop", "TcpExtPruneCalled", "TcpExtRcvPruned",
                              "TcpRetransSegs"]
                }
                p.stop()
                log.close()
                if kind.startswith("edgeloop"):
                    with open(log.name) as f:
                        row["stats"] = [l.strip() for l in f if "connections:" in l]
            print(kind, row, flush=True)
        if nginx:
            nginx.stop()
    finally:
        echo.stop()

    lines = [
        "| proxy | CPU s/GB | user s/GB | CPU µs/request | user µs/request | B/idle pair "
        "| slow intact | slow s | slow gap s | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, r in rows.items():
        errs = sum(r.get(k, 0) for k in ["bulk_errors", "request_errors", "idle_errors", "slow_errors"])
        fmt = lambda k, f: (f % r[k]) if k in r else "-"
        lines.append(
            f"| {kind} | {fmt('cpu_per_gb', '%.3f')} | {fmt('user_per_gb', '%.3f')} | "
            f"{fmt('cpu_us_per_request', '%.1f')} | {fmt('user_us_per_request', '%.2f')} | "
            f"{fmt('bytes_per_idle_pair', '%.0f')} | {fmt('slow_intact', '%d')} | "
            f"{fmt('slow_s', '%.1f')} | {fmt('slow_gap_s', '%.2f')} | {errs} |")
    lines.append("")
    base = rows.get("edgeloop")
    for kind, r in rows.items():
        if kind == "edgeloop" or not base:
            continue
        ratios = []
        for k, name in [("cpu_per_gb", "CPU/GB"), ("user_per_gb", "user CPU/GB"),
                        ("cpu_us_per_request", "CPU/request"),
                        ("user_us_per_request", "user CPU/request"),
                        ("bytes_per_idle_pair", "memory/idle pair"), ("slow_s", "slow-reader time")]:
            if k in r and k in base and r[k]:
                ratios.append(f"{name} {base[k] / r[k]:.2f}x")
        lines.append(f"- edgeloop vs {kind}: " + ", ".join(ratios))
    print("\n".join(lines))
    if args.report:
        write_report(args, rows, lines)
    shutil.rmtree(tmp, ignore_errors=True)


def write_report(args, rows, table):
    """The run as a markdown page: what ran, the table, every sample."""
    kernel = os.uname().release
    haproxy = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    out = [
        "# The proxy example beside HAProxy",
        "",
        "Written by `scripts/proxy_bench.py` (do not edit by hand); the command:",
        "",
        "    " + " ".join(["scripts/proxy_bench.py"] + sys.argv[1:]),
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs, "
        f"Linux {kernel}; {haproxy}. The proxies: the shipped `proxy` example at its "
        "default flags (`edgeloop`; `edgeloop-lt` is `--mode lt`), HAProxy in TCP mode with "
        "`nbthread 1` (`haproxy`) and with `option splice-auto` (`haproxy-splice`). "
        f"Bulk: {args.conns} connections carrying {args.bulk_mb} MB each way through the "
        f"proxy to the shipped `echo`. Requests: 1,000 connections, 64 B each, closed loop, "
        f"{args.seconds} s. Bulk and requests: the median of {args.rounds} rounds, the proxies "
        f"taking turns. Idle: {args.idle} pairs after one round trip each. Slow: "
        f"{args.slow_clients} clients GET 10 MB from nginx through the proxy and read nothing "
        f"for {args.pause} s. CPU is the proxy process's user + system time (/proc); on "
        "loopback most of it is the kernel's TCP, which every proxy pays alike, so the user "
        "share is beside it.",
        "",
    ] + table + ["", "## Every sample", ""]
    for kind, r in rows.items():
        out.append(f"- `{kind}`:")
        for k, v in r.items():
            out.append(f"  - {k}: {v}")
    with open(args.report, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
