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
# And, with the field's tools installed (not in the default list):
#   kv-get, redis-server  the shipped `kv` (default flags) and redis-server
#                      (persistence off) under `redis-benchmark -t get -c 100
#                      -P 1`; figures per request
#   http, nginx        the shipped `http` (default flags) and nginx (one
#                      process: master_process off, access_log off) under
#                      `h2load --h1 -c 100 -m 1`; figures per request
#
# Usage: scripts/instructions.sh [server ...]
#   (default: echo-lt echo-et kv edgeloop-lt edgeloop-et edgeloop-et-drain raw)
set -euo pipefail
cd "$(dirname "$0")/.."
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(echo-lt echo-et kv edgeloop-lt edgeloop-et edgeloop-et-drain raw)
conns=100 size=64 m1=100 m2=300
cargo build --quiet --release --example bench --example echo --example kv --example http
bench=target/release/examples/bench
echo=target/release/examples/echo
kv=target/release/examples/kv
http=target/release/examples/http
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

count() { # server messages -> total instructions of the server process
  local server=$1 msgs=$2 fifo="$work/out.$1.$2" cmd
  case $server in
    echo-*) cmd=("$echo" --addr 127.0.0.1:0 --mode "${server#echo-}") ;;
    kv | kv-get) cmd=("$kv" --addr 127.0.0.1:0) ;;
    http) cmd=("$http" --addr 127.0.0.1:0) ;;
    redis-server) # prints `listening on` itself, for the reader below
      port=$(free_port)
      cmd=(sh -c "echo listening on 127.0.0.1:$port; exec redis-server --port $port --save '' --appendonly no --logfile $work/redis.log") ;;
    nginx)
      port=$(free_port)
      mkdir -p "$work/nginx"
      printf 'worker_processes 1; daemon off; master_process off; pid %s/nginx.pid; error_log %s/error.log warn;\nevents { worker_connections 4096; }\nhttp { access_log off; keepalive_requests 100000000; client_body_temp_path %s/b; proxy_temp_path %s/p; fastcgi_temp_path %s/f; uwsgi_temp_path %s/u; scgi_temp_path %s/s;\n server { listen 127.0.0.1:%s; location = / { default_type text/plain; return 200 "Hello, World!"; } } }\n' \
        "$work" "$work" "$work" "$work" "$work" "$work" "$work" "$port" >"$work/nginx.conf"
      cmd=(sh -c "echo listening on 127.0.0.1:$port; exec nginx -p $work/nginx -c $work/nginx.conf -e $work/error.log") ;;
    *) cmd=("$bench" serve "$server" --exit-after "$conns") ;;
  esac
  mkfifo "$fifo"
  # The peers start through sh (which prints their address): follow the exec.
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$work/cg.$server.$msgs" \
    "${cmd[@]}" >"$fifo" 2>"$work/vg.$server.$msgs" &
  local pid=$! addr line
  exec 3<"$fifo"
  read -r line <&3; addr=${line#listening on }
  case $server in
    kv) python3 scripts/kv_load.py "$addr" "$conns" "$msgs" ;;
    kv-get | redis-server)
      until redis-cli -p "${addr##*:}" PING >/dev/null 2>&1; do sleep 0.2; done
      redis-benchmark -p "${addr##*:}" -t get -c "$conns" -P 1 -n $((conns * msgs)) -q >/dev/null ;;
    http | nginx)
      until curl -s "http://$addr/" >/dev/null; do sleep 0.2; done
      h2load --h1 -c "$conns" -m 1 -n $((conns * msgs)) "http://$addr/" | grep -q ' 0 failed, 0 errored' ;;
    *) "$bench" load --addr "$addr" --connections "$conns" --size "$size" --messages "$msgs" >/dev/null ;;
  esac
  case $server in
    echo-* | kv* | http | redis-server | nginx) kill -TERM "$pid" ;; # SIGTERM: they exit
  esac
  wait "$pid"
  exec 3<&-
  awk '/^summary:/ {print $2}' "$work/cg.$server.$msgs"
}

printf '| server | instructions per message (%d conns x %d B; kv, kv-get, redis-server, http, nginx: per request) |\n|---|---:|\n' "$conns" "$size"
for server in "${servers[@]}"; do
  i1=$(count "$server" $m1)
  i2=$(count "$server" $m2)
  awk -v a="$i1" -v b="$i2" -v n=$((conns * (m2 - m1))) -v s="$server" \
    'BEGIN { printf "| %s | %.1f |\n", s, (b - a) / n }'
done
