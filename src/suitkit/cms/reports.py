"""Firmware package load receipts (RFC 4108 §3) and load error reports (RFC 4108 §4).

Both are DER ``ContentInfo``: unsigned (contentType id-ct-firmwareLoadReceipt /
id-ct-firmwareLoadError with the report as content) or signed by the hardware module
(``SignedData`` whose eContent is the report; signed attributes content-type, message-digest,
signing-time and, when known, the firmware-package-message-digest of the package, RFC 4108
§2.2.10, binding the report to the package).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc4108

from suitkit.cms import attributes as attrs
from suitkit.cms import der
from suitkit.cms.device import CmsDevice
from suitkit.cms.errors import CmsError
from suitkit.cms.loader import LoadPolicy, load_package
from suitkit.cms.model import (
    FirmwareMessageDigest,
    InstalledPackage,
    LoadResult,
    PackageName,
    TrustAnchor,
)
from suitkit.cms.oids import REPORT_VERSION_V1, AttributeType, ContentType, LoadErrorCode, oid_name
from suitkit.cms.signeddata import (
    Signer,
    build_signed_data,
    digest_econtent,
    parse_content_info,
    parse_signed_data,
    resolve_signer,
    verify_signer_info,
)

E = LoadErrorCode


@dataclass(frozen=True)
class LoadReceipt:
    """``FirmwarePackageLoadReceipt`` (RFC 4108 §3.1.3)."""

    hw_type: str
    hw_serial: bytes
    package_name: PackageName
    trust_anchor_key_id: bytes | None = None
    decrypt_key_id: bytes | None = None


@dataclass(frozen=True)
class FirmwareConfig:
    """``CurrentFWConfig`` (RFC 4108 §4.1.3): one loaded package."""

    package_name: PackageName
    package_type: int | None = None


@dataclass(frozen=True)
class LoadErrorReport:
    """``FirmwarePackageLoadError`` (RFC 4108 §4.1.3)."""

    hw_type: str
    hw_serial: bytes
    error_code: LoadErrorCode
    vendor_error_code: int | None = None
    package_name: PackageName | None = None
    config: tuple[FirmwareConfig, ...] | None = None


Report = LoadReceipt | LoadErrorReport


@dataclass
class ParsedReport:
    """A decoded receipt or error report and what is known about its signature."""

    report: Report
    signed: bool
    verified: bool
    signer_key_id: bytes | None = None
    signing_time: _dt.datetime | None = None
    fw_message_digest: FirmwareMessageDigest | None = None
    trust_anchor: TrustAnchor | None = None

    @property
    def kind(self) -> str:
        return "receipt" if isinstance(self.report, LoadReceipt) else "error"


# --- Encoding ----------------------------------------------------------------------------------


def encode_receipt_content(receipt: LoadReceipt) -> bytes:
    """DER of the receipt; version is left at its DEFAULT v1 (RFC 4108 §3.1.3)."""
    obj = rfc4108.FirmwarePackageLoadReceipt()
    obj["hwType"] = univ.ObjectIdentifier(receipt.hw_type)
    obj["hwSerialNum"] = receipt.hw_serial
    obj["fwPkgName"] = attrs.package_name_asn1(receipt.package_name)
    if receipt.trust_anchor_key_id is not None:
        obj["trustAnchorKeyID"] = receipt.trust_anchor_key_id
    if receipt.decrypt_key_id is not None:
        obj["decryptKeyID"] = receipt.decrypt_key_id
    return bytes(der_encoder.encode(obj))


def encode_error_content(report: LoadErrorReport) -> bytes:
    """DER of the error report (RFC 4108 §4.1.3); otherError needs a vendorErrorCode."""
    if report.error_code is E.OTHER_ERROR and report.vendor_error_code is None:
        raise ValueError("otherError requires a vendor error code (RFC 4108 §4.1.3)")
    obj = rfc4108.FirmwarePackageLoadError()
    obj["hwType"] = univ.ObjectIdentifier(report.hw_type)
    obj["hwSerialNum"] = report.hw_serial
    obj["errorCode"] = int(report.error_code)
    if report.vendor_error_code is not None:
        obj["vendorErrorCode"] = report.vendor_error_code
    if report.package_name is not None:
        obj["fwPkgName"] = attrs.package_name_asn1(report.package_name)
    if report.config is not None:
        config = obj.getComponentByName("config")
        for i, item in enumerate(report.config):
            entry = rfc4108.CurrentFWConfig()
            if item.package_type is not None:
                entry["fwPkgType"] = item.package_type
            entry["fwPkgName"] = attrs.package_name_asn1(item.package_name)
            config.setComponentByPosition(i, entry)
    return bytes(der_encoder.encode(obj))


def encode_report(
    report: Report,
    signer: Signer | None = None,
    *,
    fw_message_digest: FirmwareMessageDigest | None = None,
    signing_time: _dt.datetime | None = None,
) -> bytes:
    """The report as a DER ContentInfo, signed when ``signer`` is given (RFC 4108 §3.1.1,
    §4.1.1). The signed form carries content-type and message-digest (§3.2, §4.2), signing-time
    when given (the module's clock, §3.2.3), and the firmware-package-message-digest."""
    if isinstance(report, LoadReceipt):
        content, ctype = encode_receipt_content(report), ContentType.FIRMWARE_LOAD_RECEIPT
    else:
        content, ctype = encode_error_content(report), ContentType.FIRMWARE_LOAD_ERROR
    if signer is None:
        return der.sequence(der.encode_oid(ctype), der.tlv(0xA0, content))
    signed = []
    if signing_time is not None:
        signed.append(
            attrs.encode_attribute(
                AttributeType.SIGNING_TIME, attrs.encode_signing_time(signing_time)
            )
        )
    if fw_message_digest is not None:
        signed.append(
            attrs.encode_attribute(
                AttributeType.FW_PKG_MESSAGE_DIGEST,
                attrs.encode_fw_message_digest(fw_message_digest),
            )
        )
    return b"".join(build_signed_data(content, ctype, signer, signed))


# --- Decoding ----------------------------------------------------------------------------------


def _decode_content(data: bytes, ctype: str) -> Report:
    try:
        if ctype == ContentType.FIRMWARE_LOAD_RECEIPT:
            obj, rest = der_decoder.decode(data, asn1Spec=rfc4108.FirmwarePackageLoadReceipt())
            if rest:
                raise ValueError("trailing octets")
            if int(obj["version"]) != REPORT_VERSION_V1:  # RFC 4108 §3.1.3: MUST be v1
                raise ValueError(f"receipt version {int(obj['version'])}")
            return LoadReceipt(
                hw_type=str(obj["hwType"]),
                hw_serial=bytes(obj["hwSerialNum"]),
                package_name=attrs.package_name_from_asn1(obj["fwPkgName"]),
                trust_anchor_key_id=bytes(obj["trustAnchorKeyID"])
                if obj["trustAnchorKeyID"].isValue
                else None,
                decrypt_key_id=bytes(obj["decryptKeyID"]) if obj["decryptKeyID"].isValue else None,
            )
        obj, rest = der_decoder.decode(data, asn1Spec=rfc4108.FirmwarePackageLoadError())
        if rest:
            raise ValueError("trailing octets")
        if int(obj["version"]) != REPORT_VERSION_V1:  # RFC 4108 §4.1.3: MUST be v1
            raise ValueError(f"error report version {int(obj['version'])}")
        code = LoadErrorCode(int(obj["errorCode"]))
        vendor = int(obj["vendorErrorCode"]) if obj["vendorErrorCode"].isValue else None
        if code is E.OTHER_ERROR and vendor is None:  # RFC 4108 §4.1.3
            raise ValueError("otherError without vendorErrorCode")
        config = None
        if obj["config"].isValue:
            config = tuple(
                FirmwareConfig(
                    attrs.package_name_from_asn1(c["fwPkgName"]),
                    int(c["fwPkgType"]) if c["fwPkgType"].isValue else None,
                )
                for c in obj["config"]
            )
        return LoadErrorReport(
            hw_type=str(obj["hwType"]),
            hw_serial=bytes(obj["hwSerialNum"]),
            error_code=code,
            vendor_error_code=vendor,
            package_name=attrs.package_name_from_asn1(obj["fwPkgName"])
            if obj["fwPkgName"].isValue
            else None,
            config=config,
        )
    except (PyAsn1Error, ValueError) as exc:
        raise CmsError(E.BAD_ENCAP_CONTENT, f"malformed {oid_name(ctype)}: {exc}") from None


def decode_report(
    data: bytes | bytearray | memoryview,
    trust_anchors: Sequence[TrustAnchor] | None = None,
    *,
    now: _dt.datetime | None = None,
) -> ParsedReport:
    """Parse a receipt or error report; with ``trust_anchors`` a signed one must verify.

    Signed reports follow RFC 4108 §3.1.2 / §4.1.2: SignedData version 3, one SignerInfo
    (version 1 or 3), content-type and message-digest attributes, no unsigned attributes.
    """
    buf = memoryview(data)
    ctype, buf, content = parse_content_info(buf)
    report_types = (ContentType.FIRMWARE_LOAD_RECEIPT, ContentType.FIRMWARE_LOAD_ERROR)
    if ctype in report_types:
        return ParsedReport(
            _decode_content(der.element_bytes(buf, content), ctype), signed=False, verified=False
        )
    if ctype != ContentType.SIGNED_DATA:
        raise CmsError(
            E.BAD_CONTENT_INFO,
            f"ContentInfo holds {oid_name(ctype)}, not a receipt or error report",
        )
    sd = parse_signed_data(buf, econtent_types=report_types)
    if sd.signer.unsigned_attrs is not None:  # RFC 4108 §3.1.2.1: MUST NOT be present
        raise CmsError(
            E.BAD_UNSIGNED_ATTRS, "unsigned attributes in a signed receipt or error report"
        )
    if sd.content_type != sd.econtent_type:
        raise CmsError(
            E.CONTENT_TYPE_MISMATCH, "content-type attribute does not match eContentType"
        )
    signed = sd.signer.signed_attrs
    try:
        when = signed.get(AttributeType.SIGNING_TIME)
        md = signed.get(AttributeType.FW_PKG_MESSAGE_DIGEST)
        signing_time = attrs.decode_signing_time(when.value) if when else None
        fw_md = attrs.decode_fw_message_digest(md.value) if md else None
    except attrs.AttributeError_ as exc:
        raise CmsError(E.BAD_SIGNED_ATTRS, str(exc)) from None
    anchor = None
    if trust_anchors is not None:
        path = resolve_signer(sd, trust_anchors, now)
        verify_signer_info(sd, path, digest_econtent(sd))
        anchor = path.trust_anchor
    return ParsedReport(
        _decode_content(sd.econtent_bytes(), sd.econtent_type),
        signed=True,
        verified=trust_anchors is not None,
        signer_key_id=sd.signer.key_id,
        signing_time=signing_time,
        fw_message_digest=fw_md,
        trust_anchor=anchor,
    )


# --- Receipts and error reports for a load -----------------------------------------------------


@dataclass
class LoadOutcome:
    """The result of :func:`process_package`: the load result or the error, and the report."""

    result: LoadResult | None
    error: CmsError | None
    report: bytes | None

    @property
    def ok(self) -> bool:
        return self.error is None


def receipt_for(device: CmsDevice, result: LoadResult) -> LoadReceipt:
    """The receipt for a successful load (RFC 4108 §3.1.3: decryptKeyID only when the package was
    encrypted and decrypted)."""
    if device.hw_serial is None:
        raise ValueError("receipts need a hardware module serial number (RFC 4108 §3)")
    return LoadReceipt(
        hw_type=device.hw_type,
        hw_serial=device.hw_serial,
        package_name=result.package_id.name,
        trust_anchor_key_id=result.trust_anchor.key_id,
        decrypt_key_id=result.decrypt_key_id if result.encrypted else None,
    )


def error_report_for(
    device: CmsDevice, error: CmsError, *, include_config: bool = True
) -> LoadErrorReport:
    """The error report for a failed load, with the current configuration (RFC 4108 §4.1.3
    RECOMMENDS it for modules that hold several packages)."""
    if device.hw_serial is None:
        raise ValueError("error reports need a hardware module serial number (RFC 4108 §4)")
    vendor = error.vendor_code
    if error.code is E.OTHER_ERROR and vendor is None:
        vendor = 0
    config = None
    if include_config:
        config = tuple(_config_entry(p) for p in device.installed_packages())
    return LoadErrorReport(
        hw_type=device.hw_type,
        hw_serial=device.hw_serial,
        error_code=error.code,
        vendor_error_code=vendor,
        package_name=error.package_name,
        config=config,
    )


def _config_entry(p: InstalledPackage) -> FirmwareConfig:
    return FirmwareConfig(p.name, p.package_type)


def process_package(
    package: bytes | bytearray | memoryview | Any,
    device: CmsDevice,
    *,
    report_signer: Signer | None = None,
    policy: LoadPolicy | None = None,
) -> LoadOutcome:
    """Load a package and produce the receipt or the error report (DER, signed when
    ``report_signer`` is given; None when the module has no serial number)."""
    when = device.current_time()
    try:
        result = load_package(package, device, policy)
    except CmsError as exc:
        report = None
        if device.hw_serial is not None:
            report = encode_report(
                error_report_for(device, exc),
                report_signer,
                fw_message_digest=exc.fw_message_digest,
                signing_time=when,
            )
        return LoadOutcome(None, exc, report)
    report = None
    if device.hw_serial is not None:
        report = encode_report(
            receipt_for(device, result),
            report_signer,
            fw_message_digest=result.firmware_digest,
            signing_time=when,
        )
    return LoadOutcome(result, None, report)


def describe_report(parsed: ParsedReport) -> dict[str, Any]:
    """A JSON-friendly description (for the CLI)."""
    r = parsed.report
    out: dict[str, Any] = {
        "kind": parsed.kind,
        "signed": parsed.signed,
        "verified": parsed.verified,
    }
    out["hw_type"] = r.hw_type
    out["hw_serial"] = r.hw_serial.hex()
    if isinstance(r, LoadReceipt):
        out["package"] = str(r.package_name)
        if r.trust_anchor_key_id is not None:
            out["trust_anchor_key_id"] = r.trust_anchor_key_id.hex()
        if r.decrypt_key_id is not None:
            out["decrypt_key_id"] = r.decrypt_key_id.hex()
    else:
        out["error_code"] = f"{r.error_code.spec_name} ({int(r.error_code)})"
        if r.vendor_error_code is not None:
            out["vendor_error_code"] = r.vendor_error_code
        if r.package_name is not None:
            out["package"] = str(r.package_name)
        if r.config is not None:
            out["config"] = [
                str(c.package_name)
                + (f" type {c.package_type}" if c.package_type is not None else "")
                for c in r.config
            ]
    if parsed.signer_key_id is not None:
        out["signer_key_id"] = parsed.signer_key_id.hex()
    if parsed.signing_time is not None:
        out["signing_time"] = parsed.signing_time.isoformat()
    if parsed.fw_message_digest is not None:
        out["fw_message_digest"] = (
            f"{oid_name(parsed.fw_message_digest.algorithm)} "
            f"{parsed.fw_message_digest.digest.hex()}"
        )
    return out
