"""HL7 v2: a lean parser, original-mode acknowledgements and the dispatcher that routes by MSH-9."""

from .ack import Hl7Error, build_ack, build_reject
from .dispatch import Hl7Context, Hl7Dispatcher, Hl7Route
from .message import Message, Segment, escape, parse, unescape

__all__ = ["Hl7Error", "build_ack", "build_reject", "Hl7Context", "Hl7Dispatcher", "Hl7Route", "Message", "Segment",
           "escape", "parse", "unescape"]
