"""The HTTP site: bounded, spooling requests for the SOAP endpoints, /metrics and /health."""

from .request import BoundedRequest, BoundedSite

__all__ = ["BoundedRequest", "BoundedSite"]
