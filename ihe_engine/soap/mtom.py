"""MTOM/XOP: multipart/related parsing and encoding, streaming, attachments spooled to disk.

Three sans-I/O pieces:

* :class:`MultipartParser` -- ``feed(chunk)`` / ``close()``; parts above a threshold go to temporary files, so a
  1 GB attachment costs a file, not memory. Boundaries split across chunks are handled by keeping only the
  last ``len(delimiter) - 1`` bytes between feeds.
* :func:`resolve_xop` / :func:`binary_content` -- find ``xop:Include href="cid:..."`` and hand out
  :class:`Attachment` objects; inline base64 (non-optimized) content is presented the same way, so handlers
  see one API and never a giant base64 string in the tree.
* :func:`encode_mtom` -- an :class:`MtomBody` whose :meth:`~MtomBody.chunks` streams the parts (files are read
  from disk in chunks) and whose length is known up front.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote, unquote

from lxml import etree

from ..errors import LocalProtocolError, RemoteProtocolError
from ..ns import XOP, qn

__all__ = [
    "Attachment",
    "ContentType",
    "MtomBody",
    "MtomMessage",
    "MultipartParser",
    "OutgoingAttachment",
    "XOP_INCLUDE",
    "XOP_MEDIA_TYPE",
    "binary_content",
    "encode_mtom",
    "new_content_id",
    "optimize_inline",
    "parse_content_type",
    "parse_mtom",
    "resolve_xop",
    "xop_include",
    "sweep_spool",
    "CHUNK_SIZE",
    "DEFAULT_MAX_MEMORY",
    "DEFAULT_MAX_PARTS",
]

CHUNK_SIZE = 64 * 1024
DEFAULT_MAX_MEMORY = 1024 * 1024
"""Bytes of part content and part headers one message may hold in memory; further parts go to disk."""
DEFAULT_MAX_PARTS = 1000
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
_SPOOL_PREFIX = "mtom-"
XOP_INCLUDE = qn(XOP, "Include")
XOP_MEDIA_TYPE = "application/xop+xml"
_MAX_BOUNDARY = 70
_SUPPORTED_ENCODINGS = frozenset({"binary", "8bit", "7bit", "base64"})


# --------------------------------------------------------------------------- Content-Type


@dataclass(frozen=True, kw_only=True)
class ContentType:
    """A parsed media type: lower-cased type/subtype and lower-cased parameter names."""

    media_type: str
    params: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name.lower(), default)


def parse_content_type(value: str | bytes) -> ContentType:
    """Parse ``type/subtype; name=value; name="quoted; value"`` tolerantly (RFC 2045 / RFC 7231 syntax).

    Quoted values may contain ``;`` and backslash escapes; unquoted values end at ``;``. A parameter without
    ``=`` is ignored rather than refused, as real clients send such things.
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    media_type, _, rest = text.partition(";")
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        name, position = _read_until(rest, position, "=;")
        if position < len(rest) and rest[position] == "=":
            param_value, position = _read_value(rest, position + 1)
            if name.strip():
                params.setdefault(name.strip().lower(), param_value)
        position += 1  # skip the ';'
    return ContentType(media_type=media_type.strip().lower(), params=params)


def _read_until(text: str, position: int, stops: str) -> tuple[str, int]:
    start = position
    while position < len(text) and text[position] not in stops:
        position += 1
    return text[start:position], position


def _read_value(text: str, position: int) -> tuple[str, int]:
    while position < len(text) and text[position] in " \t":
        position += 1
    if position < len(text) and text[position] == '"':
        return _read_quoted(text, position + 1)
    raw, position = _read_until(text, position, ";")
    return raw.strip(), position


def _read_quoted(text: str, position: int) -> tuple[str, int]:
    out: list[str] = []
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            out.append(text[position + 1])
            position += 2
        elif char == '"':
            _, position = _read_until(text, position + 1, ";")
            return "".join(out), position
        else:
            out.append(char)
            position += 1
    return "".join(out), position  # unterminated quote: take what there is


# --------------------------------------------------------------------------- attachments


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """Binary content received in a part or decoded from inline base64: in memory (``data``) or on disk (``path``).

    Read it with :meth:`open` (a binary file object), never assume it fits in memory. Spooled files belong to
    the request; :meth:`dispose` removes them (the endpoint does it once the response has been written).
    """

    content_id: str | None
    content_type: str
    size: int
    path: Path | None = None
    data: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def open(self) -> BinaryIO:
        if self.path is not None:
            return open(self.path, "rb")
        return io.BytesIO(self.data or b"")

    def read(self) -> bytes:
        """The whole content; only for content known to be small."""
        if self.data is not None:
            return self.data
        with self.open() as handle:
            return handle.read()

    def dispose(self) -> None:
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass  # a handler moved it into the blob store


class _Base64Decoder:
    """Streaming base64: whitespace ignored, decoded in whole quads, leftover kept for the next chunk."""

    def __init__(self) -> None:
        self._pending = b""

    def decode(self, data: bytes) -> bytes:
        text = self._pending + bytes(data).translate(None, b" \t\r\n")
        usable = len(text) - len(text) % 4
        self._pending = text[usable:]
        return _b64decode(text[:usable])

    def finish(self) -> None:
        if self._pending:
            raise RemoteProtocolError("a base64 MIME part ends with an incomplete base64 group")


def _b64decode(text: bytes) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError("a base64 MIME part carries characters that are not base64") from None


class _PartSink:
    """Collects one part's content: in memory up to a threshold, then in a temporary file."""

    def __init__(self, headers: dict[str, str], spool_dir: Path | None, threshold: int) -> None:
        self.headers = headers
        self._spool_dir = spool_dir
        self._threshold = threshold
        self._memory = bytearray()
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._size = 0
        encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
        if encoding not in _SUPPORTED_ENCODINGS:
            raise RemoteProtocolError(f"MIME part Content-Transfer-Encoding {encoding!r} is not supported "
                                      "(binary, 8bit, 7bit or base64)")
        self._decoder = _Base64Decoder() if encoding == "base64" else None

    def write(self, data: bytes | bytearray) -> None:
        if self._decoder is not None:
            data = self._decoder.decode(data)
        if not data:
            return
        self._size += len(data)
        if self._file is None and len(self._memory) + len(data) > self._threshold:
            self._spill()
        if self._file is not None:
            self._file.write(data)
        else:
            self._memory += data

    def _spill(self) -> None:
        if self._spool_dir is not None:
            self._spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=_SPOOL_PREFIX, suffix=".part", dir=self._spool_dir)
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._file.write(self._memory)
        self._memory = bytearray()

    def finish(self) -> Attachment:
        if self._decoder is not None:
            self._decoder.finish()
        if self._file is not None:
            self._file.close()
        return Attachment(
            content_id=_normalize_content_id(self.headers.get("content-id")),
            content_type=self.headers.get("content-type", "application/octet-stream").strip(),
            size=self._size, path=self._path,
            data=None if self._path is not None else bytes(self._memory),
            headers=self.headers,
        )

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def _normalize_content_id(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip() or None


# --------------------------------------------------------------------------- multipart parser

_PREAMBLE, _AFTER_BOUNDARY, _HEADERS, _BODY, _EPILOGUE = range(5)


class MultipartParser:
    """Streaming, sans-I/O multipart parser: ``feed(chunk)`` any number of times, then ``close()`` for the parts.

    Memory is bounded by the chunk size plus ``max_memory`` for the whole message: a part stays in memory up to
    ``max_part_in_memory`` and only while the message's budget lasts; any other part is spooled to a file in
    ``spool_dir``, so many small parts cannot add up to gigabytes. Part headers, which cannot be spooled, have a
    budget of the same size (and ``max_header_bytes`` per part). Any
    protocol error raises :class:`RemoteProtocolError` and removes the files spooled so far.
    """

    def __init__(self, boundary: str | bytes, spool_dir: str | Path | None = None,
                 max_part_in_memory: int = CHUNK_SIZE, *, max_parts: int = DEFAULT_MAX_PARTS,
                 max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES, max_memory: int = DEFAULT_MAX_MEMORY) -> None:
        raw = boundary.encode("latin-1") if isinstance(boundary, str) else bytes(boundary)
        if not 0 < len(raw) <= _MAX_BOUNDARY:
            raise RemoteProtocolError(f"multipart boundary must be 1 to {_MAX_BOUNDARY} characters long")
        self._delimiter = b"\r\n--" + raw
        self._spool_dir = Path(spool_dir) if spool_dir is not None else None
        self._threshold = max_part_in_memory
        self._max_parts = max_parts
        self._max_header_bytes = max_header_bytes
        self._max_memory = max_memory
        self._memory_used = 0  # content of the parts kept in memory
        self._header_bytes = 0  # headers of every part, which stay in memory with it
        # A leading CRLF lets the first boundary, which may open the body, be found like every other one.
        self._buffer = bytearray(b"\r\n")
        self._state = _PREAMBLE
        self._sink: _PartSink | None = None
        self._parts: list[Attachment] = []
        self._failed = False

    @property
    def parts(self) -> tuple[Attachment, ...]:
        """The parts completed so far."""
        return tuple(self._parts)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed:
            raise LocalProtocolError("feed() after the multipart parser failed")
        if self._state == _EPILOGUE:
            return  # the epilogue carries nothing
        self._buffer += data
        try:
            while self._step():
                pass
        except BaseException:
            self._fail()
            raise

    def close(self) -> tuple[Attachment, ...]:
        """End of input: the parts, or RemoteProtocolError if the closing boundary never came."""
        if self._failed:
            raise LocalProtocolError("close() after the multipart parser failed")
        if self._state != _EPILOGUE:
            self._fail()
            raise RemoteProtocolError("the multipart body is truncated: it ends before the closing boundary")
        return tuple(self._parts)

    def abort(self) -> None:
        """Give up (the client went away): remove every spooled file."""
        self._fail()

    def _fail(self) -> None:
        self._failed = True
        if self._sink is not None:
            self._sink.discard()
            self._sink = None
        for part in self._parts:
            part.dispose()
        self._parts.clear()
        self._buffer = bytearray()

    def _step(self) -> bool:
        if self._state == _BODY:
            return self._step_body()
        if self._state == _PREAMBLE:
            return self._step_preamble()
        if self._state == _AFTER_BOUNDARY:
            return self._step_after_boundary()
        if self._state == _HEADERS:
            return self._step_headers()
        self._buffer.clear()  # epilogue
        return False

    def _step_preamble(self) -> bool:
        index = self._buffer.find(self._delimiter)
        if index < 0:
            keep = len(self._delimiter) - 1
            if len(self._buffer) > keep:
                del self._buffer[:len(self._buffer) - keep]
            return False
        del self._buffer[:index + len(self._delimiter)]
        self._state = _AFTER_BOUNDARY
        return True

    def _step_after_boundary(self) -> bool:
        if len(self._buffer) < 2:
            return False
        if self._buffer.startswith(b"--"):
            self._state = _EPILOGUE
            self._buffer.clear()
            return False
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 1024:
                raise RemoteProtocolError("a multipart boundary line is not followed by CRLF")
            return False
        if self._buffer[:end].strip(b" \t"):
            raise RemoteProtocolError("a multipart boundary line carries unexpected characters")
        del self._buffer[:end + 2]
        self._state = _HEADERS
        return True

    def _step_headers(self) -> bool:
        if self._buffer.startswith(b"\r\n"):
            header_block, consumed = b"", 2
        else:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self._max_header_bytes:
                    raise RemoteProtocolError(f"MIME part headers exceed {self._max_header_bytes} bytes")
                return False
            header_block, consumed = bytes(self._buffer[:end]), end + 4
        if len(self._parts) >= self._max_parts:
            raise RemoteProtocolError(f"the multipart body has more than {self._max_parts} parts")
        self._charge_headers(len(header_block))
        del self._buffer[:consumed]
        self._sink = _PartSink(_parse_part_headers(header_block), self._spool_dir, self._part_threshold())
        self._state = _BODY
        return True

    def _charge_headers(self, size: int) -> None:
        """Part headers cannot be spooled: their total has a budget of its own, the size of the content one."""
        self._header_bytes += size
        if self._header_bytes > self._max_memory:
            raise RemoteProtocolError(f"the MIME part headers total more than {self._max_memory} bytes")

    def _part_threshold(self) -> int:
        """How much of the next part may stay in memory: what is left of the budget, at most one part's worth."""
        return max(0, min(self._threshold, self._max_memory - self._memory_used))

    def _step_body(self) -> bool:
        assert self._sink is not None
        index = self._buffer.find(self._delimiter)
        if index < 0:
            safe = len(self._buffer) - (len(self._delimiter) - 1)
            if safe > 0:
                self._sink.write(self._buffer[:safe])
                del self._buffer[:safe]
            return False
        if index:
            self._sink.write(self._buffer[:index])
        del self._buffer[:index + len(self._delimiter)]
        part = self._sink.finish()
        if part.data is not None:
            self._memory_used += part.size
        self._parts.append(part)
        self._sink = None
        self._state = _AFTER_BOUNDARY
        return True


def _parse_part_headers(block: bytes) -> dict[str, str]:
    """Header lines (with folded continuations) into a lower-cased name -> value dict."""
    headers: dict[str, str] = {}
    last: str | None = None
    for line in block.decode("latin-1").split("\r\n"):
        if line[:1] in (" ", "\t") and last is not None:
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise RemoteProtocolError(f"malformed MIME part header line {line[:80]!r}")
        last = name.strip().lower()
        headers[last] = value.strip()
    return headers


# --------------------------------------------------------------------------- MTOM message


@dataclass(frozen=True, kw_only=True)
class MtomMessage:
    """A parsed MTOM package: the root part (the SOAP envelope) and the other parts by Content-ID."""

    root: Attachment
    attachments: Mapping[str, Attachment]
    content_type: ContentType

    def dispose(self) -> None:
        self.root.dispose()
        for attachment in self.attachments.values():
            attachment.dispose()


def parse_mtom(chunks: Iterable[bytes], content_type: str | ContentType, *, spool_dir: str | Path | None = None,
               max_part_in_memory: int = CHUNK_SIZE, max_memory: int = DEFAULT_MAX_MEMORY,
               max_parts: int = DEFAULT_MAX_PARTS) -> MtomMessage:
    """Parse a multipart/related body given as chunks; the root is the ``start`` part (or the first)."""
    ctype = content_type if isinstance(content_type, ContentType) else parse_content_type(content_type)
    if ctype.media_type != "multipart/related":
        raise RemoteProtocolError(f"expected multipart/related, got {ctype.media_type}")
    boundary = ctype.get("boundary")
    if not boundary:
        raise RemoteProtocolError("the multipart/related Content-Type has no boundary parameter")
    parser = MultipartParser(boundary, spool_dir, max_part_in_memory, max_parts=max_parts, max_memory=max_memory)
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except BaseException:
        parser.abort()
        raise
    return _assemble(parser.close(), ctype)


def _assemble(parts: tuple[Attachment, ...], ctype: ContentType) -> MtomMessage:
    if not parts:
        _dispose_all(parts)
        raise RemoteProtocolError("the multipart body has no parts")
    start = _normalize_content_id(ctype.get("start"))
    root = parts[0] if start is None else next((p for p in parts if p.content_id == start), None)
    if root is None:
        _dispose_all(parts)
        raise RemoteProtocolError(f"no MIME part has the start Content-ID <{start}>")
    attachments: dict[str, Attachment] = {}
    for part in parts:
        if part is root:
            continue
        if part.content_id is None or part.content_id in attachments:
            _dispose_all(parts)
            raise RemoteProtocolError("every MTOM attachment part needs its own Content-ID")
        attachments[part.content_id] = part
    return MtomMessage(root=root, attachments=attachments, content_type=ctype)


def _dispose_all(parts: Iterable[Attachment]) -> None:
    for part in parts:
        part.dispose()


def sweep_spool(spool_dir: str | Path, older_than: float) -> int:
    """Remove ``mtom-*`` spool files untouched for ``older_than`` seconds; returns how many went.

    A process killed mid-request leaves its spooled parts behind; nothing else would ever remove them. A live
    request's file is written to or removed well within the age used (an hour by default).
    """
    cutoff = time.time() - older_than
    removed = 0
    try:
        candidates = list(Path(spool_dir).glob(_SPOOL_PREFIX + "*"))
    except OSError:
        return 0
    for path in candidates:
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue  # removed meanwhile by its own request, or not ours to remove
    return removed


# --------------------------------------------------------------------------- XOP


def resolve_xop(root: etree._Element, attachments: Mapping[str, Attachment]) -> dict[str, Attachment]:
    """Check every xop:Include in the tree and return the attachments it references, by Content-ID.

    The tree is left as it is: handlers ask :func:`binary_content` for an element's content.
    """
    referenced: dict[str, Attachment] = {}
    for include in root.iter(XOP_INCLUDE):
        content_id = _include_content_id(include)
        attachment = attachments.get(content_id)
        if attachment is None:
            raise RemoteProtocolError(f"xop:Include refers to cid:{content_id}, which is not a part of the message")
        parent = include.getparent()
        if parent is None or len(parent) != 1 or (parent.text or "").strip():
            raise RemoteProtocolError("an xop:Include must be the only content of its element")
        referenced[content_id] = attachment
    return referenced


def _include_content_id(include: etree._Element) -> str:
    href = (include.get("href") or "").strip()
    if not href.lower().startswith("cid:"):
        raise RemoteProtocolError(f"xop:Include href must be a cid: URI, not {href[:80]!r}")
    return unquote(href[4:])


def binary_content(element: etree._Element, attachments: Mapping[str, Attachment], *,
                   content_type: str = "application/octet-stream") -> Attachment:
    """The binary content of an element: its xop:Include attachment, or its inline base64 text decoded."""
    include = element.find(XOP_INCLUDE)
    if include is not None:
        content_id = _include_content_id(include)
        attachment = attachments.get(content_id)
        if attachment is None:
            raise RemoteProtocolError(f"xop:Include refers to cid:{content_id}, which is not a part of the message")
        return attachment
    text = (element.text or "").encode("ascii", "replace")
    data = _b64decode(text.translate(None, b" \t\r\n"))
    return Attachment(content_id=None, content_type=content_type, size=len(data), data=data)


def xop_include(element: etree._Element, content_id: str) -> etree._Element:
    """Make ``element``'s content a reference to the part ``content_id``; returns the xop:Include."""
    for child in list(element):
        element.remove(child)
    element.text = None
    include = etree.SubElement(element, XOP_INCLUDE, nsmap={"xop": XOP})
    include.set("href", "cid:" + quote(content_id, safe="@.-_~!$&'()*+,;=:"))
    return include


def optimize_inline(root: etree._Element, tags: Iterable[str]) -> list["OutgoingAttachment"]:
    """Move the inline base64 content of elements with these tags into attachments (the sender's XOP step)."""
    wanted = frozenset(tags)
    outgoing: list[OutgoingAttachment] = []
    for element in list(root.iter(*wanted)) if wanted else []:
        if element.find(XOP_INCLUDE) is not None:
            continue
        data = base64.b64decode((element.text or "").encode("ascii"), validate=False)
        content_id = new_content_id()
        xop_include(element, content_id)
        outgoing.append(OutgoingAttachment(content_id=content_id, content=data))
    return outgoing


def new_content_id() -> str:
    return f"{uuid.uuid4().hex}@ihe-engine"


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True, kw_only=True)
class OutgoingAttachment:
    """An attachment to send: bytes, or a file path streamed from disk."""

    content_id: str
    content: bytes | Path
    content_type: str = "application/octet-stream"

    @property
    def size(self) -> int:
        if isinstance(self.content, (bytes, bytearray, memoryview)):
            return len(self.content)
        return Path(self.content).stat().st_size


@dataclass(frozen=True, kw_only=True)
class MtomBody:
    """An MTOM body ready to stream: Content-Type, exact length, and the chunks.

    Iterable and sized, so ``requests``/``urllib3`` send it with a Content-Length; the twisted endpoint pulls
    :meth:`chunks` from a producer.
    """

    content_type: str
    boundary: str
    root_id: str
    _segments: tuple[bytes | tuple[Path, int], ...]
    length: int

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        for segment in self._segments:
            if isinstance(segment, tuple):
                yield from _file_chunks(*segment, chunk_size)
            elif len(segment) <= chunk_size:
                yield segment
            else:
                view = memoryview(segment)
                for start in range(0, len(segment), chunk_size):
                    yield bytes(view[start:start + chunk_size])

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks()

    def __len__(self) -> int:
        return self.length


def _file_chunks(path: Path, size: int, chunk_size: int) -> Iterator[bytes]:
    remaining = size
    with open(path, "rb") as handle:
        while remaining:
            chunk = handle.read(min(chunk_size, remaining))
            if not chunk:
                raise LocalProtocolError(f"{path} shrank while it was being sent")
            remaining -= len(chunk)
            yield chunk


def encode_mtom(root_xml: bytes, attachments: Sequence[OutgoingAttachment] = (), *,
                root_type: str = "application/soap+xml", action: str | None = None,
                boundary: str | None = None, root_id: str | None = None) -> MtomBody:
    """Lay out an MTOM package: the XOP root (the envelope, already holding xop:Include) then each part."""
    boundary = boundary or f"MIMEBoundary_{uuid.uuid4().hex}"
    root_id = root_id or f"root.{uuid.uuid4().hex}@ihe-engine"
    dash = b"--" + boundary.encode("ascii")
    root_params = f'type="{root_type}"' + (f'; action="{action}"' if action else "")
    segments: list[bytes | tuple[Path, int]] = [
        dash + b"\r\n" + _part_head(root_id, f"{XOP_MEDIA_TYPE}; charset=UTF-8; {root_params}"),
        root_xml,
    ]
    for attachment in attachments:
        segments.append(b"\r\n" + dash + b"\r\n" + _part_head(attachment.content_id, attachment.content_type))
        if isinstance(attachment.content, (bytes, bytearray, memoryview)):
            segments.append(bytes(attachment.content))
        else:
            segments.append((Path(attachment.content), attachment.size))
    segments.append(b"\r\n" + dash + b"--\r\n")
    length = sum(item[1] if isinstance(item, tuple) else len(item) for item in segments)
    content_type = (f'multipart/related; type="{XOP_MEDIA_TYPE}"; start="<{root_id}>"; '
                    f'start-info="{root_type}"; boundary="{boundary}"')
    return MtomBody(content_type=content_type, boundary=boundary, root_id=root_id,
                    _segments=tuple(segments), length=length)


def _part_head(content_id: str, content_type: str) -> bytes:
    return (f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: <{content_id}>\r\n\r\n").encode("latin-1")
