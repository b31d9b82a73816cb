#!/usr/bin/env bash
# Conformance with the field's own clients: the shipped `kv` example driven
# by redis-cli and redis-benchmark (and compared byte for byte with a live
# redis-server by scripts/resp_diff.py), the shipped `http` example driven by
# curl, wrk, h2load and ab, and malformed requests over raw sockets. Every
# server runs on loopback with its default flags and is stopped by pid.
#
# Needs: redis-server redis-tools nginx-light wrk nghttp2-client
# apache2-utils curl python3 (Debian packages; .ci/run installs them).
# Usage: scripts/conformance.sh   (exits non-zero at the first failure)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --example kv --example http
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
check() { # name, then a command that must succeed
  local name=$1
  shift
  if "$@" >"$work/check.out" 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $name"
    sed 's/^/  /' "$work/check.out" | head -20
  fi
}
same() { # name, expected, actual
  if [ "$2" == "$3" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAIL: %s\n  expected: %q\n  got:      %q\n' "$1" "$2" "$3"
  fi
}
start() { # name, command...: starts it, sets $port from `listening on`
  local name=$1
  shift
  mkfifo "$work/$name.fifo"
  "$@" >"$work/$name.fifo" 2>"$work/$name.log" &
  pids+=($!)
  exec {fd}<"$work/$name.fifo"
  local line
  read -r -t 10 line <&$fd
  port=${line##*:}
}

# --- kv: redis-cli, every command, replies checked --------------------------
start kv target/release/examples/kv --addr 127.0.0.1:0
kv=$port
cli() { redis-cli -p "$kv" "$@"; }
same "PING" "PONG" "$(cli PING)"
same "ECHO" "hello world" "$(cli ECHO 'hello world')"
same "SET" "OK" "$(cli SET greeting hi)"
same "GET" "hi" "$(cli GET greeting)"
same "GET missing (nil)" "" "$(cli GET missing)"
same "SET NX on a key" "" "$(cli SET greeting x NX)"
same "SET XX GET" "hi" "$(cli SET greeting there XX GET)"
same "EXISTS" "2" "$(cli EXISTS greeting greeting missing)"
same "INCR" "1" "$(cli INCR counter)"
same "INCR again" "2" "$(cli INCR counter)"
same "INCR not a number" "ERR value is not an integer or out of range" "$(cli INCR greeting)"
same "MSET" "OK" "$(cli MSET a 1 b 2)"
same "MGET" "$(printf '1\n\n2')" "$(cli MGET a missing b)"
same "DEL" "2" "$(cli DEL a b missing)"
same "DBSIZE" "2" "$(cli DBSIZE)"
same "unknown command" "ERR unknown command 'NOPE', with args beginning with: 'x' " "$(cli NOPE x)"
same "wrong arity" "ERR wrong number of arguments for 'get' command" "$(cli GET)"
same "binary value" "$(printf 'a\xffb')" "$(cli SET bin "$(printf 'a\xffb')" >/dev/null; cli --raw GET bin)"
same "SELECT 0" "OK" "$(cli SELECT 0)"
same "CONFIG GET save" "$(printf 'save\n')" "$(cli CONFIG GET save)"
same "FLUSHALL" "OK" "$(cli FLUSHALL)"
same "DBSIZE after FLUSHALL" "0" "$(cli DBSIZE)"
same "pipe mode" "errors: 0, replies: 3" \
  "$(printf 'SET p 1\r\nINCR p\r\nGET p\r\n' | cli --pipe 2>&1 | grep -o 'errors: [0-9]*, replies: [0-9]*')"
same "QUIT" "OK" "$(cli QUIT)"

# --- kv: redis-benchmark, no errors -----------------------------------------
bench_errors() { # args... -> the error lines and a failed exit (none when all is well)
  # redis-benchmark 7 exits at the first error reply, naming it.
  local out status=0
  out=$(redis-benchmark -p "$kv" -q "$@" 2>&1) || status=$?
  echo "$out" | tr '\r' '\n' | grep -i 'error' || true
  [ "$status" -eq 0 ] || echo "exit status $status"
}
same "redis-benchmark default tests" "" \
  "$(bench_errors -t ping,set,get,incr,mset -n 20000 -c 50)"
same "redis-benchmark -P 16" "" "$(bench_errors -t set,get -n 100000 -c 50 -P 16 -r 1000)"
same "redis-benchmark -c 1000" "" "$(bench_errors -t get -n 20000 -c 1000)"
same "redis-benchmark -d 100000" "" "$(bench_errors -t set,get -n 2000 -c 10 -d 100000)"

# --- kv: byte for byte against redis-server ---------------------------------
redis=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'bind 127.0.0.1\nport %s\nsave ""\nappendonly no\ndir %s\nlogfile %s/redis.log\n' \
  "$redis" "$work" "$work" >"$work/redis.conf"
redis-server "$work/redis.conf" &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis" PING >/dev/null 2>&1 && break; sleep 0.1; done
check "resp_diff.py: kv replies are redis-server's bytes" python3 scripts/resp_diff.py "$redis" "$kv"

# --- http: curl --------------------------------------------------------------
start http target/release/examples/http --addr 127.0.0.1:0
http=http://127.0.0.1:$port
same "GET / body" "Hello, World!" "$(curl -sS "$http/")"
same "GET / status and type" "200 text/plain 13" \
  "$(curl -sS -o /dev/null -w '%{http_code} %{content_type} %{size_download}' "$http/")"
same "GET /json" '{"message":"Hello, World!"}' "$(curl -sS "$http/json")"
same "HEAD /" "200 0" "$(curl -sS -I -o /dev/null -w '%{http_code} %{size_download}' "$http/")"
same "HEAD / Content-Length" "Content-Length: 13" "$(curl -sS -I "$http/" | tr -d '\r' | grep Content-Length)"
same "404" "404" "$(curl -sS -o /dev/null -w '%{http_code}' "$http/nope")"
same "405 with a body" "405" "$(curl -sS -o /dev/null -w '%{http_code}' -d 'x=1' "$http/")"
same "chunked body" "405" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' -d 'abc' "$http/")"
same "HTTP/1.0 closes" "Connection: close" "$(curl -sS -0 -i "$http/" | tr -d '\r' | grep Connection)"
same "Date header" "1" "$(curl -sS -i "$http/" | grep -c '^Date: .* GMT')"
same "keep-alive: one connection for three requests" "1" \
  "$(curl -sS -v "$http/" "$http/json" "$http/" 2>&1 | grep -c 'Connected to')"
same "Connection: close honoured" "Connection: close" \
  "$(curl -sS -i -H 'Connection: close' "$http/" | tr -d '\r' | grep Connection)"

# --- http: wrk, h2load, ab: zero failed requests -----------------------------
out=$(wrk -t 1 -c 100 -d 2s "$http/")
same "wrk: no socket errors" "" "$(echo "$out" | grep 'Socket errors' || true)"
same "wrk: no non-2xx" "" "$(echo "$out" | grep 'Non-2xx' || true)"
out=$(h2load --h1 -n 50000 -c 50 -m 16 "$http/")
same "h2load: all succeeded" "requests: 50000 total, 50000 started, 50000 done, 50000 succeeded, 0 failed, 0 errored, 0 timeout" \
  "$(echo "$out" | grep '^requests:')"
same "h2load: all 2xx" "status codes: 50000 2xx, 0 3xx, 0 4xx, 0 5xx" "$(echo "$out" | grep '^status codes:')"
out=$(ab -q -k -n 20000 -c 50 "$http/")
same "ab -k: no failed requests" "Failed requests:        0" "$(echo "$out" | grep 'Failed requests')"
same "ab -k: every request kept alive" "Keep-Alive requests:    20000" "$(echo "$out" | grep 'Keep-Alive requests')"
same "ab without -k: no failed requests" "Failed requests:        0" \
  "$(ab -q -n 5000 -c 20 "$http/" | grep 'Failed requests')"

# --- http: malformed requests over raw sockets -------------------------------
raw() { # request (printf format) -> the status code, then "closed" if it closed
  python3 - "$port" "$1" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(3)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin1"))
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            data += b" closed"
            break
        data += chunk
except socket.timeout:
    pass
print(data[9:12].decode(), "closed" if data.endswith(b" closed") else "open")
EOF
}
same "pipelined: three responses" "3" "$(python3 - "$port" <<'EOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
time.sleep(0.3)
print(s.recv(65536).count(b"HTTP/1.1 200 OK"))
EOF
)"
same "garbage: 400, closed" "400 closed" "$(raw 'garbage\r\n\r\n')"
same "no Host: 400" "400 closed" "$(raw 'GET / HTTP/1.1\r\n\r\n')"
same "CL and TE: 400 (smuggling)" "400 closed" \
  "$(raw 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')"
same "two Content-Lengths: 400" "400 closed" \
  "$(raw 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab')"
same "gzip coding: 501" "501 closed" "$(raw 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n')"
same "body over the limit: 413" "413 closed" \
  "$(raw 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n')"
same "long request line: 414" "414 closed" "$(raw "GET /$(head -c 9000 /dev/zero | tr '\0' a) HTTP/1.1\r\n")"
same "long headers: 431" "431 closed" "$(raw "GET / HTTP/1.1\r\nHost: x\r\nX: $(head -c 9000 /dev/zero | tr '\0' a)\r\n")"
same "bad chunk: 400" "400 closed" \
  "$(raw 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n')"

echo "conformance: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
