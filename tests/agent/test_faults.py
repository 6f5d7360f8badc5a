"""Fault tests of the whole system: the server killed (kill -9) and restarted while a fleet
updates; a corrupted payload on the server, refused by every device that receives it, until
the campaign pauses at its failure threshold."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from suitkit.agent.faults import FaultSpec
from suitkit.agent.fleet import FleetOptions, FleetResult, FleetSimulator, register

from .helpers import AUTHOR_PUB, CLASS, VENDOR, LiveServer, Operator, payload, release

pytestmark = pytest.mark.slow


def run_fleet(sim: FleetSimulator, box: dict[str, Any]) -> None:
    try:
        box["result"] = asyncio.run(sim.run())
    except BaseException as exc:  # pragma: no cover - reported by the test
        box["error"] = exc


@pytest.mark.parametrize("transports", [("http",), ("http", "coap")])
def test_kill_9_the_server_during_a_fleet_update(
    tmp_path: Path, transports: tuple[str, ...]
) -> None:
    live = LiveServer(tmp_path / "data", coap="coap" in transports)
    live.start()
    try:
        admin = live.admin_token()
        op = Operator(live.url, admin)
        n = 30
        fleet = asyncio.run(register(live.url, admin, n, VENDOR, CLASS))
        fw = payload(120_000, b"kill-9")
        rid = op.upload(release(3, fw), fw)
        camp = op.campaign(rid, waves=[30, 100], failure_threshold=1.0)
        opts = FleetOptions(
            concurrency=6, interval=0.2, seed=3, timeout=240, flash_size=128 * 1024,
            faults=FaultSpec(slow=0.3), transports=transports, coap_url=live.coap_url,
            operator_token=admin, campaign_id=camp["id"], max_backoff=2.0,
        )
        sim = FleetSimulator(live.url, fleet, [AUTHOR_PUB], tmp_path / "work", opts, log=print)
        box: dict[str, Any] = {}
        t = threading.Thread(target=run_fleet, args=(sim, box))
        t.start()
        deadline = time.monotonic() + 60
        while sim.stats.done < 8:  # in the middle: some updates done, others in flight
            assert t.is_alive(), box
            assert time.monotonic() < deadline, sim.stats
            time.sleep(0.01)
        live.kill9()
        killed_at = sim.stats.done
        time.sleep(1.0)
        live.start()
        t.join(240)
        assert not t.is_alive()
        assert "error" not in box, box.get("error")
        result: FleetResult = box["result"]
        assert killed_at < n
        # every device accounted for once, all updated, none bricked
        ids = [o.device_id for o in result.outcomes]
        assert len(ids) == n and len(set(ids)) == n
        assert result.count("updated") == n, result.summary()
        assert result.bricked == 0
        assert result.retried > 0  # the outage was felt and retried
        status = op.status(camp["id"])
        assert status["state"] == "completed", status
        assert status["counts"]["installed"] == n and status["total"] == n
        for dev_id in ids:
            reps = op.reports(dev_id)
            assert len(reps) == 1 and reps[0]["success"], reps
        op.close()
    finally:
        live.stop()


def test_corrupted_payload_is_refused_everywhere_and_the_campaign_pauses(
    tmp_path: Path,
) -> None:
    live = LiveServer(tmp_path / "data", coap=True)
    live.start()
    try:
        admin = live.admin_token()
        op = Operator(live.url, admin)
        n = 30
        fleet = asyncio.run(register(live.url, admin, n, VENDOR, CLASS))
        fw = payload(40_000, b"good image")
        rid = op.upload(release(4, fw), fw)
        # the stored payload rots on the server's disk after the upload was verified
        sha = op.release_file(rid, "payload")["sha256"]
        blob = live.data / "blobs" / "sha256" / sha[:2] / sha[2:]
        data = bytearray(blob.read_bytes())
        data[20_000] ^= 0x40
        os.chmod(blob, 0o644)
        blob.write_bytes(bytes(data))
        camp = op.campaign(rid, waves=[30, 100], failure_threshold=0.2, min_reports=3)
        opts = FleetOptions(
            concurrency=8, interval=0.2, seed=5, timeout=120, flash_size=64 * 1024,
            transports=("http", "coap"), coap_url=live.coap_url, operator_token=admin,
            campaign_id=camp["id"],
        )
        sim = FleetSimulator(live.url, fleet, [AUTHOR_PUB], tmp_path / "work", opts)
        result = asyncio.run(sim.run())
        status = op.status(camp["id"])
        assert status["state"] == "paused", status
        assert "threshold" in (status["pause_reason"] or "")
        failed = [o for o in result.outcomes if o.outcome == "failed"]
        # every device that received the payload refused it (image-match), none installed it
        assert result.count("updated") == 0
        assert len(failed) >= 3 and {o.reason for o in failed} == {"condition-failed"}
        assert status["counts"]["installed"] == 0
        assert status["counts"]["failed"] == len(failed)
        # wave 2 was never opened: the rest were not offered; every device still boots
        assert result.count("not-offered") == n - len(failed)
        assert len(failed) <= 9  # wave 1 is 30% of 30
        assert result.bricked == 0
        for o in failed:
            assert op.reports(o.device_id)[0]["reason"] == "condition-failed"
        op.close()
    finally:
        live.stop()
