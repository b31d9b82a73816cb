#!/usr/bin/env bash
# User-space instructions per echoed message, counted by callgrind: repeatable
# to about 1% on a noisy VM, unlike times. Each server runs under callgrind
# (`bench serve`), fed natively by `bench load` (100 connections x 64 B,
# pipeline 1). Two runs per server, M1 and M2 messages per connection; the
# difference cancels start-up and shutdown:
#   per message = (I(M2) - I(M1)) / (connections * (M2 - M1))
#
# Usage: scripts/instructions.sh [server ...]   (default: edgeloop-lt edgeloop-et edgeloop-et-drain raw)
set -euo pipefail
cd "$(dirname "$0")/.."
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(edgeloop-lt edgeloop-et edgeloop-et-drain raw)
conns=100 size=64 m1=100 m2=300
cargo build --quiet --release --example bench
bench=target/release/examples/bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

count() { # server messages -> total instructions of the server process
  local server=$1 msgs=$2 fifo="$work/out.$1.$2"
  mkfifo "$fifo"
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$server.$msgs" \
    "$bench" serve "$server" --exit-after "$conns" >"$fifo" 2>"$work/vg.$server.$msgs" &
  local pid=$! addr
  read -r line <"$fifo"; addr=${line#listening on }
  "$bench" load --addr "$addr" --connections "$conns" --size "$size" --messages "$msgs" >/dev/null
  wait "$pid"
  awk '/^summary:/ {print $2}' "$work/cg.$server.$msgs"
}

printf '| server | instructions per echoed message (%d conns x %d B) |\n|---|---:|\n' "$conns" "$size"
for server in "${servers[@]}"; do
  i1=$(count "$server" $m1)
  i2=$(count "$server" $m2)
  awk -v a="$i1" -v b="$i2" -v n=$((conns * (m2 - m1))) -v s="$server" \
    'BEGIN { printf "| %s | %.1f |\n", s, (b - a) / n }'
done
