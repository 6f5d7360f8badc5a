"""The CoAP server's message layer: a duplicate GET is processed again rather than answered from
a kept response (RFC 7252 §4.5), so that serving a payload block by block keeps no state per
block; other methods keep aiocoap's deduplication (§4.2)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiocoap  # type: ignore[import-untyped]
import aiocoap.resource  # type: ignore[import-untyped]

from suitkit.transport.coap_server import relax_get_deduplication


class _Counting(aiocoap.resource.Resource):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.posts = 0

    async def render_get(self, request: Any) -> Any:
        self.gets += 1
        return aiocoap.Message(payload=b"block")

    async def render_post(self, request: Any) -> Any:
        self.posts += 1
        return aiocoap.Message(code=aiocoap.CHANGED, payload=b"done")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _exchange(port: int, raw: bytes, answers: int) -> list[aiocoap.Message]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", port))
    try:
        out = []
        for _ in range(answers):
            await loop.sock_sendall(sock, raw)  # the same Message ID: a retransmission
            data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
            out.append(aiocoap.Message.decode(data))
        return out
    finally:
        sock.close()


def _request(code: Any, mid: int) -> bytes:
    m = aiocoap.Message(code=code, uri_path=("r",))
    m.mtype, m.mid, m.token = aiocoap.CON, mid, b"\x01\x02"
    raw: bytes = m.encode()
    return raw


def _run(check: Any) -> None:
    async def main() -> None:
        site = aiocoap.resource.Site()
        resource = _Counting()
        site.add_resource(["r"], resource)
        port = _free_udp_port()
        ctx = await aiocoap.Context.create_server_context(
            site, bind=("127.0.0.1", port), transports=["udp6"]
        )
        try:
            assert relax_get_deduplication(ctx) == 1
            assert relax_get_deduplication(ctx) == 0  # applied once only
            await check(ctx, port, resource)
        finally:
            await ctx.shutdown()

    asyncio.run(main())


def _recent(ctx: Any) -> dict[Any, Any]:
    layer = ctx.request_interfaces[0].token_interface
    recent: dict[Any, Any] = layer._recent_messages
    return recent


def test_a_duplicate_get_is_processed_again_and_keeps_no_response_rfc7252_4_5() -> None:
    async def check(ctx: Any, port: int, resource: _Counting) -> None:
        answers = await _exchange(port, _request(aiocoap.GET, 0x1234), 2)
        assert [a.payload for a in answers] == [b"block", b"block"]
        assert all(a.mid == 0x1234 and a.mtype == aiocoap.ACK for a in answers)
        assert resource.gets == 2
        assert _recent(ctx) == {}  # nothing kept for 247 s per block

    _run(check)


def test_a_duplicate_post_is_still_answered_from_the_kept_response_rfc7252_4_2() -> None:
    async def check(ctx: Any, port: int, resource: _Counting) -> None:
        answers = await _exchange(port, _request(aiocoap.POST, 0x4321), 2)
        assert [a.payload for a in answers] == [b"done", b"done"]
        assert resource.posts == 1  # the retransmission got the same response, not a new run
        assert len(_recent(ctx)) == 1

    _run(check)
