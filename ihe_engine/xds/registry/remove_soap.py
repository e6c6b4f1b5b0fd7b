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

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree
from sqlalchemy.exc import OperationalError

from ...audit.hook import AuditRecord, Participant, ParticipantObject
from ...errors import RemoteProtocolError
from ...ns import LCM, RIM, qn
from ...profiles import transactions
from ...soap.endpoint import Operation, SoapRequest, SoapResponse
from ...soap.fault import SENDER, SoapFault
from .. import constants as c
from ..errors import (XDS_REGISTRY_BUSY, XDS_REGISTRY_ERROR, XDS_REGISTRY_METADATA_ERROR, RegistryError,
                      RegistryResponse, XdsError, registry_response, registry_response_element)
from .actor import DocumentRegistry
from .remove import KIND_NAMES, remove_objects
from .store import RegistryStore, StoredObject
from .tables import ObjectKind

__all__ = ["remove_operations", "parse_remove_request", "RemoveMetadataHandler", "iti62_audit_record"]

log = logging.getLogger("ihe_engine.xds.registry")

_REMOVE_OBJECTS_REQUEST = qn(LCM, "RemoveObjectsRequest")
_OBJECT_REF_LIST, _OBJECT_REF, _ADHOC_QUERY = qn(RIM, "ObjectRefList"), qn(RIM, "ObjectRef"), qn(RIM, "AdhocQuery")
_PATIENT_RECORD = ("110110", "DCM", "Patient Record")
_ITI62 = ("ITI-62", "IHE Transactions", "Remove Metadata")
_SOURCE_ROLE = ("110153", "DCM", "Source Role ID")
_DESTINATION_ROLE = ("110152", "DCM", "Destination Role ID")
_PATIENT_NUMBER = ("2", "RFC-3881", "Patient Number")
_METADATA = "IHE XDS Metadata"
_ID_TYPES = {
    ObjectKind.SUBMISSION_SET: (c.SS_CLASSIFICATION_NODE, _METADATA, "submission set classificationNode"),
    ObjectKind.FOLDER: (c.FOLDER_CLASSIFICATION_NODE, _METADATA, "folder classificationNode"),
    ObjectKind.DOCUMENT_ENTRY: (c.DE_STABLE, _METADATA, "DocumentEntry objectType"),
    ObjectKind.ASSOCIATION: (c.OBJECT_TYPE_ASSOCIATION, _METADATA, "Association"),
}
_UNKNOWN_ID_TYPE = ("urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject", _METADATA, "registry object")
_OUTCOME_SUCCESS, _OUTCOME_REFUSED, _OUTCOME_INTERNAL = 0, 8, 12


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
class _Outcome:
    response: RegistryResponse
    requested: tuple[str, ...]
    known: Mapping[str, StoredObject]
    indicator: int


class RemoveMetadataHandler:
    """Blocking SOAP handler of ITI-62."""

    def __init__(self, runtime: Any, registry: DocumentRegistry) -> None:
        self.runtime = runtime
        self.registry = registry

    def __call__(self, request: SoapRequest) -> SoapResponse:
        if request.payload.tag != _REMOVE_OBJECTS_REQUEST:
            self._audit(request, _Outcome(registry_response(), (), {}, _OUTCOME_REFUSED),
                        "the body is not an lcm:RemoveObjectsRequest")
            raise SoapFault(SENDER, f"Remove Metadata expects lcm:RemoveObjectsRequest in the body, not "
                                    f"{request.payload.tag}")
        outcome = self._remove(request.payload)
        self._audit(request, outcome, _describe_errors(outcome.response.errors))
        return SoapResponse(body=registry_response_element(outcome.response))

    def _remove(self, payload: etree._Element) -> _Outcome:
        requested: tuple[str, ...] = ()
        try:
            requested = tuple(parse_remove_request(payload))
            return self._remove_in_transaction(requested)
        except XdsError as refusal:
            return _Outcome(registry_response(refusal.errors), requested, {}, _OUTCOME_REFUSED)
        except RemoteProtocolError as exc:
            return _Outcome(registry_response([_error(XDS_REGISTRY_METADATA_ERROR, str(exc))]), requested, {},
                            _OUTCOME_REFUSED)
        except OperationalError:
            log.exception("ITI-62: database unavailable")
            busy = _error(XDS_REGISTRY_BUSY, "the registry database is busy or unavailable; nothing was removed")
            return _Outcome(registry_response([busy]), requested, {}, _OUTCOME_INTERNAL)
        except Exception:
            log.exception("ITI-62: removal failed")
            failed = _error(XDS_REGISTRY_ERROR, "internal registry error; nothing was removed")
            return _Outcome(registry_response([failed]), requested, {}, _OUTCOME_INTERNAL)

    def _remove_in_transaction(self, requested: tuple[str, ...]) -> _Outcome:
        """Remove and commit; on a refusal, note which of the named objects exist (for the audit), roll back."""
        with self.runtime.uow() as uow:
            try:
                removed = remove_objects(self.registry, requested, uow)
            except XdsError as refusal:
                known = RegistryStore(uow.session).find(requested)
                return _Outcome(registry_response(refusal.errors), requested, known, _OUTCOME_REFUSED)
            uow.commit()
        return _Outcome(registry_response(), requested, removed, _OUTCOME_SUCCESS)

    def _audit(self, request: SoapRequest, outcome: _Outcome, description: str | None) -> None:
        audit = getattr(self.runtime, "audit", None)
        if audit is not None:
            audit.emit(iti62_audit_record(request, outcome.requested, outcome.known, outcome=outcome.indicator,
                                          description=description,
                                          process_id=getattr(self.runtime, "process_id", None)))


def _error(code: str, context: str) -> RegistryError:
    return RegistryError(error_code=code, code_context=context)


def _describe_errors(errors: Sequence[RegistryError]) -> str | None:
    return "; ".join(f"{e.error_code}: {e.code_context}" for e in errors if e.is_error) or None


def iti62_audit_record(request: SoapRequest, requested: Sequence[str], known: Mapping[str, StoredObject], *,
                       outcome: int, description: str | None = None, process_id: str | None = None) -> AuditRecord:
    """Patient Record (110110), D, ITI-62: requestor (Source), this endpoint (Destination), the patients of the
    objects and every object asked for (2/3, entryUUID)."""
    peer_host = request.peer.rsplit(":", 1)[0]
    reply_to = request.addressing.reply_to
    source = Participant(user_id=reply_to.address if reply_to is not None else peer_host, is_requestor=True,
                         role=_SOURCE_ROLE, network_access_point=peer_host)
    destination = Participant(user_id=request.addressing.to or request.endpoint, is_requestor=False,
                              role=_DESTINATION_ROLE, alternative_user_id=process_id)
    return AuditRecord(event_id=_PATIENT_RECORD, action="D", outcome=outcome, event_types=(_ITI62,),
                       outcome_description=description, participants=(source, destination),
                       objects=(*_patient_objects(known), *_removed_objects(requested, known)), transaction="ITI-62")


def _patient_objects(known: Mapping[str, StoredObject]) -> list[ParticipantObject]:
    patients = dict.fromkeys(stored.patient_key for stored in known.values() if stored.patient_key)
    return [ParticipantObject(object_id=patient, type_code=1, type_code_role=1, id_type=_PATIENT_NUMBER)
            for patient in patients]


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
