"""Who may use the engine's own HTTP APIs: the identity-vigilance desk and the audit log (ITI-81 style).

These APIs change identity links and show who accessed whose record, so every request is authenticated (the
guide's rule: every access is authenticated). A request is let in when it shows one of:

* a bearer token (``Authorization: Bearer ...``) configured with the scope the request needs;
* when turned on, a client certificate the TLS listener verified (ITI-19 node authentication): every scope;
* when turned on, a loopback peer (the administrator on the engine's own machine): every scope. Never turn it on
  behind a reverse proxy or TLS terminator on the same host: every remote caller would be loopback.

Anything else gets 401 (no or unknown credentials: a User Authentication audit record, 110114/Login, outcome 4)
or 403 (a token without the scope: a Security Alert, 110113/Use of Restricted Function), with a JSON error.
Methods the API does not serve are 405 before any check. The tokens themselves are never stored, only their
SHA-256::

  [api]
  allow_loopback = false          # default false
  allow_certified_peers = false   # default false (only meaningful when TLS is configured)
  [[api.tokens]]
  name = "vigilance-desk"         # the principal named in audit records
  sha256 = "9f86d08..."           # printf %s "$TOKEN" | sha256sum
  scopes = ["identity:read", "identity:decide", "audit:read"]
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from twisted.web.resource import Resource

from ..audit.hook import SECURITY_ALERT, AuditRecord, Participant
from ..errors import ConfigurationError

__all__ = ["ApiAccess", "ApiToken", "Guarded", "SCOPES", "principal_of"]

log = logging.getLogger("ihe_engine.web.access")

SCOPES = frozenset({"identity:read", "identity:decide", "audit:read"})
_USER_AUTHENTICATION = ("110114", "DCM", "User Authentication")
_LOGIN = ("110122", "DCM", "Login")
_RESTRICTED = ("110132", "DCM", "Use of Restricted Function")
_PRINCIPAL = "ihe_principal"


@dataclass(frozen=True)
class ApiToken:
    name: str
    sha256: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class ApiAccess:
    tokens: tuple[ApiToken, ...] = ()
    allow_loopback: bool = False
    allow_certified_peers: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> "ApiAccess":
        section = (getattr(settings, "extra", None) or {}).get("api") or {}
        if not isinstance(section, Mapping):
            raise ConfigurationError("[api] must be a table")
        unknown = set(section) - {"tokens", "allow_loopback", "allow_certified_peers"}
        if unknown:
            raise ConfigurationError(f"[api] has unknown keys: {', '.join(sorted(unknown))}")
        access = cls(tokens=tuple(_token(entry) for entry in section.get("tokens", ())),
                     allow_loopback=_flag(section, "allow_loopback"),
                     allow_certified_peers=_flag(section, "allow_certified_peers"))
        if access.allow_loopback:
            log.warning("[api] allow_loopback: any process on this host (and any caller behind a local proxy) "
                        "may decide identity links and read the audit log")
        return access

    def decide(self, request: Any, scope: str) -> tuple[int, str]:
        """(0, principal) when ``request`` may use ``scope``; else (401 or 403, why)."""
        header = request.getHeader(b"authorization")
        if header is not None:
            return self._by_token(header.decode("latin-1") if isinstance(header, bytes) else header, scope)
        if self.allow_certified_peers and _verified_certificate(request) is not None:
            return 0, "tls-client:" + _host(request)
        if self.allow_loopback and _is_loopback(_host(request)):
            return 0, "loopback"
        return 401, "authentication required: a bearer token with the scope (see [api] in the configuration)"

    def _by_token(self, header: str, scope: str) -> tuple[int, str]:
        kind, _, presented = header.strip().partition(" ")
        if kind.lower() != "bearer" or not presented.strip():
            return 401, "the Authorization header must be 'Bearer <token>'"
        digest = hashlib.sha256(presented.strip().encode("utf-8")).hexdigest()
        token = next((t for t in self.tokens if hmac.compare_digest(t.sha256, digest)), None)
        if token is None:
            return 401, "unknown bearer token"
        if scope not in token.scopes:
            return 403, f"token {token.name!r} does not have the scope {scope!r}"
        return 0, "token:" + token.name


class Guarded(Resource):
    """Lets a request through to ``resource`` (a leaf) only when :class:`ApiAccess` admits it for the scope of
    its method; the principal is left on the request (:func:`principal_of`) for audit records."""

    isLeaf = True

    def __init__(self, resource: Resource, scopes: Mapping[bytes, str], access: ApiAccess, runtime: Any) -> None:
        super().__init__()
        self.resource, self.scopes, self.access, self.runtime = resource, dict(scopes), access, runtime

    def render(self, request):  # type: ignore[no-untyped-def]
        scope = self.scopes.get(b"GET" if request.method == b"HEAD" else request.method)
        if scope is None:  # a method no handler serves: nothing to authorise
            request.setHeader(b"allow", b", ".join(sorted(self.scopes)))
            return _json(request, 405, f"{request.method.decode('ascii', 'replace')} is not allowed here")
        status, principal = self.access.decide(request, scope)
        if status:
            self._audit_refusal(request, status, principal, scope)
            if status == 401:
                request.setHeader(b"www-authenticate", b'Bearer realm="ihe-engine"')
            return _json(request, status, principal)
        setattr(request, _PRINCIPAL, principal)
        return self.resource.render(request)

    def _audit_refusal(self, request: Any, status: int, reason: str, scope: str) -> None:
        audit = getattr(self.runtime, "audit", None)
        if audit is None:
            return
        host = _host(request)
        path = request.path.decode("ascii", "replace")
        event, event_type = (_USER_AUTHENTICATION, _LOGIN) if status == 401 else (SECURITY_ALERT, _RESTRICTED)
        audit.emit(AuditRecord(
            event_id=event, action="E", outcome=4, event_types=(event_type,),
            outcome_description=f"HTTP API {path} ({scope}) refused: {reason}",
            participants=(Participant(user_id=host, is_requestor=True, network_access_point=host),
                          Participant(user_id=path, is_requestor=False,
                                      alternative_user_id=getattr(self.runtime, "process_id", None),
                                      network_access_point=getattr(self.runtime, "node_name", None)))))


def _json(request: Any, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps({"error": message}).encode("utf-8")


def principal_of(request: Any) -> str | None:
    """Who :class:`Guarded` admitted (``token:NAME``, ``tls-client:HOST`` or ``loopback``), if it did."""
    return getattr(request, _PRINCIPAL, None)


def _token(entry: Any) -> ApiToken:
    if not isinstance(entry, Mapping) or not entry.get("name") or not entry.get("sha256"):
        raise ConfigurationError("each [[api.tokens]] needs a name and the sha256 of the token")
    digest = str(entry["sha256"]).strip().lower()
    if len(digest) != 64 or any(char not in "0123456789abcdef" for char in digest):
        raise ConfigurationError(f"[[api.tokens]] {entry['name']!r}: sha256 must be 64 hex digits")
    scopes = frozenset(entry.get("scopes") or ())
    if not scopes or not scopes <= SCOPES:
        raise ConfigurationError(f"[[api.tokens]] {entry['name']!r}: scopes must be some of {sorted(SCOPES)}")
    return ApiToken(name=str(entry["name"]), sha256=digest, scopes=scopes)


def _flag(section: Mapping[str, Any], key: str) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise ConfigurationError(f"[api] {key} must be true or false")
    return value


def _host(request: Any) -> str:
    return str(getattr(request.getClientAddress(), "host", "") or "unknown")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _verified_certificate(request: Any) -> Any | None:
    """The client certificate of a TLS request (the listener refuses unverified ones before any HTTP)."""
    if not request.isSecure():
        return None
    get_certificate = getattr(getattr(request.channel, "transport", None), "getPeerCertificate", None)
    try:
        return get_certificate() if get_certificate is not None else None
    except Exception:  # no certificate: not a certified peer
        return None
