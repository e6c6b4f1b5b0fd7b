"""PIX cross-references over the identity store, free of any wire format (ITI-9 and ITI-45 both use it).

PIX answers "which identifiers does the person designated by this identifier have in those domains?": the active
identifiers of the patient the source resolves to after merges (a subsumed id resolves to its survivor; an id its
sender removed designates nobody any more).

Domains. Requesters name an assigning authority by namespace, by OID, or both (``HZLN``, ``&1.2.3&ISO``,
``HZLN&1.2.3&ISO``). An OID names its domain exactly (it is the stored ``authority_key``). A namespace alone names
every stored authority with that namespace (``namespace_id``) plus namespace-only identifiers keyed by it, found
with a loose index scan (one index probe per distinct authority, never a scan of the identifiers). A domain is
*known* when the store holds an identifier in it or the caller configured it.

The source identifier is left out of the answer, except when the requester explicitly asks for its own domain
among the target domains (the MESA PIX tests expect it back then).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..hl7v2.message import DEFAULT_ENCODING, Encoding, unescape
from .cx import CX
from .tables import IdentifierStatus, Patient, PatientIdentifier, PatientStatus

__all__ = ["PixOutcome", "PixAnswer", "Authority", "cross_references", "is_known_domain", "authority_keys",
           "active_identifiers"]


class PixOutcome(enum.StrEnum):
    FOUND = "found"
    NONE_IN_DOMAINS = "none in domains"
    UNKNOWN_IDENTIFIER = "unknown identifier"
    UNKNOWN_SOURCE_DOMAIN = "unknown source domain"
    UNKNOWN_TARGET_DOMAIN = "unknown target domain"


@dataclass(frozen=True, kw_only=True, slots=True)
class PixAnswer:
    outcome: PixOutcome
    identifiers: tuple[CX, ...] = ()
    """The other active ids, filtered by the target domains (the source's own only when its domain is asked)."""
    unknown_domains: tuple[int, ...] = ()
    """0-based indexes of the target domains that are not known."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Authority:
    """An assigning authority alone (CX.4), as QPD-4 / QPD-8 and v3 ``DataSource`` name a domain."""

    namespace_id: str = ""
    universal_id: str = ""
    universal_id_type: str = ""

    @classmethod
    def of(cls, domain: "CX | Authority") -> "Authority":
        if isinstance(domain, Authority):
            return domain
        return cls(namespace_id=domain.namespace_id, universal_id=domain.universal_id,
                   universal_id_type=domain.universal_id_type)

    @classmethod
    def from_hl7(cls, text: str, encoding: Encoding = DEFAULT_ENCODING, charset: str = "utf-8") -> "Authority":
        """From HD text (``NS&OID&ISO``, still escaped)."""
        parts = [unescape(part, encoding, charset) for part in text.split(encoding.subcomponent)] + ["", "", ""]
        return cls(namespace_id=parts[0], universal_id=parts[1], universal_id_type=parts[2])

    @property
    def is_empty(self) -> bool:
        return not self.namespace_id and not self.universal_id

    def matches(self, cx: CX) -> bool:
        """Whether ``cx`` is in this domain (by OID when this names one, else by namespace)."""
        if self.universal_id:
            return cx.authority_key == self.universal_id
        return cx.authority_key == self.namespace_id or cx.namespace_id == self.namespace_id


Domain = CX | Authority


def authority_keys(session: Session, domain: Domain) -> frozenset[str]:
    """The stored ``authority_key`` values ``domain`` names (possibly none)."""
    authority = Authority.of(domain)
    if authority.universal_id:
        return frozenset({authority.universal_id})
    if not authority.namespace_id:
        return frozenset()
    return frozenset({authority.namespace_id, *_keys_with_namespace(session, authority.namespace_id)})


def _keys_with_namespace(session: Session, namespace: str) -> list[str]:
    """Distinct authority keys stored under ``namespace``: a loose index scan, one probe per distinct key."""
    keys: list[str] = []
    while True:
        query = select(func.min(PatientIdentifier.authority_key)).where(PatientIdentifier.namespace_id == namespace)
        if keys:
            query = query.where(PatientIdentifier.authority_key > keys[-1])
        key = session.scalar(query)
        if key is None:
            return keys
        keys.append(key)


def is_known_domain(session: Session, domain: Domain, *, configured: Iterable[Domain] = ()) -> bool:
    """True when the engine holds identifiers in ``domain`` or the caller configured it."""
    authority = Authority.of(domain)
    if authority.is_empty:
        return False
    if any(_same_domain(authority, Authority.of(known)) for known in configured):
        return True
    keys = authority_keys(session, authority)
    return bool(keys) and session.scalar(
        select(PatientIdentifier.id).where(PatientIdentifier.authority_key.in_(keys)).limit(1)) is not None


def _same_domain(asked: Authority, known: Authority) -> bool:
    if asked.universal_id and known.universal_id:
        return asked.universal_id == known.universal_id
    return bool(asked.namespace_id) and asked.namespace_id == known.namespace_id


def cross_references(session: Session, source: CX, target_domains: Sequence[Domain] = (), *,
                     configured: Iterable[Domain] = ()) -> PixAnswer:
    """The PIX answer for ``source`` restricted to ``target_domains`` (none: every domain)."""
    configured = tuple(configured)
    if not is_known_domain(session, source, configured=configured):
        return PixAnswer(outcome=PixOutcome.UNKNOWN_SOURCE_DOMAIN)
    unknown = tuple(index for index, domain in enumerate(target_domains)
                    if not is_known_domain(session, domain, configured=configured))
    if unknown:
        return PixAnswer(outcome=PixOutcome.UNKNOWN_TARGET_DOMAIN, unknown_domains=unknown)
    patient_id = _resolve(session, source)
    if patient_id is None:
        return PixAnswer(outcome=PixOutcome.UNKNOWN_IDENTIFIER)
    targets = [Authority.of(domain) for domain in target_domains]
    found = tuple(cx for cx in active_identifiers(session, patient_id) if _wanted(cx, source, targets))
    return PixAnswer(outcome=PixOutcome.FOUND if found else PixOutcome.NONE_IN_DOMAINS, identifiers=found)


def _wanted(cx: CX, source: CX, targets: list[Authority]) -> bool:
    if not targets:
        return not _same_identifier(cx, source)
    return any(target.matches(cx) for target in targets)


def _same_identifier(cx: CX, source: CX) -> bool:
    return cx.id == source.id and Authority.of(source).matches(cx)


def _resolve(session: Session, source: CX) -> int | None:
    """The surviving patient ``source`` designates, None when unknown or removed by its sender."""
    keys = authority_keys(session, source)
    if not keys:
        return None
    row = session.execute(
        select(PatientIdentifier.patient_id, PatientIdentifier.status, Patient.status, Patient.merged_into_id)
        .join(Patient, Patient.id == PatientIdentifier.patient_id)
        .where(PatientIdentifier.authority_key.in_(keys), PatientIdentifier.value == source.id)
        .order_by(PatientIdentifier.id).limit(1)).one_or_none()
    if row is None or row[1] == IdentifierStatus.INACTIVE:
        return None
    record_id, _identifier_status, patient_status, merged_into = row
    if patient_status != PatientStatus.ACTIVE and merged_into is None:
        return None
    return merged_into or record_id


def active_identifiers(session: Session, patient_id: int) -> list[CX]:
    """The active identifiers of an active patient, oldest first."""
    rows = session.scalars(
        select(PatientIdentifier).where(PatientIdentifier.patient_id == patient_id,
                                        PatientIdentifier.status == IdentifierStatus.ACTIVE)
        .order_by(PatientIdentifier.id))
    return [_to_cx(row) for row in rows]


def _to_cx(row: PatientIdentifier) -> CX:
    return CX(id=row.value, namespace_id=row.namespace_id, universal_id=row.universal_id,
              universal_id_type=row.universal_id_type, type_code=row.type_code)
