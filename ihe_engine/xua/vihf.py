"""The French VIHF profile (DMP compatibility, FRANCE.md section 7) on top of a verified XUA assertion.

The VIHF ("vecteur d'identification et d'habilitation formelle") is the signed SAML 2.0 assertion of DMP
transactions. When the profile is on, an assertion must also carry, each at least once and non-empty:
Identifiant_Structure, Secteur_Activite (``SAxx^1.2.250.1.71.4.2.4``), subject-id, role (a coded value, or
AUTOMATE), Authentification_Mode (INDIRECTE, DIRECTE or AIR), resource-id (an INS: ``NIR^^^&OID&ISO^NH`` with an
INS OID and a valid key), Ressource_URN ``urn:dmp``, purposeofuse (code system 1.2.250.1.213.1.1.4.248), LPS_Nom,
LPS_Version, LPS_ID_HOMOLOGATION_DMP and VIHF_Version; and its Issuer must be the subject DN of the certificate
that signed it (the structure's certificate).

Every problem is reported at once, as one InvalidSecurityToken refusal. Facts that FRANCE.md does not give (the
code systems of G15/R01/R85 roles) are settings, not guesses: :class:`VihfSettings`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from cryptography import x509

from ..france.ins import Environment, InsKind, classify
from ..france.nir import check_nir
from ..identity.cx import CX, CXError
from .assertion import INVALID_SECURITY_TOKEN, PURPOSE_OF_USE, RESOURCE_ID, SUBJECT_ID, UserAssertion, \
    XuaError

__all__ = ["VihfSettings", "check_vihf", "vihf_problems", "IDENTIFIANT_STRUCTURE", "SECTEUR_ACTIVITE",
           "AUTHENTIFICATION_MODE", "RESSOURCE_URN", "LPS_NOM", "LPS_VERSION", "LPS_ID_HOMOLOGATION_DMP",
           "VIHF_VERSION", "PURPOSE_OF_USE_SYSTEM", "AUTOMATE"]

IDENTIFIANT_STRUCTURE = "Identifiant_Structure"
SECTEUR_ACTIVITE = "Secteur_Activite"
AUTHENTIFICATION_MODE = "Authentification_Mode"
RESSOURCE_URN = "Ressource_URN"
LPS_NOM = "LPS_Nom"
LPS_VERSION = "LPS_Version"
LPS_ID_HOMOLOGATION_DMP = "LPS_ID_HOMOLOGATION_DMP"
VIHF_VERSION = "VIHF_Version"
PURPOSE_OF_USE_SYSTEM = "1.2.250.1.213.1.1.4.248"
AUTOMATE = "AUTOMATE"
DMP_URN = "urn:dmp"
AUTHENTICATION_MODES = frozenset({"INDIRECTE", "DIRECTE", "AIR"})
_SECTEUR = re.compile(r"SA\d{2}\^1\.2\.250\.1\.71\.4\.2\.4")
_REQUIRED_TEXT = (IDENTIFIANT_STRUCTURE, SUBJECT_ID, LPS_NOM, LPS_VERSION, LPS_ID_HOMOLOGATION_DMP, VIHF_VERSION)


@dataclass(frozen=True, kw_only=True)
class VihfSettings:
    """``[xua.vihf]``: what the deployment knows beyond FRANCE.md."""

    production: bool = True
    """Refuse INS of the test and demonstration domains in resource-id."""
    role_code_systems: frozenset[str] = frozenset()
    """Accepted role code systems (G15, R01, R85 ...); empty accepts any system, a role must still be coded."""
    vihf_versions: frozenset[str] = frozenset()
    """Accepted VIHF_Version values; empty accepts any (examples use 3.0)."""
    issuer_is_signer: bool = True
    """The Issuer must be the subject DN of the signing certificate."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "VihfSettings":
        return cls(production=bool(values.get("production", True)),
                   role_code_systems=frozenset(values.get("role_code_systems", ())),
                   vihf_versions=frozenset(str(v) for v in values.get("vihf_versions", ())),
                   issuer_is_signer=bool(values.get("issuer_is_signer", True)))


def check_vihf(user: UserAssertion, settings: VihfSettings = VihfSettings()) -> None:
    """Refuse (InvalidSecurityToken, every problem named) an assertion that is not a valid VIHF."""
    problems = vihf_problems(user, settings)
    if problems:
        raise XuaError(INVALID_SECURITY_TOKEN, "not a valid VIHF: " + "; ".join(problems), claimed=user.alias)


def vihf_problems(user: UserAssertion, settings: VihfSettings = VihfSettings()) -> list[str]:
    """Everything that keeps ``user``'s assertion from being a VIHF, in words."""
    values = user.attributes
    problems = [f"attribute {name} is missing or empty" for name in _REQUIRED_TEXT if not _value(values, name)]
    problems += _secteur_problems(_value(values, SECTEUR_ACTIVITE))
    problems += _mode_problems(_value(values, AUTHENTIFICATION_MODE))
    problems += _role_problems(user, settings)
    problems += _purpose_problems(user)
    problems += _resource_problems(_value(values, RESOURCE_ID), settings)
    urn = _value(values, RESSOURCE_URN)
    if urn != DMP_URN:
        problems.append(f"attribute {RESSOURCE_URN} must be {DMP_URN}, not {urn or '(missing)'}")
    version = _value(values, VIHF_VERSION)
    if version and settings.vihf_versions and version not in settings.vihf_versions:
        problems.append(f"{VIHF_VERSION} {version} is not one of {sorted(settings.vihf_versions)}")
    if settings.issuer_is_signer and user.signer is not None and not _same_dn(user.issuer, user.signer.subject):
        problems.append(f"the Issuer {user.issuer!r} is not the subject DN of the signing certificate "
                        f"({user.signer_subject})")
    return problems


def _value(values: Mapping[str, tuple[str, ...]], name: str) -> str:
    found = values.get(name) or ()
    return found[0].strip() if found else ""


def _secteur_problems(value: str) -> list[str]:
    if not value:
        return [f"attribute {SECTEUR_ACTIVITE} is missing or empty"]
    if not _SECTEUR.fullmatch(value):
        return [f"{SECTEUR_ACTIVITE} must be SAxx^1.2.250.1.71.4.2.4, not {value!r}"]
    return []


def _mode_problems(value: str) -> list[str]:
    if value not in AUTHENTICATION_MODES:
        return [f"{AUTHENTIFICATION_MODE} must be one of {sorted(AUTHENTICATION_MODES)}, not {value or '(missing)'}"]
    return []


def _role_problems(user: UserAssertion, settings: VihfSettings) -> list[str]:
    if not user.roles:
        return ["attribute role (urn:oasis:names:tc:xacml:2.0:subject:role) is missing"]
    problems = []
    for role in user.roles:
        if role.code == AUTOMATE:
            continue
        if not role.code or not role.system:
            problems.append(f"a role must be a coded value with a code system (or {AUTOMATE}), not {role.code!r}")
        elif settings.role_code_systems and role.system not in settings.role_code_systems:
            problems.append(f"role {role.code} is from code system {role.system}, not one of "
                            f"{sorted(settings.role_code_systems)}")
    return problems


def _purpose_problems(user: UserAssertion) -> list[str]:
    if not user.purposes_of_use:
        return [f"attribute purposeofuse ({PURPOSE_OF_USE}) is missing"]
    return [f"purposeofuse {purpose.code!r} must be coded in {PURPOSE_OF_USE_SYSTEM}, not {purpose.system or '(none)'}"
            for purpose in user.purposes_of_use if purpose.system != PURPOSE_OF_USE_SYSTEM]


def _resource_problems(value: str, settings: VihfSettings) -> list[str]:
    if not value:
        return ["attribute resource-id (the patient's INS) is missing"]
    try:
        identifier = CX.from_xds(value)
    except (CXError, ValueError) as exc:
        return [f"resource-id {value!r} is not a CX: {exc}"]
    found = classify(identifier)
    if found is None or found.kind is InsKind.INSC:
        return [f"resource-id {value!r} is not an INS (NIR^^^&OID&ISO^NH with an INS OID)"]
    problems = []
    if settings.production and found.environment is not Environment.PRODUCTION:
        problems.append(f"resource-id is an INS of the {found.environment.value} domain, refused in production")
    if identifier.type_code != "NH":
        problems.append(f"resource-id must have identifier type NH, not {identifier.type_code or '(none)'}")
    check = check_nir(identifier.id, nia=found.kind is InsKind.NIA)
    problems += [f"resource-id: {error}" for error in check.errors]
    return problems


def _same_dn(issuer: str, subject: x509.Name) -> bool:
    """Issuer text and certificate subject name the same DN, in either RDN order (RFC 4514 or X.500 order)."""
    try:
        parsed = x509.Name.from_rfc4514_string(issuer)
    except ValueError:
        return False
    wanted = [_rdn_key(rdn) for rdn in subject.rdns]
    got = [_rdn_key(rdn) for rdn in parsed.rdns]
    return got == wanted or got == wanted[::-1]


def _rdn_key(rdn: x509.RelativeDistinguishedName) -> frozenset[tuple[str, str]]:
    return frozenset((attribute.oid.dotted_string, str(attribute.value).strip().casefold()) for attribute in rdn)
