"""Octet-counting framing (RFC 5425/6587) and RFC 5424 parse/format, sans-I/O."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ihe_engine.errors import LocalProtocolError, MessageTooLarge, RemoteProtocolError
from ihe_engine.transport.syslog import (BOM, FrameTooLarge, FramingError, OctetCountingFramer, SDElement,
                                         SyslogMessage, format_rfc5424, frame_octet_counted, parse_rfc5424)

AUDIT_XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<AuditMessage>\n  <EventIdentification EventActionCode="E" '
             b'EventDateTime="2026-11-21T10:00:00.000Z" EventOutcomeIndicator="0">\n    <EventID csd-code="110112" '
             b'codeSystemName="DCM" originalText="Query"/>\n  </EventIdentification>\n</AuditMessage>')
AUDIT = b"<85>1 2026-11-21T10:00:00.000Z host.example.org ihe-engine 1234 IHE+RFC-3881 - " + AUDIT_XML


# ------------------------------------------------------------------------------------------ framing


def test_several_frames_in_one_read():
    messages = [b"first", AUDIT, b"x"]
    framer = OctetCountingFramer()
    assert framer.feed(b"".join(frame_octet_counted(m) for m in messages)) == messages
    assert framer.unfinished() == b"" and framer.messages == 3


def test_frames_fed_byte_by_byte():
    messages = [AUDIT, b"second message", b"3 looks like a frame"]
    framer = OctetCountingFramer()
    stream = b"".join(frame_octet_counted(m) for m in messages)
    received = [frame for i in range(len(stream)) for frame in framer.feed(stream[i:i + 1])]
    assert received == messages


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8), data=st.data())
def test_frames_split_anywhere(messages, data):
    stream = b"".join(frame_octet_counted(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    framer = OctetCountingFramer(max_message_size=1000)
    received = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        received += framer.feed(stream[start:end])
    assert received == messages
    assert framer.unfinished() == b""


def test_messages_of_64_kb_and_more_are_accepted():
    big = b"<85>1 - - - - - - " + b"A" * (64 * 1024)
    bigger = b"B" * (1024 * 1024)  # the default limit itself
    framer = OctetCountingFramer()
    assert framer.feed(frame_octet_counted(big) + frame_octet_counted(bigger)) == [big, bigger]


def test_announced_length_above_the_limit_is_refused_before_buffering():
    framer = OctetCountingFramer(max_message_size=65536)
    with pytest.raises(FrameTooLarge, match="65537 octets exceeds"):
        framer.feed(b"65537 ")
    assert isinstance(FrameTooLarge("x"), MessageTooLarge)


@pytest.mark.parametrize("stream, words", [
    (b"abc def", "decimal digits"),
    (b"0 ", "must not start with 0"),
    (b"012 abc", "must not start with 0"),
    (b"12a abc", "decimal digits"),
    (b" 3 abc", "decimal digits"),
    (b"-5 abc", "decimal digits"),
    (b"<85>1 2026-11-21T10:00:00Z h a p m - x\n", "non-transparent"),
    (b"12345678 ", "more digits"),           # 8 digits cannot be a length <= 1 MB
    (b"99999999", "more digits"),            # refused before the space arrives
    (b"9x", "decimal digits"),               # refused before the space arrives
])
def test_bad_length_prefixes(stream, words):
    framer = OctetCountingFramer()
    with pytest.raises(FramingError, match=words):
        framer.feed(stream)
    assert isinstance(framer.error, RemoteProtocolError)
    with pytest.raises(FramingError):  # the stream has lost its framing for good
        framer.feed(b"3 abc")


def test_good_frames_before_an_error_are_returned_first():
    framer = OctetCountingFramer()
    assert framer.feed(b"3 abc2 de0 junk") == [b"abc", b"de"]
    assert framer.error is not None and framer.unfinished() == b"0 junk"
    with pytest.raises(FramingError, match="must not start with 0"):
        framer.feed(b"")


def test_truncated_frame_stays_unfinished():
    framer = OctetCountingFramer()
    assert framer.feed(b"10 abc") == []
    assert framer.unfinished() == b"abc" and framer.buffered == 3


def test_framing_misuse_is_local():
    with pytest.raises(LocalProtocolError):
        frame_octet_counted(b"")
    with pytest.raises(LocalProtocolError):
        OctetCountingFramer(max_message_size=0)


# ------------------------------------------------------------------------------------------ RFC 5424 parse


def test_parse_ihe_audit_message():
    message = parse_rfc5424(AUDIT)
    assert (message.facility, message.severity, message.pri, message.version) == (10, 5, 85, 1)
    assert message.timestamp == datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)
    assert message.timestamp.tzinfo is not None
    assert (message.hostname, message.app_name, message.procid, message.msgid) == (
        "host.example.org", "ihe-engine", "1234", "IHE+RFC-3881")
    assert message.structured_data == ()
    assert message.msg == AUDIT_XML


def test_parse_all_nilvalues():
    message = parse_rfc5424(b"<0>1 - - - - - -")
    assert message == SyslogMessage(facility=0, severity=0, timestamp=None, hostname=None, app_name=None,
                                    procid=None, msgid=None, structured_data=(), msg=b"")


def test_parse_rfc5424_examples_with_offsets_fractions_and_bom():
    first = parse_rfc5424(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
                          + BOM + b"'su root' failed for lonvick on /dev/pts/8")
    assert first.facility == 4 and first.severity == 2 and first.procid is None
    assert first.timestamp == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=timezone.utc)
    assert first.msg == b"'su root' failed for lonvick on /dev/pts/8"
    second = parse_rfc5424(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
                           b"%% It's time to make the do-nuts.")
    assert second.timestamp.utcoffset() == timedelta(hours=-7)
    assert second.timestamp == datetime(2003, 8, 24, 12, 14, 15, 3, tzinfo=timezone.utc)
    assert second.msg == b"%% It's time to make the do-nuts."


def test_parse_structured_data_with_escapes():
    raw = (b'<165>1 2003-10-11T22:14:15.003+05:30 host app - ID47 [exampleSDID@32473 iut="3" '
           b'eventSource="Appli\\"cation" path="C:\\\\dir" br="a\\]b" keep="x\\ny" empty=""]'
           b'[examplePriority@32473 class="high"][n@1]')
    message = parse_rfc5424(raw)
    assert message.timestamp.utcoffset() == timedelta(hours=5, minutes=30)
    first, second, third = message.structured_data
    assert first.sd_id == "exampleSDID@32473"
    assert first.params == (("iut", "3"), ("eventSource", 'Appli"cation'), ("path", "C:\\dir"), ("br", "a]b"),
                            ("keep", "x\\ny"), ("empty", ""))
    assert second == SDElement(sd_id="examplePriority@32473", params=(("class", "high"),))
    assert third == SDElement(sd_id="n@1") and first.get("iut") == "3" and first.get("none") is None
    assert message.msg == b""


def test_parse_structured_data_then_msg_with_utf8_param():
    message = parse_rfc5424('<85>1 - h a p m [o@1 name="Zoë ]"] '.encode() + BOM + b"<AuditMessage/>")
    assert message.structured_data[0].params == (("name", "Zoë ]"),)
    assert message.msg == b"<AuditMessage/>"


@pytest.mark.parametrize("raw, words", [
    (b"<192>1 - - - - - -", "PRI must be <0..191>"),
    (b"<085>1 - - - - - -", "PRI must be <0..191>"),
    (b"<x>1 - - - - - -", "PRI must be <0..191>"),
    (b"85>1 - - - - - -", "start with PRI"),
    (b"<85> - - - - - -", "VERSION missing"),
    (b"<85>2 - - - - - -", "unsupported syslog VERSION"),
    (b"<85>1 - - - - -", "STRUCTURED-DATA missing"),
    (b"<85>1", "TIMESTAMP missing"),
    (b"<85>1 2026-13-01T00:00:00Z h a p m -", "not a valid date"),
    (b"<85>1 2026-11-21T10:00:00 h a p m -", "TIMESTAMP must be RFC 3339"),
    (b"<85>1 2026-11-21T10:00:60Z h a p m -", "not a valid date"),
    (b"<85>1 2026-11-21T10:00:00.1234567Z h a p m -", "TIMESTAMP must be RFC 3339"),
    (b"<85>1 2026-11-21T10:00:00+24:00 h a p m -", "not a valid date"),
    (b"<85>1 -  a p m -", "HOSTNAME is empty"),
    (b"<85>1 - h\x01st a p m -", "HOSTNAME must be printable"),
    (b"<85>1 - h " + b"a" * 49 + b" p m -", "APP-NAME longer than 48"),
    (b"<85>1 - h a p " + b"m" * 33 + b" -", "MSGID longer than 32"),
    (b"<85>1 - h a p m x", "STRUCTURED-DATA must be '-'"),
    (b"<85>1 - h a p m -msg", "followed by a space"),
    (b"<85>1 - h a p m [id@1 a=\"b\"", "not closed"),
    (b"<85>1 - h a p m [id@1 a=b]", 'must be written a="value"'),
    (b"<85>1 - h a p m [id@1 a=\"b]", "no closing"),
    (b"<85>1 - h a p m []", "SD-ID missing"),
    (b"<85>1 - h a p m [id@1 a=\"\xff\"]", "not UTF-8"),
    (b"<85>1 - h a p m [" + b"i" * 33 + b"]", "longer than 32"),
])
def test_parse_errors_say_what_is_wrong(raw, words):
    with pytest.raises(RemoteProtocolError, match=words.replace("(", r"\(").replace("[", r"\[")):
        parse_rfc5424(raw)


# ------------------------------------------------------------------------------------------ format


def test_format_default_atna_header():
    raw = format_rfc5424(timestamp=datetime(2026, 11, 21, 10, 0, 0, 123000, tzinfo=timezone.utc),
                         hostname="node", app_name="ihe-engine", procid="42", msgid="IHE+RFC-3881",
                         msg=b"<AuditMessage/>")
    assert raw == b"<85>1 2026-11-21T10:00:00.123000Z node ihe-engine 42 IHE+RFC-3881 - <AuditMessage/>"
    assert frame_octet_counted(raw) == b"%d " % len(raw) + raw


def test_format_refuses_what_cannot_be_encoded():
    base = {"timestamp": None, "hostname": "h", "app_name": "a", "procid": "p", "msgid": "m"}
    with pytest.raises(LocalProtocolError, match="timezone-aware"):
        format_rfc5424(**{**base, "timestamp": datetime(2026, 1, 1)})
    with pytest.raises(LocalProtocolError, match="HOSTNAME"):
        format_rfc5424(**{**base, "hostname": "with space"})
    with pytest.raises(LocalProtocolError, match="MSGID"):
        format_rfc5424(**{**base, "msgid": "é"})
    with pytest.raises(LocalProtocolError, match="facility"):
        format_rfc5424(**base, facility=24)
    with pytest.raises(LocalProtocolError, match="SD name"):
        format_rfc5424(**base, structured_data=(SDElement(sd_id="bad=id"),))


_PRINTABLE = st.characters(min_codepoint=33, max_codepoint=126)
_SD_NAME = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='=]" '),
                   min_size=1, max_size=32)
_ZONES = st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)),
                          timezone(timedelta(hours=14))])


def _field(limit: int):
    return st.none() | st.text(_PRINTABLE, min_size=1, max_size=limit).filter(lambda value: value != "-")


@settings(max_examples=300, deadline=None)
@given(facility=st.integers(0, 23), severity=st.integers(0, 7),
       timestamp=st.none() | st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30),
                                          timezones=_ZONES),
       hostname=_field(255), app_name=_field(48), procid=_field(128), msgid=_field(32),
       structured_data=st.lists(st.builds(SDElement, sd_id=_SD_NAME,
                                          params=st.lists(st.tuples(_SD_NAME, st.text()), max_size=3).map(tuple)),
                                max_size=3).map(tuple),
       msg=st.binary().filter(lambda value: not value.startswith(BOM)), bom=st.booleans())
def test_format_parse_round_trip(facility, severity, timestamp, hostname, app_name, procid, msgid,
                                 structured_data, msg, bom):
    message = SyslogMessage(facility=facility, severity=severity, timestamp=timestamp, hostname=hostname,
                            app_name=app_name, procid=procid, msgid=msgid, structured_data=structured_data, msg=msg)
    parsed = parse_rfc5424(message.encode(bom=bom))
    assert parsed == message
    assert parsed.timestamp is None or parsed.timestamp.utcoffset() == timestamp.utcoffset()
