"""SOAP 1.2, WS-Addressing 1.0 and MTOM/XOP for the engine's web services (XDS.b and friends).

Sans-I/O cores (:mod:`.envelope`, :mod:`.addressing`, :mod:`.fault`, :mod:`.mtom`) and one twisted.web adapter
(:mod:`.endpoint`); :mod:`.client` sends MTOM with zeep.
"""

from .endpoint import Operation, SoapEndpoint, SoapRequest, SoapResponse
from .envelope import Envelope, build_envelope, check_must_understand, parse_envelope
from .fault import SoapFault, fault_envelope, fault_from_exception
from .mtom import Attachment, OutgoingAttachment

__all__ = [
    "Attachment",
    "Envelope",
    "Operation",
    "OutgoingAttachment",
    "SoapEndpoint",
    "SoapFault",
    "SoapRequest",
    "SoapResponse",
    "build_envelope",
    "check_must_understand",
    "fault_envelope",
    "fault_from_exception",
    "parse_envelope",
]
