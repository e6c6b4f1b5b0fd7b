"""INS-C: the 2009 computation (all 14,369 vectors of the public sample), name normalisation, and checking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ihe_engine.france.insc import InscError, check_insc, compute_insc, insc_first_name, insc_key

# Hand-computed with sha256sum and bc from the 29-character input strings shown.
HAND_VECTORS = [
    ("MARIE", "850101", "2850175123456", "1010326268071057131912"),        # 'MARIE     8501012850175123456'
    ("JEAN PIERRE", "851231", "1851299001002", "1660544522921899900727"),  # spaces removed: 'JEANPIERRE...'
    ("ALEXANDRINE", "771231", "1771275000111", "1623380707061215770849"),  # truncated to 'ALEXANDRIN'
    ("", "000000", "205052A123456", "1216473431422268554423"),             # 10 spaces, day 00, 2A kept as letters
]


@pytest.mark.parametrize("first_name, birth_date, nir13, expected", HAND_VECTORS)
def test_hand_computed_vectors(first_name, birth_date, nir13, expected):
    assert compute_insc(first_name, birth_date, nir13) == expected


@pytest.mark.corpus
def test_every_vector_of_the_public_sample_is_reproduced(corpus_dir):
    sample = corpus_dir / "insc" / "Echantillon_de_test_INSC.csv"
    if not sample.is_file():
        pytest.skip(f"{sample} not found")
    rows = [line.split(";") for line in sample.read_text(encoding="utf-8").splitlines()[2:] if line]
    mismatches = [row for row in rows if compute_insc(row[0], row[1], row[2]) != row[4] + row[5]]
    assert len(rows) == 14369
    assert mismatches == []


@pytest.mark.parametrize("name, field", [
    ("PHILIPPE", "PHILIPPE  "),
    ("JEAN MARC", "JEANMARC  "),
    ("MARIE CHRISTINE", "MARIECHRIS"),
    ("   ", " " * 10),
    ("", " " * 10),
    ("ABCDEFGHIJ", "ABCDEFGHIJ"),
])
def test_first_name_field_is_ten_characters_without_spaces(name, field):
    assert insc_first_name(name) == field


@pytest.mark.parametrize("name, offending", [("Éric", "Éric"), ("JEAN-PIERRE", "-"), ("D'ARTAGNAN", "'"),
                                             ("marie", "marie"), ("ANNE\tSOPHIE", "\t")])
def test_names_whose_official_handling_is_unconfirmed_are_refused(name, offending):
    with pytest.raises(InscError, match="not confirmed") as caught:
        insc_first_name(name)
    assert repr("".join(dict.fromkeys(offending))) in str(caught.value)


def test_birth_date_is_used_as_written_even_when_impossible():
    assert len(compute_insc("MARIE", "851399", "2850175123456")) == 22
    assert compute_insc("MARIE", "850100", "2850175123456") != compute_insc("MARIE", "850101", "2850175123456")


@pytest.mark.parametrize("birth_date", ["8501", "85-01-01", "19850101", "８50101", ""])
def test_malformed_birth_date_is_refused(birth_date):
    with pytest.raises(InscError, match="YYMMDD"):
        compute_insc("MARIE", birth_date, "2850175123456")


@pytest.mark.parametrize("nir13, reason", [
    ("285017512345656", "13-character NIR without its key"),
    ("28501751234", "13-character NIR without its key"),
    ("7850175123456", "never an INS"),
    ("5850175123456", "never an INS"),
    ("2850075123456", "does not exist"),
    ("28501Z5123456", "department"),
])
def test_nir_that_cannot_feed_an_insc_is_refused(nir13, reason):
    with pytest.raises(InscError, match=reason):
        compute_insc("MARIE", "850101", nir13)


def test_check_insc_accepts_a_computed_value_and_names_the_expected_key():
    value = HAND_VECTORS[0][3]
    assert check_insc(value) == []
    assert check_insc(value[:-2] + "13") == ["the INS-C key 13 is wrong: the expected key is 12"]


@pytest.mark.parametrize("value", ["101032626807105713191", "10103262680710571319123", "1010326268071057131a12",
                                   "", "１010326268071057131912"])
def test_check_insc_refuses_malformed_values(value):
    assert "22 digits" in check_insc(value)[0]


def test_insc_key_wraps_to_97_for_a_multiple_of_97():
    assert insc_key("0" * 20) == "97"
    assert insc_key(f"{97 * 12345:020d}") == "97"


@settings(max_examples=300, deadline=None)
@given(name=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ ", max_size=30),
       birth_date=st.text(alphabet="0123456789", min_size=6, max_size=6),
       nir13=st.builds(lambda sex, rest: sex + "850175" + rest, st.sampled_from("12"),
                       st.text(alphabet="0123456789", min_size=6, max_size=6)))
def test_every_computed_insc_is_22_digits_that_check(name, birth_date, nir13):
    value = compute_insc(name, birth_date, nir13)
    assert len(value) == 22 and value.isdigit()
    assert check_insc(value) == []
