"""ITI-10 PIX Update Notification: ADT^A31 to the configured PIX consumers, from a durable queue, with retries.

Enqueue (:class:`Iti10Notifier`): whenever a person's cross-references change (a person created with several
ids, ids added or removed, a link, an unlink, a merge, an A47), the cross-referencing code calls
``notify(session, patient_ids)`` inside the feed's own transaction; one complete A31 per interested consumer is
put in ``queue_item`` (queue ``iti10:<consumer>``), so the notification exists if and only if the change
committed. The message is built then: PID-3 lists every active id of the person (fully qualified), restricted to
the consumer's ``domains`` when it has a filter (no A31 when none is left); PID-5 is a single space; PV1-2 = N.

Send (:class:`PixUpdateSender`, started by ``serve``): every ``poll_interval`` each consumer's queue is drained in
order over one MLLP connection (TLS when the consumer says so, with the node's ITI-19 certificate). An item is done
when the consumer answers AA (or CA); an AE/AR, a timeout, a refused or lost connection schedules it (and the rest
of its batch, keeping their order) again after ``retry_backoff * 2**attempts`` seconds, at most ``max_backoff``;
a refused TLS handshake is also a Security Alert (110113) naming the consumer and the reason, one per attempt.
Claims are leases, so several workers or machines drain the same queues without sending an item twice at once; a
worker that dies leaves its lease to expire. Delivery is at least once: a retry reuses the same MSH-10.

Audit (reference section D): after each answered exchange, EventID 110110 Patient Record, action R, event type
ITI-10, the manager as source, the consumer as destination, one patient object per PID-3 id with MSH-10; outcome 0
for AA, 4 for an AE/AR.

Configuration (TOML)::

    [[pix_consumers]]
    name = "dpi"                 # queue name and log label
    address = "dpi.example:2575" # or host = "...", port = 2575
    domains = ["1.2.250.1.71.1.2.3"]   # optional: assigning authorities this consumer cross-references
    tls = false                  # true: mutual TLS with --tls-cert/--tls-key/--tls-ca
    application = "DPI"          # optional MSH-5 / MSH-6
    facility = "CHU-X"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from prometheus_client import Counter
from sqlalchemy.orm import Session
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import LoopingCall

from ..audit import DESTINATION_ROLE, SOURCE_ROLE, AuditRecord, Participant, ParticipantObject
from ..errors import ConfigurationError
from ..hl7v2.ack import hl7_timestamp, new_control_id
from ..hl7v2.message import DEFAULT_ENCODING, escape, parse
from ..storage.repositories import QueueRepository
from .cx import CX
from .pid_segment import NameMode, build_pid
from .outbox import LeasedOutbox, QueuedItem, load_consumer_table, start_polling, stop_polling
from .store import IdentityStore

__all__ = ["PixConsumer", "load_consumers", "Iti10Notifier", "PixUpdateSender", "build_a31", "queue_name",
           "ITI10_EVENT_TYPE", "start_pix_update_sender"]

log = logging.getLogger("ihe_engine.identity.iti10")

ITI10_EVENT_TYPE = ("ITI-10", "IHE Transactions", "PIX Update Notification")
_PATIENT_RECORD = ("110110", "DCM", "Patient Record")
_PATIENT_NUMBER = ("2", "RFC-3881", "Patient Number")
_ACCEPTED = frozenset({"AA", "CA"})

SENT = Counter("ihe_pix_notifications_sent", "ITI-10 A31 acknowledged by a consumer", ["consumer"])
FAILED = Counter("ihe_pix_notification_failures", "ITI-10 attempts refused or not answered", ["consumer"])


@dataclass(frozen=True, kw_only=True)
class PixConsumer:
    name: str
    host: str
    port: int
    domains: frozenset[str] | None = None
    tls: bool = False
    application: str = ""
    facility: str = ""

    @classmethod
    def from_config(cls, entry: Any) -> "PixConsumer":
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ConfigurationError(f"a pix_consumers entry needs a name: {entry!r}")
        name = str(entry["name"])
        host, port = entry.get("host"), entry.get("port")
        if "address" in entry:
            host, _, port = str(entry["address"]).rpartition(":")
        try:
            port = int(port)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigurationError(f"pix consumer {name!r} needs address = \"host:port\"") from None
        if not host or not 0 < port < 65536:
            raise ConfigurationError(f"pix consumer {name!r}: invalid address {host}:{port}")
        domains = entry.get("domains")
        if domains is not None and (not isinstance(domains, list) or not all(isinstance(d, str) for d in domains)):
            raise ConfigurationError(f"pix consumer {name!r}: domains must be a list of assigning authority ids")
        return cls(name=name, host=str(host).strip("[]"), port=port,
                   domains=frozenset(domains) if domains is not None else None, tls=bool(entry.get("tls", False)),
                   application=str(entry.get("application", "")), facility=str(entry.get("facility", "")))

    def wants(self, identifiers: Sequence[CX]) -> list[CX]:
        if self.domains is None:
            return list(identifiers)
        return [cx for cx in identifiers if cx.authority_key in self.domains]


def load_consumers(settings: Any) -> list[PixConsumer]:
    """``[[pix_consumers]]`` from the config file (none: ITI-10 is off)."""
    return load_consumer_table(settings, "pix_consumers", PixConsumer.from_config)


def queue_name(consumer: PixConsumer) -> str:
    return f"iti10:{consumer.name}"[:64]


def build_a31(identifiers: Sequence[CX], *, consumer: PixConsumer, sending_application: str,
              sending_facility: str, control_id: str | None = None) -> bytes:
    """ADT^A31^ADT_A05 v2.5: MSH, EVN, PID (all ids, PID-5 a single space), PV1 (PV1-2 = N)."""
    now = hl7_timestamp()
    enc = DEFAULT_ENCODING
    msh = "|".join(["MSH", enc.msh2, escape(sending_application, enc), escape(sending_facility, enc),
                    escape(consumer.application, enc), escape(consumer.facility, enc), now, "",
                    "ADT^A31^ADT_A05", control_id or new_control_id(), "P", "2.5"])
    segments = [msh, f"EVN|A31|{now}", build_pid(identifiers, name_mode=NameMode.SPACE, set_id=None), "PV1||N"]
    return ("\r".join(segments) + "\r").encode()


class Iti10Notifier:
    """Enqueues A31s in the caller's transaction (see the module docstring)."""

    def __init__(self, consumers: Sequence[PixConsumer], *, sending_application: str = "IHE_ENGINE",
                 sending_facility: str = "IHE_ENGINE") -> None:
        self.consumers = tuple(consumers)
        self.sending_application = sending_application
        self.sending_facility = sending_facility

    def notify(self, session: Session, patient_ids: Iterable[int]) -> None:
        if not self.consumers:
            return
        store, queue = IdentityStore(session), QueueRepository(session)
        for patient_id in dict.fromkeys(patient_ids):
            identifiers = store.identifiers_of(patient_id)
            for consumer in self.consumers:
                wanted = consumer.wants(identifiers)
                if wanted:
                    queue.put(queue_name(consumer), build_a31(
                        wanted, consumer=consumer, sending_application=self.sending_application,
                        sending_facility=self.sending_facility))


class PixUpdateSender:
    """Drains every consumer's queue (see the module docstring); ``start``/``stop`` on the reactor thread."""

    def __init__(self, runtime: Any, consumers: Sequence[PixConsumer], *, tls_config: Any = None,
                 batch: int = 20, retry_backoff: float = 1.0, max_backoff: float = 300.0,
                 poll_interval: float = 1.0, lease: float = 60.0, answer_timeout: float = 30.0) -> None:
        if any(consumer.tls for consumer in consumers) and tls_config is None:
            raise ConfigurationError("a PIX consumer over TLS needs --tls-cert, --tls-key and --tls-ca")
        self.runtime, self.consumers, self.tls_config = runtime, tuple(consumers), tls_config
        self.outbox = LeasedOutbox(runtime, batch=batch, lease=lease, retry_backoff=retry_backoff,
                                   max_backoff=max_backoff)
        self.poll_interval, self.answer_timeout = poll_interval, answer_timeout
        self._connections: dict[str, Any] = {}
        self._busy: dict[str, Any] = {}
        self._loop: LoopingCall | None = None

    def start(self) -> None:
        if self._loop is None and self.consumers:
            self._loop = start_polling(self.runtime.reactor, self.pump, self.poll_interval)

    def stop(self) -> Any:
        loop, self._loop = self._loop, None
        stop_polling(loop)
        for connection in self._connections.values():
            connection.transport.loseConnection()
        self._connections.clear()
        return DeferredList(list(self._busy.values()))

    def pump(self) -> Any:
        """Drain each consumer not already being drained; fires once those drains end."""
        for consumer in self.consumers:
            if consumer.name not in self._busy:
                drain = self._drain(consumer)
                self._busy[consumer.name] = drain
                drain.addBoth(self._drained, consumer.name)
        return DeferredList(list(self._busy.values()))

    def _drained(self, result: Any, name: str) -> None:
        self._busy.pop(name, None)
        if hasattr(result, "getErrorMessage"):
            log.error("ITI-10 sender: drain of %s failed: %s", name, result.getErrorMessage())

    # ---- reactor side

    @inlineCallbacks
    def _drain(self, consumer: PixConsumer):  # type: ignore[no-untyped-def]
        while True:
            items = yield self.runtime.run_blocking(self.outbox.claim, queue_name(consumer))
            if not items:
                return
            for position, item in enumerate(items):
                code, error = yield self._exchange(consumer, item)
                if code in _ACCEPTED:
                    yield self.runtime.run_blocking(self.outbox.done, item.id)
                    SENT.labels(consumer.name).inc()
                    continue
                FAILED.labels(consumer.name).inc()
                log.warning("ITI-10 to %s (%s:%s) not accepted, retried later: %s", consumer.name, consumer.host,
                            consumer.port, error)
                yield self.runtime.run_blocking(self.outbox.retry, items[position:], error)
                return

    @inlineCallbacks
    def _exchange(self, consumer: PixConsumer, item: QueuedItem):  # type: ignore[no-untyped-def]
        """(MSA-1 or None, error text); audits every answered exchange, and every refused TLS connection."""
        client = None
        try:
            client = yield self._connection(consumer)
            answer = client.send(item.payload)
            answer.addTimeout(self.answer_timeout, self.runtime.reactor)
            raw = yield answer
        except Exception as exc:  # refused, lost, timed out: the connection is dropped, the item retried
            self._forget(consumer)
            refusal = self._tls_refusal(consumer, client, exc)
            return None, f"no answer: {refusal or f'{exc.__class__.__name__}: {exc}'}"
        code, text = _acknowledgment(raw)
        self._audit(consumer, item, code)
        return code, f"answered {code} {text}".strip()

    @inlineCallbacks
    def _connection(self, consumer: PixConsumer):  # type: ignore[no-untyped-def]
        from ..transport.mllp_twisted import connect_mllp

        client = self._connections.get(consumer.name)
        if client is not None and client._lost_reason is None:
            return client
        creator = None
        if consumer.tls:
            from ..transport.tls import client_connection_creator

            creator = client_connection_creator(self.tls_config, consumer.host)
        client = yield connect_mllp(self.runtime.reactor, consumer.host, consumer.port, tls_creator=creator,
                                    timeout=self.answer_timeout)
        self._connections[consumer.name] = client
        return client

    def _tls_refusal(self, consumer: PixConsumer, client: Any, error: BaseException) -> str | None:
        """A TLS refusal (ITI-19) of this attempt becomes a Security Alert naming the consumer; None if TLS is
        not what failed."""
        from ..transport.tls import outbound_refusal

        if not consumer.tls or client is None:
            return None
        reason = outbound_refusal(client.transport.getHandle(), error)
        if reason is not None:
            peer = f"{consumer.host}:{consumer.port}"
            log.warning("ITI-10 TLS connection to %s (%s) refused: %s", consumer.name, peer, reason)
            self.runtime.audit.security_alert(description=f"ITI-10 to PIX consumer {consumer.name!r} ({peer}): "
                                                          f"{reason}", peer=peer, node=self.runtime.node_name)
            return f"TLS refused: {reason}"
        return None

    def _forget(self, consumer: PixConsumer) -> None:
        client = self._connections.pop(consumer.name, None)
        if client is not None and client._lost_reason is None:
            client.transport.abortConnection()

    def _audit(self, consumer: PixConsumer, item: QueuedItem, code: str | None) -> None:
        try:
            message = parse(item.payload)
        except Exception:  # our own message: cannot happen, but an audit must never stop the sender
            log.exception("ITI-10 sender: cannot read back item %d for its audit record", item.id)
            return
        header, pid = message.header, message.find_segment("PID")
        objects = tuple(ParticipantObject(object_id=text, type_code=1, type_code_role=1, id_type=_PATIENT_NUMBER,
                                          details=(("MSH-10", header.control_id.encode()),))
                        for text in (pid.repetitions(3) if pid is not None else []))
        refused = code not in _ACCEPTED
        record = AuditRecord(
            event_id=_PATIENT_RECORD, action="R", event_types=(ITI10_EVENT_TYPE,), outcome=4 if refused else 0,
            outcome_description=f"the consumer answered {code}" if refused else None,
            participants=(
                Participant(user_id=f"{header.sending_facility}|{header.sending_application}", is_requestor=True,
                            role=SOURCE_ROLE, alternative_user_id=self.runtime.process_id,
                            network_access_point=self.runtime.node_name),
                Participant(user_id=f"{header.receiving_facility}|{header.receiving_application}",
                            is_requestor=False, role=DESTINATION_ROLE, network_access_point=consumer.host)),
            objects=objects, transaction="ITI-10")
        self.runtime.audit.emit(record)


def _acknowledgment(raw: bytes) -> tuple[str | None, str]:
    """(MSA-1, ERR-8/MSA-3 text) of a consumer's answer; (None, why) when it is not an acknowledgement."""
    try:
        answer = parse(raw)
    except Exception as exc:
        return None, f"unreadable answer: {exc}"
    msa = answer.find_segment("MSA")
    if msa is None:
        return None, "answer without MSA"
    err = answer.find_segment("ERR")
    return msa.get(1) or None, (err.get(8) if err is not None else "") or msa.get(3)


def start_pix_update_sender(runtime: Any) -> PixUpdateSender | None:
    """Start draining the ITI-10 queues when consumers are configured (every worker does; leases share the work)."""
    consumers = load_consumers(runtime.settings)
    if not consumers:
        return None
    from ..transport.tls import node_tls_config

    sender = PixUpdateSender(runtime, consumers, tls_config=node_tls_config(runtime.settings))
    sender.start()
    runtime.reactor.addSystemEventTrigger("before", "shutdown", sender.stop)
    return sender
