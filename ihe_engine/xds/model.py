"""The XDS metadata model: immutable values built from ebRIM by :mod:`ihe_engine.xds.ebrim`.

Every object keeps the values IHE names (typed fields for what storage indexes and validation checks), all its
slots (extra ones included) and the rim element it came from, so a LeafClass answer can return exactly what was
submitted. Times stay the HL7 DTM strings as submitted; :func:`dtm_key` gives a comparable form for ranges.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Union

from lxml import etree

from ..ns import XOP, qn
from .constants import DE_ON_DEMAND

__all__ = [
    "dtm_key", "is_xds_dtm",
    "Code", "Slot", "Author", "Classification", "ExternalIdentifier",
    "RegistryObject", "DocumentEntry", "SubmissionSet", "Folder", "Association", "ObjectRef",
    "DocumentContent", "Submission", "TopLevelObject",
]

# --- Times --------------------------------------------------------------------------------------------------

_XDS_DTM = re.compile(r"\d{4}(?:\d{2}){0,5}")
_HL7_DTM = re.compile(r"(?P<digits>\d{4}(?:\d{2}){0,5})(?:\.\d{1,4})?(?P<offset>[+-]\d{4})?")
_KEY_LENGTH = 14  # YYYYMMDDHHMMSS


def is_xds_dtm(value: str) -> bool:
    """True for an XDS metadata time: UTC, no offset, no fraction, precision from year to second."""
    return _XDS_DTM.fullmatch(value) is not None


def dtm_key(value: str, *, upper: bool = False) -> str:
    """A 14-digit string whose lexical order is time order, for range comparisons in queries.

    XDS stores a time as given (``2005``, ``20051224``, ``200412230800``); a value stands for its whole
    precision period. The key pads the missing digits with ``0`` (the start of the period) or, with
    ``upper=True``, with ``9`` (past its end), so ``From <= value < To`` becomes plain string comparison:
    store ``dtm_key(v)``, compare with ``dtm_key(From)`` and ``dtm_key(To)``. Keys are for ordering only (a
    padded month ``00`` is not a date). An HL7 fraction is dropped; an offset (not allowed in XDS, tolerated
    here) is applied to get UTC when the value has at least an hour. Raises ValueError for anything else.
    """
    match = _HL7_DTM.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not an HL7 DTM value")
    digits, offset = match["digits"], match["offset"]
    if offset and len(digits) >= 10:
        digits = _to_utc(digits, offset)
    return digits.ljust(_KEY_LENGTH, "9" if upper else "0")


def _to_utc(digits: str, offset: str) -> str:
    precise = digits.ljust(_KEY_LENGTH, "0")
    moment = datetime.strptime(precise, "%Y%m%d%H%M%S")
    shift = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    moment = moment - shift if offset[0] == "+" else moment + shift
    return moment.strftime("%Y%m%d%H%M%S")[:len(digits)]


def _key_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return dtm_key(value)
    except ValueError:
        return None


# --- Small values -------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Code:
    """A coded value: code = nodeRepresentation, scheme = the codingScheme slot, display = the Name."""

    code: str
    scheme: str
    display: str | None = None

    def query_form(self) -> str:
        """``code^^scheme``, the form stored queries use."""
        return f"{self.code}^^{self.scheme}"


@dataclass(frozen=True, kw_only=True)
class Slot:
    name: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Author:
    """One author classification (authorPerson is 0..1, the others repeat)."""

    person: str | None = None
    institutions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    telecoms: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Classification:
    """A rim:Classification, nested in its object or top-level (``nested`` says which)."""

    id: str | None
    classified_object: str | None
    scheme: str | None = None  # classificationScheme (external classification: codes, authors)
    node: str | None = None  # classificationNode (internal: SubmissionSet / Folder / limitedMetadata)
    node_representation: str | None = None
    name: str | None = None
    slots: tuple[Slot, ...] = ()
    nested: bool = True
    element: etree._Element | None = field(default=None, compare=False, repr=False)

    def slot_values(self, name: str) -> tuple[str, ...]:
        return next((slot.values for slot in self.slots if slot.name == name), ())


@dataclass(frozen=True, kw_only=True)
class ExternalIdentifier:
    id: str | None
    scheme: str
    registry_object: str | None
    value: str
    name: str | None = None
    nested: bool = True
    element: etree._Element | None = field(default=None, compare=False, repr=False)


# --- Registry objects ---------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RegistryObject:
    """What every identifiable object carries: ids, status, texts, every slot and the submitted element."""

    entry_uuid: str
    lid: str | None = None
    version: str | None = None  # VersionInfo/@versionName (Metadata Update)
    status: str | None = None
    object_type: str | None = None
    home: str | None = None
    title: str | None = None
    comments: str | None = None
    slots: tuple[Slot, ...] = ()
    classifications: tuple[Classification, ...] = ()
    external_identifiers: tuple[ExternalIdentifier, ...] = ()
    element: etree._Element | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.entry_uuid

    def slot_values(self, name: str) -> tuple[str, ...]:
        """Values of the named slot (empty when absent)."""
        return next((slot.values for slot in self.slots if slot.name == name), ())

    def slot_value(self, name: str) -> str | None:
        """The first value of a single-valued slot, or None."""
        values = self.slot_values(name)
        return values[0] if values else None


@dataclass(frozen=True, kw_only=True)
class DocumentEntry(RegistryObject):
    """An rim:ExtrinsicObject: a stable or on-demand document's metadata."""

    mime_type: str | None = None
    unique_id: str | None = None
    patient_id: str | None = None
    source_patient_id: str | None = None
    source_patient_info: tuple[str, ...] = ()
    class_code: Code | None = None
    type_code: Code | None = None
    format_code: Code | None = None
    healthcare_facility_type_code: Code | None = None
    practice_setting_code: Code | None = None
    confidentiality_codes: tuple[Code, ...] = ()
    event_codes: tuple[Code, ...] = ()
    authors: tuple[Author, ...] = ()
    creation_time: str | None = None
    service_start_time: str | None = None
    service_stop_time: str | None = None
    language_code: str | None = None
    legal_authenticator: str | None = None
    hash: str | None = None  # as submitted; validation checks the 40-hex form
    size: str | None = None  # as submitted; validation checks it is a non-negative integer
    repository_unique_id: str | None = None
    uri: str | None = None
    document_availability: str | None = None
    reference_ids: tuple[str, ...] = ()
    limited_metadata: bool = False

    @property
    def on_demand(self) -> bool:
        return self.object_type == DE_ON_DEMAND

    @property
    def creation_time_key(self) -> str | None:
        return _key_or_none(self.creation_time)

    @property
    def service_start_time_key(self) -> str | None:
        return _key_or_none(self.service_start_time)

    @property
    def service_stop_time_key(self) -> str | None:
        return _key_or_none(self.service_stop_time)

    @property
    def size_int(self) -> int | None:
        """The size as an integer, None when absent or not a non-negative integer."""
        return int(self.size) if self.size is not None and self.size.isdigit() else None


@dataclass(frozen=True, kw_only=True)
class SubmissionSet(RegistryObject):
    """An rim:RegistryPackage classified as SubmissionSet."""

    unique_id: str | None = None
    source_id: str | None = None
    patient_id: str | None = None
    submission_time: str | None = None
    content_type_code: Code | None = None
    authors: tuple[Author, ...] = ()
    intended_recipients: tuple[str, ...] = ()
    limited_metadata: bool = False

    @property
    def submission_time_key(self) -> str | None:
        return _key_or_none(self.submission_time)


@dataclass(frozen=True, kw_only=True)
class Folder(RegistryObject):
    """An rim:RegistryPackage classified as Folder."""

    unique_id: str | None = None
    patient_id: str | None = None
    code_list: tuple[Code, ...] = ()
    last_update_time: str | None = None
    limited_metadata: bool = False

    @property
    def last_update_time_key(self) -> str | None:
        return _key_or_none(self.last_update_time)


@dataclass(frozen=True, kw_only=True)
class Association(RegistryObject):
    """An rim:Association; ``association_type`` is always the full URN (bare names are expanded)."""

    association_type: str
    source: str
    target: str
    submission_set_status: str | None = None
    previous_version: str | None = None
    original_status: str | None = None
    new_status: str | None = None
    association_propagation: str | None = None
    documentation: tuple[Code, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ObjectRef:
    """An rim:ObjectRef: a reference to an object already in the registry (or another community)."""

    id: str
    home: str | None = None
    element: etree._Element | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class DocumentContent:
    """An xds:Document of ITI-41: the bytes for the ExtrinsicObject whose id is ``id``.

    The content is either inline base64 text or an xop:Include pointing at an MTOM part; the SOAP layer
    resolves the latter, so this only says which.
    """

    id: str
    element: etree._Element = field(compare=False, repr=False)

    @property
    def xop_href(self) -> str | None:
        include = self.element.find(qn(XOP, "Include"))
        return include.get("href") if include is not None else None

    def inline_bytes(self) -> bytes | None:
        """The decoded inline content, or None when the content is an xop:Include."""
        if self.xop_href is not None:
            return None
        try:
            return base64.b64decode("".join((self.element.text or "").split()), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"Document {self.id} does not hold valid base64 content: {exc}") from None


TopLevelObject = Union[DocumentEntry, SubmissionSet, Folder, Association, ObjectRef, Classification,
                       ExternalIdentifier]


@dataclass(frozen=True, kw_only=True)
class Submission:
    """Everything in one SubmitObjectsRequest (ITI-41/42/57), each kind in submission order.

    ``objects`` holds every top-level object in document order, including top-level classifications and
    external identifiers (which are also attached to the object they point at).
    """

    submission_sets: tuple[SubmissionSet, ...] = ()
    entries: tuple[DocumentEntry, ...] = ()
    folders: tuple[Folder, ...] = ()
    associations: tuple[Association, ...] = ()
    object_refs: tuple[ObjectRef, ...] = ()
    documents: tuple[DocumentContent, ...] = ()
    objects: tuple[TopLevelObject, ...] = ()

    @property
    def submission_set(self) -> SubmissionSet | None:
        """The SubmissionSet when there is exactly one (validation reports any other count)."""
        return self.submission_sets[0] if len(self.submission_sets) == 1 else None

    def registry_objects(self) -> tuple[RegistryObject, ...]:
        """SubmissionSets, DocumentEntries, Folders and Associations, in that order."""
        return (*self.submission_sets, *self.entries, *self.folders, *self.associations)

    def by_id(self) -> dict[str, RegistryObject]:
        return {obj.entry_uuid: obj for obj in self.registry_objects()}

