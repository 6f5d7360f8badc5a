"""The device API over CoAP (RFC 7252, aiocoap), next to the HTTP server, over the same
database and blob store (``suitkit.server``'s own state and request handlers).

Resources (the HTTP API's paths, CBOR instead of JSON):

- ``POST /device/v1/checkin``: the CheckIn as a CBOR map (Content-Format 60); the answer is
  2.04 Changed with the Offer as a CBOR map whose URLs are ``coap://`` URIs of this server
  (``coap+tcp://`` for a device that checks in over TCP),
  or 2.04 with an empty payload when there is nothing to do;
- ``GET /device/v1/files/{sha256}``: block-wise (RFC 7959 Block2; BERT blocks of up to
  64 KiB over ``coap+tcp``, RFC 8323), each block read from the stored blob at its offset,
  never the whole file; ETag (the first 8 bytes of the SHA-256, the option's maximum length)
  on every block, Size2 on the first; a GET carrying the current ETag is answered 2.03 Valid;
- ``POST /device/v1/reports``: the signed SUIT_Report (Content-Format 18, COSE_Sign1),
  block-wise (Block1) when it does not fit one message, assembled in a bounded spool (at most
  ``max-report`` bytes) before it reaches the report handler.

**Authentication: a per-device bearer token in a CoAP option.** Every request carries the
device's API token (the one the HTTP API takes as ``Authorization: Bearer``) in option 65003
(``Device-Token``, experimental-use range of RFC 7252 §12.2; critical and unsafe, so that a
server or proxy that does not know it refuses the request instead of ignoring it). Why not
OSCORE (RFC 8613), the CoAP-native way: it needs a security context (master secret, sender
and recipient ids) provisioned per device and kept in step on both sides, a provisioning flow
this service does not have yet, and aiocoap's OSCORE support needs extra packages (its
``oscore`` extra) that suitkit does not depend on; DTLS needs tinydtls bindings likewise. A
bearer token over loopback is what can be run and tested here. **It is not a production
security posture:** a token in clear over UDP can be read and replayed by anyone on the path.
Production deployments must run CoAP over DTLS (``coaps://``) or protect it with OSCORE, as
RFC 9019 §3 requires of the transport between device and server. The signed reports and the
signed manifests stay end-to-end authentic either way; the token only identifies the caller.

Run it inside the server, ``suitkit serve --coap-port 5683`` (``coap-port`` in the config
file, ``SUITKIT_COAP_PORT``: the app lifespan calls :func:`start_coap` with the server's
``ServerState``, on the HTTP ``--host``; with ``--workers N`` every worker binds the port with
``SO_REUSEPORT``), or as a process of its own beside ``suitkit serve``::

    python -m suitkit.transport.coap_server --data DIR [--db URL] --port 5683

The request handlers are ``suitkit.server.api_device``'s (check-in, download authorisation
and state change, report ingestion), called with a minimal request object, so that both
transports apply the very same rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiocoap  # type: ignore[import-untyped]
import aiocoap.resource  # type: ignore[import-untyped]
from aiocoap.optiontypes import BlockOption  # type: ignore[import-untyped]

from suitkit.format import cbor

if TYPE_CHECKING:
    from suitkit.server.auth import DeviceCaller
    from suitkit.server.state import ServerState

__all__ = ["CF_CBOR", "CF_COSE_SIGN1", "CF_OCTETS", "TOKEN_OPTION", "CoapServer", "start_coap"]

#: The device-token option (experimental-use range; critical, unsafe-to-forward).
TOKEN_OPTION = 65003
CF_OCTETS = 42
CF_CBOR = 60
CF_COSE_SIGN1 = 18
#: Largest BERT block served: bounds what a client with a window of requests in flight holds.
BERT_BLOCK = 64 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger("suitkit.coap")

_STATUS = {
    400: aiocoap.BAD_REQUEST,
    401: aiocoap.UNAUTHORIZED,
    403: aiocoap.FORBIDDEN,
    404: aiocoap.NOT_FOUND,
    409: aiocoap.BAD_REQUEST,
    413: aiocoap.REQUEST_ENTITY_TOO_LARGE,
    415: aiocoap.UNSUPPORTED_CONTENT_FORMAT,
    422: aiocoap.numbers.codes.Code.UNPROCESSABLE_ENTITY,
}


def _error(status: int, message: str) -> aiocoap.Message:
    code = _STATUS.get(status, aiocoap.INTERNAL_SERVER_ERROR if status >= 500
                       else aiocoap.BAD_REQUEST)
    return aiocoap.Message(code=code, payload=message.encode()[:1000])


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _http_error(exc: Exception) -> _Refused:
    status = int(getattr(exc, "status_code", 500))
    detail = getattr(exc, "detail", str(exc))
    if isinstance(detail, dict):
        detail = detail.get("message", str(detail))
    return _Refused(status, str(detail))


class _Request:
    """What ``suitkit.server.api_device``'s handlers read from a request."""

    def __init__(self, state: ServerState, base_url: str, method: str = "POST",
                 headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.app = SimpleNamespace(state=SimpleNamespace(suitkit=state))
        self.base_url = base_url
        self.method = method
        self.headers = headers or {}
        self._body = body

    async def body(self) -> bytes:
        return self._body


@dataclass
class _Grant:
    path: Path
    size: int
    expires: float


class CoapServer:
    """The aiocoap site over a ``ServerState``."""

    def __init__(self, state: ServerState, public_url: str, *, grant_ttl: float = 30.0,
                 local_base: bool = False) -> None:
        self.state = state
        self.public_url = public_url.rstrip("/")
        # offer URLs on the address each request came in on (a wildcard bind, no public URL)
        self.local_base = local_base
        self.grant_ttl = grant_ttl
        self._grants: dict[tuple[str, str], _Grant] = {}
        self._devices: dict[str, tuple[DeviceCaller, float]] = {}
        self._spool: dict[tuple[Any, bytes], tuple[bytearray, float]] = {}
        self.context: Any = None
        self.site = aiocoap.resource.Site()
        self.site.add_resource(("device", "v1", "checkin"), _Checkin(self))
        self.site.add_resource(("device", "v1", "reports"), _Reports(self))
        self.site.add_resource(("device", "v1", "files"), _Files(self))

    # --- authentication ---

    async def device(self, request: aiocoap.Message) -> DeviceCaller:
        opts = request.opt.get_option(TOKEN_OPTION)
        if not opts:
            raise _Refused(401, "a device token is required (option 65003)")
        try:
            token = bytes(opts[0].value).decode()
        except UnicodeDecodeError:
            raise _Refused(401, "the device token is not text") from None
        cached = self._devices.get(token)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        from fastapi import HTTPException
        from fastapi.security import HTTPAuthorizationCredentials

        from suitkit.server.auth import device_caller

        creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        try:
            caller = await asyncio.to_thread(
                device_caller, _Request(self.state, self.public_url), creds  # type: ignore[arg-type]
            )
        except HTTPException as exc:
            raise _http_error(exc) from None
        if len(self._devices) > 100_000:
            self._devices.clear()
        # short: a revoked or rotated token stops working within a second
        self._devices[token] = (caller, now + 1.0)
        return caller

    # --- check-in ---

    async def checkin(self, request: aiocoap.Message) -> aiocoap.Message:
        from fastapi import HTTPException, Response
        from pydantic import ValidationError

        from suitkit.server.api_device import checkin as http_checkin
        from suitkit.server.schemas import CheckIn

        device = await self.device(request)
        try:
            data = cbor.loads(request.payload, what="check-in", path="checkin")
            body = CheckIn.model_validate(data)
        except (ValidationError, Exception) as exc:
            raise _Refused(400, f"the check-in is not a valid CBOR CheckIn map: {exc}") from None
        try:
            answer = await asyncio.to_thread(
                http_checkin, body, _Request(self.state, self.public_url),  # type: ignore[arg-type]
                device,
            )
        except HTTPException as exc:
            raise _http_error(exc) from None
        if isinstance(answer, Response):
            return aiocoap.Message(code=aiocoap.CHANGED)
        offer = answer.model_dump(mode="json")
        base = self.public_url
        if self.local_base:
            with contextlib.suppress(Exception):  # aiocoap: AnonymousHost, ValueError
                base = str(request.remote.uri_base_local).rstrip("/")
        scheme = getattr(request.remote, "scheme", "coap")
        if scheme != "coap" and base.startswith("coap://"):  # answer in the caller's transport
            base = f"{scheme}://{base.removeprefix('coap://')}"
        offer["envelope"]["url"] = f"{base}/device/v1/files/{offer['envelope']['sha256']}"
        for item in (*offer["members"], *offer["payloads"]):
            item["url"] = f"{base}/device/v1/files/{item['sha256']}"
        offer["report_url"] = f"{base}/device/v1/reports"
        offer["report_nonce"] = bytes.fromhex(offer["report_nonce"])
        return aiocoap.Message(code=aiocoap.CHANGED, payload=cbor.dumps(offer),
                               content_format=CF_CBOR)

    # --- downloads ---

    async def grant(self, device: DeviceCaller, sha256: str) -> _Grant:
        """Authorise a download (and move the deployment to downloading) once per transfer:
        the HTTP handler's rules, then cached for ``grant_ttl`` seconds."""
        key = (device.device_id, sha256)
        now = time.monotonic()
        g = self._grants.get(key)
        if g is not None and g.expires > now:
            return g
        from fastapi import HTTPException

        from suitkit.server.api_device import download

        # a GET as far as the handler's bookkeeping goes (state change, download metrics);
        # the response object it builds is not used: the blocks are served below
        req = _Request(self.state, self.public_url, method="GET")
        try:
            await asyncio.to_thread(download, sha256, req, device)  # type: ignore[arg-type]
        except HTTPException as exc:
            raise _http_error(exc) from None
        path = self.state.blobs.path(sha256)
        g = _Grant(path, path.stat().st_size, now + self.grant_ttl)
        if len(self._grants) > 100_000:
            self._grants = {k: v for k, v in self._grants.items() if v.expires > now}
        self._grants[key] = g
        return g

    async def file(self, request: aiocoap.Message) -> aiocoap.Message:
        path = request.opt.uri_path
        if len(path) != 1 or not _HEX64.fullmatch(path[0]):
            raise _Refused(404, "no such file")
        sha256 = path[0]
        device = await self.device(request)
        g = await self.grant(device, sha256)
        etag = bytes.fromhex(sha256)[:8]
        if etag in request.opt.etags:
            return aiocoap.Message(code=aiocoap.VALID, etag=etag)
        remote = request.remote
        block2 = request.opt.block2
        max_szx = remote.maximum_block_size_exp
        if block2 is None:
            block2 = BlockOption.BlockwiseTuple(0, False, max_szx)
        elif block2.size_exponent > max_szx:
            block2 = block2.reduced_to(max_szx)
        if block2.size_exponent == 7:  # BERT: several 1 KiB units per message (RFC 8323)
            start = block2.block_number * 1024
            room = 1024 * ((remote.maximum_payload_size - 100) // 1024)
            size = max(1024, min(BERT_BLOCK, room))
        else:
            size = 2 ** (block2.size_exponent + 4)
            start = block2.block_number * size
        if start > g.size or (start == g.size and g.size > 0):
            raise _Refused(400, "block out of range")
        chunk = await _pread(g.path, start, min(size, g.size - start))
        more = start + len(chunk) < g.size
        msg = aiocoap.Message(
            code=aiocoap.CONTENT, payload=chunk, content_format=CF_OCTETS, etag=etag,
            block2=(block2.block_number, more, block2.size_exponent),
        )
        if block2.block_number == 0:
            msg.opt.size2 = g.size
        return msg

    # --- reports ---

    async def report(self, request: aiocoap.Message) -> aiocoap.Message:
        from fastapi import HTTPException, Response

        from suitkit.server.api_device import upload_report

        device = await self.device(request)
        limit = self.state.settings.max_report
        block1 = request.opt.block1
        data: bytes = request.payload
        if block1 is not None:
            key = (request.remote.blockwise_key, request.opt.get_option(TOKEN_OPTION)[0].value)
            now = time.monotonic()
            self._spool = {k: v for k, v in self._spool.items() if v[1] > now} \
                if len(self._spool) > 1000 else self._spool
            if block1.block_number == 0:
                buf = bytearray()
            else:
                entry = self._spool.get(key)
                if entry is None:
                    return aiocoap.Message(code=aiocoap.REQUEST_ENTITY_INCOMPLETE)
                buf = entry[0]
            offset = block1.block_number * (1024 if block1.size_exponent == 7 else block1.size)
            if offset != len(buf):
                self._spool.pop(key, None)
                return aiocoap.Message(code=aiocoap.REQUEST_ENTITY_INCOMPLETE)
            if len(buf) + len(request.payload) > limit:
                self._spool.pop(key, None)
                raise _Refused(413, f"the report is larger than {limit} bytes")
            buf += request.payload
            if block1.more:
                self._spool[key] = (buf, now + 60.0)
                return aiocoap.Message(code=aiocoap.CONTINUE, block1=block1)
            self._spool.pop(key, None)
            data = bytes(buf)
        elif len(data) > limit:
            raise _Refused(413, f"the report is larger than {limit} bytes")
        cf = request.opt.content_format
        ctype = "application/cose" if cf in (None, CF_COSE_SIGN1) else (
            "application/cbor" if cf == CF_CBOR else "application/octet-stream"
            if cf == CF_OCTETS else "unsupported")
        req = _Request(self.state, self.public_url, headers={"content-type": ctype}, body=data)
        resp = Response()
        try:
            ack = await upload_report(req, device, resp)  # type: ignore[arg-type]
        except HTTPException as exc:
            raise _http_error(exc) from None
        code = aiocoap.CHANGED if resp.status_code == 200 else aiocoap.CREATED
        out = aiocoap.Message(code=code, payload=cbor.dumps(ack.model_dump(mode="json")),
                              content_format=CF_CBOR)
        if block1 is not None:
            out.opt.block1 = block1
        return out

    # --- running ---

    async def start(self, host: str, port: int, *, tcp: bool = True) -> None:
        transports = ["udp6", "tcpserver"] if tcp else ["udp6"]
        self.context = await aiocoap.Context.create_server_context(
            self.site, bind=(host, port), transports=transports
        )
        relax_get_deduplication(self.context)

    async def shutdown(self) -> None:
        if self.context is not None:
            await self.context.shutdown()
            self.context = None


def relax_get_deduplication(context: Any) -> int:
    """Process a duplicate GET again instead of keeping its response (RFC 7252 §4.5).

    Over UDP, aiocoap remembers every request's Message ID and keeps its response for
    EXCHANGE_LIFETIME (247 s) so that a retransmitted CON gets the very same answer. For a
    block-wise download that is every 1 KiB block of the payload, each kept with its message
    objects (~4 KiB a block): the server's memory would grow with the payload size (45 MB for
    8 MiB). §4.5 allows a server to "process duplicate transmissions of a GET ... request as
    separate requests if the effort incurred by duplicate processing is less expensive than
    keeping track of previous responses": a block is a pread at an offset of a stored blob,
    the same bytes every time, so a GET is never deduplicated here. Other methods (check-in,
    report upload) keep aiocoap's deduplication. Returns how many message layers were changed
    (0 for transports without one, such as coap+tcp, which needs no deduplication)."""
    changed = 0
    for interface in getattr(context, "request_interfaces", ()):
        layer: Any = getattr(interface, "token_interface", None)
        original = getattr(layer, "_deduplicate_message", None)
        if original is None or getattr(original, "_suitkit_relaxed", False):
            continue

        def deduplicate(message: Any, _original: Any = original) -> bool:
            if message.code is aiocoap.GET:
                return False  # a new request: rendered again (idempotent, §4.5)
            result: bool = _original(message)
            return result

        deduplicate._suitkit_relaxed = True  # type: ignore[attr-defined]
        layer._deduplicate_message = deduplicate
        changed += 1
    return changed


async def _pread(path: Path, offset: int, length: int) -> bytes:
    if length <= 64 * 1024:
        return _pread_sync(path, offset, length)  # a page-cache read: not worth a thread
    return await asyncio.to_thread(_pread_sync, path, offset, length)


def _pread_sync(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


class _Resource(aiocoap.resource.Resource):  # type: ignore[misc]
    def __init__(self, server: CoapServer) -> None:
        super().__init__()
        self.server = server

    async def needs_blockwise_assembly(self, request: Any) -> bool:
        return False  # every resource handles its own blocks

    async def _guard(self, fn: Any, request: Any) -> Any:
        try:
            return await fn(request)
        except _Refused as exc:
            return _error(exc.status, exc.message)
        except Exception as exc:  # one line in the log, 5.00 to the device
            log.exception("CoAP request failed")
            return _error(500, f"internal error: {type(exc).__name__}")


class _Checkin(_Resource):
    async def render_post(self, request: Any) -> Any:
        return await self._guard(self.server.checkin, request)


class _Reports(_Resource):
    async def render_post(self, request: Any) -> Any:
        return await self._guard(self.server.report, request)


class _Files(_Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    async def render_get(self, request: Any) -> Any:
        return await self._guard(self.server.file, request)


async def start_coap(state: ServerState, host: str = "127.0.0.1", port: int = 5683, *,
                     public_url: str | None = None, tcp: bool = True) -> CoapServer:
    """Serve the device API over CoAP (UDP, and TCP unless ``tcp=False``) on ``host:port``
    with the server's state; ``await server.shutdown()`` stops it."""
    url = public_url or f"coap://{host if ':' not in host else '[' + host + ']'}:{port}"
    wildcard = public_url is None and host in ("", "0.0.0.0", "::")
    server = CoapServer(state, url, local_base=wildcard)
    await server.start(host, port, tcp=tcp)
    return server


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - exercised as a process
    parser = argparse.ArgumentParser(
        prog="python -m suitkit.transport.coap_server",
        description="The suitkit device API over CoAP, beside `suitkit serve` (same --data "
        "and --db). Settings not given here come from SUITKIT_* variables and --config.",
    )
    parser.add_argument("--data", type=Path)
    parser.add_argument("--db")
    parser.add_argument("--trust", type=Path, action="append")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5683)
    parser.add_argument("--public-url", help="coap:// base URL devices download from")
    parser.add_argument("--no-tcp", action="store_true", help="UDP only (no coap+tcp)")
    parser.add_argument("--ready-file", type=Path, help="Touched once listening (tests)")
    args = parser.parse_args(argv)
    from suitkit.server.app import build_state
    from suitkit.server.config import load_settings
    from suitkit.server.run import prepare

    settings = load_settings({"data": args.data, "db": args.db,
                              "trust": args.trust or None}, config_file=args.config)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s coap %(message)s")
    logging.getLogger("coap-server").setLevel(logging.ERROR)
    prepare(settings)

    async def serve() -> None:
        state = build_state(settings)
        server = await start_coap(state, args.host, args.port, public_url=args.public_url,
                                  tcp=not args.no_tcp)
        if args.ready_file is not None:
            args.ready_file.write_text(str(os.getpid()))
        print(f"suitkit CoAP device API on {server.public_url} (pid {os.getpid()})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.shutdown()
        state.db.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":  # pragma: no cover
    main()
