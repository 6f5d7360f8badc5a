"""The fleet simulator: many devices in one process, over HTTP and CoAP, with faults."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from suitkit.agent.faults import FaultSpec
from suitkit.agent.fleet import FleetOptions, FleetResult, FleetSimulator, register

from .helpers import AUTHOR_PUB, CLASS, VENDOR, LiveServer, Operator, payload, release

pytestmark = pytest.mark.slow


def admin_of(op: Operator) -> str:
    return str(op.c.headers["Authorization"].split()[1])


def test_fleet_with_faults_over_http_and_coap(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    n = 40
    group = f"fleet-{uuid.uuid4().hex[:8]}"
    fleet = asyncio.run(register(live.url, admin_of(operator), n, VENDOR, CLASS, group=group))
    fw = payload(30_000, group.encode())
    rid = operator.upload(release(5, fw), fw)
    r = operator.c.post("/api/v1/campaigns", json={
        "name": group, "release_id": rid, "target": {"group": group},
        "waves": [20, 60, 100], "failure_threshold": 0.6, "min_reports": 3,
    })
    assert r.status_code == 201, r.text
    campaign_id = r.json()["id"]
    opts = FleetOptions(
        concurrency=12, interval=0.2, seed=7, timeout=180, flash_size=64 * 1024,
        faults=FaultSpec(drop=0.05, powerloss=0.15, corrupt=0.08, slow=0.1),
        transports=("http", "coap"), coap_url=live.coap_url,
        operator_token=admin_of(operator), campaign_id=campaign_id,
    )
    sim = FleetSimulator(live.url, fleet, [AUTHOR_PUB], tmp_path / "work", opts)
    result: FleetResult = asyncio.run(sim.run())
    ids = [o.device_id for o in result.outcomes]
    assert len(ids) == n and len(set(ids)) == n
    assert {o.outcome for o in result.outcomes} <= {"updated", "failed"}, result.summary()
    assert all(o.reason for o in result.outcomes if o.outcome == "failed")
    assert result.bricked == 0
    assert result.power_cuts > 0 and result.recovered == result.power_cuts
    assert result.retried > 0
    assert set(result.failure_reasons) <= {"condition-failed"}
    assert {o.transport for o in result.outcomes} == {"http", "coap"}
    # the server agrees, device by device, and counted each one once
    camp = operator.status(campaign_id)
    assert camp["state"] == "completed"
    assert camp["counts"]["installed"] == result.count("updated")
    assert camp["counts"]["failed"] == result.count("failed")
    for o in result.outcomes:
        reps = operator.reports(o.device_id)
        assert len(reps) == 1 and reps[0]["success"] == (o.outcome == "updated"), (o, reps)
    # nothing left behind
    assert not any((tmp_path / "work" / "devices").iterdir())


def test_fleet_cli_registers_and_follows_a_campaign(
    live: LiveServer, operator: Operator, tmp_path: Path
) -> None:
    group = f"cli-{uuid.uuid4().hex[:8]}"
    fw = payload(20_000, group.encode())
    rid = operator.upload(release(6, fw), fw)
    out = tmp_path / "outcome.json"
    cmd = [sys.executable, "-m", "suitkit.cli.agent", "fleet", "simulate", "--server", live.url,
           "--devices", "6", "--register", "--group", group, "--token", admin_of(operator),
           "--vendor-id", VENDOR, "--class-id", CLASS, "--trust", str(AUTHOR_PUB),
           "--devices-file", str(tmp_path / "fleet.json"), "--flash-size", "64K",
           "--interval", "0.2", "--timeout", "120", "--no-progress", "--json", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(operator.c.get("/api/v1/devices", params={"group": group}).json()) < 6:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        operator.c.post("/api/v1/campaigns", json={
            "name": group, "release_id": rid, "target": {"group": group}})
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout
    assert "fleet outcome" in stdout and "bricked" in stdout
    summary = json.loads(out.read_text())["summary"]
    assert summary["updated"] == 6 and summary["bricked"] == 0, summary
    assert summary["campaign"]["state"] == "completed"
