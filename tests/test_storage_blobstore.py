"""Document bytes are stored by content, streamed, and never left half-written."""

import hashlib
import io
import os
import tracemalloc

import pytest

from ihe_engine.storage.blobstore import BlobStore


def test_content_addressed_and_deduplicated(tmp_path):
    store = BlobStore(tmp_path)
    first = store.put_bytes(b"hello")
    second = store.put_bytes(b"hello")
    assert first == second
    assert first.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert first.sha1 == hashlib.sha1(b"hello").hexdigest()
    assert first.size == 5
    assert store.open(first.sha256).read() == b"hello"
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


def test_large_stream_is_stored_with_bounded_memory(tmp_path):
    store = BlobStore(tmp_path)

    class Source(io.RawIOBase):
        def __init__(self, total):
            self.left = total

        def readable(self):
            return True

        def read(self, n=-1):
            n = min(self.left, 1 << 20 if n < 0 else n)
            self.left -= n
            return b"\xab" * n

    tracemalloc.start()
    blob = store.put_stream(Source(64 * 1024 * 1024))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert blob.size == 64 * 1024 * 1024
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while storing 64 MB"
    assert sum(len(chunk) for chunk in store.iter_chunks(blob.sha256)) == blob.size


def test_failed_write_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path)

    class Failing(io.RawIOBase):
        calls = 0

        def readable(self):
            return True

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 2:
                raise OSError("peer went away")
            return b"x" * 1000

    with pytest.raises(OSError):
        store.put_stream(Failing())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert os.listdir(tmp_path / "tmp") == []


def test_only_hex_digests_name_blobs(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(ValueError):
        store.path_for("../../etc/passwd")
