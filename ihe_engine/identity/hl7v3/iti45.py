"""ITI-45 PIXV3 Query: PRPA_IN201309UV02 -> PRPA_IN201310UV02, on :func:`ihe_engine.identity.pix.cross_references`.

The same cross-references as ITI-9, answered as the ITI-45 cases say:

================================================  =======  ==========  ============================================
case                                              ack      queryAck    acknowledgementDetail (code 204, location)
================================================  =======  ==========  ============================================
identifiers found in the domains asked (all:      AA       OK          --
  every other domain); one registrationEvent
patient known, nothing in the domains asked       AA       NF          --
patientIdentifier domain unknown                  AE       AE          .../patientIdentifier[1]/value[1]
patientIdentifier unknown in a known domain       AE       AE          .../patientIdentifier[1]/value[1]
a dataSource domain unknown                       AE       AE          one per unknown .../dataSource[n]/value[1]
malformed or missing parameter                    AE       QE          101/102 at the element
================================================  =======  ==========  ============================================

A domain is known when the store holds an identifier in it or the configuration names it (``pix_domains``). The
queried-for identifier is not returned (it is echoed in queryByParameter), unless its own domain is asked.

Audit: EventID 110112 Query, action E, event type ITI-45; the patient objects are the queried id and the ids
returned; the query object (2/24) carries the queryByParameter as received.
"""

from __future__ import annotations

from typing import Any, Sequence

from lxml import etree

from ...audit.hook import AuditRecord, Code
from ...soap.endpoint import Operation, SoapRequest
from ..cx import CX
from ..pix import Authority, PixOutcome, cross_references
from .build import pix_answer
from .common import ACTION_PREFIX, OUTCOME_INTERNAL, OUTCOME_REFUSED, OUTCOME_SUCCESS, QUERY, Hl7v3Settings, \
    V3Handler, internal_refusal, participants, patient_object, query_object
from .errors import UNKNOWN_KEY, AckDetail, V3Refusal
from .model import InstanceId, PixQuery, Transmission
from .parse import parse_pix_query, read_query_id

__all__ = ["Iti45PixQuery", "iti45_operations", "ITI45_EVENT_TYPE", "answer_pix_query"]

ITI45_EVENT_TYPE: Code = ("ITI-45", "IHE Transactions", "PIXV3 Query")
_REQUEST, _RESPONSE = "PRPA_IN201309UV02", "PRPA_IN201310UV02"


def domain_authority(oid: str) -> Authority:
    return Authority(universal_id=oid, universal_id_type="ISO")


def answer_pix_query(session: Any, query: PixQuery, known_domains: Sequence[str] = ()) -> tuple[str, list[CX]]:
    """(queryResponseCode, identifiers) for a readable query; raises V3Refusal for the AE cases."""
    answer = cross_references(session, query.patient_identifier.cx,
                              [domain_authority(domain.oid) for domain in query.data_sources],
                              configured=[domain_authority(oid) for oid in known_domains])
    location = query.patient_identifier.location
    cx = query.patient_identifier.cx
    if answer.outcome is PixOutcome.UNKNOWN_SOURCE_DOMAIN:
        raise V3Refusal.one(UNKNOWN_KEY, f"the patient identifier domain {cx.universal_id} is not known", location)
    if answer.outcome is PixOutcome.UNKNOWN_IDENTIFIER:
        raise V3Refusal.one(UNKNOWN_KEY, f"patient identifier {cx.id!r} is not known in domain {cx.universal_id}",
                            location)
    if answer.outcome is PixOutcome.UNKNOWN_TARGET_DOMAIN:
        raise V3Refusal([AckDetail(UNKNOWN_KEY, f"data source domain {query.data_sources[index].oid} is not known",
                                   query.data_sources[index].location) for index in answer.unknown_domains])
    return ("OK", list(answer.identifiers)) if answer.outcome is PixOutcome.FOUND else ("NF", [])


class Iti45PixQuery(V3Handler):
    body_tags = (_REQUEST,)
    transaction = "ITI-45"

    def handle(self, request: SoapRequest, payload: etree._Element, transmission: Transmission) -> etree._Element:
        query: PixQuery | None = None
        try:
            query = parse_pix_query(payload)
            with self.runtime.uow(readonly=True) as uow:
                code, identifiers = answer_pix_query(uow.session, query, self.settings.known_domains)
        except V3Refusal as refusal:
            return self._refusal(request, transmission, query, payload, refusal, OUTCOME_REFUSED)
        except Exception as exc:  # storage down, a bug: AE 207
            return self._refusal(request, transmission, query, payload, internal_refusal(self.transaction, exc),
                                 OUTCOME_INTERNAL)
        self.emit([self._record(request, transmission, query, identifiers, OUTCOME_SUCCESS, None)])
        return pix_answer(transmission, query_id=query.query_id, query_xml=query.query_xml, ack_code="AA",
                          query_code=code, identifiers=identifiers)

    def refused(self, request: SoapRequest, transmission: Transmission, refusal: V3Refusal) -> etree._Element:
        return self._refusal(request, transmission, None, None, refusal, OUTCOME_REFUSED)

    def _refusal(self, request: SoapRequest, transmission: Transmission, query: PixQuery | None,
                 payload: etree._Element | None, refusal: V3Refusal, outcome: int) -> etree._Element:
        self.emit([self._record(request, transmission, query, [], outcome, str(refusal))])
        query_id, query_xml = (query.query_id, query.query_xml) if query is not None else \
            (read_query_id(payload) if payload is not None else InstanceId(null_flavor="UNK"), None)
        return pix_answer(transmission, query_id=query_id, query_xml=query_xml, ack_code=refusal.ack_code,
                          query_code=refusal.query_code, details=refusal.details)

    def _record(self, request: SoapRequest, transmission: Transmission, query: PixQuery | None,
                identifiers: Sequence[CX], outcome: int, description: str | None) -> AuditRecord:
        patients = ([query.patient_identifier.cx] if query is not None else []) + list(identifiers)
        objects = [patient_object(cx, transmission) for cx in patients]
        if query is not None:
            objects.append(query_object(ITI45_EVENT_TYPE, query.query_id, query.query_xml, transmission))
        return AuditRecord(event_id=QUERY, action="E", event_types=(ITI45_EVENT_TYPE,), outcome=outcome,
                           outcome_description=description, participants=participants(request, self.process_id),
                           objects=tuple(objects), transaction=self.transaction)


def iti45_operations(runtime: Any, settings: Hl7v3Settings | None = None) -> list[Operation]:
    return [Operation(f"{ACTION_PREFIX}{_REQUEST}", f"{ACTION_PREFIX}{_RESPONSE}", Iti45PixQuery(runtime, settings),
                      transaction="ITI-45")]
