#!/usr/bin/env python3
"""Byte-for-byte RESP conformance: sends the same raw requests to a
redis-server and to the `kv` example and compares every byte that comes
back, and whether the connection was closed after it.

Usage: resp_diff.py REDIS_PORT KV_PORT

Each case runs on a fresh connection after FLUSHALL on both servers, so
they start from the same (empty) store. Exits 1 listing the cases that
differ. The requests cover every command kv answers, their arity and type
errors, pipelining, inline commands with quotes and escapes, binary keys
and values, and the protocol errors (each closes the connection).
"""
import socket
import sys
import time


def bulk(*args):
    """An array of bulk strings, as a client library sends a command."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


CASES = [
    # The third attack's byte differences: \v between inline words, a
    # non-UTF-8 subcommand, a parameter named as asked, COMMAND COUNT's
    # arity.
    b"\x0bPING\r\n",
    b"ECHO \x0bhi\r\n",
    bulk("CONFIG", b"\xff\xfe"),
    bulk("CONFIG", "GET", "SAVE"),
    bulk("COMMAND", "COUNT", "x"),
    # Commands and their replies.
    b"PING\r\n",
    b"ping hello\r\n",
    b"PING a b\r\n",
    bulk("PING"),
    bulk("ECHO", "hi there"),
    b"ECHO\r\n",
    bulk("SET", "k", "v") + bulk("GET", "k") + bulk("GET", "nothing"),
    bulk("SET", "k"),
    bulk("GET"),
    bulk("GET", "a", "b"),
    bulk("SET", "k", "v", "NX") + bulk("SET", "k", "w", "NX") + bulk("GET", "k"),
    bulk("SET", "k", "v", "XX") + bulk("SET", "k", "v") + bulk("SET", "k", "w", "XX"),
    bulk("SET", "k", "v") + bulk("SET", "k", "w", "GET") + bulk("SET", "n", "x", "GET"),
    bulk("SET", "k", "v", "NX", "XX"),
    bulk("SET", "k", "v", "BAD"),
    bulk("SET", "k", "v", "KEEPTTL") + bulk("GET", "k"),
    bulk("SET", "a", "1") + bulk("SET", "b", "2") + bulk("DEL", "a", "a", "b", "c"),
    bulk("DEL"),
    bulk("SET", "a", "1") + bulk("EXISTS", "a", "a", "nothing"),
    bulk("EXISTS"),
    bulk("INCR", "counter") + bulk("INCR", "counter") + bulk("GET", "counter"),
    bulk("SET", "n", "9223372036854775806") + bulk("INCR", "n") + bulk("INCR", "n"),
    bulk("SET", "n", "-5") + bulk("INCR", "n"),
    bulk("SET", "n", "-1") + bulk("INCR", "n") + bulk("GET", "n"),
    bulk("SET", "n", "abc") + bulk("INCR", "n"),
    bulk("SET", "n", "01") + bulk("INCR", "n"),
    bulk("SET", "n", "+1") + bulk("INCR", "n"),
    bulk("SET", "n", "-0") + bulk("INCR", "n"),
    bulk("SET", "n", " 1") + bulk("INCR", "n"),
    bulk("SET", "n", "") + bulk("INCR", "n"),
    bulk("INCR", "a", "b"),
    bulk("MSET", "a", "1", "b", "2") + bulk("MGET", "a", "nothing", "b"),
    bulk("MSET", "a"),
    bulk("MSET", "a", "1", "b"),
    bulk("MGET"),
    bulk("MSET", "a", "1", "b", "2") + bulk("DBSIZE"),
    bulk("DBSIZE", "x"),
    bulk("SET", "a", "1") + bulk("FLUSHALL") + bulk("DBSIZE"),
    bulk("FLUSHALL", "SYNC") + bulk("FLUSHALL", "async") + bulk("FLUSHALL", "x"),
    bulk("SELECT", "0") + bulk("SELECT", "x"),
    bulk("QUIT") + bulk("PING"),
    b"QUIT now\r\nPING\r\n",
    bulk("CONFIG", "GET", "save") + bulk("CONFIG", "GET", "appendonly"),
    bulk("CONFIG", "GET", "no-such-parameter"),
    bulk("CONFIG"),
    bulk("COMMAND", "NOSUCH"),
    # Unknown commands: the name and up to 128 bytes of arguments quoted.
    b"FOO\r\n",
    b"FOO a b\r\n",
    bulk("foo", "x" * 200),
    bulk("foo", "a" * 100, "b" * 100, "c"),
    bulk("f\r\noo", "a\nb"),
    # Binary keys and values.
    bulk("SET", b"\xff", b"one\xff\x00") + bulk("SET", b"\xfe", b"two") + bulk("GET", b"\xff") + bulk("GET", b"\xfe"),
    bulk("SET", "", "") + bulk("GET", "") + bulk("EXISTS", ""),
    bulk("SET", "big", "v" * 100000) + bulk("GET", "big"),
    # Pipelining: every reply, in order.
    b"".join(bulk("SET", "k%d" % i, "v%d" % i) + bulk("GET", "k%d" % i) for i in range(300)),
    # Inline commands: quotes, escapes, spaces, empty lines, bare \n.
    b'SET "a b" "c\\x41d\\n"\r\nGET "a b"\r\n',
    b"SET 'it''s' x\r\n",
    b"SET a\tb\r\nGET a\r\n",
    b"\r\n\r\n\nPING\r\n",
    b"PING\nPING\n",
    b"   PING   \r\n",
    b'SET "a\\"b" x\r\nGET "a\\"b"\r\n',
    b"SET \"a\" b\r\nGET a\r\n",
    b"GET a\x00ignored\r\n",
    # Empty arrays are skipped.
    b"*0\r\n*-1\r\nPING\r\n",
    b"*1\r\n$4\r\nPING\r\n*0\r\n",
    # Protocol errors: the reply, then the connection closes.
    b"*x\r\n",
    b"*3000000000\r\n",
    b"*1\r\n+PING\r\n",
    b"*1\r\n$x\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\n$600000000\r\n",
    b'SET "a"b c\r\n',
    b'SET "abc\r\n',
    b"SET 'abc\r\n",
    b"PING\r\n*1\r\n$x\r\n",
    b"*" + b"1" * 70000,
    b"*1\r\n$" + b"1" * 70000,
    b"GET " + b"a" * 70000,
]


def exchange(port, data):
    """Sends `data`, then reads until the server closes or is quiet for
    0.3 s. Returns the bytes and whether it closed."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.3)
    s.sendall(data)
    out, closed = b"", False
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(1 << 16)
            if not chunk:
                closed = True
                break
            out += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    return out, closed


def main():
    redis_port, kv_port = int(sys.argv[1]), int(sys.argv[2])
    failed = 0
    for i, case in enumerate(CASES):
        got = []
        for port in (redis_port, kv_port):
            exchange(port, bulk("FLUSHALL"))
            got.append(exchange(port, case))
        if got[0] != got[1]:
            failed += 1
            print(f"case {i}: {case[:80]!r}")
            print(f"  redis-server: {got[0][0][:200]!r} closed={got[0][1]}")
            print(f"  kv:           {got[1][0][:200]!r} closed={got[1][1]}")
    print(f"resp_diff: {len(CASES) - failed} of {len(CASES)} cases byte-identical")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
