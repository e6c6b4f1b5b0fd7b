"""The replay cache of assertion IDs, in the database so every worker and every node shares it.

:func:`remember` is one ``INSERT ... ON CONFLICT`` on the unique key: the first use of an assertion inserts its row;
a second use, whichever worker receives it, finds the row and is refused. A row whose assertion has expired is
taken over by the insert (an expired assertion is refused before this point anyway, so that only lets an issuer
reuse an ID after its first assertion is dead); :func:`purge_expired` deletes such rows in housekeeping.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..storage.base import utcnow
from .tables import XuaReplay

__all__ = ["replay_key", "remember", "purge_expired"]

_TABLE = XuaReplay.__table__
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def replay_key(issuer: str, assertion_id: str) -> str:
    """The cache key of an assertion: SHA-256 of its issuer and ID (fixed length whatever they are)."""
    return hashlib.sha256(f"{issuer}\x00{assertion_id}".encode("utf-8")).hexdigest()


def remember(session: Session, issuer: str, assertion_id: str, expires_at: datetime) -> bool:
    """Record the use of an assertion until ``expires_at``: True the first time, False for a replay."""
    now = utcnow()
    insert = _INSERTS[session.get_bind().dialect.name](_TABLE)
    statement = insert.values(key=replay_key(issuer, assertion_id), expires_at=expires_at, seen_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[_TABLE.c.key],
        set_={"expires_at": statement.excluded.expires_at, "seen_at": statement.excluded.seen_at},
        where=_TABLE.c.expires_at < now).returning(_TABLE.c.key)
    return session.connection().execute(statement).first() is not None  # no row back: the conflict kept it


def purge_expired(session: Session, now: datetime | None = None) -> int:
    """Delete the rows of expired assertions (they can no longer be replayed: they are refused as expired)."""
    moment = now or utcnow()
    return session.execute(delete(XuaReplay).where(XuaReplay.expires_at < moment)).rowcount or 0
