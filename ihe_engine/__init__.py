"""ihe-engine: an IHE interoperability engine (XDS.b, PIX/PDQ, LTW, ATNA)."""

__version__ = "0.1.0.dev0"
__all__ = ["__version__"]
