"""A directory-backed :class:`~suitkit.cms.device.CmsDevice` (what ``suitkit cms load`` uses).

Layout of a device directory::

    cms-device.json     configuration: hardware type and serial, communities, flash size,
                        trust anchor files, decryption key files, report-signing key
    cms-state.json      mutable state: stale versions per package OID, stale legacy names,
                        the loaded packages (for dependency checks)
    trust/              trust anchors (certificates or public keys, PEM or DER)
    keys/<id>.key       firmware-decryption / key-encryption keys (raw octets, mode 0600)
    firmware/<pkg>.bin  loaded firmware images
    reports/            receipts and error reports written by ``cms load``

Every file is written atomically: a temporary file in the same directory, flushed and fsynced,
then renamed over the target, and the directory fsynced. ``suitkit cms device-init`` creates
such a directory: a stand-in. The simulated device (``suitkit device init ... --hw-type OID
--serial HEX``, :class:`suitkit.device.cms_host.SimulatedCmsDevice`) hosts CMS loading too, and
``suitkit cms load`` accepts either directory.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from suitkit.cms.device import FirmwareWriter, package_key, replaces
from suitkit.cms.model import InstalledPackage, PackageName, TrustAnchor
from suitkit.files import atomic_write as _atomic_write

CONFIG_FILE = "cms-device.json"
STATE_FILE = "cms-state.json"
CONFIG_FORMAT = "suitkit-cms-device/1"
DEFAULT_FLASH_SIZE = 256 << 20


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename + directory fsync)."""
    _atomic_write(path, data, mode=mode)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


class _FileWriter:
    """Streams an image to a temporary file; :meth:`commit` renames it into place."""

    def __init__(self, final: Path, size: int) -> None:
        self._final = final
        self._tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        self._size = size
        self._written = 0
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._written += len(data)
        if self._written > self._size:
            raise OSError("firmware larger than announced")
        self._file.write(data)

    def commit(self) -> None:
        if self._written != self._size:
            self.abort()
            raise OSError("firmware shorter than announced")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self._final)
        _fsync_dir(self._final.parent)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


class DirectoryDevice:
    """A hardware module whose configuration and state live in a directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        config_path = self.root / CONFIG_FILE
        try:
            self.config: dict[str, Any] = json.loads(config_path.read_text())
        except FileNotFoundError:
            raise ValueError(
                f"{self.root} is not a CMS device directory (no {CONFIG_FILE}); "
                "create one with 'suitkit cms device-init'"
            ) from None
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {config_path}: {exc}") from None
        if self.config.get("format") != CONFIG_FORMAT:
            raise ValueError(f"{config_path}: unknown format {self.config.get('format')!r}")
        self._state = self._read_state()
        self._anchors: list[TrustAnchor] | None = None

    # --- creation -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        *,
        hw_type: str,
        hw_serial: bytes | None,
        trust_anchor_files: Sequence[tuple[str, bytes, bool]] = (),
        communities: Sequence[str] = (),
        flash_size: int = DEFAULT_FLASH_SIZE,
        package_types: Sequence[int] | None = None,
        keys: dict[bytes, bytes] | None = None,
        report_key: bytes | None = None,
        report_cert: bytes | None = None,
        clock: bool = True,
    ) -> DirectoryDevice:
        """Create a device directory; ``trust_anchor_files`` are (name, contents, authorized)."""
        base = Path(root)
        for sub in ("trust", "keys", "firmware", "reports"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        anchors = []
        for i, (name, data, authorized) in enumerate(trust_anchor_files):
            fname = f"trust/{i:02d}-{_safe_name(Path(name).name)}"
            atomic_write(base / fname, data)
            anchors.append({"file": fname, "authorized": authorized})
        key_files = {}
        for key_id, key in (keys or {}).items():
            fname = f"keys/{key_id.hex()}.key"
            atomic_write(base / fname, key, 0o600)
            key_files[key_id.hex()] = fname
        config: dict[str, Any] = {
            "format": CONFIG_FORMAT,
            "hw_type": hw_type,
            "hw_serial": hw_serial.hex() if hw_serial is not None else None,
            "communities": list(communities),
            "flash_size": flash_size,
            "package_types": list(package_types) if package_types is not None else None,
            "trust_anchors": anchors,
            "keys": key_files,
            "clock": clock,
        }
        if report_key is not None:
            atomic_write(base / "report-key.pem", report_key, 0o600)
            config["report_key"] = "report-key.pem"
        if report_cert is not None:
            atomic_write(base / "report-cert.pem", report_cert)
            config["report_cert"] = "report-cert.pem"
        atomic_write(base / CONFIG_FILE, json.dumps(config, indent=2).encode() + b"\n")
        if not (base / STATE_FILE).exists():
            atomic_write(base / STATE_FILE, json.dumps(_empty_state(), indent=2).encode() + b"\n")
        return cls(base)

    # --- state ----------------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        path = self.root / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return _empty_state()
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        if not isinstance(state, dict):
            raise ValueError(f"{path}: not a JSON object")
        return {**_empty_state(), **state}

    def _save_state(self) -> None:
        atomic_write(
            self.root / STATE_FILE,
            json.dumps(self._state, indent=2, sort_keys=True).encode() + b"\n",
        )

    # --- CmsDevice ------------------------------------------------------------------------------

    @property
    def hw_type(self) -> str:
        return str(self.config["hw_type"])

    @property
    def hw_serial(self) -> bytes | None:
        serial = self.config.get("hw_serial")
        return bytes.fromhex(serial) if serial is not None else None

    def trust_anchors(self) -> Sequence[TrustAnchor]:
        if self._anchors is None:
            from suitkit.cms.keyfiles import load_trust_anchor

            self._anchors = [
                load_trust_anchor(
                    (self.root / entry["file"]).read_bytes(),
                    authorized=bool(entry.get("authorized", True)),
                    label=entry["file"],
                )
                for entry in self.config.get("trust_anchors", [])
            ]
        return self._anchors

    def communities(self) -> Collection[str]:
        return tuple(self.config.get("communities") or ())

    def decryption_key(self, key_id: bytes) -> bytes | None:
        fname = (self.config.get("keys") or {}).get(key_id.hex())
        if fname is None:
            return None
        return (self.root / str(fname)).read_bytes()

    def installed_packages(self) -> Sequence[InstalledPackage]:
        return [InstalledPackage.from_json(p) for p in self._state["installed"]]

    def supported_package_types(self) -> Collection[int] | None:
        types = self.config.get("package_types")
        return None if types is None else tuple(int(t) for t in types)

    def stale_version(self, package_oid: str) -> int | None:
        value = self._state["stale_versions"].get(package_oid)
        return int(value) if value is not None else None

    def set_stale_version(self, package_oid: str, version: int) -> None:
        current = self.stale_version(package_oid)
        if current is None or version > current:  # only ratchets up (RFC 4108 §1.2.3.2)
            self._state["stale_versions"][package_oid] = version
            self._save_state()

    def stale_legacy_names(self) -> Collection[bytes]:
        return [bytes.fromhex(n) for n in self._state["stale_legacy"]]

    def add_stale_legacy_name(self, name: bytes) -> None:
        if name.hex() not in self._state["stale_legacy"]:
            self._state["stale_legacy"].append(name.hex())
            self._save_state()

    def available_memory(self) -> int:
        """The flash available to one image (``flash_size`` of the configuration)."""
        return int(self.config.get("flash_size", DEFAULT_FLASH_SIZE))

    def current_time(self) -> _dt.datetime | None:
        return _dt.datetime.now(_dt.UTC) if self.config.get("clock", True) else None

    def begin_firmware(self, name: PackageName, size: int) -> FirmwareWriter:
        return _FileWriter(self.firmware_path(name), size)

    def record_installed(self, package: InstalledPackage) -> None:
        kept = [
            p
            for p in self._state["installed"]
            if not replaces(package.name, InstalledPackage.from_json(p).name)
        ]
        self._state["installed"] = [*kept, package.to_json()]
        self._save_state()

    # --- extras ---------------------------------------------------------------------------------

    def firmware_path(self, name: PackageName) -> Path:
        return self.root / "firmware" / f"{_safe_name(package_key(name))}.bin"

    def report_signer_files(self) -> tuple[Path, Path] | None:
        key, cert = self.config.get("report_key"), self.config.get("report_cert")
        if key is None or cert is None:
            return None
        return self.root / key, self.root / cert

    def save_report(self, report: bytes, kind: str) -> Path:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.root / "reports" / f"{stamp}-{kind}.der"
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, report)
        return path


def _empty_state() -> dict[str, Any]:
    return {"stale_versions": {}, "stale_legacy": [], "installed": []}
