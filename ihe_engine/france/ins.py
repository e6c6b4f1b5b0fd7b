"""The INS (identifiant national de santé) in HL7 v2: its OIDs and the PID-3 / PID-32 rules.

An INS is a NIR (or, while one is pending, a NIA) sent under its own OID::

    PID-3   NIR15^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS
    PID-32  the identity status: PROV, RECUP, VALI or QUAL

Rules applied here, from the French national identity framework and the IHE France HL7 v2 constraints:

* an INS is always sent with its key (15 characters), and PID-3 carries only the most recent INS (one at most);
* migrant and provisional numbers are never an INS;
* PID-32 is required with an INS, and a receiver drops the INS unless PID-32 says the identity is qualified
  (QUAL: INSi lookup plus a high-trust document);
* test and demonstration OIDs are refused in production;
* an identifier sent as ``""`` deletes the INS and is not checked as a number.

Every function is pure and returns :class:`~ihe_engine.identity.rules.IdentityIssue` values; the feed decides what
to do with them. Identifiers in other French or local domains pass unchecked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ..identity.cx import CX
from ..identity.rules import ERR_APPLICATION, ERR_DATA_TYPE, ERR_REQUIRED, ERR_TABLE_VALUE, IdentityIssue
from .insc import check_insc
from .nir import check_nir

__all__ = [
    "InsKind",
    "Environment",
    "InsOid",
    "INS_OIDS",
    "INS_NIR_OID",
    "INS_NIA_OID",
    "INS_NIR_TEST_OID",
    "INS_NIR_DEMO_OID",
    "INSC_OID",
    "INSC_TEST_OID",
    "INSC_DEMO_OID",
    "IDNPS_OID",
    "IDNST_OID",
    "SECTEUR_ACTIVITE_OID",
    "IDENTITY_STATUSES",
    "QUALIFIED_STATUS",
    "INS_TYPE_CODE",
    "classify",
    "is_ins",
    "ins_identifiers",
    "check_pid3",
    "check_pid32",
    "is_qualified",
]

INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_NIR_TEST_OID = "1.2.250.1.213.1.4.10"
INS_NIR_DEMO_OID = "1.2.250.1.213.1.4.11"
INSC_OID = "1.2.250.1.213.1.4.2"
INSC_TEST_OID = "1.2.250.1.213.1.4.6"
INSC_DEMO_OID = "1.2.250.1.213.1.4.7"
IDNPS_OID = "1.2.250.1.71.4.2.1"
"""National health-professional identifiers (RPPS, ADELI, ...): not patient identifiers."""
IDNST_OID = "1.2.250.1.71.4.2.2"
"""National structure identifiers (FINESS, SIREN, SIRET, ...)."""
SECTEUR_ACTIVITE_OID = "1.2.250.1.71.4.2.4"
"""TRE_R02 SecteurActivite, the healthcare facility type code system."""

INS_TYPE_CODE = "INS"
"""PID-3.5 of an INS in HL7 v2 (XDS metadata uses NH for the same identifier)."""

QUALIFIED_STATUS = "QUAL"
IDENTITY_STATUSES = {
    "PROV": "provisional",
    "RECUP": "recovered from the INSi teleservice",
    "VALI": "validated against a high-trust document",
    QUALIFIED_STATUS: "qualified (INSi and a high-trust document)",
}
"""PID-32 identity statuses of the national identity-vigilance framework (RNIV)."""


class InsKind(Enum):
    NIR = "INS-NIR"
    NIA = "INS-NIA"
    INSC = "INS-C"


class Environment(Enum):
    PRODUCTION = "production"
    TEST = "test"
    DEMONSTRATION = "demonstration"


@dataclass(frozen=True, slots=True)
class InsOid:
    """What an assigning authority OID says about an identifier."""

    oid: str
    kind: InsKind
    environment: Environment
    namespace: str = ""

    @property
    def label(self) -> str:
        suffix = "" if self.environment is Environment.PRODUCTION else f" {self.environment.value}"
        return f"{self.kind.value}{suffix} ({self.oid})"


INS_OIDS: dict[str, InsOid] = {entry.oid: entry for entry in (
    InsOid(INS_NIR_OID, InsKind.NIR, Environment.PRODUCTION, "ASIP-SANTE-INS-NIR"),
    InsOid(INS_NIA_OID, InsKind.NIA, Environment.PRODUCTION, "ASIP-SANTE-INS-NIA"),
    InsOid(INS_NIR_TEST_OID, InsKind.NIR, Environment.TEST),
    InsOid(INS_NIR_DEMO_OID, InsKind.NIR, Environment.DEMONSTRATION),
    InsOid(INSC_OID, InsKind.INSC, Environment.PRODUCTION, "ASIP-SANTE-INS-C"),
    InsOid(INSC_TEST_OID, InsKind.INSC, Environment.TEST),
    InsOid(INSC_DEMO_OID, InsKind.INSC, Environment.DEMONSTRATION),
)}
_BY_NAMESPACE = {entry.namespace: entry for entry in INS_OIDS.values() if entry.namespace}


def classify(identifier: CX) -> InsOid | None:
    """The INS domain of ``identifier`` by its OID (or, lacking one, its well-known namespace); None for others."""
    if identifier.universal_id:
        return INS_OIDS.get(identifier.universal_id)
    return _BY_NAMESPACE.get(identifier.namespace_id)


def is_ins(identifier: CX) -> bool:
    """An INS proper (NIR or NIA, any environment): the national identifier that links records. INS-C is not."""
    found = classify(identifier)
    return found is not None and found.kind in (InsKind.NIR, InsKind.NIA) and not identifier.is_null


def ins_identifiers(identifiers: Sequence[CX]) -> list[CX]:
    """The INS among ``identifiers``, in message order."""
    return [identifier for identifier in identifiers if is_ins(identifier)]


# -- PID-3 -------------------------------------------------------------------------------------------------------

def check_pid3(identifiers: Sequence[CX], *, production: bool, typed: bool = True) -> list[IdentityIssue]:
    """Issues with the INS and INS-C identifiers of PID-3; other identifiers pass. ``typed``: the identifiers
    carry a type code (PID-3.5) to check; HL7 v3 identifiers have none."""
    issues: list[IdentityIssue] = []
    for repetition, identifier in enumerate(identifiers, start=1):
        found = classify(identifier)
        if found is not None and not identifier.is_null:
            issues.extend(_check_one(identifier, found, repetition, production=production, typed=typed))
    issues.extend(_check_single_ins(identifiers))
    return issues


def _check_one(identifier: CX, found: InsOid, repetition: int, *, production: bool,
               typed: bool) -> list[IdentityIssue]:
    def issue(severity: str, code: str, message: str) -> IdentityIssue:
        return IdentityIssue(severity=severity, code=code, message=f"{found.label} {identifier.id!r}: {message}",
                             identifier=identifier, repetition=repetition)

    issues = [issue(*problem) for problem in _environment_problems(found, production=production)]
    issues += [issue(*problem) for problem in _authority_problems(identifier, found)]
    issues += [issue(*problem) for problem in _value_problems(identifier, found, typed=typed)]
    return issues


Problem = tuple[str, str, str]  # severity, HL7 table 0357 code, message


def _environment_problems(found: InsOid, *, production: bool) -> list[Problem]:
    if found.environment is Environment.PRODUCTION:
        return []
    if production:
        return [("error", ERR_TABLE_VALUE, f"{found.environment.value} identifiers are refused in production")]
    return [("warning", ERR_TABLE_VALUE, f"a {found.environment.value} identifier (refused in production)")]


def _authority_problems(identifier: CX, found: InsOid) -> list[Problem]:
    if not identifier.universal_id:
        return [("error", ERR_DATA_TYPE, f"the assigning authority must carry the OID {found.oid} (PID-3.4.2), "
                                         "not only the namespace")]
    if identifier.namespace_id and found.namespace and identifier.namespace_id != found.namespace:
        return [("warning", ERR_APPLICATION, f"namespace {identifier.namespace_id!r} does not match OID {found.oid} "
                                   f"(expected {found.namespace!r}); the OID is used")]
    return []


def _value_problems(identifier: CX, found: InsOid, *, typed: bool) -> list[Problem]:
    if found.kind is InsKind.INSC:
        return [("error", ERR_DATA_TYPE, message) for message in check_insc(identifier.id)]
    check = check_nir(identifier.id, nia=found.kind is InsKind.NIA)
    problems: list[Problem] = [("error", _nir_error_code(message), message) for message in check.errors]
    problems += [("warning", ERR_DATA_TYPE, message) for message in check.warnings]
    if check.valid and typed and identifier.type_code != INS_TYPE_CODE:
        problems.append(("warning", ERR_TABLE_VALUE, f"the identifier type (PID-3.5) of an INS is "
                                                     f"{INS_TYPE_CODE!r}, not {identifier.type_code!r}"))
    return problems


def _nir_error_code(message: str) -> str:
    """A well-formed number that is not allowed as an INS is a business refusal, not a data type error."""
    return ERR_APPLICATION if "never an INS" in message else ERR_DATA_TYPE


def _check_single_ins(identifiers: Sequence[CX]) -> list[IdentityIssue]:
    """Only the most recent INS is sent: a second, different one leaves the receiver unable to tell which."""
    issues: list[IdentityIssue] = []
    first: CX | None = None
    for repetition, identifier in enumerate(identifiers, start=1):
        if not is_ins(identifier):
            continue
        if first is None:
            first = identifier
        elif identifier.key != first.key:
            issues.append(IdentityIssue(
                severity="error", code=ERR_APPLICATION, identifier=identifier, repetition=repetition,
                message=f"PID-3 carries a second INS {identifier.id!r} besides {first.id!r}: "
                        "only the most recent INS may be sent"))
    return issues


# -- PID-32 ------------------------------------------------------------------------------------------------------

def check_pid32(identifiers: Sequence[CX], reliability: str | None) -> list[IdentityIssue]:
    """PID-32 is required with an INS; without the qualified status the INS is dropped (a warning says so)."""
    status = (reliability or "").strip()
    issues: list[IdentityIssue] = []
    if status and status not in IDENTITY_STATUSES:
        issues.append(IdentityIssue(
            severity="warning", code=ERR_TABLE_VALUE, field="PID-32",
            message=f"identity status {status!r} is not one of {', '.join(IDENTITY_STATUSES)}"))
    ins = ins_identifiers(identifiers)
    if not ins:
        return issues
    if not status:
        issues.append(IdentityIssue(
            severity="error", code=ERR_REQUIRED, field="PID-32", identifier=ins[0],
            message=f"PID-32 (identity reliability) is required when PID-3 carries an INS ({ins[0].id!r})"))
    elif status != QUALIFIED_STATUS:
        issues.append(IdentityIssue(
            severity="warning", code=ERR_APPLICATION, field="PID-32", identifier=ins[0],
            message=f"the INS {ins[0].id!r} is not used: identity status {status!r} is not qualified "
                    f"({QUALIFIED_STATUS})"))
    return issues


def is_qualified(reliability: str | None) -> bool:
    """PID-32 carries the qualified status, the only one under which an INS may be used."""
    return (reliability or "").strip() == QUALIFIED_STATUS
