"""Coalesced delivery wake-ups: records committed close together are delivered by one transaction, none is left
behind, and through ``start_delivery`` every record reaches the local repository exactly once."""

from __future__ import annotations

import threading

import pytest
from twisted.internet.task import Clock
from twisted.internet.threads import blockingCallFromThread

from ihe_engine.audit.emission import AuditSettings, LocalDelivery, Wakeup, start_delivery
from ihe_engine.config import Settings
from ihe_engine.errors import ConfigurationError

from test_audit_emission import make_runtime, outbox_count, patient_record, runtimes, stored_patients, wait_until

__all__ = ["runtimes"]  # the fixture, imported for the tests below


class ThreadlessClock(Clock):
    """A fake reactor whose callFromThread runs at once (the tests below call from the 'reactor' itself)."""

    def callFromThread(self, function, *args, **kwargs):  # noqa: N802 (Twisted's name)
        function(*args, **kwargs)


def counting_wakeup(delay: float = 0.1, batch: int = 50) -> tuple[ThreadlessClock, Wakeup, list[float]]:
    clock = ThreadlessClock()
    pumps: list[float] = []
    return clock, Wakeup(clock, lambda: pumps.append(clock.seconds()), delay=delay, batch=batch), pumps


def test_announcements_within_the_delay_make_one_pump():
    clock, wakeup, pumps = counting_wakeup(delay=0.1)
    for _ in range(30):
        wakeup.announce()
        clock.advance(0.001)
    assert pumps == []  # nothing before the delay: the records gather
    clock.advance(0.1)
    assert len(pumps) == 1
    clock.advance(10)
    assert len(pumps) == 1  # nothing announced since: no empty pumps


def test_a_record_announced_after_a_pump_arms_the_next_one():
    clock, wakeup, pumps = counting_wakeup(delay=0.1)
    wakeup.announce()
    clock.advance(0.1)
    wakeup.announce()
    clock.advance(0.05)
    assert len(pumps) == 1
    clock.advance(0.05)
    assert len(pumps) == 2


def test_a_record_announced_during_the_pump_is_not_left_behind():
    """The pump itself may run while records commit (another thread): they get a pump of their own."""
    clock = ThreadlessClock()
    pumps: list[float] = []

    def pump() -> None:
        pumps.append(clock.seconds())
        if len(pumps) == 1:
            wakeup.announce()  # committed while the first delivery runs

    wakeup = Wakeup(clock, pump, delay=0.1, batch=50)
    wakeup.announce()
    clock.advance(0.1)
    clock.advance(0.1)
    assert pumps == [pytest.approx(0.1), pytest.approx(0.2)]


def test_a_full_batch_is_delivered_at_once_and_only_once():
    clock, wakeup, pumps = counting_wakeup(delay=5.0, batch=10)
    wakeup.announce(4)
    wakeup.announce(6)  # a full batch waits: no reason to wait for the timer
    assert pumps == [0.0]
    clock.advance(10)
    assert pumps == [0.0]  # the timer of that batch was dropped
    wakeup.announce(25)  # a writer batch bigger than a delivery batch: arms, and hurries
    assert pumps == [0.0, 10.0]


def test_announcements_from_many_threads_are_all_counted():
    """announce() is called by every committing worker thread at once; the state stays consistent."""
    clock, wakeup, pumps = counting_wakeup(delay=0.1, batch=10 ** 9)
    lock = threading.Lock()
    calls: list = []

    def from_thread(function, *args, **kwargs):  # the reactor's queue: run later, on the test thread
        with lock:
            calls.append((function, args, kwargs))

    clock.callFromThread = from_thread  # type: ignore[method-assign]
    threads = [threading.Thread(target=lambda: [wakeup.announce() for _ in range(500)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1  # 4,000 announcements, one crossing to the reactor
    for function, args, kwargs in calls:
        function(*args, **kwargs)
    clock.advance(0.1)
    assert len(pumps) == 1


def test_delivery_delay_is_a_setting():
    assert AuditSettings.from_settings(Settings()).delivery_delay == 0.1
    assert AuditSettings.from_settings(Settings(extra={"audit": {"delivery_delay": 0}})).delivery_delay == 0
    with pytest.raises(ConfigurationError, match="delivery_delay"):
        AuditSettings.from_settings(Settings(extra={"audit": {"delivery_delay": -1}}))


def test_records_committed_with_their_work_reach_the_repository_once(database, reactor_thread, tmp_path,
                                                                     runtimes):
    """Through ``start_delivery``: 40 units of work, each committing its record (``emit_with``), as a feed does;
    the coalesced deliveries store each exactly once and empty the outbox."""
    runtime, sink = make_runtime(database, reactor_thread, tmp_path, destinations=["local"], delivery_delay=0.05,
                                 batch=16)
    runtimes.append((runtime, sink))
    started = blockingCallFromThread(reactor_thread, start_delivery, runtime, sink, sink.settings)
    (delivery,) = started
    assert isinstance(delivery, LocalDelivery) and delivery.batch == 16
    try:
        for number in range(40):
            with runtime.uow() as uow:
                runtime.audit.emit_with(uow.session, [patient_record(number)])
                uow.commit()
        wait_until(lambda: outbox_count(database) == 0 and len(stored_patients(database)) >= 40,
                   "40 records delivered")
        assert stored_patients(database) == sorted(f"{n}^^^&1.2.250.1&ISO" for n in range(40))  # none twice
    finally:
        blockingCallFromThread(reactor_thread, delivery.stop)
