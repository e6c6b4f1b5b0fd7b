"""What ITI-9 and ITI-21 share: reading a QBP, writing its RSP, and the query audit record.

The RSP answers in the request's delimiters and character set. MSH-3/4 echo the request's MSH-5/6 (the
application the consumer addressed; the engine's own names when those are empty), MSH-5/6 its MSH-3/4, MSH-21 names
the transaction (``ITI-21^IHE``). MSA-2 echoes MSH-10, QAK-1 and the QPD echo are the request's. Every echoed text
is stripped of control characters first: a byte such as 0x1C echoed before a segment end would close the MLLP frame
early, so the consumer would read a truncated answer.

Audit (reference section D): EventID 110112 Query, action E, the transaction as EventTypeCode; source UserID
``MSH-4|MSH-3``, destination ``MSH-6|MSH-5`` with the process id; a query object (type 2, role 24, id type the
transaction, ID MSH-10, query = the QPD segment bytes, detail MSH-10) and one patient object per patient answered.
Records are parked on the session and emitted once the unit of work commits (as ITI-8 does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from ..audit import AuditRecord, ParticipantObject
from ..audit.hl7v2 import hl7_request_participants
from ..hl7v2.ack import ERROR_CODES, Hl7Error, hl7_timestamp, new_control_id
from ..hl7v2.dispatch import Hl7Context
from ..hl7v2.message import Message, Segment, escape
from ..errors import TransactionError

if TYPE_CHECKING:
    from ..audit import Code

__all__ = ["QueryRequest", "read_query", "build_rsp", "query_audit", "clean", "QUERY_EVENT"]

QUERY_EVENT: "Code" = ("110112", "DCM", "Query")
_PATIENT_NUMBER = ("2", "RFC-3881", "Patient Number")
_CONTROL_CHARACTERS = dict.fromkeys([*range(0x20), 0x7F])
_MINIMUM_VERSION = (2, 4)  # QBP exists from HL7 v2.4; the profiles use 2.5


def clean(text: str) -> str:
    """Echoable text: control characters removed."""
    return text.translate(_CONTROL_CHARACTERS)


@dataclass(frozen=True, kw_only=True)
class QueryRequest:
    message: Message
    qpd: Segment
    tag: str
    """QPD-2, raw (still escaped): echoed in QAK-1 and the key of continuations and cancels."""

    @property
    def qpd_text(self) -> str:
        return clean(self.qpd.to_text())


def read_query(message: Message) -> QueryRequest:
    """The QPD of a QBP; a message without one, or of a version before QBP existed, is refused (AE)."""
    _check_version(message)
    qpd = message.find_segment("QPD")
    if qpd is None:
        raise TransactionError("required segment QPD is missing", code="100", location="QPD^1")
    return QueryRequest(message=message, qpd=qpd, tag=qpd[2])


def _check_version(message: Message) -> None:
    numbers = []
    for part in message.header.version.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    if len(numbers) < 2 or numbers[0] != 2 or tuple(numbers[:2]) < _MINIMUM_VERSION:
        raise TransactionError(f"HL7 version {message.header.version!r} has no QBP query (2.4 or later needed)",
                               code="203", location="MSH^1^12")


def build_rsp(request: QueryRequest, context: Hl7Context, *, message_type: Sequence[str], transaction: str,
              acknowledgment: str, query_status: str, errors: Iterable[Hl7Error] = (),
              body: Iterable[str] = (), continuation: str | None = None) -> bytes:
    """The RSP bytes: MSH MSA [ERR]* QAK QPD body [DSC]."""
    message = request.message
    enc = message.encoding
    segments = [_msh(message, context, enc.component.join(message_type), transaction),
                enc.field.join(["MSA", acknowledgment, clean(message.header.control_id)]),
                *(_err(error, message) for error in errors),
                enc.field.join(["QAK", clean(request.tag), query_status]),
                request.qpd_text, *body]
    if continuation is not None:
        segments.append(enc.field.join(["DSC", escape(continuation, enc), "I"]))
    text = "\r".join(segments) + "\r"
    try:
        return text.encode(message.charset, errors="replace")  # a name the request's charset cannot hold: "?"
    except LookupError:
        return text.encode("utf-8")


def _msh(message: Message, context: Hl7Context, message_type: str, transaction: str) -> str:
    enc, msh, header = message.encoding, message.msh, message.header
    fields = [clean(header.receiving_application) or escape(context.sending_application, enc),
              clean(header.receiving_facility) or escape(context.sending_facility, enc),
              clean(header.sending_application), clean(header.sending_facility), hl7_timestamp(), "",
              message_type, new_control_id(), clean(msh[11]) or "P", clean(header.version_field) or "2.5",
              "", "", "", "", "", clean(msh[18]), "", "", enc.component.join([transaction, "IHE"])]
    return "MSH" + enc.field + enc.msh2 + enc.field + enc.field.join(fields)


def _err(error: Hl7Error, message: Message) -> str:
    enc = message.encoding
    location = enc.component.join(escape(part, enc) for part in (error.location or "").split("^")) \
        if error.location else ""
    code = enc.component.join([error.code, escape(ERROR_CODES.get(error.code, ""), enc), "HL70357"])
    return enc.field.join(["ERR", "", location, code, error.severity, "", "", "", escape(clean(error.text), enc)])


def query_audit(context: Hl7Context, request: QueryRequest, *, event_type: "Code", patients: Iterable[str],
                outcome: int = 0, description: str | None = None) -> AuditRecord:
    """The ATNA record of one query (see the module docstring)."""
    header = context.message.header
    source, destination = hl7_request_participants(context)
    control_id = header.control_id.encode()
    query = ParticipantObject(object_id=header.control_id, type_code=2, type_code_role=24, id_type=event_type,
                              query=request.qpd.to_text().encode(request.message.charset or "utf-8", "replace"),
                              details=(("MSH-10", control_id),))
    patient_objects = tuple(ParticipantObject(object_id=patient, type_code=1, type_code_role=1,
                                              id_type=_PATIENT_NUMBER) for patient in dict.fromkeys(patients))
    return AuditRecord(event_id=QUERY_EVENT, action="E", event_types=(event_type,), outcome=outcome,
                       outcome_description=description, participants=(source, destination),
                       objects=(query, *patient_objects), transaction=event_type[0])
