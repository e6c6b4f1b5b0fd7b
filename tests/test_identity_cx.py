"""The CX identifier value type: both textual forms, identity keys, and precise errors."""

from __future__ import annotations

import pytest

from ihe_engine.hl7v2.message import Encoding
from ihe_engine.identity.cx import CX, CXError, IdentifierKey, is_oid

NIST_ID = "P1121120000.2^^^&1.3.6.1.4.1.21367.13.20.1000&ISO"


def test_hl7_form_with_namespace_oid_and_type_code():
    cx = CX.from_hl7("000003^^^CHU-X&1.2.250.1.71.4.2.2&ISO^PI")
    assert (cx.id, cx.namespace_id, cx.universal_id, cx.universal_id_type, cx.type_code) == \
        ("000003", "CHU-X", "1.2.250.1.71.4.2.2", "ISO", "PI")
    assert cx.key == IdentifierKey("1.2.250.1.71.4.2.2", "000003")
    assert cx.to_hl7() == "000003^^^CHU-X&1.2.250.1.71.4.2.2&ISO^PI"


def test_namespace_only_authority_is_its_own_key():
    cx = CX.from_hl7("123^^^HOSP")
    assert cx.key == ("HOSP", "123")
    assert cx.to_hl7() == "123^^^HOSP"


def test_same_oid_with_or_without_namespace_is_the_same_identifier():
    assert CX.from_hl7("7^^^HOSP&1.2.3&ISO").key == CX.from_xds("7^^^&1.2.3&ISO").key


def test_non_iso_universal_id_is_kept_and_used_as_key():
    cx = CX.from_hl7("000003^^^CHU-X&000897406&N^PI")  # PAM FR sample: a local (N) universal id
    assert cx.key == ("000897406", "000003")


def test_xds_form_round_trip():
    cx = CX.from_xds(NIST_ID)
    assert cx.key == ("1.3.6.1.4.1.21367.13.20.1000", "P1121120000.2")
    assert cx.to_xds() == NIST_ID
    assert CX.from_hl7(cx.to_hl7()) == cx


def test_xds_form_keeps_the_french_type_code():
    cx = CX.from_xds("279035121518989^^^&1.2.250.1.213.1.4.8&ISO^NH")
    assert cx.type_code == "NH"
    assert cx.to_xds() == "279035121518989^^^&1.2.250.1.213.1.4.8&ISO"
    assert cx.to_xds(with_type_code=True) == "279035121518989^^^&1.2.250.1.213.1.4.8&ISO^NH"


def test_escapes_are_resolved_and_written_back():
    cx = CX.from_hl7(r"A\S\B^^^NS\T\1")
    assert (cx.id, cx.namespace_id) == ("A^B", "NS&1")
    assert cx.to_hl7() == r"A\S\B^^^NS\T\1"


def test_other_delimiters():
    encoding = Encoding(field="|", component="$", repetition="~", escape="\\", subcomponent="%")
    cx = CX.from_hl7("9$$$NS%1.2%ISO$MR", encoding)
    assert cx.key == ("1.2", "9") and cx.type_code == "MR"
    assert cx.to_hl7(encoding) == "9$$$NS%1.2%ISO$MR"


def test_hl7_null_id_is_recognised():
    assert CX.from_hl7('""^^^&2.71&ISO').is_null
    assert not CX.from_hl7("1^^^&2.71&ISO").is_null


def test_no_xds_form_without_an_iso_oid():
    with pytest.raises(CXError) as caught:
        CX.from_hl7("1^^^HOSP").to_xds()
    assert (caught.value.component, caught.value.subcomponent, caught.value.missing) == (4, 2, True)


@pytest.mark.parametrize(("text", "component", "subcomponent", "code"), [
    ("^^^HOSP", 1, None, "101"),
    ("123", 4, None, "101"),
    ("123^^^", 4, None, "101"),
    ("123^^^&1.2.3", 4, 3, "101"),
    ("123^^^&&ISO", 4, None, "101"),
    ("123^^^NS&&ISO", 4, 2, "101"),
    ("123^^^&not-an-oid&ISO", 4, 2, "102"),
    ("123^^^&1.02.3&ISO", 4, 2, "102"),
])
def test_bad_hl7_identifiers(text, component, subcomponent, code):
    with pytest.raises(CXError) as caught:
        CX.from_hl7(text)
    assert (caught.value.component, caught.value.subcomponent, caught.value.hl7_code) == (component, subcomponent, code)


@pytest.mark.parametrize(("text", "component", "subcomponent"), [
    ("123^^^HOSP", 4, 2),
    ("123^^^&1.2.3", 4, 3),
    ("123^^^&1.2.3&DNS", 4, 3),
    ("123^1^^&1.2.3&ISO", 2, None),
    ("123^^x^&1.2.3&ISO", 3, None),
    ("123^^^&1.2.3&ISO^PI^extra", 6, None),
    ("123^^^&1.2.3&ISO&more", 4, 4),
    ("^^^&1.2.3&ISO", 1, None),
])
def test_bad_xds_identifiers(text, component, subcomponent):
    with pytest.raises(CXError) as caught:
        CX.from_xds(text)
    assert (caught.value.component, caught.value.subcomponent) == (component, subcomponent)


def test_error_location_for_an_err_segment():
    with pytest.raises(CXError) as caught:
        CX.from_hl7("123^^^&1.2.3")
    assert caught.value.location_in("PID", 3, repetition=2) == "PID^1^3^2^4^3"


def test_direct_construction_is_validated_and_immutable():
    with pytest.raises(CXError):
        CX(id="1")
    cx = CX(id="1", universal_id="1.2", universal_id_type="ISO")
    with pytest.raises(AttributeError):
        cx.id = "2"  # type: ignore[misc]


def test_is_oid():
    assert is_oid("1.3.6.1.4.1.21367.13.20.1000") and is_oid("2.16.840.1")
    assert not is_oid("3.1") and not is_oid("1") and not is_oid("1..2") and not is_oid("1.2.")
