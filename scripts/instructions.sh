#!/usr/bin/env bash
# User-space instructions per echoed message, counted by callgrind: repeatable
# to about 1% on a noisy VM, unlike times. Each server runs under callgrind,
# fed natively by `bench load` (100 connections x 64 B, pipeline 1). Two runs
# per server, M1 and M2 messages per connection; the difference cancels
# start-up and shutdown:
#   per message = (I(M2) - I(M1)) / (connections * (M2 - M1))
#
# Servers:
#   echo-lt, echo-et   the shipped `echo` example with its default flags
#                      (60 s idle timeout on), only --mode chosen
#   kv                 the shipped `kv` example with its default flags (RESP),
#                      fed pipelined SET/GET (16 in flight per connection)
#                      by scripts/kv_load.py (python3); figures per command
#   edgeloop-lt, edgeloop-et, edgeloop-et-drain, raw, ...
#                      `bench serve NAME` (the bench's servers)
#
# Usage: scripts/instructions.sh [server ...]
#   (default: echo-lt echo-et kv edgeloop-lt edgeloop-et edgeloop-et-drain raw)
set -euo pipefail
cd "$(dirname "$0")/.."
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(echo-lt echo-et kv edgeloop-lt edgeloop-et edgeloop-et-drain raw)
conns=100 size=64 m1=100 m2=300
cargo build --quiet --release --example bench --example echo --example kv
bench=target/release/examples/bench
echo=target/release/examples/echo
kv=target/release/examples/kv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

count() { # server messages -> total instructions of the server process
  local server=$1 msgs=$2 fifo="$work/out.$1.$2" cmd
  case $server in
    echo-*) cmd=("$echo" --addr 127.0.0.1:0 --mode "${server#echo-}") ;;
    kv) cmd=("$kv" --addr 127.0.0.1:0) ;;
    *) cmd=("$bench" serve "$server" --exit-after "$conns") ;;
  esac
  mkfifo "$fifo"
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$server.$msgs" \
    "${cmd[@]}" >"$fifo" 2>"$work/vg.$server.$msgs" &
  local pid=$! addr line
  exec 3<"$fifo"
  read -r line <&3; addr=${line#listening on }
  case $server in
    kv) python3 scripts/kv_load.py "$addr" "$conns" "$msgs" ;;
    *) "$bench" load --addr "$addr" --connections "$conns" --size "$size" --messages "$msgs" >/dev/null ;;
  esac
  case $server in
    echo-* | kv) kill -TERM "$pid" ;; # the examples exit 0 on SIGTERM
  esac
  wait "$pid"
  exec 3<&-
  awk '/^summary:/ {print $2}' "$work/cg.$server.$msgs"
}

printf '| server | instructions per message (%d conns x %d B; kv: per command) |\n|---|---:|\n' "$conns" "$size"
for server in "${servers[@]}"; do
  i1=$(count "$server" $m1)
  i2=$(count "$server" $m2)
  awk -v a="$i1" -v b="$i2" -v n=$((conns * (m2 - m1))) -v s="$server" \
    'BEGIN { printf "| %s | %.1f |\n", s, (b - a) / n }'
done
