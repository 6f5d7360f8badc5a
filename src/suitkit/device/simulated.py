"""A simulated device in a directory: flash, identity, trust anchors, persistent state, a
bootloader, and a fault injector that cuts the power after the N-th write.

Layout of the directory::

    device.json          identity, page size, components (id, slots, size)   (written at init)
    trust/*.pem          trust anchors: public keys that may sign manifests
    flash/<id>.<slot>    one file per component slot (page-granular writes)
    flash/scratch        the scratch page of the journaled swap
    manifests/<sha>.suit envelopes of installed (or being installed) manifests
    state.json           sequence numbers, slot contents, boot slots, the journal

Every persistent change (a flash page, a state write) is one *write*: the :class:`FaultInjector`
counts them and raises :class:`PowerCut` instead of the (N+1)-th. ``state.json`` is written
atomically (temp file, fsync, rename), so it is always the old or the new state.

Resilience (manifest §6.3): the execution component may have several slots (A/B). An update
writes the slot the execution component does not boot from; only the final commit (one state
write, which also records the sequence number) makes the device prefer the new slot. The
bootloader (:meth:`SimulatedDevice.boot`) runs the Invocation procedure of the manifest of the
preferred slot and falls back to the other slots when it fails. A staged update (payload-fetch
into a staging component, install by copy or swap) is journaled: the journal names the manifest
being installed and the section reached; a swap records its progress page by page (through a
scratch page), so the bootloader can finish it. On boot after an interruption the bootloader
finishes an interrupted swap, or reapplies the install (a copy from the verified staging
component is repeatable), commits the new manifest if its validation passes, and otherwise
reverts (swaps back) and boots the old image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suitkit.device.events import Procedure, RunResult
from suitkit.device.fetch import FetcherBase
from suitkit.device.platform import DeviceIdentity, Reporter
from suitkit.device.processor import Processor, ProcessorLimits, authenticated_envelope
from suitkit.errors import OperationFailedError, SuitError
from suitkit.format.codepoints import ManifestKey
from suitkit.format.envelope import Envelope
from suitkit.format.manifest import ComponentIdentifier

__all__ = [
    "BootResult",
    "ComponentConfig",
    "DeviceConfig",
    "FaultInjector",
    "PowerCut",
    "SimulatedDevice",
]

DEFAULT_PAGE = 4096


class PowerCut(BaseException):
    """The fault injector cut the power (a BaseException: nothing may swallow it)."""


@dataclass
class FaultInjector:
    """Counts writes; with ``cut_after=N`` the writes 1..N happen and the next one raises."""

    cut_after: int | None = None
    count: int = 0

    def tick(self) -> None:
        if self.cut_after is not None and self.count >= self.cut_after:
            raise PowerCut(f"power cut after write {self.count}")
        self.count += 1


def cid_key(cid: ComponentIdentifier) -> str:
    """A component id as a file-name-safe key: ``00``, ``75736572/6b6579``."""
    return "/".join(p.hex() for p in cid)


def cid_from_key(key: str) -> ComponentIdentifier:
    return tuple(bytes.fromhex(p) for p in key.split("/")) if key else ()


@dataclass(frozen=True)
class ComponentConfig:
    id: ComponentIdentifier
    size: int
    slots: int = 1


@dataclass(frozen=True)
class DeviceConfig:
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    device_id: uuid.UUID | None
    components: tuple[ComponentConfig, ...]
    page_size: int = DEFAULT_PAGE

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor-id": str(self.vendor_id),
            "class-id": str(self.class_id),
            "device-id": str(self.device_id) if self.device_id else None,
            "page-size": self.page_size,
            "components": [
                {"id": cid_key(c.id), "size": c.size, "slots": c.slots} for c in self.components
            ],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeviceConfig:
        return cls(
            uuid.UUID(d["vendor-id"]),
            uuid.UUID(d["class-id"]),
            uuid.UUID(d["device-id"]) if d.get("device-id") else None,
            tuple(
                ComponentConfig(cid_from_key(c["id"]), int(c["size"]), int(c["slots"]))
                for c in d["components"]
            ),
            int(d.get("page-size", DEFAULT_PAGE)),
        )


@dataclass(frozen=True)
class BootResult:
    """What the bootloader did: the slot it booted (None: nothing bootable) and every attempt."""

    slot: int | None
    result: RunResult | None
    attempts: tuple[tuple[int, RunResult | SuitError], ...] = ()
    recovered: str = ""

    @property
    def ok(self) -> bool:
        return self.slot is not None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _FlashWriter:
    """Page-granular streamed write into one slot file; the slot was erased when opened."""

    def __init__(self, dev: SimulatedDevice, slot_key: str, capacity: int) -> None:
        self._dev = dev
        self._slot_key = slot_key
        self._capacity = capacity
        self._buf = bytearray()
        self._pos = 0
        self._fd: int | None = None
        dev._set_length(slot_key, None)  # erase: the old content is gone from now on
        self._fd = os.open(dev.dir / "flash" / slot_key.replace("/", "_"), os.O_RDWR)

    def write(self, chunk: bytes | memoryview) -> None:
        if self._fd is None:
            raise ValueError("writer closed")
        if self._pos + len(self._buf) + len(chunk) > self._capacity:
            raise OperationFailedError("write past the end of the component")
        self._buf += chunk
        page = self._dev.config.page_size
        if len(self._buf) >= page:
            whole = len(self._buf) - len(self._buf) % page
            view = memoryview(self._buf)
            for off in range(0, whole, page):
                self._dev.fault.tick()
                os.pwrite(self._fd, view[off : off + page], self._pos)
                self._pos += page
            view.release()
            del self._buf[:whole]

    def commit(self) -> None:
        if self._fd is None:
            raise ValueError("writer closed")
        if self._buf:
            self._dev.fault.tick()
            os.pwrite(self._fd, self._buf, self._pos)
            self._pos += len(self._buf)
            self._buf.clear()
        os.fsync(self._fd)
        self._close()
        self._dev._set_length(self._slot_key, self._pos)

    def abort(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SimulatedDevice:
    """A :class:`~suitkit.device.platform.Platform` over a device directory."""

    def __init__(
        self,
        directory: Path | str,
        *,
        fetcher: FetcherBase | None = None,
        fault: FaultInjector | None = None,
        limits: ProcessorLimits | None = None,
    ) -> None:
        self.dir = Path(directory)
        cfg_path = self.dir / "device.json"
        try:
            self.config = DeviceConfig.from_json(json.loads(cfg_path.read_text()))
            self.state: dict[str, Any] = json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise OperationFailedError(f"{self.dir} is not a device directory: {exc}") from None
        self.fetcher = fetcher
        self.fault = fault or FaultInjector()
        self.limits = limits or ProcessorLimits()
        self._comps = {c.id: c for c in self.config.components}
        boot = next((c for c in self.config.components if c.slots > 1), self.config.components[0])
        self.boot_component = boot.id
        self.view: dict[ComponentIdentifier, int] = {}
        self.invocations: list[tuple[ComponentIdentifier, int, bytes | None]] = []

    # --- creation ---

    @classmethod
    def init(
        cls,
        directory: Path | str,
        config: DeviceConfig,
        trust: Iterable[Path] = (),
    ) -> SimulatedDevice:
        d = Path(directory)
        if (d / "device.json").exists():
            raise OperationFailedError(f"{d} already holds a device")
        for sub in ("flash", "manifests", "trust"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        lengths: dict[str, int | None] = {}
        for c in config.components:
            for s in range(c.slots):
                key = f"{cid_key(c.id)}.{s}"
                with (d / "flash" / key.replace("/", "_")).open("wb") as f:
                    f.truncate(c.size)
                lengths[key] = None
        with (d / "flash" / "scratch").open("wb") as f:
            f.truncate(config.page_size)
        for i, p in enumerate(trust):
            (d / "trust" / f"{i:02d}-{Path(p).name}").write_bytes(Path(p).read_bytes())
        state = {
            "sequence-numbers": {},
            "lengths": lengths,
            "boot": {"manifests": {}, "preferred": 0, "active": 0},
            "journal": None,
        }
        _atomic_write(d / "state.json", json.dumps(state, indent=1).encode())
        _atomic_write(d / "device.json", json.dumps(config.to_json(), indent=1).encode())
        return cls(d)

    def trusted_keys(self) -> list[Any]:
        from suitkit.cose.keys import CoseKey

        return [CoseKey.load(p) for p in sorted((self.dir / "trust").iterdir()) if p.is_file()]

    # --- state ---

    def _save(self) -> None:
        self.fault.tick()
        _atomic_write(self.dir / "state.json", json.dumps(self.state, indent=1).encode())

    def _set_length(self, slot_key: str, length: int | None) -> None:
        self.state["lengths"][slot_key] = length
        self._save()

    def _slot_of(self, cid: ComponentIdentifier) -> int:
        return self.view.get(cid, 0)

    def _slot_key(self, cid: ComponentIdentifier) -> str:
        self._comp(cid)
        return f"{cid_key(cid)}.{self._slot_of(cid)}"

    def _comp(self, cid: ComponentIdentifier) -> ComponentConfig:
        c = self._comps.get(cid)
        if c is None:
            raise OperationFailedError(f"the device has no component {cid!r}")
        return c

    def _path(self, slot_key: str) -> Path:
        return self.dir / "flash" / slot_key.replace("/", "_")

    # --- Platform: identity, clock ---

    def identity(self, component: ComponentIdentifier) -> DeviceIdentity:
        return DeviceIdentity(self.config.vendor_id, self.config.class_id, self.config.device_id)

    def now(self) -> float:
        import time

        return time.time()

    # --- Platform: storage ---

    def components(self) -> Sequence[ComponentIdentifier]:
        return [c.id for c in self.config.components]

    def capacity(self, component: ComponentIdentifier) -> int:
        return self._comp(component).size

    def slot(self, component: ComponentIdentifier) -> int | None:
        return self._slot_of(component) if self._comp(component).slots > 1 else None

    def size(self, component: ComponentIdentifier) -> int | None:
        length = self.state["lengths"].get(self._slot_key(component))
        return None if length is None else int(length)

    def read(self, component: ComponentIdentifier, chunk_size: int) -> Iterator[bytes]:
        key = self._slot_key(component)
        length = self.state["lengths"].get(key)
        return self._read_file(self._path(key), length or 0, chunk_size)

    @staticmethod
    def _read_file(path: Path, length: int, chunk_size: int) -> Iterator[bytes]:
        with path.open("rb") as f:
            left = length
            while left > 0:
                chunk = f.read(min(chunk_size, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    def open_write(self, component: ComponentIdentifier, size_hint: int | None) -> _FlashWriter:
        return _FlashWriter(self, self._slot_key(component), self.capacity(component))

    def erase(self, component: ComponentIdentifier) -> None:
        self._set_length(self._slot_key(component), None)

    def swap(self, a: ComponentIdentifier, b: ComponentIdentifier) -> None:
        ka, kb = self._slot_key(a), self._slot_key(b)
        lengths = self.state["lengths"]
        j = self.state.get("journal") or {}
        j["swap"] = {
            "a": ka,
            "b": kb,
            "len-a": lengths.get(ka),
            "len-b": lengths.get(kb),
            "page": 0,
            "stage": 0,
        }
        self.state["journal"] = j
        self._save()
        self._run_swap()

    def _run_swap(self) -> None:
        """Swap page by page through the scratch page; resumable from the journal."""
        j = self.state["journal"]
        sw = j["swap"]
        page = self.config.page_size
        pa, pb, scratch = self._path(sw["a"]), self._path(sw["b"]), self.dir / "flash" / "scratch"
        total = max(sw["len-a"] or 0, sw["len-b"] or 0)
        pages = -(-total // page)
        with pa.open("r+b") as fa, pb.open("r+b") as fb, scratch.open("r+b") as fs:

            def rd(f: Any, i: int) -> bytes:
                f.seek(i * page)
                return bytes(f.read(page)).ljust(page, b"\xff")

            def wr(f: Any, i: int, data: bytes) -> None:
                self.fault.tick()
                f.seek(i * page)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

            while sw["page"] < pages:
                i, stage = sw["page"], sw["stage"]
                if stage == 0:
                    wr(fs, 0, rd(fa, i))
                    sw["stage"] = 1
                elif stage == 1:
                    wr(fa, i, rd(fb, i))
                    sw["stage"] = 2
                else:
                    fs.seek(0)
                    wr(fb, i, fs.read(page))
                    sw["page"], sw["stage"] = i + 1, 0
                self._save()
        lengths = self.state["lengths"]
        lengths[sw["a"]], lengths[sw["b"]] = sw["len-b"], sw["len-a"]
        j["swap"] = None
        j["swapped"] = [*j.get("swapped", []), [sw["a"], sw["b"]]]
        self._save()

    # --- Platform: fetch, invoke ---

    def fetch(self, uri: str, arguments: bytes | None = None) -> Iterator[bytes]:
        if self.fetcher is None:
            raise OperationFailedError(f"no fetcher here (the bootloader has no network): {uri}")
        return self.fetcher.fetch(uri, arguments)

    def invoke(self, component: ComponentIdentifier, arguments: bytes | None) -> None:
        self.invocations.append((component, self._slot_of(component), arguments))

    # --- Platform: custom commands ---

    def custom_commands(self) -> frozenset[int]:
        return frozenset()

    def custom_command(
        self,
        code: int,
        argument: bytes | str | int | None,
        component: ComponentIdentifier,
        parameters: Mapping[int, Any],
    ) -> None:
        raise OperationFailedError(f"custom command {code} is not implemented")

    # --- Platform: persistent state ---

    def sequence_number(self, manifest_key: str) -> int | None:
        n = self.state["sequence-numbers"].get(manifest_key)
        return None if n is None else int(n)

    def begin_section(self, procedure: Procedure, section: int) -> None:
        j = self.state.get("journal")
        if procedure is Procedure.UPDATE and j is not None:
            j["phase"] = ManifestKey(section).spec_name
            self._save()

    def record_update(self, manifest_key: str, sequence_number: int, envelope: bytes) -> None:
        j = self.state.get("journal")
        name = j["envelope"] if j else self._store_envelope(envelope)
        target = j["target"] if j else self._slot_of(self.boot_component)
        self.state["sequence-numbers"][manifest_key] = sequence_number
        boot = self.state["boot"]
        boot["manifests"][str(target)] = name
        boot["preferred"] = target
        self.state["journal"] = None
        self._save()

    def _store_envelope(self, envelope: bytes) -> str:
        name = f"manifests/{hashlib.sha256(envelope).hexdigest()[:32]}.suit"
        path = self.dir / name
        if not path.exists():
            self.fault.tick()
            _atomic_write(path, envelope)
        return name

    # --- the device's procedures ---

    def _target_slot(self) -> int:
        comp = self._comp(self.boot_component)
        active = int(self.state["boot"]["active"])
        return (active + 1) % comp.slots if comp.slots > 1 else 0

    def _processor(self, reporter: Reporter | None = None) -> Processor:
        return Processor(self, limits=self.limits, reporter=reporter)

    def update(
        self,
        data: bytes,
        *,
        severed: Mapping[int, bytes] | Iterable[bytes] | None = None,
        reporter: Reporter | None = None,
    ) -> RunResult:
        """Authenticate ``data`` with the trust anchors and run the Update procedure into the
        slot the device does not boot from. Raises SuitError if authentication fails."""
        env = authenticated_envelope(data, self.trusted_keys(), severed=severed)
        return self.update_envelope(env, reporter=reporter)

    def update_envelope(self, env: Envelope, *, reporter: Reporter | None = None) -> RunResult:
        target = self._target_slot()
        self.view = {self.boot_component: target}
        name = self._store_envelope(env.encode())
        self.state["journal"] = {"envelope": name, "target": target, "phase": "start"}
        self._save()
        result = self._processor(reporter).run(env, Procedure.UPDATE)
        if not result.ok and self.state.get("journal") is not None:
            self._abandon_journal()
        return result

    def _load(self, name: str) -> Envelope:
        return authenticated_envelope((self.dir / name).read_bytes(), self.trusted_keys())

    def _abandon_journal(self) -> None:
        """Undo what can be undone (swaps, in reverse order) and forget the journal."""
        j = self.state["journal"]
        for a, b in reversed(j.get("swapped", [])):
            j["swapped"] = []
            lengths = self.state["lengths"]
            j["swap"] = {
                "a": a,
                "b": b,
                "len-a": lengths.get(a),
                "len-b": lengths.get(b),
                "page": 0,
                "stage": 0,
            }
            self._save()
            self._run_swap()
        self.state["journal"] = None
        self._save()

    def _recover(self, reporter: Reporter | None) -> str:
        """Finish or revert an update interrupted by a power cut (manifest §6.3)."""
        j = self.state.get("journal")
        if not j:
            return ""
        self.view = {self.boot_component: int(j["target"])}
        try:
            env = self._load(j["envelope"])
        except (SuitError, OSError):
            self._abandon_journal()
            return "interrupted update discarded (its manifest is unreadable)"
        if j.get("swap"):
            self._run_swap()
        if j.get("swapped"):
            # a swap is not repeatable: check the result instead of reapplying the install
            result = self._processor(reporter).run(env, Procedure.INVOCATION)
            if result.ok:
                m = env.manifest
                from suitkit.device.processor import manifest_key

                self.record_update(manifest_key(m), m.sequence_number, env.encode())
                return "interrupted swap finished, new manifest committed"
            self._abandon_journal()
            return "interrupted swap reverted"
        if j.get("phase") in ("install", "validate"):
            # reapply: the install copies from verified staging (payload-fetch is not rerun)
            result = self._processor(reporter).run(
                env, Procedure.UPDATE, skip=(ManifestKey.PAYLOAD_FETCH,)
            )
            if result.ok:
                return "interrupted install reapplied, new manifest committed"
        if self.state.get("journal") is not None:
            self._abandon_journal()
        return "interrupted update discarded"

    def boot(self, reporter: Reporter | None = None) -> BootResult:
        """The bootloader: recover an interrupted update, then run the Invocation procedure of
        the preferred slot's manifest, falling back to the other slots when it fails."""
        recovered = self._recover(reporter)
        boot = self.state["boot"]
        manifests: dict[str, str] = boot["manifests"]
        preferred = int(boot["preferred"])
        order = [preferred, *sorted(int(s) for s in manifests if int(s) != preferred)]
        attempts: list[tuple[int, RunResult | SuitError]] = []
        for slot in order:
            name = manifests.get(str(slot))
            if name is None:
                continue
            self.view = {self.boot_component: slot}
            try:
                env = self._load(name)
            except (SuitError, OSError) as exc:
                err = exc if isinstance(exc, SuitError) else OperationFailedError(str(exc))
                attempts.append((slot, err))
                continue
            result = self._processor(reporter).run(
                env, Procedure.INVOCATION, check_rollback=slot == preferred
            )
            attempts.append((slot, result))
            if result.ok:
                if int(boot["active"]) != slot:
                    boot["active"] = slot
                    self._save()
                return BootResult(slot, result, tuple(attempts), recovered)
        return BootResult(None, None, tuple(attempts), recovered)

    def status(self) -> dict[str, Any]:
        return {
            "directory": str(self.dir),
            "identity": {k: v for k, v in self.config.to_json().items() if k != "components"},
            "components": self.config.to_json()["components"],
            "state": self.state,
            "trust": sorted(p.name for p in (self.dir / "trust").iterdir()),
        }
