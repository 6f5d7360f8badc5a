"""The device API over HTTP(S): ``/device/v1/checkin``, ``/files/{sha256}`` (``Range``
resume, ``If-Range`` on the strong ETag), ``/reports``; ``Authorization: Bearer`` with the
device's token.

One :class:`HttpDeviceApi` per device, over one of two clients:

- an ``httpx.AsyncClient`` (the default, the agent's CLI: proxies, certificate stores...);
- an :class:`HttpPool`: a small HTTP/1.1 client on asyncio streams with keep-alive
  connections, for the fleet simulator, whose thousands of devices share one: httpx's work
  per request (URL and header models, pool bookkeeping, anyio) costs more CPU than a
  simulated device's own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
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

__all__ = [
    "HttpAnswer",
    "HttpConnectionError",
    "HttpDeviceApi",
    "HttpPool",
    "new_client",
    "skip_sniffio_lookups",
]

REPORT_MEDIA_TYPE = 'application/cose; cose-type="cose-sign1"'
CHUNK = 64 * 1024


def skip_sniffio_lookups() -> None:
    """httpcore imports ``sniffio`` on every request to tell asyncio from trio; when it is not
    installed, each of those imports fails after a search of ``sys.path`` (about 0.2 ms per
    request). Record the failure once: ``import sniffio`` then fails at once, as it would
    anyway. A no-op when sniffio is installed."""
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


# --- a small HTTP/1.1 client ----------------------------------------------------------------


class HttpConnectionError(Exception):
    """No complete answer: the connection failed, closed or timed out, or the answer was not
    HTTP/1.x. The message starts with a kind, as httpx's exception names do."""


class _Origin:
    """``scheme://host:port``: its idle connections and how many may be in use."""

    def __init__(self, scheme: str, host: str, port: int, connections: int) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        default = 443 if scheme == "https" else 80
        self.host_header = host if port == default else f"{host}:{port}"
        self.idle: list[_Conn] = []
        self.slots = asyncio.Semaphore(connections)


class _Conn:
    __slots__ = ("origin", "reader", "writer")

    def __init__(self, origin: _Origin, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer


class HttpAnswer:
    """An answer: ``status``, ``headers`` (names in lower case) and the body: in ``body``
    after :meth:`HttpPool.request`, to read with :meth:`chunks` in :meth:`HttpPool.stream`."""

    __slots__ = ("_conn", "_keep", "_left", "_pool", "body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], left: int | None,
                 keep: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = b""
        #: body bytes still to read: -1 chunked, None until the server closes
        self._left = left
        self._keep = keep
        self._conn: _Conn | None = None
        self._pool: HttpPool | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    async def chunks(self, size: int = CHUNK) -> AsyncIterator[bytes]:
        """The body in chunks of at most ``size`` bytes (``size`` each while the
        ``Content-Length`` lasts)."""
        conn, pool = self._conn, self._pool
        if conn is None or pool is None or self._left == 0:
            return
        reader, timeout = conn.reader, pool.timeout
        try:
            if self._left == -1:
                async for piece in _read_chunked(reader, timeout):
                    yield piece
                self._left = 0
            elif self._left is None:
                while True:
                    async with asyncio.timeout(timeout):
                        piece = await reader.read(size)
                    if not piece:
                        break
                    yield piece
                self._left = 0
            else:
                while self._left > 0:
                    async with asyncio.timeout(timeout):
                        piece = await reader.readexactly(min(size, self._left))
                    self._left -= len(piece)
                    yield piece
        except asyncio.IncompleteReadError:
            raise HttpConnectionError(
                "RemoteProtocolError: the server closed the connection before the end of "
                "the body") from None
        except asyncio.LimitOverrunError:
            raise HttpConnectionError("RemoteProtocolError: a chunk header is too long") from None
        except TimeoutError:
            raise HttpConnectionError("ReadTimeout: the body stalled") from None
        except OSError as exc:
            raise HttpConnectionError(f"ReadError: {type(exc).__name__}: {exc}") from None

    def _release(self) -> None:
        """Give the connection back to the pool (the body was read to its end) or close it."""
        conn, pool = self._conn, self._pool
        self._conn = self._pool = None
        if conn is not None and pool is not None:
            if self._keep and self._left == 0 and not conn.reader.at_eof():
                conn.origin.idle.append(conn)
            else:
                pool._discard(conn)


async def _read_chunked(reader: asyncio.StreamReader, timeout: float) -> AsyncIterator[bytes]:
    while True:
        async with asyncio.timeout(timeout):
            line = await reader.readuntil(b"\r\n")
            try:
                n = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise HttpConnectionError("RemoteProtocolError: bad chunk size") from None
            if n == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return
            data = await reader.readexactly(n + 2)
        yield data[:-2]


async def _read_head(reader: asyncio.StreamReader, method: str) -> HttpAnswer:
    """The status line and the headers; how the body is framed (RFC 9112 §6.3)."""
    while True:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        try:
            status = int(rest[:3])
        except ValueError:
            status = 0
        if not version.startswith("HTTP/1.") or not 100 <= status <= 999:
            raise HttpConnectionError(f"RemoteProtocolError: not an HTTP/1 answer: {lines[0]!r}")
        if 100 <= status < 200 and status != 101:
            continue  # an interim answer (100 Continue): the real one follows
        break
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpConnectionError(f"RemoteProtocolError: bad header line {line!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    keep = version != "HTTP/1.0" and "close" not in headers.get("connection", "").lower()
    left: int | None
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        left = 0
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        left = -1
    elif "content-length" in headers:
        try:
            left = int(headers["content-length"].split(",")[0])
        except ValueError:
            raise HttpConnectionError("RemoteProtocolError: bad Content-Length") from None
        if left < 0:
            raise HttpConnectionError("RemoteProtocolError: bad Content-Length")
    else:
        left, keep = None, False  # until the server closes the connection
    return HttpAnswer(status, headers, left, keep)


class HttpPool:
    """A small HTTP/1.1 client: keep-alive connections per origin (at most ``connections`` in
    use at once per origin, one exchange at a time on each), ``Content-Length``, chunked and
    close-delimited bodies, https with the system's certificate store. ``timeout`` bounds
    connecting and each wait for data. A request whose kept-alive connection turns out to be
    closed by the server (its idle timeout) before any byte of an answer goes again on a new
    connection (the device API's requests are idempotent: reports count once per nonce)."""

    def __init__(self, *, connections: int = 100, timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.connections = max(1, connections)
        self.timeout = timeout
        self._ssl = ssl_context
        self._origins: dict[str, tuple[_Origin, int]] = {}  # "scheme://netloc" -> origin
        self._open: set[_Conn] = set()

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        conns, self._open = self._open, set()
        for origin, _ in self._origins.values():
            origin.idle.clear()
        for c in conns:
            c.writer.close()
        for c in conns:
            with contextlib.suppress(OSError, RuntimeError):  # closing anyway
                await c.writer.wait_closed()

    def _origin(self, url: str) -> tuple[_Origin, str]:
        """The origin of an absolute ``http(s)://`` URL, and the request target."""
        start = url.find("://")
        slash = url.find("/", start + 3) if start >= 0 else -1
        base = url if slash < 0 else url[:slash]
        found = self._origins.get(base)
        if found is None:
            scheme, sep, netloc = base.partition("://")
            scheme = scheme.lower()
            if not sep or scheme not in ("http", "https") or not netloc or "@" in netloc:
                raise HttpConnectionError(f"UnsupportedProtocol: {url!r}")
            host, port = netloc, 443 if scheme == "https" else 80
            try:
                if netloc.startswith("["):  # [IPv6]:port
                    end = netloc.index("]")
                    host, rest = netloc[1:end], netloc[end + 1:]
                    if rest:
                        port = int(rest.removeprefix(":"))
                elif ":" in netloc:
                    host, _, p = netloc.rpartition(":")
                    port = int(p)
            except ValueError:
                raise HttpConnectionError(f"InvalidURL: {url!r}") from None
            found = (_Origin(scheme, host, port, self.connections), len(base))
            self._origins[base] = found
        origin, n = found
        return origin, (url[n:] or "/")

    async def _connect(self, origin: _Origin) -> _Conn:
        ctx: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        try:
            async with asyncio.timeout(min(self.timeout, 10.0)):
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=ctx, limit=2 * CHUNK)
        except TimeoutError:
            raise HttpConnectionError("ConnectTimeout: connecting took too long") from None
        except OSError as exc:
            raise HttpConnectionError(f"ConnectError: {exc}") from None
        conn = _Conn(origin, reader, writer)
        self._open.add(conn)
        return conn

    def _discard(self, conn: _Conn) -> None:
        conn.writer.close()
        self._open.discard(conn)

    async def request(self, method: str, url: str, headers: Mapping[str, str],
                      body: bytes = b"") -> HttpAnswer:
        """Send a request; the answer with its whole body in ``body``."""
        origin, head = self._head(method, url, headers, body)
        async with origin.slots:
            answer = await self._exchange(origin, method, head, body, whole=True)
            try:
                if answer._left != 0:  # chunked, or until the server closes
                    answer.body = b"".join([piece async for piece in answer.chunks(1 << 30)])
            finally:
                answer._release()
        return answer

    @asynccontextmanager
    async def stream(self, method: str, url: str, headers: Mapping[str, str],
                     body: bytes = b"") -> AsyncIterator[HttpAnswer]:
        """Send a request; the answer, its body to read with :meth:`HttpAnswer.chunks`. The
        connection goes back to the pool when the body was read to its end, else it is
        closed."""
        origin, head = self._head(method, url, headers, body)
        async with origin.slots:
            answer = await self._exchange(origin, method, head, body, whole=False)
            try:
                yield answer
            finally:
                answer._release()

    def _head(self, method: str, url: str, headers: Mapping[str, str],
              body: bytes) -> tuple[_Origin, bytes]:
        origin, target = self._origin(url)
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {origin.host_header}\r\n"]
        for k, v in headers.items():
            if "\n" in v or "\r" in v or "\n" in k or "\r" in k or ":" in k:
                raise ValueError(f"header {k!r}: not a valid header")
            lines.append(f"{k}: {v}\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        return origin, "".join(lines).encode("latin-1")

    async def _exchange(self, origin: _Origin, method: str, head: bytes, body: bytes, *,
                        whole: bool) -> HttpAnswer:
        """Send, and read the answer's head (and, ``whole``, a ``Content-Length`` body)."""
        while True:
            reused = bool(origin.idle)
            conn = origin.idle.pop() if reused else await self._connect(origin)
            if reused and (conn.reader.at_eof() or conn.writer.is_closing()):
                self._discard(conn)
                continue
            answer: HttpAnswer | None = None
            try:
                if len(body) < CHUNK:
                    conn.writer.write(head + body)
                else:
                    conn.writer.write(head)
                    conn.writer.write(body)
                async with asyncio.timeout(self.timeout):
                    await conn.writer.drain()
                    answer = await _read_head(conn.reader, method)
                    if whole and answer._left is not None and answer._left > 0:
                        answer.body = await conn.reader.readexactly(answer._left)
                        answer._left = 0
            except asyncio.IncompleteReadError as exc:
                self._discard(conn)
                if answer is not None:
                    raise HttpConnectionError(
                        "RemoteProtocolError: the server closed the connection before the end "
                        "of the body") from None
                if reused and not exc.partial:
                    continue  # the server had closed the kept-alive connection
                raise HttpConnectionError(
                    "RemoteProtocolError: the server closed the connection without an answer"
                ) from None
            except ConnectionError as exc:
                self._discard(conn)
                if reused and answer is None:
                    continue
                raise HttpConnectionError(f"NetworkError: {exc}") from None
            except TimeoutError:
                self._discard(conn)
                raise HttpConnectionError("ReadTimeout: no answer in time") from None
            except asyncio.LimitOverrunError:
                self._discard(conn)
                raise HttpConnectionError("RemoteProtocolError: the header is too long") from None
            except OSError as exc:
                self._discard(conn)
                raise HttpConnectionError(f"NetworkError: {exc}") from None
            except BaseException:  # cancelled, or not HTTP: the connection is of no more use
                self._discard(conn)
                raise
            answer._conn, answer._pool = conn, self
            return answer


# --- the device API ---------------------------------------------------------------------------


class _Reply:
    """What :class:`HttpDeviceApi` needs of an answer (either client's)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _detail(r: _Reply) -> str:
    try:
        body = json.loads(r.body)
    except ValueError:
        return r.body.decode("utf-8", "replace")[:200]
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return str(detail.get("message") or detail)
    return str(detail)


def _raise_for(r: _Reply, what: str) -> None:
    if r.status in (401, 403):
        raise Unauthorized(f"{what}: {r.status} {_detail(r)}")
    if r.status >= 500 or r.status in (408, 425, 429):
        raise TransportError(f"{what}: server answered {r.status}")
    raise ProtocolError(f"{what}: unexpected answer {r.status} {_detail(r)}")


class HttpDeviceApi:
    """The device API of ``server`` (base URL) for the device holding ``token``; ``client``:
    an ``httpx.AsyncClient`` or an :class:`HttpPool` to share (by default a client of its
    own, httpx)."""

    def __init__(
        self, server: str, token: str, *, client: httpx.AsyncClient | HttpPool | None = None,
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

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str],
                    what: str) -> _Reply:
        try:
            if isinstance(self._client, HttpPool):
                a = await self._client.request("POST", url, headers, body)
                return _Reply(a.status, a.headers, a.body)
            r = await self._client.post(url, content=body, headers=headers)
            return _Reply(r.status_code, r.headers, r.content)
        except HttpConnectionError as exc:
            raise TransportError(f"{what}: {exc}") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{what}: {type(exc).__name__}: {exc}") from None

    async def checkin(self, body: Mapping[str, Any]) -> Offer | None:
        r = await self._post(
            f"{self.server}/device/v1/checkin", json.dumps(dict(body)).encode(),
            {**self._auth, "Content-Type": "application/json"}, "check-in",
        )
        if r.status == 204:
            return None
        if r.status == 200:
            try:
                data = json.loads(r.body)
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
        headers = dict(self._auth)
        if have:
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = f'"{file.sha256}"'
        try:
            if isinstance(self._client, HttpPool):
                async with self._client.stream("GET", file.url, headers) as a:
                    return await self._receive(
                        file, part, have, hook, _Reply(a.status, a.headers, b""), a.chunks, a)
            async with self._client.stream("GET", file.url, headers=headers) as r:
                return await self._receive(
                    file, part, have, hook, _Reply(r.status_code, r.headers, b""), r.aiter_bytes,
                    r)
        except HttpConnectionError as exc:
            raise TransportError(f"GET {file.url}: {exc}") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"GET {file.url}: {type(exc).__name__}: {exc}") from None

    async def _receive(self, file: OfferFile, part: Path, have: int, hook: ChunkHook | None,
                       r: _Reply, chunks: Any, answer: Any) -> int:
        """Write the answer's body into ``part`` from ``have`` on."""
        if r.status == 404:
            raise NotOffered(f"{file.url}: 404")
        if r.status == 416:  # our part is no prefix of theirs
            part.unlink(missing_ok=True)
            raise TransportError(f"{file.url}: range not satisfiable, restarting")
        if r.status == 206:
            start = _content_range_start(r.headers.get("content-range", ""))
            if start != have:
                raise ProtocolError(f"{file.url}: asked from {have}, got {start}")
        elif r.status == 200:
            have = 0  # a full answer (If-Range did not match, or no Range sent)
        else:
            if isinstance(answer, HttpAnswer):
                r.body = b"".join([c async for c in chunks(CHUNK)])
            else:
                r.body = await answer.aread()
            _raise_for(r, f"GET {file.url}")
        received = 0
        with open(part, "r+b" if have else "wb") as f:
            f.seek(have)
            f.truncate()
            try:
                async for chunk in chunks(CHUNK):
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
        if have != file.size:
            raise TransportError(f"{file.url}: cut short at {have} of {file.size} bytes")
        return received

    async def report(self, url: str, signed_report: bytes) -> ReportAck:
        r = await self._post(url, signed_report,
                             {**self._auth, "Content-Type": REPORT_MEDIA_TYPE}, "report")
        if r.status in (200, 201):
            try:
                return ReportAck.from_server(json.loads(r.body))
            except ValueError:
                raise ProtocolError("report: the answer is not JSON") from None
        if r.status in (413, 415, 422):
            raise ReportRefused(r.status, _detail(r))
        _raise_for(r, "report")
        raise AssertionError("unreachable")  # pragma: no cover


def _content_range_start(value: str) -> int:
    # "bytes 100-199/200"
    try:
        unit, rest = value.split(" ", 1)
        return int(rest.split("-", 1)[0]) if unit == "bytes" else -1
    except ValueError:
        return -1
