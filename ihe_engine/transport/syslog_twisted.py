"""Syslog over Twisted: receivers for TCP/TLS (RFC 5425/6587) and UDP (RFC 5426), and a durable sender.

Receivers only move bytes between a transport and the sans-I/O core (:mod:`ihe_engine.transport.syslog`). Each
parsed message goes to ``on_message(message, peer)``; every byte sequence that could not be framed or parsed
goes to ``on_invalid(raw, peer, error)`` (by default: logged), so nothing is dropped silently. TLS is not a
separate protocol: :func:`ihe_engine.transport.tls.wrap_server_factory` wraps :class:`SyslogStreamFactory`.

:class:`SyslogSender` ships messages queued durably in the database (``queue_item``), giving **at-least-once**
delivery as far as syslog allows. A message is marked done only after its bytes were handed to the kernel:
for TCP/TLS, after Twisted's write buffer of the socket was flushed (the sender is a pull producer of the TCP
transport, which calls it back each time that buffer empties); for UDP, after ``send`` returned. Syslog has no
acknowledgement, so bytes lost in the network or by a peer that crashes after reading are not detected; a crash
or error before that point leaves the item in the queue (lease expiry or retry), which may send it twice.
A message that can never be sent (over UDP, one larger than a datagram) is marked done with the reason in its
``last_error`` and counted in ``ihe_syslog_messages_rejected``, so it does not hold up the queue.
The TLS sender caps its connections at TLS 1.2: in TLS 1.3 a client finishes its handshake before the server has
checked the client certificate, so a refusing server would silently swallow a batch; in TLS 1.2 a completed
handshake proves the server accepted us. Each refused handshake is reported once to ``on_tls_failure(peer,
reason)`` (the audit emission turns it into a Security Alert).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from prometheus_client import Counter
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IHandshakeListener, IPullProducer, IReactorTime
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ..errors import ConfigurationError, RemoteProtocolError
from ..metrics import CONNECTIONS_OPEN, CONNECTIONS_TOTAL
from .syslog import FramingError, OctetCountingFramer, SyslogMessage, frame_octet_counted, parse_rfc5424
from .tls import OnFailure, TLSConfig, client_connection_creator, describe_handshake_failure
from . import DEFAULT_MAX_CONNECTIONS, ConnectionLimit, describe_peer

__all__ = [
    "OnMessage",
    "OnInvalid",
    "SyslogStreamProtocol",
    "SyslogStreamFactory",
    "SyslogDatagramProtocol",
    "SyslogSender",
    "SendError",
    "MESSAGES_RECEIVED",
    "MESSAGES_INVALID",
    "CALLBACK_ERRORS",
    "MESSAGES_SENT",
    "SEND_FAILURES",
    "MESSAGES_REJECTED",
    "ENQUEUED",
]

log = logging.getLogger("ihe_engine.transport.syslog")

OnMessage = Callable[[SyslogMessage, str], Any]
"""``on_message(message, peer)``; may return a Deferred (the receiver then limits how many are outstanding)."""
OnInvalid = Callable[[bytes, str, RemoteProtocolError], Any]
"""``on_invalid(raw, peer, error)`` for bytes that could not be framed or parsed."""

MESSAGES_RECEIVED = Counter("ihe_syslog_messages_received", "Syslog messages parsed", ["listener"])
MESSAGES_INVALID = Counter("ihe_syslog_messages_invalid", "Syslog input refused", ["listener", "kind"])
CALLBACK_ERRORS = Counter("ihe_syslog_callback_errors", "on_message callbacks that failed", ["listener"])
MESSAGES_SENT = Counter("ihe_syslog_messages_sent", "Syslog messages sent from a queue", ["queue", "protocol"])
SEND_FAILURES = Counter("ihe_syslog_send_failures", "Failed syslog send attempts (batches)", ["queue", "protocol"])
MESSAGES_REJECTED = Counter("ihe_syslog_messages_rejected", "Queued syslog messages that can never be sent "
                            "(e.g. too large for a datagram): marked done with their error", ["queue", "protocol"])
ENQUEUED = Counter("ihe_syslog_messages_enqueued", "Syslog messages put in an outbound queue", ["queue"])

_DEFAULT_MAX_MESSAGE = 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 300.0
_MAX_OUTSTANDING = 256




def _log_invalid(raw: bytes, peer: str, error: RemoteProtocolError) -> None:
    log.warning("invalid syslog input from %s: %s (%d bytes: %r)", peer, error, len(raw), raw[:80])


class _Delivery:
    """Hands parsed messages to the callbacks, counting and logging; shared by stream and datagram receivers."""

    def __init__(self, on_message: OnMessage, on_invalid: OnInvalid | None, listener_name: str) -> None:
        self.on_message = on_message
        self.on_invalid = on_invalid or _log_invalid
        self.listener_name = listener_name
        self._received = MESSAGES_RECEIVED.labels(listener_name)  # resolved once: this is the hot path

    def frame(self, raw: bytes, peer: str) -> Any:
        try:
            message = parse_rfc5424(raw)
        except RemoteProtocolError as error:
            self.invalid(raw, peer, error, "parse")
            return None
        self._received.inc()
        try:
            result = self.on_message(message, peer)
        except Exception:
            CALLBACK_ERRORS.labels(self.listener_name).inc()
            log.exception("on_message failed for a syslog message from %s", peer)
            return None
        if isinstance(result, Deferred):
            result.addErrback(self._callback_failed, peer)
        return result

    def invalid(self, raw: bytes, peer: str, error: RemoteProtocolError, kind: str) -> None:
        MESSAGES_INVALID.labels(self.listener_name, kind).inc()
        try:
            self.on_invalid(raw, peer, error)
        except Exception:
            log.exception("on_invalid failed for input from %s", peer)

    def _callback_failed(self, failure: Failure, peer: str) -> None:
        CALLBACK_ERRORS.labels(self.listener_name).inc()
        log.error("on_message failed for a syslog message from %s: %s", peer, failure.getErrorMessage())


# --------------------------------------------------------------------------------------------------- receivers


class SyslogStreamProtocol(Protocol, TimeoutMixin):
    """One TCP or TLS connection of octet-counted syslog; a framing error closes it (framing is lost).

    A connection silent for ``idle_timeout`` seconds is closed. The timer starts at connectionMade, which under
    TLS comes with the TCP connection, before the handshake: a handshake that never completes is closed too.
    """

    factory: "SyslogStreamFactory | None" = None
    _admitted = False

    def __init__(self, on_message: OnMessage, *, listener_name: str, max_message_size: int = _DEFAULT_MAX_MESSAGE,
                 on_invalid: OnInvalid | None = None, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
                 clock: IReactorTime | None = None) -> None:
        self._delivery = _Delivery(on_message, on_invalid, listener_name)
        self._framer = OctetCountingFramer(max_message_size)
        self._outstanding = 0
        self._paused = False
        self._idle_timeout = idle_timeout
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.callLater = clock.callLater  # TimeoutMixin schedules through this
        self.peer = "unknown"

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        self.peer = describe_peer(self.transport)
        limit = self.factory.connections if self.factory is not None else None
        if limit is not None and not limit.admit(self.transport, self._delivery.listener_name):
            return
        self._admitted = True
        self.setTimeout(self._idle_timeout)
        CONNECTIONS_TOTAL.labels(self._delivery.listener_name).inc()
        CONNECTIONS_OPEN.labels(self._delivery.listener_name).inc()

    def timeoutConnection(self) -> None:  # noqa: N802 (TimeoutMixin)
        if self._paused:  # we stopped reading ourselves: the peer is not idle, it waits for us
            self.setTimeout(self._idle_timeout)
            return
        log.info("closing idle syslog connection from %s (%s)", self.peer, self._delivery.listener_name)
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        if not self._admitted:
            return
        self.resetTimeout()
        try:
            frames = self._framer.feed(data)
        except FramingError as error:
            self._framing_failed(error)
            return
        for frame in frames:
            self._track(self._delivery.frame(frame, self.peer))
        if self._framer.error is not None:
            self._framing_failed(self._framer.error)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]  # noqa: N802
        if not self._admitted:
            return
        self.setTimeout(None)
        if self.factory is not None:
            self.factory.connections.release()
        CONNECTIONS_OPEN.labels(self._delivery.listener_name).dec()
        unfinished = self._framer.unfinished()
        if unfinished and self._framer.error is None:
            error = FramingError(f"connection closed inside a frame ({len(unfinished)} bytes not delivered)",
                                 location="SYSLOG-MSG")
            self._delivery.invalid(unfinished, self.peer, error, "truncated")

    def _framing_failed(self, error: FramingError) -> None:
        self._delivery.invalid(self._framer.unfinished(), self.peer, error, "framing")
        self.transport.loseConnection()

    def _track(self, result: Any) -> None:
        """Back-pressure: stop reading while too many on_message Deferreds are unfinished."""
        if not isinstance(result, Deferred):
            return
        self._outstanding += 1
        result.addBoth(self._settled)
        if self._outstanding >= _MAX_OUTSTANDING and not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def _settled(self, result: Any) -> Any:
        self._outstanding -= 1
        if self._paused and self._outstanding < _MAX_OUTSTANDING // 2:
            self._paused = False
            self.transport.resumeProducing()
        return result


class SyslogStreamFactory(Factory):
    """Builds :class:`SyslogStreamProtocol`; for TLS wrap it with :func:`ihe_engine.transport.tls.listen_tls`."""

    def __init__(self, on_message: OnMessage, *, listener_name: str, max_message_size: int = _DEFAULT_MAX_MESSAGE,
                 on_invalid: OnInvalid | None = None, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
                 max_connections: int | None = DEFAULT_MAX_CONNECTIONS, clock: IReactorTime | None = None) -> None:
        self.on_message = on_message
        self.listener_name = listener_name
        self.max_message_size = max_message_size
        self.on_invalid = on_invalid
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.connections = ConnectionLimit(max_connections)

    def buildProtocol(self, addr: Any) -> SyslogStreamProtocol:  # noqa: N802 (Twisted API)
        protocol = SyslogStreamProtocol(self.on_message, listener_name=self.listener_name,
                                        max_message_size=self.max_message_size, on_invalid=self.on_invalid,
                                        idle_timeout=self.idle_timeout, clock=self.clock)
        protocol.factory = self
        return protocol


class SyslogDatagramProtocol(DatagramProtocol):
    """RFC 5426: one message per datagram, no framing; a bad datagram is counted and reported, never fatal."""

    def __init__(self, on_message: OnMessage, *, listener_name: str, on_invalid: OnInvalid | None = None) -> None:
        self._delivery = _Delivery(on_message, on_invalid, listener_name)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        self._delivery.frame(datagram, f"{addr[0]}:{addr[1]}")


# --------------------------------------------------------------------------------------------------- sender


@dataclass(frozen=True, kw_only=True)
class _Item:
    id: int
    payload: bytes
    attempts: int


@dataclass(frozen=True)
class _Failed:
    """An item not sent: retried later, or, when ``permanent``, closed with its error (retrying cannot help)."""

    item: _Item
    error: str
    permanent: bool = False


class SendError(Exception):
    """A batch could not be handed to the peer; its items are retried later."""


@implementer(IHandshakeListener, IPullProducer)
class _StreamChannel(Protocol):
    """A persistent sender connection; ``send`` fires once the bytes have left Twisted's socket buffer."""

    def __init__(self, tls: bool) -> None:
        self.tls = tls
        self.ready: Deferred[_StreamChannel] = Deferred()
        self.lost: Failure | None = None
        self.refusal: str | None = None
        """Why the TLS handshake failed, when it did."""
        self._flush_waiters: list[Deferred[None]] = []
        self._socket_transport: Any = None

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        if not self.tls:
            self._become_ready()

    def handshakeCompleted(self) -> None:  # noqa: N802 (Twisted API)
        self._become_ready()

    def _become_ready(self) -> None:
        tls_layer = self.transport if isinstance(self.transport, TLSMemoryBIOProtocol) else None
        self._socket_transport = tls_layer.transport if tls_layer is not None else self.transport
        # A pull producer is asked to resumeProducing each time the socket's write buffer becomes empty.
        self._socket_transport.registerProducer(self, False)
        self.ready.callback(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        """A syslog collector sends nothing back; whatever it sends is ignored."""

    def resumeProducing(self) -> None:  # noqa: N802 (IPullProducer)
        """The socket's write buffer is empty: everything written so far reached the kernel."""
        waiters, self._flush_waiters = self._flush_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        socket_transport = self._socket_transport
        if socket_transport is not None and socket_transport.disconnecting:
            # Whoever closes it (us, or the TLS layer after the peer's close_notify), a registered pull producer
            # would keep the transport from finishing its close.
            socket_transport.unregisterProducer()
            self._socket_transport = None

    def stopProducing(self) -> None:  # noqa: N802 (IPullProducer)
        """The connection is going away; connectionLost fails the waiters."""

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]  # noqa: N802
        if not self.ready.called:
            handle = self.transport.getHandle() if self.tls and hasattr(self.transport, "getHandle") else None
            text = describe_handshake_failure(handle, reason) if self.tls else reason.getErrorMessage()
            self.refusal = text if self.tls else None
            reason = Failure(SendError(f"connection failed: {text}"))
        self.lost = reason
        waiters, self._flush_waiters = self._flush_waiters, []
        if not self.ready.called:
            self.ready.errback(reason)
        for waiter in waiters:
            waiter.errback(Failure(SendError(f"connection lost before the data was flushed: "
                                             f"{reason.getErrorMessage()}")))

    def send(self, data: bytes) -> Deferred[None]:
        if self.lost is not None:
            raise SendError(f"connection lost: {self.lost.getErrorMessage()}")
        waiter: Deferred[None] = Deferred()
        self._flush_waiters.append(waiter)
        self.transport.write(data)
        return waiter

    def abort(self) -> None:
        if self.lost is None and self.transport is not None:
            self.transport.abortConnection()

    def close(self) -> None:
        if self.lost is None and self.transport is not None:
            self.transport.loseConnection()  # resumeProducing releases the socket once its buffer is flushed


class _DatagramChannel(DatagramProtocol):
    """A connected UDP socket towards the collector."""

    def send(self, payload: bytes) -> None:
        self.transport.write(payload)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.stopListening()


class SyslogSender:
    """Drains the durable queue ``queue`` to a syslog collector over TLS, TCP or UDP, with retries.

    ``enqueue`` commits the message to the database before its Deferred fires, so it survives a crash; a pump
    (``start``: every ``poll_interval`` seconds and after each enqueue) claims up to ``batch`` items with a lease,
    sends them over one persistent connection, marks them done once written, and on failure schedules them again
    after ``retry_backoff * 2**attempts`` seconds (at most ``max_backoff``). See the module docstring for the exact
    at-least-once guarantee.
    """

    def __init__(self, runtime: Any, *, queue: str = "atna-out", host: str, port: int, protocol: str = "tls",
                 tls_config: TLSConfig | None = None, batch: int = 100, retry_backoff: float = 1.0,
                 max_backoff: float = 300.0, poll_interval: float = 1.0, lease: float = 60.0,
                 connect_timeout: float = 10.0, on_tls_failure: OnFailure | None = None) -> None:
        if protocol not in ("tls", "tcp", "udp"):
            raise ConfigurationError(f"syslog protocol must be tls, tcp or udp, not {protocol!r}")
        if protocol == "tls" and tls_config is None:
            raise ConfigurationError("a TLS syslog sender needs tls_config (ITI-19 mutual authentication)")
        if batch < 1 or retry_backoff <= 0 or poll_interval <= 0:
            raise ConfigurationError("batch, retry_backoff and poll_interval must be positive")
        self.runtime, self.queue, self.host, self.port, self.protocol = runtime, queue, host, port, protocol
        self.tls_config, self.batch = tls_config, batch
        self.retry_backoff, self.max_backoff, self.poll_interval = retry_backoff, max_backoff, poll_interval
        self.lease, self.connect_timeout = timedelta(seconds=lease), connect_timeout
        self.on_tls_failure = on_tls_failure
        self.worker = f"{runtime.node_name}:{runtime.process_id}:{id(self):x}"[-128:]
        self._channel: Any = None
        self._loop: LoopingCall | None = None
        self._draining = False
        self._again = False
        self._waiters: list[Deferred[int]] = []

    # ---- public

    def enqueue(self, message: bytes) -> Deferred[int]:
        """Store one formatted SYSLOG-MSG (unframed) durably; fires with the queue item id once committed."""
        if not message:
            raise ValueError("cannot enqueue an empty syslog message")
        done = self.runtime.run_blocking(self._put, bytes(message))
        done.addCallback(self._enqueued)
        return done

    def start(self) -> None:
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.runtime.reactor
            self._loop.start(self.poll_interval, now=True)

    @inlineCallbacks
    def stop(self):  # type: ignore[no-untyped-def]
        """Stop pumping, let a running drain finish, close the connection."""
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        if self._draining:
            yield self._wait_for_drain()
        self._close_channel()

    def pump(self) -> Deferred[int]:
        """Drain now; fires with how many messages were delivered by the drain it joined."""
        waiter: Deferred[int] = Deferred()
        self._waiters.append(waiter)
        if self._draining:
            self._again = True
        else:
            self._drain()
        return waiter

    def pending(self) -> Deferred[int]:
        return self.runtime.run_blocking(self._pending_count)

    # ---- database (thread pool)

    def _put(self, message: bytes) -> int:
        with self.runtime.uow() as uow:
            item_id = uow.queue.put(self.queue, message)
            uow.commit()
        ENQUEUED.labels(self.queue).inc()
        return item_id

    def _claim(self) -> list[_Item]:
        with self.runtime.uow() as uow:
            rows = uow.queue.claim(self.queue, self.worker, limit=self.batch, lease=self.lease)
            items = [_Item(id=row.id, payload=bytes(row.payload), attempts=row.attempts) for row in rows]
            uow.commit()
        return items

    def _mark_done(self, item_ids: list[int]) -> None:
        with self.runtime.uow() as uow:
            uow.queue.done(item_ids)
            uow.commit()

    def _schedule_retries(self, failed: list[_Failed]) -> None:
        with self.runtime.uow() as uow:
            for failure in failed:
                uow.queue.retry(failure.item.id, failure.error, backoff=self._backoff(failure.item.attempts))
            uow.commit()

    def _close_rejected(self, rejected: list[_Failed]) -> None:
        """Done, with the reason in last_error: a message that can never be sent must not block the queue."""
        with self.runtime.uow() as uow:
            for failure in rejected:
                uow.queue.retry(failure.item.id, failure.error, backoff=timedelta())
            uow.queue.done([failure.item.id for failure in rejected])
            uow.commit()

    def _pending_count(self) -> int:
        with self.runtime.uow() as uow:
            return uow.queue.pending_count(self.queue)

    def _backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.retry_backoff * 2 ** min(attempts, 30), self.max_backoff))

    # ---- pump (reactor thread)

    def _enqueued(self, item_id: int) -> int:
        if self._loop is not None:
            self.pump()
        return item_id

    def _tick(self) -> Deferred[int]:
        return self.pump()

    def _wait_for_drain(self) -> Deferred[int]:
        waiter: Deferred[int] = Deferred()
        self._waiters.append(waiter)
        return waiter

    @inlineCallbacks
    def _drain(self):  # type: ignore[no-untyped-def]
        self._draining, delivered = True, 0
        try:
            while True:
                self._again = False
                delivered += yield self._drain_batches()
                if not self._again:
                    break
        except Exception:  # never let the LoopingCall die; the items stay queued
            log.exception("syslog sender %s: drain failed", self.queue)
        finally:
            self._draining = False
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(delivered)

    @inlineCallbacks
    def _drain_batches(self):  # type: ignore[no-untyped-def]
        delivered = 0
        while True:
            items = yield self.runtime.run_blocking(self._claim)
            if not items:
                return delivered
            failures = yield self._send(items)
            failed_ids = {failure.item.id for failure in failures}
            sent = [item.id for item in items if item.id not in failed_ids]
            if sent:
                yield self.runtime.run_blocking(self._mark_done, sent)
                MESSAGES_SENT.labels(self.queue, self.protocol).inc(len(sent))
                delivered += len(sent)
            rejected = [failure for failure in failures if failure.permanent]
            if rejected:
                yield self._reject(rejected)
            failed = [failure for failure in failures if not failure.permanent]
            if failed:
                SEND_FAILURES.labels(self.queue, self.protocol).inc()
                log.warning("syslog sender %s: %d message(s) to %s:%s not sent: %s", self.queue, len(failed),
                            self.host, self.port, failed[0].error)
                yield self.runtime.run_blocking(self._schedule_retries, failed)
                return delivered

    def _reject(self, rejected: list[_Failed]) -> Deferred[None]:
        MESSAGES_REJECTED.labels(self.queue, self.protocol).inc(len(rejected))
        for failure in rejected:
            log.error("syslog sender %s: message %d dropped, it can never be sent to %s:%s: %s", self.queue,
                      failure.item.id, self.host, self.port, failure.error)
        return self.runtime.run_blocking(self._close_rejected, rejected)

    @inlineCallbacks
    def _send(self, items: list[_Item]):  # type: ignore[no-untyped-def]
        """Send a batch; returns the items that failed, each with its error."""
        try:
            channel = yield self._open_channel()
        except Exception as exc:
            self._channel = None
            return [_Failed(item, f"cannot connect to {self.host}:{self.port}: {exc}") for item in items]
        if self.protocol == "udp":
            return self._send_datagrams(channel, items)
        try:
            yield channel.send(b"".join(frame_octet_counted(item.payload) for item in items))
        except Exception as exc:
            self._channel = None
            return [_Failed(item, str(exc)) for item in items]
        return []

    @staticmethod
    def _send_datagrams(channel: _DatagramChannel, items: list[_Item]) -> list[_Failed]:
        """One datagram per item; one too large for UDP (EMSGSIZE) fails alone and for good."""
        failed = []
        for item in items:
            try:
                channel.send(item.payload)
            except MessageLengthError:
                failed.append(_Failed(item, f"too large for a UDP datagram ({len(item.payload)} bytes)",
                                      permanent=True))
            except OSError as exc:
                failed.append(_Failed(item, f"UDP send failed: {exc}"))
        return failed

    @inlineCallbacks
    def _open_channel(self):  # type: ignore[no-untyped-def]
        channel = self._channel
        if channel is not None and getattr(channel, "lost", None) is None:
            return channel
        if self.protocol == "udp":
            channel = yield self._open_datagram_channel()
        else:
            channel = yield self._open_stream_channel()
        self._channel = channel
        return channel

    @inlineCallbacks
    def _open_stream_channel(self):  # type: ignore[no-untyped-def]
        reactor = self.runtime.reactor
        endpoint: Any = HostnameEndpoint(reactor, self.host, self.port, timeout=self.connect_timeout)
        if self.protocol == "tls":
            assert self.tls_config is not None
            creator = client_connection_creator(self.tls_config, self.host, allow_tls13=False)
            endpoint = wrapClientTLS(creator, endpoint)
        channel = _StreamChannel(tls=self.protocol == "tls")
        yield connectProtocol(endpoint, channel)
        ready = channel.ready
        ready.addTimeout(self.connect_timeout, reactor)
        try:
            yield ready
        except Exception:
            channel.abort()
            if channel.refusal is not None:
                self._tls_refused(channel.refusal)
            raise
        return channel

    def _tls_refused(self, reason: str) -> None:
        log.warning("syslog sender %s: TLS connection to %s:%s refused: %s", self.queue, self.host, self.port, reason)
        if self.on_tls_failure is not None:
            try:
                self.on_tls_failure(f"{self.host}:{self.port}", reason)
            except Exception:  # reporting must not change what happens to the queued messages
                log.exception("syslog sender %s: on_tls_failure failed", self.queue)

    @inlineCallbacks
    def _open_datagram_channel(self):  # type: ignore[no-untyped-def]
        reactor = self.runtime.reactor
        address = yield reactor.resolve(self.host)
        channel = _DatagramChannel()
        reactor.listenUDP(0, channel)
        channel.transport.connect(address, self.port)
        return channel

    def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
