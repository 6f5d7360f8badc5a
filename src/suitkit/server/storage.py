"""Content-addressed blob storage: envelopes, severed members and payloads, by SHA-256.

A blob lives at ``<data>/blobs/sha256/<2 hex>/<62 hex>``. The path is computed from the
digest only (validated as 64 lower-case hex digits), never from anything a client names.
Writes are atomic: the bytes stream into a temporary file in ``<data>/tmp`` (same file
system), are fsynced, then renamed into place, and the directory is fsynced; a crash leaves
either no blob or the whole blob, and a stray temporary file that :meth:`BlobStore.sweep`
removes at start.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_HEX64 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1 << 20


class TooLarge(Exception):
    """The data is larger than the limit given to the write."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int


def check_sha256(value: str) -> str:
    """``value`` if it is 64 lower-case hex digits; ``ValueError`` otherwise."""
    if not _HEX64.fullmatch(value):
        raise ValueError("not a SHA-256 hex digest")
    return value


class Staged:
    """Bytes written to a temporary file and hashed, not yet a blob: :meth:`commit` makes it one
    (atomically), :meth:`discard` removes it. An upload stages every file, checks them all, and
    commits only if everything is acceptable, so that a refused upload stores nothing."""

    def __init__(self, store: BlobStore, limit: int) -> None:
        self.store = store
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self.sha256 = ""
        self.path = store.tmp / f"upload-{secrets.token_hex(12)}"
        self._file: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 - closed in finish
        self.committed = False

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "write after finish"
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(self.limit)
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> Staged:
        """Flush and fsync; the digest is known from here on."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self.sha256 = self._hash.hexdigest()
        return self

    def read(self) -> bytes:
        self.finish()
        return self.path.read_bytes()

    def open(self) -> BinaryIO:
        self.finish()
        return open(self.path, "rb")

    def commit(self) -> StoredBlob:
        self.finish()
        final = self.store.path(self.sha256)
        if final.exists():
            self.path.unlink(missing_ok=True)  # the same content is already stored
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, final)
            _fsync_dir(final.parent)
        self.committed = True
        return StoredBlob(self.sha256, self.size)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self.committed:
            self.path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.tmp = self.root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        d = check_sha256(sha256)
        return self.blobs / d[:2] / d[2:]

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def stage(self, chunks: Iterable[bytes], *, limit: int) -> Staged:
        """Write ``chunks`` to a temporary file (``TooLarge`` past ``limit``, nothing left)."""
        staged = Staged(self, limit)
        try:
            for chunk in chunks:
                staged.write(chunk)
            return staged.finish()
        except BaseException:
            staged.discard()
            raise

    def stage_file(self, f: BinaryIO, *, limit: int) -> Staged:
        """Stage an open file (an upload spooled by the web framework)."""
        return self.stage(iter(lambda: f.read(CHUNK), b""), limit=limit)

    def put(self, data: bytes) -> StoredBlob:
        return self.stage([data], limit=max(len(data), 1)).commit()

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def sweep(self, min_age: float = 3600.0) -> int:
        """Remove temporary files older than ``min_age`` seconds (left by a crash; younger
        ones may be uploads in progress in another worker). Returns how many."""
        import time

        n = 0
        limit = time.time() - min_age
        for p in self.tmp.glob("upload-*"):
            try:
                if p.stat().st_mtime <= limit:
                    p.unlink()
                    n += 1
            except FileNotFoundError:
                continue
        return n
