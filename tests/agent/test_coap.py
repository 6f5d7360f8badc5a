"""The device API over CoAP: check-in, Block2 downloads (resume, window, ETag, BERT over
TCP), Block1 report upload, device tokens, and the processor's coap:// fetcher."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from suitkit.agent.core import Agent, AgentHooks, CycleResult
from suitkit.agent.state import AgentState
from suitkit.errors import OperationFailedError
from suitkit.transport.api import Offer, ReportRefused, TransportError, Unauthorized
from suitkit.transport.coap_client import CoapDeviceApi

from .helpers import LiveServer, Operator, new_device, payload, release

pytestmark = pytest.mark.slow

aiocoap = pytest.importorskip("aiocoap")


class Setup:
    def __init__(self, live: LiveServer, op: Operator, path: Path, size: int = 40_000,
                 tag: bytes = b"coap") -> None:
        self.fw = payload(size, tag + path.parent.name.encode())
        self.env = release(2, self.fw)
        self.release_id = op.upload(self.env, self.fw)
        self.dev = new_device(path, size=max(size, 64 * 1024))
        self.device_id = str(self.dev.config.device_id)
        self.token = op.register(self.dev)
        self.campaign = op.campaign(self.release_id, [self.device_id])
        self.path = path
        self.live = live

    def api(self, **kw: Any) -> CoapDeviceApi:
        assert self.live.coap_url is not None
        return CoapDeviceApi(self.live.coap_url, self.token, **kw)


def run_cycle(s: Setup, hooks: AgentHooks | None = None) -> CycleResult:
    async def go() -> CycleResult:
        api = s.api()
        try:
            return await Agent(s.path, api, hooks=hooks).cycle()
        finally:
            await api.aclose()

    return asyncio.run(go())


async def checkin(s: Setup, api: CoapDeviceApi) -> Offer:
    offer = await api.checkin(Agent(s.path, api).checkin_body())
    assert offer is not None
    return offer


def test_update_over_coap(live: LiveServer, operator: Operator, tmp_path: Path) -> None:
    s = Setup(live, operator, tmp_path / "dev")
    result = run_cycle(s)
    assert result.outcome == "updated", result
    assert result.ack is not None and result.ack.deployment_state == "installed"
    assert operator.status(s.campaign["id"])["counts"]["installed"] == 1
    assert len(operator.reports(s.device_id)) == 1
    assert run_cycle(s).outcome == "nothing"
    assert operator.device(s.device_id)["sequence_number"] == 2


def test_offer_urls_are_coap_and_the_nonce_is_bytes(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", tag=b"offer")

    async def go() -> Offer:
        api = s.api()
        try:
            return await checkin(s, api)
        finally:
            await api.aclose()

    offer = asyncio.run(go())
    assert all(f.url.startswith(f"{live.coap_url}/device/v1/files/") for f in offer.files)
    assert offer.report_url == f"{live.coap_url}/device/v1/reports"
    assert len(offer.report_nonce) == 32


@pytest.mark.parametrize("window", [1, 16])
def test_block2_download_and_resume(
    live: LiveServer, operator: Operator, tmp_path: Path, window: int
) -> None:
    s = Setup(live, operator, tmp_path / "dev", size=300_000, tag=b"w%d" % window)

    async def go() -> tuple[int, int, bytes]:
        api = s.api(window=window)
        try:
            offer = await checkin(s, api)
            f = offer.payloads[0]
            part = tmp_path / "fw.part"

            async def cut(offset: int, chunk: bytes) -> bytes:
                if offset >= 100_000:
                    raise TransportError("cut (test)")
                return chunk

            with pytest.raises(TransportError):
                await api.download(f, part, cut)
            have = part.stat().st_size
            got = await api.download(f, part)
            return have, got, part.read_bytes()
        finally:
            await api.aclose()

    have, got, data = asyncio.run(go())
    assert have == 100_352  # whole blocks up to the cut
    assert got == 300_000 - have
    assert data == s.fw


def test_etag_and_unknown_file(live: LiveServer, operator: Operator, tmp_path: Path) -> None:
    s = Setup(live, operator, tmp_path / "dev", tag=b"etag")

    async def go() -> tuple[Any, Any, Any]:
        api = s.api()
        try:
            offer = await checkin(s, api)
            f = offer.payloads[0]
            etag = bytes.fromhex(f.sha256)[:8]
            valid = await api._request(api._message(aiocoap.GET, f.url, etag=etag), "etag")
            first = await api._request(api._message(aiocoap.GET, f.url, block2=(0, False, 6)),
                                       "block", blockwise=False)
            missing = await api._request(
                api._message(aiocoap.GET, f"{live.coap_url}/device/v1/files/{'0' * 64}"), "404"
            )
            return valid, first, missing
        finally:
            await api.aclose()

    valid, first, missing = asyncio.run(go())
    assert valid.code == aiocoap.VALID
    assert first.code == aiocoap.CONTENT and first.opt.size2 == len(s.fw)
    assert first.opt.block2.more and len(first.payload) == 1024
    assert missing.code == aiocoap.NOT_FOUND


def test_bert_blocks_over_coap_tcp(live: LiveServer, operator: Operator, tmp_path: Path) -> None:
    s = Setup(live, operator, tmp_path / "dev", size=200_000, tag=b"bert")
    assert live.coap_url is not None
    tcp_url = live.coap_url.replace("coap://", "coap+tcp://")

    async def go() -> tuple[bytes, int]:
        api = CoapDeviceApi(tcp_url, s.token)
        sizes: list[int] = []

        async def hook(offset: int, chunk: bytes) -> bytes:
            sizes.append(len(chunk))
            return chunk

        try:
            offer = await checkin(s, api)
            part = tmp_path / "fw.part"
            f = offer.payloads[0]
            assert f.url.startswith("coap+tcp://")  # the offer follows the caller's transport
            await api.download(f, part, hook)
            return part.read_bytes(), max(sizes)
        finally:
            await api.aclose()

    data, biggest = asyncio.run(go())
    assert data == s.fw
    assert biggest > 1024  # BERT: several KiB per message


def test_block1_report_upload_and_limits(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", tag=b"block1")

    async def go(data: bytes) -> Exception:
        api = s.api()
        try:
            offer = await checkin(s, api)
            with pytest.raises(ReportRefused) as info:
                await api.report(offer.report_url, data)
            return info.value
        finally:
            await api.aclose()

    refused = asyncio.run(go(b"\xa0" * 3000))  # three blocks, not a COSE_Sign1: 4.22
    assert isinstance(refused, ReportRefused) and refused.status == 422
    too_big = asyncio.run(go(b"\xa0" * (64 * 1024 + 10)))  # larger than max-report
    assert isinstance(too_big, ReportRefused) and too_big.status == 413


def test_a_wrong_token_is_unauthorized_over_coap(live: LiveServer, tmp_path: Path) -> None:
    dev = new_device(tmp_path / "dev")

    async def go() -> None:
        assert live.coap_url is not None
        api = CoapDeviceApi(live.coap_url, "skd_nope")
        try:
            await Agent(dev.dir, api).cycle()
        finally:
            await api.aclose()

    with pytest.raises(Unauthorized):
        asyncio.run(go())


def test_coap_fetcher_streams_a_coap_uri(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    """The processor-side fetcher (sync, its own loop thread) for coap:// URIs."""
    from suitkit.transport.coap_fetch import CoapFetcher
    from suitkit.transport.fetchers import network_fetcher

    s = Setup(live, operator, tmp_path / "dev", size=50_000, tag=b"fetch")

    async def offer() -> Offer:
        api = s.api()
        try:
            return await checkin(s, api)
        finally:
            await api.aclose()

    url = asyncio.run(offer()).payloads[0].url
    fetcher = CoapFetcher(token=s.token)
    try:
        assert b"".join(fetcher.fetch(url)) == s.fw
        with pytest.raises(OperationFailedError, match="refused before the first byte"):
            next(iter(fetcher.fetch(url, limit=1000)))
        with pytest.raises(OperationFailedError):
            list(CoapFetcher(token="skd_nope").fetch(url))
    finally:
        fetcher.close()
    net = network_fetcher(coap_token=s.token)
    assert b"".join(net.fetch(url)) == s.fw


def test_interrupted_coap_update_resumes(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", size=120_000, tag=b"resume")

    async def cut(offset: int, chunk: bytes) -> bytes:
        if offset >= 50_000:
            raise TransportError("cut (test)")
        return chunk

    with pytest.raises(TransportError):
        run_cycle(s, AgentHooks(chunk_hook=cut))
    assert AgentState.load(s.path).phase == "downloading"
    result = run_cycle(s)
    assert result.outcome == "updated"
    assert AgentState.load(s.path).counters.resumed == 1


def test_update_over_coap_tcp(live: LiveServer, operator: Operator, tmp_path: Path) -> None:
    s = Setup(live, operator, tmp_path / "dev", size=150_000, tag=b"tcp")
    assert live.coap_url is not None
    tcp = live.coap_url.replace("coap://", "coap+tcp://")

    async def go() -> CycleResult:
        api = CoapDeviceApi(tcp, s.token)
        try:
            return await Agent(s.path, api).cycle()
        finally:
            await api.aclose()

    result = asyncio.run(go())
    assert result.outcome == "updated" and result.ack is not None
    assert operator.status(s.campaign["id"])["counts"]["installed"] == 1
