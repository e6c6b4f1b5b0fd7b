"""Original-mode acknowledgements (ACK with MSA and ERR), the only encoder of HL7 v2 errors.

The ACK answers in the request's own delimiters and version, so sender and receiver fields copied from the request
(full HD composites, still escaped) stay valid. MSH-3/4 of the ACK are the request's MSH-5/6 (the application the
sender addressed) or, when those are empty, the engine's configured identity; MSH-5/6 are the request's MSH-3/4.

ERR follows v2.5 (ERR-2 location, ERR-3 HL7 table 0357 code, ERR-4 severity, ERR-8 user message); before v2.5
ERR had only ERR-1, so for those versions ERR-1 is filled too (segment^sequence^field^code&text&HL70357).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from ..errors import EngineError, LocalProtocolError
from .message import DEFAULT_ENCODING, Encoding, Message, escape

__all__ = ["Hl7Error", "ERROR_CODES", "ACK_CODES", "SEVERITIES", "build_ack", "build_reject", "new_control_id",
           "hl7_timestamp"]

_CONTROL_CHARACTERS = dict.fromkeys(range(0x20))  # never echo a byte that could end a segment or an MLLP frame

ERROR_CODES: dict[str, str] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
"""HL7 table 0357, message error condition codes."""

ACK_CODES = ("AA", "AE", "AR")
SEVERITIES = ("E", "W", "I")  # HL7 table 0516


@dataclass(frozen=True, kw_only=True)
class Hl7Error:
    """One ERR segment: a table 0357 code, where (``SEG^seq^field^rep^comp^sub``) and a message for people."""

    code: str
    text: str = ""
    location: str | None = None
    severity: str = "E"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise LocalProtocolError(f"ERR-4 severity must be one of {SEVERITIES}, not {self.severity!r}")
        if not self.code:
            raise LocalProtocolError("an ERR segment needs an HL7 table 0357 code")

    @classmethod
    def from_exception(cls, exc: EngineError, *, default_code: str = "207") -> "Hl7Error":
        """Use the exception's code when it is a table 0357 code, else ``default_code``."""
        code = exc.code if exc.code in ERROR_CODES else default_code
        severity = {"Error": "E", "Warning": "W", "Information": "I"}.get(exc.severity, exc.severity)
        return cls(code=code, text=exc.message, location=exc.location,
                   severity=severity if severity in SEVERITIES else "E")


@dataclass(frozen=True, kw_only=True)
class _Request:
    """What an ACK echoes from the request, as raw field text in the request's delimiters."""

    encoding: Encoding
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    trigger_event: str = ""
    processing_id: str = "P"
    version_field: str = "2.5"


def new_control_id() -> str:
    """20 characters, the MSH-10 length limit of v2.5, random enough to be unique across workers."""
    return secrets.token_hex(10)


def hl7_timestamp(when: datetime | None = None) -> str:
    return (when or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%d%H%M%S+0000")


def build_ack(message: Message, code: str = "AA", *, errors: Iterable[Hl7Error] = (), text: str | None = None,
              sending_application: str = "IHE_ENGINE", sending_facility: str = "IHE_ENGINE",
              control_id: str | None = None, when: datetime | None = None) -> bytes:
    """The original-mode ACK to a parsed message, encoded in the request's character set."""
    header = message.header
    request = _Request(encoding=message.encoding, sending_application=header.sending_application,
                       sending_facility=header.sending_facility, receiving_application=header.receiving_application,
                       receiving_facility=header.receiving_facility, control_id=header.control_id,
                       trigger_event=header.trigger_event, processing_id=header.processing_id or "P",
                       version_field=header.version_field or "2.5")
    return _encode(request, code, tuple(errors), text, sending_application, sending_facility, control_id, when,
                   message.charset)


def build_reject(raw: bytes, errors: Iterable[Hl7Error], *, text: str | None = None,
                 sending_application: str = "IHE_ENGINE", sending_facility: str = "IHE_ENGINE",
                 control_id: str | None = None, when: datetime | None = None) -> bytes:
    """An AR to bytes that did not parse: echo whatever MSH fields can be salvaged, MSA-2 empty if none."""
    request = _salvage(raw)
    return _encode(request, "AR", tuple(errors), text, sending_application, sending_facility, control_id, when,
                   "utf-8")


def _encode(request: _Request, code: str, errors: tuple[Hl7Error, ...], text: str | None,
            sending_application: str, sending_facility: str, control_id: str | None, when: datetime | None,
            charset: str) -> bytes:
    if code not in ACK_CODES:
        raise LocalProtocolError(f"MSA-1 must be one of {ACK_CODES}, not {code!r}")
    request = _clean(request)
    enc = request.encoding
    old_err = _version_tuple(request.version_field.split(enc.component)[0]) < (2, 5)
    segments = [_msh(request, sending_application, sending_facility, control_id, when),
                enc.field.join(["MSA", code, request.control_id] + ([escape(text, enc)] if text else []))]
    segments.extend(_err(error, enc, old_err) for error in errors)
    body = "\r".join(segments) + "\r"
    try:
        return body.encode(charset)
    except (UnicodeEncodeError, LookupError):
        return body.encode("utf-8", errors="replace")


def _clean(request: _Request) -> _Request:
    values = {name: getattr(request, name).translate(_CONTROL_CHARACTERS) for name in (
        "sending_application", "sending_facility", "receiving_application", "receiving_facility", "control_id",
        "trigger_event", "processing_id", "version_field")}
    return _Request(encoding=request.encoding, **values)


def _msh(request: _Request, sending_application: str, sending_facility: str, control_id: str | None,
         when: datetime | None) -> str:
    enc = request.encoding
    message_type = enc.component.join(["ACK", request.trigger_event, "ACK"] if request.trigger_event else ["ACK"])
    fields = [
        request.receiving_application or escape(sending_application, enc),
        request.receiving_facility or escape(sending_facility, enc),
        request.sending_application, request.sending_facility,
        hl7_timestamp(when), "", message_type, control_id or new_control_id(),
        request.processing_id, request.version_field,
    ]
    return "MSH" + enc.field + enc.msh2 + enc.field + _join(enc.field, fields)


def _err(error: Hl7Error, enc: Encoding, old_style: bool) -> str:
    location = [escape(part, enc) for part in (error.location or "").split("^")] if error.location else []
    name = ERROR_CODES.get(error.code, "")
    code = enc.component.join([escape(error.code, enc), escape(name, enc), "HL70357"])
    err1 = ""
    if old_style:
        cwe = enc.subcomponent.join([escape(error.code, enc), escape(name, enc), "HL70357"])
        err1 = enc.component.join((location + ["", "", ""])[:3] + [cwe])
    return _join(enc.field, ["ERR", err1, enc.component.join(location), code, error.severity, "", "", "",
                             escape(error.text, enc)])


def _join(separator: str, fields: list[str]) -> str:
    while fields and fields[-1] == "":
        fields = fields[:-1]
    return separator.join(fields)


def _version_tuple(version: str) -> tuple[int, ...]:
    numbers = []
    for part in version.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers) or (2, 5)


def _salvage(raw: bytes) -> _Request:
    """Read MSH leniently: the delimiters if they make sense, and the fields an ACK echoes."""
    text = raw.decode("latin-1").lstrip()
    encoding = _salvage_encoding(text) if text.startswith("MSH") else None
    if encoding is None:
        return _Request(encoding=DEFAULT_ENCODING)
    line = text.replace("\n", "\r").split("\r", 1)[0]
    fields = ["MSH", encoding.field] + line.split(encoding.field)[1:]

    def field(number: int) -> str:
        return fields[number] if number < len(fields) else ""

    type_parts = field(9).split(encoding.component)
    return _Request(encoding=encoding, sending_application=field(3), sending_facility=field(4),
                    receiving_application=field(5), receiving_facility=field(6), control_id=field(10),
                    trigger_event=type_parts[1] if len(type_parts) > 1 else "",
                    processing_id=field(11) or "P", version_field=field(12) or "2.5")


def _salvage_encoding(text: str) -> Encoding | None:
    chars = text[3:8]
    if len(chars) < 5 or len(set(chars)) != 5 or not all(0x21 <= ord(c) <= 0x7E and not c.isalnum() for c in chars):
        return None
    return Encoding(field=chars[0], component=chars[1], repetition=chars[2], escape=chars[3], subcomponent=chars[4])
