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
    """GET the URI (redirects are not followed: the signed manifest names the payload's
    location, RFC 9124 REQ.SEC.AUTH.REMOTE_LOC); a Content-Length above the limit is refused
    before the body is read; a response cut short (fewer bytes than its Content-Length) is an
    operation-failed error raised by httpx's framing check, after which the processor aborts
    the component's writer."""

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

    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        client = self._client or httpx.Client(timeout=self.timeout, follow_redirects=False)
        try:
            with client.stream("GET", uri) as response:
                if response.status_code != 200:
                    raise OperationFailedError(f"GET {uri} answered {response.status_code}")
                length = response.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > limit:
                    raise OperationFailedError(
                        f"payload at {uri} announces {length} bytes, more than the {limit} "
                        "accepted: refused before the first byte"
                    )
                yield from response.iter_bytes(self.chunk_size)
        finally:
            if self._client is None:
                client.close()
