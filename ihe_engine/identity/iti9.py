"""ITI-9 PIX Query (HL7 v2.5): QBP^Q23^QBP_Q21 -> RSP^K23^RSP_K23, over :mod:`~ihe_engine.identity.pix`.

QPD-3 is the source identifier (a CX with its assigning authority), QPD-4 the domains wanted (repeating CX with
only component 4: namespace, OID or both); RCP-1 must be ``I`` (immediate) when given. The answers, as the
reference lists them:

========================================================  =====  =====  ======================================
case                                                      MSA-1  QAK-2  ERR (code 0357 at ERR-2)
========================================================  =====  =====  ======================================
identifiers found                                         AA     OK     none; one PID: PID-3 the identifiers,
                                                                        PID-5 ``~^^^^^^S``
known id, no identifier in the requested domains          AA     NF     none, no PID
QPD-3 domain known, id unknown (or removed by its sender)  AE     AE     204 at ``QPD^1^3^1^1``
QPD-3 domain unknown                                      AE     AE     204 at ``QPD^1^3^1^4``
a QPD-4 domain unknown                                    AE     AE     204 at ``QPD^1^4^rep``, one ERR each
QPD-3 without id or authority                             AE     AE     101 at ``QPD^1^3^1^1`` / ``^4``
RCP-1 other than I                                        AE     AE     102 at ``RCP^1^1``
========================================================  =====  =====  ======================================

A message without QPD, or of an HL7 version before QBP (2.4), gets an ACK AE (there is no query to echo).
The source id is left out of PID-3 unless its own domain is among QPD-4's (see :mod:`~ihe_engine.identity.pix`).
A subsumed source id answers with its survivor's identifiers. The query changes nothing, so its answer is not kept
for retransmissions: a repeated query gets a fresh answer. Audit: :mod:`~ihe_engine.identity.hl7_query`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from ..errors import TransactionError
from ..hl7v2.ack import Hl7Error
from ..hl7v2.dispatch import Hl7Context, Hl7Route
from ..hl7v2.message import Message
from .cx import CX, CXError
from .hl7_query import QueryRequest, build_rsp, query_audit, read_query
from .iti8 import _audit_after_commit
from .pid_segment import NameMode, build_pid
from .pix import Authority, Domain, PixAnswer, PixOutcome, cross_references

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..storage import UnitOfWork

__all__ = ["Iti9PixQuery", "hl7_routes", "ITI9_EVENT_TYPE"]

ITI9_EVENT_TYPE = ("ITI-9", "IHE Transactions", "PIX Query")
_RESPONSE_TYPE = ("RSP", "K23", "RSP_K23")
_REFUSED = 4


class Iti9PixQuery:
    """The ITI-9 handler; ``configured_domains`` are known even before the store holds an id in them."""

    def __init__(self, *, configured_domains: Iterable[Domain] = ()) -> None:
        self.configured_domains = tuple(configured_domains)

    def routes(self) -> list[Hl7Route]:
        return [Hl7Route("QBP^Q23", self.handle, transaction="ITI-9", record_exchange=False,
                        readonly=True)]

    def handle(self, message: Message, uow: "UnitOfWork", context: Hl7Context) -> bytes:
        request = read_query(message)
        try:
            source, targets = _source(request), _targets(request)
            _check_immediate(message)
        except TransactionError as exc:
            return self._refuse(request, uow, context, [Hl7Error.from_exception(exc)], str(exc), patients=())
        answer = cross_references(uow.session, source, targets, configured=self.configured_domains)
        if answer.outcome in (PixOutcome.FOUND, PixOutcome.NONE_IN_DOMAINS):
            found = answer.outcome is PixOutcome.FOUND
            body = [build_pid(answer.identifiers, encoding=message.encoding, name_mode=NameMode.PIX)] if found else []
            _audit_after_commit(uow, context, [query_audit(
                context, request, event_type=ITI9_EVENT_TYPE,
                patients=[source.to_hl7(), *(cx.to_hl7() for cx in answer.identifiers)])])
            return build_rsp(request, context, message_type=_RESPONSE_TYPE, transaction="ITI-9",
                             acknowledgment="AA", query_status="OK" if found else "NF", body=body)
        errors = _errors(answer)
        return self._refuse(request, uow, context, errors, "; ".join(error.text for error in errors),
                            patients=(source.to_hl7(),))

    def _refuse(self, request: QueryRequest, uow: "UnitOfWork", context: Hl7Context, errors: list[Hl7Error],
                description: str, *, patients: Iterable[str]) -> bytes:
        _audit_after_commit(uow, context, [query_audit(context, request, event_type=ITI9_EVENT_TYPE,
                                                       patients=patients, outcome=_REFUSED,
                                                       description=description)])
        return build_rsp(request, context, message_type=_RESPONSE_TYPE, transaction="ITI-9",
                         acknowledgment="AE", query_status="AE", errors=errors)


def hl7_routes(runtime: "Runtime | None" = None, *, configured_domains: Iterable[Domain] = ()) -> list[Hl7Route]:
    """The ITI-9 route (QBP^Q23) for the MLLP dispatcher."""
    return Iti9PixQuery(configured_domains=configured_domains).routes()


def _source(request: QueryRequest) -> CX:
    repetitions = request.qpd.repetitions(3)
    if not repetitions:
        raise TransactionError("QPD-3 (the patient identifier to cross-reference) is empty", code="101",
                               location="QPD^1^3^1^1")
    try:
        return CX.from_hl7(repetitions[0], request.qpd.encoding, request.qpd.charset)
    except CXError as exc:
        raise TransactionError(f"QPD-3: {exc}", code=exc.hl7_code, location=exc.location_in("QPD", 3)) from None


def _targets(request: QueryRequest) -> list[Authority]:
    qpd = request.qpd
    targets = []
    for text in qpd.repetitions(4):
        components = text.split(qpd.encoding.component)
        targets.append(Authority.from_hl7(components[3] if len(components) > 3 else "", qpd.encoding, qpd.charset))
    return targets


def _check_immediate(message: Message) -> None:
    rcp = message.find_segment("RCP")
    if rcp is not None and rcp.get(1) not in ("", "I"):
        raise TransactionError(f"RCP-1 {rcp.get(1)!r}: only immediate queries (I) are answered", code="102",
                               location="RCP^1^1")


def _errors(answer: PixAnswer) -> list[Hl7Error]:
    if answer.outcome is PixOutcome.UNKNOWN_TARGET_DOMAIN:
        return [Hl7Error(code="204", location=f"QPD^1^4^{index + 1}",
                         text=f"QPD-4 repetition {index + 1}: unknown patient identifier domain")
                for index in answer.unknown_domains]
    if answer.outcome is PixOutcome.UNKNOWN_SOURCE_DOMAIN:
        return [Hl7Error(code="204", location="QPD^1^3^1^4", text="QPD-3: unknown assigning authority")]
    return [Hl7Error(code="204", location="QPD^1^3^1^1", text="QPD-3: unknown patient identifier")]
