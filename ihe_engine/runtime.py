"""The runtime context handed to every listener and actor: settings, storage, audit hook, blob store, threads.

Built once per process by :mod:`ihe_engine.bootstrap`. Blocking work (the database, the file store) never runs
on the reactor thread: callers use :meth:`Runtime.run_blocking`, which returns a Deferred.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from .audit import AuditHook
from .config import Settings
from .storage import Database, UnitOfWork
from .storage.blobstore import BlobStore

__all__ = ["Runtime"]

T = TypeVar("T")


@dataclass(kw_only=True)
class Runtime:
    settings: Settings
    db: Database
    audit: AuditHook
    blobs: BlobStore
    reactor: Any
    threadpool: ThreadPool
    node_name: str = field(default_factory=socket.getfqdn)
    process_id: str = field(default_factory=lambda: str(os.getpid()))
    _in_flight: set = field(default_factory=set, repr=False)

    def uow(self, *, readonly: bool = False) -> UnitOfWork:
        return UnitOfWork(self.db.sessions, readonly=readonly)

    def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "Deferred[T]":
        deferred = deferToThreadPool(self.reactor, self.threadpool, fn, *args, **kwargs)
        self._in_flight.add(deferred)

        def forget(result: Any) -> Any:
            self._in_flight.discard(deferred)
            return result

        return deferred.addBoth(forget)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def drain(self, timeout: float = 30.0, poll: float = 0.05) -> "Deferred[int]":
        """Fire once no blocking work is in flight (or after ``timeout``), with the count still running.

        Called at shutdown after the listeners stopped, so answers to work already committed still reach
        their peers before the reactor drops the connections.
        """
        from twisted.internet.task import deferLater

        deadline = self.reactor.seconds() + timeout

        def check() -> "Deferred[int] | int":
            if not self._in_flight or self.reactor.seconds() >= deadline:
                # one more short pause lets the answers written by the last callbacks flush
                return deferLater(self.reactor, poll, lambda: len(self._in_flight))
            return deferLater(self.reactor, poll, check)

        return deferLater(self.reactor, 0, check)
