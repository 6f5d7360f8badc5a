"""Fetchers: a URI becomes an iterator of byte chunks (style anchor 7).

Adapters implement :meth:`FetcherBase._fetch`; the public :meth:`FetcherBase.fetch` enforces the
invariants for every adapter: at most ``limit`` bytes are delivered (the smaller of the fetcher's
``max_size`` and the limit the caller passes: the processor passes image-size or the component's
size), the first chunk past the limit raises before it reaches the caller, and any exception
that is not a :class:`~suitkit.errors.SuitError` becomes an
:class:`~suitkit.errors.OperationFailedError` (report reason operation-failed) that names the URI.
Adapters receive the limit too, so that one that knows the length up front (HTTP Content-Length)
refuses a payload that is too large before delivering its first byte.

HTTP lives in :mod:`suitkit.device.http_fetch` so that nothing here imports an HTTP client.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from suitkit.errors import OperationFailedError, SuitError

#: Default chunk size for reading payloads (bytes).
DEFAULT_CHUNK = 64 * 1024
#: Default largest payload a fetcher delivers.
DEFAULT_MAX_FETCH = 1 << 32


class FetcherBase(ABC):
    """Base class of every fetcher: caps sizes and maps foreign exceptions; a subclass
    implements only :meth:`_fetch`."""

    def __init__(self, *, max_size: int = DEFAULT_MAX_FETCH, chunk_size: int = DEFAULT_CHUNK):
        if max_size < 0 or chunk_size <= 0:
            raise ValueError("max_size must be >= 0 and chunk_size > 0")
        self.max_size = max_size
        self.chunk_size = chunk_size

    def fetch(
        self, uri: str, arguments: bytes | None = None, *, limit: int | None = None
    ) -> Iterator[bytes]:
        cap = self.max_size if limit is None else min(limit, self.max_size)
        total = 0
        try:
            for chunk in self._fetch(uri, arguments, cap):
                total += len(chunk)
                if total > cap:
                    raise OperationFailedError(
                        f"payload at {uri} is larger than {cap} bytes: refused at byte {cap + 1}"
                    )
                if chunk:
                    yield chunk
        except SuitError:
            raise
        except Exception as exc:
            raise OperationFailedError(
                f"fetching {uri} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @abstractmethod
    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        """The payload at ``uri`` in chunks; ``limit`` is the most bytes the caller accepts."""


def read_file_chunks(path: Path, chunk_size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            yield chunk


class FileFetcher(FetcherBase):
    """``file:`` URIs (RFC 8089), plus an explicit map of URI -> local file (``--payload``)."""

    def __init__(
        self,
        mapping: Mapping[str, Path] | None = None,
        *,
        allow_file_scheme: bool = True,
        max_size: int = DEFAULT_MAX_FETCH,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        super().__init__(max_size=max_size, chunk_size=chunk_size)
        self.mapping = dict(mapping or {})
        self.allow_file_scheme = allow_file_scheme

    def handles(self, uri: str) -> bool:
        return uri in self.mapping or (self.allow_file_scheme and urlsplit(uri).scheme == "file")

    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        path = self.mapping.get(uri)
        if path is None:
            parts = urlsplit(uri)
            if not self.allow_file_scheme or parts.scheme != "file":
                raise OperationFailedError(f"no payload is available for {uri}")
            if parts.netloc not in ("", "localhost"):
                raise OperationFailedError(f"file URI with a remote host is not supported: {uri}")
            path = Path(unquote(parts.path))
        if not path.is_file():
            raise OperationFailedError(f"payload file for {uri} does not exist: {path}")
        size = path.stat().st_size
        if size > limit:  # known up front: refused before the first byte is delivered
            raise OperationFailedError(
                f"payload at {uri} is {size} bytes, more than the {limit} accepted"
            )
        return read_file_chunks(path, self.chunk_size)


class MemoryFetcher(FetcherBase):
    """Payloads held in memory (tests): URI -> bytes, served in chunks."""

    def __init__(
        self,
        payloads: Mapping[str, bytes] | None = None,
        *,
        max_size: int = DEFAULT_MAX_FETCH,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        super().__init__(max_size=max_size, chunk_size=chunk_size)
        self.payloads = dict(payloads or {})
        self.requests: list[tuple[str, bytes | None]] = []

    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        self.requests.append((uri, arguments))
        data = self.payloads.get(uri)
        if data is None:
            raise OperationFailedError(f"no payload is available for {uri}")
        view = memoryview(data)
        return (bytes(view[i : i + self.chunk_size]) for i in range(0, len(view), self.chunk_size))


class SchemeFetcher(FetcherBase):
    """Dispatches to a :class:`FileFetcher` first (explicit map and ``file:``), then to an HTTP
    fetcher for ``http(s):`` URIs if one was given."""

    def __init__(
        self,
        files: FileFetcher,
        http: FetcherBase | None = None,
        *,
        max_size: int = DEFAULT_MAX_FETCH,
    ) -> None:
        super().__init__(max_size=max_size, chunk_size=files.chunk_size)
        self.files = files
        self.http = http

    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        if self.files.handles(uri):
            return self.files.fetch(uri, arguments, limit=limit)
        scheme = urlsplit(uri).scheme
        if scheme in ("http", "https") and self.http is not None:
            return self.http.fetch(uri, arguments, limit=limit)
        raise OperationFailedError(f"no fetcher for {uri!r} (scheme {scheme or 'none'!r})")
