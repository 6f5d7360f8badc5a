"""A processor fetcher for ``coap://`` (and ``coap+tcp://``) payload URIs.

The processor is synchronous and pulls chunks; aiocoap is asynchronous. The fetcher runs its
own event loop in a daemon thread and streams each payload block by block (RFC 7959 Block2,
1 KiB blocks) through a small bounded queue: memory stays flat whatever the payload size,
and a slow consumer (flash writes) slows the transfer down instead of buffering it. A Size2
above the limit is refused before the first byte is delivered; the ETag must stay the same
across the blocks of one transfer (else the resource changed under us: operation-failed).

``token`` is sent in option 65003 for the suitkit server's CoAP front end (see
:mod:`suitkit.transport.coap_server`); other CoAP servers ignore nothing: an unknown critical
option makes them refuse the request, so leave it unset for them.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from typing import Any

import aiocoap  # type: ignore[import-untyped]
from aiocoap.numbers.optionnumbers import OptionNumber  # type: ignore[import-untyped]

from suitkit.device.fetch import DEFAULT_CHUNK, DEFAULT_MAX_FETCH, FetcherBase
from suitkit.errors import OperationFailedError

__all__ = ["CoapFetcher"]

TOKEN_OPTION = 65003
_END = object()


class CoapFetcher(FetcherBase):
    def __init__(self, *, token: str | None = None, timeout: float = 60.0,
                 max_size: int = DEFAULT_MAX_FETCH, chunk_size: int = DEFAULT_CHUNK) -> None:
        super().__init__(max_size=max_size, chunk_size=chunk_size)
        self.token = token
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ctx: Any = None
        self._lock = threading.Lock()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="coap-fetch",
                                 daemon=True).start()
                self._loop = loop
            return self._loop

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._ctx is not None:
            asyncio.run_coroutine_threadsafe(self._ctx.shutdown(), loop).result(10)
            self._ctx = None
        loop.call_soon_threadsafe(loop.stop)
        self._loop = None

    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        loop = self._start()
        q: queue.Queue[Any] = queue.Queue(maxsize=16)
        fut = asyncio.run_coroutine_threadsafe(self._produce(uri, limit, q), loop)
        try:
            while True:
                item = q.get(timeout=self.timeout + 5)
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        except queue.Empty:
            raise OperationFailedError(f"fetching {uri}: no data for {self.timeout} s") from None
        finally:
            fut.cancel()

    async def _produce(self, uri: str, limit: int, q: queue.Queue[Any]) -> None:
        loop = asyncio.get_running_loop()

        async def put(item: Any) -> None:
            await loop.run_in_executor(None, q.put, item)

        try:
            if self._ctx is None:
                self._ctx = await aiocoap.Context.create_client_context()
            number, szx, etag, total = 0, 6, None, 0
            while True:
                msg = aiocoap.Message(code=aiocoap.GET, uri=uri, block2=(number, False, szx))
                if self.token is not None:
                    msg.opt.add_option(
                        OptionNumber(TOKEN_OPTION).create_option(value=self.token.encode())
                    )
                try:
                    resp = await asyncio.wait_for(
                        asyncio.shield(self._ctx.request(msg, handle_blockwise=False).response),
                        self.timeout,
                    )
                except (TimeoutError, aiocoap.error.Error, OSError) as exc:
                    raise OperationFailedError(f"GET {uri}: {type(exc).__name__}: {exc}") from None
                if resp.code != aiocoap.CONTENT:
                    raise OperationFailedError(f"GET {uri} answered {resp.code}")
                if number == 0 and resp.opt.size2 is not None and resp.opt.size2 > limit:
                    raise OperationFailedError(
                        f"payload at {uri} announces {resp.opt.size2} bytes, more than the "
                        f"{limit} accepted: refused before the first byte"
                    )
                if etag is None:
                    etag = resp.opt.etag
                elif resp.opt.etag != etag:
                    raise OperationFailedError(f"{uri} changed during the transfer (ETag)")
                payload = bytes(resp.payload)
                total += len(payload)
                if total > limit:
                    raise OperationFailedError(f"payload at {uri} is larger than {limit} bytes")
                if payload:
                    await put(payload)
                b2 = resp.opt.block2
                if b2 is None or not b2.more:
                    break
                if b2.size_exponent > 6:
                    raise OperationFailedError(f"{uri}: BERT block in a UDP transfer")
                # the server may answer with smaller blocks than asked: continue in those
                szx, number = b2.size_exponent, b2.block_number + 1
            await put(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await put(exc)
