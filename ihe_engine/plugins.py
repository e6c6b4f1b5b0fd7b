"""pluggy wiring: the hook specifications and the one function that builds the plugin manager.

Built-in behaviour is itself a plugin; third-party modules (the French rules, other audit destinations) arrive
through the ``ihe_engine`` entry-point group.
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT", "hookspec", "hookimpl", "HookSpecs", "create_plugin_manager"]

PROJECT = "ihe_engine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    @hookspec
    def ihe_audit_record(self, record):  # type: ignore[no-untyped-def]
        """Receive one audit record (ihe_engine.audit.AuditRecord). Called for every sink."""

    @hookspec(firstresult=True)
    def ihe_audit_records_in_transaction(self, session, records):  # type: ignore[no-untyped-def]
        """Queue ``records`` inside the caller's transaction (``session``) so they are durable exactly when its
        work commits; return True if taken. The records are then also handed to ``ihe_audit_record`` after the
        commit, where the sink that took them skips them."""

    @hookspec
    def ihe_audit_records_dropped(self, records):  # type: ignore[no-untyped-def]
        """The work ``records`` were queued with was rolled back: forget them (their rolled-back form follows)."""


def create_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    if load_entry_points:
        pm.load_setuptools_entrypoints(PROJECT)
    return pm
