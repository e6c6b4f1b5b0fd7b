"""French identity rules for the identity feeds: the INS checks of :mod:`ihe_engine.france.ins` behind the
:class:`~ihe_engine.identity.rules.IdentityRules` contract.

Selected with ``identity_rules = "france"`` in the config file; ``production = true`` turns test and
demonstration identifiers from warnings into errors. Patients without an INS (children, dependants) raise no
issue at all: every rule here is about an INS that is present.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..identity.cx import CX
from ..identity.rules import IdentityIssue
from . import ins

__all__ = ["FrenchIdentityRules"]


class FrenchIdentityRules:
    """INS-NIR / INS-NIA / INS-C checks on PID-3, identity status rules on PID-32, INS as national identifier."""

    def __init__(self, *, production: bool = False) -> None:
        self.production = production

    def check_identity(self, identifiers: Sequence[CX], reliability: str | None, *,
                       typed: bool = True) -> list[IdentityIssue]:
        return (ins.check_pid3(identifiers, production=self.production, typed=typed)
                + ins.check_pid32(identifiers, reliability))

    def national_identifiers(self, identifiers: Sequence[CX]) -> list[CX]:
        return ins.ins_identifiers(identifiers)

    def is_qualified(self, reliability: str | None) -> bool:
        return ins.is_qualified(reliability)

    def __repr__(self) -> str:
        return f"FrenchIdentityRules(production={self.production})"
