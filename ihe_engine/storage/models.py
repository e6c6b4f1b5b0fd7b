"""Foundation tables shared by every transport and actor.

- ``hl7_exchange``: each HL7 v2 message accepted, keyed by MSH-3/MSH-4/MSH-10, with the exact answer sent, so a
  retransmission gets the same answer and changes nothing (whichever worker receives it).
- ``queue_item``: durable outbound queues (audit records to ship, PIX update notifications, ...).
- ``continuation``: paging state for queries answered in several messages (PDQ DSC pointers, ITI-47), so any worker
  answers the next page.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow

__all__ = ["Hl7Exchange", "QueueItem", "Continuation"]


class Hl7Exchange(Base):
    __tablename__ = "hl7_exchange"
    __table_args__ = (UniqueConstraint("sending_application", "sending_facility", "control_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sending_application: Mapped[str] = mapped_column(String(227))
    sending_facility: Mapped[str] = mapped_column(String(227))
    control_id: Mapped[str] = mapped_column(String(199))
    message_type: Mapped[str] = mapped_column(String(40))
    message_sha256: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes]
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class QueueItem(Base):
    __tablename__ = "queue_item"
    __table_args__ = (Index("ix_queue_item_ready", "queue", "done_at", "available_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    queue: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None]
    done_at: Mapped[datetime | None]


class Continuation(Base):
    __tablename__ = "continuation"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[bytes]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
