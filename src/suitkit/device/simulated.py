"""A simulated device in a directory: flash, identity, trust anchors, persistent state, a
bootloader, and a fault injector that cuts the power after the N-th write.

Layout of the directory::

    device.json          identity, page size, components (id, slots, size)   (written at init)
    device-key.pem       the device's private key, which signs its SUIT_Reports
    device-key.pub.pem   its public key (``suitkit report show --key``)
    trust/*.pem          trust anchors: public keys that may sign manifests
    flash/<id>.<slot>    one file per component slot (page-granular erase and program)
    flash/scratch        the scratch page of the journaled swap
    manifests/<sha>.suit envelopes of installed (or being installed) manifests
    state.json           sequence numbers, slot contents, boot slots, the journal
    reports/NNNN-*.report  one COSE_Sign1-signed SUIT_Report per run (report §7)

Flash is erased to 0xFF and programmed a page at a time: a page write erases and programs one
page (the last page of an image is padded with 0xFF); erasing a component marks it empty, then
erases the pages its content used. Every persistent change (a flash page, a state write, a
stored envelope) is one *write*: the :class:`FaultInjector` counts them and raises
:class:`PowerCut` instead of the (N+1)-th. ``state.json`` is written atomically (temp file,
fsync, rename), so it is always the old or the new state. Reports are a log outside the fault
model (a real device would queue them in RAM and send them): they are never counted.

Every run produces a report: the Update procedure of an envelope (also one that fails to
authenticate: its report carries the reason and the manifest digest the envelope claims), each
Invocation attempt of the bootloader, and each run of the recovery.

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
reverts (swaps back, itself journaled and resumable: ``reverting``) and boots the old image.

The journal is opened lazily, when the first section that may write (payload-fetch, install...)
begins: a manifest refused by the setup checks or by the shared sequence's conditions writes
nothing at all. An abandoned update's envelope is deleted; a boot also removes envelopes that
no slot and no journal references (left by a power cut between storing one and opening the
journal).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suitkit.device.events import Procedure, RunResult
from suitkit.device.fetch import FetcherBase
from suitkit.device.platform import DeviceIdentity, Reporter
from suitkit.device.processor import (
    Processor,
    ProcessorLimits,
    authenticated_envelope,
    claimed_digest,
)
from suitkit.errors import OperationFailedError, SuitError
from suitkit.files import atomic_write
from suitkit.format.codepoints import ManifestKey
from suitkit.format.envelope import Envelope
from suitkit.format.manifest import ComponentIdentifier

if TYPE_CHECKING:
    from suitkit.cose.keys import CoseKey

__all__ = [
    "BootResult",
    "ComponentConfig",
    "DeviceConfig",
    "FaultInjector",
    "PowerCut",
    "SimulatedDevice",
    "load_trust_key",
]

DEFAULT_PAGE = 4096
ERASED = 0xFF


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
    """What ``device.json`` holds: the identity, the components, the processor policy.

    ``profiles``: the draft-ietf-suit-mti algorithm profiles the device accepts (empty: any
    algorithm suitkit supports); ``allow_equivalent`` lets ES256/EdDSA stand for ESP256/Ed25519.
    ``require_identity_checks``: refuse a manifest whose shared sequence does not check the
    vendor and class identifiers (manifest §6.2, a SHOULD; the firmware-encryption draft's
    examples have no shared sequence). ``hw_type`` (an OID) and ``serial`` identify the device
    as an RFC 4108 hardware module (``suitkit cms load``), ``communities`` its community OIDs.
    """

    vendor_id: uuid.UUID
    class_id: uuid.UUID
    device_id: uuid.UUID | None
    components: tuple[ComponentConfig, ...]
    page_size: int = DEFAULT_PAGE
    profiles: tuple[str, ...] = ()
    allow_equivalent: bool = False
    require_identity_checks: bool = True
    hw_type: str | None = None
    serial: bytes | None = None
    communities: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor-id": str(self.vendor_id),
            "class-id": str(self.class_id),
            "device-id": str(self.device_id) if self.device_id else None,
            "hw-type": self.hw_type,
            "serial": self.serial.hex() if self.serial is not None else None,
            "communities": list(self.communities),
            "page-size": self.page_size,
            "profiles": list(self.profiles),
            "allow-equivalent": self.allow_equivalent,
            "require-identity-checks": self.require_identity_checks,
            "components": [
                {"id": cid_key(c.id), "size": c.size, "slots": c.slots} for c in self.components
            ],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeviceConfig:
        serial = d.get("serial")
        return cls(
            uuid.UUID(d["vendor-id"]),
            uuid.UUID(d["class-id"]),
            uuid.UUID(d["device-id"]) if d.get("device-id") else None,
            tuple(
                ComponentConfig(cid_from_key(c["id"]), int(c["size"]), int(c["slots"]))
                for c in d["components"]
            ),
            int(d.get("page-size", DEFAULT_PAGE)),
            tuple(str(p) for p in d.get("profiles") or ()),
            bool(d.get("allow-equivalent", False)),
            bool(d.get("require-identity-checks", True)),
            d.get("hw-type"),
            bytes.fromhex(serial) if serial is not None else None,
            tuple(str(c) for c in d.get("communities") or ()),
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


def _atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    if durable:
        atomic_write(path, data)
        return
    # simulated power cuts only (see SimulatedDevice): the same write-then-rename, without
    # fsync, and with a fixed temporary name (one writer per device directory)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _FlashWriter:
    """Page-granular streamed write into one slot file; the slot is erased when opened (marked
    empty at once; each page is erased as it is programmed, the old content's remaining pages
    at commit)."""

    def __init__(self, dev: SimulatedDevice, slot_key: str, capacity: int) -> None:
        self._dev = dev
        self._slot_key = slot_key
        self._capacity = capacity
        self._buf = bytearray()
        self._pos = 0
        self._fd: int | None = None
        self._old_length = dev.state["lengths"].get(slot_key) or 0
        dev._set_length(slot_key, None)  # erase: the old content is gone from now on
        self._fd = os.open(dev._path(slot_key), os.O_RDWR)

    def write(self, chunk: bytes | memoryview) -> None:
        if self._fd is None:
            raise ValueError("writer closed")
        if self._pos + len(self._buf) + len(chunk) > self._capacity:
            raise OperationFailedError("write past the end of the component")
        page = self._dev.config.page_size
        if not self._buf and len(chunk) >= page:
            # page-aligned so far: program the chunk's whole pages straight from it (no copy)
            whole = len(chunk) - len(chunk) % page
            with memoryview(chunk) as view:
                for off in range(0, whole, page):
                    self._dev.fault.tick()
                    os.pwrite(self._fd, view[off : off + page], self._pos)
                    self._pos += page
                self._buf += view[whole:]
            return
        self._buf += chunk
        if len(self._buf) >= page:
            whole = len(self._buf) - len(self._buf) % page
            with memoryview(self._buf) as view:
                for off in range(0, whole, page):
                    self._dev.fault.tick()
                    os.pwrite(self._fd, view[off : off + page], self._pos)
                    self._pos += page
            del self._buf[:whole]

    def commit(self) -> None:
        if self._fd is None:
            raise ValueError("writer closed")
        page = self._dev.config.page_size
        if self._buf:  # the last page, padded with the erased value
            self._dev.fault.tick()
            padded = bytes(self._buf).ljust(page, bytes([ERASED]))
            os.pwrite(self._fd, padded[: self._capacity - self._pos], self._pos)
            self._pos += len(self._buf)
            self._buf.clear()
        self._dev._sync(self._fd)
        self._close()
        used = -(-self._pos // page) * page
        self._dev._erase_pages(self._slot_key, used, self._old_length)
        self._dev._set_length(self._slot_key, self._pos)

    def abort(self) -> None:
        """Close, and erase the pages programmed so far: the slot stays empty, and nothing of
        an aborted write (e.g. plaintext whose AEAD tag did not verify) is left in flash."""
        self._close()
        self._buf = bytearray()
        programmed, self._pos = self._pos, 0
        if programmed:
            self._dev._erase_pages(self._slot_key, 0, programmed)

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
        durable: bool = True,
        cache: dict[str, Any] | None = None,
        log_reports: bool = True,
    ) -> None:
        """Open the device in ``directory``. ``durable=False`` skips the fsync calls (for the
        power-fail sweeps: their power cuts are simulated, so the order of writes is all that
        matters, and it does not change) and writes ``state.json`` without indentation.

        What does not change while a device runs (``device.json``, the trust anchors, the
        device key) is read and parsed once per object, or once for all the objects given the
        same ``cache`` (a dict, empty at first: the agent of a simulated fleet device opens its
        device afresh at each step of an update). ``log_reports=False``: no signed report of
        each run under ``reports/`` (a simulated fleet's agent builds, signs and sends the
        report of each update itself, and throws the directory away)."""
        self.dir = Path(directory)
        self.durable = durable
        self.log_reports = log_reports
        self._cache: dict[str, Any] = {} if cache is None else cache
        try:
            config = self._cache.get("config")
            if config is None:
                config = DeviceConfig.from_json(json.loads((self.dir / "device.json").read_text()))
                self._cache["config"] = config
            self.config: DeviceConfig = config
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
        #: The reports written since this object was created, oldest first.
        self.reports: list[Path] = []
        self._pending: tuple[bytes, int] | None = None
        self._keys: tuple[CoseKey, ...] | None = None

    # --- creation ---

    @classmethod
    def init(
        cls,
        directory: Path | str,
        config: DeviceConfig,
        trust: Iterable[Path] = (),
        *,
        device_key: Any = None,
        decryption_keys: Iterable[CoseKey] = (),
    ) -> SimulatedDevice:
        """Create a device directory: erased flash, the trust anchors (public keys, X.509
        certificates, MAC keys), the decryption keys (``decryption_keys``: private CoseKeys,
        stored as COSE_Key files with their kid, mode 0600), an empty state and the device key
        that signs reports (``device_key``, a private CoseKey; generated, ESP256, when not
        given)."""
        from suitkit.cose.keys import CoseKey
        from suitkit.format.codepoints import CoseAlgorithm

        d = Path(directory)
        if (d / "device.json").exists():
            raise OperationFailedError(f"{d} already holds a device")
        dkeys = list(decryption_keys)
        for dk in dkeys:
            if not dk.is_private:
                raise OperationFailedError(
                    f"{dk!r} is a public key: a decryption key is a key-encryption key or a "
                    "private ECDH key"
                )
        for sub in ("flash", "manifests", "trust", "reports", "keys"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / "keys", 0o700)
        for i, dk in enumerate(dkeys):
            dk.save(d / "keys" / f"{i:02d}.cose_key", private=True)
        lengths: dict[str, int | None] = {}
        for c in config.components:
            for s in range(c.slots):
                key = f"{cid_key(c.id)}.{s}"
                _erased_file(d / "flash" / key.replace("/", "_"), c.size)
                lengths[key] = None
        _erased_file(d / "flash" / "scratch", config.page_size)
        for i, p in enumerate(trust):
            (d / "trust" / f"{i:02d}-{Path(p).name}").write_bytes(Path(p).read_bytes())
        signer = device_key if device_key is not None else CoseKey.generate(CoseAlgorithm.ESP256)
        (d / "device-key.pem").write_bytes(signer.to_pem(private=True))
        (d / "device-key.pub.pem").write_bytes(signer.public_key().to_pem())
        state = {
            "sequence-numbers": {},
            "lengths": lengths,
            "boot": {"manifests": {}, "preferred": 0, "active": 0},
            "journal": None,
        }
        _atomic_write(d / "state.json", json.dumps(state, indent=1).encode())
        _atomic_write(d / "device.json", json.dumps(config.to_json(), indent=1).encode())
        return cls(d)

    def trust_files(self) -> list[Path]:
        """The trust anchor files, in order."""
        return sorted(p for p in (self.dir / "trust").iterdir() if p.is_file())

    def trusted_keys(self) -> list[CoseKey]:
        """The keys that may authenticate manifests: public keys (PEM, DER, COSE_Key), the
        public keys of X.509 certificates, and MAC keys (COSE_Key)."""
        keys: list[CoseKey] | None = self._cache.get("trust")
        if keys is None:
            keys = [load_trust_key(p.read_bytes(), p) for p in self.trust_files()]
            self._cache["trust"] = keys
        return list(keys)

    def decryption_keys(self) -> Sequence[CoseKey]:
        """The device's keys for encrypted payloads (``keys/*.cose_key``)."""
        if self._keys is None:
            from suitkit.cose.keys import CoseKey

            folder = self.dir / "keys"
            files = sorted(folder.glob("*.cose_key")) if folder.is_dir() else []
            self._keys = tuple(CoseKey.load(p) for p in files)
        return self._keys

    def device_key(self) -> Any:
        """The private key that signs this device's reports (None if the directory has none)."""
        if "device" not in self._cache:
            from suitkit.cose.keys import CoseKey

            path = self.dir / "device-key.pem"
            self._cache["device"] = CoseKey.load(path) if path.is_file() else None
        return self._cache["device"]

    # --- reports ---

    def _report(self, result: RunResult, label: str) -> Path | None:
        """Build the run's SUIT_Report, sign it (COSE_Sign1) with the device key and store it
        under reports/ (outside the fault model: never counted as a write)."""
        if not self.log_reports:
            return None
        from suitkit.device.report import build_report, sign_report

        key = self.device_key()
        if key is None:
            return None
        data = sign_report(build_report(result, components=self.components()), key)
        out = self.dir / "reports"
        try:
            names = os.listdir(out)
        except FileNotFoundError:
            out.mkdir()
            names = []
        n = sum(1 for name in names if name.endswith(".report") and name[0] != ".") + 1
        path = out / f"{n:04d}-{label}.report"
        path.write_bytes(data)
        self.reports.append(path)
        return path

    # --- state ---

    def _save(self) -> None:
        self.fault.tick()
        text = json.dumps(self.state, indent=1) if self.durable else json.dumps(self.state)
        _atomic_write(self.dir / "state.json", text.encode(), self.durable)

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

    def _sync(self, fd: int) -> None:
        if self.durable:
            os.fsync(fd)

    def _path(self, slot_key: str) -> Path:
        return self.dir / "flash" / slot_key.replace("/", "_")

    def _erase_pages(self, slot_key: str, start: int, end: int) -> None:
        """Erase (0xFF) the pages covering bytes ``start`` to ``end`` of a slot, one write
        each; ``start`` is page-aligned."""
        page = self.config.page_size
        if end <= start:
            return
        path = self._path(slot_key)
        size = path.stat().st_size
        with path.open("r+b") as f:
            for off in range(start, min(end, size), page):
                self.fault.tick()
                f.seek(off)
                f.write(bytes([ERASED]) * min(page, size - off))
                f.flush()
                self._sync(f.fileno())

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
        """Mark the component empty (one state write), then erase the pages it used."""
        key = self._slot_key(component)
        old = self.state["lengths"].get(key) or 0
        self._set_length(key, None)
        self._erase_pages(key, 0, old)

    def swap(self, a: ComponentIdentifier, b: ComponentIdentifier) -> None:
        ka, kb = self._slot_key(a), self._slot_key(b)
        lengths = self.state["lengths"]
        j = self.state.get("journal") or {}
        j["swap"] = _swap_record(ka, kb, lengths, revert=False)
        self.state["journal"] = j
        self._save()
        self._run_swap()

    def _run_swap(self) -> None:
        """Swap page by page through the scratch page; resumable from the journal (each stage
        is repeatable: scratch <- a[i], a[i] <- b[i], b[i] <- scratch). A revert swap (of an
        abandoned update) removes its pair from ``swapped`` when done; a forward one adds it."""
        j = self.state["journal"]
        sw = j["swap"]
        page = self.config.page_size
        pa, pb, scratch = self._path(sw["a"]), self._path(sw["b"]), self.dir / "flash" / "scratch"
        total = max(sw["len-a"] or 0, sw["len-b"] or 0)
        pages = -(-total // page)
        with pa.open("r+b") as fa, pb.open("r+b") as fb, scratch.open("r+b") as fs:
            sizes = {id(fa): pa.stat().st_size, id(fb): pb.stat().st_size, id(fs): page}

            def rd(f: Any, i: int) -> bytes:
                f.seek(i * page)
                return bytes(f.read(page)).ljust(page, bytes([ERASED]))

            def wr(f: Any, i: int, data: bytes) -> None:
                self.fault.tick()
                f.seek(i * page)
                f.write(data[: max(0, sizes[id(f)] - i * page)])
                f.flush()
                self._sync(f.fileno())

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
        if sw.get("revert"):
            j["swapped"] = j.get("swapped", [])[:-1]
        else:
            j["swapped"] = [*j.get("swapped", []), [sw["a"], sw["b"]]]
        self._save()

    # --- Platform: fetch, invoke ---

    def fetch(
        self, uri: str, arguments: bytes | None = None, *, limit: int | None = None
    ) -> Iterator[bytes]:
        if self.fetcher is None:
            raise OperationFailedError(f"no fetcher here (the bootloader has no network): {uri}")
        return self.fetcher.fetch(uri, arguments, limit=limit)

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
        """A journal point of the Update procedure. The journal is opened (the envelope stored,
        the target slot named) when the first section after the shared sequence begins: the
        shared sequence cannot write (manifest §8.4.5), so a manifest refused before that
        leaves no trace."""
        if procedure is not Procedure.UPDATE or section == ManifestKey.COMMON:
            # the shared sequence writes nothing; and a recovery rerunning it must not move the
            # journal's phase back (a cut right after would lose the install being reapplied)
            return
        j = self.state.get("journal")
        phase = ManifestKey(section).spec_name
        if j is not None:
            if j.get("phase") != phase:
                j["phase"] = phase
                self._save()
        elif self._pending is not None:
            envelope, target = self._pending
            self._pending = None
            name = self._store_envelope(envelope)
            self.state["journal"] = {"envelope": name, "target": target, "phase": phase}
            self._save()

    def record_update(self, manifest_key: str, sequence_number: int, envelope: bytes) -> None:
        """Commit: one state write records the sequence number, the slot's manifest and the
        preferred slot, and closes the journal."""
        j = self.state.get("journal")
        name = j["envelope"] if j else self._store_envelope(envelope)
        target = j["target"] if j else self._slot_of(self.boot_component)
        self.state["sequence-numbers"][manifest_key] = sequence_number
        boot = self.state["boot"]
        old = boot["manifests"].get(str(target))
        boot["manifests"][str(target)] = name
        boot["preferred"] = target
        self.state["journal"] = None
        self._save()
        if old is not None and old != name:
            self._forget_envelope(old)

    def _forget_envelope(self, name: str) -> None:
        """Delete a stored envelope that no slot and no journal references any more."""
        j = self.state.get("journal")
        if name in self.state["boot"]["manifests"].values() or (j and j.get("envelope") == name):
            return
        with contextlib.suppress(OSError):
            (self.dir / name).unlink()

    def _collect_garbage(self) -> None:
        for path in (self.dir / "manifests").glob("*.suit"):
            self._forget_envelope(f"manifests/{path.name}")

    def _store_envelope(self, envelope: bytes) -> str:
        name = f"manifests/{hashlib.sha256(envelope).hexdigest()[:32]}.suit"
        path = self.dir / name
        if not path.exists():
            self.fault.tick()
            _atomic_write(path, envelope, self.durable)
        return name

    # --- the device's procedures ---

    def _target_slot(self) -> int:
        comp = self._comp(self.boot_component)
        active = int(self.state["boot"]["active"])
        return (active + 1) % comp.slots if comp.slots > 1 else 0

    def _processor(self, reporter: Reporter | None = None) -> Processor:
        return Processor(
            self,
            limits=self.limits,
            reporter=reporter,
            require_identity_checks=self.config.require_identity_checks,
            profiles=self.config.profiles,
            allow_equivalent=self.config.allow_equivalent,
        )

    def _authenticate(
        self, data: bytes, severed: Mapping[int, bytes] | Iterable[bytes] | None = None
    ) -> Envelope:
        """Authenticate with the trust anchors; an envelope outside the device's algorithm
        profiles is refused here (alg-unsupported), before anything runs."""
        return authenticated_envelope(
            data,
            self.trusted_keys(),
            severed=severed,
            profiles=self.config.profiles,
            allow_equivalent=self.config.allow_equivalent,
        )

    def update(
        self,
        data: bytes,
        *,
        severed: Mapping[int, bytes] | Iterable[bytes] | None = None,
        reporter: Reporter | None = None,
    ) -> RunResult:
        """Authenticate ``data`` with the trust anchors and run the Update procedure into the
        slot the device does not boot from. Never raises a SuitError: an envelope that does
        not authenticate (or whose manifest does not parse) is a rejected run, which writes
        nothing but its report (reason unauthorised, cbor-parse...)."""
        try:
            env = self._authenticate(data, severed)
        except SuitError as exc:
            result = RunResult.rejected(Procedure.UPDATE, exc, claimed_digest(data))
            self._report(result, "update")
            return result
        return self.update_envelope(env, reporter=reporter)

    def update_envelope(self, env: Envelope, *, reporter: Reporter | None = None) -> RunResult:
        """Run the Update procedure of an authenticated envelope (see :meth:`update`). An update
        interrupted earlier (a journal is open: the power was cut and the bootloader has not run
        since) is recovered first, as the bootloader would, so that its journal is not mixed up
        with this one."""
        if self.state.get("journal") is not None:
            self._recover(reporter)
        target = self._target_slot()
        self.view = {self.boot_component: target}
        self._pending = (env.encode(), target)
        try:
            result = self._processor(reporter).run(env, Procedure.UPDATE)
        finally:
            self._pending = None
        if not result.ok and self.state.get("journal") is not None:
            self._abandon_journal()
        self._report(result, "update")
        return result

    def _load(self, name: str) -> Envelope:
        return self._authenticate((self.dir / name).read_bytes())

    def _abandon_journal(self) -> None:
        """Undo what can be undone (swaps, newest first) and close the journal. Reverting is
        itself journaled (``reverting``, and each revert swap page by page), so a power cut
        during it is finished by the next boot."""
        j = self.state["journal"]
        if j.get("swap"):  # an interrupted swap (either way) is completed first
            self._run_swap()
        if j.get("swapped"):
            j["reverting"] = True
        while j.get("swapped"):
            a, b = j["swapped"][-1]
            j["swap"] = _swap_record(a, b, self.state["lengths"], revert=True)
            self._save()
            self._run_swap()
        name = j.get("envelope")
        self.state["journal"] = None
        self._save()
        if name:
            self._forget_envelope(name)

    def _run_recorded(
        self,
        env: Envelope,
        procedure: Procedure,
        label: str,
        reporter: Reporter | None,
        **kw: Any,
    ) -> RunResult:
        result = self._processor(reporter).run(env, procedure, **kw)
        self._report(result, label)
        return result

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
        if j.get("reverting"):
            self._abandon_journal()
            return "interrupted revert finished, previous image restored"
        if j.get("swapped"):
            # a swap is not repeatable: validate its result (shared sequence + validate; no
            # invoke) instead of reapplying the install; success commits the manifest
            result = self._run_recorded(
                env,
                Procedure.UPDATE,
                "recovery",
                reporter,
                skip=(ManifestKey.PAYLOAD_FETCH, ManifestKey.INSTALL),
            )
            if result.ok:
                return "interrupted swap finished, new manifest committed"
            self._abandon_journal()
            return "interrupted swap reverted"
        if j.get("phase") in ("install", "validate"):
            # reapply: the install copies from verified staging (payload-fetch is not rerun)
            result = self._run_recorded(
                env, Procedure.UPDATE, "recovery", reporter, skip=(ManifestKey.PAYLOAD_FETCH,)
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
        self._collect_garbage()
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
                data = _read_or_empty(self.dir / name)
                rejected = RunResult.rejected(Procedure.INVOCATION, err, claimed_digest(data))
                self._report(rejected, f"boot-slot{slot}")
                continue
            result = self._run_recorded(
                env,
                Procedure.INVOCATION,
                f"boot-slot{slot}",
                reporter,
                check_rollback=slot == preferred,
            )
            attempts.append((slot, result))
            if result.ok:
                if int(boot["active"]) != slot:
                    boot["active"] = slot
                    self._save()
                return BootResult(slot, result, tuple(attempts), recovered)
        return BootResult(None, None, tuple(attempts), recovered)

    def status(self) -> dict[str, Any]:
        """Identity, components, the content of each slot (length and SHA-256, read back in
        chunks), boot state, sequence numbers, journal, trust anchors and reports."""
        contents = []
        for c in self.config.components:
            for slot in range(c.slots):
                key = f"{cid_key(c.id)}.{slot}"
                length = self.state["lengths"].get(key)
                digest = None
                if length is not None:
                    h = hashlib.sha256()
                    for chunk in self._read_file(self._path(key), int(length), 64 * 1024):
                        h.update(chunk)
                    digest = "sha256:" + h.hexdigest()
                contents.append(
                    {"component": cid_key(c.id), "slot": slot, "length": length, "digest": digest}
                )
        reports = self.dir / "reports"
        return {
            "directory": str(self.dir),
            "identity": {k: v for k, v in self.config.to_json().items() if k != "components"},
            "components": self.config.to_json()["components"],
            "contents": contents,
            "state": self.state,
            "trust": sorted(p.name for p in (self.dir / "trust").iterdir()),
            "decryption-keys": [_key_text(k) for k in self.decryption_keys()],
            "reports": sorted(p.name for p in reports.glob("*.report")) if reports.is_dir() else [],
        }


def load_trust_key(data: bytes, where: Path | str | None = None) -> CoseKey:
    """A trust anchor as a CoseKey: an X.509 certificate (PEM or DER; its public key), or a key
    ``CoseKey.load`` reads (PEM, DER, COSE_Key; a MAC key is a symmetric COSE_Key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from suitkit.cose.keys import CoseKey
    from suitkit.errors import KeyFormatError

    if b"-----BEGIN CERTIFICATE" in data or (data[:1] == b"\x30" and _is_der_certificate(data)):
        try:
            cert = (
                x509.load_pem_x509_certificate(data)
                if data.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_certificate(data)
            )
            spki = cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(f"not a usable certificate{_in(where)}: {exc}") from None
        return CoseKey.from_pem(spki)
    try:
        return CoseKey.load(data)
    except SuitError as exc:
        exc.message = f"{exc.message}{_in(where)}"
        raise


def _key_text(key: CoseKey) -> str:
    """``symmetric, kid 'kid-1'``: a decryption key, without its material."""
    kind = key.kty.name.lower() + (f" {key.curve.name}" if key.curve is not None else "")
    kid = key.kid
    if kid is None:
        return f"{kind}, no kid"
    if kid and all(0x20 < b < 0x7F for b in kid) and b"'" not in kid:
        return f"{kind}, kid '{kid.decode()}'"
    return f"{kind}, kid h'{kid.hex()}'"


def _in(where: Path | str | None) -> str:
    return f" in {where}" if where is not None else ""


def _is_der_certificate(data: bytes) -> bool:
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return False
    return True


def _erased_file(path: Path, size: int) -> None:
    """A flash file of ``size`` erased bytes, written in bounded chunks."""
    block = bytes([ERASED]) * min(size, 1 << 20)
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def _swap_record(a: str, b: str, lengths: Mapping[str, Any], *, revert: bool) -> dict[str, Any]:
    return {
        "a": a,
        "b": b,
        "len-a": lengths.get(a),
        "len-b": lengths.get(b),
        "page": 0,
        "stage": 0,
        "revert": revert,
    }


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
