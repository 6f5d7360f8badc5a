"""The agent without a server: an in-memory device API (offer, files, reports)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from suitkit.agent.core import Agent, AgentHooks
from suitkit.agent.faults import DeviceFaults, FaultSpec, FaultyApi
from suitkit.agent.fleet import FleetFile, build_template
from suitkit.agent.state import AgentConfig, AgentState
from suitkit.device.report import verify_report
from suitkit.device.simulated import SimulatedDevice
from suitkit.transport.api import (
    Offer,
    OfferFile,
    ProtocolError,
    ReportAck,
    ReportRefused,
    TransportError,
)

from .helpers import AUTHOR_PUB, CLASS, URI, VENDOR, new_device, payload, release


class MemoryApi:
    """Offers one release; serves its files; refuses the first ``refuse`` reports."""

    def __init__(self, fw: bytes, seq: int = 2, refuse: list[ReportRefused] | None = None,
                 ) -> None:
        env = release(seq, fw)
        self.env_bytes = env.encode()
        self.fw = fw
        self.files = {hashlib.sha256(b).hexdigest(): b for b in (self.env_bytes, fw)}
        self.refuse = list(refuse or [])
        self.reports: list[bytes] = []
        self.offered = False
        d = env.authentication.digest
        self.digest = f"{d.algorithm_name}:{d.value.hex()}"

    def offer(self) -> Offer:
        es, ps = (hashlib.sha256(b).hexdigest() for b in (self.env_bytes, self.fw))
        return Offer(1, 1, 2, self.digest,
                     OfferFile("envelope", f"mem:{es}", es, len(self.env_bytes)), (),
                     (OfferFile("payload", f"mem:{ps}", ps, len(self.fw), URI, 0),),
                     "mem:reports", b"\x01" * 32)

    async def checkin(self, body: Any) -> Offer | None:
        if self.offered:
            return None
        self.offered = True
        return self.offer()

    async def download(self, file: OfferFile, part: Path, hook: Any = None) -> int:
        data = self.files[file.sha256]
        have = part.stat().st_size if part.exists() else 0
        chunk = data[have:]
        if hook is not None:
            chunk = await hook(have, chunk)
        with open(part, "ab") as f:
            f.write(chunk)
        return len(chunk)

    async def report(self, url: str, signed_report: bytes) -> ReportAck:
        self.reports.append(signed_report)
        if self.refuse:
            raise self.refuse.pop(0)
        return ReportAck(len(self.reports), False, True, None, "installed")

    async def aclose(self) -> None:
        pass


def test_a_refused_nonce_is_dropped_and_the_report_sent_again(tmp_path: Path) -> None:
    dev = new_device(tmp_path / "dev")
    api = MemoryApi(payload(10_000, b"n"),
                    refuse=[ReportRefused(422, "the report nonce has expired")])
    result = asyncio.run(Agent(dev.dir, api).cycle())
    assert result.outcome == "updated" and result.ack is not None
    pub = [__import__("suitkit.cose.keys", fromlist=["CoseKey"]).CoseKey.load(
        dev.dir / "device-key.pub.pem")]
    first, second = (verify_report(r, pub) for r in api.reports)
    assert first.nonce == b"\x01" * 32 and second.nonce is None


def test_a_report_refused_for_good_is_not_retried(tmp_path: Path) -> None:
    dev = new_device(tmp_path / "dev")
    api = MemoryApi(payload(10_000, b"g"), refuse=[ReportRefused(422, "malformed")])
    result = asyncio.run(Agent(dev.dir, api).cycle())
    assert result.outcome == "updated" and result.ack is None
    assert len(api.reports) == 1 and AgentState.load(dev.dir).phase == "idle"


def test_state_survives_every_phase_and_files_are_atomic(tmp_path: Path) -> None:
    dev = new_device(tmp_path / "dev")
    api = MemoryApi(payload(10_000, b"s"))
    phases: list[str] = []

    class Spy(Agent):
        def save(self) -> None:
            super().save()
            phases.append(AgentState.load(self.dir).phase)

    asyncio.run(Spy(dev.dir, api).cycle())
    assert phases[0] == "downloading" and "installing" in phases and "booting" in phases
    assert "reporting" in phases and phases[-1] == "idle"
    leftovers = [p.name for p in (dev.dir / "agent").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    (dev.dir / "agent" / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        AgentState.load(dev.dir)


def test_agent_config_is_private(tmp_path: Path) -> None:
    path = AgentConfig("http://s", "skd_x", "mqtt://b", 5.0).save(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert AgentConfig.load(tmp_path) == AgentConfig("http://s", "skd_x", "mqtt://b", 5.0)
    with pytest.raises(FileNotFoundError, match="not enrolled"):
        AgentConfig.load(tmp_path / "nope")


def test_fault_spec_parsing() -> None:
    spec = FaultSpec.parse("drop=0.05, powerloss=0.02,corrupt=0.01,slow=0.1")
    assert spec == FaultSpec(0.05, 0.02, 0.01, 0.1)
    assert str(spec) == "drop=0.05,powerloss=0.02,corrupt=0.01,slow=0.1"
    assert FaultSpec.parse("") == FaultSpec() and str(FaultSpec()) == "none"
    for bad in ("drop", "drop=x", "drop=2", "flood=0.1"):
        with pytest.raises(ValueError):
            FaultSpec.parse(bad)


def test_faulty_api_corrupts_every_payload_download_the_same_way(tmp_path: Path) -> None:
    import random

    inner = MemoryApi(payload(5000, b"c"))
    faults = DeviceFaults(FaultSpec(corrupt=1.0), random.Random(1), corrupt=True)
    api = FaultyApi(inner, faults)
    f = inner.offer().payloads[0]

    async def get(name: str) -> bytes:
        part = tmp_path / name
        await api.download(f, part)
        return part.read_bytes()

    a, b = asyncio.run(get("a")), asyncio.run(get("b"))
    assert a == b != inner.fw and sum(x != y for x, y in zip(a, inner.fw, strict=True)) == 1


def test_dropped_requests_raise_transient_errors() -> None:
    import random

    inner = MemoryApi(payload(100, b"d"))
    api = FaultyApi(inner, DeviceFaults(FaultSpec(drop=1.0), random.Random(3)))
    with pytest.raises(TransportError, match="injected"):
        asyncio.run(api.checkin({}))
    assert api.dropped == 1


def test_malformed_offers_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        Offer.from_server({"campaign_id": 1})
    good = MemoryApi(payload(10, b"o")).offer().to_json()
    assert Offer.from_json(good).to_json() == good


def test_template_has_a_bootable_factory_image(tmp_path: Path) -> None:
    t = build_template(tmp_path, VENDOR, CLASS, [AUTHOR_PUB], flash_size=64 * 1024)
    assert list((t / "reports").iterdir()) == []
    dev = SimulatedDevice(t)
    assert dev.boot().ok
    assert dev.state["sequence-numbers"] == {"root": 0}
    assert len(dev.trusted_keys()) == 2


def test_fleet_file_is_private(tmp_path: Path) -> None:
    from suitkit.agent.fleet import FleetDevice

    f = FleetFile("http://s", VENDOR, CLASS, [FleetDevice("d", "skd_t", "PEM")])
    f.save(tmp_path / "fleet.json")
    assert stat.S_IMODE((tmp_path / "fleet.json").stat().st_mode) == 0o600
    assert FleetFile.load(tmp_path / "fleet.json") == f
    (tmp_path / "bad.json").write_text(json.dumps({"server": 1}))
    with pytest.raises(ValueError):
        FleetFile.load(tmp_path / "bad.json")


def test_an_update_needing_a_fallback_fetcher_uses_it(tmp_path: Path) -> None:
    """A payload the offer does not carry is fetched by the fallback (the manifest names
    another server)."""
    from suitkit.device.fetch import MemoryFetcher

    dev = new_device(tmp_path / "dev")
    api = MemoryApi(payload(8_000, b"f"))
    offer = api.offer()
    no_payload = Offer(offer.campaign_id, offer.release_id, offer.sequence_number,
                       offer.manifest_digest, offer.envelope, (), (), offer.report_url,
                       offer.report_nonce)

    async def checkin(body: Any) -> Offer | None:
        return no_payload

    api.checkin = checkin  # type: ignore[method-assign]
    hooks = AgentHooks(fallback=MemoryFetcher({URI: api.fw}))
    assert asyncio.run(Agent(dev.dir, api, hooks=hooks).cycle()).outcome == "updated"
    dev2 = new_device(tmp_path / "dev2")
    result = asyncio.run(Agent(dev2.dir, api).cycle())
    assert result.outcome == "failed" and result.reason == "operation-failed"


def test_a_fleet_device_is_the_template_with_its_identity(tmp_path: Path) -> None:
    """The snapshot a fleet writes each device from: the template's tree, modes and bytes,
    with the device's id and report key; removing it leaves nothing."""
    from suitkit.agent.fleet import _remove_tree, _Snapshot
    from suitkit.cose.keys import CoseKey
    from suitkit.format.codepoints import CoseAlgorithm

    t = build_template(tmp_path, VENDOR, CLASS, [AUTHOR_PUB], flash_size=16 * 1024)
    key = CoseKey.generate(CoseAlgorithm.ESP256).to_pem(private=True).decode()
    dev_id = "5f0b4e0e-1111-4222-8333-444455556666"
    d = tmp_path / "devices" / dev_id
    _Snapshot.read(t).write(d, dev_id, key)

    def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
        return {str(p.relative_to(root)): (stat.S_IMODE(p.stat().st_mode),
                                           p.read_bytes() if p.is_file() else None)
                for p in sorted(root.rglob("*"))}

    want, got = tree(t), tree(d)
    assert set(got) == set(want) - {"device-key.pub.pem"}
    for name in set(got) - {"device.json", "device-key.pem"}:
        assert got[name] == want[name], name
    assert got["device-key.pem"] == (0o600, key.encode())
    dev = SimulatedDevice(d)
    assert str(dev.config.device_id) == dev_id
    assert dev.config == dataclasses.replace(SimulatedDevice(t).config,
                                             device_id=dev.config.device_id)
    assert AgentState.load(d).versions  # the factory image's version, known at check-in
    _remove_tree(str(d))
    assert not d.exists()


def test_a_fleet_agent_signs_what_it_stored_and_logs_no_device_reports(tmp_path: Path) -> None:
    from suitkit.cose.keys import CoseKey
    from suitkit.device.report import SuitReport

    dev = new_device(tmp_path / "dev")
    api = MemoryApi(payload(10_000, b"f"))
    agent = Agent(dev.dir, api, hooks=AgentHooks(durable=False, log_reports=False))
    result = asyncio.run(agent.cycle())
    assert result.outcome == "updated" and result.ack is not None
    assert list((dev.dir / "reports").glob("*.report")) == []
    (signed,) = api.reports
    report = verify_report(signed, [CoseKey.load(dev.dir / "device-key.pub.pem")])
    assert report.ok and report.nonce == b"\x01" * 32
    assert SuitReport.decode(report.encode()) == report
    assert not list((dev.dir / "agent").glob("*.tmp"))
    assert AgentState.load(dev.dir).phase == "idle"


def test_a_report_stored_by_an_earlier_agent_is_signed_as_stored(tmp_path: Path) -> None:
    """The agent was stopped after storing its report: the next one sends that report."""
    from suitkit.cose.keys import CoseKey

    dev = new_device(tmp_path / "dev")
    api = MemoryApi(payload(10_000, b"r"))

    class Stop(Exception):
        pass

    class Stopping(Agent):
        async def _report(self, offer: Offer) -> Any:
            raise Stop

    with pytest.raises(Stop):
        asyncio.run(Stopping(dev.dir, api).cycle())
    assert AgentState.load(dev.dir).phase == "reporting"
    stored = (dev.dir / "agent" / "report.cbor").read_bytes()
    result = asyncio.run(Agent(dev.dir, api).cycle())
    assert result.outcome == "updated"
    report = verify_report(api.reports[0], [CoseKey.load(dev.dir / "device-key.pub.pem")])
    assert report.encode() == stored


def test_device_objects_sharing_a_cache_parse_keys_once(tmp_path: Path) -> None:
    dev = new_device(tmp_path / "dev")
    cache: dict[str, Any] = {}
    a = SimulatedDevice(dev.dir, cache=cache)
    keys, key = a.trusted_keys(), a.device_key()
    (dev.dir / "device-key.pem").unlink()  # not read again
    b = SimulatedDevice(dev.dir, cache=cache)
    assert b.trusted_keys() == keys and b.device_key() is key and b.config is a.config
    assert SimulatedDevice(dev.dir).device_key() is None
