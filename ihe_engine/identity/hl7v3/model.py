"""Plain values the HL7 v3 codec reads from requests and writes into answers (no XML, no storage).

An ``II`` (instance identifier) becomes a :class:`~ihe_engine.identity.cx.CX` as the PIX/PDQ v3 profiles define
it: ``@root`` is the assigning authority's OID, ``@extension`` the identifier in it, ``@assigningAuthorityName``
the namespace. Each parsed element keeps its ``location`` (an XPath from the message root), so a refusal points
at exactly what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cx import CX

__all__ = ["InstanceId", "Transmission", "PersonName", "Address", "Telecom", "PatientRecord", "Located",
           "PatientFeed", "PatientMerge", "PixQuery", "Domain", "PdqParameters", "PdqQuery", "QueryControl",
           "FeedKind", "PatientView", "QueryCounts"]


@dataclass(frozen=True, slots=True)
class InstanceId:
    """An HL7 v3 II: ``root`` (an OID or UUID) with an optional ``extension``; ``null_flavor`` when unknown."""

    root: str = ""
    extension: str = ""
    null_flavor: str = ""


@dataclass(frozen=True, slots=True)
class Transmission:
    """The transmission wrapper of a request: what an answer must echo or address."""

    interaction: str
    message_id: InstanceId
    creation_time: str = ""
    processing_code: str = ""
    accept_ack_code: str = ""
    sender_device: InstanceId = InstanceId(null_flavor="UNK")
    receiver_device: InstanceId = InstanceId(null_flavor="UNK")


@dataclass(frozen=True, slots=True)
class Located:
    """An identifier with the XPath of the element it came from."""

    cx: CX
    location: str


@dataclass(frozen=True, slots=True)
class PersonName:
    """One PN; family parts qualified BR (the French birth family name) are kept apart in ``birth_family``."""

    family: tuple[str, ...] = ()
    given: tuple[str, ...] = ()
    use: str = ""
    birth_family: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Address:
    street_lines: tuple[str, ...] = ()
    city: str = ""
    postal_code: str = ""
    state: str = ""
    country: str = ""
    county: str = ""
    use: str = ""


@dataclass(frozen=True, slots=True)
class Telecom:
    value: str
    use: str = ""


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """A patient as a v3 feed describes it: its identifiers (Patient.id, then asOtherIDs) and traits."""

    identifiers: tuple[Located, ...]
    location: str = ""
    """XPath of the patient element."""
    names: tuple[PersonName, ...] = ()
    gender: str = ""
    birth_time: str = ""
    addresses: tuple[Address, ...] = ()
    telecoms: tuple[Telecom, ...] = ()
    birthplace: str = ""
    reliability: str | None = None
    """The identity status (French RNIV: PROV, RECUP, VALI, QUAL), the v2 PID-32; see ``parse`` for its slot."""


class FeedKind:
    ADD = "PRPA_IN201301UV02"
    REVISE = "PRPA_IN201302UV02"
    MERGE = "PRPA_IN201304UV02"


@dataclass(frozen=True, slots=True)
class PatientFeed:
    """ITI-44 add (PRPA_IN201301UV02) or revise (PRPA_IN201302UV02)."""

    transmission: Transmission
    patient: PatientRecord


@dataclass(frozen=True, slots=True)
class PatientMerge:
    """ITI-44 merge (PRPA_IN201304UV02): ``subsumed`` (priorRegisteredRole.id) merged into the patient."""

    transmission: Transmission
    patient: PatientRecord
    subsumed: Located


@dataclass(frozen=True, slots=True)
class Domain:
    """A patient identity domain named by its OID, where the request named it."""

    oid: str
    location: str


@dataclass(frozen=True, slots=True)
class PixQuery:
    """ITI-45 PRPA_IN201309UV02: one patient identifier, the domains asked for (none: all)."""

    transmission: Transmission
    query_id: InstanceId
    patient_identifier: Located
    data_sources: tuple[Domain, ...]
    query_xml: bytes
    """The queryByParameter element as received: echoed in the answer, base64 in the audit record."""


@dataclass(frozen=True, slots=True)
class PdqParameters:
    """The demographics of an ITI-47 query (the consumer's match criteria)."""

    family_name: str | None = None
    given_name: str | None = None
    birth_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    identifier: Located | None = None
    other_identifiers: tuple[Located, ...] = ()
    """Further livingSubjectId values: a match carries every one."""
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None
    phone: str | None = None
    mothers_maiden_name: str | None = None
    minimum_degree_match: int | None = None


@dataclass(frozen=True, slots=True)
class PdqQuery:
    """ITI-47 PRPA_IN201305UV02."""

    transmission: Transmission
    query_id: InstanceId
    parameters: PdqParameters
    domains: tuple[Domain, ...]
    initial_quantity: int | None
    query_xml: bytes


@dataclass(frozen=True, slots=True)
class QueryControl:
    """QUQI_IN000003UV01: continue (``quantity`` more) or cancel the query ``query_id``."""

    transmission: Transmission
    query_id: InstanceId
    cancel: bool
    quantity: int | None = None
    query_id_location: str = field(default="")


@dataclass(frozen=True, slots=True)
class PatientView:
    """A patient as an ITI-47 answer shows it: ids in the requested domains, the others as asOtherIDs."""

    identifiers: tuple[CX, ...]
    other_identifiers: tuple[CX, ...] = ()
    names: tuple[PersonName, ...] = ()
    gender: str = ""
    birth_time: str = ""
    addresses: tuple[Address, ...] = ()
    telecoms: tuple[Telecom, ...] = ()
    score: int = 100
    """The match degree, 0 to 100 (queryMatchObservation)."""


@dataclass(frozen=True, slots=True)
class QueryCounts:
    """queryAck quantities of one PDQ answer."""

    total: int
    current: int
    remaining: int
