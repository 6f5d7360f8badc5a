"""``http:`` and ``https:`` payloads through httpx, streamed in chunks.

Kept apart from the processor and from :mod:`suitkit.device.fetch` so that the processor imports
no HTTP client. :class:`~suitkit.device.fetch.FetcherBase` caps the size and maps httpx's
exceptions to operation-failed.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from suitkit.device.fetch import DEFAULT_CHUNK, DEFAULT_MAX_FETCH, FetcherBase
from suitkit.errors import OperationFailedError


class HttpFetcher(FetcherBase):
    """GET the URI; a Content-Length above the limit is refused before the body is read."""

    def __init__(
        self,
        *,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
        max_size: int = DEFAULT_MAX_FETCH,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        super().__init__(max_size=max_size, chunk_size=chunk_size)
        self._client = client
        self.timeout = timeout

    def _fetch(self, uri: str, arguments: bytes | None) -> Iterator[bytes]:
        client = self._client or httpx.Client(timeout=self.timeout, follow_redirects=False)
        try:
            with client.stream("GET", uri) as response:
                if response.status_code != 200:
                    raise OperationFailedError(f"GET {uri} answered {response.status_code}")
                length = response.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > self.max_size:
                    raise OperationFailedError(
                        f"payload at {uri} announces {length} bytes, "
                        f"more than the limit of {self.max_size}"
                    )
                yield from response.iter_bytes(self.chunk_size)
        finally:
            if self._client is None:
                client.close()
