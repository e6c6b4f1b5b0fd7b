"""Build a PID segment from a patient's identifiers and traits, for answers and notifications.

One builder serves every transaction that sends a PID (ITI-9, ITI-10, ITI-21), which differ only in PID-5:

* :attr:`NameMode.FULL` (PDQ): the names as stored. The used name comes first; a distinct birth name follows as a
  second repetition. Name type codes follow PAM FR: ``L`` for the birth name (or the only name), ``D`` for a used
  name that differs from it.
* :attr:`NameMode.PIX` (ITI-9): repetition 1 empty, repetition 2 only ``S`` (coded pseudo-name) in component 7,
  as the PIX profile requires when no name is returned.
* :attr:`NameMode.SPACE` (ITI-10): a single space.

Every value is escaped with the message's own delimiters, so a name holding ``^`` or ``&`` stays one value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Sequence

from ..hl7v2.message import DEFAULT_ENCODING, Encoding, escape
from .cx import CX

__all__ = ["PatientTraits", "NameMode", "build_pid"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PatientTraits:
    """A frozen snapshot of the demographics an answer sends (None: unknown)."""

    family_name: str | None = None
    given_name: str | None = None
    given_names: str | None = None
    birth_name: str | None = None
    mothers_maiden_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    birthplace: str | None = None
    phone: str | None = None
    account_number: str | None = None
    identity_reliability: str | None = None

    @classmethod
    def from_patient(cls, patient: Any) -> "PatientTraits":
        """From a ``patient`` row (or anything with the same attribute names)."""
        return cls(**{name: getattr(patient, name, None) for name in cls.__slots__})  # type: ignore[attr-defined]


class NameMode(enum.Enum):
    FULL = "full"
    PIX = "pix"
    SPACE = "space"


def build_pid(identifiers: Sequence[CX], traits: PatientTraits | None = None, *,
              encoding: Encoding = DEFAULT_ENCODING, name_mode: NameMode = NameMode.FULL, set_id: int | None = 1
              ) -> str:
    """The PID segment text (no segment terminator) in ``encoding``'s delimiters."""
    traits = traits or PatientTraits()
    fields = [""] * 33
    fields[0] = "PID"
    fields[1] = str(set_id) if set_id is not None else ""
    fields[3] = encoding.repetition.join(cx.to_hl7(encoding) for cx in identifiers)
    fields[5] = _names(traits, encoding, name_mode)
    if name_mode is NameMode.FULL:
        _fill_demographics(fields, traits, encoding)
    while fields and not fields[-1]:
        fields.pop()
    return encoding.field.join(fields)


def _fill_demographics(fields: list[str], traits: PatientTraits, encoding: Encoding) -> None:
    fields[6] = _xpn(encoding, traits.mothers_maiden_name, type_code="M") if traits.mothers_maiden_name else ""
    fields[7] = _esc(traits.birth_date, encoding)
    fields[8] = _esc(traits.sex, encoding)
    fields[11] = _addresses(traits, encoding)
    fields[13] = _join(encoding.component, [_esc(traits.phone, encoding), "PRN", "PH"]) if traits.phone else ""
    fields[18] = _esc(traits.account_number, encoding)
    fields[32] = _esc(traits.identity_reliability, encoding)


def _names(traits: PatientTraits, encoding: Encoding, mode: NameMode) -> str:
    if mode is NameMode.SPACE:
        return " "
    if mode is NameMode.PIX:
        return encoding.repetition + encoding.component * 6 + "S"
    used, birth = traits.family_name, traits.birth_name
    if not used and not birth and not traits.given_name:
        return ""
    if birth and used and birth != used:
        return encoding.repetition.join([_xpn(encoding, used, traits.given_name, traits.given_names, "D"),
                                         _xpn(encoding, birth, traits.given_name, traits.given_names, "L")])
    return _xpn(encoding, used or birth, traits.given_name, traits.given_names, "L")


def _xpn(encoding: Encoding, family: str | None, given: str | None = None, further: str | None = None,
         type_code: str = "L") -> str:
    parts = [_esc(family, encoding), _esc(given, encoding), _esc(further, encoding), "", "", "", type_code]
    return _join(encoding.component, parts)


def _addresses(traits: PatientTraits, encoding: Encoding) -> str:
    repetitions = []
    home = [_esc(traits.street, encoding), "", _esc(traits.city, encoding), _esc(traits.state, encoding),
            _esc(traits.postal_code, encoding), _esc(traits.country, encoding)]
    if any(home):
        repetitions.append(_join(encoding.component, home + ["H"]))
    if traits.birthplace:
        place = _esc(traits.birthplace, encoding)
        coded = place.isdigit() or (len(place) == 5 and place[:2] in ("2A", "2B"))  # an INSEE code goes in XAD-9
        repetitions.append(_join(encoding.component, ["", "", "" if coded else place, "", "", "", "BDL", "",
                                                      place if coded else ""]))
    return encoding.repetition.join(repetitions)


def _esc(value: str | None, encoding: Encoding) -> str:
    return escape(value, encoding) if value else ""


def _join(separator: str, parts: list[str]) -> str:
    while parts and not parts[-1]:
        parts = parts[:-1]
    return separator.join(parts)
