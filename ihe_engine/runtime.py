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

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db.sessions)

    def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "Deferred[T]":
        return deferToThreadPool(self.reactor, self.threadpool, fn, *args, **kwargs)
