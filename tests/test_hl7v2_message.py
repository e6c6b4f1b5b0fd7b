"""The lean HL7 v2 parser: numbering, delimiters, escapes, character sets, errors with locations."""

from __future__ import annotations

import hl7
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ihe_engine.errors import RemoteProtocolError
from ihe_engine.hl7v2.message import DEFAULT_ENCODING, Encoding, escape, parse, unescape

ADT = (
    "MSH|^~\\&|HIS^1.2.3.4^ISO|HOSP^5.6^ISO|PIX_MGR|IHE|20240102030405||ADT^A01^ADT_A01|CTRL-42|P|2.3.1\r"
    "EVN|A01|20240102030405\r"
    "PID|||123^^^HOSP&1.2.3&ISO~456^^^OTHER&9.9&ISO||Doe^John^^^Dr||19700101|M\r"
    "PV1||I\r"
    "OBX|1|ST|code^text||first\r"
    "OBX|2|ST|code^text||second\r"
)


def test_msh_numbering_puts_the_field_separator_at_msh_1():
    message = parse(ADT.encode())
    msh = message.msh
    assert msh[1] == "|"
    assert msh[2] == "^~\\&"
    assert msh[9] == "ADT^A01^ADT_A01"
    assert msh[10] == "CTRL-42"
    assert msh.get(9, 2) == "A01"


def test_header_facts():
    header = parse(ADT.encode()).header
    assert header.sending_application == "HIS^1.2.3.4^ISO"
    assert header.sending_facility == "HOSP^5.6^ISO"
    assert header.receiving_application == "PIX_MGR"
    assert (header.message_type, header.trigger_event, header.message_structure) == ("ADT", "A01", "ADT_A01")
    assert header.control_id == "CTRL-42"
    assert header.version == "2.3.1"
    assert header.processing_id == "P"


def test_other_segments_number_from_one():
    pid = parse(ADT.encode()).segment("PID")
    assert pid[3].startswith("123^")
    assert pid.get(5, 2) == "John"
    assert pid[99] == ""
    assert len(pid) == 8


def test_paths_with_repetitions_components_subcomponents_and_occurrences():
    message = parse(ADT.encode())
    assert message.get("PID-3") == "123"
    assert message.get("PID-3.4") == "HOSP"
    assert message.get("PID-3.4.2") == "1.2.3"
    assert message.get("PID-3(2).1") == "456"
    assert message.get("PID-3(2).4.3") == "ISO"
    assert message.get("PID-3(3).1") == ""
    assert message.get("OBX(2)-5") == "second"
    assert message.get("OBX(3)-5") == ""
    assert message.get("ZZZ-1") == ""
    assert message.get("MSH-9.2") == "A01"
    assert message.get("MSH-2") == "^~\\&"
    with pytest.raises(ValueError):
        message.get("PID.3")


def test_segments_and_repetitions():
    message = parse(ADT.encode())
    assert [segment[5] for segment in message.segments("OBX")] == ["first", "second"]
    assert message.segment("PID").repetitions(3) == ["123^^^HOSP&1.2.3&ISO", "456^^^OTHER&9.9&ISO"]
    assert message.find_segment("NK1") is None
    with pytest.raises(RemoteProtocolError) as caught:
        message.segment("NK1")
    assert caught.value.code == "100"


def test_raw_bytes_are_kept():
    raw = ADT.encode()
    assert parse(raw).raw is raw


@pytest.mark.parametrize("separator", ["\n", "\r\n"])
def test_line_feed_segment_separators_are_tolerated(separator):
    message = parse(ADT.replace("\r", separator).encode())
    assert [segment.name for segment in message.segment_list] == ["MSH", "EVN", "PID", "PV1", "OBX", "OBX"]
    assert message.get("PV1-2") == "I"


def test_leading_whitespace_and_blank_lines_are_tolerated():
    message = parse(b"\r\n" + ADT.replace("EVN", "\rEVN").encode())
    assert message.segment("EVN")[1] == "A01"


def test_custom_encoding_characters():
    raw = "MSH#*!%$#APP#FAC#R#F#20240101##ADT*A08#C1#P#2.5\rPID###1*2$3!4*5$6###Smith%F%x%S%y\r".encode()
    message = parse(raw)
    assert message.encoding == Encoding(field="#", component="*", repetition="!", escape="%", subcomponent="$")
    assert message.header.trigger_event == "A08"
    assert message.get("PID-3.2") == "2"
    assert message.get("PID-3.2.2") == "3"
    assert message.get("PID-3(2).2.2") == "6"
    assert message.get("PID-6") == "Smith#x*y"


def test_truncation_character_of_v27():
    message = parse(b"MSH|^~\\&#|A|B|C|D|20240101||ADT^A01|1|P|2.7\rNTE|||cut\\P\\here\r")
    assert message.encoding.truncation == "#"
    assert message.get("NTE-3") == "cut#here"


@pytest.mark.parametrize(("escaped", "plain"), [
    ("a\\F\\b", "a|b"),
    ("a\\S\\b\\T\\c\\R\\d\\E\\e", "a^b&c~d\\e"),
    ("\\H\\bold\\N\\", "bold"),
    ("caf\\XC3A9\\", "café"),
    ("keep \\.br\\ and \\Zcustom\\", "keep \\.br\\ and \\Zcustom\\"),
    ("unterminated \\F", "unterminated \\F"),
    ("\\X4\\", "\\X4\\"),
    ("plain", "plain"),
])
def test_unescape(escaped, plain):
    assert unescape(escaped) == plain


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_escape_round_trips(text):
    escaped = escape(text)
    for delimiter in "|^~&\r\n":
        assert delimiter not in escaped
    assert unescape(escaped) == text


def test_escape_uses_the_message_delimiters():
    encoding = Encoding(field="#", component="*", repetition="!", escape="%", subcomponent="$")
    assert escape("a#b%c", encoding) == "a%F%b%E%c"


def test_charset_from_msh_18():
    latin = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||8859/1\rPID|||1||Müller\r".encode("latin-1")
    message = parse(latin)
    assert message.charset == "iso8859-1" and not message.charset_fallback
    assert message.get("PID-5") == "Müller"
    utf8 = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||UNICODE UTF-8\rPID|||1||Müller\r".encode()
    assert parse(utf8).get("PID-5") == "Müller"


def test_mislabelled_charset_falls_back_to_latin1_without_crashing():
    raw = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||UNICODE UTF-8\rPID|||1||Müller\r".encode("latin-1")
    message = parse(raw)
    assert message.charset_fallback
    assert message.get("PID-5") == "Müller"


def test_no_charset_reads_utf8_and_falls_back():
    assert parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|||1||Zoë\r".encode()).get("PID-5") == "Zoë"
    assert parse(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|||1||\xff\r").get("PID-5") == "\xff"


def test_text_input_is_accepted():
    assert parse(ADT).header.control_id == "CTRL-42"


def error_of(raw: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        parse(raw)
    return caught.value


@pytest.mark.parametrize(("raw", "code", "location"), [
    (b"", "100", "MSH^1"),
    (b"PID|||1\r", "100", "MSH^1"),
    (b"\x00\x01\x02garbage", "100", "MSH^1"),
    (b"MSHA^~\\&|x", "102", "MSH^1^1"),
    (b"MSH|^~|A\r", "102", "MSH^1^2"),
    (b"MSH|^^\\&|A\r", "102", "MSH^1^2"),
    (b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rpid|x\r", "100", "pid^1"),
    (b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPIDX|x\r", "100", "PID^1"),
    (b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rMSH|^~\\&|A\r", "100", "MSH^2"),
])
def test_parse_errors_carry_code_and_location(raw, code, location):
    error = error_of(raw)
    assert (error.code, error.location) == (code, location)


def test_agrees_with_python_hl7_on_fields():
    """python-hl7 is an independent reading of the same text."""
    ours, theirs = parse(ADT.encode()), hl7.parse(ADT)
    for path in ("PID.3", "PID.5", "PV1.2", "OBX.5"):
        name, number = path.split(".")
        assert ours.segment(name)[int(number)] == str(theirs.segment(name)[int(number)])
    assert ours.msh[9] == str(theirs.segment("MSH")[9])
    assert ours.msh[10] == str(theirs.segment("MSH")[10])


def test_default_encoding_is_the_standard_one():
    assert DEFAULT_ENCODING.msh2 == "^~\\&"
