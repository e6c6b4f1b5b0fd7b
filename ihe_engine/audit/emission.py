"""Durable audit emission (ITI-20 sending side): ``runtime.audit.emit(record)`` -> outbox -> repository.

:class:`OutboxSink` is the pluggy sink behind ``emit``. ``emit`` only appends the record to an in-memory queue
(about a microsecond, on whatever thread the actor runs); one writer thread per process turns what accumulated
into DICOM AuditMessages wrapped in RFC 5424 and commits them to the outbox (``queue_item``, one row per record
and destination) in one short transaction, at most ``flush_interval`` seconds after the first record arrived.

Durability window, stated honestly: a record is durable once the writer committed it, normally a few
milliseconds after ``emit`` returned. A process killed inside that window (SIGKILL, power loss) loses the records
emitted in it; a clean stop (SIGTERM) flushes them first. Records in the outbox survive any crash. An actor that
needs a record committed with its own transaction uses ``runtime.audit.emit_with(session, records)``
(:meth:`OutboxSink.ihe_audit_records_in_transaction` writes the rows in that transaction).

Delivery: to the local Audit Record Repository by default (:class:`LocalDelivery`: outbox rows are claimed, stored
with :func:`repository.ingest` under an idempotency key, and deleted, in one transaction -- exactly once, whatever
crashes in between), and/or to remote repositories over TLS, TCP or UDP with
:class:`~ihe_engine.transport.syslog_twisted.SyslogSender` (at least once: syslog has no acknowledgement).
A refused TLS handshake with a remote repository is a Security Alert, queued to the local repository only (see
:func:`is_audit_channel_alert`: never back to a failing channel).

Deliverers are woken when records reach the outbox, coalesced (:class:`Wakeup`): the first record arms a timer of
``delivery_delay`` seconds, records committed meanwhile only count, and the delivery then takes them all in one
transaction (at once when a full ``batch`` is waiting). Waking a deliverer per record would give every audited
message a second transaction (claim, ingest, delete, commit) and a reactor wake-up of its own.

Configuration (TOML, read from ``settings.extra["audit"]``)::

  [audit]
  destinations = ["local", "tls://arr.example.org:6514"]   # default ["local"]
  source_id = "engine-1"          # AuditSourceID (default: the node name)
  enterprise_site_id = "HOPITAL"  # AuditEnterpriseSiteID
  flush_interval = 0.005          # seconds a record may wait in memory before its batch is committed
  delivery_delay = 0.1            # seconds a committed record may wait in the outbox before delivery
                                  # (deliveries gather what arrives meanwhile: one transaction for many records)
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall

from ..errors import ConfigurationError, RemoteProtocolError
from ..plugins import hookimpl
from ..storage.models import QueueItem
from ..transport.syslog import format_rfc5424, parse_rfc5424
from . import dicom
from .hook import SECURITY_ALERT, AuditRecord, Participant
from .repository import from_invalid_frame, from_syslog, ingest

__all__ = ["AuditSettings", "Destination", "OutboxSink", "LocalDelivery", "Wakeup", "start_delivery", "LOCAL_QUEUE",
           "syslog_message", "AUDIT_CHANNEL_ALERT", "is_audit_channel_alert"]

log = logging.getLogger("ihe_engine.audit")

LOCAL_QUEUE = "atna-local"
_QUEUE_ITEM = QueueItem.__table__
_INSERT_QUEUE_ITEM = insert(_QUEUE_ITEM)  # built once: every audited message writes its record with it
_APP_NAME = "ihe-engine"
_MSGID = "IHE+RFC-3881"


@dataclass(frozen=True)
class Destination:
    """``local`` (this engine's repository) or a remote syslog collector ``tls|tcp|udp://host:port``."""

    protocol: str
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> "Destination":
        if text == "local":
            return cls("local")
        parts = urlsplit(text)
        if parts.scheme not in ("tls", "tcp", "udp") or not parts.hostname or not parts.port:
            raise ConfigurationError(f"audit destination must be 'local' or tls|tcp|udp://host:port, not {text!r}")
        return cls(parts.scheme, parts.hostname, parts.port)

    @property
    def queue(self) -> str:
        if self.protocol == "local":
            return LOCAL_QUEUE
        return f"atna-out:{self.protocol}://{self.host}:{self.port}"[:64]


@dataclass(frozen=True, kw_only=True)
class AuditSettings:
    destinations: tuple[Destination, ...] = (Destination("local"),)
    source_id: str | None = None
    enterprise_site_id: str | None = None
    flush_interval: float = 0.005
    batch: int = 500
    delivery_delay: float = 0.1

    @classmethod
    def from_settings(cls, settings: Any) -> "AuditSettings":
        raw = dict((getattr(settings, "extra", None) or {}).get("audit") or {})
        known = {"destinations", "source_id", "enterprise_site_id", "flush_interval", "batch", "delivery_delay"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigurationError(f"unknown [audit] setting(s): {', '.join(sorted(unknown))}")
        destinations = raw.pop("destinations", ["local"])
        if isinstance(destinations, str):
            destinations = [destinations]
        parsed = cls(destinations=tuple(Destination.parse(d) for d in destinations), **raw)
        if parsed.flush_interval < 0 or parsed.delivery_delay < 0 or parsed.batch < 1:
            raise ConfigurationError("[audit] flush_interval and delivery_delay must be >= 0, batch >= 1")
        return parsed


def syslog_message(record: AuditRecord, *, source_id: str, enterprise_site_id: str | None, hostname: str,
                   process_id: str) -> bytes:
    """The RFC 5424 message carrying ``record`` as ITI-20 wants it (<85>, MSGID IHE+RFC-3881, no SD)."""
    if not record.participants:  # DICOM requires one ActiveParticipant: the node that observed the event
        record = _with_node_participant(record, source_id, process_id)
    xml = dicom.encode(record, source_id=source_id, enterprise_site_id=enterprise_site_id)
    return format_rfc5424(timestamp=record.when, hostname=_printable(hostname, 255), app_name=_APP_NAME,
                          procid=process_id, msgid=_MSGID, msg=xml)


def _with_node_participant(record: AuditRecord, node: str, process_id: str) -> AuditRecord:
    import dataclasses

    return dataclasses.replace(record, participants=(
        Participant(user_id=node, alternative_user_id=process_id, is_requestor=False),))


def _printable(text: str, limit: int) -> str | None:
    cleaned = "".join(ch for ch in text if 33 <= ord(ch) <= 126)[:limit]
    return cleaned or None


class OutboxSink:
    """The ``ihe_audit_record`` sink: records go to memory, then in batches to the outbox (see module doc)."""

    def __init__(self, db: Any, settings: AuditSettings, *, node_name: str, process_id: str) -> None:
        self.db, self.settings = db, settings
        self.node_name, self.process_id = node_name, process_id
        self.source_id = settings.source_id or node_name
        self._records: queue_module.SimpleQueue[AuditRecord | None] = queue_module.SimpleQueue()
        self._unwritten = 0
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._in_transactions: dict[int, set[str]] = {}
        """Records queued inside an actor's transaction, by identity, until it commits or rolls back."""
        self.on_written: list[Callable[[set[str], int], None]] = []
        """Called after records reach the outbox (writer thread, or the thread that committed them with its own
        transaction) with the queue names written and how many records."""

    @hookimpl
    def ihe_audit_record(self, record: AuditRecord) -> None:
        with self._lock:
            queued = self._in_transactions.pop(id(record), None)
            if queued is None:
                self._unwritten += 1
        if queued is not None:  # already in the outbox with its transaction, which has committed
            self._notify(queued, 1)
            return
        with self._lock:
            if self._thread is None:
                self._start_locked()
        self._records.put(record)

    # ---- synchronous path

    def write_in(self, session: Session, records: Sequence[AuditRecord]) -> None:
        """Put ``records`` in the outbox inside the caller's transaction (durable when it commits)."""
        rows = [row for record in records for row in self._rows(record)]
        if rows:
            session.connection().execute(_INSERT_QUEUE_ITEM, rows)

    @hookimpl
    def ihe_audit_records_in_transaction(self, session: Session, records: Sequence[AuditRecord]) -> bool:
        """``AuditHook.emit_with``: the records join the caller's transaction; after its commit they arrive
        through ``ihe_audit_record`` again, where they are only announced to the deliverers."""
        queues = {destination.queue for destination in self.settings.destinations}
        if not queues:
            return False
        self.write_in(session, records)
        with self._lock:
            for record in records:
                self._in_transactions[id(record)] = queues
        return True

    @hookimpl
    def ihe_audit_records_dropped(self, records: Sequence[AuditRecord]) -> None:
        with self._lock:
            for record in records:
                self._in_transactions.pop(id(record), None)

    # ---- lifecycle

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every record emitted so far is committed (or ``timeout``); True if all were."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._unwritten:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        flushed = self.flush(timeout)
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            self._records.put(None)
            thread.join(timeout)
        return flushed

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-outbox-writer", daemon=True)
        self._thread.start()

    # ---- writer thread

    def _run(self) -> None:
        while True:
            first = self._records.get()
            if first is None:
                return
            batch = [first] + self._gather()
            self._write_until_done(batch)
            with self._lock:
                self._unwritten -= len(batch)
                self._lock.notify_all()

    def _gather(self) -> list[AuditRecord]:
        batch: list[AuditRecord] = []
        deadline = time.monotonic() + self.settings.flush_interval
        while len(batch) < self.settings.batch - 1:
            remaining = deadline - time.monotonic()
            try:
                item = self._records.get(timeout=remaining) if remaining > 0 else self._records.get_nowait()
            except queue_module.Empty:
                break
            if item is None:
                self._records.put(None)  # let _run see the stop after this batch
                break
            batch.append(item)
        return batch

    def _write_until_done(self, batch: list[AuditRecord]) -> None:
        rows = []
        for record in batch:
            try:
                rows += self._rows(record)
            except Exception:  # a record that cannot be encoded is a bug: never hold the others back for it
                log.exception("audit record %s could not be encoded; not queued", record.event_id)
        delay = 0.1
        while rows:
            try:
                self._insert(rows)
                break
            except Exception as error:
                log.error("audit outbox write of %d record(s) failed, retrying in %.1fs: %s", len(rows), delay,
                          error)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._notify({row["queue"] for row in rows}, len(batch))

    def _notify(self, queues: set[str], count: int) -> None:
        for callback in list(self.on_written):
            try:
                callback(queues, count)
            except Exception:
                log.exception("audit outbox notification failed")

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        from ..storage.uow import UnitOfWork

        with UnitOfWork(self.db.sessions) as uow:
            uow.session.connection().execute(_INSERT_QUEUE_ITEM, rows)
            uow.commit()

    def _rows(self, record: AuditRecord) -> list[dict[str, Any]]:
        message = syslog_message(record, source_id=self.source_id,
                                 enterprise_site_id=self.settings.enterprise_site_id, hostname=self.node_name,
                                 process_id=self.process_id)
        now = datetime.now(timezone.utc)
        rows = []
        local_only = is_audit_channel_alert(record)
        for destination in self.settings.destinations:
            if local_only and destination.protocol != "local":
                continue
            payload = message
            if destination.protocol == "local":
                payload = uuid.uuid4().hex.encode("ascii") + b" " + message  # the idempotency key travels along
            rows.append({"queue": destination.queue, "payload": payload, "created_at": now, "available_at": now,
                         "attempts": 0})
        return rows


class Wakeup:
    """Calls ``pump`` on the reactor ``delay`` seconds after records are announced, once for all announced meanwhile.

    ``announce`` is thread-safe and cheap: only the first record after a pump crosses to the reactor (to arm the
    timer), and one more when ``batch`` records are waiting (pump at once: a full delivery is ready). What the
    pump misses (records committed while it runs) was announced after it was fired, so it arms the next timer:
    nothing is left behind, and the poll of :class:`LocalDelivery` still sweeps what a crash left.
    """

    def __init__(self, reactor: Any, pump: Callable[[], Any], *, delay: float, batch: int) -> None:
        self.reactor, self.pump, self.delay, self.batch = reactor, pump, delay, batch
        self._lock = threading.Lock()
        self._announced = 0
        self._armed = False  # a timer is set, or the call setting it is on its way to the reactor
        self._hurried = False  # the call pumping at once (a full batch) is on its way
        self._timer: Any = None

    def announce(self, count: int = 1) -> None:
        with self._lock:
            self._announced += count
            arm, hurry = not self._armed, self._announced >= self.batch and not self._hurried
            self._armed, self._hurried = True, self._hurried or hurry
        if arm:
            self.reactor.callFromThread(self._arm)
        if hurry:
            self.reactor.callFromThread(self._fire)

    def cancel(self) -> None:
        """Drop a pending timer (shutdown: the deliverer's own stop pumps once more)."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _arm(self) -> None:
        if self._timer is None and self._armed:
            self._timer = self.reactor.callLater(self.delay, self._fire)

    def _fire(self) -> None:
        self.cancel()
        with self._lock:
            if not self._armed:
                return  # a hurried pump and the timer both came: one pump is enough
            self._armed = self._hurried = False
            self._announced = 0
        self.pump()


class LocalDelivery:
    """Moves outbox records into this engine's repository, exactly once (claim, ingest, delete: one transaction).

    Every worker runs one; on PostgreSQL they claim disjoint rows (``SKIP LOCKED``), on SQLite writers take turns.
    Pumped when records reach the outbox (gathered by a :class:`Wakeup`) and every ``poll_interval`` seconds
    (records left by a crashed process or another worker).
    """

    def __init__(self, runtime: Any, *, batch: int = 500, poll_interval: float = 1.0) -> None:
        self.runtime, self.batch, self.poll_interval = runtime, batch, poll_interval
        self._loop: LoopingCall | None = None
        self._draining = False
        self._again = False
        self._waiters: list[Deferred[int]] = []
        self.delivered = 0

    def start(self) -> None:
        if self._loop is None:
            self._loop = LoopingCall(self.pump)
            self._loop.clock = self.runtime.reactor
            self._loop.start(self.poll_interval, now=True)

    def stop(self) -> Deferred[int]:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        return self.pump()

    def pump(self) -> Deferred[int]:
        """Deliver everything queued now; fires with the number delivered by the drain it joined."""
        waiter: Deferred[int] = Deferred()
        self._waiters.append(waiter)
        if self._draining:
            self._again = True
        else:
            self._drain()
        return waiter

    @inlineCallbacks
    def _drain(self):  # type: ignore[no-untyped-def]
        self._draining, delivered = True, 0
        try:
            while True:
                self._again = False
                count = yield self.runtime.run_blocking(self.deliver_batch)
                delivered += count
                if count < self.batch and not self._again:
                    break
        except Exception as error:  # never let the loop die; the rows stay in the outbox
            log.error("local audit delivery failed (records stay queued): %s", error)
        finally:
            self._draining = False
            self.delivered += delivered
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(delivered)

    def deliver_batch(self) -> int:
        with self.runtime.uow() as uow:
            count = deliver_local(uow.session, self.batch)
            uow.commit()
        return count


def deliver_local(session: Session, limit: int) -> int:
    """Claim up to ``limit`` local outbox rows, store them in the repository and delete them (caller commits)."""
    query = (select(_QUEUE_ITEM.c.id, _QUEUE_ITEM.c.payload, _QUEUE_ITEM.c.created_at)
             .where(_QUEUE_ITEM.c.queue == LOCAL_QUEUE, _QUEUE_ITEM.c.done_at.is_(None))
             .order_by(_QUEUE_ITEM.c.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    connection = session.connection()
    rows = list(connection.execute(query))
    if not rows:
        return 0
    ingest(session, [_incoming(bytes(row.payload), row.created_at) for row in rows])
    connection.execute(delete(_QUEUE_ITEM).where(_QUEUE_ITEM.c.id.in_([row.id for row in rows])))
    return len(rows)


def _incoming(payload: bytes, created_at: datetime):  # type: ignore[no-untyped-def]
    key, _, message = payload.partition(b" ")
    received_at = datetime.now(timezone.utc)
    try:
        parsed = parse_rfc5424(message)
    except RemoteProtocolError as error:
        incoming = from_invalid_frame(message, error, peer=None, transport="local", received_at=received_at)
        return _keyed(incoming, key)
    return from_syslog(parsed, peer=None, transport="local", received_at=received_at,
                       idempotency_key=key.decode("ascii", "replace"))


def _keyed(incoming: Any, key: bytes) -> Any:
    import dataclasses

    return dataclasses.replace(incoming, idempotency_key=key.decode("ascii", "replace"))


def start_delivery(runtime: Any, sink: OutboxSink, settings: AuditSettings) -> list[Any]:
    """Start the local drainer and one SyslogSender per remote destination; flush and stop them at shutdown."""
    reactor = runtime.reactor
    started: list[Any] = []
    local: LocalDelivery | None = None
    for destination in settings.destinations:
        if destination.protocol == "local":
            local = LocalDelivery(runtime, batch=settings.batch)
            local.start()
            started.append(local)
        else:
            started.append(_remote_sender(runtime, destination))

    wakeups = {(LOCAL_QUEUE if isinstance(delivery, LocalDelivery) else delivery.queue):
               Wakeup(reactor, delivery.pump, delay=settings.delivery_delay, batch=getattr(delivery, "batch", 500))
               for delivery in started}

    def wake(queues: set[str], count: int) -> None:
        for name in queues:
            wakeup = wakeups.get(name)
            if wakeup is not None:
                wakeup.announce(count)

    sink.on_written.append(wake)
    if any(destination.protocol != "local" for destination in settings.destinations):
        purge = LoopingCall(lambda: runtime.run_blocking(_purge_delivered, runtime).addErrback(
            lambda failure: log.error("audit outbox purge failed: %s", failure.getErrorMessage())))
        purge.clock = reactor
        purge.start(3600.0, now=False)

    @inlineCallbacks
    def shutdown():  # type: ignore[no-untyped-def]
        yield runtime.drain()  # in-flight transactions emit their records first
        from twisted.internet.threads import deferToThread

        yield deferToThread(sink.flush, 10.0)
        for wakeup in wakeups.values():
            wakeup.cancel()
        for delivery in started:
            try:
                yield delivery.stop()
            except Exception:
                log.exception("audit delivery did not stop cleanly")

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    return started


def _remote_sender(runtime: Any, destination: Destination) -> Any:
    from ..transport.syslog_twisted import SyslogSender

    tls_config = None
    if destination.protocol == "tls":
        from ..transport.tls import TLSConfig

        if not runtime.settings.tls_enabled:
            raise ConfigurationError(f"audit destination {destination.protocol}://{destination.host}:"
                                     f"{destination.port} needs this node's TLS certificate (--tls-cert ...)")
        tls_config = TLSConfig.from_settings(runtime.settings)
    sender = SyslogSender(runtime, queue=destination.queue, host=destination.host, port=destination.port,
                          protocol=destination.protocol, tls_config=tls_config,
                          on_tls_failure=_audit_channel_alert(runtime, destination))
    sender.start()
    return sender


AUDIT_CHANNEL_ALERT = "audit destination "
"""How the Security Alerts about a remote audit destination's channel begin (see :func:`is_audit_channel_alert`)."""


def is_audit_channel_alert(record: AuditRecord) -> bool:
    """A Security Alert about a remote audit destination (its TLS handshake refused) is queued to the local
    repository only: queued to that destination it would fail again and raise another alert, and two failing
    destinations would feed each other alerts without end."""
    return (record.event_id == SECURITY_ALERT
            and (record.outcome_description or "").startswith(AUDIT_CHANNEL_ALERT))


def _audit_channel_alert(runtime: Any, destination: Destination) -> Callable[[str, str], None]:
    def report(peer: str, reason: str) -> None:
        runtime.audit.security_alert(
            description=f"{AUDIT_CHANNEL_ALERT}{destination.protocol}://{destination.host}:{destination.port}: "
                        f"{reason}", peer=peer, node=runtime.node_name)

    return report


def _purge_delivered(runtime: Any) -> int:
    with runtime.uow() as uow:
        count = purge_delivered(uow.session)
        uow.commit()
    return count


def purge_delivered(session: Session, older_than: timedelta = timedelta(days=1)) -> int:
    """Remote outbox rows already sent are kept a day for inspection, then removed."""
    cutoff = datetime.now(timezone.utc) - older_than
    result = session.execute(delete(QueueItem).where(QueueItem.queue.like("atna-out:%"),
                                                     QueueItem.done_at.is_not(None), QueueItem.done_at < cutoff))
    return result.rowcount or 0


OUTBOX_PLUGIN = "audit-outbox"


def install(runtime: Any) -> OutboxSink | None:
    """Register the outbox sink on the runtime's audit hook (its settings come from ``[audit]``)."""
    settings = AuditSettings.from_settings(runtime.settings)
    if not settings.destinations:  # ``destinations = []``: records are only logged (measurements, tests)
        return None
    sink = OutboxSink(runtime.db, settings, node_name=runtime.node_name, process_id=runtime.process_id)
    runtime.audit.plugin_manager.register(sink, name=OUTBOX_PLUGIN)
    return sink


def start(runtime: Any) -> list[Any]:
    """Start delivering what the installed outbox sink queues (called once the reactor serves)."""
    sink = runtime.audit.plugin_manager.get_plugin(OUTBOX_PLUGIN)
    if sink is None:
        return []
    return start_delivery(runtime, sink, sink.settings)
