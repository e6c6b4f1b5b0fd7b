"""Patient identity: the CX value type, the identity store, and the ITI-8 Patient Identity Feed.

Readers (the XDS registry) need only ``CX`` and ``IdentityStore``; the ITI-8 routes live in
:mod:`ihe_engine.identity.iti8`, imported by whoever builds the MLLP dispatcher.
"""

from .cx import CX, CXError, IdentifierKey
from .store import IdentifierState, IdentityStore, ResolvedIdentity

__all__ = ["CX", "CXError", "IdentifierKey", "IdentityStore", "ResolvedIdentity", "IdentifierState"]
