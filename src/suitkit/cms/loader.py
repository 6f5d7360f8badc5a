"""The RFC 4108 bootstrap loader: verify a protected firmware package and load it into a device.

:func:`load_package` runs the checks in this order; the first failure raises
:class:`~suitkit.cms.errors.CmsError` with its RFC 4108 §4.1.3 code:

1. structure and signed attributes (:func:`suitkit.cms.package.open_package`): decodeFailure ...
   badUnsignedAttrs;
2. signer → trust anchor (§1.2.3, §1.2.4): noTrustAnchor, notAuthorized;
3. algorithms, key size, message digest and signature (§1.2.3): badSignatureAlgorithm,
   unsupportedParameters, unsupportedKeySize, badDigestAlgorithm, signatureFailure;
4. content-type attribute against eContentType (§2.2.1, RFC 5652 §11.1): contentTypeMismatch;
5. target hardware (§2.2.4): wrongHardware; communities (§2.2.8): notInCommunity;
6. stale versions (§1.2.3.1, §1.2.3.2): stalePackage;
7. package type and dependencies (§1.3, §2.2.9): unsupportedPackageType, missingDependency,
   wrongDependencyVersion, breaksDependency;
8. EncryptedData and its key (§2.1.3, §2.2.5, §2.3.1): badEncryptedData ... missingCiphertext,
   noDecryptKey;
9. a verification pass that decrypts and decompresses without storing anything:
   decryptFailure, badCompressAlgorithm, missingCompressedContent, decompressFailure,
   insufficientMemory, and the firmware-package-message-digest check (§2.2.10);
10. only then the firmware is written (a second pass, whose digest must match the first),
    committed, and the stale-version and installed-package state updated.

Nothing reaches the device before step 10, so a rejected package leaves it untouched. The
plain-firmware path never copies the firmware: it is hashed and written straight from the input
buffer (a ``bytes``, ``memoryview`` or ``mmap``).
"""

from __future__ import annotations

import datetime as _dt
import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from suitkit.cms import crypto
from suitkit.cms.device import CmsDevice, FirmwareWriter, replaces
from suitkit.cms.errors import CmsError
from suitkit.cms.model import (
    FirmwareMessageDigest,
    HardwareModules,
    InstalledPackage,
    LegacyName,
    LoadResult,
    PackageName,
    PreferredName,
    TrustAnchor,
)
from suitkit.cms.oids import ContentType, DigestAlgorithm, LoadErrorCode
from suitkit.cms.package import (
    EncryptedLayer,
    PackageView,
    firmware_stream,
    open_package,
    parse_encrypted_data,
    unwrap_firmware_key,
)
from suitkit.cms.signeddata import digest_econtent, resolve_signer, verify_signer_info

E = LoadErrorCode


@dataclass
class LoadPolicy:
    """Module-specific rules RFC 4108 leaves open.

    ``legacy_not_newer(name, stale)``: whether legacy name ``name`` is the same as or older than
    stale legacy name ``stale`` (RFC 4108 §1.2.3.1 assumes the module can tell); by default only
    an exact match is stale. ``legacy_satisfies(installed, required)``: whether an installed legacy
    package fulfils a legacy dependency (§2.2.9); by default only an exact match does.
    """

    legacy_not_newer: Callable[[bytes, bytes], bool] | None = None
    legacy_satisfies: Callable[[bytes, bytes], bool] | None = None
    allow_issuer_serial: bool = True


def _named(exc: CmsError, view: PackageView | None) -> CmsError:
    if view is not None:
        exc.package_name = view.attributes.package_id.name
        exc.fw_message_digest = view.attributes.fw_message_digest
    return exc


def load_package(
    package: bytes | bytearray | memoryview | Any,
    device: CmsDevice,
    policy: LoadPolicy | None = None,
) -> LoadResult:
    """Verify ``package`` (the DER of a ContentInfo) and load its firmware into ``device``."""
    policy = policy or LoadPolicy()
    view: PackageView | None = None
    try:
        view = open_package(package, allow_issuer_serial=policy.allow_issuer_serial)
        return _load(view, package, device, policy)
    except CmsError as exc:
        raise _named(exc, view) from None


def _load(view: PackageView, package: Any, device: CmsDevice, policy: LoadPolicy) -> LoadResult:
    sd, attributes = view.sd, view.attributes
    # 2-3: authenticate (RFC 4108 §1.2.3: MUST reject a package whose signature cannot be validated)
    path = resolve_signer(sd, device.trust_anchors(), device.current_time())
    # algorithm checks first: they are cheap, hashing the firmware is not
    crypto.prepare_verifier(path.public_key, sd.signer.signature_algorithm, sd.digest_algorithm)
    econtent_digest = digest_econtent(sd)
    verify_signer_info(sd, path, econtent_digest)
    # 4: content-type attribute (RFC 4108 §2.2.1)
    if attributes.content_type != sd.econtent_type:
        raise CmsError(
            E.CONTENT_TYPE_MISMATCH, "content-type attribute does not match eContentType"
        )
    # 5: authorisation of this module
    if device.hw_type not in attributes.target_hardware:  # RFC 4108 §2.2.4
        raise CmsError(
            E.WRONG_HARDWARE,
            f"hardware module type {device.hw_type} is not a target of this package",
        )
    if attributes.community_ids is not None and not _in_community(attributes.community_ids, device):
        raise CmsError(
            E.NOT_IN_COMMUNITY,
            "this hardware module is not in any community the package names (RFC 4108 §2.2.8)",
        )
    # 6: stale versions
    name = attributes.package_id.name
    _check_stale(name, device, policy)
    # 7: package type and dependencies
    warnings = _check_dependencies(view, device, policy)
    # 8: encryption layer and key
    layer: EncryptedLayer | None = None
    key: bytes | None = None
    if view.encrypted:
        layer = parse_encrypted_data(sd)
        key = _find_key(view, layer, device)
    # 9: verification pass
    fw_alg = (
        attributes.fw_message_digest.algorithm
        if attributes.fw_message_digest
        else DigestAlgorithm.SHA256
    )
    available = device.available_memory()
    if sd.econtent_type == ContentType.FIRMWARE_PACKAGE:
        size = sd.econtent_length
        if size > available:
            raise CmsError(
                E.INSUFFICIENT_MEMORY, f"firmware of {size} octets, {available} available"
            )
        fw_digest = (
            econtent_digest
            if fw_alg is sd.digest_algorithm
            else _digest_stream(fw_alg, iter(sd.econtent))
        )
    else:
        size, fw_digest = _measure(firmware_stream(view, key, layer), fw_alg, available)
    if attributes.fw_message_digest is not None and not hmac.compare_digest(
        fw_digest, attributes.fw_message_digest.digest
    ):
        code = (
            E.DECRYPT_FAILURE
            if view.encrypted
            else E.DECOMPRESS_FAILURE
            if view.compressed
            else E.BAD_FIRMWARE
        )
        raise CmsError(
            code,
            "the recovered firmware does not match the firmware-package-message-digest attribute",
        )
    # 10: write, then update state
    writer = device.begin_firmware(name, size)
    try:
        rehash = not isinstance(package, bytes)
        written = _write(
            writer,
            firmware_stream(view, key, layer),
            fw_alg if rehash or layer or view.compressed else None,
        )
        if written is not None and not hmac.compare_digest(written, fw_digest):
            raise CmsError(
                E.OTHER_ERROR, "the package changed while it was being loaded", vendor_code=1
            )
        writer.commit()
    except CmsError:
        writer.abort()
        raise
    except OSError as exc:
        writer.abort()
        raise CmsError(
            E.OTHER_ERROR, f"writing the firmware failed: {exc}", vendor_code=2
        ) from None
    info = attributes.package_info
    device.record_installed(
        InstalledPackage(
            name, info.package_type if info else None, (info.dependencies or ()) if info else ()
        )
    )
    stale = attributes.package_id.stale
    if isinstance(name, PreferredName) and isinstance(stale, int):
        current = device.stale_version(name.oid)
        if current is None or stale > current:  # the stored number only ratchets up
            device.set_stale_version(name.oid, stale)
    elif isinstance(stale, bytes):
        device.add_stale_legacy_name(stale)
    return LoadResult(
        package_id=attributes.package_id,
        attributes=attributes,
        trust_anchor=path.trust_anchor,
        firmware_size=size,
        firmware_digest=FirmwareMessageDigest(fw_alg, fw_digest),
        decrypt_key_id=attributes.decrypt_key_id if view.encrypted else None,
        encrypted=view.encrypted,
        compressed=view.compressed
        or (layer is not None and layer.inner_type == ContentType.COMPRESSED_DATA),
        warnings=warnings,
    )


def _in_community(ids: tuple[str | HardwareModules, ...], device: CmsDevice) -> bool:
    """RFC 4108 §2.2.8: member of a listed community OID, or listed by type and serial."""
    mine = set(device.communities())
    for ident in ids:
        if isinstance(ident, str):
            if ident in mine:
                return True
        elif ident.includes(device.hw_type, device.hw_serial):
            return True
    return False


def _check_stale(name: PackageName, device: CmsDevice, policy: LoadPolicy) -> None:
    """RFC 4108 §1.2.3.2: same OID and version <= the stored stale number → reject;
    §1.2.3.1: a legacy name equal to (or, per policy, older than) a stored stale name → reject."""
    if isinstance(name, PreferredName):
        stale = device.stale_version(name.oid)
        if stale is not None and name.version <= stale:
            raise CmsError(
                E.STALE_PACKAGE,
                f"version {name.version} of {name.oid} is stale (stale up to {stale})",
            )
        return
    for stale_name in device.stale_legacy_names():
        older = (
            policy.legacy_not_newer(name.name, stale_name)
            if policy.legacy_not_newer
            else name.name == stale_name
        )
        if older:
            raise CmsError(E.STALE_PACKAGE, f"legacy package {name} is stale")


def _check_dependencies(view: PackageView, device: CmsDevice, policy: LoadPolicy) -> list[str]:
    """RFC 4108 §1.3 and §2.2.9: every dependency must be loaded (a preferred dependency with at
    least the given version), and loading must not break the dependencies of loaded packages."""
    attributes = view.attributes
    name = attributes.package_id.name
    info = attributes.package_info
    installed = list(device.installed_packages())
    warnings: list[str] = []
    if info is not None and info.package_type is not None:
        supported = device.supported_package_types()
        if supported is not None and info.package_type not in supported:
            raise CmsError(
                E.UNSUPPORTED_PACKAGE_TYPE, f"package type {info.package_type} is not supported"
            )
    for dep in (info.dependencies or ()) if info is not None else ():
        if isinstance(dep, PreferredName):
            match = [
                p for p in installed if isinstance(p.name, PreferredName) and p.name.oid == dep.oid
            ]
            if not match:
                raise CmsError(E.MISSING_DEPENDENCY, f"depends on {dep.oid}, which is not loaded")
            have = max(p.name.version for p in match if isinstance(p.name, PreferredName))
            if have < dep.version:
                raise CmsError(
                    E.WRONG_DEPENDENCY_VERSION,
                    f"depends on {dep.oid} v{dep.version} or later, v{have} is loaded",
                )
        else:
            ok = any(
                isinstance(p.name, LegacyName)
                and (
                    policy.legacy_satisfies(p.name.name, dep.name)
                    if policy.legacy_satisfies
                    else p.name.name == dep.name
                )
                for p in installed
            )
            if not ok:
                raise CmsError(E.MISSING_DEPENDENCY, f"depends on {dep}, which is not loaded")
    for other in installed:
        if replaces(name, other.name):
            if (
                isinstance(name, PreferredName)
                and isinstance(other.name, PreferredName)
                and name.version < other.name.version
            ):
                # RFC 4108 §1.2.3: SHOULD warn when an earlier version replaces a later one
                warnings.append(
                    f"version {name.version} of {name.oid} replaces "
                    f"the later version {other.name.version}"
                )
            continue
        for dep in other.dependencies:
            if (
                isinstance(name, PreferredName)
                and isinstance(dep, PreferredName)
                and dep.oid == name.oid
                and name.version < dep.version
            ):
                raise CmsError(
                    E.BREAKS_DEPENDENCY,
                    f"loaded package {other.name} needs {dep.oid} v{dep.version} "
                    "or later (RFC 4108 §1.3)",
                )
    return warnings


def _find_key(view: PackageView, layer: EncryptedLayer, device: CmsDevice) -> bytes:
    """The firmware-decryption key named by the decrypt-key-identifier attribute (RFC 4108
    §2.2.5), else the one in the wrapped-firmware-decryption-key attribute (§2.3.1)."""
    key_id = view.attributes.decrypt_key_id
    assert key_id is not None  # open_package insists on it for encrypted packages
    key = device.decryption_key(key_id)
    if key is None and view.wrapped_key is not None:
        key = unwrap_firmware_key(view.wrapped_key, layer, device.decryption_key)
    if key is None:
        raise CmsError(
            E.NO_DECRYPT_KEY, f"no firmware-decryption key {key_id.hex()} on this module"
        )
    return key


def _digest_stream(alg: DigestAlgorithm, chunks: Iterator[bytes | memoryview]) -> bytes:
    h = crypto.new_hash(alg)
    for chunk in chunks:
        h.update(chunk)
    return bytes(h.digest())


def _measure(
    chunks: Iterator[bytes | memoryview], alg: DigestAlgorithm, available: int
) -> tuple[int, bytes]:
    """Size and digest of the firmware; more than ``available`` octets is insufficientMemory
    (checked while decompressing, so a compression bomb stops early)."""
    h = crypto.new_hash(alg)
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > available:
            raise CmsError(
                E.INSUFFICIENT_MEMORY, f"firmware larger than the {available} octets available"
            )
        h.update(chunk)
    return size, bytes(h.digest())


def _write(
    writer: FirmwareWriter, chunks: Iterator[bytes | memoryview], alg: DigestAlgorithm | None
) -> bytes | None:
    h = crypto.new_hash(alg) if alg is not None else None
    for chunk in crypto.rechunk(chunks, 1 << 22):
        if h is not None:
            h.update(chunk)
        writer.write(chunk)
    return bytes(h.digest()) if h is not None else None


@dataclass
class VerifiedPackage:
    """What :func:`verify_package` established about a package (no device involved)."""

    view: PackageView
    trust_anchor_label: str
    trust_anchor_key_id: bytes
    firmware_size: int | None
    firmware_digest: FirmwareMessageDigest | None
    notes: list[str]


def verify_package(
    package: bytes | bytearray | memoryview | Any,
    trust_anchors: Sequence[TrustAnchor],
    *,
    now: _dt.datetime | None = None,
    decryption_keys: Mapping[bytes, bytes] | None = None,
) -> VerifiedPackage:
    """Check a firmware package without a device: RFC 4108 §2 structure and attributes, signer
    and signature against ``trust_anchors``, content type, and (when the firmware can be recovered:
    not encrypted, or its key is in ``decryption_keys``) decompression and the
    firmware-package-message-digest (§2.2.10)."""
    view: PackageView | None = None
    try:
        view = open_package(package)
        sd, attributes = view.sd, view.attributes
        path = resolve_signer(sd, trust_anchors, now)
        verify_signer_info(sd, path, digest_econtent(sd))
        if attributes.content_type != sd.econtent_type:
            raise CmsError(
                E.CONTENT_TYPE_MISMATCH, "content-type attribute does not match eContentType"
            )
        notes: list[str] = []
        layer = key = None
        if view.encrypted:
            layer = parse_encrypted_data(sd)
            key_id = attributes.decrypt_key_id or b""
            key = (decryption_keys or {}).get(key_id)
            if key is None and view.wrapped_key is not None and decryption_keys:
                key = unwrap_firmware_key(view.wrapped_key, layer, decryption_keys.get)
            if key is None:
                notes.append(f"encrypted with key {key_id.hex()}: firmware not checked")
                return VerifiedPackage(
                    view, path.trust_anchor.label, path.trust_anchor.key_id, None, None, notes
                )
        alg = (
            attributes.fw_message_digest.algorithm
            if attributes.fw_message_digest
            else DigestAlgorithm.SHA256
        )
        size, digest = _measure(firmware_stream(view, key, layer), alg, 1 << 62)
        if attributes.fw_message_digest is not None and not hmac.compare_digest(
            digest, attributes.fw_message_digest.digest
        ):
            code = (
                E.DECRYPT_FAILURE
                if view.encrypted
                else E.DECOMPRESS_FAILURE
                if view.compressed
                else E.BAD_FIRMWARE
            )
            raise CmsError(
                code,
                "the recovered firmware does not match "
                "the firmware-package-message-digest attribute",
            )
        return VerifiedPackage(
            view,
            path.trust_anchor.label,
            path.trust_anchor.key_id,
            size,
            FirmwareMessageDigest(alg, digest),
            notes,
        )
    except CmsError as exc:
        raise _named(exc, view) from None
