"""Reading HL7 v3 PIX/PDQ requests (ITI-44, ITI-45, ITI-47, QUQI continuation) into :mod:`.model` values.

Sans-I/O: functions of an already parsed element (the SOAP body payload, parsed by :mod:`ihe_engine.xmlsafe`).
The transmission wrapper is read leniently first (:func:`read_transmission`), so even a refusal can answer the
message it refuses; :func:`check_transmission` then refuses a wrapper that is wrong (AR). Content errors raise
:class:`~.errors.V3Refusal` with HL7 table 0357 codes and the XPath of the element at fault: 101 required
element missing, 102 malformed value (an id root that is not an OID, a birth time that is not a date), 104 a
value longer than the store keeps -- refused rather than truncated, since a cut name is a different name.

The identity status (the v2 PID-32, needed by the French INS rules) has no slot in the v3 patient models; the
engine reads it from ``patient/subjectOf/administrativeObservation`` whose ``code/@codeSystem`` is HL7 table 0445
(Identity Reliability Code, 2.16.840.1.113883.12.445): ``value/@code``, else ``code/@code``.
"""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Iterable

from lxml import etree

from ...ns import HL7V3
from ..cx import CX, CXError
from .errors import DATA_TYPE_ERROR, REQUIRED_MISSING, UNSUPPORTED_INTERACTION, UNSUPPORTED_PROCESSING, \
    AckDetail, V3Refusal
from .model import Address, Domain, InstanceId, Located, PatientFeed, PatientMerge, PatientRecord, PdqParameters, \
    PdqQuery, PersonName, PixQuery, QueryControl, Telecom, Transmission

__all__ = ["read_transmission", "check_transmission", "parse_feed", "parse_merge", "parse_pix_query",
           "parse_pdq_query", "parse_query_control", "read_query_id", "location_of", "MAX_TEXT",
           "IDENTITY_RELIABILITY_SYSTEM"]

MAX_TEXT = 200
"""Longest name, identifier, city... the identity store keeps (its columns are 200 characters)."""
IDENTITY_RELIABILITY_SYSTEM = "2.16.840.1.113883.12.445"
_PROCESSING_CODES = frozenset({"P", "D", "T"})
_DATE = re.compile(r"[0-9]{4}([0-9]{2}([0-9]{2})?)?")
"""The date part of a birth time as the store compares it: YYYY, YYYYMM or YYYYMMDD."""
_GENDERS = {"M": "M", "F": "F", "UN": "U", "U": "U", "O": "O", "A": "A", "N": "N"}


def _q(local: str) -> str:
    return f"{{{HL7V3}}}{local}"


# -- navigation ----------------------------------------------------------------------------------------------------

def _child(element: etree._Element | None, *path: str) -> etree._Element | None:
    for local in path:
        if element is None:
            return None
        element = element.find(_q(local))
    return element


def _children(element: etree._Element | None, local: str) -> list[etree._Element]:
    return [] if element is None else element.findall(_q(local))


def location_of(element: etree._Element, missing_child: str | None = None) -> str:
    """XPath of ``element`` from the message root, each step with its position among same-named siblings.

    The message root is the outermost HL7 v3 element (the SOAP envelope around it is not part of the message).
    """
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        parent = node.getparent()
        name = etree.QName(node).localname
        if parent is None or etree.QName(parent).namespace != HL7V3:
            steps.append(name)
            break
        same = [sibling for sibling in parent if sibling.tag == node.tag]
        steps.append(f"{name}[{same.index(node) + 1}]")
        node = parent
    path = "/" + "/".join(reversed(steps))
    return f"{path}/{missing_child}" if missing_child else path


def _required(parent: etree._Element, *path: str) -> etree._Element:
    """The element at ``path`` under ``parent``; a 101 refusal naming the first step missing."""
    element = parent
    for local in path:
        found = element.find(_q(local))
        if found is None:
            raise V3Refusal.one(REQUIRED_MISSING, f"required element {local} is missing", location_of(element, local))
        element = found
    return element


def _attr(element: etree._Element | None, name: str) -> str:
    return (element.get(name) or "").strip() if element is not None else ""


def _text(element: etree._Element, *, what: str) -> str:
    value = " ".join("".join(element.itertext()).split())
    _check_length(value, element, what)
    return value


def _check_length(value: str, element: etree._Element, what: str) -> None:
    if len(value) > MAX_TEXT:
        raise V3Refusal.one("104", f"{what} is {len(value)} characters long, above the limit of {MAX_TEXT}",
                            location_of(element))


def _instance_id(element: etree._Element | None) -> InstanceId:
    if element is None:
        return InstanceId(null_flavor="UNK")
    return InstanceId(root=_attr(element, "root"), extension=_attr(element, "extension"),
                      null_flavor=_attr(element, "nullFlavor"))


# -- transmission wrapper ------------------------------------------------------------------------------------------

def read_transmission(root: etree._Element) -> Transmission:
    """What an answer needs from the wrapper; never raises, missing parts read as unknown."""
    return Transmission(
        interaction=etree.QName(root).localname,
        message_id=_instance_id(_child(root, "id")),
        creation_time=_attr(_child(root, "creationTime"), "value"),
        processing_code=_attr(_child(root, "processingCode"), "code"),
        accept_ack_code=_attr(_child(root, "acceptAckCode"), "code"),
        sender_device=_instance_id(_child(root, "sender", "device", "id")),
        receiver_device=_instance_id(_child(root, "receiver", "device", "id")))


def check_transmission(root: etree._Element, transmission: Transmission) -> None:
    """Refuse (AR) a wrapper without message id, with another interactionId or an unknown processingCode."""
    problems: list[AckDetail] = []
    if not transmission.message_id.root:
        problems.append(AckDetail(REQUIRED_MISSING, "the message has no id/@root", location_of(root, "id")))
    interaction = _child(root, "interactionId")
    expected = transmission.interaction.removesuffix("_Cancel")  # the WSDL's name for a QUQI_IN000003UV01 cancel
    if interaction is not None and _attr(interaction, "extension") not in ("", expected):
        problems.append(AckDetail(UNSUPPORTED_INTERACTION, f"interactionId {_attr(interaction, 'extension')[:64]!r} "
                                  f"does not match the {transmission.interaction} message it is in",
                                  location_of(interaction)))
    processing = _child(root, "processingCode")
    if transmission.processing_code and transmission.processing_code not in _PROCESSING_CODES:
        problems.append(AckDetail(UNSUPPORTED_PROCESSING, f"processingCode {transmission.processing_code!r} is not "
                                  "P, D or T", location_of(processing)))  # type: ignore[arg-type]
    if problems:
        raise V3Refusal(problems, ack_code="AR", query_code="AE")


# -- identifiers ---------------------------------------------------------------------------------------------------

def _cx(element: etree._Element, *, what: str) -> Located:
    """An II as a patient identifier: ``@extension`` in the domain ``@root``.

    An II with ``@assigningAuthorityName`` but no ``@root`` is read as a namespace-only identifier, as the v2
    feed accepts one (``id^^^NS``) and gateways translating v2 to v3 send it so.
    """
    root, extension = _attr(element, "root"), _attr(element, "extension")
    namespace = _attr(element, "assigningAuthorityName")
    location = location_of(element)
    if not (root or namespace) or not extension:
        missing = "extension" if not extension else "root"
        raise V3Refusal.one(REQUIRED_MISSING, f"{what} has no @{missing}", location)
    _check_length(extension, element, what)
    _check_length(root, element, f"{what} root")
    _check_length(namespace, element, f"{what} assigningAuthorityName")
    try:
        cx = CX(id=extension, namespace_id=namespace, universal_id=root, universal_id_type="ISO" if root else "")
    except CXError as exc:
        raise V3Refusal.one(DATA_TYPE_ERROR, f"{what}: {exc}", location) from None
    return Located(cx, location)


def _domain(element: etree._Element, *, what: str) -> Domain:
    root = _attr(element, "root")
    if not root:
        raise V3Refusal.one(REQUIRED_MISSING, f"{what} has no @root", location_of(element))
    try:
        CX(id="_", universal_id=root, universal_id_type="ISO")
    except CXError:
        raise V3Refusal.one(DATA_TYPE_ERROR, f"{what} {root[:64]!r} is not an OID", location_of(element)) from None
    return Domain(root, location_of(element))


# -- patient ------------------------------------------------------------------------------------------------------

def _patient(patient: etree._Element) -> PatientRecord:
    person = _required(patient, "patientPerson")
    ids = [_cx(element, what="Patient.id") for element in _identifiers(patient)]
    if not ids:
        raise V3Refusal.one(REQUIRED_MISSING, "the patient has no id", location_of(patient, "id"))
    for other in _children(person, "asOtherIDs"):
        ids.extend(_cx(element, what="asOtherIDs.id") for element in _identifiers(other))
    return PatientRecord(
        identifiers=tuple(ids), location=location_of(patient),
        names=tuple(_name(element) for element in _children(person, "name")),
        gender=_gender(_child(person, "administrativeGenderCode")),
        birth_time=_birth_time(_child(person, "birthTime")),
        addresses=tuple(_address(element) for element in [*_children(person, "addr"), *_children(patient, "addr")]),
        telecoms=tuple(_telecom(element) for element in [*_children(person, "telecom"),
                                                          *_children(patient, "telecom")]),
        birthplace=_birthplace(_child(person, "birthPlace")),
        reliability=_reliability(patient))


def _identifiers(element: etree._Element) -> list[etree._Element]:
    """The id children that carry an identifier: ``<id nullFlavor="NA"/>`` says there is none in that domain."""
    return [child for child in _children(element, "id") if not _attr(child, "nullFlavor")]


def _name(element: etree._Element) -> PersonName:
    families = [(part, "BR" in _attr(part, "qualifier").split()) for part in _children(element, "family")]
    return PersonName(
        family=tuple(_text(part, what="a family name") for part, birth in families if not birth),
        given=tuple(_text(part, what="a given name") for part in _children(element, "given")),
        use=_attr(element, "use"),
        birth_family=tuple(_text(part, what="a family name") for part, birth in families if birth))


def _gender(element: etree._Element | None) -> str:
    code = _attr(element, "code")
    if not code:
        return ""
    if code not in _GENDERS:
        raise V3Refusal.one("103", f"administrativeGenderCode {code[:20]!r} is not M, F or UN",
                            location_of(element))  # type: ignore[arg-type]
    return _GENDERS[code]


def _birth_time(element: etree._Element | None) -> str:
    value = _attr(element, "value")
    if not value:
        return ""
    if not _DATE.fullmatch(value[:8]):
        raise V3Refusal.one(DATA_TYPE_ERROR, f"birthTime {value[:40]!r} is not a date (YYYYMMDD...)",
                            location_of(element))  # type: ignore[arg-type]
    return value[:8]


def _part(element: etree._Element, local: str, what: str) -> str:
    found = element.find(_q(local))
    return _text(found, what=what) if found is not None else ""


def _address(element: etree._Element) -> Address:
    return Address(
        street_lines=tuple(_text(line, what="a street address line")
                           for line in _children(element, "streetAddressLine")),
        city=_part(element, "city", "a city"), postal_code=_part(element, "postalCode", "a postal code"),
        state=_part(element, "state", "a state"), country=_part(element, "country", "a country"),
        county=_part(element, "county", "a county"), use=_attr(element, "use"))


def _telecom(element: etree._Element) -> Telecom:
    value = _attr(element, "value")
    _check_length(value, element, "a telecom value")
    return Telecom(value=value, use=_attr(element, "use"))


def _birthplace(element: etree._Element | None) -> str:
    """The birth place's INSEE code (county, as the French CDA rules put it) or city."""
    if element is None:
        return ""
    for address in (_child(element, "addr"), _child(element, "birthplace", "addr")):
        if address is not None:
            found = _address(address)
            if found.county or found.city:
                return found.county or found.city
    return ""


def _reliability(patient: etree._Element) -> str | None:
    for subject in _children(patient, "subjectOf"):
        observation = _child(subject, "administrativeObservation")
        code = _child(observation, "code")
        if _attr(code, "codeSystem") == IDENTITY_RELIABILITY_SYSTEM:
            return (_attr(_child(observation, "value"), "code") or _attr(code, "code"))[:20] or None
    return None


# -- ITI-44 --------------------------------------------------------------------------------------------------------

def _registration_event(root: etree._Element) -> etree._Element:
    return _required(root, "controlActProcess", "subject", "registrationEvent")


def parse_feed(root: etree._Element) -> PatientFeed:
    """PRPA_IN201301UV02 (add) or PRPA_IN201302UV02 (revise)."""
    event = _registration_event(root)
    return PatientFeed(transmission=read_transmission(root), patient=_patient(_required(event, "subject1", "patient")))


def parse_merge(root: etree._Element) -> PatientMerge:
    """PRPA_IN201304UV02: the surviving patient, and the subsumed id in replacementOf/.../priorRegisteredRole."""
    event = _registration_event(root)
    patient = _patient(_required(event, "subject1", "patient"))
    role = _required(event, "replacementOf", "priorRegistration", "subject1", "priorRegisteredRole")
    subsumed = _children(role, "id")
    if not subsumed:
        raise V3Refusal.one(REQUIRED_MISSING, "priorRegisteredRole has no id (the subsumed identifier)",
                            location_of(role, "id"))
    return PatientMerge(transmission=read_transmission(root), patient=patient,
                        subsumed=_cx(subsumed[0], what="priorRegisteredRole.id"))


# -- queries -------------------------------------------------------------------------------------------------------

def _query_refusal(refusal: V3Refusal) -> V3Refusal:
    """A query's content error is a query parameter error: AE in the acknowledgement, QE in the queryAck."""
    return V3Refusal(refusal.details, ack_code="AE", query_code="QE")


def _query_by_parameter(root: etree._Element) -> tuple[etree._Element, InstanceId]:
    query = _required(root, "controlActProcess", "queryByParameter")
    query_id = _required(query, "queryId")
    if not _attr(query_id, "root"):
        raise V3Refusal.one(REQUIRED_MISSING, "queryId has no @root", location_of(query_id))
    return query, _instance_id(query_id)


def _detached(element: etree._Element) -> bytes:
    """``element`` serialised on its own, declaring every namespace in scope where it was.

    QName values (``xsi:type="ns1:II"``) may use a prefix declared on an ancestor -- even on the SOAP envelope --
    that plain serialisation of the element would leave undeclared.
    """
    copy = etree.Element(element.tag, dict(element.attrib), nsmap=element.nsmap)
    copy.text = element.text
    copy.extend(deepcopy(child) for child in element)
    return etree.tostring(copy)


def _values(parameters: etree._Element, local: str) -> Iterable[etree._Element]:
    for parameter in _children(parameters, local):
        yield from _children(parameter, "value")


def parse_pix_query(root: etree._Element) -> PixQuery:
    """PRPA_IN201309UV02: exactly one patientIdentifier value; dataSource values name the domains wanted."""
    try:
        query, query_id = _query_by_parameter(root)
        parameters = _required(query, "parameterList")
        identifiers = list(_values(parameters, "patientIdentifier"))
        if not identifiers:
            raise V3Refusal.one(REQUIRED_MISSING, "the query has no patientIdentifier value",
                                location_of(parameters, "patientIdentifier"))
        if len(identifiers) > 1:
            raise V3Refusal.one(DATA_TYPE_ERROR, "a PIX query names exactly one patient identifier",
                                location_of(identifiers[1]))
        return PixQuery(
            transmission=read_transmission(root), query_id=query_id,
            patient_identifier=_cx(identifiers[0], what="patientIdentifier"),
            data_sources=tuple(_domain(value, what="dataSource") for value in _values(parameters, "dataSource")),
            query_xml=_detached(query))
    except V3Refusal as refusal:
        raise _query_refusal(refusal) from None


def parse_pdq_query(root: etree._Element) -> PdqQuery:
    """PRPA_IN201305UV02: demographics, requested domains (otherIDsScopingOrganization), initialQuantity."""
    try:
        query, query_id = _query_by_parameter(root)
        parameters = _required(query, "parameterList")
        return PdqQuery(
            transmission=read_transmission(root), query_id=query_id,
            parameters=_pdq_parameters(query, parameters),
            domains=tuple(_domain(value, what="otherIDsScopingOrganization")
                          for value in _values(parameters, "otherIDsScopingOrganization")),
            initial_quantity=_positive(_child(query, "initialQuantity"), what="initialQuantity"),
            query_xml=_detached(query))
    except V3Refusal as refusal:
        raise _query_refusal(refusal) from None


def _pdq_parameters(query: etree._Element, parameters: etree._Element) -> PdqParameters:
    values: dict[str, object] = {}
    for element in _values(parameters, "livingSubjectName"):
        name = _name(element)
        if name.family:
            values.setdefault("family_name", name.family[0])
        if name.birth_family:
            values.setdefault("birth_name", name.birth_family[0])
        if name.given:
            values.setdefault("given_name", name.given[0])
    for element in _values(parameters, "livingSubjectAdministrativeGender"):
        values.setdefault("sex", _gender(element) or None)
    for element in _values(parameters, "livingSubjectBirthTime"):
        values.setdefault("birth_date", _birth_time(element if element.get("value") else _child(element, "low"))
                          or None)
    subject_ids = [_cx(element, what="livingSubjectId") for element in _values(parameters, "livingSubjectId")]
    if subject_ids:
        values["identifier"], values["other_identifiers"] = subject_ids[0], tuple(subject_ids[1:])
    for element in _values(parameters, "patientAddress"):
        address = _address(element)
        for key, value in (("street", " ".join(address.street_lines)), ("city", address.city),
                           ("postal_code", address.postal_code), ("country", address.country)):
            if value:
                values.setdefault(key, value)
    for element in _values(parameters, "patientTelecom"):
        values.setdefault("phone", _phone(_telecom(element).value) or None)
    for element in _values(parameters, "mothersMaidenName"):
        name = _name(element)
        if name.family or name.birth_family:
            values.setdefault("mothers_maiden_name", (name.family or name.birth_family)[0])
    degree = _child(query, "matchCriterionList", "minimumDegreeMatch", "value")
    if degree is not None:
        values["minimum_degree_match"] = _bounded(degree, what="minimumDegreeMatch", upper=100)
    return PdqParameters(**values)  # type: ignore[arg-type]


def _phone(value: str) -> str:
    return value[4:] if value.lower().startswith("tel:") else value


def _positive(element: etree._Element | None, *, what: str) -> int | None:
    if element is None:
        return None
    value = _bounded(element, what=what, upper=None)
    if value == 0:
        raise V3Refusal.one(DATA_TYPE_ERROR, f"{what} must be at least 1", location_of(element))
    return value


def _bounded(element: etree._Element, *, what: str, upper: int | None) -> int:
    text = _attr(element, "value")
    if not text.isdigit() or len(text) > 9 or (upper is not None and int(text) > upper):
        limit = f"0 to {upper}" if upper is not None else "a non-negative integer"
        raise V3Refusal.one(DATA_TYPE_ERROR, f"{what} {text[:20]!r} is not {limit}", location_of(element))
    return int(text)


def read_query_id(root: etree._Element) -> InstanceId:
    """The queryId of a query message, read leniently (for the answer to a query refused as unreadable)."""
    found = _child(root, "controlActProcess", "queryByParameter", "queryId")
    return _instance_id(found) if found is not None and _attr(found, "root") else InstanceId(null_flavor="UNK")


def parse_query_control(root: etree._Element, *, cancel: bool) -> QueryControl:
    """QUQI_IN000003UV01 (continue: statusCode waitContinuedQueryResponse) or its _Cancel twin (aborted)."""
    continuation = _required(root, "controlActProcess", "queryContinuation")
    query_id = _required(continuation, "queryId")
    if not _attr(query_id, "root"):
        raise V3Refusal.one(REQUIRED_MISSING, "queryId has no @root", location_of(query_id))
    status = _attr(_child(continuation, "statusCode"), "code")
    expected = "aborted" if cancel else "waitContinuedQueryResponse"
    if status and status != expected:
        raise V3Refusal.one("103", f"queryContinuation statusCode {status[:40]!r} is not {expected}",
                            location_of(_child(continuation, "statusCode")))  # type: ignore[arg-type]
    quantity = None
    if not cancel:
        quantity = _positive(_child(continuation, "continuationQuantity"), what="continuationQuantity")
    return QueryControl(transmission=read_transmission(root), query_id=_instance_id(query_id), cancel=cancel,
                        quantity=quantity, query_id_location=location_of(query_id))
