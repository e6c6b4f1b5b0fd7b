"""Building HL7 v3 messages: the answers MCCI_IN000002UV01, PRPA_IN201310UV02 (ITI-45), PRPA_IN201306UV02
(ITI-47), and the ITI-46 update notification PRPA_IN201302UV02.

Sans-I/O: values in, an lxml element out (the SOAP layer serialises it). Element order follows the HL7 v3
NE2008 schemas (the tests validate every answer against them). The answer's receiver is the request's sender
device and its sender the request's receiver device, so a consumer recognises the answer whichever of our
addresses it used; an id the request lacked is sent as ``nullFlavor="UNK"``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Iterable, Sequence

from lxml import etree

from ...ns import HL7V3, XSI
from ...xmlsafe import parse as parse_xml
from ..cx import CX
from .errors import HL7_ERROR_CODES, AckDetail
from .model import Address, InstanceId, PatientView, PersonName, QueryCounts, Telecom, Transmission

__all__ = ["ack_message", "pix_answer", "pdq_answer", "update_notification", "INTERACTION_SYSTEM",
           "new_message_id", "expressible"]

INTERACTION_SYSTEM = "2.16.840.1.113883.1.6"
"""HL7 interaction and trigger event identifiers."""
_NSMAP = {None: HL7V3, "xsi": XSI}


def _q(local: str) -> str:
    return f"{{{HL7V3}}}{local}"


def _sub(parent: etree._Element, local: str, text: str | None = None, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, _q(local), {key: value for key, value in attributes.items() if value})
    if text:
        element.text = text
    return element


def _ii(parent: etree._Element, local: str, instance: InstanceId) -> etree._Element:
    if instance.root:
        return _sub(parent, local, root=instance.root, extension=instance.extension)
    return _sub(parent, local, nullFlavor=instance.null_flavor or "UNK")


def expressible(identifiers: Iterable[CX]) -> list[CX]:
    """The identifiers an II can carry: those whose domain has an OID (a v2 namespace-only one has none)."""
    return [cx for cx in identifiers if cx.universal_id and cx.universal_id_type == "ISO"]


def _cx_id(parent: etree._Element, local: str, cx: CX) -> etree._Element:
    return _sub(parent, local, root=cx.universal_id, extension=cx.id, assigningAuthorityName=cx.namespace_id)


def new_message_id() -> InstanceId:
    """A fresh message id: a UUID as an OID under 2.25 (ITU-T X.667), valid wherever an II root is."""
    return InstanceId(root=f"2.25.{uuid.uuid4().int}")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S+0000")


# -- transmission wrapper ------------------------------------------------------------------------------------------

def _wrapper(interaction: str, request: Transmission, echoed: bytes | None = None) -> etree._Element:
    """The wrapper of an answer to ``request``: addressed back to its sender, from the device it addressed.

    ``echoed``: the query element the answer will carry. Its prefixes are declared on the answer's root, because
    lxml drops a moved element's declarations its new ancestors make redundant, and QName values in attributes
    (``xsi:type="ns1:II"``) would be left pointing at an undeclared prefix.
    """
    processing = request.processing_code if request.processing_code in ("P", "D", "T") else "P"
    return _message(interaction, receiver=request.sender_device, sender=request.receiver_device,
                    processing_code=processing, accept_ack_code="NE", namespaces=_prefixes_of(echoed))


def _prefixes_of(echoed: bytes | None) -> dict[str, str]:
    if not echoed:
        return {}
    declared = parse_xml(echoed, what="the echoed queryByParameter").nsmap
    return {prefix: uri for prefix, uri in declared.items() if prefix is not None and prefix not in _NSMAP}


def _message(interaction: str, *, receiver: InstanceId, sender: InstanceId, processing_code: str,
             accept_ack_code: str, message_id: InstanceId | None = None,
             namespaces: dict[str, str] | None = None) -> etree._Element:
    root = etree.Element(_q(interaction), {"ITSVersion": "XML_1.0"}, nsmap={**(namespaces or {}), **_NSMAP})
    _ii(root, "id", message_id or new_message_id())
    _sub(root, "creationTime", value=_now())
    _sub(root, "interactionId", root=INTERACTION_SYSTEM, extension=interaction)
    _sub(root, "processingCode", code=processing_code)
    _sub(root, "processingModeCode", code="T")
    _sub(root, "acceptAckCode", code=accept_ack_code)
    for role, type_code, device in (("receiver", "RCV", receiver), ("sender", "SND", sender)):
        element = _sub(_sub(root, role, typeCode=type_code), "device", classCode="DEV", determinerCode="INSTANCE")
        _ii(element, "id", device)
    return root


def _acknowledgement(root: etree._Element, request: Transmission, ack_code: str,
                     details: Sequence[AckDetail]) -> None:
    acknowledgement = _sub(root, "acknowledgement")
    _sub(acknowledgement, "typeCode", code=ack_code)
    _ii(_sub(acknowledgement, "targetMessage"), "id", request.message_id)
    for detail in details:
        element = _sub(acknowledgement, "acknowledgementDetail", typeCode=detail.type_code)
        if detail.code:
            _sub(element, "code", code=detail.code, codeSystem=HL7_ERROR_CODES, displayName=detail.display_name)
        _sub(element, "text", detail.text)
        if detail.location:
            _sub(element, "location", detail.location)


def ack_message(request: Transmission, ack_code: str, details: Sequence[AckDetail] = ()) -> etree._Element:
    """MCCI_IN000002UV01: the application acknowledgement of a feed (ITI-44) or a query cancel."""
    root = _wrapper("MCCI_IN000002UV01", request)
    _acknowledgement(root, request, ack_code, details)
    return root


def _control_act(root: etree._Element, trigger: str) -> etree._Element:
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(control, "code", code=trigger, codeSystem=INTERACTION_SYSTEM)
    return control


def _query_ack(control: etree._Element, query_id: InstanceId, response_code: str,
               counts: QueryCounts | None = None) -> None:
    ack = _sub(control, "queryAck")
    _ii(ack, "queryId", query_id)
    _sub(ack, "statusCode", code="deliveredResponse")
    _sub(ack, "queryResponseCode", code=response_code)
    if counts is not None:
        _sub(ack, "resultTotalQuantity", value=str(counts.total))
        _sub(ack, "resultCurrentQuantity", value=str(counts.current))
        _sub(ack, "resultRemainingQuantity", value=str(counts.remaining))


def _echo_query(control: etree._Element, query_xml: bytes | None) -> None:
    if query_xml:
        control.append(parse_xml(query_xml, what="the echoed queryByParameter"))


def _registration(control: etree._Element) -> tuple[etree._Element, etree._Element]:
    """(registrationEvent, patient) of one subject; the custodian is appended by :func:`_custodian`."""
    event = _sub(_sub(control, "subject", typeCode="SUBJ"), "registrationEvent", classCode="REG", moodCode="EVN")
    _sub(event, "statusCode", code="active")
    patient = _sub(_sub(event, "subject1", typeCode="SBJ"), "patient", classCode="PAT")
    return event, patient


def _custodian(event: etree._Element, custodian: InstanceId) -> None:
    entity = _sub(_sub(event, "custodian", typeCode="CST"), "assignedEntity", classCode="ASSIGNED")
    _ii(entity, "id", custodian)


# -- ITI-45 --------------------------------------------------------------------------------------------------------

def pix_answer(request: Transmission, *, query_id: InstanceId, query_xml: bytes | None, ack_code: str,
               query_code: str, identifiers: Sequence[CX] = (), details: Sequence[AckDetail] = ()
               ) -> etree._Element:
    """PRPA_IN201310UV02: one registrationEvent with every identifier as Patient.id when there are some."""
    root = _wrapper("PRPA_IN201310UV02", request, query_xml)
    _acknowledgement(root, request, ack_code, details)
    control = _control_act(root, "PRPA_TE201310UV02")
    identifiers = expressible(identifiers)
    if identifiers:
        event, patient = _registration(control)
        for cx in identifiers:
            _cx_id(patient, "id", cx)
        _sub(patient, "statusCode", code="active")
        person = _sub(patient, "patientPerson", classCode="PSN", determinerCode="INSTANCE")
        _sub(person, "name", nullFlavor="NA")
        _custodian(event, request.receiver_device)
    _query_ack(control, query_id, query_code)
    _echo_query(control, query_xml)
    return root


# -- ITI-47 --------------------------------------------------------------------------------------------------------

def pdq_answer(request: Transmission, *, query_id: InstanceId, query_xml: bytes | None, ack_code: str,
               query_code: str, patients: Sequence[PatientView] = (), counts: QueryCounts | None = None,
               details: Sequence[AckDetail] = ()) -> etree._Element:
    """PRPA_IN201306UV02: one registrationEvent per patient, with its match degree."""
    root = _wrapper("PRPA_IN201306UV02", request, query_xml)
    _acknowledgement(root, request, ack_code, details)
    control = _control_act(root, "PRPA_TE201306UV02")
    for view in patients:
        event, patient = _registration(control)
        _pdq_patient(patient, view)
        _custodian(event, request.receiver_device)
    _query_ack(control, query_id, query_code, counts)
    _echo_query(control, query_xml)
    return root


def _pdq_patient(patient: etree._Element, view: PatientView) -> None:
    for cx in expressible(view.identifiers):
        _cx_id(patient, "id", cx)
    _sub(patient, "statusCode", code="active")
    person = _sub(patient, "patientPerson", classCode="PSN", determinerCode="INSTANCE")
    _names(person, view.names)
    _telecoms(person, view.telecoms)
    if view.gender:
        _sub(person, "administrativeGenderCode", code="UN" if view.gender == "U" else view.gender,
             codeSystem="2.16.840.1.113883.5.1")
    if view.birth_time:
        _sub(person, "birthTime", value=view.birth_time)
    _addresses(person, view.addresses)
    _other_ids(person, expressible(view.other_identifiers))
    observation = _sub(_sub(patient, "subjectOf1", typeCode="SBJ"), "queryMatchObservation", classCode="COND",
                       moodCode="EVN")
    _sub(observation, "code", code="IHE_PDQ")
    value = _sub(observation, "value", value=str(view.score))
    value.set(f"{{{XSI}}}type", "INT")


def _names(person: etree._Element, names: Sequence[PersonName]) -> None:
    if not names:
        _sub(person, "name", nullFlavor="UNK")
    for name in names:
        element = _sub(person, "name", use=name.use)
        for given in name.given:
            _sub(element, "given", given)
        for family in name.family:
            _sub(element, "family", family)
        for family in name.birth_family:
            _sub(element, "family", family, qualifier="BR")


def _telecoms(person: etree._Element, telecoms: Iterable[Telecom]) -> None:
    for telecom in telecoms:
        _sub(person, "telecom", value=telecom.value, use=telecom.use)


def _addresses(person: etree._Element, addresses: Iterable[Address]) -> None:
    for address in addresses:
        element = _sub(person, "addr", use=address.use)
        for line in address.street_lines:
            _sub(element, "streetAddressLine", line)
        for local, value in (("city", address.city), ("county", address.county), ("state", address.state),
                             ("postalCode", address.postal_code), ("country", address.country)):
            if value:
                _sub(element, local, value)


def _other_ids(person: etree._Element, identifiers: Sequence[CX]) -> None:
    """One asOtherIDs per domain, its scopingOrganization naming the domain."""
    by_domain: dict[str, list[CX]] = {}
    for cx in identifiers:
        by_domain.setdefault(cx.universal_id, []).append(cx)
    for domain, members in by_domain.items():
        other = _sub(person, "asOtherIDs", classCode="PAT")
        for cx in members:
            _cx_id(other, "id", cx)
        organization = _sub(other, "scopingOrganization", classCode="ORG", determinerCode="INSTANCE")
        _sub(organization, "id", root=domain)


# -- ITI-46 --------------------------------------------------------------------------------------------------------

def update_notification(identifiers: Sequence[CX], *, receiver: InstanceId, sender: InstanceId,
                        message_id: InstanceId | None = None) -> etree._Element:
    """PRPA_IN201302UV02 as ITI-46 sends it: the person's cross-referenced ids, no demographics (name NA)."""
    root = _message("PRPA_IN201302UV02", receiver=receiver, sender=sender, processing_code="P",
                    accept_ack_code="AL", message_id=message_id)
    control = _control_act(root, "PRPA_TE201302UV02")
    event, patient = _registration(control)
    for cx in expressible(identifiers):
        _cx_id(patient, "id", cx)
    _sub(patient, "statusCode", code="active")
    person = _sub(patient, "patientPerson", classCode="PSN", determinerCode="INSTANCE")
    _sub(person, "name", nullFlavor="NA")
    _custodian(event, sender)
    return root
