"""The XDS Document Repository: ITI-41 in, ITI-42 out, ITI-43 and ITI-86 (IHE-CONFORMANCE.md A1, A7, A8).

Document bytes go to the content-addressed BlobStore as they stream in (SHA-1 and size computed on the way);
a ``xds_repository_document`` row makes a document retrievable. Registration goes through a
:class:`RegistryClient`:

* :class:`EmbeddedRegistryClient` calls the registry of this engine inside the same unit of work, so the
  registration and the document rows commit together or not at all (a refusal leaves nothing behind);
* :class:`RemoteRegistryClient` sends ITI-42 over SOAP. A8 wants the document retrievable *before* ITI-42 is
  sent, so the rows are committed first and removed again if the registry answers Failure.

No SOAP here: :mod:`.soap` turns requests into these calls and the results into response bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests
from lxml import etree
from sqlalchemy import bindparam, event, func, insert, select, update

from ...ns import LCM, RIM, XDS, qn
from ...soap.mtom import Attachment, binary_content
from ...storage.blobstore import BlobStore, StoredBlob
from .. import constants as c
from ..ebrim import parse_submit_objects_request
from ..errors import (XDS_DOCUMENT_UNIQUE_ID_ERROR, XDS_MISSING_DOCUMENT, XDS_MISSING_DOCUMENT_METADATA,
                      XDS_NON_IDENTICAL_HASH, XDS_NON_IDENTICAL_SIZE, XDS_REGISTRY_NOT_AVAILABLE,
                      XDS_REPOSITORY_ERROR, XDS_REPOSITORY_METADATA_ERROR, XDS_UNKNOWN_COMMUNITY,
                      XDS_UNKNOWN_REPOSITORY_ID, RegistryError, RegistryResponse, XdsError, registry_response)
from ..model import DocumentContent, DocumentEntry, Submission
from ..validation import Sender, validate_submission
from .tables import RepositoryDocument

__all__ = [
    "DEFAULT_REPOSITORY_UNIQUE_ID", "ITI42_ACTION", "ITI42_RESPONSE_ACTION",
    "RepositorySettings", "DocumentRequest", "RetrievedDocument", "RetrieveResult", "ProvideResult",
    "RegistryClient", "EmbeddedRegistryClient", "RemoteRegistryClient", "registry_client_for",
    "DocumentRepository", "ContentResolver", "parse_document_requests",
]

log = logging.getLogger("ihe_engine.xds.repository")

DEFAULT_REPOSITORY_UNIQUE_ID = "1.3.6.1.4.1.21367.2017.2.7.109"
"""Used when ``settings.repository_id`` is None: a fixed OID, so a restart keeps documents retrievable."""

ITI42_ACTION = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ITI42_RESPONSE_ACTION = "urn:ihe:iti:2007:RegisterDocumentSet-bResponse"

_SLOT, _VALUE_LIST, _VALUE = qn(RIM, "Slot"), qn(RIM, "ValueList"), qn(RIM, "Value")
_SUBMIT_OBJECTS = qn(LCM, "SubmitObjectsRequest")
_DOCUMENT_REQUEST = qn(XDS, "DocumentRequest")

ContentResolver = Callable[[DocumentContent], Attachment]
"""Gives the bytes of an xds:Document (an MTOM part or its inline base64) as an openable Attachment."""


def _inline_only(document: DocumentContent) -> Attachment:
    return binary_content(document.element, {})


# =============================================================================================================
# Values
# =============================================================================================================

@dataclass(frozen=True)
class RepositorySettings:
    repository_unique_id: str
    home_community_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class DocumentRequest:
    """One xds:DocumentRequest (ITI-43 and ITI-86 share the structure)."""

    repository_unique_id: str
    document_unique_id: str
    home_community_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class RetrievedDocument:
    """A document found for ITI-43: where its bytes are, so the answer can stream them from disk."""

    request: DocumentRequest
    mime_type: str
    path: Path
    size: int


@dataclass(frozen=True, kw_only=True)
class RetrieveResult:
    response: RegistryResponse
    documents: tuple[RetrievedDocument, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProvideResult:
    """An ITI-41 outcome plus what the audit records need (the registered submission and the registry used)."""

    response: RegistryResponse
    submission: Submission | None = None
    registry_destination: str | None = None


def parse_document_requests(element: etree._Element) -> list[DocumentRequest]:
    """The xds:DocumentRequest children of a RetrieveDocumentSetRequest or RemoveDocumentsRequest."""
    requests_found = []
    for item in element.iterchildren(_DOCUMENT_REQUEST):
        text = {child.tag: (child.text or "").strip() for child in item}
        requests_found.append(DocumentRequest(
            home_community_id=text.get(qn(XDS, "HomeCommunityId")) or None,
            repository_unique_id=text.get(qn(XDS, "RepositoryUniqueId"), ""),
            document_unique_id=text.get(qn(XDS, "DocumentUniqueId"), "")))
    return requests_found


# =============================================================================================================
# Registry clients
# =============================================================================================================

class RegistryClient(Protocol):
    """Registers a submission (ITI-42 content) and answers the registry's RegistryResponse.

    ``in_transaction`` says whether the registration joins the caller's unit of work (embedded) or is a
    separate exchange that needs the documents committed first (remote).
    """

    in_transaction: bool
    destination: str

    def register(self, submit_objects_request: etree._Element, submission: Submission,
                 uow: Any) -> RegistryResponse: ...


class EmbeddedRegistryClient:
    """The engine's own registry, called in process within the repository's unit of work."""

    in_transaction = True
    destination = "in-process registry"

    def __init__(self, registry: Any, runtime: Any | None = None) -> None:
        self.registry = registry
        self.runtime = runtime

    def register(self, submit_objects_request: etree._Element, submission: Submission,
                 uow: Any) -> RegistryResponse:
        """Raises XdsError when the registry refuses (the caller rolls back)."""
        if self.runtime is not None:
            # grouped actors exchange no ITI-42 message, so no ITI-42 audit: the ITI-41 Import record covers it
            from ..registry.soap import register_in_process

            response = register_in_process(self.runtime, self.registry, submission, uow)
        else:
            response = self.registry.register_document_set_b(submission, uow)
        if response.status == c.RESPONSE_FAILURE:
            raise XdsError.from_errors(response.errors or (RegistryError(
                error_code=XDS_REPOSITORY_ERROR, code_context="the registry refused the submission"),))
        return response


class RemoteRegistryClient:
    """A registry elsewhere, reached with ITI-42 (simple SOAP 1.2) by the project's client."""

    in_transaction = False

    def __init__(self, url: str, *, session: requests.Session | None = None, timeout: float = 60.0) -> None:
        self.destination = url
        self.session = session or requests.Session()
        self.timeout = timeout

    def register(self, submit_objects_request: etree._Element, submission: Submission,
                 uow: Any) -> RegistryResponse:
        from ...soap.client import read_response, request_envelope

        envelope = request_envelope(submit_objects_request, ITI42_ACTION, to=self.destination)
        body = etree.tostring(envelope, encoding="utf-8", xml_declaration=True)
        content_type = f'application/soap+xml; charset=utf-8; action="{ITI42_ACTION}"'
        try:
            answer = self.session.post(self.destination, data=body, timeout=self.timeout, stream=True,
                                       headers={"Content-Type": content_type})
            try:
                reply = read_response(answer)
            finally:
                answer.close()
        except (requests.RequestException, OSError) as exc:
            raise XdsError(XDS_REGISTRY_NOT_AVAILABLE, f"the registry at {self.destination} cannot be reached: "
                           f"{exc.__class__.__name__}") from None
        except Exception as exc:  # an answer that is not SOAP at all
            raise XdsError(XDS_REGISTRY_NOT_AVAILABLE, f"the registry at {self.destination} gave an "
                           f"unreadable answer: {exc}") from None
        return _registry_response_from(reply.envelope.payload, self.destination)


def _registry_response_from(payload: etree._Element, destination: str) -> RegistryResponse:
    from ...ns import RS

    if payload.tag != qn(RS, "RegistryResponse"):
        raise XdsError(XDS_REGISTRY_NOT_AVAILABLE, f"the registry at {destination} answered "
                       f"{etree.QName(payload).localname}, not a RegistryResponse")
    errors = tuple(RegistryError(error_code=item.get("errorCode", XDS_REPOSITORY_ERROR),
                                 code_context=item.get("codeContext", ""), location=item.get("location"),
                                 severity=item.get("severity", c.SEVERITY_ERROR))
                   for item in payload.iter(qn(RS, "RegistryError")))
    return RegistryResponse(status=payload.get("status", c.RESPONSE_FAILURE), errors=errors)


def registry_client_for(settings: Any, registry: Any | None, runtime: Any | None = None) -> RegistryClient:
    """Remote when ``settings.extra["xds_registry_url"]`` is set, else the embedded registry."""
    url = (getattr(settings, "extra", None) or {}).get("xds_registry_url")
    if url:
        return RemoteRegistryClient(url)
    if registry is None:
        raise ValueError("no embedded registry and no xds_registry_url: the repository cannot register")
    return EmbeddedRegistryClient(registry, runtime)


# =============================================================================================================
# The actor
# =============================================================================================================

@dataclass(kw_only=True)
class _Stored:
    """One DocumentEntry with its bytes, as stored for this request."""

    entry: DocumentEntry
    blob: StoredBlob
    existing: Any = None
    """The stored row under the same uniqueId (a Core row with the table's columns), if any."""


class DocumentRepository:
    """ITI-41 / ITI-43 / ITI-86 over a unit of work and the BlobStore."""

    def __init__(self, settings: RepositorySettings, blobs: BlobStore, registry_client: RegistryClient) -> None:
        self.settings = settings
        self.blobs = blobs
        self.registry_client = registry_client

    @property
    def repository_unique_id(self) -> str:
        return self.settings.repository_unique_id

    # --------------------------------------------------------------------------------------------- ITI-41

    def provide_and_register(self, submission: Submission, content: ContentResolver | None,
                             uow: Any) -> ProvideResult:
        """Store the documents, then register them; raises XdsError (nothing kept) on any refusal.

        With the embedded registry the caller commits ``uow``; with a remote one this method commits the
        document rows itself before sending ITI-42 (and deletes them again if the registry refuses).
        """
        self._check_structure(submission)
        stored: list[_Stored] = []
        try:
            self._store_blobs(submission, content or _inline_only, stored)
            self._check_against_existing(stored, uow)
            sor = self._registration_request(submission, stored)
            registered = parse_submit_objects_request(sor)
            self._save_rows(stored, uow)
            response = self._register(sor, registered, stored, uow)
        except BaseException:
            uow.rollback()
            self._discard_unreferenced({item.blob.sha256 for item in stored}, uow)
            raise
        return ProvideResult(response=response, submission=registered,
                             registry_destination=self.registry_client.destination)

    def _check_structure(self, submission: Submission) -> None:
        """Metadata checks of a Document Source submission, then exactly one Document per DocumentEntry."""
        errors = [e for e in validate_submission(submission, sender=Sender.DOCUMENT_SOURCE, repository_codes=True)
                  if e.is_error]
        errors.extend(_pairing_errors(submission))
        if errors:
            raise XdsError.from_errors(errors)

    def _store_blobs(self, submission: Submission, content: ContentResolver, stored: list[_Stored]) -> None:
        """Stream each document into the BlobStore (appending to ``stored`` so a failure can clean up)."""
        by_id = {document.id: document for document in submission.documents}
        for entry in submission.entries:
            stored.append(_Stored(entry=entry, blob=self._put(by_id[entry.entry_uuid], content)))

    def _put(self, document: DocumentContent, content: ContentResolver) -> StoredBlob:
        try:
            attachment = content(document)
        except Exception as exc:
            raise XdsError(XDS_MISSING_DOCUMENT, f"the content of Document {document.id} cannot be read: {exc}",
                           location=f"Document[@id='{document.id}']") from None
        with attachment.open() as source:
            return self.blobs.put_stream(source)

    def _check_against_existing(self, stored: Sequence[_Stored], uow: Any) -> None:
        """Submitted hash/size against the bytes (XDSRepositoryMetadataError), then against a document already
        stored under the same uniqueId (XDSNonIdenticalHash/Size; an identical one is accepted)."""
        errors = [error for item in stored for error in _submitted_value_errors(item)]
        existing = _stored_rows(uow, [item.entry.unique_id or "" for item in stored])
        for item in stored:
            row = existing.get(item.entry.unique_id or "")
            if row is not None and not row.removed:
                item.existing = row
                errors.extend(_resubmission_errors(item, row))
            elif row is not None:
                item.existing = row  # a removed document: its row is reused
        if errors:
            raise XdsError.from_errors(errors)

    def _registration_request(self, submission: Submission, stored: Sequence[_Stored]) -> etree._Element:
        """The lcm:SubmitObjectsRequest for ITI-42: each DocumentEntry gets repositoryUniqueId, hash, size.

        The submitted request is reused (its ExtrinsicObjects gain the slots) when the entries still sit in it.
        """
        sor = _enclosing_sor(submission)
        if sor is None:
            sor = _wrap_in_sor(submission)
        by_id = {element.get("id"): element for element in sor.iter(qn(RIM, "ExtrinsicObject"))}
        for item in stored:
            element = by_id[item.entry.entry_uuid]
            _set_slot(element, c.SLOT_REPOSITORY_UNIQUE_ID, self.repository_unique_id)
            _set_slot(element, c.SLOT_HASH, item.blob.sha1)
            _set_slot(element, c.SLOT_SIZE, str(item.blob.size))
        return sor

    def _save_rows(self, stored: Sequence[_Stored], uow: Any) -> None:
        """New document rows in one multi-row INSERT, removed ones brought back by UPDATE (Core: no ORM flush)."""
        new_rows, revived = [], []
        for item in stored:
            row = item.existing
            if row is not None and not row.removed:
                continue  # an identical resubmission: the document is already here
            values = dict(document_unique_id=item.entry.unique_id, repository_unique_id=self.repository_unique_id,
                          sha256=item.blob.sha256, sha1=item.blob.sha1, size=item.blob.size,
                          mime_type=item.entry.mime_type or "application/octet-stream",
                          home_community_id=item.entry.home or self.settings.home_community_id, removed=False)
            (new_rows if row is None else revived).append(values)
        if new_rows:
            uow.session.execute(_INSERT_DOCUMENT, new_rows)  # created_at: the column's default
        for values in revived:
            uow.session.execute(update(RepositoryDocument)
                                .where(RepositoryDocument.document_unique_id == values.pop("document_unique_id"))
                                .values(**values).execution_options(synchronize_session=False))

    def _register(self, sor: etree._Element, registered: Submission, stored: Sequence[_Stored],
                  uow: Any) -> RegistryResponse:
        client = self.registry_client
        if client.in_transaction:
            return _relayed(client.register(sor, registered, uow))
        uow.commit()  # A8: retrievable before ITI-42 leaves
        try:
            response = client.register(sor, registered, uow)
        except XdsError:
            self._forget(stored, uow)
            raise
        if response.status != c.RESPONSE_SUCCESS:
            self._forget(stored, uow)
            raise XdsError.from_errors(_errors_or_default(response))
        return _relayed(response)

    def _forget(self, stored: Sequence[_Stored], uow: Any) -> None:
        """Undo the rows committed for a remote registration the registry refused."""
        for item in stored:
            if item.existing is not None and not item.existing.removed:
                continue
            row = uow.session.get(RepositoryDocument, item.entry.unique_id)
            if row is not None:
                row.removed = True
        uow.commit()

    def _discard_unreferenced(self, sha256s: Iterable[str], uow: Any) -> None:
        """Blobs written by a refused request and referenced by no live document are deleted."""
        try:
            for sha256 in _unreferenced(uow, sha256s):
                self.blobs.path_for(sha256).unlink(missing_ok=True)
        except Exception:  # cleanup must not hide the refusal itself
            log.exception("could not discard blobs of a refused submission")

    # --------------------------------------------------------------------------------------------- ITI-43

    def retrieve(self, document_requests: Sequence[DocumentRequest], uow: Any, *,
                 hidden: Collection[str] = ()) -> RetrieveResult:
        """Each request found gives a document, each other one a RegistryError (Success/PartialSuccess/Failure).

        ``hidden``: uniqueIds the access policy refuses this requester, answered exactly as unknown documents so
        that their existence does not leak."""
        rows = _rows_by_unique_id(uow, [request.document_unique_id for request in document_requests
                                        if request.document_unique_id not in hidden])
        errors: list[RegistryError] = []
        found: list[RetrievedDocument] = []
        for request in document_requests:
            error = self._request_error(request, rows.get(request.document_unique_id))
            if error is None:
                error, document = self._locate(request, rows[request.document_unique_id])
                if document is not None:
                    found.append(document)
            if error is not None:
                errors.append(error)
        if not document_requests:
            errors.append(RegistryError(error_code=XDS_REPOSITORY_ERROR,
                                        code_context="the request holds no DocumentRequest"))
        response = registry_response(errors, partial_allowed=True, any_success=bool(found))
        return RetrieveResult(response=response, documents=tuple(found))

    def _request_error(self, request: DocumentRequest, row: RepositoryDocument | None) -> RegistryError | None:
        where = f"DocumentRequest[DocumentUniqueId='{request.document_unique_id}']"
        own_home = self.settings.home_community_id
        if request.home_community_id and own_home and request.home_community_id != own_home:
            return RegistryError(error_code=XDS_UNKNOWN_COMMUNITY, location=where, code_context=(
                f"homeCommunityId {request.home_community_id} is not this community ({own_home})"))
        if request.repository_unique_id != self.repository_unique_id:
            return RegistryError(error_code=XDS_UNKNOWN_REPOSITORY_ID, location=where, code_context=(
                f"repositoryUniqueId {request.repository_unique_id!r} is not this repository "
                f"({self.repository_unique_id})"))
        if row is None or row.removed:
            return RegistryError(error_code=XDS_DOCUMENT_UNIQUE_ID_ERROR, location=where, code_context=(
                f"document {request.document_unique_id!r} is not held by repository {self.repository_unique_id}"))
        return None

    def _locate(self, request: DocumentRequest,
                row: RepositoryDocument) -> tuple[RegistryError | None, RetrievedDocument | None]:
        path = self.blobs.path_for(row.sha256)
        if not path.is_file():
            log.error("document %s: blob %s is missing from the store", row.document_unique_id, row.sha256)
            return RegistryError(error_code=XDS_REPOSITORY_ERROR, code_context=(
                f"the content of document {row.document_unique_id} is not available")), None
        return None, RetrievedDocument(request=request, mime_type=row.mime_type, path=path, size=row.size)

    # --------------------------------------------------------------------------------------------- ITI-86

    def remove_documents(self, document_requests: Sequence[DocumentRequest], uow: Any) -> RegistryResponse:
        """Mark each document removed (no longer retrievable); blobs no live row uses go once ``uow`` commits.

        Unknown repository -> XDSUnknownRepositoryId, unknown or already removed document ->
        XDSDocumentUniqueIdError; the documents that could be removed are, giving PartialSuccess.
        """
        rows = _rows_by_unique_id(uow, [request.document_unique_id for request in document_requests])
        errors: list[RegistryError] = []
        removed: list[RepositoryDocument] = []
        for request in document_requests:
            row = rows.get(request.document_unique_id)
            error = self._request_error(request, row)
            if error is not None:
                errors.append(error)
            elif row not in removed:
                row.removed = True
                removed.append(row)
        uow.session.flush()
        self._unlink_after_commit(uow, _unreferenced(uow, {row.sha256 for row in removed}))
        return registry_response(errors, partial_allowed=True, any_success=bool(removed))

    def _unlink_after_commit(self, uow: Any, sha256s: Sequence[str]) -> None:
        if not sha256s:
            return

        def unlink(_session: Any) -> None:
            for sha256 in sha256s:
                self.blobs.path_for(sha256).unlink(missing_ok=True)

        event.listen(uow.session, "after_commit", unlink, once=True)


# =============================================================================================================
# Helpers
# =============================================================================================================

def _pairing_errors(submission: Submission) -> list[RegistryError]:
    """Exactly one xds:Document per DocumentEntry and vice versa (A8)."""
    entry_ids = {entry.entry_uuid for entry in submission.entries}
    document_ids = [document.id for document in submission.documents]
    errors = [RegistryError(error_code=XDS_MISSING_DOCUMENT, location=f"ExtrinsicObject[@id='{entry.entry_uuid}']",
                            code_context=f"DocumentEntry {entry.entry_uuid} has no Document in the request")
              for entry in submission.entries if entry.entry_uuid not in document_ids]
    errors.extend(RegistryError(error_code=XDS_MISSING_DOCUMENT_METADATA, location=f"Document[@id='{doc_id}']",
                                code_context=f"Document {doc_id} has no DocumentEntry (ExtrinsicObject) in the "
                                             "metadata")
                  for doc_id in dict.fromkeys(document_ids) if doc_id not in entry_ids)
    errors.extend(RegistryError(error_code=XDS_REPOSITORY_METADATA_ERROR, location=f"Document[@id='{doc_id}']",
                                code_context=f"Document {doc_id} appears {document_ids.count(doc_id)} times")
                  for doc_id in dict.fromkeys(document_ids) if document_ids.count(doc_id) > 1)
    return errors


def _submitted_value_errors(item: _Stored) -> Iterable[RegistryError]:
    entry, blob = item.entry, item.blob
    where = f"ExtrinsicObject[@id='{entry.entry_uuid}']"
    if entry.hash is not None and entry.hash.strip().lower() != blob.sha1:
        yield RegistryError(error_code=XDS_REPOSITORY_METADATA_ERROR, location=f"{where}/Slot[@name='hash']",
                            code_context=f"DocumentEntry {entry.entry_uuid}: submitted hash {entry.hash} differs "
                                         f"from the SHA-1 of the document, {blob.sha1}")
    if entry.size is not None and entry.size.strip() != str(blob.size):
        yield RegistryError(error_code=XDS_REPOSITORY_METADATA_ERROR, location=f"{where}/Slot[@name='size']",
                            code_context=f"DocumentEntry {entry.entry_uuid}: submitted size {entry.size} differs "
                                         f"from the document's {blob.size} bytes")


def _resubmission_errors(item: _Stored, row: RepositoryDocument) -> Iterable[RegistryError]:
    unique_id, where = item.entry.unique_id, f"ExtrinsicObject[@id='{item.entry.entry_uuid}']"
    if row.sha1 != item.blob.sha1:
        yield RegistryError(error_code=XDS_NON_IDENTICAL_HASH, location=where, code_context=(
            f"document {unique_id} is already stored with hash {row.sha1}; this one has {item.blob.sha1}"))
    if row.size != item.blob.size:
        yield RegistryError(error_code=XDS_NON_IDENTICAL_SIZE, location=where, code_context=(
            f"document {unique_id} is already stored with size {row.size}; this one has {item.blob.size}"))


def _rows_by_unique_id(uow: Any, unique_ids: Sequence[str]) -> dict[str, RepositoryDocument]:
    wanted = sorted(set(unique_ids))
    if not wanted:
        return {}
    query = select(RepositoryDocument).where(RepositoryDocument.document_unique_id.in_(wanted))
    return {row.document_unique_id: row for row in uow.session.scalars(query)}


def _stored_rows(uow: Any, unique_ids: Sequence[str]) -> dict[str, Any]:
    """ITI-41's read of the rows under its uniqueIds: read-only Core rows (the table's columns), no ORM load."""
    wanted = sorted(set(unique_ids))
    if not wanted:
        return {}
    return {row.document_unique_id: row for row in uow.session.execute(_DOCUMENTS_BY_UNIQUE_ID, {"ids": wanted})}


_DOCUMENT_TABLE = RepositoryDocument.__table__
_INSERT_DOCUMENT = insert(_DOCUMENT_TABLE)
_DOCUMENTS_BY_UNIQUE_ID = select(_DOCUMENT_TABLE).where(
    _DOCUMENT_TABLE.c.document_unique_id.in_(bindparam("ids", expanding=True)))


def _unreferenced(uow: Any, sha256s: Iterable[str]) -> list[str]:
    """Those of ``sha256s`` that no live (not removed) document row points at."""
    candidates = sorted(set(sha256s))
    if not candidates:
        return []
    query = (select(RepositoryDocument.sha256, func.count()).where(RepositoryDocument.sha256.in_(candidates))
             .where(RepositoryDocument.removed.is_(False)).group_by(RepositoryDocument.sha256))
    used = {sha256 for sha256, _count in uow.session.execute(query)}
    return [sha256 for sha256 in candidates if sha256 not in used]


def _enclosing_sor(submission: Submission) -> etree._Element | None:
    """The lcm:SubmitObjectsRequest every parsed object still belongs to, if there is one."""
    parents = {_ancestor(obj.element, _SUBMIT_OBJECTS) for obj in submission.objects if obj.element is not None}
    return parents.pop() if len(parents) == 1 and None not in parents else None


def _ancestor(element: etree._Element, tag: str) -> etree._Element | None:
    for ancestor in element.iterancestors(tag):
        return ancestor
    return None


def _wrap_in_sor(submission: Submission) -> etree._Element:
    """A fresh SubmitObjectsRequest holding copies of the submitted top-level objects, in order."""
    from copy import deepcopy

    sor = etree.Element(_SUBMIT_OBJECTS, nsmap={"lcm": LCM, "rim": RIM})
    object_list = etree.SubElement(sor, qn(RIM, "RegistryObjectList"))
    object_list.extend(deepcopy(obj.element) for obj in submission.objects if obj.element is not None)
    return sor


def _set_slot(element: etree._Element, name: str, value: str) -> None:
    """Replace or add a single-valued rim:Slot; new slots go after the existing ones (ebRIM puts Slots first)."""
    slot = next((s for s in element.iterchildren(_SLOT) if s.get("name") == name), None)
    if slot is None:
        slot = etree.Element(_SLOT, name=name)
        slots = list(element.iterchildren(_SLOT))
        if slots:
            slots[-1].addnext(slot)
        else:
            element.insert(0, slot)
    for child in list(slot):
        slot.remove(child)
    etree.SubElement(etree.SubElement(slot, _VALUE_LIST), _VALUE).text = value


def _errors_or_default(response: RegistryResponse) -> tuple[RegistryError, ...]:
    errors = tuple(error for error in response.errors)
    if any(error.is_error for error in errors):
        return errors
    return errors + (RegistryError(error_code=XDS_REPOSITORY_ERROR,
                                   code_context=f"the registry answered {response.status} without an error"),)


def _relayed(response: RegistryResponse) -> RegistryResponse:
    """ITI-41 answers Success (with the registry's warnings, A8) once the registration succeeded."""
    return registry_response(tuple(error for error in response.errors if not error.is_error))
