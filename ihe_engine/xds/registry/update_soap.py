"""ITI-57 Update Document Set and ITI-92 Restricted Update Document Set on the registry endpoint.

Both take an lcm:SubmitObjectsRequest and answer rs:RegistryResponse; the handler runs in the thread pool,
updates inside one unit of work and commits before answering. Refusals are a Failure RegistryResponse carrying
every RegistryError, never a SOAP fault; only a body that is not a SubmitObjectsRequest is a Sender fault.

Audit (IHE-CONFORMANCE.md D, "ITI-57 Registry"): Import (110107), action U, event type ITI-57 (or ITI-92), the
requestor as Source and this endpoint as Destination, with the patient (1/1) and the SubmissionSet (2/20, its
uniqueId); emitted once the outcome is known, success or refusal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
from .update import update_document_set

__all__ = ["update_operations", "UpdateHandler", "update_audit_record", "ITI57", "ITI92"]

log = logging.getLogger("ihe_engine.xds.registry")


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

_SUBMIT_OBJECTS_REQUEST = qn(LCM, "SubmitObjectsRequest")
_IMPORT = ("110107", "DCM", "Import")
_SOURCE_ROLE = ("110153", "DCM", "Source Role ID")
_DESTINATION_ROLE = ("110152", "DCM", "Destination Role ID")
_PATIENT_NUMBER = ("2", "RFC-3881", "Patient Number")
_SUBMISSION_SET_ID = (c.SS_CLASSIFICATION_NODE, "IHE XDS Metadata", "submission set classificationNode")
_OUTCOME_SUCCESS, _OUTCOME_REFUSED, _OUTCOME_INTERNAL = 0, 8, 12


def update_operations(runtime: Any, registry: DocumentRegistry) -> list[Operation]:
    """ITI-57 and ITI-92 for the registry SoapEndpoint."""
    return [Operation(kind.action, kind.response_action, UpdateHandler(runtime, registry, kind),
                      transaction=kind.transaction, blocking=True) for kind in (ITI57, ITI92)]


class UpdateHandler:
    """Blocking SOAP handler of ITI-57 or ITI-92."""

    def __init__(self, runtime: Any, registry: DocumentRegistry, kind: _Kind = ITI57) -> None:
        self.runtime = runtime
        self.registry = registry
        self.kind = kind

    def __call__(self, request: SoapRequest) -> SoapResponse:
        if request.payload.tag != _SUBMIT_OBJECTS_REQUEST:
            self._audit(request, None, _OUTCOME_REFUSED, "the body is not an lcm:SubmitObjectsRequest")
            raise SoapFault(SENDER, f"{self.kind.name} expects lcm:SubmitObjectsRequest in the body, not "
                                    f"{request.payload.tag}")
        submission, response, outcome = self._update(request.payload)
        self._audit(request, submission, outcome, _describe_errors(response.errors))
        return SoapResponse(body=registry_response_element(response))

    def _update(self, payload: etree._Element) -> tuple[Submission | None, RegistryResponse, int]:
        submission = None
        try:
            submission = parse_submission(payload)
            with self.runtime.uow() as uow:
                response = update_document_set(self.registry, submission, uow, restricted=self.kind.restricted)
                uow.commit()
            return submission, response, _OUTCOME_SUCCESS
        except XdsError as refusal:
            return submission, registry_response(refusal.errors), _OUTCOME_REFUSED
        except RemoteProtocolError as exc:
            return submission, registry_response([_error(XDS_REGISTRY_METADATA_ERROR, str(exc))]), _OUTCOME_REFUSED
        except OperationalError:
            log.exception("%s: database unavailable", self.kind.transaction)
            busy = _error(XDS_REGISTRY_BUSY, "the registry database is busy or unavailable; nothing was updated")
            return submission, registry_response([busy]), _OUTCOME_INTERNAL
        except Exception:
            log.exception("%s: update failed", self.kind.transaction)
            failed = _error(XDS_REGISTRY_ERROR, "internal registry error; nothing was updated")
            return submission, registry_response([failed]), _OUTCOME_INTERNAL

    def _audit(self, request: SoapRequest, submission: Submission | None, outcome: int,
               description: str | None) -> None:
        audit = getattr(self.runtime, "audit", None)
        if audit is not None:
            audit.emit(update_audit_record(request, submission, self.kind, outcome=outcome, description=description,
                                           process_id=getattr(self.runtime, "process_id", None)))


def _error(code: str, context: str) -> RegistryError:
    return RegistryError(error_code=code, code_context=context)


def _describe_errors(errors: Any) -> str | None:
    return "; ".join(f"{e.error_code}: {e.code_context}" for e in errors if e.is_error) or None


def update_audit_record(request: SoapRequest, submission: Submission | None, kind: _Kind = ITI57, *, outcome: int,
                        description: str | None = None, process_id: str | None = None) -> AuditRecord:
    """Import (110107), U: requestor (Source), this endpoint (Destination), patient and SubmissionSet."""
    peer_host = request.peer.rsplit(":", 1)[0]
    reply_to = request.addressing.reply_to
    source = Participant(user_id=reply_to.address if reply_to is not None else peer_host, is_requestor=True,
                         role=_SOURCE_ROLE, network_access_point=peer_host)
    destination = Participant(user_id=request.addressing.to or request.endpoint, is_requestor=False,
                              role=_DESTINATION_ROLE, alternative_user_id=process_id)
    return AuditRecord(event_id=_IMPORT, action="U", outcome=outcome, event_types=(kind.event_type,),
                       outcome_description=description, participants=(source, destination),
                       objects=_submission_objects(submission), transaction=kind.transaction)


def _submission_objects(submission: Submission | None) -> tuple[ParticipantObject, ...]:
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
