"""The fleet simulator: N simulated devices in one process, each running the real agent,
processor and bootloader, over HTTP or CoAP, with faults.

Each device is a :class:`~suitkit.device.simulated.SimulatedDevice` directory under the work
directory, copied from a template when the device first runs (flash erased, trust anchors,
and, by default, a *factory image*: a sequence-number-0 manifest installed and booted once in
the template, signed by a factory key the simulator generates and adds to the template's trust
anchors, so that every device has an image to fall back to) and removed when it is done
(``keep=False``). The devices' identities, tokens and report keys come from a *fleet file*
(JSON, mode 0600) that :func:`register` writes after registering them through the operator
API (``POST /api/v1/devices/import``).

Every device runs as one asyncio task: check-in, then (when offered) download, install, boot,
report, all through :class:`~suitkit.agent.core.Agent`; at most ``concurrency`` devices are
inside a cycle at a time; devices whose wave is not open yet poll again after a jittered
``interval``; transient errors back off exponentially. The run ends when every device has
finished (updated or failed), when the campaign being rolled out stops (completed, paused or
aborted: needs an operator token to watch it), or at the timeout. Each device is accounted for
once in :class:`FleetResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suitkit.agent.backoff import Backoff, jittered
from suitkit.agent.core import Agent, AgentHooks, CycleResult, running_version
from suitkit.agent.faults import DeviceFaults, FaultSpec, FaultyApi
from suitkit.agent.state import AgentState
from suitkit.files import atomic_write, write_all
from suitkit.transport.api import DeviceApi, TransportError, Unauthorized

__all__ = [
    "DeviceOutcome",
    "FleetDevice",
    "FleetFile",
    "FleetOptions",
    "FleetResult",
    "FleetSimulator",
    "FleetStats",
    "build_template",
    "register",
]

FACTORY_URI = "factory:image"


@dataclass(frozen=True)
class FleetDevice:
    device_id: str
    token: str
    key: str  # the private report key (PEM): it signs this device's SUIT_Reports


@dataclass
class FleetFile:
    """The simulated devices of one server: identities, tokens, report keys (secret: 0600)."""

    server: str
    vendor_id: str
    class_id: str
    devices: list[FleetDevice]

    def save(self, path: Path) -> None:
        data = {
            "server": self.server, "vendor_id": self.vendor_id, "class_id": self.class_id,
            "devices": [{"device_id": d.device_id, "token": d.token, "key": d.key}
                        for d in self.devices],
        }
        atomic_write(Path(path), json.dumps(data).encode(), mode=0o600)

    @classmethod
    def load(cls, path: Path) -> FleetFile:
        try:
            data = json.loads(Path(path).read_text())
            return cls(
                str(data["server"]), str(data["vendor_id"]), str(data["class_id"]),
                [FleetDevice(str(d["device_id"]), str(d["token"]), str(d["key"]))
                 for d in data["devices"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a fleet file: {exc}") from None


async def register(
    server: str,
    operator_token: str,
    n: int,
    vendor_id: str,
    class_id: str,
    *,
    group: str | None = None,
    tags: Sequence[str] = (),
    batch: int = 1000,
) -> FleetFile:
    """Generate ``n`` device identities and report keys and register them (in batches, each
    all or none) through ``POST /api/v1/devices/import``; the answer holds their tokens."""
    import httpx

    from suitkit.cose.keys import CoseKey
    from suitkit.format.codepoints import CoseAlgorithm

    devices: list[FleetDevice] = []
    headers = {"Authorization": f"Bearer {operator_token}"}
    async with httpx.AsyncClient(base_url=server.rstrip("/"), timeout=120, headers=headers) as c:
        for start in range(0, n, batch):
            keys: dict[str, str] = {}
            items = []
            for _ in range(start, min(n, start + batch)):
                key = CoseKey.generate(CoseAlgorithm.ESP256)
                dev_id = str(uuid.uuid4())
                keys[dev_id] = key.to_pem(private=True).decode()
                item: dict[str, Any] = {
                    "device_id": dev_id, "vendor_id": vendor_id, "class_id": class_id,
                    "public_key": key.public_key().to_pem().decode(),
                    "name": f"sim-{dev_id[:8]}", "tags": list(tags),
                }
                if group:
                    item["group"] = group
                items.append(item)
            r = await c.post("/api/v1/devices/import", json=items)
            if r.status_code != 201:
                raise RuntimeError(f"registering devices: {r.status_code} {r.text[:500]}")
            for d in r.json()["devices"]:
                devices.append(FleetDevice(d["device_id"], d["token"], keys[d["device_id"]]))
    return FleetFile(server, vendor_id, class_id, devices)


def build_template(
    directory: Path,
    vendor_id: str,
    class_id: str,
    trust: Sequence[Path],
    *,
    flash_size: int,
    page_size: int = 4096,
    factory_image: bool = True,
) -> Path:
    """A device directory every simulated device is copied from (see the module doc)."""
    import hashlib

    from suitkit.author.builder import build_from_description
    from suitkit.author.signing import sign_envelope
    from suitkit.cose.keys import CoseKey
    from suitkit.device.fetch import MemoryFetcher
    from suitkit.device.simulated import ComponentConfig, DeviceConfig, SimulatedDevice
    from suitkit.format.codepoints import CoseAlgorithm

    directory.mkdir(parents=True, exist_ok=True)
    template = directory / "template"
    shutil.rmtree(template, ignore_errors=True)
    anchors = list(trust)
    factory_key = None
    if factory_image:
        factory_key = CoseKey.generate(CoseAlgorithm.ESP256)
        pub = directory / "factory.pub.pem"
        pub.write_bytes(factory_key.public_key().to_pem())
        anchors.append(pub)
    cfg = DeviceConfig(uuid.UUID(vendor_id), uuid.UUID(class_id), uuid.UUID(int=0),
                       (ComponentConfig((b"\x00",), flash_size, 2),), page_size)
    dev = SimulatedDevice.init(template, cfg, anchors)
    if factory_key is not None:
        image = b"suitkit factory image\n" * 8
        env = sign_envelope(build_from_description({
            "sequence-number": 0,
            "components": [{
                "id": ["h'00'"], "vendor-id": vendor_id, "class-id": class_id,
                "digest": "sha256:" + hashlib.sha256(image).hexdigest(), "size": len(image),
                "uri": FACTORY_URI, "invoke": True,
            }],
        }), [factory_key])
        dev = SimulatedDevice(template, fetcher=MemoryFetcher({FACTORY_URI: image}))
        dev.update(env.encode()).check()
        booted = SimulatedDevice(template)
        if not booted.boot().ok:  # pragma: no cover - checked by tests
            raise RuntimeError("the factory image does not boot")
        # what the agent remembers of the manifest it runs (it says so at check-in)
        state = AgentState()
        running_version(booted, state.versions)
        state.save(template)
    for p in (template / "reports").glob("*"):
        p.unlink()
    return template


@dataclass
class FleetOptions:
    concurrency: int = 50
    interval: float = 1.0
    faults: FaultSpec = field(default_factory=FaultSpec)
    seed: int | None = None
    timeout: float = 600.0
    flash_size: int = 1 << 20
    page_size: int = 4096
    factory_image: bool = True
    keep: bool = False
    transports: tuple[str, ...] = ("http",)
    coap_url: str | None = None
    operator_token: str | None = None
    campaign_id: int | None = None
    max_backoff: float = 30.0


@dataclass
class DeviceOutcome:
    """``outcome``: updated, failed (``reason``), not-offered (the campaign stopped, or never
    included the device), unfinished (timeout)."""

    device_id: str
    transport: str
    outcome: str
    reason: str | None = None
    retries: int = 0
    resumed: int = 0
    power_cuts: int = 0
    bootable: bool | None = None
    acknowledged: bool = False
    seconds: float = 0.0

    @property
    def recovered(self) -> bool:
        return self.power_cuts > 0 and bool(self.bootable)


@dataclass
class FleetStats:
    """Live counters (for progress display)."""

    total: int
    updated: int = 0
    failed: int = 0
    other: int = 0
    active: int = 0
    offered: int = 0
    retries: int = 0
    power_cuts: int = 0
    bytes: int = 0
    campaign_state: str | None = None

    @property
    def done(self) -> int:
        return self.updated + self.failed + self.other


@dataclass
class FleetResult:
    outcomes: list[DeviceOutcome]
    elapsed: float
    campaign: dict[str, Any] | None = None
    bytes_received: int = 0

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    @property
    def failure_reasons(self) -> dict[str, int]:
        return dict(Counter(o.reason or "unknown" for o in self.outcomes if o.outcome == "failed"))

    @property
    def retried(self) -> int:
        return sum(1 for o in self.outcomes if o.retries > 0)

    @property
    def recovered(self) -> int:
        return sum(1 for o in self.outcomes if o.recovered)

    @property
    def power_cuts(self) -> int:
        return sum(1 for o in self.outcomes if o.power_cuts > 0)

    @property
    def bricked(self) -> int:
        return sum(1 for o in self.outcomes if o.bootable is False)

    def summary(self) -> dict[str, Any]:
        return {
            "devices": len(self.outcomes),
            "updated": self.count("updated"),
            "failed": self.count("failed"),
            "failure_reasons": self.failure_reasons,
            "not_offered": self.count("not-offered"),
            "unfinished": self.count("unfinished"),
            "retried": self.retried,
            "power_cuts": self.power_cuts,
            "recovered_from_power_loss": self.recovered,
            "bricked": self.bricked,
            "elapsed_s": round(self.elapsed, 3),
            "bytes_received": self.bytes_received,
            "campaign": None if self.campaign is None else {
                k: self.campaign.get(k) for k in ("id", "state", "counts", "pause_reason")
            },
        }


class _Snapshot:
    """A template device directory in memory: its directories and files with their modes;
    ``device.json`` as data (each device gets its own device id)."""

    SKIP = frozenset({"device.json", "device-key.pem", "device-key.pub.pem"})

    def __init__(self, dirs: list[tuple[str, int]], files: list[tuple[str, bytes, int]],
                 config: dict[str, Any]) -> None:
        self.dirs, self.files, self.config = dirs, files, config
        umask = os.umask(0o022)
        os.umask(umask)
        #: what the umask would take away: set with chmod
        modes = [(path, mode) for path, mode in dirs] + [(path, mode) for path, _, mode in files]
        self.chmod = {path for path, mode in modes if mode & umask}

    @classmethod
    def read(cls, template: Path) -> _Snapshot:
        dirs: list[tuple[str, int]] = []
        files: list[tuple[str, bytes, int]] = []
        for root, subdirs, names in os.walk(template):
            rel = os.path.relpath(root, template)
            for sd in sorted(subdirs):
                mode = os.stat(os.path.join(root, sd)).st_mode & 0o7777
                dirs.append((os.path.normpath(os.path.join(rel, sd)), mode))
            for name in sorted(names):
                path = os.path.normpath(os.path.join(rel, name))
                if path not in cls.SKIP:
                    mode = os.stat(os.path.join(root, name)).st_mode & 0o7777
                    files.append((path, (template / path).read_bytes(), mode))
        config = json.loads((template / "device.json").read_text())
        return cls(dirs, files, config)

    def write(self, d: Path, device_id: str, key_pem: str) -> None:
        os.makedirs(d)
        base = str(d)
        for sub, mode in self.dirs:
            path = os.path.join(base, sub)
            os.mkdir(path, mode)
            if sub in self.chmod:
                os.chmod(path, mode)
        for sub, data, mode in self.files:
            path = os.path.join(base, sub)
            _write(path, data, mode)
            if sub in self.chmod:
                os.chmod(path, mode)
        cfg = dict(self.config, **{"device-id": device_id})
        _write(os.path.join(base, "device.json"), json.dumps(cfg).encode(), 0o644)
        _write(os.path.join(base, "device-key.pem"), key_pem.encode(), 0o600)


def _remove_tree(path: str) -> None:
    """``shutil.rmtree(path, ignore_errors=True)`` for a device directory the simulator made
    (no symbolic links, nobody else writing in it), with fewer system calls."""
    try:
        with os.scandir(path) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    _remove_tree(e.path)
                else:
                    os.unlink(e.path)
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


class _Sim:
    """One simulated device in the run."""

    def __init__(self, index: int, entry: FleetDevice, transport: str, rng: random.Random,
                 faults: DeviceFaults) -> None:
        self.index = index
        self.entry = entry
        self.transport = transport
        self.rng = rng
        self.faults = faults
        self.dir: Path | None = None
        self.agent: Agent | None = None
        self.started = 0.0


class FleetSimulator:
    def __init__(
        self,
        server: str,
        fleet: FleetFile,
        trust: Sequence[Path],
        workdir: Path,
        options: FleetOptions | None = None,
        *,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.fleet = fleet
        self.trust = list(trust)
        self.workdir = Path(workdir)
        self.opts = options or FleetOptions()
        self.log = log or (lambda _m: None)
        self.stats = FleetStats(len(fleet.devices))
        self.campaign_id = self.opts.campaign_id
        self.campaign: dict[str, Any] | None = None
        self._stopping = asyncio.Event()
        self._sem = asyncio.Semaphore(max(1, self.opts.concurrency))
        self._outcomes: dict[int, DeviceOutcome] = {}
        self._template: Path | None = None
        self._snap: _Snapshot | None = None
        self._http: Any = None
        self._coap: Any = None

    # --- transports ---

    async def _open_transports(self) -> None:
        if "http" in self.opts.transports:
            from suitkit.transport.http_client import HttpPool

            # one keep-alive connection per device in a cycle
            self._http = HttpPool(connections=max(1, self.opts.concurrency), timeout=30.0)
        if "coap" in self.opts.transports:
            if not self.opts.coap_url:
                raise ValueError("the CoAP transport needs the server's coap:// URL")
            from suitkit.transport.coap_client import new_context

            # one client endpoint per concurrent device, as real devices have: aiocoap keeps
            # one request at a time in flight per endpoint and server (NSTART = 1)
            self._coap = [await new_context() for _ in range(max(1, self.opts.concurrency))]

    async def _close_transports(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        for ctx in self._coap or ():
            await ctx.shutdown()

    def _api(self, sim: _Sim) -> DeviceApi:
        inner: DeviceApi
        if sim.transport == "coap":
            from suitkit.transport.coap_client import CoapDeviceApi

            assert self.opts.coap_url is not None
            inner = CoapDeviceApi(self.opts.coap_url, sim.entry.token,
                                  context=self._coap[sim.index % len(self._coap)], durable=False)
        else:
            from suitkit.transport.http_client import HttpDeviceApi

            inner = HttpDeviceApi(self.server, sim.entry.token, client=self._http, durable=False)
        spec = self.opts.faults
        if spec.drop or spec.corrupt or spec.slow:
            return FaultyApi(inner, sim.faults)
        return inner

    # --- devices ---

    def _snapshot(self) -> _Snapshot:
        """The template's directories and files, read once (each device is written from it)."""
        if self._snap is None:
            assert self._template is not None
            self._snap = _Snapshot.read(self._template)
        return self._snap

    def _materialise(self, sim: _Sim) -> Agent:
        """Copy the template into the device's directory (its identity and report key)."""
        d = self.workdir / "devices" / sim.entry.device_id
        if d.exists():
            shutil.rmtree(d)
        self._snapshot().write(d, sim.entry.device_id, sim.entry.key)
        sim.dir = d
        page = self.opts.page_size

        def install_fault() -> Any:
            offer = agent.state.current_offer
            size = sum(p.size for p in offer.payloads) if offer else self.opts.flash_size
            return sim.faults.install_fault(size // page + 12)

        agent = Agent(d, self._api(sim), hooks=AgentHooks(
            install_fault=install_fault, reboot_on_power_cut=True, durable=False,
            log_reports=self.opts.keep,
        ))
        sim.agent = agent
        return agent

    def _finish(self, sim: _Sim, outcome: str, result: CycleResult | None = None,
                reason: str | None = None) -> None:
        if sim.index in self._outcomes:
            return
        agent = sim.agent
        c = agent.state.counters if agent else None
        o = DeviceOutcome(
            sim.entry.device_id, sim.transport, outcome,
            reason=result.reason if result is not None else reason,
            retries=c.retries if c else 0, resumed=c.resumed if c else 0,
            power_cuts=c.power_cuts if c else 0,
            bootable=result.bootable if result is not None else None,
            acknowledged=bool(result and result.ack),
            seconds=time.monotonic() - sim.started,
        )
        if o.bootable is None and sim.dir is not None and agent is not None and \
                agent.state.phase == "idle":
            o.bootable = True  # never touched by an update: still runs its image
        self._outcomes[sim.index] = o
        if c is not None:
            self.stats.bytes += c.bytes_received
        if outcome == "updated":
            self.stats.updated += 1
        elif outcome == "failed":
            self.stats.failed += 1
        else:
            self.stats.other += 1
        if not self.opts.keep and sim.dir is not None:
            _remove_tree(str(sim.dir))

    async def _device(self, sim: _Sim) -> None:
        sim.started = time.monotonic()
        backoff = Backoff(base=0.5, cap=self.opts.max_backoff, rng=sim.rng)
        offered = False
        # spread the first check-ins over a short ramp
        await asyncio.sleep(sim.rng.random() * min(self.opts.interval, 0.5))
        while True:
            if self._stopping.is_set() and (sim.agent is None or sim.agent.state.phase == "idle"):
                self._finish(sim, "not-offered", reason=self.stats.campaign_state)
                return
            async with self._sem:
                self.stats.active += 1
                try:
                    agent = sim.agent or self._materialise(sim)
                    result = await agent.cycle()
                except TransportError as exc:
                    result = None
                    self.log(f"{sim.entry.device_id[:8]}: {exc}")
                    if sim.agent is not None:
                        sim.agent.state.counters.retries += 1
                    self.stats.retries += 1
                    delay = backoff.next()
                    if isinstance(exc, Unauthorized):
                        delay = max(delay, 5.0)
                finally:
                    self.stats.active -= 1
            if result is None:
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if not offered and sim.agent is not None and sim.agent.state.offer is not None:
                offered = True
            if result.outcome in ("updated", "failed"):
                if self.campaign_id is None:
                    self.campaign_id = result.campaign_id
                self.stats.power_cuts += sim.agent.state.counters.power_cuts if sim.agent else 0
                self._finish(sim, result.outcome, result)
                return
            if result.outcome == "withdrawn":
                continue
            await asyncio.sleep(jittered(self.opts.interval, rng=sim.rng))

    # --- the campaign ---

    async def _watch_campaign(self) -> None:
        import httpx

        assert self.opts.operator_token is not None
        headers = {"Authorization": f"Bearer {self.opts.operator_token}"}
        async with httpx.AsyncClient(base_url=self.server, headers=headers, timeout=10) as c:
            while True:
                await asyncio.sleep(0.5)
                if self.campaign_id is None:
                    # the newest running campaign, until a device is offered one
                    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                        r = await c.get("/api/v1/campaigns")
                        running = [x for x in r.json() if x["state"] == "running"]
                        if running:
                            self.campaign_id = int(running[0]["id"])
                    continue
                try:
                    r = await c.get(f"/api/v1/campaigns/{self.campaign_id}")
                    if r.status_code != 200:
                        continue
                    self.campaign = r.json()
                except (httpx.HTTPError, ValueError):
                    continue
                state = str(self.campaign.get("state"))
                self.stats.campaign_state = state
                if state in ("completed", "paused", "aborted"):
                    self.log(f"campaign {self.campaign_id} is {state}")
                    self._stopping.set()

    async def _final_campaign(self) -> None:
        if self.opts.operator_token is None or self.campaign_id is None:
            return
        import httpx

        headers = {"Authorization": f"Bearer {self.opts.operator_token}"}
        with contextlib.suppress(httpx.HTTPError, ValueError):
            async with httpx.AsyncClient(base_url=self.server, headers=headers, timeout=10) as c:
                # the server's ticker may need a moment to see the last report
                for _ in range(20):
                    r = await c.get(f"/api/v1/campaigns/{self.campaign_id}")
                    if r.status_code == 200:
                        self.campaign = r.json()
                        if self.campaign.get("state") != "running":
                            return
                    await asyncio.sleep(0.25)

    # --- the run ---

    def prepare(self) -> Path:
        """Build the template device (``run`` does it when it was not done before)."""
        if self._template is None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._template = build_template(
                self.workdir, self.fleet.vendor_id, self.fleet.class_id, self.trust,
                flash_size=self.opts.flash_size, page_size=self.opts.page_size,
                factory_image=self.opts.factory_image,
            )
        return self._template

    async def run(self) -> FleetResult:
        t0 = time.monotonic()
        self.prepare()
        master = random.Random(self.opts.seed)
        sims = []
        for i, entry in enumerate(self.fleet.devices):
            rng = random.Random(master.getrandbits(64))
            transport = self.opts.transports[i % len(self.opts.transports)]
            sims.append(_Sim(i, entry, transport, rng, DeviceFaults.draw(self.opts.faults, rng)))
        await self._open_transports()
        watcher = (asyncio.create_task(self._watch_campaign())
                   if self.opts.operator_token else None)
        tasks = [asyncio.create_task(self._device(s)) for s in sims]
        # each device cycle allocates (and frees, by reference counting) many objects: with
        # the default threshold the cyclic collector runs every few hundred allocations and
        # goes through the devices in flight each time (about 5 % of the CPU time)
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], 20_000), *thresholds[1:])
        try:
            done, pending = await asyncio.wait(tasks, timeout=self.opts.timeout)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            for t in done:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            for s in sims:
                if s.index not in self._outcomes:
                    self._finish(s, "unfinished", reason="timeout")
        finally:
            gc.set_threshold(*thresholds)
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await self._close_transports()
        await self._final_campaign()
        if self.campaign is not None:
            self.stats.campaign_state = str(self.campaign.get("state"))
        outcomes = [self._outcomes[s.index] for s in sims]
        return FleetResult(outcomes, time.monotonic() - t0, self.campaign, self.stats.bytes)
