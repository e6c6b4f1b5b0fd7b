"""ITI-22 Patient Demographics and Visit Query (HL7 v2.5): QBP^ZV1^QBP_Q21 -> RSP^ZV2^RSP_ZV2.

The PDQ query of :mod:`~ihe_engine.identity.iti21` (QPD-1 ``IHE PDVQ Query``, not checked, as ITI-21 does not
check its own) whose QPD-3 may also name visit fields; every criterion must hold. The visits are those the ITI-8
feed stored (:mod:`~ihe_engine.identity.visits`), each in its current state.

=====================================  =====================================================================
path                                   criterion
=====================================  =====================================================================
every PID path of ITI-21               as ITI-21 (QPD-5 phonetic names too)
PV1.2, PV1.2.1                         patient class
PV1.3, PV1.3.1 / .2 / .3 / .4 (.4.1)   assigned location: point of care / room / bed / facility
PV1.7, PV1.7.1 / PV1.7.2 (.7.2.1)      attending doctor: id / family name
PV1.10, PV1.10.1                       hospital service
PV1.19, PV1.19.1                       visit number (its id)
=====================================  =====================================================================

Any other PV1 or PV2 field is refused with 103 at ``QPD^1^3^rep^1``; a query with visit criteria only is
accepted (no PID criterion needed). The answer holds one group per matching *visit*: PID (as ITI-21 builds it),
PV1, PV2 when the feed sent one, and QRI in phonetic mode; groups are ordered by patient then visit, and the visits
of a merged record come under its survivor. PD1 is not sent (the store keeps none). RCP-2 counts visits.

Errors, continuation and cancel are ITI-21's (same table, same ERR locations); the pointers share ITI-21's
``continuation`` kind (sender and query tag), so ITI-21's QCN^J01 cancels them too, while their state digest is
marked ZV1, so an ITI-21 pointer is refused here (204 at ``DSC^1^1``) and an ITI-22 one there. Audit: ITI-21's
query record with ITI-22 as event type, one patient object per patient answered.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import TransactionError
from ..hl7v2.ack import Hl7Error
from ..hl7v2.dispatch import Hl7Route
from ..hl7v2.message import DEFAULT_ENCODING, Message, Segment, escape
from .hl7_query import QueryRequest
from .iti21 import (Iti21Pdq, Refusals, check_value, continuation_kind, page_size, parse_qpd, query_domains,
                    saved_state)
from .pdq_search import QueryRefused
from .pid_segment import build_pid
from .visits import VisitCriteria, VisitMatch, search_visits, translate

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..storage import UnitOfWork

__all__ = ["Iti22Pdvq", "hl7_routes", "ITI22_EVENT_TYPE", "VisitFields"]

ITI22_EVENT_TYPE = ("ITI-22", "IHE Transactions", "Patient Demographics and Visit Query")
_RESPONSE_TYPE = ("RSP", "ZV2", "RSP_ZV2")
_PATH = re.compile(r"@?(PV[12])\.(\d{1,3})(?:\.(\d{1,2}))?(?:\.(\d{1,2}))?\Z")
_VISIT_PATHS = {
    (2, None, None): "patient_class", (2, 1, None): "patient_class",
    (3, None, None): "point_of_care", (3, 1, None): "point_of_care", (3, 2, None): "room", (3, 3, None): "bed",
    (3, 4, None): "facility", (3, 4, 1): "facility",
    (7, None, None): "attending_id", (7, 1, None): "attending_id",
    (7, 2, None): "attending_family_key", (7, 2, 1): "attending_family_key",
    (10, None, None): "hospital_service", (10, 1, None): "hospital_service",
    (19, None, None): "visit_number", (19, 1, None): "visit_number",
}


class Iti22Pdvq(Iti21Pdq):
    """The ITI-22 handler: ITI-21's query outline, page sizes and pointer lifetime, over patient visits."""

    transaction = "ITI-22"
    event_type = ITI22_EVENT_TYPE
    response_type = _RESPONSE_TYPE

    def routes(self) -> list[Hl7Route]:
        return [Hl7Route("QBP^ZV1", self.handle_query, transaction="ITI-22", record_exchange=False)]

    def _body(self, page: list[Any], message: Message, algorithm: str | None) -> list[str]:
        return _body(page, message, algorithm)

    def _answer(self, request: QueryRequest, uow: "UnitOfWork") -> tuple[list[VisitMatch], str | None, str | None]:
        """(the page, the pointer to the next one if any, the phonetic algorithm asked); Refusals if refused."""
        try:
            visits = VisitFields()
            query, algorithm = parse_qpd(request.qpd, other_fields=visits)
            domains = query_domains(uow, request.qpd)
            limit = page_size(request.message, self.page_size, self.max_page_size)
            kind, digest = continuation_kind(request.message, request.tag), _query_digest(request.qpd)
            saved = saved_state(uow, request.message, kind, digest)
            after = (int(saved["after"][0]), int(saved["after"][1])) if saved is not None else None
            matches = search_visits(uow.session, query, visits.criteria(), domains=domains, limit=limit + 1,
                                    after=after)
        except TransactionError as exc:
            raise Refusals([Hl7Error.from_exception(exc)]) from None
        except QueryRefused as exc:
            raise Refusals([Hl7Error(code="102", location="QPD^1^3", text=str(exc))]) from None
        page, pointer = matches[:limit], None
        if len(matches) > limit:
            last = page[-1]
            state = json.dumps({"after": [last.patient_id, last.visit_id], "query": digest}).encode()
            pointer = uow.continuations.create(kind, state, ttl=self.pointer_lifetime)
        return page, pointer, algorithm


def hl7_routes(runtime: "Runtime | None" = None) -> list[Hl7Route]:
    """The ITI-22 route (QBP^ZV1) for the MLLP dispatcher; its cancel is ITI-21's QCN^J01."""
    return Iti22Pdvq().routes()


# -- QPD-3 visit criteria ----------------------------------------------------------------------------------------

@dataclass
class VisitFields:
    """Reads the PV1 criteria of QPD-3 for :func:`~ihe_engine.identity.iti21.parse_qpd`."""

    values: dict[str, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return self.criteria().is_empty

    def criteria(self) -> VisitCriteria:
        return VisitCriteria(**self.values)

    def read(self, number: int, path: str, value: str, subcomponent: str) -> bool:
        match = _PATH.match(path)
        if match is None:
            return False
        segment, *parts = match.groups()
        key = tuple(int(part) if part else None for part in parts)
        column = _VISIT_PATHS.get(key) if segment == "PV1" else None  # type: ignore[call-overload]
        if column is None:
            raise TransactionError(f"QPD-3 repetition {number}: {path[:40]!r} is not a visit field this supplier "
                                   "searches", code="103", location=f"QPD^1^3^{number}^1")
        check_value(number, value)
        if value:
            self.values[column] = value.split(subcomponent)[0]  # a whole HD or CX: its first part
        return True


def _query_digest(qpd: Segment) -> str:
    """Marked ZV1 so that ITI-21 and ITI-22 pointers of one tag never serve each other."""
    seed = f"ZV1\x00{qpd[3]}\x00{qpd[5]}\x00{qpd[8]}"
    return hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()[:32]


# -- answer ------------------------------------------------------------------------------------------------------

def _body(page: list[VisitMatch], message: Message, algorithm: str | None) -> list[str]:
    encoding, segments = message.encoding, []
    for number, match in enumerate(page, start=1):
        segments.append(build_pid(match.identifiers, match.traits, encoding=encoding, set_id=number))
        segments.append(translate(_with_set_id(match.pv1, number), DEFAULT_ENCODING, encoding))
        if match.pv2:
            segments.append(translate(match.pv2, DEFAULT_ENCODING, encoding))
        if algorithm is not None:
            confidence = round(100 * (match.score or 0.0))
            segments.append(encoding.field.join(["QRI", str(confidence), "", escape(algorithm, encoding)]))
    return segments


def _with_set_id(pv1: str, number: int) -> str:
    """PV1-1 numbers the groups of this answer, as PID-1 does (the stored one was the feed's)."""
    fields = pv1.split(DEFAULT_ENCODING.field)
    if len(fields) > 1:
        fields[1] = str(number)
    return DEFAULT_ENCODING.field.join(fields)
