"""Person names as French users search them: normal form, search keys and a French phonetic code.

Decisions (what a PDQ consumer can rely on):

* **Case, accents and ligatures never matter.** ``Œ`` is ``OE``, ``ß`` is ``SS``, ``É`` is ``E``.
* **Spaces, hyphens and apostrophes never matter.** A name's *compact key* keeps letters and digits only, so
  ``DE LA FONTAINE``, ``De-La-Fontaine`` and ``DELAFONTAINE`` are one key, and so are ``D'ARTAGNAN`` and
  ``DARTAGNAN``.
* **Each part of a compound name finds it.** ``MARTIN-DUPONT`` is found by ``MARTIN``, by ``DUPONT`` and by
  ``MARTIN DUPONT``; ``DE LA FONTAINE`` by ``FONTAINE``. Particles (``DE``, ``LA``, ``D'``...) are not parts on
  their own (a search for ``DE`` would find half the country), and a query naming particles also tries the name
  without them (``LA FONTAINE`` finds ``DE LA FONTAINE``). Parts trade precision for recall on purpose: a
  hyphenated double name is often recorded with one half only, and PDQ consumers confirm on other traits.
* **A trailing ``*`` is a prefix search** on the compact key (``MART*`` finds ``MARTIN`` and ``MARTIN-DUPONT``).
* **Phonetic mode** compares :func:`soundex_fr` codes: the French Soundex ("Soundex 2") published by Frédéric
  Brouard, implemented here from its description. No maintained PyPI package provides a French phonetic
  algorithm, so it is written out; it is deliberately coarse (4 characters) and meant to be combined with
  other traits (birth date, given name).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise", "compact", "name_parts", "stored_keys", "query_keys", "soundex_fr", "PARTICLES", "NAME_KINDS",
           "name_key_rows"]

_LIGATURES = str.maketrans({"Œ": "OE", "œ": "oe", "Æ": "AE", "æ": "ae", "ß": "ss", "Ø": "O", "ø": "o",
                            "Ł": "L", "ł": "l", "Đ": "D", "đ": "d"})

PARTICLES = frozenset({"D", "DE", "DU", "DES", "L", "LA", "LE", "LES", "DEL", "DELA", "DELLA", "DI", "DA", "DOS",
                       "DAS", "DO", "VAN", "VON", "DER", "DEN", "TER", "TEN", "Y", "ET", "MAC", "MC", "O"})
"""Words that are never a name part on their own (French, Iberian, Italian, Dutch, German, Gaelic particles)."""


def normalise(text: str | None) -> str:
    """Uppercase, no accents or ligatures, each run of other characters one space (``d'Évry-Le`` -> ``D EVRY LE``)."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    letters = "".join(char for char in decomposed if not unicodedata.combining(char)).upper()
    return " ".join("".join(char if char.isalnum() else " " for char in letters).split())


def compact(text: str | None) -> str:
    """The compact key: :func:`normalise` without spaces (``DE LA FONTAINE`` -> ``DELAFONTAINE``)."""
    return normalise(text).replace(" ", "")


def name_parts(text: str | None) -> list[str]:
    """The significant words of a compound name, in order (particles left out); [] for a one-word name."""
    words = normalise(text).split()
    if len(words) < 2:
        return []
    return [word for word in words if word not in PARTICLES and len(word) > 1]


def _without_particles(text: str | None) -> str:
    return "".join(word for word in normalise(text).split() if word not in PARTICLES)


def stored_keys(text: str | None) -> set[str]:
    """Every key a stored name is found under: the compact key and each part of a compound name."""
    whole = compact(text)
    if not whole:
        return set()
    return {whole, *name_parts(text)}


def query_keys(text: str | None) -> set[str]:
    """Keys an exact (non-prefix) query looks up: its compact key, and without particles when it has some."""
    keys = {compact(text), _without_particles(text)}
    keys.discard("")
    return keys


# -- Soundex 2 (French) --------------------------------------------------------------------------------------------

_CEDILLA = str.maketrans({"Ç": "S", "ç": "s"})
_PRIMARY_GROUPS = (("GUI", "KI"), ("GUE", "KE"), ("GA", "KA"), ("GO", "KO"), ("GU", "K"), ("CA", "KA"),
                   ("CO", "KO"), ("CU", "KU"), ("Q", "K"), ("CC", "K"), ("CK", "K"))
_PREFIXES = (("MAC", "MCC"), ("ASA", "AZA"), ("KN", "NN"), ("PF", "FF"), ("SCH", "SSS"), ("PH", "FF"))
_LATER_VOWELS = re.compile(r"(?<=.)[EIOU]")
_SILENT_H = re.compile(r"(?<![CS])H")
_SILENT_Y = re.compile(r"(?<!A)Y")
_FINAL = re.compile(r"[ATDS]+\Z")
_LATER_A = re.compile(r"(?<=.)A")
_REPEATS = re.compile(r"(.)\1+")


def soundex_fr(text: str | None) -> str:
    """French Soundex ("Soundex 2", F. Brouard): a 4-character code, "" for a name without letters.

    Steps, in order: letters only, uppercase without accents; primary groups (GUI->KI, GUE->KE, GA->KA, GO->KO,
    GU->K, CA->KA, CO->KO, CU->KU, Q->K, CC->K, CK->K); every vowel but Y to A except the first letter;
    prefixes (MAC->MCC, ASA->AZA, KN->NN, PF->FF, SCH->SSS, PH->FF); H dropped unless after C or S; Y dropped
    unless after A; final A, T, D, S dropped; A dropped except first; repeated letters collapsed; first four
    letters, padded with spaces. Two additions, both plain French spelling: ``Ç`` is read ``S`` (before accents are
    dropped, so FRANÇOIS is FRANSOIS, not FRANKOIS) and ``PH`` is read ``FF`` anywhere, not only as a prefix
    (STEPHANE / STEFANE). Known limit of the published algorithm: BV is not V (LEFEBVRE / LEFEVRE differ).
    """
    code = "".join(char for char in compact((text or "").translate(_CEDILLA)) if char.isalpha())
    if not code:
        return ""
    for group, replacement in _PRIMARY_GROUPS:
        code = code.replace(group, replacement)
    code = _LATER_VOWELS.sub("A", code)
    for prefix, replacement in _PREFIXES:
        if code.startswith(prefix):
            code = replacement + code[len(prefix):]
            break
    code = code.replace("PH", "FF")
    code = _SILENT_H.sub("", code)
    code = _SILENT_Y.sub("", code)
    code = _FINAL.sub("", code) or code[:1]
    code = _LATER_A.sub("", code)
    code = _REPEATS.sub(r"\1", code)
    return code[:4].ljust(4)


# -- stored keys ---------------------------------------------------------------------------------------------------

NAME_KINDS = {"family_name": "F", "birth_name": "B", "given_name": "G", "mothers_maiden_name": "M"}
"""Patient name traits with PDQ keys, and their ``patient_name_key.kind``."""


def name_key_rows(patient_id: int, names: dict[str, str | None]) -> list[dict[str, object]]:
    """``patient_name_key`` rows for one patient's names (the :data:`NAME_KINDS` traits present in ``names``)."""
    rows = []
    for trait, kind in NAME_KINDS.items():
        for key in sorted(stored_keys(names.get(trait))):
            rows.append({"patient_id": patient_id, "kind": kind, "key": key[:200], "phonetic": soundex_fr(key)})
    return rows
