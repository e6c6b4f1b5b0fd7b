"""``python -m bench``: the benchmark harness from a source checkout (same as ``ihe-engine bench``)."""
