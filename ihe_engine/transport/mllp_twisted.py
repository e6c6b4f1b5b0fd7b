"""MLLP over Twisted: the listener protocol, the client protocol, and a blocking socket client.

The protocols only move bytes between a transport and :class:`~ihe_engine.transport.mllp.MLLPFramer`; what a
message means is the dispatcher's business (``dispatcher.handle(raw, peer) -> Deferred[bytes] | bytes``).

Ordering: a peer may pipeline several messages on one connection; answers can complete out of order (thread pool)
but are written in the order the messages arrived, since MLLP matches answers to requests by position only.

Connection policy: an oversized frame drops the connection (what follows cannot be framed reliably); so do more
than ``max_garbage`` bytes outside any frame since the last message (the peer does not speak MLLP: a TLS hello, an
HTTP request, noise), which would otherwise keep an idle connection open for ever. A connection with no frame
traffic and nothing in progress for ``idle_timeout`` seconds is closed (bytes outside frames are not activity), and
so is one whose started frame is not complete within ``frame_timeout`` seconds (a peer trickling one byte at a
time, slowloris). With ``max_in_flight`` messages awaiting answers, reading pauses until answers drain, so a peer
pipelining without reading cannot queue unbounded work. A factory serves at most ``max_connections`` connections;
beyond, a new one is closed at once and counted.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from typing import Any, Protocol as TypingProtocol

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from ..errors import LocalProtocolError, RemoteProtocolError
from ..metrics import CONNECTIONS_OPEN, CONNECTIONS_TOTAL
from .mllp import FramingError, MLLPFramer, frame
from . import DEFAULT_MAX_CONNECTIONS, ConnectionLimit, describe_peer

__all__ = ["MLLPServerProtocol", "MLLPServerFactory", "MLLPClientProtocol", "connect_mllp", "BlockingMLLPClient",
           "send_blocking", "MessageDispatcher", "DEFAULT_MAX_MESSAGE_SIZE", "describe_peer"]

log = logging.getLogger("ihe_engine.transport.mllp")

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
DEFAULT_FRAME_TIMEOUT = 60.0


class MessageDispatcher(TypingProtocol):
    def handle(self, raw_message: bytes, peer: str) -> "Deferred[bytes] | bytes": ...



class _Slot:
    """One received message's place in the answer order."""

    __slots__ = ("answer",)

    def __init__(self) -> None:
        self.answer: bytes | None = None


class MLLPServerProtocol(Protocol, TimeoutMixin):
    factory: "MLLPServerFactory"

    _admitted = False
    _frame_deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        factory = self.factory
        self.peer = describe_peer(self.transport)
        self.framer = MLLPFramer(factory.max_message_size)
        self._order: deque[_Slot] = deque()
        self._closing = False
        self._paused = False
        self._garbage_before = 0  # garbage count when the last message arrived
        if not factory.connections.admit(self.transport, factory.listener_name):
            self._closing = True
            return
        self._admitted = True
        self.callLater = factory.clock.callLater  # TimeoutMixin schedules through this
        self.setTimeout(factory.idle_timeout)
        CONNECTIONS_OPEN.labels(factory.listener_name).inc()
        CONNECTIONS_TOTAL.labels(factory.listener_name).inc()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            messages = self.framer.feed(data)
        except FramingError as exc:
            self._drop(f"framing error: {exc}")
            return
        if messages or self.framer.in_frame:
            self.resetTimeout()  # only frame traffic is activity: a trickle of garbage does not keep a link open
        if messages:
            self._garbage_before = self.framer.garbage_bytes
            self._stop_frame_deadline()
        for raw in messages:
            self._dispatch(raw)
        if self.framer.garbage_bytes - self._garbage_before > self.factory.max_garbage:
            self._drop(f"{self.framer.garbage_bytes - self._garbage_before} bytes outside MLLP frames")
            return
        if len(self._order) >= self.factory.max_in_flight and not self._paused:
            self._paused = True  # a peer pipelining faster than we answer waits in its own buffers
            self.transport.pauseProducing()
        self._start_frame_deadline()

    def _start_frame_deadline(self) -> None:
        """A started frame must end within ``frame_timeout``; not counted while we ourselves paused reading."""
        timeout = self.factory.frame_timeout
        if timeout is None or self._paused or self._closing or not self.framer.in_frame:
            return
        if self._frame_deadline is None:
            self._frame_deadline = self.factory.clock.callLater(timeout, self._frame_too_slow)

    def _stop_frame_deadline(self) -> None:
        deadline, self._frame_deadline = self._frame_deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _frame_too_slow(self) -> None:
        self._frame_deadline = None
        self._drop(f"a frame was not completed within {self.factory.frame_timeout} seconds")

    def _dispatch(self, raw: bytes) -> None:
        slot = _Slot()
        self._order.append(slot)
        answer = maybeDeferred(self.factory.dispatcher.handle, raw, self.peer)
        answer.addCallbacks(self._answered, self._dispatch_failed, callbackArgs=(slot,))

    def _answered(self, answer: bytes, slot: _Slot) -> None:
        slot.answer = answer
        while self._order and self._order[0].answer is not None:
            ready = self._order.popleft()
            if self._closing:
                continue
            try:
                self.transport.write(frame(ready.answer))  # type: ignore[arg-type]
            except LocalProtocolError as exc:
                log.error("unframeable answer for %s: %s", self.peer, exc)
                self._drop("unframeable answer")
        if self._closing:
            return
        self.resetTimeout()
        if self._paused and len(self._order) < self.factory.max_in_flight:
            self._paused = False
            self.transport.resumeProducing()
            self._start_frame_deadline()

    def _dispatch_failed(self, failure: Failure) -> None:
        """A dispatcher must always answer; if it does not, the answer order is lost: close."""
        log.error("MLLP dispatcher failed for %s", self.peer,
                  exc_info=(failure.type, failure.value, failure.getTracebackObject()))
        self._drop("dispatcher failed")

    def _drop(self, reason: str) -> None:
        log.warning("closing MLLP connection from %s: %s", self.peer, reason)
        self._closing = True
        self.setTimeout(None)
        self._stop_frame_deadline()
        self.transport.loseConnection()

    def timeoutConnection(self) -> None:
        if self._order:  # answers still in progress: not idle
            self.setTimeout(self.factory.idle_timeout)
            return
        log.info("closing idle MLLP connection from %s", self.peer)
        self._closing = True
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._closing = True
        if not self._admitted:
            return
        self.setTimeout(None)
        self._stop_frame_deadline()
        self.factory.connections.release()
        CONNECTIONS_OPEN.labels(self.factory.listener_name).dec()
        if self.framer.in_frame or self.framer.garbage_bytes:
            log.info("MLLP connection from %s ended (%d bytes of garbage, unfinished frame: %s)", self.peer,
                     self.framer.garbage_bytes, self.framer.in_frame)


class MLLPServerFactory(Factory):
    protocol = MLLPServerProtocol

    def __init__(self, dispatcher: MessageDispatcher, *, listener_name: str = "mllp",
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, idle_timeout: float | None = 300.0,
                 max_garbage: int | None = None, max_in_flight: int = 64, clock: IReactorTime | None = None,
                 frame_timeout: float | None = DEFAULT_FRAME_TIMEOUT,
                 max_connections: int | None = DEFAULT_MAX_CONNECTIONS) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.dispatcher = dispatcher
        self.listener_name = listener_name
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        self.max_garbage = max_garbage if max_garbage is not None else min(max_message_size, 64 * 1024)
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.frame_timeout = frame_timeout
        self.connections = ConnectionLimit(max_connections)


# -- client ------------------------------------------------------------------------------------------------------

class MLLPClientProtocol(Protocol):
    """``send(message) -> Deferred[bytes]``; several sends may be pipelined, answers are matched in order.

    Cancelling a pending answer (e.g. ``d.addTimeout(...)``) aborts the connection, since a late answer could no
    longer be matched to its request; every other pending answer then fails too.
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.framer = MLLPFramer(max_message_size)
        self._waiting: deque[Deferred[bytes]] = deque()
        self.connected_deferred: Deferred[MLLPClientProtocol] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self._lost_reason: Failure | None = None

    def connectionMade(self) -> None:
        self.connected_deferred.callback(self)

    def send(self, message: bytes) -> "Deferred[bytes]":
        if self._lost_reason is not None:
            return fail(self._lost_reason)
        answer: Deferred[bytes] = Deferred(self._cancel)
        self._waiting.append(answer)
        self.transport.write(frame(message))
        return answer

    def dataReceived(self, data: bytes) -> None:
        try:
            answers = self.framer.feed(data)
        except FramingError as exc:
            self._fail_all(Failure(exc))
            self.transport.abortConnection()
            return
        for answer in answers:
            if not self._waiting:
                log.warning("unexpected MLLP answer from %s dropped", describe_peer(self.transport))
                continue
            self._waiting.popleft().callback(answer)

    def close(self) -> None:
        self.transport.loseConnection()

    def _cancel(self, _answer: Deferred[bytes]) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._lost_reason = reason
        self._fail_all(reason)
        self.lost.callback(None)

    def _fail_all(self, reason: Failure) -> None:
        waiting, self._waiting = self._waiting, deque()
        for answer in waiting:
            if not answer.called:
                answer.errback(reason)


def connect_mllp(reactor: Any, host: str, port: int, *, tls_creator: Any = None, timeout: float = 30.0,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> "Deferred[MLLPClientProtocol]":
    """Connect (over TLS when given an ``IOpenSSLClientConnectionCreator``) and fire with the protocol."""
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if tls_creator is not None:
        endpoint = wrapClientTLS(tls_creator, endpoint)
    return connectProtocol(endpoint, MLLPClientProtocol(max_message_size))


class BlockingMLLPClient:
    """A plain-socket client for tests, the bench and the CLI: one connection, one message at a time."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._framer = MLLPFramer(max_message_size)
        self._ready: deque[bytes] = deque()

    def send(self, message: bytes) -> bytes:
        """Send one message and wait for its answer (socket.timeout when the peer is silent)."""
        self._socket.sendall(frame(message))
        while not self._ready:
            data = self._socket.recv(65536)
            if not data:
                raise RemoteProtocolError("the MLLP peer closed the connection before answering")
            self._ready.extend(self._framer.feed(data))
        return self._ready.popleft()

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> "BlockingMLLPClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def send_blocking(host: str, port: int, message: bytes, timeout: float = 10.0) -> bytes:
    """Connect, send one message, return its answer, close."""
    with BlockingMLLPClient(host, port, timeout=timeout) as client:
        return client.send(message)
