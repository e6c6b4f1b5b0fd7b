"""Closed-loop load generators on raw sockets and one ``selectors`` loop.

Each connection sends one request, waits for the whole answer, then sends the next: throughput is round trips
per second, and each latency is one round trip. The generator is deliberately lean (pre-built requests, no
parsing beyond finding the end of an answer) so that on a 2-core machine it leaves the server its core.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["run_closed_loop", "mllp_answer_end", "http_answer_end"]

AnswerEnd = Callable[[bytearray], int]
"""Given the bytes received so far, the length of the first complete answer, or -1."""


def mllp_answer_end(buffer: bytearray) -> int:
    end = buffer.find(b"\x1c\x0d")
    return -1 if end < 0 else end + 2


def http_answer_end(buffer: bytearray) -> int:
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return -1
    head = bytes(buffer[:head_end]).lower()
    marker = head.find(b"content-length:")
    if marker < 0:
        raise ValueError("benchmark server answered without Content-Length")
    length = int(head[marker + 15:head.find(b"\r\n", marker) if head.find(b"\r\n", marker) > 0 else None])
    total = head_end + 4 + length
    return total if len(buffer) >= total else -1


@dataclass
class _Connection:
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)
    sent_at: float = 0.0
    left: int = 0
    answers: list[bytes] = field(default_factory=list)


def run_closed_loop(host: str, port: int, request: bytes, *, connections: int, total: int,
                    answer_end: AnswerEnd, check: Callable[[bytes], bool] | None = None,
                    make_request: Callable[[int], bytes] | None = None) -> tuple[list[float], float, int]:
    """Run ``total`` round trips over ``connections`` sockets; return (latencies, seconds, failed checks)."""
    selector = selectors.DefaultSelector()
    conns = []
    per_connection, remainder = divmod(total, connections)
    for index in range(connections):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Connection(sock=sock, left=per_connection + (1 if index < remainder else 0))
        conns.append(conn)
        selector.register(sock, selectors.EVENT_READ, conn)
    latencies: list[float] = []
    failures = 0
    sequence = 0
    start = time.perf_counter()
    active = 0
    for conn in conns:
        if conn.left:
            _send(conn, make_request(sequence) if make_request else request)
            sequence += 1
            active += 1
    while active:
        for key, _ in selector.select(timeout=30):
            conn: _Connection = key.data
            data = conn.sock.recv(262144)
            if not data:
                raise ConnectionError("server closed a benchmark connection")
            conn.buffer += data
            end = answer_end(conn.buffer)
            if end < 0:
                continue
            latencies.append(time.perf_counter() - conn.sent_at)
            if check is not None and not check(bytes(conn.buffer[:end])):
                failures += 1
            del conn.buffer[:end]
            conn.left -= 1
            if conn.left:
                _send(conn, make_request(sequence) if make_request else request)
                sequence += 1
            else:
                active -= 1
    seconds = time.perf_counter() - start
    for conn in conns:
        selector.unregister(conn.sock)
        conn.sock.close()
    return latencies, seconds, failures


def _send(conn: _Connection, request: bytes) -> None:
    conn.sent_at = time.perf_counter()
    conn.sock.setblocking(True)
    conn.sock.sendall(request)
    conn.sock.setblocking(False)
