"""The participants every HL7 v2 audit record shares, whichever transaction it is for.

ATNA names an HL7 v2 peer by ``facility|application`` from MSH (IHE-CONFORMANCE.md section D): the sender as the
requesting Source, this engine as the Destination, with its process id and host.
"""

from __future__ import annotations

from typing import Any

from .hook import DESTINATION_ROLE, SOURCE_ROLE, Participant

__all__ = ["hl7_request_participants"]


def hl7_request_participants(context: Any) -> tuple[Participant, Participant]:
    """(source, destination) of a received message; ``context`` is the dispatcher's ``Hl7Context``."""
    header = context.message.header
    runtime = context.runtime
    source = Participant(user_id=f"{header.sending_facility}|{header.sending_application}", is_requestor=True,
                         role=SOURCE_ROLE, network_access_point=context.peer.rsplit(":", 1)[0] or None)
    destination = Participant(
        user_id=f"{header.receiving_facility or context.sending_facility}|"
                f"{header.receiving_application or context.sending_application}",
        is_requestor=False, role=DESTINATION_ROLE,
        alternative_user_id=runtime.process_id if runtime is not None else None,
        network_access_point=runtime.node_name if runtime is not None else None)
    return source, destination
