"""Prometheus metrics: per transaction counts, errors and latency; per listener connections.

With several workers, prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by ``serve``) lets
``/metrics`` on any worker report the sum over all of them.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

__all__ = ["TRANSACTIONS", "TRANSACTION_ERRORS", "TRANSACTION_SECONDS", "CONNECTIONS_OPEN", "CONNECTIONS_TOTAL",
           "CONNECTIONS_REFUSED", "observe_transaction", "render", "CONTENT_TYPE_LATEST"]

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

TRANSACTIONS = Counter("ihe_transactions", "Transactions handled", ["transaction", "outcome"])
TRANSACTION_ERRORS = Counter("ihe_transaction_errors", "Transactions answered with an error", ["transaction", "code"])
TRANSACTION_SECONDS = Histogram("ihe_transaction_seconds", "Time to answer a transaction", ["transaction"],
                                buckets=_BUCKETS)
CONNECTIONS_OPEN = Gauge("ihe_listener_connections_open", "Open connections per listener", ["listener"],
                         multiprocess_mode="livesum")
CONNECTIONS_TOTAL = Counter("ihe_listener_connections", "Connections accepted per listener", ["listener"])
CONNECTIONS_REFUSED = Counter("ihe_listener_connections_refused", "Connections closed at once: listener at its cap",
                              ["listener"])


@contextmanager
def observe_transaction(transaction: str) -> Iterator[None]:
    """Count and time one transaction; an exception counts as outcome=error and is re-raised."""
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        TRANSACTIONS.labels(transaction, "error").inc()
        raise
    else:
        TRANSACTIONS.labels(transaction, "ok").inc()
    finally:
        TRANSACTION_SECONDS.labels(transaction).observe(time.perf_counter() - start)


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
