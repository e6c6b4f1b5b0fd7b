"""Repositories for the foundation tables. Each is given a session; none commits."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import Row, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from .base import utcnow
from .models import Continuation, Hl7Exchange, QueueItem

__all__ = ["Hl7ExchangeRepository", "QueueRepository", "ContinuationRepository"]

_EXCHANGE = Hl7Exchange.__table__


class Hl7ExchangeRepository:
    """Answers already given to HL7 v2 messages, for retransmission detection.

    On the feed's hot path (two statements per message), so it uses SQLAlchemy Core on the session's connection
    with statements built once: no ORM identity map, flush or per-call statement construction. ``add`` writes at
    once, so a concurrent duplicate's unique violation surfaces at ``add``, not at commit.
    """

    _FIND = select(_EXCHANGE).where(
        _EXCHANGE.c.sending_application == bindparam("application"),
        _EXCHANGE.c.sending_facility == bindparam("facility"),
        _EXCHANGE.c.control_id == bindparam("control_id"))
    _ADD = insert(_EXCHANGE)

    def __init__(self, session: Session) -> None:
        self.session = session

    def find(self, sending_application: str, sending_facility: str, control_id: str) -> Row | None:
        """The stored row (``.response``, ``.message_sha256``, ``.received_at``, ...), or None."""
        return self.session.connection().execute(self._FIND, {
            "application": sending_application, "facility": sending_facility, "control_id": control_id}).first()

    def add(self, *, sending_application: str, sending_facility: str, control_id: str, message_type: str,
            message_sha256: str, response: bytes) -> None:
        self.session.connection().execute(self._ADD, {
            "sending_application": sending_application, "sending_facility": sending_facility,
            "control_id": control_id, "message_type": message_type, "message_sha256": message_sha256,
            "response": response, "received_at": utcnow()})

    def purge_before(self, when: datetime) -> int:
        return self.session.execute(delete(Hl7Exchange).where(Hl7Exchange.received_at < when)).rowcount or 0


class QueueRepository:
    """A durable at-least-once queue in the database, shared by every worker.

    Items are claimed with a lease; a worker that dies leaves its lease to expire and another takes the item.
    On PostgreSQL the claim uses SKIP LOCKED so workers never block each other.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def put(self, queue: str, payload: bytes, *, delay: timedelta | None = None) -> int:
        now = utcnow()
        item = QueueItem(queue=queue, payload=payload, created_at=now, available_at=now + (delay or timedelta()))
        self.session.add(item)
        self.session.flush()
        return item.id

    def claim(self, queue: str, worker: str, *, limit: int = 100, lease: timedelta = timedelta(seconds=60)
              ) -> list[QueueItem]:
        now = utcnow()
        query = (select(QueueItem)
                 .where(QueueItem.queue == queue, QueueItem.done_at.is_(None), QueueItem.available_at <= now,
                        (QueueItem.claimed_until.is_(None)) | (QueueItem.claimed_until < now))
                 .order_by(QueueItem.id).limit(limit))
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        items = list(self.session.scalars(query))
        for item in items:
            item.claimed_by = worker
            item.claimed_until = now + lease
        self.session.flush()
        return items

    def done(self, item_ids: list[int]) -> None:
        if item_ids:
            self.session.execute(update(QueueItem).where(QueueItem.id.in_(item_ids))
                                 .values(done_at=utcnow(), claimed_until=None))

    def retry(self, item_id: int, error: str, *, backoff: timedelta) -> None:
        item = self.session.get(QueueItem, item_id)
        if item is not None:
            item.attempts += 1
            item.last_error = error[:2000]
            item.claimed_until = None
            item.claimed_by = None
            item.available_at = utcnow() + backoff

    def pending_count(self, queue: str) -> int:
        from sqlalchemy import func

        return self.session.scalar(select(func.count()).select_from(QueueItem)
                                   .where(QueueItem.queue == queue, QueueItem.done_at.is_(None))) or 0


class ContinuationRepository:
    """Paging state of multi-message query answers, readable by any worker."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, kind: str, state: bytes, *, ttl: timedelta = timedelta(minutes=30)) -> str:
        token = secrets.token_hex(16)
        now = utcnow()
        self.session.add(Continuation(token=token, kind=kind, state=state, created_at=now, expires_at=now + ttl))
        return token

    def get(self, kind: str, token: str) -> bytes | None:
        item = self.session.get(Continuation, token)
        if item is None or item.kind != kind or item.expires_at < utcnow():
            return None
        return item.state

    def replace(self, token: str, state: bytes) -> None:
        self.session.execute(update(Continuation).where(Continuation.token == token).values(state=state))

    def cancel(self, token: str) -> bool:
        return bool(self.session.execute(delete(Continuation).where(Continuation.token == token)).rowcount)

    def cancel_kind(self, kind: str) -> int:
        """Forget every pointer of one query (HL7 QCN^J01 cancels by query tag, not by pointer); how many."""
        return self.session.execute(delete(Continuation).where(Continuation.kind == kind)).rowcount or 0

    def purge_expired(self) -> int:
        return self.session.execute(delete(Continuation).where(Continuation.expires_at < utcnow())).rowcount or 0
