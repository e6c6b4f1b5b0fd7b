"""Preparing a request from a kit template, in the toolkit's order.

For parsed transactions: (1) substitute external params and UseReport values, (2) give top-level objects
without an id a symbolic one, (3) built-in tokens, (4) overwrite patient ids unless NoPatientId, (5) UseId,
(6) allocate uniqueIds, (7) stamp the SubmissionSet sourceId, (8) AssignUuids with references following,
(9) UseId and built-in tokens again. Each allocation is logged as ``Assign symbol=... id=...`` because later
steps (UseId) and Assertions read those logs.

Everything here works on local names, so 2.1 and 3.0 templates are prepared the same way before conversion.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

from lxml import etree

from ...ns import XDS
from ...xds import constants as c

__all__ = [
    "DE_PATIENT_ID", "DE_UNIQUE_ID", "FOLDER_PATIENT_ID", "FOLDER_UNIQUE_ID", "SS_PATIENT_ID", "SS_SOURCE_ID",
    "SS_UNIQUE_ID", "PLACEHOLDER", "PatientIdAllocator", "PrepareOptions", "PreparedMetadata", "UniqueIdAllocator",
    "assign_missing_ids", "assign_source_id", "assign_uuids", "builtin_tokens", "allocate_unique_ids",
    "overwrite_patient_ids", "placeholders_in", "prepare_metadata", "substitute",
]

DE_PATIENT_ID, SS_PATIENT_ID, FOLDER_PATIENT_ID = c.DE_PATIENT_ID, c.SS_PATIENT_ID, c.FOLDER_PATIENT_ID
DE_UNIQUE_ID, SS_UNIQUE_ID, FOLDER_UNIQUE_ID = c.DE_UNIQUE_ID, c.SS_UNIQUE_ID, c.FOLDER_UNIQUE_ID
SS_SOURCE_ID = c.SS_SOURCE_ID

_PATIENT_ID_SCHEMES = frozenset({DE_PATIENT_ID, SS_PATIENT_ID, FOLDER_PATIENT_ID})
_UNIQUE_ID_SCHEMES = frozenset({DE_UNIQUE_ID, SS_UNIQUE_ID, FOLDER_UNIQUE_ID})
_REFERENCE_ATTRIBUTES = ("classifiedObject", "sourceObject", "targetObject", "registryObject")
# Objects that get a symbolic id when the template has none (the toolkit's list misses RegistryPackage).
_NEEDS_SYMBOLIC_ID = frozenset({"ExtrinsicObject", "Association", "Classification", "ExternalIdentifier"})
_SKIPPED_SUBSTITUTION = frozenset({"Report", "UseReport", "UseId"})
_XDS_DOCUMENT = f"{{{XDS}}}Document"

#: A placeholder: ``$name$``. Slot names such as ``$XDSDocumentEntryPatientId`` have no closing ``$``.
PLACEHOLDER = re.compile(r"\$[A-Za-z0-9_]+\$")


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _elements(root: etree._Element, local: str | None = None) -> Iterable[etree._Element]:
    return (e for e in root.iter() if isinstance(e.tag, str) and (local is None or _local(e) == local))


# --------------------------------------------------------------------------- allocators


class PatientIdAllocator:
    """``P<MMddHHmmss>.<n>^^^&<aa>&ISO``: fixed timestamp per run, n from 2, thread-safe."""

    def __init__(self, assigning_authority: str = "1.3.6.1.4.1.21367.13.20.1000", *,
                 now: datetime | None = None) -> None:
        self.assigning_authority = assigning_authority
        self.stamp = (now or datetime.now(timezone.utc)).strftime("%m%d%H%M%S")
        self._numbers = itertools.count(2)
        self._lock = threading.Lock()

    def new(self) -> str:
        with self._lock:
            number = next(self._numbers)
        return f"P{self.stamp}.{number}^^^&{self.assigning_authority}&ISO"


class UniqueIdAllocator:
    """``1.2.42.<yyyyMMddHHmmss>.<n>``: fresh OIDs for DocumentEntry/SubmissionSet/Folder uniqueIds."""

    def __init__(self, *, root: str = "1.2.42", now: datetime | None = None) -> None:
        self.prefix = f"{root}.{(now or datetime.now(timezone.utc)).strftime('%Y%m%d%H%M%S')}"
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def new(self) -> str:
        with self._lock:
            number = next(self._numbers)
        return f"{self.prefix}.{number}"


def builtin_tokens(now: datetime | None = None) -> dict[str, str]:
    """The toolkit's standard symbols ($now$, $lastyear$)."""
    now = now or datetime.now(timezone.utc)
    return {"$now$": now.strftime("%Y%m%d%H%M%S"), "$lastyear$": str(now.year - 1)}


# --------------------------------------------------------------------------- substitution


def _replace_all(text: str, values: Mapping[str, str]) -> str:
    for symbol, value in values.items():
        if symbol and symbol in text:
            text = text.replace(symbol, value)
    return text


def substitute(root: etree._Element, values: Mapping[str, str]) -> None:
    """Literal replacement in text and attribute values, skipping Report/UseReport/UseId and xds:Document."""
    if not values:
        return
    stack = [root]
    while stack:
        element = stack.pop()
        if not isinstance(element.tag, str):
            continue
        if _local(element) in _SKIPPED_SUBSTITUTION or element.tag == _XDS_DOCUMENT:
            continue
        for name, value in element.attrib.items():
            replaced = _replace_all(value, values)
            if replaced != value:
                element.set(name, replaced)
        if element.text:
            element.text = _replace_all(element.text, values)
        for child in element:
            if child.tail:
                child.tail = _replace_all(child.tail, values)
            stack.append(child)


def placeholders_in(root: etree._Element) -> set[str]:
    """Placeholders still present (a request still carrying one was not fully prepared)."""
    found: set[str] = set()
    for element in _elements(root):
        for value in element.attrib.values():
            found.update(PLACEHOLDER.findall(value))
        found.update(PLACEHOLDER.findall(element.text or ""))
    return found


# --------------------------------------------------------------------------- identifiers


def _top_level_objects(root: etree._Element) -> list[etree._Element]:
    lists = [e for e in _elements(root) if _local(e) in ("LeafRegistryObjectList", "RegistryObjectList")]
    return [child for child in lists[0] if isinstance(child.tag, str)] if lists else []


def assign_missing_ids(root: etree._Element, *, token: str | None = None) -> list[str]:
    """Top-level objects without id get ``ID_<token>_<n>`` (RegistryPackage excluded, as in the toolkit)."""
    token = token or secrets.token_hex(4)
    given = []
    for number, element in enumerate(_top_level_objects(root)):
        if _local(element) in _NEEDS_SYMBOLIC_ID and not element.get("id"):
            element.set("id", f"ID_{token}_{number}")
            given.append(element.get("id"))
    return given


def _owner_id(identifier: etree._Element) -> str:
    parent = identifier.getparent()
    return (parent.get("id") if parent is not None else None) or identifier.get("registryObject") or ""


def overwrite_patient_ids(root: etree._Element, patient_id: str) -> dict[str, str]:
    """DE/SS/Folder patientId identifiers := patient_id; sourcePatientId is left alone. Returns the log."""
    log: dict[str, str] = {}
    for identifier in _elements(root, "ExternalIdentifier"):
        if identifier.get("identificationScheme") in _PATIENT_ID_SCHEMES:
            identifier.set("value", patient_id)
            log[_owner_id(identifier)] = patient_id
    return log


def allocate_unique_ids(root: etree._Element, new_uid: Callable[[], str], *, skip_all: bool = False,
                        keep_object: str | None = None) -> dict[str, str]:
    """Fresh uniqueIds for every DE/SS/Folder; NoAssignUids turns it off (wholly, or for one object)."""
    log: dict[str, str] = {}
    if skip_all and keep_object is None:
        return log
    for identifier in _elements(root, "ExternalIdentifier"):
        owner = _owner_id(identifier)
        if identifier.get("identificationScheme") not in _UNIQUE_ID_SCHEMES or owner == keep_object:
            continue
        value = new_uid()
        identifier.set("value", value)
        log[owner] = value
    return log


def assign_source_id(root: etree._Element, source_id: str) -> dict[str, str]:
    log: dict[str, str] = {}
    for identifier in _elements(root, "ExternalIdentifier"):
        if identifier.get("identificationScheme") == SS_SOURCE_ID:
            identifier.set("value", source_id)
            log[_owner_id(identifier)] = source_id
    return log


def assign_uuids(root: etree._Element) -> dict[str, str]:
    """Every non-``urn:uuid:`` id gets a fresh UUID and references to it follow; ``lid`` is untouched."""
    mapping: dict[str, str] = {}
    for element in _elements(root):
        current = element.get("id")
        if current is None or current.startswith("urn:uuid:") or element.tag == _XDS_DOCUMENT:
            continue
        new = mapping.get(current) or f"urn:uuid:{uuid.uuid4()}"
        mapping[current] = new
        element.set("id", new)
    for element in _elements(root):
        for name in _REFERENCE_ATTRIBUTES:
            value = element.get(name)
            if value in mapping:
                element.set(name, mapping[value])
    return mapping


# --------------------------------------------------------------------------- the whole preparation


@dataclass(frozen=True, kw_only=True)
class PrepareOptions:
    """The transaction instructions that steer preparation."""

    patient_id: str | None
    source_id: str
    assign_uuids: bool = False
    no_assign_uids: bool = False
    no_assign_uids_id: str | None = None
    no_patient_id: bool = False
    parse_metadata: bool = True


@dataclass(frozen=True, kw_only=True)
class PreparedMetadata:
    """The request tree (prepared in place) and the Assign logs of this step."""

    root: etree._Element
    assigned_patient_ids: Mapping[str, str] = field(default_factory=dict)
    assigned_uids: Mapping[str, str] = field(default_factory=dict)
    assigned_source_ids: Mapping[str, str] = field(default_factory=dict)
    assigned_uuids: Mapping[str, str] = field(default_factory=dict)

    def automatic_reports(self) -> dict[str, str]:
        """``<symbol>_uid`` per allocated uniqueId and ``<symbol>_uuid`` per assigned UUID."""
        reports = {f"{symbol}_uid": value for symbol, value in self.assigned_uids.items()}
        reports.update({f"{symbol}_uuid": value for symbol, value in self.assigned_uuids.items()})
        return reports


def prepare_metadata(root: etree._Element, options: PrepareOptions, *, values: Mapping[str, str],
                     use_ids: Mapping[str, str], new_uid: Callable[[], str],
                     now: datetime | None = None) -> PreparedMetadata:
    """Run the preparation steps on ``root`` (modified in place). ``values`` = params + UseReport values."""
    substitute(root, values)
    tokens = builtin_tokens(now)
    if not options.parse_metadata:
        substitute(root, {**use_ids, **tokens})
        return PreparedMetadata(root=root)
    assign_missing_ids(root)
    substitute(root, tokens)
    patients = {} if options.no_patient_id or not options.patient_id else overwrite_patient_ids(
        root, options.patient_id)
    substitute(root, use_ids)
    uids = allocate_unique_ids(root, new_uid, skip_all=options.no_assign_uids,
                               keep_object=options.no_assign_uids_id)
    sources = assign_source_id(root, options.source_id)
    uuids = assign_uuids(root) if options.assign_uuids else {}
    substitute(root, {**use_ids, **tokens})
    return PreparedMetadata(root=root, assigned_patient_ids=patients, assigned_uids=uids,
                            assigned_source_ids=sources, assigned_uuids=uuids)
