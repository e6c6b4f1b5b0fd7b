"""Transports: sans-I/O framing cores and the Twisted adapters that move their bytes."""

import logging
from typing import Any

from ..metrics import CONNECTIONS_REFUSED

__all__ = ["describe_peer", "ConnectionLimit", "DEFAULT_MAX_CONNECTIONS"]

DEFAULT_MAX_CONNECTIONS = 1000

log = logging.getLogger("ihe_engine.transport")


def describe_peer(transport: Any) -> str:
    """``host:port`` (``[v6]:port``) of a transport's remote end, as handlers, logs and audit records show it."""
    try:
        address = transport.getPeer()
    except Exception:  # a transport already torn down
        return "unknown"
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ConnectionLimit:
    """At most ``maximum`` open connections per listener factory (None: no cap); past it, close at once.

    Each connection costs a buffer, a framer and a timer: a peer opening thousands must not exhaust memory or file
    descriptors for the others. A refused connection is counted in ``ihe_listener_connections_refused``.
    """

    def __init__(self, maximum: int | None) -> None:
        self.maximum = maximum
        self.open = 0

    def admit(self, transport: Any, listener_name: str) -> bool:
        """Count the connection in, or abort it and return False when the listener is full."""
        if self.maximum is not None and self.open >= self.maximum:
            CONNECTIONS_REFUSED.labels(listener_name).inc()
            log.warning("%s: %d connections open, refusing %s", listener_name, self.open, describe_peer(transport))
            transport.abortConnection()
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1
