"""ITI-44 Patient Identity Feed HL7 V3 over real loopback HTTP, on SQLite and PostgreSQL.

Every answer is validated against the official MCCI_IN000002UV01 schema (when the corpus has it); every refusal
is shown to have changed nothing in the identity store.
"""

from __future__ import annotations

import re

import pytest
from lxml import etree
from sqlalchemy import func, select

from ihe_engine.config import Settings
from ihe_engine.france.nir import nir_key
from ihe_engine.identity.cx import CX
from ihe_engine.identity.store import IdentifierState, IdentityStore
from ihe_engine.identity.tables import IdentityEvent, Patient, PatientIdentifier

try:
    from . import hl7v3_messages as m
    from .xds_testing import LoopbackRuntime
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import hl7v3_messages as m
    from xds_testing import LoopbackRuntime

PIX = "/pix"


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def notify(self, session, patient_ids) -> None:
        self.calls.append(list(patient_ids))


@pytest.fixture
def runtime(database, reactor_thread, tmp_path):
    return LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data"), reactor=reactor_thread, db=database)


@pytest.fixture
def pix(runtime, reactor_thread, tmp_path):
    notifier = RecordingNotifier()
    with m.v3_endpoints(reactor_thread, runtime, tmp_path / "spool", notifier=notifier) as base:
        yield base + PIX, runtime, notifier


def cx(root: str, value: str) -> CX:
    return CX(id=value, universal_id=root, universal_id_type="ISO")


def snapshot(database) -> tuple:
    with database.sessions() as session:
        return tuple(session.scalar(select(func.count()).select_from(table))
                     for table in (Patient, PatientIdentifier, IdentityEvent)), \
            tuple(session.execute(select(PatientIdentifier.value, PatientIdentifier.status, PatientIdentifier.patient_id)
                                  .order_by(PatientIdentifier.id)))


def resolve(database, identifier: CX):
    with database.sessions() as session:
        return IdentityStore(session).resolve(identifier)


def patient_row(database, identifier: CX) -> Patient:
    with database.sessions() as session:
        resolved = IdentityStore(session).resolve(identifier)
        patient = session.get(Patient, resolved.patient_id)
        session.expunge(patient)
        return patient


def send(url: str, payload: bytes, action: str, corpus_dir=None):
    status, answer = m.post(url, payload, action)
    assert status == 200
    if corpus_dir is not None:
        m.assert_valid(corpus_dir, answer)
    return answer


# -- add / revise ---------------------------------------------------------------------------------------------------

def test_add_creates_patient_with_every_identifier_and_trait(pix, database, corpus_dir):
    url, runtime, notifier = pix
    payload = m.add_patient([(m.HOSPITAL, "H1")], other_ids=[(m.CLINIC, "C1")], family="Dupont", given="Jean",
                            birth_family="Martin", gender="M", birth="19700102", city="Lyon", postal="69001",
                            birthplace="69123")
    answer = send(url, payload, m.ADD, corpus_dir)
    assert m.ack_code(answer) == "AA" and m.details(answer) == []
    assert m.first(answer, "hl7:acknowledgement/hl7:targetMessage/hl7:id/@root") == \
        m.first(etree.fromstring(payload), "hl7:id/@root")
    hospital, clinic = resolve(database, cx(m.HOSPITAL, "H1")), resolve(database, cx(m.CLINIC, "C1"))
    assert hospital.patient_id == clinic.patient_id and hospital.is_active
    patient = patient_row(database, cx(m.HOSPITAL, "H1"))
    assert (patient.family_name, patient.given_name, patient.birth_name, patient.birth_date, patient.sex) == \
        ("Dupont", "Jean", "Martin", "19700102", "M")
    assert (patient.city, patient.postal_code, patient.phone, patient.birthplace) == \
        ("Lyon", "69001", "+33100000000", "69123")
    (record,) = runtime.audit.records
    assert (record.event_id[0], record.action, record.outcome, record.event_types[0][0]) == ("110110", "C", 0, "ITI-44")
    assert record.objects[0].object_id == f"H1^^^&{m.HOSPITAL}&ISO"
    assert notifier.calls == [[hospital.patient_id]]  # a person created with two ids: consumers hear of it


def test_revise_updates_traits_and_creates_an_unknown_patient(pix, database, corpus_dir):
    url, runtime, _ = pix
    send(url, m.add_patient([(m.HOSPITAL, "H2")], family="Durand", city="Paris"), m.ADD)
    answer = send(url, m.revise_patient([(m.HOSPITAL, "H2")], family="Durand-Petit", city="Nice"), m.REVISE,
                  corpus_dir)
    assert m.ack_code(answer) == "AA"
    patient = patient_row(database, cx(m.HOSPITAL, "H2"))
    assert (patient.family_name, patient.city) == ("Durand-Petit", "Nice")
    assert runtime.audit.records[-1].action == "U"
    assert m.ack_code(send(url, m.revise_patient([(m.HOSPITAL, "H3")]), m.REVISE)) == "AA"
    assert resolve(database, cx(m.HOSPITAL, "H3")).is_active


# -- merge -----------------------------------------------------------------------------------------------------------

def test_merge_subsumes_the_prior_id_into_the_survivor(pix, database, corpus_dir):
    url, runtime, _ = pix
    send(url, m.add_patient([(m.HOSPITAL, "S1")]), m.ADD)
    send(url, m.add_patient([(m.HOSPITAL, "OLD1")], other_ids=[(m.LAB, "L1")]), m.ADD)
    answer = send(url, m.merge_patients((m.HOSPITAL, "S1"), (m.HOSPITAL, "OLD1")), m.MERGE, corpus_dir)
    assert m.ack_code(answer) == "AA"
    survivor, old = resolve(database, cx(m.HOSPITAL, "S1")), resolve(database, cx(m.HOSPITAL, "OLD1"))
    assert old.state is IdentifierState.SUBSUMED and old.patient_id == survivor.patient_id
    assert resolve(database, cx(m.LAB, "L1")).patient_id == survivor.patient_id  # other domains follow
    delete, update = runtime.audit.records[-2:]
    assert (delete.action, delete.objects[0].object_id) == ("D", f"OLD1^^^&{m.HOSPITAL}&ISO")
    assert (update.action, update.objects[0].object_id, update.outcome) == ("U", f"S1^^^&{m.HOSPITAL}&ISO", 0)


@pytest.mark.parametrize("survivor, subsumed, code, where", [
    ((m.HOSPITAL, "S2"), (m.HOSPITAL, "NOBODY"), "204", "priorRegisteredRole[1]/id[1]"),
    ((m.HOSPITAL, "S2"), (m.HOSPITAL, "S2"), "205", "priorRegisteredRole[1]/id[1]"),
    ((m.HOSPITAL, "S2"), (m.CLINIC, "C2"), "103", "priorRegisteredRole[1]/id[1]"),
    ((m.HOSPITAL, "NOBODY"), (m.HOSPITAL, "O2"), "204", "patient[1]/id[1]"),
])
def test_merge_refusals_change_nothing(pix, database, corpus_dir, survivor, subsumed, code, where):
    url, runtime, _ = pix
    for ids in ([(m.HOSPITAL, "S2")], [(m.HOSPITAL, "O2")], [(m.CLINIC, "C2")]):
        send(url, m.add_patient(ids), m.ADD)
    before = snapshot(database)
    answer = send(url, m.merge_patients(survivor, subsumed), m.MERGE, corpus_dir)
    assert m.ack_code(answer) == "AE"
    ((detail_code, location),) = m.details(answer)
    assert detail_code == code and location.endswith(where), location
    assert snapshot(database) == before
    assert {record.outcome for record in runtime.audit.records[-2:]} == {4}


def test_merge_twice_is_refused_the_second_time(pix, database):
    url, _, _ = pix
    send(url, m.add_patient([(m.HOSPITAL, "S3")]), m.ADD)
    send(url, m.add_patient([(m.HOSPITAL, "O3")]), m.ADD)
    assert m.ack_code(send(url, m.merge_patients((m.HOSPITAL, "S3"), (m.HOSPITAL, "O3")), m.MERGE)) == "AA"
    answer = send(url, m.merge_patients((m.HOSPITAL, "S3"), (m.HOSPITAL, "O3")), m.MERGE)
    assert m.ack_code(answer) == "AE" and m.details(answer)[0][0] == "204"


# -- refusals of the feed -----------------------------------------------------------------------------------------------

def test_identifiers_of_two_patients_are_refused(pix, database, corpus_dir):
    url, _, _ = pix
    send(url, m.add_patient([(m.HOSPITAL, "P1")]), m.ADD)
    send(url, m.add_patient([(m.CLINIC, "P2")]), m.ADD)
    before = snapshot(database)
    answer = send(url, m.add_patient([(m.HOSPITAL, "P1")], other_ids=[(m.CLINIC, "P2")]), m.ADD, corpus_dir)
    assert m.ack_code(answer) == "AE"
    ((code, location),) = m.details(answer)
    assert code == "205" and location.endswith("asOtherIDs[1]/id[1]")
    assert snapshot(database) == before


@pytest.mark.parametrize("payload, code, where", [
    (m.add_patient([(m.HOSPITAL, "X1")], family="N" * 5000), "104", "name[1]/family[1]"),
    (m.add_patient([(m.HOSPITAL, "X" * 300)]), "104", "patient[1]/id[1]"),
    (m.add_patient([("not-an-oid", "X2")]), "102", "patient[1]/id[1]"),
    (m.add_patient([(m.HOSPITAL, "")]), "101", "patient[1]/id[1]"),
    (m.add_patient([]), "101", "patient[1]/id"),
    (m.add_patient([(m.HOSPITAL, "X3")], birth="1970-01-01"), "102", "birthTime[1]"),
    (m.add_patient([(m.HOSPITAL, "X4")], gender="Q"), "103", "administrativeGenderCode[1]"),
])
def test_malformed_content_is_ae_with_its_location(pix, database, corpus_dir, payload, code, where):
    url, runtime, _ = pix
    before = snapshot(database)
    answer = send(url, payload, m.ADD, corpus_dir)
    assert m.ack_code(answer) == "AE"
    ((detail_code, location),) = m.details(answer)
    assert detail_code == code and location.endswith(where), location
    assert location.startswith("/PRPA_IN201301UV02/controlActProcess[1]/")
    assert snapshot(database) == before
    assert runtime.audit.records[-1].outcome == 4


def test_missing_patient_is_ae_101(pix, database):
    url, _, _ = pix
    payload = re.sub(rb"<patient .*</patient>", b"", m.add_patient([(m.HOSPITAL, "X5")]), flags=re.S)
    answer = send(url, payload, m.ADD)
    assert m.ack_code(answer) == "AE"
    assert m.details(answer) == [("101", "/PRPA_IN201301UV02/controlActProcess[1]/subject[1]/registrationEvent[1]/"
                                         "subject1[1]/patient")]


@pytest.mark.parametrize("wrapper, code", [({"interaction_id": "PRPA_IN201302UV02"}, "200"),
                                           ({"processing": "X"}, "202")])
def test_wrong_transmission_wrapper_is_ar(pix, database, corpus_dir, wrapper, code):
    url, _, _ = pix
    before = snapshot(database)
    answer = send(url, m.add_patient([(m.HOSPITAL, "W1")], **wrapper), m.ADD, corpus_dir)
    assert m.ack_code(answer) == "AR" and m.details(answer)[0][0] == code
    assert snapshot(database) == before


def test_hostile_envelopes_are_soap_faults(pix, database):
    url, _, _ = pix
    before = snapshot(database)
    status, fault = m.post(url, b"", m.ADD, raw=b"<soap:Envelope xmlns:soap='http://www.w3.org/2003/05/soap-envelope'>"
                                                b"<soap:Body><PRPA_IN201301UV02")
    assert status == 400 and fault.tag.endswith("Fault")
    status, fault = m.post(url, m.add_patient([(m.HOSPITAL, "F1")]), "urn:hl7-org:v3:PRPA_IN999999UV02")
    assert status in (400, 500) and fault.tag.endswith("Fault")
    status, fault = m.post(url, m.pix_query((m.HOSPITAL, "F1")), m.ADD)  # a query under the add action
    assert status == 400 and fault.tag.endswith("Fault")
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + \
        m.envelope(m.add_patient([(m.HOSPITAL, "F2")]), m.ADD)
    status, fault = m.post(url, b"", m.ADD, raw=doctype)
    assert status == 400 and fault.tag.endswith("Fault")
    assert snapshot(database) == before


# -- national identity rules ------------------------------------------------------------------------------------------

@pytest.fixture
def french_pix(database, reactor_thread, tmp_path):
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data", extra={"identity_rules": "france"}),
                              reactor=reactor_thread, db=database)
    with m.v3_endpoints(reactor_thread, runtime, tmp_path / "spool") as base:
        yield base + PIX, runtime


NIR_BODY = "1850775123456"
NIR = NIR_BODY + nir_key(NIR_BODY)
BAD_NIR = NIR_BODY + ("01" if nir_key(NIR_BODY) != "01" else "02")


def test_french_rules_refuse_a_wrong_ins_key_at_its_id(french_pix, database, corpus_dir):
    url, _ = french_pix
    before = snapshot(database)
    answer = send(url, m.add_patient([(m.HOSPITAL, "F10")], other_ids=[(m.INS_NIR, BAD_NIR)], reliability="QUAL"),
                  m.ADD, corpus_dir)
    assert m.ack_code(answer) == "AE"
    codes = {(code, location.rsplit("/", 2)[-2]) for code, location in m.details(answer)}
    assert ("102", "asOtherIDs[1]") in codes, m.details(answer)
    assert snapshot(database) == before


def test_french_rules_need_the_identity_status_with_an_ins(french_pix, database):
    url, _ = french_pix
    answer = send(url, m.add_patient([(m.HOSPITAL, "F11")], other_ids=[(m.INS_NIR, NIR)]), m.ADD)
    assert m.ack_code(answer) == "AE"
    assert ("101", "/PRPA_IN201301UV02/controlActProcess[1]/subject[1]/registrationEvent[1]/subject1[1]/patient[1]"
                   "/subjectOf/administrativeObservation") in m.details(answer)
    assert resolve(database, cx(m.HOSPITAL, "F11")) is None


def test_french_rules_accept_a_qualified_ins(french_pix, database):
    url, _ = french_pix
    answer = send(url, m.add_patient([(m.HOSPITAL, "F12")], other_ids=[(m.INS_NIR, NIR)], reliability="QUAL"),
                  m.ADD)
    assert m.ack_code(answer) == "AA", m.details(answer)
    assert m.details(answer) == [], "a valid qualified INS raises no warning (an II has no PID-3.5 type to check)"
    assert resolve(database, cx(m.INS_NIR, NIR)).patient_id == resolve(database, cx(m.HOSPITAL, "F12")).patient_id
    assert patient_row(database, cx(m.HOSPITAL, "F12")).identity_reliability == "QUAL"


def test_rule_warnings_come_back_with_the_aa(french_pix, database, corpus_dir):
    url, _ = french_pix
    answer = send(url, m.add_patient([(m.HOSPITAL, "F13")], other_ids=[(m.INS_NIR, NIR)], reliability="VALI"),
                  m.ADD, corpus_dir)
    assert m.ack_code(answer) == "AA"
    warnings = answer.xpath("hl7:acknowledgement/hl7:acknowledgementDetail", namespaces={"hl7": m.HL7})
    assert {detail.get("typeCode") for detail in warnings} == {"W"}
    status = [m.first(detail, "hl7:location/text()") for detail in warnings
              if "not qualified" in m.first(detail, "hl7:text/text()")]
    assert status and status[0].endswith("/patient[1]/subjectOf/administrativeObservation")
    assert resolve(database, cx(m.HOSPITAL, "F13")).is_active
    assert resolve(database, cx(m.INS_NIR, NIR)) is None  # an INS not qualified is not used


def test_accepted_authorities_limit_the_domains_fed(database, reactor_thread, tmp_path, corpus_dir):
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data",
                                                extra={"accepted_authorities": [m.HOSPITAL]}),
                              reactor=reactor_thread, db=database)
    with m.v3_endpoints(reactor_thread, runtime, tmp_path / "spool") as base:
        before = snapshot(database)
        answer = send(base + PIX, m.add_patient([(m.HOSPITAL, "A1")], other_ids=[(m.CLINIC, "A2")]), m.ADD,
                      corpus_dir)
        assert m.ack_code(answer) == "AE"
        ((code, location),) = m.details(answer)
        assert code == "204" and location.endswith("asOtherIDs[1]/id[1]")
        assert snapshot(database) == before
        assert m.ack_code(send(base + PIX, m.add_patient([(m.HOSPITAL, "A1")]), m.ADD)) == "AA"
