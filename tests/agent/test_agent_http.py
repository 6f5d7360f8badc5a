"""The device agent over HTTP against a real server process: check-in, download (Range
resume), install, boot, signed report; persistence across a killed agent and power cuts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from suitkit.agent.core import Agent, AgentHooks, CycleResult, running_version
from suitkit.agent.state import AgentState
from suitkit.device.report import verify_report
from suitkit.device.simulated import FaultInjector, PowerCut, SimulatedDevice
from suitkit.transport.api import NotOffered, OfferFile, TransportError, Unauthorized
from suitkit.transport.http_client import HttpDeviceApi

from .helpers import LiveServer, Operator, enroll, new_device, payload, release

pytestmark = pytest.mark.slow


class Setup:
    """A registered device in ``path`` with a campaign offering release ``seq``."""

    def __init__(self, live: LiveServer, op: Operator, path: Path, *, size: int = 48_000,
                 tag: bytes = b"fw", severable: bool = False) -> None:
        self.fw = payload(size, tag + path.name.encode())
        env = release(2, self.fw, severable=["install", "text"] if severable else None)
        if severable:
            members = [env.severable[k].encoded for k in sorted(env.severable)]
            self.env = env.sever()
            self.release_id = op.upload(self.env, self.fw, severed=members)
        else:
            self.env = env
            self.release_id = op.upload(env, self.fw)
        self.dev = new_device(path)
        self.device_id = str(self.dev.config.device_id)
        self.token = op.register(self.dev)
        self.path = path
        self.campaign = op.campaign(self.release_id, [self.device_id])
        self.live = live

    def agent(self, hooks: AgentHooks | None = None, **kw: Any) -> Agent:
        return Agent(self.path, HttpDeviceApi(self.live.url, self.token), hooks=hooks, **kw)


def cycle(agent: Agent) -> CycleResult:
    async def go() -> CycleResult:
        try:
            return await agent.cycle()
        finally:
            await agent.api.aclose()

    return asyncio.run(go())


def test_update_over_http_end_to_end(live: LiveServer, operator: Operator, tmp_path: Path) -> None:
    s = Setup(live, operator, tmp_path / "dev")
    agent = s.agent()
    result = cycle(agent)
    assert result.outcome == "updated", result
    assert result.ack is not None and result.ack.deployment_state == "installed"
    # the device runs the new image, booted from the other slot
    dev = SimulatedDevice(s.path)
    seq, digest = running_version(dev)
    assert seq == 2 and digest == result.manifest_digest
    assert dev.state["boot"]["active"] == 1
    # the server: one report, signed by the registered key, with the offer's nonce
    reps = operator.reports(s.device_id)
    assert len(reps) == 1 and reps[0]["success"] is True
    raw = operator.c.get(f"/api/v1/reports/{reps[0]['id']}").json()
    import base64

    from suitkit.cose.keys import CoseKey

    signed = base64.b64decode(raw["signed_report_b64"])
    report = verify_report(signed, [CoseKey.load(s.path / "device-key.pub.pem")])
    assert report.ok and report.nonce is not None and len(report.nonce) == 32
    assert operator.status(s.campaign["id"])["counts"]["installed"] == 1
    # the next check-in says what it runs now; nothing more to do
    assert cycle(s.agent()).outcome == "nothing"
    info = operator.device(s.device_id)
    assert info["sequence_number"] == 2 and info["manifest_digest"] == digest
    # the downloads and the report are cleaned up, the state is idle
    st = AgentState.load(s.path)
    assert st.phase == "idle" and st.offer is None and st.history[-1]["outcome"] == "updated"
    assert not (s.path / "agent" / "downloads").exists()


def test_severed_members_are_downloaded_and_supplied(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", severable=True, tag=b"sev")
    agent = s.agent()
    result = cycle(agent)
    assert result.outcome == "updated", result


def test_download_resumes_with_range_after_a_cut(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", size=200_000, tag=b"resume")
    cut = {"at": 70_000, "armed": True}

    async def hook(offset: int, chunk: bytes) -> bytes:
        if cut["armed"] and len(chunk) and offset + len(chunk) > cut["at"]:
            cut["armed"] = False
            raise TransportError("connection dropped (test)")
        return chunk

    agent = s.agent(AgentHooks(chunk_hook=hook))
    with pytest.raises(TransportError):
        cycle(agent)
    st = AgentState.load(s.path)
    assert st.phase == "downloading"
    parts = list((s.path / "agent" / "downloads").glob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < 200_000
    have = parts[0].stat().st_size
    # a new agent (as after a restart) resumes: it receives only what was missing
    agent = s.agent()
    before = agent.state.counters.bytes_received
    result = cycle(agent)
    assert result.outcome == "updated"
    assert agent.state.counters.resumed == 1
    assert agent.state.counters.bytes_received - before == 200_000 - have


def test_range_request_gets_the_rest_and_a_stale_part_restarts(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", size=30_000, tag=b"range")
    offer = asyncio.run(_checkin(s))
    f = offer.payloads[0]

    async def get(part: Path) -> int:
        api = HttpDeviceApi(live.url, s.token)
        try:
            return await api.download(f, part)
        finally:
            await api.aclose()

    part = tmp_path / "p.part"
    part.write_bytes(s.fw[:12_345])
    assert asyncio.run(get(part)) == 30_000 - 12_345
    assert part.read_bytes() == s.fw
    part.write_bytes(b"x" * 40_000)  # longer than the file: not a prefix, start again
    asyncio.run(get(part))
    assert part.read_bytes() == s.fw


async def _checkin(s: Setup) -> Any:
    api = HttpDeviceApi(s.live.url, s.token)
    try:
        agent = Agent(s.path, api)
        offer = await api.checkin(agent.checkin_body())
        assert offer is not None
        return offer
    finally:
        await api.aclose()


def test_file_not_offered_to_this_device_is_404(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", tag=b"other")
    other = new_device(tmp_path / "other")
    token = operator.register(other)
    offer = asyncio.run(_checkin(s))

    async def get() -> None:
        api = HttpDeviceApi(live.url, token)
        try:
            await api.download(offer.payloads[0], tmp_path / "x.part")
        finally:
            await api.aclose()

    with pytest.raises(NotOffered):
        asyncio.run(get())


def test_a_wrong_token_is_unauthorized(live: LiveServer, tmp_path: Path) -> None:
    dev = new_device(tmp_path / "dev")

    async def go() -> None:
        api = HttpDeviceApi(live.url, "skd_not-a-token")
        try:
            await Agent(dev.dir, api).cycle()
        finally:
            await api.aclose()

    with pytest.raises(Unauthorized):
        asyncio.run(go())


def test_withdrawn_offer_ends_the_cycle(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", tag=b"abort")

    async def hook(offset: int, chunk: bytes) -> bytes:
        raise TransportError("cut (test)")

    with pytest.raises(TransportError):
        cycle(s.agent(AgentHooks(chunk_hook=hook)))
    r = operator.c.post(f"/api/v1/campaigns/{s.campaign['id']}/abort")
    assert r.status_code == 200, r.text
    assert cycle(s.agent()).outcome == "withdrawn"
    assert AgentState.load(s.path).phase == "idle"
    assert cycle(s.agent()).outcome == "nothing"


def test_corrupted_payload_is_downloaded_again_then_refused_by_the_processor(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", tag=b"corrupt")
    sha = operator.release_file(s.release_id, "payload")["sha256"]
    blob = live.data / "blobs" / "sha256" / sha[:2] / sha[2:]
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    agent = s.agent()
    with pytest.raises(TransportError, match="downloading it again"):
        cycle(agent)
    result = cycle(s.agent())
    assert result.outcome == "failed" and result.reason == "condition-failed", result
    assert result.ack is not None and result.ack.deployment_state == "failed"
    st = AgentState.load(s.path)
    assert st.counters.redownloads == 1
    # nothing of it was committed: the device has no manifest for the bootable slot
    assert SimulatedDevice(s.path).state["boot"]["manifests"] == {}
    dep = operator.device(s.device_id)["deployments"][0]
    assert dep["state"] == "failed" and dep["reason"] == "condition-failed"


# an install of this release is 53 writes: every 4th, and each of the last ones (commit)
@pytest.mark.parametrize("cut_after", [*range(0, 49, 4), 49, 50, 51, 52])
def test_power_cut_during_install_recovers_and_reports(
    live: LiveServer, operator: Operator, tmp_path: Path, cut_after: int
) -> None:
    """A power cut after N writes of the install: the agent dies with the device (PowerCut
    propagates); the next agent boots (the bootloader finishes or reverts the install),
    installs again if needed, and reports the outcome once."""
    s = Setup(live, operator, tmp_path / "dev", size=48_000, tag=b"cut%d" % cut_after)
    once = [FaultInjector(cut_after=cut_after)]
    hooks = AgentHooks(install_fault=lambda: once.pop() if once else None,
                       reboot_on_power_cut=False)
    try:
        first: CycleResult | None = cycle(s.agent(hooks))
    except PowerCut:
        first = None
    assert first is None, "the power was not cut"
    st = AgentState.load(s.path)
    assert st.phase == "installing" and st.counters.power_cuts == 1
    result = cycle(s.agent())
    assert result.outcome == "updated", result
    assert result.bootable
    assert AgentState.load(s.path).counters.recoveries == 1
    boot = SimulatedDevice(s.path).boot()
    assert boot.ok
    reps = operator.reports(s.device_id)
    assert len(reps) == 1 and reps[0]["success"], reps
    assert operator.status(s.campaign["id"])["counts"]["installed"] == 1


def test_power_cuts_in_a_row_end_in_a_failure_report(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", tag=b"cuts")
    hooks = AgentHooks(install_fault=lambda: FaultInjector(cut_after=5), reboot_on_power_cut=True)
    result = cycle(s.agent(hooks, max_install_attempts=3))
    assert result.outcome == "failed" and result.reason == "operation-failed"
    assert AgentState.load(s.path).counters.power_cuts == 3
    assert operator.reports(s.device_id)[0]["reason"] == "operation-failed"


def _agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "suitkit.cli.agent", "agent", *args]


def test_cli_enroll_run_status_and_power_cut(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    s = Setup(live, operator, tmp_path / "dev", tag=b"cli")
    admin = operator.c.headers["Authorization"].split()[1]
    # enroll with --admin-token registers a fresh device and stores its token (0600)
    d2 = new_device(tmp_path / "d2")
    out = subprocess.run(_agent_cmd("enroll", str(d2.dir), "--server", live.url,
                                    "--admin-token", admin), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    mode = stat.S_IMODE((d2.dir / "agent.json").stat().st_mode)
    assert mode == 0o600
    assert json.loads((d2.dir / "agent.json").read_text())["token"].startswith("skd_")
    # enroll with --token, then a power cut: exit 3; run again: recovers and reports
    out = subprocess.run(_agent_cmd("enroll", str(s.path), "--server", live.url,
                                    "--token", s.token), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(_agent_cmd("run", str(s.path), "--once", "--power-cut-after", "20"),
                         capture_output=True, text=True)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "POWER CUT" in out.stdout
    out = subprocess.run(_agent_cmd("run", str(s.path), "--once"), capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "continuing an interrupted update (phase installing)" in out.stdout
    assert "updated" in out.stdout
    out = subprocess.run(_agent_cmd("status", str(s.path), "--json"), capture_output=True,
                         text=True)
    st = json.loads(out.stdout)
    assert st["phase"] == "idle" and st["running"]["sequence_number"] == 2
    assert st["counters"]["power_cuts"] == 1
    out = subprocess.run(_agent_cmd("run", str(s.path), "--once"), capture_output=True,
                         text=True)
    assert out.returncode == 0 and "nothing to do" in out.stdout


def test_killed_agent_resumes_its_download(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    """kill -9 of the agent process in the middle of a (slow) download; the restarted agent
    continues from the partial file with a Range request."""
    s = Setup(live, operator, tmp_path / "dev", size=400_000, tag=b"kill")
    enroll(s.path, live.url, s.token)
    proc = subprocess.Popen(_agent_cmd("run", str(s.path), "--once", "--faults", "slow=1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    downloads = s.path / "agent" / "downloads"
    deadline = time.monotonic() + 30
    while True:
        parts = list(downloads.glob("*.part")) if downloads.exists() else []
        if any(p.stat().st_size > 60_000 for p in parts):
            break
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert AgentState.load(s.path).phase == "downloading"
    out = subprocess.run(_agent_cmd("run", str(s.path), "--once"), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resuming payload" in out.stdout
    assert AgentState.load(s.path).counters.resumed == 1
    assert len(operator.reports(s.device_id)) == 1


def test_offer_file_roundtrip() -> None:
    f = OfferFile("payload", "http://x/f", "ab" * 32, 10, "https://u/fw.bin", 0)
    assert OfferFile.from_json(f.to_json()) == f
