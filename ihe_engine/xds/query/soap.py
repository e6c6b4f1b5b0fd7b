"""ITI-18 Registry Stored Query and ITI-51 Multi-Patient Stored Query as SOAP operations of /xds/registry.

Each request runs in the thread pool inside one read-only unit of work (one consistent snapshot, no write
lock). Whatever the outcome, the answer is a query:AdhocQueryResponse -- the stored query errors travel in its
RegistryErrorList, never as a SOAP fault -- and one audit record (110112 Query, action E) is emitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from ...audit import AuditRecord, Participant, ParticipantObject
from ...ns import QUERY, RIM, RS, qn
from ...soap.endpoint import Operation, SoapRequest, SoapResponse
from ...xua.policy import apply_policy_to_query_response
from ..constants import RESPONSE_FAILURE, RESPONSE_SUCCESS
from ..errors import XDS_UNKNOWN_STORED_QUERY, RegistryError, XdsError, registry_error_list_element
from ..soap_common import patient_object
from .definitions import ITI18, ITI51, QueryDefinition
from .engine import DEFAULT_MAX_RESULTS, QueryResult, asked_patients, run_stored_query
from .params import StoredQueryRequest, parse_adhoc_query_request

__all__ = ["query_operations", "QuerySettings", "adhoc_query_response", "answer_query",
           "ITI18_ACTION", "ITI18_RESPONSE_ACTION", "ITI51_ACTION", "ITI51_RESPONSE_ACTION"]

ITI18_ACTION = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI18_RESPONSE_ACTION = "urn:ihe:iti:2007:RegistryStoredQueryResponse"
ITI51_ACTION = "urn:ihe:iti:2009:MultiPatientStoredQuery"
ITI51_RESPONSE_ACTION = "urn:ihe:iti:2009:MultiPatientStoredQueryResponse"

_QUERY_EVENT = ("110112", "DCM", "Query")
_EVENT_TYPES = {ITI18: ("ITI-18", "IHE Transactions", "Registry Stored Query"),
                ITI51: ("ITI-51", "IHE Transactions", "Multi-Patient Stored Query")}
_SOURCE_ROLE = ("110153", "DCM", "Source")
_DESTINATION_ROLE = ("110152", "DCM", "Destination")
_MINOR_FAILURE = 4
_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"


@dataclass(frozen=True, kw_only=True)
class QuerySettings:
    """What the query operations need from the registry's configuration."""

    max_results: int = DEFAULT_MAX_RESULTS
    home_community_id: str | None = None

    @classmethod
    def from_object(cls, settings: Any) -> "QuerySettings":
        """Read a registry settings object (or None) leniently: max_query_results / max_results, home_community_id."""
        if isinstance(settings, QuerySettings):
            return settings
        limit = getattr(settings, "max_query_results", None) or getattr(settings, "max_results", None)
        return cls(max_results=int(limit) if limit else DEFAULT_MAX_RESULTS,
                   home_community_id=getattr(settings, "home_community_id", None))


def query_operations(runtime: Any, registry_settings: Any = None) -> list[Operation]:
    """The ITI-18 and ITI-51 operations, to register on the registry's SoapEndpoint."""
    settings = QuerySettings.from_object(registry_settings)

    def handler(transaction: str):  # type: ignore[no-untyped-def]
        return lambda soap_request: _handle(runtime, settings, transaction, soap_request)

    return [
        Operation(ITI18_ACTION, ITI18_RESPONSE_ACTION, handler(ITI18), transaction=ITI18),
        Operation(ITI51_ACTION, ITI51_RESPONSE_ACTION, handler(ITI51), transaction=ITI51),
    ]


def _handle(runtime: Any, settings: QuerySettings, transaction: str, soap_request: SoapRequest) -> SoapResponse:
    payload = soap_request.payload
    request: StoredQueryRequest | None = None
    try:
        request = parse_adhoc_query_request(payload)
        _check_transaction(request.definition, transaction)
        with runtime.uow(readonly=True) as uow:
            result = answer_query(request, uow, settings)
            visible = apply_policy_to_query_response(runtime, soap_request, result.objects, uow.session,
                                                     transaction=transaction).objects
        errors = request.warnings
        body = adhoc_query_response(RESPONSE_SUCCESS, visible, errors=errors, request_id=request.request_id)
    except XdsError as refusal:
        errors = refusal.errors
        body = adhoc_query_response(RESPONSE_FAILURE, (), errors=errors, request_id=payload.get("id"))
    runtime.audit.emit(_audit_record(runtime, transaction, soap_request, request, errors))
    return SoapResponse(body)


def answer_query(request: StoredQueryRequest, uow: Any, settings: QuerySettings) -> QueryResult:
    return run_stored_query(request, uow, max_results=settings.max_results,
                            home_community_id=settings.home_community_id)


def _check_transaction(definition: QueryDefinition, transaction: str) -> None:
    """ITI-51 queries go to the ITI-51 action and ITI-18 ones to ITI-18: the other is an unknown query there."""
    if definition.transaction != transaction:
        raise XdsError(XDS_UNKNOWN_STORED_QUERY, f"{definition.name} ({definition.uuid}) is an "
                                                 f"{definition.transaction} query, not one of {transaction}",
                       location=definition.uuid)


def adhoc_query_response(status: str, objects: Iterable[etree._Element], *,
                         errors: tuple[RegistryError, ...] = (),
                         request_id: str | None = None) -> etree._Element:
    """query:AdhocQueryResponse: status, RegistryErrorList when there are errors, RegistryObjectList always."""
    response = etree.Element(qn(QUERY, "AdhocQueryResponse"), status=status,
                             nsmap={"query": QUERY, "rim": RIM, "rs": RS})
    if request_id:
        response.set("requestId", request_id)
    if errors:
        response.append(registry_error_list_element(errors))
    object_list = etree.SubElement(response, qn(RIM, "RegistryObjectList"))
    object_list.extend(objects)
    return response


# ---------------------------------------------------------------------------------------------------- audit

def _audit_record(runtime: Any, transaction: str, soap_request: SoapRequest, request: StoredQueryRequest | None,
                  errors: tuple[RegistryError, ...]) -> AuditRecord:
    failed = any(error.is_error for error in errors)
    return AuditRecord(
        event_id=_QUERY_EVENT, action="E", outcome=_MINOR_FAILURE if failed else 0,
        event_types=(_EVENT_TYPES[transaction],),
        outcome_description="; ".join(f"{e.error_code}: {e.code_context}" for e in errors) or None,
        participants=_participants(runtime, soap_request),
        objects=(*_patient_objects(request), _query_object(transaction, soap_request, request)),
        transaction=transaction)


def _participants(runtime: Any, soap_request: SoapRequest) -> tuple[Participant, ...]:
    host = soap_request.peer.rsplit(":", 1)[0] or None
    reply_to = soap_request.addressing.reply_to
    source_id = getattr(reply_to, "address", None) or _ANONYMOUS
    source = Participant(user_id=source_id, is_requestor=True, role=_SOURCE_ROLE, network_access_point=host,
                         user_name=soap_request.user_alias)
    destination = Participant(user_id=soap_request.addressing.to or soap_request.endpoint,
                              is_requestor=False, role=_DESTINATION_ROLE,
                              alternative_user_id=getattr(runtime, "process_id", None),
                              network_access_point=getattr(runtime, "node_name", None))
    return source, destination


def _patient_objects(request: StoredQueryRequest | None) -> tuple[ParticipantObject, ...]:
    if request is None:
        return ()
    return tuple(patient_object(patient) for patient in asked_patients(request))


def _query_object(transaction: str, soap_request: SoapRequest, request: StoredQueryRequest | None
                  ) -> ParticipantObject:
    """The query (2/24): ID = the stored query UUID, Query = the AdhocQueryRequest (base64 by the sink)."""
    query_id = request.query_id if request is not None else _asked_query_id(soap_request.payload)
    return ParticipantObject(object_id=query_id, type_code=2, type_code_role=24, id_type=_EVENT_TYPES[transaction],
                             query=etree.tostring(soap_request.payload),
                             details=(("QueryEncoding", b"UTF-8"),))


def _asked_query_id(payload: etree._Element) -> str:
    query = payload.find(qn(RIM, "AdhocQuery"))
    return (query.get("id") or "").strip() if query is not None else ""
