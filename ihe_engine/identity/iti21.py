"""ITI-21 Patient Demographics Query (HL7 v2.5): QBP^Q22^QBP_Q21 -> RSP^K22^RSP_K21, and its cancel QCN^J01.

QPD-3 is a list of ``@PID.field[.component[.subcomponent]]^value`` pairs (QIP), combined with AND:

=====================================  =====================================================================
path                                   criterion
=====================================  =====================================================================
PID.3, PID.3.1 / PID.3.4[.1-3]         an identifier value / its assigning authority (a new value starts a new
                                       identifier; every identifier given must hold)
PID.5, PID.5.1, PID.5.1.1              family name: used or birth name (``*`` at the end: prefix)
PID.5.2                                given name (``*`` alone: any)
PID.5.7 = L or B                       the family name asked is the birth name only
PID.6, PID.6.1, PID.6.1.1              mother's maiden name
PID.7, PID.7.1                         birth date: YYYY, YYYYMM or YYYYMMDD
PID.8                                  administrative sex
PID.11 / .1 / .1.1, .3, .4, .5, .6     street, city, state, postal code, country
PID.13, PID.13.1, PID.13.12            phone number (digits compared)
PID.18, PID.18.1 (PID.18.4.* read,     account number
not compared)
=====================================  =====================================================================

Names compare as :mod:`~ihe_engine.identity.names` says (case, accents, hyphens, particles). QPD-5 (the HL7
"algorithm name" of Find Candidates) set to ``SOUNDEX-FR`` (or ``PHONETIC``, ``FUZZY``) switches names to
phonetic matching; each PID is then followed by a QRI with the name similarity (0-100) and the algorithm.
QPD-8 restricts the domains returned. RCP-2 ``n^RD`` is the page size (default 100, at most 1000).

Continuation: while matches remain the answer ends with ``DSC|pointer|I``. The pointer names a row of the
``continuation`` table (any worker can answer the next page) whose kind binds it to the sender (MSH-3/4) and the
query tag (QPD-2), and whose state is the last patient id served and a digest of QPD-3/QPD-8. Each page gets its
own pointer and pointers are never changed, so a follow-up sent twice gets the same page twice. Pointers expire
after 30 minutes. QCN^J01 (QID-1 = the query tag) deletes every pointer of that query and is acknowledged AA
whether any remained or not.

=============================================================  =====  =====  ==================================
case                                                           MSA-1  QAK-2  ERR (code 0357 at ERR-2)
=============================================================  =====  =====  ==================================
matches                                                        AA     OK     none
no match                                                       AA     NF     none
a QPD-8 domain unknown                                         AE     AE     204 at ``QPD^1^8^rep``, one each
DSC-1 pointer unknown, expired, cancelled or of another query  AE     AE     204 at ``DSC^1^1``
QPD-3 field not supported                                      AE     AE     103 at ``QPD^1^3^rep^1``
QPD-3 path malformed / value malformed (birth date)            AE     AE     102 at ``QPD^1^3^rep^1`` / ``^2``
QPD-3 value longer than 200 characters                         AE     AE     104 at ``QPD^1^3^rep^2``
QPD-3 empty (no criterion)                                     AE     AE     101 at ``QPD^1^3``
QPD-5 algorithm unknown                                        AE     AE     103 at ``QPD^1^5``
RCP-1 not I; RCP-2 not a positive count of RD                  AE     AE     102 at ``RCP^1^1`` / ``RCP^1^2^1^n``
=============================================================  =====  =====  ==================================

ITI-22 (PDVQ) is :mod:`~ihe_engine.identity.iti22`: the same query with PV1 criteria, over the visits the feed
stores; it reuses this module's QPD reading, paging, domains and continuation (and this QCN^J01 cancels its
pointers too: pointers of both are bound to the sender and query tag alike).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import TransactionError
from ..hl7v2.ack import Hl7Error
from ..hl7v2.dispatch import Hl7Context, Hl7Route
from ..hl7v2.message import Message, Segment, escape
from .hl7_query import QueryRequest, build_rsp, query_audit, read_query
from .iti8 import _audit_after_commit
from .pdq_search import IdentifierCriterion, PatientMatch, PatientQuery, QueryRefused, search_patients
from .pid_segment import build_pid
from .pix import Authority, is_known_domain

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..storage import UnitOfWork

__all__ = ["Iti21Pdq", "hl7_routes", "ITI21_EVENT_TYPE", "parse_qpd", "OtherFields", "Refusals", "check_value",
           "page_size", "query_domains", "continuation_kind", "saved_state", "REFUSED"]

ITI21_EVENT_TYPE = ("ITI-21", "IHE Transactions", "Patient Demographics Query")
_RESPONSE_TYPE = ("RSP", "K22", "RSP_K21")
_PATH = re.compile(r"@?PID\.(\d{1,3})(?:\.(\d{1,2}))?(?:\.(\d{1,2}))?\Z")
_FUZZY_ALGORITHMS = frozenset({"SOUNDEX-FR", "SOUNDEX2", "PHONETIC", "FUZZY"})
_MAX_VALUE = 200
_MAX_CRITERIA = 64
REFUSED = 4


class Iti21Pdq:
    """The ITI-21 handlers: ``page_size`` when RCP-2 says nothing, ``max_page_size`` caps what it says.

    The query outline (answer or refusal, audit, RSP) is shared with ITI-22, which changes the class attributes,
    :meth:`_answer` and :meth:`_body`.
    """

    transaction = "ITI-21"
    event_type = ITI21_EVENT_TYPE
    response_type = _RESPONSE_TYPE

    def __init__(self, *, page_size: int = 100, max_page_size: int = 1000,
                 pointer_lifetime: timedelta = timedelta(minutes=30)) -> None:
        self.page_size = page_size
        self.max_page_size = max_page_size
        self.pointer_lifetime = pointer_lifetime

    def routes(self) -> list[Hl7Route]:
        return [Hl7Route("QBP^Q22", self.handle_query, transaction="ITI-21", record_exchange=False),
                Hl7Route("QCN^J01", self.handle_cancel, transaction="ITI-21", record_exchange=False)]

    # -- QBP^Q22 -----------------------------------------------------------------------------------------------

    def handle_query(self, message: Message, uow: "UnitOfWork", context: Hl7Context) -> bytes:
        request = read_query(message)
        try:
            page, pointer, algorithm = self._answer(request, uow)
        except Refusals as exc:
            return self._refuse(request, uow, context, exc.errors)
        patients = list(dict.fromkeys(match.identifiers[0].to_hl7() for match in page))  # one object per patient
        _audit_after_commit(uow, context, [query_audit(context, request, event_type=self.event_type,
                                                       patients=patients)])
        return build_rsp(request, context, message_type=self.response_type, transaction=self.transaction,
                         acknowledgment="AA", query_status="OK" if page else "NF",
                         body=self._body(page, request.message, algorithm), continuation=pointer)

    def _body(self, page: list[Any], message: Message, algorithm: str | None) -> list[str]:
        return _body(page, message, algorithm)

    def _refuse(self, request: QueryRequest, uow: "UnitOfWork", context: Hl7Context,
                errors: list[Hl7Error]) -> bytes:
        description = "; ".join(error.text for error in errors)
        _audit_after_commit(uow, context, [query_audit(context, request, event_type=self.event_type, patients=(),
                                                       outcome=REFUSED, description=description)])
        return build_rsp(request, context, message_type=self.response_type, transaction=self.transaction,
                         acknowledgment="AE", query_status="AE", errors=errors)

    def _answer(self, request: QueryRequest, uow: "UnitOfWork") -> tuple[list[PatientMatch], str | None, str | None]:
        """(the page, the pointer to the next one if any, the phonetic algorithm asked); Refusals if refused."""
        try:
            query, algorithm = parse_qpd(request.qpd)
            domains = query_domains(uow, request.qpd)
            limit = page_size(request.message, self.page_size, self.max_page_size)
            kind, digest = continuation_kind(request.message, request.tag), _query_digest(request.qpd)
            after = _resume_after(uow, request.message, kind, digest)
            matches = search_patients(uow.session, query, domains=domains, limit=limit + 1, after_patient_id=after)
        except TransactionError as exc:
            raise Refusals([Hl7Error.from_exception(exc)]) from None
        except QueryRefused as exc:
            raise Refusals([Hl7Error(code="102", location="QPD^1^3", text=str(exc))]) from None
        page, pointer = matches[:limit], None
        if len(matches) > limit:
            state = json.dumps({"after": page[-1].patient_id, "query": digest}).encode()
            pointer = uow.continuations.create(kind, state, ttl=self.pointer_lifetime)
        return page, pointer, algorithm

    # -- QCN^J01 -----------------------------------------------------------------------------------------------

    def handle_cancel(self, message: Message, uow: "UnitOfWork", context: Hl7Context) -> None:
        """Forget every continuation pointer of the query QID-1 names (from this sender); AA either way."""
        qid = message.find_segment("QID")
        if qid is None or not qid[1]:
            raise TransactionError("QID-1 (the query tag to cancel) is missing", code="101", location="QID^1^1")
        kind = continuation_kind(message, qid[1])
        uow.continuations.cancel_kind(kind)


def hl7_routes(runtime: "Runtime | None" = None) -> list[Hl7Route]:
    """The ITI-21 routes (QBP^Q22, QCN^J01) for the MLLP dispatcher."""
    return Iti21Pdq().routes()


def page_size(message: Message, default: int, maximum: int) -> int:
    """RCP-2 ``n^RD`` capped at ``maximum`` (``default`` when absent); TransactionError when unusable."""
    rcp = message.find_segment("RCP")
    if rcp is None:
        return default
    if rcp.get(1) not in ("", "I"):
        raise TransactionError(f"RCP-1 {rcp.get(1)!r}: only immediate queries (I) are answered", code="102",
                               location="RCP^1^1")
    quantity, units = rcp.get(2, 1).strip(), rcp.get(2, 2)
    if not quantity:
        return default
    significant = quantity.lstrip("0")
    if not (quantity.isascii() and quantity.isdigit()) or not significant:
        raise TransactionError(f"RCP-2 quantity {quantity[:20]!r} is not a positive count", code="102",
                               location="RCP^1^2^1^1")
    if units not in ("", "RD"):
        raise TransactionError(f"RCP-2 units {units[:20]!r}: only records (RD) are counted", code="102",
                               location="RCP^1^2^1^2")
    return maximum if len(significant) > 6 else min(int(significant), maximum)


# -- QPD ---------------------------------------------------------------------------------------------------------

@dataclass
class _Draft:
    """A PatientQuery being read from QPD-3."""

    values: dict[str, Any] = field(default_factory=dict)
    identifiers: list[IdentifierCriterion] = field(default_factory=list)
    birth_name_only: bool = False
    subcomponent: str = "&"


_SIMPLE_PATHS = {
    (5, None, None): "family_name", (5, 1, None): "family_name", (5, 1, 1): "family_name",
    (5, 2, None): "given_name", (5, 2, 1): "given_name",
    (6, None, None): "mothers_maiden_name", (6, 1, None): "mothers_maiden_name",
    (6, 1, 1): "mothers_maiden_name",
    (7, None, None): "birth_date", (7, 1, None): "birth_date",
    (8, None, None): "sex", (8, 1, None): "sex",
    (11, None, None): "street", (11, 1, None): "street", (11, 1, 1): "street", (11, 3, None): "city",
    (11, 4, None): "state", (11, 5, None): "postal_code", (11, 6, None): "country",
    (13, None, None): "phone", (13, 1, None): "phone", (13, 12, None): "phone",
    (18, None, None): "account_number", (18, 1, None): "account_number",
}


class OtherFields(Protocol):
    """Criteria on other segments than PID (ITI-22's PV1) read alongside the PID ones by :func:`parse_qpd`."""

    @property
    def is_empty(self) -> bool: ...

    def read(self, number: int, path: str, value: str, subcomponent: str) -> bool:
        """Take QPD-3 repetition ``number`` if ``path`` is one of these fields (True); TransactionError if not
        usable."""


def parse_qpd(qpd: Segment, *, other_fields: OtherFields | None = None) -> tuple[PatientQuery, str | None]:
    """(the query QPD-3 and QPD-5 ask, the phonetic algorithm's name or None); TransactionError when unusable.
    ``other_fields`` reads the criteria that are not PID paths (else they are refused, 103)."""
    repetitions = qpd.repetitions(3)
    if len(repetitions) > _MAX_CRITERIA:
        raise TransactionError(f"QPD-3 holds {len(repetitions)} criteria, at most {_MAX_CRITERIA} are read",
                               code="104", location="QPD^1^3")
    draft = _Draft(subcomponent=qpd.encoding.subcomponent)
    for number in range(1, len(repetitions) + 1):
        components = qpd.components(3, number)
        path = components[0] if components else ""
        value = components[1] if len(components) > 1 else ""
        if other_fields is None or not other_fields.read(number, path.strip(), value.strip(), draft.subcomponent):
            _read_criterion(draft, number, path.strip(), value.strip())
    algorithm = qpd.get(5).strip()
    if algorithm and algorithm.upper() not in _FUZZY_ALGORITHMS:
        raise TransactionError(f"QPD-5 algorithm {algorithm[:40]!r} is not offered (SOUNDEX-FR is)", code="103",
                               location="QPD^1^5")
    values = dict(draft.values)
    if draft.birth_name_only and "family_name" in values:
        values["birth_name"] = values.pop("family_name")
    query = PatientQuery(**values, identifiers=tuple(draft.identifiers), fuzzy=bool(algorithm))
    if query.is_empty and (other_fields is None or other_fields.is_empty):
        raise TransactionError("QPD-3 names no criterion", code="101", location="QPD^1^3")
    return query, algorithm.upper() or None


def _read_criterion(draft: _Draft, number: int, path: str, value: str) -> None:
    match = _PATH.match(path)
    if match is None:
        code = "103" if re.match(r"@?[A-Z][A-Z0-9]{2}\.\d", path) else "102"
        raise TransactionError(f"QPD-3 repetition {number}: {path[:40]!r} is not a PID field path this supplier "
                               f"searches (@PID.n[.n[.n]])", code=code, location=f"QPD^1^3^{number}^1")
    check_value(number, value)
    key = tuple(int(part) if part else None for part in match.groups())
    if key[0] == 3:
        _read_identifier(draft, number, key[1], key[2], value)
    elif key == (5, 7, None):
        draft.birth_name_only = value.upper() in ("L", "B")
    elif key[0] == 18 and key[1] == 4:
        pass  # the account number's authority: accepted, not compared (the store keeps the number only)
    elif key in _SIMPLE_PATHS:
        if key[0] == 7:
            _check_birth_date(value, number)
        if value:
            draft.values[_SIMPLE_PATHS[key]] = value
    else:
        raise TransactionError(f"QPD-3 repetition {number}: {path!r} is not a field this supplier searches",
                               code="103", location=f"QPD^1^3^{number}^1")


def check_value(number: int, value: str) -> None:
    """QPD-3 values are bounded: 104 at the value past ``_MAX_VALUE`` characters."""
    if len(value) > _MAX_VALUE:
        raise TransactionError(f"QPD-3 repetition {number}: value longer than {_MAX_VALUE} characters",
                               code="104", location=f"QPD^1^3^{number}^2")


def _read_identifier(draft: _Draft, number: int, component: int | None, subcomponent: int | None,
                     value: str) -> None:
    current = draft.identifiers[-1] if draft.identifiers else None
    if component in (None, 1):
        draft.identifiers.append(IdentifierCriterion(value=value))
        return
    if component == 5:
        return  # identifier type code: accepted, not compared
    if component != 4:
        raise TransactionError(f"QPD-3 repetition {number}: PID.3.{component} is not searched", code="103",
                               location=f"QPD^1^3^{number}^1")
    if subcomponent is None and draft.subcomponent in value:
        parts = value.split(draft.subcomponent) + ["", ""]
        whole = Authority(namespace_id=parts[0], universal_id=parts[1], universal_id_type=parts[2])
        fresh = current is None or current.authority is not None
        if fresh:
            draft.identifiers.append(IdentifierCriterion(authority=whole))
        else:
            draft.identifiers[-1] = replace(current, authority=whole)  # type: ignore[arg-type]
        return
    authority = current.authority if current is not None and current.authority is not None else Authority()
    part = {None: "namespace_id", 1: "namespace_id", 2: "universal_id", 3: "universal_id_type"}.get(subcomponent)
    if part is None:
        raise TransactionError(f"QPD-3 repetition {number}: PID.3.4.{subcomponent} does not exist", code="102",
                               location=f"QPD^1^3^{number}^1")
    if current is None or getattr(authority, part):
        current = IdentifierCriterion()
        draft.identifiers.append(current)
        authority = Authority()
    draft.identifiers[-1] = replace(current, authority=replace(authority, **{part: value}))


def _check_birth_date(value: str, number: int) -> None:
    digits = value[:8]
    if value and (not (digits.isascii() and digits.isdigit()) or len(digits) not in (4, 6, 8)):
        raise TransactionError(f"QPD-3 repetition {number}: birth date {value[:20]!r} is not YYYY[MM[DD]]",
                               code="102", location=f"QPD^1^3^{number}^2")


class Refusals(Exception):
    def __init__(self, errors: list[Hl7Error]) -> None:
        super().__init__(errors[0].text)
        self.errors = errors


def query_domains(uow: "UnitOfWork", qpd: Segment) -> list[Authority]:
    domains, errors = [], []
    for number, text in enumerate(qpd.repetitions(8), start=1):
        components = text.split(qpd.encoding.component)
        domain = Authority.from_hl7(components[3] if len(components) > 3 else "", qpd.encoding, qpd.charset)
        if not is_known_domain(uow.session, domain):
            errors.append(Hl7Error(code="204", location=f"QPD^1^8^{number}",
                                   text=f"QPD-8 repetition {number}: unknown patient identifier domain"))
        domains.append(domain)
    if errors:
        raise Refusals(errors)
    return domains


# -- continuation ------------------------------------------------------------------------------------------------

def continuation_kind(message: Message, tag: str) -> str:
    """Binds pointers to one sender and one query tag; 32 characters (the column's size)."""
    header = message.header
    seed = "\x00".join((header.sending_application, header.sending_facility, tag)).encode("utf-8", "replace")
    return "pdq:" + hashlib.sha256(seed).hexdigest()[:28]


def _query_digest(qpd: Segment) -> str:
    return hashlib.sha256(f"{qpd[3]}\x00{qpd[5]}\x00{qpd[8]}".encode("utf-8", "replace")).hexdigest()[:32]


def _resume_after(uow: "UnitOfWork", message: Message, kind: str, digest: str) -> int | None:
    """The last patient id served before, from DSC-1's pointer; None for a first page."""
    saved = saved_state(uow, message, kind, digest)
    return None if saved is None else int(saved["after"])


def saved_state(uow: "UnitOfWork", message: Message, kind: str, digest: str) -> dict[str, Any] | None:
    """The state DSC-1's pointer saved (None for a first page); 204 at ``DSC^1^1`` when the pointer is unknown,
    expired, cancelled, or was made for another query (``digest``)."""
    dsc = message.find_segment("DSC")
    pointer = dsc.get(1) if dsc is not None else ""
    if not pointer:
        return None
    state = uow.continuations.get(kind, pointer[:64])
    if state is None:
        raise TransactionError("DSC-1: unknown, expired or cancelled continuation pointer for this query",
                               code="204", location="DSC^1^1")
    saved = json.loads(state)
    if saved.get("query") != digest:
        raise TransactionError("DSC-1: the continuation pointer belongs to a different QPD", code="204",
                               location="DSC^1^1")
    return saved  # type: ignore[no-any-return]


# -- answer ------------------------------------------------------------------------------------------------------

def _body(page: list[PatientMatch], message: Message, algorithm: str | None) -> list[str]:
    segments = []
    for number, match in enumerate(page, start=1):
        segments.append(build_pid(match.identifiers, match.traits, encoding=message.encoding, set_id=number))
        if algorithm is not None:
            confidence = round(100 * (match.score or 0.0))
            segments.append(message.encoding.field.join(
                ["QRI", str(confidence), "", escape(algorithm, message.encoding)]))
    return segments
