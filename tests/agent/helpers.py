"""Helpers for the agent tests: a real server process, releases, devices, campaigns."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from suitkit.author.builder import build_from_description
from suitkit.author.signing import sign_envelope
from suitkit.cose.keys import CoseKey
from suitkit.device.simulated import ComponentConfig, DeviceConfig, SimulatedDevice
from suitkit.format.envelope import Envelope

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
AUTHOR_KEY = VECTORS / "keys" / "suit-example-es256-private.pem"
AUTHOR_PUB = VECTORS / "keys" / "suit-example-es256-public.pem"
VENDOR = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
CLASS = "1492af14-2569-5e48-bf42-9b2d51f2ab45"
PAGE = 1024
URI = "https://updates.example.com/fw/firmware.bin"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """``python -m suitkit.server serve`` on 127.0.0.1 (SQLite in ``data``), restartable on
    the same port; optionally with the CoAP device API (``--coap-port``, in the same process)."""

    def __init__(self, data: Path, *, coap: bool = False, extra: list[str] | None = None) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.coap_port = free_port(socket.SOCK_DGRAM) if coap else None
        self.coap_url = f"coap://127.0.0.1:{self.coap_port}" if coap else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.coap_proc: subprocess.Popen[bytes] | None = None  # CoAP as a process of its own
        self.extra = extra or []
        self.env = {**os.environ, "SUITKIT_TICK_INTERVAL": "0.2", "SUITKIT_ACCESS_LOG": "false"}
        self.log = data.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 30.0) -> LiveServer:
        try:
            return self._start(timeout)
        except RuntimeError as exc:
            if self.coap_port is None or "coap-port" not in str(exc):
                raise
            print(exc, file=sys.stderr)  # the CoAP port was taken meanwhile? one more try
            self.coap_port = free_port(socket.SOCK_DGRAM)
            self.coap_url = f"coap://127.0.0.1:{self.coap_port}"
            return self._start(timeout)

    def _start(self, timeout: float) -> LiveServer:
        self.data.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "suitkit.server", "serve", "--data", str(self.data),
                "--host", "127.0.0.1", "--port", str(self.port), "--trust", str(AUTHOR_PUB),
                *self.extra]
        if self.coap_port is not None:
            args += ["--coap-port", str(self.coap_port)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:  # answering HTTP: the lifespan has started, CoAP is bound
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def kill9(self) -> None:
        for p in (self.proc, self.coap_proc):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)

    def stop(self) -> None:
        for p in (self.coap_proc, self.proc):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)

    def admin_token(self) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "suitkit.server", "admin", "token", "create", "--role",
             "admin", "--data", str(self.data)],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()


def payload(n: int, tag: bytes) -> bytes:
    return (tag * (n // max(1, len(tag)) + 1))[:n]


def release(seq: int, fw: bytes, *, severable: list[str] | None = None, uri: str = URI,
            ) -> Envelope:
    desc: dict[str, Any] = {
        "sequence-number": seq,
        "components": [{
            "id": ["h'00'"], "vendor-id": VENDOR, "class-id": CLASS,
            "digest": "sha256:" + hashlib.sha256(fw).hexdigest(), "size": len(fw),
            "uri": uri, "invoke": True,
        }],
    }
    if severable:
        desc["severable"] = severable
        desc["text"] = {"en-US": {"manifest-description": f"release {seq}"}}
    return sign_envelope(build_from_description(desc), [CoseKey.load(AUTHOR_KEY)])


class Operator:
    """The operator API of a live server."""

    def __init__(self, url: str, token: str) -> None:
        self.c = httpx.Client(base_url=url, timeout=30,
                              headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.c.close()

    def upload(self, env: Envelope, fw: bytes, *, severed: list[bytes] | None = None,
               name: str = "firmware.bin") -> int:
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            ("envelope", ("u.suit", env.encode(), "application/octet-stream")),
            ("payload", (name, fw, "application/octet-stream")),
        ]
        for i, m in enumerate(severed or []):
            files.append(("severed", (f"m{i}.cbor", m, "application/cbor")))
        r = self.c.post("/api/v1/releases", files=files)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def release_file(self, release_id: int, kind: str) -> dict[str, Any]:
        r = self.c.get(f"/api/v1/releases/{release_id}")
        assert r.status_code == 200, r.text
        return next(f for f in r.json()["files"] if f["kind"] == kind)

    def register(self, device: SimulatedDevice, **extra: Any) -> str:
        cfg = device.config
        r = self.c.post("/api/v1/devices", json={
            "device_id": str(cfg.device_id), "vendor_id": str(cfg.vendor_id),
            "class_id": str(cfg.class_id),
            "public_key": (device.dir / "device-key.pub.pem").read_text(), **extra,
        })
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def campaign(self, release_id: int, devices: list[str] | None = None, **kw: Any,
                 ) -> dict[str, Any]:
        target: dict[str, Any] = {"devices": devices} if devices else {"all": True}
        body: dict[str, Any] = {"name": f"c{release_id}", "release_id": release_id,
                                "target": target, **kw}
        r = self.c.post("/api/v1/campaigns", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def status(self, campaign_id: int) -> dict[str, Any]:
        r = self.c.get(f"/api/v1/campaigns/{campaign_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def reports(self, device_id: str) -> list[dict[str, Any]]:
        r = self.c.get(f"/api/v1/devices/{device_id}/reports")
        assert r.status_code == 200, r.text
        return list(r.json())

    def device(self, device_id: str) -> dict[str, Any]:
        r = self.c.get(f"/api/v1/devices/{device_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())


def new_device(path: Path, *, size: int = 512 * PAGE, device_id: str | None = None,
               ) -> SimulatedDevice:
    cfg = DeviceConfig(
        uuid.UUID(VENDOR), uuid.UUID(CLASS), uuid.UUID(device_id) if device_id else uuid.uuid4(),
        (ComponentConfig((b"\x00",), size, 2),), PAGE,
    )
    return SimulatedDevice.init(path, cfg, [AUTHOR_PUB])


def enroll(path: Path, server: str, token: str) -> None:
    (path / "agent.json").write_text(json.dumps({"server": server, "token": token}))
