"""CMS-protected firmware packages (RFC 4108).

Build a package::

    from suitkit.cms import PackageSpec, FirmwarePackageId, PreferredName, Signer, build_package
    spec = PackageSpec(FirmwarePackageId(PreferredName("1.3.6.1.4.1.99999.1", 7), stale=5),
                       target_hardware=["1.3.6.1.4.1.99999.2.1"])
    der = build_package(firmware, spec, Signer(private_key, certificate=cert))

Load it on a device (any :class:`CmsDevice`)::

    from suitkit.cms import InMemoryDevice, TrustAnchor, process_package
    outcome = process_package(der, device)           # receipt or error report in outcome.report

Every rejection is a :class:`CmsError` whose ``code`` is the RFC 4108 §4.1.3
``FirmwarePackageLoadErrorCode``.
"""

from suitkit.cms.device import CmsDevice, FirmwareWriter, InMemoryDevice
from suitkit.cms.errors import CmsError
from suitkit.cms.loader import LoadPolicy, load_package
from suitkit.cms.model import (
    AllSerials,
    FirmwareMessageDigest,
    FirmwarePackageId,
    FirmwarePackageInfo,
    HardwareModules,
    InstalledPackage,
    LegacyName,
    LoadResult,
    PackageAttributes,
    PreferredName,
    SerialRange,
    TrustAnchor,
)
from suitkit.cms.oids import (
    AttributeType,
    CompressionAlgorithm,
    ContentEncryptionAlgorithm,
    ContentType,
    DigestAlgorithm,
    LoadErrorCode,
    SignatureAlgorithm,
)
from suitkit.cms.package import (
    Encryption,
    PackageSpec,
    build_package,
    build_package_chunks,
    open_package,
)
from suitkit.cms.reports import (
    LoadErrorReport,
    LoadOutcome,
    LoadReceipt,
    ParsedReport,
    decode_report,
    encode_report,
    process_package,
)
from suitkit.cms.signeddata import Signer, verify_signed_data

__all__ = [
    "AllSerials",
    "AttributeType",
    "CmsDevice",
    "CmsError",
    "CompressionAlgorithm",
    "ContentEncryptionAlgorithm",
    "ContentType",
    "DigestAlgorithm",
    "Encryption",
    "FirmwareMessageDigest",
    "FirmwarePackageId",
    "FirmwarePackageInfo",
    "FirmwareWriter",
    "HardwareModules",
    "InMemoryDevice",
    "InstalledPackage",
    "LegacyName",
    "LoadErrorCode",
    "LoadErrorReport",
    "LoadOutcome",
    "LoadPolicy",
    "LoadReceipt",
    "LoadResult",
    "PackageAttributes",
    "PackageSpec",
    "ParsedReport",
    "PreferredName",
    "SerialRange",
    "SignatureAlgorithm",
    "Signer",
    "TrustAnchor",
    "build_package",
    "build_package_chunks",
    "decode_report",
    "encode_report",
    "load_package",
    "open_package",
    "process_package",
    "verify_signed_data",
]
