"""``ihe-engine ins``: the real command in a subprocess, its output and exit status."""

from __future__ import annotations

import subprocess
import sys

import pytest


def ins(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ihe_engine.cli", "ins", *args], capture_output=True,
                          text=True, timeout=120)


def test_nir_check_valid_number_prints_the_decoded_parts():
    result = ins("nir-check", "2 85 01 75 123 456 56")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "NIR 285017512345656: valid"
    for expected in ("  sex: female", "  birth year: 85", "  birth month: 01",
                     "  place of birth: department 75, commune 123", "  rank: 456", "  key: 56 (expected 56)"):
        assert expected in lines


def test_nir_check_wrong_key_exits_1_with_the_expected_key():
    result = ins("nir-check", "285017512345657")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "NIR 285017512345657: INVALID"
    assert "  key: 57 (expected 56)" in result.stdout
    assert "error: the key 57 is wrong: the expected key is 56" in result.stdout


def test_nir_check_gives_the_key_of_a_13_character_corsican_number():
    result = ins("nir-check", "205052B123456")
    assert result.returncode == 0
    assert "  key: none given (expected 50)" in result.stdout
    assert "department 2B" in result.stdout


def test_nir_check_refuses_a_provisional_number():
    result = ins("nir-check", "785017512345610")
    assert result.returncode == 1
    assert "never an INS" in result.stdout


def test_nir_check_malformed_input_names_the_part():
    result = ins("nir-check", "2850175X2345656")
    assert result.returncode == 1
    assert "commune and rank" in result.stdout


def test_nir_check_as_nia_accepts_a_doubtful_key_with_a_warning():
    result = ins("nir-check", "--nia", "285017512345657")
    assert result.returncode == 0
    assert result.stdout.startswith("NIA 285017512345657: valid")
    assert "warning:" in result.stdout


def test_insc_prints_exactly_the_22_digits():
    result = ins("insc", "--first-name", "JEAN PIERRE", "--birth-date", "851231", "--nir", "1851299001002")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1660544522921899900727\n"


@pytest.mark.parametrize("args, reason", [
    (("--first-name", "Éric", "--birth-date", "851231", "--nir", "1851299001002"), "not confirmed"),
    (("--first-name", "ERIC", "--birth-date", "1985-12-31", "--nir", "1851299001002"), "YYMMDD"),
    (("--first-name", "ERIC", "--birth-date", "851231", "--nir", "185129900100262"), "without its key"),
])
def test_insc_bad_input_exits_1_with_a_reason_and_no_output(args, reason):
    result = ins("insc", *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert reason in result.stderr


def test_insc_requires_all_three_inputs():
    result = ins("insc", "--first-name", "ERIC")
    assert result.returncode == 2
    assert "--birth-date" in result.stderr
