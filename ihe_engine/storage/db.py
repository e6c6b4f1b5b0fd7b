"""Engine and session factory for SQLite (WAL) or PostgreSQL, and the schema upgrade on start."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigurationError

__all__ = ["Database", "SQLITE_BEGIN_OPTION"]

log = logging.getLogger("ihe_engine.storage")
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


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
    connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """One engine and one sessionmaker per process; sessions are opened by the unit of work."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
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
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = create_engine(parsed, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
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
