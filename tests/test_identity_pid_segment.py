"""PID segment builder: the three PID-5 modes, escaping with the message's delimiters, read back by python-hl7."""

from __future__ import annotations

import hl7

from ihe_engine.hl7v2.message import Encoding
from ihe_engine.identity.cx import CX
from ihe_engine.identity.pid_segment import NameMode, PatientTraits, build_pid

IDS = (CX(id="1^2", namespace_id="IPP", universal_id="1.2.3", universal_id_type="ISO", type_code="PI"),
       CX(id="180012345678901", universal_id="1.2.250.1.213.1.4.8", universal_id_type="ISO", type_code="INS"))
TRAITS = PatientTraits(family_name="DUPONT", birth_name="MARTIN", given_name="Jean|Paul", given_names="Marie",
                       mothers_maiden_name="LEFÈVRE", birth_date="19800115", sex="M", street="1 rue & co",
                       city="Lyon", postal_code="69001", country="FRA", birthplace="69123", phone="0400000000",
                       account_number="ACC~1", identity_reliability="VALI")


def test_full_names_used_then_birth_name_and_escaped_values():
    text = build_pid(IDS, TRAITS)
    assert text.startswith("PID|1||1\\S\\2^^^IPP&1.2.3&ISO^PI~180012345678901^^^&1.2.250.1.213.1.4.8&ISO^INS|")
    pid = hl7.parse("MSH|^~\\&|A|B|C|D|2024||ADT^A31|1|P|2.5\r" + text + "\r").segment("PID")
    assert str(pid[5]) == "DUPONT^Jean\\F\\Paul^Marie^^^^D~MARTIN^Jean\\F\\Paul^Marie^^^^L"
    assert str(pid[6]) == "LEFÈVRE^^^^^^M" and str(pid[7]) == "19800115" and str(pid[8]) == "M"
    assert str(pid[11]) == "1 rue \\T\\ co^^Lyon^^69001^FRA^H~^^^^^^BDL^^69123"
    assert str(pid[13]) == "0400000000^PRN^PH" and str(pid[18]) == "ACC\\R\\1" and str(pid[32]) == "VALI"


def test_one_name_is_l_and_nothing_known_leaves_fields_empty():
    assert build_pid(IDS[:1], PatientTraits(family_name="DUPONT", birth_name="DUPONT")).endswith("||DUPONT^^^^^^L")
    assert build_pid(IDS[1:], None) == "PID|1||180012345678901^^^&1.2.250.1.213.1.4.8&ISO^INS"


def test_pix_and_notification_name_modes():
    assert build_pid(IDS[1:], TRAITS, name_mode=NameMode.PIX).endswith("^INS||~^^^^^^S")
    assert build_pid(IDS[1:], TRAITS, name_mode=NameMode.SPACE, set_id=None).endswith("^INS|| ")


def test_other_delimiters():
    encoding = Encoding(field="#", component="$", repetition="*", escape="!", subcomponent="%")
    text = build_pid(IDS, PatientTraits(family_name="A$B"), encoding=encoding)
    assert text == "PID#1##1^2$$$IPP%1.2.3%ISO$PI*180012345678901$$$%1.2.250.1.213.1.4.8%ISO$INS##A!S!B$$$$$$L"
