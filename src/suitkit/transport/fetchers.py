"""A processor fetcher for every network scheme the device speaks: ``http:``/``https:``
(:class:`suitkit.device.http_fetch.HttpFetcher`) and ``coap:``/``coap+tcp:``
(:class:`suitkit.transport.coap_fetch.CoapFetcher`). It plugs in where the device takes a
fetcher (``SimulatedDevice(fetcher=...)``, or as the fallback of the agent's install fetcher).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from suitkit.device.fetch import DEFAULT_MAX_FETCH, FetcherBase
from suitkit.errors import OperationFailedError

__all__ = ["NetworkFetcher", "network_fetcher"]


class NetworkFetcher(FetcherBase):
    """Dispatches on the URI scheme; each scheme's fetcher is created on first use."""

    def __init__(self, *, max_size: int = DEFAULT_MAX_FETCH, coap_token: str | None = None,
                 ) -> None:
        super().__init__(max_size=max_size)
        self.coap_token = coap_token
        self._http: FetcherBase | None = None
        self._coap: FetcherBase | None = None

    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        scheme = urlsplit(uri).scheme
        if scheme in ("http", "https"):
            if self._http is None:
                from suitkit.device.http_fetch import HttpFetcher

                self._http = HttpFetcher(max_size=self.max_size)
            return self._http.fetch(uri, arguments, limit=limit)
        if scheme in ("coap", "coap+tcp"):
            if self._coap is None:
                from suitkit.transport.coap_fetch import CoapFetcher

                self._coap = CoapFetcher(max_size=self.max_size, token=self.coap_token)
            return self._coap.fetch(uri, arguments, limit=limit)
        raise OperationFailedError(f"no fetcher for {uri!r} (scheme {scheme or 'none'!r})")


def network_fetcher(*, coap_token: str | None = None) -> NetworkFetcher:
    return NetworkFetcher(coap_token=coap_token)
