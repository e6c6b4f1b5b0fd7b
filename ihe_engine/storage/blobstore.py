"""Content-addressed file store for document bytes.

A blob is written to a temporary file in the store, hashed as it streams, fsynced, then renamed to
``<sha256[:2]>/<sha256[2:4]>/<sha256>``: the rename is atomic, identical content is stored once, and a crash
leaves at most a temporary file that nothing references.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["BlobStore", "StoredBlob"]

CHUNK = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class StoredBlob:
    sha256: str
    sha1: str
    size: int


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put_stream(self, source: BinaryIO) -> StoredBlob:
        """Store what ``source`` yields; memory use is one chunk whatever the size."""
        sha256, sha1, size = hashlib.sha256(), hashlib.sha1(), 0
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    sha256.update(chunk)
                    sha1.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = sha256.hexdigest()
            target = self.path_for(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return StoredBlob(sha256=digest, sha1=sha1.hexdigest(), size=size)

    def put_bytes(self, data: bytes) -> StoredBlob:
        import io

        return self.put_stream(io.BytesIO(data))

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path_for(sha256), "rb")

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        with self.open(sha256) as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
