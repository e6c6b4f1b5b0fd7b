"""The sans-I/O MLLP framer: fed whole, byte by byte, in random splits, with garbage, oversized."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ihe_engine.errors import LocalProtocolError, MessageTooLarge, RemoteProtocolError
from ihe_engine.transport.mllp import END_BLOCK, START_BLOCK, FrameTooLarge, FramingError, MLLPFramer, frame

ADT = b"MSH|^~\\&|APP|FAC|ENGINE|FAC|20240101120000||ADT^A01^ADT_A01|MSG0001|P|2.5\rPID|||123^^^HOSP\r"
QRY = b"MSH|^~\\&|APP|FAC|ENGINE|FAC|20240101120000||QBP^Q23^QBP_Q21|MSG0002|P|2.5\rQPD|IHE PIX Query|q1\r"


def feed_in_pieces(framer: MLLPFramer, stream: bytes, cuts: list[int]) -> list[bytes]:
    messages = []
    previous = 0
    for cut in sorted(cuts) + [len(stream)]:
        messages.extend(framer.feed(stream[previous:cut]))
        previous = cut
    return messages


def test_frame_wraps_payload():
    assert frame(b"abc") == b"\x0babc\x1c\x0d"


@pytest.mark.parametrize("payload", [b"a\x0bb", b"a\x1cb"])
def test_frame_refuses_block_bytes_in_payload(payload):
    with pytest.raises(LocalProtocolError):
        frame(payload)


def test_whole_frame():
    assert MLLPFramer().feed(frame(ADT)) == [ADT]


def test_byte_by_byte():
    framer = MLLPFramer()
    stream = frame(ADT) + frame(QRY)
    messages = []
    for index in range(len(stream)):
        messages.extend(framer.feed(stream[index:index + 1]))
    assert messages == [ADT, QRY]
    assert framer.buffered_bytes == 0 and not framer.in_frame


def test_several_frames_in_one_read_and_trailing_partial():
    framer = MLLPFramer()
    stream = frame(ADT) + frame(QRY) + START_BLOCK + b"MSH|partial"
    assert framer.feed(stream) == [ADT, QRY]
    assert framer.in_frame
    assert framer.feed(b"|rest\r" + END_BLOCK) == [b"MSH|partial|rest\r"]


def test_end_block_split_between_reads():
    framer = MLLPFramer()
    assert framer.feed(START_BLOCK + ADT + b"\x1c") == []
    assert framer.feed(b"\x0d") == [ADT]


def test_lone_end_byte_stays_in_payload():
    framer = MLLPFramer()
    assert framer.feed(START_BLOCK + b"a\x1cb" + END_BLOCK) == [b"a\x1cb"]


def test_garbage_before_and_between_frames_is_discarded_and_counted():
    framer = MLLPFramer()
    stream = b"noise" + frame(ADT) + b"\r\n\x00\xff" + frame(QRY) + b"tail"
    assert framer.feed(stream) == [ADT, QRY]
    assert framer.garbage_bytes == len(b"noise") + 4 + len(b"tail")
    assert framer.buffered_bytes == 0


def test_stray_start_block_restarts_the_frame():
    framer = MLLPFramer()
    abandoned = START_BLOCK + b"MSH|half a message"
    assert framer.feed(abandoned) == []
    assert framer.feed(frame(ADT)) == [ADT]
    assert framer.resyncs == 1
    assert framer.garbage_bytes == len(abandoned)


def test_stray_start_block_in_the_same_read():
    framer = MLLPFramer()
    assert framer.feed(START_BLOCK + b"abandoned" + frame(ADT)) == [ADT]
    assert framer.resyncs == 1


def test_empty_payload():
    assert MLLPFramer().feed(frame(b"")) == [b""]


def test_message_at_the_limit_passes():
    framer = MLLPFramer(max_message_size=len(ADT))
    assert framer.feed(frame(ADT)) == [ADT]


def test_complete_frame_over_the_limit_raises():
    framer = MLLPFramer(max_message_size=len(ADT) - 1)
    with pytest.raises(FrameTooLarge) as caught:
        framer.feed(frame(ADT))
    assert isinstance(caught.value, (MessageTooLarge, FramingError, RemoteProtocolError))


def test_unfinished_frame_over_the_limit_raises_early_and_buffer_stays_bounded():
    limit = 1000
    framer = MLLPFramer(max_message_size=limit)
    framer.feed(START_BLOCK)
    with pytest.raises(FrameTooLarge):
        for _ in range(100):
            framer.feed(b"x" * 100)
            assert framer.buffered_bytes <= limit + 100
    with pytest.raises(LocalProtocolError):
        framer.feed(frame(ADT))  # a failed framer stays failed


def test_limit_counts_the_payload_not_a_pending_end_byte():
    framer = MLLPFramer(max_message_size=3)
    assert framer.feed(START_BLOCK + b"abc\x1c") == []
    assert framer.feed(b"\x0d") == [b"abc"]


def test_garbage_without_start_block_is_not_buffered():
    framer = MLLPFramer(max_message_size=100)
    noise = random.Random(1).randbytes(100_000).replace(START_BLOCK, b"\x00")
    assert framer.feed(noise) == []
    assert framer.buffered_bytes == 0
    assert framer.garbage_bytes == len(noise)
    assert framer.feed(frame(b"ok")) == [b"ok"]


payloads = st.binary(max_size=300).map(lambda data: data.replace(b"\x0b", b"").replace(b"\x1c", b""))
garbage = st.binary(max_size=20).map(lambda data: data.replace(b"\x0b", b""))


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.tuples(garbage, payloads), max_size=8), data=st.data())
def test_any_split_yields_the_same_messages(frames, data):
    stream = b"".join(noise + frame(payload) for noise, payload in frames)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=30))
    framer = MLLPFramer(max_message_size=300)
    assert feed_in_pieces(framer, stream, cuts) == [payload for _, payload in frames]
    assert framer.garbage_bytes == sum(len(noise) for noise, _ in frames)
    assert framer.buffered_bytes == 0


@settings(max_examples=100, deadline=None)
@given(payload=payloads, data=st.data())
def test_any_split_of_an_oversized_frame_raises(payload, data):
    stream = frame(payload + b"x" * 11)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=10))
    framer = MLLPFramer(max_message_size=len(payload) + 10)
    with pytest.raises(FrameTooLarge):
        feed_in_pieces(framer, stream, cuts)
