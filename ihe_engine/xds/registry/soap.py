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

import logging
from typing import Any

from lxml import etree
from sqlalchemy.exc import OperationalError

from ...audit.hook import AuditRecord, Participant, ParticipantObject
from ...errors import RemoteProtocolError
from ...ns import LCM, qn
from ...profiles import transactions
from ...soap.endpoint import Operation, SoapRequest, SoapResponse
from ...soap.fault import SENDER, SoapFault
from .. import constants as c
from ..ebrim import parse_submission
from ..errors import (XDS_REGISTRY_BUSY, XDS_REGISTRY_ERROR, XDS_REGISTRY_METADATA_ERROR, RegistryError,
                      RegistryResponse, XdsError, registry_response, registry_response_element)
from ..model import Submission
from .actor import DocumentRegistry

__all__ = ["registry_operations", "register_in_process", "Iti42Handler", "iti42_audit_record", "audit_record",
           "LATER_TRANSACTIONS"]

log = logging.getLogger("ihe_engine.xds.registry")

LATER_TRANSACTIONS = ("ITI-18", "ITI-51", "ITI-57", "ITI-92", "ITI-62")
"""Registry transactions served on the same endpoint by other modules (query) or not yet written."""

_SUBMIT_OBJECTS_REQUEST = qn(LCM, "SubmitObjectsRequest")
_IMPORT = ("110107", "DCM", "Import")
_ITI42 = ("ITI-42", "IHE Transactions", "Register Document Set-b")
_SOURCE_ROLE = ("110153", "DCM", "Source Role ID")
_DESTINATION_ROLE = ("110152", "DCM", "Destination Role ID")
_PATIENT_NUMBER = ("2", "RFC-3881", "Patient Number")
_SUBMISSION_SET_ID = (c.SS_CLASSIFICATION_NODE, "IHE XDS Metadata", "submission set classificationNode")
_OUTCOME_SUCCESS, _OUTCOME_REFUSED, _OUTCOME_INTERNAL = 0, 8, 12


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


def _emit(runtime: Any, record: AuditRecord) -> None:
    audit = getattr(runtime, "audit", None)
    if audit is not None:
        audit.emit(record)


def _describe_errors(errors: Any) -> str | None:
    return "; ".join(f"{e.error_code}: {e.code_context}" for e in errors if e.is_error) or None


class Iti42Handler:
    """Blocking SOAP handler of ITI-42 on the registry endpoint."""

    def __init__(self, runtime: Any, registry: DocumentRegistry) -> None:
        self.runtime = runtime
        self.registry = registry

    def __call__(self, request: SoapRequest) -> SoapResponse:
        if request.payload.tag != _SUBMIT_OBJECTS_REQUEST:
            self._audit(request, None, _OUTCOME_REFUSED, "the body is not an lcm:SubmitObjectsRequest")
            raise SoapFault(SENDER, f"Register Document Set-b expects lcm:SubmitObjectsRequest in the body, not "
                                    f"{request.payload.tag}")
        submission, response, outcome = self._register(request.payload)
        self._audit(request, submission, outcome, _describe_errors(response.errors))
        return SoapResponse(body=registry_response_element(response))

    def _register(self, payload: etree._Element) -> tuple[Submission | None, RegistryResponse, int]:
        submission = None
        try:
            submission = parse_submission(payload)
            with self.runtime.uow() as uow:
                response = self.registry.register_document_set_b(submission, uow)
                uow.commit()
            return submission, response, _OUTCOME_SUCCESS
        except XdsError as refusal:
            return submission, registry_response(refusal.errors), _OUTCOME_REFUSED
        except RemoteProtocolError as exc:  # e.g. an XML security limit inside the payload
            return submission, registry_response([_error(XDS_REGISTRY_METADATA_ERROR, str(exc))]), _OUTCOME_REFUSED
        except OperationalError:
            log.exception("ITI-42: database unavailable")
            busy = _error(XDS_REGISTRY_BUSY, "the registry database is busy or unavailable; nothing was registered")
            return submission, registry_response([busy]), _OUTCOME_INTERNAL
        except Exception:
            log.exception("ITI-42: registration failed")
            failed = _error(XDS_REGISTRY_ERROR, "internal registry error; nothing was registered")
            return submission, registry_response([failed]), _OUTCOME_INTERNAL

    def _audit(self, request: SoapRequest, submission: Submission | None, outcome: int,
               description: str | None) -> None:
        _emit(self.runtime, iti42_audit_record(request, submission, outcome=outcome, description=description,
                                               process_id=getattr(self.runtime, "process_id", None)))


def _error(code: str, context: str) -> RegistryError:
    return RegistryError(error_code=code, code_context=context)


def iti42_audit_record(request: SoapRequest, submission: Submission | None, *, outcome: int,
                       description: str | None = None, process_id: str | None = None) -> AuditRecord:
    """The Document Registry's ITI-42 record (IHE-CONFORMANCE.md D): Import, C, Source = the SOAP peer,
    Destination = this endpoint, the patient (1/1) and the SubmissionSet (2/20, its uniqueId)."""
    peer_host = request.peer.rsplit(":", 1)[0]
    reply_to = request.addressing.reply_to
    source = Participant(user_id=reply_to.address if reply_to is not None else peer_host, is_requestor=True,
                         role=_SOURCE_ROLE, network_access_point=peer_host)
    destination = Participant(user_id=request.addressing.to or request.endpoint, is_requestor=False,
                              role=_DESTINATION_ROLE, alternative_user_id=process_id)
    return audit_record(source, destination, submission, outcome=outcome, description=description)


def audit_record(source: Participant, destination: Participant, submission: Submission | None, *, outcome: int,
                 description: str | None = None) -> AuditRecord:
    """Import (110107), action C, event type ITI-42, with the submission's patient and SubmissionSet."""
    return AuditRecord(event_id=_IMPORT, action="C", outcome=outcome, event_types=(_ITI42,),
                       outcome_description=description, participants=(source, destination),
                       objects=_audit_objects(submission), transaction="ITI-42")


def _audit_objects(submission: Submission | None) -> tuple[ParticipantObject, ...]:
    submission_set = submission.submission_set if submission is not None else None
    if submission_set is None:
        return ()
    objects = []
    if submission_set.patient_id:
        objects.append(ParticipantObject(object_id=submission_set.patient_id, type_code=1, type_code_role=1,
                                         id_type=_PATIENT_NUMBER))
    if submission_set.unique_id:
        objects.append(ParticipantObject(object_id=submission_set.unique_id, type_code=2, type_code_role=20,
                                         id_type=_SUBMISSION_SET_ID))
    return tuple(objects)
