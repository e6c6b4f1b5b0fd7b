"""The identity-vigilance HTTP JSON API, mounted at ``/api/identity``.

* ``GET  /api/identity/queue[?status=open|accepted|rejected&limit=N&after=ID]`` -> ``{"items": [...]}``
* ``POST /api/identity/queue/ID/accept`` and ``.../reject`` with ``{"by": "who decides"}`` -> the item
* ``GET  /api/identity/patients/history?id=CX`` -> the person's identifiers, events and vigilance items

A thin adapter over :class:`~ihe_engine.identity.vigilance.VigilanceDesk` (shared with the CLI): the work runs in
``runtime.run_blocking``; every error is a JSON ``{"error": ...}`` with its HTTP status (400 bad input, 404 unknown
item, patient or path, 405 wrong method, 409 already decided or not linkable, 413 body too large, 500 internal).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..identity.vigilance import VigilanceDesk, VigilanceError
from .access import principal_of

__all__ = ["IdentityApi"]

log = logging.getLogger("ihe_engine.web.identity")

MAX_BODY = 64 * 1024
_DECISIONS = {b"accept": True, b"reject": False}


class IdentityApi(Resource):
    isLeaf = True

    def __init__(self, runtime: Any, desk: VigilanceDesk | None = None) -> None:
        super().__init__()
        self.runtime = runtime
        self.desk = desk or VigilanceDesk.from_settings(runtime.settings, runtime.uow, runtime.audit)

    def render_GET(self, request):  # type: ignore[no-untyped-def]
        path = request.postpath
        if path == [b"queue"]:
            try:
                options = dict(status=_arg(request, b"status", "open") or None,
                               limit=_number(request, b"limit", 100, 1, 1000),
                               after_id=_number(request, b"after", 0, 0, 2**62))
            except VigilanceError as exc:
                return _error(request, exc.status, str(exc))
            if options["status"] == "all":
                options["status"] = None
            return self._run(request, lambda: {"items": self.desk.list_items(**options)})
        if path == [b"patients", b"history"]:
            identifier = _arg(request, b"id", "")
            if not identifier:
                return _error(request, 400, "give the patient identifier as ?id=CX")
            return self._run(request, lambda: self.desk.history(identifier))
        return self._not_found_or_wrong_method(request, allowed=b"GET")

    def render_POST(self, request):  # type: ignore[no-untyped-def]
        path = request.postpath
        if len(path) != 3 or path[0] != b"queue" or path[2] not in _DECISIONS:
            return self._not_found_or_wrong_method(request, allowed=b"POST")
        try:
            item_id = int(path[1])
            by = _decider(request)
        except ValueError as exc:
            return _error(request, 400 if path[1].isdigit() else 404, str(exc) if path[1].isdigit()
                          else f"no vigilance item {path[1].decode(errors='replace')!r}")
        accept = _DECISIONS[path[2]]
        principal = principal_of(request)
        if principal:  # the name typed is kept, with who was authenticated to say it
            by = f"{by} [{principal}]"
        return self._run(request, lambda: self.desk.decide(item_id, accept=accept, by=by))

    def _not_found_or_wrong_method(self, request, *, allowed: bytes):  # type: ignore[no-untyped-def]
        path = request.postpath
        get_paths = ([b"queue"], [b"patients", b"history"])
        post_path = len(path) == 3 and path[0] == b"queue" and path[2] in _DECISIONS
        if (allowed == b"GET" and post_path) or (allowed == b"POST" and path in get_paths):
            request.setHeader(b"allow", b"POST" if post_path else b"GET")
            return _error(request, 405, f"{request.method.decode()} is not allowed here")
        return _error(request, 404, f"no such resource: /{b'/'.join(path).decode(errors='replace')}")

    def _run(self, request, work: Callable[[], Any]):  # type: ignore[no-untyped-def]
        def answer(body: Any) -> None:
            _finish(request, 200, body)

        def failed(failure: Failure) -> None:
            if failure.check(VigilanceError):
                _finish(request, failure.value.status, {"error": str(failure.value)})
                return
            log.error("identity API failed", exc_info=(failure.type, failure.value, failure.getTracebackObject()))
            _finish(request, 500, {"error": "internal error"})

        self.runtime.run_blocking(work).addCallbacks(answer, failed)
        return NOT_DONE_YET


def _decider(request) -> str:  # type: ignore[no-untyped-def]
    """``by`` from the JSON body: who takes the decision (kept on the item and in the audit record)."""
    body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(body) > MAX_BODY:
        raise ValueError("the request body is too large")
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    by = document.get("by") if isinstance(document, dict) else None
    if not isinstance(by, str) or not by.strip():
        raise ValueError('say who decides: {"by": "name"}')
    return by.strip()


def _arg(request, name: bytes, default: str) -> str:  # type: ignore[no-untyped-def]
    values = request.args.get(name)
    return values[0].decode("utf-8", errors="replace") if values else default


def _number(request, name: bytes, default: int, low: int, high: int) -> int:  # type: ignore[no-untyped-def]
    text = _arg(request, name, str(default))
    if not text.isdigit() or not low <= int(text) <= high:
        raise VigilanceError(f"{name.decode()} must be a number from {low} to {high}", status=400)
    return int(text)


def _error(request, status: int, message: str) -> bytes:  # type: ignore[no-untyped-def]
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps({"error": message}).encode()


def _finish(request, status: int, body: Any) -> None:  # type: ignore[no-untyped-def]
    if request._disconnected:
        return
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.write(json.dumps(body, ensure_ascii=False).encode())
    request.finish()
