"""Audit Record Repository tables.

- ``audit_record``: one row per received or emitted audit message, valid or not. ``id`` is the record's position
  in the hash chain (assigned in one serialized step, see :mod:`ihe_engine.audit.repository`), so a deleted
  record leaves a gap and the chain is checked in primary-key order. The raw bytes are kept as received; the
  columns beside them are what searches filter on.
- ``audit_index``: the multi-valued search keys of a record (kind ``P`` patient id, ``U`` user id, ``O`` other
  object id, ``T`` event type code), each with the record's event time, so "this patient, newest first, in this
  period" is one range scan of one index however many records there are.
- ``audit_chain``: the head of the chain (one row): last id and hash, so deleting the newest records is seen.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.base import Base

__all__ = ["AuditRecordRow", "AuditIndexRow", "AuditChainHead", "INDEX_KINDS"]

INDEX_KINDS = {"P": "patient", "U": "user", "O": "object", "T": "event type"}
_BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class AuditRecordRow(Base):
    __tablename__ = "audit_record"
    __table_args__ = (
        Index("ix_audit_record_event_time", "event_time"),
        Index("ix_audit_record_event_code_time", "event_code", "event_time"),
        Index("ix_audit_record_outcome_time", "outcome", "event_time"),
        Index("ix_audit_record_source_time", "source_id", "event_time"),
        Index("ix_audit_record_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime]
    event_time: Mapped[datetime]
    """EventDateTime, or the reception time when the message has none (invalid messages are still searchable)."""
    event_code: Mapped[str | None] = mapped_column(String(64))
    event_system: Mapped[str | None] = mapped_column(String(64))
    event_text: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str | None] = mapped_column(String(1))
    outcome: Mapped[int | None] = mapped_column(SmallInteger)
    source_id: Mapped[str | None] = mapped_column(String(255))
    valid: Mapped[bool] = mapped_column(Boolean)
    problems: Mapped[str | None] = mapped_column(Text)
    """JSON list of "location: text" strings, null when valid."""
    transport: Mapped[str] = mapped_column(String(8))
    """tls, tcp, udp, or local (emitted by this engine)."""
    peer: Mapped[str | None] = mapped_column(String(255))
    hostname: Mapped[str | None] = mapped_column(String(255))
    app_name: Mapped[str | None] = mapped_column(String(48))
    msgid: Mapped[str | None] = mapped_column(String(32))
    raw_kind: Mapped[str] = mapped_column(String(8))
    """xml: ``raw`` is the syslog MSG; syslog: the whole frame, which could not be parsed as RFC 5424."""
    raw: Mapped[bytes]
    prev_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64))


class AuditIndexRow(Base):
    __tablename__ = "audit_index"
    __table_args__ = (
        Index("ix_audit_index_lookup", "kind", "value", "event_time", "record_id"),
        Index("ix_audit_index_record_id", "record_id"),
    )

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True)
    record_id: Mapped[int] = mapped_column(_BIGINT, ForeignKey("audit_record.id"))
    kind: Mapped[str] = mapped_column(String(1))
    value: Mapped[str] = mapped_column(String(512))
    event_time: Mapped[datetime]


class AuditChainHead(Base):
    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(_BIGINT)
    last_hash: Mapped[str] = mapped_column(String(64))
