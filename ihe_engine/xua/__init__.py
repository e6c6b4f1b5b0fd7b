"""XUA (ITI-40) and the French VIHF: SAML 2.0 assertions verified on the SOAP endpoints, and the access policy.

- :mod:`.assertion`: the assertion of a wsse:Security header verified (signature chained to trust anchors,
  validity, audience, subject, authentication) into a :class:`UserAssertion`; sans-I/O.
- :mod:`.vihf`: the French VIHF profile (DMP), checked on top when configured.
- :mod:`.replay`: the replay cache of assertion IDs, in the database (``xua_replay``).
- :mod:`.policy`: the pluggable access policy on confidentiality codes, role and emergency access, and the
  functions the XDS operations call to filter ITI-18 answers and ITI-43 retrievals.
- :mod:`.soap`: the per-endpoint mode (off / optional / required), the check run before the handlers, the
  WS-Security faults and the authentication-failure audit records.
"""

from .assertion import CodedValue, UserAssertion, XuaError

__all__ = ["CodedValue", "UserAssertion", "XuaError"]
