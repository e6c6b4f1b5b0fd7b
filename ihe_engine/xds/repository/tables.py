"""The Document Repository's table: one row per document it holds (the bytes live in the BlobStore).

A row is the repository's promise that ``document_unique_id`` can be retrieved: ITI-41 writes it before the
registry learns of the document, ITI-43 reads it, ITI-86 marks it ``removed`` (kept as a tombstone so the
history stays auditable, and so a removed document is told apart from one never stored). The blob is found by
its SHA-256; ``sha1`` and ``size`` are the XDS ``hash``/``size`` values, kept to judge a resubmission.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ...storage.base import Base, utcnow

__all__ = ["RepositoryDocument"]


class RepositoryDocument(Base):
    __tablename__ = "xds_repository_document"
    __table_args__ = (Index("ix_xds_repository_document_sha256_removed", "sha256", "removed"),)

    document_unique_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    repository_unique_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    sha1: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str] = mapped_column(String(255))
    home_community_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed: Mapped[bool] = mapped_column(default=False)
