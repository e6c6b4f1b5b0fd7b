"""Stored queries on the registry tables: SQLAlchemy Core, indexed lookups, at most one fetch of LeafClass bytes.

Each query first finds *hits* -- (entryUUID, kind, patient_key) -- from the narrow index tables
(:mod:`ihe_engine.xds.registry.tables`), then the common tail checks the answer size (XDSTooManyResults) and,
for LeafClass Get* queries, that every object belongs to one patient (XDSResultNotSinglePatient), and only then
reads ``leaf_class`` bytes, in one ``IN`` query per thousand objects. ObjectRef answers never read them.

Patients follow merges: an asked id is resolved through :class:`~ihe_engine.identity.store.IdentityStore`; a
subsumed id finds nothing, a surviving id finds what was registered under every id merged into it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree
from sqlalchemy import String, and_, bindparam, cast, exists, func, literal_column, null, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from ...identity.cx import CX, CXError
from ...identity.store import IdentityStore
from ...identity.tables import IdentifierStatus, Patient, PatientIdentifier, PatientStatus
from ..constants import AVAILABILITY_ONLINE, HAS_MEMBER
from ..ebrim import to_object_ref
from ..errors import XdsError, XDS_REGISTRY_ERROR, XDS_RESULT_NOT_SINGLE_PATIENT, XDS_TOO_MANY_RESULTS
from ..model import Code
from ..registry.tables import (ATTRIBUTE_CONFIDENTIALITY_CODE, ATTRIBUTE_EVENT_CODE_LIST, ATTRIBUTE_FOLDER_CODE_LIST,
                               ObjectKind, XdsAssociation, XdsAuthorPerson, XdsCode, XdsDocumentEntry, XdsFolder,
                               XdsObject, XdsReferenceId, XdsSubmissionSet)
from .params import StoredQueryRequest

__all__ = ["QueryResult", "Hit", "run_stored_query", "DEFAULT_MAX_RESULTS", "patient_keys", "asked_patients"]

DEFAULT_MAX_RESULTS = 10_000
"""Objects one answer may hold before the registry answers XDSTooManyResults instead."""

_FETCH_CHUNK = 1000
_OUTPUT_ORDER = {ObjectKind.SUBMISSION_SET: 0, ObjectKind.FOLDER: 1, ObjectKind.DOCUMENT_ENTRY: 2,
                 ObjectKind.ASSOCIATION: 3}
_PATIENT_PARAMS = ("$XDSDocumentEntryPatientId", "$XDSSubmissionSetPatientId", "$XDSFolderPatientId",
                   "$patientId")
_LEAF_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


@dataclass(frozen=True)
class Hit:
    """An object a query selected, before its LeafClass is read (associations have no patient)."""

    uuid: str
    kind: str
    patient_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class QueryResult:
    """An answer: rim elements in RegistryObjectList order, and the patients the request named (for audit)."""

    objects: tuple[etree._Element, ...]
    patient_ids: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.objects)


@dataclass
class _Context:
    request: StoredQueryRequest
    session: Session
    max_results: int

    def param(self, name: str, default: object = None):  # type: ignore[no-untyped-def]
        return self.request.params.get(name, default)


def run_stored_query(request: StoredQueryRequest, uow: Any, *, max_results: int = DEFAULT_MAX_RESULTS,
                     home_community_id: str | None = None) -> QueryResult:
    """Answer a parsed stored query from the registry tables (read-only: nothing is written).

    Raises :class:`XdsError` with XDSTooManyResults, XDSResultNotSinglePatient or XDSRegistryError; an unknown
    patient is simply an empty answer.
    """
    context = _Context(request=request, session=uow.session, max_results=max_results)
    hits = _dedupe(_QUERIES[request.definition.name](context))
    if len(hits) > max_results:
        raise XdsError(XDS_TOO_MANY_RESULTS, f"{request.definition.name} matches more than {max_results} objects; "
                                             "narrow the query", location=request.query_id)
    patients = asked_patients(request)
    if not request.leaf_class:
        return QueryResult(objects=tuple(to_object_ref(hit.uuid, home_community_id) for hit in hits),
                           patient_ids=patients)
    if request.definition.name.startswith("Get") and request.definition.name != "GetAll":
        _check_single_patient(context.session, hits, request)
    return QueryResult(objects=_leaf_classes(context.session, hits, home_community_id), patient_ids=patients)


def asked_patients(request: StoredQueryRequest) -> tuple[str, ...]:
    """The patient ids a request names (audit records them as participant objects)."""
    values: list[str] = []
    for name in _PATIENT_PARAMS:
        value = request.params.get(name)
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, tuple):
            values.extend(value)
    return tuple(values)


def _dedupe(hits: Iterable[Hit]) -> list[Hit]:
    unique = {hit.uuid: hit for hit in hits}
    return sorted(unique.values(), key=lambda hit: _OUTPUT_ORDER.get(hit.kind, 9))


# ---------------------------------------------------------------------------------------------- patients

def patient_keys(session: Session, text: str) -> tuple[str, ...]:
    """The registry patient keys an asked patient id stands for, following merges; () for a subsumed id.

    An id the identity store never saw is looked up as written (empty answer when nothing was registered).
    One statement (:data:`_PATIENT_KEYS`) answers both "whom does it designate" and "which ids of the domain does
    that patient carry, with the records merged into it".
    """
    try:
        cx = CX.from_xds(text.strip())
    except CXError as exc:
        raise XdsError(XDS_REGISTRY_ERROR, f"{text!r} is not a patient id in the form id^^^&OID&ISO: {exc}",
                       location=text) from None
    rows = session.execute(_PATIENT_KEYS, {"authority": cx.authority_key, "value": cx.id}).all()
    asked = next((row for row in rows if row.part == _ASKED), None)
    if asked is None:
        return (cx.to_xds(),)
    if asked.status in _NOT_ACTIVE or asked.patient_status == PatientStatus.MERGED:
        return ()
    authority = cx.universal_id
    return tuple(sorted({f"{row.value}^^^&{authority}&ISO" for row in rows if row.part == _CARRIED
                         and row.authority_key == authority and row.status != IdentifierStatus.INACTIVE})) \
        or (cx.to_xds(),)


def _patient_keys_statement():  # type: ignore[no-untyped-def]
    """``UNION ALL`` of: the asked identifier (its status, its patient's), then every identifier of the surviving
    patient and of the records merged into it (one level, as A40 merges leave them).

    The survivor is a scalar subquery on the (authority_key, value) unique key, evaluated once. The carried ids
    are found by patient (the merged_into_id and patient_id indexes) and their authority is filtered by the
    caller, not in SQL, where a planner without statistics could pick the authority index and read every id of
    the domain.
    """
    identifier, record = PatientIdentifier, Patient
    asked_where = (identifier.authority_key == bindparam("authority"), identifier.value == bindparam("value"))
    survivor = (select(func.coalesce(record.merged_into_id, record.id))
                .join(identifier, identifier.patient_id == record.id).where(*asked_where).scalar_subquery())
    merged = aliased(Patient)
    return union_all(
        select(literal_column(f"'{_ASKED}'").label("part"), identifier.value, identifier.authority_key,
               identifier.status, record.status.label("patient_status"))
        .join(record, record.id == identifier.patient_id).where(*asked_where),
        select(literal_column(f"'{_CARRIED}'"), identifier.value, identifier.authority_key, identifier.status,
               cast(null(), String)).where(identifier.patient_id == survivor),
        select(literal_column(f"'{_CARRIED}'"), identifier.value, identifier.authority_key, identifier.status,
               cast(null(), String)).join(merged, merged.id == identifier.patient_id)
        .where(merged.merged_into_id == survivor))


_ASKED, _CARRIED = "a", "c"
_NOT_ACTIVE = frozenset({IdentifierStatus.MERGED, IdentifierStatus.INACTIVE})
_PATIENT_KEYS = _patient_keys_statement()


def _keys_for(context: _Context, name: str) -> tuple[str, ...] | None:
    """Patient keys of a patient parameter (single or ITI-51 list); None when the parameter is absent."""
    value = context.param(name)
    if value is None:
        return None
    texts = (value,) if isinstance(value, str) else value
    return tuple(key for text in texts for key in patient_keys(context.session, text))


def _check_single_patient(session: Session, hits: Sequence[Hit], request: StoredQueryRequest) -> None:
    keys = {hit.patient_key for hit in hits if hit.patient_key}
    if len(keys) <= 1 or len({_person(session, key) for key in keys}) <= 1:
        return
    raise XdsError(XDS_RESULT_NOT_SINGLE_PATIENT,
                   f"{request.definition.name} would return objects of {len(keys)} patients "
                   f"({', '.join(sorted(keys))}); ask for ObjectRef or query each patient",
                   location=request.query_id)


def _person(session: Session, key: str) -> object:
    """The surviving patient a registry key designates (merged ids count as one person); the key if unknown."""
    try:
        resolved = IdentityStore(session).resolve(CX.from_xds(key))
    except CXError:
        return key
    return resolved.patient_id if resolved is not None else key


# ---------------------------------------------------------------------------------------------- LeafClass

def _leaf_classes(session: Session, hits: Sequence[Hit], home: str | None) -> tuple[etree._Element, ...]:
    stored: dict[str, bytes] = {}
    uuids = [hit.uuid for hit in hits]
    for start in range(0, len(uuids), _FETCH_CHUNK):
        rows = session.execute(_LEAF_CLASS_ROWS, {"uuids": uuids[start:start + _FETCH_CHUNK]})
        stored.update((uuid, bytes(leaf)) for uuid, leaf in rows)
    elements = _parse_together([stored[uuid] for uuid in uuids])
    if home:
        for element in elements:
            if element.get("home") is None:
                element.set("home", home)
    return tuple(elements)


_LEAF_CLASS_ROWS = select(XdsObject.uuid, XdsObject.leaf_class).where(
    XdsObject.uuid.in_(bindparam("uuids", expanding=True)))


def _parse_together(leaf_classes: Sequence[bytes]) -> list[etree._Element]:
    """Parse stored LeafClass bytes in one parser call (a quarter cheaper than one call each); each declares its
    namespaces on its root, so they can be concatenated. The bytes are the registry's own, not peer input."""
    if not leaf_classes:
        return []
    wrapper = etree.fromstring(b"<stored>" + b"".join(leaf_classes) + b"</stored>", _LEAF_PARSER)
    return list(wrapper)


# ---------------------------------------------------------------------------------------------- filters

def _code_pairs(code_column, scheme_column, group: Sequence[Code]):  # type: ignore[no-untyped-def]
    return or_(*(and_(code_column == code.code, scheme_column == code.scheme) for code in group))


def _single_code_filter(code_column, scheme_column, groups) -> list:  # type: ignore[no-untyped-def]
    """A single-valued code column matches any code of the (only) group."""
    return [_code_pairs(code_column, scheme_column, group) for group in groups or ()]


def _multi_code_filter(uuid_column, attribute: str, groups) -> list:  # type: ignore[no-untyped-def]
    """Each group (one Slot) must be matched by one of the object's codes of ``attribute``: AND of ORs."""
    return [exists().where(XdsCode.object_uuid == uuid_column, XdsCode.attribute == attribute,
                           _code_pairs(XdsCode.code, XdsCode.scheme, group))
            for group in groups or ()]


def _range(column, low: str | None, high: str | None) -> list:  # type: ignore[no-untyped-def]
    """``From <= value < To``; a NULL value (no service time) never matches a bound."""
    conditions = []
    if low is not None:
        conditions.append(column >= low)
    if high is not None:
        conditions.append(column < high)
    return conditions


def _authors(uuid_column, patterns) -> list:  # type: ignore[no-untyped-def]
    """authorPerson LIKE any pattern (IHE wildcards % and _ are SQL's), case-insensitively on every database."""
    if not patterns:
        return []
    if isinstance(patterns, str):
        patterns = (patterns,)
    return [exists().where(XdsAuthorPerson.object_uuid == uuid_column,
                           or_(*(XdsAuthorPerson.value.ilike(pattern) for pattern in patterns)))]


def _in(column, values) -> list:  # type: ignore[no-untyped-def]
    return [_one_of(column, values)] if values is not None else []


def _one_of(column, values):  # type: ignore[no-untyped-def]
    """``column IN (values)`` as one expanding parameter: cheaper to build than a parameter per value, and one
    cached compiled form whatever the number of values."""
    return column.in_(bindparam(None, list(values), expanding=True, type_=column.type))


def _availability(column, values) -> list:  # type: ignore[no-untyped-def]
    if values is None:
        return []
    if AVAILABILITY_ONLINE in values:
        return [or_(column.in_(values), column.is_(None))]
    return [column.in_(values)]


def _document_filters(context: _Context) -> list:
    """Every FindDocuments filter that is not the patient, on xds_document_entry."""
    de, param = XdsDocumentEntry, context.param
    return [
        *_in(de.status, param("$XDSDocumentEntryStatus")),
        *_in(de.object_type, param("$XDSDocumentEntryType")),
        *_single_code_filter(de.class_code, de.class_scheme, param("$XDSDocumentEntryClassCode")),
        *_single_code_filter(de.type_code, de.type_scheme, param("$XDSDocumentEntryTypeCode")),
        *_single_code_filter(de.practice_code, de.practice_scheme, param("$XDSDocumentEntryPracticeSettingCode")),
        *_single_code_filter(de.hcft_code, de.hcft_scheme, param("$XDSDocumentEntryHealthcareFacilityTypeCode")),
        *_single_code_filter(de.format_code, de.format_scheme, param("$XDSDocumentEntryFormatCode")),
        *_multi_code_filter(de.uuid, ATTRIBUTE_EVENT_CODE_LIST, param("$XDSDocumentEntryEventCodeList")),
        *_multi_code_filter(de.uuid, ATTRIBUTE_CONFIDENTIALITY_CODE, param("$XDSDocumentEntryConfidentialityCode")),
        *_range(de.creation_time_key, param("$XDSDocumentEntryCreationTimeFrom"),
                param("$XDSDocumentEntryCreationTimeTo")),
        *_range(de.service_start_key, param("$XDSDocumentEntryServiceStartTimeFrom"),
                param("$XDSDocumentEntryServiceStartTimeTo")),
        *_range(de.service_stop_key, param("$XDSDocumentEntryServiceStopTimeFrom"),
                param("$XDSDocumentEntryServiceStopTimeTo")),
        *_authors(de.uuid, param("$XDSDocumentEntryAuthorPerson")),
        *_availability(de.availability, param("$XDSDocumentEntryDocumentAvailability")),
    ]


def _association_filters(context: _Context) -> list:
    """$XDSAssociationStatus (Approved unless the request says otherwise)."""
    return _in(XdsAssociation.status, context.param("$XDSAssociationStatus"))


def _hits(session: Session, statement, kind: str | None = None) -> list[Hit]:  # type: ignore[no-untyped-def]
    """Rows (uuid, kind, patient_key) -> hits; ``kind`` fixes the kind when the statement has no such column."""
    rows = session.execute(statement).all()
    if kind is not None:
        return [Hit(row[0], kind, row[1]) for row in rows]
    return [Hit(*row) for row in rows]


# ---------------------------------------------------------------------------------------------- Find*

def _find_documents(context: _Context, patients: tuple[str, ...] | None) -> list[Hit]:
    de = XdsDocumentEntry
    conditions = _document_filters(context)
    if patients is not None:
        if not patients:
            return []
        conditions.append(_one_of(de.patient_key, patients))
    reference_ids = context.param("$XDSDocumentEntryReferenceIdList")
    if reference_ids is not None:
        conditions.append(exists().where(XdsReferenceId.object_uuid == de.uuid,
                                         XdsReferenceId.value.in_(reference_ids)))
    statement = select(de.uuid, de.patient_key).where(*conditions).limit(context.max_results + 1)
    return _hits(context.session, statement, ObjectKind.DOCUMENT_ENTRY)


def find_documents(context: _Context) -> list[Hit]:
    """FindDocuments, FindDocumentsByReferenceId and (patients optional, several) FindDocumentsForMultiplePatients."""
    return _find_documents(context, _keys_for(context, "$XDSDocumentEntryPatientId"))


def find_submission_sets(context: _Context) -> list[Hit]:
    patients = _keys_for(context, "$XDSSubmissionSetPatientId")
    if not patients:
        return []
    obj, ss, param = XdsObject, XdsSubmissionSet, context.param
    statement = (
        select(obj.uuid, obj.patient_key).join(ss, ss.uuid == obj.uuid)
        .where(obj.patient_key.in_(patients), obj.kind == ObjectKind.SUBMISSION_SET,
               *_in(obj.status, param("$XDSSubmissionSetStatus")),
               *_in(ss.source_id, param("$XDSSubmissionSetSourceId")),
               *_range(ss.submission_time_key, param("$XDSSubmissionSetSubmissionTimeFrom"),
                       param("$XDSSubmissionSetSubmissionTimeTo")),
               *_single_code_filter(ss.content_type_code, ss.content_type_scheme,
                                    param("$XDSSubmissionSetContentType")),
               *_authors(obj.uuid, param("$XDSSubmissionSetAuthorPerson")))
        .limit(context.max_results + 1))
    return _hits(context.session, statement, ObjectKind.SUBMISSION_SET)


def _find_folders(context: _Context, patients: tuple[str, ...] | None) -> list[Hit]:
    obj, folder, param = XdsObject, XdsFolder, context.param
    conditions = [obj.kind == ObjectKind.FOLDER, *_in(obj.status, param("$XDSFolderStatus")),
                  *_range(folder.last_update_time_key, param("$XDSFolderLastUpdateTimeFrom"),
                          param("$XDSFolderLastUpdateTimeTo")),
                  *_multi_code_filter(obj.uuid, ATTRIBUTE_FOLDER_CODE_LIST, param("$XDSFolderCodeList"))]
    if patients is not None:
        if not patients:
            return []
        conditions.append(obj.patient_key.in_(patients))
    statement = (select(obj.uuid, obj.patient_key).join(folder, folder.uuid == obj.uuid).where(*conditions)
                 .limit(context.max_results + 1))
    return _hits(context.session, statement, ObjectKind.FOLDER)


def find_folders(context: _Context) -> list[Hit]:
    """FindFolders and (patients optional, several) FindFoldersForMultiplePatients."""
    return _find_folders(context, _keys_for(context, "$XDSFolderPatientId"))


# ---------------------------------------------------------------------------------------------- lookups

def _objects(context: _Context, kind: str, *conditions) -> list[Hit]:  # type: ignore[no-untyped-def]
    statement = select(XdsObject.uuid, XdsObject.kind, XdsObject.patient_key).where(XdsObject.kind == kind,
                                                                                     *conditions)
    return _hits(context.session, statement)


def _by_ids(context: _Context, kind: str, uuid_param: str, unique_id_param: str,
            logical_id_param: str | None = None) -> list[Hit]:
    """Objects of ``kind`` named by whichever of entryUUID / uniqueId / logical id the request gave."""
    for name, column in ((uuid_param, XdsObject.uuid), (unique_id_param, XdsObject.unique_id),
                         (logical_id_param, XdsObject.lid)):
        value = context.param(name) if name else None
        if value is not None:
            values = (value,) if isinstance(value, str) else value
            versions = (_latest_version_only(),) if column is XdsObject.unique_id and _level_1(context) else ()
            return _objects(context, kind, column.in_(values), *versions)
    return []


def _level_1(context: _Context) -> bool:
    """$MetadataLevel 1 (or absent): a consumer that knows nothing of versions (Metadata Update supplement)."""
    return context.param("$MetadataLevel") in (None, 1)


def _latest_version_only():  # type: ignore[no-untyped-def]
    """Versions share their uniqueId: a level-1 consumer asking by uniqueId gets only the newest one."""
    other = aliased(XdsObject)
    newest = select(func.max(other.version)).where(other.lid == XdsObject.lid).scalar_subquery()
    return XdsObject.version == newest


def _filter_documents(context: _Context, uuids: Iterable[str]) -> list[Hit]:
    """Those of the DocumentEntries ``uuids`` that pass the content filters (format, confidentiality, type)."""
    uuids = list(uuids)
    if not uuids:
        return []
    de, param = XdsDocumentEntry, context.param
    statement = select(de.uuid, de.patient_key).where(
        de.uuid.in_(uuids), *_in(de.object_type, param("$XDSDocumentEntryType")),
        *_single_code_filter(de.format_code, de.format_scheme, param("$XDSDocumentEntryFormatCode")),
        *_multi_code_filter(de.uuid, ATTRIBUTE_CONFIDENTIALITY_CODE, param("$XDSDocumentEntryConfidentialityCode")))
    return _hits(context.session, statement, ObjectKind.DOCUMENT_ENTRY)


def _associations(context: _Context, *conditions) -> list:  # type: ignore[no-untyped-def]
    """Association rows (uuid, type, source, target) passing the status / metadata-level filters."""
    statement = select(XdsAssociation.uuid, XdsAssociation.type, XdsAssociation.source_uuid,
                       XdsAssociation.target_uuid).where(*conditions, *_association_filters(context))
    return context.session.execute(statement).all()


def _touching(context: _Context, uuids: Sequence[str]) -> list:  # type: ignore[no-untyped-def]
    """Associations whose source or target is one of ``uuids``: two index lookups rather than an OR scan."""
    if not uuids:
        return []
    rows = {row.uuid: row for row in _associations(context, XdsAssociation.source_uuid.in_(uuids))}
    rows.update((row.uuid, row) for row in _associations(context, XdsAssociation.target_uuid.in_(uuids)))
    return list(rows.values())


def _association_hits(rows: Iterable) -> list[Hit]:  # type: ignore[no-untyped-def]
    return [Hit(row.uuid, ObjectKind.ASSOCIATION) for row in rows]


def _kinds(context: _Context, uuids: Iterable[str]) -> dict[str, Hit]:
    uuids = list(uuids)
    if not uuids:
        return {}
    rows = context.session.execute(select(XdsObject.uuid, XdsObject.kind, XdsObject.patient_key)
                                   .where(XdsObject.uuid.in_(uuids))).all()
    return {row[0]: Hit(*row) for row in rows}


# ---------------------------------------------------------------------------------------------- Get*

def get_documents(context: _Context) -> list[Hit]:
    return _by_ids(context, ObjectKind.DOCUMENT_ENTRY, "$XDSDocumentEntryEntryUUID", "$XDSDocumentEntryUniqueId",
                   "$XDSDocumentEntryLogicalID")


def get_folders(context: _Context) -> list[Hit]:
    return _by_ids(context, ObjectKind.FOLDER, "$XDSFolderEntryUUID", "$XDSFolderUniqueId", "$XDSFolderLogicalID")


def get_associations(context: _Context) -> list[Hit]:
    return _association_hits(_touching(context, context.param("$uuid")))


def get_documents_and_associations(context: _Context) -> list[Hit]:
    documents = _by_ids(context, ObjectKind.DOCUMENT_ENTRY, "$XDSDocumentEntryEntryUUID",
                        "$XDSDocumentEntryUniqueId")
    return documents + _association_hits(_touching(context, [hit.uuid for hit in documents]))


def get_submission_sets(context: _Context) -> list[Hit]:
    """SubmissionSets holding (HasMember) any of the objects $uuid, with those memberships."""
    memberships = _associations(context, XdsAssociation.target_uuid.in_(context.param("$uuid")),
                                XdsAssociation.type == HAS_MEMBER)
    sets = {hit.uuid: hit for hit in _objects(context, ObjectKind.SUBMISSION_SET, XdsObject.uuid.in_(
        {row.source_uuid for row in memberships}))} if memberships else {}
    return [*sets.values(), *_association_hits(row for row in memberships if row.source_uuid in sets)]


def get_submission_set_and_contents(context: _Context) -> list[Hit]:
    sets = _by_ids(context, ObjectKind.SUBMISSION_SET, "$XDSSubmissionSetEntryUUID", "$XDSSubmissionSetUniqueId")
    if not sets:
        return []
    return sets + _package_contents(context, [hit.uuid for hit in sets], with_folders=True)


def get_folder_and_contents(context: _Context) -> list[Hit]:
    folders = _by_ids(context, ObjectKind.FOLDER, "$XDSFolderEntryUUID", "$XDSFolderUniqueId")
    if not folders:
        return []
    return folders + _package_contents(context, [hit.uuid for hit in folders], with_folders=False)


def _package_contents(context: _Context, packages: list[str], *, with_folders: bool) -> list[Hit]:
    """Members of a SubmissionSet / Folder: filtered DocumentEntries, (Folders, folder memberships) and the
    HasMember associations leading to what is returned."""
    memberships = _associations(context, XdsAssociation.source_uuid.in_(packages), XdsAssociation.type == HAS_MEMBER)
    members = _kinds(context, (row.target_uuid for row in memberships))
    documents = _filter_documents(context, (uuid for uuid, hit in members.items()
                                            if hit.kind == ObjectKind.DOCUMENT_ENTRY))
    returned = {hit.uuid: hit for hit in documents}
    if with_folders:
        returned.update((uuid, hit) for uuid, hit in members.items() if hit.kind == ObjectKind.FOLDER)
        member_links = [row for row in _associations(context, XdsAssociation.uuid.in_(
            [uuid for uuid, hit in members.items() if hit.kind == ObjectKind.ASSOCIATION]))
            if row.source_uuid in returned and row.target_uuid in returned]
        returned.update((row.uuid, Hit(row.uuid, ObjectKind.ASSOCIATION)) for row in member_links)
    kept = [row for row in memberships if row.target_uuid in returned]
    return [*returned.values(), *_association_hits(kept)]


def get_folders_for_document(context: _Context) -> list[Hit]:
    documents = _by_ids(context, ObjectKind.DOCUMENT_ENTRY, "$XDSDocumentEntryEntryUUID",
                        "$XDSDocumentEntryUniqueId")
    if not documents:
        return []
    memberships = _associations(context, XdsAssociation.target_uuid.in_([hit.uuid for hit in documents]),
                                XdsAssociation.type == HAS_MEMBER)
    sources = {row.source_uuid for row in memberships}
    return _objects(context, ObjectKind.FOLDER, XdsObject.uuid.in_(sources)) if sources else []


def get_related_documents(context: _Context) -> list[Hit]:
    """The entry, the DocumentEntries linked to it by $AssociationTypes, and those links; nothing if none."""
    originals = _by_ids(context, ObjectKind.DOCUMENT_ENTRY, "$XDSDocumentEntryEntryUUID",
                        "$XDSDocumentEntryUniqueId")
    if not originals:
        return []
    ids = [hit.uuid for hit in originals]
    types = context.param("$AssociationTypes")
    links = [row for row in _touching(context, ids) if row.type in types]
    others = {row.target_uuid if row.source_uuid in ids else row.source_uuid for row in links}
    related = {hit.uuid: hit for hit in _filter_documents(context, others - set(ids))}
    kept = [row for row in links if row.source_uuid in related or row.target_uuid in related]
    if not kept:
        return []
    return [*originals, *related.values(), *_association_hits(kept)]


def get_all(context: _Context) -> list[Hit]:
    """Every DocumentEntry, SubmissionSet and Folder of the patient (with the status filters) and the
    associations among them, including SubmissionSet memberships of folder-membership associations."""
    patients = _keys_for(context, "$patientId")
    if not patients:
        return []
    de, obj, param = XdsDocumentEntry, XdsObject, context.param
    documents = _hits(context.session, select(de.uuid, de.patient_key).where(
        de.patient_key.in_(patients), *_in(de.status, param("$XDSDocumentEntryStatus")),
        *_in(de.object_type, param("$XDSDocumentEntryType")),
        *_single_code_filter(de.format_code, de.format_scheme, param("$XDSDocumentEntryFormatCode")),
        *_multi_code_filter(de.uuid, ATTRIBUTE_CONFIDENTIALITY_CODE, param("$XDSDocumentEntryConfidentialityCode"))),
        ObjectKind.DOCUMENT_ENTRY)
    packages = [hit for kind, status in ((ObjectKind.SUBMISSION_SET, "$XDSSubmissionSetStatus"),
                                         (ObjectKind.FOLDER, "$XDSFolderStatus"))
                for hit in _objects(context, kind, obj.patient_key.in_(patients), obj.status.in_(param(status)))]
    returned = {hit.uuid: hit for hit in (*documents, *packages)}
    candidates = _associations(context, XdsAssociation.source_uuid.in_(
        select(obj.uuid).where(obj.patient_key.in_(patients), obj.kind != ObjectKind.ASSOCIATION)))
    direct = [row for row in candidates if row.source_uuid in returned and row.target_uuid in returned]
    direct_ids = {row.uuid for row in direct}
    nested = [row for row in candidates if row.source_uuid in returned and row.target_uuid in direct_ids]
    return [*returned.values(), *_association_hits(direct + nested)]


_QUERIES: Mapping[str, Callable[[_Context], list[Hit]]] = {
    "FindDocuments": find_documents,
    "FindDocumentsByReferenceId": find_documents,
    "FindSubmissionSets": find_submission_sets,
    "FindFolders": find_folders,
    "GetAll": get_all,
    "GetDocuments": get_documents,
    "GetFolders": get_folders,
    "GetAssociations": get_associations,
    "GetDocumentsAndAssociations": get_documents_and_associations,
    "GetSubmissionSets": get_submission_sets,
    "GetSubmissionSetAndContents": get_submission_set_and_contents,
    "GetFolderAndContents": get_folder_and_contents,
    "GetFoldersForDocument": get_folders_for_document,
    "GetRelatedDocuments": get_related_documents,
    "FindDocumentsForMultiplePatients": find_documents,
    "FindFoldersForMultiplePatients": find_folders,
}
