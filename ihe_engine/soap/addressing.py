"""WS-Addressing 1.0 (SOAP binding): read the request's message addressing properties, build the reply's.

The engine's endpoints are synchronous: the reply goes back on the HTTP response, so ReplyTo and FaultTo may
only be absent or anonymous. Faults follow the WS-Addressing 1.0 SOAP binding (section 6): Sender with the
wsa subcodes and a ProblemHeaderQName / ProblemAction detail.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterable

from lxml import etree

from ..ns import SOAP12, WSA, WSA_ANONYMOUS, qn
from .fault import SENDER, SoapFault

__all__ = [
    "AddressingHeaders",
    "EndpointReference",
    "read_addressing",
    "reply_headers",
    "action_not_supported",
    "new_message_id",
    "REPLY_RELATIONSHIP",
]

REPLY_RELATIONSHIP = "http://www.w3.org/2005/08/addressing/reply"

_ACTION = qn(WSA, "Action")
_MESSAGE_ID = qn(WSA, "MessageID")
_TO = qn(WSA, "To")
_REPLY_TO = qn(WSA, "ReplyTo")
_FROM = qn(WSA, "From")
_FAULT_TO = qn(WSA, "FaultTo")
_RELATES_TO = qn(WSA, "RelatesTo")
_ADDRESS = qn(WSA, "Address")
_SINGLE = (_ACTION, _MESSAGE_ID, _TO, _REPLY_TO, _FROM, _FAULT_TO)
_SYNCHRONOUS_OK = frozenset({WSA_ANONYMOUS})


@dataclass(frozen=True, kw_only=True)
class EndpointReference:
    address: str
    element: etree._Element

    @property
    def is_anonymous(self) -> bool:
        return self.address == WSA_ANONYMOUS


@dataclass(frozen=True, kw_only=True)
class AddressingHeaders:
    """The message addressing properties of one request."""

    action: str
    message_id: str | None = None
    to: str | None = None
    reply_to: EndpointReference | None = None
    from_: EndpointReference | None = None
    fault_to: EndpointReference | None = None
    relates_to: tuple[tuple[str, str], ...] = ()
    """(message id, relationship type) pairs."""


def read_addressing(header_blocks: Iterable[etree._Element], *, require_message_id: bool = False,
                    synchronous: bool = True) -> AddressingHeaders:
    """Read the WS-A headers; fault if Action is missing, a header repeats, or a reply address isn't anonymous."""
    found: dict[str, etree._Element] = {}
    relates: list[tuple[str, str]] = []
    for block in header_blocks:
        tag = block.tag
        if tag == _RELATES_TO:
            relates.append((_text(block), block.get("RelationshipType") or REPLY_RELATIONSHIP))
        elif tag in _SINGLE:
            if tag in found:
                raise _invalid_cardinality(tag)
            found[tag] = block
    if _ACTION not in found or not _text(found[_ACTION]):
        raise _header_required(_ACTION)
    if require_message_id and _MESSAGE_ID not in found:
        raise _header_required(_MESSAGE_ID)
    headers = AddressingHeaders(
        action=_text(found[_ACTION]),
        message_id=_optional_text(found.get(_MESSAGE_ID)),
        to=_optional_text(found.get(_TO)),
        reply_to=_epr(found.get(_REPLY_TO)),
        from_=_epr(found.get(_FROM)),
        fault_to=_epr(found.get(_FAULT_TO)),
        relates_to=tuple(relates),
    )
    if synchronous:
        _require_anonymous(headers.reply_to, _REPLY_TO)
        _require_anonymous(headers.fault_to, _FAULT_TO)
    return headers


def _text(element: etree._Element) -> str:
    return (element.text or "").strip()


def _optional_text(element: etree._Element | None) -> str | None:
    return None if element is None else _text(element)


def _epr(element: etree._Element | None) -> EndpointReference | None:
    if element is None:
        return None
    address = element.find(_ADDRESS)
    if address is None or not _text(address):
        raise SoapFault(SENDER, f"{element.tag} has no wsa:Address",
                        subcodes=(qn(WSA, "InvalidAddressingHeader"), qn(WSA, "MissingAddressInEPR")),
                        detail=[_problem_header(element.tag)])
    return EndpointReference(address=_text(address), element=element)


def _require_anonymous(epr: EndpointReference | None, tag: str) -> None:
    if epr is not None and epr.address not in _SYNCHRONOUS_OK:
        raise SoapFault(
            SENDER,
            f"{tag} is {epr.address}; this synchronous endpoint only answers on the same connection "
            f"(use {WSA_ANONYMOUS})",
            subcodes=(qn(WSA, "InvalidAddressingHeader"), qn(WSA, "OnlyAnonymousAddressSupported")),
            detail=[_problem_header(tag)],
        )


def _header_required(tag: str) -> SoapFault:
    local = tag.split("}", 1)[1]
    return SoapFault(SENDER, f"the request has no wsa:{local} header, which WS-Addressing requires here",
                     subcodes=(qn(WSA, "MessageAddressingHeaderRequired"),), detail=[_problem_header(tag)])


def _invalid_cardinality(tag: str) -> SoapFault:
    local = tag.split("}", 1)[1]
    return SoapFault(SENDER, f"the wsa:{local} header appears more than once",
                     subcodes=(qn(WSA, "InvalidAddressingHeader"), qn(WSA, "InvalidCardinality")),
                     detail=[_problem_header(tag)])


def _problem_header(tag: str) -> etree._Element:
    element = etree.Element(qn(WSA, "ProblemHeaderQName"), nsmap={"wsa": WSA})
    namespace, local = tag[1:].split("}", 1)
    element.text = f"wsa:{local}" if namespace == WSA else local
    return element


def action_not_supported(action: str) -> SoapFault:
    """The fault for a wsa:Action no operation of this endpoint serves."""
    problem = etree.Element(qn(WSA, "ProblemAction"), nsmap={"wsa": WSA})
    etree.SubElement(problem, _ACTION).text = action
    return SoapFault(SENDER, f"this endpoint does not support the action {action}",
                     subcodes=(qn(WSA, "ActionNotSupported"),), detail=[problem])


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def reply_headers(action: str, *, relates_to: str | None, message_id: str | None = None) -> list[etree._Element]:
    """The reply's WS-A header blocks: Action (mustUnderstand), a new MessageID, RelatesTo the request's id."""
    action_element = etree.Element(_ACTION, nsmap={"wsa": WSA, "soap": SOAP12})
    action_element.set(qn(SOAP12, "mustUnderstand"), "true")
    action_element.text = action
    message = etree.Element(_MESSAGE_ID, nsmap={"wsa": WSA})
    message.text = message_id or new_message_id()
    blocks = [action_element, message]
    if relates_to:
        relation = etree.Element(_RELATES_TO, nsmap={"wsa": WSA})
        relation.text = relates_to
        blocks.append(relation)
    return blocks

