"""The ARR's ingest batching: group commit, retry while the database is away, and a message that breaks the
reader stored unread rather than lost."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from twisted.internet.defer import fail, succeed
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
