"""Unit of work: one short transaction, committed only when told, rolled back otherwise."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from .repositories import ContinuationRepository, Hl7ExchangeRepository, QueueRepository

__all__ = ["UnitOfWork", "is_readonly"]

_READONLY = "ihe_engine.readonly"


class UnitOfWork:
    """``with UnitOfWork(db.sessions) as uow: ...; uow.commit()``.

    Actors get repositories from it; leaving the block without ``commit()`` rolls everything back, so a failed
    transaction leaves nothing behind. Every unit of work is one real transaction from its first statement: on
    SQLite it starts with ``BEGIN IMMEDIATE`` (reads and the writes that depend on them are atomic) unless it is
    ``readonly``.
    """

    session: Session

    def __init__(self, sessions: sessionmaker[Session], *, readonly: bool = False) -> None:
        self._sessions = sessions
        self.readonly = readonly

    def __enter__(self) -> "UnitOfWork":
        self.session = self._sessions()
        if self.readonly:
            self.session.info[_READONLY] = True
            self.session.connection(execution_options=_readonly_options(self.session))
        self.hl7_exchanges = Hl7ExchangeRepository(self.session)
        self.queue = QueueRepository(self.session)
        self.continuations = ContinuationRepository(self.session)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()

    def commit(self) -> None:
        if self.readonly:
            raise RuntimeError("a read-only unit of work cannot commit")
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


def _readonly_options(session: Session) -> dict:
    """One consistent snapshot for the whole unit of work, without taking a write lock."""
    from .db import SQLITE_BEGIN_OPTION

    if session.get_bind().dialect.name == "sqlite":
        return {SQLITE_BEGIN_OPTION: "DEFERRED"}  # WAL: the snapshot is fixed at the first read
    return {"isolation_level": "REPEATABLE READ"}


def is_readonly(session: Session) -> bool:
    """Whether ``session`` belongs to a read-only unit of work (nothing it writes would ever be committed)."""
    return bool(session.info.get(_READONLY))
