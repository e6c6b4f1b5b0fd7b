"""Transports: sans-I/O framing cores and the Twisted adapters that move their bytes."""
