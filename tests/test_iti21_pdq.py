"""ITI-21 PDQ through the real dispatcher and store: criteria, domains, continuation across workers, cancel,
hostile QPDs, audit; each on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ihe_engine.hl7v2.dispatch import Hl7Dispatcher
from ihe_engine.identity import iti21
from pixpdq_testing import (CapturingSink, acknowledgment, errors, feed, field, handle, loopback_runtime, pid3_sets,
                            pixpdq_dispatcher, qbp, segments)


@pytest.fixture
def sink() -> CapturingSink:
    return CapturingSink()


@pytest.fixture
def runtime(database, reactor_thread, tmp_path, sink):
    yield from loopback_runtime(database, reactor_thread, tmp_path, sink)


@pytest.fixture
def dispatcher(runtime):
    return pixpdq_dispatcher(runtime)


IPP = "IPP&1.2.250.1.71.1&ISO"
INS = "ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO"
Q = "IHE PDQ Query"


@pytest.fixture
def people(dispatcher):
    feed(dispatcher, f"1||100^^^{IPP}^PI~180012345678901^^^{INS}^INS||DUPONT^JEAN^^^^^D~MARTIN^JEAN^^^^^L||"
                     "19800115|M|||12 rue de la Paix^^Paris^^75002^FRA^H||0145000000|||||ACC100")
    feed(dispatcher, f"1||101^^^{IPP}^PI||MARTIN-DUPONT^Élise^^^^^L|LEFÈVRE|19801130|F|||^^Lyon^^69001^FRA")
    feed(dispatcher, f"1||102^^^{IPP}^PI||DE LA FONTAINE^Jean^^^^^L||19751201|M")
    feed(dispatcher, f"1||103^^^{IPP}^PI||O\\S\\BRIEN^Seán^^^^^L||19900101|M")
    for number in range(5):
        feed(dispatcher, f"1||20{number}^^^{IPP}^PI||DURAND^PAUL{number}^^^^^L||1970010{number + 1}|M")
    return dispatcher


def test_family_name_query_answers_pids_with_french_names(people, sink):
    answer = handle(people, qbp("Q22", f"{Q}|T1|@PID.5.1.1^dupont", control="PDQ-1"))
    assert acknowledgment(answer) == ("AA", "OK")
    assert field(answer, "MSA", 2) == "PDQ-1" and field(answer, "QAK", 1) == "T1"
    assert str(segments(answer, "MSH")[0][9]) == "RSP^K22^RSP_K21"
    assert str(segments(answer, "MSH")[0][21]) == "ITI-21^IHE"
    assert pid3_sets(answer) == [{f"100^^^{IPP}^PI", f"180012345678901^^^{INS}^INS"}, {f"101^^^{IPP}^PI"}]
    first, second = segments(answer, "PID")
    assert str(first[5]) == "DUPONT^JEAN^^^^^D~MARTIN^JEAN^^^^^L"
    assert str(first[7]) == "19800115" and str(first[8]) == "M"
    assert str(first[11]) == "12 rue de la Paix^^Paris^^75002^FRA^H" and str(first[18]) == "ACC100"
    assert str(second[5]) == "MARTIN-DUPONT^Élise^^^^^L" and str(second[6]).startswith("LEFÈVRE")
    assert segments(answer, "DSC") == []
    record = sink.records[-1]
    assert (record.event_id[0], record.action, record.event_types[0][0], record.outcome) == \
        ("110112", "E", "ITI-21", 0)
    assert {item.object_id for item in record.objects if item.type_code == 1} == {f"100^^^{IPP}^PI",
                                                                                   f"101^^^{IPP}^PI"}


@pytest.mark.parametrize(("criteria", "expected"), [
    ("@PID.5.1^MARTIN~@PID.5.2^JEAN~@PID.5.7^L", {"100"}),  # birth name only: L is the birth name (PAM FR)
    ("@PID.5.1^DUPONT~@PID.5.7^L", {"101"}),                # 100's DUPONT is its used name, not its birth name
    ("@PID.5.1.1^LA FONTAINE", {"102"}),
    ("@PID.5.1.1^O'BRIEN~@PID.5.2^SEAN", {"103"}),      # escaped ^ in the stored name, accents in the given name
    ("@PID.5.1.1^DUR*~@PID.7^19700103", {"202"}),
    ("@PID.6.1.1^lefevre", {"101"}),
    ("@PID.11.3^LYON", {"101"}), ("@PID.11.5^75002", {"100"}), ("@PID.11.6^FRA~@PID.8^F", {"101"}),
    ("@PID.13^01 45 00 00 00", {"100"}), ("@PID.18.1^ACC100", {"100"}),
    ("@PID.3.1^180012345678901~@PID.3.4.2^1.2.250.1.213.1.4.8", {"100"}),
    ("@PID.3.1^102~@PID.3.4.1^IPP", {"102"}),
    ("@PID.3.4^ASIP-SANTE-INS-NIR", {"100"}),
])
def test_each_supported_criterion(people, criteria, expected):
    answer = handle(people, qbp("Q22", f"{Q}|T2|{criteria}"))
    assert acknowledgment(answer) == ("AA", "OK"), answer
    assert {pid.split("^")[0] for ids in pid3_sets(answer) for pid in ids if IPP in pid} == expected


def test_response_escapes_delimiters_in_names(people):
    answer = handle(people, qbp("Q22", f"{Q}|T3|@PID.5.1.1^OBRIEN"))
    assert b"O\\S\\BRIEN^Se" in answer


def test_no_match_is_nf(people):
    answer = handle(people, qbp("Q22", f"{Q}|T4|@PID.5.1.1^NOBODY"))
    assert acknowledgment(answer) == ("AA", "NF") and segments(answer, "PID") == []


def test_qpd8_restricts_the_domains_returned(people):
    answer = handle(people, qbp("Q22", f"{Q}|T5|@PID.5.1.1^DUPONT|||||^^^&1.2.250.1.213.1.4.8&ISO"))
    assert pid3_sets(answer) == [{f"180012345678901^^^{INS}^INS"}]


def test_unknown_qpd8_domain_is_refused(people, sink):
    answer = handle(people, qbp("Q22", f"{Q}|T6|@PID.5.1.1^DUPONT|||||^^^IPP~^^^NOWHERE~^^^&9.9&ISO"))
    assert acknowledgment(answer) == ("AE", "AE")
    assert errors(answer) == [("QPD^1^8^2", "204"), ("QPD^1^8^3", "204")]
    assert sink.records[-1].outcome == 4


def test_phonetic_mode_adds_qri(people):
    answer = handle(people, qbp("Q22", f"{Q}|T7|@PID.5.1.1^DUPOND||SOUNDEX-FR"))
    assert acknowledgment(answer) == ("AA", "OK")
    assert len(segments(answer, "QRI")) == len(segments(answer, "PID")) == 2
    assert str(segments(answer, "QRI")[0][3]) == "SOUNDEX-FR"
    assert 0 < int(str(segments(answer, "QRI")[0][1])) <= 100


def page(dispatcher: Hl7Dispatcher, pointer: str | None = None, *, tag: str = "PAGED", size: int | str = 2,
         criteria: str = "@PID.5.1.1^DURAND") -> bytes:
    extra = f"DSC|{pointer}|I" if pointer else ""
    return handle(dispatcher, qbp("Q22", f"{Q}|{tag}|{criteria}", rcp=f"RCP|I|{size}^RD", extra=extra))


def test_continuation_across_workers_until_the_last_page(people, runtime):
    first = page(people)
    assert acknowledgment(first) == ("AA", "OK") and len(segments(first, "PID")) == 2
    pointer = field(first, "DSC", 1)
    assert pointer and field(first, "DSC", 2) == "I"
    other_worker = Hl7Dispatcher(runtime, iti21.hl7_routes(runtime), sending_application="ENGINE",
                                 sending_facility="SITE")
    second = page(other_worker, pointer)
    again = page(people, pointer)
    assert pid3_sets(again) == pid3_sets(second)  # a repeated follow-up gets the same page
    third = page(people, field(second, "DSC", 1))
    assert segments(third, "DSC") == []
    served = [pid for answer in (first, second, third) for ids in pid3_sets(answer) for pid in ids]
    assert sorted(pid.split("^")[0] for pid in served) == ["200", "201", "202", "203", "204"]


def test_cancel_forgets_the_pointers(people):
    pointer = field(page(people, tag="CANCELLED"), "DSC", 1)
    cancel = "MSH|^~\\&|CONSUMER|CDEPT|SUPPLIER|SFAC|2024||QCN^J01^QCN_J01|CAN-1|P|2.5\rQID|CANCELLED|IHE PDQ Query\r"
    answer = handle(people, cancel)
    assert field(answer, "MSA", 1) == "AA" and str(segments(answer, "MSH")[0][9]).startswith("ACK^J01")
    refused = page(people, pointer, tag="CANCELLED")
    assert acknowledgment(refused) == ("AE", "AE") and errors(refused) == [("DSC^1^1", "204")]
    no_qid = handle(people, "MSH|^~\\&|C|D|S|F|2024||QCN^J01^QCN_J01|CAN-2|P|2.5\r")
    assert field(no_qid, "MSA", 1) == "AE" and errors(no_qid) == [("QID^1^1", "101")]


@pytest.mark.parametrize("change", ["unknown", "other tag", "other sender", "other criteria"])
def test_pointer_is_bound_to_its_query(people, change):
    pointer = field(page(people, tag="BOUND"), "DSC", 1)
    if change == "unknown":
        answer = page(people, "0" * 32, tag="BOUND")
    elif change == "other tag":
        answer = page(people, pointer, tag="OTHER")
    elif change == "other sender":
        answer = handle(people, qbp("Q22", f"{Q}|BOUND|@PID.5.1.1^DURAND", rcp="RCP|I|2^RD",
                                    extra=f"DSC|{pointer}|I", sender="INTRUDER|X"))
    else:
        answer = page(people, pointer, tag="BOUND", criteria="@PID.5.1.1^DUR*")
    assert acknowledgment(answer) == ("AE", "AE") and errors(answer) == [("DSC^1^1", "204")]


@pytest.mark.parametrize(("qpd", "rcp", "expected"), [
    (f"{Q}|H1|", "RCP|I", ("QPD^1^3", "101")),
    (f"{Q}|H2|@PID.5.2^*", "RCP|I", ("QPD^1^3", "101")),
    (f"{Q}|H3|@PID.19^123", "RCP|I", ("QPD^1^3^1^1", "103")),
    (f"{Q}|H4|@PV1.2^I", "RCP|I", ("QPD^1^3^1^1", "103")),
    (f"{Q}|H5|@PID.8^M~PID-5^X", "RCP|I", ("QPD^1^3^2^1", "102")),
    (f"{Q}|H6|@PID.7^1980-01-15", "RCP|I", ("QPD^1^3^1^2", "102")),
    (f"{Q}|H7|@PID.5.1.1^{'A' * 201}", "RCP|I", ("QPD^1^3^1^2", "104")),
    (f"{Q}|H8|" + "~".join(["@PID.8^M"] * 65), "RCP|I", ("QPD^1^3", "104")),
    (f"{Q}|H9|@PID.5.1.1^DURAND||NYSIIS", "RCP|I", ("QPD^1^5", "103")),
    (f"{Q}|H10|@PID.5.1.1^DURAND", "RCP|I|0^RD", ("RCP^1^2^1^1", "102")),
    (f"{Q}|H11|@PID.5.1.1^DURAND", "RCP|I|ten^RD", ("RCP^1^2^1^1", "102")),
    (f"{Q}|H12|@PID.5.1.1^DURAND", "RCP|I|10^LI", ("RCP^1^2^1^2", "102")),
    (f"{Q}|H13|@PID.5.1.1^DURAND", "RCP|D", ("RCP^1^1", "102")),
    (f"{Q}|H14|@PID.3.4.9^X", "RCP|I", ("QPD^1^3^1^1", "102")),
    (f"{Q}|H15|@PID.7^19²0", "RCP|I", ("QPD^1^3^1^2", "102")),
    (f"{Q}|H16|@PID.5.1.1^DURAND", "RCP|I|²^RD", ("RCP^1^2^1^1", "102")),
    (f"{Q}|H17|@PID.5.1.1^DURAND", "RCP|I|0000^RD", ("RCP^1^2^1^1", "102")),
])
def test_hostile_or_unsupported_qpd_is_refused_precisely(people, runtime, qpd, rcp, expected):
    answer = handle(people, qbp("Q22", qpd, rcp=rcp))
    assert acknowledgment(answer) == ("AE", "AE")
    assert errors(answer) == [expected]
    assert segments(answer, "PID") == [] and segments(answer, "QPD")


@pytest.mark.parametrize("size", ["1000000000", "9" * 5000])
def test_page_size_is_capped(people, size):
    answer = page(people, size=size)
    assert acknowledgment(answer) == ("AA", "OK") and len(segments(answer, "PID")) == 5


def test_zv1_without_the_iti22_route_is_an_unsupported_event(people):
    """This dispatcher serves ITI-21 only (``serve`` adds ITI-22, tests/test_iti22_pdvq.py)."""
    answer = handle(people, qbp("ZV1", "IHE PDQ Query|V1|@PID.5.1.1^DURAND"))
    assert field(answer, "MSA", 1) == "AR" and errors(answer) == [("MSH^1^9^1^2", "201")]


def test_cancel_kind_forgets_every_pointer_of_one_query_only(database):
    from ihe_engine.storage import UnitOfWork

    with UnitOfWork(database.sessions) as uow:
        cancelled = [uow.continuations.create("query-a", b"1"), uow.continuations.create("query-a", b"2")]
        kept = uow.continuations.create("query-b", b"3")
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert uow.continuations.cancel_kind("query-a") == 2
        assert uow.continuations.cancel_kind("never-created") == 0
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert [uow.continuations.get("query-a", token) for token in cancelled] == [None, None]
        assert uow.continuations.get("query-b", kept) == b"3"
