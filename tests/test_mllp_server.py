"""The MLLP listener and client: in memory (StringTransport, Clock) and over loopback with python-hl7's client."""

from __future__ import annotations

import os
import socket
import threading
import time

import hl7
import pytest
from hl7.client import MLLPClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from twisted.internet import defer, task
from twisted.internet.threads import blockingCallFromThread
from twisted.python.failure import Failure
from twisted.internet.testing import StringTransport

from ihe_engine.audit import AuditHook
from ihe_engine.config import Settings
from ihe_engine.hl7v2.dispatch import Hl7Dispatcher, Hl7Route
from ihe_engine.plugins import create_plugin_manager
from ihe_engine.runtime import Runtime
from ihe_engine.storage.blobstore import BlobStore
from ihe_engine.storage.models import Hl7Exchange, QueueItem
from ihe_engine.transport.mllp import MLLPFramer, frame
from ihe_engine.transport.mllp_twisted import (BlockingMLLPClient, MLLPClientProtocol, MLLPServerFactory,
                                               connect_mllp, send_blocking)


def adt(control_id: str, trigger: str = "A01") -> bytes:
    return (f"MSH|^~\\&|HIS|HOSP|ENGINE|SITE|20240101120000||ADT^{trigger}^ADT_A01|{control_id}|P|2.5\r"
            f"PID|||{control_id}^^^HOSP\r").encode()


class ScriptedDispatcher:
    """Answers when the test says so, to observe ordering."""

    def __init__(self) -> None:
        self.pending: list[tuple[bytes, defer.Deferred]] = []

    def handle(self, raw: bytes, peer: str) -> defer.Deferred:
        answer: defer.Deferred = defer.Deferred()
        self.pending.append((raw, answer))
        return answer


class EchoDispatcher:
    def __init__(self) -> None:
        self.peers: list[str] = []

    def handle(self, raw: bytes, peer: str) -> bytes:
        self.peers.append(peer)
        return b"ECHO " + raw


def connect(dispatcher, **options):
    clock = task.Clock()
    factory = MLLPServerFactory(dispatcher, clock=clock, **options)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock


def written_messages(transport: StringTransport) -> list[bytes]:
    return MLLPFramer().feed(transport.value())


def gauge(name: str, listener: str) -> float:
    return REGISTRY.get_sample_value(name, {"listener": listener}) or 0.0


# -- in memory -----------------------------------------------------------------------------------------------------

def test_answers_each_message_framed_with_the_peer_address():
    dispatcher = EchoDispatcher()
    protocol, transport, _ = connect(dispatcher)
    protocol.dataReceived(frame(b"one") + frame(b"two")[:3])
    protocol.dataReceived(frame(b"two")[3:])
    assert written_messages(transport) == [b"ECHO one", b"ECHO two"]
    assert dispatcher.peers == ["192.168.1.1:54321"] * 2


@pytest.mark.parametrize("packet_size", [1, 2, 3, 7, 1000])
def test_any_packet_size(packet_size):
    protocol, transport, _ = connect(EchoDispatcher())
    stream = b"".join(frame(adt(f"C{index}")) for index in range(5))
    for start in range(0, len(stream), packet_size):
        protocol.dataReceived(stream[start:start + packet_size])
    assert written_messages(transport) == [b"ECHO " + adt(f"C{index}") for index in range(5)]


def test_pipelined_answers_are_written_in_arrival_order():
    dispatcher = ScriptedDispatcher()
    protocol, transport, _ = connect(dispatcher)
    protocol.dataReceived(frame(b"first") + frame(b"second") + frame(b"third"))
    (_, first), (_, second), (_, third) = dispatcher.pending
    third.callback(b"answer 3")
    assert transport.value() == b""
    first.callback(b"answer 1")
    assert written_messages(transport) == [b"answer 1"]
    second.callback(b"answer 2")
    assert written_messages(transport) == [b"answer 1", b"answer 2", b"answer 3"]


def test_oversized_frame_drops_the_connection_with_bounded_memory():
    protocol, transport, _ = connect(EchoDispatcher(), max_message_size=1024 * 1024)
    protocol.dataReceived(b"\x0b")
    chunk = b"x" * 65536
    for _ in range(20 * 16):  # 20 MB offered
        protocol.dataReceived(chunk)
        assert protocol.framer.buffered_bytes <= 1024 * 1024 + len(chunk)
        if transport.disconnecting:
            break
    assert transport.disconnecting
    protocol.dataReceived(frame(b"after"))
    assert transport.value() == b""


def test_small_garbage_between_frames_is_ignored():
    protocol, transport, _ = connect(EchoDispatcher())
    protocol.dataReceived(b"\r\n\x00junk" + frame(b"one") + os.urandom(200).replace(b"\x0b", b"") + frame(b"two"))
    assert written_messages(transport) == [b"ECHO one", b"ECHO two"]
    assert not transport.disconnecting


def test_a_stream_of_binary_garbage_closes_the_connection():
    protocol, transport, _ = connect(EchoDispatcher(), max_garbage=64 * 1024)
    noise = os.urandom(1024 * 1024).replace(b"\x0b", b"\x00")
    for start in range(0, len(noise), 65536):
        protocol.dataReceived(noise[start:start + 65536])
    assert transport.disconnecting
    assert protocol.framer.buffered_bytes == 0
    assert transport.value() == b""


def test_garbage_limit_counts_only_since_the_last_message():
    protocol, transport, _ = connect(EchoDispatcher(), max_garbage=100)
    for index in range(50):  # a sender that adds CR LF after every frame is not a noise source
        protocol.dataReceived(frame(b"m%d" % index) + b"\r\n" * 10)
    assert not transport.disconnecting
    assert len(written_messages(transport)) == 50
    protocol.dataReceived(b"\x00" * 200)
    assert transport.disconnecting


def test_reading_pauses_while_too_many_answers_are_pending():
    dispatcher = ScriptedDispatcher()
    protocol, transport, _ = connect(dispatcher, max_in_flight=3)
    protocol.dataReceived(frame(b"1") + frame(b"2"))
    assert transport.producerState == "producing"
    protocol.dataReceived(frame(b"3"))
    assert transport.producerState == "paused"
    dispatcher.pending[0][1].callback(b"a1")
    assert transport.producerState == "producing"
    for _, answer in dispatcher.pending[1:]:
        answer.callback(b"a")
    assert written_messages(transport) == [b"a1", b"a", b"a"]


def test_an_unframeable_answer_closes_the_connection():
    dispatcher = ScriptedDispatcher()
    protocol, transport, _ = connect(dispatcher)
    protocol.dataReceived(frame(b"x"))
    dispatcher.pending[0][1].callback(b"bad \x1c answer")
    assert transport.disconnecting
    assert transport.value() == b""


def test_idle_connection_times_out():
    protocol, transport, clock = connect(EchoDispatcher(), idle_timeout=30)
    clock.advance(29)
    protocol.dataReceived(frame(b"keep me"))
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


def test_a_connection_waiting_for_an_answer_is_not_idle():
    dispatcher = ScriptedDispatcher()
    protocol, transport, clock = connect(dispatcher, idle_timeout=30)
    protocol.dataReceived(frame(b"slow"))
    clock.advance(100)
    assert not transport.disconnecting
    dispatcher.pending[0][1].callback(b"done")
    clock.advance(31)
    assert transport.disconnecting
    assert written_messages(transport) == [b"done"]


def test_a_frame_trickled_byte_by_byte_is_dropped_at_the_frame_deadline():
    """Slowloris: each byte arrives before the idle timeout, but the frame must end within frame_timeout."""
    protocol, transport, clock = connect(EchoDispatcher(), idle_timeout=300, frame_timeout=60)
    protocol.dataReceived(b"\x0bMSH|")
    for byte in b"^~\\&|":  # one byte every 10 s: never idle for 300 s
        clock.advance(10)
        protocol.dataReceived(bytes([byte]))
    assert not transport.disconnecting
    clock.advance(10)  # 60 s since the frame started
    assert transport.disconnecting


def test_the_frame_deadline_restarts_with_each_frame():
    protocol, transport, clock = connect(EchoDispatcher(), idle_timeout=300, frame_timeout=60)
    protocol.dataReceived(b"\x0bfirst")
    clock.advance(50)
    protocol.dataReceived(b"\x1c\x0d\x0bsecond")
    clock.advance(50)
    assert not transport.disconnecting
    protocol.dataReceived(b"\x1c\x0d")
    clock.advance(100)
    assert not transport.disconnecting
    assert written_messages(transport) == [b"ECHO first", b"ECHO second"]


def test_a_trickle_of_garbage_does_not_keep_a_connection_open():
    protocol, transport, clock = connect(EchoDispatcher(), idle_timeout=30)
    for _ in range(5):
        clock.advance(20)
        protocol.dataReceived(b"x")
    assert transport.disconnecting


def test_listener_refuses_connections_past_its_cap():
    clock = task.Clock()
    factory = MLLPServerFactory(EchoDispatcher(), clock=clock, listener_name="mllp-cap", max_connections=2)
    before = REGISTRY.get_sample_value("ihe_listener_connections_refused_total", {"listener": "mllp-cap"}) or 0.0
    connections = []
    for _ in range(3):
        protocol, transport = factory.buildProtocol(None), StringTransport()
        protocol.makeConnection(transport)
        connections.append((protocol, transport))
    assert [transport.disconnecting for _, transport in connections] == [False, False, True]
    assert REGISTRY.get_sample_value("ihe_listener_connections_refused_total", {"listener": "mllp-cap"}) == before + 1
    assert gauge("ihe_listener_connections_open", "mllp-cap") == 2
    connections[2][0].connectionLost(Failure(ConnectionError()))  # the refused one leaves no trace
    connections[0][0].connectionLost(Failure(ConnectionError()))
    protocol, transport = factory.buildProtocol(None), StringTransport()
    protocol.makeConnection(transport)
    assert not transport.disconnecting
    assert gauge("ihe_listener_connections_open", "mllp-cap") == 2


def test_a_failing_dispatcher_closes_the_connection():
    dispatcher = ScriptedDispatcher()
    protocol, transport, _ = connect(dispatcher)
    protocol.dataReceived(frame(b"x"))
    dispatcher.pending[0][1].errback(Failure(RuntimeError("bug")))
    assert transport.disconnecting


def test_connection_metrics():
    before_total = gauge("ihe_listener_connections_total", "metrics-test")
    protocol, _, _ = connect(EchoDispatcher(), listener_name="metrics-test")
    assert gauge("ihe_listener_connections_open", "metrics-test") == 1
    assert gauge("ihe_listener_connections_total", "metrics-test") == before_total + 1
    protocol.connectionLost(Failure(ConnectionError()))
    assert gauge("ihe_listener_connections_open", "metrics-test") == 0


def test_client_protocol_matches_pipelined_answers_in_order():
    client = MLLPClientProtocol()
    transport = StringTransport()
    client.makeConnection(transport)
    first, second = client.send(b"one"), client.send(b"two")
    assert MLLPFramer().feed(transport.value()) == [b"one", b"two"]
    results: list = []
    first.addCallback(results.append)
    second.addCallback(results.append)
    client.dataReceived(frame(b"answer one") + frame(b"answer two")[:5])
    assert results == [b"answer one"]
    client.dataReceived(frame(b"answer two")[5:])
    assert results == [b"answer one", b"answer two"]


def test_client_pending_answers_fail_when_the_connection_is_lost():
    client = MLLPClientProtocol()
    client.makeConnection(StringTransport())
    answer = client.send(b"one")
    failures: list = []
    answer.addErrback(failures.append)
    client.connectionLost(Failure(ConnectionError("gone")))
    assert len(failures) == 1 and failures[0].check(ConnectionError)
    late: list = []
    client.send(b"two").addErrback(late.append)
    assert late


def test_cancelling_a_client_answer_aborts_the_connection():
    client = MLLPClientProtocol()
    transport = StringTransport()
    client.makeConnection(transport)
    answer = client.send(b"one")
    answer.addErrback(lambda failure: None)
    answer.cancel()
    assert transport.disconnecting or getattr(transport, "aborted", False)


# -- over loopback ---------------------------------------------------------------------------------------------

@pytest.fixture
def runtime(database, reactor_thread, tmp_path):
    from twisted.python.threadpool import ThreadPool

    pool = ThreadPool(minthreads=1, maxthreads=4, name="test-blocking")
    pool.start()
    yield Runtime(settings=Settings(data_dir=tmp_path), db=database,
                  audit=AuditHook(create_plugin_manager(load_entry_points=False)), blobs=BlobStore(tmp_path / "blobs"),
                  reactor=reactor_thread, threadpool=pool)
    pool.stop()


class Listening:
    def __init__(self, reactor, factory) -> None:
        self.reactor = reactor
        self.port = blockingCallFromThread(reactor, reactor.listenTCP, 0, factory, interface="127.0.0.1")
        self.number = self.port.getHost().port

    def close(self) -> None:
        blockingCallFromThread(self.reactor, self.port.stopListening)


@pytest.fixture
def listen(reactor_thread):
    opened: list[Listening] = []

    def start(factory) -> Listening:
        opened.append(Listening(reactor_thread, factory))
        return opened[-1]

    yield start
    for listening in opened:
        listening.close()


def exchange_with_python_hl7(port: int, message: bytes) -> bytes:
    """Send with python-hl7's blocking client (not ours) and read until one whole answer arrived."""
    with MLLPClient("127.0.0.1", port) as client:
        client.socket.settimeout(10)
        received = client.send_message(message)
        while not received.endswith(b"\x1c\x0d"):
            more = client.socket.recv(4096)
            assert more, "server closed before answering"
            received += more
    assert received.startswith(b"\x0b")
    return received[1:-2]


def count(database, model) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


class CommitWatchingHandler:
    """Records the message in a queue, then delays the dispatcher's commit: an ACK sent before the commit
    would reach the client while the rows are still invisible."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, message, uow, context):
        self.calls += 1
        uow.queue.put("adt-received", message.raw)
        real_commit = uow.commit

        def slow_commit() -> None:
            time.sleep(0.2)
            real_commit()

        uow.commit = slow_commit
        return None


def test_loopback_ack_arrives_after_commit_and_retransmission_is_answered_the_same(runtime, listen):
    handler = CommitWatchingHandler()
    dispatcher = Hl7Dispatcher(runtime, [Hl7Route("ADT^A01", handler, transaction="ITI-8")],
                               sending_application="ENGINE", sending_facility="SITE")
    server = listen(MLLPServerFactory(dispatcher, max_message_size=1024 * 1024))
    message = adt("LOOP-1")
    answer = exchange_with_python_hl7(server.number, message)
    assert count(runtime.db, QueueItem) == 1  # committed before the ACK left
    assert count(runtime.db, Hl7Exchange) == 1
    ack = hl7.parse(answer.decode())
    assert (str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])) == ("AA", "LOOP-1")
    again = exchange_with_python_hl7(server.number, message)
    assert again == answer
    assert handler.calls == 1
    assert count(runtime.db, QueueItem) == 1


def test_loopback_unknown_type_is_rejected(runtime, listen):
    dispatcher = Hl7Dispatcher(runtime, [Hl7Route("ADT^A01", lambda m, u, c: None, transaction="ITI-8")])
    server = listen(MLLPServerFactory(dispatcher))
    ack = hl7.parse(exchange_with_python_hl7(server.number, adt("X1", trigger="A99")).decode())
    assert str(ack.segment("MSA")[1]) == "AR"
    assert str(ack.segment("ERR")[3][0][0]) == "201"


def test_our_clients_over_loopback(reactor_thread, listen):
    server = listen(MLLPServerFactory(EchoDispatcher()))
    assert send_blocking("127.0.0.1", server.number, b"hello") == b"ECHO hello"
    with BlockingMLLPClient("127.0.0.1", server.number) as client:
        assert [client.send(f"m{index}".encode()) for index in range(3)] == [b"ECHO m0", b"ECHO m1", b"ECHO m2"]

    @defer.inlineCallbacks
    def pipelined():
        client = yield connect_mllp(reactor_thread, "127.0.0.1", server.number)
        answers = yield defer.gatherResults([client.send(f"p{index}".encode()) for index in range(5)])
        client.close()
        yield client.lost
        return answers

    assert blockingCallFromThread(reactor_thread, pipelined) == [f"ECHO p{index}".encode() for index in range(5)]


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_binary_garbage_is_dropped_and_the_server_keeps_serving(reactor_thread, listen):
    server = listen(MLLPServerFactory(EchoDispatcher(), max_message_size=1024 * 1024))
    noise = os.urandom(1024 * 1024).replace(b"\x0b", b"\x00")
    hostile = socket.create_connection(("127.0.0.1", server.number))
    try:
        try:
            hostile.sendall(noise)
        except OSError:
            pass  # the server may close before it read everything
        with BlockingMLLPClient("127.0.0.1", server.number) as client:  # another connection meanwhile
            assert client.send(b"still here") == b"ECHO still here"
        assert closed_by_server(hostile)
    finally:
        hostile.close()
    assert send_blocking("127.0.0.1", server.number, b"after") == b"ECHO after"


def test_a_20_mb_frame_over_a_1_mb_limit_drops_the_connection(reactor_thread, listen):
    server = listen(MLLPServerFactory(EchoDispatcher(), max_message_size=1024 * 1024))
    hostile = socket.create_connection(("127.0.0.1", server.number))
    sender_error: list[Exception] = []

    def flood() -> None:
        try:
            hostile.sendall(b"\x0b" + b"A" * (20 * 1024 * 1024))
        except OSError as exc:
            sender_error.append(exc)

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        assert closed_by_server(hostile)
        sender.join(timeout=10)
        assert not sender.is_alive()
        assert sender_error, "the server read 20 MB instead of dropping the connection"
    finally:
        hostile.close()
    assert send_blocking("127.0.0.1", server.number, b"after") == b"ECHO after"
