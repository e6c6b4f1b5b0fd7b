"""XUA table: ``xua_replay``, the assertion IDs already used, kept until the assertion expires.

``key`` is the SHA-256 (hex) of issuer and assertion ID, so the length of either never matters and two issuers
may use the same ID. The unique key is what makes the cache correct with several workers: the first insert
wins, whichever process makes it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.base import Base

__all__ = ["XuaReplay"]


class XuaReplay(Base):
    __tablename__ = "xua_replay"
    __table_args__ = (Index("ix_xua_replay_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]
    seen_at: Mapped[datetime]
