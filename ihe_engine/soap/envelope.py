"""SOAP 1.2 envelopes: parse from bytes (hardened), check mustUnderstand, build a response.

Pure functions, no I/O. Parsing goes through :func:`ihe_engine.xmlsafe.parse` and walks the envelope once;
everything wrong with the envelope itself is raised as a :class:`~ihe_engine.soap.fault.SoapFault`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Iterable

from lxml import etree

from .. import xmlsafe
from ..ns import SOAP11, SOAP12, WSA, qn
from .fault import MUST_UNDERSTAND, SENDER, VERSION_MISMATCH, SoapFault

__all__ = [
    "Envelope",
    "parse_envelope",
    "envelope_from_element",
    "check_must_understand",
    "build_envelope",
    "WSA_HEADERS",
    "ROLE_NEXT",
    "ROLE_NONE",
    "ROLE_ULTIMATE_RECEIVER",
]

ROLE_NEXT = "http://www.w3.org/2003/05/soap-envelope/role/next"
ROLE_NONE = "http://www.w3.org/2003/05/soap-envelope/role/none"
ROLE_ULTIMATE_RECEIVER = "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver"
_OUR_ROLES = frozenset({ROLE_NEXT, ROLE_ULTIMATE_RECEIVER})

WSA_HEADERS = frozenset(qn(WSA, name) for name in (
    "Action", "MessageID", "To", "ReplyTo", "From", "FaultTo", "RelatesTo"))
"""Header blocks the engine always understands; endpoints add more (wsse:Security) to their own set."""

_ENVELOPE = qn(SOAP12, "Envelope")
_HEADER = qn(SOAP12, "Header")
_BODY = qn(SOAP12, "Body")
_MUST_UNDERSTAND_ATTR = qn(SOAP12, "mustUnderstand")
_ROLE_ATTR = qn(SOAP12, "role")
_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"0", "false"})


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """A parsed SOAP 1.2 envelope: the root, its Header (if any), the header blocks and the one body payload."""

    root: etree._Element
    header: etree._Element | None
    header_blocks: tuple[etree._Element, ...]
    body: etree._Element
    payload: etree._Element

    def header_block(self, clark: str) -> etree._Element | None:
        """First header block with this QName, or None."""
        return next((block for block in self.header_blocks if block.tag == clark), None)


def parse_envelope(data: bytes, *, max_bytes: int = xmlsafe.DEFAULT_MAX_BYTES) -> Envelope:
    """Parse untrusted bytes as a SOAP 1.2 envelope; a SOAP 1.1 (or any other) root is a VersionMismatch."""
    root = xmlsafe.parse(data, max_bytes=max_bytes, what="SOAP envelope")
    return envelope_from_element(root)


def envelope_from_element(root: etree._Element) -> Envelope:
    """Check the structure of an already (safely) parsed envelope."""
    if root.tag != _ENVELOPE:
        raise _version_mismatch(root.tag)
    header = body = None
    for child in root:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions between the children carry nothing
        if child.tag == _HEADER and header is None and body is None:
            header = child
        elif child.tag == _BODY and body is None:
            body = child
        else:
            raise _sender(f"unexpected element {child.tag} in the SOAP Envelope (only Header then Body)")
    if body is None:
        raise _sender("the SOAP Envelope has no Body")
    payload = _single_payload(body)
    blocks = tuple(block for block in header if isinstance(block.tag, str)) if header is not None else ()
    for block in blocks:
        if not block.tag.startswith("{"):
            raise _sender(f"SOAP header block <{block.tag}> must be namespace-qualified")
    return Envelope(root=root, header=header, header_blocks=blocks, body=body, payload=payload)


def _single_payload(body: etree._Element) -> etree._Element:
    elements = [child for child in body if isinstance(child.tag, str)]
    if len(elements) != 1:
        raise _sender(f"the SOAP Body must carry exactly one element, not {len(elements)}")
    return elements[0]


def _version_mismatch(tag: str) -> SoapFault:
    if tag == qn(SOAP11, "Envelope"):
        reason = "SOAP 1.1 envelopes are not supported; send SOAP 1.2 (application/soap+xml)"
    else:
        reason = f"the document element is {tag}, not a SOAP 1.2 Envelope"
    return SoapFault(VERSION_MISMATCH, reason)


def _sender(reason: str) -> SoapFault:
    return SoapFault(SENDER, reason)


def check_must_understand(envelope: Envelope, understood: Collection[str] = WSA_HEADERS) -> None:
    """Fault with MustUnderstand if a header block targeted at us demands understanding we lack.

    Blocks with role "none" or an unknown role are not for us (SOAP 1.2 part 1, 5.2.3). The fault names every
    offending block in soap:NotUnderstood header blocks, as the specification asks.
    """
    not_understood = [block for block in envelope.header_blocks
                      if block.tag not in understood and _must_understand(block) and _targets_us(block)]
    if not_understood:
        names = ", ".join(block.tag for block in not_understood)
        raise SoapFault(MUST_UNDERSTAND, f"header blocks marked mustUnderstand are not understood here: {names}",
                        header_blocks=[_not_understood(block.tag) for block in not_understood])


def _must_understand(block: etree._Element) -> bool:
    value = block.get(_MUST_UNDERSTAND_ATTR)
    if value is None:
        return False
    value = value.strip()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _sender(f"mustUnderstand on {block.tag} must be true, false, 1 or 0, not {value!r}")


def _targets_us(block: etree._Element) -> bool:
    role = block.get(_ROLE_ATTR)
    return role is None or role.strip() in _OUR_ROLES


def _not_understood(clark: str) -> etree._Element:
    namespace, _local = clark[1:].split("}", 1)
    element = etree.Element(qn(SOAP12, "NotUnderstood"), nsmap={"soap": SOAP12, "nu": namespace})
    element.set("qname", f"nu:{clark.split('}', 1)[1]}")
    return element


def build_envelope(body: etree._Element | None, header_blocks: Iterable[etree._Element] = (), *,
                   xml_declaration: bool = False) -> bytes:
    """Serialize a SOAP 1.2 envelope around ``body`` (moved into the envelope) with the given header blocks."""
    root = etree.Element(_ENVELOPE, nsmap={"soap": SOAP12})
    blocks = list(header_blocks)
    if blocks:
        etree.SubElement(root, _HEADER).extend(blocks)
    body_element = etree.SubElement(root, _BODY)
    if body is not None:
        body_element.append(body)
    return etree.tostring(root, encoding="utf-8", xml_declaration=xml_declaration)
