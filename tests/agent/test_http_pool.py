"""The fleet's small HTTP/1.1 client (:class:`HttpPool`) and the device API over it, against
a scripted server: keep-alive, connections the server closed, body framings, errors."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from suitkit.transport.api import NotOffered, OfferFile, TransportError, Unauthorized
from suitkit.transport.http_client import HttpConnectionError, HttpDeviceApi, HttpPool

Request = dict[str, Any]
Handler = Callable[[Request], Awaitable[bytes | None]]


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None,
           *, length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Scripted:
    """An HTTP/1.1 server on 127.0.0.1 whose answers ``handler`` writes (None: close the
    connection without answering). Records every request with its connection number."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                req = {"conn": conn, "method": method, "target": target, "headers": headers,
                       "body": body}
                self.requests.append(req)
                try:
                    out = await self.handler(req)
                except asyncio.CancelledError:
                    return
                if out is None:
                    return
                writer.write(out)
                await writer.drain()
                if req.get("close"):
                    return
        finally:
            writer.close()


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro
    return asyncio.run(main())


def test_keep_alive_connections_are_reused() -> None:
    async def handler(req: Request) -> bytes:
        return answer(200, json.dumps({"path": req["target"]}).encode(),
                      {"Content-Type": "application/json"})

    async def go() -> None:
        async with Scripted(handler) as srv, HttpPool(connections=4) as pool:
            for i in range(5):
                a = await pool.request("POST", f"{srv.url}/x/{i}?q=1", {"A": "b"}, b"{}")
                assert a.status == 200 and a.json() == {"path": f"/x/{i}?q=1"}
            assert srv.connections == 1
            assert srv.requests[0]["headers"]["host"] == srv.url.removeprefix("http://")
            assert srv.requests[0]["headers"]["a"] == "b"
            assert srv.requests[0]["headers"]["content-length"] == "2"

    run(go())


def test_a_connection_the_server_closed_is_replaced() -> None:
    async def handler(req: Request) -> bytes:
        req["close"] = True  # answer, then close (an idle timeout, say)
        return answer(204)

    async def go() -> None:
        async with Scripted(handler) as srv, HttpPool() as pool:
            for _ in range(3):
                assert (await pool.request("GET", srv.url + "/", {})).status == 204
                await asyncio.sleep(0.01)
            assert srv.connections == 3

    run(go())


def test_a_request_lost_on_a_stale_connection_goes_again() -> None:
    seen: list[int] = []

    async def handler(req: Request) -> bytes | None:
        seen.append(req["conn"])
        if req["conn"] == 1 and len(seen) == 2:
            return None  # the kept-alive connection closes instead of answering
        return answer(200, b"ok")

    async def go() -> None:
        async with Scripted(handler) as srv, HttpPool() as pool:
            assert (await pool.request("GET", srv.url + "/a", {})).body == b"ok"
            assert (await pool.request("GET", srv.url + "/b", {})).body == b"ok"
            assert seen == [1, 1, 2]

    run(go())


def test_no_answer_on_a_new_connection_is_an_error() -> None:
    async def handler(req: Request) -> None:
        return None

    async def go() -> None:
        async with Scripted(handler) as srv, HttpPool() as pool:
            with pytest.raises(HttpConnectionError, match="without an answer"):
                await pool.request("GET", srv.url + "/", {})

    run(go())


def test_chunked_and_close_delimited_bodies() -> None:
    async def handler(req: Request) -> bytes:
        if req["target"] == "/chunked":
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n")
        req["close"] = True
        return answer(200, b"until the end", {"Connection": "close"}, length=False)

    async def go() -> None:
        async with Scripted(handler) as srv, HttpPool() as pool:
            assert (await pool.request("GET", srv.url + "/chunked", {})).body == b"hello, world"
            assert (await pool.request("GET", srv.url + "/chunked", {})).body == b"hello, world"
            assert srv.connections == 1
            async with pool.stream("GET", srv.url + "/eof", {}) as a:
                assert [c async for c in a.chunks(4)] and a.status == 200
            # the kept-alive connection carried it, then closed: a new one
            assert (await pool.request("GET", srv.url + "/eof", {})).body == b"until the end"
            assert srv.connections == 2

    run(go())


def test_timeouts_and_refused_connections() -> None:
    async def handler(req: Request) -> bytes:
        await asyncio.sleep(5)
        return answer(204)

    async def go() -> None:
        async with Scripted(handler) as srv, HttpPool(timeout=0.2) as pool:
            url = srv.url
            with pytest.raises(HttpConnectionError, match="ReadTimeout"):
                await pool.request("GET", url + "/", {})
        async with HttpPool(timeout=1) as pool:
            with pytest.raises(HttpConnectionError, match="ConnectError"):
                await pool.request("GET", url + "/", {})  # the server is gone
            with pytest.raises(HttpConnectionError, match="UnsupportedProtocol"):
                await pool.request("GET", "ftp://example.com/", {})
            with pytest.raises(ValueError):
                await pool.request("GET", url + "/", {"X": "a\r\nInjected: 1"})

    run(go())


def test_the_device_api_over_the_pool(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    sha = hashlib.sha256(data).hexdigest()
    offer = {
        "campaign_id": 1, "release_id": 2, "sequence_number": 3,
        "manifest_digest": "sha-256:" + "00" * 32,
        "envelope": {"url": "", "sha256": sha, "size": len(data)},
        "payloads": [], "members": [], "report_url": "", "report_nonce": "01" * 8,
    }

    async def handler(req: Request) -> bytes:
        token = req["headers"].get("authorization")
        if token != "Bearer tok":
            return answer(401, b'{"detail": "bad token"}')
        if req["target"] == "/device/v1/checkin":
            body = json.loads(req["body"])
            assert req["headers"]["content-type"] == "application/json"
            if body.get("nothing"):
                return answer(204)
            return answer(200, json.dumps(offer).encode())
        if req["target"] == "/device/v1/reports":
            assert req["headers"]["content-type"].startswith("application/cose")
            return answer(201, json.dumps({"report_id": 7, "success": True}).encode())
        if req["target"] == f"/device/v1/files/{sha}":
            rng = req["headers"].get("range")
            if rng:
                start = int(rng.removeprefix("bytes=").rstrip("-"))
                assert req["headers"]["if-range"] == f'"{sha}"'
                return answer(206, data[start:],
                              {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
            return answer(200, data)
        if req["target"] == "/device/v1/boom":
            return answer(500, b"oops")
        return answer(404, b'{"detail": "not offered"}')

    async def go() -> None:
        async with Scripted(handler) as srv, HttpPool() as pool:
            url = srv.url
            offer["envelope"]["url"] = f"{srv.url}/device/v1/files/{sha}"  # type: ignore[index]
            offer["report_url"] = f"{srv.url}/device/v1/reports"
            api = HttpDeviceApi(srv.url, "tok", client=pool, durable=False)
            assert await api.checkin({"nothing": True}) is None
            got = await api.checkin({})
            assert got is not None and got.envelope.sha256 == sha
            # a download cut by the hook, then resumed with Range
            part = tmp_path / "f.part"

            async def cut(offset: int, chunk: bytes) -> bytes:
                if offset == 0:
                    raise TransportError("cut")
                return chunk

            f = got.envelope
            small = OfferFile(f.kind, f.url, f.sha256, f.size)
            part.write_bytes(data[:1000])
            assert await api.download(small, part, cut) == len(data) - 1000
            assert part.read_bytes() == data
            part.unlink()
            with pytest.raises(TransportError, match="cut"):
                await api.download(small, part, cut)
            assert await api.download(small, part) == len(data)
            assert part.read_bytes() == data
            ack = await api.report(got.report_url, b"\xd2\x84")
            assert ack.report_id == 7 and ack.success
            with pytest.raises(NotOffered):
                await api.download(OfferFile("payload", f"{srv.url}/nope", sha, 10), part)
            with pytest.raises(TransportError, match="500"):
                await api.download(OfferFile("payload", f"{srv.url}/device/v1/boom", sha, 10),
                                   tmp_path / "b")
            with pytest.raises(Unauthorized, match="bad token"):
                await HttpDeviceApi(srv.url, "nope", client=pool).checkin({})
            assert srv.connections == 2  # the cut download's connection was closed
        with pytest.raises(TransportError, match="check-in"):
            await HttpDeviceApi(url, "tok", client=HttpPool(timeout=1)).checkin({})

    run(go())
