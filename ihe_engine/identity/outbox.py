"""What the PIX update senders (ITI-10 over MLLP, ITI-46 over SOAP) share: their consumers' configuration tables
and the leased, ordered draining of a durable ``queue_item`` queue.

An item is claimed under a lease (so workers share a queue without sending twice at once), marked done only once
the consumer accepted it, and on failure put back with the rest of its batch after one exponential backoff, so a
consumer receives its notifications in the order they were queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence, TypeVar

from twisted.internet.task import LoopingCall

from ..errors import ConfigurationError

__all__ = ["QueuedItem", "LeasedOutbox", "load_consumer_table", "start_polling", "stop_polling"]

C = TypeVar("C")


def load_consumer_table(settings: Any, key: str, from_config: Callable[[Any], C]) -> list[C]:
    """``[[key]]`` from the config file: one consumer per table, names unique (none: that sender is off)."""
    entries = (getattr(settings, "extra", None) or {}).get(key, [])
    if not isinstance(entries, list):
        raise ConfigurationError(f"{key} must be an array of tables ([[{key}]])")
    consumers = [from_config(entry) for entry in entries]
    names = [getattr(consumer, "name") for consumer in consumers]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{key} names must be unique: {names}")
    return consumers


@dataclass(frozen=True)
class QueuedItem:
    id: int
    payload: bytes
    attempts: int


class LeasedOutbox:
    """Blocking queue operations, each its own short unit of work (call them from the thread pool)."""

    def __init__(self, runtime: Any, *, batch: int = 20, lease: float = 60.0, retry_backoff: float = 1.0,
                 max_backoff: float = 300.0) -> None:
        self.runtime = runtime
        self.batch, self.lease = batch, timedelta(seconds=lease)
        self.retry_backoff, self.max_backoff = retry_backoff, max_backoff
        self.worker = f"{getattr(runtime, 'node_name', '')}:{getattr(runtime, 'process_id', '')}:{id(self):x}"[-128:]

    def claim(self, queue: str) -> list[QueuedItem]:
        with self.runtime.uow() as uow:
            items = [QueuedItem(id=row.id, payload=bytes(row.payload), attempts=row.attempts)
                     for row in uow.queue.claim(queue, self.worker, limit=self.batch, lease=self.lease)]
            uow.commit()
        return items

    def done(self, item_id: int) -> None:
        with self.runtime.uow() as uow:
            uow.queue.done([item_id])
            uow.commit()

    def retry(self, items: Sequence[QueuedItem], error: str) -> None:
        """The failed item and the rest of its batch, again after the same delay (their order kept)."""
        backoff = timedelta(seconds=min(self.retry_backoff * 2 ** min(items[0].attempts, 30), self.max_backoff))
        with self.runtime.uow() as uow:
            for item in items:
                uow.queue.retry(item.id, error, backoff=backoff)
            uow.commit()


def start_polling(reactor: Any, pump: Callable[[], Any], interval: float) -> LoopingCall:
    """Call ``pump`` now and every ``interval`` seconds on ``reactor`` (items left by other workers or crashes)."""
    loop = LoopingCall(pump)
    loop.clock = reactor
    loop.start(interval, now=True)
    return loop


def stop_polling(loop: LoopingCall | None) -> None:
    if loop is not None and loop.running:
        loop.stop()
