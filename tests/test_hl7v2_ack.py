"""Original-mode ACKs, read back with python-hl7 (an independent parser) as the oracle."""

from __future__ import annotations

from datetime import datetime, timezone

import hl7
import pytest

from ihe_engine.errors import LocalProtocolError, TransactionError
from ihe_engine.hl7v2.ack import Hl7Error, build_ack, build_reject
from ihe_engine.hl7v2.message import parse

V25 = (b"MSH|^~\\&|HIS^1.2.3^ISO|HOSP|PIX_MGR^9.9^ISO|IHE|20240102030405||QBP^Q23^QBP_Q21|CTRL-1|T|2.5\r"
       b"QPD|IHE PIX Query|q1|123^^^HOSP\r")
V231 = b"MSH|^~\\&|HIS|HOSP|||20240102030405||ADT^A01|CTRL-2|P|2.3.1\rPID|||1\r"
WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


def oracle(ack: bytes) -> hl7.Message:
    assert ack.endswith(b"\r")
    return hl7.parse(ack.decode())


def test_aa_ack_header_swaps_sender_and_receiver_and_keeps_version():
    ack = oracle(build_ack(parse(V25), "AA", sending_application="ENGINE", sending_facility="SITE", when=WHEN,
                           control_id="ACK-1"))
    msh = ack.segment("MSH")
    assert str(msh[3]) == "PIX_MGR^9.9^ISO"  # the application the sender addressed answers
    assert str(msh[4]) == "IHE"
    assert str(msh[5]) == "HIS^1.2.3^ISO"
    assert str(msh[6]) == "HOSP"
    assert str(msh[7]) == "20240506070809+0000"
    assert str(msh[9]) == "ACK^Q23^ACK"
    assert str(msh[10]) == "ACK-1"
    assert str(msh[11]) == "T"
    assert str(msh[12]) == "2.5"
    msa = ack.segment("MSA")
    assert (str(msa[1]), str(msa[2])) == ("AA", "CTRL-1")
    with pytest.raises(KeyError):
        ack.segment("ERR")


def test_configured_identity_when_the_request_names_no_receiver():
    ack = oracle(build_ack(parse(V231), sending_application="ENGINE", sending_facility="SITE"))
    assert (str(ack.segment("MSH")[3]), str(ack.segment("MSH")[4])) == ("ENGINE", "SITE")


def test_new_control_ids_are_unique_and_fit_msh_10():
    ids = {str(oracle(build_ack(parse(V25))).segment("MSH")[10]) for _ in range(50)}
    assert len(ids) == 50 and all(len(control_id) <= 20 for control_id in ids)


def test_v25_err_segment():
    error = Hl7Error(code="200", text="type ZZZ | unknown", location="MSH^1^9^1^1")
    ack = oracle(build_ack(parse(V25), "AR", errors=[error]))
    assert str(ack.segment("MSA")[1]) == "AR"
    err = ack.segment("ERR")
    assert str(err[1]) == ""
    assert str(err[2]) == "MSH^1^9^1^1"
    assert [str(part) for part in err[3][0]] == ["200", "Unsupported message type", "HL70357"]
    assert str(err[4]) == "E"
    assert ack.unescape(str(err[8])) == "type ZZZ | unknown"


def test_v231_err_also_fills_err_1():
    ack = oracle(build_ack(parse(V231), "AE", errors=[Hl7Error(code="204", location="PID^1^3^1^1", text="x")]))
    err = ack.segment("ERR")
    assert str(err[1]) == "PID^1^3^204&Unknown key identifier&HL70357"
    assert str(err[1][0][3][0]) == "204"
    assert str(err[2]) == "PID^1^3^1^1"
    assert str(err[3]) == "204^Unknown key identifier^HL70357"


def test_several_errors_and_severities_and_msa_text():
    errors = [Hl7Error(code="101", location="PID^1^3", text="missing"),
              Hl7Error(code="103", location="PID^1^8", severity="W", text="odd sex")]
    ack = oracle(build_ack(parse(V25), "AE", errors=errors, text="see ERR"))
    assert str(ack.segment("MSA")[3]) == "see ERR"
    assert [str(err[4]) for err in ack.segments("ERR")] == ["E", "W"]
    assert [str(err[3][0][0]) for err in ack.segments("ERR")] == ["101", "103"]


def test_ack_uses_the_request_delimiters():
    raw = b"MSH#*!%$#APP#FAC#RCV#RF#2024##ADT*A08#C9#P#2.5\rPID###1\r"
    ack = build_ack(parse(raw), "AE", errors=[Hl7Error(code="207", location="PID^1^3", text="a#b")])
    reparsed = parse(ack)
    assert reparsed.encoding == parse(raw).encoding
    assert reparsed.get("MSA-2") == "C9"
    assert reparsed.get("ERR-2.3") == "3"
    assert reparsed.get("ERR-8") == "a#b"
    assert reparsed.header.message_type == "ACK" and reparsed.header.trigger_event == "A08"


def test_reject_of_a_message_without_usable_msh():
    for raw in (b"", b"\x00\xff garbage", b"PID|||1\r"):
        ack = oracle(build_reject(raw, [Hl7Error(code="100", location="MSH^1", text="no MSH")]))
        assert str(ack.segment("MSA")[1]) == "AR"
        assert str(ack.segment("MSA")[2]) == ""
        assert str(ack.segment("ERR")[3][0][0]) == "100"
        assert str(ack.segment("MSH")[12]) == "2.5"


def test_reject_salvages_what_it_can_and_never_echoes_control_bytes():
    raw = b"MSH|^~\\&|HIS|HOSP|R|F|2024||ADT^A01|CTRL\x1c9|P|2.3.1\rbroken segment\r"
    ack = build_reject(raw, [Hl7Error(code="100", location="MSH^2")])
    assert b"\x1c" not in ack and b"\x0b" not in ack
    parsed = oracle(ack)
    assert str(parsed.segment("MSA")[2]) == "CTRL9"
    assert str(parsed.segment("MSH")[5]) == "HIS"
    assert str(parsed.segment("MSH")[12]) == "2.3.1"
    assert str(parsed.segment("MSH")[9]) == "ACK^A01^ACK"


def test_error_from_transaction_error():
    error = Hl7Error.from_exception(TransactionError("unknown domain", code="204", location="QPD^1^3^1^4"))
    assert (error.code, error.location, error.severity, error.text) == ("204", "QPD^1^3^1^4", "E", "unknown domain")
    assert Hl7Error.from_exception(TransactionError("oops", code="XDSRegistryError")).code == "207"


def test_invalid_codes_are_refused():
    with pytest.raises(LocalProtocolError):
        build_ack(parse(V25), "CA")
    with pytest.raises(LocalProtocolError):
        Hl7Error(code="200", severity="X")
