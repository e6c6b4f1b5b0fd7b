"""ITI-57 Update Document Set and ITI-92 Restricted Update Document Set: the Document Registry's rules.

An update submission carries one SubmissionSet and any number of *operations*, recognised by their associations:

* a new version of a DocumentEntry or Folder -- the object (same ``lid`` as the logical object, a new id) and a
  SubmissionSet HasMember carrying ``PreviousVersion`` (and optionally ``AssociationPropagation``);
* a status change -- an ``UpdateAvailabilityStatus`` association from the SubmissionSet to an existing object,
  with ``OriginalStatus`` and ``NewStatus``;
* a new association between existing objects -- the association, linked to the SubmissionSet by a
  ``SubmitAssociation`` (or HasMember) association.

As for ITI-42 (:mod:`.actor`), :func:`update_document_set` checks in passes -- structure and codes (no database),
then registry state -- and raises one :class:`XdsError` with every RegistryError of the first pass that found any;
only then does it write, inside the caller's unit of work, so an update is all or nothing.

Versioning: a new version gets ``version = latest + 1`` and the status the latest version had; the latest version
becomes Deprecated, so at most one version of a logical object is Approved. ITI-57 updates only an Approved latest
version (the kit's 12319 expects an ITI-57 update of a Deprecated latest version to fail); ITI-92 may update a
Deprecated latest version (CP-ITI-1190, XDS Persistence Option), and the new version stays Deprecated.
Association propagation (default ``yes``) gives the new version the folder memberships of the previous one
(Folder -> DocumentEntry HasMember); the previous version's own associations are left as they are.
Relationship associations (RPLC, APND, ...) are not propagated.

ITI-92 allows only DocumentEntry updates, and refuses a change of patientId (XDSPatientIDReconciliationError),
uniqueId (XDSMetadataIdentifierError), objectType, repositoryUniqueId, sourcePatientId or documentAvailability
(UnmodifiableMetadataError). ITI-57 lets hash, size, repositoryUniqueId and the patient change; lid, uniqueId and
objectType never change (XDSMetadataIdentifierError). A patient change is refused
(XDSPatientIDReconciliationError) when association propagation would give the new version folder memberships of
the old patient: relationships stay single-patient, while a lone object (the kit's 21002 / 21003) or an update
without propagation (20000e) may move to another patient.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

from ...identity.store import IdentityStore
from ...ns import RIM, qn
from ...storage.base import utcnow
from .. import constants as c
from ..affinity import check_codes
from ..ebrim import assign_uuids, parse_registry_object_list, to_leaf_class
from ..errors import (UNRESOLVED_REFERENCE_EXCEPTION, XDS_METADATA_IDENTIFIER_ERROR, XDS_METADATA_UPDATE_ERROR,
                      XDS_METADATA_UPDATE_OPERATION_ERROR, XDS_METADATA_VERSION_ERROR,
                      XDS_PATIENT_ID_RECONCILIATION_ERROR, XDS_REGISTRY_DEPRECATED_DOCUMENT_ERROR,
                      XDS_REGISTRY_METADATA_ERROR, XDS_UNKNOWN_PATIENT_ID, RegistryError, RegistryResponse,
                      registry_response)
from ..model import Association, DocumentEntry, Folder, RegistryObject, Submission, SubmissionSet
from ..validation import Sender, object_location, validate_submission
from .actor import DocumentRegistry, RegistrySettings, patient_key
from .checks import PatientMatcher, dtm, patient_problem, raise_errors, registry_has_member
from .store import NewObject, RegistryStore, StoredObject, leaf_class_bytes
from .tables import ObjectKind

__all__ = ["update_document_set", "UNMODIFIABLE_METADATA_ERROR", "RESTRICTED_UNMODIFIABLE", "UPDATABLE_STATUSES"]

UNMODIFIABLE_METADATA_ERROR = "UnmodifiableMetadataError"
"""ITI-92: the update changes an attribute a Restricted Update may not change."""

RESTRICTED_UNMODIFIABLE = (("objectType", lambda e: e.object_type),
                           ("repositoryUniqueId", lambda e: e.repository_unique_id),
                           ("sourcePatientId", lambda e: e.source_patient_id),
                           ("documentAvailability", lambda e: e.document_availability or c.AVAILABILITY_ONLINE))
"""DocumentEntry attributes ITI-92 refuses to change, with how to read them (as the kit's 40001b tests)."""

UPDATABLE_STATUSES = frozenset({c.STATUS_APPROVED, c.STATUS_DEPRECATED})
"""NewStatus values of UpdateAvailabilityStatus; the CI-SIS Deleted / Archived join when the setting allows."""

_FRENCH_STATUSES = frozenset({c.STATUS_ASIP_DELETED, c.STATUS_ASIP_ARCHIVED})
_VERSIONED_KINDS = {DocumentEntry: ObjectKind.DOCUMENT_ENTRY, Folder: ObjectKind.FOLDER}
_STATUS_SLOTS = (c.SLOT_ORIGINAL_STATUS, c.SLOT_NEW_STATUS)
_SUBMISSION_LINKS = frozenset({c.SUBMIT_ASSOCIATION, c.HAS_MEMBER})


def update_document_set(registry: DocumentRegistry, submission: Submission, uow: Any, *,
                        restricted: bool = False) -> RegistryResponse:
    """ITI-57 (``restricted=False``) or ITI-92 in ``uow`` (not committed).

    Raises :class:`XdsError` with every RegistryError when refused; nothing is written before all checks pass,
    and the caller rolls back. Returns Success, with warnings if any.
    """
    warnings = _check_structure(registry.settings, submission, restricted)
    submission, symbols = assign_uuids(submission)
    update = _Update(registry.settings, submission, uow.session, utcnow(), restricted=restricted,
                     fresh_ids=frozenset(symbols.values()))
    update.check()
    update.write()
    return registry_response(warnings)


# =============================================================================================================
# Structure (no database)
# =============================================================================================================

def _error(code: str, obj: RegistryObject | None, problem: str, where: str = "") -> RegistryError:
    if obj is None:
        return RegistryError(error_code=code, code_context=problem, location=where or None)
    return RegistryError(error_code=code, code_context=f"{type(obj).__name__} {obj.entry_uuid}: {problem}",
                         location=object_location(obj) + where)


def _check_structure(settings: RegistrySettings, submission: Submission, restricted: bool) -> list[RegistryError]:
    """What needs no registry: ITI-42 metadata rules, codes, the MU slots and operations; raises on errors."""
    problems = [*validate_submission(submission, sender=Sender.DOCUMENT_REPOSITORY),
                *check_codes(submission, settings.code_set)]
    submission_set = submission.submission_set
    if submission_set is not None:
        problems.extend(_operation_problems(submission, submission_set, settings, restricted))
    raise_errors(problems)
    return problems


def _operation_problems(submission: Submission, submission_set: SubmissionSet, settings: RegistrySettings,
                        restricted: bool) -> list[RegistryError]:
    problems = [*_association_slot_problems(submission, submission_set, settings)]
    versioned = {obj.entry_uuid: obj for obj in (*submission.entries, *submission.folders)}
    links = _version_links(submission, submission_set)
    for uuid, obj in versioned.items():
        problems.extend(_new_version_problems(obj, links.get(uuid)))
    problems.extend(_duplicate_lid_problems(versioned.values()))
    if restricted:
        problems.extend(_restricted_operation_problems(submission))
    return problems


def _version_links(submission: Submission, submission_set: SubmissionSet) -> dict[str, Association]:
    """SubmissionSet HasMember associations by the id of the submitted object they point at."""
    return {a.target: a for a in submission.associations
            if a.association_type == c.HAS_MEMBER and a.source == submission_set.entry_uuid}


def _association_slot_problems(submission: Submission, submission_set: SubmissionSet,
                               settings: RegistrySettings) -> Iterable[RegistryError]:
    allowed = UPDATABLE_STATUSES | (_FRENCH_STATUSES if settings.accept_french_statuses else frozenset())
    for association in submission.associations:
        if association.association_type == c.UPDATE_AVAILABILITY_STATUS:
            yield from _status_change_problems(association, submission_set, allowed)
        else:
            for name in _STATUS_SLOTS:
                if association.slot_values(name):
                    yield _error(XDS_REGISTRY_METADATA_ERROR, association, f"slot {name} belongs only on an "
                                 "UpdateAvailabilityStatus association", f"/Slot[@name='{name}']")
        propagation = association.association_propagation
        if propagation is not None and propagation not in ("yes", "no"):
            yield _error(XDS_REGISTRY_METADATA_ERROR, association, f"AssociationPropagation {propagation!r} is "
                         "neither yes nor no", f"/Slot[@name='{c.SLOT_ASSOCIATION_PROPAGATION}']")


def _status_change_problems(association: Association, submission_set: SubmissionSet,
                            allowed: frozenset[str]) -> Iterable[RegistryError]:
    if association.source != submission_set.entry_uuid:
        yield _error(XDS_METADATA_UPDATE_OPERATION_ERROR, association, "an UpdateAvailabilityStatus association "
                     "must have the SubmissionSet as its sourceObject", "/@sourceObject")
    if not association.original_status or not association.new_status:
        yield _error(XDS_REGISTRY_METADATA_ERROR, association, "UpdateAvailabilityStatus needs the OriginalStatus "
                     "and NewStatus slots")
    elif association.new_status not in allowed:
        yield _error(XDS_METADATA_UPDATE_ERROR, association, f"NewStatus {association.new_status} is not a status "
                     "this registry lets an update set", f"/Slot[@name='{c.SLOT_NEW_STATUS}']")


def _new_version_problems(obj: RegistryObject, link: Association | None) -> Iterable[RegistryError]:
    """A submitted DocumentEntry / Folder is a new version: it names its logical object and previous version."""
    if not obj.lid or obj.lid == obj.entry_uuid:
        yield _error(XDS_METADATA_UPDATE_ERROR, obj, "Update Document Set cannot submit an initial version (no lid "
                     "naming an existing logical object); submit it with Register Document Set-b (ITI-42)", "/@lid")
        return
    if link is None:
        return  # validation already reported the missing SubmissionSet membership
    previous = link.previous_version
    if previous is None:
        yield _error(XDS_REGISTRY_METADATA_ERROR, link, "the SubmissionSet HasMember of a new version needs the "
                     "PreviousVersion slot", f"/Slot[@name='{c.SLOT_PREVIOUS_VERSION}']")
    elif not (previous.isascii() and previous.isdigit() and int(previous) > 0):
        yield _error(XDS_REGISTRY_METADATA_ERROR, link, f"PreviousVersion {previous!r} is not a version number",
                     f"/Slot[@name='{c.SLOT_PREVIOUS_VERSION}']")


def _duplicate_lid_problems(objects: Iterable[RegistryObject]) -> Iterable[RegistryError]:
    counts = Counter(obj.lid for obj in objects if obj.lid)
    for lid, count in counts.items():
        if count > 1:
            yield _error(XDS_METADATA_UPDATE_ERROR, None, f"{count} updates of logical object {lid} in one request; "
                         "a request may update a logical object once", f"*[@lid='{lid}']")


def _restricted_operation_problems(submission: Submission) -> Iterable[RegistryError]:
    """ITI-92 only updates DocumentEntries."""
    for folder in submission.folders:
        yield _error(XDS_METADATA_UPDATE_OPERATION_ERROR, folder, "Restricted Update Document Set updates "
                     "DocumentEntries only, not Folders")
    for association in submission.associations:
        if association.association_type in (c.UPDATE_AVAILABILITY_STATUS, c.SUBMIT_ASSOCIATION):
            yield _error(XDS_METADATA_UPDATE_OPERATION_ERROR, association, "Restricted Update Document Set has no "
                         f"{association.association_type.rsplit(':', 1)[-1]} operation")


# =============================================================================================================
# Registry state and writes
# =============================================================================================================

@dataclass(frozen=True)
class _NewVersion:
    obj: RegistryObject
    previous: StoredObject
    propagate: bool


@dataclass
class _Update:
    """One update request being checked against the registry, then written."""

    settings: RegistrySettings
    submission: Submission
    session: Any
    now: datetime
    restricted: bool = False
    fresh_ids: frozenset[str] = frozenset()
    errors: list[RegistryError] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = RegistryStore(self.session)
        self.identities = IdentityStore(self.session)
        submission_set = self.submission.submission_set
        assert submission_set is not None and submission_set.patient_id  # validation guarantees both
        self.submission_set: SubmissionSet = submission_set
        self.submitted: dict[str, RegistryObject] = self.submission.by_id()
        self.registered: dict[str, StoredObject] = {}
        self.versions: list[_NewVersion] = []
        self.status_changes: list[tuple[str, str]] = []
        self.touched_folders: set[str] = set()
        self.patients = PatientMatcher(self.identities)

    # -- checks ----------------------------------------------------------------------------------------------

    def check(self) -> None:
        ends = {end for a in self.submission.associations for end in (a.source, a.target)}
        submitted = [uuid for uuid in self.submitted if uuid not in self.fresh_ids]
        self.registered = self.store.find([*submitted, *(ends - self.submitted.keys())])
        self._check_new_ids()
        self._check_patient()
        links = _version_links(self.submission, self.submission_set)
        for obj in (*self.submission.entries, *self.submission.folders):
            self._check_new_version(obj, links[obj.entry_uuid])
        for association in self.submission.associations:
            self._check_association(association)
        raise_errors(self.errors)

    def _check_new_ids(self) -> None:
        for uuid, obj in self.submitted.items():
            if uuid in self.registered:
                self.errors.append(_error(XDS_REGISTRY_METADATA_ERROR, obj, f"entryUUID {uuid} is already "
                                          "registered; every submitted object, new versions included, needs a new id"))

    def _check_patient(self) -> None:
        problem = patient_problem(self.session, self.submission_set.patient_id or "",
                                   self.settings.affinity_domain)
        if problem is not None:
            self.errors.append(_error(XDS_UNKNOWN_PATIENT_ID, self.submission_set,
                                      f"patientId {self.submission_set.patient_id} {problem}", "/patientId"))

    def _check_new_version(self, obj: RegistryObject, link: Association) -> None:
        versions = self.store.by_lid(obj.lid or "")
        if not versions:
            self.errors.append(_error(XDS_METADATA_VERSION_ERROR, obj, f"no registered object has logical id "
                                      f"{obj.lid}: there is no previous version to update", "/@lid"))
            return
        latest = versions[-1]
        version = _NewVersion(obj, latest, link.association_propagation != "no")
        problems = [*self._identity_problems(obj, latest), *self._version_problems(obj, link, latest)]
        if not problems:
            problems = list(self._content_problems(version))
        self.errors.extend(problems)
        if not problems:
            self.versions.append(version)

    def _identity_problems(self, obj: RegistryObject, latest: StoredObject) -> Iterable[RegistryError]:
        if latest.kind != _VERSIONED_KINDS[type(obj)]:
            yield _error(XDS_METADATA_IDENTIFIER_ERROR, obj, f"logical id {obj.lid} belongs to a {latest.kind} "
                         f"object, not a {type(obj).__name__}", "/@lid")
            return
        unique_id = getattr(obj, "unique_id", None)
        if unique_id != latest.unique_id:
            yield _error(XDS_METADATA_IDENTIFIER_ERROR, obj, f"uniqueId {unique_id} differs from {latest.unique_id} "
                         f"of the logical object {obj.lid}; a new version keeps the uniqueId", "/uniqueId")
        if isinstance(obj, DocumentEntry) and not self.restricted and obj.object_type != latest.object_type:
            yield _error(XDS_METADATA_IDENTIFIER_ERROR, obj, f"objectType {obj.object_type} differs from "
                         f"{latest.object_type} of the previous version", "/@objectType")

    def _version_problems(self, obj: RegistryObject, link: Association, latest: StoredObject
                          ) -> Iterable[RegistryError]:
        if link.previous_version != str(latest.version):
            yield _error(XDS_METADATA_VERSION_ERROR, link, f"PreviousVersion {link.previous_version} is not the "
                         f"latest version {latest.version} of logical object {obj.lid}",
                         f"/Slot[@name='{c.SLOT_PREVIOUS_VERSION}']")
        elif latest.status != c.STATUS_APPROVED and not self.restricted:
            yield _error(XDS_METADATA_UPDATE_ERROR, obj, f"the latest version {latest.uuid} of {obj.lid} is "
                         f"{_short(latest.status)}; Update Document Set updates only an Approved object")

    def _content_problems(self, version: _NewVersion) -> Iterable[RegistryError]:
        """Patient change rules, and for ITI-92 the attributes it may not change."""
        obj, latest = version.obj, version.previous
        new_key = patient_key(getattr(obj, "patient_id", None) or "")
        if new_key != latest.patient_key:
            if self.restricted:
                yield _error(XDS_PATIENT_ID_RECONCILIATION_ERROR, obj, f"patientId {obj.patient_id} differs from "
                             f"{latest.patient_key}; a Restricted Update cannot change the patient", "/patientId")
            elif version.propagate and self._memberships_to_carry(version):
                yield _error(XDS_PATIENT_ID_RECONCILIATION_ERROR, obj, f"patientId changes from "
                             f"{latest.patient_key} to {obj.patient_id}, and AssociationPropagation would give the "
                             f"new version the folder memberships of {latest.uuid}, which belong to the old patient",
                             "/patientId")
        if self.restricted and isinstance(obj, DocumentEntry):
            yield from self._unmodifiable_problems(obj, latest)

    def _unmodifiable_problems(self, entry: DocumentEntry, latest: StoredObject) -> Iterable[RegistryError]:
        previous = _stored_entry(self.store.leaf_classes([latest.uuid])[latest.uuid])
        for name, read in RESTRICTED_UNMODIFIABLE:
            if read(entry) != read(previous):
                yield _error(UNMODIFIABLE_METADATA_ERROR, entry, f"{name} {read(entry)} differs from {read(previous)} "
                             "of the previous version; a Restricted Update cannot change it", f"/{name}")

    def _check_association(self, association: Association) -> None:
        kind = association.association_type
        if kind == c.UPDATE_AVAILABILITY_STATUS:
            self._check_status_change(association)
        elif association.source == self.submission_set.entry_uuid:
            self._check_submission_link(association)
        else:
            self._check_submitted_association(association)

    def _check_status_change(self, association: Association) -> None:
        target = self._registered_end(association, association.target, "targetObject")
        if target is None:
            return
        problem = self._status_change_problem(association, target)
        if problem is not None:
            self.errors.append(problem)
        else:
            self.status_changes.append((target.uuid, association.new_status or ""))

    def _status_change_problem(self, association: Association, target: StoredObject) -> RegistryError | None:
        if target.kind == ObjectKind.SUBMISSION_SET:
            return _error(XDS_METADATA_UPDATE_OPERATION_ERROR, association, "the status of a SubmissionSet cannot "
                          "be changed", "/@targetObject")
        if association.original_status != target.status:
            return _error(XDS_METADATA_UPDATE_ERROR, association, f"OriginalStatus {association.original_status} "
                          f"is not the current status {target.status} of {target.uuid}",
                          f"/Slot[@name='{c.SLOT_ORIGINAL_STATUS}']")
        if target.kind in (ObjectKind.DOCUMENT_ENTRY, ObjectKind.FOLDER):
            latest = self.store.by_lid(target.lid)[-1]
            if latest.uuid != target.uuid:
                return _error(XDS_METADATA_VERSION_ERROR, association, f"{target.uuid} is version {target.version} "
                              f"of {target.lid}; only the latest version ({latest.version}) may change status",
                              "/@targetObject")
        return None

    def _check_submission_link(self, association: Association) -> None:
        """SubmissionSet -> object: a version link, the link of a submitted association, or a reference."""
        target = self.submitted.get(association.target)
        if isinstance(target, (DocumentEntry, Folder)) and association.association_type == c.HAS_MEMBER:
            return
        if isinstance(target, Association) and association.association_type in _SUBMISSION_LINKS:
            return
        self.errors.append(_error(XDS_METADATA_UPDATE_OPERATION_ERROR, association, "a SubmissionSet association "
                                  "of an update points at a new version (HasMember) or at a submitted association "
                                  "(SubmitAssociation); this one is neither", "/@targetObject"))

    def _check_submitted_association(self, association: Association) -> None:
        """A new association: its ends exist, are Approved, belong to one patient; it is not there already."""
        ends = [self._end(association, uuid, role) for uuid, role in ((association.source, "sourceObject"),
                                                                      (association.target, "targetObject"))]
        if None in ends:
            return
        for end, uuid in zip(ends, (association.source, association.target)):
            if end[1] != c.STATUS_APPROVED:
                self.errors.append(_error(XDS_REGISTRY_DEPRECATED_DOCUMENT_ERROR, association, f"{uuid} is "
                                          f"{_short(end[1])}; a new association links Approved objects only"))
        if ends[0][2] and ends[1][2] and not self.patients.same_patient(ends[0][2], ends[1][2]):
            self.errors.append(_error(XDS_PATIENT_ID_RECONCILIATION_ERROR, association, f"links objects of patients "
                                      f"{ends[0][2]} and {ends[1][2]}"))
        if self._already_registered(association):
            self.errors.append(_error(XDS_METADATA_UPDATE_ERROR, association, "an Approved "
                                      f"{_short(association.association_type)} association from {association.source} "
                                      f"to {association.target} is already registered"))
        if association.association_type == c.HAS_MEMBER and ends[0][0] == ObjectKind.FOLDER and \
                association.source not in self.submitted:
            self.touched_folders.add(association.source)

    def _end(self, association: Association, uuid: str, role: str) -> tuple[str, str, str | None] | None:
        """(kind, status, patient key) of an association end in the submission or the registry."""
        obj = self.submitted.get(uuid)
        if isinstance(obj, (DocumentEntry, Folder)):
            return _VERSIONED_KINDS[type(obj)], c.STATUS_APPROVED, patient_key(obj.patient_id or "")
        if obj is not None:
            return ObjectKind.ASSOCIATION, c.STATUS_APPROVED, None
        stored = self._registered_end(association, uuid, role)
        return None if stored is None else (stored.kind, stored.status, stored.patient_key)

    def _registered_end(self, association: Association, uuid: str, role: str) -> StoredObject | None:
        stored = self.registered.get(uuid)
        if stored is None:
            self.errors.append(_error(UNRESOLVED_REFERENCE_EXCEPTION, association, f"{role} {uuid} is not in the "
                                      "registry" + (" (it is in this request)" if uuid in self.submitted else ""),
                                      f"/@{role}"))
        return stored

    def _already_registered(self, association: Association) -> bool:
        existing = self.store.associations(sources=[association.source], types=[association.association_type],
                                           statuses=[c.STATUS_APPROVED])
        return any(row.target_uuid == association.target for row in existing)

    # -- writes ----------------------------------------------------------------------------------------------

    def write(self) -> None:
        previous = {version.obj.entry_uuid: version.previous for version in self.versions}
        new_objects = [self._new_object(obj, previous.get(obj.entry_uuid))
                       for obj in self.submission.registry_objects()]
        new_objects.extend(self._propagated_memberships())
        self.store.insert(new_objects, now=self.now)
        if previous:
            self.store.deprecate([stored.uuid for stored in previous.values()], now=self.now)
        for uuid, status in self.status_changes:
            self.store.set_status([uuid], status, now=self.now)
        if self.touched_folders:
            self.store.touch_folders(self.touched_folders, dtm(self.now), now=self.now)

    def _new_object(self, obj: RegistryObject, previous: StoredObject | None) -> NewObject:
        home = self.settings.home_community_id
        if previous is not None:
            return self._new_version(obj, previous, home)
        element = to_leaf_class(obj, status=c.STATUS_APPROVED, home=home)
        key = None if isinstance(obj, Association) else patient_key(self.submission_set.patient_id or "")
        return NewObject(obj=obj, leaf_class=leaf_class_bytes(element), status=c.STATUS_APPROVED, patient_key=key)

    def _new_version(self, obj: RegistryObject, previous: StoredObject, home: str | None) -> NewObject:
        """Version latest + 1 of the logical object, with the status the latest version had."""
        version, lid, status = previous.version + 1, previous.lid, previous.status
        is_folder = isinstance(obj, Folder)
        slots = {c.SLOT_LAST_UPDATE_TIME: (dtm(self.now),)} if is_folder else None
        element = to_leaf_class(obj, status=status, home=home, lid=lid, version=str(version), slots=slots)
        return NewObject(obj=obj, leaf_class=leaf_class_bytes(element), status=status, lid=lid, version=version,
                         patient_key=patient_key(getattr(obj, "patient_id", None) or ""),
                         last_update_time=dtm(self.now) if is_folder else None)

    def _propagated_memberships(self) -> list[NewObject]:
        """AssociationPropagation: the new version takes the previous version's folder memberships."""
        carried: list[NewObject] = []
        for version in self.versions:
            if version.propagate:
                carried.extend(self._carry(version))
        return carried

    def _memberships_to_carry(self, version: _NewVersion) -> list[tuple[str, str]]:
        """(folder, entry) HasMember links the new version takes over from the previous one."""
        previous, new = version.previous.uuid, version.obj.entry_uuid
        if isinstance(version.obj, Folder):
            members = self.store.associations(sources=[previous], types=[c.HAS_MEMBER], statuses=[c.STATUS_APPROVED])
            entries = self.store.find(row.target_uuid for row in members)
            return [(new, row.target_uuid) for row in members
                    if row.target_uuid in entries and entries[row.target_uuid].kind == ObjectKind.DOCUMENT_ENTRY]
        return [(row.source_uuid, new) for row in self.store.folders_containing([previous])]

    def _carry(self, version: _NewVersion) -> list[NewObject]:
        links = self._memberships_to_carry(version)
        if isinstance(version.obj, DocumentEntry):
            self.touched_folders.update(folder for folder, _ in links)
        return [self._registry_association(folder, entry) for folder, entry in links]

    def _registry_association(self, source: str, target: str) -> NewObject:
        """A HasMember the registry makes itself (association propagation)."""
        association = registry_has_member(source, target)
        return NewObject(obj=association, leaf_class=leaf_class_bytes(to_leaf_class(association,
                                                                                     status=c.STATUS_APPROVED)),
                         status=c.STATUS_APPROVED)


# =============================================================================================================

def _short(urn: str) -> str:
    return urn.rsplit(":", 1)[-1]


def _stored_entry(leaf_class: bytes) -> DocumentEntry:
    """The registered DocumentEntry behind stored LeafClass bytes (written by this registry, so trusted)."""
    root = etree.fromstring(leaf_class, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    wrapper = etree.Element(qn(RIM, "RegistryObjectList"), nsmap={"rim": RIM})
    wrapper.append(root)
    [entry] = parse_registry_object_list(wrapper).entries
    return entry
