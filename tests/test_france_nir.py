"""NIR / NIA: layout, decoding (Corsica, overseas, abroad), the mod-97 key, and what may be an INS."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ihe_engine.france.nir import NumberKind, check_nir, nir_key

# Hand-computed with bc: 97 - (n mod 97), 2A -> 19 and 2B -> 18.
FEMALE_PARIS = "285017512345656"
CORSICA_2A = "205052A12345623"
CORSICA_2B = "205052B12345650"
BORN_ABROAD = "185129900100262"


def test_valid_nir_is_decoded():
    check = check_nir(FEMALE_PARIS)
    assert check.valid and not check.warnings
    assert (check.kind, check.sex, check.year, check.month) == (NumberKind.REGULAR, "female", "85", "01")
    assert (check.department, check.commune, check.rank, check.country) == ("75", "123", "456", None)
    assert (check.key, check.expected_key) == ("56", "56")


@pytest.mark.parametrize("nir, department, key", [(CORSICA_2A, "2A", "23"), (CORSICA_2B, "2B", "50")])
def test_corsica_counts_as_19_and_18_for_the_key(nir, department, key):
    check = check_nir(nir)
    assert check.valid
    assert (check.department, check.expected_key) == (department, key)


def test_corsica_departments_are_not_interchangeable():
    swapped = CORSICA_2A.replace("2A", "2B")
    assert check_nir(swapped).errors == ("the key 23 is wrong: the expected key is 50",)


def test_overseas_department_has_three_digits_and_a_two_digit_commune():
    body = "1971297101123"
    check = check_nir(body + nir_key(body))
    assert check.valid
    assert (check.department, check.commune, check.rank) == ("971", "01", "123")
    assert check.place_of_birth == "overseas department 971, commune 01"


def test_born_abroad_gives_the_country_code():
    check = check_nir(BORN_ABROAD)
    assert check.valid
    assert (check.department, check.country) == (None, "001")
    assert "99001" in check.place_of_birth


def test_wrong_key_is_an_error_naming_the_expected_key():
    check = check_nir(FEMALE_PARIS[:-2] + "57")
    assert not check.valid
    assert check.errors == ("the key 57 is wrong: the expected key is 56",)


@pytest.mark.parametrize("key", ["00", "98", "99"])
def test_key_out_of_range_is_an_error(key):
    assert "out of range" in check_nir(FEMALE_PARIS[:-2] + key).errors[0]


def test_key_is_required_unless_told_otherwise():
    body = FEMALE_PARIS[:13]
    assert check_nir(body).errors == ("the NIR has no key: 15 characters expected, the key would be 56",)
    assert check_nir(body, require_key=False).valid


@pytest.mark.parametrize("first, kind", [("5", NumberKind.MIGRANT), ("6", NumberKind.MIGRANT),
                                         ("7", NumberKind.PROVISIONAL), ("8", NumberKind.PROVISIONAL)])
def test_migrant_and_provisional_numbers_are_never_an_ins(first, kind):
    body = first + FEMALE_PARIS[1:13]
    check = check_nir(body + nir_key(body))
    assert check.kind is kind and check.sex is None
    assert not check.valid and "never an INS" in check.errors[0]
    assert check_nir(body + nir_key(body), as_ins=False).valid


@pytest.mark.parametrize("first", ["0", "3", "4", "9"])
def test_other_first_digits_are_not_a_sex_digit(first):
    body = first + FEMALE_PARIS[1:13]
    assert "not a sex digit" in check_nir(body + nir_key(body)).errors[0]


@pytest.mark.parametrize("month", ["00", "13", "19"])
def test_impossible_months_are_errors(month):
    body = FEMALE_PARIS[:3] + month + FEMALE_PARIS[5:13]
    assert any("does not exist" in error for error in check_nir(body + nir_key(body)).errors)


@pytest.mark.parametrize("month", ["20", "35", "42", "99"])
def test_months_from_20_mean_an_incomplete_civil_record(month):
    body = FEMALE_PARIS[:3] + month + FEMALE_PARIS[5:13]
    check = check_nir(body + nir_key(body))
    assert check.valid
    assert "incomplete" in check.warnings[0]


def test_nia_key_mismatch_is_only_a_warning():
    check = check_nir(FEMALE_PARIS[:-2] + "57", nia=True)
    assert check.valid
    assert "expected key is 56" in check.warnings[0]


def test_nia_starting_like_a_provisional_number_is_a_warning():
    body = "7" + FEMALE_PARIS[1:13]
    check = check_nir(body + nir_key(body), nia=True)
    assert check.valid and "provisional" in check.warnings[0]


@pytest.mark.parametrize("text, part", [
    ("28501751234565", "13 characters and a 2-digit key"),
    ("", "13 characters and a 2-digit key"),
    ("2850175123456560", "13 characters and a 2-digit key"),
    ("X85017512345656", "sex digit"),
    ("28X017512345656", "birth year"),
    ("285O17512345656", "birth month"),
    ("205052a12345623", "department"),
    ("20505A212345623", "department"),
    ("2850175123A5656", "commune and rank"),
    ("2850175123456 6", "key"),
    ("２85017512345656", "sex digit"),
    ("2850175123456٥6", "key"),
])
def test_malformed_numbers_name_the_part_at_fault(text, part):
    check = check_nir(text)
    assert not check.valid
    assert part in check.errors[0]
    assert check.expected_key is None


def test_nir_key_refuses_what_is_not_a_body():
    with pytest.raises(ValueError):
        nir_key("28501751234")


# -- properties --------------------------------------------------------------------------------------------------


def digits(count: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=count, max_size=count)


departments = st.one_of(digits(2), st.sampled_from(["2A", "2B"]))
bodies = st.builds(lambda sex, year, month, department, rest: sex + year + month + department + rest,
                   st.sampled_from("12"), digits(2),
                   st.sampled_from([f"{m:02d}" for m in [*range(1, 13), *range(20, 100)]]),
                   departments, digits(6))


@settings(max_examples=500, deadline=None)
@given(body=bodies)
def test_any_well_formed_nir_with_its_computed_key_validates(body):
    check = check_nir(body + nir_key(body))
    assert check.valid, check.errors
    assert 1 <= int(check.expected_key) <= 97


@settings(max_examples=500, deadline=None)
@given(body=bodies, data=st.data())
def test_any_single_digit_change_is_detected(body, data):
    nir = body + nir_key(body)
    digit_positions = [index for index, char in enumerate(nir) if char.isdigit()]
    position = data.draw(st.sampled_from(digit_positions))
    new_digit = data.draw(st.sampled_from([d for d in "0123456789" if d != nir[position]]))
    changed = nir[:position] + new_digit + nir[position + 1:]
    assert not check_nir(changed).valid


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=20))
def test_any_text_gets_an_answer_not_an_exception(text):
    check = check_nir(text)
    assert check.valid == (not check.errors)


@pytest.mark.corpus
def test_every_nir_key_of_the_insc_sample_is_reproduced(corpus_dir):
    sample = corpus_dir / "insc" / "Echantillon_de_test_INSC.csv"
    if not sample.is_file():
        pytest.skip(f"{sample} not found")
    rows = [line.split(";") for line in sample.read_text(encoding="utf-8").splitlines()[2:] if line]
    wrong = [(row[2], row[3], nir_key(row[2])) for row in rows if nir_key(row[2]) != row[3]]
    assert len(rows) == 14369
    assert wrong == []
