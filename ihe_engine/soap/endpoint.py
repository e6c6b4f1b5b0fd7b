"""The SOAP 1.2 endpoint: a twisted.web resource that dispatches by wsa:Action.

A small request (simple SOAP, body in memory) is parsed on the reactor: it costs less than a thread hop. A large
one (an MTOM package, a body spooled to disk) is read and parsed in the thread pool, 64 KB at a time, so the
reactor never stalls. Blocking handlers run in the thread pool together with the encoding of their answer;
MTOM answers are streamed with a pull producer, so a 50 MB document never sits whole in memory.
"""

from __future__ import annotations

import logging
import re
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping

from lxml import etree
from twisted.internet.defer import maybeDeferred
from twisted.python.failure import Failure
from twisted.web import resource, server

from ..errors import LocalProtocolError, MessageTooLarge, RemoteProtocolError
from ..metrics import TRANSACTION_ERRORS, observe_transaction
from ..ns import WSA, WSDL_SOAP12, qn
from .addressing import AddressingHeaders, action_not_supported, read_addressing, reply_headers
from .envelope import WSA_HEADERS, Envelope, build_envelope, check_must_understand, parse_envelope
from .fault import SENDER, SoapFault, fault_envelope, fault_from_exception, soap11_version_mismatch
from .mtom import CHUNK_SIZE, DEFAULT_MAX_MEMORY, DEFAULT_MAX_PARTS, Attachment, ContentType, MtomBody, \
    OutgoingAttachment, binary_content, encode_mtom, parse_content_type, parse_mtom, resolve_xop, sweep_spool

__all__ = ["Operation", "SoapRequest", "SoapResponse", "SoapEndpoint", "SecurityCheck", "INLINE_PARSE_LIMIT"]

log = logging.getLogger("ihe_engine.soap")

INLINE_PARSE_LIMIT = 64 * 1024
"""Simple SOAP bodies up to this size are parsed on the reactor thread; larger ones in the thread pool."""

SOAP12_CONTENT_TYPE = b"application/soap+xml; charset=utf-8"
_SOAP11_CONTENT_TYPE = b"text/xml; charset=utf-8"
_SIMPLE, _MTOM = "simple", "mtom"
_WSA_MESSAGE_ID = qn(WSA, "MessageID")
STALE_SPOOL_AGE = 3600.0
"""Seconds after which an ``mtom-*`` spool file left by a crashed process is removed when an endpoint starts."""


@dataclass(frozen=True)
class Operation:
    """Binds a request wsa:Action to a handler ``handler(SoapRequest) -> SoapResponse`` (or a Deferred of one)."""

    action: str
    response_action: str
    handler: Callable[["SoapRequest"], Any]
    _: KW_ONLY
    transaction: str
    blocking: bool = True
    mtom_response: bool = False


@dataclass(frozen=True, kw_only=True)
class SoapRequest:
    """What a handler gets: the parsed envelope, its body payload, WS-A headers and the MTOM attachments."""

    envelope: Envelope
    payload: etree._Element
    addressing: AddressingHeaders
    attachments: Mapping[str, Attachment]
    peer: str
    peer_certificate: Any | None
    content_type: str
    endpoint: str
    user: Any | None = None
    """The user a security check verified (XUA: an :class:`ihe_engine.xua.UserAssertion`), or None."""

    @property
    def user_alias(self) -> str | None:
        """The verified user as audit records name it (XUA: ``alias<user@issuer>``), or None."""
        return getattr(self.user, "alias", None)

    def binary(self, element: etree._Element, content_type: str = "application/octet-stream") -> Attachment:
        """The binary content of an element (xs:base64Binary), optimized (xop:Include) or inline alike."""
        return binary_content(element, self.attachments, content_type=content_type)


SecurityCheck = Callable[[SoapRequest, Operation], SoapRequest]
"""Runs in the thread pool before an operation's handler: returns the request to handle (with ``user`` set), or
raises (a SoapFault) to refuse it; nothing of the request has been processed then."""


@dataclass(frozen=True)
class SoapResponse:
    """A handler's answer: the body element, MTOM attachments it references, extra header blocks."""

    body: etree._Element
    attachments: tuple[OutgoingAttachment, ...] = ()
    extra_headers: tuple[etree._Element, ...] = ()


@dataclass(frozen=True, kw_only=True)
class _Parsed:
    envelope: Envelope
    attachments: Mapping[str, Attachment]
    dispose: Callable[[], None]


@dataclass(frozen=True, kw_only=True)
class _Reply:
    status: int
    content_type: bytes
    body: bytes | MtomBody


class SoapEndpoint(resource.Resource):
    """One SOAP 1.2 service address: POST dispatches by wsa:Action, ``GET ?wsdl`` serves the WSDL."""

    isLeaf = True

    def __init__(self, name: str, runtime: Any, *, wsdl: bytes | None = None, max_body: int | None = None,
                 spool_dir: str | Path | None = None, max_xml_bytes: int | None = None,
                 understood_headers: Collection[str] = WSA_HEADERS, max_mtom_memory: int | None = None,
                 max_mtom_parts: int | None = None) -> None:
        super().__init__()
        settings = getattr(runtime, "settings", None)
        self.name = name
        self.runtime = runtime
        self.max_body = max_body if max_body is not None else getattr(settings, "max_soap_body", 1 << 30)
        self.max_xml_bytes = max_xml_bytes if max_xml_bytes is not None else getattr(
            settings, "max_xml_bytes", 64 << 20)
        spool = spool_dir if spool_dir is not None else getattr(settings, "spool_dir", None)
        self.spool_dir = Path(spool) if spool is not None else None
        self.max_mtom_memory = max_mtom_memory if max_mtom_memory is not None else getattr(
            settings, "max_mtom_memory", DEFAULT_MAX_MEMORY)
        self.max_mtom_parts = max_mtom_parts if max_mtom_parts is not None else getattr(
            settings, "max_mtom_parts", DEFAULT_MAX_PARTS)
        if self.spool_dir is not None:
            sweep_spool(self.spool_dir, STALE_SPOOL_AGE)
        self.understood_headers: frozenset[str] = frozenset(understood_headers)
        self._operations: dict[str, Operation] = {}
        self._security: SecurityCheck | None = None
        self._wsdl = _Wsdl(wsdl) if wsdl is not None else None

    # ------------------------------------------------------------------ configuration

    def register(self, operation: Operation) -> None:
        if operation.action in self._operations:
            raise LocalProtocolError(f"action {operation.action} is already registered on {self.name}")
        self._operations[operation.action] = operation

    def understand(self, *header_qnames: str) -> None:
        """Declare more header blocks as understood (e.g. wsse:Security once a handler processes it)."""
        self.understood_headers = self.understood_headers | frozenset(header_qnames)

    def secure(self, check: SecurityCheck, *header_qnames: str) -> None:
        """Run ``check`` before every handler (in the pool, with a blocking handler in the same call) and declare
        the header blocks it processes understood (XUA: wsse:Security)."""
        self._security = check
        self.understand(*header_qnames)

    @property
    def operations(self) -> Mapping[str, Operation]:
        return dict(self._operations)

    # ------------------------------------------------------------------ GET

    def render_GET(self, request: server.Request) -> bytes:
        if self._wsdl is not None and _asks_for_wsdl(request.uri):
            request.setHeader(b"content-type", b"text/xml; charset=utf-8")
            return self._wsdl.for_base(_base_url(request))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        actions = "\n".join(f"  {action}" for action in sorted(self._operations))
        wsdl_hint = "GET ?wsdl for the WSDL.\n" if self._wsdl is not None else ""
        return f"{self.name}: SOAP 1.2 endpoint; POST application/soap+xml or MTOM.\n{wsdl_hint}" \
               f"Actions:\n{actions}\n".encode("utf-8")

    # ------------------------------------------------------------------ POST

    def render_POST(self, request: server.Request) -> bytes | int:
        try:
            ctype = _content_type(request)
            kind = self._classify(ctype)
            size = _body_size(request.content)
            if size > self.max_body:
                raise MessageTooLarge(f"the request body of {size} bytes is above the limit of {self.max_body}")
            if kind == _SIMPLE:
                self._check_envelope_size(size)
            if kind == _SIMPLE and size <= INLINE_PARSE_LIMIT:
                parsed = self._parse_simple(request.content.read())
                self._dispatch(request, parsed, ctype)
            else:
                deferred = self.runtime.run_blocking(self._parse_stored, request.content, kind, ctype)
                deferred.addCallback(lambda parsed: self._dispatch(request, parsed, ctype))
                deferred.addErrback(self._write_failure, request, None, None)
        except _Soap11 as soap11:
            _write(request, _Reply(status=500, content_type=_SOAP11_CONTENT_TYPE,
                                   body=soap11_version_mismatch(str(soap11))))
        except Exception as exc:  # everything becomes a fault: nothing escapes to twisted's error page
            self._write_failure(Failure(exc), request, None, None)
        return server.NOT_DONE_YET

    def _classify(self, ctype: ContentType) -> str:
        if ctype.media_type == "application/soap+xml":
            return _SIMPLE
        if ctype.media_type == "multipart/related":
            start_info = parse_content_type(ctype.get("start-info") or "application/soap+xml").media_type
            if start_info == "text/xml":
                raise _Soap11("this endpoint speaks SOAP 1.2 only (MTOM start-info application/soap+xml)")
            return _MTOM
        if ctype.media_type == "text/xml":
            raise _Soap11("this endpoint speaks SOAP 1.2 only: send application/soap+xml")
        raise SoapFault(SENDER, f"unsupported Content-Type {ctype.media_type or '(none)'}: send "
                                "application/soap+xml or multipart/related (MTOM)", http_status=415)

    def _check_envelope_size(self, size: int) -> None:
        """Refuse an envelope above ``max_xml_bytes`` from its size alone, before a byte of it is read."""
        if size > self.max_xml_bytes:
            raise MessageTooLarge(f"the SOAP envelope is {size} bytes, above the limit of {self.max_xml_bytes}")

    def _parse_simple(self, data: bytes) -> _Parsed:
        envelope = parse_envelope(data, max_bytes=self.max_xml_bytes)
        return _Parsed(envelope=envelope, attachments={}, dispose=_nothing)

    def _parse_stored(self, content: Any, kind: str, ctype: ContentType) -> _Parsed:
        """In a pool thread: read the spooled body (64 KB at a time for MTOM) and parse it."""
        if kind == _SIMPLE:
            self._check_envelope_size(_body_size(content))
            return self._parse_simple(content.read(self.max_xml_bytes + 1))
        content.seek(0)
        message = parse_mtom(iter(lambda: content.read(CHUNK_SIZE), b""), ctype, spool_dir=self.spool_dir,
                             max_memory=self.max_mtom_memory, max_parts=self.max_mtom_parts)
        try:
            _check_root_type(message.root)
            self._check_envelope_size(message.root.size)
            envelope = parse_envelope(message.root.read(), max_bytes=self.max_xml_bytes)
            resolve_xop(envelope.root, message.attachments)
        except BaseException:
            message.dispose()
            raise
        return _Parsed(envelope=envelope, attachments=message.attachments, dispose=_once(message.dispose))

    def _dispatch(self, request: server.Request, parsed: _Parsed, ctype: ContentType) -> None:
        """Run the operation; the spooled parts go once the response is over, or now if the client is gone.

        A client may leave while the body is parsed in the pool. Twisted then never fires a notifyFinish asked
        for afterwards, so those parts would stay on disk and a handler would work for nobody.
        """
        if _connection_lost(request):
            parsed.dispose()
            return
        request.notifyFinish().addBoth(lambda _: parsed.dispose())
        message_id = _message_id(parsed.envelope)
        try:
            headers = read_addressing(parsed.envelope.header_blocks)
            check_must_understand(parsed.envelope, self.understood_headers)
            operation = self._operations.get(headers.action)
            if operation is None:
                raise action_not_supported(headers.action)
        except Exception as exc:
            self._write_failure(Failure(exc), request, message_id, None)
            return
        soap_request = SoapRequest(
            envelope=parsed.envelope, payload=parsed.envelope.payload, addressing=headers,
            attachments=parsed.attachments, peer=_peer(request), peer_certificate=_peer_certificate(request),
            content_type=request.getHeader(b"content-type").decode("latin-1"), endpoint=self.name)
        observation = _Observation(operation.transaction)
        if operation.blocking:
            deferred = self.runtime.run_blocking(self._run_blocking, operation, soap_request)
        elif self._security is not None:
            deferred = self.runtime.run_blocking(self._security, soap_request, operation)
            deferred.addCallback(lambda checked: self._run_inline(operation, checked))
        else:
            deferred = self._run_inline(operation, soap_request)
        deferred.addCallback(self._write_reply, request, observation)
        deferred.addErrback(self._write_failure, request, message_id, observation)

    def _run_blocking(self, operation: Operation, soap_request: SoapRequest) -> _Reply:
        if self._security is not None:
            soap_request = self._security(soap_request, operation)
        return self._encode(operation, soap_request, operation.handler(soap_request))

    def _run_inline(self, operation: Operation, soap_request: SoapRequest) -> Any:
        deferred = maybeDeferred(operation.handler, soap_request)
        return deferred.addCallback(lambda response: self._encode(operation, soap_request, response))

    def _encode(self, operation: Operation, soap_request: SoapRequest, response: SoapResponse) -> _Reply:
        if not isinstance(response, SoapResponse):
            raise LocalProtocolError(f"handler for {operation.action} returned {type(response).__name__}, "
                                     "not a SoapResponse")
        blocks = reply_headers(operation.response_action, relates_to=soap_request.addressing.message_id)
        blocks.extend(response.extra_headers)
        root_xml = build_envelope(response.body, blocks)
        if operation.mtom_response:
            body = encode_mtom(root_xml, response.attachments)
            return _Reply(status=200, content_type=body.content_type.encode("latin-1"), body=body)
        if response.attachments:
            raise LocalProtocolError(f"{operation.action} answers simple SOAP but its handler gave attachments")
        return _Reply(status=200, content_type=SOAP12_CONTENT_TYPE, body=root_xml)

    def _write_reply(self, reply: _Reply, request: server.Request, observation: "_Observation") -> None:
        observation.done()
        _write(request, reply)

    def _write_failure(self, failure: Failure, request: server.Request, message_id: str | None,
                       observation: "_Observation | None") -> None:
        exc = failure.value
        if isinstance(exc, _Soap11):
            _write(request, _Reply(status=500, content_type=_SOAP11_CONTENT_TYPE,
                                   body=soap11_version_mismatch(str(exc))))
            return
        fault = fault_from_exception(exc)
        if not isinstance(exc, (SoapFault, RemoteProtocolError)):
            log.error("%s: handler failed", self.name, exc_info=(failure.type, failure.value, failure.tb))
        if observation is not None:
            observation.failed(fault)
        body = fault_envelope(fault, relates_to=message_id)
        _write(request, _Reply(status=fault.http_status, content_type=SOAP12_CONTENT_TYPE, body=body))


class _Soap11(Exception):
    """A SOAP 1.1 request: answered with a SOAP 1.1 VersionMismatch fault its sender can read."""


def _asks_for_wsdl(uri: bytes) -> bool:
    """``?wsdl`` (twisted's args drop a query item without '=', so read the query ourselves)."""
    _, _, query = uri.partition(b"?")
    items = query.replace(b";", b"&").split(b"&")
    return any(item.partition(b"=")[0].lower() == b"wsdl" for item in items)


def _nothing() -> None:
    pass


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """``action`` made idempotent: spooled parts are disposed of exactly once whichever path gets there first."""
    pending = [action]

    def run_once() -> None:
        if pending:
            pending.pop()()
    return run_once


def _connection_lost(request: server.Request) -> bool:
    """Whether the client has gone (twisted.web offers no public flag; ``_write`` relies on the same one)."""
    return bool(getattr(request, "_disconnected", False))


def _message_id(envelope: Envelope) -> str | None:
    """The request's wsa:MessageID, read even when other WS-A headers are wrong, so faults can relate to it."""
    block = envelope.header_block(_WSA_MESSAGE_ID)
    return (block.text or "").strip() or None if block is not None else None


def _content_type(request: server.Request) -> ContentType:
    raw = request.getHeader(b"content-type")
    return parse_content_type(raw or b"")


def _body_size(content: Any) -> int:
    content.seek(0, 2)
    size = content.tell()
    content.seek(0)
    return size


def _check_root_type(root: Attachment) -> None:
    ctype = parse_content_type(root.content_type)
    if ctype.media_type == "application/xop+xml":
        inner = parse_content_type(ctype.get("type") or "application/soap+xml").media_type
    else:
        inner = ctype.media_type
    if inner == "text/xml":
        raise _Soap11("this endpoint speaks SOAP 1.2 only (XOP root type application/soap+xml)")
    if inner != "application/soap+xml":
        raise SoapFault(SENDER, f"the MTOM root part is {root.content_type}, not application/xop+xml with "
                                "type application/soap+xml")


def _peer(request: server.Request) -> str:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


def _peer_certificate(request: server.Request) -> Any | None:
    if not request.isSecure():
        return None
    transport = getattr(request.channel, "transport", None)
    get_certificate = getattr(transport, "getPeerCertificate", None)
    try:
        return get_certificate() if get_certificate is not None else None
    except Exception:  # a transport without a certificate is simply anonymous
        return None


class _Observation:
    """Metrics for one transaction whose end comes later, in a callback."""

    def __init__(self, transaction: str) -> None:
        self.transaction = transaction
        self._context = observe_transaction(transaction)
        self._context.__enter__()

    def done(self) -> None:
        self._context.__exit__(None, None, None)

    def failed(self, fault: SoapFault) -> None:
        code = (fault.subcodes[-1] if fault.subcodes else fault.code).split("}", 1)[-1]
        TRANSACTION_ERRORS.labels(self.transaction, code).inc()
        self._context.__exit__(_Faulted, _Faulted(fault.reason), None)


class _Faulted(Exception):
    """Stands for "answered with a fault" when closing the metrics observation."""


# ---------------------------------------------------------------------- writing


def _write(request: server.Request, reply: _Reply) -> None:
    if _connection_lost(request) or request.finished:
        return
    request.setResponseCode(reply.status)
    request.setHeader(b"content-type", reply.content_type)
    if isinstance(reply.body, MtomBody):
        request.setHeader(b"content-length", str(reply.body.length).encode("ascii"))
        _ChunkProducer(request, reply.body.chunks()).start()
        return
    request.setHeader(b"content-length", str(len(reply.body)).encode("ascii"))
    request.write(reply.body)
    request.finish()


class _ChunkProducer:
    """A pull producer writing one chunk per ``resumeProducing``: memory stays at one chunk per response."""

    def __init__(self, request: server.Request, chunks: Iterator[bytes]) -> None:
        self._request = request
        self._chunks = chunks
        self._stopped = False

    def start(self) -> None:
        self._request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self._request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self._stopped:
            return
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._finish()
            return
        except Exception:
            log.exception("MTOM response stream failed")
            self.stopProducing()
            self._request.channel.transport.abortConnection()
            return
        self._request.write(chunk)

    def pauseProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        if not self._stopped:
            self._stopped = True
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()

    def _finish(self) -> None:
        self._stopped = True
        self._request.unregisterProducer()
        self._request.finish()


# ---------------------------------------------------------------------- WSDL

_HOST_HEADER = re.compile(r"^(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
_ADDRESS_TAGS = (qn(WSDL_SOAP12, "address"), qn("http://schemas.xmlsoap.org/wsdl/soap/", "address"))


def _base_url(request: server.Request) -> str:
    """scheme://host[:port]/path of this request; the Host header only if it is a plain host[:port]."""
    scheme = "https" if request.isSecure() else "http"
    host_header = (request.getHeader(b"host") or b"").decode("latin-1")
    if not _HOST_HEADER.match(host_header):
        host = request.getHost()
        host_header = f"{host.host}:{host.port}"
    return f"{scheme}://{host_header}{request.path.decode('latin-1')}"


class _Wsdl:
    """The endpoint's WSDL, with every soap:address location rewritten to the address it was asked on."""

    _CACHE_SIZE = 16

    def __init__(self, document: bytes) -> None:
        self._document = document
        self._cache: dict[str, bytes] = {}

    def for_base(self, base_url: str) -> bytes:
        cached = self._cache.get(base_url)
        if cached is None:
            cached = self._rewrite(base_url)
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[base_url] = cached
        return cached

    def _rewrite(self, base_url: str) -> bytes:
        root = etree.fromstring(self._document)  # our own file, not peer input
        for address in root.iter(*_ADDRESS_TAGS):
            address.set("location", base_url)
        return etree.tostring(root, xml_declaration=True, encoding="utf-8")

