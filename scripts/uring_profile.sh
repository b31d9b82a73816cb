#!/usr/bin/env bash
# Why the io_uring echo server costs more CPU per message than the epoll
# one (docs/study.md, "Why io_uring cost more CPU here"). For each server
# of the study's `models` (epoll-lt, io_uring, io_uring-pollfirst,
# io_uring-defer, io_uring-pbuf), RUNS runs of the bench's load generator
# (CONNS connections, MSGS 64-byte messages each, one in flight per
# connection), each with:
# - the server's user and system CPU per message (/proc/PID/stat);
# - per message, from `perf stat` on the server: its syscalls, its context
#   switches, and the io_uring tracepoints (requests submitted, internal
#   polls armed, task-work runs, completions);
# - from `perf record` (cpu-clock samples at 1 kHz) on the server: the
#   share of its CPU spent in the spin-lock slow path (waiting for a lock
#   another CPU holds), and which kernel function took the lock most.
#
# Needs perf with tracepoints (root, or perf_event_paranoid <= -1) and
# tracefs (mounted here if it is not). Usage:
#   scripts/uring_profile.sh [CONNS] [MSGS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-100}
msgs=${2:-2000}
runs=${3:-3}
total=$((conns * msgs))

cargo build --quiet --release -p edgeloop-study --bin models
cargo build --quiet --release --example bench
[ -d /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing

events=context-switches
for e in syscalls:sys_enter_epoll_wait syscalls:sys_enter_epoll_pwait2 \
  syscalls:sys_enter_recvfrom syscalls:sys_enter_sendto syscalls:sys_enter_io_uring_enter \
  io_uring:io_uring_submit_req io_uring:io_uring_poll_arm io_uring:io_uring_task_work_run \
  io_uring:io_uring_local_work_run \
  io_uring:io_uring_complete; do
  events+=",$e"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ticks() { awk '{print $14 + 0, $15 + 0}' "/proc/$1/stat"; }

printf '| server | run | user µs/msg | system µs/msg | epoll waits | recv | send | io_uring_enter | requests | polls armed | task-work runs | completions | context switches | spin-lock slow path |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for model in epoll-lt io_uring io_uring-pollfirst io_uring-defer io_uring-pbuf; do
  for run in $(seq 1 "$runs"); do
    ./target/release/models serve "$model" >"$tmp/out" 2>/dev/null &
    pid=$!
    for _ in $(seq 1 50); do grep -q listening "$tmp/out" && break; sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$tmp/out")
    read -r u0 s0 < <(ticks "$pid")
    perf stat -x, -o "$tmp/stat" -e "$events" -p "$pid" &
    perf=$!
    perf record -q -e cpu-clock -F 1000 -o "$tmp/samples" -p "$pid" 2>/dev/null &
    record=$!
    sleep 0.3
    ./target/release/examples/bench load --addr "$addr" --connections "$conns" \
      --messages "$msgs" >"$tmp/load" 2>&1
    kill -INT "$perf" "$record"
    wait "$perf" "$record" || true
    read -r u1 s1 < <(ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" || true
    grep -q " 0 errors" "$tmp/load" || { cat "$tmp/load"; exit 1; }
    per() { awk -F, -v e="$1" -v t="$total" '$3 == e { printf "%.3f", $1 / t; found = 1 } END { if (!found) printf "-" }' "$tmp/stat"; }
    # A clock tick is 10 ms.
    user=$(awk -v a="$u0" -v b="$u1" -v t="$total" 'BEGIN { printf "%.2f", (b - a) * 10000 / t }')
    sys=$(awk -v a="$s0" -v b="$s1" -v t="$total" 'BEGIN { printf "%.2f", (b - a) * 10000 / t }')
    task_work=$(awk -F, -v t="$total" '$3 ~ /io_uring_(task|local)_work_run/ { n += $1 } END { printf "%.3f", n / t }' "$tmp/stat")
    waits=$(awk -F, -v t="$total" '$3 ~ /epoll_(p)?wait/ { n += $1 } END { printf "%.3f", n / t }' "$tmp/stat")
    slow=$(perf report -i "$tmp/samples" --no-children --sort sym --stdio 2>/dev/null |
      awk '/queued_spin_lock_slowpath/ { printf "%s", $1; found = 1 } END { if (!found) printf "0%%" }')
    printf '| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
      "$model" "$run" "$user" "$sys" "$waits" \
      "$(per syscalls:sys_enter_recvfrom)" "$(per syscalls:sys_enter_sendto)" \
      "$(per syscalls:sys_enter_io_uring_enter)" "$(per io_uring:io_uring_submit_req)" \
      "$(per io_uring:io_uring_poll_arm)" "$task_work" \
      "$(per io_uring:io_uring_complete)" "$(per context-switches)" "$slow"
  done
done
