"""PIX and PDQ against a real ``ihe-engine serve`` (two workers) with python-hl7's MLLP client, a client this
project did not write: feed, PIX query, PDQ with continuation (each page on a new connection, so whichever worker
the kernel picks answers it), cancel."""

from __future__ import annotations

import hl7
import pytest
from hl7.client import MLLPClient

from serving import start_engine

IPP = "IPP&1.2.250.1.71.1&ISO"
INS = "ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO"


@pytest.fixture
def engine(tmp_path):
    engine = start_engine(tmp_path / "var", "--workers", "2")
    yield engine
    engine.stop()


def exchange(engine, text: str) -> hl7.Message:
    host, port = engine.host_port("mllp")
    with MLLPClient(host, port) as client:
        client.socket.settimeout(20)
        received = client.send_message(text)
        while not received.endswith(b"\x1c\x0d"):
            more = client.socket.recv(65536)
            assert more, "server closed before answering"
            received += more
    return hl7.parse(received[1:-2].decode())


def header(message_type: str, control_id: str) -> str:
    return f"MSH|^~\\&|CONSUMER|CDEPT|ENGINE|SITE|20240101120000||{message_type}|{control_id}|P|2.5"


def test_pix_and_pdq_over_mllp(engine):
    for number in range(3):
        ids = f"{900 + number}^^^{IPP}^PI" + (f"~18001234567890{number}^^^{INS}^INS" if number == 0 else "")
        ack = exchange(engine, "\r".join([header("ADT^A01^ADT_A01", f"F{number}"), "EVN||2024",
                                          f"PID|1||{ids}||LÉGER^ANNE{number}^^^^^L||1980010{number + 1}|F",
                                          "PV1||O"]))
        assert str(ack.segment("MSA")[1]) == "AA"

    pix = exchange(engine, "\r".join([header("QBP^Q23^QBP_Q21", "PIX1"),
                                      f"QPD|IHE PIX Query|PQ1|900^^^{IPP}^PI|^^^&1.2.250.1.213.1.4.8&ISO", "RCP|I"]))
    assert (str(pix.segment("MSA")[1]), str(pix.segment("QAK")[2])) == ("AA", "OK")
    assert str(pix.segment("PID")[3]) == f"180012345678900^^^{INS}^INS"

    query = "QPD|IHE PDQ Query|PDQ-TAG|@PID.5.1.1^leger"
    first = exchange(engine, "\r".join([header("QBP^Q22^QBP_Q21", "PDQ1"), query, "RCP|I|2^RD"]))
    assert (str(first.segment("MSA")[1]), str(first.segment("QAK")[2])) == ("AA", "OK")
    assert len(first.segments("PID")) == 2
    pointer = str(first.segment("DSC")[1])
    second = exchange(engine, "\r".join([header("QBP^Q22^QBP_Q21", "PDQ2"), query, "RCP|I|2^RD",
                                         f"DSC|{pointer}|I"]))
    assert len(second.segments("PID")) == 1
    assert "DSC" not in [str(segment[0]) for segment in second]
    served = [str(pid[3]).split("^")[0] for answer in (first, second) for pid in answer.segments("PID")]
    assert sorted(served) == ["900", "901", "902"]

    again = exchange(engine, "\r".join([header("QBP^Q22^QBP_Q21", "PDQ3"), query, "RCP|I|2^RD"]))
    cancel = exchange(engine, "\r".join([header("QCN^J01^QCN_J01", "CAN1"), "QID|PDQ-TAG|IHE PDQ Query"]))
    assert str(cancel.segment("MSA")[1]) == "AA"
    refused = exchange(engine, "\r".join([header("QBP^Q22^QBP_Q21", "PDQ4"), query, "RCP|I|2^RD",
                                          f"DSC|{again.segment('DSC')[1]}|I"]))
    assert (str(refused.segment("MSA")[1]), str(refused.segment("QAK")[2])) == ("AE", "AE")
    assert str(refused.segment("ERR")[2]) == "DSC^1^1"
