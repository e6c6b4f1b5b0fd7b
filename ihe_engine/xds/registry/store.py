"""RegistryStore: the registry tables behind a small repository API, with no XDS business rule in it.

It writes a whole submission with one multi-row INSERT per table (no ORM unit-of-work bookkeeping: the
registration hot path stays a handful of statements), reads objects back by entryUUID, uniqueId or logical id,
follows associations, and changes status or a folder's lastUpdateTime -- keeping the denormalized columns and
the stored LeafClass bytes in step, so a query answers with ``leaf_class`` as it is. It flushes, never commits:
the unit of work decides.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from lxml import etree
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ...ns import RIM, qn
from ...storage.base import utcnow
from .. import constants as c
from ..model import Association, Code, DocumentEntry, Folder, RegistryObject, SubmissionSet, dtm_key
from .tables import (ATTRIBUTE_CONFIDENTIALITY_CODE, ATTRIBUTE_CONTENT_TYPE_CODE, ATTRIBUTE_EVENT_CODE_LIST,
                     ATTRIBUTE_FOLDER_CODE_LIST, TEXT_LENGTH, ObjectKind, XdsAssociation, XdsAuthorPerson, XdsCode,
                     XdsDocumentEntry, XdsFolder, XdsObject, XdsReferenceId, XdsSubmissionSet)

__all__ = ["RegistryStore", "NewObject", "StoredObject", "StoredEntry", "StoredAssociation", "kind_of",
           "leaf_class_bytes", "with_status", "with_slot"]

# Large IN lists are split so PostgreSQL and SQLite (999 variables on old builds) take them.
_IN_CHUNK = 500
_SLOT, _VALUE_LIST, _VALUE = qn(RIM, "Slot"), qn(RIM, "ValueList"), qn(RIM, "Value")


def _parse_own(leaf_class: bytes) -> etree._Element:
    """Parse bytes this store wrote (not peer input); a parser per call, as lxml parsers are not thread-safe."""
    return etree.fromstring(leaf_class, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))


def kind_of(obj: RegistryObject) -> str:
    """The ``xds_object.kind`` of a model object."""
    if isinstance(obj, DocumentEntry):
        return ObjectKind.DOCUMENT_ENTRY
    if isinstance(obj, SubmissionSet):
        return ObjectKind.SUBMISSION_SET
    if isinstance(obj, Folder):
        return ObjectKind.FOLDER
    if isinstance(obj, Association):
        return ObjectKind.ASSOCIATION
    raise TypeError(f"{type(obj).__name__} is not a registry object")


def leaf_class_bytes(element: etree._Element) -> bytes:
    """The stored form of a LeafClass element: UTF-8, no XML declaration, namespaces declared on the root."""
    return etree.tostring(element, encoding="utf-8")


def with_status(leaf_class: bytes, status: str) -> bytes:
    """The stored LeafClass with its status attribute replaced."""
    root = _parse_own(leaf_class)
    root.set("status", status)
    return leaf_class_bytes(root)


def with_slot(leaf_class: bytes, name: str, values: Sequence[str]) -> bytes:
    """The stored LeafClass with slot ``name`` set to ``values`` (added after the last slot when absent)."""
    root = _parse_own(leaf_class)
    slots = list(root.iterchildren(_SLOT))
    slot = next((s for s in slots if s.get("name") == name), None)
    if slot is None:
        slot = etree.Element(_SLOT, name=name)
        root.insert(root.index(slots[-1]) + 1 if slots else 0, slot)
    for child in list(slot):
        slot.remove(child)
    value_list = etree.SubElement(slot, _VALUE_LIST)
    for value in values:
        etree.SubElement(value_list, _VALUE).text = value
    return leaf_class_bytes(root)


@dataclass(frozen=True, kw_only=True)
class NewObject:
    """One object to register: the model object plus what the registry decided about it."""

    obj: RegistryObject
    leaf_class: bytes
    status: str
    patient_key: str | None = None
    lid: str | None = None  # None: the entryUUID
    version: int = 1
    last_update_time: str | None = None  # Folder only: the lastUpdateTime slot value in leaf_class


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredObject:
    uuid: str
    kind: str
    lid: str
    version: int
    status: str
    patient_key: str | None
    unique_id: str | None
    object_type: str | None
    home: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredEntry:
    """What the uniqueId rules compare: a registered DocumentEntry's hash and size."""

    uuid: str
    unique_id: str
    status: str
    patient_key: str
    hash: str | None
    size: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredAssociation:
    uuid: str
    type: str
    source_uuid: str
    target_uuid: str
    status: str
    submission_set_status: str | None
    previous_version: str | None


_OBJECT_COLUMNS = (XdsObject.uuid, XdsObject.kind, XdsObject.lid, XdsObject.version, XdsObject.status,
                   XdsObject.patient_key, XdsObject.unique_id, XdsObject.object_type, XdsObject.home)
_ASSOCIATION_COLUMNS = (XdsAssociation.uuid, XdsAssociation.type, XdsAssociation.source_uuid,
                        XdsAssociation.target_uuid, XdsAssociation.status, XdsAssociation.submission_set_status,
                        XdsAssociation.previous_version)


def _in(column: Any, name: str) -> Any:
    return column.in_(bindparam(name, expanding=True))


# Statements built once: building a SQLAlchemy expression costs more than running it on an indexed key.
_INSERTS = {model: insert(model.__table__) for model in (
    XdsObject, XdsDocumentEntry, XdsSubmissionSet, XdsFolder, XdsAssociation, XdsCode, XdsAuthorPerson,
    XdsReferenceId)}
_FIND = select(*_OBJECT_COLUMNS).where(_in(XdsObject.uuid, "uuids"))
_BY_UNIQUE_IDS = select(*_OBJECT_COLUMNS).where(_in(XdsObject.unique_id, "unique_ids"))
_BY_UNIQUE_IDS_AND_KINDS = _BY_UNIQUE_IDS.where(_in(XdsObject.kind, "kinds"))
_ENTRIES_BY_UNIQUE_IDS = (
    select(XdsObject.uuid, XdsObject.unique_id, XdsObject.status, XdsObject.patient_key, XdsDocumentEntry.hash,
           XdsDocumentEntry.size)
    .join(XdsDocumentEntry, XdsDocumentEntry.uuid == XdsObject.uuid)
    .where(_in(XdsObject.unique_id, "unique_ids"), XdsObject.kind == ObjectKind.DOCUMENT_ENTRY))
_LEAF_CLASSES = select(XdsObject.uuid, XdsObject.leaf_class).where(_in(XdsObject.uuid, "uuids"))


def _can_pipeline(connection: Any) -> bool:
    return connection.dialect.driver == "psycopg" and _libpq_pipelines()


@lru_cache(maxsize=1)
def _libpq_pipelines() -> bool:
    import psycopg

    return bool(psycopg.Pipeline.is_supported())  # libpq 14 or newer


@lru_cache(maxsize=64)
def _pg_insert_sql(model: Any, columns: tuple[str, ...], dialect: Any) -> str:
    """The psycopg text of one table's INSERT for these columns (compiled once per shape)."""
    return _INSERTS[model].compile(dialect=dialect, column_keys=list(columns)).string


def _insert_pipelined(connection: Any, batches: Sequence[tuple[Any, list[dict[str, Any]]]]) -> None:
    """Every table's rows in one pipeline: the statements are sent together and the server answers once, instead
    of one round trip per table. The values need no SQLAlchemy bind processing: strings, integers, bytes and
    aware UTC datetimes are what psycopg adapts natively. Runs inside the unit of work's transaction."""
    dbapi_connection = connection.connection.dbapi_connection
    with dbapi_connection.pipeline(), dbapi_connection.cursor() as cursor:
        for model, values in batches:
            cursor.executemany(_pg_insert_sql(model, tuple(values[0]), connection.dialect), values)


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), _IN_CHUNK):
        yield unique[start:start + _IN_CHUNK]


class RegistryStore:
    """Repository over the unit of work's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- writing ---------------------------------------------------------------------------------------------

    def insert(self, objects: Sequence[NewObject], *, now: datetime | None = None) -> None:
        """Insert objects and their index rows: one INSERT per table, parents first -- on PostgreSQL all of them
        in one round trip (psycopg pipeline mode)."""
        rows = _Rows(now or utcnow())
        for new in objects:
            rows.add(new)
        batches = [(model, values) for model, values in rows.by_table() if values]
        connection = self.session.connection()
        if _can_pipeline(connection):
            _insert_pipelined(connection, batches)
            return
        for model, values in batches:
            self.session.execute(_INSERTS[model], values)

    def set_status(self, uuids: Collection[str], status: str, *, now: datetime | None = None) -> int:
        """Change the status of objects (any kind), their denormalized copies and their LeafClass; returns how
        many objects changed."""
        leaf_classes = self.leaf_classes(uuids)
        if not leaf_classes:
            return 0
        when = now or utcnow()
        self.session.execute(update(XdsObject), [
            {"uuid": uuid, "status": status, "updated_at": when, "leaf_class": with_status(leaf, status)}
            for uuid, leaf in leaf_classes.items()])
        for chunk in _chunks(leaf_classes):
            self.session.execute(update(XdsDocumentEntry).where(XdsDocumentEntry.uuid.in_(chunk))
                                 .values(status=status).execution_options(synchronize_session=False))
            self.session.execute(update(XdsAssociation).where(XdsAssociation.uuid.in_(chunk))
                                 .values(status=status).execution_options(synchronize_session=False))
        return len(leaf_classes)

    def deprecate(self, uuids: Collection[str], *, now: datetime | None = None) -> int:
        return self.set_status(uuids, c.STATUS_DEPRECATED, now=now)

    def touch_folders(self, folder_uuids: Collection[str], last_update_time: str, *,
                      now: datetime | None = None) -> int:
        """Set the lastUpdateTime of folders (column, key and LeafClass slot)."""
        leaf_classes = self.leaf_classes(folder_uuids)
        if not leaf_classes:
            return 0
        when, key = now or utcnow(), dtm_key(last_update_time)
        self.session.execute(update(XdsObject), [
            {"uuid": uuid, "updated_at": when,
             "leaf_class": with_slot(leaf, c.SLOT_LAST_UPDATE_TIME, (last_update_time,))}
            for uuid, leaf in leaf_classes.items()])
        self.session.execute(update(XdsFolder), [
            {"uuid": uuid, "last_update_time": last_update_time, "last_update_time_key": key}
            for uuid in leaf_classes])
        return len(leaf_classes)

    def repoint_patient(self, from_key: str, to_key: str) -> int:
        """Move every object of patient ``from_key`` to ``to_key`` (for a merge policy that rewrites history);
        the LeafClass keeps the patientId as submitted."""
        moved = self.session.execute(update(XdsObject).where(XdsObject.patient_key == from_key)
                                     .values(patient_key=to_key).execution_options(synchronize_session=False))
        self.session.execute(update(XdsDocumentEntry).where(XdsDocumentEntry.patient_key == from_key)
                             .values(patient_key=to_key).execution_options(synchronize_session=False))
        return moved.rowcount or 0

    # -- reading ---------------------------------------------------------------------------------------------

    def get(self, uuid: str) -> StoredObject | None:
        return self.find([uuid]).get(uuid)

    def find(self, uuids: Iterable[str]) -> dict[str, StoredObject]:
        """The registered objects among ``uuids`` (one query per 500 ids), by entryUUID."""
        found: dict[str, StoredObject] = {}
        for chunk in _chunks(uuids):
            for row in self.session.execute(_FIND, {"uuids": chunk}):
                found[row.uuid] = StoredObject(**row._mapping)
        return found

    def by_unique_ids(self, unique_ids: Iterable[str], *, kinds: Collection[str] = ()) -> list[StoredObject]:
        """Objects whose uniqueId is among ``unique_ids`` (optionally only these kinds)."""
        found: list[StoredObject] = []
        query = _BY_UNIQUE_IDS_AND_KINDS if kinds else _BY_UNIQUE_IDS
        for chunk in _chunks(unique_ids):
            parameters = {"unique_ids": chunk, "kinds": list(kinds)} if kinds else {"unique_ids": chunk}
            found.extend(StoredObject(**row._mapping) for row in self.session.execute(query, parameters))
        return found

    def entries_by_unique_ids(self, unique_ids: Iterable[str]) -> list[StoredEntry]:
        """Registered DocumentEntries (any status) with these uniqueIds, with hash and size."""
        found: list[StoredEntry] = []
        for chunk in _chunks(unique_ids):
            rows = self.session.execute(_ENTRIES_BY_UNIQUE_IDS, {"unique_ids": chunk})
            found.extend(StoredEntry(**row._mapping) for row in rows)
        return found

    def by_lid(self, lid: str) -> list[StoredObject]:
        """Every version of a logical object, oldest first."""
        query = select(*_OBJECT_COLUMNS).where(XdsObject.lid == lid).order_by(XdsObject.version)
        return [StoredObject(**row._mapping) for row in self.session.execute(query)]

    def leaf_classes(self, uuids: Iterable[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for chunk in _chunks(uuids):
            rows = self.session.execute(_LEAF_CLASSES, {"uuids": chunk})
            found.update((uuid, bytes(leaf)) for uuid, leaf in rows)
        return found

    def associations(self, *, sources: Iterable[str] | None = None, targets: Iterable[str] | None = None,
                     types: Collection[str] = (), statuses: Collection[str] = ()) -> list[StoredAssociation]:
        """Associations from ``sources`` or to ``targets`` (exactly one of the two), optionally filtered."""
        if (sources is None) == (targets is None):
            raise ValueError("give either sources or targets")
        column = XdsAssociation.source_uuid if sources is not None else XdsAssociation.target_uuid
        found: list[StoredAssociation] = []
        for chunk in _chunks(sources if sources is not None else targets):  # type: ignore[arg-type]
            query = select(*_ASSOCIATION_COLUMNS).where(column.in_(chunk))
            if types:
                query = query.where(XdsAssociation.type.in_(types))
            if statuses:
                query = query.where(XdsAssociation.status.in_(statuses))
            found.extend(StoredAssociation(**row._mapping) for row in self.session.execute(query))
        return found

    def folders_containing(self, entry_uuids: Iterable[str]) -> list[StoredAssociation]:
        """Approved Folder -> entry HasMember associations whose folder is Approved: current memberships."""
        found: list[StoredAssociation] = []
        for chunk in _chunks(entry_uuids):
            query = (select(*_ASSOCIATION_COLUMNS)
                     .join(XdsObject, XdsObject.uuid == XdsAssociation.source_uuid)
                     .where(XdsAssociation.target_uuid.in_(chunk), XdsAssociation.type == c.HAS_MEMBER,
                            XdsAssociation.status == c.STATUS_APPROVED, XdsObject.kind == ObjectKind.FOLDER,
                            XdsObject.status == c.STATUS_APPROVED))
            found.extend(StoredAssociation(**row._mapping) for row in self.session.execute(query))
        return found

    def count(self, kind: str | None = None) -> int:
        """How many objects are registered (of one kind); for tests and diagnostics."""
        query = select(func.count()).select_from(XdsObject)
        if kind is not None:
            query = query.where(XdsObject.kind == kind)
        return self.session.scalar(query) or 0


# =============================================================================================================

class _Rows:
    """The INSERT rows of one batch of new objects, per table."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.tables: dict[Any, list[dict[str, Any]]] = {
            XdsObject: [], XdsDocumentEntry: [], XdsSubmissionSet: [], XdsFolder: [], XdsAssociation: [],
            XdsCode: [], XdsAuthorPerson: [], XdsReferenceId: []}

    def by_table(self) -> list[tuple[Any, list[dict[str, Any]]]]:
        return list(self.tables.items())

    def add(self, new: NewObject) -> None:
        obj = new.obj
        self.tables[XdsObject].append(dict(
            uuid=obj.entry_uuid, kind=kind_of(obj), lid=new.lid or obj.entry_uuid, version=new.version,
            status=new.status, patient_key=new.patient_key, unique_id=getattr(obj, "unique_id", None),
            home=obj.home, object_type=obj.object_type, created_at=self.now, updated_at=self.now,
            leaf_class=new.leaf_class))
        if isinstance(obj, DocumentEntry):
            self._entry(obj, new)
        elif isinstance(obj, SubmissionSet):
            self._submission_set(obj)
        elif isinstance(obj, Folder):
            self._folder(obj, new)
        elif isinstance(obj, Association):
            self._association(obj, new)

    def _entry(self, entry: DocumentEntry, new: NewObject) -> None:
        self.tables[XdsDocumentEntry].append(dict(
            uuid=entry.entry_uuid, patient_key=new.patient_key or "", status=new.status,
            object_type=entry.object_type or c.DE_STABLE,
            **_code_columns("class", entry.class_code), **_code_columns("type", entry.type_code),
            **_code_columns("format", entry.format_code),
            **_code_columns("hcft", entry.healthcare_facility_type_code),
            **_code_columns("practice", entry.practice_setting_code),
            creation_time_key=entry.creation_time_key, service_start_key=entry.service_start_time_key,
            service_stop_key=entry.service_stop_time_key, repository_unique_id=entry.repository_unique_id,
            hash=entry.hash.lower() if entry.hash else None, size=entry.size_int, mime_type=entry.mime_type,
            availability=entry.document_availability, language_code=entry.language_code))
        self._codes(entry.entry_uuid, ATTRIBUTE_CONFIDENTIALITY_CODE, entry.confidentiality_codes)
        self._codes(entry.entry_uuid, ATTRIBUTE_EVENT_CODE_LIST, entry.event_codes)
        self._authors(entry.entry_uuid, entry.authors)
        self.tables[XdsReferenceId].extend(dict(object_uuid=entry.entry_uuid, value=value[:TEXT_LENGTH])
                                           for value in entry.reference_ids if value)

    def _submission_set(self, submission_set: SubmissionSet) -> None:
        code = submission_set.content_type_code
        self.tables[XdsSubmissionSet].append(dict(
            uuid=submission_set.entry_uuid, source_id=submission_set.source_id,
            submission_time_key=submission_set.submission_time_key,
            content_type_code=code.code if code else None, content_type_scheme=code.scheme if code else None))
        self._codes(submission_set.entry_uuid, ATTRIBUTE_CONTENT_TYPE_CODE, (code,) if code else ())
        self._authors(submission_set.entry_uuid, submission_set.authors)

    def _folder(self, folder: Folder, new: NewObject) -> None:
        last_update = new.last_update_time or folder.last_update_time or self.now.strftime("%Y%m%d%H%M%S")
        self.tables[XdsFolder].append(dict(uuid=folder.entry_uuid, last_update_time=last_update,
                                           last_update_time_key=dtm_key(last_update)))
        self._codes(folder.entry_uuid, ATTRIBUTE_FOLDER_CODE_LIST, folder.code_list)

    def _association(self, association: Association, new: NewObject) -> None:
        self.tables[XdsAssociation].append(dict(
            uuid=association.entry_uuid, type=association.association_type, source_uuid=association.source,
            target_uuid=association.target, status=new.status,
            submission_set_status=association.submission_set_status,
            previous_version=association.previous_version, original_status=association.original_status,
            new_status=association.new_status, association_propagation=association.association_propagation))

    def _codes(self, uuid: str, attribute: str, codes: Iterable[Code]) -> None:
        self.tables[XdsCode].extend(dict(object_uuid=uuid, attribute=attribute, code=code.code, scheme=code.scheme)
                                    for code in codes)

    def _authors(self, uuid: str, authors: Iterable) -> None:
        self.tables[XdsAuthorPerson].extend(dict(object_uuid=uuid, value=author.person[:TEXT_LENGTH])
                                            for author in authors if author.person)


def _code_columns(prefix: str, code: Code | None) -> dict[str, str | None]:
    return {f"{prefix}_code": code.code if code else None, f"{prefix}_scheme": code.scheme if code else None}
