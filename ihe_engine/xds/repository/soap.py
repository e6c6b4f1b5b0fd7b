"""The repository's SOAP operations: ITI-41, ITI-43 (MTOM answers) and ITI-86, with their audit records.

Handlers are blocking (database and file store); each runs one unit of work and commits before its answer is
encoded, so a response never announces what a crash could still undo. Documents in ITI-43 answers are
:class:`~ihe_engine.soap.mtom.OutgoingAttachment` objects pointing at blob files: the endpoint streams them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lxml import etree

from ...audit.hook import AuditRecord, Participant, ParticipantObject
from ...ns import RMD, RS, XDS, qn
from ...soap.endpoint import Operation, SoapRequest, SoapResponse
from ...soap.fault import SENDER, SoapFault
from ...soap.mtom import OutgoingAttachment, new_content_id, xop_include
from ...xua.policy import check_retrieve
from .. import constants as c
from ..ebrim import parse_submission
from ..errors import RegistryResponse, XdsError, registry_response, registry_response_element
from ..soap_common import DESTINATION_ROLE, IMPORT, SOURCE_ROLE, submission_objects
from .actor import DocumentRepository, DocumentRequest, ProvideResult, RetrieveResult, parse_document_requests

__all__ = [
    "ITI41_ACTION", "ITI41_RESPONSE_ACTION", "ITI43_ACTION", "ITI43_RESPONSE_ACTION", "ITI86_ACTION",
    "ITI86_RESPONSE_ACTION", "ITI86_ACTION_2016", "repository_operations", "retrieve_response_element",
]

ITI41_ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI41_RESPONSE_ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
ITI43_ACTION = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI43_RESPONSE_ACTION = "urn:ihe:iti:2007:RetrieveDocumentSetResponse"
ITI86_ACTION = "urn:ihe:iti:2017:RemoveDocuments"
ITI86_RESPONSE_ACTION = "urn:ihe:iti:2017:RemoveDocumentsResponse"
ITI86_ACTION_2016 = "urn:ihe:iti:rmd:2016:RemoveDocuments"
"""The action of the committee's RMD SOAP example (an older draft's); accepted so that example is served."""

_PNR = qn(XDS, "ProvideAndRegisterDocumentSetRequest")
_RETRIEVE = qn(XDS, "RetrieveDocumentSetRequest")
_REMOVE = (qn(RMD, "RemoveDocumentsRequest"), qn(RMD, "RemoveDocumentSetRequest"))  # the example's spelling

# Audit codes (IHE-CONFORMANCE.md D).
_EXPORT, _PATIENT_RECORD = ("110106", "DCM", "Export"), ("110110", "DCM", "Patient Record")
_REPORT_NUMBER = ("9", "RFC-3881", "Report Number")
_ITI41 = ("ITI-41", "IHE Transactions", "Provide and Register Document Set-b")
_ITI42 = ("ITI-42", "IHE Transactions", "Register Document Set-b")
_ITI43 = ("ITI-43", "IHE Transactions", "Retrieve Document Set")
_ITI86 = ("ITI-86", "IHE Transactions", "Remove Documents")


def repository_operations(runtime: Any, repository: DocumentRepository) -> list[Operation]:
    """The Operations to register on the ``xds/repository`` endpoint."""
    handlers = _Handlers(runtime, repository)
    return [
        Operation(ITI41_ACTION, ITI41_RESPONSE_ACTION, handlers.provide_and_register, transaction="ITI-41",
                  mtom_response=True),
        Operation(ITI43_ACTION, ITI43_RESPONSE_ACTION, handlers.retrieve, transaction="ITI-43",
                  mtom_response=True),
        Operation(ITI86_ACTION, ITI86_RESPONSE_ACTION, handlers.remove_documents, transaction="ITI-86"),
        Operation(ITI86_ACTION_2016, ITI86_RESPONSE_ACTION, handlers.remove_documents, transaction="ITI-86"),
    ]


def retrieve_response_element(result: RetrieveResult) -> tuple[etree._Element, tuple[OutgoingAttachment, ...]]:
    """xds:RetrieveDocumentSetResponse with one DocumentResponse per document found, each an xop:Include."""
    root = etree.Element(qn(XDS, "RetrieveDocumentSetResponse"), nsmap={"xds": XDS, "rs": RS})
    root.append(registry_response_element(result.response))
    attachments = []
    for document in result.documents:
        item = etree.SubElement(root, qn(XDS, "DocumentResponse"))
        request = document.request
        if request.home_community_id:  # echoed only when sent (A8)
            etree.SubElement(item, qn(XDS, "HomeCommunityId")).text = request.home_community_id
        etree.SubElement(item, qn(XDS, "RepositoryUniqueId")).text = request.repository_unique_id
        etree.SubElement(item, qn(XDS, "DocumentUniqueId")).text = request.document_unique_id
        etree.SubElement(item, qn(XDS, "mimeType")).text = document.mime_type
        content_id = new_content_id()
        xop_include(etree.SubElement(item, qn(XDS, "Document")), content_id)
        attachments.append(OutgoingAttachment(content_id=content_id, content=document.path,
                                              content_type=document.mime_type))
    return root, tuple(attachments)


class _Handlers:
    """The blocking handlers; each owns one unit of work."""

    def __init__(self, runtime: Any, repository: DocumentRepository) -> None:
        self.runtime = runtime
        self.repository = repository

    # ------------------------------------------------------------------------------------------ ITI-41

    def provide_and_register(self, request: SoapRequest) -> SoapResponse:
        _expect(request, (_PNR,))
        result, audited = self._provide(request)
        if not audited:
            for record in _provide_records(request, result):
                self.runtime.audit.emit(record)
        return SoapResponse(body=registry_response_element(result.response))

    def _provide(self, request: SoapRequest) -> tuple[ProvideResult, bool]:
        """The actor's result, or a Failure carrying every RegistryError of the refusal (nothing kept); and
        whether its audit records were queued in the submission's own transaction (embedded registry: they are
        durable exactly when the documents are; a remote registration committed earlier, they follow it)."""
        submission = None
        try:
            submission = parse_submission(request.payload)
            with self.runtime.uow() as uow:
                result = self.repository.provide_and_register(submission, lambda doc: request.binary(doc.element),
                                                              uow)
                audited = not _sent_iti42(result)  # a remote registration committed the rows already
                if audited:
                    self.runtime.audit.emit_with(uow.session, _provide_records(request, result))
                uow.commit()
            return result, audited
        except XdsError as refused:
            return ProvideResult(response=registry_response(refused.errors), submission=submission,
                                 registry_destination=self.repository.registry_client.destination), False

    # ------------------------------------------------------------------------------------------ ITI-43

    def retrieve(self, request: SoapRequest) -> SoapResponse:
        _expect(request, (_RETRIEVE,))
        document_requests = parse_document_requests(request.payload)
        with self.runtime.uow(readonly=True) as uow:
            access = check_retrieve(self.runtime, request,
                                    [item.document_unique_id for item in document_requests], uow.session)
            result = self.repository.retrieve(document_requests, uow, hidden=frozenset(access.denied))
        _audit_retrieve(self.runtime, request, result)
        body, attachments = retrieve_response_element(result)
        return SoapResponse(body=body, attachments=attachments)

    # ------------------------------------------------------------------------------------------ ITI-86

    def remove_documents(self, request: SoapRequest) -> SoapResponse:
        _expect(request, _REMOVE)
        document_requests = parse_document_requests(request.payload)
        with self.runtime.uow() as uow:
            response = self.repository.remove_documents(document_requests, uow)
            self.runtime.audit.emit_with(uow.session, [_remove_record(request, document_requests, response)])
            uow.commit()
        return SoapResponse(body=registry_response_element(response))


def _expect(request: SoapRequest, tags: Sequence[str]) -> None:
    if request.payload.tag not in tags:
        wanted = " or ".join(etree.QName(tag).localname for tag in tags)
        raise SoapFault(SENDER, f"the body holds {etree.QName(request.payload).localname}; this action expects "
                                f"{wanted}")


# =============================================================================================================
# Audit (IHE-CONFORMANCE.md D)
# =============================================================================================================

def _outcome(response: RegistryResponse) -> int:
    return {c.RESPONSE_SUCCESS: 0, c.RESPONSE_PARTIAL_SUCCESS: 4}.get(response.status, 8)


def _description(response: RegistryResponse) -> str | None:
    return "; ".join(f"{e.error_code}: {e.code_context}" for e in response.errors) or None


def _requestor(request: SoapRequest) -> Participant:
    reply_to = request.addressing.reply_to
    user = getattr(reply_to, "address", None) or request.peer
    return Participant(user_id=user, is_requestor=True, role=SOURCE_ROLE,
                       network_access_point=request.peer.rsplit(":", 1)[0], user_name=request.user_alias)


def _this_endpoint(request: SoapRequest, *, requestor: bool = False, role=DESTINATION_ROLE) -> Participant:
    return Participant(user_id=request.addressing.to or request.endpoint, is_requestor=requestor, role=role,
                       alternative_user_id=str(os.getpid()))


def _provide_records(request: SoapRequest, result: ProvideResult) -> list[AuditRecord]:
    """ITI-41 Import (C) as the receiving repository; ITI-42 Export (R) when it sent ITI-42 to a remote registry
    (a grouped registry exchanges no ITI-42 message, and audits nothing for it either)."""
    objects = submission_objects(result.submission)
    outcome, description = _outcome(result.response), _description(result.response)
    records = [AuditRecord(
        event_id=IMPORT, action="C", outcome=outcome, event_types=(_ITI41,), outcome_description=description,
        participants=(_requestor(request), _this_endpoint(request)), objects=objects, transaction="ITI-41")]
    if result.submission is None or not objects or not _sent_iti42(result):
        return records  # nothing sent: refused before registering, or the grouped registry (no ITI-42 message)
    records.append(AuditRecord(
        event_id=_EXPORT, action="R", outcome=outcome, event_types=(_ITI42,), outcome_description=description,
        participants=(_this_endpoint(request, requestor=True, role=SOURCE_ROLE),
                      Participant(user_id=result.registry_destination or "registry", is_requestor=False,
                                  role=DESTINATION_ROLE)),
        objects=objects, transaction="ITI-42"))
    return records


def _sent_iti42(result: ProvideResult) -> bool:
    return result.registry_destination is not None and result.registry_destination.startswith(("http:", "https:"))


def _document_object(document_request: DocumentRequest) -> ParticipantObject:
    details = [("Repository Unique Id", document_request.repository_unique_id.encode("utf-8"))]
    if document_request.home_community_id:
        details.append(("ihe:homeCommunityID", document_request.home_community_id.encode("utf-8")))
    return ParticipantObject(object_id=document_request.document_unique_id, type_code=2, type_code_role=3,
                             id_type=_REPORT_NUMBER, details=tuple(details))


def _audit_retrieve(runtime: Any, request: SoapRequest, result: RetrieveResult) -> None:
    """ITI-43 Export (R) by the repository, one Document object per document sent."""
    runtime.audit.emit(AuditRecord(
        event_id=_EXPORT, action="R", outcome=_outcome(result.response), event_types=(_ITI43,),
        outcome_description=_description(result.response),
        participants=(_this_endpoint(request, role=SOURCE_ROLE), _requestor_as_destination(request)),
        objects=tuple(_document_object(document.request) for document in result.documents), transaction="ITI-43"))


def _requestor_as_destination(request: SoapRequest) -> Participant:
    requestor = _requestor(request)
    return Participant(user_id=requestor.user_id, is_requestor=True, role=DESTINATION_ROLE,
                       network_access_point=requestor.network_access_point, user_name=requestor.user_name)


def _remove_record(request: SoapRequest, document_requests: Sequence[DocumentRequest],
                   response: RegistryResponse) -> AuditRecord:
    """ITI-86: Patient Record Delete (D), by analogy with ITI-62, one Document object per request."""
    return AuditRecord(
        event_id=_PATIENT_RECORD, action="D", outcome=_outcome(response), event_types=(_ITI86,),
        outcome_description=_description(response),
        participants=(_requestor(request), _this_endpoint(request)),
        objects=tuple(_document_object(item) for item in document_requests), transaction="ITI-86")
