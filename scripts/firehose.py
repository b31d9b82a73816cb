#!/usr/bin/env python3
"""Fairness under a firehose: how long a well-behaved client waits while
other clients pipeline requests at full speed and never read.

For each server (kv and redis-server side by side, then http, echo and
embed's control port) it starts the server on loopback, starts FLOODERS
connections in a process of their own that write pipelined requests as
fast as the server takes them and never read, and meanwhile a
well-behaved client, in this process, sends one request, waits for its
whole reply, pauses 50 ms and repeats for SECONDS. It reports the
well-behaved client's waits (median, p99, max), how many replies it got,
and errors (a reply that never came within 10 s, or a broken connection).

The servers are the shipped examples at their default flags
(target/release/examples, built by `cargo build --release --examples`)
and redis-server from PATH (persistence off). Every server is started
here and stopped by its pid; every loop is bounded in time.

Usage: scripts/firehose.py [--flooders 200] [--seconds 8] [--only kv,redis]
"""

import argparse
import multiprocessing
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "target", "release", "examples")

# Per server: the flood's request, the good client's request, and how its
# reply ends.
PING = b"*1\r\n$4\r\nPING\r\n"
GET = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
HTTP = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
SERVERS = {
    "kv": (GET, PING, b"+PONG\r\n"),
    "redis": (GET, PING, b"+PONG\r\n"),
    "http": (HTTP, HTTP, b"Hello, World!"),
    "echo": (b"x" * 63 + b"\n", b"ping\n", b"ping\n"),
    "embed": (b"stats\n", b"stats\n", b"\n"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, workdir):
    """Starts server `name`; returns (process, port)."""
    if name == "redis":
        port = free_port()
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", workdir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, port
            except OSError:
                time.sleep(0.05)
        proc.kill()
        raise SystemExit("redis-server did not start")
    exe = os.path.join(EXAMPLES, name)
    if not os.path.exists(exe):
        raise SystemExit(f"{exe} missing: run `cargo build --release --examples` first")
    proc = subprocess.Popen([exe, "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"{name} printed {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def flood(port, flooders, request, seconds, ready):
    """Writes `request` pipelined on `flooders` connections until `seconds`
    pass; never reads."""
    chunk = request * max(1, 65536 // len(request))
    socks = []
    for _ in range(flooders):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
    ready.set()
    end = time.time() + seconds
    while time.time() < end:
        for key, _ in sel.select(timeout=0.1):
            try:
                key.fileobj.send(chunk)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                sel.unregister(key.fileobj)
    for s in socks:
        s.close()


def good_client(port, request, ends, seconds):
    """One request at a time: the waits, and the errors."""
    waits, errors = [], 0
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    end = time.time() + seconds
    while time.time() < end:
        sent = time.monotonic()
        try:
            s.sendall(request)
            reply = b""
            while not reply.endswith(ends):
                got = s.recv(65536)
                if not got:
                    raise OSError("closed")
                reply += got
            waits.append(time.monotonic() - sent)
        except OSError:
            errors += 1
            s.close()
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(10)
        time.sleep(0.05)
    s.close()
    return waits, errors


def quantile(sorted_waits, q):
    if not sorted_waits:
        return float("nan")
    return sorted_waits[min(len(sorted_waits) - 1, int(q * len(sorted_waits)))]


def run(name, flooders, seconds, workdir):
    flood_request, request, ends = SERVERS[name]
    proc, port = start(name, workdir)
    try:
        ready = multiprocessing.Event()
        flooder = multiprocessing.Process(
            target=flood, args=(port, flooders, flood_request, seconds + 1, ready))
        flooder.start()
        ready.wait(30)
        time.sleep(0.5)  # the flood is under way
        waits, errors = good_client(port, request, ends, seconds)
        flooder.join(30)
        if flooder.is_alive():
            flooder.kill()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    waits.sort()
    return len(waits), quantile(waits, 0.5), quantile(waits, 0.99), (waits or [float("nan")])[-1], errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flooders", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--only", default=",".join(SERVERS))
    args = parser.parse_args()
    print(f"{args.flooders} flooders, {args.seconds:g} s, one well-behaved client "
          "(one request, its whole reply, 50 ms pause)")
    print(f"{'server':<8} {'replies':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'errors':>6}")
    failed = False
    with tempfile.TemporaryDirectory(prefix="edgeloop-firehose-") as workdir:
        for name in args.only.split(","):
            n, p50, p99, worst, errors = run(name, args.flooders, args.seconds, workdir)
            failed |= errors > 0
            print(f"{name:<8} {n:>7} {p50 * 1e3:>9.1f} {p99 * 1e3:>9.1f} {worst * 1e3:>9.1f} {errors:>6}",
                  flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
