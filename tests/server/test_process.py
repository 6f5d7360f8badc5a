"""The server as a real process: kill -9 in the middle of a campaign, several workers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from suitkit.cose.keys import CoseKey

from .conftest import (
    AUTHOR_PUB,
    CLASS,
    VENDOR,
    device_keypair,
    make_report,
    payload_bytes,
    release_envelope,
)
from .live import LiveServer, admin_token

pytestmark = pytest.mark.slow


@dataclass
class SimDevice:
    device_id: str
    token: str
    key: CoseKey
    acked: int | None = None  # report id the server acknowledged
    attempts: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def retry(call: Callable[[], httpx.Response], deadline: float) -> httpx.Response:
    """Retry across server downtime (connection refused, reset, timeouts, 5xx)."""
    while True:
        try:
            r = call()
            if r.status_code < 500:
                return r
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not come back")
        time.sleep(0.05)


def run_device(
    url: str, dev: SimDevice, env_bytes_check: bytes, env: object, deadline: float
) -> None:
    """Check in, download everything offered, report; keep the signed report and resend the
    very same bytes until the server acknowledges it."""
    ident = {
        "vendor_id": VENDOR,
        "class_id": CLASS,
        "device_id": dev.device_id,
        "sequence_number": 1,
    }
    with httpx.Client(base_url=url, timeout=5) as c:
        while True:
            r = retry(
                lambda: c.post("/device/v1/checkin", json=ident, headers=dev.headers), deadline
            )
            if r.status_code == 200:
                break
            assert r.status_code == 204, r.text
            time.sleep(0.05)  # its wave is not open yet
            if time.monotonic() > deadline:
                raise TimeoutError("never offered")
        offer = r.json()
        got = retry(lambda: c.get(offer["envelope"]["url"], headers=dev.headers), deadline)
        assert got.status_code == 200 and got.content == env_bytes_check
        for p in offer["payloads"]:
            pr = retry(lambda p=p: c.get(p["url"], headers=dev.headers), deadline)
            assert pr.status_code == 200
        report = make_report(env, dev.key, nonce=bytes.fromhex(offer["report_nonce"]))  # type: ignore[arg-type]
        while True:
            dev.attempts += 1
            r = retry(
                lambda: c.post(
                    "/device/v1/reports",
                    content=report,
                    headers={**dev.headers, "Content-Type": "application/cose"},
                ),
                deadline,
            )
            if r.status_code in (200, 201):
                dev.acked = r.json()["report_id"]
                return
            raise AssertionError(r.text)


def test_kill_9_in_the_middle_of_a_campaign(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    live = LiveServer(data, db=db_url, trust=AUTHOR_PUB)
    live.start()
    try:
        token = admin_token(data, db_url)
        h = {"Authorization": f"Bearer {token}"}
        api = httpx.Client(base_url=live.url, timeout=10)
        fw = payload_bytes(200_000, tag=b"crash-test")
        env = release_envelope(2, fw)
        r = api.post(
            "/api/v1/releases",
            headers=h,
            files=[
                ("envelope", ("u.suit", env.encode(), "application/octet-stream")),
                ("payload", ("firmware.bin", fw, "application/octet-stream")),
            ],
        )
        assert r.status_code == 201, r.text
        release_id = r.json()["id"]
        devices = []
        for _ in range(40):
            key, pem = device_keypair()
            dev_id = str(uuid.uuid4())
            r = api.post(
                "/api/v1/devices",
                headers=h,
                json={
                    "device_id": dev_id,
                    "vendor_id": VENDOR,
                    "class_id": CLASS,
                    "public_key": pem,
                },
            )
            devices.append(SimDevice(dev_id, r.json()["token"], key))
        camp = api.post(
            "/api/v1/campaigns",
            headers=h,
            json={
                "name": "crash",
                "release_id": release_id,
                "target": {"all": True},
                "waves": [25, 100],
                "failure_threshold": 1.0,
            },
        ).json()
        api.close()

        deadline = time.monotonic() + 120
        killed = threading.Event()

        def killer() -> None:
            while sum(d.acked is not None for d in devices) < 12:
                time.sleep(0.01)
            live.kill9()  # in the middle: some requests are in flight
            killed.set()
            time.sleep(0.5)
            live.start()

        k = threading.Thread(target=killer)
        k.start()
        with ThreadPoolExecutor(len(devices)) as pool:  # one thread per device
            futures = [
                pool.submit(run_device, live.url, d, env.encode(), env, deadline) for d in devices
            ]
            for f in futures:
                f.result()
        k.join()
        assert killed.is_set()

        api = httpx.Client(base_url=live.url, timeout=10)
        # every acknowledged report is there, exactly once per device
        seen: dict[str, int] = {}
        for d in devices:
            reps = api.get(f"/api/v1/devices/{d.device_id}/reports", headers=h).json()
            assert [x["id"] for x in reps] == [d.acked], (d.attempts, reps)
            seen[d.device_id] = len(reps)
        assert sum(seen.values()) == len(devices)
        # the campaign resumed after the restart and finished: every device counted once
        t_end = time.monotonic() + 10
        while True:
            st = api.get(f"/api/v1/campaigns/{camp['id']}", headers=h).json()
            if st["state"] == "completed" or time.monotonic() > t_end:
                break
            time.sleep(0.1)
        assert st["counts"]["installed"] == len(devices), st["counts"]
        assert st["total"] == len(devices)
        assert st["state"] == "completed"
        assert list((data / "tmp").iterdir()) == []  # no half-written upload left visible
        metrics = api.get("/metrics").text
        assert "suitkit_devices 40" in metrics
        api.close()
    finally:
        live.stop()


def test_several_workers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with LiveServer(data, trust=AUTHOR_PUB, extra=["--workers", "2"]) as live:
        token = admin_token(data)
        h = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=live.url, timeout=10) as c:
            _, pem = device_keypair()
            dev_id = str(uuid.uuid4())
            r = c.post(
                "/api/v1/devices",
                headers=h,
                json={
                    "device_id": dev_id,
                    "vendor_id": VENDOR,
                    "class_id": CLASS,
                    "public_key": pem,
                },
            )
            assert r.status_code == 201
            dh = {"Authorization": f"Bearer {r.json()['token']}"}
            ident = {"vendor_id": VENDOR, "class_id": CLASS, "device_id": dev_id}
            for _ in range(20):  # spread over both workers
                assert c.post("/device/v1/checkin", json=ident, headers=dh).status_code == 204
            workers = {
                line.split('worker="')[1].split('"')[0]
                for line in c.get("/metrics").text.splitlines()
                if line.startswith("suitkit_http_requests_total")
            }
            assert len(workers) >= 1
