"""What the HL7 v3 PIX/PDQ transactions share: settings, the SOAP handler outline, the audit record parts.

Outline of every handler (:class:`V3Handler`): a body that is not the interaction the wsa:Action names is a SOAP
Sender fault (the envelope was fine, the request is not this operation); otherwise the transmission wrapper is
read, checked (AR on a wrong wrapper), the content parsed and the work done in one unit of work, committed before
the answer is built. A refusal (:class:`~.errors.V3Refusal`) is an answer with AE/AR and acknowledgementDetails,
never a fault, and changes nothing. A storage or unexpected failure is logged and answered AE 207 ("nothing was
done"). Exactly one audit record set is emitted per request, once the outcome is known -- for writes after the
commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from lxml import etree

from ...audit.hook import AuditRecord, Code, Participant, ParticipantObject
from ...ns import HL7V3
from ...soap.endpoint import SoapRequest, SoapResponse
from ...soap.fault import SENDER, SoapFault
from ..cx import CX
from .errors import INTERNAL_ERROR, V3Refusal
from .model import InstanceId, Transmission
from .parse import check_transmission, read_transmission

__all__ = ["Hl7v3Settings", "V3Handler", "OUTCOME_SUCCESS", "OUTCOME_REFUSED", "OUTCOME_INTERNAL",
           "PATIENT_RECORD", "QUERY", "patient_object", "query_object", "participants", "internal_refusal",
           "instance_text", "ACTION_PREFIX"]

log = logging.getLogger("ihe_engine.identity.hl7v3")

ACTION_PREFIX = "urn:hl7-org:v3:"
OUTCOME_SUCCESS, OUTCOME_REFUSED, OUTCOME_INTERNAL = 0, 4, 12
PATIENT_RECORD: Code = ("110110", "DCM", "Patient Record")
QUERY: Code = ("110112", "DCM", "Query")
_SOURCE_ROLE: Code = ("110153", "DCM", "Source Role ID")
_DESTINATION_ROLE: Code = ("110152", "DCM", "Destination Role ID")
_PATIENT_NUMBER: Code = ("2", "RFC-3881", "Patient Number")


@dataclass(frozen=True, kw_only=True)
class Hl7v3Settings:
    """Configuration of the v3 actors (config file keys in parentheses)."""

    known_domains: tuple[str, ...] = ()
    """Domain OIDs the PIX Manager / PDQ Supplier knows even before holding an id in them (``pix_domains``)."""
    max_matches: int = 1000
    """Most patients one PDQ query may match (``pdq_max_matches``); above, the consumer is asked to narrow it."""
    continuation_minutes: int = 30
    """How long an ITI-47 continuation stays available after it was opened (``pdq_continuation_minutes``)."""
    accepted_authorities: frozenset[str] | None = None
    """Domains ITI-44 may feed, as for ITI-8 (``accepted_authorities``); None: any."""

    @classmethod
    def from_settings(cls, settings: Any) -> "Hl7v3Settings":
        extra = getattr(settings, "extra", None) or {}
        domains = extra.get("pix_domains", ())
        if isinstance(domains, str):
            domains = [domains]
        accepted = extra.get("accepted_authorities")
        return cls(known_domains=tuple(str(domain) for domain in domains),
                   max_matches=int(extra.get("pdq_max_matches", 1000)),
                   continuation_minutes=int(extra.get("pdq_continuation_minutes", 30)),
                   accepted_authorities=frozenset(map(str, accepted)) if accepted is not None else None)


def instance_text(instance: InstanceId) -> str:
    """An II as one string: ``extension@root`` (or the root alone)."""
    return f"{instance.extension}@{instance.root}" if instance.extension else instance.root


def internal_refusal(transaction: str, exc: BaseException) -> V3Refusal:
    """The AE 207 answer to a failure that is not the requester's (logged with its cause)."""
    log.error("%s failed", transaction, exc_info=exc)
    return V3Refusal.one(INTERNAL_ERROR, "internal error; nothing was done, the request may be sent again")


class V3Handler:
    """Blocking SOAP handler outline; subclasses set ``body_tags``/``transaction`` and implement :meth:`handle`."""

    body_tags: tuple[str, ...]
    transaction: str

    def __init__(self, runtime: Any, settings: Hl7v3Settings | None = None) -> None:
        self.runtime = runtime
        self.settings = settings or Hl7v3Settings.from_settings(getattr(runtime, "settings", None))

    def __call__(self, request: SoapRequest) -> SoapResponse:
        payload = request.payload
        if etree.QName(payload).namespace != HL7V3 or etree.QName(payload).localname not in self.body_tags:
            raise SoapFault(SENDER, f"{self.transaction} expects {' or '.join(self.body_tags)} in the "
                                    f"{HL7V3} namespace in the body, not {payload.tag}")
        transmission = read_transmission(payload)
        try:
            check_transmission(payload, transmission)
        except V3Refusal as refusal:
            return SoapResponse(body=self.refused(request, transmission, refusal))
        return SoapResponse(body=self.handle(request, payload, transmission))

    def handle(self, request: SoapRequest, payload: etree._Element, transmission: Transmission) -> etree._Element:
        raise NotImplementedError

    def refused(self, request: SoapRequest, transmission: Transmission, refusal: V3Refusal) -> etree._Element:
        """The answer (and audit) to a request refused before its content was read."""
        raise NotImplementedError

    def emit(self, records: Sequence[AuditRecord]) -> None:
        audit = getattr(self.runtime, "audit", None)
        if audit is not None:
            for record in records:
                audit.emit(record)

    def emit_with(self, session: Any, records: Sequence[AuditRecord]) -> None:
        """Records of the work done in ``session``: queued in its transaction (see ``AuditHook.emit_with``)."""
        audit = getattr(self.runtime, "audit", None)
        if audit is not None:
            audit.emit_with(session, records)

    @property
    def process_id(self) -> str | None:
        return getattr(self.runtime, "process_id", None)


# -- audit parts ---------------------------------------------------------------------------------------------------

def participants(request: SoapRequest, process_id: str | None) -> tuple[Participant, Participant]:
    """Source = the requester (its wsa:ReplyTo, else its host); Destination = this endpoint, with our process id."""
    peer_host = request.peer.rsplit(":", 1)[0]
    reply_to = request.addressing.reply_to
    source = Participant(user_id=reply_to.address if reply_to is not None else peer_host, is_requestor=True,
                         role=_SOURCE_ROLE, network_access_point=peer_host)
    destination = Participant(user_id=request.addressing.to or request.endpoint, is_requestor=False,
                              role=_DESTINATION_ROLE, alternative_user_id=process_id)
    return source, destination


def _message_id_detail(transmission: Transmission) -> tuple[tuple[str, bytes], ...]:
    return (("II", instance_text(transmission.message_id).encode()),)


def patient_object(cx: CX | str, transmission: Transmission) -> ParticipantObject:
    """The patient (1/1) by its id in CX form, with the request's message id as detail (type II)."""
    return ParticipantObject(object_id=cx if isinstance(cx, str) else cx.to_hl7(), type_code=1, type_code_role=1,
                             id_type=_PATIENT_NUMBER, details=_message_id_detail(transmission))


def query_object(event_type: Code, query_id: InstanceId, query_xml: bytes | None,
                 transmission: Transmission) -> ParticipantObject:
    """The query (2/24): its queryId, the queryByParameter as received (base64 on the wire, raw here)."""
    return ParticipantObject(object_id=instance_text(query_id), type_code=2, type_code_role=24, id_type=event_type,
                             query=query_xml or None, details=_message_id_detail(transmission))
