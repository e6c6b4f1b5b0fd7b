"""The registry's SOAP binding (``/xds/registry``) and its in-process entry point for the repository.

``registry_operations(runtime, registry)`` gives the operations to register on the registry SoapEndpoint. ITI-42
runs in the thread pool: parse the lcm:SubmitObjectsRequest, register inside one ``runtime.uow()``, commit on
success, answer rs:RegistryResponse. Business refusals (every XDS error code, malformed metadata) are a
RegistryResponse Failure carrying the RegistryErrorList, never a SOAP fault; only a body that is not a
SubmitObjectsRequest at all is a SOAP Sender fault. The registry's audit record (ITI-42, Import, action C) is
emitted once the outcome is known, success or failure.

Other registry transactions live in their own modules and are registered on the same endpoint by the wiring:
ITI-18 / ITI-51 in ``ihe_engine.xds.query.soap``; ITI-57 / ITI-92 and ITI-62 are to come (see
``LATER_TRANSACTIONS``).

``register_in_process(runtime, registry, submission, uow)`` is the embedded repository's ITI-42: same rules, in
the *caller's* unit of work, so storing the documents (ITI-41) and registering them commit or roll back together.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from ...audit.hook import AuditRecord, Participant
from ...ns import LCM, qn
from ...profiles import transactions
from ...soap.endpoint import Operation, SoapRequest
from ..ebrim import parse_submission
from ..errors import RegistryResponse
from ..model import Submission
from ..soap_common import (IMPORT, HandlerOutcome, RegistryResponseHandler, TransactionWording,
                           endpoint_destination, soap_peer_source, submission_objects)
from .actor import DocumentRegistry

__all__ = ["registry_operations", "register_in_process", "Iti42Handler", "iti42_audit_record", "audit_record",
           "LATER_TRANSACTIONS"]

LATER_TRANSACTIONS = ("ITI-18", "ITI-51", "ITI-57", "ITI-92", "ITI-62")
"""Registry transactions served on the same endpoint by other modules (query) or not yet written."""

_ITI42 = ("ITI-42", "IHE Transactions", "Register Document Set-b")


def registry_operations(runtime: Any, registry: DocumentRegistry) -> list[Operation]:
    """The operations of this module for the registry SoapEndpoint (ITI-42 for now)."""
    iti42 = transactions()["ITI-42"]
    assert iti42.action is not None and iti42.response_action is not None
    return [Operation(iti42.action, iti42.response_action, Iti42Handler(runtime, registry), transaction="ITI-42",
                      blocking=True)]


def register_in_process(runtime: Any, registry: DocumentRegistry, submission: Submission,
                        uow: Any) -> RegistryResponse:
    """ITI-42 for the embedded repository, inside the caller's unit of work; the caller commits.

    ``submission`` is what the repository would send over ITI-42: every stable DocumentEntry carries the
    repositoryUniqueId, hash and size slots in its model fields *and* its element (re-parse the metadata after
    adding them). Returns Success (with warnings, if any); raises :class:`XdsError` with every RegistryError
    when refused -- the caller then rolls back and relays ``exc.errors`` in its own RegistryResponse.

    No ITI-42 audit record is emitted: grouped actors exchange no ITI-42 message, and the repository's ITI-41
    Import record (patient and SubmissionSet) already tells what was registered, with the final outcome.
    """
    del runtime  # part of the contract, so a variant (remote registry, audit policy) can use it
    return registry.register_document_set_b(submission, uow)


class Iti42Handler(RegistryResponseHandler[Submission | None]):
    """Blocking SOAP handler of ITI-42 on the registry endpoint."""

    body_tag = qn(LCM, "SubmitObjectsRequest")
    wording = TransactionWording(transaction="ITI-42", name="Register Document Set-b",
                                 body="lcm:SubmitObjectsRequest", failure="registration failed",
                                 past_tense="registered")
    empty_subject = None

    def parse(self, payload: etree._Element) -> Submission:
        return parse_submission(payload)

    def run(self, subject: Submission | None, request: SoapRequest) -> HandlerOutcome[Submission | None]:
        assert subject is not None
        return self.committed(lambda uow: self.registry.register_document_set_b(subject, uow), request, subject)

    def audit_record(self, request: SoapRequest, outcome: HandlerOutcome[Submission | None],
                     description: str | None) -> AuditRecord:
        return iti42_audit_record(request, outcome.subject, outcome=outcome.indicator, description=description,
                                  process_id=self.process_id)


def iti42_audit_record(request: SoapRequest, submission: Submission | None, *, outcome: int,
                       description: str | None = None, process_id: str | None = None) -> AuditRecord:
    """The Document Registry's ITI-42 record (IHE-CONFORMANCE.md D): Import, C, Source = the SOAP peer,
    Destination = this endpoint, the patient (1/1) and the SubmissionSet (2/20, its uniqueId)."""
    return audit_record(soap_peer_source(request), endpoint_destination(request, process_id), submission,
                        outcome=outcome, description=description)


def audit_record(source: Participant, destination: Participant, submission: Submission | None, *, outcome: int,
                 description: str | None = None) -> AuditRecord:
    """Import (110107), action C, event type ITI-42, with the submission's patient and SubmissionSet."""
    return AuditRecord(event_id=IMPORT, action="C", outcome=outcome, event_types=(_ITI42,),
                       outcome_description=description, participants=(source, destination),
                       objects=submission_objects(submission), transaction="ITI-42")
