"""Unit of work: one short transaction, committed only when told, rolled back otherwise."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from .repositories import ContinuationRepository, Hl7ExchangeRepository, QueueRepository

__all__ = ["UnitOfWork"]


class UnitOfWork:
    """``with UnitOfWork(db.sessions) as uow: ...; uow.commit()``.

    Actors get repositories from it; leaving the block without ``commit()`` rolls everything back, so a failed
    transaction leaves nothing behind.
    """

    session: Session

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def __enter__(self) -> "UnitOfWork":
        self.session = self._sessions()
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
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()
