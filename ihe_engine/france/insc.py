"""The INS-C ("INS calculé", 2009): a 22-digit identifier computed from the Carte Vitale.

Superseded in 2021 by the NIR-based INS, but still found in DMP-era data, so the engine computes and checks it.
The computation hashes first name (10 characters), birth date (YYMMDD, as written) and the beneficiary's own
13-character NIR with SHA-256, keeps the first 64 bits as a 20-digit decimal number and appends a mod-97 key.

How the official algorithm treats accents, hyphens and apostrophes in first names is not confirmed, so only the
characters of the Carte Vitale's own alphabet (A-Z and spaces) are accepted: any other character is refused
rather than silently changed into an INS-C that might be wrong.
"""

from __future__ import annotations

import hashlib
import re

from .nir import NIR_BODY_LENGTH, check_nir

__all__ = ["InscError", "compute_insc", "insc_first_name", "check_insc", "insc_key", "INSC_LENGTH"]

INSC_LENGTH = 22
_NAME_WIDTH = 10
_NAME_ALPHABET = re.compile(r"[A-Z ]*")
_BIRTH_DATE = re.compile(r"\d{6}")
_INSC = re.compile(r"\d{22}")
_HASH_HEX_DIGITS = 16  # 64 bits


class InscError(ValueError):
    """An input the INS-C cannot be computed from; the message says which and why."""


def insc_first_name(first_name: str) -> str:
    """The 10-character name field: spaces removed, truncated or right-padded with spaces."""
    if not _NAME_ALPHABET.fullmatch(first_name):
        odd = "".join(dict.fromkeys(char for char in first_name if not _NAME_ALPHABET.fullmatch(char)))
        raise InscError(f"first name {first_name!r} has characters other than capitals A-Z and spaces ({odd!r}); "
                        "the official handling of accents, hyphens and apostrophes is not confirmed")
    return first_name.replace(" ", "")[:_NAME_WIDTH].ljust(_NAME_WIDTH)


def insc_key(value: str) -> str:
    """The 2-digit key of a 20-digit INS-C value: 97 - (value mod 97)."""
    return f"{97 - int(value) % 97:02d}"


def compute_insc(first_name: str, birth_date: str, nir13: str) -> str:
    """The 22-digit INS-C of a Carte Vitale beneficiary (``birth_date`` YYMMDD exactly as on the card)."""
    if not _BIRTH_DATE.fullmatch(birth_date) or not birth_date.isascii():
        raise InscError(f"the birth date is 6 digits YYMMDD, as written on the card, not {birth_date!r}")
    _check_nir13(nir13)
    source = insc_first_name(first_name) + birth_date + nir13
    digest = hashlib.sha256(source.encode("ascii")).hexdigest()
    value = f"{int(digest[:_HASH_HEX_DIGITS], 16):020d}"
    return value + insc_key(value)


def _check_nir13(nir13: str) -> None:
    if len(nir13) != NIR_BODY_LENGTH:
        raise InscError(f"the INS-C needs the 13-character NIR without its key, not {nir13!r}")
    check = check_nir(nir13, require_key=False)
    if not check.valid:
        raise InscError(f"NIR {nir13!r}: {'; '.join(check.errors)}")


def check_insc(value: str) -> list[str]:
    """What is wrong with a given INS-C (empty when it is 22 digits with the right key)."""
    if not _INSC.fullmatch(value) or not value.isascii():
        return [f"an INS-C is 22 digits (20 and a 2-digit key), not {value!r}"]
    expected = insc_key(value[:-2])
    if value[-2:] != expected:
        return [f"the INS-C key {value[-2:]} is wrong: the expected key is {expected}"]
    return []
