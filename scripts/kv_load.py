#!/usr/bin/env python3
"""A pipelined load for the `kv` example over RESP (its default protocol):
CONNS connections, each sending COMMANDS commands (SET and GET of its own
keys, alternating, as arrays of bulk strings like a client library) in
batches of 16 in flight, every reply checked. Used by
scripts/instructions.sh.

Usage: kv_load.py HOST:PORT CONNS COMMANDS
"""
import socket
import sys

DEPTH = 16


def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    conns, commands = int(sys.argv[2]), int(sys.argv[3])
    socks = [socket.create_connection((host, int(port))) for _ in range(conns)]
    replies = [s.makefile("rb") for s in socks]
    # Round robin: every connection has a batch in flight each round, so
    # none sits idle (the server's idle timeout) while others are served.
    for start in range(0, commands, DEPTH):
        batches = []
        for i, s in enumerate(socks):
            batch = []
            for j in range(start, min(start + DEPTH, commands)):
                key = b"k%d.%d" % (i, j // 2)
                if j % 2 == 0:
                    batch.append((command(b"SET", key, b"v%d" % j), [b"+OK\r\n"]))
                else:
                    value = b"v%d" % (j - 1)
                    want = [b"$%d\r\n" % len(value), value + b"\r\n"]
                    batch.append((command(b"GET", key), want))
            s.sendall(b"".join(c for c, _ in batch))
            batches.append(batch)
        for i, batch in enumerate(batches):
            for sent, want in batch:
                got = [replies[i].readline() for _ in want]
                if got != want:
                    sys.exit(f"kv_load: {sent!r} got {got!r}, not {want!r}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
