"""The device API over HTTP(S) with httpx: ``/device/v1/checkin``, ``/files/{sha256}``
(``Range`` resume, ``If-Range`` on the strong ETag), ``/reports``; ``Authorization: Bearer``
with the device's token.

One :class:`HttpDeviceApi` per device; a fleet shares one ``httpx.AsyncClient`` (its
connection pool) between all of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from suitkit.transport.api import (
    ChunkHook,
    NotOffered,
    Offer,
    OfferFile,
    ProtocolError,
    ReportAck,
    ReportRefused,
    TransportError,
    Unauthorized,
)

__all__ = ["HttpDeviceApi", "new_client", "skip_sniffio_lookups"]

REPORT_MEDIA_TYPE = 'application/cose; cose-type="cose-sign1"'


def skip_sniffio_lookups() -> None:
    """httpcore imports ``sniffio`` on every request to tell asyncio from trio; when it is not
    installed, each of those imports fails after a search of ``sys.path`` (about 0.2 ms per
    request, most of a fleet simulator's time). Record the failure once: ``import sniffio``
    then fails at once, as it would anyway. A no-op when sniffio is installed."""
    import importlib.util
    import sys

    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def new_client(*, timeout: float = 30.0, connections: int = 100) -> httpx.AsyncClient:
    """An async client for device traffic: no redirects (the device talks to its server
    only), a bounded pool."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return str(detail.get("message") or detail)
    return str(detail)


def _raise_for(r: httpx.Response, what: str) -> None:
    if r.status_code in (401, 403):
        raise Unauthorized(f"{what}: {r.status_code} {_detail(r)}")
    if r.status_code >= 500 or r.status_code in (408, 425, 429):
        raise TransportError(f"{what}: server answered {r.status_code}")
    raise ProtocolError(f"{what}: unexpected answer {r.status_code} {_detail(r)}")


class HttpDeviceApi:
    """The device API of ``server`` (base URL) for the device holding ``token``."""

    def __init__(
        self, server: str, token: str, *, client: httpx.AsyncClient | None = None,
        timeout: float = 30.0, durable: bool = True,
    ) -> None:
        """``durable=False``: no fsync of downloads (simulated fleets)."""
        self.server = server.rstrip("/")
        self.durable = durable
        self._auth = {"Authorization": f"Bearer {token}"}
        self._own = client is None
        self._client = client or new_client(timeout=timeout, connections=4)

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()

    async def checkin(self, body: Mapping[str, Any]) -> Offer | None:
        try:
            r = await self._client.post(
                f"{self.server}/device/v1/checkin", json=dict(body), headers=self._auth
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"check-in: {type(exc).__name__}: {exc}") from None
        if r.status_code == 204:
            return None
        if r.status_code == 200:
            try:
                data = r.json()
            except ValueError:
                raise ProtocolError("check-in: the offer is not JSON") from None
            return Offer.from_server(data)
        _raise_for(r, "check-in")
        raise AssertionError("unreachable")  # pragma: no cover

    async def download(self, file: OfferFile, part: Path, hook: ChunkHook | None = None) -> int:
        have = part.stat().st_size if part.exists() else 0
        if have > file.size:  # not ours: start again
            part.unlink()
            have = 0
        if have == file.size:
            return 0
        etag = f'"{file.sha256}"'
        headers = dict(self._auth)
        if have:
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = etag
        received = 0
        try:
            async with self._client.stream("GET", file.url, headers=headers) as r:
                if r.status_code == 404:
                    raise NotOffered(f"{file.url}: 404")
                if r.status_code == 416:  # our part is no prefix of theirs
                    part.unlink(missing_ok=True)
                    raise TransportError(f"{file.url}: range not satisfiable, restarting")
                if r.status_code == 206:
                    start = _content_range_start(r.headers.get("content-range", ""))
                    if start != have:
                        raise ProtocolError(f"{file.url}: asked from {have}, got {start}")
                elif r.status_code == 200:
                    have = 0  # a full answer (If-Range did not match, or no Range sent)
                else:
                    _raise_for(r, f"GET {file.url}")
                with open(part, "r+b" if have else "wb") as f:
                    f.seek(have)
                    f.truncate()
                    try:
                        async for chunk in r.aiter_bytes(64 * 1024):
                            if have + len(chunk) > file.size:
                                raise ProtocolError(f"{file.url}: more than {file.size} bytes")
                            if hook is not None:
                                chunk = await hook(have, chunk)
                            f.write(chunk)
                            have += len(chunk)
                            received += len(chunk)
                    finally:
                        f.flush()
                        if self.durable:
                            os.fsync(f.fileno())
        except httpx.HTTPError as exc:
            raise TransportError(f"GET {file.url}: {type(exc).__name__}: {exc}") from None
        if have != file.size:
            raise TransportError(f"{file.url}: cut short at {have} of {file.size} bytes")
        return received

    async def report(self, url: str, signed_report: bytes) -> ReportAck:
        headers = {**self._auth, "Content-Type": REPORT_MEDIA_TYPE}
        try:
            r = await self._client.post(url, content=signed_report, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"report: {type(exc).__name__}: {exc}") from None
        if r.status_code in (200, 201):
            try:
                return ReportAck.from_server(r.json())
            except ValueError:
                raise ProtocolError("report: the answer is not JSON") from None
        if r.status_code in (413, 415, 422):
            raise ReportRefused(r.status_code, _detail(r))
        _raise_for(r, "report")
        raise AssertionError("unreachable")  # pragma: no cover


def _content_range_start(value: str) -> int:
    # "bytes 100-199/200"
    try:
        unit, rest = value.split(" ", 1)
        return int(rest.split("-", 1)[0]) if unit == "bytes" else -1
    except ValueError:
        return -1
