"""The device API over CoAP with aiocoap (see :mod:`suitkit.transport.coap_server` for the
resources and for why the device token travels in option 65003, and why production
deployments must use DTLS or OSCORE instead).

Downloads are block-wise (RFC 7959 Block2), written to the partial file block by block as
they arrive, never assembled in memory. A static resource may be read in any block order
(RFC 7959 §2.4), so up to ``window`` block requests are in flight at once (only the blocks
received out of order wait in memory, at most ``window`` of them): on a lock-step link each
1 KiB block costs a round trip, in flight together they cost one. A transfer cut short
resumes at the first missing block. Over ``coap+tcp://`` the client asks for BERT blocks
(RFC 8323 §6: SZX 7, several KiB per message). Every block must carry the ETag of the file
the offer names (the first 8 bytes of its SHA-256): a different one means the server's file is
not the one the device started with, and the download starts again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiocoap  # type: ignore[import-untyped]
from aiocoap.numbers.optionnumbers import OptionNumber  # type: ignore[import-untyped]

from suitkit.format import cbor
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

__all__ = ["CoapDeviceApi", "new_context"]

TOKEN_OPTION = 65003  # as in suitkit.transport.coap_server (which imports the server)
CF_CBOR = 60
CF_COSE_SIGN1 = 18
UNIT = 1024


async def new_context() -> Any:
    """A client context (UDP and TCP)."""
    return await aiocoap.Context.create_client_context()


def _code_class(code: Any) -> int:
    return int(code) >> 5


def _text(resp: Any) -> str:
    try:
        return bytes(resp.payload).decode("utf-8", "replace")[:300]
    except Exception:  # pragma: no cover - defensive
        return ""


def _raise_for(resp: Any, what: str) -> None:
    code = resp.code
    if code in (aiocoap.UNAUTHORIZED, aiocoap.FORBIDDEN):
        raise Unauthorized(f"{what}: {code} {_text(resp)}")
    if _code_class(code) == 5:
        raise TransportError(f"{what}: server error {code} {_text(resp)}")
    raise ProtocolError(f"{what}: unexpected answer {code} {_text(resp)}")


class CoapDeviceApi:
    """The device API at ``base`` (``coap://host:port`` or ``coap+tcp://host:port``) for the
    device holding ``token``. A fleet shares one aiocoap context (``context``)."""

    def __init__(self, base: str, token: str, *, context: Any = None, durable: bool = True,
                 window: int = 16, timeout: float = 60.0) -> None:
        self.base = base.rstrip("/")
        self._token = token.encode()
        self._ctx = context
        self._own = context is None
        self.durable = durable
        self.window = max(1, window)
        self.timeout = timeout

    async def _context(self) -> Any:
        if self._ctx is None:
            self._ctx = await new_context()
        return self._ctx

    async def aclose(self) -> None:
        if self._own and self._ctx is not None:
            await self._ctx.shutdown()
            self._ctx = None

    def _message(self, code: Any, uri: str, payload: bytes = b"", **options: Any) -> Any:
        msg = aiocoap.Message(code=code, uri=uri, payload=payload, **options)
        msg.opt.add_option(OptionNumber(TOKEN_OPTION).create_option(value=self._token))
        return msg

    async def _request(self, msg: Any, what: str, *, blockwise: bool = True) -> Any:
        ctx = await self._context()
        try:
            # shielded: cancelling aiocoap's response future makes it fail on the late answer
            return await asyncio.wait_for(
                asyncio.shield(ctx.request(msg, handle_blockwise=blockwise).response),
                self.timeout,
            )
        except (TimeoutError, aiocoap.error.Error, OSError) as exc:
            raise TransportError(f"{what}: {type(exc).__name__}: {exc}") from None

    # --- check-in ---

    async def checkin(self, body: Mapping[str, Any]) -> Offer | None:
        msg = self._message(aiocoap.POST, f"{self.base}/device/v1/checkin",
                            cbor.dumps(dict(body)), content_format=CF_CBOR)
        resp = await self._request(msg, "check-in")
        if resp.code == aiocoap.CHANGED:
            if not resp.payload:
                return None
            try:
                data = cbor.loads(bytes(resp.payload), what="offer", path="offer")
            except Exception as exc:
                raise ProtocolError(f"check-in: the offer is not CBOR: {exc}") from None
            if not isinstance(data, dict):
                raise ProtocolError("check-in: the offer is not a map")
            return Offer.from_server(data)
        _raise_for(resp, "check-in")
        raise AssertionError("unreachable")  # pragma: no cover

    # --- downloads ---

    async def _block(self, url: str, offset: int, bert: bool) -> tuple[int, Any]:
        msg = self._message(aiocoap.GET, url, block2=(offset // UNIT, False, 7 if bert else 6))
        return offset, await self._request(msg, f"GET {url}", blockwise=False)

    async def download(self, file: OfferFile, part: Path, hook: ChunkHook | None = None) -> int:
        have = part.stat().st_size if part.exists() else 0
        if have > file.size:
            part.unlink()
            have = 0
        if have == file.size:
            return 0
        have -= have % UNIT  # resume at a block boundary
        etag = bytes.fromhex(file.sha256)[:8]
        bert = file.url.startswith("coap+tcp://")
        received = 0
        with open(part, "r+b" if part.exists() else "wb") as f:
            f.seek(have)
            f.truncate()
            try:
                received = await self._fetch_blocks(file, f, have, etag, bert, hook)
            finally:
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
        return received

    def _check(self, file: OfferFile, offset: int, resp: Any, etag: bytes) -> bytes:
        if resp.code == aiocoap.NOT_FOUND:
            raise NotOffered(f"{file.url}: 4.04 {_text(resp)}")
        if resp.code != aiocoap.CONTENT:
            _raise_for(resp, f"GET {file.url}")
        if resp.opt.etag is not None and resp.opt.etag != etag:
            raise ProtocolError(f"{file.url}: the server's file changed (ETag), restarting")
        b2 = resp.opt.block2
        payload = bytes(resp.payload)
        # aiocoap's request and response objects sit in reference cycles that only the cyclic
        # GC frees, late: without this, up to hundreds of blocks (64 KiB each over BERT) would
        # stay alive and the client's memory would grow with the payload size.
        resp.payload = b""
        if b2 is None:
            if offset != 0:
                raise ProtocolError(f"{file.url}: no Block2 in a block answer")
            return payload
        start = b2.block_number * (UNIT if b2.size_exponent == 7 else b2.size)
        if start != offset:
            raise ProtocolError(f"{file.url}: asked for byte {offset}, got block at {start}")
        if offset + len(payload) > file.size:
            raise ProtocolError(f"{file.url}: more than {file.size} bytes")
        if not b2.more and offset + len(payload) != file.size:
            raise ProtocolError(f"{file.url}: last block ends at {offset + len(payload)}, "
                                f"not {file.size}")
        return payload

    async def _fetch_blocks(self, file: OfferFile, f: Any, have: int, etag: bytes, bert: bool,
                            hook: ChunkHook | None) -> int:
        received = 0
        # the first block tells the block size the server uses (1 KiB, or a BERT size)
        offset, resp = await self._block(file.url, have, bert)
        chunk = self._check(file, offset, resp, etag)
        if not chunk and have < file.size:
            raise ProtocolError(f"{file.url}: empty block at {have}")
        step = len(chunk)
        pending: dict[int, bytes] = {}
        tasks: dict[int, asyncio.Task[tuple[int, Any]]] = {}
        nxt = have + step  # the next offset to request

        async def deliver(at: int, data: bytes) -> None:
            nonlocal have, received
            if hook is not None:
                data = await hook(at, data)
            f.write(data)
            have += len(data)
            received += len(data)

        try:
            await deliver(offset, chunk)
            while have < file.size:
                while nxt < file.size and len(tasks) + len(pending) < self.window:
                    tasks[nxt] = asyncio.create_task(self._block(file.url, nxt, bert))
                    nxt += step
                if have in pending:
                    await deliver(have, pending.pop(have))
                    continue
                done, _ = await asyncio.wait(tasks.values(),
                                             return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    at, resp = t.result()
                    del tasks[at]
                    pending[at] = self._check(file, at, resp, etag)
                    if len(pending[at]) != step and at + len(pending[at]) != file.size:
                        raise ProtocolError(f"{file.url}: block at {at} has "
                                            f"{len(pending[at])} bytes, not {step}")
        finally:
            # blocks still in flight are awaited, not cancelled (see _request), and dropped
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        return received

    # --- reports ---

    async def report(self, url: str, signed_report: bytes) -> ReportAck:
        msg = self._message(aiocoap.POST, url, signed_report, content_format=CF_COSE_SIGN1)
        resp = await self._request(msg, "report")
        if resp.code in (aiocoap.CREATED, aiocoap.CHANGED):
            try:
                data = cbor.loads(bytes(resp.payload), what="report answer", path="ack")
            except Exception as exc:
                raise ProtocolError(f"report: the answer is not CBOR: {exc}") from None
            if not isinstance(data, dict):
                raise ProtocolError("report: the answer is not a map")
            return ReportAck.from_server(data)
        status = {aiocoap.REQUEST_ENTITY_TOO_LARGE: 413,
                  aiocoap.UNSUPPORTED_CONTENT_FORMAT: 415,
                  aiocoap.numbers.codes.Code.UNPROCESSABLE_ENTITY: 422}.get(resp.code)
        if status is not None:
            raise ReportRefused(status, _text(resp))
        _raise_for(resp, "report")
        raise AssertionError("unreachable")  # pragma: no cover
