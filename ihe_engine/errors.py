"""The engine's error classes.

Every error carries what an encoder needs to answer precisely: a wire code (an IHE error code, an HL7 table 0357
code, a SOAP fault subcode), a severity and a location. Only the encoders (SOAP fault, HL7 ACK, RegistryResponse)
turn these into bytes; the code that raises them knows nothing of the wire.
"""

from __future__ import annotations

__all__ = [
    "EngineError",
    "RemoteProtocolError",
    "LocalProtocolError",
    "ConfigurationError",
    "TransactionError",
    "XMLSecurityError",
    "MessageTooLarge",
]


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    default_code = "EngineError"

    def __init__(self, message: str, *, code: str | None = None, location: str | None = None,
                 severity: str = "Error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.location = location
        self.severity = severity

    def __str__(self) -> str:
        where = f" (at {self.location})" if self.location else ""
        return f"{self.message}{where}"


class RemoteProtocolError(EngineError):
    """The peer broke the protocol: bad framing, malformed XML, a missing required header.

    Answered to the peer (SOAP Sender fault, HL7 AR, closed connection), never a crash.
    """

    default_code = "RemoteProtocolError"


class LocalProtocolError(EngineError):
    """The engine's own code misused a protocol core (a bug, not the peer's fault)."""

    default_code = "LocalProtocolError"


class ConfigurationError(EngineError):
    """The configuration is invalid; raised at start-up, before any listener opens."""

    default_code = "ConfigurationError"


class TransactionError(EngineError):
    """A transaction refused a request for a business reason (XDS error code, HL7 AE)."""

    default_code = "TransactionError"


class XMLSecurityError(RemoteProtocolError):
    """Hostile or oversized XML: DTD, entity, too deep, too large."""

    default_code = "XMLSecurityError"


class MessageTooLarge(RemoteProtocolError):
    """A message or body exceeded its configured limit."""

    default_code = "MessageTooLarge"
