"""ITI-46 PIXV3 Update Notification: PRPA_IN201302UV02 to the configured v3 PIX consumers, from a durable queue.

The v3 twin of ITI-10 (:mod:`ihe_engine.identity.iti10`), built the same way:

* enqueue (:class:`Iti46Notifier`): the cross-referencing service calls ``notify(session, patient_ids)`` inside
  the feed's own transaction whenever a person's cross-references change; one complete PRPA_IN201302UV02 per
  interested consumer goes into ``queue_item`` (queue ``iti46:<consumer>``), so a notification exists if and only
  if the change committed. It lists every active id of the person with an OID (restricted to the consumer's
  ``domains`` when it has a filter: no message when none is left), no demographics (name nullFlavor NA).
  :class:`Notifiers` fans one change out to several notifiers (ITI-10 and ITI-46);
* send (:class:`PixV3UpdateSender`): every ``poll_interval`` each consumer's queue is drained in order, in the
  thread pool (a blocking HTTP POST, SOAP 1.2 with WS-Addressing, action ``urn:hl7-org:v3:PRPA_IN201302UV02``).
  An item is done when the consumer answers MCCI_IN000002UV01 AA (or CA); an AE/AR, a fault, a timeout or a
  refused connection reschedules it (and the rest of its batch, keeping their order) after
  ``retry_backoff * 2**attempts`` seconds, at most ``max_backoff``. Claims are leases, so several workers drain
  the same queues without sending an item twice at once. Delivery is at least once; a retry resends the same
  HL7 message id.

https consumers get mutual TLS (ITI-19) with the node's certificate (``--tls-cert``/``--tls-key``), verified
against ``--tls-ca`` with the pins, CRL and optional host name check of every other TLS client of the node
(:func:`ihe_engine.transport.tls.https_adapter`); an https consumer on a node without TLS is a configuration
error at start.

Audit: after each answered exchange, EventID 110110 Patient Record, action R, event type ITI-46, the manager as
source, the consumer as destination, one patient object per id sent; outcome 0 for AA, 4 otherwise. A refused
TLS connection (each attempt) is a Security Alert (110113) naming the consumer and the reason; the item stays
queued.

Configuration (TOML)::

    [[pixv3_consumers]]
    name = "dpi-v3"
    url = "https://dpi.example/pix-consumer"
    device = "1.2.250.1.71.1.2.9"        # optional: the consumer's device id (receiver)
    domains = ["1.2.250.1.71.1.2.3"]     # optional: the domains it cross-references

``pix_device`` (top level) is this manager's device id (sender); unknown devices are sent as nullFlavor UNK.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit

import requests
from lxml import etree
from sqlalchemy.orm import Session
from twisted.internet.task import LoopingCall

from ...audit.hook import AuditRecord, Code, Participant, ParticipantObject
from ...errors import ConfigurationError
from ...ns import HL7V3
from ...soap.client import read_response, request_envelope
from ...storage.repositories import QueueRepository
from ..outbox import LeasedOutbox, QueuedItem, load_consumer_table, start_polling, stop_polling
from ..cx import CX
from ..store import IdentityStore
from .build import expressible, update_notification
from .common import ACTION_PREFIX, PATIENT_RECORD
from .model import InstanceId

__all__ = ["PixV3Consumer", "load_v3_consumers", "Iti46Notifier", "Notifiers", "PixV3UpdateSender",
           "ITI46_EVENT_TYPE", "queue_name", "pix_notifier", "start_sender", "manager_device"]

log = logging.getLogger("ihe_engine.identity.iti46")

ITI46_EVENT_TYPE: Code = ("ITI-46", "IHE Transactions", "PIXV3 Update Notification")
UPDATE_ACTION = f"{ACTION_PREFIX}PRPA_IN201302UV02"
_SOURCE_ROLE: Code = ("110153", "DCM", "Source Role ID")
_DESTINATION_ROLE: Code = ("110152", "DCM", "Destination Role ID")
_PATIENT_NUMBER: Code = ("2", "RFC-3881", "Patient Number")
_ACCEPTED = frozenset({"AA", "CA"})


@dataclass(frozen=True, kw_only=True)
class PixV3Consumer:
    name: str
    url: str
    device: InstanceId = InstanceId(null_flavor="UNK")
    domains: frozenset[str] | None = None

    @classmethod
    def from_config(cls, entry: Any) -> "PixV3Consumer":
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("url"):
            raise ConfigurationError(f"a pixv3_consumers entry needs a name and a url: {entry!r}")
        url = str(entry["url"])
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"pixv3 consumer {entry['name']!r}: url must be http:// or https://")
        domains = entry.get("domains")
        if domains is not None and (not isinstance(domains, list) or not all(isinstance(d, str) for d in domains)):
            raise ConfigurationError(f"pixv3 consumer {entry['name']!r}: domains must be a list of OIDs")
        device = str(entry.get("device", ""))
        return cls(name=str(entry["name"]), url=url,
                   device=InstanceId(root=device) if device else InstanceId(null_flavor="UNK"),
                   domains=frozenset(domains) if domains is not None else None)

    def wants(self, identifiers: Sequence[CX]) -> list[CX]:
        usable = expressible(identifiers)
        if self.domains is None:
            return usable
        return [cx for cx in usable if cx.authority_key in self.domains]


def load_v3_consumers(settings: Any) -> list[PixV3Consumer]:
    """``[[pixv3_consumers]]`` from the config file (none: ITI-46 is off); https needs the node's certificate."""
    consumers = load_consumer_table(settings, "pixv3_consumers", PixV3Consumer.from_config)
    if not getattr(settings, "tls_enabled", False):
        _refuse_https_without_tls(consumers)
    return consumers


def _refuse_https_without_tls(consumers: Sequence[PixV3Consumer]) -> None:
    https = [consumer.name for consumer in consumers if consumer.url.startswith("https://")]
    if https:
        raise ConfigurationError(f"PIXv3 consumer {https[0]!r} is reached over https: that needs this node's "
                                 f"certificate (--tls-cert, --tls-key and --tls-ca)")


def manager_device(settings: Any) -> InstanceId:
    device = str((getattr(settings, "extra", None) or {}).get("pix_device", ""))
    return InstanceId(root=device) if device else InstanceId(null_flavor="UNK")


def queue_name(consumer: PixV3Consumer) -> str:
    return f"iti46:{consumer.name}"[:64]


# -- enqueue -------------------------------------------------------------------------------------------------------

class Iti46Notifier:
    """Enqueues PRPA_IN201302UV02 messages in the caller's transaction (see the module docstring)."""

    def __init__(self, consumers: Sequence[PixV3Consumer], *, device: InstanceId = InstanceId(null_flavor="UNK")
                 ) -> None:
        self.consumers = tuple(consumers)
        self.device = device

    def notify(self, session: Session, patient_ids: Iterable[int]) -> None:
        if not self.consumers:
            return
        store, queue = IdentityStore(session), QueueRepository(session)
        for patient_id in dict.fromkeys(patient_ids):
            identifiers = store.identifiers_of(patient_id)
            for consumer in self.consumers:
                wanted = consumer.wants(identifiers)
                if wanted:
                    message = update_notification(wanted, receiver=consumer.device, sender=self.device)
                    queue.put(queue_name(consumer), etree.tostring(message, encoding="utf-8"))


class Notifiers:
    """One change told to several notifiers (ITI-10 and ITI-46), in the same transaction."""

    def __init__(self, *notifiers: Any) -> None:
        self.notifiers = tuple(notifier for notifier in notifiers if notifier is not None)

    def notify(self, session: Session, patient_ids: Iterable[int]) -> None:
        ids = list(patient_ids)
        for notifier in self.notifiers:
            notifier.notify(session, ids)


def pix_notifier(settings: Any) -> Notifiers | None:
    """Everything that must hear of a cross-reference change: ITI-10 (``pix_consumers``) and ITI-46
    (``pixv3_consumers``) consumers; None when none is configured. One factory for every feed, v2 or v3."""
    from ..iti10 import Iti10Notifier, load_consumers

    v2, v3 = load_consumers(settings), load_v3_consumers(settings)
    if not v2 and not v3:
        return None
    return Notifiers(Iti10Notifier(v2) if v2 else None,
                     Iti46Notifier(v3, device=manager_device(settings)) if v3 else None)


def start_sender(runtime: Any) -> "PixV3UpdateSender | None":
    """Start draining the ITI-46 queues (``serve`` calls it in every worker); stopped at reactor shutdown."""
    consumers = load_v3_consumers(runtime.settings)
    if not consumers:
        return None
    from ...transport.tls import node_tls_config

    sender = PixV3UpdateSender(runtime, consumers, tls_config=node_tls_config(runtime.settings))
    sender.start()
    runtime.reactor.addSystemEventTrigger("before", "shutdown", sender.stop)
    return sender


# -- send ----------------------------------------------------------------------------------------------------------

class PixV3UpdateSender:
    """Drains every consumer's queue (see the module docstring); ``start``/``stop`` on the reactor thread."""

    def __init__(self, runtime: Any, consumers: Sequence[PixV3Consumer], *, batch: int = 20,
                 retry_backoff: float = 1.0, max_backoff: float = 300.0, poll_interval: float = 1.0,
                 lease: float = 60.0, timeout: float = 10.0, session: requests.Session | None = None,
                 tls_config: Any = None) -> None:
        if tls_config is None:
            _refuse_https_without_tls(consumers)
        self.runtime, self.consumers = runtime, tuple(consumers)
        self.outbox = LeasedOutbox(runtime, batch=batch, lease=lease, retry_backoff=retry_backoff,
                                   max_backoff=max_backoff)
        self.poll_interval, self.timeout = poll_interval, timeout
        self.http = session or requests.Session()
        self.http.trust_env = False  # no proxy, CA bundle or netrc from the environment: the node's TLS rules only
        if tls_config is not None:
            from ...transport.tls import https_adapter

            self.http.mount("https://", https_adapter(tls_config, self._tls_refused))
        self._busy: set[str] = set()
        self._loop: LoopingCall | None = None

    def start(self) -> None:
        if self._loop is None and self.consumers:
            self._loop = start_polling(self.runtime.reactor, self.pump, self.poll_interval)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        stop_polling(loop)

    def pump(self) -> None:
        """Start a drain, in the thread pool, of each consumer not already being drained."""
        for consumer in self.consumers:
            if consumer.name not in self._busy:
                self._busy.add(consumer.name)
                drain = self.runtime.run_blocking(self.drain, consumer)
                drain.addErrback(lambda failure, name=consumer.name: log.error(
                    "ITI-46 drain of %s failed: %s", name, failure.getErrorMessage()))
                drain.addBoth(lambda _, name=consumer.name: self._busy.discard(name))

    def drain(self, consumer: PixV3Consumer) -> int:
        """Blocking: send the consumer's pending items in order until one fails; returns how many were accepted."""
        sent = 0
        while True:
            items = self.outbox.claim(queue_name(consumer))
            if not items:
                return sent
            for position, item in enumerate(items):
                code, error = self._exchange(consumer, item)
                if code in _ACCEPTED:
                    self.outbox.done(item.id)
                    sent += 1
                    continue
                log.warning("ITI-46 to %s (%s) not accepted, retried later: %s", consumer.name, consumer.url, error)
                self.outbox.retry(items[position:], error)
                return sent

    def _exchange(self, consumer: PixV3Consumer, item: QueuedItem) -> tuple[str | None, str]:
        """(acknowledgement typeCode or None, error text); audits every answered exchange."""
        from ...xmlsafe import parse

        payload = parse(item.payload, what="a queued ITI-46 message")
        envelope = etree.tostring(request_envelope(payload, UPDATE_ACTION, to=consumer.url), encoding="utf-8")
        try:
            answer = self.http.post(consumer.url, data=envelope, timeout=self.timeout, stream=True,
                                    allow_redirects=False,  # a redirect could send the patient data elsewhere
                                    headers={"Content-Type": "application/soap+xml; charset=utf-8"})
            try:
                reply = read_response(answer)
            finally:
                answer.close()
        except Exception as exc:  # refused, lost, timed out, not SOAP: retried later
            refused = _tls_refusal(exc)
            if refused is not None:
                return None, f"no answer: {refused}"
            return None, f"no answer: {exc.__class__.__name__}: {exc}"
        code = _ack_code(reply.envelope.payload)
        error = "" if code in _ACCEPTED else f"answered {code or etree.QName(reply.envelope.payload).localname}"
        self._audit(consumer, payload, code in _ACCEPTED, error)
        return code, error

    def _tls_refused(self, peer: str, reason: str) -> None:
        """A refused TLS connection to a consumer (ITI-19): a Security Alert, for each attempt."""
        audit = getattr(self.runtime, "audit", None)
        if audit is None:
            return
        names = [consumer.name for consumer in self.consumers if _address(consumer.url) == peer]
        who = f"PIXv3 consumer {names[0]!r} ({peer})" if names else f"PIXv3 consumer at {peer}"
        audit.security_alert(description=f"ITI-46 to {who}: {reason}", peer=peer,
                             node=getattr(self.runtime, "node_name", "") or "pix-manager")

    def _audit(self, consumer: PixV3Consumer, payload: etree._Element, accepted: bool, error: str) -> None:
        audit = getattr(self.runtime, "audit", None)
        if audit is None:
            return
        ids = payload.iterfind(f".//{{{HL7V3}}}patient/{{{HL7V3}}}id")
        message_id = payload.find(f"{{{HL7V3}}}id")
        detail = (("II", (message_id.get("root", "") if message_id is not None else "").encode()),)
        objects = tuple(ParticipantObject(object_id=f"{element.get('extension')}^^^&{element.get('root')}&ISO",
                                          type_code=1, type_code_role=1, id_type=_PATIENT_NUMBER, details=detail)
                        for element in ids)
        source = Participant(user_id=getattr(self.runtime, "node_name", "") or "pix-manager", is_requestor=True,
                             role=_SOURCE_ROLE, alternative_user_id=getattr(self.runtime, "process_id", None))
        destination = Participant(user_id=consumer.url, is_requestor=False, role=_DESTINATION_ROLE)
        audit.emit(AuditRecord(event_id=PATIENT_RECORD, action="R", event_types=(ITI46_EVENT_TYPE,),
                               outcome=0 if accepted else 4, outcome_description=error or None,
                               participants=(source, destination), objects=objects, transaction="ITI-46"))


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _tls_refusal(error: BaseException) -> str | None:
    """The refusal inside requests' and urllib3's wrappers of an https failure, if TLS refused the connection."""
    from ...transport.tls import OutboundTLSRefused

    seen, pending = set(), [error]
    while pending:
        current = pending.pop()
        if isinstance(current, OutboundTLSRefused):
            return str(current)
        if id(current) in seen:
            continue
        seen.add(id(current))
        pending += [item for item in (current.__cause__, current.__context__, getattr(current, "reason", None),
                                      *current.args) if isinstance(item, BaseException)]
    return None


def _ack_code(payload: etree._Element) -> str | None:
    found = payload.find(f"{{{HL7V3}}}acknowledgement/{{{HL7V3}}}typeCode")
    return found.get("code") if found is not None else None
