"""The replayer's wire: SOAP 1.2 + WS-Addressing requests (simple or MTOM) and the HL7 v2 patient feed.

Responses are read through :mod:`ihe_engine.xmlsafe` (via :func:`ihe_engine.soap.client.read_response`):
the engine under test is a peer like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import requests
from lxml import etree

from ...hl7v2.message import parse as parse_hl7
from ...ns import WSA, qn
from ...soap.client import MtomResponse, post_mtom, read_response, request_envelope
from ...transport.mllp_twisted import send_blocking

__all__ = [
    "ACTIONS",
    "SoapAction",
    "SoapAnswer",
    "build_adt_a01",
    "feed_patient",
    "response_action",
    "send_soap",
]


@dataclass(frozen=True, kw_only=True)
class SoapAction:
    """How one transaction kind travels: request/response actions, which actor, MTOM or not."""

    transaction: str
    request: str
    response: str
    actor: str
    mtom: bool = False


def _action(transaction: str, request: str, actor: str, *, mtom: bool = False) -> SoapAction:
    return SoapAction(transaction=transaction, request=request, response=request + "Response", actor=actor, mtom=mtom)


ACTIONS: Mapping[str, SoapAction] = {
    "ITI-41": _action("ITI-41", "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b", "repository", mtom=True),
    "ITI-42": _action("ITI-42", "urn:ihe:iti:2007:RegisterDocumentSet-b", "registry"),
    "ITI-43": _action("ITI-43", "urn:ihe:iti:2007:RetrieveDocumentSet", "repository", mtom=True),
    "ITI-18": _action("ITI-18", "urn:ihe:iti:2007:RegistryStoredQuery", "registry"),
    "ITI-57": _action("ITI-57", "urn:ihe:iti:2010:UpdateDocumentSet", "registry"),
    "ITI-92": _action("ITI-92", "urn:ihe:iti:2018:RestrictedUpdateDocumentSet", "registry"),
    "ITI-62": _action("ITI-62", "urn:ihe:iti:2010:DeleteDocumentSet", "registry"),
    "ITI-86": _action("ITI-86", "urn:ihe:iti:2017:RemoveDocuments", "repository"),
}

_SOAP_CONTENT_TYPE = 'application/soap+xml; charset=utf-8; action="{action}"'


@dataclass(frozen=True, kw_only=True)
class SoapAnswer:
    """What came back: HTTP status, the response wsa:Action, the body payload, fault or not, attachments."""

    http_status: int
    action: str | None
    payload: etree._Element
    is_fault: bool
    response: MtomResponse


def response_action(response: MtomResponse) -> str | None:
    block = response.envelope.header_block(qn(WSA, "Action"))
    return (block.text or "").strip() if block is not None else None


def send_soap(url: str, payload: etree._Element, action: SoapAction, *,
              attachments: Mapping[str, bytes | Path] | None = None, session: requests.Session | None = None,
              timeout: float = 120.0, content_types: Mapping[str, str] | None = None) -> tuple[bytes, SoapAnswer]:
    """Send one request; returns the envelope bytes as sent and the parsed answer."""
    envelope = request_envelope(payload, action.request, to=url)
    envelope_bytes = etree.tostring(envelope, encoding="utf-8", xml_declaration=True)
    if action.mtom:
        response = post_mtom(url, envelope_bytes, attachments or {}, action.request, session=session,
                             timeout=timeout, content_types=content_types)
    else:
        response = _post_simple(url, envelope_bytes, action.request, session=session, timeout=timeout)
    answer = SoapAnswer(http_status=response.status, action=response_action(response),
                        payload=response.envelope.payload, is_fault=response.is_fault, response=response)
    return envelope_bytes, answer


def _post_simple(url: str, body: bytes, action: str, *, session: requests.Session | None,
                 timeout: float) -> MtomResponse:
    http = session or requests.Session()
    reply = http.post(url, data=body, headers={"Content-Type": _SOAP_CONTENT_TYPE.format(action=action)},
                      timeout=timeout, stream=True)
    try:
        return read_response(reply)
    finally:
        reply.close()


# --------------------------------------------------------------------------- patient identity feed


def build_adt_a01(patient_id: str, *, control_id: str, now: datetime | None = None,
                  sending_application: str = "NIST_REPLAYER", sending_facility: str = "IHE_ENGINE",
                  receiving_application: str = "XDS_REGISTRY", receiving_facility: str = "IHE_ENGINE") -> bytes:
    """An HL7 v2.3.1 ADT^A01 (MSH, EVN, PID with PID-3 = the CX patient id, PV1), CR-separated."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|{sending_application}|{sending_facility}|{receiving_application}|{receiving_facility}|{stamp}||"
        f"ADT^A01^ADT_A01|{control_id}|P|2.3.1",
        f"EVN|A01|{stamp}",
        f"PID|||{patient_id}||ALPHA^ALAN^^^^^L||19610101|M",
        "PV1||I",
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def feed_patient(host: str, port: int, patient_id: str, *, control_id: str, timeout: float = 30.0) -> str:
    """Send the A01 over MLLP; returns MSA-1 (the caller requires ``AA``)."""
    answer = send_blocking(host, port, build_adt_a01(patient_id, control_id=control_id), timeout=timeout)
    return parse_hl7(answer).get("MSA-1")
