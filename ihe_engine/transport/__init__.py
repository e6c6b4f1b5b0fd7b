"""Transports: sans-I/O framing cores and the Twisted adapters that move their bytes."""

from typing import Any

__all__ = ["describe_peer"]


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
