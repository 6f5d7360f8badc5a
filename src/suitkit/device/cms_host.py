"""The simulated device as an RFC 4108 hardware module: :class:`SimulatedCmsDevice` implements
:class:`suitkit.cms.device.CmsDevice` over a :class:`~suitkit.device.simulated.SimulatedDevice`
directory, so that ``suitkit cms load DEVICE_DIR PKG.der`` loads CMS-protected firmware packages
into the same device that runs SUIT manifests.

What it shares with the SUIT side:

- **identity**: the hardware module type OID and serial number (``device init --hw-type OID
  --serial HEX``; RFC 4108 §1.2.1), the community OIDs (``--community``);
- **trust anchors**: the files of ``trust/`` (RFC 4108 §1.2.4): X.509 certificates (whose key
  identifier and name the loader matches) and public keys; MAC keys, which only SUIT uses, are
  skipped;
- **keys**: a firmware-decryption or key-encryption key (RFC 4108 §2.2.5, §2.3.1) is a symmetric
  key of ``keys/`` whose kid is the decrypt key identifier (``--decrypt-key "h'0a0b'=aes.key"``);
- **storage**: the firmware is written into the execution component (the first one with several
  slots, else the first), into the slot the device does not boot from, through the same
  page-granular flash writer and fault injector as a SUIT update; its size is that component's,
  so a larger package is insufficientMemory before anything is written. When the image is
  committed, a SUIT manifest recorded for that slot no longer describes it and is dropped (the
  bootloader keeps booting the active slot);
- **persistent state**: ``state.json`` gets a ``cms`` entry: stale version numbers per package OID
  and stale legacy names (RFC 4108 §1.2.3.1-2), the loaded packages (for dependencies, §1.3) and
  where each image went; every change is one atomic state write.

Receipts and error reports are signed with the device's report key (``device-key.pem``, no
certificate: the SignerInfo names the key by its key identifier) and stored in ``reports/`` as
``cms-<time>-receipt.der`` / ``cms-<time>-error.der``, next to the SUIT reports.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suitkit.cms.device import FirmwareWriter, package_key, replaces
from suitkit.cms.model import InstalledPackage, PackageName, TrustAnchor
from suitkit.device.simulated import SimulatedDevice, cid_key
from suitkit.errors import OperationFailedError, SuitError
from suitkit.format.manifest import ComponentIdentifier

if TYPE_CHECKING:
    from suitkit.cms.signeddata import Signer

__all__ = ["SimulatedCmsDevice"]


def _empty() -> dict[str, Any]:
    return {"stale-versions": {}, "stale-legacy": [], "installed": [], "firmware": {}}


class _SlotWriter:
    """A FirmwareWriter over the device's flash writer; :meth:`commit` also records where the
    image went (and drops a SUIT manifest that described the slot's previous content)."""

    def __init__(self, host: SimulatedCmsDevice, name: PackageName, size: int) -> None:
        self._host = host
        self._name = name
        self._size = size
        self._written = 0
        dev = host.device
        self._slot = host.target_slot()
        dev.view = {host.component: self._slot}
        self._writer = dev.open_write(host.component, size)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._written += len(data)
        if self._written > self._size:
            raise OSError("firmware larger than announced")
        try:
            self._writer.write(data if isinstance(data, bytes | memoryview) else bytes(data))
        except OperationFailedError as exc:  # the loader turns an OSError into its error report
            raise OSError(exc.message) from None

    def commit(self) -> None:
        if self._written != self._size:
            self.abort()
            raise OSError("firmware shorter than announced")
        self._writer.commit()
        self._host._committed(self._name, self._slot, self._size)

    def abort(self) -> None:
        self._writer.abort()


class SimulatedCmsDevice:
    """A :class:`~suitkit.cms.device.CmsDevice` over a simulated device directory."""

    def __init__(
        self, device: SimulatedDevice | Path | str, component: ComponentIdentifier | None = None
    ) -> None:
        self.device = device if isinstance(device, SimulatedDevice) else SimulatedDevice(device)
        cfg = self.device.config
        if cfg.hw_type is None:
            raise OperationFailedError(
                f"{self.device.dir} has no hardware module type: create it with "
                "`suitkit device init ... --hw-type OID --serial HEX`"
            )
        self.component = component if component is not None else self.device.boot_component
        self.device.capacity(self.component)  # OperationFailedError for an unknown component
        self._anchors: list[TrustAnchor] | None = None
        if self.device.state.get("journal") is not None:
            # an interrupted SUIT update is finished or reverted first, as the bootloader would
            self.device._recover(None)

    # --- state ------------------------------------------------------------------------------

    @property
    def _state(self) -> dict[str, Any]:
        state = self.device.state.get("cms")
        if not isinstance(state, dict):
            state = _empty()
            self.device.state["cms"] = state
        for key, value in _empty().items():
            state.setdefault(key, value)
        return state

    def target_slot(self) -> int:
        """The slot the image goes to: for the execution component, the one the device does not
        boot from; slot 0 otherwise."""
        if self.component == self.device.boot_component:
            return self.device._target_slot()
        return 0

    def _committed(self, name: PackageName, slot: int, size: int) -> None:
        dev = self.device
        self._state["firmware"][package_key(name)] = {
            "component": cid_key(self.component),
            "slot": slot,
            "length": size,
        }
        if self.component == dev.boot_component:
            boot = dev.state["boot"]
            old = boot["manifests"].pop(str(slot), None)
            if int(boot["preferred"]) == slot:
                boot["preferred"] = int(boot["active"])
        else:
            old = None
        dev._save()
        if old is not None:
            dev._forget_envelope(old)

    # --- CmsDevice ----------------------------------------------------------------------------

    @property
    def hw_type(self) -> str:
        return str(self.device.config.hw_type)

    @property
    def hw_serial(self) -> bytes | None:
        return self.device.config.serial

    def trust_anchors(self) -> Sequence[TrustAnchor]:
        if self._anchors is None:
            self._anchors = [
                a for a in (_trust_anchor(p) for p in self.device.trust_files()) if a is not None
            ]
        return self._anchors

    def communities(self) -> Collection[str]:
        return self.device.config.communities

    def decryption_key(self, key_id: bytes) -> bytes | None:
        for key in self.device.decryption_keys():
            if key.is_symmetric and key.kid == key_id:
                return key.secret()
        return None

    def installed_packages(self) -> Sequence[InstalledPackage]:
        return [InstalledPackage.from_json(p) for p in self._state["installed"]]

    def supported_package_types(self) -> Collection[int] | None:
        return None

    def stale_version(self, package_oid: str) -> int | None:
        value = self._state["stale-versions"].get(package_oid)
        return None if value is None else int(value)

    def set_stale_version(self, package_oid: str, version: int) -> None:
        current = self.stale_version(package_oid)
        if current is None or version > current:  # only ratchets up (RFC 4108 §1.2.3.2)
            self._state["stale-versions"][package_oid] = version
            self.device._save()

    def stale_legacy_names(self) -> Collection[bytes]:
        return [bytes.fromhex(n) for n in self._state["stale-legacy"]]

    def add_stale_legacy_name(self, name: bytes) -> None:
        if name.hex() not in self._state["stale-legacy"]:
            self._state["stale-legacy"].append(name.hex())
            self.device._save()

    def available_memory(self) -> int:
        """The size of the component the firmware goes to (its flash slot)."""
        return self.device.capacity(self.component)

    def current_time(self) -> _dt.datetime | None:
        return _dt.datetime.now(_dt.UTC)

    def begin_firmware(self, name: PackageName, size: int) -> FirmwareWriter:
        return _SlotWriter(self, name, size)

    def record_installed(self, package: InstalledPackage) -> None:
        kept = [
            p
            for p in self._state["installed"]
            if not replaces(package.name, InstalledPackage.from_json(p).name)
        ]
        self._state["installed"] = [*kept, package.to_json()]
        self.device._save()

    # --- reports ------------------------------------------------------------------------------

    def firmware(self, name: PackageName) -> bytes | None:
        """The image of a loaded package, read back from flash (None if it is not loaded)."""
        where = self._state["firmware"].get(package_key(name))
        if where is None:
            return None
        path = self.device.dir / "flash" / f"{where['component']}.{where['slot']}".replace(
            "/", "_"
        )
        with path.open("rb") as f:
            return f.read(int(where["length"]))

    def report_signer(self) -> Signer | None:
        """The device key as a CMS signer for receipts and error reports (no certificate: the
        SignerInfo names it by the key identifier of its public key)."""
        from suitkit.cms.keyfiles import load_private_key
        from suitkit.cms.signeddata import Signer

        path = self.device.dir / "device-key.pem"
        if not path.is_file():
            return None
        return Signer(load_private_key(path.read_bytes()))

    def save_report(self, report: bytes, kind: str) -> Path:
        """Store a receipt or error report under ``reports/`` (outside the fault model, like
        the SUIT reports)."""
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        out = self.device.dir / "reports"
        out.mkdir(exist_ok=True)
        path = out / f"cms-{stamp}-{kind}.der"
        path.write_bytes(report)
        return path


def _trust_anchor(path: Path) -> TrustAnchor | None:
    """A trust file as an RFC 4108 trust anchor: a certificate or a public key (PEM, DER, or a
    COSE_Key, converted); None for a MAC key, which CMS packages cannot use."""
    from suitkit.cms.keyfiles import load_trust_anchor
    from suitkit.cose.keys import CoseKey

    data = path.read_bytes()
    try:
        return load_trust_anchor(data, label=path.name)
    except SuitError:
        pass
    key = CoseKey.load(data)
    if key.is_symmetric:
        return None
    try:
        pem = key.public_key().to_pem()
    except (SuitError, ValueError):  # a key type without a SubjectPublicKeyInfo form
        return None
    return load_trust_anchor(pem, label=path.name)
