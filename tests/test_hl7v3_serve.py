"""PIX/PDQ v3 on the real ``ihe-engine serve``: zeep (a client this project did not write), driven by the WSDLs the
engine serves at /pix?wsdl and /pdq?wsdl, feeds a patient (ITI-44), cross-references it (ITI-45) and pages
through a demographics query (ITI-47 with continuation and cancel). Answers are validated against the official
HL7 v3 schemas when the corpus has them."""

from __future__ import annotations

import pytest
import zeep
from lxml import etree
from zeep.plugins import HistoryPlugin

try:
    from . import hl7v3_messages as m
    from .serving import start_engine
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import hl7v3_messages as m
    from serving import start_engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = start_engine(tmp_path_factory.mktemp("v3-serve") / "var")
    yield engine
    assert engine.stop() == 0, "\n".join(engine.output)


class V3Client:
    """A zeep client of one endpoint; ``call`` sends an HL7 v3 payload and returns the answer element."""

    def __init__(self, url: str) -> None:
        self.history = HistoryPlugin()
        self.client = zeep.Client(url + "?wsdl", plugins=[self.history])

    def call(self, operation: str, payload: bytes) -> etree._Element:
        message = etree.fromstring(payload)
        getattr(self.client.service, operation)(_value_1=list(message), _attr_1=dict(message.attrib))
        envelope = self.history.last_received["envelope"]
        return envelope.find(f"{{{m.SOAP12}}}Body")[0]


def test_wsdls_are_served_with_the_address_asked(engine):
    for name, element in (("pix", "PRPA_IN201309UV02"), ("pdq", "QUQI_IN000003UV01_Cancel")):
        client = zeep.Client(engine.url(name) + "?wsdl")
        (service,) = client.wsdl.services.values()
        (port,) = service.ports.values()
        assert port.binding_options["address"] == engine.url(name)
        assert client.get_element(f"{{{m.HL7}}}{element}") is not None


def test_feed_query_and_page_through_a_real_serve(engine, corpus_dir):
    pix, pdq = V3Client(engine.url("pix")), V3Client(engine.url("pdq"))
    for number in range(1, 6):
        answer = pix.call("PIXManager_PRPA_IN201301UV02", m.add_patient(
            [(m.HOSPITAL, f"Z{number}")], other_ids=[(m.CLINIC, f"ZC{number}")], family="Zeepson",
            given=f"Ana{number}", gender="F", birth=f"2001010{number}"))
        m.assert_valid(corpus_dir, answer)
        assert m.ack_code(answer) == "AA", etree.tostring(answer)

    answer = pix.call("PIXManager_PRPA_IN201309UV02", m.pix_query((m.HOSPITAL, "Z2"), [m.CLINIC]))
    m.assert_valid(corpus_dir, answer)
    assert (m.ack_code(answer), m.query_code(answer)) == ("AA", "OK")
    assert m.values(answer, "//hl7:patient/hl7:id/@extension") == ["ZC2"]

    first = pdq.call("PDQSupplier_PRPA_IN201305UV02", m.pdq_query(family="zeepson", initial_quantity=2,
                                                                  query_id="zeep-1"))
    m.assert_valid(corpus_dir, first)
    assert m.values(first, "hl7:controlActProcess/hl7:queryAck/*/@value") == ["5", "2", "3"]
    second = pdq.call("PDQSupplier_QUQI_IN000003UV01_Continue", m.query_control("zeep-1", quantity=2))
    m.assert_valid(corpus_dir, second)
    pages = [m.values(page, "//hl7:patient/hl7:id[@root='%s']/@extension" % m.HOSPITAL) for page in (first, second)]
    assert pages == [["Z1", "Z2"], ["Z3", "Z4"]]
    cancelled = pdq.call("PDQSupplier_QUQI_IN000003UV01_Cancel", m.query_control("zeep-1", cancel=True))
    m.assert_valid(corpus_dir, cancelled)
    assert m.ack_code(cancelled) == "AA"
    after = pdq.call("PDQSupplier_QUQI_IN000003UV01_Continue", m.query_control("zeep-1"))
    assert m.ack_code(after) == "AE"


def test_hostile_requests_to_a_real_serve(engine):
    url = engine.url("pix")
    status, fault = m.post(url, b"", m.ADD, raw=b"not xml at all")
    assert status == 400 and fault.tag.endswith("Fault")
    deep = b"<a>" * 500 + b"</a>" * 500
    status, fault = m.post(url, b"", m.ADD, raw=m.envelope(deep, m.ADD))
    assert status == 400 and fault.tag.endswith("Fault")
    status, fault = m.post(engine.url("pdq"), m.pdq_query(family="A"), m.ADD)  # a PIX action on the PDQ endpoint
    assert status in (400, 500) and fault.tag.endswith("Fault")
    status, answer = m.post(url, m.add_patient([(m.HOSPITAL, "BIG")], family="É" * 100_000), m.ADD)
    assert status == 200 and m.ack_code(answer) == "AE" and m.details(answer)[0][0] == "104"
    status, answer = m.post(url, m.pix_query((m.HOSPITAL, "BIG")), m.PIX_QUERY)
    assert m.ack_code(answer) == "AE" and m.details(answer)[0][0] == "204"  # the huge name stored nothing
