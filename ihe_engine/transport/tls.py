"""ITI-19 node authentication: one TLS configuration for every listener and client.

:class:`TLSConfig` names this node's certificate and key, the CA bundle whose peers are trusted, optional pinned
leaf fingerprints and an optional CRL. From it come pyOpenSSL contexts that:

* refuse anything below TLS 1.2 (BCP195; TLS 1.0/1.1 are retired);
* offer, in TLS 1.2, exactly the four suites of IHE ITI-19 / BCP195: ECDHE-RSA and DHE-RSA with AES-128/256-GCM
  (DHE uses the RFC 7919 ffdhe2048 group). TLS 1.3 is allowed too, limited to its AES-GCM suites
  (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384), which BCP195 (RFC 9325) recommends;
* authenticate both sides (``VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT``) against the CA bundle, check the CRL when
  one is configured (leaf certificates, ``CRL_CHECK``), require the leaf's SHA-256 to be pinned when pins are
  configured, and refuse a leaf without subjectAltName (Twisted does not check this);
* for clients, check the server name against the certificate (RFC 6125, service_identity) only when
  ``verify_hostname`` is set: IHE deployments often address nodes by IP or alias, so it is an option.

Outbound, the same client context serves Twisted clients (:func:`client_connection_creator`: ITI-10 over MLLP,
the syslog sender) and blocking ``requests`` clients (:func:`https_adapter`: ITI-46 over https, through urllib3's
pyOpenSSL socket wrapper), so there is one set of rules for every connection this node opens.
:func:`outbound_refusal` tells a refused TLS connection (worth a Security Alert) from a network failure.

Every refused handshake is reported once through ``on_failure(peer, reason)`` by the protocol that
:func:`wrap_server_factory` / :func:`listen_tls` put around the application factory; the reason is the most precise
one known: the certificate check that failed (recorded by the verify callback), else the OpenSSL error, else the
alert we sent. A TCP connection that closes without sending a byte (a port probe, a load-balancer check) is
not a handshake attempt and is not reported.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import logging
import os
import ssl
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from requests.adapters import HTTPAdapter
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from urllib3.contrib.pyopenssl import WrappedSocket
from urllib3.util import wait_for_read, wait_for_write
from zope.interface import implementer

from ..errors import ConfigurationError
from . import describe_peer

__all__ = [
    "BCP195_CIPHERS",
    "TLS13_CIPHERSUITES",
    "TLSConfig",
    "PeerIdentity",
    "OnFailure",
    "certificate_sha256",
    "identity_of",
    "peer_identity", "node_tls_config",
    "server_context",
    "client_context",
    "ServerConnectionCreator",
    "ClientConnectionCreator",
    "server_connection_creator",
    "client_connection_creator",
    "describe_handshake_failure",
    "outbound_refusal",
    "OutboundTLSRefused",
    "https_adapter",
    "ReportingTLSFactory",
    "wrap_server_factory",
    "security_alert_reporter",
    "listen_tls",
]

log = logging.getLogger("ihe_engine.transport.tls")

BCP195_CIPHERS = ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                  "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384")
TLS13_CIPHERSUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384")

OnFailure = Callable[[str, str], None]
"""``on_failure(peer, reason)``: peer is ``host:port``, reason a sentence for a person."""


# --------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class TLSConfig:
    cert: Path
    key: Path
    ca: Path
    pinned_sha256: tuple[str, ...] = ()
    crl: Path | None = None
    verify_hostname: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "pinned_sha256", tuple(_normalize_pin(pin) for pin in self.pinned_sha256))

    @classmethod
    def from_settings(cls, settings: Any) -> "TLSConfig":
        """From :class:`ihe_engine.config.Settings` (``--tls-*`` flags or config keys)."""
        if settings.tls_cert is None or settings.tls_key is None or settings.tls_ca is None:
            raise ConfigurationError("TLS needs --tls-cert, --tls-key and --tls-ca")
        crl = getattr(settings, "tls_crl", None)
        return cls(cert=Path(settings.tls_cert), key=Path(settings.tls_key), ca=Path(settings.tls_ca),
                   pinned_sha256=tuple(settings.tls_pinned), crl=Path(crl) if crl else None,
                   verify_hostname=bool(getattr(settings, "tls_verify_hostname", False)))


def node_tls_config(settings: Any) -> TLSConfig | None:
    """The node's own TLS configuration for its clients, or None when the node has none (plain connections)."""
    return TLSConfig.from_settings(settings) if settings.tls_enabled else None


def _normalize_pin(pin: str) -> str:
    value = pin.replace(":", "").strip().lower()
    if len(value) != 64 or any(char not in "0123456789abcdef" for char in value):
        raise ConfigurationError(f"pinned fingerprint {pin!r} is not a SHA-256 in hex (64 digits, colons allowed)")
    return value


# --------------------------------------------------------------------------------------------------- identity


@dataclass(frozen=True, kw_only=True)
class PeerIdentity:
    """Who the peer proved to be, for audit records (ActiveParticipant, Security Alert details)."""

    subject: str
    common_name: str | None
    issuer: str
    sha256: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()


def _as_cryptography(cert: x509.Certificate | crypto.X509) -> x509.Certificate:
    return cert.to_cryptography() if isinstance(cert, crypto.X509) else cert


def certificate_sha256(cert: x509.Certificate | crypto.X509) -> str:
    """Lower-case hex SHA-256 of the DER certificate, the form pins are compared in."""
    return hashlib.sha256(_as_cryptography(cert).public_bytes(Encoding.DER)).hexdigest()


def _subject_alt_names(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def identity_of(cert: x509.Certificate | crypto.X509) -> PeerIdentity:
    cert = _as_cryptography(cert)
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    san = _subject_alt_names(cert)
    return PeerIdentity(
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        common_name=str(names[0].value) if names else None,
        dns_names=tuple(san.get_values_for_type(x509.DNSName)) if san else (),
        ip_addresses=tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)) if san else (),
        uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)) if san else (),
        sha256=certificate_sha256(cert))


def peer_identity(transport: Any) -> PeerIdentity | None:
    """The authenticated peer of a TLS transport (``protocol.transport``), or None before the handshake."""
    get_certificate = getattr(transport, "getPeerCertificate", None)
    cert = get_certificate() if get_certificate else None
    return identity_of(cert) if cert is not None else None


# --------------------------------------------------------------------------------------------------- handshakes


class _Handshake:
    """What one connection's handshake learnt: the first refusal reason, whether it completed, if reported."""

    __slots__ = ("verify_reason", "alert_sent", "completed", "reported", "__weakref__")

    def __init__(self) -> None:
        self.verify_reason: str | None = None
        self.alert_sent: int | None = None
        self.completed = False
        self.reported = False


_HANDSHAKES: "weakref.WeakKeyDictionary[SSL.Connection, _Handshake]" = weakref.WeakKeyDictionary()

_VERIFY_ERRORS = {
    2: "its issuer is not a trusted CA",
    3: "the CRL of its issuer is not available",
    7: "its signature is invalid",
    9: "it is not yet valid",
    10: "it has expired",
    11: "the CRL is not yet valid",
    12: "the CRL has expired",
    18: "it is self-signed and not trusted",
    19: "its chain ends in an untrusted self-signed CA",
    20: "it was issued by an unknown CA (issuer not in the trusted bundle)",
    21: "its signature cannot be verified against a trusted CA",
    23: "it has been revoked",
    24: "an issuer in its chain is not a CA",
    26: "it is not valid for this purpose (extended key usage)",
}

_SSL_ERRORS = {
    "unsupported protocol": "peer offered only TLS versions older than 1.2 (TLS 1.0/1.1 are refused)",
    "wrong ssl version": "peer offered only TLS versions older than 1.2 (TLS 1.0/1.1 are refused)",
    "peer did not return a certificate": "peer presented no client certificate (mutual TLS is required)",
    "no shared cipher": "no cipher suite in common (only the BCP195 AES-GCM suites are accepted)",
    "http request": "peer spoke plain HTTP on a TLS port",
    "wrong version number": "peer did not speak TLS",
    "tlsv1 alert unknown ca": "peer does not trust our certificate (unknown CA)",
    "tlsv13 alert certificate required": "peer requires a client certificate",
    "alert protocol version": "peer does not speak TLS 1.2 or later (TLS 1.0/1.1 are refused)",
    "system library": "the peer reset the connection during the TLS handshake (it may not accept our certificate)",
    "alert handshake failure": ("peer found no TLS version or cipher suite in common (TLS 1.2 or later with the "
                                "BCP195 suites only)"),
}

_ALERTS = {
    40: "handshake failure", 42: "bad certificate", 43: "unsupported certificate", 44: "certificate revoked",
    45: "certificate expired", 46: "certificate unknown", 47: "illegal parameter", 48: "unknown CA",
    50: "decode error", 51: "decrypt error", 70: "protocol version not accepted (TLS 1.2 minimum)",
    71: "insufficient security", 80: "internal error", 109: "missing extension", 112: "unrecognized name",
    116: "client certificate required",
}


def _info_callback(connection: SSL.Connection, where: int, value: int) -> None:
    handshake = _HANDSHAKES.get(connection)
    if handshake is None:
        return
    if where & SSL.SSL_CB_HANDSHAKE_DONE:
        handshake.completed = True
    elif where & SSL.SSL_CB_WRITE_ALERT and handshake.alert_sent is None and (value >> 8) == 2:
        handshake.alert_sent = value & 0xFF


def _verify_error_reason(cert: crypto.X509, error: int, depth: int) -> str:
    subject = _as_cryptography(cert).subject.rfc4514_string() or "(empty subject)"
    what = "peer certificate" if depth == 0 else f"certificate at depth {depth} of the peer chain"
    problem = _VERIFY_ERRORS.get(error, f"it failed verification (OpenSSL X509 error {error})")
    return f"{what} {subject} refused: {problem}"


def _ssl_error_text(error: BaseException) -> str:
    parts = [str(item[-1]) for item in error.args[0]] if error.args and isinstance(error.args[0], list) else []
    return "; ".join(part for part in parts if part) or str(error) or type(error).__name__


def describe_handshake_failure(handle: SSL.Connection | None, failure: Failure | BaseException | None) -> str:
    """The most precise reason known for a handshake that did not complete."""
    handshake = _HANDSHAKES.get(handle) if handle is not None else None
    if handshake is not None and handshake.verify_reason:
        return handshake.verify_reason
    error = failure.value if isinstance(failure, Failure) else failure
    if isinstance(error, SSL.Error):
        text = _ssl_error_text(error)
        known = next((meaning for key, meaning in _SSL_ERRORS.items() if key in text), None)
        return known or f"TLS handshake failed: {text}"
    if handshake is not None and handshake.alert_sent is not None:
        alert = _ALERTS.get(handshake.alert_sent, f"alert {handshake.alert_sent}")
        return f"TLS handshake refused: {alert}"
    return "connection closed before the TLS handshake completed"


# --------------------------------------------------------------------------------------------------- contexts


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der_integer(value: int) -> bytes:
    encoded = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + _der_length(len(encoded)) + encoded


def _e_times_power_of_two(bits: int) -> int:
    """floor(e * 2**bits), summing 1/k! in fixed point with 64 guard bits."""
    precision = bits + 64
    total, term, k = 0, 1 << precision, 0
    while term:
        total, k = total + term, k + 1
        term //= k
    return total >> 64


@functools.cache
def _ffdhe2048_pem() -> bytes:
    """RFC 7919 ffdhe2048 as PKCS#3 PEM, computed from its definition (p from the digits of e), generator 2.

    pyOpenSSL cannot turn on OpenSSL's automatic DH groups, and the DHE suites need parameters.
    """
    bits = 2048
    prime = 2 ** bits - 2 ** (bits - 64) + (_e_times_power_of_two(bits - 130) + 560316) * 2 ** 64 - 1
    body = _der_integer(prime) + _der_integer(2)
    der = b"\x30" + _der_length(len(body)) + body
    return b"-----BEGIN DH PARAMETERS-----\n" + base64.encodebytes(der) + b"-----END DH PARAMETERS-----\n"


def _load_dh(context: SSL.Context) -> None:
    handle, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(_ffdhe2048_pem())
        context.load_tmp_dh(path)
    finally:
        os.unlink(path)


def _load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    data = path.read_bytes()
    if b"-----BEGIN X509 CRL-----" not in data:
        return [x509.load_der_x509_crl(data)]
    blocks = data.split(b"-----END X509 CRL-----")[:-1]
    return [x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n") for block in blocks]


def _check_leaf(cert: x509.Certificate, config: TLSConfig, hostname: str | None) -> str | None:
    """Checks OpenSSL does not make: a subjectAltName, the pins, and (clients, if asked) the host name."""
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    if _subject_alt_names(cert) is None:
        return f"peer certificate {subject} refused: it has no subjectAltName"
    if config.pinned_sha256 and certificate_sha256(cert) not in config.pinned_sha256:
        return (f"peer certificate {subject} refused: its SHA-256 fingerprint {certificate_sha256(cert)} "
                f"is not one of the pinned fingerprints")
    if hostname is not None and config.verify_hostname:
        return _check_hostname(cert, hostname, subject)
    return None


def _check_hostname(cert: x509.Certificate, hostname: str, subject: str) -> str | None:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        verify = verify_certificate_hostname
    else:
        verify = verify_certificate_ip_address
    try:
        verify(cert, hostname)
    except (VerificationError, CertificateError) as exc:
        return f"peer certificate {subject} refused: it does not match the name {hostname!r} ({exc})"
    return None


def _verify_callback(config: TLSConfig, hostname: str | None):  # type: ignore[no-untyped-def]
    def verify(connection: SSL.Connection, cert: crypto.X509, error: int, depth: int, ok: int) -> bool:
        handshake = _HANDSHAKES.get(connection)
        reason = None
        if not ok:
            reason = _verify_error_reason(cert, error, depth)
        elif depth == 0:
            reason = _check_leaf(cert.to_cryptography(), config, hostname)
        if reason is not None and handshake is not None and handshake.verify_reason is None:
            handshake.verify_reason = reason
        return reason is None

    return verify


def _context(config: TLSConfig, *, server: bool, hostname: str | None, allow_tls13: bool) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    if not allow_tls13:
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE
                        | SSL.OP_SINGLE_DH_USE | SSL.OP_SINGLE_ECDH_USE)
    context.set_cipher_list(":".join(BCP195_CIPHERS).encode("ascii"))
    context.set_tls13_ciphersuites(":".join(TLS13_CIPHERSUITES).encode("ascii"))
    _load_credentials(context, config)
    if server:
        _load_dh(context)
        context.set_session_id(b"ihe-engine")
        context.load_client_ca(str(config.ca).encode())
    if config.crl is not None:
        _add_crls(context, config.crl)
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_callback(config, hostname))
    context.set_info_callback(_info_callback)
    return context


def _load_credentials(context: SSL.Context, config: TLSConfig) -> None:
    for label, path in (("certificate", config.cert), ("private key", config.key), ("CA bundle", config.ca)):
        if not Path(path).is_file():
            raise ConfigurationError(f"TLS {label} {path} does not exist")
    try:
        context.use_certificate_chain_file(str(config.cert))
        context.use_privatekey_file(str(config.key))
        context.check_privatekey()
        context.load_verify_locations(str(config.ca))
    except SSL.Error as exc:
        raise ConfigurationError(f"cannot load TLS credentials ({config.cert}, {config.key}, {config.ca}): "
                                 f"{_ssl_error_text(exc)}") from None


def _add_crls(context: SSL.Context, path: Path) -> None:
    try:
        crls = _load_crls(path)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot load CRL {path}: {exc}") from None
    store = context.get_cert_store()
    assert store is not None
    for crl in crls:
        store.add_crl(crl)
    store.set_flags(crypto.X509StoreFlags.CRL_CHECK)


def server_context(config: TLSConfig) -> SSL.Context:
    return _context(config, server=True, hostname=None, allow_tls13=True)


def client_context(config: TLSConfig, hostname: str | None = None, *, allow_tls13: bool = True) -> SSL.Context:
    return _context(config, server=False, hostname=hostname, allow_tls13=allow_tls13)


# --------------------------------------------------------------------------------------------------- creators


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnectionCreator:
    """Server side of every TLS listener; reasons of refusals are kept per connection for the report."""

    def __init__(self, config: TLSConfig, on_failure: OnFailure) -> None:
        self.config = config
        self.on_failure = on_failure
        self.context = server_context(config)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802,N803 (Twisted API)
        connection = SSL.Connection(self.context, None)
        _HANDSHAKES[connection] = _Handshake()
        return connection


@implementer(IOpenSSLClientConnectionCreator)
class ClientConnectionCreator:
    """Client side towards one host; sends SNI for names (not IP addresses)."""

    def __init__(self, config: TLSConfig, hostname: str, *, allow_tls13: bool = True) -> None:
        self.config = config
        self.hostname = hostname
        self.context = client_context(config, hostname, allow_tls13=allow_tls13)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802,N803 (Twisted API)
        connection = SSL.Connection(self.context, None)
        if not _is_ip_address(self.hostname):
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        _HANDSHAKES[connection] = _Handshake()
        return connection


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def server_connection_creator(config: TLSConfig, on_failure: OnFailure) -> ServerConnectionCreator:
    return ServerConnectionCreator(config, on_failure)


def client_connection_creator(config: TLSConfig, hostname: str, *, allow_tls13: bool = True
                              ) -> ClientConnectionCreator:
    """``allow_tls13=False`` caps at TLS 1.2, where a completed handshake proves the server accepted us."""
    return ClientConnectionCreator(config, hostname, allow_tls13=allow_tls13)


# --------------------------------------------------------------------------------------------------- outbound


def outbound_refusal(handle: SSL.Connection | None, error: Failure | BaseException | None) -> str | None:
    """Why a connection this node opened failed at the TLS layer, or None when TLS is not what failed.

    A TLS error (our checks of the server, or an alert from the server, which under TLS 1.3 may come after our
    side of the handshake finished) or a peer that hung up in the middle of the handshake is a refusal; no TCP
    connection, a timeout or a connection lost after the handshake are network failures, not refusals.
    """
    handshake = _HANDSHAKES.get(handle) if handle is not None else None
    if handshake is None:
        return None
    value = error.value if isinstance(error, Failure) else error
    hung_up = isinstance(value, (ConnectionDone, ConnectionLost)) and not handshake.completed
    if isinstance(value, SSL.Error) or hung_up:
        return describe_handshake_failure(handle, value)
    return None


class OutboundTLSRefused(ssl.SSLError):
    """A TLS connection this node opened (blocking client) was refused; ``reason`` says why, for a person."""

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"TLS with {peer} refused: {reason}")
        self.peer, self.reason = peer, reason


class _ReportingSocket(WrappedSocket):
    """urllib3's pyOpenSSL socket, reporting a TLS alert read before the peer's first byte (under TLS 1.3 the
    server judges our certificate after our side of the handshake is over)."""

    def __init__(self, connection: SSL.Connection, sock: Any, peer: str, on_failure: OnFailure | None) -> None:
        super().__init__(connection, sock)
        self._peer, self._on_failure, self._heard = peer, on_failure, False

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        try:
            count = super().recv_into(*args, **kwargs)
        except ssl.SSLError as exc:
            reason = None if self._heard else outbound_refusal(self.connection, exc.__cause__)
            self._heard = True
            if reason is not None:
                _report_outbound(self._on_failure, self._peer, reason)
                raise OutboundTLSRefused(self._peer, reason) from exc
            raise
        self._heard = True
        return count


def _report_outbound(on_failure: OnFailure | None, peer: str, reason: str | None) -> None:
    if reason is None:
        return
    log.warning("TLS connection to %s refused: %s", peer, reason)
    if on_failure is not None:
        try:
            on_failure(peer, reason)
        except Exception:  # a reporting sink must not change what the caller sees
            log.exception("on_failure callback failed for %s", peer)


class _BlockingClientContext:
    """What urllib3 asks of an ``ssl.SSLContext``, answered with :func:`client_context` (pyOpenSSL).

    Verification cannot be turned off and trust cannot be widened: the CA bundle, the client certificate and
    the host name check all come from the :class:`TLSConfig`. One pyOpenSSL context per server name.
    """

    check_hostname = False  # urllib3 must not check names itself: our verify callback does, if configured

    def __init__(self, config: TLSConfig, on_failure: OnFailure | None) -> None:
        self.config, self.on_failure = config, on_failure
        self._contexts: dict[str, SSL.Context] = {}

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        return ssl.CERT_REQUIRED

    @verify_mode.setter
    def verify_mode(self, mode: int) -> None:
        if mode != ssl.CERT_REQUIRED:
            raise ConfigurationError("TLS peer verification cannot be turned off for this node's clients")

    def set_alpn_protocols(self, protocols: Any) -> None:
        """HTTP/1.1 only: nothing to negotiate."""

    def load_verify_locations(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigurationError("the trusted CAs of this node's clients come from --tls-ca only")

    def load_cert_chain(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigurationError("the client certificate of this node comes from --tls-cert only")

    def wrap_socket(self, sock: Any, server_side: bool = False, server_hostname: str | None = None,
                    **_options: Any) -> _ReportingSocket:
        host = server_hostname or sock.getpeername()[0]
        peer = f"{host}:{sock.getpeername()[1]}"
        context = self._contexts.get(host)
        if context is None:
            context = self._contexts.setdefault(host, client_context(self.config, host))
        connection = SSL.Connection(context, sock)
        if not _is_ip_address(host):
            connection.set_tlsext_host_name(host.encode("idna"))
        connection.set_connect_state()
        _HANDSHAKES[connection] = _Handshake()
        try:
            _blocking_handshake(connection, sock)
        except SSL.Error as exc:
            reason = outbound_refusal(connection, exc) or str(exc)
            _report_outbound(self.on_failure, peer, reason)
            raise OutboundTLSRefused(peer, reason) from None
        return _ReportingSocket(connection, sock, peer, self.on_failure)


def _blocking_handshake(connection: SSL.Connection, sock: Any) -> None:
    while True:
        try:
            connection.do_handshake()
            return
        except SSL.WantReadError:
            if not wait_for_read(sock, sock.gettimeout()):
                raise TimeoutError("the TLS handshake timed out") from None
        except SSL.WantWriteError:  # a full send buffer is not a refusal
            if not wait_for_write(sock, sock.gettimeout()):
                raise TimeoutError("the TLS handshake timed out") from None


class _MutualTLSAdapter(HTTPAdapter):
    """A ``requests`` transport adapter whose https connections follow a :class:`TLSConfig` (see
    :func:`https_adapter`)."""

    def __init__(self, config: TLSConfig, on_failure: OnFailure | None) -> None:
        self._tls_context = _BlockingClientContext(config, on_failure)
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, ssl_context=self._tls_context, assert_hostname=False, **kwargs)

    def send(self, request: Any, *args: Any, verify: Any = True, cert: Any = None, **kwargs: Any) -> Any:
        """``verify=False`` or ``cert=`` cannot loosen the rules; a CA bundle from the environment
        (REQUESTS_CA_BUNDLE) is ignored: trust comes from --tls-ca only."""
        if verify is False or cert is not None:
            raise ConfigurationError("https clients of this node take their trust and certificate from "
                                     "--tls-ca/--tls-cert, not from verify= or cert=")
        return super().send(request, *args, verify=True, cert=None, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """A proxy would get a connection pool without our context (system CAs, no client certificate): the
        node's https clients never go through one."""
        raise ConfigurationError(f"https clients of this node do not use proxies (asked to use {proxy!r}); "
                                 "unset HTTPS_PROXY/ALL_PROXY for the engine")

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """requests would point urllib3 at its own CA bundle (certifi); our context is the only source of trust."""
        conn.cert_reqs, conn.ca_certs, conn.ca_cert_dir = "CERT_REQUIRED", None, None


def https_adapter(config: TLSConfig, on_failure: OnFailure | None = None) -> HTTPAdapter:
    """A ``requests`` adapter for ``session.mount("https://", ...)``: mutual TLS with this node's certificate,
    exactly the rules of :func:`client_context` (TLS 1.2 floor, BCP195 suites, CA bundle, pins, CRL, optional
    RFC 6125 name check). Each refused connection is reported once through ``on_failure(peer, reason)`` and
    raised as an :class:`OutboundTLSRefused` (inside requests' ``SSLError``); no retry inside the adapter."""
    client_context(config)  # unreadable credentials are a ConfigurationError now, not at the first request
    return _MutualTLSAdapter(config, on_failure)


# --------------------------------------------------------------------------------------------------- reporting


class _ReportingTLSProtocol(TLSMemoryBIOProtocol):
    """Reports once, at connection loss, a handshake that started but never completed."""

    _received_bytes = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self._received_bytes = True
        super().dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 (Twisted API)
        handle = self.getHandle()
        handshake = _HANDSHAKES.get(handle) if handle is not None else None
        if handshake is not None and not handshake.completed and not handshake.reported and self._received_bytes:
            handshake.reported = True
            # Twisted keeps the TLS error that ended the connection in _reason and hands it to connectionLost.
            self._report(describe_handshake_failure(handle, getattr(self, "_reason", None) or reason))
        super().connectionLost(reason)

    def _report(self, reason: str) -> None:
        peer = describe_peer(self.transport)
        log.warning("TLS handshake from %s refused: %s", peer, reason)
        try:
            self.factory.on_failure(peer, reason)
        except Exception:  # a reporting sink must not break connection teardown
            log.exception("on_failure callback failed for %s", peer)




class ReportingTLSFactory(TLSMemoryBIOFactory):
    """A server TLS wrapper whose connections report failed handshakes to ``on_failure``."""

    protocol = _ReportingTLSProtocol

    def __init__(self, creator: ServerConnectionCreator, wrapped_factory: Any) -> None:
        super().__init__(creator, False, wrapped_factory)
        self.creator = creator
        self.on_failure = creator.on_failure


def wrap_server_factory(factory: Any, config: TLSConfig, on_failure: OnFailure) -> ReportingTLSFactory:
    return ReportingTLSFactory(server_connection_creator(config, on_failure), factory)


def security_alert_reporter(audit: Any, node: str) -> OnFailure:
    """An ``on_failure`` that records each refused handshake as an ATNA Security Alert (ITI-19)."""

    def report(peer: str, reason: str) -> None:
        audit.security_alert(description=reason, peer=peer, node=node)

    return report


def listen_tls(reactor: Any, port: int, factory: Any, config: TLSConfig, on_failure: OnFailure,
               interface: str = "") -> Any:
    """Listen with mutual TLS on ``port`` (0 picks one); returns the IListeningPort."""
    return reactor.listenTCP(port, wrap_server_factory(factory, config, on_failure), interface=interface)
