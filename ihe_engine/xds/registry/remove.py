"""ITI-62 Remove Metadata: delete registry objects named by entryUUID, all or nothing.

The Document Registry removes a set of objects only when the metadata left behind still hangs together
(IHE RMD, ITI TF-2c 3.62.4.1.3, as the NIST kit tests 30000-30008 exercise it):

* every named object must exist -- else ``UnresolvedReferenceException`` (nothing else is judged then);
* no association that stays may point at an object that goes (source or target) -- else
  ``ReferencesExistException``: an APND, RPLC or XFRM_RPLC, a SubmissionSet's or Folder's HasMember keep
  their ends alive until removed with them;
* no object that stays may lose its last membership -- else ``XDSUnreferencedObjectException``: a
  SubmissionSet must keep a HasMember, a DocumentEntry or Folder must stay the target of a SubmissionSet's
  HasMember. Only objects that a removed association touched are judged, so an oddity already in the registry
  does not block unrelated removals.

Removing a replacement does not bring its predecessor back: the predecessor keeps its Deprecated status
(kit 30008 expects it). Every rule is checked before the first DELETE; every error found is reported; the
caller's unit of work commits or rolls back, so a refusal leaves every table untouched. Rows go from every
index table as well as ``xds_object`` (explicitly: SQLite enforces no foreign key cascade unless told to).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from .. import constants as c
from ..errors import (REFERENCES_EXIST_EXCEPTION, UNRESOLVED_REFERENCE_EXCEPTION, XDS_REGISTRY_METADATA_ERROR,
                      XDS_UNREFERENCED_OBJECT_EXCEPTION, RegistryError, RegistryResponse, XdsError,
                      registry_response)
from .store import StoredObject
from .tables import (ObjectKind, XdsAssociation, XdsAuthorPerson, XdsCode, XdsDocumentEntry, XdsFolder, XdsObject,
                     XdsReferenceId, XdsSubmissionSet)

__all__ = ["remove_metadata", "remove_objects", "KIND_NAMES"]

_IN_CHUNK = 500  # PostgreSQL and old SQLite builds (999 variables) both take this many bound values
_CHILD_TABLES = (XdsCode, XdsAuthorPerson, XdsReferenceId)  # keyed by object_uuid
_DETAIL_TABLES = (XdsDocumentEntry, XdsSubmissionSet, XdsFolder, XdsAssociation)  # keyed by uuid
_MEMBER_KINDS = frozenset({ObjectKind.DOCUMENT_ENTRY, ObjectKind.FOLDER})

KIND_NAMES = {ObjectKind.DOCUMENT_ENTRY: "DocumentEntry", ObjectKind.SUBMISSION_SET: "SubmissionSet",
              ObjectKind.FOLDER: "Folder", ObjectKind.ASSOCIATION: "Association"}
"""How error texts and audit records name each ``xds_object.kind``."""

_OBJECT_COLUMNS = (XdsObject.uuid, XdsObject.kind, XdsObject.lid, XdsObject.version, XdsObject.status,
                   XdsObject.patient_key, XdsObject.unique_id, XdsObject.object_type, XdsObject.home)
_ASSOCIATION_COLUMNS = (XdsAssociation.uuid, XdsAssociation.type, XdsAssociation.source_uuid,
                        XdsAssociation.target_uuid)


def remove_metadata(registry: Any, object_ids: Iterable[str], uow: Any) -> RegistryResponse:
    """ITI-62 inside the caller's unit of work (the caller commits): Success once every object is deleted.

    Raises :class:`XdsError` carrying every RegistryError when the removal is refused; the caller then rolls
    back. ``registry`` (the :class:`DocumentRegistry`) is part of the contract so that a policy of its settings
    can apply; the RMD rules need none today.
    """
    remove_objects(registry, object_ids, uow)
    return registry_response()


def remove_objects(registry: Any, object_ids: Iterable[str], uow: Any) -> dict[str, StoredObject]:
    """Like :func:`remove_metadata`, returning what was removed (entryUUID -> object), e.g. for the audit."""
    del registry  # see remove_metadata
    requested = list(dict.fromkeys(object_ids))
    if not requested:
        raise XdsError(XDS_REGISTRY_METADATA_ERROR, "RemoveObjectsRequest names no object (empty ObjectRefList)")
    session: Session = uow.session
    found = _lock_objects(session, requested)
    _refuse_unknown(requested, found)
    removing = frozenset(requested)
    touching = _associations_touching(session, removing)
    errors = [*_references_left(touching, removing, found), *_members_orphaned(session, touching, removing)]
    if errors:
        raise XdsError.from_errors(errors)
    _delete_rows(session, removing)
    return {uuid: found[uuid] for uuid in requested}


# -- reading ----------------------------------------------------------------------------------------------------

def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    ordered = list(dict.fromkeys(values))
    for start in range(0, len(ordered), _IN_CHUNK):
        yield ordered[start:start + _IN_CHUNK]


def _lock_objects(session: Session, uuids: Sequence[str]) -> dict[str, StoredObject]:
    """The named objects that exist, row-locked on PostgreSQL so that a concurrent ITI-57/62 on them waits for
    this removal's outcome (SQLite's BEGIN IMMEDIATE already serialises writers)."""
    found: dict[str, StoredObject] = {}
    for chunk in _chunks(uuids):
        query = select(*_OBJECT_COLUMNS).where(XdsObject.uuid.in_(chunk)).with_for_update()
        found.update((row.uuid, StoredObject(**row._mapping)) for row in session.execute(query))
    return found


def _associations_touching(session: Session, uuids: Collection[str]) -> dict[str, Any]:
    """Every association whose source or target is among ``uuids``, plus those named (by entryUUID)."""
    touching: dict[str, Any] = {}
    for chunk in _chunks(uuids):
        query = select(*_ASSOCIATION_COLUMNS).where(or_(
            XdsAssociation.uuid.in_(chunk), XdsAssociation.source_uuid.in_(chunk),
            XdsAssociation.target_uuid.in_(chunk)))
        touching.update((row.uuid, row) for row in session.execute(query))
    return touching


def _kinds(session: Session, uuids: Collection[str]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for chunk in _chunks(uuids):
        kinds.update(session.execute(select(XdsObject.uuid, XdsObject.kind).where(XdsObject.uuid.in_(chunk))).all())
    return kinds


def _surviving_memberships(session: Session, members: Collection[str], removing: Collection[str]) -> set[str]:
    """Members (DocumentEntries, Folders) still the target of a SubmissionSet HasMember that stays."""
    kept: set[str] = set()
    for chunk in _chunks(members):
        query = (select(XdsAssociation.uuid, XdsAssociation.target_uuid)
                 .join(XdsObject, XdsObject.uuid == XdsAssociation.source_uuid)
                 .where(XdsAssociation.target_uuid.in_(chunk), XdsAssociation.type == c.HAS_MEMBER,
                        XdsObject.kind == ObjectKind.SUBMISSION_SET))
        kept.update(target for uuid, target in session.execute(query) if uuid not in removing)
    return kept


def _surviving_contents(session: Session, submission_sets: Collection[str], removing: Collection[str]) -> set[str]:
    """SubmissionSets still the source of a HasMember that stays."""
    kept: set[str] = set()
    for chunk in _chunks(submission_sets):
        query = select(XdsAssociation.uuid, XdsAssociation.source_uuid).where(
            XdsAssociation.source_uuid.in_(chunk), XdsAssociation.type == c.HAS_MEMBER)
        kept.update(source for uuid, source in session.execute(query) if uuid not in removing)
    return kept


# -- rules ------------------------------------------------------------------------------------------------------

def _refuse_unknown(requested: Sequence[str], found: Mapping[str, StoredObject]) -> None:
    """Unknown ids make every other judgement moot: report them alone."""
    errors = [RegistryError(error_code=UNRESOLVED_REFERENCE_EXCEPTION, location=uuid,
                            code_context=f"{uuid} is not an object of this registry; nothing was removed")
              for uuid in requested if uuid not in found]
    if errors:
        raise XdsError.from_errors(errors)


def _describe(uuid: str, found: Mapping[str, StoredObject]) -> str:
    stored = found.get(uuid)
    return f"{KIND_NAMES.get(stored.kind, 'object')} {uuid}" if stored else uuid


def _association_name(association: Any) -> str:
    return f"{association.type.rsplit(':', 1)[-1]} association {association.uuid}"


def _references_left(touching: Mapping[str, Any], removing: Collection[str],
                     found: Mapping[str, StoredObject]) -> list[RegistryError]:
    """An association that stays while one of its ends goes would dangle."""
    errors = []
    for association in touching.values():
        if association.uuid in removing:
            continue
        for end in (association.source_uuid, association.target_uuid):
            if end in removing:
                errors.append(RegistryError(
                    error_code=REFERENCES_EXIST_EXCEPTION, location=end,
                    code_context=f"{_describe(end, found)} is still referenced by {_association_name(association)}, "
                                 f"which the request does not remove"))
    return sorted(errors, key=lambda error: (error.location or "", error.code_context))


def _members_orphaned(session: Session, touching: Mapping[str, Any], removing: Collection[str]) -> list[RegistryError]:
    """Objects that stay but were an end of a removed association must keep their SubmissionSet link."""
    ends = {end for association in touching.values() if association.uuid in removing
            for end in (association.source_uuid, association.target_uuid) if end not in removing}
    kinds = _kinds(session, ends)
    submission_sets = [uuid for uuid, kind in kinds.items() if kind == ObjectKind.SUBMISSION_SET]
    members = [uuid for uuid, kind in kinds.items() if kind in _MEMBER_KINDS]
    empty_sets = set(submission_sets) - _surviving_contents(session, submission_sets, removing)
    lone_members = set(members) - _surviving_memberships(session, members, removing)
    return [RegistryError(error_code=XDS_UNREFERENCED_OBJECT_EXCEPTION, location=uuid,
                          code_context=_orphan_text(uuid, kinds[uuid]))
            for uuid in sorted(empty_sets | lone_members)]


def _orphan_text(uuid: str, kind: str) -> str:
    name = f"{KIND_NAMES[kind]} {uuid}"
    if kind == ObjectKind.SUBMISSION_SET:
        return f"{name} would be left without any HasMember association; remove it in the same request"
    return f"{name} would be left in no SubmissionSet; remove it in the same request"


# -- writing ----------------------------------------------------------------------------------------------------

def _delete_rows(session: Session, uuids: Collection[str]) -> None:
    """Index and detail rows first, then the objects (the foreign keys point at ``xds_object``)."""
    for chunk in _chunks(uuids):
        for table in _CHILD_TABLES:
            session.execute(delete(table).where(table.object_uuid.in_(chunk))
                            .execution_options(synchronize_session=False))
        for table in _DETAIL_TABLES:
            session.execute(delete(table).where(table.uuid.in_(chunk)).execution_options(synchronize_session=False))
        session.execute(delete(XdsObject).where(XdsObject.uuid.in_(chunk)).execution_options(synchronize_session=False))
