"""Imports every module that declares tables on the shared Base, so Alembic sees the whole schema.

Each domain package (identity, xds registry, xds repository, audit, ...) keeps its tables in its own module and
adds one import line here.
"""

from . import models  # noqa: F401  foundation tables
