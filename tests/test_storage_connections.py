"""Pooled PostgreSQL connections: no ping per transaction, yet a connection the server killed is recovered."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from ihe_engine.storage import Database, UnitOfWork


@pytest.fixture
def postgres(database):
    if database.is_sqlite:
        pytest.skip("SQLite has no server connection to lose")
    admin = create_engine(os.environ["IHE_TEST_PG_URL"], isolation_level="AUTOCOMMIT")
    yield database, admin
    admin.dispose()


def _backend_pid(db: Database) -> int:
    with UnitOfWork(db.sessions) as uow:
        return uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _count_pings(db: Database, monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Count the dialect pings (what ``pool_pre_ping`` would send on every checkout)."""
    pings: list[int] = []
    real_ping = db.engine.dialect.do_ping

    def counted(dbapi_connection) -> bool:  # type: ignore[no-untyped-def]
        pings.append(1)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    return pings


def _kill(admin, pid: int) -> None:  # type: ignore[no-untyped-def]
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()


def test_a_recently_used_connection_is_not_pinged(postgres, monkeypatch):
    db, _ = postgres
    first = _backend_pid(db)
    pings = _count_pings(db, monkeypatch)
    for _ in range(3):
        assert _backend_pid(db) == first  # the same pooled connection served every unit of work
    assert pings == []


def test_an_idle_connection_is_pinged_once_at_checkout(postgres, monkeypatch):
    database, _ = postgres
    db = Database(database.url.render_as_string(hide_password=False), idle_ping_seconds=0.0)
    try:
        first = _backend_pid(db)
        pings = _count_pings(db, monkeypatch)
        assert _backend_pid(db) == first
        assert pings == [1]
        with UnitOfWork(db.sessions, readonly=True) as uow:  # the ping left no transaction open to spoil this
            assert uow.session.execute(text("SHOW transaction_isolation")).scalar_one() == "repeatable read"
    finally:
        db.dispose()


def test_an_idle_connection_killed_by_the_server_is_replaced_before_the_work_runs(postgres, monkeypatch):
    database, admin = postgres
    db = Database(database.url.render_as_string(hide_password=False), idle_ping_seconds=0.0)
    try:
        dead = _backend_pid(db)
        _kill(admin, dead)
        pings = _count_pings(db, monkeypatch)
        with UnitOfWork(db.sessions) as uow:  # no error: the ping found the dead one, the pool opened another
            uow.queue.put("q", b"kept")
            uow.commit()
        assert pings and _backend_pid(db) != dead
        with UnitOfWork(db.sessions, readonly=True) as uow:
            assert uow.queue.pending_count("q") == 1
    finally:
        db.dispose()


def test_a_busy_connection_killed_fails_one_transaction_then_the_pool_recovers(postgres):
    db, admin = postgres
    dead = _backend_pid(db)
    _kill(admin, dead)
    with pytest.raises(OperationalError):
        with UnitOfWork(db.sessions) as uow:
            uow.queue.put("q", b"lost")
            uow.commit()
    with UnitOfWork(db.sessions) as uow:
        uow.queue.put("q", b"kept")
        uow.commit()
    with UnitOfWork(db.sessions, readonly=True) as uow:
        assert uow.queue.pending_count("q") == 1
    assert _backend_pid(db) != dead
