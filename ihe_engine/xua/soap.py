"""XUA on the SOAP endpoints: per-endpoint mode, the security check run before every handler, its faults.

Configuration (TOML, ``settings.extra["xua"]``)::

  [xua]
  trust_anchors = "/etc/ihe/xua-ca.pem"   # PEM bundle: CAs (or self-signed providers) whose signatures count
  audiences = ["https://registry.example.org/xds"]
  issuers = []                  # accepted Issuer values (default: any issuer the trust anchors vouch for)
  clock_skew = 60               # seconds allowed around NotBefore / NotOnOrAfter
  replay_cache = true           # refuse a second use of an assertion (database, shared by every worker)
  profile = "ihe"               # or "vihf": the French VIHF attributes are required as well
  allow_sha1 = false
  emergency_purposes = ["BTG", "ETREAT", "EMERGENCY", "BRIS_DE_GLACE"]
  policy = "ihe_engine.xua.policy:DefaultPolicy"    # the access policy (see ihe_engine.xua.policy)

  [xua.endpoints]               # off (default), optional or required, by endpoint path
  "xds/registry" = "required"
  "xds/repository" = "optional"

  [xua.vihf]                    # see ihe_engine.xua.vihf.VihfSettings
  production = true

  [xua.policy_options]          # keyword arguments of the policy
  patient_roles = ["PATIENT"]

``required``: a request without a valid assertion is refused. ``optional``: a request without a wsse:Security
header (or with one carrying no assertion) goes through with no user; a present assertion must be valid. A refusal
is a SOAP 1.2 Sender fault with the WS-Security subcode (wsse:InvalidSecurity, wsse:InvalidSecurityToken,
wsse:FailedAuthentication, wsse:FailedCheck, wsse:SecurityTokenUnavailable, wsse:UnsupportedAlgorithm) and a DICOM
User Authentication audit record with a failure outcome. Nothing of the request is processed.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from ..audit.hook import AuditRecord, Participant
from ..errors import ConfigurationError
from ..ns import SAML2, WSSE, qn
from ..soap.fault import SENDER, SoapFault
from .assertion import (DEFAULT_EMERGENCY_PURPOSES, FAILED_AUTHENTICATION, INVALID_SECURITY, WSSE_SECURITY,
                        TrustAnchors, UserAssertion, VerifierSettings, XuaError, verify_security_header)
from .vihf import VihfSettings, check_vihf

__all__ = ["XuaConfig", "XuaGuard", "install", "start_housekeeping", "xua_fault", "authentication_failure_record",
           "MODES", "USER_AUTHENTICATION"]

log = logging.getLogger("ihe_engine.xua")

MODES = ("off", "optional", "required")
USER_AUTHENTICATION = ("110114", "DCM", "User Authentication")
_LOGIN = ("110122", "DCM", "Login")
_MINOR_FAILURE = 4


@dataclass(frozen=True, kw_only=True)
class XuaConfig:
    """``[xua]`` read and checked once at start."""

    endpoints: Mapping[str, str]
    verifier: VerifierSettings
    trust_anchors: str | None = None
    replay_cache: bool = True
    profile: str = "ihe"
    vihf: VihfSettings = VihfSettings()

    @classmethod
    def from_settings(cls, settings: Any) -> "XuaConfig":
        raw = dict(getattr(settings, "extra", {}).get("xua", {}))
        endpoints = {str(path).strip("/"): str(mode) for path, mode in dict(raw.get("endpoints", {})).items()}
        for path, mode in endpoints.items():
            if mode not in MODES:
                raise ConfigurationError(f"[xua.endpoints] {path} must be one of {', '.join(MODES)}, not {mode!r}")
        profile = str(raw.get("profile", "ihe"))
        if profile not in ("ihe", "vihf"):
            raise ConfigurationError(f"[xua] profile must be ihe or vihf, not {profile!r}")
        config = cls(endpoints=endpoints, verifier=_verifier_settings(raw), trust_anchors=raw.get("trust_anchors"),
                     replay_cache=bool(raw.get("replay_cache", True)), profile=profile,
                     vihf=VihfSettings.from_mapping(raw.get("vihf", {})))
        if config.active and not config.trust_anchors:
            raise ConfigurationError("[xua] trust_anchors (a PEM bundle) is required when an endpoint uses XUA")
        return config

    @property
    def active(self) -> bool:
        return any(mode != "off" for mode in self.endpoints.values())

    def mode(self, path: str) -> str:
        return self.endpoints.get(path.strip("/"), "off")


def _verifier_settings(raw: Mapping[str, Any]) -> VerifierSettings:
    try:
        return VerifierSettings(
            audiences=tuple(raw.get("audiences", ())), issuers=tuple(raw.get("issuers", ())),
            clock_skew=timedelta(seconds=float(raw.get("clock_skew", 60))),
            max_assertion_bytes=int(raw.get("max_assertion_bytes", 64 * 1024)),
            allow_sha1=bool(raw.get("allow_sha1", False)),
            emergency_purposes=frozenset(raw.get("emergency_purposes", DEFAULT_EMERGENCY_PURPOSES)))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"[xua]: {exc}") from None


class XuaGuard:
    """The security check of one endpoint: ``guard(request, operation) -> request`` with the verified user.

    Runs in the thread pool (the endpoint calls it right before a blocking handler, in the same pool call): the
    signature check is CPU work and the replay cache one short database transaction.
    """

    def __init__(self, runtime: Any, *, mode: str, anchors: TrustAnchors, config: XuaConfig,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.runtime = runtime
        self.mode = mode
        self.anchors = anchors
        self.config = config
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    def __call__(self, request: Any, operation: Any) -> Any:
        security = request.envelope.header_block(WSSE_SECURITY)
        try:
            if security is None:
                if self.mode == "required":
                    raise XuaError(INVALID_SECURITY, "this service requires a wsse:Security header with a SAML 2.0 "
                                                     "assertion (XUA)")
                return request
            if self.mode == "optional" and not _has_assertion(security):
                return request
            user = self.verify(security)
        except XuaError as error:
            self._audit_failure(request, operation, error)
            raise xua_fault(error) from None
        return dataclasses.replace(request, user=user)

    def verify(self, security: Any) -> UserAssertion:
        """The verified user of a wsse:Security header, replay cache included (raises XuaError)."""
        user = verify_security_header(security, self.anchors, self.config.verifier, self.clock())
        if self.config.profile == "vihf":
            check_vihf(user, self.config.vihf)
        if self.config.replay_cache and not self._first_use(user):
            raise XuaError(FAILED_AUTHENTICATION, f"the assertion {user.assertion_id} was already used (replay)",
                           claimed=user.alias)
        return user

    def _first_use(self, user: UserAssertion) -> bool:
        from .replay import remember

        expires = user.not_on_or_after + self.config.verifier.clock_skew
        with self.runtime.uow() as uow:
            first = remember(uow.session, user.issuer, user.assertion_id, expires)
            uow.commit()
        return first

    def _audit_failure(self, request: Any, operation: Any, error: XuaError) -> None:
        log.warning("%s: XUA refused the request from %s: %s", request.endpoint, request.peer, error.reason)
        audit = getattr(self.runtime, "audit", None)
        if audit is not None:
            audit.emit(authentication_failure_record(request, getattr(operation, "transaction", None), error))


def _has_assertion(security: Any) -> bool:
    return any(child.tag in (qn(SAML2, "Assertion"), qn(SAML2, "EncryptedAssertion")) for child in security)


def xua_fault(error: XuaError) -> SoapFault:
    """SOAP 1.2 Sender fault with the WS-Security subcode (WS-Security 1.1 section 12)."""
    return SoapFault(SENDER, error.reason, subcodes=(qn(WSSE, error.code),))


def authentication_failure_record(request: Any, transaction: str | None, error: XuaError) -> AuditRecord:
    """DICOM User Authentication (Login) with a failure outcome; the claimed identity as UserName, unverified."""
    host = request.peer.rsplit(":", 1)[0] or None
    reply_to = getattr(request.addressing, "reply_to", None)
    requestor = Participant(user_id=getattr(reply_to, "address", None) or host or request.peer, is_requestor=True,
                            user_name=error.claimed, network_access_point=host)
    node = Participant(user_id=request.addressing.to or request.endpoint, is_requestor=False)
    return AuditRecord(event_id=USER_AUTHENTICATION, action="E", outcome=_MINOR_FAILURE, event_types=(_LOGIN,),
                       outcome_description=f"XUA wsse:{error.code}: {error.reason}"[:1024],
                       participants=(requestor, node), transaction=transaction)


def install(runtime: Any, endpoints: Mapping[str, Any]) -> dict[str, XuaGuard]:
    """Put a guard on every endpoint whose ``[xua.endpoints]`` mode is not off; returns them by path."""
    config = XuaConfig.from_settings(runtime.settings)
    unknown = set(config.endpoints) - set(endpoints)
    if unknown:
        raise ConfigurationError(f"[xua.endpoints] names unknown endpoints: {', '.join(sorted(unknown))} "
                                 f"(known: {', '.join(sorted(endpoints))})")
    if not config.active:
        return {}
    anchors = TrustAnchors.from_pem_file(config.trust_anchors)
    guards = {}
    for path, endpoint in endpoints.items():
        mode = config.mode(path)
        if mode != "off":
            guards[path] = XuaGuard(runtime, mode=mode, anchors=anchors, config=config)
            endpoint.secure(guards[path], WSSE_SECURITY)
    return guards


def start_housekeeping(runtime: Any, *, every: float = 600.0) -> Any:
    """Purge expired replay-cache rows periodically (every worker may: the delete is idempotent)."""
    config = XuaConfig.from_settings(runtime.settings)
    if not (config.active and config.replay_cache):
        return None
    from twisted.internet.task import LoopingCall

    from .replay import purge_expired

    def purge() -> int:
        with runtime.uow() as uow:
            count = purge_expired(uow.session)
            uow.commit()
        return count

    def run() -> Any:
        return runtime.run_blocking(purge).addErrback(lambda f: log.error("XUA housekeeping: %s",
                                                                           f.getErrorMessage()))

    loop = LoopingCall(run)
    loop.clock = runtime.reactor
    loop.start(every, now=True)
    return loop
