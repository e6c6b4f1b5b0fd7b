"""French national identity rules: NIR/NIA, the INS-C, INS OIDs and the PID-3/PID-32 rules.

A plug-in: nothing outside this package imports it except :func:`ihe_engine.identity.rules.load_identity_rules`
(when ``identity_rules = "france"``) and the ``ihe-engine ins`` command.
"""

from .insc import InscError, check_insc, compute_insc
from .nir import NirCheck, check_nir, nir_key
from .rules import FrenchIdentityRules

__all__ = ["FrenchIdentityRules", "NirCheck", "check_nir", "nir_key", "InscError", "compute_insc", "check_insc"]
