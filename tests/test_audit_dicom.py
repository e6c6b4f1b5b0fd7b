"""DICOM AuditMessage: what the engine emits is valid against dicom2017c.xsd; the validator agrees with the schema
on the published sample messages (all valid) and on broken variants of them (each flagged where it breaks)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

import pytest
from lxml import etree

from ihe_engine.audit import AuditRecord, Participant, ParticipantObject
from ihe_engine.audit import dicom

AUDIT_DIR = "oehf-ipf/commons/audit/src/test/resources/audit"
XSD = "oehf-ipf/commons/audit/src/main/resources/dicom2017c.xsd"
SOURCE = ("110153", "DCM", "Source Role ID")
DESTINATION = ("110152", "DCM", "Destination Role ID")


@pytest.fixture(scope="module")
def schema(corpus_dir: Path) -> etree.XMLSchema:
    path = corpus_dir / XSD
    if not path.is_file():
        pytest.skip(f"{XSD} not in the corpus")
    return etree.XMLSchema(etree.parse(str(path)))


@pytest.fixture(scope="module")
def samples(corpus_dir: Path) -> dict[str, bytes]:
    folder = corpus_dir / AUDIT_DIR
    if not folder.is_dir():
        pytest.skip(f"{AUDIT_DIR} not in the corpus")
    found = {path.name: path.read_bytes() for path in sorted(folder.glob("*.xml"))}
    assert len(found) >= 10
    return found


def iti8_record(**changes) -> AuditRecord:
    values = dict(
        event_id=("110110", "DCM", "Patient Record"), action="C",
        event_types=(("ITI-8", "IHE Transactions", "Patient Identity Feed"),),
        participants=(Participant(user_id="LABO|LAB_APP", is_requestor=True, role=SOURCE,
                                  network_access_point="192.0.2.7"),
                      Participant(user_id="HOPITAL|PIX_MGR", is_requestor=False, role=DESTINATION,
                                  alternative_user_id="4242", network_access_point="engine.example.org")),
        objects=(ParticipantObject(object_id="123^^^&1.2.250.1.71.4.2.1&ISO", type_code=1, type_code_role=1,
                                   id_type=dicom.PATIENT_NUMBER, details=(("MSH-10", b"MSG0001"),)),),
        when=datetime(2026, 11, 22, 9, 30, 15, 123456, tzinfo=timezone.utc), transaction="ITI-8")
    values.update(changes)
    return AuditRecord(**values)


def query_record() -> AuditRecord:
    return AuditRecord(
        event_id=("110112", "DCM", "Query"), action="E", outcome=4, outcome_description="AE: unknown domain",
        event_types=(("ITI-9", "IHE Transactions", "PIX Query"),),
        purposes_of_use=(("TREATMENT", "urn:oid:1.3.6.1.4.1.19376.1.2.4.2", "Treatment"),),
        participants=(Participant(user_id="A|B", is_requestor=True, role=SOURCE, network_access_point="::1",
                                  user_name="Dr Émilie Ménard"),),
        objects=(ParticipantObject(object_id="MSG9", type_code=2, type_code_role=24,
                                   id_type=("ITI-9", "IHE Transactions", "PIX Query"),
                                   query=b"MSH|^~\\&|A|B\rQPD|IHE PIX Query|Q1|7^^^&1.2&ISO\r",
                                   details=(("MSH-10", b"MSG9"),)),
                 ParticipantObject(object_id="7^^^&1.2&ISO", type_code=1, type_code_role=1,
                                   id_type=dicom.PATIENT_NUMBER, name="DUPONT^JEAN")))


# ------------------------------------------------------------------------------------------------ emitter


@pytest.mark.parametrize("record", [iti8_record(), query_record(),
                                    iti8_record(participants=(), objects=()),
                                    iti8_record(outcome_description="bad \x01 control \x1f chars", outcome=8)],
                         ids=["iti8", "query", "bare", "control-characters"])
def test_emitted_messages_are_valid_against_the_dicom_schema(schema, record):
    from ihe_engine.audit.emission import syslog_message
    from ihe_engine.transport.syslog import parse_rfc5424

    syslog = syslog_message(record, source_id="engine-1", enterprise_site_id="HOPITAL", hostname="node.test",
                            process_id="77")
    message = parse_rfc5424(syslog)
    assert (message.pri, message.msgid, message.structured_data) == (85, "IHE+RFC-3881", ())
    document = etree.fromstring(message.msg)
    assert schema.validate(document), schema.error_log
    assert dicom.analyse(message.msg).problems == ()


def test_emitted_message_says_what_the_record_says():
    record = query_record()
    facts = dicom.analyse(dicom.encode(record, source_id="engine-1", enterprise_site_id="SITE"))
    assert facts.valid
    assert facts.event_id == ("110112", "DCM", "Query")
    assert (facts.action, facts.outcome, facts.outcome_description) == ("E", "4", "AE: unknown domain")
    assert facts.event_types == (("ITI-9", "IHE Transactions", "PIX Query"),)
    assert facts.purposes_of_use == record.purposes_of_use
    assert (facts.source_id, facts.enterprise_site_id) == ("engine-1", "SITE")
    assert facts.source_types == (dicom.SOURCE_TYPE_APPLICATION_SERVER,)
    participant = facts.participants[0]
    assert (participant.user_id, participant.user_name, participant.is_requestor) == ("A|B", "Dr Émilie Ménard",
                                                                                       True)
    assert (participant.network_access_point, participant.network_access_point_type) == ("::1", "2")
    query, patient = facts.objects
    assert query.query == record.objects[0].query  # the query bytes, exactly (base64 on the wire)
    assert query.details == (("MSH-10", base64.b64encode(b"MSG9").decode()),)
    assert (query.type_code, query.type_code_role) == ("2", "24")
    assert patient.name == "DUPONT^JEAN" and facts.patient_ids == ("7^^^&1.2&ISO",)
    assert facts.event_time == datetime.fromisoformat(
        record.when.isoformat(timespec="milliseconds"))


def test_machine_names_and_addresses_get_their_access_point_type():
    facts = dicom.analyse(dicom.encode(iti8_record(), source_id="n"))
    assert [p.network_access_point_type for p in facts.participants] == ["2", "1"]


# ------------------------------------------------------------------------------------------------ validator


def test_every_published_sample_is_valid_for_both_the_schema_and_the_validator(schema, samples):
    for name, data in samples.items():
        assert schema.validate(etree.fromstring(data)), (name, schema.error_log)
        facts = dicom.analyse(data)
        assert facts.problems == (), name
        assert facts.event_id is not None and facts.participants and facts.source_id, name


def test_patients_of_a_sample_are_read(samples):
    facts = dicom.analyse(samples["pixquery.xml"])
    assert facts.patient_ids == ("27^^^MPI&2.16.840.1.113883.3.37.4.1.1.2.1.1&ISO^PI",
                                 "78106^^^PKLN&2.16.840.1.113883.3.37.4.1.1.2.511.1&ISO")
    assert facts.event_types == (("ITI-9", "IHE Transactions", "PIX Query"),)
    assert facts.objects[0].query.startswith(b"MSH|")


def _remove(xpath):
    def mutate(root):
        for element in root.xpath(xpath):
            element.getparent().remove(element)
    return mutate


def _set(xpath, attribute, value):
    def mutate(root):
        root.xpath(xpath)[0].set(attribute, value)
    return mutate


def _drop_attribute(xpath, attribute):
    def mutate(root):
        del root.xpath(xpath)[0].attrib[attribute]
    return mutate


def _move_first_participant_last(root):
    participant = root.find("ActiveParticipant")
    root.remove(participant)
    root.append(participant)


def _add_unknown(root):
    etree.SubElement(root.find("EventIdentification"), "Whatever")


def _name_and_query(root):
    item = root.xpath("ParticipantObjectIdentification[ParticipantObjectQuery]")[0]
    name = etree.Element("ParticipantObjectName")
    name.text = "x"
    item.find("ParticipantObjectQuery").addprevious(name)


def _rfc3881_code(root):
    event_id = root.find("EventIdentification/EventID")
    event_id.set("code", event_id.attrib.pop("csd-code"))


BROKEN = [
    ("no EventIdentification", _remove("EventIdentification"), "AuditMessage", "EventIdentification is missing"),
    ("no EventID", _remove("EventIdentification/EventID"), "EventIdentification", "EventID is missing"),
    ("no ActiveParticipant", _remove("ActiveParticipant"), "AuditMessage", "ActiveParticipant is missing"),
    ("no AuditSourceIdentification", _remove("AuditSourceIdentification"), "AuditMessage",
     "AuditSourceIdentification is missing"),
    ("bad action", _set("EventIdentification", "EventActionCode", "X"), "@EventActionCode", "not one of"),
    ("bad outcome", _set("EventIdentification", "EventOutcomeIndicator", "3"), "@EventOutcomeIndicator",
     "not one of"),
    ("no outcome", _drop_attribute("EventIdentification", "EventOutcomeIndicator"), "@EventOutcomeIndicator",
     "missing"),
    ("bad date", _set("EventIdentification", "EventDateTime", "19/03/2020"), "@EventDateTime", "xs:dateTime"),
    ("no date", _drop_attribute("EventIdentification", "EventDateTime"), "@EventDateTime", "missing"),
    ("no UserID", _drop_attribute("ActiveParticipant", "UserID"), "ActiveParticipant[1]/@UserID", "missing"),
    ("bad UserIsRequestor", _set("ActiveParticipant", "UserIsRequestor", "yes"), "@UserIsRequestor",
     "not one of"),
    ("bad access point type", _set("ActiveParticipant", "NetworkAccessPointTypeCode", "9"),
     "@NetworkAccessPointTypeCode", "not one of"),
    ("no AuditSourceID", _drop_attribute("AuditSourceIdentification", "AuditSourceID"), "@AuditSourceID",
     "missing"),
    ("no originalText", _drop_attribute("EventIdentification/EventID", "originalText"), "EventID[1]/@originalText",
     "coded value"),
    ("no codeSystemName", _drop_attribute("ActiveParticipant/RoleIDCode", "codeSystemName"),
     "RoleIDCode[1]/@codeSystemName", "coded value"),
    ("RFC 3881 code", _rfc3881_code, "EventID[1]/@csd-code", "RFC 3881"),
    ("order", _move_first_participant_last, "ActiveParticipant", "out of order"),
    ("unknown element", _add_unknown, "EventIdentification", "unexpected element Whatever"),
    ("bad object type", _set("ParticipantObjectIdentification", "ParticipantObjectTypeCode", "5"),
     "@ParticipantObjectTypeCode", "not one of"),
    ("bad object role", _set("ParticipantObjectIdentification", "ParticipantObjectTypeCodeRole", "27"),
     "@ParticipantObjectTypeCodeRole", "not one of"),
    ("no object id type", _remove("ParticipantObjectIdentification/ParticipantObjectIDTypeCode"),
     "ParticipantObjectIdentification", "ParticipantObjectIDTypeCode is missing"),
    ("bad detail base64", _set("ParticipantObjectIdentification/ParticipantObjectDetail", "value", "abc"),
     "ParticipantObjectDetail[1]/@value", "base64"),
    ("name and query", _name_and_query, "ParticipantObjectIdentification", ""),
]


@pytest.mark.parametrize("what,mutate,location,text", BROKEN, ids=[case[0] for case in BROKEN])
def test_a_broken_message_is_refused_by_the_schema_and_flagged_by_the_validator(schema, samples, what, mutate,
                                                                               location, text):
    root = etree.fromstring(samples["pixquery.xml"])
    mutate(root)
    assert not schema.validate(root), f"the schema should refuse: {what}"
    problems = dicom.analyse(etree.tostring(root)).problems
    assert any(location in problem.location and text in problem.text for problem in problems), problems


@pytest.mark.parametrize("data,text", [
    (b"", "not well-formed"),
    (b"<AuditMessage><EventIdentification>", "not well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
     b"<AuditMessage>&lol2;</AuditMessage>", "document type declaration"),
    (b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><AuditMessage/>', "document type declaration"),
    (b'<a:AuditMessage xmlns:a="urn:x"/>', "root element must be AuditMessage"),
    (b"<AuditMessage>" + b"<x>" * 220 + b"</x>" * 220 + b"</AuditMessage>", "nested deeper"),
    (b"<AuditMessage/>" + b" " * (dicom.MAX_MESSAGE_BYTES + 1), "above the limit"),
], ids=["empty", "truncated", "xml-bomb", "external-dtd", "namespace", "deep", "huge"])
def test_hostile_or_broken_input_is_reported_never_raised(data, text):
    facts = dicom.analyse(data)
    assert not facts.valid
    assert any(text in problem.text for problem in facts.problems), facts.problems
