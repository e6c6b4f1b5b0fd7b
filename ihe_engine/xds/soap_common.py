"""What the XDS SOAP transactions share: the registry handler outline and the parts of their audit records.

The registry transactions that answer rs:RegistryResponse (ITI-42, ITI-57 / ITI-92, ITI-62) all work alike, so
the outline lives once, in :class:`RegistryResponseHandler`: a body of the wrong element is a SOAP Sender fault;
otherwise parse it, do the work in one unit of work and commit before answering; any refusal is a Failure
RegistryResponse carrying every RegistryError (never a SOAP fault); one audit record is emitted once the outcome
is known, success or failure. A transaction module keeps only its parsing, its work and its audit record.

The audit parts (IHE-CONFORMANCE.md D) are the registry's Source (the SOAP peer) and Destination (this
endpoint), and the patient (1/1) and SubmissionSet (2/20) objects, also used by the repository's ITI-41 record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lxml import etree
from sqlalchemy.exc import OperationalError

from ..audit.hook import AuditRecord, Participant, ParticipantObject
from ..errors import RemoteProtocolError
from ..soap.endpoint import SoapRequest, SoapResponse
from ..soap.fault import SENDER, SoapFault
from . import constants as c
from .errors import (XDS_REGISTRY_BUSY, XDS_REGISTRY_ERROR, XDS_REGISTRY_METADATA_ERROR, RegistryError,
                     RegistryResponse, XdsError, registry_response, registry_response_element)
from .model import Submission

__all__ = [
    "OUTCOME_SUCCESS", "OUTCOME_REFUSED", "OUTCOME_INTERNAL", "IMPORT", "SOURCE_ROLE", "DESTINATION_ROLE",
    "PATIENT_NUMBER", "SUBMISSION_SET_ID", "TransactionWording", "HandlerOutcome", "RegistryResponseHandler",
    "failure_response", "describe_errors", "AuditedCommitFailure", "commit_reporting_rollback", "emit_audit",
    "soap_peer_source", "endpoint_destination",
    "patient_object", "submission_objects",
]

log = logging.getLogger("ihe_engine.xds.registry")

OUTCOME_SUCCESS, OUTCOME_REFUSED, OUTCOME_INTERNAL = 0, 8, 12
"""RFC 3881 event outcome indicators: success, serious failure (refused), major failure (internal error)."""
IMPORT = ("110107", "DCM", "Import")
SOURCE_ROLE = ("110153", "DCM", "Source Role ID")
DESTINATION_ROLE = ("110152", "DCM", "Destination Role ID")
PATIENT_NUMBER = ("2", "RFC-3881", "Patient Number")
SUBMISSION_SET_ID = (c.SS_CLASSIFICATION_NODE, "IHE XDS Metadata", "submission set classificationNode")

S = TypeVar("S")


# ---------------------------------------------------------------------------------------------- handler outline

@dataclass(frozen=True, kw_only=True)
class TransactionWording:
    """How a transaction names itself in SOAP faults, log lines and internal-error answers."""

    transaction: str
    """Log prefix, e.g. ``ITI-42``."""
    name: str
    """Transaction name in a wrong-body fault, e.g. ``Register Document Set-b``."""
    body: str
    """The expected body element, prefixed, e.g. ``lcm:SubmitObjectsRequest``."""
    failure: str
    """Log line of an unexpected failure, e.g. ``registration failed``."""
    past_tense: str
    """Ends "nothing was ..." in an internal-error answer, e.g. ``registered``."""


@dataclass(frozen=True)
class HandlerOutcome(Generic[S]):
    """The answer, its audit outcome indicator and what the audit record names (``subject``).

    ``audited``: the record was already queued in the work's own transaction (see :meth:`committed`).
    """

    response: RegistryResponse
    indicator: int
    subject: S
    audited: bool = False


class RegistryResponseHandler(Generic[S]):
    """Blocking SOAP handler outline of a registry transaction answering rs:RegistryResponse.

    Subclasses set ``body_tag``, ``wording`` and ``empty_subject`` (what is audited before anything was parsed)
    and implement :meth:`parse`, :meth:`run` and :meth:`audit_record`.
    """

    body_tag: str
    wording: TransactionWording
    empty_subject: S

    def __init__(self, runtime: Any, registry: Any) -> None:
        self.runtime = runtime
        self.registry = registry

    def __call__(self, request: SoapRequest) -> SoapResponse:
        if request.payload.tag != self.body_tag:
            refused = HandlerOutcome(registry_response(), OUTCOME_REFUSED, self.empty_subject)
            self._audit(request, refused, f"the body is not an {self.wording.body}")
            raise SoapFault(SENDER, f"{self.wording.name} expects {self.wording.body} in the body, not "
                                    f"{request.payload.tag}")
        outcome = self._outcome(request)
        if not outcome.audited:
            self._audit(request, outcome, describe_errors(outcome.response.errors))
        return SoapResponse(body=registry_response_element(outcome.response))

    def parse(self, payload: etree._Element) -> S:
        """The request's subject (submission, object ids); raises XdsError or RemoteProtocolError to refuse."""
        raise NotImplementedError

    def run(self, subject: S, request: SoapRequest) -> HandlerOutcome[S]:
        """Do the work in its own unit of work and commit it (with :meth:`committed`, which also queues the audit
        record in that transaction); raises XdsError to refuse (nothing kept)."""
        raise NotImplementedError

    def audit_record(self, request: SoapRequest, outcome: HandlerOutcome[S], description: str | None
                     ) -> AuditRecord:
        raise NotImplementedError

    def committed(self, work: Callable[[Any], RegistryResponse], request: SoapRequest, subject: S,
                  indicator: int = OUTCOME_SUCCESS) -> HandlerOutcome[S]:
        """``work(uow)`` in a new unit of work, committed when it returns (rolled back when it raises).

        The audit record of the outcome is queued in the same transaction, so it is durable exactly when the
        change is: a crash between the commit and the answer loses no record.
        """
        with self.runtime.uow() as uow:
            outcome = HandlerOutcome(work(uow), indicator, subject, audited=True)
            self.audit_in(uow.session, request, outcome)
            commit_reporting_rollback(uow)
        return outcome

    def audit_in(self, session: Any, request: SoapRequest, outcome: HandlerOutcome[S]) -> None:
        """Queue the outcome's audit record in ``session``'s transaction (when the runtime has an audit hook)."""
        audit = getattr(self.runtime, "audit", None)
        if audit is not None:
            audit.emit_with(session, [self.audit_record(request, outcome, describe_errors(outcome.response.errors))])

    @property
    def process_id(self) -> str | None:
        return getattr(self.runtime, "process_id", None)

    def _outcome(self, request: SoapRequest) -> HandlerOutcome[S]:
        subject = self.empty_subject
        try:
            subject = self.parse(request.payload)
            return self.run(subject, request)
        except AuditedCommitFailure as failed:  # the rollback already reported the record as failed
            response, indicator = failure_response(failed.cause, self.wording)
            return HandlerOutcome(response, indicator, subject, audited=True)
        except Exception as exc:  # every failure is a Failure RegistryResponse, see failure_response
            response, indicator = failure_response(exc, self.wording)
            return HandlerOutcome(response, indicator, subject)

    def _audit(self, request: SoapRequest, outcome: HandlerOutcome[S], description: str | None) -> None:
        emit_audit(self.runtime, lambda: self.audit_record(request, outcome, description))


class AuditedCommitFailure(Exception):
    """The commit failed after the work's audit record was queued in its transaction: the rollback emitted that
    record as failed, so whoever answers must not audit the failure a second time."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def commit_reporting_rollback(uow: Any) -> None:
    """``uow.commit()``; a failure is raised as :class:`AuditedCommitFailure` (its cause attached)."""
    try:
        uow.commit()
    except Exception as exc:
        raise AuditedCommitFailure(exc) from exc


def failure_response(exc: Exception, wording: TransactionWording) -> tuple[RegistryResponse, int]:
    """The Failure answer and audit outcome of ``exc``: a refusal (XdsError, an XML limit in the payload) is 8
    and carries its errors; a database or unexpected failure is logged and 12, telling nothing was done."""
    if isinstance(exc, XdsError):
        return registry_response(exc.errors), OUTCOME_REFUSED
    if isinstance(exc, RemoteProtocolError):
        return registry_response([_error(XDS_REGISTRY_METADATA_ERROR, str(exc))]), OUTCOME_REFUSED
    if isinstance(exc, OperationalError):
        log.error("%s: database unavailable", wording.transaction, exc_info=exc)
        return registry_response([_error(XDS_REGISTRY_BUSY, "the registry database is busy or unavailable; "
                                                            f"nothing was {wording.past_tense}")]), OUTCOME_INTERNAL
    log.error("%s: %s", wording.transaction, wording.failure, exc_info=exc)
    return registry_response([_error(XDS_REGISTRY_ERROR, "internal registry error; "
                                                         f"nothing was {wording.past_tense}")]), OUTCOME_INTERNAL


def _error(code: str, context: str) -> RegistryError:
    return RegistryError(error_code=code, code_context=context)


def describe_errors(errors: Sequence[RegistryError]) -> str | None:
    """The audit outcome description: every error (not warning) as ``code: context``, or None."""
    return "; ".join(f"{e.error_code}: {e.code_context}" for e in errors if e.is_error) or None


def emit_audit(runtime: Any, record: Callable[[], AuditRecord]) -> None:
    """Emit ``record()`` when the runtime has an audit hook (a bare test runtime may have none)."""
    audit = getattr(runtime, "audit", None)
    if audit is not None:
        audit.emit(record())


# ---------------------------------------------------------------------------------------------- audit parts

def soap_peer_source(request: SoapRequest) -> Participant:
    """Source = the requestor: its wsa:ReplyTo address, else its host; the host as network access point."""
    peer_host = request.peer.rsplit(":", 1)[0]
    reply_to = request.addressing.reply_to
    return Participant(user_id=reply_to.address if reply_to is not None else peer_host, is_requestor=True,
                       role=SOURCE_ROLE, network_access_point=peer_host, user_name=request.user_alias)


def endpoint_destination(request: SoapRequest, process_id: str | None) -> Participant:
    """Destination = this endpoint (its wsa:To, else its URL), with the serving process id."""
    return Participant(user_id=request.addressing.to or request.endpoint, is_requestor=False,
                       role=DESTINATION_ROLE, alternative_user_id=process_id)


def patient_object(patient_id: str) -> ParticipantObject:
    """The patient (type 1, role 1), by its patient id."""
    return ParticipantObject(object_id=patient_id, type_code=1, type_code_role=1, id_type=PATIENT_NUMBER)


def submission_objects(submission: Submission | None) -> tuple[ParticipantObject, ...]:
    """The submission's patient (1/1) and SubmissionSet (2/20, its uniqueId), those it has."""
    submission_set = submission.submission_set if submission is not None else None
    if submission_set is None:
        return ()
    objects = []
    if submission_set.patient_id:
        objects.append(patient_object(submission_set.patient_id))
    if submission_set.unique_id:
        objects.append(ParticipantObject(object_id=submission_set.unique_id, type_code=2, type_code_role=20,
                                         id_type=SUBMISSION_SET_ID))
    return tuple(objects)
