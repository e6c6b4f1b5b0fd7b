"""Pluggable national identity rules: the contract every identity feed (ITI-8, HL7 v3 ITI-44) calls.

Identity feeds are international; what makes an identifier *national* (the French INS), which values are
valid and when an identity may be trusted for automatic linking is national law. A feed therefore asks an
:class:`IdentityRules` for every incoming identity and stays free of any country's rules:

* :meth:`IdentityRules.check_identity` lists the issues; an ``error`` rejects the message (the feed answers
  with an ERR segment built from the issue and changes nothing), a ``warning`` is reported but accepted;
* :meth:`IdentityRules.national_identifiers` names the national identifiers among PID-3, which drive
  linking and merges;
* :meth:`IdentityRules.is_qualified` says whether PID-32 declares the identity trustworthy enough for
  records carrying the same national identifier to be linked automatically.

The rules are chosen once at start-up by :func:`load_identity_rules` from the ``identity_rules`` key of the
config file. Without it, :class:`NoIdentityRules` applies: no national identifiers, nothing ever linked on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import ConfigurationError
from .cx import CX

__all__ = [
    "IdentityIssue",
    "IdentityRules",
    "NoIdentityRules",
    "load_identity_rules",
    "KNOWN_IDENTITY_RULES",
    "ERR_REQUIRED",
    "ERR_DATA_TYPE",
    "ERR_TABLE_VALUE",
    "ERR_APPLICATION",
]

ERR_REQUIRED = "101"
"""HL7 table 0357: required field missing (e.g. PID-32 when PID-3 carries a national identifier)."""
ERR_DATA_TYPE = "102"
"""HL7 table 0357: data type error (a malformed value, a wrong check key)."""
ERR_TABLE_VALUE = "103"
"""HL7 table 0357: table value not found (an OID or code not allowed here)."""
ERR_APPLICATION = "207"
"""HL7 table 0357: application internal error, used for business-rule refusals."""

Severity = Literal["error", "warning"]


@dataclass(frozen=True, kw_only=True, slots=True)
class IdentityIssue:
    """One thing wrong with an incoming identity, with what the feed needs to build ERR-2/ERR-3/ERR-4/ERR-8."""

    severity: Severity
    code: str
    """HL7 table 0357 code for ERR-3: ``"101"`` required field missing, ``"102"`` data type error,
    ``"103"`` table value not found, ``"207"`` application error (business-rule refusal)."""
    message: str
    """What is wrong, in words a hospital integrator understands (goes to ERR-8)."""
    identifier: CX | None = None
    repetition: int | None = None
    """1-based PID-3 repetition at fault, when known (the feed builds ERR-2 from it)."""
    field: str = "PID-3"
    """``"PID-3"`` or ``"PID-32"``."""

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


@runtime_checkable
class IdentityRules(Protocol):
    """National rules over one incoming identity: pure functions, no storage, no I/O."""

    def check_identity(self, identifiers: Sequence[CX], reliability: str | None, *,
                       typed: bool = True) -> list[IdentityIssue]:
        """Issues with PID-3 ``identifiers`` (in message order) and the PID-32 ``reliability`` code.

        ``typed``: the identifiers can carry an identifier type code (HL7 v2 CX.5); an HL7 v3 II has none, so no
        rule about it applies.
        """
        ...

    def national_identifiers(self, identifiers: Sequence[CX]) -> list[CX]:
        """The national identifiers (the INS in France) among ``identifiers``: they drive linking and merges."""
        ...

    def is_qualified(self, reliability: str | None) -> bool:
        """PID-32 declares the identity qualified, so a national identifier may link records automatically."""
        ...


class NoIdentityRules:
    """The default: no national rules, so no issues, no national identifiers, never qualified."""

    def check_identity(self, identifiers: Sequence[CX], reliability: str | None, *,
                       typed: bool = True) -> list[IdentityIssue]:
        return []

    def national_identifiers(self, identifiers: Sequence[CX]) -> list[CX]:
        return []

    def is_qualified(self, reliability: str | None) -> bool:
        return False


def _french_rules(production: bool) -> IdentityRules:
    from ..france.rules import FrenchIdentityRules  # imported on demand: the France package is a plug-in

    return FrenchIdentityRules(production=production)


KNOWN_IDENTITY_RULES = ("none", "france")


def load_identity_rules(settings: Any) -> IdentityRules:
    """The rules named by ``identity_rules`` in the config file (``"france"``), :class:`NoIdentityRules` when unset.

    ``production = true`` in the config file makes test and demonstration identifiers errors instead of warnings.
    """
    extra = getattr(settings, "extra", None) or {}
    name = extra.get("identity_rules")
    production = extra.get("production", False)
    if not isinstance(production, bool):
        raise ConfigurationError(f"production must be true or false, not {production!r}")
    if name is None or name == "none":
        return NoIdentityRules()
    if name == "france":
        return _french_rules(production)
    raise ConfigurationError(
        f"unknown identity_rules {name!r}: choose one of {', '.join(repr(known) for known in KNOWN_IDENTITY_RULES)}")
