"""ITI-62 Remove Metadata on the registry endpoint: lcm:RemoveObjectsRequest in, rs:RegistryResponse out.

The handler runs in the thread pool, removes inside one unit of work and commits before answering. Refusals
(unknown object, references left, orphans, a request that names nothing) are a Failure RegistryResponse with
every RegistryError, never a SOAP fault; only a body that is not a RemoveObjectsRequest is a Sender fault.

Audit (IHE-CONFORMANCE.md D): Patient Record (110110), action D, event type ITI-62, with the requestor as
Source and this endpoint as Destination; one Patient object (1/1) per patient of the removed objects and one
object (2/3) per removed object, its entryUUID as ID. A refusal is audited too (outcome 8), naming what was
asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ...audit.hook import AuditRecord, ParticipantObject
from ...ns import LCM, RIM, qn
from ...profiles import transactions
from ...soap.endpoint import Operation, SoapRequest
from .. import constants as c
from ..errors import XDS_REGISTRY_METADATA_ERROR, XdsError, registry_response
from ..soap_common import (OUTCOME_REFUSED, OUTCOME_SUCCESS, HandlerOutcome, RegistryResponseHandler,
                           TransactionWording, commit_reporting_rollback, endpoint_destination, patient_object,
                           soap_peer_source)
from .actor import DocumentRegistry
from .remove import KIND_NAMES, remove_objects
from .store import RegistryStore, StoredObject
from .tables import ObjectKind

__all__ = ["remove_operations", "parse_remove_request", "RemoveMetadataHandler", "iti62_audit_record"]

_OBJECT_REF_LIST, _OBJECT_REF, _ADHOC_QUERY = qn(RIM, "ObjectRefList"), qn(RIM, "ObjectRef"), qn(RIM, "AdhocQuery")
_PATIENT_RECORD = ("110110", "DCM", "Patient Record")
_ITI62 = ("ITI-62", "IHE Transactions", "Remove Metadata")
_METADATA = "IHE XDS Metadata"
_ID_TYPES = {
    ObjectKind.SUBMISSION_SET: (c.SS_CLASSIFICATION_NODE, _METADATA, "submission set classificationNode"),
    ObjectKind.FOLDER: (c.FOLDER_CLASSIFICATION_NODE, _METADATA, "folder classificationNode"),
    ObjectKind.DOCUMENT_ENTRY: (c.DE_STABLE, _METADATA, "DocumentEntry objectType"),
    ObjectKind.ASSOCIATION: (c.OBJECT_TYPE_ASSOCIATION, _METADATA, "Association"),
}
_UNKNOWN_ID_TYPE = ("urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject", _METADATA, "registry object")


def remove_operations(runtime: Any, registry: DocumentRegistry) -> list[Operation]:
    """ITI-62 for the registry SoapEndpoint."""
    iti62 = transactions()["ITI-62"]
    assert iti62.action is not None and iti62.response_action is not None
    return [Operation(iti62.action, iti62.response_action, RemoveMetadataHandler(runtime, registry),
                      transaction="ITI-62", blocking=True)]


def parse_remove_request(payload: etree._Element) -> list[str]:
    """The entryUUIDs of ObjectRefList/ObjectRef@id, in order. Removal by AdhocQuery (ebRS allows it, RMD does
    not use it) and an ObjectRef without id are refused with XDSRegistryMetadataError."""
    if payload.find(_ADHOC_QUERY) is not None:
        raise XdsError(XDS_REGISTRY_METADATA_ERROR, "removal selected by rim:AdhocQuery is not supported; "
                                                    "name the objects in rim:ObjectRefList")
    refs = [ref for ref_list in payload.iterchildren(_OBJECT_REF_LIST) for ref in ref_list.iterchildren(_OBJECT_REF)]
    if any(not (ref.get("id") or "").strip() for ref in refs):
        raise XdsError(XDS_REGISTRY_METADATA_ERROR, "rim:ObjectRef without an id attribute")
    return [ref.get("id").strip() for ref in refs]


@dataclass(frozen=True)
class _Removal:
    """What an ITI-62 audit record names: the entryUUIDs asked for and those of them the registry holds."""

    requested: tuple[str, ...] = ()
    known: Mapping[str, StoredObject] = field(default_factory=dict)


class RemoveMetadataHandler(RegistryResponseHandler[_Removal]):
    """Blocking SOAP handler of ITI-62."""

    body_tag = qn(LCM, "RemoveObjectsRequest")
    wording = TransactionWording(transaction="ITI-62", name="Remove Metadata", body="lcm:RemoveObjectsRequest",
                                 failure="removal failed", past_tense="removed")
    empty_subject = _Removal()

    def parse(self, payload: etree._Element) -> _Removal:
        return _Removal(tuple(parse_remove_request(payload)))

    def run(self, subject: _Removal, request: SoapRequest) -> HandlerOutcome[_Removal]:
        """Remove and commit with the audit record; on a refusal, note which of the named objects exist (for the
        audit), roll back."""
        requested = subject.requested
        with self.runtime.uow() as uow:
            try:
                removed = remove_objects(self.registry, requested, uow)
            except XdsError as refusal:
                known = RegistryStore(uow.session).find(requested)
                return HandlerOutcome(registry_response(refusal.errors), OUTCOME_REFUSED, _Removal(requested, known))
            outcome = HandlerOutcome(registry_response(), OUTCOME_SUCCESS, _Removal(requested, removed), audited=True)
            self.audit_in(uow.session, request, outcome)
            commit_reporting_rollback(uow)
        return outcome

    def audit_record(self, request: SoapRequest, outcome: HandlerOutcome[_Removal], description: str | None
                     ) -> AuditRecord:
        return iti62_audit_record(request, outcome.subject.requested, outcome.subject.known,
                                  outcome=outcome.indicator, description=description, process_id=self.process_id)


def iti62_audit_record(request: SoapRequest, requested: Sequence[str], known: Mapping[str, StoredObject], *,
                       outcome: int, description: str | None = None, process_id: str | None = None) -> AuditRecord:
    """Patient Record (110110), D, ITI-62: requestor (Source), this endpoint (Destination), the patients of the
    objects and every object asked for (2/3, entryUUID)."""
    return AuditRecord(event_id=_PATIENT_RECORD, action="D", outcome=outcome, event_types=(_ITI62,),
                       outcome_description=description,
                       participants=(soap_peer_source(request), endpoint_destination(request, process_id)),
                       objects=(*_patient_objects(known), *_removed_objects(requested, known)), transaction="ITI-62")


def _patient_objects(known: Mapping[str, StoredObject]) -> list[ParticipantObject]:
    patients = dict.fromkeys(stored.patient_key for stored in known.values() if stored.patient_key)
    return [patient_object(patient) for patient in patients]


def _removed_objects(requested: Sequence[str], known: Mapping[str, StoredObject]) -> list[ParticipantObject]:
    objects = []
    for uuid in dict.fromkeys(requested):
        stored = known.get(uuid)
        id_type = _ID_TYPES.get(stored.kind, _UNKNOWN_ID_TYPE) if stored else _UNKNOWN_ID_TYPE
        if stored is not None and stored.kind == ObjectKind.DOCUMENT_ENTRY and stored.object_type:
            id_type = (stored.object_type, *id_type[1:])
        objects.append(ParticipantObject(object_id=uuid, type_code=2, type_code_role=3, id_type=id_type,
                                         name=KIND_NAMES.get(stored.kind) if stored else None))
    return objects
