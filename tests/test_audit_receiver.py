"""The ARR's ingest batching: group commit, retry while the database is away, and a message that breaks the
reader stored unread rather than lost."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from ihe_engine.audit import repository as arr
from ihe_engine.audit.receiver import IngestBatcher
from ihe_engine.audit.tables import AuditRecordRow
from ihe_engine.storage import Database, UnitOfWork

NOW = datetime(2026, 11, 22, tzinfo=timezone.utc)


def item(raw: bytes = b"<AuditMessage/>") -> arr.Incoming:
    return arr.Incoming(raw=raw, transport="tcp", received_at=NOW, peer="192.0.2.1:1")


class FlakyRuntime:
    """run_blocking fails with OperationalError ``failures`` times, then reports every item stored."""

    def __init__(self, failures: int) -> None:
        self.reactor, self.failures, self.batches = Clock(), failures, []

    def run_blocking(self, function, items):
        self.batches.append(len(items))
        if self.failures:
            self.failures -= 1
            return fail(OperationalError("INSERT", {}, Exception("database is away")))
        return succeed(list(range(len(items))))


def test_messages_arriving_together_share_one_batch():
    runtime = FlakyRuntime(failures=0)
    batcher = IngestBatcher(runtime, delay=0.002)
    fired = []
    for _ in range(5):
        batcher.submit(item()).addCallback(fired.append)
    assert runtime.batches == [] and fired == []  # waits up to `delay` for company
    runtime.reactor.advance(0.002)
    assert runtime.batches == [5] and len(fired) == 5


def test_a_full_batch_is_stored_at_once_and_the_rest_follows():
    runtime = FlakyRuntime(failures=0)
    batcher = IngestBatcher(runtime, max_batch=3)
    for _ in range(4):
        batcher.submit(item())
    assert runtime.batches == [3]
    runtime.reactor.advance(0.002)
    assert runtime.batches == [3, 1]


def test_a_batch_is_kept_and_retried_while_the_database_is_away():
    runtime = FlakyRuntime(failures=2)
    batcher = IngestBatcher(runtime, retry_delay=1.0)
    fired = []
    for _ in range(3):
        batcher.submit(item()).addCallback(fired.append)
    runtime.reactor.advance(0.002)
    runtime.reactor.advance(1.0)
    assert fired == [] and runtime.batches == [3, 3]  # nothing acknowledged, nothing dropped
    runtime.reactor.advance(1.0)
    assert len(fired) == 3 and runtime.batches == [3, 3, 3] and batcher.stored == 3


class ThreadlessRuntime:
    def __init__(self, db: Database) -> None:
        self.db, self.reactor = db, Clock()

    def uow(self, readonly: bool = False) -> UnitOfWork:
        return UnitOfWork(self.db.sessions, readonly=readonly)


def test_a_message_that_breaks_the_reader_is_stored_unread(tmp_path, monkeypatch):
    db = Database(f"sqlite:///{tmp_path / 'arr.sqlite3'}")
    db.upgrade()
    from ihe_engine.audit import dicom

    real = dicom.analyse

    def fragile(data: bytes):
        if b"poison" in data:
            raise RuntimeError("reader bug")
        return real(data)

    monkeypatch.setattr(dicom, "analyse", fragile)
    batcher = IngestBatcher(ThreadlessRuntime(db))
    ids = batcher._store([item(), item(b"<AuditMessage poison='1'/>"), item()])
    assert len(ids) == 3
    with UnitOfWork(db.sessions, readonly=True) as uow:
        rows = list(uow.session.execute(select(AuditRecordRow.__table__).order_by(AuditRecordRow.id)))
        assert arr.verify(uow.session).intact
    assert [row.raw_kind for row in rows] == ["xml", "unread", "xml"]
    assert json.loads(rows[1].problems) == ["could not be read: reader bug"]
    assert bytes(rows[1].raw) == b"<AuditMessage poison='1'/>"
    db.dispose()


class ManualRuntime:
    """run_blocking returns a Deferred the test fires: a batch stays "in flight" as long as the test wants."""

    def __init__(self) -> None:
        self.reactor, self.calls = Clock(), []

    def run_blocking(self, function, items):
        done = Deferred()
        self.calls.append((items, done))
        return done


def test_a_second_batch_goes_in_flight_only_when_full():
    runtime = ManualRuntime()
    batcher = IngestBatcher(runtime, max_batch=3, delay=0.5)
    batcher.submit(item())
    runtime.reactor.advance(0.5)
    assert [len(items) for items, _ in runtime.calls] == [1]
    batcher.submit(item())
    batcher.submit(item())
    runtime.reactor.advance(5)
    assert len(runtime.calls) == 1  # no timer while one is in flight: company keeps coming
    batcher.submit(item())
    assert [len(items) for items, _ in runtime.calls] == [1, 3]  # full: stored beside the first
    batcher.submit(item())
    assert len(runtime.calls) == 2  # two in flight at most
    runtime.calls[0][1].callback([0])
    runtime.reactor.advance(0)
    assert [len(items) for items, _ in runtime.calls] == [1, 3, 1]


def test_a_clean_stop_stores_everything_received_before_letting_the_reactor_stop():
    runtime = ManualRuntime()
    batcher = IngestBatcher(runtime, delay=0.5)
    batcher.submit(item())
    runtime.reactor.advance(0.5)
    batcher.submit(item())
    batcher.submit(item())
    assert len(runtime.calls) == 1  # first batch in flight, two waiting for company
    stopped = []
    batcher.stop().addCallback(stopped.append)
    assert len(runtime.calls) == 2 and len(runtime.calls[1][0]) == 2  # stopping: sent at once, no delay
    batcher.submit(item())  # still arriving while stopping; both slots are busy
    assert len(runtime.calls) == 2
    runtime.calls[0][1].callback([0])
    assert len(runtime.calls) == 3 and stopped == []  # sent within the same callback: no reactor turn between
    runtime.calls[1][1].callback([1, 2])
    assert stopped == []
    runtime.calls[2][1].callback([3])
    assert stopped == [None] and batcher.stored == 4
    batcher.submit(item())  # after the stop, a late message is still sent immediately
    assert len(runtime.calls) == 4


def test_a_stop_gives_up_after_its_timeout_when_the_database_stays_away():
    runtime = FlakyRuntime(failures=1000)
    batcher = IngestBatcher(runtime, retry_delay=1.0, stop_timeout=5.0)
    batcher.submit(item())
    stopped = []
    batcher.stop().addCallback(stopped.append)
    runtime.reactor.advance(4.0)
    assert stopped == [] and batcher.stored == 0  # still retrying
    runtime.reactor.advance(1.0)
    assert stopped == [None]


def test_while_the_database_is_away_new_messages_wait_for_the_retry():
    runtime = FlakyRuntime(failures=1)
    batcher = IngestBatcher(runtime, max_batch=2, retry_delay=1.0)
    batcher.submit(item())
    batcher.submit(item())
    assert runtime.batches == [2]  # failed
    for _ in range(4):
        batcher.submit(item())  # full batches, but no hammering of an absent database
    assert runtime.batches == [2]
    runtime.reactor.advance(1.0)
    runtime.reactor.advance(0)
    runtime.reactor.advance(0)
    assert runtime.batches == [2, 2, 2, 2] and batcher.stored == 6


def test_ingest_leaves_a_pool_thread_to_the_other_transactions():
    from types import SimpleNamespace

    def runtime(threads):
        return SimpleNamespace(reactor=Clock(), threadpool=SimpleNamespace(max=threads))

    assert IngestBatcher(runtime(2)).max_in_flight == 1  # SQLite's default pool
    assert IngestBatcher(runtime(3)).max_in_flight == 2
    assert IngestBatcher(runtime(16)).max_in_flight == 2  # PostgreSQL's
