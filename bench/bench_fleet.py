"""Fleet benchmark (issue #7): simulated devices complete a campaign against a real server on
loopback, and the CoAP/HTTP transfer comparison.

1. ``campaign``: N devices (default 10,000) take a release with a 64 KiB payload through the
   whole path: check-in, envelope and payload download, the real processor (authentication,
   install into flash, image-match), the bootloader, a signed report. Server: ``suitkit serve``
   with ``--workers`` uvicorn workers on SQLite, in its own processes; fleet: one process, one
   asyncio loop. Timed from the campaign's creation to the last report acknowledged (device
   registration and the release upload come before and are timed apart). ``--transport coap``
   runs the same over the CoAP front end (one extra process).
2. ``transfer``: one download of a 1 MiB payload by each transport (HTTP, CoAP over UDP with a
   window of 16 block requests in flight, CoAP over TCP with BERT blocks), best of 5; then the
   memory of both ends for an 8 MiB payload: peak Python allocations of the client during the
   download (tracemalloc) and the resident size of the CoAP server process before and after.

Usage::

    python bench/bench_fleet.py                        # both, 10,000 devices over HTTP
    python bench/bench_fleet.py campaign --devices 10000 --transport coap --workers 1
    python bench/bench_fleet.py transfer

The figures depend on the machine: the server and the fleet share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
VENDOR = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
CLASS = "1492af14-2569-5e48-bf42-9b2d51f2ab45"
URI = "https://updates.example.com/bench/firmware.bin"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``suitkit serve`` (and optionally the CoAP front end) in a temporary directory."""

    def __init__(self, data: Path, trust: Path, workers: int, coap: bool) -> None:
        self.data, self.trust, self.workers = data, trust, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.coap_port = free_port(socket.SOCK_DGRAM) if coap else None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "SUITKIT_ACCESS_LOG": "false", "SUITKIT_LOG_LEVEL": "warning",
                    "SUITKIT_TICK_INTERVAL": "1"}

    def start(self) -> Server:
        log = open(self.data.parent / "server.log", "ab")  # noqa: SIM115 - the children keep it
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "suitkit.server", "serve", "--data", str(self.data),
             "--host", "127.0.0.1", "--port", str(self.port), "--trust", str(self.trust),
             "--workers", str(self.workers)], stdout=log, stderr=log, env=self.env))
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start; see server.log")
            time.sleep(0.1)
        if self.coap_port is not None:
            ready = self.data.parent / "coap.ready"
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "suitkit.transport.coap_server", "--data", str(self.data),
                 "--trust", str(self.trust), "--port", str(self.coap_port), "--ready-file",
                 str(ready)], stdout=log, stderr=log, env=self.env))
            while not ready.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the CoAP server did not start; see server.log")
                time.sleep(0.05)
        log.close()
        return self

    @property
    def coap_url(self) -> str:
        return f"coap://127.0.0.1:{self.coap_port}"

    def coap_pid(self) -> int:
        return self.procs[1].pid

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    def admin_token(self) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "suitkit.server", "admin", "token", "create", "--role",
             "admin", "--data", str(self.data)], check=True, capture_output=True, text=True,
            env=self.env,
        )
        return out.stdout.strip()


def make_release(directory: Path, size: int, seq: int = 2, key: Any = None,
                 name: str = "firmware.bin") -> tuple[bytes, bytes, Path, Any]:
    """A signed envelope for one ``size``-byte payload (a new author key unless ``key``)."""
    from suitkit.author.builder import build_from_description
    from suitkit.author.signing import sign_envelope
    from suitkit.cose.keys import CoseKey
    from suitkit.format.codepoints import CoseAlgorithm

    key = key or CoseKey.generate(CoseAlgorithm.ESP256)
    pub = directory / "author.pub.pem"
    pub.write_bytes(key.public_key().to_pem())
    fw = os.urandom(size)
    env = sign_envelope(build_from_description({
        "sequence-number": seq,
        "components": [{"id": ["h'00'"], "vendor-id": VENDOR, "class-id": CLASS,
                        "digest": "sha256:" + hashlib.sha256(fw).hexdigest(), "size": size,
                        "uri": URI.replace("firmware.bin", name), "invoke": True}],
    }), [key])
    return env.encode(), fw, pub, key


def upload(c: httpx.Client, envelope: bytes, fw: bytes, name: str = "firmware.bin") -> int:
    r = c.post("/api/v1/releases", files=[("envelope", ("u.suit", envelope)),
                                          ("payload", (name, fw))])
    r.raise_for_status()
    return int(r.json()["id"])


def bench_campaign(devices: int, transport: str, workers: int, concurrency: int,
                   payload_size: int, factory_image: bool, processes: int) -> dict[str, Any]:
    from suitkit.agent.fleet import FleetFile, register

    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="suitkit-bench-", dir=where) as tmp:
        root = Path(tmp)
        envelope, fw, pub, _ = make_release(root, payload_size)
        server = Server(root / "data", pub, workers, coap=transport.startswith("coap")).start()
        try:
            token = server.admin_token()
            t = time.perf_counter()
            fleet = asyncio.run(register(server.url, token, devices, VENDOR, CLASS))
            t_register = time.perf_counter() - t
            c = httpx.Client(base_url=server.url, timeout=120,
                             headers={"Authorization": f"Bearer {token}"})
            release_id = upload(c, envelope, fw)
            coap_url = None
            if transport == "coap":
                coap_url = server.coap_url
            elif transport == "coap+tcp":
                coap_url = server.coap_url.replace("coap://", "coap+tcp://")
            # one fleet per process, each with its share of the devices
            shares = [fleet.devices[i::processes] for i in range(processes)]
            jobs = []
            for i, share in enumerate(shares):
                f = root / f"fleet{i}.json"
                FleetFile(fleet.server, fleet.vendor_id, fleet.class_id, share).save(f)
                jobs.append({
                    "fleet": str(f), "server": server.url, "trust": str(pub),
                    "work": str(root / f"work{i}"), "concurrency": max(1, concurrency // processes),
                    "transport": "coap" if transport.startswith("coap") else "http",
                    "coap_url": coap_url, "flash": max(payload_size, 4096),
                    "factory": factory_image,
                })
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            ready, go = ctx.Barrier(processes + 1), ctx.Event()
            with ctx.Pool(processes, initializer=_init_child, initargs=(ready, go)) as pool:
                pending = pool.map_async(_run_share, jobs)
                ready.wait()  # every process has built its template device
                t0 = time.perf_counter()
                r = c.post("/api/v1/campaigns", json={"name": "bench", "release_id": release_id,
                                                      "target": {"all": True}})
                r.raise_for_status()
                campaign_id = int(r.json()["id"])
                go.set()
                results = pending.get()
                last = max(x["last_done"] for x in results)
                while True:  # the campaign completes on the server's next look
                    status = c.get(f"/api/v1/campaigns/{campaign_id}").json()
                    if status["state"] != "running" or time.perf_counter() - t0 > last + 30:
                        break
                    time.sleep(0.05)
                elapsed = time.perf_counter() - t0
            c.close()
            server_cpu = sum(_cpu_seconds(p.pid) for p in server.procs)
        finally:
            server.stop()
    return {
        "devices": devices, "transport": transport, "server_workers": workers,
        "fleet_processes": processes, "fleet_concurrency": concurrency,
        "payload": payload_size, "registration_s": round(t_register, 2),
        "last_report_s": round(last, 2), "campaign_completed_s": round(elapsed, 2),
        "devices_per_s": round(devices / last, 1),
        "updated": sum(x["updated"] for x in results),
        "failed": sum(x["failed"] for x in results),
        "unfinished": sum(x["unfinished"] for x in results),
        "fleet_cpu_ms_per_device": round(sum(x["cpu"] for x in results) * 1000 / devices, 1),
        "server_cpu_ms_per_device": round(server_cpu * 1000 / devices, 1),
        "campaign_state": status["state"], "installed": status["counts"]["installed"],
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


_SYNC: dict[str, Any] = {}


def _init_child(ready: Any, go: Any) -> None:
    _SYNC["ready"], _SYNC["go"] = ready, go


def _run_share(job: dict[str, Any]) -> dict[str, Any]:
    """One fleet process: build the template, wait for the campaign, run its devices."""
    from suitkit.agent.fleet import FleetFile, FleetOptions, FleetSimulator

    fleet = FleetFile.load(Path(job["fleet"]))
    opts = FleetOptions(
        concurrency=job["concurrency"], interval=1.0, timeout=3600,
        flash_size=job["flash"], transports=(job["transport"],), coap_url=job["coap_url"],
        factory_image=job["factory"],
    )
    sim = FleetSimulator(job["server"], fleet, [Path(job["trust"])], Path(job["work"]), opts)
    sim.prepare()
    _SYNC["ready"].wait()
    _SYNC["go"].wait()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = asyncio.run(sim.run())
    return {
        "updated": result.count("updated"), "failed": result.count("failed"),
        "unfinished": result.count("unfinished"), "cpu": time.process_time() - cpu0,
        "last_done": max((o.seconds for o in result.outcomes), default=0.0)
        + (time.perf_counter() - t0 - result.elapsed),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its (waited-for or live) children."""
    total = 0.0
    try:
        out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True,
                             text=True).stdout.split()
    except OSError:
        out = []
    for p in [pid, *map(int, out)]:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


# --- transfer -------------------------------------------------------------------------------


def bench_transfer(size: int = 1 << 20, big: int = 8 << 20) -> dict[str, Any]:
    from suitkit.device.simulated import ComponentConfig, DeviceConfig, SimulatedDevice
    from suitkit.transport.api import OfferFile
    from suitkit.transport.coap_client import CoapDeviceApi
    from suitkit.transport.http_client import HttpDeviceApi

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="suitkit-bench-") as tmp:
        root = Path(tmp)
        env1, fw1, pub, key = make_release(root, size)
        env2, fw2, _, _ = make_release(root, big, 3, key, "big.bin")
        server = Server(root / "data", pub, 1, coap=True).start()
        try:
            token = server.admin_token()
            c = httpx.Client(base_url=server.url, timeout=120,
                             headers={"Authorization": f"Bearer {token}"})
            files: dict[int, tuple[OfferFile, str]] = {}  # size -> (file, device token)
            for n, (envelope, fw, fname) in enumerate(
                ((env1, fw1, "firmware.bin"), (env2, fw2, "big.bin"))
            ):
                cfg = DeviceConfig(uuid.UUID(VENDOR), uuid.UUID(CLASS), uuid.uuid4(),
                                   (ComponentConfig((b"\x00",), big, 2),), 4096)
                dev = SimulatedDevice.init(root / f"dev{n}", cfg, [pub])
                r = c.post("/api/v1/devices", json={
                    "device_id": str(cfg.device_id), "vendor_id": VENDOR, "class_id": CLASS,
                    "public_key": (dev.dir / "device-key.pub.pem").read_text()})
                r.raise_for_status()
                dev_token = r.json()["token"]
                rid = upload(c, envelope, fw, fname)
                c.post("/api/v1/campaigns", json={
                    "name": f"t{n}", "release_id": rid,
                    "target": {"devices": [str(cfg.device_id)]}}).raise_for_status()
                ident = {"vendor_id": VENDOR, "class_id": CLASS, "device_id": str(cfg.device_id)}
                c.post("/device/v1/checkin", json=ident,
                       headers={"Authorization": f"Bearer {dev_token}"}).raise_for_status()
                sha = hashlib.sha256(fw).hexdigest()
                files[len(fw)] = (
                    OfferFile("payload", f"/device/v1/files/{sha}", sha, len(fw)), dev_token
                )
            tcp = server.coap_url.replace("coap://", "coap+tcp://")
            apis: dict[str, tuple[str, Any]] = {
                "http": (server.url, lambda t: HttpDeviceApi(server.url, t, durable=False)),
                "coap (udp, window 16)": (server.coap_url, lambda t: CoapDeviceApi(
                    server.coap_url, t, durable=False)),
                "coap (udp, lock-step)": (server.coap_url, lambda t: CoapDeviceApi(
                    server.coap_url, t, durable=False, window=1)),
                "coap+tcp (BERT)": (tcp, lambda t: CoapDeviceApi(tcp, t, durable=False)),
            }
            for name, (prefix, make) in apis.items():
                f, tok = files[size]
                f = OfferFile(f.kind, prefix + f.url, f.sha256, f.size)
                best = min(asyncio.run(_timed_download(make, tok, f, root / "dl.part"))
                           for _ in range(5))
                out[f"{name}: 1 MiB, s"] = round(best, 4)
                out[f"{name}: MB/s"] = round(size / best / 1e6, 1)
            # memory, both ends, 1 MiB vs 8 MiB
            for name in ("http", "coap (udp, window 16)", "coap+tcp (BERT)"):
                prefix, make = apis[name]
                for sz in (size, big):
                    f, tok = files[sz]
                    f = OfferFile(f.kind, prefix + f.url, f.sha256, f.size)
                    rss0 = _rss(server.coap_pid())
                    tracemalloc.start()
                    asyncio.run(_timed_download(make, tok, f, root / "dl.part"))
                    _, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
                    label = f"{name}: {sz >> 20} MiB"
                    out[f"{label}: client peak alloc KiB"] = peak // 1024
                    if name.startswith("coap"):
                        out[f"{label}: coap server RSS growth KiB"] = \
                            (_rss(server.coap_pid()) - rss0) // 1024
            c.close()
        finally:
            server.stop()
    return out


async def _timed_download(make: Any, token: str, f: Any, part: Path) -> float:
    api = make(token)
    part.unlink(missing_ok=True)
    try:
        t = time.perf_counter()
        await api.download(f, part)
        elapsed = time.perf_counter() - t
    finally:
        await api.aclose()
    if part.stat().st_size != f.size:
        raise RuntimeError(f"{f.url}: incomplete download")
    return elapsed


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="?", choices=("campaign", "transfer", "all"), default="all")
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--transport", choices=("http", "coap", "coap+tcp"), default="http")
    p.add_argument("--processes", type=int, default=1, help="fleet processes")
    p.add_argument("--workers", type=int, default=1, help="uvicorn workers of the server")
    p.add_argument("--concurrency", type=int, default=64, help="devices in a cycle at once")
    p.add_argument("--payload", type=int, default=64 * 1024)
    p.add_argument("--no-factory-image", action="store_true")
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    if args.what in ("campaign", "all"):
        r = bench_campaign(args.devices, args.transport, args.workers, args.concurrency,
                           args.payload, not args.no_factory_image, args.processes)
        print("campaign: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    if args.what in ("transfer", "all"):
        for k, v in bench_transfer().items():
            print(f"transfer: {k}: {v}")


if __name__ == "__main__":
    main()
