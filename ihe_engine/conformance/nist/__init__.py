"""Replayer for the NIST XDS Toolkit test kit (``ihe-engine conformance nist``).

The kit is read in place; each step is rebuilt from its testplan (ebRIM 2.1 templates converted to 3.0,
placeholders filled, ids allocated), sent over the wire to a running engine and judged as the toolkit would.
Modules: :mod:`.testkit` (discovery), :mod:`.testplan` (parsing), :mod:`.convert` (ebRIM 2.1 -> 3.0),
:mod:`.metadata_prep` (request preparation), :mod:`.wire` (SOAP/MLLP), :mod:`.evaluate` (judging),
:mod:`.runner` (orchestration), :mod:`.report` (outputs).
"""

__all__: list[str] = []
