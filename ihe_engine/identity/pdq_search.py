"""Patient search for PDQ (ITI-21 over HL7 v2, ITI-47 over HL7 v3), free of any wire format.

Every criterion is an indexed lookup: names through ``patient_name_key`` (compact keys and French Soundex codes,
see :mod:`~ihe_engine.identity.names` for what matches what), birth date through its index (``YYYY``, ``YYYYMM``
or ``YYYYMMDD`` as a range), identifiers through the (authority, value) and value indexes, address, phone and
account number through their key columns. Criteria combine with AND; each becomes ``patient.id IN (...)`` so the
database intersects small id sets rather than scanning patients.

Only active patients are found (merged or linked records never), and each answer lists the patient's *active*
identifiers. Results come ordered by patient id and page by keyset (``after_patient_id``), so a continuation is
just the last id served: stable while the store changes, and cheap at any depth. With ``domains`` (QPD-8), only
identifiers in those domains are returned and a patient with none left is not a match (so it does not count
against ``limit``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import and_, exists, select, text
from sqlalchemy.orm import Session

from .cx import CX
from .names import compact, normalise, query_keys, soundex_fr, stored_keys
from .pid_segment import PatientTraits
from .pix import Authority, Domain, authority_keys
from .tables import IdentifierStatus, Patient, PatientIdentifier, PatientNameKey, PatientStatus

__all__ = ["PatientQuery", "PatientMatch", "IdentifierCriterion", "search_patients", "PatientTraits",
           "QueryRefused"]

_ABOVE_ANY_KEY = "\U0010ffff"  # sorts after every UTF-8 key (bytewise order: SQLite BINARY, PostgreSQL "C")


@dataclass(frozen=True, kw_only=True, slots=True)
class IdentifierCriterion:
    """PID-3 as a criterion: a value, an assigning authority, or both."""

    value: str = ""
    authority: Authority | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PatientQuery:
    family_name: str | None = None
    """Matches the used and the birth name; a trailing ``*`` makes it a prefix."""
    given_name: str | None = None
    birth_name: str | None = None
    birth_date: str | None = None
    """``YYYY``, ``YYYYMM`` or ``YYYYMMDD``."""
    sex: str | None = None
    identifier: CX | None = None
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    phone: str | None = None
    account_number: str | None = None
    mothers_maiden_name: str | None = None
    fuzzy: bool = False
    """Names compare by French Soundex code instead of key."""
    identifiers: tuple[IdentifierCriterion, ...] = ()
    """Further PID-3 criteria (all must hold), e.g. an authority without a value."""

    @property
    def is_empty(self) -> bool:
        """No criterion that narrows anything (a lone ``*`` does not): such a query would list every patient."""
        return not any(_narrows(getattr(self, name)) for name in self.__slots__  # type: ignore[attr-defined]
                       if name != "fuzzy")


def _narrows(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip().strip("*").strip())
    return bool(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class PatientMatch:
    patient_id: int
    identifiers: tuple[CX, ...]
    traits: PatientTraits
    score: float | None = None
    """0..1 name similarity, in fuzzy mode only."""


class QueryRefused(ValueError):
    """A criterion that cannot be used (``field`` names it, e.g. ``birth_date``)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def search_patients(session: Session, query: PatientQuery, *, domains: Sequence[Domain] = (), limit: int,
                    after_patient_id: int | None = None) -> list[PatientMatch]:
    """Up to ``limit`` matches with a patient id above ``after_patient_id``, ordered by patient id."""
    _plan_for_these_values(session)
    statement = select(Patient).where(Patient.status == PatientStatus.ACTIVE)
    conditions = _conditions(session, query)
    if conditions is None:
        return []
    domain_keys: frozenset[str] | None = None
    if domains:
        domain_keys = frozenset().union(*(authority_keys(session, domain) for domain in domains))
        if not domain_keys:
            return []
        conditions.append(Patient.id.in_(_identifier_owners(value="", keys=domain_keys)))
    if after_patient_id is not None:
        conditions.append(Patient.id > after_patient_id)
    patients = list(session.scalars(statement.where(*conditions).order_by(Patient.id).limit(limit)))
    identifiers = _identifiers_of(session, [patient.id for patient in patients], domain_keys)
    return [PatientMatch(patient_id=patient.id, identifiers=tuple(identifiers.get(patient.id, ())),
                         traits=PatientTraits.from_patient(patient),
                         score=_score(query, patient) if query.fuzzy else None)
            for patient in patients if identifiers.get(patient.id)]


def _plan_for_these_values(session: Session) -> None:
    """On PostgreSQL, plan each search for its own values. psycopg prepares a statement run five times, and the
    server then may reuse a generic plan; for names that plan cannot tell MARTIN (thousands) from a rare name, and
    it picked a scan of patients in id order probing each one (1 s per query at 1 M patients instead of 2 ms)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


# -- criteria ----------------------------------------------------------------------------------------------------

def _conditions(session: Session, query: PatientQuery) -> list[Any] | None:
    """SQL conditions for ``query``; None when a criterion can match nothing (an unknown domain)."""
    conditions: list[Any] = []
    names = (("family_name", ("F", "B")), ("birth_name", ("B",)), ("mothers_maiden_name", ("M",)),
             ("given_name", ("G",)))
    for field, kinds in names:
        text = getattr(query, field)
        if text:
            condition = _name_condition(kinds, text, query.fuzzy, checked_per_row=bool(conditions))
            if condition is not None:
                conditions.append(condition)
    if query.birth_date:
        conditions.append(_birth_date_condition(query.birth_date))
    if query.sex:
        conditions.append(Patient.sex == query.sex.strip().upper()[:1])
    keyed = ((query.city, Patient.city_key, normalise), (query.street, Patient.street_key, normalise),
             (query.postal_code, Patient.postal_code_key, compact),
             (query.phone, Patient.phone_key, lambda text: "".join(filter(str.isdigit, text))),
             (query.account_number, Patient.account_number, str.strip), (query.state, Patient.state, str.strip),
             (query.country, Patient.country, lambda text: text.strip().upper()))
    for text, column, key in keyed:
        if text and text.strip("*"):
            conditions.append(_text_condition(column, text, key))
    criteria = list(query.identifiers)
    if query.identifier is not None:
        criteria.insert(0, IdentifierCriterion(value=query.identifier.id, authority=Authority.of(query.identifier)))
    for criterion in criteria:
        condition = _identifier_condition(session, criterion)
        if condition is None:
            return None
        conditions.append(condition)
    return conditions


def _name_condition(kinds: tuple[str, ...], text: str, fuzzy: bool, *, checked_per_row: bool = False) -> Any:
    """``patient.id IN (ids with that name key)``; with ``checked_per_row`` (another name criterion already
    selects the candidates) a correlated EXISTS instead, so a common given name is probed per candidate rather
    than materialised (SQLite builds every IN list in full: 50,000 JEANs for each query)."""
    core = text.strip().rstrip("*")
    if not compact(core):
        return None  # "*" alone matches anything
    if fuzzy:
        codes = {soundex_fr(key) for key in query_keys(core)} - {""}
        match = PatientNameKey.phonetic.in_(codes)
    elif text.strip().endswith("*"):
        prefix = compact(core)
        match = and_(PatientNameKey.key >= prefix, PatientNameKey.key < prefix + _ABOVE_ANY_KEY)
    else:
        match = PatientNameKey.key.in_(query_keys(core))
    kind = PatientNameKey.kind == kinds[0] if len(kinds) == 1 else PatientNameKey.kind.in_(kinds)
    if checked_per_row:
        return exists().where(PatientNameKey.patient_id == Patient.id, kind, match)
    return Patient.id.in_(select(PatientNameKey.patient_id).where(kind, match))


def _birth_date_condition(text: str) -> Any:
    digits = text.strip()[:8]
    if not (digits.isascii() and digits.isdigit()) or len(digits) not in (4, 6, 8):
        raise QueryRefused(f"birth date {text!r} is not YYYY, YYYYMM or YYYYMMDD", field="birth_date")
    if len(digits) == 8:
        return Patient.birth_date == digits
    upper = str(int(digits) + 1).zfill(len(digits))
    return and_(Patient.birth_date >= digits, Patient.birth_date < upper)


def _text_condition(column: Any, text: str, key: Any) -> Any:
    stripped = text.strip()
    value = key(stripped.rstrip("*"))
    if stripped.endswith("*"):
        return and_(column >= value, column < value + _ABOVE_ANY_KEY)
    return column == value


def _identifier_condition(session: Session, criterion: IdentifierCriterion) -> Any:
    keys: frozenset[str] | None = None
    if criterion.authority is not None and not criterion.authority.is_empty:
        keys = authority_keys(session, criterion.authority)
        if not keys:
            return None
    return Patient.id.in_(_identifier_owners(value=criterion.value, keys=keys))


def _identifier_owners(*, value: str, keys: frozenset[str] | None) -> Any:
    query = select(PatientIdentifier.patient_id).where(PatientIdentifier.status == IdentifierStatus.ACTIVE)
    if value:
        query = query.where(PatientIdentifier.value == value)
    if keys is not None:
        query = query.where(PatientIdentifier.authority_key.in_(keys))
    return query


# -- results -----------------------------------------------------------------------------------------------------

def _identifiers_of(session: Session, patient_ids: list[int], domain_keys: frozenset[str] | None
                    ) -> dict[int, list[CX]]:
    if not patient_ids:
        return {}
    query = (select(PatientIdentifier)
             .where(PatientIdentifier.patient_id.in_(patient_ids), PatientIdentifier.status == IdentifierStatus.ACTIVE)
             .order_by(PatientIdentifier.id))
    if domain_keys is not None:
        query = query.where(PatientIdentifier.authority_key.in_(domain_keys))
    found: dict[int, list[CX]] = {}
    for row in session.scalars(query):
        found.setdefault(row.patient_id, []).append(
            CX(id=row.value, namespace_id=row.namespace_id, universal_id=row.universal_id,
               universal_id_type=row.universal_id_type, type_code=row.type_code))
    return found


def _score(query: PatientQuery, patient: Patient) -> float:
    """Mean, over the name criteria given, of the best similarity between the asked name and a stored name key
    (whole compact name or one part of a compound name)."""
    pairs = ((query.family_name, (patient.family_name, patient.birth_name)), (query.birth_name, (patient.birth_name,)),
             (query.given_name, (patient.given_name,)), (query.mothers_maiden_name, (patient.mothers_maiden_name,)))
    scores = []
    for asked, stored in pairs:
        key = compact((asked or "").rstrip("*"))
        if key:
            candidates = {candidate for name in stored for candidate in stored_keys(name)}
            scores.append(max((difflib.SequenceMatcher(None, key, candidate).ratio() for candidate in candidates),
                              default=0.0))
    return round(sum(scores) / len(scores), 2) if scores else 1.0
