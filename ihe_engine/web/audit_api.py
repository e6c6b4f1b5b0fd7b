"""HTTP access to the Audit Record Repository.

- ``GET /fhir/AuditEvent?patient=&date=ge..&date=le..&entity-id=&agent=&type=&subtype=&outcome=&source=&_count=``:
  an ITI-81 style search answered with a FHIR R4 searchset Bundle of AuditEvent (``GET /fhir/AuditEvent/ID``
  reads one).
- ``GET /api/audit/patient-history?patient=CX``: the patient's own view -- who, from which system, which
  documents, when, and how (read, write, query).

Storage work runs in the thread pool (``runtime.run_blocking``), in read-only units of work. Each use of the audit
log is itself audited (DICOM 110101 Audit Log Used), as ATNA asks of a repository.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable
from urllib.parse import urlencode

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..audit import AuditRecord, Participant, ParticipantObject
from ..audit import fhir, repository
from .access import ApiAccess, Guarded, principal_of

__all__ = ["mount_audit_api", "AuditEventResource", "PatientHistoryResource"]

log = logging.getLogger("ihe_engine.web.audit")
FHIR_JSON = b"application/fhir+json; charset=utf-8"
AUDIT_LOG_USED = ("110101", "DCM", "Audit Log Used")
_URI_ID_TYPE = ("12", "RFC-3881", "URI")


def mount_audit_api(root: Resource, runtime: Any, access: ApiAccess | None = None) -> None:
    """Mount /fhir/AuditEvent and /api/audit/patient-history on ``root``, sharing /fhir and /api with others;
    both need the ``audit:read`` scope (see :mod:`ihe_engine.web.access`)."""
    access = access or ApiAccess.from_settings(runtime.settings)
    read = {b"GET": "audit:read"}
    _child(root, b"fhir").putChild(b"AuditEvent", Guarded(AuditEventResource(runtime), read, access, runtime))
    _child(_child(root, b"api"), b"audit").putChild(
        b"patient-history", Guarded(PatientHistoryResource(runtime), read, access, runtime))


def _child(parent: Resource, name: bytes) -> Resource:
    child = parent.children.get(name)
    if child is None:
        child = Resource()
        parent.putChild(name, child)
    return child


class _JsonResource(Resource):
    isLeaf = True
    content_type = b"application/json"

    def __init__(self, runtime: Any) -> None:
        super().__init__()
        self.runtime = runtime

    def render_GET(self, request):  # type: ignore[no-untyped-def]
        params = {key.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in values]
                  for key, values in (request.args or {}).items()}
        try:
            work = self.prepare(request, params)
        except fhir.SearchParameterError as error:
            return self._answer_now(request, 400, fhir.operation_outcome(str(error), expression=error.parameter))
        deferred = self.runtime.run_blocking(work)
        deferred.addCallbacks(lambda result: self._answer(request, *result), lambda failure: self._failed(
            request, failure))
        self._audit_use(request)
        return NOT_DONE_YET

    def prepare(self, request: Any, params: dict[str, list[str]]) -> Callable[[], tuple[int, Any]]:
        raise NotImplementedError

    def _answer_now(self, request: Any, status: int, body: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", self.content_type)
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _answer(self, request: Any, status: int, body: Any) -> None:
        if request._disconnected:
            return
        request.write(self._answer_now(request, status, body))
        request.finish()

    def _failed(self, request: Any, failure: Any) -> None:
        log.error("audit API request failed: %s", failure.getErrorMessage())
        self._answer(request, 500, fhir.operation_outcome("the audit repository could not answer", code="exception"))

    def _audit_use(self, request: Any) -> None:
        peer = request.getClientAddress()
        host = getattr(peer, "host", None) or "unknown"
        principal = principal_of(request)
        self.runtime.audit.emit(AuditRecord(
            event_id=AUDIT_LOG_USED, action="R", transaction="ITI-81",
            participants=(Participant(user_id=principal or host, is_requestor=True, network_access_point=host,
                                      alternative_user_id=host if principal else None),
                          Participant(user_id=request.uri.decode("ascii", "replace").split("?", 1)[0],
                                      is_requestor=False, alternative_user_id=self.runtime.process_id,
                                      network_access_point=self.runtime.node_name)),
            objects=(ParticipantObject(object_id=request.uri.decode("ascii", "replace")[:1024], type_code=2,
                                       type_code_role=13, id_type=_URI_ID_TYPE),)))


class AuditEventResource(_JsonResource):
    content_type = FHIR_JSON

    def prepare(self, request: Any, params: dict[str, list[str]]) -> Callable[[], tuple[int, Any]]:
        base = _base_url(request) + "/fhir"
        path = [segment for segment in request.postpath if segment]
        if path:
            return lambda: self._read(path[0].decode("ascii", "replace"))
        query, _ignored = fhir.query_from_params(params)
        return lambda: self._search(query, params, base)

    def _search(self, query: repository.AuditQuery, params: dict[str, list[str]], base: str) -> tuple[int, Any]:
        with self.runtime.uow(readonly=True) as uow:
            rows = repository.search(uow.session, query)
            self_url = f"{base}/AuditEvent?{urlencode(params, doseq=True)}"
            next_url = None
            if len(rows) == query.limit:
                following = dict(params, _offset=[str(query.offset + query.limit)], _count=[str(query.limit)])
                next_url = f"{base}/AuditEvent?{urlencode(following, doseq=True)}"
            return 200, fhir.search_bundle(rows, self_url=self_url, next_url=next_url, base=base)

    def _read(self, ident: str) -> tuple[int, Any]:
        if not ident.isdigit():
            return 404, fhir.operation_outcome(f"AuditEvent/{ident} does not exist", code="not-found")
        with self.runtime.uow(readonly=True) as uow:
            row = repository.get(uow.session, int(ident))
            if row is None:
                return 404, fhir.operation_outcome(f"AuditEvent/{ident} does not exist", code="not-found")
            return 200, fhir.audit_event(row)


class PatientHistoryResource(_JsonResource):
    def prepare(self, request: Any, params: dict[str, list[str]]) -> Callable[[], tuple[int, Any]]:
        patients = params.get("patient") or []
        if len(patients) != 1 or not patients[0]:
            raise fhir.SearchParameterError("patient", "exactly one patient identifier (CX) is required")
        since = until = None
        try:
            if params.get("since"):
                since = fhir.parse_time(params["since"][0])
            if params.get("until"):
                until = fhir.parse_time(params["until"][0], end=True)
        except ValueError:
            raise fhir.SearchParameterError("since/until", "not a date or dateTime") from None
        patient = patients[0]

        def work() -> tuple[int, Any]:
            with self.runtime.uow(readonly=True) as uow:
                entries = repository.patient_history(uow.session, patient, since=since, until=until)
            return 200, {"patient": patient, "entries": entries}

        return work


def _base_url(request: Any) -> str:
    host = request.getHeader(b"host")
    scheme = "https" if request.isSecure() else "http"
    if host:
        return f"{scheme}://{host.decode('ascii', 'replace')}"
    address = request.getHost()
    return f"{scheme}://{address.host}:{address.port}"
