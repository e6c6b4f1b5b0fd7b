"""The ARR's syslog callbacks: every received message, good or bad, goes to the repository in batches.

The receivers call back once per message on the reactor thread. :class:`IngestBatcher` gathers what arrives
while earlier batches are being stored (and for at most ``delay`` seconds when idle) and stores it in one
transaction in the thread pool: group commit, one chain-lock per batch, so a burst costs one transaction per few
hundred messages. Two batches may be in flight per process (when the thread pool has a thread to spare for the
other transactions): while one is written (under a process-wide lock, so the two never meet in SQLite's sleeping
busy handler), the other is read and validated, which overlaps the database driver's work (it releases the GIL)
with the next batch's parsing; a second batch starts only when full, so the overlap never turns into many small
commits. The Deferred returned for each message fires once its
batch committed, which gives the stream receivers their back-pressure. A batch that fails because the database
is unavailable is kept and retried (syslog cannot ask the sender to resend), and what arrives meanwhile waits for
that retry; one that fails for any other reason is stored message by message, and a message that still fails is
stored unread, flagged.

Clean stop: the batcher is a "before shutdown" trigger of the reactor (:meth:`IngestBatcher.stop`). From then on
a message goes to storage at once (no waiting for company), within the callback that freed a slot, so the
engine's drain of in-flight work never sees an empty set while messages wait, and the reactor stops only once
nothing received is left unstored (or after ``stop_timeout`` with the database away, logged).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.exc import OperationalError
from twisted.internet.defer import Deferred

from ..transport.syslog import SyslogMessage
from .repository import Incoming, from_invalid_frame, from_syslog, prepare, store_prepared

__all__ = ["IngestBatcher"]

log = logging.getLogger("ihe_engine.audit.repository")


class IngestBatcher:
    """``on_message``/``on_invalid`` callbacks for the syslog receivers of one transport name."""

    def __init__(self, runtime: Any, *, max_batch: int = 500, delay: float = 0.002,
                 retry_delay: float = 1.0, stop_timeout: float = 30.0, max_in_flight: int | None = None) -> None:
        self.runtime = runtime
        self.max_batch, self.delay, self.retry_delay = max_batch, delay, retry_delay
        self.max_in_flight = max_in_flight or _default_in_flight(runtime)
        self._write_lock = threading.Lock()
        self.stop_timeout = stop_timeout
        self._give_up_call: Any = None
        self._pending: list[tuple[Incoming, Deferred[int]]] = []
        self._scheduled: Any = None
        self._in_flight = 0
        self._waiting_retry = False
        self._stopping = False
        self._idle_waiters: list[Deferred[None]] = []
        self.stored = 0
        add_trigger = getattr(runtime.reactor, "addSystemEventTrigger", None)  # absent on a test Clock
        if add_trigger is not None:
            add_trigger("before", "shutdown", self.stop)

    # ---- callbacks (reactor thread)

    def callbacks(self, transport: str) -> tuple[Any, Any]:
        """(on_message, on_invalid) for a listener whose messages are recorded as arriving over ``transport``."""
        def on_message(message: SyslogMessage, peer: str) -> Deferred[int]:
            return self.submit(from_syslog(message, peer=peer, transport=transport, received_at=_now()))

        def on_invalid(raw: bytes, peer: str, error: Exception) -> Deferred[int]:
            return self.submit(from_invalid_frame(raw, error, peer=peer, transport=transport, received_at=_now()))

        return on_message, on_invalid

    def submit(self, item: Incoming) -> Deferred[int]:
        done: Deferred[int] = Deferred()
        self._pending.append((item, done))
        if self._waiting_retry:
            return done  # the database is away: the retry timer sends everything
        if len(self._pending) >= self.max_batch or self._stopping:
            self._flush()  # a second batch starts only when full: small concurrent batches would cost commits
        elif not self._in_flight and self._scheduled is None:
            self._scheduled = self.runtime.reactor.callLater(self.delay, self._timer_fired)
        return done

    def _timer_fired(self) -> None:
        self._scheduled = None
        self._flush()

    def _flush(self) -> None:
        if self._waiting_retry or self._in_flight >= self.max_in_flight or not self._pending:
            return
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        self._in_flight += 1
        stored = self.runtime.run_blocking(self._store, [item for item, _ in batch])
        stored.addBoth(self._stored, batch)

    def _stored(self, result: Any, batch: list[tuple[Incoming, Deferred[int]]]) -> None:
        self._in_flight -= 1
        if isinstance(result, list):
            self.stored += len(result)
            for _, done in batch:
                done.callback(len(batch))
            if self._pending and self._stopping:
                self._flush()  # at once: the drain must never see an empty in-flight set with messages waiting
            elif self._pending and self._scheduled is None:
                self._scheduled = self.runtime.reactor.callLater(0, self._timer_fired)
            self._notify_if_idle()
            return
        log.error("audit ingest of %d message(s) failed, retrying in %.1fs: %s", len(batch), self.retry_delay,
                  result.getErrorMessage())
        self._pending[:0] = batch
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._waiting_retry = True
        self._scheduled = self.runtime.reactor.callLater(self.retry_delay, self._retry)

    def _retry(self) -> None:
        self._scheduled, self._waiting_retry = None, False
        self._flush()

    def stop(self) -> Deferred[None]:
        """Store what is pending now, and whatever still arrives, without delay; fires once nothing is left."""
        self._stopping = True
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        if self._give_up_call is None:
            self._give_up_call = self.runtime.reactor.callLater(self.stop_timeout, self._give_up)
        self._flush()
        self._notify_if_idle()
        return waiter

    def _notify_if_idle(self) -> None:
        if not self._in_flight and not self._pending:
            self._release_waiters()

    def _give_up(self) -> None:
        """The database stayed away for the whole stop timeout: stopping must not hang forever."""
        self._give_up_call = None
        if self._pending or self._in_flight:
            log.error("stopping after %.0fs with audit messages not stored (database unavailable): %d waiting, "
                      "%d batch(es) in flight", self.stop_timeout, len(self._pending), self._in_flight)
        self._release_waiters()

    def _release_waiters(self) -> None:
        if self._give_up_call is not None and self._give_up_call.active():
            self._give_up_call.cancel()
        self._give_up_call = None
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # ---- storage (thread pool)

    def _store(self, items: list[Incoming]) -> list[int]:
        try:
            return self._store_batch(items)
        except OperationalError:
            raise  # the database is away: the whole batch is retried later
        except Exception:
            log.exception("audit ingest batch failed; storing its %d message(s) one by one", len(items))
        return [ident for item in items for ident in self._store_alone(item)]

    def _store_batch(self, items: list[Incoming]) -> list[int]:
        prepared = [prepare(item) for item in items]  # outside the lock: the other batch may be storing
        with self._write_lock, self.runtime.uow() as uow:
            ids = store_prepared(uow.session, prepared)
            uow.commit()
        return ids

    def _store_alone(self, item: Incoming) -> list[int]:
        try:
            return self._store_batch([item])
        except OperationalError:
            raise
        except Exception as error:
            log.exception("audit message from %s could not be read; stored unread", item.peer)
            unread = Incoming(raw=item.raw, raw_kind="unread", transport=item.transport, received_at=item.received_at,
                              peer=item.peer, hostname=item.hostname, app_name=item.app_name, msgid=item.msgid,
                              envelope_problem=f"could not be read: {error}",
                              idempotency_key=item.idempotency_key)
            return self._store_batch([unread])


def _default_in_flight(runtime: Any) -> int:
    """Two batches, but never every thread of the pool: the other transactions (HL7, SOAP, the audit outbox) keep
    one (SQLite's default pool of two threads therefore stores one batch at a time; ``db_threads = 3`` pipelines)."""
    threads = getattr(getattr(runtime, "threadpool", None), "max", 3)
    return max(1, min(2, threads - 1))


def _now() -> datetime:
    return datetime.now(timezone.utc)
