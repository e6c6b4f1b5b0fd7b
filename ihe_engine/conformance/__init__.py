"""Conformance tooling shipped with the engine: replayers for public test kits run against a live engine."""

__all__: list[str] = []
