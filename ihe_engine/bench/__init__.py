"""Benchmark harness: ``ihe-engine bench ...`` or ``python -m bench ...`` from a source checkout.

Figures are measured here and recorded in BENCHMARKS.rst, never asserted in tests.
"""
