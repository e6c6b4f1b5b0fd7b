"""ITI-22 PDVQ over a real MLLP listener with python-hl7's client (a client this project did not write): visits fed
by ITI-8 A01/A08 PV1s, queries by location, attending doctor, visit number, name and class; paging, cancel,
refusals, a merge; and the visit store on its own. Each on SQLite and PostgreSQL. The visits come from the real
ITI-8 routes (``Iti8Feed.handle_patient`` records them in the feed's unit of work).
"""

from __future__ import annotations

import hl7
import pytest
from hl7.client import MLLPClient
from sqlalchemy import event, func, select
from twisted.internet.threads import blockingCallFromThread

from ihe_engine.hl7v2.message import DEFAULT_ENCODING, Encoding, parse
from ihe_engine.identity import iti8, iti21, iti22
from ihe_engine.identity.tables import Patient, PatientVisit
from ihe_engine.identity.visits import record_visit, translate
from ihe_engine.transport.mllp_twisted import MLLPServerFactory
from pixpdq_testing import CapturingSink, control_id, loopback_runtime, pixpdq_dispatcher

IPP = "IPP&1.2.250.1.71.1&ISO"
VISITS = "HOSP&1.2.250.1.71.4&ISO"
Q = "IHE PDVQ Query"


@pytest.fixture
def sink() -> CapturingSink:
    return CapturingSink()


@pytest.fixture
def runtime(database, reactor_thread, tmp_path, sink):
    yield from loopback_runtime(database, reactor_thread, tmp_path, sink)


@pytest.fixture
def port(runtime, reactor_thread):
    dispatcher = pixpdq_dispatcher(runtime, iti8.hl7_routes(runtime), iti21.hl7_routes(runtime),
                                   iti22.hl7_routes(runtime))
    listening = blockingCallFromThread(reactor_thread, reactor_thread.listenTCP, 0,
                                       MLLPServerFactory(dispatcher, max_message_size=1024 * 1024),
                                       interface="127.0.0.1")
    yield listening.getHost().port
    blockingCallFromThread(reactor_thread, listening.stopListening)


def exchange(port: int, *segments: str) -> hl7.Message:
    with MLLPClient("127.0.0.1", port) as client:
        client.socket.settimeout(20)
        received = client.send_message("\r".join(segments))
        while not received.endswith(b"\x1c\x0d"):
            more = client.socket.recv(65536)
            assert more, "server closed before answering"
            received += more
    return hl7.parse(received[1:-2].decode())


def adt(port: int, trigger: str, pid: str, pv1: str, *extra: str) -> None:
    msh = f"MSH|^~\\&|ADT|HOSP|ENGINE|SITE|20240101120000||ADT^{trigger}^ADT_A01|{control_id()}|P|2.5"
    ack = exchange(port, msh, "EVN||20240101120000", f"PID|{pid}", pv1, *extra)
    assert str(ack.segment("MSA")[1]) == "AA", str(ack)


def zv1(port: int, qpd: str, *, rcp: str = "RCP|I", dsc: str = "", control: str | None = None) -> hl7.Message:
    msh = f"MSH|^~\\&|CONSUMER|CDEPT|ENGINE|SITE|20240101120000||QBP^ZV1^QBP_Q21|{control or control_id()}|P|2.5"
    return exchange(port, *[segment for segment in (msh, f"QPD|{qpd}", rcp, dsc) if segment])


def status(answer: hl7.Message) -> tuple[str, str]:
    return str(answer.segment("MSA")[1]), str(answer.segment("QAK")[2])


def named(answer: hl7.Message, name: str) -> list:
    return [segment for segment in answer if str(segment[0]) == name]


def groups(answer: hl7.Message) -> list[tuple[str, str]]:
    """(PID-3.1 of the first id, PV1-19.1) of each group, in order."""
    return list(zip([str(pid[3]).split("~")[0].split("^")[0] for pid in named(answer, "PID")],
                    [str(pv1[19]).split("^")[0] for pv1 in named(answer, "PV1")], strict=True))


def errors(answer: hl7.Message) -> list[tuple[str, str]]:
    return [(str(err[2]), str(err[3]).split("^")[0]) for err in named(answer, "ERR")]


@pytest.fixture
def ward(port):
    """Patients 100-102 with one visit each (100's moved by an A08), 103 fed with a class-only PV1."""
    adt(port, "A01", f"1||100^^^{IPP}^PI||DUPONT^JEAN^^^^^L||19800115|M",
        f"PV1|1|I|CARDIO^101^1^CHU||||D123^LÉGER-MARTIN^ANNE|||CAR|||||||||V1001^^^{VISITS}^VN" + "|" * 25
        + "20240101080000", "PV2|||^Chest pain")
    adt(port, "A08", f"1||100^^^{IPP}^PI||DUPONT^JEAN^^^^^L||19800115|M",
        f"PV1|1|I|CARDIO^205^2^CHU||||D123^LÉGER-MARTIN^ANNE|||CAR|||||||||V1001^^^{VISITS}^VN")
    adt(port, "A01", f"1||101^^^{IPP}^PI||DUPONT^MARIE^^^^^L||19850320|F",
        f"PV1|1|O|CONSULT^3^^CHU||||D777^BERNARD^LUC|||MED|||||||||V2001^^^{VISITS}^VN")
    adt(port, "A01", f"1||102^^^{IPP}^PI||DURAND^PAUL^^^^^L||19700101|M",
        f"PV1|1|I|CARDIO^101^2^CHU||||D123^LEGER MARTIN^ANNE|||CAR|||||||||V3001^^^{VISITS}^VN")
    adt(port, "A01", f"1||103^^^{IPP}^PI||NOVISIT^ALICE^^^^^L||19900101|F", "PV1||O")
    return port


def test_query_by_location_follows_the_a08(ward, sink):
    answer = zv1(ward, f"{Q}|T1|@PV1.3.1^cardio~@PV1.3.2^205", control="ZV-1")
    assert status(answer) == ("AA", "OK")
    assert str(answer.segment("MSH")[9]) == "RSP^ZV2^RSP_ZV2" and str(answer.segment("MSH")[21]) == "ITI-22^IHE"
    assert str(answer.segment("MSA")[2]) == "ZV-1" and str(answer.segment("QAK")[1]) == "T1"
    assert str(answer.segment("QPD")[3]) == "@PV1.3.1^cardio~@PV1.3.2^205"
    assert groups(answer) == [("100", "V1001")]
    pv1 = named(answer, "PV1")[0]
    assert str(pv1[3]) == "CARDIO^205^2^CHU" and str(pv1[7]) == "D123^LÉGER-MARTIN^ANNE"
    assert str(named(answer, "PV2")[0][3]) == "^Chest pain"  # kept from the A01: the A08 sent no PV2
    assert [str(segment[0]) for segment in answer][-3:] == ["PID", "PV1", "PV2"]
    assert status(zv1(ward, f"{Q}|T2|@PV1.3.1^CARDIO~@PV1.3.2^101~@PV1.3.3^1")) == ("AA", "NF")  # moved away
    record = sink.records[-1]
    assert (record.event_id[0], record.action, record.event_types[0][0], record.outcome) == \
        ("110112", "E", "ITI-22", 0)


def test_query_by_attending_doctor(ward):
    by_id = zv1(ward, f"{Q}|T3|@PV1.7.1^D123")
    assert groups(by_id) == [("100", "V1001"), ("102", "V3001")]
    by_name = zv1(ward, f"{Q}|T4|@PV1.7.2^leger martin")  # accents, case and hyphens do not matter
    assert groups(by_name) == [("100", "V1001"), ("102", "V3001")]
    assert groups(zv1(ward, f"{Q}|T5|@PV1.7.2.1^BERNARD~@PV1.10^MED")) == [("101", "V2001")]


def test_query_by_visit_number_and_facility(ward):
    assert groups(zv1(ward, f"{Q}|T6|@PV1.19.1^V2001")) == [("101", "V2001")]
    assert groups(zv1(ward, f"{Q}|T7|@PV1.19^V3001&&&x~@PV1.3.4^chu")) == [("102", "V3001")]


def test_query_by_name_and_class(ward):
    assert groups(zv1(ward, f"{Q}|T8|@PID.5.1.1^DUPONT~@PV1.2^I")) == [("100", "V1001")]
    assert groups(zv1(ward, f"{Q}|T9|@PID.5.1.1^DUPONT~@PV1.2^O")) == [("101", "V2001")]
    assert groups(zv1(ward, f"{Q}|T10|@PID.5.1.1^DUPONT")) == [("100", "V1001"), ("101", "V2001")]


def test_a_pv1_without_visit_data_stores_nothing(ward, runtime):
    assert status(zv1(ward, f"{Q}|T11|@PID.5.1.1^NOVISIT")) == ("AA", "NF")
    with runtime.uow(readonly=True) as uow:
        assert uow.session.scalar(select(func.count()).select_from(PatientVisit)) == 3


def test_no_match(ward):
    answer = zv1(ward, f"{Q}|T12|@PV1.19^NOPE")
    assert status(answer) == ("AA", "NF") and named(answer, "PID") == [] and named(answer, "PV1") == []


def test_continuation_and_cancel(ward):
    criteria = f"{Q}|PAGED|@PV1.2^I"
    adt(ward, "A01", f"1||102^^^{IPP}^PI||DURAND^PAUL^^^^^L||19700101|M",
        f"PV1|1|I|NEURO^7^1^CHU||||D900^ROUX^EVE|||NEU|||||||||V3002^^^{VISITS}^VN")
    first = zv1(ward, criteria, rcp="RCP|I|2^RD")
    assert status(first) == ("AA", "OK") and groups(first) == [("100", "V1001"), ("102", "V3001")]
    pointer = str(first.segment("DSC")[1])
    second = zv1(ward, criteria, rcp="RCP|I|2^RD", dsc=f"DSC|{pointer}|I")
    assert groups(second) == [("102", "V3002")] and named(second, "DSC") == []
    assert groups(zv1(ward, criteria, rcp="RCP|I|2^RD", dsc=f"DSC|{pointer}|I")) == [("102", "V3002")]

    again = zv1(ward, criteria, rcp="RCP|I|2^RD")
    cancel = exchange(ward, f"MSH|^~\\&|CONSUMER|CDEPT|ENGINE|SITE|2024||QCN^J01^QCN_J01|{control_id()}|P|2.5",
                      f"QID|PAGED|{Q}")
    assert str(cancel.segment("MSA")[1]) == "AA"
    refused = zv1(ward, criteria, rcp="RCP|I|2^RD", dsc=f"DSC|{again.segment('DSC')[1]}|I")
    assert status(refused) == ("AE", "AE") and errors(refused) == [("DSC^1^1", "204")]


def test_an_iti21_pointer_is_not_an_iti22_one(ward):
    pdq = exchange(ward, f"MSH|^~\\&|CONSUMER|CDEPT|ENGINE|SITE|2024||QBP^Q22^QBP_Q21|{control_id()}|P|2.5",
                   "QPD|IHE PDQ Query|MIX|@PID.5.1.1^DUPONT", "RCP|I|1^RD")
    pointer = str(pdq.segment("DSC")[1])
    refused = zv1(ward, f"{Q}|MIX|@PID.5.1.1^DUPONT", rcp="RCP|I|1^RD", dsc=f"DSC|{pointer}|I")
    assert status(refused) == ("AE", "AE") and errors(refused) == [("DSC^1^1", "204")]


@pytest.mark.parametrize(("qpd", "expected"), [
    (f"{Q}|E1|@PID.5.1.1^DUPONT~@PV1.45^20240101", [("QPD^1^3^2^1", "103")]),
    (f"{Q}|E2|@PV2.3^x", [("QPD^1^3^1^1", "103")]),
    (f"{Q}|E3|@PV1.3.9^x", [("QPD^1^3^1^1", "103")]),
    (f"{Q}|E4|@PV1.19^{'9' * 201}", [("QPD^1^3^1^2", "104")]),
    (f"{Q}|E5|@PV1.2^I|||||^^^IPP~^^^NOWHERE", [("QPD^1^8^2", "204")]),
    (f"{Q}|E6|", [("QPD^1^3", "101")]),
    (f"{Q}|E7|@PV1.2^", [("QPD^1^3", "101")]),
    (f"{Q}|E8|@PV1.2^I||NOTANALGORITHM", [("QPD^1^5", "103")]),
])
def test_refusals(ward, sink, qpd, expected):
    answer = zv1(ward, qpd)
    assert status(answer) == ("AE", "AE")
    assert errors(answer) == expected
    assert named(answer, "PID") == []
    assert (sink.records[-1].event_types[0][0], sink.records[-1].outcome) == ("ITI-22", 4)


def test_rcp_refusal(ward):
    answer = zv1(ward, f"{Q}|E9|@PV1.2^I", rcp="RCP|I|0^RD")
    assert status(answer) == ("AE", "AE") and errors(answer) == [("RCP^1^2^1^1", "102")]


def test_qpd8_restricts_the_identifiers_returned(ward):
    answer = zv1(ward, f"{Q}|D1|@PV1.19^V1001|||||^^^&1.2.250.1.71.1&ISO")
    assert [str(pid[3]) for pid in named(answer, "PID")] == [f"100^^^{IPP}^PI"]


def test_phonetic_mode_adds_qri_after_the_visit(ward):
    answer = zv1(ward, f"{Q}|F1|@PID.5.1.1^DUPOND~@PV1.2^O||SOUNDEX-FR")
    assert groups(answer) == [("101", "V2001")]
    assert [str(segment[0]) for segment in answer][-3:] == ["PID", "PV1", "QRI"]


def test_merged_patients_visits_follow_the_survivor(ward):
    msh = f"MSH|^~\\&|ADT|HOSP|ENGINE|SITE|2024||ADT^A40^ADT_A39|{control_id()}|P|2.5"
    ack = exchange(ward, msh, "EVN||2024", f"PID|1||100^^^{IPP}^PI||DUPONT^JEAN^^^^^L", f"MRG|102^^^{IPP}^PI")
    assert str(ack.segment("MSA")[1]) == "AA"
    assert groups(zv1(ward, f"{Q}|M1|@PV1.19^V3001")) == [("100", "V3001")]
    assert groups(zv1(ward, f"{Q}|M2|@PV1.7.1^D123")) == [("100", "V1001"), ("100", "V3001")]
    assert groups(zv1(ward, f"{Q}|M3|@PID.5.1.1^DURAND")) == []  # the subsumed record is not active any more
    # the survivor then reports the inherited visit in its new bed: one row, the current one
    adt(ward, "A08", f"1||100^^^{IPP}^PI||DUPONT^JEAN^^^^^L||19800115|M",
        f"PV1|1|I|CARDIO^301^1^CHU||||D123^LEGER MARTIN^ANNE|||CAR|||||||||V3001^^^{VISITS}^VN")
    assert groups(zv1(ward, f"{Q}|M4|@PV1.19^V3001")) == [("100", "V3001")]
    assert groups(zv1(ward, f"{Q}|M5|@PV1.3.1^CARDIO~@PV1.3.2^101")) == []
    assert groups(zv1(ward, f"{Q}|M6|@PV1.3.1^CARDIO~@PV1.3.2^301")) == [("100", "V3001")]


def test_answer_uses_the_query_delimiters(ward):
    msh = f"MSH#$~\\&#CONSUMER#CDEPT#ENGINE#SITE#2024##QBP$ZV1$QBP_Q21#{control_id()}#P#2.5"
    with MLLPClient("127.0.0.1", ward) as client:
        client.socket.settimeout(20)
        received = client.send_message("\r".join([msh, f"QPD#{Q}#X1#@PV1.19$V1001", "RCP#I"]))
        while not received.endswith(b"\x1c\x0d"):
            received += client.socket.recv(65536)
    answer = parse(received[1:-2])
    assert answer.encoding.component == "$"
    pv1 = answer.segment("PV1")
    assert pv1.get(3, 2) == "205" and pv1.get(7, 2) == "LÉGER-MARTIN" and pv1.get(19, 4, 2) == "1.2.250.1.71.4"


# -- the store on its own ----------------------------------------------------------------------------------------

def _a01(pv1: str, *extra: str):
    return parse("\r".join(["MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5", f"PID|1||1^^^{IPP}", pv1, *extra]))


def test_record_visit_costs_no_statement_without_a_visit_and_one_with(runtime):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(runtime.db.engine, "before_cursor_execute", count)
    try:
        with runtime.uow() as uow:
            patient_id = _a_patient(uow)
            statements.clear()
            assert record_visit(uow.session, patient_id, _a01("PV1||N")) is False
            assert record_visit(uow.session, patient_id, _a01("PV1||I||||||D1^X")) is False
            assert statements == []
            assert record_visit(uow.session, patient_id, _a01("PV1||I|W^1")) is True
            assert len(statements) == 1
            assert record_visit(uow.session, patient_id, _a01("PV1||I|W^2")) is True  # same current visit
            assert record_visit(uow.session, patient_id, _a01("PV1||I|W^3" + "|" * 16 + "V9")) is True
            uow.commit()
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", count)
    with runtime.uow(readonly=True) as uow:
        rows = uow.session.execute(select(PatientVisit.visit_key, PatientVisit.room)
                                   .order_by(PatientVisit.visit_key)).all()
    assert [tuple(row) for row in rows] == [("", "2"), ("V9", "3")]


def _a_patient(uow) -> int:
    patient = Patient(family_name="X")
    uow.session.add(patient)
    uow.session.flush()
    return patient.id


def test_translate_keeps_values_across_delimiters():
    odd = Encoding(component="$", subcomponent="#")
    assert translate("PV1|1|I|A^B$C", odd, DEFAULT_ENCODING) == "PV1|1|I|A\\S\\B^C"
    assert translate("PV1|1|I|A\\S\\B^C", DEFAULT_ENCODING, odd) == "PV1|1|I|A^B$C"
    assert translate("X|a$b\\T\\c\\H\\d\\", odd, DEFAULT_ENCODING) == "X|a^b#c\\H\\d\\"
    assert translate("X|a&b", DEFAULT_ENCODING, DEFAULT_ENCODING) == "X|a&b"
