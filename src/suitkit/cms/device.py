"""What the RFC 4108 bootstrap loader needs from a hardware module: :class:`CmsDevice`.

The loader (:mod:`suitkit.cms.loader`) is pure logic over this protocol, so any device model can
host it: :class:`InMemoryDevice` here (tests), :class:`suitkit.cms.device_store.DirectoryDevice`
(the CLI), and later the project's simulated device.

The architectural elements are those of RFC 4108 §1.2 (Figure 1): hardware module type OID and
serial number (§1.2.1), trust anchors (§1.2.4), community membership (§2.2.8), firmware
decryption keys (§1.2), the loaded packages (for dependencies, §1.3), stale-version storage
(§1.2.3.1-§1.2.3.2) and the memory the firmware goes to.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from suitkit.cms.model import InstalledPackage, LegacyName, PackageName, PreferredName, TrustAnchor


class FirmwareWriter(Protocol):
    """A sink for one firmware image. Nothing is visible until :meth:`commit`."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


@runtime_checkable
class CmsDevice(Protocol):
    """A hardware module as the RFC 4108 bootstrap loader sees it."""

    @property
    def hw_type(self) -> str:
        """The hardware module type OID (RFC 4108 §1.2.1)."""
        ...

    @property
    def hw_serial(self) -> bytes | None:
        """The unique serial number, or None (then no receipts; §1.2.1, §2.2.8)."""
        ...

    def trust_anchors(self) -> Sequence[TrustAnchor]: ...

    def communities(self) -> Collection[str]:
        """Community OIDs this module belongs to (RFC 4108 §2.2.8; empty when unknown)."""
        ...

    def decryption_key(self, key_id: bytes) -> bytes | None:
        """A firmware-decryption or key-encryption key by identifier (RFC 4108 §2.2.5, §2.3.1)."""
        ...

    def installed_packages(self) -> Sequence[InstalledPackage]: ...

    def supported_package_types(self) -> Collection[int] | None:
        """Package types the module accepts (RFC 4108 §2.2.9), or None for any."""
        ...

    def stale_version(self, package_oid: str) -> int | None:
        """The highest stale version number stored for a package OID (RFC 4108 §1.2.3.2)."""
        ...

    def set_stale_version(self, package_oid: str, version: int) -> None: ...

    def stale_legacy_names(self) -> Collection[bytes]:
        """Stale legacy package names (RFC 4108 §1.2.3.1)."""
        ...

    def add_stale_legacy_name(self, name: bytes) -> None: ...

    def available_memory(self) -> int:
        """Octets available for the firmware image."""
        ...

    def current_time(self) -> _dt.datetime | None:
        """The real-time clock, or None when the module has none (no validity checks)."""
        ...

    def begin_firmware(self, name: PackageName, size: int) -> FirmwareWriter:
        """Start writing an image of ``size`` octets for package ``name``."""
        ...

    def record_installed(self, package: InstalledPackage) -> None:
        """Remember a loaded package, replacing the one with the same preferred OID (or the same
        legacy name)."""
        ...


def package_key(name: PackageName) -> str:
    """A stable key for a package slot: the OID (preferred) or ``legacy:<hex>``."""
    if isinstance(name, PreferredName):
        return name.oid
    return f"legacy:{name.name.hex()}"


def replaces(new: PackageName, old: PackageName) -> bool:
    """Whether loading ``new`` replaces the installed ``old`` (same preferred OID, or the same
    legacy name: legacy names carry no structure suitkit could use, RFC 4108 §1.2.2)."""
    if isinstance(new, PreferredName) and isinstance(old, PreferredName):
        return new.oid == old.oid
    if isinstance(new, LegacyName) and isinstance(old, LegacyName):
        return new.name == old.name
    return False


class _MemoryWriter:
    def __init__(self, device: InMemoryDevice, name: PackageName, size: int) -> None:
        self._device = device
        self._name = name
        self._buf = bytearray(size)
        self._pos = 0
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if self._pos + n > len(self._buf):
            raise OSError("firmware larger than announced")
        # through a memoryview: bytearray slice assignment would copy ``data`` first
        with memoryview(self._buf) as view:
            view[self._pos : self._pos + n] = data
        self._pos += n

    def commit(self) -> None:
        if self._pos != len(self._buf):
            raise OSError("firmware shorter than announced")
        self._device.firmware[package_key(self._name)] = self._buf
        self._done = True

    def abort(self) -> None:
        self._buf = bytearray()
        self._done = True


@dataclass
class InMemoryDevice:
    """A :class:`CmsDevice` that keeps everything in memory (for tests and experiments)."""

    hw_type: str
    hw_serial: bytes | None = None
    anchors: list[TrustAnchor] = field(default_factory=list)
    community_ids: set[str] = field(default_factory=set)
    keys: dict[bytes, bytes] = field(default_factory=dict)
    installed: list[InstalledPackage] = field(default_factory=list)
    package_types: set[int] | None = None
    stale_versions: dict[str, int] = field(default_factory=dict)
    stale_legacy: list[bytes] = field(default_factory=list)
    memory: int = 1 << 30
    clock: _dt.datetime | None = None
    firmware: dict[str, bytearray] = field(default_factory=dict)
    writes_started: int = 0

    def trust_anchors(self) -> Sequence[TrustAnchor]:
        return self.anchors

    def communities(self) -> Collection[str]:
        return self.community_ids

    def decryption_key(self, key_id: bytes) -> bytes | None:
        return self.keys.get(key_id)

    def installed_packages(self) -> Sequence[InstalledPackage]:
        return self.installed

    def supported_package_types(self) -> Collection[int] | None:
        return self.package_types

    def stale_version(self, package_oid: str) -> int | None:
        return self.stale_versions.get(package_oid)

    def set_stale_version(self, package_oid: str, version: int) -> None:
        current = self.stale_versions.get(package_oid)
        if current is None or version > current:  # only ratchets up
            self.stale_versions[package_oid] = version

    def stale_legacy_names(self) -> Collection[bytes]:
        return self.stale_legacy

    def add_stale_legacy_name(self, name: bytes) -> None:
        if name not in self.stale_legacy:
            self.stale_legacy.append(name)

    def available_memory(self) -> int:
        return self.memory

    def current_time(self) -> _dt.datetime | None:
        return self.clock

    def begin_firmware(self, name: PackageName, size: int) -> FirmwareWriter:
        self.writes_started += 1
        return _MemoryWriter(self, name, size)

    def record_installed(self, package: InstalledPackage) -> None:
        self.installed = [p for p in self.installed if not replaces(package.name, p.name)]
        self.installed.append(package)
