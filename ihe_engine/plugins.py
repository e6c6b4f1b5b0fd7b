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


def create_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    if load_entry_points:
        pm.load_setuptools_entrypoints(PROJECT)
    return pm
