"""ITI-9 PIX Query through the real dispatcher and store: every response case of the reference, audit, hostile QPD."""

from __future__ import annotations

import pytest

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


HZLN = "HZLN&1.2.3.411&ISO"
PKLN = "PKLN&1.2.3.511&ISO"
QUERY = "IHE PIX Query^IHE PIX Query|Q1"


@pytest.fixture
def linked(dispatcher):
    """One person known in HZLN and PKLN (one feed, two PID-3 repetitions), one known in HZLN only, KHKN known."""
    feed(dispatcher, f"1||79471^^^{HZLN}^PI~78912^^^{PKLN}^PI||MUELLER^HANS^^^^^L||19400101|M")
    feed(dispatcher, f"1||79234^^^{HZLN}^PI||MEIER^HEIDI^^^^^L||19801130|F")
    feed(dispatcher, "1||K1^^^KHKN^PI||OTHER^ONE^^^^^L||19700101|F")
    return dispatcher


def test_found_returns_the_other_ids_in_one_pid(linked, sink):
    answer = handle(linked, qbp("Q23", f"{QUERY}|79471^^^HZLN^PI", control="PIX-1"))
    assert acknowledgment(answer) == ("AA", "OK")
    assert field(answer, "MSA", 2) == "PIX-1"
    assert field(answer, "QAK", 1) == "Q1"
    assert pid3_sets(answer) == [{f"78912^^^{PKLN}^PI"}]
    pid = segments(answer, "PID")[0]
    assert str(pid[5]) == "~^^^^^^S"
    assert str(segments(answer, "QPD")[0]) == f"QPD|{QUERY}|79471^^^HZLN^PI"
    msh = segments(answer, "MSH")[0]
    assert (str(msh[3]), str(msh[4]), str(msh[5]), str(msh[6])) == ("SUPPLIER", "SFAC", "CONSUMER", "CDEPT")
    assert str(msh[9]) == "RSP^K23^RSP_K23" and str(msh[21]) == "ITI-9^IHE"
    record = sink.records[-1]
    assert record.event_id[0] == "110112" and record.action == "E" and record.outcome == 0
    assert record.event_types[0][0] == "ITI-9"
    query = next(item for item in record.objects if item.type_code == 2)
    assert query.type_code_role == 24 and query.query == f"QPD|{QUERY}|79471^^^HZLN^PI".encode()
    assert dict(query.details)["MSH-10"] == b"PIX-1"
    assert {item.object_id for item in record.objects if item.type_code == 1} >= {f"78912^^^{PKLN}^PI"}


def test_requested_domain_filters_and_own_domain_returns_the_source(linked):
    answer = handle(linked, qbp("Q23", f"{QUERY}|79471^^^HZLN^PI|^^^PKLN"))
    assert pid3_sets(answer) == [{f"78912^^^{PKLN}^PI"}]
    answer = handle(linked, qbp("Q23", f"{QUERY}|79471^^^&1.2.3.411&ISO|^^^&1.2.3.411&ISO~^^^KHKN"))
    assert acknowledgment(answer) == ("AA", "OK")
    assert pid3_sets(answer) == [{f"79471^^^{HZLN}^PI"}]


def test_known_id_without_ids_in_requested_domains_is_nf(linked):
    for qpd in (f"{QUERY}|79234^^^HZLN^PI", f"{QUERY}|79471^^^HZLN^PI|^^^KHKN"):
        answer = handle(linked, qbp("Q23", qpd))
        assert acknowledgment(answer) == ("AA", "NF")
        assert segments(answer, "PID") == [] and errors(answer) == []


def test_unknown_id_in_known_domain(linked, sink):
    answer = handle(linked, qbp("Q23", f"{QUERY}|NOPE^^^HZLN^PI"))
    assert acknowledgment(answer) == ("AE", "AE")
    assert errors(answer) == [("QPD^1^3^1^1", "204")]
    assert segments(answer, "PID") == []
    assert sink.records[-1].outcome == 4


def test_unknown_source_domain(linked):
    answer = handle(linked, qbp("Q23", f"{QUERY}|79471^^^NOWHERE^PI"))
    assert acknowledgment(answer) == ("AE", "AE")
    assert errors(answer) == [("QPD^1^3^1^4", "204")]


def test_each_unknown_target_domain_is_reported(linked):
    answer = handle(linked, qbp("Q23", f"{QUERY}|79471^^^HZLN^PI|^^^PKLN~^^^NONEXISTING~^^^&1.2.3.4&ISO"))
    assert acknowledgment(answer) == ("AE", "AE")
    assert errors(answer) == [("QPD^1^4^2", "204"), ("QPD^1^4^3", "204")]


def test_merged_id_answers_with_the_survivor(linked):
    merge = "\r".join(["MSH|^~\\&|SRC|HOSP|ENGINE|SITE|20240101120000||ADT^A40^ADT_A39|M-1|P|2.5", "EVN||2024",
                       f"PID|1||79471^^^{HZLN}^PI", f"MRG|79234^^^{HZLN}^PI"]) + "\r"
    assert b"MSA|AA" in handle(linked, merge)
    answer = handle(linked, qbp("Q23", f"{QUERY}|79234^^^HZLN^PI"))
    assert acknowledgment(answer) == ("AA", "OK")
    assert pid3_sets(answer) == [{f"79471^^^{HZLN}^PI", f"78912^^^{PKLN}^PI"}]


def test_removed_id_is_unknown(linked):
    feed(linked, f"1||79471^^^{HZLN}^PI~\"\"^^^{PKLN}^PI||MUELLER^HANS^^^^^L", trigger="A08")
    answer = handle(linked, qbp("Q23", f"{QUERY}|78912^^^PKLN^PI"))
    assert errors(answer) == [("QPD^1^3^1^1", "204")]
    assert acknowledgment(handle(linked, qbp("Q23", f"{QUERY}|79471^^^HZLN^PI"))) == ("AA", "NF")


@pytest.mark.parametrize(("qpd", "expected"), [
    (f"{QUERY}|", ("QPD^1^3^1^1", "101")),
    (f"{QUERY}|79471", ("QPD^1^3^1^4", "101")),
    (f"{QUERY}|^^^HZLN", ("QPD^1^3^1^1", "101")),
    (f"{QUERY}|79471^^^&not-an-oid&ISO", ("QPD^1^3^1^4^2", "102")),
])
def test_malformed_source_is_refused_with_its_location(linked, qpd, expected):
    answer = handle(linked, qbp("Q23", qpd))
    assert acknowledgment(answer) == ("AE", "AE")
    assert errors(answer) == [expected]


def test_deferred_query_is_refused(linked):
    answer = handle(linked, qbp("Q23", f"{QUERY}|79471^^^HZLN^PI", rcp="RCP|D"))
    assert errors(answer) == [("RCP^1^1", "102")]


def test_missing_qpd_and_old_version_get_an_ack_ae(linked):
    answer = handle(linked, "MSH|^~\\&|C|D|S|F|2024||QBP^Q23^QBP_Q21|X1|P|2.5\rRCP|I\r")
    assert field(answer, "MSA", 1) == "AE" and errors(answer) == [("QPD^1", "100")]
    answer = handle(linked, f"MSH|^~\\&|C|D|S|F|2024||QBP^Q23^QBP_Q21|X2|P|2.3.1\rQPD|{QUERY}|79471^^^HZLN\r")
    assert field(answer, "MSA", 1) == "AE" and errors(answer) == [("MSH^1^12", "203")]


def test_control_characters_are_not_echoed(linked):
    """A 0x1C echoed before a segment end would close the MLLP frame early."""
    answer = handle(linked, qbp("Q23", f"{QUERY}\x1c\x01|79471^^^HZLN^PI"))
    assert b"\x1c" not in answer and b"\x01" not in answer
    assert acknowledgment(answer) == ("AA", "OK")


def test_unknown_event_of_a_known_type_is_rejected(linked):
    answer = handle(linked, qbp("Q99", f"{QUERY}|79471^^^HZLN^PI"))
    assert field(answer, "MSA", 1) == "AR" and errors(answer) == [("MSH^1^9^1^2", "201")]


def test_query_changes_nothing_and_is_answered_again(linked, runtime):
    raw = qbp("Q23", f"{QUERY}|79471^^^HZLN^PI", control="SAME")
    first, second = handle(linked, raw), handle(linked, raw)
    assert pid3_sets(first) == pid3_sets(second)
    with runtime.db.sessions() as session:
        from sqlalchemy import func, select

        from ihe_engine.storage.models import Hl7Exchange
        assert session.scalar(select(func.count()).select_from(Hl7Exchange).where(
            Hl7Exchange.control_id == "SAME")) == 0
