#!/usr/bin/env python3
"""A pipelined load for the `kv` example: CONNS connections, each sending
COMMANDS commands (SET and GET of its own keys, alternating) in batches of
16 in flight, every reply checked. Used by scripts/instructions.sh.

Usage: kv_load.py HOST:PORT CONNS COMMANDS
"""
import socket
import sys

DEPTH = 16


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
                key = f"k{i}.{j // 2}"
                batch.append(f"SET {key} v{j}\n" if j % 2 == 0 else f"GET {key}\n")
            s.sendall("".join(batch).encode())
            batches.append(batch)
        for i, batch in enumerate(batches):
            for command in batch:
                reply = replies[i].readline()
                want = b"OK\n" if command.startswith("SET") else b"VALUE v"
                if not reply.startswith(want):
                    sys.exit(f"kv_load: {command.strip()!r} got {reply!r}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
