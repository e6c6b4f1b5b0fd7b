"""Durable audit emission: ``runtime.audit.emit`` -> outbox -> local repository exactly once (also after a
crash with records still queued, on SQLite and PostgreSQL), and to remote collectors over TCP and UDP."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadpool import ThreadPool

from ihe_engine.audit import AuditHook, AuditRecord, Participant, ParticipantObject, dicom
from ihe_engine.audit import repository as arr
from ihe_engine.audit.emission import (LOCAL_QUEUE, AuditSettings, Destination, LocalDelivery, OutboxSink,
                                       start_delivery)
from ihe_engine.config import Settings
from ihe_engine.errors import ConfigurationError
from ihe_engine.plugins import create_plugin_manager, hookimpl
from ihe_engine.runtime import Runtime
from ihe_engine.storage import Database, UnitOfWork
from ihe_engine.storage.blobstore import BlobStore
from ihe_engine.storage.models import QueueItem
from ihe_engine.transport.syslog_twisted import SyslogDatagramProtocol, SyslogStreamFactory

WAIT = 30  # seconds: an upper bound for waits, never asserted on


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.02)


def patient_record(number: int) -> AuditRecord:
    return AuditRecord(
        event_id=("110110", "DCM", "Patient Record"), action="C",
        event_types=(("ITI-8", "IHE Transactions", "Patient Identity Feed"),),
        participants=(Participant(user_id="LABO|APP", is_requestor=True, network_access_point="192.0.2.1"),
                      Participant(user_id="HOPITAL|ENGINE", is_requestor=False)),
        objects=(ParticipantObject(object_id=f"{number}^^^&1.2.250.1&ISO", type_code=1, type_code_role=1,
                                   id_type=dicom.PATIENT_NUMBER),), transaction="ITI-8")


def make_runtime(database: Database, reactor, tmp_path: Path, **audit) -> tuple[Runtime, OutboxSink]:
    pool = ThreadPool(minthreads=1, maxthreads=4, name="test-audit")
    pool.start()
    settings = Settings(data_dir=tmp_path, extra={"audit": audit} if audit else {})
    hook = AuditHook(create_plugin_manager(load_entry_points=False))
    runtime = Runtime(settings=settings, db=database, audit=hook, blobs=BlobStore(tmp_path / "blobs"),
                      reactor=reactor, threadpool=pool, node_name="engine.test", process_id="4321")
    sink = OutboxSink(database, AuditSettings.from_settings(settings), node_name="engine.test", process_id="4321")
    hook.plugin_manager.register(sink)
    return runtime, sink


@pytest.fixture
def runtimes(reactor_thread):
    made = []
    yield made
    for runtime, sink in made:
        sink.stop(5)
        runtime.threadpool.stop()


def stored_patients(database: Database) -> list[str]:
    with UnitOfWork(database.sessions, readonly=True) as uow:
        rows = arr.search(uow.session, arr.AuditQuery(limit=10_000))
        return sorted(dicom.analyse(bytes(row.raw)).patient_ids[0] for row in rows)


def outbox_count(database: Database, queue: str = LOCAL_QUEUE) -> int:
    with database.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(QueueItem).where(
            QueueItem.queue == queue, QueueItem.done_at.is_(None))).scalar()


def test_emitted_records_reach_the_local_repository_exactly_once(database, reactor_thread, tmp_path, runtimes):
    runtime, sink = make_runtime(database, reactor_thread, tmp_path)
    runtimes.append((runtime, sink))
    delivery = LocalDelivery(runtime, batch=7)  # several batches
    for number in range(40):
        runtime.audit.emit(patient_record(number))
    assert sink.flush(WAIT)
    blockingCallFromThread(reactor_thread, delivery.pump)
    blockingCallFromThread(reactor_thread, delivery.pump)  # nothing left: delivers nothing twice
    assert stored_patients(database) == sorted(f"{n}^^^&1.2.250.1&ISO" for n in range(40))
    assert outbox_count(database) == 0
    with UnitOfWork(database.sessions, readonly=True) as uow:
        rows = arr.search(uow.session, arr.AuditQuery(limit=100))
        assert all(row.valid and row.transport == "local" and row.idempotency_key for row in rows)
        assert {row.source_id for row in rows} == {"engine.test"}
        assert arr.verify(uow.session).intact


def test_a_redelivered_outbox_item_is_stored_once(database, reactor_thread, tmp_path, runtimes):
    """Exactly once even if an item reached the outbox twice (a retried write): the key travels with it."""
    runtime, sink = make_runtime(database, reactor_thread, tmp_path)
    runtimes.append((runtime, sink))
    runtime.audit.emit(patient_record(1))
    assert sink.flush(WAIT)
    with database.engine.begin() as connection:
        row = connection.execute(select(QueueItem.payload, QueueItem.created_at).where(
            QueueItem.queue == LOCAL_QUEUE)).one()
        connection.execute(insert(QueueItem), [{"queue": LOCAL_QUEUE, "payload": row.payload,
                                                "created_at": row.created_at, "available_at": row.created_at}])
    blockingCallFromThread(reactor_thread, LocalDelivery(runtime).pump)
    assert stored_patients(database) == ["1^^^&1.2.250.1&ISO"]
    assert outbox_count(database) == 0


def test_records_in_the_outbox_survive_a_killed_process(database, reactor_thread, tmp_path, runtimes):
    """A process emits and commits records to the outbox, is SIGKILLed before delivering them; the next process
    delivers every one of them, once."""
    script = textwrap.dedent(f"""
        import sys, time
        from ihe_engine.audit.emission import AuditSettings, OutboxSink
        from ihe_engine.storage import Database
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_audit_emission import patient_record
        db = Database(sys.argv[1])
        sink = OutboxSink(db, AuditSettings(), node_name="victim.test", process_id="1")
        for number in range(25):
            sink.ihe_audit_record(patient_record(number))
        assert sink.flush(60)
        print("flushed", flush=True)
        time.sleep(600)
    """)
    url = database.engine.url.render_as_string(hide_password=False)
    victim = subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout.readline().strip() == "flushed"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(WAIT)
    assert outbox_count(database) == 25
    runtime, sink = make_runtime(database, reactor_thread, tmp_path)  # the restarted engine
    runtimes.append((runtime, sink))
    delivered = blockingCallFromThread(reactor_thread, LocalDelivery(runtime).pump)
    assert delivered == 25
    assert stored_patients(database) == sorted(f"{n}^^^&1.2.250.1&ISO" for n in range(25))


def test_write_in_the_callers_transaction_commits_or_rolls_back_with_it(database, reactor_thread, tmp_path,
                                                                      runtimes):
    runtime, sink = make_runtime(database, reactor_thread, tmp_path)
    runtimes.append((runtime, sink))
    with runtime.uow() as uow:
        sink.write_in(uow.session, [patient_record(1)])
        uow.rollback()
    assert outbox_count(database) == 0
    with runtime.uow() as uow:
        sink.write_in(uow.session, [patient_record(2)])
        uow.commit()
    assert outbox_count(database) == 1


class Recorder:
    """A second sink: what every other sink hears."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    @hookimpl
    def ihe_audit_record(self, record: AuditRecord) -> None:
        self.records.append(record)


def test_emit_with_queues_records_in_the_transaction_of_the_work(database, reactor_thread, tmp_path, runtimes):
    """Durable exactly when the work commits (nothing waits in memory); rolled-back work reports its failure."""
    runtime, sink = make_runtime(database, reactor_thread, tmp_path, destinations=["local"])
    runtimes.append((runtime, sink))
    heard = Recorder()
    runtime.audit.plugin_manager.register(heard)

    with runtime.uow() as uow:
        runtime.audit.emit_with(uow.session, [patient_record(1)])
        uow.commit()
    assert outbox_count(database) == 1  # committed with the work...
    assert sink._unwritten == 0 and [r.outcome for r in heard.records] == [0]  # ...not by the writer thread

    with runtime.uow() as uow:
        kept, undone = patient_record(2), patient_record(3)
        runtime.audit.emit_with(uow.session, [kept])
        savepoint = uow.session.begin_nested()
        runtime.audit.emit_with(uow.session, [undone])
        savepoint.rollback()
        uow.commit()
    assert [(r.objects[0].object_id[:1], r.outcome) for r in heard.records[1:]] == [("3", 8), ("2", 0)]
    assert sink.flush(WAIT)  # the rolled-back record went the in-memory way
    assert outbox_count(database) == 3  # 1 and 2 with their work, 3 (rolled back) by the writer thread

    with runtime.uow(readonly=True) as uow:  # a query's unit of work never commits, yet its record stands
        runtime.audit.emit_with(uow.session, [patient_record(4)])
    assert heard.records[-1].outcome == 0 and heard.records[-1].objects[0].object_id.startswith("4")


class Collector:
    def __init__(self) -> None:
        self.messages = []

    def on_message(self, message, peer):
        self.messages.append(message)


def test_remote_delivery_over_tcp_and_udp(reactor_thread, tmp_path, runtimes):
    database = Database(f"sqlite:///{tmp_path / 'engine.sqlite3'}")
    database.upgrade()
    tcp, udp = Collector(), Collector()
    tcp_port = blockingCallFromThread(reactor_thread, reactor_thread.listenTCP, 0,
                                      SyslogStreamFactory(tcp.on_message, listener_name="test-arr-tcp"),
                                      interface="127.0.0.1")
    udp_port = blockingCallFromThread(reactor_thread, reactor_thread.listenUDP, 0,
                                      SyslogDatagramProtocol(udp.on_message, listener_name="test-arr-udp"),
                                      interface="127.0.0.1")
    try:
        runtime, sink = make_runtime(database, reactor_thread, tmp_path, destinations=[
            f"tcp://127.0.0.1:{tcp_port.getHost().port}", f"udp://127.0.0.1:{udp_port.getHost().port}"],
            enterprise_site_id="HOPITAL")
        runtimes.append((runtime, sink))
        senders = blockingCallFromThread(reactor_thread, start_delivery, runtime, sink, sink.settings)
        for number in range(5):
            runtime.audit.emit(patient_record(number))
        wait_until(lambda: len(tcp.messages) == 5 and len(udp.messages) == 5, "both collectors got 5 records")
        for message in tcp.messages + udp.messages:
            assert (message.pri, message.msgid, message.app_name, message.hostname) == (
                85, "IHE+RFC-3881", "ihe-engine", "engine.test")
            facts = dicom.analyse(message.msg)
            assert facts.valid and facts.enterprise_site_id == "HOPITAL"
        assert sorted(dicom.analyse(m.msg).patient_ids[0] for m in tcp.messages) == sorted(
            f"{n}^^^&1.2.250.1&ISO" for n in range(5))
        wait_until(lambda: all(outbox_count(database, sender.queue) == 0 for sender in senders), "outbox drained")
        for sender in senders:
            blockingCallFromThread(reactor_thread, sender.stop)
    finally:
        blockingCallFromThread(reactor_thread, tcp_port.stopListening)
        blockingCallFromThread(reactor_thread, udp_port.stopListening)
        database.dispose()


@pytest.mark.parametrize("audit,message", [
    ({"destinations": ["ftp://x:1"]}, "tls|tcp|udp"),
    ({"destinations": ["tcp://host-without-port"]}, "tls|tcp|udp"),
    ({"destination": "local"}, "unknown [audit] setting"),
    ({"flush_interval": -1}, "flush_interval"),
])
def test_bad_audit_configuration_is_refused_at_start(audit, message):
    with pytest.raises(ConfigurationError, match=message.replace("|", r"\|").replace("[", r"\[")):
        AuditSettings.from_settings(Settings(extra={"audit": audit}))


def test_destinations_default_to_the_local_repository():
    assert AuditSettings.from_settings(Settings()).destinations == (Destination("local"),)
    parsed = AuditSettings.from_settings(Settings(extra={"audit": {"destinations": "tls://arr.example.org:6514"}}))
    assert parsed.destinations == (Destination("tls", "arr.example.org", 6514),)
