"""Published HL7 v3 PIX/PDQ requests (the Open eHealth IPF test messages in the corpus, MESA PIX query examples
among them) posted as they are to a loopback PIX Manager / PDQ Supplier: each is read (never a SOAP fault, an AR
or a QE), answered as the IHE TF says for its case, and every answer validates against the official schemas.
Skips when the corpus lacks them; the files are read in place."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from ihe_engine.config import Settings

try:
    from . import hl7v3_messages as m
    from .xds_testing import LoopbackRuntime
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import hl7v3_messages as m
    from xds_testing import LoopbackRuntime

EXAMPLES = "oehf-ipf/commons/ihe/hl7v3/src/test/resources/translation"
HIMSS2005, MESA_OTHER = "1.3.6.1.4.1.21367.2005.1.1", "1.3.6.1.4.1.21367.2005.1.2"
FEEDS = ["pixfeed/v3/PIX_FEED_REG_Maximal_Request.xml", "pixfeed/v3/PIX_FEED_REV_Maximal_Request.xml",
         "pixsource/v3/A01_Response.xml", "pixsource/v3/A01_with_BR_Response.xml", "pixsource/v3/A04_Response.xml",
         "pixsource/v3/A08_Response.xml"]
MERGES = ["pixfeed/v3/PIX_FEED_MERGE_Maximal_Request.xml", "pixsource/v3/A40_Response.xml"]
PDQ = ["pdq/v3/PDQ.xml", "pdq/v3/PDQ_ID_Query.xml", "pdq/v3/PDQ_Maximal_Query.xml",
       "pdq/v3/PDQ_connectathon2011_namespaces_issue.xml", "pdq/v3/PDQ_unused_global_namespace_issue.xml",
       "pdq/v3/PDQ_with_PID4.xml"]


def example(corpus_dir: Path, relative: str) -> bytes:
    path = corpus_dir / EXAMPLES / relative
    if not path.is_file():
        pytest.skip(f"{relative} not in the corpus")
    return path.read_bytes()


@pytest.fixture
def engine(database, reactor_thread, tmp_path):
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data"), reactor=reactor_thread, db=database)
    with m.v3_endpoints(reactor_thread, runtime, tmp_path / "spool") as base:
        yield base


def post(base: str, corpus_dir: Path, data: bytes) -> etree._Element:
    name = etree.QName(etree.fromstring(data)).localname
    path = "/pdq" if name in ("PRPA_IN201305UV02", "QUQI_IN000003UV01") else "/pix"
    payload = data.split(b"?>", 1)[1] if data.lstrip().startswith(b"<?xml") else data
    status, answer = m.post(base + path, payload, f"urn:hl7-org:v3:{name}")
    assert status == 200 and not answer.tag.endswith("Fault"), etree.tostring(answer)
    m.assert_valid(corpus_dir, answer)
    return answer


def test_feed_examples_are_accepted(engine, corpus_dir):
    for relative in FEEDS:
        answer = post(engine, corpus_dir, example(corpus_dir, relative))
        assert m.ack_code(answer) == "AA", (relative, m.details(answer))


def test_merge_examples_get_a_business_answer(engine, corpus_dir):
    for relative in FEEDS:
        post(engine, corpus_dir, example(corpus_dir, relative))
    for relative in MERGES:
        answer = post(engine, corpus_dir, example(corpus_dir, relative))
        # the maximal example merges across two domains (103); the A40's prior id was never fed (204)
        assert m.ack_code(answer) in ("AA", "AE")
        assert {code for code, _ in m.details(answer)} <= {"103", "204"}, (relative, m.details(answer))


def test_mesa_pix_query_examples(engine, corpus_dir):
    feed = m.add_patient([(HIMSS2005, "PIX10501")], other_ids=[(HIMSS2005, "ABC10501"), (MESA_OTHER, "X10501")])
    status, answer = m.post(engine + "/pix", feed, m.ADD)
    assert m.ack_code(answer) == "AA"
    for relative in ("NistPixpdq_Mesa10501-04_Example_01.xml", "NistPixpdq_Mesa10501-05_Example_01.xml"):
        answer = post(engine, corpus_dir, example(corpus_dir, f"pixquery/v3/{relative}"))
        assert (m.ack_code(answer), m.query_code(answer)) == ("AA", "OK")
        assert m.values(answer, "//hl7:patient/hl7:id/@extension") == ["X10501"]
    for relative in ("NistPixpdq_Mesa10502-03~UnknownId_Example_01.xml",
                     "NistPixpdq_Mesa10503-01~UnknownAssigningAuth_Example_01.xml"):
        answer = post(engine, corpus_dir, example(corpus_dir, f"pixquery/v3/{relative}"))
        assert (m.ack_code(answer), m.query_code(answer)) == ("AE", "AE")
        ((code, location),) = m.details(answer)
        assert code == "204" and location.endswith("/patientIdentifier[1]/value[1]")


def test_pdq_examples_are_answered(engine, corpus_dir):
    for relative in FEEDS:
        post(engine, corpus_dir, example(corpus_dir, relative))
    status, answer = m.post(engine + "/pix", m.add_patient([(MESA_OTHER, "P1")], family="MOORE", given="CHIP",
                                                           gender="F", birth="19400101"), m.ADD)
    assert m.ack_code(answer) == "AA"
    for relative in PDQ:
        answer = post(engine, corpus_dir, example(corpus_dir, relative))
        assert m.ack_code(answer) == "AA", (relative, m.details(answer))
        assert m.query_code(answer) in ("OK", "NF")
