"""Structural checks of a submission that need no database (IHE-CONFORMANCE.md A5, A8).

Every rule reports with the exact IHE error code and a codeContext naming the object and what is wrong, and
all rules run, so one response lists every problem. Errors come in a fixed order (rule order, then submission
order), so the same request always gets the same answer. Registry-state checks (known patient, uniqueId already
registered, targets that exist and are Approved) belong to the registry, not here.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Callable, Iterator

from . import constants as c
from .errors import (XDS_PATIENT_ID_DOES_NOT_MATCH, XDS_REGISTRY_DUPLICATE_UNIQUE_ID_IN_MESSAGE,
                     XDS_REGISTRY_METADATA_ERROR, XDS_REPOSITORY_DUPLICATE_UNIQUE_ID_IN_MESSAGE,
                     XDS_REPOSITORY_METADATA_ERROR, RegistryError, XdsError)
from .model import (Association, DocumentEntry, Folder, RegistryObject, Submission, SubmissionSet, dtm_key,
                    is_xds_dtm)

__all__ = ["Sender", "validate_submission", "check_submission", "is_oid", "is_xds_patient_id", "object_location",
           "MAX_DOCUMENT_UNIQUE_ID_LENGTH", "MAX_OID_LENGTH"]

MAX_DOCUMENT_UNIQUE_ID_LENGTH = 128
MAX_OID_LENGTH = 64

_OID = r"[0-2](?:\.(?:0|[1-9][0-9]*))+"
_OID_RE = re.compile(_OID)
# CX with only CX.1 and CX.4 (= &OID&ISO), as XDS requires for patientId.
_PATIENT_ID_RE = re.compile(rf"[^\^&\s][^\^&]*\^\^\^&{_OID}&ISO")
_HASH_RE = re.compile(r"[0-9a-fA-F]{40}")


class Sender(enum.Enum):
    """Who produced the metadata, which decides the required attributes (A5 table)."""

    DOCUMENT_SOURCE = "ITI-41"  # to a repository: hash, size, repositoryUniqueId optional
    DOCUMENT_REPOSITORY = "ITI-42"  # to a registry: hash, size, repositoryUniqueId required


def is_oid(value: str) -> bool:
    """An ISO OID in dotted form, at most 64 characters (SubmissionSet / Folder uniqueId)."""
    return len(value) <= MAX_OID_LENGTH and _OID_RE.fullmatch(value) is not None


def is_xds_patient_id(value: str) -> bool:
    """``id^^^&OID&ISO``: the only CX form XDS accepts for patientId."""
    return _PATIENT_ID_RE.fullmatch(value) is not None


def validate_submission(submission: Submission, *, sender: Sender = Sender.DOCUMENT_REPOSITORY,
                        repository_codes: bool = False) -> list[RegistryError]:
    """Every structural problem of the submission, in a deterministic order (empty when it is valid).

    ``repository_codes`` reports metadata problems as a Document Repository does on ITI-41
    (XDSRepositoryMetadataError, XDSRepositoryDuplicateUniqueIdInMessage) instead of the registry codes.
    """
    checker = _Checker(submission, sender, repository_codes)
    return [error for rule in _RULES for error in rule(checker)]


def check_submission(submission: Submission, *, sender: Sender = Sender.DOCUMENT_REPOSITORY,
                     repository_codes: bool = False) -> None:
    """Raise one :class:`XdsError` carrying every error (warnings never raise)."""
    errors = validate_submission(submission, sender=sender, repository_codes=repository_codes)
    if any(error.is_error for error in errors):
        raise XdsError.from_errors(errors)


# =============================================================================================================

def _kind(obj: RegistryObject) -> str:
    return {DocumentEntry: "DocumentEntry", SubmissionSet: "SubmissionSet", Folder: "Folder",
            Association: "Association"}.get(type(obj), type(obj).__name__)


def object_location(obj: RegistryObject) -> str:
    """The RegistryError location of an object: its ebRIM element and entryUUID, e.g. ``Association[@id='...']``."""
    tag = {DocumentEntry: "ExtrinsicObject", Association: "Association"}.get(type(obj), "RegistryPackage")
    return f"{tag}[@id='{obj.entry_uuid}']"


class _Checker:
    """The submission plus the error codes the reporting actor uses."""

    def __init__(self, submission: Submission, sender: Sender, repository_codes: bool) -> None:
        self.submission = submission
        self.sender = sender
        self.metadata_code = XDS_REPOSITORY_METADATA_ERROR if repository_codes else XDS_REGISTRY_METADATA_ERROR
        self.duplicate_code = (XDS_REPOSITORY_DUPLICATE_UNIQUE_ID_IN_MESSAGE if repository_codes
                               else XDS_REGISTRY_DUPLICATE_UNIQUE_ID_IN_MESSAGE)

    def metadata(self, obj: RegistryObject | None, problem: str, where: str = "") -> RegistryError:
        """An XDS*MetadataError whose codeContext starts with the object's kind and id."""
        if obj is None:
            return RegistryError(error_code=self.metadata_code, code_context=problem, location=where or None)
        return RegistryError(error_code=self.metadata_code, code_context=f"{_kind(obj)} {obj.entry_uuid}: {problem}",
                             location=object_location(obj) + where)


_Rule = Callable[[_Checker], Iterator[RegistryError]]


def _one_submission_set(checker: _Checker) -> Iterator[RegistryError]:
    count = len(checker.submission.submission_sets)
    if count != 1:
        yield checker.metadata(None, f"a submission carries exactly one SubmissionSet; this one has {count}",
                               "RegistryObjectList")


def _unique_entry_uuids(checker: _Checker) -> Iterator[RegistryError]:
    objects = checker.submission.registry_objects()
    counts = Counter(obj.entry_uuid for obj in objects if obj.entry_uuid)
    reported: set[str] = set()
    for obj in objects:
        if counts[obj.entry_uuid] > 1 and obj.entry_uuid not in reported:
            reported.add(obj.entry_uuid)
            yield checker.metadata(obj, f"id {obj.entry_uuid} is used by {counts[obj.entry_uuid]} objects "
                                        "of this submission")


# --- required attributes -----------------------------------------------------------------------------------------

_ENTRY_REQUIRED: tuple[tuple[str, Callable[[DocumentEntry], object]], ...] = (
    ("mimeType", lambda e: e.mime_type),
    ("objectType", lambda e: e.object_type),
    ("patientId", lambda e: e.patient_id),
    ("uniqueId", lambda e: e.unique_id),
    ("sourcePatientId", lambda e: e.source_patient_id),
    ("classCode", lambda e: e.class_code),
    ("confidentialityCode", lambda e: e.confidentiality_codes),
    ("formatCode", lambda e: e.format_code),
    ("healthcareFacilityTypeCode", lambda e: e.healthcare_facility_type_code),
    ("practiceSettingCode", lambda e: e.practice_setting_code),
    ("typeCode", lambda e: e.type_code),
    ("languageCode", lambda e: e.language_code),
)
# Not on an On-Demand entry, whose content (hence creation time, hash, size) does not exist yet.
_STABLE_REQUIRED: tuple[tuple[str, Callable[[DocumentEntry], object]], ...] = (
    ("creationTime", lambda e: e.creation_time),
)
_REPOSITORY_REQUIRED: tuple[tuple[str, Callable[[DocumentEntry], object]], ...] = (
    ("hash", lambda e: e.hash),
    ("size", lambda e: e.size),
    ("repositoryUniqueId", lambda e: e.repository_unique_id),
)
_SET_REQUIRED: tuple[tuple[str, Callable[[SubmissionSet], object]], ...] = (
    ("contentTypeCode", lambda s: s.content_type_code),
    ("patientId", lambda s: s.patient_id),
    ("sourceId", lambda s: s.source_id),
    ("submissionTime", lambda s: s.submission_time),
    ("uniqueId", lambda s: s.unique_id),
)
_FOLDER_REQUIRED: tuple[tuple[str, Callable[[Folder], object]], ...] = (
    ("codeList", lambda f: f.code_list),
    ("patientId", lambda f: f.patient_id),
    ("title", lambda f: f.title),
    ("uniqueId", lambda f: f.unique_id),
)


def _required_attributes(checker: _Checker) -> Iterator[RegistryError]:
    for entry in checker.submission.entries:
        required = _ENTRY_REQUIRED
        if not entry.on_demand:
            required += _STABLE_REQUIRED
            if checker.sender is Sender.DOCUMENT_REPOSITORY:
                required += _REPOSITORY_REQUIRED
        yield from _missing(checker, entry, required)
    for submission_set in checker.submission.submission_sets:
        yield from _missing(checker, submission_set, _SET_REQUIRED)
    for folder in checker.submission.folders:
        yield from _missing(checker, folder, _FOLDER_REQUIRED)


def _missing(checker: _Checker, obj, required) -> Iterator[RegistryError]:
    for attribute, read in required:
        if not read(obj):
            yield checker.metadata(obj, f"required attribute {attribute} is missing", f"/{attribute}")


# --- values ------------------------------------------------------------------------------------------------------

def _object_type(checker: _Checker) -> Iterator[RegistryError]:
    for entry in checker.submission.entries:
        if entry.object_type and entry.object_type not in c.DE_OBJECT_TYPES:
            yield checker.metadata(entry, f"objectType {entry.object_type} is neither the stable ({c.DE_STABLE}) "
                                          f"nor the on-demand ({c.DE_ON_DEMAND}) DocumentEntry type", "/@objectType")


def _unique_id_syntax(checker: _Checker) -> Iterator[RegistryError]:
    for entry in checker.submission.entries:
        value = entry.unique_id
        if value and (len(value) > MAX_DOCUMENT_UNIQUE_ID_LENGTH or any(ch.isspace() for ch in value)):
            yield checker.metadata(entry, f"uniqueId {value!r} is not a valid document uniqueId (at most "
                                          f"{MAX_DOCUMENT_UNIQUE_ID_LENGTH} characters, no spaces)", "/uniqueId")
    for package in (*checker.submission.submission_sets, *checker.submission.folders):
        if package.unique_id and not is_oid(package.unique_id):
            yield checker.metadata(package, f"uniqueId {package.unique_id!r} is not an OID (dotted digits, at most "
                                            f"{MAX_OID_LENGTH} characters)", "/uniqueId")


def _patient_id_syntax(checker: _Checker) -> Iterator[RegistryError]:
    objects = (*checker.submission.submission_sets, *checker.submission.entries, *checker.submission.folders)
    for obj in objects:
        if obj.patient_id and not is_xds_patient_id(obj.patient_id):
            yield checker.metadata(obj, f"patientId {obj.patient_id!r} is not of the form id^^^&OID&ISO",
                                   "/patientId")


def _times(checker: _Checker) -> Iterator[RegistryError]:
    for entry in checker.submission.entries:
        for name, value in (("creationTime", entry.creation_time), ("serviceStartTime", entry.service_start_time),
                            ("serviceStopTime", entry.service_stop_time)):
            if value and not is_xds_dtm(value):
                yield checker.metadata(entry, f"{name} {value!r} is not a UTC time YYYY[MM[DD[hh[mm[ss]]]]]",
                                       f"/Slot[@name='{name}']")
        start, stop = entry.service_start_time, entry.service_stop_time
        if start and stop and is_xds_dtm(start) and is_xds_dtm(stop) and dtm_key(start) > dtm_key(stop):
            yield checker.metadata(entry, f"serviceStartTime {start} is after serviceStopTime {stop}",
                                   "/Slot[@name='serviceStartTime']")
    for submission_set in checker.submission.submission_sets:
        value = submission_set.submission_time
        if value and not is_xds_dtm(value):
            yield checker.metadata(submission_set, f"submissionTime {value!r} is not a UTC time "
                                                   "YYYY[MM[DD[hh[mm[ss]]]]]", "/Slot[@name='submissionTime']")


def _hash_and_size(checker: _Checker) -> Iterator[RegistryError]:
    for entry in checker.submission.entries:
        if entry.hash and not _HASH_RE.fullmatch(entry.hash):
            yield checker.metadata(entry, f"hash {entry.hash!r} is not a SHA-1 in 40 hexadecimal digits",
                                   "/Slot[@name='hash']")
        if entry.size and not (entry.size.isascii() and entry.size.isdigit()):
            yield checker.metadata(entry, f"size {entry.size!r} is not a non-negative integer",
                                   "/Slot[@name='size']")


# --- relations between objects ---------------------------------------------------------------------------------

def _duplicate_unique_ids(checker: _Checker) -> Iterator[RegistryError]:
    objects = (*checker.submission.entries, *checker.submission.submission_sets, *checker.submission.folders)
    holders: dict[str, list[RegistryObject]] = {}
    for obj in objects:
        if obj.unique_id:
            holders.setdefault(obj.unique_id, []).append(obj)
    for unique_id, owners in holders.items():
        if len(owners) > 1:
            names = ", ".join(f"{_kind(o)} {o.entry_uuid}" for o in owners)
            yield RegistryError(error_code=checker.duplicate_code,
                                code_context=f"uniqueId {unique_id} appears {len(owners)} times in the "
                                             f"submission ({names})",
                                location=object_location(owners[1]) + "/uniqueId")


def _one_patient(checker: _Checker) -> Iterator[RegistryError]:
    submission = checker.submission
    anchor = submission.submission_set or next(iter((*submission.entries, *submission.folders)), None)
    if anchor is None or not anchor.patient_id:
        return
    for obj in (*submission.entries, *submission.folders):
        if obj is not anchor and obj.patient_id and obj.patient_id != anchor.patient_id:
            yield RegistryError(error_code=XDS_PATIENT_ID_DOES_NOT_MATCH,
                                code_context=f"{_kind(obj)} {obj.entry_uuid} has patientId {obj.patient_id} but "
                                             f"{_kind(anchor)} {anchor.entry_uuid} has {anchor.patient_id}",
                                location=object_location(obj) + "/patientId")


def _associations(checker: _Checker) -> Iterator[RegistryError]:
    for association in checker.submission.associations:
        if association.association_type not in c.ASSOCIATION_TYPES:
            yield checker.metadata(association, f"associationType {association.association_type!r} is not an "
                                                "XDS association type", "/@associationType")
        if association.documentation:
            if association.association_type not in c.DOCUMENTATION_ASSOCIATION_TYPES:
                yield checker.metadata(association, "an associationDocumentation classification is allowed only on "
                                                    "RPLC, XFRM, APND and XFRM_RPLC associations, not on "
                                                    f"{association.association_type.rsplit(':', 1)[-1]}",
                                       f"/Classification[@classificationScheme='{c.ASSOCIATION_DOCUMENTATION}']")
            elif len(association.documentation) > 1:
                yield checker.metadata(association, "at most one associationDocumentation classification is allowed",
                                       f"/Classification[@classificationScheme='{c.ASSOCIATION_DOCUMENTATION}']")


def _submission_set_membership(checker: _Checker) -> Iterator[RegistryError]:
    """SS -> DocumentEntry HasMember carries SubmissionSetStatus; every submitted entry and folder is a member."""
    submission_set = checker.submission.submission_set
    if submission_set is None:
        return
    entry_ids = {entry.entry_uuid for entry in checker.submission.entries}
    other_ids = _non_entry_ids(checker)
    members: set[str] = set()
    for association in checker.submission.associations:
        if association.association_type != c.HAS_MEMBER or association.source != submission_set.entry_uuid:
            continue
        members.add(association.target)
        is_entry_link = association.target in entry_ids or association.target not in other_ids
        if is_entry_link and association.submission_set_status not in (c.SUBMISSION_SET_STATUS_ORIGINAL,
                                                                         c.SUBMISSION_SET_STATUS_REFERENCE):
            found = association.submission_set_status
            problem = (f"SubmissionSetStatus {found!r} is neither Original nor Reference" if found
                       else "the SubmissionSet -> DocumentEntry HasMember lacks the SubmissionSetStatus slot")
            yield checker.metadata(association, problem, "/Slot[@name='SubmissionSetStatus']")
    for obj in (*checker.submission.entries, *checker.submission.folders):
        if obj.entry_uuid not in members:
            yield checker.metadata(obj, f"not linked to SubmissionSet {submission_set.entry_uuid} by a HasMember "
                                        "association")


def _non_entry_ids(checker: _Checker) -> set[str]:
    """Ids in the submission that are not DocumentEntries (folders, associations): HasMember to them needs no
    SubmissionSetStatus."""
    submission = checker.submission
    return {obj.entry_uuid for obj in (*submission.folders, *submission.associations, *submission.submission_sets)}


_RULES: tuple[_Rule, ...] = (
    _one_submission_set,
    _unique_entry_uuids,
    _required_attributes,
    _object_type,
    _unique_id_syntax,
    _patient_id_syntax,
    _times,
    _hash_and_size,
    _duplicate_unique_ids,
    _one_patient,
    _associations,
    _submission_set_membership,
)
