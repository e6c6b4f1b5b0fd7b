"""DICOM AuditMessage (PS3.15 A.5, as profiled by IHE ATNA), sans-I/O: encode, read back, validate.

:func:`encode` turns an :class:`~ihe_engine.audit.hook.AuditRecord` into the XML an Audit Record Repository
expects. :func:`analyse` reads received bytes (through :mod:`ihe_engine.xmlsafe`, never lxml directly) into an
:class:`AuditFacts` -- what the repository indexes -- plus the list of :class:`Problem` found by :func:`validate`.

Reading is lenient and validation is separate on purpose: a repository must keep every message it receives, so
an invalid one is stored with its problems and still found by whatever could be read from it (its patient, its
event), never dropped. The rules of the DICOM schema (required elements and attributes, order and cardinality,
enumerations, coded values, base64 and dateTime lexical forms) are written here in code, so validating costs one
walk of a tree that was parsed anyway; the test suite checks they agree with dicom2017c.xsd.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from lxml import etree

from .. import xmlsafe
from ..errors import RemoteProtocolError
from .hook import AuditRecord, Code, Participant, ParticipantObject

__all__ = ["encode", "analyse", "validate", "AuditFacts", "Problem", "ActiveParticipantFacts", "ObjectFacts",
           "MAX_MESSAGE_BYTES", "PATIENT_NUMBER", "SOURCE_TYPE_APPLICATION_SERVER"]

MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest audit message read; above it the message is stored flagged (a syslog frame is 1 MiB at most)."""

PATIENT_NUMBER: Code = ("2", "RFC-3881", "Patient Number")
SOURCE_TYPE_APPLICATION_SERVER: Code = ("4", "DCM", "Application Server process or thread")

_ACTIONS = frozenset("CRUDE")
_OUTCOMES = frozenset({"0", "4", "8", "12"})
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_XSD_DATETIME = re.compile(
    r"-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?\Z")


# --------------------------------------------------------------------------------------------------- encoding


def encode(record: AuditRecord, *, source_id: str, enterprise_site_id: str | None = None,
           source_types: tuple[Code, ...] = (SOURCE_TYPE_APPLICATION_SERVER,)) -> bytes:
    """The AuditMessage for ``record``, as UTF-8 bytes with an XML declaration; ``source_id`` names this node."""
    root = etree.Element("AuditMessage")
    _event_identification(root, record)
    for participant in record.participants:
        _active_participant(root, participant)
    source = etree.SubElement(root, "AuditSourceIdentification")
    if enterprise_site_id:
        source.set("AuditEnterpriseSiteID", enterprise_site_id)
    source.set("AuditSourceID", source_id)
    for code in source_types:
        _coded(source, "AuditSourceTypeCode", code)
    for item in record.objects:
        _participant_object(root, item)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _coded(parent: etree._Element, tag: str, code: Code) -> etree._Element:
    value, system, text = code
    return etree.SubElement(parent, tag, {"csd-code": value, "codeSystemName": system, "originalText": text})


def _event_identification(root: etree._Element, record: AuditRecord) -> None:
    when = record.when if record.when.tzinfo else record.when.replace(tzinfo=timezone.utc)
    event = etree.SubElement(root, "EventIdentification", {
        "EventActionCode": record.action,
        "EventDateTime": when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "EventOutcomeIndicator": str(record.outcome)})
    _coded(event, "EventID", record.event_id)
    for code in record.event_types:
        _coded(event, "EventTypeCode", code)
    if record.outcome_description:
        etree.SubElement(event, "EventOutcomeDescription").text = _xml_text(record.outcome_description)
    for code in record.purposes_of_use:
        _coded(event, "PurposeOfUse", code)


def _active_participant(root: etree._Element, participant: Participant) -> None:
    element = etree.SubElement(root, "ActiveParticipant", {"UserID": _xml_text(participant.user_id)})
    if participant.alternative_user_id:
        element.set("AlternativeUserID", _xml_text(participant.alternative_user_id))
    if participant.user_name:
        element.set("UserName", _xml_text(participant.user_name))
    element.set("UserIsRequestor", "true" if participant.is_requestor else "false")
    if participant.network_access_point:
        element.set("NetworkAccessPointID", _xml_text(participant.network_access_point))
        element.set("NetworkAccessPointTypeCode", _access_point_type(participant.network_access_point))
    if participant.role is not None:
        _coded(element, "RoleIDCode", participant.role)


def _access_point_type(access_point: str) -> str:
    """2 for an IPv4/IPv6 address, 1 for a machine name (DICOM NetworkAccessPointTypeCode)."""
    stripped = access_point.strip("[]")
    if ":" in stripped or re.fullmatch(r"[\d.]+", stripped):
        return "2"
    return "1"


def _participant_object(root: etree._Element, item: ParticipantObject) -> None:
    element = etree.SubElement(root, "ParticipantObjectIdentification", {
        "ParticipantObjectID": _xml_text(item.object_id),
        "ParticipantObjectTypeCode": str(item.type_code),
        "ParticipantObjectTypeCodeRole": str(item.type_code_role)})
    _coded(element, "ParticipantObjectIDTypeCode", item.id_type)
    if item.query is not None:
        etree.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(item.query).decode("ascii")
    elif item.name:
        etree.SubElement(element, "ParticipantObjectName").text = _xml_text(item.name)
    for detail_type, value in item.details:
        etree.SubElement(element, "ParticipantObjectDetail",
                         {"type": detail_type, "value": base64.b64encode(value).decode("ascii")})


_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """Values copied from peers (HL7 fields, URLs) may hold control characters XML 1.0 cannot carry."""
    return _XML_FORBIDDEN.sub("\ufffd", text)


# --------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Problem:
    """One rule a received message breaks: where (a path like ``ActiveParticipant[2]/@UserID``) and what."""

    location: str
    text: str

    def __str__(self) -> str:
        return f"{self.location}: {self.text}"


@dataclass(frozen=True, kw_only=True)
class ActiveParticipantFacts:
    user_id: str | None
    alternative_user_id: str | None = None
    user_name: str | None = None
    is_requestor: bool | None = None
    network_access_point: str | None = None
    network_access_point_type: str | None = None
    roles: tuple[Code, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ObjectFacts:
    object_id: str | None
    type_code: str | None = None
    type_code_role: str | None = None
    id_type: Code | None = None
    name: str | None = None
    query: bytes | None = None
    details: tuple[tuple[str, str], ...] = ()
    """(type, base64 value as received)."""

    @property
    def is_patient(self) -> bool:
        return self.type_code == "1" and self.type_code_role == "1" and bool(self.object_id)


@dataclass(frozen=True, kw_only=True)
class AuditFacts:
    """What could be read from a message, valid or not; ``None`` where the message did not say."""

    event_id: Code | None = None
    action: str | None = None
    outcome: str | None = None
    event_time: datetime | None = None
    event_types: tuple[Code, ...] = ()
    outcome_description: str | None = None
    purposes_of_use: tuple[Code, ...] = ()
    participants: tuple[ActiveParticipantFacts, ...] = ()
    source_id: str | None = None
    enterprise_site_id: str | None = None
    source_types: tuple[Code, ...] = ()
    objects: tuple[ObjectFacts, ...] = ()
    problems: tuple[Problem, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def patient_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item.object_id for item in self.objects if item.is_patient))  # type: ignore

    @property
    def user_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.user_id for p in self.participants if p.user_id))  # type: ignore

    @property
    def object_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item.object_id for item in self.objects
                                   if item.object_id and not item.is_patient))  # type: ignore

    @property
    def requestor(self) -> ActiveParticipantFacts | None:
        return next((p for p in self.participants if p.is_requestor), None)


def analyse(data: bytes) -> AuditFacts:
    """Read and validate received bytes; never raises for bad input (the problems say what is wrong)."""
    try:
        root = xmlsafe.parse(data, max_bytes=MAX_MESSAGE_BYTES, what="audit message")
    except RemoteProtocolError as error:
        return AuditFacts(problems=(Problem(error.location or "message", error.message),))
    return AuditFacts(**_read(root), problems=tuple(validate(root)))


def _read(root: etree._Element) -> dict:
    """What the message says, in one pass over its elements (missing parts are simply absent)."""
    participants, objects = [], []
    facts: dict = {}
    for child in root:
        tag = child.tag
        if tag == "ActiveParticipant":
            participants.append(_read_participant(child))
        elif tag == "ParticipantObjectIdentification":
            objects.append(_read_object(child))
        elif tag == "EventIdentification" and "action" not in facts:
            facts.update(_read_event(child))
        elif tag == "AuditSourceIdentification" and "source_id" not in facts:
            attributes = child.attrib
            facts.update(source_id=attributes.get("AuditSourceID"),
                         enterprise_site_id=attributes.get("AuditEnterpriseSiteID"),
                         source_types=tuple(_read_code(e) for e in child if e.tag == "AuditSourceTypeCode"))
    facts.update(participants=tuple(participants), objects=tuple(objects))
    return facts


def _read_event(event: etree._Element) -> dict:
    attributes = event.attrib
    facts: dict = {"action": attributes.get("EventActionCode"), "outcome": attributes.get("EventOutcomeIndicator"),
                   "event_time": _parse_datetime(attributes.get("EventDateTime"))}
    types, purposes = [], []
    for child in event:
        tag = child.tag
        if tag == "EventID" and "event_id" not in facts:
            facts["event_id"] = _read_code(child)
        elif tag == "EventTypeCode":
            types.append(_read_code(child))
        elif tag == "EventOutcomeDescription":
            facts["outcome_description"] = child.text
        elif tag == "PurposeOfUse":
            purposes.append(_read_code(child))
    facts.update(event_types=tuple(types), purposes_of_use=tuple(purposes))
    return facts


def _read_code(element: etree._Element) -> Code:
    """RFC 3881 senders write ``code``/``displayName``; DICOM ``csd-code``/``originalText``: read either."""
    attributes = element.attrib
    code = attributes.get("csd-code") or attributes.get("code") or ""
    text = attributes.get("originalText") or attributes.get("displayName") or ""
    return code, attributes.get("codeSystemName") or "", text


def _read_participant(element: etree._Element) -> ActiveParticipantFacts:
    attributes = element.attrib
    return ActiveParticipantFacts(
        user_id=attributes.get("UserID"), alternative_user_id=attributes.get("AlternativeUserID"),
        user_name=attributes.get("UserName"),
        is_requestor=_BOOLEANS.get((attributes.get("UserIsRequestor") or "").strip()),
        network_access_point=attributes.get("NetworkAccessPointID"),
        network_access_point_type=attributes.get("NetworkAccessPointTypeCode"),
        roles=tuple(_read_code(e) for e in element if e.tag == "RoleIDCode"))


def _read_object(element: etree._Element) -> ObjectFacts:
    attributes = element.attrib
    id_type = name = query = None
    details = []
    for child in element:
        tag = child.tag
        if tag == "ParticipantObjectIDTypeCode" and id_type is None:
            id_type = _read_code(child)
        elif tag == "ParticipantObjectName":
            name = child.text
        elif tag == "ParticipantObjectQuery":
            query = _decode_base64(child.text)
        elif tag == "ParticipantObjectDetail":
            details.append((child.get("type") or "", child.get("value") or ""))
    return ObjectFacts(
        object_id=attributes.get("ParticipantObjectID"), type_code=attributes.get("ParticipantObjectTypeCode"),
        type_code_role=attributes.get("ParticipantObjectTypeCodeRole"), id_type=id_type, name=name, query=query,
        details=tuple(details))


def _decode_base64(text: str | None) -> bytes | None:
    try:
        return base64.b64decode((text or "").encode("ascii"), validate=False)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


@functools.lru_cache(maxsize=16)
def _parse_datetime(text: str | None) -> datetime | None:
    """Cached: :func:`analyse` reads EventDateTime, then :func:`validate` checks the same text (~3 us each)."""
    if not text or not _XSD_DATETIME.match(text.strip()):
        return None
    value = text.strip().replace("Z", "+00:00")
    head, dot, rest = value.partition(".")
    if dot:  # Python takes at most 6 fraction digits
        digits = re.match(r"\d+", rest)
        fraction = digits.group(0) if digits else ""
        value = f"{head}.{fraction[:6].ljust(6, '0')}{rest[len(fraction):]}"
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        parsed.astimezone(timezone.utc)  # year 1 at +14:00 has no UTC instant
    except (ValueError, OverflowError):
        return None
    return parsed


# --------------------------------------------------------------------------------------------------- validation

# (child, min, max) in schema order; max None = unbounded.
_CONTENT: dict[str, tuple[tuple[str, int, int | None], ...]] = {
    "AuditMessage": (("EventIdentification", 1, 1), ("ActiveParticipant", 1, None),
                     ("AuditSourceIdentification", 1, 1), ("ParticipantObjectIdentification", 0, None)),
    "EventIdentification": (("EventID", 1, 1), ("EventTypeCode", 0, None), ("EventOutcomeDescription", 0, 1),
                            ("PurposeOfUse", 0, None)),
    "ActiveParticipant": (("RoleIDCode", 0, None), ("MediaIdentifier", 0, 1)),
    "AuditSourceIdentification": (("AuditSourceTypeCode", 0, None),),
    "ParticipantObjectIdentification": (("ParticipantObjectIDTypeCode", 1, 1), ("ParticipantObjectName", 0, 1),
                                        ("ParticipantObjectQuery", 0, 1), ("ParticipantObjectDetail", 0, None),
                                        ("ParticipantObjectDescription", 0, None)),
}
_CODED = frozenset({"EventID", "EventTypeCode", "PurposeOfUse", "RoleIDCode", "ParticipantObjectIDTypeCode"})
# attribute: (required, allowed values or None, lexical check or None)
_ATTRIBUTES: dict[str, dict[str, tuple[bool, frozenset[str] | None, str | None]]] = {
    "EventIdentification": {"EventActionCode": (False, frozenset(_ACTIONS), None),
                            "EventDateTime": (True, None, "dateTime"),
                            "EventOutcomeIndicator": (True, frozenset(_OUTCOMES), None)},
    "ActiveParticipant": {"UserID": (True, None, None), "AlternativeUserID": (False, None, None),
                          "UserName": (False, None, None), "UserIsRequestor": (True, frozenset(_BOOLEANS), None),
                          "NetworkAccessPointID": (False, None, None),
                          "NetworkAccessPointTypeCode": (False, frozenset("12345"), None)},
    "AuditSourceIdentification": {"AuditSourceID": (True, None, None), "AuditEnterpriseSiteID": (False, None, None)},
    "ParticipantObjectIdentification": {
        "ParticipantObjectID": (False, None, None),
        "ParticipantObjectTypeCode": (False, frozenset("1234"), None),
        "ParticipantObjectTypeCodeRole": (False, frozenset(str(n) for n in range(1, 27)), None),
        "ParticipantObjectDataLifeCycle": (False, frozenset(str(n) for n in range(1, 16)), None),
        "ParticipantObjectSensitivity": (False, None, None)},
    "ParticipantObjectDetail": {"type": (True, None, None), "value": (True, None, "base64")},
}


_ORDER = {tag: {name: index for index, (name, _, _) in enumerate(content)} for tag, content in _CONTENT.items()}
_LEAVES_WITH_CONTENT = frozenset({"EventOutcomeDescription", "ParticipantObjectName", "ParticipantObjectQuery",
                                  "ParticipantObjectDescription", "MediaIdentifier"})
_CODED_REQUIRED = ("csd-code", "codeSystemName", "originalText")


def validate(root: etree._Element) -> list[Problem]:
    """Every DICOM audit schema rule ``root`` breaks (empty when valid).

    On the ingest hot path: one walk, attribute maps read once per element, and a problem's location is only
    spelled out when there is a problem.
    """
    problems: list[Problem] = []
    if root.tag != "AuditMessage":
        return [Problem(str(root.tag), "the root element must be AuditMessage (no namespace)")]
    _check_element(root, problems)
    return problems


def _path(element: etree._Element) -> str:
    """``AuditMessage/ActiveParticipant[2]/RoleIDCode[1]``: where a problem is, computed only when one is found."""
    parts = []
    parent = element.getparent()
    while parent is not None:
        position = 1 + sum(1 for sibling in element.itersiblings(preceding=True) if sibling.tag == element.tag)
        parts.append(f"{element.tag}[{position}]")
        element, parent = parent, parent.getparent()
    parts.append(str(element.tag))
    return "/".join(reversed(parts))


def _problem(problems: list[Problem], element: etree._Element, text: str, attribute: str | None = None) -> None:
    path = _path(element)
    problems.append(Problem(f"{path}/@{attribute}" if attribute else path, text))


def _check_element(element: etree._Element, problems: list[Problem]) -> None:
    tag = element.tag
    attributes = element.attrib
    if tag in _CODED:
        _check_coded(element, attributes, _CODED_REQUIRED, problems)
    elif tag == "AuditSourceTypeCode":
        _check_coded(element, attributes, _CODED_REQUIRED[:1], problems)
    rules = _ATTRIBUTES.get(tag)
    if rules:
        for name, (required, allowed, lexical) in rules.items():
            value = attributes.get(name)
            if value is None:
                if required:
                    _problem(problems, element, "required attribute is missing", name)
            elif allowed is not None or lexical is not None:
                _check_value(element, name, value, allowed, lexical, problems)
    if tag == "ActiveParticipant" and attributes.get("NetworkAccessPointTypeCode") and not attributes.get(
            "NetworkAccessPointID"):
        _problem(problems, element, "NetworkAccessPointTypeCode is given without NetworkAccessPointID")
    if tag == "ParticipantObjectQuery" and not _is_base64(element.text or ""):
        _problem(problems, element, "not valid base64")
    order = _ORDER.get(tag)
    if order is not None:
        _check_content(element, tag, order, problems)
    elif tag not in _LEAVES_WITH_CONTENT and len(element):
        _problem(problems, element, f"{tag} must be empty")


def _check_content(element: etree._Element, tag: str, order: dict[str, int], problems: list[Problem]) -> None:
    counts: dict[str, int] = {}
    last = -1
    for child in element:
        name = child.tag
        if not isinstance(name, str):
            continue  # comments and processing instructions
        index = order.get(name)
        if index is None:
            _problem(problems, element, f"unexpected element {name}")
            continue
        counts[name] = counts.get(name, 0) + 1
        if index < last:
            expected = ", ".join(n for n, _, _ in _CONTENT[tag])
            _problem(problems, child, f"{name} is out of order (expected order: {expected})")
        elif index > last:
            last = index
        _check_element(child, problems)
    for name, minimum, maximum in _CONTENT[tag]:
        found = counts.get(name, 0)
        if found < minimum:
            _problem(problems, element, f"{name} is missing (at least {minimum} required)")
        elif maximum is not None and found > maximum:
            _problem(problems, element, f"{name} occurs {found} times (at most {maximum})")
    if tag == "ParticipantObjectIdentification" and counts.get("ParticipantObjectName") and counts.get(
            "ParticipantObjectQuery"):
        _problem(problems, element, "ParticipantObjectName and ParticipantObjectQuery are exclusive")


def _check_value(element: etree._Element, name: str, value: str, allowed: frozenset[str] | None,
                 lexical: str | None, problems: list[Problem]) -> None:
    token = value.strip()
    if allowed is not None and token not in allowed:
        _problem(problems, element, f"{value!r} is not one of {', '.join(sorted(allowed, key=_natural))}", name)
    elif lexical == "dateTime" and _parse_datetime(token) is None:
        _problem(problems, element, f"{value!r} is not an xs:dateTime", name)
    elif lexical == "base64" and not _is_base64(value):
        _problem(problems, element, "not valid base64", name)


def _check_coded(element: etree._Element, attributes: Any, required: tuple[str, ...],
                 problems: list[Problem]) -> None:
    for name in required:
        if not (attributes.get(name) or "").strip():
            hint = " (RFC 3881 'code' is not DICOM)" if name == "csd-code" and attributes.get("code") else ""
            _problem(problems, element, f"coded value attribute is missing or empty{hint}", name)


def _is_base64(text: str) -> bool:
    compact = "".join(text.split())
    if len(compact) % 4:
        return False
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _natural(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (0, value)
