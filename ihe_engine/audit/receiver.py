"""The ARR's syslog callbacks: every received message, good or bad, goes to :func:`repository.ingest` in batches.

The receivers call back once per message on the reactor thread. :class:`IngestBatcher` gathers what arrives
while the previous batch is being stored (and for at most ``delay`` seconds when idle) and stores it in one
transaction in the thread pool: group commit, one chain-lock per batch, and at most one batch in flight per
process, so a burst costs one transaction per few hundred messages. The Deferred returned for each message fires
once its batch committed, which gives the stream receivers their back-pressure. A batch that fails because the
database is unavailable is kept and retried (syslog cannot ask the sender to resend); one that fails for any
other reason is stored message by message, and a message that still fails is stored unread, flagged.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.exc import OperationalError
from twisted.internet.defer import Deferred

from ..transport.syslog import SyslogMessage
from .repository import Incoming, from_invalid_frame, from_syslog, ingest

__all__ = ["IngestBatcher"]

log = logging.getLogger("ihe_engine.audit.repository")


class IngestBatcher:
    """``on_message``/``on_invalid`` callbacks for the syslog receivers of one transport name."""

    def __init__(self, runtime: Any, *, max_batch: int = 500, delay: float = 0.002,
                 retry_delay: float = 1.0) -> None:
        self.runtime = runtime
        self.max_batch, self.delay, self.retry_delay = max_batch, delay, retry_delay
        self._pending: list[tuple[Incoming, Deferred[int]]] = []
        self._scheduled: Any = None
        self._running = False
        self.stored = 0

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
        if not self._running:
            if len(self._pending) >= self.max_batch:
                self._flush()
            elif self._scheduled is None:
                self._scheduled = self.runtime.reactor.callLater(self.delay, self._flush)
        return done

    def _flush(self) -> None:
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        if self._running or not self._pending:
            return
        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        self._running = True
        stored = self.runtime.run_blocking(self._store, [item for item, _ in batch])
        stored.addBoth(self._stored, batch)

    def _stored(self, result: Any, batch: list[tuple[Incoming, Deferred[int]]]) -> None:
        self._running = False
        if isinstance(result, list):
            self.stored += len(result)
            for _, done in batch:
                done.callback(len(batch))
            if self._pending:
                self._scheduled = self.runtime.reactor.callLater(0, self._flush)
            return
        log.error("audit ingest of %d message(s) failed, retrying in %.1fs: %s", len(batch), self.retry_delay,
                  result.getErrorMessage())
        self._pending[:0] = batch
        self._scheduled = self.runtime.reactor.callLater(self.retry_delay, self._flush)

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
        with self.runtime.uow() as uow:
            ids = ingest(uow.session, items)
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


def _now() -> datetime:
    return datetime.now(timezone.utc)
