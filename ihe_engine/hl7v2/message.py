"""A lean HL7 v2 (ER7) parser for the hot path.

``parse`` decodes the text once, splits segments and fields (``str.split``, in C) and stops there: components,
repetitions and escapes are resolved only for what a caller asks, and the raw bytes are kept so nobody needs to
rebuild a message to store or forward it.

Numbering follows HL7: fields are 1-based and in MSH, MSH-1 is the field separator itself, so ``msh[9]`` is the
message type. :meth:`Segment.get` and :meth:`Message.get` follow HAPI's terser: a level not given means its first
element (``get("PID-3")`` is the first component of the first repetition of PID-3) and the result is unescaped.

Character set: MSH-18 (HL7 table 0211) selects the codec; no MSH-18 means the HL7 default (ASCII), read as
UTF-8 since it is a superset. Bytes the declared codec cannot decode fall back to ISO 8859-1, which decodes
anything, and :attr:`Message.charset_fallback` says so: a badly labelled message is still answered.

Errors are :class:`~ihe_engine.errors.RemoteProtocolError` with an HL7 table 0357 code (100 segment sequence,
102 data type) and an ERR-2 style location such as ``MSH^1^2``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import RemoteProtocolError

__all__ = ["Encoding", "Segment", "Message", "MessageHeader", "parse", "unescape", "escape", "CHARSETS",
           "DEFAULT_ENCODING"]

CHARSETS: dict[str, str] = {
    "ASCII": "ascii", "ISO IR6": "ascii",
    "8859/1": "iso8859-1", "ISO IR100": "iso8859-1", "8859/2": "iso8859-2", "ISO IR101": "iso8859-2",
    "8859/3": "iso8859-3", "8859/4": "iso8859-4", "8859/5": "iso8859-5", "ISO IR144": "iso8859-5",
    "8859/6": "iso8859-6", "ISO IR127": "iso8859-6", "8859/7": "iso8859-7", "ISO IR126": "iso8859-7",
    "8859/8": "iso8859-8", "ISO IR138": "iso8859-8", "8859/9": "iso8859-9", "ISO IR148": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8", "UNICODE UTF-8": "utf-8",
    "ISO IR87": "iso2022_jp", "ISO IR159": "iso2022_jp_2", "ISO IR14": "shift_jis",
    "GB 18030-2000": "gb18030", "KS X 1001": "euc_kr", "BIG-5": "big5",
}
"""HL7 table 0211 character sets to Python codecs (UTF-16/32 cannot be framed byte-wise and are not listed)."""

_LEADING_SPACE = re.compile(rb"\s*")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_PATH = re.compile(r"([A-Z][A-Z0-9]{2})(?:\((\d+)\))?-(\d+)(?:\((\d+)\))?(?:\.(\d+)(?:\.(\d+))?)?\Z")


@dataclass(frozen=True, kw_only=True, slots=True)
class Encoding:
    """The delimiters a message declares in MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str | None = None

    @property
    def msh2(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent + (self.truncation or "")


DEFAULT_ENCODING = Encoding()


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageHeader:
    """The MSH facts routing, retransmission detection and acknowledgement need (raw, escaped field text)."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str
    message_type: str
    trigger_event: str
    message_structure: str
    version: str
    version_field: str
    processing_id: str
    charset: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Segment:
    """One segment; ``fields[n]`` is field n in HL7 numbering (``fields[0]`` is the segment id)."""

    name: str
    fields: tuple[str, ...]
    encoding: Encoding
    charset: str = "utf-8"

    def __getitem__(self, number: int) -> str:
        """Raw (still escaped) text of field ``number``, all repetitions; "" when absent."""
        if number < 1:
            raise IndexError(f"HL7 field numbers start at 1, not {number}")
        return self.fields[number] if number < len(self.fields) else ""

    def __len__(self) -> int:
        """Number of the last field present."""
        return len(self.fields) - 1

    def repetitions(self, number: int) -> list[str]:
        """Raw text of each repetition of a field (MSH-1 and MSH-2 are never split)."""
        value = self[number]
        if not value:
            return []
        if self.name == "MSH" and number <= 2:
            return [value]
        return value.split(self.encoding.repetition)

    def get(self, number: int, component: int = 1, subcomponent: int = 1, repetition: int = 1) -> str:
        """Unescaped text at field.component.subcomponent of one repetition; "" when absent."""
        if self.name == "MSH" and number <= 2:
            return self[number]
        reps = self.repetitions(number)
        if repetition < 1 or repetition > len(reps):
            return ""
        return unescape(_pick(_pick(reps[repetition - 1], self.encoding.component, component),
                              self.encoding.subcomponent, subcomponent), self.encoding, self.charset)

    def components(self, number: int, repetition: int = 1) -> list[str]:
        """The unescaped components of one repetition of a field (subcomponent separators left in place)."""
        reps = self.repetitions(number)
        if repetition < 1 or repetition > len(reps):
            return []
        parts = reps[repetition - 1].split(self.encoding.component)
        return [unescape(part, self.encoding, self.charset) for part in parts]

    def to_text(self) -> str:
        """The segment as ER7 text (without the segment terminator)."""
        if self.name == "MSH":
            return "MSH" + self.fields[1] + self.fields[1].join(self.fields[2:])
        return self.encoding.field.join(self.fields)


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    raw: bytes
    text: str
    encoding: Encoding
    charset: str
    charset_fallback: bool
    segment_list: tuple[Segment, ...]
    header: MessageHeader

    @property
    def msh(self) -> Segment:
        return self.segment_list[0]

    def segments(self, name: str) -> list[Segment]:
        return [segment for segment in self.segment_list if segment.name == name]

    def find_segment(self, name: str, occurrence: int = 1) -> Segment | None:
        seen = 0
        for segment in self.segment_list:
            if segment.name == name:
                seen += 1
                if seen == occurrence:
                    return segment
        return None

    def segment(self, name: str, occurrence: int = 1) -> Segment:
        """A segment the message must have: its absence is the peer's error (0357 code 100)."""
        found = self.find_segment(name, occurrence)
        if found is None:
            raise RemoteProtocolError(f"required segment {name} (occurrence {occurrence}) is missing",
                                      code="100", location=f"{name}^{occurrence}")
        return found

    def get(self, path: str) -> str:
        """``"PID-3.4"``, ``"PID-3(2).4.1"``, ``"OBX(2)-5"``: unescaped text, "" when absent."""
        name, occurrence, field, repetition, component, subcomponent = _parse_path(path)
        segment = self.find_segment(name, occurrence)
        if segment is None:
            return ""
        return segment.get(field, component, subcomponent, repetition)


@lru_cache(maxsize=512)
def _parse_path(path: str) -> tuple[str, int, int, int, int, int]:
    match = _PATH.match(path)
    if match is None:
        raise ValueError(f"not an HL7 path like PID-3(1).4.1: {path!r}")
    name, occurrence, field, repetition, component, subcomponent = match.groups()
    return (name, int(occurrence or 1), int(field), int(repetition or 1), int(component or 1),
            int(subcomponent or 1))


def _pick(value: str, separator: str, number: int) -> str:
    if number == 1 and separator not in value:
        return value
    parts = value.split(separator)
    return parts[number - 1] if 0 < number <= len(parts) else ""


# -- escapes ---------------------------------------------------------------------------------------------------

def unescape(value: str, encoding: Encoding = DEFAULT_ENCODING, charset: str = "utf-8") -> str:
    """Resolve HL7 escape sequences.

    \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ become delimiters, \\Xhh..\\ becomes the bytes it encodes (decoded with
    ``charset``), \\H\\ and \\N\\ (highlighting) are dropped; anything else (formatting, \\Z..\\, character set
    switches, an unterminated sequence) is kept verbatim so no information is lost.
    """
    esc = encoding.escape
    if esc not in value:
        return value
    parts = value.split(esc)
    out = [parts[0]]
    last_sequence = len(parts) - 2 if len(parts) % 2 == 0 else len(parts) - 1  # an even count: unterminated
    for index in range(1, len(parts), 2):
        sequence = parts[index]
        if index > last_sequence:
            out.append(esc + sequence)
            break
        out.append(_resolve(sequence, encoding, charset))
        out.append(parts[index + 1])
    return "".join(out)


def _resolve(sequence: str, encoding: Encoding, charset: str) -> str:
    simple = {"F": encoding.field, "S": encoding.component, "T": encoding.subcomponent,
              "R": encoding.repetition, "E": encoding.escape, "H": "", "N": ""}
    if sequence in simple:
        return simple[sequence]
    if sequence == "P" and encoding.truncation:
        return encoding.truncation
    if sequence[:1] == "X" and len(sequence) % 2 == 1:
        try:
            return bytes.fromhex(sequence[1:]).decode(charset, errors="replace")
        except ValueError:
            pass
    return encoding.escape + sequence + encoding.escape


@lru_cache(maxsize=16)
def _escape_table(encoding: Encoding) -> dict[int, str]:
    esc = encoding.escape
    table = {ord(encoding.escape): f"{esc}E{esc}", ord(encoding.field): f"{esc}F{esc}",
             ord(encoding.component): f"{esc}S{esc}", ord(encoding.subcomponent): f"{esc}T{esc}",
             ord(encoding.repetition): f"{esc}R{esc}", ord("\r"): f"{esc}X0D{esc}", ord("\n"): f"{esc}X0A{esc}"}
    if encoding.truncation:
        table[ord(encoding.truncation)] = f"{esc}P{esc}"
    return table


def escape(value: str, encoding: Encoding = DEFAULT_ENCODING) -> str:
    """Escape delimiters (and CR/LF, which would end the segment) so ``value`` is one primitive value."""
    return value.translate(_escape_table(encoding))


# -- parsing ---------------------------------------------------------------------------------------------------

def parse(raw: bytes | str) -> Message:
    """Parse one ER7 message; raise RemoteProtocolError (with 0357 code and location) when it cannot be read."""
    if isinstance(raw, str):
        text, raw = raw.lstrip(), raw.encode("utf-8")
        charset, fallback = "utf-8", False
    else:
        charset, fallback, text = "", False, ""
    start = _message_start(raw)
    encoding = _read_encoding(raw, start)
    if not text:
        charset, fallback, text = _decode(raw, start, encoding)
    segments = _split_segments(text, encoding, charset)
    header = _read_header(segments[0], charset)
    return Message(raw=raw, text=text, encoding=encoding, charset=charset, charset_fallback=fallback,
                   segment_list=segments, header=header)


def _message_start(raw: bytes) -> int:
    """Offset of MSH (leading CR/LF/whitespace is tolerated)."""
    start = _LEADING_SPACE.match(raw).end()  # type: ignore[union-attr]
    if raw[start:start + 3] != b"MSH":
        raise RemoteProtocolError("an HL7 v2 message must begin with an MSH segment", code="100",
                                  location="MSH^1")
    return start


def _read_encoding(raw: bytes, start: int) -> Encoding:
    field_separator = raw[start + 3:start + 4]
    if not field_separator or not _is_delimiter(field_separator[0]):
        raise RemoteProtocolError("MSH-1 is not a valid field separator", code="102", location="MSH^1^1")
    line_end = _line_end(raw, start)
    msh2 = raw[start + 4:line_end].split(field_separator, 1)[0]
    chars = [bytes((byte,)) for byte in msh2]
    if not 4 <= len(chars) <= 5 or len(set(chars + [field_separator])) != len(chars) + 1 \
            or not all(_is_delimiter(char[0]) for char in chars):
        raise RemoteProtocolError(f"MSH-2 must hold 4 or 5 distinct delimiters, not {msh2!r}", code="102",
                                  location="MSH^1^2")
    text = [char.decode("ascii") for char in chars]
    return Encoding(field=field_separator.decode("ascii"), component=text[0], repetition=text[1],
                    escape=text[2], subcomponent=text[3], truncation=text[4] if len(text) == 5 else None)


def _is_delimiter(byte: int) -> bool:
    return 0x21 <= byte <= 0x7E and not chr(byte).isalnum()


def _line_end(raw: bytes, start: int) -> int:
    ends = [index for index in (raw.find(b"\r", start), raw.find(b"\n", start)) if index >= 0]
    return min(ends) if ends else len(raw)


def _decode(raw: bytes, start: int, encoding: Encoding) -> tuple[str, bool, str]:
    """(charset, fell back, text) following MSH-18."""
    msh = raw[start:_line_end(raw, start)].decode("latin-1").split(encoding.field)
    declared = msh[17].split(encoding.repetition)[0].strip().upper() if len(msh) > 17 else ""
    codec = CHARSETS.get(declared, "utf-8")
    try:
        return codec, False, raw[start:].decode(codec)
    except (UnicodeDecodeError, LookupError):
        return "iso8859-1", True, raw[start:].decode("iso8859-1")


def _split_segments(text: str, encoding: Encoding, charset: str) -> tuple[Segment, ...]:
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    segments = []
    for number, line in enumerate(text.split("\r"), start=1):
        if line and not line.isspace():
            segments.append(_split_fields(line, encoding, charset, number))
    if sum(1 for segment in segments if segment.name == "MSH") != 1:
        raise RemoteProtocolError("a message holds exactly one MSH (batches are not accepted here)", code="100",
                                  location="MSH^2")
    return tuple(segments)


def _split_fields(line: str, encoding: Encoding, charset: str, number: int) -> Segment:
    name = line[:3]
    if not _SEGMENT_ID.match(name) or (len(line) > 3 and line[3] != encoding.field):
        raise RemoteProtocolError(f"segment {number} does not start with a segment id: {line[:10]!r}",
                                  code="100", location=f"{_printable(name)}^1")
    parts = line.split(encoding.field)
    if name == "MSH":
        parts.insert(1, encoding.field)
    return Segment(name=name, fields=tuple(parts), encoding=encoding, charset=charset)


def _printable(name: str) -> str:
    return "".join(char for char in name if char.isalnum()) or "UNK"


def _read_header(msh: Segment, charset: str) -> MessageHeader:
    message_type = msh.repetitions(9)[:1] or [""]
    type_parts = message_type[0].split(msh.encoding.component)
    version_field = msh[12]
    return MessageHeader(
        sending_application=msh[3], sending_facility=msh[4],
        receiving_application=msh[5], receiving_facility=msh[6],
        control_id=msh[10],
        message_type=type_parts[0], trigger_event=_at(type_parts, 1), message_structure=_at(type_parts, 2),
        version=version_field.split(msh.encoding.component)[0], version_field=version_field,
        processing_id=msh.get(11), charset=charset)


def _at(parts: list[str], index: int) -> str:
    return parts[index] if index < len(parts) else ""
