"""ITI-57 Update Document Set and ITI-92 Restricted Update Document Set on the registry endpoint.

Both take an lcm:SubmitObjectsRequest and answer rs:RegistryResponse; the handler runs in the thread pool,
updates inside one unit of work and commits before answering. Refusals are a Failure RegistryResponse carrying
every RegistryError, never a SOAP fault; only a body that is not a SubmitObjectsRequest is a Sender fault.

Audit (IHE-CONFORMANCE.md D, "ITI-57 Registry"): Import (110107), action U, event type ITI-57 (or ITI-92), the
requestor as Source and this endpoint as Destination, with the patient (1/1) and the SubmissionSet (2/20, its
uniqueId); emitted once the outcome is known, success or refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from ...audit.hook import AuditRecord
from ...ns import LCM, qn
from ...profiles import transactions
from ...soap.endpoint import Operation, SoapRequest
from ..ebrim import parse_submission
from ..model import Submission
from ..soap_common import (IMPORT, HandlerOutcome, RegistryResponseHandler, TransactionWording,
                           endpoint_destination, soap_peer_source, submission_objects)
from .actor import DocumentRegistry
from .update import update_document_set

__all__ = ["update_operations", "UpdateHandler", "update_audit_record", "ITI57", "ITI92"]


@dataclass(frozen=True, kw_only=True)
class _Kind:
    """What distinguishes ITI-57 from ITI-92 on the wire and in the audit trail."""

    transaction: str
    name: str
    action: str
    response_action: str
    restricted: bool

    @property
    def event_type(self) -> tuple[str, str, str]:
        return (self.transaction, "IHE Transactions", self.name)


def _iti57() -> _Kind:
    iti57 = transactions()["ITI-57"]
    assert iti57.action is not None and iti57.response_action is not None
    return _Kind(transaction="ITI-57", name=iti57.name, action=iti57.action, response_action=iti57.response_action,
                 restricted=False)


ITI57 = _iti57()
ITI92 = _Kind(transaction="ITI-92", name="Restricted Update Document Set",
              action="urn:ihe:iti:2018:RestrictedUpdateDocumentSet",
              response_action="urn:ihe:iti:2018:RestrictedUpdateDocumentSetResponse", restricted=True)
"""ITI-92 is not in the profile catalogue; its actions are those of the RMU supplement."""


def update_operations(runtime: Any, registry: DocumentRegistry) -> list[Operation]:
    """ITI-57 and ITI-92 for the registry SoapEndpoint."""
    return [Operation(kind.action, kind.response_action, UpdateHandler(runtime, registry, kind),
                      transaction=kind.transaction, blocking=True) for kind in (ITI57, ITI92)]


class UpdateHandler(RegistryResponseHandler[Submission | None]):
    """Blocking SOAP handler of ITI-57 or ITI-92."""

    body_tag = qn(LCM, "SubmitObjectsRequest")
    empty_subject = None

    def __init__(self, runtime: Any, registry: DocumentRegistry, kind: _Kind = ITI57) -> None:
        super().__init__(runtime, registry)
        self.kind = kind
        self.wording = TransactionWording(transaction=kind.transaction, name=kind.name,
                                          body="lcm:SubmitObjectsRequest", failure="update failed",
                                          past_tense="updated")

    def parse(self, payload: etree._Element) -> Submission:
        return parse_submission(payload)

    def run(self, subject: Submission | None, request: SoapRequest) -> HandlerOutcome[Submission | None]:
        assert subject is not None
        return self.committed(lambda uow: update_document_set(self.registry, subject, uow,
                                                              restricted=self.kind.restricted), request, subject)

    def audit_record(self, request: SoapRequest, outcome: HandlerOutcome[Submission | None],
                     description: str | None) -> AuditRecord:
        return update_audit_record(request, outcome.subject, self.kind, outcome=outcome.indicator,
                                   description=description, process_id=self.process_id)


def update_audit_record(request: SoapRequest, submission: Submission | None, kind: _Kind = ITI57, *, outcome: int,
                        description: str | None = None, process_id: str | None = None) -> AuditRecord:
    """Import (110107), U: requestor (Source), this endpoint (Destination), patient and SubmissionSet."""
    return AuditRecord(event_id=IMPORT, action="U", outcome=outcome, event_types=(kind.event_type,),
                       outcome_description=description,
                       participants=(soap_peer_source(request), endpoint_destination(request, process_id)),
                       objects=submission_objects(submission), transaction=kind.transaction)
