"""The HTTP site's root: SOAP endpoints mounted at their paths, plus /metrics and /health."""

from __future__ import annotations

import json
import logging

from sqlalchemy import text
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from .. import metrics

__all__ = ["build_root", "MetricsResource", "HealthResource"]

log = logging.getLogger("ihe_engine.web")


class MetricsResource(Resource):
    isLeaf = True

    def render_GET(self, request):  # type: ignore[no-untyped-def]
        request.setHeader(b"content-type", metrics.CONTENT_TYPE_LATEST.encode())
        return metrics.render()


class HealthResource(Resource):
    """200 when the store answers, 503 otherwise: what a load balancer needs to take a node out."""

    isLeaf = True

    def __init__(self, runtime) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.runtime = runtime

    def render_GET(self, request):  # type: ignore[no-untyped-def]
        def probe() -> None:
            with self.runtime.db.read_connection() as connection:
                connection.execute(text("SELECT 1"))

        def answer(status: int, body: dict) -> None:
            if request._disconnected:
                return
            request.setResponseCode(status)
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(body).encode())
            request.finish()

        def failed(failure):  # type: ignore[no-untyped-def]
            log.warning("health check failed: %s", failure.getErrorMessage())
            answer(503, {"status": "unavailable", "database": failure.getErrorMessage()})

        deferred = self.runtime.run_blocking(probe)
        deferred.addCallbacks(lambda _: answer(200, {"status": "ok", "database": "ok"}), failed)
        return NOT_DONE_YET


def build_root(runtime, endpoints: dict[str, Resource]) -> Resource:  # type: ignore[no-untyped-def]
    """Mount each endpoint at its path (``"xds/registry"`` nests under ``xds``)."""
    root = Resource()
    root.putChild(b"metrics", MetricsResource())
    root.putChild(b"health", HealthResource(runtime))
    from .access import ApiAccess, Guarded
    from .identity_api import IdentityApi

    access = ApiAccess.from_settings(runtime.settings)
    api = Resource()
    api.putChild(b"identity", Guarded(IdentityApi(runtime), {b"GET": "identity:read", b"POST": "identity:decide"},
                                      access, runtime))  # identity vigilance queue and patient history (JSON)
    root.putChild(b"api", api)
    for path, resource in endpoints.items():
        parent = root
        *parents, leaf = path.strip("/").split("/")
        for segment in parents:
            child = parent.children.get(segment.encode())
            if child is None:
                child = Resource()
                parent.putChild(segment.encode(), child)
            parent = child
        parent.putChild(leaf.encode(), resource)
    from .audit_api import mount_audit_api

    mount_audit_api(root, runtime, access)  # /fhir/AuditEvent (ITI-81 style) and /api/audit/patient-history
    return root
