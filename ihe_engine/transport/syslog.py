"""Syslog for ATNA, sans-I/O: RFC 5425/6587 octet-counting framing and RFC 5424 parse/format.

:class:`OctetCountingFramer` turns a byte stream (TCP or TLS, read in pieces of any size) into ``SYSLOG-MSG``
payloads; :func:`parse_rfc5424` turns one payload (a frame, or a UDP datagram, RFC 5426) into a
:class:`SyslogMessage`. Neither touches a socket.

Framing policy:

* Only octet counting (``MSG-LEN SP SYSLOG-MSG``) is accepted. Non-transparent framing (messages ended by LF) is
  refused with a :class:`FramingError`: an IHE audit message is XML, which may hold LF, so an LF-delimited
  stream cannot be split unambiguously; guessing would cut audit records in pieces. A frame that starts with
  ``<`` (what a non-transparent sender writes) gets an error saying so.
* ``MSG-LEN`` is ``NONZERO-DIGIT *DIGIT``: a leading zero, a non-digit or more digits than the limit can need
  raises :class:`FramingError` as soon as it is seen; a length above ``max_message_size`` raises
  :class:`FrameTooLarge` before its body is buffered. After an error the framer refuses further data (the
  stream has lost its framing; the connection must close).

Parsing is strict where RFC 5424 is (PRI, VERSION, TIMESTAMP shape, PRINTUSASCII header fields, SD syntax) and
reports exactly what was wrong. It works on ``bytes`` with ``split``/``find``/``translate`` (C loops), never a
per-character Python loop over the MSG, because the audit repository ingests thousands of messages a second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..errors import LocalProtocolError, MessageTooLarge, RemoteProtocolError

__all__ = [
    "FramingError",
    "FrameTooLarge",
    "OctetCountingFramer",
    "SDElement",
    "SyslogMessage",
    "parse_rfc5424",
    "format_rfc5424",
    "frame_octet_counted",
    "NILVALUE",
    "BOM",
]

NILVALUE = b"-"
BOM = b"\xef\xbb\xbf"
_DEFAULT_MAX_MESSAGE = 1024 * 1024
_NOT_PRINTUSASCII = bytes(range(0, 33)) + bytes(range(127, 256))
_SD_NAME_FORBIDDEN = b'= ]"'
_HEADER_LIMITS = (("HOSTNAME", 255), ("APP-NAME", 48), ("PROCID", 128), ("MSGID", 32))
# One compiled match per message on a ~30-byte token: FULL-DATE "T" PARTIAL-TIME TIME-OFFSET (RFC 5424 6.2.3).
_TIMESTAMP = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:(Z)|([+-])(\d{2}):(\d{2}))\Z")


class FramingError(RemoteProtocolError):
    """The peer's byte stream cannot be split into octet-counted syslog frames."""

    default_code = "FramingError"


class FrameTooLarge(FramingError, MessageTooLarge):
    """A frame announced a length above the configured maximum message size."""

    default_code = "FrameTooLarge"


# --------------------------------------------------------------------------------------------------- framing


def frame_octet_counted(message: bytes) -> bytes:
    """``MSG-LEN SP SYSLOG-MSG`` (RFC 5425 section 4.3) for one formatted message."""
    if not message:
        raise LocalProtocolError("an octet-counted syslog frame cannot be empty")
    return b"%d %b" % (len(message), message)


class OctetCountingFramer:
    """Incremental de-framer: ``feed(bytes) -> [SYSLOG-MSG, ...]``; frames may be split anywhere."""

    def __init__(self, max_message_size: int = _DEFAULT_MAX_MESSAGE) -> None:
        if max_message_size < 1:
            raise LocalProtocolError("max_message_size must be positive")
        self.max_message_size = max_message_size
        self._max_digits = len(str(max_message_size))
        self._buffer = bytearray()
        self._expected: int | None = None
        self._error: FramingError | None = None
        self.messages = 0

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished frame (non-zero at connection close means a truncated frame)."""
        return len(self._buffer)

    @property
    def error(self) -> FramingError | None:
        """The framing error met after the frames the last ``feed`` returned, if any (``feed`` raises it next)."""
        return self._error

    def unfinished(self) -> bytes:
        """The bytes not yet returned as a frame: a truncated frame at close, or what followed a framing error."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Frames completed by ``data``. Frames complete before a framing error are returned first; the error
        is then kept in :attr:`error` and raised by the next call, so no good message is lost to a bad one."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        frames: list[bytes] = []
        consumed, error = self._split(frames)
        del self._buffer[:consumed]
        self.messages += len(frames)
        if error is not None:
            self._error = error
            if not frames:
                raise error
        return frames

    def _split(self, frames: list[bytes]) -> tuple[int, FramingError | None]:
        """Append complete frames; return how many bytes they used and the framing error that stopped it."""
        buffer, position = self._buffer, 0
        try:
            while True:
                if self._expected is None:
                    space = buffer.find(b" ", position, position + self._max_digits + 1)
                    if space < 0:
                        self._check_partial_length(bytes(buffer[position:position + self._max_digits + 1]))
                        return position, None
                    self._expected = self._parse_length(bytes(buffer[position:space]))
                    position = space + 1
                end = position + self._expected
                if end > len(buffer):
                    return position, None
                frames.append(bytes(buffer[position:end]))
                position, self._expected = end, None
        except FramingError as exc:
            return position, exc

    def _check_partial_length(self, prefix: bytes) -> None:
        """Fail early on a prefix that can never become a valid MSG-LEN, so garbage is not buffered."""
        if not prefix:
            return
        if len(prefix) > self._max_digits:
            raise self._too_long_prefix(prefix)
        if not prefix.isdigit() or prefix[:1] == b"0":
            raise self._bad_prefix(prefix)

    def _parse_length(self, digits: bytes) -> int:
        if not digits or not digits.isdigit() or digits[:1] == b"0":
            raise self._bad_prefix(digits)
        length = int(digits)
        if length > self.max_message_size:
            raise FrameTooLarge(f"syslog frame of {length} octets exceeds the limit of {self.max_message_size}",
                                location="MSG-LEN")
        return length

    def _too_long_prefix(self, prefix: bytes) -> FramingError:
        if prefix.isdigit():
            return FrameTooLarge(f"MSG-LEN has more digits than a frame of at most {self.max_message_size} "
                                 f"octets needs", location="MSG-LEN")
        return self._bad_prefix(prefix)

    @staticmethod
    def _bad_prefix(prefix: bytes) -> FramingError:
        shown = prefix[:16]
        if shown[:1] == b"<":
            return FramingError("frame starts with '<': non-transparent (LF-terminated) syslog framing is not "
                                "supported, use octet counting (RFC 5425 MSG-LEN SP SYSLOG-MSG)",
                                location="MSG-LEN")
        if shown[:1] == b"0":
            return FramingError(f"MSG-LEN must not start with 0 (got {shown!r})", location="MSG-LEN")
        return FramingError(f"MSG-LEN must be decimal digits followed by a space (got {shown!r})",
                            location="MSG-LEN")


# --------------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True, kw_only=True)
class SDElement:
    """One SD-ELEMENT: its SD-ID and its parameters in order (a name may repeat, RFC 5424 6.3.3)."""

    sd_id: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.params if key == name), None)


@dataclass(frozen=True, kw_only=True)
class SyslogMessage:
    """A parsed RFC 5424 message; a header field that was NILVALUE is ``None``, MSG is bytes without BOM."""

    facility: int
    severity: int
    version: int = 1
    timestamp: datetime | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: tuple[SDElement, ...] = ()
    msg: bytes = b""

    @property
    def pri(self) -> int:
        return self.facility * 8 + self.severity

    def encode(self, *, bom: bool = False) -> bytes:
        return format_rfc5424(facility=self.facility, severity=self.severity, timestamp=self.timestamp,
                              hostname=self.hostname, app_name=self.app_name, procid=self.procid,
                              msgid=self.msgid, structured_data=self.structured_data, msg=self.msg, bom=bom)


def parse_rfc5424(data: bytes) -> SyslogMessage:
    """Parse one ``SYSLOG-MSG``; a :class:`RemoteProtocolError` names the part that is wrong."""
    parts = data.split(b" ", 6)
    if len(parts) < 7:
        raise RemoteProtocolError(_missing_field_message(len(parts)), location="HEADER")
    pri_version, timestamp, hostname, app_name, procid, msgid, rest = parts
    facility, severity, version = _parse_pri_version(pri_version)
    header_values = [_parse_header_field(value, name, limit)
                     for value, (name, limit) in zip((hostname, app_name, procid, msgid), _HEADER_LIMITS)]
    structured_data, msg = _parse_sd_and_msg(rest)
    return SyslogMessage(facility=facility, severity=severity, version=version,
                         timestamp=_parse_timestamp(timestamp), hostname=header_values[0],
                         app_name=header_values[1], procid=header_values[2], msgid=header_values[3],
                         structured_data=structured_data, msg=msg)


def _missing_field_message(found: int) -> str:
    names = ("PRI/VERSION", "TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID", "STRUCTURED-DATA")
    return (f"RFC 5424 header incomplete: {names[found]} missing (expected '<PRI>1 TIMESTAMP HOSTNAME APP-NAME "
            f"PROCID MSGID STRUCTURED-DATA [MSG]' separated by single spaces)")


def _parse_pri_version(token: bytes) -> tuple[int, int, int]:
    close = token.find(b">", 1, 5)
    if token[:1] != b"<" or close < 0:
        raise RemoteProtocolError("message must start with PRI '<0..191>'", location="PRI")
    prival = token[1:close]
    if not prival.isdigit() or (len(prival) > 1 and prival[:1] == b"0") or int(prival) > 191:
        raise RemoteProtocolError(f"PRI must be <0..191> without leading zeros, got <{_show(prival)}>",
                                  location="PRI")
    version = token[close + 1:]
    if version != b"1":
        if not version:
            raise RemoteProtocolError("VERSION missing after PRI (RFC 5424 needs '1')", location="VERSION")
        raise RemoteProtocolError(f"unsupported syslog VERSION {_show(version)!r} (only RFC 5424 version 1)",
                                  location="VERSION")
    facility, severity = divmod(int(prival), 8)
    return facility, severity, 1


def _parse_header_field(value: bytes, name: str, limit: int) -> str | None:
    if value == NILVALUE:
        return None
    if not value:
        raise RemoteProtocolError(f"{name} is empty (two spaces in a row?); use '-' for no value", location=name)
    if len(value) > limit:
        raise RemoteProtocolError(f"{name} longer than {limit} characters", location=name)
    if value.translate(None, _NOT_PRINTUSASCII) != value:
        raise RemoteProtocolError(f"{name} must be printable US-ASCII, got {_show(value)!r}", location=name)
    return value.decode("ascii")


def _parse_timestamp(token: bytes) -> datetime | None:
    if token == NILVALUE:
        return None
    match = _TIMESTAMP.match(token)
    if match is None:
        raise RemoteProtocolError(f"TIMESTAMP must be RFC 3339 'YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm)' or '-', "
                                  f"got {_show(token)!r}", location="TIMESTAMP")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_hour, off_minute = match.groups()
    try:
        zone = timezone.utc if zulu else _offset_zone(sign, int(off_hour), int(off_minute))
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        int(fraction.ljust(6, b"0")) if fraction else 0, tzinfo=zone)
    except ValueError as exc:
        raise RemoteProtocolError(f"TIMESTAMP {_show(token)!r} is not a valid date and time: {exc}",
                                  location="TIMESTAMP") from None


def _offset_zone(sign: bytes, hours: int, minutes: int) -> timezone:
    if hours > 23 or minutes > 59:
        raise ValueError("time offset out of range")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if sign == b"-" else offset)


def _parse_sd_and_msg(rest: bytes) -> tuple[tuple[SDElement, ...], bytes]:
    if rest[:1] == b"-":
        return (), _parse_msg(rest, 1)
    if rest[:1] != b"[":
        raise RemoteProtocolError(f"STRUCTURED-DATA must be '-' or start with '[', got {_show(rest[:16])!r}",
                                  location="STRUCTURED-DATA")
    elements: list[SDElement] = []
    position = 0
    while rest[position:position + 1] == b"[":
        element, position = _parse_sd_element(rest, position + 1)
        elements.append(element)
    return tuple(elements), _parse_msg(rest, position)


def _parse_msg(rest: bytes, position: int) -> bytes:
    if position == len(rest):
        return b""
    if rest[position:position + 1] != b" ":
        raise RemoteProtocolError("STRUCTURED-DATA must be followed by a space before MSG",
                                  location="STRUCTURED-DATA")
    msg = rest[position + 1:]
    return msg[3:] if msg[:3] == BOM else msg


def _parse_sd_element(data: bytes, position: int) -> tuple[SDElement, int]:
    """Parse from just after '[' to just after the matching ']'."""
    sd_id, position = _parse_sd_name(data, position, "SD-ID")
    params: list[tuple[str, str]] = []
    while True:
        byte = data[position:position + 1]
        if byte == b"]":
            return SDElement(sd_id=sd_id, params=tuple(params)), position + 1
        if byte != b" ":
            raise RemoteProtocolError(f"SD-ELEMENT [{sd_id} ...] not closed by ']'", location="STRUCTURED-DATA")
        name, position = _parse_sd_name(data, position + 1, "PARAM-NAME")
        if data[position:position + 2] != b'="':
            raise RemoteProtocolError(f'SD-PARAM {name} must be written {name}="value"', location=sd_id)
        value, position = _parse_param_value(data, position + 2, sd_id, name)
        params.append((name, value))


def _parse_sd_name(data: bytes, position: int, what: str) -> tuple[str, int]:
    end = position
    limit = min(len(data), position + 33)
    while end < limit and data[end] > 32 and data[end] < 127 and data[end] not in _SD_NAME_FORBIDDEN:
        end += 1
    if end == position:
        raise RemoteProtocolError(f"{what} missing or invalid in STRUCTURED-DATA", location="STRUCTURED-DATA")
    if end - position > 32:
        raise RemoteProtocolError(f"{what} longer than 32 characters", location="STRUCTURED-DATA")
    return data[position:end].decode("ascii"), end


def _parse_param_value(data: bytes, position: int, sd_id: str, name: str) -> tuple[str, int]:
    """Read up to the closing quote; only \\" \\\\ and \\] are escapes, any other backslash is literal."""
    pieces: list[bytes] = []
    while True:
        quote = data.find(b'"', position)
        if quote < 0:
            raise RemoteProtocolError(f'PARAM-VALUE of {sd_id} {name} has no closing \'"\'', location=sd_id)
        backslash = data.find(b"\\", position, quote)
        if backslash < 0:
            pieces.append(data[position:quote])
            return _decode_param(b"".join(pieces), sd_id, name), quote + 1
        escaped = data[backslash + 1:backslash + 2]
        if escaped in (b'"', b"\\", b"]"):
            pieces.append(data[position:backslash] + escaped)
            position = backslash + 2
        else:
            pieces.append(data[position:backslash + 1])
            position = backslash + 1


def _decode_param(value: bytes, sd_id: str, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"PARAM-VALUE of {sd_id} {name} is not UTF-8", location=sd_id) from None


def _show(value: bytes) -> str:
    return value[:40].decode("ascii", "backslashreplace")


# --------------------------------------------------------------------------------------------------- formatting


def format_rfc5424(*, facility: int = 10, severity: int = 5, timestamp: datetime | None, hostname: str | None,
                   app_name: str | None, procid: str | None, msgid: str | None,
                   structured_data: tuple[SDElement, ...] = (), msg: bytes = b"", bom: bool = False) -> bytes:
    """Build one ``SYSLOG-MSG``; defaults are the ATNA PRI (facility 10 authpriv, severity 5 notice = <85>)."""
    if not (0 <= facility <= 23 and 0 <= severity <= 7):
        raise LocalProtocolError(f"facility must be 0..23 and severity 0..7, not {facility}/{severity}")
    fields = [_format_header_field(value, name, limit)
              for value, (name, limit) in zip((hostname, app_name, procid, msgid), _HEADER_LIMITS)]
    header = b"<%d>1 %b %b" % (facility * 8 + severity, _format_timestamp(timestamp), b" ".join(fields))
    sd = b"".join(_format_sd_element(element) for element in structured_data) or NILVALUE
    if not msg and not bom:
        return header + b" " + sd
    return header + b" " + sd + b" " + (BOM if bom else b"") + msg


def _format_timestamp(timestamp: datetime | None) -> bytes:
    if timestamp is None:
        return NILVALUE
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise LocalProtocolError("a syslog TIMESTAMP must be timezone-aware")
    text = timestamp.isoformat(timespec="microseconds" if timestamp.microsecond else "seconds")
    return (text[:-6] + "Z" if text.endswith("+00:00") else text).encode("ascii")


def _format_header_field(value: str | None, name: str, limit: int) -> bytes:
    if value is None:
        return NILVALUE
    raw = value.encode("ascii", "strict") if value.isascii() else b""
    if not raw or len(raw) > limit or raw.translate(None, _NOT_PRINTUSASCII) != raw:
        raise LocalProtocolError(f"{name} must be 1..{limit} printable US-ASCII characters, not {value!r}")
    return raw


def _format_sd_element(element: SDElement) -> bytes:
    parts = [b"[", _format_sd_name(element.sd_id)]
    for name, value in element.params:
        escaped = value.encode("utf-8").replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"]", b"\\]")
        parts += [b" ", _format_sd_name(name), b'="', escaped, b'"']
    parts.append(b"]")
    return b"".join(parts)


def _format_sd_name(name: str) -> bytes:
    raw = name.encode("ascii", "replace")
    if not 1 <= len(raw) <= 32 or raw.translate(None, _NOT_PRINTUSASCII + _SD_NAME_FORBIDDEN) != raw:
        raise LocalProtocolError(f"SD name {name!r} must be 1..32 printable US-ASCII characters without = ] \" SP")
    return raw
