"""HTTP plumbing: request body limits, blob downloads (Range, ETag), and the access log.

:class:`BodyLimit` refuses a request body larger than its route allows with 413, before the
body is read when ``Content-Length`` announces it, and as soon as the limit is passed when
it does not (chunked uploads): nothing of it reaches a handler or the disk.

:func:`blob_response` streams a stored blob from disk in chunks (never loading it whole),
with a strong ``ETag`` (the SHA-256), ``Content-Length``, ``Accept-Ranges: bytes``; a
``Range`` request (resume) gets 206 with ``Content-Range`` (or 416), ``If-Range`` is honoured,
and ``If-None-Match`` gets 304.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from suitkit.server import logs
from suitkit.server.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """ASGI middleware: ``limit_for(method, path)`` bytes at most per request body."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    await _send_json(send, 400, {"detail": "invalid Content-Length"})
                    return
                if int(value) > limit:
                    await _send_json(
                        send, 413, {"detail": f"the request body is larger than {limit} bytes"}
                    )
                    return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except _TooLarge:
            if started:
                raise
            await _send_json(
                send, 413, {"detail": f"the request body is larger than {limit} bytes"}
            )


class AccessLog:
    """ASGI middleware: one JSON log line and the request metrics per HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics, enabled: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.enabled = enabled
        self.log = logs.get("access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path_format = getattr(route, "path_format", None) or "unmatched"
            self.metrics.requests.inc(path_format, scope["method"], str(status))
            self.metrics.latency.observe(elapsed, path_format)
            if self.enabled:
                client = scope.get("client")
                self.log.info(
                    "request",
                    extra=logs.fields(
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                        client=client[0] if client else None,
                    ),
                )


CHUNK = 1 << 20  # bytes read from disk at a time: a bounded buffer, whatever the file size


@dataclass(frozen=True, slots=True)
class Plan:
    """What to answer to a download, decided from its headers and the file's size and tag."""

    status: int  # 200, 206, 304 or 416
    start: int = 0
    end: int = 0  # exclusive


def plan(
    size: int, etag: str, range_header: str | None, if_range: str | None, if_none_match: str | None
) -> Plan:
    """RFC 9110: If-None-Match (304), then a single byte range (206, or 416 when it starts
    past the end), honoured only if If-Range names the current tag. A Range that is not a
    single valid byte range is ignored (the whole file is sent), as §14.2 allows."""
    if if_none_match is not None and (
        if_none_match.strip() == "*" or etag in [t.strip() for t in if_none_match.split(",")]
    ):
        return Plan(304)
    full = Plan(200, 0, size)
    if range_header is None or (if_range is not None and if_range.strip() != etag):
        return full
    unit, _, spec = range_header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return full
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return full
    if first.isdigit():
        start = int(first)
        end = int(last) + 1 if last.isdigit() else size
        if last.isdigit() and int(last) < start:
            return full
        if start >= size:
            return Plan(416)
        return Plan(206, start, min(end, size))
    suffix = int(last)
    if suffix == 0:
        return Plan(416)
    return Plan(206, max(0, size - suffix), size)


class BlobStream(Response):
    """Streams ``[start, end)`` of a file, given open (``first`` was read already, by the
    request's worker thread, with the access check) or as a path (opened only when sent: a
    response that is never sent holds no file); the rest is read chunk by chunk in worker
    threads. The file descriptor is closed at the end, whatever happens."""

    def __init__(
        self,
        source: int | Path,
        first: bytes,
        p: Plan,
        size: int,
        headers: dict[str, str],
        media_type: str,
        head_only: bool,
    ) -> None:
        super().__init__(status_code=p.status, headers=headers, media_type=media_type)
        self.source, self.first, self.p, self.head_only = source, first, p, head_only
        self.headers["content-length"] = str(p.end - p.start)
        if p.status == 206:
            self.headers["content-range"] = f"bytes {p.start}-{p.end - 1}/{size}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if isinstance(self.source, int):
            fd = self.source
        elif self.head_only:
            fd = -1
        else:
            fd = await run_in_threadpool(os.open, self.source, os.O_RDONLY)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if self.head_only:
                await send({"type": "http.response.body", "body": b""})
                return
            pos = self.p.start + len(self.first)
            await send(
                {"type": "http.response.body", "body": self.first, "more_body": pos < self.p.end}
            )
            while pos < self.p.end:
                chunk = await run_in_threadpool(os.pread, fd, min(CHUNK, self.p.end - pos), pos)
                if not chunk:
                    raise RuntimeError("the blob is shorter than its recorded size")
                pos += len(chunk)
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": pos < self.p.end}
                )
        finally:
            if fd >= 0:
                os.close(fd)


DOWNLOAD_HEADERS = {
    "accept-ranges": "bytes",
    "cache-control": "private, max-age=31536000, immutable",
}


def blob_response(
    request: Request, path: Path, sha256: str, size: int, media_type: str
) -> Response:
    """A whole-blob download for operators (``/api/v1``): plan, open, stream."""
    etag = f'"{sha256}"'
    p = plan(
        size,
        etag,
        request.headers.get("range"),
        request.headers.get("if-range"),
        request.headers.get("if-none-match"),
    )
    headers = {**DOWNLOAD_HEADERS, "etag": etag}
    if p.status == 304:
        return Response(status_code=304, headers=headers)
    if p.status == 416:
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
    return BlobStream(path, b"", p, size, headers, media_type, request.method == "HEAD")
