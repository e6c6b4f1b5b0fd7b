"""ITI-10 PIX Update Notification: A31s enqueued with the change, sent to real MLLP consumers, retried, audited.

The consumer is a small blocking-socket MLLP server written here (independent of the engine's framing code): it
records every message and answers as its script says (AA, AE, or silence).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import hl7
import pytest
from hl7.client import MLLPClient
from sqlalchemy import select
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from ihe_engine.audit import AuditHook
from ihe_engine.config import Settings
from ihe_engine.errors import ConfigurationError
from ihe_engine.hl7v2.dispatch import Hl7Dispatcher
from ihe_engine.identity.iti8 import hl7_routes
from ihe_engine.identity.iti10 import PixConsumer, PixUpdateSender, load_consumers
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.runtime import Runtime
from ihe_engine.storage.models import QueueItem
from ihe_engine.storage.blobstore import BlobStore
from serving import start_engine

X, Y, Z = "1.2.250.1.71.1.2.1", "1.2.250.1.71.1.2.2", "1.2.250.1.71.1.2.3"
START, END = b"\x0b", b"\x1c\x0d"


class Consumer:
    """An MLLP listener on 127.0.0.1; ``script`` gives the answer to each message in turn (last one repeats)."""

    def __init__(self, script=("AA",), port: int = 0) -> None:
        self.script = list(script)
        self.received: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection: socket.socket) -> None:
        buffer = b""
        with connection:
            connection.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    data = connection.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while END in buffer:
                    frame, buffer = buffer.split(END, 1)
                    message = frame[frame.index(START) + 1:]
                    self.received.append(message)
                    code = self.script[min(len(self.received), len(self.script)) - 1]
                    if code != "silent":
                        connection.sendall(START + ack(message, code) + END)

    def messages(self) -> list:
        return [hl7.parse(raw.decode()) for raw in self.received]

    def close(self) -> None:
        self._stop.set()
        self.server.close()


def ack(message: bytes, code: str) -> bytes:
    control_id = str(hl7.parse(message.decode()).segment("MSH")[10])
    return (f"MSH|^~\\&|DPI|CHU|ENGINE|SITE|20240101||ACK^A31^ACK|A-{control_id}|P|2.5\r"
            f"MSA|{code}|{control_id}\r").encode()


class CapturingSink:
    def __init__(self) -> None:
        self.records: list = []

    @hookimpl
    def ihe_audit_record(self, record) -> None:
        self.records.append(record)


@pytest.fixture
def sink() -> CapturingSink:
    return CapturingSink()


@pytest.fixture
def consumers():
    made: list[Consumer] = []

    def make(*args, **kwargs) -> Consumer:
        made.append(Consumer(*args, **kwargs))
        return made[-1]

    yield make
    for consumer in made:
        consumer.close()


@pytest.fixture
def make_runtime(database, reactor_thread, tmp_path, sink):
    pools = []

    def make(entries) -> Runtime:
        plugins = create_plugin_manager(load_entry_points=False)
        plugins.register(sink, name=f"capture-{len(pools)}")
        pool = ThreadPool(minthreads=1, maxthreads=4, name="test-iti10")
        pool.start()
        pools.append(pool)
        return Runtime(settings=Settings(data_dir=tmp_path, extra={"pix_consumers": entries}), db=database,
                       audit=AuditHook(plugins), blobs=BlobStore(tmp_path / "blobs"), reactor=reactor_thread,
                       threadpool=pool, process_id=f"p{len(pools)}")

    yield make
    for pool in pools:
        pool.stop()


def feed(runtime: Runtime, control_id: str, pid3: str) -> bytes:
    dispatcher = Hl7Dispatcher(runtime, hl7_routes(runtime), sending_application="ENGINE", sending_facility="SITE")
    raw = (f"MSH|^~\\&|SRC|HOSP|ENGINE|SITE|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.3.1\r"
           f"EVN|A01|20240101120000\rPID|||{pid3}||ALPHA^ALAN^^^^^L||19380224|M\rPV1||O\r").encode()
    return blockingCallFromThread(runtime.reactor, dispatcher.handle, raw, "10.0.0.1:1")


def ids(*pairs: tuple[str, str]) -> str:
    return "~".join(f"{value}^^^&{oid}&ISO" for value, oid in pairs)


def sender(runtime: Runtime, **options) -> PixUpdateSender:
    options = {"retry_backoff": 0.01, "max_backoff": 0.05, "answer_timeout": 5.0, **options}
    return PixUpdateSender(runtime, load_consumers(runtime.settings), **options)


def pump(runtime: Runtime, pix_sender: PixUpdateSender) -> None:
    blockingCallFromThread(runtime.reactor, pix_sender.pump)


def pending(runtime: Runtime, name: str = "dpi") -> int:
    with runtime.uow() as uow:
        return uow.queue.pending_count(f"iti10:{name}")


def pump_until_sent(runtime: Runtime, pix_sender: PixUpdateSender, name: str = "dpi", rounds: int = 500) -> None:
    """Pump until the queue is empty (retries wait for their backoff); the bound only stops a broken sender."""
    for _ in range(rounds):
        pump(runtime, pix_sender)
        if pending(runtime, name) == 0:
            return
        time.sleep(0.01)
    raise AssertionError(f"queue iti10:{name} never drained")


def stop(runtime: Runtime, pix_sender: PixUpdateSender) -> None:
    blockingCallFromThread(runtime.reactor, pix_sender.stop)


# -- configuration ---------------------------------------------------------------------------------------------

def test_consumers_from_configuration():
    [consumer] = load_consumers(Settings(extra={"pix_consumers": [
        {"name": "dpi", "address": "dpi.example:2575", "domains": [X], "application": "DPI", "facility": "CHU"}]}))
    assert consumer == PixConsumer(name="dpi", host="dpi.example", port=2575, domains=frozenset({X}),
                                   application="DPI", facility="CHU")
    assert load_consumers(Settings()) == []
    for bad in ([{"address": "a:1"}], [{"name": "n", "address": "a"}], [{"name": "n", "address": "a:0"}],
                [{"name": "n", "address": "a:1", "domains": X}], {"name": "n"},
                [{"name": "n", "address": "a:1"}, {"name": "n", "address": "b:2"}]):
        with pytest.raises(ConfigurationError):
            load_consumers(Settings(extra={"pix_consumers": bad}))


# -- delivery ----------------------------------------------------------------------------------------------------

def test_a31_reaches_the_consumer_with_every_cross_referenced_id(make_runtime, consumers, sink):
    consumer = consumers()
    runtime = make_runtime([{"name": "dpi", "address": f"127.0.0.1:{consumer.port}", "application": "DPI",
                             "facility": "CHU"}])
    feed(runtime, "F1", ids(("A1", X)))
    assert pending(runtime) == 0  # a single id cross-references nothing
    feed(runtime, "F2", ids(("B1", X), ("B2", Y)))
    assert pending(runtime) == 1
    pix_sender = sender(runtime)
    try:
        pump_until_sent(runtime, pix_sender)
    finally:
        stop(runtime, pix_sender)
    [message] = consumer.messages()
    assert str(message.segment("MSH")[9]) == "ADT^A31^ADT_A05" and str(message.segment("MSH")[12]) == "2.5"
    assert (str(message.segment("MSH")[5]), str(message.segment("MSH")[6])) == ("DPI", "CHU")
    pid = message.segment("PID")
    assert [str(rep) for rep in pid[3]] == [f"B1^^^&{X}&ISO", f"B2^^^&{Y}&ISO"]
    assert str(pid[5]) == " "
    assert str(message.segment("PV1")[2]) == "N"
    [record] = [record for record in sink.records if record.transaction == "ITI-10"]
    assert (record.event_id[0], record.action, record.outcome) == ("110110", "R", 0)
    assert record.event_types == (("ITI-10", "IHE Transactions", "PIX Update Notification"),)
    assert [obj.object_id for obj in record.objects] == [f"B1^^^&{X}&ISO", f"B2^^^&{Y}&ISO"]
    assert record.participants[1].user_id == "CHU|DPI"


def test_domain_filter(make_runtime, consumers):
    interested, elsewhere = consumers(), consumers()
    runtime = make_runtime([{"name": "dpi", "address": f"127.0.0.1:{interested.port}", "domains": [Y]},
                            {"name": "lab", "address": f"127.0.0.1:{elsewhere.port}", "domains": [Z]}])
    feed(runtime, "D1", ids(("C1", X), ("C2", Y)))
    assert (pending(runtime, "dpi"), pending(runtime, "lab")) == (1, 0)
    pix_sender = sender(runtime)
    try:
        pump_until_sent(runtime, pix_sender)
    finally:
        stop(runtime, pix_sender)
    assert [str(rep) for rep in interested.messages()[0].segment("PID")[3]] == [f"C2^^^&{Y}&ISO"]
    assert elsewhere.received == []


def free_port() -> int:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_consumer_down_at_first_gets_the_notification_later(make_runtime, consumers):
    port = free_port()
    runtime = make_runtime([{"name": "dpi", "address": f"127.0.0.1:{port}"}])
    feed(runtime, "L1", ids(("D1", X), ("D2", Y)))
    pix_sender = sender(runtime)
    try:
        pump(runtime, pix_sender)
        with runtime.db.sessions() as session:
            [item] = session.scalars(select(QueueItem).where(QueueItem.queue == "iti10:dpi")).all()
            assert item.attempts == 1 and "no answer" in item.last_error and item.done_at is None
        consumer = consumers(port=port)
        pump_until_sent(runtime, pix_sender)
    finally:
        stop(runtime, pix_sender)
    assert len(consumer.received) == 1


def test_ae_and_silence_are_retried_with_the_same_message(make_runtime, consumers, sink):
    consumer = consumers(script=("AE", "silent", "AA"))
    runtime = make_runtime([{"name": "dpi", "address": f"127.0.0.1:{consumer.port}"}])
    feed(runtime, "R1", ids(("E1", X), ("E2", Y)))
    feed(runtime, "R2", ids(("F1", X), ("F2", Y)))
    pix_sender = sender(runtime, answer_timeout=0.3)
    try:
        pump_until_sent(runtime, pix_sender)
    finally:
        stop(runtime, pix_sender)
    control_ids = [str(message.segment("MSH")[10]) for message in consumer.messages()]
    assert len(control_ids) == 4 and control_ids[0] == control_ids[1] == control_ids[2] != control_ids[3]
    assert [str(message.segment("PID")[3][0]) for message in consumer.messages()][2:] == \
        [f"E1^^^&{X}&ISO", f"F1^^^&{X}&ISO"]  # the failed item is not overtaken by the next one
    outcomes = [record.outcome for record in sink.records if record.transaction == "ITI-10"]
    assert outcomes == [4, 0, 0]  # the AE is audited as a failure; silence is no exchange


def test_two_workers_send_each_notification_once(make_runtime, consumers, reactor_thread):
    consumer = consumers()
    entries = [{"name": "dpi", "address": f"127.0.0.1:{consumer.port}"}]
    first, second = make_runtime(entries), make_runtime(entries)
    for number in range(12):
        feed(first, f"W{number}", ids((f"W{number}", X), (f"V{number}", Y)))
    senders = [sender(first, batch=3), sender(second, batch=3)]
    try:
        for _ in range(200):
            blockingCallFromThread(reactor_thread, lambda: [one.pump() for one in senders] and None)
            if pending(first) == 0:
                break
            time.sleep(0.01)
    finally:
        for one in senders:
            stop(first, one)
    control_ids = [str(message.segment("MSH")[10]) for message in consumer.messages()]
    assert pending(first) == 0 and len(control_ids) == len(set(control_ids)) == 12


# -- through the real serve: feed over MLLP with python-hl7, the sender started by serve --------------------------

def test_serve_sends_a31_to_a_configured_consumer(database, tmp_path, consumers):
    consumer = consumers()
    config = tmp_path / "engine.toml"
    config.write_text(f'[[pix_consumers]]\nname = "dpi"\naddress = "127.0.0.1:{consumer.port}"\n')
    engine = start_engine(tmp_path / "data", "--config", str(config), "--db-url",
                          database.url.render_as_string(hide_password=False))
    try:
        host, port = engine.host_port("mllp")
        message = (f"MSH|^~\\&|SRC|HOSP|ENGINE|SITE|20240101120000||ADT^A01^ADT_A01|S1|P|2.3.1\r"
                   f"EVN|A01|20240101120000\rPID|||{ids(('S1', X), ('S2', Y))}||ALPHA^ALAN||19380224|M\r"
                   f"PV1||O\r")
        with MLLPClient(host, port) as client:
            client.socket.settimeout(10)
            answer = client.send_message(message)
        assert str(hl7.parse(answer[1:-2].decode()).segment("MSA")[1]) == "AA"
        with _deadline(30) as waiting:
            while not consumer.received:
                waiting()
    finally:
        engine.stop()
    assert [str(rep) for rep in consumer.messages()[0].segment("PID")[3]] == [f"S1^^^&{X}&ISO", f"S2^^^&{Y}&ISO"]


@contextmanager
def _deadline(seconds: float):
    """A loop guard: fails the test if what it waits for never happens (not a timing assertion)."""
    end = time.monotonic() + seconds

    def waiting() -> None:
        if time.monotonic() > end:
            raise AssertionError("the consumer never received the notification")
        time.sleep(0.05)

    yield waiting
