"""ITI-47 Patient Demographics Query HL7 V3 over real loopback HTTP, on SQLite and PostgreSQL: matches, domains,
the error cases, and the continuation option (pages served by another endpoint on the same store, cancel).
Every answer is validated against the official schemas (when the corpus has them)."""

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

PATIENTS = "hl7:controlActProcess/hl7:subject/hl7:registrationEvent/hl7:subject1/hl7:patient"
ACK = "hl7:controlActProcess/hl7:queryAck"


def cx(root: str, value: str) -> CX:
    return CX(id=value, universal_id=root, universal_id_type="ISO")


def seed(database) -> None:
    """Seven MARTINs (M1..M7, the odd ones also known to the clinic) and one DURAND."""
    with UnitOfWork(database.sessions) as uow:
        store = IdentityStore(uow.session)
        for number in range(1, 8):
            ids = [cx(m.HOSPITAL, f"M{number}")] + ([cx(m.CLINIC, f"CM{number}")] if number % 2 else [])
            store.create_or_update(ids, Demographics(family_name="Martin", given_name=f"Paul{number}",
                                                     birth_date=f"1980010{number}", sex="M", city="Lyon",
                                                     postal_code="69001", phone="+33400000000"),
                                   FeedEvent(kind="A01"))
        store.create_or_update([cx(m.HOSPITAL, "D1")], Demographics(family_name="Durand", given_name="Anne",
                                                                    birth_name="Lefèvre", birth_date="19900512",
                                                                    sex="F"), FeedEvent(kind="A01"))
        uow.commit()


def runtime_for(database, reactor, tmp_path, **extra) -> LoopbackRuntime:
    return LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data", extra=extra), reactor=reactor, db=database)


@pytest.fixture
def pdq(database, reactor_thread, tmp_path):
    seed(database)
    runtime = runtime_for(database, reactor_thread, tmp_path)
    with m.v3_endpoints(reactor_thread, runtime, tmp_path / "spool") as base:
        yield base + "/pdq", runtime


def ask(url: str, corpus_dir, payload: bytes, action: str = m.PDQ_QUERY) -> etree._Element:
    status, answer = m.post(url, payload, action)
    assert status == 200
    m.assert_valid(corpus_dir, answer)
    return answer


def ids(answer: etree._Element) -> list[list[tuple[str, str]]]:
    return [[(element.get("root"), element.get("extension")) for element in patient.findall(f"{{{m.HL7}}}id")]
            for patient in answer.xpath(PATIENTS, namespaces={"hl7": m.HL7})]


def counts(answer: etree._Element) -> tuple[int, int, int]:
    return tuple(int(m.first(answer, f"{ACK}/hl7:{name}/@value"))
                 for name in ("resultTotalQuantity", "resultCurrentQuantity", "resultRemainingQuantity"))


def hospital_ids(answer: etree._Element) -> list[str]:
    return [extension for patient in ids(answer) for root, extension in patient if root == m.HOSPITAL]


# -- queries ----------------------------------------------------------------------------------------------------------

def test_matches_come_with_their_traits(pdq, corpus_dir):
    url, runtime = pdq
    answer = ask(url, corpus_dir, m.pdq_query(family="Durand", given="Anne", gender="F", birth="1990"))
    assert (m.ack_code(answer), m.query_code(answer)) == ("AA", "OK")
    assert ids(answer) == [[(m.HOSPITAL, "D1")]]
    person = m.first(answer, f"{PATIENTS}/hl7:patientPerson")
    assert m.values(person, "hl7:name/hl7:family[not(@qualifier)]/text()") == ["Durand"]
    assert m.values(person, "hl7:name/hl7:family[@qualifier='BR']/text()") == ["Lefèvre"]
    assert m.first(person, "hl7:birthTime/@value") == "19900512"
    assert m.first(person, "hl7:administrativeGenderCode/@code") == "F"
    assert m.first(answer, f"{PATIENTS}/hl7:subjectOf1/hl7:queryMatchObservation/hl7:value/@value") == "100"
    assert counts(answer) == (1, 1, 0)
    (record,) = runtime.audit.records
    assert (record.event_id[0], record.action, record.outcome, record.event_types[0][0]) == ("110112", "E", 0, "ITI-47")
    assert [obj.object_id for obj in record.objects if obj.type_code == 1] == [f"D1^^^&{m.HOSPITAL}&ISO"]


def test_birth_name_and_accents_match(pdq, corpus_dir):
    url, _ = pdq
    answer = ask(url, corpus_dir, m.pdq_query(birth_family="LEFEVRE"))
    assert hospital_ids(answer) == ["D1"]


def test_minimum_degree_match_asks_for_sound_alike_names(pdq, corpus_dir):
    url, _ = pdq
    assert m.query_code(ask(url, corpus_dir, m.pdq_query(family="Durant"))) == "NF"
    answer = ask(url, corpus_dir, m.pdq_query(family="Durant", minimum_degree=50))
    assert hospital_ids(answer) == ["D1"]
    (score,) = m.values(answer, f"{PATIENTS}/hl7:subjectOf1/hl7:queryMatchObservation/hl7:value/@value")
    assert 50 <= int(score) < 100


def test_no_match_is_nf(pdq, corpus_dir):
    url, _ = pdq
    answer = ask(url, corpus_dir, m.pdq_query(family="Nobody"))
    assert (m.ack_code(answer), m.query_code(answer)) == ("AA", "NF")
    assert ids(answer) == [] and counts(answer) == (0, 0, 0)


def test_domains_restrict_the_ids_and_the_matches(pdq, corpus_dir):
    url, _ = pdq
    answer = ask(url, corpus_dir, m.pdq_query(family="Martin", domains=[m.CLINIC]))
    assert ids(answer) == [[(m.CLINIC, f"CM{number}")] for number in (1, 3, 5, 7)]


def test_living_subject_id(pdq, corpus_dir):
    url, _ = pdq
    assert hospital_ids(ask(url, corpus_dir, m.pdq_query(identifier=(m.CLINIC, "CM3")))) == ["M3"]
    answer = ask(url, corpus_dir, m.pdq_query(identifier=(m.UNKNOWN_DOMAIN, "CM3")))
    assert m.query_code(answer) == "NF"


def test_unknown_domain_is_ae_204_at_its_repetition(pdq, corpus_dir):
    url, runtime = pdq
    answer = ask(url, corpus_dir, m.pdq_query(family="Martin", domains=[m.CLINIC, m.UNKNOWN_DOMAIN]))
    assert (m.ack_code(answer), m.query_code(answer)) == ("AE", "AE")
    assert m.details(answer) == [("204", "/PRPA_IN201305UV02/controlActProcess[1]/queryByParameter[1]/"
                                         "parameterList[1]/otherIDsScopingOrganization[2]/value[1]")]
    assert ids(answer) == [] and runtime.audit.records[-1].outcome == 4


@pytest.mark.parametrize("payload, code", [
    (m.pdq_query(), "101"),
    (m.pdq_query(family="N" * 10_000), "104"),
    (m.pdq_query(family="Martin", birth="19800"), "102"),
    (m.pdq_query(family="Martin", gender="Z"), "103"),
    (m.pdq_query(family="Martin", initial_quantity=0), "102"),
])
def test_bad_parameters_are_qe(pdq, corpus_dir, payload, code):
    url, _ = pdq
    answer = ask(url, corpus_dir, payload)
    assert (m.ack_code(answer), m.query_code(answer)) == ("AE", "QE")
    assert m.details(answer)[0][0] == code


def test_too_many_matches_asks_to_narrow_the_query(database, reactor_thread, tmp_path, corpus_dir):
    seed(database)
    runtime = runtime_for(database, reactor_thread, tmp_path, pdq_max_matches=5)
    with m.v3_endpoints(reactor_thread, runtime, tmp_path / "spool") as base:
        answer = ask(base + "/pdq", corpus_dir, m.pdq_query(family="Martin"))
        assert (m.ack_code(answer), m.query_code(answer)) == ("AE", "QE")
        assert ids(answer) == []
        assert len(hospital_ids(ask(base + "/pdq", corpus_dir, m.pdq_query(family="Martin", given="Paul3")))) == 1


# -- continuation -------------------------------------------------------------------------------------------------------

def test_continuation_pages_through_every_match_on_any_endpoint(pdq, database, reactor_thread, tmp_path,
                                                                 corpus_dir):
    url, runtime = pdq
    first = ask(url, corpus_dir, m.pdq_query(family="Martin", initial_quantity=3, query_id="paged"))
    assert counts(first) == (7, 3, 4)
    seen = hospital_ids(first)
    other = runtime_for(database, reactor_thread, tmp_path / "worker2")  # another worker on the same store
    with m.v3_endpoints(reactor_thread, other, tmp_path / "spool2") as base:
        second = ask(base + "/pdq", corpus_dir, m.query_control("paged", quantity=3), m.CONTINUE)
    assert (m.ack_code(second), m.query_code(second)) == ("AA", "OK")
    assert counts(second) == (7, 3, 1)
    assert m.first(second, f"{ACK}/hl7:queryId/@extension") == "paged"
    assert m.first(second, "hl7:controlActProcess/hl7:queryByParameter/hl7:queryId/@extension") == "paged"
    seen += hospital_ids(second)
    third = ask(url, corpus_dir, m.query_control("paged"), m.CONTINUE)  # default: the initial quantity
    assert counts(third) == (7, 1, 0)
    seen += hospital_ids(third)
    assert seen == [f"M{number}" for number in range(1, 8)]
    ended = ask(url, corpus_dir, m.query_control("paged"), m.CONTINUE)
    assert (m.ack_code(ended), m.query_code(ended)) == ("AE", "AE")
    assert m.details(ended) == [("204", "/QUQI_IN000003UV01/controlActProcess[1]/queryContinuation[1]/queryId[1]")]
    pages = [record for record in runtime.audit.records + other.audit.records if record.outcome == 0]
    assert len(pages) == 3 and all(record.event_types[0][0] == "ITI-47" for record in pages)


def test_cancel_ends_the_query(pdq, corpus_dir):
    url, runtime = pdq
    ask(url, corpus_dir, m.pdq_query(family="Martin", initial_quantity=2, query_id="to-cancel"))
    cancelled = ask(url, corpus_dir, m.query_control("to-cancel", cancel=True), m.CANCEL)
    assert cancelled.tag == f"{{{m.HL7}}}MCCI_IN000002UV01" and m.ack_code(cancelled) == "AA"
    after = ask(url, corpus_dir, m.query_control("to-cancel"), m.CONTINUE)
    assert m.ack_code(after) == "AE" and m.details(after)[0][0] == "204"
    again = ask(url, corpus_dir, m.query_control("to-cancel", cancel=True), m.CANCEL)
    assert m.ack_code(again) == "AE" and m.details(again)[0][0] == "204"
    assert runtime.audit.records[-1].outcome == 4


def test_a_new_query_under_the_same_id_starts_over(pdq, corpus_dir):
    url, _ = pdq
    ask(url, corpus_dir, m.pdq_query(family="Martin", initial_quantity=2, query_id="again"))
    ask(url, corpus_dir, m.query_control("again"), m.CONTINUE)
    restart = ask(url, corpus_dir, m.pdq_query(family="Martin", initial_quantity=2, query_id="again"))
    assert hospital_ids(restart) == ["M1", "M2"] and counts(restart) == (7, 2, 5)
    assert hospital_ids(ask(url, corpus_dir, m.query_control("again"), m.CONTINUE)) == ["M3", "M4"]
    ask(url, corpus_dir, m.pdq_query(family="Martin", initial_quantity=20, query_id="again"))  # all fit now
    assert m.ack_code(ask(url, corpus_dir, m.query_control("again"), m.CONTINUE)) == "AE"


def test_a_wrong_status_code_in_the_continuation_is_refused(pdq, corpus_dir):
    url, _ = pdq
    ask(url, corpus_dir, m.pdq_query(family="Martin", initial_quantity=2, query_id="status"))
    payload = m.query_control("status").replace(b"waitContinuedQueryResponse", b"aborted")
    answer = ask(url, corpus_dir, payload, m.CONTINUE)
    assert m.ack_code(answer) == "AE" and m.details(answer)[0][0] == "103"
    assert hospital_ids(ask(url, corpus_dir, m.query_control("status"), m.CONTINUE)) == ["M3", "M4"]
