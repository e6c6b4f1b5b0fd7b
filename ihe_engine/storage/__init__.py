"""SQL storage: one schema for all actors, SQLite (WAL) by default, PostgreSQL through psycopg 3.

Actors reach storage only through repositories gathered in a :class:`UnitOfWork`; nothing a second worker
process needs lives only in one process's memory.
"""

from .db import Database
from .uow import UnitOfWork

__all__ = ["Database", "UnitOfWork"]
