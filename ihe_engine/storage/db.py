"""Engine and session factory for SQLite (WAL) or PostgreSQL, and the schema upgrade on start."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigurationError

__all__ = ["Database", "SQLITE_BEGIN_OPTION", "IDLE_PING_SECONDS", "RECYCLE_SECONDS"]

log = logging.getLogger("ihe_engine.storage")
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
IDLE_PING_SECONDS = 10.0
"""A pooled server connection idle for longer is pinged before use (a busy one is not: no round trip per
transaction)."""
RECYCLE_SECONDS = 1800
"""Pooled server connections older than this are replaced at checkout (server-side idle timeouts, failovers)."""


def _sqlite_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
    # pysqlite opens a transaction only at the first write, so a read-then-write unit of work would not be
    # atomic: turn its own BEGIN off and emit ours in _sqlite_begin (SQLAlchemy's documented recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


SQLITE_BEGIN_OPTION = "ihe_sqlite_begin"


def _sqlite_begin(connection):  # type: ignore[no-untyped-def]
    """IMMEDIATE takes the write lock up front: no unit of work fails half-way on a stale snapshot.

    Read-only work asks for DEFERRED (``UnitOfWork(readonly=True)``) and never waits for writers (WAL).
    """
    mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
    # straight to the driver: one BEGIN per transaction does not need SQLAlchemy's statement machinery
    connection.connection.driver_connection.execute(f"BEGIN {mode}")


_CHECKED_IN_AT = "ihe_checked_in_at"


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection at checkout only when it sat idle for ``idle_seconds``.

    ``pool_pre_ping`` pings on every checkout: one extra round trip per transaction, 10% of an ITI-42. A
    connection that dies while idle (server restart, idle timeout) is caught here and replaced before the unit
    of work runs -- the pool retries the checkout on ``DisconnectionError``. One that dies in the seconds after
    its last use fails its next transaction with OperationalError (answered busy, nothing changed), and the
    disconnect invalidates the pool, so the next transactions get fresh connections.
    """

    @event.listens_for(engine, "checkin")
    def checked_in(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        last_use = record.info.get(_CHECKED_IN_AT)
        if last_use is None or time.monotonic() - last_use < idle_seconds:
            return  # new, or busy recently
        try:
            engine.dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()  # leave no transaction open: the unit of work sets its isolation level
        except Exception as error:  # any failure: drop this connection, the pool checks out another one
            raise exc.DisconnectionError(f"idle pooled connection is dead: {error}") from error


class Database:
    """One engine and one sessionmaker per process; sessions are opened by the unit of work."""

    def __init__(self, url: str, *, echo: bool = False, idle_ping_seconds: float = IDLE_PING_SECONDS) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise ConfigurationError(f"invalid database URL {url!r}: {exc}") from None
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict = {"echo": echo, "future": True}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_recycle=RECYCLE_SECONDS)
        self.engine: Engine = create_engine(parsed, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            _ping_when_idle(self.engine, idle_ping_seconds)
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision (creates it on an empty store)."""
        from alembic import command

        command.upgrade(self.alembic_config(), "heads")

    def alembic_config(self):  # type: ignore[no-untyped-def]
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["engine"] = self.engine
        return config

    def read_connection(self):  # type: ignore[no-untyped-def]
        """A connection for read-only work (no write lock taken on SQLite)."""
        return self.engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})

    def table_names(self) -> list[str]:
        return inspect(self.engine).get_table_names()

    def dispose(self) -> None:
        self.engine.dispose()
