"""An HTTP request that bounds and spools its body, and the site that uses it.

twisted.web buffers request bodies without limit (memory below 100 KB, a temporary file above) and only hands
the request to a resource once the whole body has arrived. :class:`BoundedRequest` refuses a declared
Content-Length above ``max_body`` before reading a byte of it, and aborts a chunked body the moment it passes
the limit, answering 413 in both cases. Bodies past a small threshold go to a temporary file in ``spool_dir``.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from twisted.web import server

__all__ = ["BoundedRequest", "BoundedSite", "DEFAULT_MAX_BODY", "MEMORY_THRESHOLD"]

DEFAULT_MAX_BODY = 1024 * 1024 * 1024
MEMORY_THRESHOLD = 64 * 1024
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
"""After refusing a body, keep reading (and dropping) this long / this much so the client sees the 413."""


class _Discard:
    """A content sink for a refused body: remembers nothing."""

    def write(self, data: bytes) -> None:
        pass

    def tell(self) -> int:
        return 0

    def seek(self, *_args: Any) -> int:
        return 0

    def read(self, *_args: Any) -> bytes:
        return b""

    def close(self) -> None:
        pass


class BoundedRequest(server.Request):
    """A request whose body is bounded by the site's ``max_body`` and spooled to its ``spool_dir``."""

    max_body: int = DEFAULT_MAX_BODY
    body_refused: bool = False

    def gotLength(self, length: int | None) -> None:
        site = getattr(self.channel, "site", None)
        self.max_body = getattr(site, "max_body", DEFAULT_MAX_BODY)
        self._received = 0
        self._discarded = 0
        self._linger_call = None
        if length is not None and length > self.max_body:
            self.content = _Discard()
            self._refuse(f"the request body of {length} bytes is above the limit of {self.max_body}")
            return
        self.content = _content_file(length, getattr(site, "spool_dir", None))

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_refused:
            self._discard(len(data))
            return
        self._received += len(data)
        if self._received > self.max_body:
            self.content.close()
            self.content = _Discard()
            self._refuse(f"the request body passed the limit of {self.max_body} bytes")
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body_refused:
            return  # already answered 413; the connection is closing
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        self._cancel_linger()
        super().connectionLost(reason)

    def _refuse(self, reason: str) -> None:
        """Answer 413 at once (the resource never runs), stop writing, drain briefly, then drop the link."""
        self.body_refused = True
        body = _too_large_body(reason)
        head = (b"HTTP/1.1 413 Content Too Large\r\n"
                b"Content-Type: application/soap+xml; charset=utf-8\r\n"
                b"Connection: close\r\n"
                b"Content-Length: " + str(len(body)).encode("ascii") + b"\r\n\r\n")
        transport = self.channel.transport
        transport.write(head + body)
        self.channel.persistent = False
        lose_write = getattr(transport, "loseWriteConnection", None)
        if lose_write is None:
            transport.loseConnection()
            return
        lose_write()
        self._linger_call = self.channel.callLater(LINGER_SECONDS, self._drop_connection)

    def _discard(self, size: int) -> None:
        self._discarded += size
        if self._discarded > LINGER_BYTES:
            self._drop_connection()

    def _drop_connection(self) -> None:
        self._cancel_linger()
        transport = self.channel.transport
        if transport is not None:
            transport.abortConnection()

    def _cancel_linger(self) -> None:
        call = getattr(self, "_linger_call", None)
        if call is not None and call.active():
            call.cancel()
        self._linger_call = None


def _content_file(length: int | None, spool_dir: Path | None) -> Any:
    """Memory for small known bodies, a temporary file for large ones, a spooled file when length is unknown."""
    directory = str(spool_dir) if spool_dir is not None else None
    if length is not None and length <= MEMORY_THRESHOLD:
        return io.BytesIO()
    if length is not None:
        return tempfile.TemporaryFile(dir=directory)
    return tempfile.SpooledTemporaryFile(max_size=MEMORY_THRESHOLD, dir=directory)


def _too_large_body(reason: str) -> bytes:
    from ..errors import MessageTooLarge
    from ..soap.fault import fault_envelope, fault_from_exception

    return fault_envelope(fault_from_exception(MessageTooLarge(reason)))


class BoundedSite(server.Site):
    """A Site whose requests refuse bodies above ``max_body`` and spool large ones to ``spool_dir``."""

    requestFactory = BoundedRequest

    def __init__(self, resource: Any, *, max_body: int = DEFAULT_MAX_BODY, spool_dir: str | Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.max_body = max_body
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        if self.spool_dir is not None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
