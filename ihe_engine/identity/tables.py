"""Tables of the patient identity store: patients, their identifiers, and the history of what changed them.

* ``patient``: one person as the feed knows them. ``status`` is ``active`` or ``merged``; a merged patient points
  at its survivor through ``merged_into_id``, which always names an *active* patient (merging re-points earlier
  merges too), so following a merge is one join, never a walk. Demographics are columns because PDQ queries them;
  ``family_name_key``/``birth_name_key`` hold the names uppercased without accents or punctuation, indexed, so a
  name search is an index range scan.
* ``patient_identifier``: every identifier a patient carries, unique by (``authority_key``, ``value``) -- the
  :attr:`~ihe_engine.identity.cx.CX.key` -- with the authority's namespace, OID and type and the PID-3.5 type code
  kept. ``status``: ``active``, ``merged`` (subsumed by an A40) or ``inactive`` (removed by the sender).
* ``identity_event``: the history (A01, A08, A40, ...): when, which message (MSH-3/4/10), which patients, a JSON
  summary and the raw message text (PAM FR ZBE/ZFx segments included, uninterpreted for now).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.base import Base, utcnow

__all__ = ["Patient", "PatientIdentifier", "IdentityEvent", "PatientStatus", "IdentifierStatus"]


class PatientStatus:
    ACTIVE = "active"
    MERGED = "merged"


class IdentifierStatus:
    ACTIVE = "active"
    MERGED = "merged"
    INACTIVE = "inactive"


class Patient(Base):
    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=PatientStatus.ACTIVE)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    family_name: Mapped[str | None] = mapped_column(String(200))
    family_name_key: Mapped[str | None] = mapped_column(String(200), index=True)
    given_name: Mapped[str | None] = mapped_column(String(200))
    given_names: Mapped[str | None] = mapped_column(String(400))
    birth_name: Mapped[str | None] = mapped_column(String(200))
    birth_name_key: Mapped[str | None] = mapped_column(String(200), index=True)
    birth_date: Mapped[str | None] = mapped_column(String(8), index=True)
    sex: Mapped[str | None] = mapped_column(String(1))
    birthplace: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    phone: Mapped[str | None] = mapped_column(String(100))
    identity_reliability: Mapped[str | None] = mapped_column(String(20))


class PatientIdentifier(Base):
    __tablename__ = "patient_identifier"
    __table_args__ = (
        UniqueConstraint("authority_key", "value"),
        Index("ix_patient_identifier_patient_id_status", "patient_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    value: Mapped[str] = mapped_column(String(200))
    authority_key: Mapped[str] = mapped_column(String(200))
    namespace_id: Mapped[str] = mapped_column(String(200), default="")
    universal_id: Mapped[str] = mapped_column(String(200), default="")
    universal_id_type: Mapped[str] = mapped_column(String(20), default="")
    type_code: Mapped[str] = mapped_column(String(20), default="")
    status: Mapped[str] = mapped_column(String(16), default=IdentifierStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IdentityEvent(Base):
    __tablename__ = "identity_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    other_patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    sending_application: Mapped[str] = mapped_column(String(227), default="")
    sending_facility: Mapped[str] = mapped_column(String(227), default="")
    control_id: Mapped[str] = mapped_column(String(199), default="")
    details: Mapped[str] = mapped_column(Text, default="{}")
    raw_message: Mapped[str | None] = mapped_column(Text)
