"""The device agent: one simulated device (a directory, see
:mod:`suitkit.device.simulated`) talking to the update service (RFC 9019 §2.2, §3).

One *cycle* is a check-in and, when an update is offered, all of it:

1. **check-in** with the device's identity and what it runs (sequence number and manifest
   digest of the image it booted); the server answers 204 (nothing to do) or an offer;
2. **download** the envelope, the severed members and the payloads into
   ``agent/downloads/``; a cut transfer keeps its partial file and the next attempt resumes
   it (HTTP ``Range``/``If-Range``, CoAP Block2 from the next block). Each complete file is
   checked against the offer's SHA-256: a mismatch is downloaded again once, then handed to
   the processor anyway, whose image-match (the signed manifest's digest, not the server's
   word) decides: a corrupted payload is refused and reported;
3. **install**: the processor's Update procedure (authentication, sequence number,
   payload-fetch, install, validate) into the slot the device does not boot from
   (:meth:`SimulatedDevice.update`), the payload URIs served from the downloads;
4. **boot**: the bootloader (:meth:`SimulatedDevice.boot`) recovers an interrupted install,
   validates and invokes the preferred slot, falls back to the other one;
5. **report**: the run's SUIT_Report, with the offer's nonce (suit-report-nonce), signed with
   the device's key (the one registered with the server), uploaded until acknowledged.

Every step is persisted in ``agent/state.json`` *before* it runs (:mod:`suitkit.agent.state`):
a killed agent continues with the same step; an install that was interrupted (the agent was
killed, or the power was cut: :class:`~suitkit.device.simulated.PowerCut`) is followed by a
boot, which finishes or reverts it, and then, unless the device now runs the offered manifest,
by a new install attempt (at most ``max_install_attempts``, then a failure report). Reports are
idempotent on the server (one per nonce), so one sent twice (the answer was lost) is counted
once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suitkit.agent.state import STATE_DIR, AgentState, write_file
from suitkit.device.events import Procedure, RunResult
from suitkit.device.fetch import FetcherBase, FileFetcher
from suitkit.device.processor import claimed_digest
from suitkit.device.simulated import BootResult, FaultInjector, PowerCut, SimulatedDevice
from suitkit.errors import OperationFailedError, SuitError
from suitkit.format.digest import Digest
from suitkit.format.envelope import Envelope
from suitkit.transport.api import (
    ChunkHook,
    DeviceApi,
    NotOffered,
    Offer,
    ReportAck,
    ReportRefused,
    TransportError,
)

__all__ = ["Agent", "AgentHooks", "CycleResult", "digest_text", "running_version"]

MAX_MISMATCHES = 2


def digest_text(d: Digest) -> str:
    """``sha-256:<hex>``, as the server writes manifest digests."""
    return f"{d.algorithm_name}:{d.value.hex()}"


@dataclass
class AgentHooks:
    """Where a simulation injects faults (the fleet simulator; the CLI's test options)."""

    #: Wraps each downloaded chunk (drop, corrupt, throttle).
    chunk_hook: ChunkHook | None = None
    #: A fault injector for the next install attempt (a power cut after N writes), or None.
    install_fault: Callable[[], FaultInjector | None] | None = None
    #: After a power cut, reboot in-process (True: the fleet) or let PowerCut propagate
    #: (False: the process dies with the device; the next start recovers).
    reboot_on_power_cut: bool = True
    #: fsync state and device writes (False for simulated fleets on throw-away directories).
    durable: bool = True
    #: Fetcher for URIs the offer does not cover (the manifest names another server).
    fallback: FetcherBase | None = None
    #: The device keeps its own log of signed reports, one per run (``reports/``). A fleet
    #: simulator turns it off: the agent builds, signs and sends the report of the update
    #: anyway, and the device directory is thrown away.
    log_reports: bool = True


@dataclass(frozen=True, slots=True)
class CycleResult:
    """``outcome``: nothing (no offer), updated, failed (``reason``), withdrawn (the offer
    disappeared while downloading)."""

    outcome: str
    campaign_id: int | None = None
    manifest_digest: str | None = None
    reason: str | None = None
    ack: ReportAck | None = None
    bootable: bool = True

    @property
    def finished(self) -> bool:
        return self.outcome in ("updated", "failed")


class _InstallFetcher(FetcherBase):
    """Payload URIs from the downloads; anything else from the fallback (if any)."""

    def __init__(self, files: Mapping[str, Path], fallback: FetcherBase | None) -> None:
        super().__init__()
        self.files = FileFetcher(files, allow_file_scheme=False)
        self.fallback = fallback

    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        if self.files.handles(uri):
            return self.files.fetch(uri, arguments, limit=limit)
        if self.fallback is not None:
            return self.fallback.fetch(uri, arguments, limit=limit)
        raise OperationFailedError(f"the offer holds no payload for {uri}")


def running_version(dev: SimulatedDevice, cache: dict[str, list[Any]] | None = None,
                    ) -> tuple[int | None, str | None]:
    """Sequence number and manifest digest of the manifest of the slot the device booted
    (None, None before its first boot)."""
    boot = dev.state["boot"]
    name = boot["manifests"].get(str(boot["active"]))
    if name is None:
        return None, None
    if cache is not None and name in cache:
        seq, digest = cache[name]
        return seq, digest
    try:
        env = Envelope.decode((dev.dir / name).read_bytes())
        seq, digest = env.manifest.sequence_number, digest_text(env.authentication.digest)
    except (OSError, SuitError):
        return None, None
    if cache is not None:
        cache[name] = [seq, digest]
    return seq, digest


class Agent:
    """The agent of the device in ``directory``, talking through ``api``."""

    def __init__(
        self,
        directory: Path | str,
        api: DeviceApi,
        *,
        hooks: AgentHooks | None = None,
        log: Callable[[str], None] | None = None,
        max_install_attempts: int = 3,
    ) -> None:
        self.dir = Path(directory)
        self.api = api
        self.hooks = hooks or AgentHooks()
        self.log = log or (lambda _m: None)
        self.max_install_attempts = max_install_attempts
        self.state = AgentState.load(self.dir)
        self.downloads = self.dir / STATE_DIR / "downloads"
        self._device: SimulatedDevice | None = None
        # the device's configuration, trust anchors and report key, parsed once per cycle
        self._cache: dict[str, Any] = {}
        self._report_kept: bytes | None = None  # what report.cbor holds (from this object)

    # --- the device ---

    def device(self, fault: FaultInjector | None = None, fetcher: FetcherBase | None = None,
               ) -> SimulatedDevice:
        """The device, opened afresh (after a power cut its RAM state is gone)."""
        self._device = SimulatedDevice(self.dir, fetcher=fetcher, fault=fault,
                                       durable=self.hooks.durable, cache=self._cache,
                                       log_reports=self.hooks.log_reports)
        return self._device

    def _current(self) -> SimulatedDevice:
        return self._device if self._device is not None else self.device()

    def checkin_body(self) -> dict[str, Any]:
        dev = self._current()
        cfg = dev.config
        if cfg.device_id is None:
            raise ValueError(f"{self.dir}: the device has no device id (device init --device-id)")
        seq, digest = running_version(dev, self.state.versions)
        body: dict[str, Any] = {
            "vendor_id": str(cfg.vendor_id), "class_id": str(cfg.class_id),
            "device_id": str(cfg.device_id),
        }
        if seq is not None:
            body["sequence_number"] = seq
        if digest is not None:
            body["manifest_digest"] = digest
        return body

    def save(self) -> None:
        self.state.save(self.dir, durable=self.hooks.durable)

    # --- one cycle ---

    async def cycle(self) -> CycleResult:
        """Check in and carry out what is offered; continue an interrupted cycle first.
        Raises TransportError (transient): call again later, it resumes."""
        st = self.state
        self._cache.clear()
        if st.phase == "idle":
            offer = await self.api.checkin(self.checkin_body())
            if offer is None:
                return CycleResult("nothing")
            self.log(f"offer: campaign {offer.campaign_id}, release {offer.release_id}, "
                     f"sequence number {offer.sequence_number}, {offer.total_size} bytes")
            self._begin(offer)
        offer = st.current_offer
        assert offer is not None, f"phase {st.phase} without an offer"
        if st.phase == "downloading":
            try:
                await self._download_all(offer)
            except NotOffered as exc:
                self.log(f"offer withdrawn ({exc}); checking in again")
                self._finish()
                return CycleResult("withdrawn", offer.campaign_id, offer.manifest_digest)
            st.phase = "installing"
            self.save()
        if st.phase == "installing":
            self._install(offer)
        if st.phase == "booting":
            self._boot(offer)
        return await self._report(offer)

    def _begin(self, offer: Offer) -> None:
        st = self.state
        st.phase, st.offer = "downloading", offer.to_json()
        st.install_attempts, st.mismatches = 0, {}
        st.update_ok = st.report_ok = st.bootable = None
        st.report_reason, st.drop_nonce = None, False
        self.downloads.mkdir(parents=True, exist_ok=True)
        self.save()

    def _finish(self) -> None:
        st = self.state
        st.phase, st.offer = "idle", None
        st.install_attempts, st.mismatches = 0, {}
        self._report_kept = None
        self.save()
        shutil.rmtree(self.downloads, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.dir / STATE_DIR / "report.cbor").unlink()

    # --- download ---

    def _path(self, sha256: str) -> Path:
        return self.downloads / sha256

    async def _download_all(self, offer: Offer) -> None:
        st = self.state
        self.downloads.mkdir(parents=True, exist_ok=True)
        for f in offer.files:
            final = self._path(f.sha256)
            if final.exists():
                continue
            part = self.downloads / f"{f.sha256}.part"
            before = part.stat().st_size if part.exists() else 0
            if 0 < before < f.size:
                st.counters.resumed += 1
                self.log(f"resuming {f.kind} {f.sha256[:12]} at byte {before}")
            try:
                await self.api.download(f, part, self.hooks.chunk_hook)
            finally:
                after = part.stat().st_size if part.exists() else 0
                st.counters.bytes_received += max(0, after - before)
            actual = _sha256_file(part)
            if actual != f.sha256:
                n = st.mismatches.get(f.sha256, 0) + 1
                st.mismatches[f.sha256] = n
                if n < MAX_MISMATCHES:
                    part.unlink()
                    st.counters.redownloads += 1
                    self.save()
                    raise TransportError(
                        f"{f.kind} {f.sha256[:12]}: received data has SHA-256 {actual[:12]}; "
                        "downloading it again"
                    )
                self.log(f"{f.kind} {f.sha256[:12]} still does not match the offer: the "
                         "processor will check it against the signed manifest")
            part.replace(final)  # the file itself records the progress: no state write

    # --- install ---

    def _install(self, offer: Offer) -> None:
        st = self.state
        env_bytes = self._path(offer.envelope.sha256).read_bytes()
        while st.phase == "installing":
            if st.install_attempts > 0:
                # the previous attempt was interrupted (power cut, agent killed): the
                # bootloader finishes or reverts it
                st.counters.recoveries += 1
                boot = self.device().boot()
                what = boot.recovered or "nothing to recover"
                self.log(f"boot after an interrupted install: {what}, slot {boot.slot}")
                if _booted(boot) == offer.manifest_digest and boot.result is not None:
                    self._store_report(boot.result, offer)
                    st.update_ok, st.bootable, st.phase = True, True, "reporting"
                    self.save()
                    return
                if st.install_attempts >= self.max_install_attempts:
                    err = OperationFailedError(
                        f"the install was interrupted {st.install_attempts} times"
                    )
                    self._store_report(
                        RunResult.rejected(Procedure.UPDATE, err, claimed_digest(env_bytes)), offer
                    )
                    st.update_ok, st.bootable, st.phase = False, boot.ok, "reporting"
                    self.save()
                    return
            st.install_attempts += 1
            self.save()
            fault = self.hooks.install_fault() if self.hooks.install_fault else None
            files = {p.name: self._path(p.sha256) for p in offer.payloads}
            dev = self.device(fault, _InstallFetcher(files, self.hooks.fallback))
            members = [self._path(m.sha256).read_bytes() for m in offer.members]
            try:
                result = dev.update(env_bytes, severed=members or None)
            except PowerCut:
                st.counters.power_cuts += 1
                self.save()
                self.log("power cut during the install")
                self._device = None
                if not self.hooks.reboot_on_power_cut:
                    raise
                continue
            self.log("install: " + ("ok" if result.ok else f"FAILED: {result.error}"))
            self._store_report(result, offer)
            st.update_ok = result.ok
            st.phase = "booting"
            self.save()

    def _store_report(self, result: RunResult, offer: Offer) -> None:
        from suitkit.device.report import build_report

        dev = self._current()
        report = build_report(result, components=dev.components(), nonce=offer.report_nonce)
        encoded = report.encode()
        write_file(self.dir / STATE_DIR / "report.cbor", encoded, durable=self.hooks.durable)
        self._report_kept = encoded
        self.state.report_ok = report.ok
        self.state.report_reason = None if report.result is None else \
            report.result.reason.spec_name

    # --- boot ---

    def _boot(self, offer: Offer) -> None:
        st = self.state
        boot = self.device().boot()
        st.bootable = boot.ok
        booted = _booted(boot)
        if st.update_ok and booted != offer.manifest_digest:
            # installed, but the bootloader did not run it: report why
            failing: RunResult | None = None
            for _slot, attempt in boot.attempts:
                if isinstance(attempt, RunResult) and attempt.manifest_digest is not None and \
                        digest_text(attempt.manifest_digest) == offer.manifest_digest:
                    failing = attempt
            if failing is None or failing.ok:
                env_bytes = self._path(offer.envelope.sha256).read_bytes()
                failing = RunResult.rejected(
                    Procedure.INVOCATION,
                    OperationFailedError("the bootloader did not boot the new image"),
                    claimed_digest(env_bytes),
                )
            self._store_report(failing, offer)
            st.update_ok = False
        self.log(f"boot: slot {boot.slot}" + (f", runs {booted}" if booted else ", NOT BOOTABLE"))
        st.phase = "reporting"
        self.save()

    # --- report ---

    async def _report(self, offer: Offer) -> CycleResult:
        from suitkit.device.report import SuitReport, sign_encoded_report

        st = self.state
        if self._report_kept is not None:
            encoded = self._report_kept
        else:  # stored by an earlier run of the agent
            encoded = (self.dir / STATE_DIR / "report.cbor").read_bytes()
            SuitReport.decode(encoded)
        key = self._current().device_key()
        ack: ReportAck | None = None
        while True:
            if st.drop_nonce:
                report = dataclasses.replace(SuitReport.decode(encoded), nonce=None)
                encoded = report.encode()
            try:
                ack = await self.api.report(offer.report_url, sign_encoded_report(encoded, key))
                break
            except ReportRefused as exc:
                if exc.nonce_problem and not st.drop_nonce:
                    self.log(f"report refused ({exc.message}): sending it without the nonce")
                    st.drop_nonce = True
                    self.save()
                    continue
                self.log(f"report refused for good: {exc}")
                break
        ok = bool(st.report_ok)
        result = CycleResult(
            "updated" if ok else "failed", offer.campaign_id, offer.manifest_digest,
            st.report_reason, ack, bool(st.bootable),
        )
        self.log("report " + ("acknowledged" if ack else "not accepted") +
                 f": {'success' if ok else 'failure ' + str(st.report_reason)}")
        st.history = [*st.history[-19:], {
            "campaign_id": offer.campaign_id, "manifest_digest": offer.manifest_digest,
            "outcome": result.outcome, "reason": result.reason,
            "report_id": ack.report_id if ack else None,
        }]
        self._finish()
        return result


def _booted(boot: BootResult) -> str | None:
    """The manifest digest of the image the bootloader booted (None: nothing booted)."""
    if not boot.ok or boot.result is None or boot.result.manifest_digest is None:
        return None
    return digest_text(boot.result.manifest_digest)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
