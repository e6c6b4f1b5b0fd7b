"""The patient identity store: the one place that decides who a patient identifier designates.

Readers (the XDS registry, PIX and PDQ later) ask :meth:`IdentityStore.resolve` or
:meth:`IdentityStore.is_known_in_domain`: each is one indexed query (the unique (authority, value) index joined
to the patient by primary key), because a merge never leaves a chain to walk -- a merged patient's
``merged_into_id`` always names the active survivor.

Writers are feeds (ITI-8 now, ITI-44 and the vigilance queue later). Refusals are :class:`IdentityRefusal`,
naming the reason and the identifier at fault but nothing of the wire; each feed turns them into its own error
(HL7 ERR, SOAP fault). Merges are conservative: the subsumed record keeps its other identifiers (they resolve to
the survivor but count as subsumed), so nothing -- an INS in particular -- is carried over silently; the
cross-referencing policy of the PIX/PDQ issue decides what moves.
"""

from __future__ import annotations

import enum
import functools
import json
import unicodedata
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, NamedTuple, Sequence

from sqlalchemy import and_, bindparam, false, or_, select, true, union_all, update
from sqlalchemy.orm import Session

from .cx import CX, IdentifierKey
from .names import NAME_KINDS, compact, name_key_rows
from .tables import IdentifierStatus, IdentityEvent, Patient, PatientIdentifier, PatientNameKey, PatientStatus

__all__ = ["IdentityStore", "ResolvedIdentity", "IdentifierState", "Demographics", "FeedEvent", "FeedResult",
           "MergeResult", "IdentityRefusal", "Refusal", "search_key", "FeedLookup", "KnownRows", "identifier_state",
           "NearPatient", "NearIdentifier"]

_LIGATURES = str.maketrans({"Œ": "OE", "œ": "oe", "Æ": "AE", "æ": "ae", "ß": "ss"})


@functools.lru_cache(maxsize=65536)
def search_key(name: str | None) -> str | None:
    """A name as PDQ compares it: uppercase, no accents, punctuation and spaces reduced to single spaces.

    Cached: the near-match search keys the names of every candidate of every new record, and names repeat."""
    if not name:
        return None
    decomposed = unicodedata.normalize("NFKD", name.translate(_LIGATURES))
    letters = "".join(char for char in decomposed if not unicodedata.combining(char)).upper()
    words = "".join(char if char.isalnum() else " " for char in letters).split()
    return " ".join(words) or None


class IdentifierState(enum.StrEnum):
    ACTIVE = "active"
    SUBSUMED = "subsumed"
    """Merged away by an A40, or carried by a patient record that was."""
    INACTIVE = "inactive"
    """Removed by its sender (an HL7 ``""`` id for that authority)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ResolvedIdentity:
    """What an identifier designates now."""

    identifier: CX
    state: IdentifierState
    patient_id: int
    """The surviving patient (the record itself when it was never merged)."""
    record_patient_id: int
    """The patient record the identifier is attached to."""

    @property
    def is_active(self) -> bool:
        return self.state is IdentifierState.ACTIVE


@dataclass(frozen=True, kw_only=True, slots=True)
class Demographics:
    """Traits a feed sends. ``None``: not sent, keep what is stored; ``""``: HL7 null, clear the stored value."""

    family_name: str | None = None
    given_name: str | None = None
    given_names: str | None = None
    birth_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    birthplace: str | None = None
    city: str | None = None
    postal_code: str | None = None
    phone: str | None = None
    identity_reliability: str | None = None
    street: str | None = None
    state: str | None = None
    country: str | None = None
    account_number: str | None = None
    mothers_maiden_name: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedEvent:
    """Where a change came from, recorded in ``identity_event``."""

    kind: str
    sending_application: str = ""
    sending_facility: str = ""
    control_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    raw_message: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedResult:
    patient_id: int
    created: bool
    added: tuple[CX, ...] = ()
    deactivated: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class MergeResult:
    survivor_patient_id: int
    subsumed_patient_id: int


KnownRows = dict[IdentifierKey, tuple[PatientIdentifier, Patient]]
"""Stored identifiers by key, each with the patient record carrying it."""


class NearPatient(NamedTuple):
    """The columns of a near-match candidate the linking policy reads (same names as on :class:`Patient`)."""

    id: int
    birth_name: str | None
    family_name: str | None
    given_name: str | None
    birth_date: str | None
    sex: str | None
    birthplace: str | None


class NearIdentifier(NamedTuple):
    """An active identifier of a near-match candidate."""

    authority_key: str
    value: str


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedLookup:
    """What :meth:`IdentityStore.lookup` found: the known identifiers, and active patients born on the day asked
    (by patient id, with their active identifiers) for the near-match search."""

    known: KnownRows
    near: dict[int, tuple[NearPatient, list[NearIdentifier]]]


class Refusal(enum.StrEnum):
    UNKNOWN = "unknown"
    SUBSUMED = "subsumed"
    INACTIVE = "inactive"
    SAME_IDENTIFIER = "same identifier"
    DIFFERENT_AUTHORITIES = "different authorities"
    DIFFERENT_PATIENTS = "different patients"


class IdentityRefusal(Exception):
    """The store refused a change; nothing was written. ``identifier`` is the one at fault."""

    def __init__(self, message: str, *, reason: Refusal, identifier: CX) -> None:
        super().__init__(message)
        self.reason = reason
        self.identifier = identifier


class IdentityStore:
    """Repository over one SQLAlchemy session (the unit of work's); it flushes but never commits."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- reading ---------------------------------------------------------------------------------------------

    def find_by_identifier(self, cx: CX) -> PatientIdentifier | None:
        """The stored identifier row with this key, whatever its status."""
        return self.session.scalars(_identifier_by_key(cx.key)).one_or_none()

    def resolve(self, cx: CX) -> ResolvedIdentity | None:
        """Whom ``cx`` designates now (following merges), in what state; None when the store never saw it."""
        row = self.session.execute(
            select(PatientIdentifier.patient_id, PatientIdentifier.status, Patient.status, Patient.merged_into_id)
            .join(Patient, Patient.id == PatientIdentifier.patient_id)
            .where(PatientIdentifier.authority_key == cx.authority_key, PatientIdentifier.value == cx.id)
        ).one_or_none()
        if row is None:
            return None
        record_id, identifier_status, patient_status, merged_into = row
        return ResolvedIdentity(identifier=cx, state=_state(identifier_status, patient_status),
                                patient_id=merged_into or record_id, record_patient_id=record_id)

    def is_known_in_domain(self, cx: CX, authority_oid: str) -> bool:
        """True when ``cx`` belongs to the domain ``authority_oid``, is known, active and not subsumed."""
        if cx.universal_id != authority_oid:
            return False
        found = self.session.execute(
            select(PatientIdentifier.id)
            .join(Patient, Patient.id == PatientIdentifier.patient_id)
            .where(PatientIdentifier.authority_key == authority_oid, PatientIdentifier.value == cx.id,
                   PatientIdentifier.status == IdentifierStatus.ACTIVE, Patient.status == PatientStatus.ACTIVE)
        ).first()
        return found is not None

    def patient(self, patient_id: int) -> Patient | None:
        return self.session.get(Patient, patient_id)

    def identifiers_of(self, patient_id: int, *, active_only: bool = True) -> list[CX]:
        """The identifiers attached to one patient record, oldest first."""
        query = select(PatientIdentifier).where(PatientIdentifier.patient_id == patient_id)
        if active_only:
            query = query.where(PatientIdentifier.status == IdentifierStatus.ACTIVE)
        return [_to_cx(row) for row in self.session.scalars(query.order_by(PatientIdentifier.id))]

    def history(self, patient_id: int) -> list[IdentityEvent]:
        """Events of a patient and of the records merged into it, in the order they happened."""
        merged_here = select(Patient.id).where(Patient.merged_into_id == patient_id)
        query = select(IdentityEvent).where(or_(
            IdentityEvent.patient_id == patient_id, IdentityEvent.other_patient_id == patient_id,
            IdentityEvent.patient_id.in_(merged_here)))
        return list(self.session.scalars(query.order_by(IdentityEvent.id)))

    # -- writing ---------------------------------------------------------------------------------------------

    def create_or_update(self, identifiers: Sequence[CX], demographics: Demographics, event: FeedEvent, *,
                         removed_authorities: Iterable[str] = (), known: KnownRows | None = None,
                         link_to: int | None = None) -> FeedResult:
        """Record a patient known by ``identifiers`` (all of them kept), creating it when none is known.

        Refused when one identifier is subsumed or when the identifiers already designate different patients:
        linking two records is the cross-referencing policy's decision, not a side effect of a feed.
        ``removed_authorities``: authority keys in which the patient no longer has an identifier.
        ``known``: the result of :meth:`lookup` for these identifiers, when the caller already has it (saves a
        round trip); ``link_to``: the patient to attach unknown identifiers to (the linking policy's decision).
        """
        if not identifiers:
            raise ValueError("a patient needs at least one identifier")
        if known is None:
            known = self._rows_with_patients([cx.key for cx in identifiers])
        patient = self.the_one_patient(identifiers, known)
        if patient is None and link_to is not None:
            patient = self.session.get(Patient, link_to)
        traits = _trait_values(demographics)
        if patient is None:
            patient_id = self.session.connection().execute(_INSERT_PATIENT, traits).scalar_one()
        else:
            patient_id = patient.id
            for name, value in traits.items():
                setattr(patient, name, value)
        self._refresh_name_keys(patient_id, traits, patient)
        added = self._attach(patient_id, identifiers, known)
        deactivated = self._deactivate(patient_id, set(removed_authorities) - {cx.authority_key for cx in identifiers})
        self._record(event, patient_id, details={"identifiers": [str(cx) for cx in identifiers],
                                                  "created": patient is None, **event.details})
        return FeedResult(patient_id=patient_id, created=patient is None, added=tuple(added),
                          deactivated=deactivated)

    def merge(self, survivor: CX, subsumed: CX, event: FeedEvent) -> MergeResult:
        """Subsume ``subsumed`` into ``survivor`` (same authority, both known and active); not undoable."""
        if survivor.authority_key != subsumed.authority_key:
            raise IdentityRefusal(f"{subsumed} and {survivor} belong to different assigning authorities",
                                  reason=Refusal.DIFFERENT_AUTHORITIES, identifier=subsumed)
        if survivor.key == subsumed.key:
            raise IdentityRefusal(f"{subsumed} cannot be merged into itself", reason=Refusal.SAME_IDENTIFIER,
                                  identifier=subsumed)
        known = self._rows_with_patients([subsumed.key, survivor.key])
        gone, kept = (self._mergeable(cx, known) for cx in (subsumed, survivor))
        gone.status = IdentifierStatus.MERGED
        if gone.patient_id != kept.patient_id:
            self._retire(gone.patient_id, kept.patient_id)
        self.session.flush()
        self._record(event, kept.patient_id, other_patient_id=gone.patient_id,
                     details={"survivor": str(survivor), "subsumed": str(subsumed), **event.details})
        return MergeResult(survivor_patient_id=kept.patient_id, subsumed_patient_id=gone.patient_id)

    def lookup(self, identifiers: Sequence[CX], *, near_birth_date: str | None = None,
               near_initials: Iterable[str] = (), near_sex: str | None = None, near_limit: int = 200) -> FeedLookup:
        """The stored rows of ``identifiers`` and, when asked, the active patients born that day
        whose birth or used name starts with one of ``near_initials`` (the blocking key of the near search) and
        whose sex is unknown or, when ``near_sex`` is given, that one (another sex is never a near match).

        The second half feeds the linking policy's near-match search; it goes through the birth date index and
        the (patient, status) identifier index only, never a scan (a UNION ALL of two indexed selects). It reads
        plain columns, not entities: candidates are many and only compared. One query, unless candidates were
        asked and some identifiers are known: those rows, which the feed updates, are then loaded as entities by a
        second query (a new record, the case candidates are for, has none).
        """
        initials = sorted({initial[:1] for initial in near_initials if initial}) if near_birth_date else []
        parameters: dict[str, Any] = {"near_birth_date": near_birth_date, "near_limit": near_limit,
                                      "near_sex": near_sex}
        for number, cx in enumerate(identifiers):
            parameters[f"authority_{number}"], parameters[f"value_{number}"] = cx.authority_key, cx.id
        for number, initial in enumerate(initials):
            parameters[f"initial_{number}"] = initial
        if not initials:
            rows = self.session.execute(_lookup_statement(len(identifiers)), parameters)
            return FeedLookup(known={IdentifierKey(identifier.authority_key, identifier.value): (identifier, patient)
                                     for identifier, patient in rows}, near={})
        rows = self.session.connection().execute(_near_statement(len(identifiers), len(initials), bool(near_sex)),
                                                 parameters)
        keys = {cx.key for cx in identifiers}
        any_known = False
        near: dict[int, tuple[NearPatient, list[NearIdentifier]]] = {}
        for authority_key, value, identifier_status, patient_status, *columns in rows:
            any_known = any_known or IdentifierKey(authority_key, value) in keys
            candidate = NearPatient._make(columns)
            if candidate.birth_date == near_birth_date and patient_status == PatientStatus.ACTIVE \
                    and identifier_status == IdentifierStatus.ACTIVE:
                near.setdefault(candidate.id, (candidate, []))[1].append(NearIdentifier(authority_key, value))
        known = self._rows_with_patients([cx.key for cx in identifiers]) if any_known else {}
        return FeedLookup(known=known, near=near)

    def record_event(self, event: FeedEvent, patient_id: int, *, other_patient_id: int | None = None,
                     details: dict[str, Any]) -> None:
        """Add one ``identity_event`` row (cross-referencing and vigilance decisions write their history here)."""
        self._record(event, patient_id, other_patient_id=other_patient_id, details=details)

    # -- internals -------------------------------------------------------------------------------------------

    def _refresh_name_keys(self, patient_id: int, traits: dict[str, str | None], patient: Patient | None) -> None:
        """Rewrite the PDQ name keys of a patient whose names were sent (``patient`` None: just created)."""
        if not NAME_KINDS.keys() & traits.keys():
            return
        connection = self.session.connection()
        if patient is None:
            names = traits
        else:
            names = {name: getattr(patient, name) for name in NAME_KINDS}
            connection.execute(_DELETE_NAME_KEYS, {"patient_id": patient_id})
        rows = _name_key_rows(patient_id, names)
        if rows:
            connection.execute(_INSERT_NAME_KEYS, rows)

    def _rows_with_patients(self, keys: list[IdentifierKey]) -> dict[IdentifierKey, tuple[PatientIdentifier, Patient]]:
        """One query: every stored identifier among ``keys`` with its patient record.

        An OR of (authority, value) pairs rather than a row-value IN, which SQLite answers with a table scan.
        """
        rows = self.session.execute(
            select(PatientIdentifier, Patient).join(Patient, Patient.id == PatientIdentifier.patient_id)
            .where(_any_key(keys)))
        return {IdentifierKey(identifier.authority_key, identifier.value): (identifier, patient)
                for identifier, patient in rows}

    def the_one_patient(self, identifiers: Sequence[CX], known: KnownRows) -> Patient | None:
        """The patient the known ones among ``identifiers`` designate; refused if subsumed or several."""
        patients: dict[int, Patient] = {}
        for cx in identifiers:
            if cx.key not in known:
                continue
            identifier, patient = known[cx.key]
            if _state(identifier.status, patient.status) is IdentifierState.SUBSUMED:
                raise IdentityRefusal(f"{cx} was merged into another identifier", reason=Refusal.SUBSUMED,
                                      identifier=cx)
            patients.setdefault(patient.id, patient)
            if len(patients) > 1:
                raise IdentityRefusal(f"{cx} designates another patient than the identifiers before it",
                                      reason=Refusal.DIFFERENT_PATIENTS, identifier=cx)
        return next(iter(patients.values()), None)

    def _attach(self, patient_id: int, identifiers: Sequence[CX],
                known: dict[IdentifierKey, tuple[PatientIdentifier, Patient]]) -> list[CX]:
        """Add new identifiers (one INSERT), revive inactive ones, refresh namespace/type code."""
        added: dict[IdentifierKey, CX] = {}
        for cx in identifiers:
            if cx.key in known:
                _refresh(known[cx.key][0], cx)
            else:
                added.setdefault(cx.key, cx)
        if added:
            self.session.connection().execute(_INSERT_IDENTIFIER, [_identifier_values(patient_id, cx)
                                                                   for cx in added.values()])
        return list(added.values())

    def _deactivate(self, patient_id: int, authority_keys: set[str]) -> int:
        if not authority_keys:
            return 0
        result = self.session.execute(
            update(PatientIdentifier)
            .where(PatientIdentifier.patient_id == patient_id, PatientIdentifier.status == IdentifierStatus.ACTIVE,
                   PatientIdentifier.authority_key.in_(authority_keys))
            .values(status=IdentifierStatus.INACTIVE).execution_options(synchronize_session="fetch"))
        return result.rowcount or 0

    def _mergeable(self, cx: CX, known: dict[IdentifierKey, tuple[PatientIdentifier, Patient]]) -> PatientIdentifier:
        if cx.key not in known:
            raise IdentityRefusal(f"{cx} is not known", reason=Refusal.UNKNOWN, identifier=cx)
        identifier, patient = known[cx.key]
        state = _state(identifier.status, patient.status)
        if state is IdentifierState.SUBSUMED:
            raise IdentityRefusal(f"{cx} was already merged", reason=Refusal.SUBSUMED, identifier=cx)
        if state is IdentifierState.INACTIVE:
            raise IdentityRefusal(f"{cx} is no longer active", reason=Refusal.INACTIVE, identifier=cx)
        return identifier

    def _retire(self, subsumed_patient_id: int, survivor_patient_id: int) -> None:
        """Mark the subsumed record merged and re-point earlier merges into it, so chains never form."""
        self.session.execute(
            update(Patient).where(or_(Patient.id == subsumed_patient_id,
                                      Patient.merged_into_id == subsumed_patient_id))
            .values(status=PatientStatus.MERGED, merged_into_id=survivor_patient_id)
            .execution_options(synchronize_session="fetch"))

    def _record(self, event: FeedEvent, patient_id: int, *, other_patient_id: int | None = None,
                details: dict[str, Any]) -> None:
        self.session.connection().execute(_INSERT_EVENT, dict(
            kind=event.kind, patient_id=patient_id, other_patient_id=other_patient_id,
            sending_application=event.sending_application[:227], sending_facility=event.sending_facility[:227],
            control_id=event.control_id[:199], details=json.dumps(details, ensure_ascii=False, sort_keys=True),
            raw_message=event.raw_message))


# Hot-path writes (every feed message) as Core statements built once, executed on the session's connection: the
# ORM bulk-insert path costs several times more per row, and these rows are never read back as entities here.
_INSERT_PATIENT = Patient.__table__.insert().returning(Patient.__table__.c.id)
_INSERT_IDENTIFIER = PatientIdentifier.__table__.insert()
_INSERT_EVENT = IdentityEvent.__table__.insert()
_INSERT_NAME_KEYS = PatientNameKey.__table__.insert().returning(PatientNameKey.__table__.c.id)
"""With RETURNING (ids unused), SQLAlchemy sends a patient's name keys as one multi-row INSERT ("insertmanyvalues")
where it would otherwise run the driver's executemany: with psycopg that is a statement per row."""
_DELETE_NAME_KEYS = PatientNameKey.__table__.delete().where(
    PatientNameKey.__table__.c.patient_id == bindparam("patient_id"))


@functools.lru_cache(maxsize=64)
def _lookup_statement(key_count: int):  # type: ignore[no-untyped-def]
    """The known-identifier :meth:`IdentityStore.lookup` statement for so many keys, built once (bound
    parameters): building SQLAlchemy constructs per message costs more than running the query."""
    return (select(PatientIdentifier, Patient).join(Patient, Patient.id == PatientIdentifier.patient_id)
            .where(PatientIdentifier.id.in_(_by_key(key_count))).order_by(PatientIdentifier.id))


@functools.lru_cache(maxsize=64)
def _near_statement(key_count: int, initial_count: int, by_sex: bool):  # type: ignore[no-untyped-def]
    """The :meth:`IdentityStore.lookup` statement with near-match candidates: columns only, built once, and of
    table columns (plain Core: run on the connection, it skips the ORM's statement handling)."""
    patient, identifier = Patient.__table__.c, PatientIdentifier.__table__.c
    named = or_(*(column.startswith(bindparam(f"initial_{number}"))  # search keys: no % or _
                  for number in range(initial_count)
                  for column in (patient.birth_name_key, patient.family_name_key)))
    same_sex = or_(patient.sex.is_(None), patient.sex == bindparam("near_sex")) if by_sex else true()
    near = (select(identifier.id).join_from(PatientIdentifier.__table__, Patient.__table__,
                                            patient.id == identifier.patient_id)
            .where(patient.birth_date == bindparam("near_birth_date"), patient.status == PatientStatus.ACTIVE,
                   named, same_sex, identifier.status == IdentifierStatus.ACTIVE)
            .limit(bindparam("near_limit")).subquery())
    wanted = union_all(_by_key(key_count, identifier), select(near.c.id))
    return (select(identifier.authority_key, identifier.value, identifier.status, patient.status,
                   *(patient[name] for name in NearPatient._fields))
            .join_from(PatientIdentifier.__table__, Patient.__table__, patient.id == identifier.patient_id)
            .where(identifier.id.in_(wanted)).order_by(identifier.id))


def _by_key(key_count: int, identifier: Any = PatientIdentifier):  # type: ignore[no-untyped-def]
    """The ids of the identifiers with these (authority, value) keys (``identifier``: the entity or its columns)."""
    return select(identifier.id).where(or_(false(), *(
        and_(identifier.authority_key == bindparam(f"authority_{number}"),
             identifier.value == bindparam(f"value_{number}")) for number in range(key_count))))


def _any_key(keys: Sequence[IdentifierKey]):  # type: ignore[no-untyped-def]
    return or_(false(), *(and_(PatientIdentifier.authority_key == key.authority, PatientIdentifier.value == key.value)
                 for key in keys))


def _identifier_by_key(key: IdentifierKey):  # type: ignore[no-untyped-def]
    return select(PatientIdentifier).where(PatientIdentifier.authority_key == key.authority,
                                           PatientIdentifier.value == key.value)


def _name_key_rows(patient_id: int, names: dict[str, str | None]) -> list[dict[str, object]]:
    """:func:`~ihe_engine.identity.names.name_key_rows`, each name's keys computed once per process: names repeat
    (given names above all; a used name is often the birth name), and keying one (normal form, parts, French
    Soundex) costs more than writing its rows."""
    return [dict(row, patient_id=patient_id) for trait in NAME_KINDS if names.get(trait)
            for row in _keys_of_one_name(trait, names[trait])]


@functools.lru_cache(maxsize=65536)
def _keys_of_one_name(trait: str, name: str) -> tuple[dict[str, object], ...]:
    return tuple(name_key_rows(0, {trait: name}))


def identifier_state(identifier_status: str, patient_status: str) -> IdentifierState:
    """The state of a stored identifier given its own status and its patient record's."""
    return _state(identifier_status, patient_status)


def _state(identifier_status: str, patient_status: str) -> IdentifierState:
    if identifier_status == IdentifierStatus.MERGED or patient_status == PatientStatus.MERGED:
        return IdentifierState.SUBSUMED
    if identifier_status == IdentifierStatus.INACTIVE:
        return IdentifierState.INACTIVE
    return IdentifierState.ACTIVE


_KEYED_NAMES = {"family_name": ("family_name_key", search_key), "birth_name": ("birth_name_key", search_key),
                "city": ("city_key", search_key), "street": ("street_key", search_key),
                "postal_code": ("postal_code_key", lambda value: compact(value) or None),
                "phone": ("phone_key", lambda value: "".join(filter(str.isdigit, value)) or None)}


def _trait_values(demographics: Demographics) -> dict[str, str | None]:
    """Column values for the sent traits (None = keep, so left out; "" = clear), name search keys in step."""
    values: dict[str, str | None] = {}
    for trait in fields(Demographics):
        value = getattr(demographics, trait.name)
        if value is None:
            continue
        values[trait.name] = value or None
        if trait.name in _KEYED_NAMES:
            column, key = _KEYED_NAMES[trait.name]
            values[column] = key(value)
    return values


def _identifier_values(patient_id: int, cx: CX) -> dict[str, Any]:
    return dict(patient_id=patient_id, value=cx.id, authority_key=cx.authority_key, namespace_id=cx.namespace_id,
                universal_id=cx.universal_id, universal_id_type=cx.universal_id_type, type_code=cx.type_code,
                status=IdentifierStatus.ACTIVE)


def _refresh(row: PatientIdentifier, cx: CX) -> None:
    if row.status == IdentifierStatus.INACTIVE:
        row.status = IdentifierStatus.ACTIVE
    for name in ("namespace_id", "type_code"):
        if getattr(cx, name) and getattr(row, name) != getattr(cx, name):
            setattr(row, name, getattr(cx, name))


def _to_cx(row: PatientIdentifier) -> CX:
    return CX(id=row.value, namespace_id=row.namespace_id, universal_id=row.universal_id,
              universal_id_type=row.universal_id_type, type_code=row.type_code)
