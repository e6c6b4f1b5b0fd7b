"""ITI-46 PIXV3 Update Notification, on SQLite and PostgreSQL: a v3 feed that changes cross-references enqueues a
PRPA_IN201302UV02 per interested consumer in its own transaction, and the sender delivers it over real loopback
HTTP to a consumer endpoint, retrying what is not acknowledged AA."""

from __future__ import annotations

import pytest
from lxml import etree
from twisted.internet.threads import blockingCallFromThread
from twisted.web import resource

from ihe_engine.config import Settings
from ihe_engine.identity.hl7v3.build import ack_message
from ihe_engine.identity.hl7v3.iti46 import UPDATE_ACTION, PixV3UpdateSender, load_v3_consumers, queue_name
from ihe_engine.identity.hl7v3.parse import read_transmission
from ihe_engine.soap import SoapEndpoint
from ihe_engine.soap.endpoint import Operation, SoapResponse
from ihe_engine.storage import UnitOfWork
from ihe_engine.web import BoundedSite

try:
    from . import hl7v3_messages as m
    from .xds_testing import LoopbackRuntime
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import hl7v3_messages as m
    from xds_testing import LoopbackRuntime


class Consumer:
    """A PIX Consumer endpoint that records what it receives and answers ``answer`` (AA, AE...)."""

    def __init__(self) -> None:
        self.received: list[etree._Element] = []
        self.answer = "AA"

    def handle(self, request) -> SoapResponse:
        self.received.append(request.payload)
        return SoapResponse(body=ack_message(read_transmission(request.payload), self.answer))


@pytest.fixture
def consumer(reactor_thread, tmp_path):
    recorder = Consumer()

    def start():
        endpoint = SoapEndpoint("consumer", None)
        endpoint.register(Operation(UPDATE_ACTION, "urn:hl7-org:v3:MCCI_IN000002UV01", recorder.handle,
                                    transaction="ITI-46", blocking=False))
        root = resource.Resource()
        root.putChild(b"consumer", endpoint)
        return reactor_thread.listenTCP(0, BoundedSite(root, max_body=1 << 20, spool_dir=tmp_path),
                                        interface="127.0.0.1")

    port = blockingCallFromThread(reactor_thread, start)
    recorder.url = f"http://127.0.0.1:{port.getHost().port}/consumer"
    yield recorder
    blockingCallFromThread(reactor_thread, port.stopListening)


@pytest.fixture
def manager(database, reactor_thread, tmp_path, consumer):
    extra = {"pix_device": "1.2.250.1.999.5.1",
             "pixv3_consumers": [{"name": "dpi", "url": consumer.url, "device": "1.2.250.1.999.5.9",
                                  "domains": [m.HOSPITAL, m.CLINIC]}]}
    runtime = LoopbackRuntime(settings=Settings(data_dir=tmp_path / "data", extra=extra), reactor=reactor_thread,
                              db=database)
    (target,) = load_v3_consumers(runtime.settings)
    with m.v3_endpoints(reactor_thread, runtime, tmp_path / "spool") as base:
        yield base + "/pix", runtime, target


def pending(database, consumer) -> int:
    with UnitOfWork(database.sessions) as uow:
        return uow.queue.pending_count(queue_name(consumer))


def feed(url: str, payload: bytes) -> None:
    status, answer = m.post(url, payload, m.ADD)
    assert status == 200 and m.ack_code(answer) == "AA", etree.tostring(answer)


def test_a_cross_reference_change_is_delivered(manager, consumer, database, corpus_dir):
    url, runtime, target = manager
    feed(url, m.add_patient([(m.HOSPITAL, "N1")], other_ids=[(m.CLINIC, "NC1"), (m.LAB, "NL1")]))
    feed(url, m.add_patient([(m.HOSPITAL, "N2")]))  # one id, no cross-reference: nothing to tell
    assert pending(database, target) == 1
    sender = PixV3UpdateSender(runtime, [target], retry_backoff=0)
    assert sender.drain(target) == 1
    (message,) = consumer.received
    m.assert_valid(corpus_dir, message)
    assert m.values(message, "//hl7:patient/hl7:id/@extension") == ["N1", "NC1"]  # the consumer's domains only
    assert m.first(message, "hl7:receiver/hl7:device/hl7:id/@root") == "1.2.250.1.999.5.9"
    assert m.first(message, "hl7:sender/hl7:device/hl7:id/@root") == "1.2.250.1.999.5.1"
    assert pending(database, target) == 0
    record = runtime.audit.records[-1]
    assert (record.event_id[0], record.action, record.outcome, record.event_types[0][0]) == ("110110", "R", 0, "ITI-46")
    assert [obj.object_id for obj in record.objects] == [f"N1^^^&{m.HOSPITAL}&ISO", f"NC1^^^&{m.CLINIC}&ISO"]


def test_a_refused_notification_is_retried_with_the_same_message(manager, consumer, database):
    url, runtime, target = manager
    feed(url, m.add_patient([(m.HOSPITAL, "R1")], other_ids=[(m.CLINIC, "RC1")]))
    sender = PixV3UpdateSender(runtime, [target], retry_backoff=0)
    consumer.answer = "AE"
    assert sender.drain(target) == 0
    assert pending(database, target) == 1 and runtime.audit.records[-1].outcome == 4
    consumer.answer = "AA"
    assert sender.drain(target) == 1
    first, second = consumer.received
    assert m.first(first, "hl7:id/@root") == m.first(second, "hl7:id/@root")
    assert pending(database, target) == 0


def test_an_unreachable_consumer_keeps_the_notification(manager, database):
    url, runtime, target = manager
    feed(url, m.add_patient([(m.HOSPITAL, "U1")], other_ids=[(m.CLINIC, "UC1")]))
    away = type(target)(name=target.name, url="http://127.0.0.1:9/nobody", domains=target.domains)
    sender = PixV3UpdateSender(runtime, [away], retry_backoff=0, timeout=5)
    assert sender.drain(away) == 0
    assert pending(database, target) == 1
    with UnitOfWork(database.sessions) as uow:
        (item,) = uow.queue.claim(queue_name(target), "test")
        assert item.attempts == 1 and item.last_error.startswith("no answer")


def test_a_refused_feed_enqueues_nothing(manager, database):
    url, _, target = manager
    status, answer = m.post(url, m.add_patient([(m.HOSPITAL, "B1")], other_ids=[(m.CLINIC, "B" * 300)]), m.ADD)
    assert m.ack_code(answer) == "AE"
    assert pending(database, target) == 0
