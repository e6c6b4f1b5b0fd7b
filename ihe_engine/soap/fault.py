"""SOAP 1.2 faults: one exception type carrying the wire answer, one builder, one error mapping.

Anything that must answer a peer with a fault raises :class:`SoapFault`; the endpoint turns it into bytes with
:func:`fault_envelope`. Engine errors become faults in exactly one place, :func:`fault_from_exception`, so the
Sender/Receiver split and the rule "never leak internals" live here and nowhere else.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from lxml import etree

from ..errors import EngineError, MessageTooLarge, RemoteProtocolError, TransactionError
from ..ns import SOAP11, SOAP12, WSA, WSSE, qn

__all__ = [
    "SoapFault",
    "SENDER",
    "RECEIVER",
    "VERSION_MISMATCH",
    "MUST_UNDERSTAND",
    "DATA_ENCODING_UNKNOWN",
    "WSA_FAULT_ACTION",
    "ENGINE_FAULT_NS",
    "fault_from_exception",
    "fault_element",
    "fault_envelope",
    "soap11_version_mismatch",
]

SENDER = qn(SOAP12, "Sender")
RECEIVER = qn(SOAP12, "Receiver")
VERSION_MISMATCH = qn(SOAP12, "VersionMismatch")
MUST_UNDERSTAND = qn(SOAP12, "MustUnderstand")
DATA_ENCODING_UNKNOWN = qn(SOAP12, "DataEncodingUnknown")
_TOP_CODES = (SENDER, RECEIVER, VERSION_MISMATCH, MUST_UNDERSTAND, DATA_ENCODING_UNKNOWN)

WSA_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/fault"
ENGINE_FAULT_NS = "urn:ihe-engine:soap:fault"
"""Namespace of the engine's own subcodes (engine:MessageTooLarge, engine:XMLSecurityError, ...)."""

_GENERIC_REASON = "The server could not process the request because of an internal error."
_WELL_KNOWN_PREFIXES = {SOAP12: "soap", WSA: "wsa", WSSE: "wsse", ENGINE_FAULT_NS: "engine"}


class SoapFault(Exception):
    """A SOAP 1.2 fault to send back: code, subcode chain, reason, detail and extra header blocks.

    ``code`` and ``subcodes`` are Clark-notation QNames (``{ns}local``). ``header_blocks`` carries what the fault
    needs in the envelope header (soap:NotUnderstood, soap:Upgrade).
    """

    def __init__(self, code: str, reason: str, *, subcodes: Sequence[str] = (),
                 detail: Iterable[etree._Element] = (), header_blocks: Iterable[etree._Element] = (),
                 http_status: int | None = None) -> None:
        if code not in _TOP_CODES:
            raise ValueError(f"{code!r} is not a SOAP 1.2 fault code")
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.subcodes = tuple(subcodes)
        self.detail = tuple(detail)
        self.header_blocks = tuple(header_blocks)
        self._http_status = http_status

    @property
    def http_status(self) -> int:
        """SOAP 1.2 HTTP binding: 400 for Sender faults, 500 for every other code (unless overridden)."""
        if self._http_status is not None:
            return self._http_status
        return 400 if self.code == SENDER else 500

    @property
    def is_sender(self) -> bool:
        return self.code == SENDER

    def __repr__(self) -> str:
        return f"SoapFault({self.code!r}, {self.reason!r}, subcodes={self.subcodes!r})"


def fault_from_exception(exc: BaseException) -> SoapFault:
    """The one mapping from an exception to a fault: the peer's fault is Sender, ours is Receiver.

    Peer errors (RemoteProtocolError and its XMLSecurityError/MessageTooLarge children) carry a message written
    for the peer. Business refusals (TransactionError) keep their message. Anything else gets a generic reason,
    so no stack detail, path or SQL ever reaches the wire.
    """
    if isinstance(exc, SoapFault):
        return exc
    if isinstance(exc, RemoteProtocolError):
        status = 413 if isinstance(exc, MessageTooLarge) else None
        return SoapFault(SENDER, str(exc), subcodes=(_engine_subcode(exc),), http_status=status)
    if isinstance(exc, TransactionError):
        return SoapFault(RECEIVER, str(exc), subcodes=(_engine_subcode(exc),))
    return SoapFault(RECEIVER, _GENERIC_REASON)


def _engine_subcode(exc: EngineError) -> str:
    local = exc.code if _is_ncname(exc.code) else type(exc).__name__
    return qn(ENGINE_FAULT_NS, local)


def _is_ncname(text: str) -> bool:
    return bool(text) and (text[0].isalpha() or text[0] == "_") and all(
        ch.isalnum() or ch in "_-." for ch in text)


def fault_element(fault: SoapFault) -> etree._Element:
    """Build the soap:Fault body element (Code/Value, Subcode chain, Reason/Text xml:lang="en", Detail)."""
    prefixes = _prefixes_for((fault.code, *fault.subcodes))
    element = etree.Element(qn(SOAP12, "Fault"), nsmap={p: ns for ns, p in prefixes.items()})
    parent = etree.SubElement(element, qn(SOAP12, "Code"))
    etree.SubElement(parent, qn(SOAP12, "Value")).text = _prefixed(fault.code, prefixes)
    for subcode in fault.subcodes:
        parent = etree.SubElement(parent, qn(SOAP12, "Subcode"))
        etree.SubElement(parent, qn(SOAP12, "Value")).text = _prefixed(subcode, prefixes)
    reason = etree.SubElement(element, qn(SOAP12, "Reason"))
    text = etree.SubElement(reason, qn(SOAP12, "Text"))
    text.set(_XML_LANG, "en")
    text.text = fault.reason
    if fault.detail:
        etree.SubElement(element, qn(SOAP12, "Detail")).extend(fault.detail)
    return element


_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _prefixes_for(qnames: Iterable[str]) -> dict[str, str]:
    """Namespace -> prefix for every QName value, declared on the Fault so the text values resolve."""
    prefixes = {SOAP12: "soap"}
    for clark in qnames:
        namespace = clark[1:].split("}", 1)[0]
        if namespace not in prefixes:
            prefixes[namespace] = _WELL_KNOWN_PREFIXES.get(namespace) or f"sc{len(prefixes)}"
    return prefixes


def _prefixed(clark: str, prefixes: dict[str, str]) -> str:
    namespace, local = clark[1:].split("}", 1)
    return f"{prefixes[namespace]}:{local}"


def fault_envelope(fault: SoapFault, *, relates_to: str | None = None, message_id: str | None = None) -> bytes:
    """Serialize a complete SOAP 1.2 fault envelope, with the WS-A fault action (and RelatesTo if known)."""
    from .addressing import reply_headers  # addressing builds its faults with this module
    from .envelope import build_envelope

    headers = list(reply_headers(WSA_FAULT_ACTION, relates_to=relates_to, message_id=message_id))
    headers.extend(fault.header_blocks)
    return build_envelope(fault_element(fault), headers)


def soap11_version_mismatch(reason: str) -> bytes:
    """The fault a SOAP 1.1 sender can read (SOAP 1.2 part 2, appendix A): 1.1 envelope with soap12:Upgrade."""
    envelope = etree.Element(qn(SOAP11, "Envelope"), nsmap={"s11": SOAP11, "soap": SOAP12})
    header = etree.SubElement(envelope, qn(SOAP11, "Header"))
    upgrade = etree.SubElement(header, qn(SOAP12, "Upgrade"))
    supported = etree.SubElement(upgrade, qn(SOAP12, "SupportedEnvelope"))
    supported.set("qname", "soap:Envelope")
    body = etree.SubElement(envelope, qn(SOAP11, "Body"))
    fault = etree.SubElement(body, qn(SOAP11, "Fault"))
    etree.SubElement(fault, "faultcode").text = "s11:VersionMismatch"
    etree.SubElement(fault, "faultstring").text = reason
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
