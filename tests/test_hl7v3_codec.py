"""The HL7 v3 codec alone: requests read into values, answers built and validated against the official schemas
(HL7 v3 NE2008 from the corpus; those tests skip when it is absent), refusals with their codes and locations."""

from __future__ import annotations

import dataclasses

import pytest
from lxml import etree

from ihe_engine.identity.cx import CX
from ihe_engine.identity.hl7v3.build import ack_message, pdq_answer, pix_answer
from ihe_engine.identity.hl7v3.errors import AckDetail, V3Refusal
from ihe_engine.identity.hl7v3.model import Address, InstanceId, PatientView, PersonName, QueryCounts, Telecom, \
    Transmission
from ihe_engine.identity.hl7v3.parse import check_transmission, location_of, parse_feed, parse_merge, \
    parse_pdq_query, parse_pix_query, parse_query_control, read_query_id, read_transmission

try:
    from . import hl7v3_messages as m
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import hl7v3_messages as m


def xml(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def oid_cx(root: str, value: str, namespace: str = "") -> CX:
    return CX(id=value, namespace_id=namespace, universal_id=root, universal_id_type="ISO")


def refusal_of(parse, data: bytes, **kwargs) -> V3Refusal:
    with pytest.raises(V3Refusal) as caught:
        parse(xml(data), **kwargs)
    return caught.value


# -- reading requests -------------------------------------------------------------------------------------------------

def test_feed_reads_identifiers_and_traits_in_document_order():
    feed = parse_feed(xml(m.add_patient([(m.HOSPITAL, "H1")], other_ids=[(m.CLINIC, "C1")], family="Dupont",
                                        given="Jean", birth_family="Martin", birthplace="75056",
                                        reliability="QUAL", message_id="1.2.3.4")))
    assert feed.transmission.interaction == "PRPA_IN201301UV02"
    assert feed.transmission.message_id == InstanceId(root="1.2.3.4")
    assert feed.transmission.sender_device.root == "1.2.250.1.999.5.2"
    patient = feed.patient
    assert [located.cx for located in patient.identifiers] == [oid_cx(m.HOSPITAL, "H1"), oid_cx(m.CLINIC, "C1")]
    assert patient.identifiers[1].location.endswith("/patientPerson[1]/asOtherIDs[1]/id[1]")
    assert patient.names == (PersonName(family=("Dupont",), given=("Jean",), use="L"),
                             PersonName(given=("Jean",), birth_family=("Martin",)))
    assert (patient.gender, patient.birth_time, patient.birthplace, patient.reliability) == \
        ("M", "19700101", "75056", "QUAL")
    assert patient.addresses[0] == Address(street_lines=("1 rue de la Paix",), city="Paris", postal_code="75001",
                                           country="FR", use="H")
    assert patient.telecoms == (Telecom("tel:+33100000000", "HP"),)


def test_merge_reads_the_subsumed_identifier():
    merge = parse_merge(xml(m.merge_patients((m.HOSPITAL, "S1"), (m.HOSPITAL, "O1"))))
    assert merge.patient.identifiers[0].cx == oid_cx(m.HOSPITAL, "S1")
    assert merge.subsumed.cx == oid_cx(m.HOSPITAL, "O1")
    assert merge.subsumed.location.endswith("/replacementOf[1]/priorRegistration[1]/subject1[1]/"
                                            "priorRegisteredRole[1]/id[1]")


def test_pix_query_reads_identifier_and_data_sources():
    query = parse_pix_query(xml(m.pix_query((m.HOSPITAL, "H1"), [m.CLINIC, m.LAB], query_id="Q1")))
    assert query.query_id == InstanceId(root="1.2.250.1.999.6", extension="Q1")
    assert query.patient_identifier.cx == oid_cx(m.HOSPITAL, "H1")
    assert [domain.oid for domain in query.data_sources] == [m.CLINIC, m.LAB]
    assert query.data_sources[1].location.endswith("/parameterList[1]/dataSource[2]/value[1]")
    echoed = etree.fromstring(query.query_xml)
    assert echoed.tag == f"{{{m.HL7}}}queryByParameter" and echoed.tail is None


def test_pdq_query_reads_every_parameter():
    query = parse_pdq_query(xml(m.pdq_query(family="Dupont", given="Jean", birth_family="Martin", gender="UN",
                                            birth="197001", identifier=(m.HOSPITAL, "H1"), domains=[m.CLINIC],
                                            city="Lyon", postal="69001", initial_quantity=5)))
    parameters = query.parameters
    assert (parameters.family_name, parameters.given_name, parameters.birth_name) == ("Dupont", "Jean", "Martin")
    assert (parameters.sex, parameters.birth_date, parameters.city, parameters.postal_code) == \
        ("U", "197001", "Lyon", "69001")
    assert parameters.identifier.cx == oid_cx(m.HOSPITAL, "H1")
    assert [domain.oid for domain in query.domains] == [m.CLINIC]
    assert query.initial_quantity == 5 and parameters.minimum_degree_match is None


def test_query_control_reads_continue_and_cancel():
    go = parse_query_control(xml(m.query_control("Q9", quantity=4)), cancel=False)
    assert (go.query_id.extension, go.quantity, go.cancel) == ("Q9", 4, False)
    stop = parse_query_control(xml(m.query_control("Q9", cancel=True)), cancel=True)
    assert stop.cancel and stop.query_id_location.endswith("/queryContinuation[1]/queryId[1]")
    refusal = refusal_of(parse_query_control, m.query_control("Q9"), cancel=True)
    assert refusal.details[0].code == "103"


def test_location_is_an_xpath_from_the_message_root():
    root = xml(m.pdq_query(family="A", domains=[m.CLINIC, m.LAB]))
    second = root.xpath("//hl7:otherIDsScopingOrganization[2]/hl7:value", namespaces={"hl7": m.HL7})[0]
    path = location_of(second)
    assert path == ("/PRPA_IN201305UV02/controlActProcess[1]/queryByParameter[1]/parameterList[1]/"
                    "otherIDsScopingOrganization[2]/value[1]")
    assert root.xpath(path.replace("/", "/hl7:"),
                      namespaces={"hl7": m.HL7}) == [second]


# -- refusals ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("parse, data, code, ack, query_code, where", [
    (parse_feed, m.add_patient([(m.HOSPITAL, "H1")], family="X" * 201), "104", "AE", "AE", "family[1]"),
    (parse_feed, m.add_patient([("1.2.x", "H1")]), "102", "AE", "AE", "id[1]"),
    (parse_feed, m.add_patient([(m.HOSPITAL, "H1")], birth="notadate"), "102", "AE", "AE", "birthTime[1]"),
    (parse_pix_query, m.pix_query((m.HOSPITAL, "H1"), ["urn:uuid:x"]), "102", "AE", "QE", "dataSource[1]/value[1]"),
    (parse_pix_query, m.pix_query(("", "H1")), "101", "AE", "QE", "patientIdentifier[1]/value[1]"),
    (parse_pdq_query, m.pdq_query(family="A", initial_quantity=0), "102", "AE", "QE", "initialQuantity[1]"),
    (parse_pdq_query, m.pdq_query(family="A", birth="19701"), "102", "AE", "QE", "livingSubjectBirthTime[1]/value[1]"),
])
def test_content_errors_carry_code_answer_and_location(parse, data, code, ack, query_code, where):
    refusal = refusal_of(parse, data)
    (detail,) = refusal.details
    assert (detail.code, refusal.ack_code, refusal.query_code) == (code, ack, query_code)
    assert detail.location.endswith(where), detail.location


def test_missing_structure_is_101_at_the_parent():
    data = m.pix_query((m.HOSPITAL, "H1"))
    start, end = data.index(b"<queryByParameter>"), data.index(b"</queryByParameter>") + len(b"</queryByParameter>")
    refusal = refusal_of(parse_pix_query, data[:start] + data[end:])
    assert (refusal.details[0].code, refusal.details[0].location) == \
        ("101", "/PRPA_IN201309UV02/controlActProcess[1]/queryByParameter")
    assert read_query_id(xml(data[:start] + data[end:])) == InstanceId(null_flavor="UNK")


def test_transmission_wrapper_errors_are_ar():
    root = xml(m.add_patient([(m.HOSPITAL, "H1")], interaction_id="PRPA_IN201305UV02", processing="Q"))
    with pytest.raises(V3Refusal) as caught:
        check_transmission(root, read_transmission(root))
    assert caught.value.ack_code == "AR"
    assert [detail.code for detail in caught.value.details] == ["200", "202"]
    bare = xml(b'<PRPA_IN201301UV02 xmlns="urn:hl7-org:v3"/>')
    transmission = read_transmission(bare)
    assert transmission.message_id.null_flavor == "UNK" and transmission.sender_device.null_flavor == "UNK"
    with pytest.raises(V3Refusal) as caught:
        check_transmission(bare, transmission)
    assert caught.value.details[0].code == "101"


# -- building answers (validated against the official schemas) --------------------------------------------------------

REQUEST = Transmission(interaction="PRPA_IN201309UV02", message_id=InstanceId(root="1.2.3", extension="m1"),
                       processing_code="T", sender_device=InstanceId(root="1.2.9"),
                       receiver_device=InstanceId(root="1.2.8"))
QUERY_XML = etree.tostring(xml(m.pix_query((m.HOSPITAL, "H1"))).find(f"{{{m.HL7}}}controlActProcess")
                           .find(f"{{{m.HL7}}}queryByParameter"), with_tail=False)


@pytest.mark.parametrize("code, details", [("AA", []), ("AE", [AckDetail("204", "unknown", "/a/b[1]"),
                                                               AckDetail("207", "warning", None, "W")]),
                                           ("AR", [AckDetail("", "no code", "/x")])])
def test_ack_message_validates(corpus_dir, code, details):
    answer = ack_message(REQUEST, code, details)
    m.assert_valid(corpus_dir, answer)
    assert m.ack_code(answer) == code
    assert m.first(answer, "hl7:acknowledgement/hl7:targetMessage/hl7:id/@extension") == "m1"
    assert m.first(answer, "hl7:receiver/hl7:device/hl7:id/@root") == "1.2.9"  # the request's sender
    assert m.first(answer, "hl7:sender/hl7:device/hl7:id/@root") == "1.2.8"
    assert m.first(answer, "hl7:processingCode/@code") == "T"
    assert len(answer.xpath("hl7:acknowledgement/hl7:acknowledgementDetail", namespaces={"hl7": m.HL7})) == \
        len(details)


def test_pix_answer_validates_and_drops_ids_without_oid(corpus_dir):
    identifiers = [oid_cx(m.CLINIC, "C1", "CLINIC"), CX(id="N1", namespace_id="LOCAL"), oid_cx(m.LAB, "L1")]
    answer = pix_answer(REQUEST, query_id=InstanceId(root="1.2.3", extension="q"), query_xml=QUERY_XML,
                        ack_code="AA", query_code="OK", identifiers=identifiers)
    m.assert_valid(corpus_dir, answer)
    assert m.values(answer, "//hl7:patient/hl7:id/@extension") == ["C1", "L1"]
    assert m.first(answer, "//hl7:patient/hl7:id/@assigningAuthorityName") == "CLINIC"
    empty = pix_answer(REQUEST, query_id=InstanceId(null_flavor="UNK"), query_xml=None, ack_code="AE",
                       query_code="AE", details=[AckDetail("204", "x", "/y")])
    m.assert_valid(corpus_dir, empty)
    assert empty.find(f"{{{m.HL7}}}controlActProcess/{{{m.HL7}}}subject") is None


def test_pdq_answer_validates_with_every_trait(corpus_dir):
    full = PatientView(identifiers=(oid_cx(m.HOSPITAL, "H1"),), other_identifiers=(oid_cx(m.CLINIC, "C1"),
                                                                                 oid_cx(m.CLINIC, "C2")),
                       names=(PersonName(("Dupont",), ("Jean", "Paul"), "L"), PersonName((), ("Jean",), "", ("Martin",))),
                       gender="U", birth_time="19700101",
                       addresses=(Address(("1 rue",), "Lyon", "69001", "", "FR", "69", "H"),),
                       telecoms=(Telecom("tel:+33", "HP"),), score=87)
    bare = PatientView(identifiers=(oid_cx(m.LAB, "L9"),))
    answer = pdq_answer(REQUEST, query_id=InstanceId(root="1.2.3"), query_xml=None, ack_code="AA", query_code="OK",
                        patients=[full, bare], counts=QueryCounts(total=9, current=2, remaining=7))
    m.assert_valid(corpus_dir, answer)
    assert m.values(answer, "//hl7:queryMatchObservation/hl7:value/@value") == ["87", "100"]
    assert m.values(answer, "//hl7:asOtherIDs/hl7:id/@extension") == ["C1", "C2"]  # one asOtherIDs per domain
    assert m.first(answer, "//hl7:administrativeGenderCode/@code") == "UN"
    assert m.values(answer, "hl7:controlActProcess/hl7:queryAck/*/@value") == ["9", "2", "7"]
    assert m.first(answer, "(//hl7:patientPerson)[2]/hl7:name/@nullFlavor") == "UNK"


def test_echoed_query_keeps_prefixes_used_in_attribute_values(corpus_dir):
    """xsi:type="v3:II" with v3 declared only on the SOAP envelope: the echo must still declare it."""
    data = m.envelope(m.pdq_query(family="A"), m.PDQ_QUERY).replace(
        b"<soap:Envelope ", b'<soap:Envelope xmlns:v3="urn:hl7-org:v3" ').replace(
        b'<queryId root=', b'<queryId xsi:type="v3:II" root=')
    envelope = etree.fromstring(data)
    query = parse_pdq_query(envelope.find(f"{{{m.SOAP12}}}Body")[0])
    answer = pdq_answer(query.transmission, query_id=query.query_id, query_xml=query.query_xml, ack_code="AA",
                        query_code="NF", counts=QueryCounts(0, 0, 0))
    reparsed = etree.fromstring(etree.tostring(answer))
    m.assert_valid(corpus_dir, reparsed)
    echoed = reparsed.find(f"{{{m.HL7}}}controlActProcess/{{{m.HL7}}}queryByParameter/{{{m.HL7}}}queryId")
    assert echoed.nsmap["v3"] == m.HL7


def test_paging_state_round_trips():
    from ihe_engine.identity.hl7v3.iti47 import Paging, patient_query
    from ihe_engine.identity.pdq_search import IdentifierCriterion
    from ihe_engine.identity.pix import Authority

    query = parse_pdq_query(xml(m.pdq_query(family="Dupont*", gender="F", birth="1970",
                                            identifier=(m.HOSPITAL, "H1"), city="Lyon")))
    search = dataclasses.replace(patient_query(query), identifiers=(
        IdentifierCriterion(value="C9", authority=Authority(universal_id=m.CLINIC, universal_id_type="ISO")),))
    paging = Paging(query=search, domains=(m.CLINIC,), query_xml=query.query_xml, quantity=3, total=10, served=3,
                    after_patient_id=42)
    assert Paging.load(paging.dump()) == paging
