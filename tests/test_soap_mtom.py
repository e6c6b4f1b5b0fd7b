"""MTOM/XOP: streaming multipart parse, encode/decode round trip, XOP references, bounded memory."""

import base64
import hashlib
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from ihe_engine.errors import RemoteProtocolError
from ihe_engine.ns import XDS, XOP, qn
from ihe_engine.soap.mtom import MultipartParser, OutgoingAttachment, binary_content, encode_mtom, \
    optimize_inline, parse_content_type, parse_mtom, resolve_xop, xop_include

BOUNDARY = "MIMEBoundary_0123456789abcdef"
DELIMITER = b"\r\n--" + BOUNDARY.encode()

# Content made to confuse a parser: CRLFs, dashes and every proper prefix of the real delimiter.
tricky_piece = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"\r\n", b"\r", b"\n", b"--", b"\r\n--", b"\r\n\r\n", b"--" + BOUNDARY.encode()[:-1]]),
    st.integers(min_value=1, max_value=len(DELIMITER) - 1).map(lambda n: DELIMITER[:n]),
    st.just(b"--" + BOUNDARY.encode() + b"-"),
)
content = st.lists(tricky_piece, max_size=12).map(b"".join).filter(lambda data: DELIMITER not in data)


def split_points(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)])]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(content, min_size=0, max_size=5), cuts=st.lists(st.integers(0, 10_000), max_size=25),
       threshold=st.sampled_from([0, 7, 64, 1 << 16]))
def test_round_trip_with_random_parts_and_chunk_splits(tmp_path, parts, cuts, threshold):
    outgoing = [OutgoingAttachment(content_id=f"part{i}@test", content=data, content_type="application/x-test")
                for i, data in enumerate(parts)]
    root_xml = b"<root>\r\n--not a boundary\r\n</root>"
    body = encode_mtom(root_xml, outgoing, boundary=BOUNDARY)
    wire = b"".join(body.chunks(chunk_size=97))
    assert len(wire) == body.length == len(body)
    message = parse_mtom(split_points(wire, cuts), body.content_type, spool_dir=tmp_path,
                         max_part_in_memory=threshold)
    try:
        assert message.root.read() == root_xml
        assert parse_content_type(message.root.content_type).get("type") == "application/soap+xml"
        assert list(message.attachments) == [item.content_id for item in outgoing]
        for item in outgoing:
            received = message.attachments[item.content_id]
            assert received.read() == item.content and received.size == len(item.content)
            assert received.content_type == "application/x-test"
            assert (received.path is not None) == (len(item.content) > threshold)
    finally:
        message.dispose()
    assert not list(tmp_path.glob("mtom-*")), "dispose() removes the spooled files"


@given(cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_base64_transfer_encoding_is_decoded(cuts):
    payload = bytes(range(256)) * 3
    encoded = base64.encodebytes(payload)  # with line breaks, as MIME does
    wire = (b"--b\r\nContent-ID: <root>\r\n\r\n<r/>\r\n--b\r\nContent-ID: <p>\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"\r\n--b--\r\n")
    message = parse_mtom(split_points(wire, cuts), 'multipart/related; boundary=b; type="application/xop+xml"')
    assert message.attachments["p"].read() == payload


def feed_all(parser: MultipartParser, wire: bytes):
    parser.feed(wire)
    return parser.close()


def test_preamble_epilogue_padding_and_folded_headers():
    wire = (b"preamble text\r\n--b  \t\r\nContent-Type: application/xop+xml;\r\n type=\"application/soap+xml\"\r\n"
            b"Content-ID: <r>\r\n\r\n<r/>\r\n--b--\r\nepilogue --b\r\n")
    (part,) = feed_all(MultipartParser("b"), wire)
    assert part.read() == b"<r/>" and part.content_id == "r"
    assert parse_content_type(part.content_type).get("type") == "application/soap+xml"


@pytest.mark.parametrize("wire", [
    b"--b\r\nContent-ID: <r>\r\n\r\n<r/>",                         # no closing boundary at all
    b"--b\r\nContent-ID: <r>\r\n\r\n<r/>\r\n--b\r\n",               # a part opened, never closed
    b"--b\r\nContent-ID: <r>\r\n\r\n<r/>\r\n--b-",                  # close delimiter cut short
    b"no boundary anywhere",
    b"",
])
def test_truncated_multipart_is_refused(tmp_path, wire):
    parser = MultipartParser("b", tmp_path, 0)
    parser.feed(wire)
    with pytest.raises(RemoteProtocolError, match="truncated"):
        parser.close()
    assert not list(tmp_path.iterdir()), "a refused body leaves no spooled file behind"


@pytest.mark.parametrize("wire,message", [
    (b"--b\r\nno colon here\r\n\r\nx\r\n--b--", "malformed"),
    (b"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx\r\n--b--", "not supported"),
    (b"--bjunk\r\n\r\nx\r\n--b--", "unexpected"),
    (b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n--b--", "not base64"),
])
def test_malformed_parts_are_refused(wire, message):
    with pytest.raises(RemoteProtocolError, match=message):
        feed_all(MultipartParser("b"), wire)


def test_oversized_part_headers_are_refused():
    parser = MultipartParser("b", max_header_bytes=100)
    with pytest.raises(RemoteProtocolError, match="headers exceed"):
        parser.feed(b"--b\r\nX-Long: " + b"a" * 200)


@pytest.mark.parametrize("header,boundary,extra", [
    ('multipart/related; boundary=abc; type="application/xop+xml"', "abc", {}),
    ('Multipart/Related;boundary="a;b=c" ;TYPE = "application/xop+xml"; start="<r@x>"; '
     'start-info="application/soap+xml"', "a;b=c", {"start": "<r@x>", "start-info": "application/soap+xml"}),
    ('multipart/related; start-info="application/soap+xml; action=\\"urn:a\\""; boundary=x_y', "x_y",
     {"start-info": 'application/soap+xml; action="urn:a"'}),
    ('multipart/related; junk; boundary = "q\\"uoted"', 'q"uoted', {}),
])
def test_content_type_parameters(header, boundary, extra):
    parsed = parse_content_type(header)
    assert parsed.media_type == "multipart/related" and parsed.get("boundary") == boundary
    for name, value in extra.items():
        assert parsed.get(name) == value


def test_start_parameter_picks_the_root_part():
    wire = (b"--b\r\nContent-ID: <att@x>\r\n\r\nBIN\r\n--b\r\nContent-ID: <root@x>\r\n\r\n<r/>\r\n--b--\r\n")
    message = parse_mtom([wire], 'multipart/related; boundary=b; start="<root@x>"')
    assert message.root.read() == b"<r/>" and list(message.attachments) == ["att@x"]
    with pytest.raises(RemoteProtocolError, match="start"):
        parse_mtom([wire], 'multipart/related; boundary=b; start="<other@x>"')


def test_xop_resolution_and_inline_base64_share_one_api():
    root = etree.fromstring(
        f'<r xmlns="{XDS}" xmlns:xop="{XOP}"><Document id="a"><xop:Include href="cid:doc%401"/></Document>'
        f'<Document id="b">{base64.b64encode(b"inline bytes").decode()}</Document></r>'.encode())
    attachments = {"doc@1": parse_mtom([b"--b\r\nContent-ID: <r>\r\n\r\n<r/>\r\n--b\r\nContent-ID: <doc@1>"
                                        b"\r\nContent-Type: text/plain\r\n\r\noptimized\r\n--b--"],
                                       "multipart/related; boundary=b").attachments["doc@1"]}
    assert set(resolve_xop(root, attachments)) == {"doc@1"}
    optimized, inline = root.findall(qn(XDS, "Document"))
    assert binary_content(optimized, attachments).read() == b"optimized"
    assert binary_content(optimized, attachments).content_type == "text/plain"
    with binary_content(inline, attachments).open() as handle:
        assert handle.read() == b"inline bytes"


def test_dangling_xop_reference_is_refused():
    root = etree.fromstring(f'<r xmlns:xop="{XOP}"><d><xop:Include href="cid:missing"/></d></r>'.encode())
    with pytest.raises(RemoteProtocolError, match="missing"):
        resolve_xop(root, {})
    mixed = etree.fromstring(f'<r xmlns:xop="{XOP}"><d>text<xop:Include href="cid:x"/></d></r>'.encode())
    with pytest.raises(RemoteProtocolError, match="only content"):
        resolve_xop(mixed, {"x": object()})


def test_optimize_inline_moves_base64_into_parts():
    root = etree.fromstring(f'<r xmlns="{XDS}"><Document id="a">{base64.b64encode(b"abc").decode()}</Document>'
                            f'<Other>{base64.b64encode(b"keep").decode()}</Other></r>'.encode())
    (attachment,) = optimize_inline(root, [qn(XDS, "Document")])
    assert attachment.content == b"abc"
    include = root.find(f"{{{XDS}}}Document/{{{XOP}}}Include")
    assert include.get("href") == "cid:" + attachment.content_id
    xop_include(etree.SubElement(root, "x"), "a b@c")
    assert root.find(f"x/{{{XOP}}}Include").get("href") == "cid:a%20b@c"


def _write_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
            digest.update(block)
    return digest.hexdigest()


def test_50mb_attachment_streams_with_bounded_memory(tmp_path):
    """Encode from a file and parse back, 64 KB at a time: the part lands in a file, memory stays small."""
    source = tmp_path / "big.bin"
    expected = _write_file(source, 50 * 1024 * 1024)
    spool = tmp_path / "spool"
    body = encode_mtom(b"<root/>", [OutgoingAttachment(content_id="big@test", content=source)])
    tracemalloc.start()
    try:
        message = parse_mtom(body.chunks(), body.content_type, spool_dir=spool)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    big = message.attachments["big@test"]
    assert big.size == 50 * 1024 * 1024 and big.data is None
    assert big.path is not None and big.path.parent == spool and big.path.stat().st_size == big.size
    digest = hashlib.sha256()
    with big.open() as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == expected
    assert peak < 2 * 1024 * 1024, f"peak traced memory {peak} bytes: the attachment was buffered"
    message.dispose()
    assert not big.path.exists()


def _many_parts(count: int, size: int):
    """An MTOM body of ``count`` small attachments, generated chunk by chunk (the test holds none of it)."""
    yield b'--B\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\nContent-ID: <root>\r\n\r\n<x/>'
    payload = b"a" * size
    for number in range(count):
        yield b"\r\n--B\r\nContent-ID: <p%d>\r\n\r\n" % number
        yield payload
    yield b"\r\n--B--\r\n"


def test_many_small_parts_share_one_memory_budget_and_the_rest_is_spooled(tmp_path):
    """900 parts of 60 KiB (54 MB), each under the per-part threshold: past 1 MiB in all they go to disk."""
    tracemalloc.start()
    try:
        message = parse_mtom(_many_parts(900, 60 * 1024), 'multipart/related; boundary=B; start="<root>"',
                             spool_dir=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    in_memory = sum(part.size for part in message.attachments.values() if part.data is not None)
    assert len(message.attachments) == 900
    assert in_memory <= 1024 * 1024
    assert peak < 4 * 1024 * 1024, f"peak traced memory {peak} bytes: small parts were kept in memory"
    assert message.attachments["p899"].read() == b"a" * 60 * 1024
    message.dispose()
    assert not list(tmp_path.iterdir())


def test_more_parts_than_the_default_limit_are_refused_and_nothing_is_left_on_disk(tmp_path):
    with pytest.raises(RemoteProtocolError, match="more than 1000 parts"):
        parse_mtom(_many_parts(2000, 60 * 1024), 'multipart/related; boundary=B; start="<root>"',
                   spool_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_part_headers_have_a_total_budget():
    parser = MultipartParser("b", max_memory=1000)
    header = b"Content-ID: <p>\r\nX-Pad: " + b"y" * 300 + b"\r\n\r\n"
    with pytest.raises(RemoteProtocolError, match="headers total more than 1000 bytes"):
        parser.feed(b"--b\r\n" + b"x\r\n--b\r\n".join([header] * 4) + b"x\r\n--b--\r\n")


def test_sweep_spool_removes_only_stale_mtom_files(tmp_path):
    from ihe_engine.soap.mtom import sweep_spool

    stale, fresh, other = tmp_path / "mtom-old.part", tmp_path / "mtom-new.part", tmp_path / "other-old"
    for path in (stale, fresh, other):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(other, (two_hours_ago, two_hours_ago))
    assert sweep_spool(tmp_path, older_than=3600) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mtom-new.part", "other-old"]
    assert sweep_spool(tmp_path / "missing", older_than=3600) == 0
