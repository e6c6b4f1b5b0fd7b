"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol), sans-I/O.

A frame is ``0x0B payload 0x1C 0x0D``. :class:`MLLPFramer` takes bytes as they arrive, in pieces of any size, and
returns the complete payloads; it never touches a socket, so the Twisted protocols, the blocking client and the
tests all share it.

Policies, chosen to keep a listener alive whatever a peer sends:

* Bytes outside a frame (before a start byte) are discarded and counted in :attr:`MLLPFramer.garbage_bytes`.
* A start byte inside an unfinished frame means the sender gave up on that frame and began again (MLLP forbids
  0x0B in a payload): the unfinished part is discarded (counted as garbage, and in :attr:`MLLPFramer.resyncs`)
  and the new frame starts at that byte.
* A frame ends only at ``0x1C 0x0D``; a lone 0x1C stays in the payload.
* A payload longer than ``max_message_size`` raises :class:`FrameTooLarge` as soon as that is certain, so the
  buffer never holds more than the limit plus one read. After an error the framer refuses further data.

Scanning uses ``bytearray.find``/``rfind`` over the bytes not yet examined, so each byte is looked at a bounded
number of times, in C.
"""

from __future__ import annotations

from ..errors import LocalProtocolError, MessageTooLarge, RemoteProtocolError

__all__ = ["START_BLOCK", "END_BLOCK", "MLLPFramer", "FramingError", "FrameTooLarge", "frame"]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
_END_BYTE = b"\x1c"


class FramingError(RemoteProtocolError):
    """The peer's byte stream cannot be framed as MLLP."""

    default_code = "FramingError"


class FrameTooLarge(FramingError, MessageTooLarge):
    """A frame's payload exceeded the configured maximum message size."""

    default_code = "FrameTooLarge"


def frame(payload: bytes) -> bytes:
    """Wrap one message for the wire; a payload holding a block byte could not be framed unambiguously."""
    if START_BLOCK in payload or _END_BYTE in payload:
        raise LocalProtocolError("an MLLP payload must not contain 0x0B or 0x1C")
    return START_BLOCK + payload + END_BLOCK


class MLLPFramer:
    """Incremental MLLP de-framer: ``feed(bytes) -> [payload, ...]``."""

    def __init__(self, max_message_size: int = 16 * 1024 * 1024) -> None:
        if max_message_size < 1:
            raise LocalProtocolError("max_message_size must be positive")
        self.max_message_size = max_message_size
        self.garbage_bytes = 0
        self.resyncs = 0
        self.messages = 0
        self._buffer = bytearray()
        self._in_frame = False
        self._scanned = 0  # buffer index from which no start or end block has been looked for yet
        self._failed = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an unfinished frame (bounded by the limit plus the last read)."""
        return len(self._buffer)

    @property
    def in_frame(self) -> bool:
        """True when a frame has started and not ended: data lost if the connection closes now."""
        return self._in_frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads of the frames they complete, in order."""
        if self._failed:
            raise LocalProtocolError("the MLLP framer already failed; drop the connection")
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        position = 0
        try:
            while position < len(buffer):
                if not self._in_frame:
                    position = self._skip_to_start(position)
                    continue
                position, end = self._locate_end(position)
                if end < 0:
                    self._check_unfinished_size(position)
                    break
                self._check_size(end - position)
                messages.append(bytes(buffer[position:end]))
                position = end + len(END_BLOCK)
                self._in_frame = False
        except FramingError:
            self._failed = True
            buffer.clear()
            raise
        del buffer[:position]
        self._scanned = max(0, self._scanned - position)
        self.messages += len(messages)
        return messages

    def _skip_to_start(self, position: int) -> int:
        """Discard bytes up to the next start block; return where the payload begins."""
        start = self._buffer.find(START_BLOCK, position)
        if start < 0:
            self.garbage_bytes += len(self._buffer) - position
            return len(self._buffer)
        self.garbage_bytes += start - position
        self._in_frame = True
        self._scanned = start + 1
        return start + 1

    def _locate_end(self, payload_start: int) -> tuple[int, int]:
        """(payload start, end block index or -1), moving the start past any stray start block."""
        buffer = self._buffer
        scan_from = max(payload_start, self._scanned)
        end = buffer.find(END_BLOCK, scan_from)
        stray = buffer.rfind(START_BLOCK, scan_from, end if end >= 0 else len(buffer))
        if stray >= 0:
            self.garbage_bytes += stray + 1 - payload_start  # the abandoned payload and its start block
            self.resyncs += 1
            payload_start = stray + 1
        # without an end block, the last byte may be a 0x1C whose 0x0D has not arrived: look at it again
        self._scanned = end if end >= 0 else max(payload_start, len(buffer) - 1)
        return payload_start, end

    def _check_unfinished_size(self, payload_start: int) -> None:
        pending = len(self._buffer) - payload_start
        if pending and self._buffer[-1] == END_BLOCK[0]:
            pending -= 1
        self._check_size(pending)

    def _check_size(self, size: int) -> None:
        if size > self.max_message_size:
            raise FrameTooLarge(f"MLLP message larger than {self.max_message_size} bytes (at least {size})")
