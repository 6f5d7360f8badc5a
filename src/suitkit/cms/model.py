"""Plain data types for RFC 4108 values: package names, signed attributes, trust anchors.

These are what the rest of suitkit sees; the pyasn1 objects stay inside
:mod:`suitkit.cms.attributes`. OIDs are dotted strings.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from suitkit.cms.oids import DigestAlgorithm

if TYPE_CHECKING:
    from cryptography import x509

    from suitkit.cms.crypto import PublicKey


# --- Package names (RFC 4108 §1.2.2, §2.2.3) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreferredName:
    """Preferred package name: the package OID and its version number (RFC 4108 §2.2.3)."""

    oid: str
    version: int

    def __str__(self) -> str:
        return f"{self.oid} v{self.version}"

    def to_json(self) -> dict[str, object]:
        return {"oid": self.oid, "version": self.version}


@dataclass(frozen=True, slots=True)
class LegacyName:
    """Legacy package name: an opaque octet string (RFC 4108 §2.2.3)."""

    name: bytes

    def __str__(self) -> str:
        try:
            text = self.name.decode("ascii")
            if text.isprintable():
                return f"legacy {text!r}"
        except UnicodeDecodeError:
            pass
        return f"legacy 0x{self.name.hex()}"

    def to_json(self) -> dict[str, object]:
        return {"legacy": self.name.hex()}


PackageName: TypeAlias = PreferredName | LegacyName


def package_name_from_json(data: dict[str, object]) -> PackageName:
    if "legacy" in data:
        return LegacyName(bytes.fromhex(str(data["legacy"])))
    version = data["version"]
    if not isinstance(version, int):
        raise ValueError("package version must be an integer")
    return PreferredName(str(data["oid"]), version)


@dataclass(frozen=True, slots=True)
class FirmwarePackageId:
    """``FirmwarePackageIdentifier`` (RFC 4108 §2.2.3): the name and an optional stale version.

    ``stale`` is an ``int`` (``preferredStaleVerNum``) with a preferred name, or ``bytes``
    (``legacyStaleVersion``) with a legacy name.
    """

    name: PackageName
    stale: int | bytes | None = None


# --- Community identifiers (RFC 4108 §2.2.8) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllSerials:
    """``HardwareSerialEntry.all``: every module of the type."""


@dataclass(frozen=True, slots=True)
class SerialRange:
    """``HardwareSerialEntry.block``: serial numbers from ``low`` to ``high`` inclusive."""

    low: bytes
    high: bytes


SerialEntry: TypeAlias = AllSerials | bytes | SerialRange


@dataclass(frozen=True, slots=True)
class HardwareModules:
    """``HardwareModules``: a hardware type and the serial numbers of it that are authorised."""

    hw_type: str
    serials: tuple[SerialEntry, ...]

    def includes(self, hw_type: str, serial: bytes | None) -> bool:
        """RFC 4108 §2.2.8: without a serial number the module is not on the list."""
        if hw_type != self.hw_type:
            return False
        for entry in self.serials:
            if isinstance(entry, AllSerials):
                return True
            if serial is None:
                continue
            if isinstance(entry, bytes):
                if entry == serial:
                    return True
            elif _serial_key(entry.low) <= _serial_key(serial) <= _serial_key(entry.high):
                return True
        return False


def _serial_key(serial: bytes) -> tuple[int, int]:
    """Serial numbers in a block compare as unsigned big-endian integers (RFC 4108 leaves the
    order to the module; this is the natural one for counters)."""
    return (int.from_bytes(serial, "big"), len(serial))


CommunityId: TypeAlias = str | HardwareModules


# --- Other signed attributes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FirmwarePackageInfo:
    """``FirmwarePackageInfo`` (RFC 4108 §2.2.9): package type and dependencies."""

    package_type: int | None = None
    dependencies: tuple[PackageName, ...] | None = None


@dataclass(frozen=True, slots=True)
class FirmwareMessageDigest:
    """``FirmwarePackageMessageDigest`` (RFC 4108 §2.2.10): digest of the plain firmware."""

    algorithm: DigestAlgorithm
    digest: bytes


@dataclass(frozen=True, slots=True)
class ContentHints:
    """``ContentHints`` (RFC 2634 §2.9, RFC 4108 §2.2.12)."""

    description: str | None
    content_type: str


@dataclass(frozen=True)
class PackageAttributes:
    """The signed attributes of a firmware package (RFC 4108 §2.2), decoded."""

    content_type: str
    message_digest: bytes
    package_id: FirmwarePackageId
    target_hardware: tuple[str, ...]
    decrypt_key_id: bytes | None = None
    impl_crypto_algs: tuple[str, ...] | None = None
    impl_compress_algs: tuple[str, ...] | None = None
    community_ids: tuple[CommunityId, ...] | None = None
    package_info: FirmwarePackageInfo | None = None
    fw_message_digest: FirmwareMessageDigest | None = None
    signing_time: _dt.datetime | None = None
    content_hints: ContentHints | None = None
    signing_certificate_hashes: tuple[bytes, ...] | None = None
    other: tuple[str, ...] = ()


# --- Device-side records -----------------------------------------------------------------------


@dataclass(frozen=True)
class TrustAnchor:
    """A trust anchor (RFC 4108 §1.2.4): a public key, its key identifier, an optional name.

    ``name`` (an X.500 name) lets certification paths start at this anchor; without it the key
    only verifies signatures directly. ``authorized`` is False for an anchor that is installed but
    not allowed to sign firmware packages (RFC 4108 §4.1.3 ``notAuthorized``).
    """

    public_key: PublicKey
    key_id: bytes
    name: x509.Name | None = None
    authorized: bool = True
    label: str = ""

    @classmethod
    def from_certificate(
        cls, cert: x509.Certificate, *, authorized: bool = True, label: str = ""
    ) -> TrustAnchor:
        from suitkit.cms.crypto import certificate_key_id, load_certificate_public_key

        return cls(
            public_key=load_certificate_public_key(cert),
            key_id=certificate_key_id(cert),
            name=cert.subject,
            authorized=authorized,
            label=label or cert.subject.rfc4514_string(),
        )

    @classmethod
    def from_public_key(
        cls,
        public_key: PublicKey,
        *,
        key_id: bytes | None = None,
        authorized: bool = True,
        label: str = "",
    ) -> TrustAnchor:
        from suitkit.cms.crypto import public_key_id

        return cls(
            public_key=public_key,
            key_id=key_id if key_id is not None else public_key_id(public_key),
            authorized=authorized,
            label=label,
        )


@dataclass(frozen=True, slots=True)
class InstalledPackage:
    """A package the module has loaded (for dependency checks, RFC 4108 §1.3, §2.2.9)."""

    name: PackageName
    package_type: int | None = None
    dependencies: tuple[PackageName, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name.to_json(),
            "package_type": self.package_type,
            "dependencies": [d.to_json() for d in self.dependencies],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> InstalledPackage:
        deps = data.get("dependencies") or []
        ptype = data.get("package_type")
        name = data["name"]
        if not isinstance(name, dict) or not isinstance(deps, list):
            raise ValueError("malformed installed-package record")
        return cls(
            name=package_name_from_json(name),
            package_type=ptype if isinstance(ptype, int) else None,
            dependencies=tuple(package_name_from_json(d) for d in deps),
        )


@dataclass
class LoadResult:
    """What :func:`suitkit.cms.loader.load_package` reports after a successful load."""

    package_id: FirmwarePackageId
    attributes: PackageAttributes
    trust_anchor: TrustAnchor
    firmware_size: int
    firmware_digest: FirmwareMessageDigest
    decrypt_key_id: bytes | None = None
    encrypted: bool = False
    compressed: bool = False
    warnings: list[str] = field(default_factory=list)
