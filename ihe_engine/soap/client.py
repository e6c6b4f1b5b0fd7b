"""Sending MTOM: a zeep transport that optimizes base64 elements into XOP parts, and a direct helper.

zeep serializes ``xs:base64Binary`` inline and cannot send MTOM; on receive it parses multipart answers but
ignores the ``start`` parameter, keeps everything in memory and strips CR/LF from the ends of binary parts
(corrupting documents that start or end with those bytes). :class:`MtomTransport` fixes both directions:
outgoing envelopes whose chosen elements (``xds:Document`` by default) carry base64 go out as MTOM, and
multipart answers are parsed by :mod:`ihe_engine.soap.mtom` and handed to zeep with the XOP content inlined.

:func:`post_mtom` sends a ready envelope plus attachments (bytes or file paths, streamed) and returns the answer
with its attachments spooled to disk, for callers that do not need zeep.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import requests
from lxml import etree
from zeep.transports import Transport

from .. import xmlsafe
from ..errors import RemoteProtocolError
from ..ns import SOAP12, WSA, WSA_ANONYMOUS, XDS, qn
from .addressing import new_message_id
from .envelope import Envelope, envelope_from_element
from .mtom import CHUNK_SIZE, XOP_INCLUDE, Attachment, OutgoingAttachment, binary_content, encode_mtom, \
    optimize_inline, parse_content_type, parse_mtom, resolve_xop

__all__ = ["MtomTransport", "MtomResponse", "post_mtom", "read_response", "request_envelope",
           "DEFAULT_OPTIMIZED_TAGS"]

DEFAULT_OPTIMIZED_TAGS = (qn(XDS, "Document"),)
_FAULT = qn(SOAP12, "Fault")


def request_envelope(payload: etree._Element, action: str, *, to: str | None = None,
                     message_id: str | None = None) -> etree._Element:
    """A SOAP 1.2 request envelope with the WS-A headers IHE asks for: Action (mustUnderstand), MessageID,
    ReplyTo anonymous and To."""
    root = etree.Element(qn(SOAP12, "Envelope"), nsmap={"soap": SOAP12, "wsa": WSA})
    header = etree.SubElement(root, qn(SOAP12, "Header"))
    action_element = etree.SubElement(header, qn(WSA, "Action"))
    action_element.set(qn(SOAP12, "mustUnderstand"), "true")
    action_element.text = action
    etree.SubElement(header, qn(WSA, "MessageID")).text = message_id or new_message_id()
    reply_to = etree.SubElement(header, qn(WSA, "ReplyTo"))
    etree.SubElement(reply_to, qn(WSA, "Address")).text = WSA_ANONYMOUS
    if to:
        etree.SubElement(header, qn(WSA, "To")).text = to
    etree.SubElement(root, qn(SOAP12, "Body")).append(payload)
    return root


@dataclass(frozen=True, kw_only=True)
class MtomResponse:
    """An answer: HTTP status, the parsed envelope, and attachments (spooled past a threshold)."""

    status: int
    content_type: str
    envelope: Envelope
    attachments: Mapping[str, Attachment]

    @property
    def is_fault(self) -> bool:
        return self.envelope.payload.tag == _FAULT

    def binary(self, element: etree._Element) -> Attachment:
        return binary_content(element, self.attachments)

    def dispose(self) -> None:
        for attachment in self.attachments.values():
            attachment.dispose()


def post_mtom(url: str, envelope: bytes | etree._Element, attachments: Mapping[str, bytes | Path], action: str,
              *, session: requests.Session | None = None, timeout: float = 300.0,
              spool_dir: str | Path | None = None, content_types: Mapping[str, str] | None = None,
              max_xml_bytes: int = xmlsafe.DEFAULT_MAX_BYTES) -> MtomResponse:
    """POST an MTOM request (``envelope`` already holds the xop:Include references to ``attachments``).

    The body is streamed with an exact Content-Length; the answer is read 64 KB at a time.
    """
    root_xml = envelope if isinstance(envelope, bytes) else etree.tostring(envelope, encoding="utf-8")
    types = content_types or {}
    outgoing = [OutgoingAttachment(content_id=cid, content=content,
                                   content_type=types.get(cid, "application/octet-stream"))
                for cid, content in attachments.items()]
    body = encode_mtom(root_xml, outgoing, action=action)
    http = session or requests.Session()
    response = http.post(url, data=body, headers={"Content-Type": body.content_type}, timeout=timeout,
                         stream=True)
    try:
        return read_response(response, spool_dir=spool_dir, max_xml_bytes=max_xml_bytes)
    finally:
        response.close()


def read_response(response: requests.Response, *, spool_dir: str | Path | None = None,
                  max_xml_bytes: int = xmlsafe.DEFAULT_MAX_BYTES) -> MtomResponse:
    """Parse a (streamed) requests response holding simple SOAP or MTOM."""
    content_type = response.headers.get("Content-Type", "")
    ctype = parse_content_type(content_type)
    if ctype.media_type != "multipart/related":
        root = xmlsafe.parse(response.content, max_bytes=max_xml_bytes, what="SOAP response")
        return MtomResponse(status=response.status_code, content_type=content_type,
                            envelope=envelope_from_element(root), attachments={})
    message = parse_mtom(response.iter_content(CHUNK_SIZE), ctype, spool_dir=spool_dir)
    try:
        if message.root.size > max_xml_bytes:
            raise RemoteProtocolError(f"the SOAP response part is {message.root.size} bytes, above the limit")
        root = xmlsafe.parse(message.root.read(), max_bytes=max_xml_bytes, what="SOAP response")
        resolve_xop(root, message.attachments)
    except BaseException:
        message.dispose()
        raise
    message.root.dispose()
    return MtomResponse(status=response.status_code, content_type=content_type,
                        envelope=envelope_from_element(root), attachments=message.attachments)


class MtomTransport(Transport):
    """A zeep transport that sends MTOM and reads MTOM answers correctly.

    Elements whose tag is in ``optimized_tags`` and whose content is base64 are moved into binary parts;
    envelopes without such elements go out as plain SOAP. Multipart answers come back to zeep as a plain
    envelope with the XOP content inlined as base64, which is what zeep's deserializer expects.
    """

    def __init__(self, *args: Any, optimized_tags: Iterable[str] = DEFAULT_OPTIMIZED_TAGS,
                 spool_dir: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.optimized_tags = tuple(optimized_tags)
        self.spool_dir = spool_dir

    def post_xml(self, address: str, envelope: etree._Element, headers: dict[str, str]) -> requests.Response:
        attachments = optimize_inline(envelope, self.optimized_tags)
        if not attachments:
            response = super().post_xml(address, envelope, headers)
        else:
            ctype = parse_content_type(headers.get("Content-Type", "application/soap+xml"))
            body = encode_mtom(etree.tostring(envelope, encoding="utf-8"), attachments, action=ctype.get("action"))
            headers = {**headers, "Content-Type": body.content_type}
            response = self.session.post(address, data=body, headers=headers, timeout=self.operation_timeout)
        return self._inline_mtom(response)

    def _inline_mtom(self, response: requests.Response) -> requests.Response:
        ctype = parse_content_type(response.headers.get("Content-Type", ""))
        if ctype.media_type != "multipart/related":
            return response
        message = parse_mtom(_chunks(response.content), ctype, spool_dir=self.spool_dir)
        try:
            root = xmlsafe.parse(message.root.read(), what="SOAP response")
            resolve_xop(root, message.attachments)
            for include in list(root.iter(XOP_INCLUDE)):
                parent = include.getparent()
                content = binary_content(parent, message.attachments).read()
                parent.remove(include)
                parent.text = base64.b64encode(content).decode("ascii")
        finally:
            message.dispose()
        response._content = etree.tostring(root, encoding="utf-8")
        response.headers["Content-Type"] = "application/soap+xml; charset=utf-8"
        return response


def _chunks(data: bytes) -> Iterable[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), CHUNK_SIZE):
        yield bytes(view[start:start + CHUNK_SIZE])
