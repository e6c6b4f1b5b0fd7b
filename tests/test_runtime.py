"""Runtime.drain waits for blocking work in flight: what lets SIGTERM finish transactions before exiting."""

from twisted.internet import task
from twisted.internet.defer import Deferred

from ihe_engine.runtime import Runtime


def runtime_on(clock, in_flight):
    runtime = Runtime.__new__(Runtime)  # only the drain machinery is exercised
    runtime._in_flight = set(in_flight)
    runtime.reactor = clock
    return runtime


def test_drain_waits_for_in_flight_work():
    clock, pending = task.Clock(), Deferred()
    runtime = runtime_on(clock, [pending])
    fired = []
    runtime.drain(timeout=10, poll=0.05).addCallback(fired.append)
    clock.pump([0] + [0.05] * 20)
    assert fired == [], "drain must not fire while work is in flight"
    runtime._in_flight.discard(pending)
    clock.pump([0.05] * 3)
    assert fired == [0]


def test_drain_gives_up_after_the_timeout():
    clock = task.Clock()
    runtime = runtime_on(clock, [object()])
    fired = []
    runtime.drain(timeout=1.0, poll=0.1).addCallback(fired.append)
    clock.pump([0] + [0.1] * 15)
    assert fired == [1], "after the timeout drain reports how many tasks are still running"
