"""What an ITI-42 registration reads before it writes, in one round trip.

A registration must know which of its entryUUIDs (and the objects its associations reference) are registered,
which registered objects already hold its uniqueIds (with a DocumentEntry's hash and size, to judge a
resubmission), and what the identity feed says of its patient. Asked one by one that is four statements; this is
one ``UNION ALL`` built once: registry objects by entryUUID *or* uniqueId (each side an index lookup), left-joined
to their DocumentEntry row, then at most one row from the identity tables. Rows are told apart by ``source``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, Integer, String, bindparam, cast, literal_column, null, or_, select, union_all
from sqlalchemy.orm import Session

from ...identity.cx import CX
from ...identity.tables import Patient, PatientIdentifier
from .store import StoredEntry, StoredObject
from .tables import ObjectKind, XdsDocumentEntry, XdsObject

__all__ = ["RegistrationLookup", "look_up"]

_OBJECT, _PATIENT = "o", "p"
_CHUNK = 500  # ids of a kind per statement: PostgreSQL and old SQLite builds take that many parameters


def _text() -> object:
    return cast(null(), String)


_OBJECTS = (
    select(literal_column(f"'{_OBJECT}'").label("source"), XdsObject.uuid, XdsObject.kind, XdsObject.lid,
           XdsObject.version, XdsObject.status, XdsObject.patient_key, XdsObject.unique_id, XdsObject.object_type,
           XdsObject.home, XdsDocumentEntry.hash, XdsDocumentEntry.size,
           _text().label("identifier_status"), _text().label("patient_status"))
    .outerjoin(XdsDocumentEntry, XdsDocumentEntry.uuid == XdsObject.uuid)
    .where(or_(XdsObject.uuid.in_(bindparam("uuids", expanding=True)),
               XdsObject.unique_id.in_(bindparam("unique_ids", expanding=True)))))
_PATIENT_STATE = (
    select(literal_column(f"'{_PATIENT}'"), _text(), _text(), _text(), cast(null(), Integer), _text(), _text(),
           _text(), _text(), _text(), _text(), cast(null(), BigInteger), PatientIdentifier.status, Patient.status)
    .join(Patient, Patient.id == PatientIdentifier.patient_id)
    .where(PatientIdentifier.authority_key == bindparam("authority"), PatientIdentifier.value == bindparam("value")))
_WITH_PATIENT = union_all(_OBJECTS, _PATIENT_STATE)


@dataclass
class RegistrationLookup:
    """The answer: registered objects by entryUUID, the holders of the asked uniqueIds, the patient's state."""

    by_uuid: dict[str, StoredObject] = field(default_factory=dict)
    holders: list[StoredObject] = field(default_factory=list)
    entries: list[StoredEntry] = field(default_factory=list)
    """Holders that are DocumentEntries, with hash and size."""
    patient_state: tuple[str, str] | None = None
    """(identifier status, patient status), None when the feed never registered the id (or it was not asked)."""


def look_up(session: Session, uuids: Iterable[str], unique_ids: Iterable[str], patient: CX | None
            ) -> RegistrationLookup:
    """One statement for a submission of ordinary size (ids beyond 500 of a kind take extra statements)."""
    uuids, unique_ids = list(dict.fromkeys(uuids)), list(dict.fromkeys(u for u in unique_ids if u))
    found = RegistrationLookup()
    first = True
    while first or uuids or unique_ids:
        batch_uuids, uuids = uuids[:_CHUNK], uuids[_CHUNK:]
        batch_unique_ids, unique_ids = unique_ids[:_CHUNK], unique_ids[_CHUNK:]
        parameters: dict[str, object] = {"uuids": batch_uuids, "unique_ids": batch_unique_ids}
        statement = _OBJECTS
        if first and patient is not None:
            statement = _WITH_PATIENT
            parameters.update(authority=patient.authority_key, value=patient.id)
        _collect(found, session.execute(statement, parameters), set(batch_uuids), set(batch_unique_ids))
        first = False
    return found


def _collect(found: RegistrationLookup, rows: Iterable, uuids: set[str], unique_ids: set[str]) -> None:
    for row in rows:
        if row.source == _PATIENT:
            found.patient_state = (row.identifier_status, row.patient_status)
            continue
        stored = StoredObject(uuid=row.uuid, kind=row.kind, lid=row.lid, version=row.version, status=row.status,
                              patient_key=row.patient_key, unique_id=row.unique_id, object_type=row.object_type,
                              home=row.home)
        if row.uuid in uuids:
            found.by_uuid[row.uuid] = stored
        if row.unique_id in unique_ids:
            found.holders.append(stored)
            if row.kind == ObjectKind.DOCUMENT_ENTRY:
                found.entries.append(StoredEntry(uuid=row.uuid, unique_id=row.unique_id, status=row.status,
                                                 patient_key=row.patient_key, hash=row.hash, size=row.size))
