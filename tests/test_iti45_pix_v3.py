"""ITI-45 PIXV3 Query over real loopback HTTP, on SQLite and PostgreSQL: the cases of the IHE TF, each answer
validated against the official PRPA_IN201310UV02 schema (when the corpus has it)."""

from __future__ import annotations

import pytest
from lxml import etree

from ihe_engine.config import Settings
from ihe_engine.identity.cx import CX
from ihe_engine.identity.store import Demographics, FeedEvent, IdentityStore
from ihe_engine.storage import UnitOfWork

try:
    from . import hl7v3_messages as m
    from .xds_testing import LoopbackRuntime
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import hl7v3_messages as m
    from xds_testing import LoopbackRuntime

CONFIGURED = "1.2.250.1.999.1.7"
VALUE = "hl7:controlActProcess/hl7:queryByParameter/hl7:parameterList"


def cx(root: str, value: str) -> CX:
    return CX(id=value, universal_id=root, universal_id_type="ISO")


def seed(database) -> None:
    with UnitOfWork(database.sessions) as uow:
        store = IdentityStore(uow.session)
        store.create_or_update([cx(m.HOSPITAL, "H1"), cx(m.CLINIC, "C1"), cx(m.LAB, "L1")],
                               Demographics(family_name="Dupont"), FeedEvent(kind="A01"))
        store.create_or_update([cx(m.HOSPITAL, "H2")], Demographics(family_name="Seul"), FeedEvent(kind="A01"))
        store.create_or_update([cx(m.HOSPITAL, "H3"), cx(m.CLINIC, "C3")], Demographics(), FeedEvent(kind="A01"))
        store.create_or_update([cx(m.HOSPITAL, "H4")], Demographics(), FeedEvent(kind="A01"))
        store.merge(cx(m.HOSPITAL, "H3"), cx(m.HOSPITAL, "H4"), FeedEvent(kind="A40"))
        uow.commit()


@pytest.fixture
def pix(database, reactor_thread, tmp_path):
    seed(database)
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data", extra={"pix_domains": [CONFIGURED]}),
                              reactor=reactor_thread, db=database)
    with m.v3_endpoints(reactor_thread, runtime, tmp_path / "spool") as base:
        yield base + "/pix", runtime


def query(url: str, corpus_dir, identifier, data_sources=(), **kwargs) -> etree._Element:
    status, answer = m.post(url, m.pix_query(identifier, list(data_sources), **kwargs), m.PIX_QUERY)
    assert status == 200
    m.assert_valid(corpus_dir, answer)
    return answer


def returned_ids(answer: etree._Element) -> list[tuple[str, str]]:
    patients = answer.xpath("hl7:controlActProcess/hl7:subject/hl7:registrationEvent/hl7:subject1/hl7:patient",
                            namespaces={"hl7": m.HL7})
    assert len(patients) <= 1
    return [(element.get("root"), element.get("extension"))
            for patient in patients for element in patient.findall(f"{{{m.HL7}}}id")]


def test_found_returns_every_other_identifier(pix, corpus_dir):
    url, runtime = pix
    answer = query(url, corpus_dir, (m.HOSPITAL, "H1"), query_id="q-found")
    assert (m.ack_code(answer), m.query_code(answer)) == ("AA", "OK")
    assert returned_ids(answer) == [(m.CLINIC, "C1"), (m.LAB, "L1")]
    assert m.first(answer, "hl7:controlActProcess/hl7:queryAck/hl7:queryId/@extension") == "q-found"
    assert m.first(answer, f"{VALUE}/hl7:patientIdentifier/hl7:value/@extension") == "H1"  # echoed
    (record,) = runtime.audit.records
    assert (record.event_id[0], record.action, record.outcome, record.event_types[0][0]) == ("110112", "E", 0, "ITI-45")
    patients = [obj.object_id for obj in record.objects if obj.type_code == 1]
    assert patients == [f"H1^^^&{m.HOSPITAL}&ISO", f"C1^^^&{m.CLINIC}&ISO", f"L1^^^&{m.LAB}&ISO"]
    (query_object,) = [obj for obj in record.objects if obj.type_code == 2]
    assert (query_object.type_code_role, query_object.object_id) == (24, "q-found@1.2.250.1.999.6")
    assert etree.fromstring(query_object.query).tag == f"{{{m.HL7}}}queryByParameter"


def test_data_sources_restrict_the_answer(pix, corpus_dir):
    url, _ = pix
    answer = query(url, corpus_dir, (m.HOSPITAL, "H1"), [m.CLINIC])
    assert (m.ack_code(answer), m.query_code(answer)) == ("AA", "OK")
    assert returned_ids(answer) == [(m.CLINIC, "C1")]


@pytest.mark.parametrize("data_sources", [[m.LAB], [CONFIGURED]])
def test_known_patient_without_ids_in_the_domains_is_nf(pix, corpus_dir, data_sources):
    url, _ = pix
    answer = query(url, corpus_dir, (m.HOSPITAL, "H2"), data_sources)
    assert (m.ack_code(answer), m.query_code(answer)) == ("AA", "NF")
    assert returned_ids(answer) == []


def test_a_subsumed_identifier_answers_for_its_survivor(pix, corpus_dir):
    url, _ = pix
    answer = query(url, corpus_dir, (m.HOSPITAL, "H4"), [m.CLINIC])
    assert returned_ids(answer) == [(m.CLINIC, "C3")]


@pytest.mark.parametrize("identifier, data_sources, location", [
    ((m.HOSPITAL, "NOBODY"), [], "patientIdentifier[1]/value[1]"),
    ((m.UNKNOWN_DOMAIN, "H1"), [], "patientIdentifier[1]/value[1]"),
    ((m.HOSPITAL, "H1"), [m.CLINIC, m.UNKNOWN_DOMAIN], "dataSource[2]/value[1]"),
])
def test_unknown_identifier_or_domain_is_ae_204(pix, corpus_dir, identifier, data_sources, location):
    url, runtime = pix
    answer = query(url, corpus_dir, identifier, data_sources)
    assert (m.ack_code(answer), m.query_code(answer)) == ("AE", "AE")
    assert m.details(answer) == [("204", f"/PRPA_IN201309UV02/controlActProcess[1]/queryByParameter[1]/"
                                         f"parameterList[1]/{location}")]
    assert returned_ids(answer) == []
    assert runtime.audit.records[-1].outcome == 4


def test_malformed_queries_are_qe(pix, corpus_dir):
    url, _ = pix
    payload = m.pix_query((m.HOSPITAL, "H1"))
    no_identifier = payload.replace(b"<patientIdentifier>", b"<!--").replace(b"</patientIdentifier>", b"-->")
    two = payload.replace(b"</parameterList>", b"<patientIdentifier><value root=\"1.2.3\" extension=\"9\"/>"
                                               b"<semanticsText>Patient.Id</semanticsText></patientIdentifier>"
                                               b"</parameterList>")
    no_extension = m.pix_query((m.HOSPITAL, ""))
    for body, code in ((no_identifier, "101"), (two, "102"), (no_extension, "101")):
        status, answer = m.post(url, body, m.PIX_QUERY)
        assert status == 200
        assert (m.ack_code(answer), m.query_code(answer)) == ("AE", "QE")
        assert m.details(answer)[0][0] == code


def test_a_query_without_query_by_parameter_still_gets_a_valid_answer(pix, corpus_dir):
    url, _ = pix
    payload = m.pix_query((m.HOSPITAL, "H1"))
    start, end = payload.index(b"<queryByParameter>"), payload.index(b"</queryByParameter>") + 19
    status, answer = m.post(url, payload[:start] + payload[end:], m.PIX_QUERY)
    assert status == 200 and m.query_code(answer) == "QE"
    m.assert_valid(corpus_dir, answer)
