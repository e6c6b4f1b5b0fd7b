"""Name normal form, keys and the French Soundex: what a French PDQ user expects to match."""

from __future__ import annotations

import pytest

from ihe_engine.identity.names import (compact, name_key_rows, name_parts, normalise, query_keys, soundex_fr,
                                       stored_keys)


@pytest.mark.parametrize(("text", "expected"), [
    ("Lefèvre", "LEFEVRE"), ("  d'Évry-le-Château ", "D EVRY LE CHATEAU"), ("ŒUVRARD", "OEUVRARD"),
    ("Weiß", "WEISS"), ("", ""), (None, ""), ("---", ""), ("Ñúñez", "NUNEZ"),
])
def test_normalise_ignores_case_accents_ligatures_and_punctuation(text, expected):
    assert normalise(text) == expected


def test_compound_names_share_one_compact_key():
    assert compact("DE LA FONTAINE") == compact("De-La-Fontaine") == compact("DELAFONTAINE") == "DELAFONTAINE"
    assert compact("D'ARTAGNAN") == compact("DARTAGNAN")


def test_each_significant_part_of_a_compound_name_is_a_key():
    assert stored_keys("MARTIN-DUPONT") == {"MARTINDUPONT", "MARTIN", "DUPONT"}
    assert stored_keys("de la Fontaine") == {"DELAFONTAINE", "FONTAINE"}
    assert name_parts("MARTIN") == [] and stored_keys("MARTIN") == {"MARTIN"}
    assert stored_keys(None) == set()


def test_a_query_with_particles_also_looks_them_up_without():
    assert query_keys("LA FONTAINE") == {"LAFONTAINE", "FONTAINE"}
    assert query_keys("MARTIN DUPONT") == {"MARTINDUPONT"}
    assert query_keys("  ") == set()


@pytest.mark.parametrize(("one", "other"), [
    ("DUPONT", "DUPOND"), ("MARTIN", "MARTAIN"), ("BERTRAND", "BERTRANT"), ("STEPHANE", "STEFANE"),
    ("PHILIPPE", "FILIPE"), ("GAUTHIER", "GAUTIER"), ("THOMAS", "TOMAS"), ("François", "FRANSOIS"),
    ("CATHERINE", "KATHERINE"),
])
def test_french_soundex_groups_names_that_sound_alike(one, other):
    assert soundex_fr(one) == soundex_fr(other)


@pytest.mark.parametrize(("one", "other"), [("DUPONT", "MARTIN"), ("BERNARD", "PETIT"), ("ROBERT", "RICHARD")])
def test_french_soundex_separates_different_names(one, other):
    assert soundex_fr(one) != soundex_fr(other)


def test_soundex_code_shape():
    assert soundex_fr("MARTIN") == "MRTN"
    assert len(soundex_fr("LI")) == 4 and soundex_fr("123") == "" and soundex_fr(None) == ""


def test_stored_rows_carry_kind_key_and_code():
    rows = name_key_rows(7, {"family_name": "Martin-Dupont", "birth_name": None, "given_name": "Élise"})
    assert {(row["kind"], row["key"]) for row in rows} == {("F", "MARTINDUPONT"), ("F", "MARTIN"), ("F", "DUPONT"),
                                                           ("G", "ELISE")}
    assert all(row["patient_id"] == 7 and row["phonetic"] == soundex_fr(row["key"]) for row in rows)
