"""Patient visits: what the ITI-8 feed's PV1/PV2 say, kept so ITI-22 (PDVQ) can search and answer with them.

One ``patient_visit`` row per (patient, PV1-19 visit number as CX text) holds the visit's *current* state: each
feed message carrying the visit replaces its columns and PV1 text (PV2 only when the message has one, since an
update often sends PV1 alone). A PV1 without PV1-19 but with an assigned location is the patient's current visit,
stored under the empty key. A PV1 with neither (``PV1||N``, ``PV1||O``: class only) is not a visit and costs no
statement at all; a visit costs exactly one (an INSERT .. ON CONFLICT DO UPDATE on SQLite and PostgreSQL alike).

Segments are stored in the standard delimiters ``|^~\\&`` and translated to the query's delimiters when answered.
Merges move nothing: a visit stays on the record the feed named, and :func:`search_visits` resolves a merged or
linked record to the active patient it points at (``patient.merged_into_id`` always names an active one, one join
away), so the merge path stays as it is and an A37 split needs no undo here.

Search values compare exactly, after trimming; codes (class, point of care, room, bed, facility, service) ignore
case, identifiers (visit number, attending doctor id) do not, the attending doctor's family name compares by the
compact key of :mod:`~ihe_engine.identity.names` (accents, case, hyphens and spaces ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import and_, delete, or_, select, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from ..hl7v2.message import DEFAULT_ENCODING, Encoding, Message, Segment
from .cx import CX
from .names import compact
from .pdq_search import PatientQuery, _conditions, _identifier_owners, _identifiers_of, _plan_for_these_values, _score
from .pid_segment import PatientTraits
from .pix import Domain, authority_keys
from .tables import Patient, PatientStatus, PatientVisit

__all__ = ["VisitCriteria", "VisitMatch", "record_visit", "visit_columns", "search_visits", "translate_segment",
           "VISIT_FIELDS"]

VISIT_FIELDS = ("patient_class", "point_of_care", "room", "bed", "facility", "attending_id", "attending_family_key",
                "hospital_service", "visit_number")
"""The searchable columns, in the order of :class:`VisitCriteria`."""
_CASE_FREE = frozenset({"patient_class", "point_of_care", "room", "bed", "facility", "hospital_service"})
_LENGTHS = {column.name: getattr(column.type, "length", None) for column in PatientVisit.__table__.columns}


@dataclass(frozen=True, kw_only=True, slots=True)
class VisitCriteria:
    """PV1 criteria of a PDVQ, already unescaped (None: not asked)."""

    patient_class: str | None = None
    point_of_care: str | None = None
    room: str | None = None
    bed: str | None = None
    facility: str | None = None
    attending_id: str | None = None
    attending_family_key: str | None = None
    """The attending doctor's family name as asked; compared by compact key."""
    hospital_service: str | None = None
    visit_number: str | None = None

    @property
    def is_empty(self) -> bool:
        return not any(_search_value(name, getattr(self, name)) for name in VISIT_FIELDS)


@dataclass(frozen=True, kw_only=True, slots=True)
class VisitMatch:
    patient_id: int
    """The active patient (a merged record's visits come under its survivor)."""
    visit_id: int
    identifiers: tuple[CX, ...]
    traits: PatientTraits
    pv1: str
    pv2: str | None
    score: float | None = None


# -- feed --------------------------------------------------------------------------------------------------------

def visit_columns(message: Message) -> dict[str, Any] | None:
    """The ``patient_visit`` columns the message's PV1 (and PV2) give; None when the PV1 names no visit."""
    pv1 = message.find_segment("PV1")
    if pv1 is None or not (pv1[19] or pv1[3]):
        return None
    pv2 = message.find_segment("PV2")
    first = lambda number: pv1.repetitions(number)[:1] or [""]  # noqa: E731 -- first repetition's raw text
    columns = {
        "visit_key": translate(first(19)[0], pv1.encoding, DEFAULT_ENCODING),
        "visit_number": pv1.get(19).strip(),
        "patient_class": pv1.get(2).strip().upper(),
        "point_of_care": pv1.get(3, 1).strip().upper(), "room": pv1.get(3, 2).strip().upper(),
        "bed": pv1.get(3, 3).strip().upper(), "facility": pv1.get(3, 4).strip().upper(),
        "attending_id": pv1.get(7, 1).strip(), "attending_family_key": compact(pv1.get(7, 2)),
        "hospital_service": pv1.get(10).strip().upper(),
        "admitted_at": pv1.get(44).strip(), "discharged_at": pv1.get(45).strip(),
        "pv1": translate_segment(pv1, DEFAULT_ENCODING),
    }
    columns = {name: _fit(name, value) for name, value in columns.items()}
    if pv2 is not None:
        columns["pv2"] = translate_segment(pv2, DEFAULT_ENCODING)
    return columns


def record_visit(session: Session, patient_id: int, message: Message) -> bool:
    """Upsert the visit the message's PV1 describes for ``patient_id`` (in the caller's transaction); False, and
    no statement, when the PV1 names no visit. With a visit number, a copy of that visit still held by a record
    merged into this patient is removed first (a second statement), so the survivor answers one, current, row."""
    columns = visit_columns(message)
    if columns is None:
        return False
    if columns.get("visit_key"):  # the survivor now reports this visit: the subsumed record's copy is stale
        session.execute(delete(PatientVisit).where(
            PatientVisit.visit_key == columns["visit_key"],
            PatientVisit.patient_id.in_(select(Patient.id).where(Patient.merged_into_id == patient_id))))
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(PatientVisit).values(patient_id=patient_id, **columns)
    updated = {name: statement.excluded[name] for name in columns if name != "visit_key"}
    session.execute(statement.on_conflict_do_update(index_elements=["patient_id", "visit_key"],
                                                    set_={**updated, "updated_at": statement.excluded.updated_at}))
    return True


def _fit(name: str, value: str) -> str:
    length = _LENGTHS.get(name)
    return value[:length] if length else value


# -- search ------------------------------------------------------------------------------------------------------

def search_visits(session: Session, patients: PatientQuery, visits: VisitCriteria, *, domains: Sequence[Domain] = (),
                  limit: int, after: tuple[int, int] | None = None) -> list[VisitMatch]:
    """Up to ``limit`` visits whose (active) patient matches ``patients`` and which match ``visits``, ordered by
    (patient id, visit id) and after ``after``; with ``domains``, as :func:`~.pdq_search.search_patients`."""
    _plan_for_these_values(session)
    conditions = _conditions(session, patients)
    if conditions is None:
        return []
    domain_keys: frozenset[str] | None = None
    if domains:
        domain_keys = frozenset().union(*(authority_keys(session, domain) for domain in domains))
        if not domain_keys:
            return []
        conditions.append(Patient.id.in_(_identifier_owners(value="", keys=domain_keys)))
    conditions += _visit_conditions(visits)
    if after is not None:
        conditions.append(or_(Patient.id > after[0], and_(Patient.id == after[0], PatientVisit.id > after[1])))
    rows = session.execute(_page_of_visits(conditions, limit)).all()
    visits_by_id = {row.id: row for row in session.scalars(
        select(PatientVisit).where(PatientVisit.id.in_([visit_id for visit_id, _ in rows])))}
    patients_by_id = {row.id: row for row in session.scalars(
        select(Patient).where(Patient.id.in_({patient_id for _, patient_id in rows})))}
    identifiers = _identifiers_of(session, sorted(patients_by_id), domain_keys)
    return [VisitMatch(patient_id=patient_id, visit_id=visit_id, identifiers=tuple(identifiers[patient_id]),
                       traits=PatientTraits.from_patient(patients_by_id[patient_id]), pv1=visits_by_id[visit_id].pv1,
                       pv2=visits_by_id[visit_id].pv2,
                       score=_score(patients, patients_by_id[patient_id]) if patients.fuzzy else None)
            for visit_id, patient_id in rows if identifiers.get(patient_id)]


def _page_of_visits(conditions: list[Any], limit: int) -> Any:
    """(visit id, active patient id) rows: the visits of the matching patients themselves, and (UNION ALL) those
    of records merged or linked into them. Two plain joins rather than one on "the owner or its survivor", so
    each side can start from whichever index is selective (the visit criteria or the patient ones)."""
    owner = aliased(Patient)
    own = (select(PatientVisit.id.label("visit_id"), Patient.id.label("patient_id"))
           .join(Patient, Patient.id == PatientVisit.patient_id)
           .where(Patient.status == PatientStatus.ACTIVE, *conditions))
    inherited = (select(PatientVisit.id.label("visit_id"), Patient.id.label("patient_id"))
                 .join(owner, owner.id == PatientVisit.patient_id)
                 .join(Patient, Patient.id == owner.merged_into_id)
                 .where(owner.status != PatientStatus.ACTIVE, Patient.status == PatientStatus.ACTIVE, *conditions))
    page = union_all(own, inherited).subquery()
    return select(page.c.visit_id, page.c.patient_id).order_by(page.c.patient_id, page.c.visit_id).limit(limit)


def _visit_conditions(visits: VisitCriteria) -> list[Any]:
    conditions = []
    for name in VISIT_FIELDS:
        value = _search_value(name, getattr(visits, name))
        if value:
            conditions.append(getattr(PatientVisit, name) == value)
    return conditions


def _search_value(name: str, value: str | None) -> str:
    if not value:
        return ""
    if name == "attending_family_key":
        return compact(value)
    return value.strip().upper() if name in _CASE_FREE else value.strip()


# -- delimiters --------------------------------------------------------------------------------------------------

def translate_segment(segment: Segment, target: Encoding) -> str:
    """The segment's text in ``target``'s delimiters (escape sequences kept, literal target delimiters escaped)."""
    return translate(segment.to_text(), segment.encoding, target)


def translate(text: str, source: Encoding, target: Encoding) -> str:
    """Re-delimit ER7 text so every value keeps its meaning: source delimiters become the target's, a delimiter
    escape (``\\S\\`` ...) becomes the character it stood for in the source (escaped again if the target
    delimits with it), a target delimiter that was plain text becomes its escape; other escapes are kept."""
    if _delimiters(source) == _delimiters(target):
        return text
    mapped = dict(zip(_delimiters(source), _delimiters(target)))
    escaped = {plain: f"{target.escape}{code}{target.escape}" for plain, code in zip(_delimiters(target), "FSRTE")}
    named = dict(zip("FSRTE", _delimiters(source)))
    marker = re.escape(source.escape)
    pieces, position = [], 0
    for sequence in re.finditer(f"{marker}([^{marker}]*){marker}", text):
        pieces.append(_map_plain(text[position:sequence.start()], mapped, escaped))
        code = sequence.group(1)
        if code in named:
            pieces.append(escaped.get(named[code], named[code]))
        else:
            pieces.append(f"{target.escape}{code}{target.escape}")
        position = sequence.end()
    pieces.append(_map_plain(text[position:], mapped, escaped))
    return "".join(pieces)


def _delimiters(encoding: Encoding) -> tuple[str, str, str, str, str]:
    return encoding.field, encoding.component, encoding.repetition, encoding.subcomponent, encoding.escape


def _map_plain(text: str, mapped: dict[str, str], escaped: dict[str, str]) -> str:
    return "".join(mapped.get(char) or escaped.get(char, char) for char in text)
