"""Syslog receivers and the durable sender over real loopback sockets (TCP, UDP, TLS with openssl s_client)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from ihe_engine.audit import AuditHook
from ihe_engine.config import Settings
from ihe_engine.plugins import create_plugin_manager
from ihe_engine.runtime import Runtime
from ihe_engine.storage import Database
from ihe_engine.storage.blobstore import BlobStore
from ihe_engine.storage.models import QueueItem
from ihe_engine.transport.syslog import format_rfc5424, frame_octet_counted
from ihe_engine.transport.syslog_twisted import SyslogDatagramProtocol, SyslogSender, SyslogStreamFactory
from ihe_engine.transport.tls import TLSConfig, listen_tls, wrap_server_factory

WAIT = 20  # seconds: an upper bound for waits, never asserted on


def audit_message(number: int, size: int = 0) -> bytes:
    xml = b'<?xml version="1.0"?><AuditMessage><EventIdentification seq="%d"/>%s</AuditMessage>' % (
        number, b"<!-- pad -->" * (size // 12))
    return format_rfc5424(timestamp=datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc), hostname="node.test",
                          app_name="ihe-engine", procid="1234", msgid="IHE+RFC-3881", msg=xml)


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.02)


class Collector:
    """The on_message / on_invalid callbacks; called on the reactor thread, read by the test thread."""

    def __init__(self) -> None:
        self.messages, self.peers, self.invalid = [], [], []

    def on_message(self, message, peer: str) -> None:
        self.messages.append(message)
        self.peers.append(peer)

    def on_invalid(self, raw: bytes, peer: str, error) -> None:
        self.invalid.append((raw, peer, error))

    def numbers(self) -> list[bytes]:
        return [m.msg.split(b'seq="', 1)[1].split(b'"', 1)[0] for m in self.messages]


@pytest.fixture
def reactor(reactor_thread):
    return reactor_thread


@pytest.fixture
def listen(reactor):
    ports = []

    def start(function, *args, **kwargs):
        ports.append(blockingCallFromThread(reactor, function, *args, **kwargs))
        return ports[-1]

    yield start
    for port in ports:
        blockingCallFromThread(reactor, port.stopListening)


class TrackingFactory(SyslogStreamFactory):
    """Remembers its connections so a test can cut them, as a restarting collector would."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.built = []

    def buildProtocol(self, addr):  # noqa: N802
        protocol = super().buildProtocol(addr)
        self.built.append(protocol)
        return protocol


def stream_factory(collector: Collector, name: str = "test") -> TrackingFactory:
    return TrackingFactory(collector.on_message, listener_name=name, max_message_size=1024 * 1024,
                           on_invalid=collector.on_invalid)


# ------------------------------------------------------------------------------------------ receivers


def test_tcp_receiver_gets_frames_from_a_raw_socket(reactor, listen):
    collector = Collector()
    port = listen(reactor.listenTCP, 0, stream_factory(collector), interface="127.0.0.1")
    stream = b"".join(frame_octet_counted(audit_message(n, size=70_000 if n == 2 else 0)) for n in range(5))
    with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT) as sock:
        for start in range(0, len(stream), 1000):  # frames split across reads
            sock.sendall(stream[start:start + 1000])
        wait_until(lambda: len(collector.messages) == 5, "five messages")
    assert collector.numbers() == [b"0", b"1", b"2", b"3", b"4"]
    assert len(collector.messages[2].msg) > 64 * 1024
    assert collector.messages[0].msgid == "IHE+RFC-3881" and collector.peers[0].startswith("127.0.0.1:")
    assert collector.invalid == []


def test_tcp_receiver_reports_bad_input_and_closes_on_lost_framing(reactor, listen):
    collector = Collector()
    port = listen(reactor.listenTCP, 0, stream_factory(collector), interface="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT) as sock:
        sock.sendall(frame_octet_counted(b"<999>1 - - - - - -") + frame_octet_counted(audit_message(7))
                     + b"<85>1 - - - - - - non-transparent\n")
        assert sock.recv(10) == b""  # the receiver closed the connection
    wait_until(lambda: len(collector.invalid) == 2, "two invalid inputs")
    assert collector.numbers() == [b"7"]
    (bad_raw, _, parse_error), (rest, _, framing_error) = collector.invalid
    assert bad_raw == b"<999>1 - - - - - -" and "PRI" in str(parse_error)
    assert rest.startswith(b"<85>1") and "non-transparent" in str(framing_error)


def test_tcp_receiver_reports_a_truncated_frame(reactor, listen):
    collector = Collector()
    port = listen(reactor.listenTCP, 0, stream_factory(collector), interface="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT) as sock:
        sock.sendall(b"500 <85>1 - - - - - - cut short")
    wait_until(lambda: collector.invalid, "the truncated frame reported")
    assert collector.invalid[0][0] == b"<85>1 - - - - - - cut short"
    assert "closed inside a frame" in str(collector.invalid[0][2])


def test_udp_receiver_one_message_per_datagram(reactor, listen):
    collector = Collector()
    port = listen(reactor.listenUDP, 0, SyslogDatagramProtocol(collector.on_message, listener_name="udp-test",
                                                              on_invalid=collector.on_invalid),
                  interface="127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in (audit_message(1), b"not syslog", audit_message(2)):
            sock.sendto(datagram, ("127.0.0.1", port.getHost().port))
    wait_until(lambda: len(collector.messages) == 2 and len(collector.invalid) == 1, "two messages, one invalid")
    assert collector.numbers() == [b"1", b"2"]
    assert collector.invalid[0][0] == b"not syslog"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_receiver_accepts_openssl_s_client(reactor, listen, pki):
    collector, failures = Collector(), []
    config = TLSConfig(cert=pki.server.cert, key=pki.server.key, ca=pki.ca)
    port = listen(listen_tls, reactor, 0, stream_factory(collector, "tls-test"), config,
                  lambda peer, reason: failures.append(reason), "127.0.0.1")
    payload = b"".join(frame_octet_counted(audit_message(n, size=40_000 if n == 1 else 0)) for n in range(3))
    subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port.getHost().port}", "-quiet", "-no_ign_eof",
                    "-CAfile", str(pki.ca), "-cert", str(pki.client.cert), "-key", str(pki.client.key),
                    "-verify_return_error"],
                   input=payload, capture_output=True, timeout=WAIT, env={**os.environ, "OPENSSL_CONF": os.devnull})
    wait_until(lambda: len(collector.messages) == 3, "three messages over TLS")
    assert collector.numbers() == [b"0", b"1", b"2"] and failures == []


# ------------------------------------------------------------------------------------------ sender


@pytest.fixture
def runtime_factory(reactor, tmp_path):
    made = []

    def make() -> Runtime:
        db = Database(f"sqlite:///{tmp_path / 'engine.sqlite3'}")
        db.upgrade()
        pool = ThreadPool(minthreads=1, maxthreads=4, name="test-syslog")
        pool.start()
        runtime = Runtime(settings=Settings(data_dir=tmp_path), db=db,
                          audit=AuditHook(create_plugin_manager(load_entry_points=False)),
                          blobs=BlobStore(tmp_path / "blobs"), reactor=reactor, threadpool=pool)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.threadpool.stop()
        runtime.db.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _enqueue(reactor, sender: SyslogSender, numbers) -> None:
    for number in numbers:
        blockingCallFromThread(reactor, sender.enqueue, audit_message(number))


def _pending(reactor, sender: SyslogSender) -> int:
    return blockingCallFromThread(reactor, sender.pending)


@dataclass(frozen=True, kw_only=True)
class Row:
    attempts: int
    last_error: str | None
    done_at: datetime | None


def _rows(runtime: Runtime) -> list[Row]:
    with runtime.uow() as uow:
        return [Row(attempts=item.attempts, last_error=item.last_error, done_at=item.done_at)
                for item in uow.session.scalars(select(QueueItem).order_by(QueueItem.id))]


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_sender_delivers_queued_messages_in_order(reactor, listen, runtime_factory, pki, protocol):
    collector = Collector()
    server = TLSConfig(cert=pki.server.cert, key=pki.server.key, ca=pki.ca)
    factory = stream_factory(collector)
    if protocol == "tls":
        port = listen(listen_tls, reactor, 0, factory, server, lambda *a: None, "127.0.0.1")
    else:
        port = listen(reactor.listenTCP, 0, factory, interface="127.0.0.1")
    runtime = runtime_factory()
    sender = SyslogSender(runtime, host="127.0.0.1", port=port.getHost().port, protocol=protocol, batch=7,
                          tls_config=TLSConfig(cert=pki.client.cert, key=pki.client.key, ca=pki.ca))
    _enqueue(reactor, sender, range(20))
    assert _pending(reactor, sender) == 20
    assert blockingCallFromThread(reactor, sender.pump) == 20
    assert _pending(reactor, sender) == 0
    wait_until(lambda: len(collector.messages) == 20, "twenty messages")
    assert collector.numbers() == [str(n).encode() for n in range(20)]
    assert all(row.done_at is not None and row.attempts == 0 for row in _rows(runtime))
    assert len(factory.built) == 1  # one persistent connection for three batches
    blockingCallFromThread(reactor, sender.stop)
    wait_until(lambda: not factory.built[0].transport.connected, "stop() closed the connection")


def test_sender_retries_until_the_receiver_is_up(reactor, listen, runtime_factory):
    port_number = _free_port()
    runtime = runtime_factory()
    sender = SyslogSender(runtime, host="127.0.0.1", port=port_number, protocol="tcp", retry_backoff=0.05,
                          max_backoff=0.2, poll_interval=0.05, connect_timeout=2)
    blockingCallFromThread(reactor, sender.start)
    try:
        _enqueue(reactor, sender, range(3))
        wait_until(lambda: any(row.attempts >= 2 for row in _rows(runtime)), "failed attempts recorded")
        assert "cannot connect" in _rows(runtime)[0].last_error
        assert _pending(reactor, sender) == 3
        collector = Collector()
        listen(reactor.listenTCP, port_number, stream_factory(collector), interface="127.0.0.1")
        wait_until(lambda: _pending(reactor, sender) == 0, "the queue drained")
        wait_until(lambda: len(collector.messages) == 3, "three messages")
        assert sorted(collector.numbers()) == [b"0", b"1", b"2"]
    finally:
        blockingCallFromThread(reactor, sender.stop)


def test_sender_reconnects_after_the_receiver_restarts(reactor, listen, runtime_factory):
    collector = Collector()
    factory = stream_factory(collector)
    port = listen(reactor.listenTCP, 0, factory, interface="127.0.0.1")
    runtime = runtime_factory()
    sender = SyslogSender(runtime, host="127.0.0.1", port=port.getHost().port, protocol="tcp", retry_backoff=0.05,
                          max_backoff=0.2, poll_interval=0.05)
    blockingCallFromThread(reactor, sender.start)
    try:
        _enqueue(reactor, sender, [1])
        wait_until(lambda: len(collector.messages) == 1, "first message")
        assert len(factory.built) == 1
        blockingCallFromThread(reactor, factory.built[0].transport.loseConnection)
        _enqueue(reactor, sender, [2, 3])
        wait_until(lambda: _pending(reactor, sender) == 0 and len(collector.messages) >= 3, "later messages")
        assert set(collector.numbers()) == {b"1", b"2", b"3"}
        assert len(factory.built) == 2  # the sender opened a new connection
    finally:
        blockingCallFromThread(reactor, sender.stop)


def test_queued_messages_survive_a_new_sender_and_database_object(reactor, listen, runtime_factory):
    first_runtime = runtime_factory()
    first = SyslogSender(first_runtime, host="127.0.0.1", port=_free_port(), protocol="tcp")
    _enqueue(reactor, first, range(4))  # never started: nothing sent
    first_runtime.db.dispose()
    collector = Collector()
    port = listen(reactor.listenTCP, 0, stream_factory(collector), interface="127.0.0.1")
    second_runtime = runtime_factory()  # a new Database object on the same SQLite file
    second = SyslogSender(second_runtime, host="127.0.0.1", port=port.getHost().port, protocol="tcp")
    assert _pending(reactor, second) == 4
    assert blockingCallFromThread(reactor, second.pump) == 4
    wait_until(lambda: len(collector.messages) == 4, "four messages")
    assert collector.numbers() == [b"0", b"1", b"2", b"3"]
    assert _pending(reactor, second) == 0
    blockingCallFromThread(reactor, second.stop)


def test_sender_over_udp(reactor, listen, runtime_factory):
    collector = Collector()
    port = listen(reactor.listenUDP, 0, SyslogDatagramProtocol(collector.on_message, listener_name="udp"),
                  interface="127.0.0.1")
    runtime = runtime_factory()
    sender = SyslogSender(runtime, host="127.0.0.1", port=port.getHost().port, protocol="udp")
    _enqueue(reactor, sender, range(3))
    assert blockingCallFromThread(reactor, sender.pump) == 3
    wait_until(lambda: len(collector.messages) == 3, "three datagrams")
    assert sorted(collector.numbers()) == [b"0", b"1", b"2"]
    blockingCallFromThread(reactor, sender.stop)


def test_udp_message_too_large_for_a_datagram_is_closed_with_its_error_and_blocks_nothing(
        reactor, listen, runtime_factory):
    collector = Collector()
    port = listen(reactor.listenUDP, 0, SyslogDatagramProtocol(collector.on_message, listener_name="udp"),
                  interface="127.0.0.1")
    runtime = runtime_factory()
    sender = SyslogSender(runtime, host="127.0.0.1", port=port.getHost().port, protocol="udp")
    for message in (audit_message(0), audit_message(1, size=70_000), audit_message(2)):
        blockingCallFromThread(reactor, sender.enqueue, message)
    assert blockingCallFromThread(reactor, sender.pump) == 2
    assert _pending(reactor, sender) == 0
    wait_until(lambda: len(collector.messages) == 2, "two datagrams")
    assert sorted(collector.numbers()) == [b"0", b"2"]
    rejected = _rows(runtime)[1]
    assert rejected.done_at is not None and "too large for a UDP datagram" in rejected.last_error
    blockingCallFromThread(reactor, sender.stop)


def test_tls_sender_refused_by_the_collector_keeps_its_messages(reactor, listen, runtime_factory, pki):
    collector, failures = Collector(), []
    server = TLSConfig(cert=pki.server.cert, key=pki.server.key, ca=pki.ca)
    port = listen(listen_tls, reactor, 0, stream_factory(collector), server,
                  lambda peer, reason: failures.append(reason), "127.0.0.1")
    runtime = runtime_factory()
    sender = SyslogSender(runtime, host="127.0.0.1", port=port.getHost().port, protocol="tls",
                          tls_config=TLSConfig(cert=pki.expired_client.cert, key=pki.expired_client.key, ca=pki.ca))
    _enqueue(reactor, sender, range(2))
    assert blockingCallFromThread(reactor, sender.pump) == 0
    assert _pending(reactor, sender) == 2
    rows = _rows(runtime)
    assert all(row.attempts == 1 and row.done_at is None for row in rows)
    assert "connection failed" in rows[0].last_error
    wait_until(lambda: failures, "the collector reported the refusal")
    assert "expired" in failures[0] and collector.messages == []
    blockingCallFromThread(reactor, sender.stop)


def test_sender_configuration_errors(runtime_factory):
    from ihe_engine.errors import ConfigurationError

    runtime = runtime_factory()
    with pytest.raises(ConfigurationError, match="tls_config"):
        SyslogSender(runtime, host="h", port=1)
    with pytest.raises(ConfigurationError, match="tls, tcp or udp"):
        SyslogSender(runtime, host="h", port=1, protocol="relp")



# ------------------------------------------------------------------------------ idle timeout, connection cap


def clocked_connection(factory, clock=None):
    protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.9", 4000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 4000))
    protocol.makeConnection(transport)
    return protocol, transport


def test_silent_syslog_connection_is_closed_after_the_idle_timeout():
    clock, collector = task.Clock(), Collector()
    factory = SyslogStreamFactory(collector.on_message, listener_name="idle-test", idle_timeout=300, clock=clock)
    protocol, transport = clocked_connection(factory)
    clock.advance(299)
    protocol.dataReceived(frame_octet_counted(audit_message(1)))
    clock.advance(299)
    assert not transport.disconnecting and collector.numbers() == [b"1"]
    clock.advance(2)
    assert transport.disconnecting


def test_tls_handshake_that_never_completes_is_closed_after_the_idle_timeout(pki):
    clock = task.Clock()
    inner = SyslogStreamFactory(Collector().on_message, listener_name="idle-tls", idle_timeout=300, clock=clock)
    tls_factory = wrap_server_factory(inner, TLSConfig(cert=pki.server.cert, key=pki.server.key, ca=pki.ca),
                                      lambda *_: None)
    protocol, transport = clocked_connection(tls_factory)
    protocol.dataReceived(b"\x16\x03\x01")  # the start of a ClientHello, and then nothing
    clock.advance(299)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


def refused(listener: str) -> float:
    return REGISTRY.get_sample_value("ihe_listener_connections_refused_total", {"listener": listener}) or 0.0


def test_syslog_listener_refuses_connections_past_its_cap():
    factory = SyslogStreamFactory(Collector().on_message, listener_name="cap-test", max_connections=2,
                                  clock=task.Clock())
    before = refused("cap-test")
    first, _ = clocked_connection(factory)
    clocked_connection(factory)
    _, third = clocked_connection(factory)
    assert third.disconnecting and refused("cap-test") == before + 1
    first.connectionLost(Failure(ConnectionDone()))
    _, fourth = clocked_connection(factory)
    assert not fourth.disconnecting
