"""PIX/PDQ over HL7 v3 and SOAP 1.2: ITI-44 (feed), ITI-45 (PIX query), ITI-46 (update notification), ITI-47
(PDQ with continuation).

* :mod:`.model`, :mod:`.parse`, :mod:`.build`, :mod:`.errors`: the sans-I/O codec (v3 XML <-> plain values);
* :mod:`.iti44`, :mod:`.iti45`, :mod:`.iti47`: one module per transaction, each with its SOAP operations;
  :mod:`.iti46`: the notifier (enqueues in the feed's transaction) and the sender draining the queue;
* :mod:`.common`: settings, the handler outline and audit parts they share.

:func:`pix_operations` and :func:`pdq_operations` are what ``bootstrap`` registers on ``/pix`` and ``/pdq``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pix_operations", "pdq_operations"]


def pix_operations(runtime: Any, *, notifier: Any = None) -> list:
    """PIX Manager (v3): ITI-44 add/revise/merge and ITI-45.

    ``notifier`` hears of cross-reference changes; by default the configured ITI-10 and ITI-46 consumers
    (:func:`.iti46.pix_notifier`), so a change fed in v3 notifies them as one fed in v2 does.
    """
    from .common import Hl7v3Settings
    from .iti44 import iti44_operations
    from .iti45 import iti45_operations
    from .iti46 import pix_notifier

    engine_settings = getattr(runtime, "settings", None)
    settings = Hl7v3Settings.from_settings(engine_settings)
    if notifier is None:
        notifier = pix_notifier(engine_settings)
    return [*iti44_operations(runtime, settings, notifier=notifier), *iti45_operations(runtime, settings)]


def pdq_operations(runtime: Any) -> list:
    """PDQ Supplier (v3): ITI-47 query, continuation and cancel."""
    from .common import Hl7v3Settings
    from .iti47 import iti47_operations

    return iti47_operations(runtime, Hl7v3Settings.from_settings(getattr(runtime, "settings", None)))
