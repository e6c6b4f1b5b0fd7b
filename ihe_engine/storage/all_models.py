"""Imports every module that declares tables on the shared Base, so Alembic sees the whole schema.

Each domain package (identity, xds registry, xds repository, audit, ...) keeps its tables in its own module and
adds one import line here.
"""

from . import models  # noqa: F401  foundation tables
from ..identity import tables  # noqa: F401  patient identity store
from ..xds.registry import tables as xds_registry_tables  # noqa: F401  XDS registry
from ..xds.repository import tables as xds_repository_tables  # noqa: F401  XDS document repository
from ..audit import tables as audit_tables  # noqa: F401  ATNA Audit Record Repository
from ..xua import tables as xua_tables  # noqa: F401  XUA assertion replay cache
