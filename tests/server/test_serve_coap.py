"""``suitkit serve --coap-port``: the CoAP device API in the server process (one worker and
several), its setting, and the checks before it binds."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from suitkit.server.config import ConfigError, Settings, load_settings
from suitkit.server.run import check_coap_port

from .conftest import AUTHOR_PUB, CLASS, VENDOR, device_keypair, payload_bytes, release_envelope
from .live import LiveServer, admin_token

aiocoap = pytest.importorskip("aiocoap")

from suitkit.transport.api import Unauthorized  # noqa: E402
from suitkit.transport.coap_client import CoapDeviceApi  # noqa: E402


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _start(data: Path, coap_port: int, *extra: str) -> LiveServer:
    live = LiveServer(data, trust=AUTHOR_PUB, extra=["--coap-port", str(coap_port), *extra])
    live.start(timeout=60)
    return live


def _setup(live: LiveServer, data: Path, n: int) -> list[tuple[str, str]]:
    """A release, ``n`` registered devices and a campaign to them: (device id, token)s."""
    h = {"Authorization": f"Bearer {admin_token(data)}"}
    with httpx.Client(base_url=live.url, headers=h, timeout=30) as api:
        fw = payload_bytes(5000, tag=b"coap-serve")
        r = api.post("/api/v1/releases", files=[
            ("envelope", ("u.suit", release_envelope(2, fw).encode(), "application/octet-stream")),
            ("payload", ("firmware.bin", fw, "application/octet-stream")),
        ])
        assert r.status_code == 201, r.text
        release_id = r.json()["id"]
        devices = []
        for _ in range(n):
            _key, pem = device_keypair()
            dev_id = str(uuid.uuid4())
            r = api.post("/api/v1/devices", json={
                "device_id": dev_id, "vendor_id": VENDOR, "class_id": CLASS, "public_key": pem,
            })
            assert r.status_code == 201, r.text
            devices.append((dev_id, r.json()["token"]))
        r = api.post("/api/v1/campaigns", json={
            "name": "coap", "release_id": release_id,
            "target": {"devices": [d for d, _ in devices]},
        })
        assert r.status_code == 201, r.text
    return devices


async def _checkin(url: str, device_id: str, token: str, tmp: Path) -> tuple[Any, bytes]:
    api = CoapDeviceApi(url, token)
    try:
        offer = await api.checkin({"vendor_id": VENDOR, "class_id": CLASS,
                                   "device_id": device_id})
        assert offer is not None
        part = tmp / f"{device_id}.part"
        await api.download(offer.envelope, part)
        return offer, part.read_bytes()
    finally:
        await api.aclose()


@pytest.mark.slow
def test_serve_answers_coap_checkins_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_udp_port()
    live = _start(data, port)
    try:
        [(dev_id, token)] = _setup(live, data, 1)
        url = f"coap://127.0.0.1:{port}"
        offer, envelope = asyncio.run(_checkin(url, dev_id, token, tmp_path))
        assert offer.envelope.url.startswith(f"{url}/device/v1/files/")
        assert offer.report_url == f"{url}/device/v1/reports"
        assert len(envelope) == offer.envelope.size
        # a wrong token is refused over CoAP as over HTTP
        with pytest.raises(Unauthorized):
            asyncio.run(_checkin(url, dev_id, "skd_wrong", tmp_path))
        assert live.proc is not None
        live.proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then re-raises the signal it caught
        assert live.proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        live.stop()
    log = live.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "Application shutdown complete" in log
    assert "CoAP device API listening" in log
    assert udp_port_free(port)  # released on shutdown


@pytest.mark.slow
def test_several_workers_share_the_coap_port(tmp_path: Path) -> None:
    """``--workers 2``: every worker binds the port (SO_REUSEPORT); each client is answered."""
    from aiocoap.defaults import has_reuse_port

    if not has_reuse_port():
        pytest.skip("no SO_REUSEPORT on this platform")
    data = tmp_path / "data"
    port = free_udp_port()
    live = _start(data, port, "--workers", "2")
    try:
        # HTTP answers once one worker is up; the other may still be starting (a loaded
        # machine): wait until both listen on CoAP, so that both take part
        deadline = time.monotonic() + 60
        while live.log.read_text().count("CoAP device API listening") < 2:
            assert time.monotonic() < deadline, live.log.read_text()
            time.sleep(0.1)
        devices = _setup(live, data, 6)
        url = f"coap://127.0.0.1:{port}"

        async def all_of_them() -> list[Any]:
            return await asyncio.gather(
                *(_checkin(url, d, t, tmp_path) for d, t in devices)
            )

        results = asyncio.run(all_of_them())
        assert all(len(env) == offer.envelope.size for offer, env in results)
    finally:
        live.stop()
    log = live.log.read_text()
    assert "Traceback" not in log
    assert log.count("CoAP device API listening") == 2  # one per worker


def test_a_taken_coap_port_stops_serve_before_it_starts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"coap-port {port}: cannot bind UDP"):
            check_coap_port(Settings(coap_port=port))
        out = subprocess.run(
            [sys.executable, "-m", "suitkit.server", "serve", "--data", str(tmp_path / "d"),
             "--host", "127.0.0.1", "--port", "1", "--coap-port", str(port)],
            capture_output=True, text=True, timeout=60,
        )
    assert out.returncode == 2, out.stderr
    assert f"coap-port {port}" in out.stderr
    check_coap_port(Settings())  # off: nothing to check


def test_coap_port_setting(tmp_path: Path) -> None:
    assert load_settings(env={}).coap_port is None  # off unless asked for
    assert load_settings(env={"SUITKIT_COAP_PORT": "5683"}).coap_port == 5683
    for off in ("0", "off", ""):
        assert load_settings(env={"SUITKIT_COAP_PORT": off}).coap_port is None
    cfg = tmp_path / "suitkit.toml"
    cfg.write_text("[server]\ncoap-port = 5684\n")
    assert load_settings(env={}, config_file=cfg).coap_port == 5684
    # a flag wins; 0 turns it off
    assert load_settings({"coap_port": 0}, env={}, config_file=cfg).coap_port is None
    with pytest.raises(ConfigError, match="coap-port"):
        load_settings(env={"SUITKIT_COAP_PORT": "70000"})
    with pytest.raises(ConfigError, match="not an integer"):
        load_settings(env={"SUITKIT_COAP_PORT": "many"})
    # handed to the workers (serve --workers N) like every setting
    assert Settings(coap_port=5683).env()["SUITKIT_COAP_PORT"] == "5683"
    assert "SUITKIT_COAP_PORT" not in Settings().env()


@pytest.mark.slow
def test_the_coap_server_runs_as_a_process_of_its_own_beside_serve(tmp_path: Path) -> None:
    """``python -m suitkit.transport.coap_server --data DIR --port P``: the same device API,
    on the same database and blobs as a ``suitkit serve`` without ``--coap-port``."""
    data = tmp_path / "data"
    live = LiveServer(data, trust=AUTHOR_PUB)
    live.start(timeout=60)
    port = free_udp_port()
    log = tmp_path / "coap.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suitkit.transport.coap_server", "--data", str(data),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        [(dev_id, token)] = _setup(live, data, 1)
        deadline = time.monotonic() + 60
        while udp_port_free(port):  # listening once the port is taken
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        url = f"coap://127.0.0.1:{port}"
        offer, envelope = asyncio.run(_checkin(url, dev_id, token, tmp_path))
        assert offer.envelope.url.startswith(f"{url}/device/v1/files/")
        assert len(envelope) == offer.envelope.size
        with pytest.raises(Unauthorized):
            asyncio.run(_checkin(url, dev_id, "skd_wrong", tmp_path))
    finally:
        proc.terminate()
        proc.wait(20)
        live.stop()
    assert "Traceback" not in log.read_text()
