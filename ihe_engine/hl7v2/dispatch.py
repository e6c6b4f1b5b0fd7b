"""HL7 v2 dispatch: route by MSH-9, detect retransmissions, acknowledge only after commit.

A blocking route runs in the thread pool inside a unit of work::

    find (MSH-3, MSH-4, MSH-10) in hl7_exchange -> found: the stored answer, byte for byte, nothing else runs
    handler(message, uow, context)               -> reply bytes, or None for an AA ACK
    hl7_exchange.add(answer); commit             -> only now is the answer handed back to the protocol

Group commit: messages that arrive while a batch is in its transaction wait (in arrival order, on the reactor
thread) and make up the next batch, at most ``hl7_batch_size`` of them: one unit of work, each message in its own
SAVEPOINT, one COMMIT, then every answer. A message whose handler fails is rolled back to its savepoint alone and
its AE is recorded as usual; a failed COMMIT answers AE 207 to every message of the batch (nothing was
committed). A batch of one takes the plain path, without a savepoint. One batch runs at a time on SQLite (one
write lock: a second batch would only sleep in SQLite's busy handler), as many as the thread pool has threads on
PostgreSQL. Under load a commit is shared by many messages, so its fixed cost (thread hop, BEGIN, COMMIT, session)
is paid once per batch; with a single closed-loop sender every batch holds one message, as before. A read-only
route (a query) is a batch of its own, taken in arrival order (so it sees what messages before it wrote), in a
read-only unit of work: no write lock on SQLite, and its after-commit effects (audit) run when its snapshot ends.

What is recorded: the answer to a handled message, including an AE for a business refusal (a
``TransactionError``), so a retransmission gets the same answer. Not recorded: an AE 207 (the handler crashed) or
206 (record locked), since those say nothing about the message and a retransmission deserves a fresh attempt; and
AR answers (unparseable, unknown type), which involve no storage. Two workers receiving the same message at once
both run the handler; the second insert violates the unique key, rolls back, and that worker answers with what the
first one stored.

A non-blocking route (no storage: no-op, benchmarks) runs inline on the reactor thread without a unit of work.

Metrics: every answer, whichever path made it, counts once in ``ihe_transactions{transaction, outcome}`` (outcome
``ok`` for an MSA-1 of AA/CA, ``error`` for AE/AR/CE/CR) and in ``ihe_transaction_seconds``; a message no route
accepted counts under ``HL7v2-unrouted``. Each refusal made here also counts in
``ihe_transaction_errors{transaction, code}`` with its table 0357 code (a retransmitted answer is not counted twice).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import deque
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from sqlalchemy.exc import IntegrityError
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from ..errors import RemoteProtocolError, TransactionError
from ..metrics import TRANSACTION_ERRORS, TRANSACTION_SECONDS, TRANSACTIONS
from .ack import Hl7Error, build_ack, build_reject
from .message import Message, parse

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..storage import UnitOfWork

__all__ = ["Hl7Route", "Hl7Context", "Hl7Dispatcher", "Handler", "UNROUTED", "DEFAULT_BATCH_SIZE"]

log = logging.getLogger("ihe_engine.hl7v2")

Handler = Callable[[Message, "UnitOfWork | None", "Hl7Context"], "bytes | None"]
UNROUTED = "HL7v2-unrouted"
"""The transaction label metrics use for messages no route accepted."""
DEFAULT_BATCH_SIZE = 64
"""Messages committed together at most (``hl7_batch_size``)."""

_MESSAGE_TYPE = re.compile(r"[A-Z0-9]{3}(\^[A-Z0-9]{3})?\Z")
_NOT_RECORDED = frozenset({"206", "207"})
_MAX_KEY_LENGTHS = {3: 227, 4: 227, 10: 199}  # hl7_exchange column sizes
_STORED_FIELDS = (3, 4, 9, 10)  # MSH fields written to hl7_exchange
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_ACKNOWLEDGMENT_CODE = re.compile(rb"(?:\A|\r)MSA(?P<separator>[^\r])(?P<code>[AC][AER])(?:(?P=separator)|\r|\Z)")
_FAILED_ACKNOWLEDGMENTS = frozenset({b"AE", b"AR", b"CE", b"CR"})


@dataclass(frozen=True)
class Hl7Route:
    """``Hl7Route("ADT^A01", handler, transaction="ITI-8")``; ``"ADT"`` alone routes every ADT event."""

    message_type: str
    handler: Handler
    _: KW_ONLY
    transaction: str
    blocking: bool = True
    record_exchange: bool = True
    readonly: bool = False
    """A query: runs alone in a read-only unit of work (a snapshot, no SQLite write lock), never in a write batch."""

    def __post_init__(self) -> None:
        if not _MESSAGE_TYPE.match(self.message_type):
            raise ValueError(f"a route is TYPE or TYPE^TRIGGER (e.g. ADT^A01), not {self.message_type!r}")
        if self.readonly and self.record_exchange:
            raise ValueError(f"the read-only route {self.message_type} cannot record its exchange (a write)")


@dataclass(frozen=True, kw_only=True)
class Hl7Context:
    """What a handler may need besides the message and the unit of work."""

    peer: str
    transaction: str
    message: Message
    runtime: "Runtime | None" = field(repr=False)
    sending_application: str
    sending_facility: str

    def ack(self, code: str = "AA", *, errors: Iterable[Hl7Error] = (), text: str | None = None) -> bytes:
        return build_ack(self.message, code, errors=errors, text=text,
                         sending_application=self.sending_application, sending_facility=self.sending_facility)


class Hl7Dispatcher:
    """``handle(raw, peer) -> Deferred[bytes]``: the answer to write, always an HL7 message, never a failure."""

    def __init__(self, runtime: "Runtime | None", routes: Iterable[Hl7Route], *,
                 sending_application: str = "IHE_ENGINE", sending_facility: str = "IHE_ENGINE",
                 batch_size: int | None = None) -> None:
        self.runtime = runtime
        settings = getattr(runtime, "settings", None)
        self.batch_size = batch_size or getattr(settings, "hl7_batch_size", None) or DEFAULT_BATCH_SIZE
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        self._max_running = _concurrent_batches(runtime)
        self._waiting: deque[_Job] = deque()
        self._running = 0
        self.sending_application = sending_application
        self.sending_facility = sending_facility
        self._exact: dict[str, Hl7Route] = {}
        self._by_type: dict[str, Hl7Route] = {}
        self._known_types: set[str] = set()
        for route in routes:
            table = self._exact if "^" in route.message_type else self._by_type
            if route.message_type in table:
                raise ValueError(f"two routes for {route.message_type}")
            if route.blocking and runtime is None:
                raise ValueError(f"the blocking route {route.message_type} needs a Runtime")
            table[route.message_type] = route
            self._known_types.add(route.message_type.split("^")[0])

    def handle(self, raw: bytes, peer: str) -> "Deferred[bytes]":
        started = time.perf_counter()
        try:
            message = parse(raw)
        except RemoteProtocolError as exc:
            return succeed(_counted(self._reject(exc, raw=raw), UNROUTED, started))
        try:
            self._check_header(message)
            route = self._route_for(message)
        except RemoteProtocolError as exc:
            transaction = self._transaction_of(message)
            return succeed(_counted(self._reject(exc, message=message, transaction=transaction), transaction,
                                    started))
        context = Hl7Context(peer=peer, transaction=route.transaction, message=message, runtime=self.runtime,
                             sending_application=self.sending_application, sending_facility=self.sending_facility)
        if not route.blocking or self.runtime is None:
            answer = self._handle_inline(message, route, context)
        else:
            answer = self._enqueue(_Job(message, route, context))
        return answer.addCallback(_counted, route.transaction, started)

    # -- group commit (reactor thread only: no lock guards these) -------------------------------------------------

    def _enqueue(self, job: "_Job") -> "Deferred[bytes]":
        self._waiting.append(job)
        self._start_batches()
        return job.answer

    def _start_batches(self) -> None:
        """Hand waiting messages to the thread pool, at most ``batch_size`` per unit of work, oldest first."""
        assert self.runtime is not None
        while self._waiting and self._running < self._max_running:
            jobs = self._next_batch()
            self._running += 1
            done = self.runtime.run_blocking(self.handle_batch, jobs)
            done.addCallbacks(self._batch_answered, self._batch_failed, callbackArgs=(jobs,), errbackArgs=(jobs,))

    def _next_batch(self) -> "list[_Job]":
        """The oldest waiting messages up to the next read-only one, which makes a batch of its own."""
        jobs = [self._waiting.popleft()]
        while not jobs[0].route.readonly and self._waiting and len(jobs) < self.batch_size \
                and not self._waiting[0].route.readonly:
            jobs.append(self._waiting.popleft())
        return jobs

    def _batch_answered(self, answers: list[bytes], jobs: "list[_Job]") -> None:
        self._running -= 1
        self._start_batches()  # the next batch's work overlaps the writing of these answers
        for job, answer in zip(jobs, answers):
            job.answer.callback(answer)

    def _batch_failed(self, failure: Failure, jobs: "list[_Job]") -> None:
        """The unit of work itself failed (database down, commit refused): nothing was committed."""
        self._running -= 1
        self._start_batches()
        for job in jobs:
            job.answer.callback(self._internal_error(failure, job.message, job.route))

    # -- validation and routing ----------------------------------------------------------------------------------

    def _check_header(self, message: Message) -> None:
        header = message.header
        if not header.message_type:
            raise RemoteProtocolError("MSH-9 (message type) is empty", code="101", location="MSH^1^9^1^1")
        if not header.control_id:
            raise RemoteProtocolError("MSH-10 (message control id) is empty", code="101", location="MSH^1^10")
        for number in _STORED_FIELDS:
            if _CONTROL_CHARACTER.search(message.msh[number]):
                raise RemoteProtocolError(f"MSH-{number} contains a control character", code="102",
                                          location=f"MSH^1^{number}")
        for number, limit in _MAX_KEY_LENGTHS.items():
            if len(message.msh[number]) > limit:
                raise RemoteProtocolError(f"MSH-{number} is longer than {limit} characters", code="104",
                                          location=f"MSH^1^{number}")

    def _transaction_of(self, message: Message) -> str:
        """The metrics label of a refused message: its route's transaction if it has one."""
        try:
            return self._route_for(message).transaction
        except RemoteProtocolError:
            return UNROUTED

    def _route_for(self, message: Message) -> Hl7Route:
        header = message.header
        route = self._exact.get(f"{header.message_type}^{header.trigger_event}") \
            or self._by_type.get(header.message_type)
        if route is not None:
            return route
        if header.message_type in self._known_types:
            raise RemoteProtocolError(f"event {header.trigger_event!r} of {header.message_type} is not supported",
                                      code="201", location="MSH^1^9^1^2")
        raise RemoteProtocolError(f"message type {header.message_type!r} is not supported", code="200",
                                  location="MSH^1^9^1^1")

    def _reject(self, exc: RemoteProtocolError, *, raw: bytes = b"", message: Message | None = None,
                transaction: str = UNROUTED) -> bytes:
        """AR: what the peer sent cannot be processed at all (unreadable, or of a type no route serves)."""
        error = Hl7Error.from_exception(exc, default_code="100")
        log.info("rejecting HL7 message: %s", exc)
        TRANSACTION_ERRORS.labels(transaction, error.code).inc()
        identity = {"sending_application": self.sending_application, "sending_facility": self.sending_facility}
        if message is not None:
            return build_ack(message, "AR", errors=[error], **identity)
        return build_reject(raw, [error], **identity)

    # -- handlers ------------------------------------------------------------------------------------------------

    def _handle_inline(self, message: Message, route: Hl7Route, context: Hl7Context) -> "Deferred[bytes]":
        def answer(reply: bytes | None) -> bytes:
            return reply if reply is not None else context.ack()

        def refused(failure: Failure) -> bytes:
            return self._error_ack(failure.value, context, route)

        return maybeDeferred(route.handler, message, None, context).addCallbacks(answer, refused)

    def handle_in_unit_of_work(self, message: Message, route: Hl7Route, context: Hl7Context) -> bytes:
        """One message in its own unit of work (runs in a worker thread): retransmission check, handler, record,
        commit."""
        assert self.runtime is not None
        with (self.runtime.uow(readonly=True) if route.readonly else self.runtime.uow()) as uow:
            answer = self._handle_one(uow, _Job(message, route, context), savepoint=False)
            if route.readonly:
                uow.session.commit()  # ends the snapshot (nothing to write) and runs the after-commit audit
            else:
                uow.commit()
            return answer

    def handle_batch(self, jobs: "list[_Job]") -> list[bytes]:
        """Several messages in one unit of work, each in its own savepoint, one commit (runs in a worker thread).

        A message whose handler fails is rolled back to its savepoint alone; the others stay. If the commit fails,
        the exception propagates and every message of the batch is answered AE 207: nothing was committed.
        """
        assert self.runtime is not None
        if len(jobs) == 1:
            job = jobs[0]
            return [self.handle_in_unit_of_work(job.message, job.route, job.context)]
        with self.runtime.uow() as uow:
            answers = [self._handle_one(uow, job, savepoint=True) for job in jobs]
            uow.commit()
            return answers

    def _handle_one(self, uow: "UnitOfWork", job: "_Job", *, savepoint: bool) -> bytes:
        """Retransmission check, handler, record; with ``savepoint`` a failure undoes this message's work only."""
        message, route, context = job.message, job.route, job.context
        header = message.header
        key = (header.sending_application, header.sending_facility, header.control_id)
        digest = hashlib.sha256(message.raw).hexdigest()
        if route.record_exchange:
            stored = uow.hl7_exchanges.find(*key)  # also sees what an earlier message of this batch recorded
            if stored is not None:
                return self._retransmitted(stored, digest, key)
        work = _Work(uow, savepoint)
        try:
            reply, recorded = self._run_handler(message, route, uow, context, work)
            if route.record_exchange and recorded:
                uow.hl7_exchanges.add(sending_application=key[0], sending_facility=key[1], control_id=key[2],
                                      message_type=message.msh[9][:40], message_sha256=digest, response=reply)
            work.keep()
        except IntegrityError:
            work.undo()
            stored = uow.hl7_exchanges.find(*key)
            if stored is None:
                raise
            log.info("message %s from %s^%s was answered by another worker meanwhile", key[2], key[0], key[1])
            return stored.response
        return reply

    def _run_handler(self, message: Message, route: Hl7Route, uow: "UnitOfWork", context: Hl7Context,
                     work: "_Work") -> tuple[bytes, bool]:
        """(answer, whether to record it); a failed handler's work is undone here."""
        try:
            reply = route.handler(message, uow, context)
            uow.session.flush()  # the handler's pending ORM changes fail here, as its own failure
        except Exception as exc:
            work.undo_and_restart()
            answer = self._error_ack(exc, context, route)
            code = exc.code if isinstance(exc, TransactionError) else "207"
            return answer, code not in _NOT_RECORDED
        return (reply if reply is not None else context.ack()), True

    def _error_ack(self, exc: BaseException, context: Hl7Context, route: Hl7Route) -> bytes:
        if isinstance(exc, TransactionError):
            error = Hl7Error.from_exception(exc, default_code="207")
            log.info("%s refused message %s: %s", route.transaction, context.message.header.control_id, exc)
        else:
            error = Hl7Error(code="207", text="application internal error")
            log.error("%s handler failed on message %s", route.transaction, context.message.header.control_id,
                      exc_info=(type(exc), exc, exc.__traceback__))
        TRANSACTION_ERRORS.labels(route.transaction, error.code).inc()
        return context.ack("AE", errors=[error])

    def _retransmitted(self, stored: Any, digest: str, key: tuple[str, str, str]) -> bytes:
        if stored.message_sha256 != digest:
            log.warning("message control id %s from %s^%s reused for different content; answering as before",
                        key[2], key[0], key[1])
        else:
            log.info("retransmission of %s from %s^%s answered as before", key[2], key[0], key[1])
        return stored.response

    def _internal_error(self, failure: Failure, message: Message, route: Hl7Route) -> bytes:
        """AE 207 for a message whose unit of work failed (database down, commit refused)."""
        log.error("%s failed before commit on message %s", route.transaction, message.header.control_id,
                  exc_info=(failure.type, failure.value, failure.getTracebackObject()))
        TRANSACTION_ERRORS.labels(route.transaction, "207").inc()
        return build_ack(message, "AE", errors=[Hl7Error(code="207", text="application internal error")],
                         sending_application=self.sending_application, sending_facility=self.sending_facility)


@dataclass(slots=True)
class _Job:
    """One message waiting for (or in) a batch, with the Deferred its answer fires."""

    message: Message
    route: Hl7Route
    context: Hl7Context
    answer: "Deferred[bytes]" = field(default_factory=Deferred)


class _Work:
    """The current message's work: its savepoint inside a batch, else the unit of work's transaction itself."""

    __slots__ = ("uow", "savepoint")

    def __init__(self, uow: "UnitOfWork", savepoint: bool) -> None:
        self.uow = uow
        self.savepoint = uow.session.begin_nested() if savepoint else None

    def keep(self) -> None:
        if self.savepoint is not None:
            self.savepoint.commit()

    def undo(self) -> None:
        if self.savepoint is not None:
            self.savepoint.rollback()
        else:
            self.uow.rollback()

    def undo_and_restart(self) -> None:
        """Undo, then go on in a fresh savepoint (the answer to a refused message is still recorded)."""
        self.undo()
        if self.savepoint is not None:
            self.savepoint = self.uow.session.begin_nested()


def _concurrent_batches(runtime: "Runtime | None") -> int:
    """How many batches may run at once: one on SQLite, whose single write lock would make a second batch sleep
    in its busy handler; on PostgreSQL as many as the thread pool has threads."""
    db, threadpool = getattr(runtime, "db", None), getattr(runtime, "threadpool", None)
    if db is None or threadpool is None or db.is_sqlite:
        return 1
    return max(1, threadpool.max)


def _counted(answer: bytes, transaction: str, started: float) -> bytes:
    """Count an answer in ``ihe_transactions`` by its MSA-1 and time it; returns it unchanged."""
    match = _ACKNOWLEDGMENT_CODE.search(answer)
    failed = match is not None and match.group("code") in _FAILED_ACKNOWLEDGMENTS
    TRANSACTIONS.labels(transaction, "error" if failed else "ok").inc()
    TRANSACTION_SECONDS.labels(transaction).observe(time.perf_counter() - started)
    return answer
