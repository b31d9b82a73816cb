#!/usr/bin/env bash
# What idle connections cost a shipped server: bytes per idle connection
# (the growth of the server's RSS with N idle connections open), its CPU
# while they sit idle (utime + stime ticks from /proc), and the loop's
# wakeups while they do (epoll_wait calls counted by strace attached for
# the idle hold only).
#
# Usage: scripts/idle.sh [N] [-- EXTRA ECHO FLAGS]   (default N = 10000)
#   scripts/idle.sh 10000                      echo, default flags (60 s timeout)
#   scripts/idle.sh 10000 -- --idle-timeout 0  echo without an idle timeout
# Needs python3 (the client holds the connections) and strace.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
shift || true
[ "${1:-}" = "--" ] && shift
extra=("$@")
hold=${HOLD:-10}
cargo build --quiet --release --example echo
echo=target/release/examples/echo
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # mode -> "rss_delta_bytes cpu_ticks_during_hold epoll_waits_during_hold"
  local mode=$1
  RUST_LOG=info "$echo" --addr 127.0.0.1:0 --mode "$mode" "${extra[@]}" >"$work/out" 2>"$work/err" &
  local pid=$!
  while ! grep -q listening "$work/out" 2>/dev/null; do sleep 0.05; done
  local addr
  addr=$(sed 's/listening on //' "$work/out")
  python3 - "$addr" "$n" "$hold" "$pid" <<'EOF' >"$work/client"
import socket, subprocess, sys, time
host, port = sys.argv[1].rsplit(":", 1)
n, hold, pid = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
before = rss()
conns = []
for i in range(n):
    s = socket.create_connection((host, int(port)))
    conns.append(s)
time.sleep(1.0)  # every connection accepted
after = rss()
c0 = cpu()
trace = subprocess.run(
    ["timeout", "-s", "INT", str(hold), "strace", "-c", "-e", "trace=epoll_wait,epoll_pwait", "-p", pid],
    capture_output=True, text=True)
c1 = cpu()
waits = sum(int(l.split()[3]) for l in trace.stderr.splitlines() if l.split()[-1:] in (["epoll_wait"], ["epoll_pwait"]))
print(after - before, c1 - c0, waits)
for s in conns:
    s.close()
EOF
  kill -TERM "$pid"
  wait "$pid"
  cat "$work/client"
}

printf '| server | bytes per idle connection | CPU ticks in %d idle s | wakeups in %d idle s |\n|---|---:|---:|---:|\n' "$hold" "$hold"
for mode in lt et; do
  read -r rss cpu waits <<<"$(run $mode)"
  awk -v m="echo --mode $mode ${extra[*]}" -v r="$rss" -v n="$n" -v c="$cpu" -v w="$waits" \
    'BEGIN { printf "| %s | %.0f | %d | %d |\n", m, r / n, c, w }'
done
