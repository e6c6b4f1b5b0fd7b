"""The French NIR (social security number) and NIA (waiting number): structure, decoding and check key.

A NIR is 13 characters plus a 2-digit key: sex (1), birth year (2), birth month (2), place of birth (5),
rank (3). The place is a department (2) and a commune (3), or an overseas department (97x/98x) and a commune (2),
or 99 and an INSEE country code (3) for births abroad. Corsica writes its department 2A or 2B; the key is then
computed with 19 and 18 in their place. Months of 20 and above exist (incomplete civil records).

:func:`check_nir` never raises on bad input: it returns a :class:`NirCheck` whose ``errors`` say why the number
cannot be used and whose ``warnings`` say what is doubtful but accepted. The NIA follows the NIR's layout, but
whether its key is computed the same way is unconfirmed (documented examples fail it), so a wrong NIA key is
a warning only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "NirCheck",
    "NumberKind",
    "check_nir",
    "nir_key",
    "NIR_BODY_LENGTH",
    "NIR_LENGTH",
]

NIR_BODY_LENGTH = 13
NIR_LENGTH = 15

_STRUCTURE = re.compile(r"(?P<sex>\d)(?P<year>\d{2})(?P<month>\d{2})(?P<department>\d{2}|2A|2B)"
                        r"(?P<rest>\d{6})(?P<key>\d{2})?")
_CORSICA_FOR_KEY = {"2A": "19", "2B": "18"}
_OVERSEAS_PREFIXES = ("97", "98")
_ABROAD = "99"


class NumberKind(Enum):
    """What the first digit says the number is."""

    REGULAR = "regular"          # 1 or 2: a NIR proper (or a NIA laid out like one)
    MIGRANT = "migrant"          # 5 or 6: never an INS
    PROVISIONAL = "provisional"  # 7 or 8: provisional NNP (abolished end 2022), never an INS
    UNKNOWN = "unknown"


_KIND_BY_FIRST_DIGIT = {"1": NumberKind.REGULAR, "2": NumberKind.REGULAR, "5": NumberKind.MIGRANT,
                        "6": NumberKind.MIGRANT, "7": NumberKind.PROVISIONAL, "8": NumberKind.PROVISIONAL}
_SEX_BY_FIRST_DIGIT = {"1": "male", "2": "female"}


@dataclass(frozen=True, slots=True)
class NirCheck:
    """A NIR or NIA, decoded as far as its structure allows, with what is wrong (errors) or doubtful (warnings)."""

    text: str
    nia: bool = False
    kind: NumberKind = NumberKind.UNKNOWN
    sex: str | None = None
    year: str | None = None
    month: str | None = None
    department: str | None = None
    commune: str | None = None
    country: str | None = None
    rank: str | None = None
    key: str | None = None
    expected_key: str | None = None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def body(self) -> str:
        """The 13 characters without the key."""
        return self.text[:NIR_BODY_LENGTH]

    @property
    def place_of_birth(self) -> str:
        """The place of birth in words: department and commune, overseas, or abroad and the country code."""
        if self.country is not None:
            return f"abroad, INSEE country code 99{self.country}"
        if self.department is None:
            return "unknown"
        where = "overseas department" if self.department.startswith(_OVERSEAS_PREFIXES) else "department"
        return f"{where} {self.department}, commune {self.commune}"


def nir_key(body: str) -> str:
    """The 2-digit key of a 13-character NIR body: 97 - (body mod 97), with 2A/2B counted as 19/18."""
    department = body[5:7]
    digits = body[:5] + _CORSICA_FOR_KEY.get(department, department) + body[7:]
    if len(body) != NIR_BODY_LENGTH or not digits.isdigit() or not digits.isascii():
        raise ValueError(f"a NIR body is 13 digits (2A/2B allowed as department), not {body!r}")
    return f"{97 - int(digits) % 97:02d}"


def check_nir(text: str, *, nia: bool = False, as_ins: bool = True, require_key: bool = True) -> NirCheck:
    """Decode and check ``text`` as a NIR (or, with ``nia``, a NIA).

    ``as_ins``: the number is offered as an INS, so migrant and provisional numbers are errors (for a NIA,
    whose numbering is not confirmed, warnings). ``require_key``: the 15-character form is expected, as in PID-3.
    """
    match = _STRUCTURE.fullmatch(text) if text.isascii() else None
    if match is None:
        return NirCheck(text=text, nia=nia, errors=(_structure_error(text),))
    errors: list[str] = []
    warnings: list[str] = []
    parts = _decode(match)
    first = match["sex"]
    kind = _KIND_BY_FIRST_DIGIT.get(first, NumberKind.UNKNOWN)
    _check_kind(kind, first, nia=nia, as_ins=as_ins, errors=errors, warnings=warnings)
    _check_month(match["month"], errors=errors, warnings=warnings)
    expected = nir_key(text[:NIR_BODY_LENGTH])
    _check_key(match["key"], expected, nia=nia, require_key=require_key, errors=errors, warnings=warnings)
    return NirCheck(text=text, nia=nia, kind=kind, sex=_SEX_BY_FIRST_DIGIT.get(first), year=match["year"],
                    month=match["month"], rank=match["rest"][3:], key=match["key"], expected_key=expected,
                    errors=tuple(errors), warnings=tuple(warnings), **parts)


def _label(nia: bool) -> str:
    return "NIA" if nia else "NIR"


_PARTS = (("the sex digit (position 1)", 0, 1, r"\d"), ("the birth year (positions 2-3)", 1, 3, r"\d{2}"),
          ("the birth month (positions 4-5)", 3, 5, r"\d{2}"),
          ("the department (positions 6-7: 2 digits, 2A or 2B)", 5, 7, r"\d{2}|2A|2B"),
          ("the commune and rank (positions 8-13)", 7, 13, r"\d{6}"), ("the key (positions 14-15)", 13, 15, r"\d{2}"))


def _structure_error(text: str) -> str:
    """Names the first part of ``text`` that breaks the NIR layout."""
    if len(text) not in (NIR_BODY_LENGTH, NIR_LENGTH):
        return f"a NIR has 13 characters and a 2-digit key (15 in all), not {len(text)}: {text!r}"
    for name, start, end, pattern in _PARTS:
        part = text[start:end]
        if part and not (part.isascii() and re.fullmatch(pattern, part)):
            return f"{text!r} is not a NIR: {name} is {part!r}"
    return f"{text!r} is not a NIR"


def _decode(match: re.Match[str]) -> dict[str, str | None]:
    """Department and commune, overseas department (3 digits) and commune (2), or abroad's country code."""
    department, rest = match["department"], match["rest"]
    if department == _ABROAD:
        return {"department": None, "commune": None, "country": rest[:3]}
    if department in _OVERSEAS_PREFIXES:
        return {"department": department + rest[0], "commune": rest[1:3], "country": None}
    return {"department": department, "commune": rest[:3], "country": None}


def _check_kind(kind: NumberKind, first: str, *, nia: bool, as_ins: bool, errors: list[str],
                warnings: list[str]) -> None:
    if kind is NumberKind.UNKNOWN:
        errors.append(f"the first digit {first} is not a sex digit (1 male, 2 female)")
        return
    if kind is NumberKind.REGULAR or not as_ins:
        return
    what = ("a migrant number (first digit 5 or 6)" if kind is NumberKind.MIGRANT
            else "a provisional number (NNP, first digit 7 or 8)")
    if nia:
        warnings.append(f"this NIA starts like {what}; an INS normally starts with 1 or 2")
    else:
        errors.append(f"this is {what}, which is never an INS: only NIRs starting with 1 or 2 are")


def _check_month(month: str, *, errors: list[str], warnings: list[str]) -> None:
    number = int(month)
    if number == 0 or 13 <= number <= 19:
        errors.append(f"birth month {month} does not exist (01 to 12, or 20 and above for an incomplete civil record)")
    elif number >= 20:
        warnings.append(f"birth month {month} means the civil record is incomplete (month unknown)")


def _check_key(key: str | None, expected: str, *, nia: bool, require_key: bool, errors: list[str],
               warnings: list[str]) -> None:
    label = _label(nia)
    if key is None:
        if require_key:
            errors.append(f"the {label} has no key: 15 characters expected, the key would be {expected}")
        return
    if not 1 <= int(key) <= 97:
        problem = f"the key {key} is out of range (01 to 97); the expected key is {expected}"
    elif key != expected:
        problem = f"the key {key} is wrong: the expected key is {expected}"
    else:
        return
    if nia:
        warnings.append(f"{problem} (NIA keys are not confirmed to follow the NIR rule, so this is not refused)")
    else:
        errors.append(problem)
