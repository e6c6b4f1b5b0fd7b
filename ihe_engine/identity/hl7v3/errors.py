"""Refusals of HL7 v3 requests, carrying their wire answer (acknowledgement typeCode, queryResponseCode, details).

Codes are HL7 table 0357 (code system 2.16.840.1.113883.12.357), as the IHE TF prescribes for PIX/PDQ v3 (204
Unknown Key Identifier for a domain or identifier the actor does not know); ``location`` is an XPath into the
request. Only the builders in :mod:`.build` turn a refusal into XML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["AckDetail", "V3Refusal", "HL7_ERROR_CODES", "REQUIRED_MISSING", "DATA_TYPE_ERROR", "TABLE_VALUE",
           "UNSUPPORTED_INTERACTION", "UNSUPPORTED_PROCESSING", "UNKNOWN_KEY", "DUPLICATE_KEY", "INTERNAL_ERROR"]

HL7_ERROR_CODES = "2.16.840.1.113883.12.357"
REQUIRED_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE = "103"
UNSUPPORTED_INTERACTION = "200"
UNSUPPORTED_PROCESSING = "202"
UNKNOWN_KEY = "204"
DUPLICATE_KEY = "205"
INTERNAL_ERROR = "207"

_DISPLAY_NAMES = {
    "100": "Segment sequence error", REQUIRED_MISSING: "Required field missing", DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE: "Table value not found", "104": "Value too long", UNSUPPORTED_INTERACTION: "Unsupported message type",
    "201": "Unsupported event code", UNSUPPORTED_PROCESSING: "Unsupported processing id",
    "203": "Unsupported version id", UNKNOWN_KEY: "Unknown key identifier", DUPLICATE_KEY: "Duplicate key identifier",
    "206": "Application record locked", INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True, slots=True)
class AckDetail:
    """One acknowledgementDetail: ``type_code`` E (error), W (warning) or I (information)."""

    code: str
    text: str
    location: str | None = None
    type_code: str = "E"

    @property
    def display_name(self) -> str:
        return _DISPLAY_NAMES.get(self.code, "")


class V3Refusal(Exception):
    """A request refused with an answer: ``ack_code`` AE or AR, ``query_code`` AE or QE for queries.

    Nothing was changed when this is raised.
    """

    def __init__(self, details: Sequence[AckDetail], *, ack_code: str = "AE", query_code: str = "AE") -> None:
        super().__init__("; ".join(detail.text for detail in details))
        self.details = tuple(details)
        self.ack_code = ack_code
        self.query_code = query_code

    @classmethod
    def one(cls, code: str, text: str, location: str | None = None, **kwargs: str) -> "V3Refusal":
        return cls([AckDetail(code=code, text=text, location=location)], **kwargs)
