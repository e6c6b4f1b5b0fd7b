"""The Document Registry actor: ITI-42 Register Document Set-b, with every registry-side rule of IHE ITI TF-3.

:meth:`DocumentRegistry.register_document_set_b` checks a submission in three passes -- structure and affinity
codes (no database), then registry state (patient identity, uniqueIds, referenced objects, statuses, patients
of related objects), then writes -- and raises one :class:`XdsError` carrying every RegistryError of the first
pass that found any. All reads happen before the first write, and the caller owns the unit of work: on an error
it rolls back, on success it commits, so a submission is all or nothing and invisible until committed.

Patient identity policy: with an affinity domain configured (``--affinity-domain``), a patientId is accepted
only when the identity feed made it known, active and not subsumed in that assigning authority (read in the
same statement as the registry lookups, :mod:`.lookup`). With none configured, the id must still be known to
the identity store in its own assigning authority, active and not subsumed: a registry never accepts a patient
nobody fed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ...identity.cx import CX, CXError
from ...identity.store import IdentityStore
from ...storage.base import utcnow
from .. import constants as c
from ..affinity import CodeSet, check_codes, load_code_set
from ..ebrim import assign_uuids, to_leaf_class
from ..errors import (UNRESOLVED_REFERENCE_EXCEPTION, XDS_DUPLICATE_UNIQUE_ID_IN_REGISTRY, XDS_NON_IDENTICAL_HASH,
                      XDS_NON_IDENTICAL_SIZE, XDS_PATIENT_ID_DOES_NOT_MATCH, XDS_REGISTRY_DEPRECATED_DOCUMENT_ERROR,
                      XDS_REGISTRY_METADATA_ERROR, XDS_UNKNOWN_PATIENT_ID, RegistryError, RegistryResponse,
                      registry_response)
from ..model import Association, DocumentEntry, Folder, RegistryObject, Submission, SubmissionSet
from ..validation import Sender, object_location, validate_submission
from .checks import PatientMatcher, dtm, judge_patient, raise_errors, registry_has_member, usable_patient
from .lookup import RegistrationLookup, look_up
from .store import NewObject, RegistryStore, StoredEntry, StoredObject, kind_of, leaf_class_bytes
from .tables import ObjectKind

__all__ = ["RegistrySettings", "DocumentRegistry", "patient_key", "RELATIONSHIP_TYPES", "REPLACING_TYPES"]

RELATIONSHIP_TYPES = frozenset({c.RPLC, c.XFRM, c.APND, c.XFRM_RPLC, c.SIGNS, c.IS_SNAPSHOT_OF})
"""Document relationships: the target must already be registered (or submitted alongside) and Approved."""
REPLACING_TYPES = frozenset({c.RPLC, c.XFRM_RPLC})
"""Relationships that deprecate their target (and its XFRM / APND children) and take over its folders."""
_CHILD_TYPES = (c.XFRM, c.APND)
_ITI57_ONLY_TYPES = frozenset({c.UPDATE_AVAILABILITY_STATUS, c.SUBMIT_ASSOCIATION})


def patient_key(patient_id: str) -> str:
    """The canonical ``id^^^&OID&ISO`` under which the registry files a patientId (namespace, type dropped)."""
    try:
        return CX.from_xds(patient_id).to_xds()
    except CXError:
        return patient_id.strip()


@dataclass(frozen=True, kw_only=True)
class RegistrySettings:
    """What the registry needs to know about its affinity domain and community."""

    affinity_domain: str | None = None
    """Assigning authority OID of accepted patient ids; None: any authority, the id still must be fed."""
    code_set: CodeSet | None = None
    """Allowed codes and mime types; None accepts any well-formed code."""
    home_community_id: str | None = None
    """Written as the ``home`` attribute of registered objects (``urn:oid:...``) when set."""
    max_query_results: int = 1000
    accept_french_statuses: bool = False
    """Metadata Update may set the CI-SIS Deleted / Archived statuses (used by ITI-57, not here)."""

    @classmethod
    def from_settings(cls, settings: Any) -> RegistrySettings:
        """From engine Settings: ``affinity_domain``; ``extra``: ``xds_codes`` (codes.xml or .toml path),
        ``home_community_id``, ``xds_max_query_results``, ``xds_french_statuses``."""
        extra: Mapping[str, Any] = getattr(settings, "extra", None) or {}
        codes = getattr(settings, "xds_codes", None) or extra.get("xds_codes")
        return cls(affinity_domain=getattr(settings, "affinity_domain", None),
                   code_set=load_code_set(Path(codes)) if codes else None,
                   home_community_id=getattr(settings, "home_community_id", None) or extra.get("home_community_id"),
                   max_query_results=int(extra.get("xds_max_query_results", 1000)),
                   accept_french_statuses=bool(extra.get("xds_french_statuses", False)))


class DocumentRegistry:
    """The registry actor; stateless between calls, so one instance serves every thread and worker."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings

    def register_document_set_b(self, submission: Submission, uow: Any) -> RegistryResponse:
        """ITI-42: register the submission in ``uow`` (not committed). Raises :class:`XdsError` with every
        RegistryError when it is refused; the caller must then roll back (nothing was written before the
        checks passed, but the caller's own writes in the same unit of work may need undoing). Returns
        Success, with warnings if any."""
        warnings = self._check_without_registry(submission)
        submission, symbols = assign_uuids(submission)
        registration = _Registration(self.settings, submission, uow.session, utcnow(),
                                     fresh_ids=frozenset(symbols.values()))
        registration.check()
        registration.write()
        return registry_response(warnings)

    def _check_without_registry(self, submission: Submission) -> list[RegistryError]:
        """Structure, affinity codes and ITI-42 limits; raises on any error, returns the warnings."""
        problems = [*validate_submission(submission, sender=Sender.DOCUMENT_REPOSITORY),
                    *check_codes(submission, self.settings.code_set), *_iti42_limits(submission)]
        raise_errors(problems)
        return problems


def _metadata_error(obj: RegistryObject, problem: str) -> RegistryError:
    return RegistryError(error_code=XDS_REGISTRY_METADATA_ERROR,
                         code_context=f"{type(obj).__name__} {obj.entry_uuid}: {problem}", location=object_location(obj))


def _iti42_limits(submission: Submission) -> list[RegistryError]:
    """What ITI-42 cannot do: new versions of existing objects, ITI-57 association types and PreviousVersion
    (NIST 21000), and an association of an object with itself."""
    errors = []
    for obj in (*submission.entries, *submission.folders):
        if obj.lid and obj.lid != obj.entry_uuid:
            errors.append(_metadata_error(obj, f"lid {obj.lid} differs from the id: a new version of an existing "
                                               "object is submitted with Update Document Set (ITI-57)"))
    for association in submission.associations:
        if association.association_type in _ITI57_ONLY_TYPES:
            errors.append(_metadata_error(association, f"{association.association_type} belongs to Update "
                                                       "Document Set (ITI-57), not to ITI-42"))
        elif association.previous_version is not None:
            errors.append(_metadata_error(association, "a PreviousVersion slot names a version to update: that is "
                                                       "Update Document Set (ITI-57), not ITI-42"))
        elif association.source == association.target:
            errors.append(_metadata_error(association, f"association {association.id} links {association.source} "
                                                       "to itself"))
    return errors


# =============================================================================================================

@dataclass
class _Registration:
    """One submission being registered: its checks against the registry, then its writes."""

    settings: RegistrySettings
    submission: Submission
    session: Any
    now: datetime
    fresh_ids: frozenset[str] = frozenset()
    """UUIDs this registration just made for symbolic ids: they cannot be registered already."""
    errors: list[RegistryError] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = RegistryStore(self.session)
        self.identities = IdentityStore(self.session)
        self.submitted: dict[str, RegistryObject] = self.submission.by_id()
        submission_set = self.submission.submission_set
        assert submission_set is not None and submission_set.patient_id  # validation guarantees both
        self.submission_set: SubmissionSet = submission_set
        self.patient_id: str = submission_set.patient_id
        self.patient_key = patient_key(self.patient_id)
        self.registered: dict[str, StoredObject] = {}
        self.patients = PatientMatcher(self.identities)
        self.touched_folders: set[str] = set()
        self.replaced: set[str] = set()

    # -- checks ----------------------------------------------------------------------------------------------

    def check(self) -> None:
        submitted_uuids = [uuid for uuid in self.submitted if uuid not in self.fresh_ids]
        patient, patient_refusal = usable_patient(self.patient_id, self.settings.affinity_domain)
        found = look_up(self.session, [*submitted_uuids, *self._referenced_ids()], self._unique_ids(), patient)
        self.registered = found.by_uuid
        self._check_new_ids()
        self._check_patient(patient_refusal or judge_patient(found.patient_state, self.settings.affinity_domain,
                                                             subsumed_advice="; submit under the surviving id"))
        self._check_unique_ids(found)
        for association in self.submission.associations:
            self._check_association(association)
        raise_errors(self.errors)

    def _referenced_ids(self) -> set[str]:
        ends = {end for a in self.submission.associations for end in (a.source, a.target)}
        return ends - self.submitted.keys()

    def _check_new_ids(self) -> None:
        for uuid, obj in self.submitted.items():
            if uuid in self.registered:
                self.errors.append(_metadata_error(obj, f"entryUUID {uuid} is already registered; a submission "
                                                        "creates new objects, each with a new id"))

    def _unique_ids(self) -> list[str]:
        return [obj.unique_id for obj in (self.submission_set, *self.submission.entries, *self.submission.folders)
                if obj.unique_id]

    def _check_patient(self, problem: str | None) -> None:
        if problem is not None:
            self.errors.append(RegistryError(
                error_code=XDS_UNKNOWN_PATIENT_ID, code_context=f"patientId {self.patient_id} {problem}",
                location=f"RegistryPackage[@id='{self.submission_set.entry_uuid}']/patientId"))

    def _check_unique_ids(self, found: RegistrationLookup) -> None:
        """Registered holders of the submitted uniqueIds (read by :func:`look_up`, with hash and size)."""
        entries = {e.unique_id: e for e in self.submission.entries if e.unique_id}
        packages = {p.unique_id: p for p in (self.submission_set, *self.submission.folders) if p.unique_id}
        self._check_reused_entries(entries, [stored for stored in found.entries if stored.unique_id in entries])
        for stored in found.holders:
            if stored.kind in (ObjectKind.SUBMISSION_SET, ObjectKind.FOLDER) and stored.unique_id in packages:
                package = packages[stored.unique_id]
                self.errors.append(RegistryError(
                    error_code=XDS_DUPLICATE_UNIQUE_ID_IN_REGISTRY,
                    code_context=f"{type(package).__name__} {package.entry_uuid}: uniqueId {package.unique_id} is "
                                 f"already used by registered object {stored.uuid}",
                    location=object_location(package) + "/uniqueId"))

    def _check_reused_entries(self, entries: Mapping[str, DocumentEntry], reused: list[StoredEntry]) -> None:
        """A DocumentEntry uniqueId may be registered again only with the same hash and size."""
        for stored in reused:
            entry = entries[stored.unique_id]
            if (entry.hash or "").lower() != (stored.hash or ""):
                self.errors.append(self._unique_id_error(XDS_NON_IDENTICAL_HASH, entry, "hash", entry.hash,
                                                         stored.hash))
            elif entry.size_int != stored.size:
                self.errors.append(self._unique_id_error(XDS_NON_IDENTICAL_SIZE, entry, "size", entry.size,
                                                         stored.size))

    @staticmethod
    def _unique_id_error(code: str, entry: DocumentEntry, what: str, submitted: Any, stored: Any) -> RegistryError:
        return RegistryError(error_code=code, location=f"{object_location(entry)}/Slot[@name='{what}']",
                             code_context=f"DocumentEntry {entry.entry_uuid}: uniqueId {entry.unique_id} is already "
                                          f"registered with {what} {stored}; this submission has {submitted}")

    def _check_association(self, association: Association) -> None:
        source = self._end(association, association.source, "sourceObject")
        target = self._end(association, association.target, "targetObject")
        if source is None or target is None:
            return
        kind = association.association_type
        if kind == c.HAS_MEMBER and source[0] == ObjectKind.FOLDER and target[0] == ObjectKind.DOCUMENT_ENTRY:
            self._check_folder_member(association, source, target)
        elif kind == c.HAS_MEMBER and source[0] == ObjectKind.SUBMISSION_SET and \
                target[0] == ObjectKind.DOCUMENT_ENTRY and association.target not in self.submitted:
            self._check_same_patient(association, source, target)
        elif kind in RELATIONSHIP_TYPES:
            self._check_relationship(association, source, target)

    def _end(self, association: Association, uuid: str, role: str) -> tuple[str, str, str | None] | None:
        """(kind, status, patient key) of an association end, or None after reporting it unresolved."""
        if uuid in self.submitted:
            obj = self.submitted[uuid]
            has_patient = not isinstance(obj, Association)
            return kind_of(obj), c.STATUS_APPROVED, self.patient_key if has_patient else None
        stored = self.registered.get(uuid)
        if stored is None:
            self.errors.append(RegistryError(
                error_code=UNRESOLVED_REFERENCE_EXCEPTION, location=object_location(association) + f"/@{role}",
                code_context=f"Association {association.entry_uuid}: {role} {uuid} is neither in the submission "
                             "nor in the registry"))
            return None
        return stored.kind, stored.status, stored.patient_key

    def _check_folder_member(self, association: Association, folder: tuple, entry: tuple) -> None:
        for (kind, status, _), uuid in ((folder, association.source), (entry, association.target)):
            if status != c.STATUS_APPROVED:
                self.errors.append(_deprecated_error(association, uuid, status))
        self._check_same_patient(association, folder, entry)
        if association.source not in self.submitted:
            self.touched_folders.add(association.source)

    def _check_relationship(self, association: Association, source: tuple, target: tuple) -> None:
        if association.target in self.submitted:
            return
        if target[1] != c.STATUS_APPROVED:
            self.errors.append(_deprecated_error(association, association.target, target[1]))
            return
        self._check_same_patient(association, source, target)
        if association.association_type in REPLACING_TYPES:
            self.replaced.add(association.target)

    def _check_same_patient(self, association: Association, source: tuple, target: tuple) -> None:
        if source[2] is None or target[2] is None or self.patients.same_patient(source[2], target[2]):
            return
        self.errors.append(RegistryError(
            error_code=XDS_PATIENT_ID_DOES_NOT_MATCH, location=object_location(association),
            code_context=f"Association {association.entry_uuid} ({association.association_type.rsplit(':', 1)[-1]}) "
                         f"links {association.source} of patient {source[2]} to {association.target} of patient "
                         f"{target[2]}"))

    # -- writes ----------------------------------------------------------------------------------------------

    def write(self) -> None:
        new_objects = [self._new_object(obj) for obj in self.submission.registry_objects()]
        new_objects.extend(self._carried_folder_memberships())
        self.store.insert(new_objects, now=self.now)
        if self.replaced:
            children = self.store.associations(targets=self.replaced, types=_CHILD_TYPES)
            self.store.deprecate(self.replaced | {child.source_uuid for child in children}, now=self.now)
        if self.touched_folders:
            self.store.touch_folders(self.touched_folders, dtm(self.now), now=self.now)

    def _new_object(self, obj: RegistryObject) -> NewObject:
        status, home = c.STATUS_APPROVED, self.settings.home_community_id
        if isinstance(obj, (DocumentEntry, Folder)):
            lid = obj.lid or obj.entry_uuid
            slots = {c.SLOT_LAST_UPDATE_TIME: (dtm(self.now),)} if isinstance(obj, Folder) else None
            element = to_leaf_class(obj, status=status, home=home, lid=lid, version="1", slots=slots)
            return NewObject(obj=obj, leaf_class=leaf_class_bytes(element), status=status,
                             patient_key=self.patient_key, lid=lid,
                             last_update_time=dtm(self.now) if isinstance(obj, Folder) else None)
        element = to_leaf_class(obj, status=status, home=home)
        patient = None if isinstance(obj, Association) else self.patient_key
        return NewObject(obj=obj, leaf_class=leaf_class_bytes(element), status=status, patient_key=patient)

    def _carried_folder_memberships(self) -> list[NewObject]:
        """RPLC / XFRM_RPLC: the replacement joins every folder its original is in (new HasMember)."""
        if not self.replaced:
            return []
        replacements = {a.target: a.source for a in self.submission.associations
                        if a.association_type in REPLACING_TYPES and a.target in self.replaced}
        present = {(a.source, a.target) for a in self.submission.associations if a.association_type == c.HAS_MEMBER}
        carried = []
        for membership in self.store.folders_containing(self.replaced):
            link = (membership.source_uuid, replacements[membership.target_uuid])
            if link not in present:
                present.add(link)
                carried.append(self._registry_association(*link))
                self.touched_folders.add(membership.source_uuid)
        return carried

    def _registry_association(self, source: str, target: str) -> NewObject:
        """A HasMember the registry creates itself, stored like a submitted one."""
        return self._new_object(registry_has_member(source, target))


def _deprecated_error(association: Association, uuid: str, status: str) -> RegistryError:
    return RegistryError(
        error_code=XDS_REGISTRY_DEPRECATED_DOCUMENT_ERROR, location=object_location(association),
        code_context=f"Association {association.entry_uuid} ({association.association_type.rsplit(':', 1)[-1]}) "
                     f"refers to {uuid}, whose status is {status.rsplit(':', 1)[-1]}, not Approved")
