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
* ``vigilance_item``: the identity-vigilance queue (:mod:`ihe_engine.identity.vigilance`): two patients that may be
  one person, or a merged survivor to review; open until a person accepts or rejects it, and kept afterwards so a
  rejected pair is never proposed again (``pair_key``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.base import Base, utcnow

__all__ = ["Patient", "PatientIdentifier", "PatientNameKey", "IdentityEvent", "PatientStatus", "IdentifierStatus",
           "VigilanceItem", "VigilanceKind", "VigilanceStatus", "PatientVisit"]


class PatientStatus:
    ACTIVE = "active"
    MERGED = "merged"
    LINKED = "linked"
    """A record whose identifiers were all linked into another patient (``merged_into_id``); it carries none."""


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
    # PDQ traits and their search keys (migration 0005_pdq_search); name keys live in patient_name_key
    street: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(20))
    account_number: Mapped[str | None] = mapped_column(String(200), index=True)
    mothers_maiden_name: Mapped[str | None] = mapped_column(String(200))
    city_key: Mapped[str | None] = mapped_column(String(200), index=True)
    street_key: Mapped[str | None] = mapped_column(String(200))
    postal_code_key: Mapped[str | None] = mapped_column(String(20), index=True)
    phone_key: Mapped[str | None] = mapped_column(String(100), index=True)


class PatientIdentifier(Base):
    __tablename__ = "patient_identifier"
    __table_args__ = (
        UniqueConstraint("authority_key", "value"),
        Index("ix_patient_identifier_patient_id_status", "patient_id", "status"),
        Index("ix_patient_identifier_value", "value"),
        Index("ix_patient_identifier_namespace_id_authority_key", "namespace_id", "authority_key"),
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


_BYTEWISE = String(200).with_variant(String(200, collation="C"), "postgresql")


class PatientNameKey(Base):
    """One key a patient's name is found under (PDQ): ``kind`` F used family name, B birth name, G given name,
    M mother's maiden name; ``key`` a compact key of :mod:`~ihe_engine.identity.names`, ``phonetic`` its
    French Soundex. Byte-ordered (collation C on PostgreSQL) so a prefix search is an index range scan."""

    __tablename__ = "patient_name_key"
    __table_args__ = (
        Index("ix_patient_name_key_kind_key", "kind", "key", "patient_id"),
        Index("ix_patient_name_key_kind_phonetic", "kind", "phonetic", "patient_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    kind: Mapped[str] = mapped_column(String(1))
    key: Mapped[str] = mapped_column(_BYTEWISE)
    phonetic: Mapped[str] = mapped_column(String(8))


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


class VigilanceKind:
    POSSIBLE_MATCH = "possible-match"
    """Two patients that may be one person: accepting links them."""
    REVIEW = "review"
    """A patient to look at (a merge left a national identifier behind): accepting acknowledges it."""


class VigilanceStatus:
    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class VigilanceItem(Base):
    __tablename__ = "vigilance_item"
    __table_args__ = (Index("ix_vigilance_item_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=VigilanceStatus.OPEN)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    other_patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    pair_key: Mapped[str | None] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(400))
    details: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))


class PatientVisit(Base):
    """The current state of one visit of a patient (ITI-22 PDVQ, :mod:`~ihe_engine.identity.visits`), fed by the
    PV1/PV2 of ITI-8 messages. ``visit_key`` is PV1-19 as CX text ("" for the patient's current visit when the
    sender gives no visit number). The query fields are columns; ``pv1``/``pv2`` are the segments to answer with,
    kept in the standard delimiters ``|^~\\&``. A merged patient's rows stay where they are: queries resolve their
    owner to the survivor."""

    __tablename__ = "patient_visit"
    __table_args__ = (
        UniqueConstraint("patient_id", "visit_key"),
        Index("ix_patient_visit_location", "point_of_care", "room", "bed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    visit_key: Mapped[str] = mapped_column(String(250), default="")
    visit_number: Mapped[str] = mapped_column(String(200), default="", index=True)
    patient_class: Mapped[str] = mapped_column(String(20), default="", index=True)
    point_of_care: Mapped[str] = mapped_column(String(80), default="")
    room: Mapped[str] = mapped_column(String(80), default="")
    bed: Mapped[str] = mapped_column(String(80), default="")
    facility: Mapped[str] = mapped_column(String(200), default="", index=True)
    attending_id: Mapped[str] = mapped_column(String(200), default="", index=True)
    attending_family_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    hospital_service: Mapped[str] = mapped_column(String(80), default="", index=True)
    admitted_at: Mapped[str] = mapped_column(String(26), default="")
    discharged_at: Mapped[str] = mapped_column(String(26), default="")
    pv1: Mapped[str] = mapped_column(Text)
    pv2: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
