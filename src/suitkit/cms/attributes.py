"""Encoding and decoding of CMS attributes and the small RFC 4108 structures.

RFC 4108 §2.2 structures go through the pyasn1-modules ``rfc4108`` types, so suitkit encodes
exactly the ASN.1 module of RFC 4108 Appendix A; CMS attributes (RFC 5652 §11) and the ESS
attributes (RFC 2634 §2.9, §5.4) are simple enough to encode with :mod:`suitkit.cms.der`.

Decoders raise :class:`AttributeError_` (a ``ValueError``) on anything malformed; the caller turns
it into ``badSignedAttrs`` (RFC 4108 §4.1.3) or the code of the layer it is reading.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc4108

from suitkit.cms import der
from suitkit.cms.crypto import AlgorithmId
from suitkit.cms.model import (
    AllSerials,
    CommunityId,
    ContentHints,
    FirmwareMessageDigest,
    FirmwarePackageId,
    FirmwarePackageInfo,
    HardwareModules,
    LegacyName,
    PackageName,
    PreferredName,
    SerialEntry,
    SerialRange,
)
from suitkit.cms.oids import AttributeType, DigestAlgorithm


class AttributeError_(ValueError):
    """A malformed attribute or attribute value."""


# --- Generic attribute sets (RFC 5652 §5.3) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawAttribute:
    """One Attribute: its type and the DER encodings of its values."""

    oid: str
    values: tuple[bytes, ...]

    @property
    def value(self) -> bytes:
        return self.values[0]


def encode_attribute(oid: str, value: bytes) -> bytes:
    """``Attribute ::= SEQUENCE { attrType, attrValues SET OF AttributeValue }``, one value
    (RFC 4108 §2.2: "There MUST be exactly one instance of AttributeValue present")."""
    return der.sequence(der.encode_oid(oid), der.set_of([value]))


def parse_attribute_set(buf: memoryview, tlv: der.Tlv, *, require_der: bool) -> list[RawAttribute]:
    """The attributes of a SignedAttributes / UnsignedAttributes SET.

    Checks that each attribute type occurs once (RFC 4108 §2.2, §2.3: "MUST include only one
    instance of any particular attribute") and has at least one value. With ``require_der``, the
    whole set must be DER (RFC 4108 §2.1.2.1: "The SET OF attributes MUST be DER encoded").
    """
    if require_der:
        _check_der(buf, tlv)
    out: list[RawAttribute] = []
    seen: set[str] = set()
    items = der.children(buf, tlv)
    if not items:
        raise AttributeError_("empty attribute set")
    for item in items:
        if not item.is_universal(der.SEQUENCE) or not item.constructed:
            raise AttributeError_("attribute is not a SEQUENCE")
        parts = der.children(buf, item)
        if len(parts) != 2 or not parts[0].is_universal(der.OBJECT_IDENTIFIER):
            raise AttributeError_("malformed attribute")
        if not parts[1].is_universal(der.SET) or not parts[1].constructed:
            raise AttributeError_("attribute values are not a SET")
        oid = der.decode_oid(buf[parts[0].content_start : parts[0].content_end])
        if oid in seen:
            raise AttributeError_(f"attribute {oid} occurs more than once")
        seen.add(oid)
        values = tuple(der.element_bytes(buf, v) for v in der.children(buf, parts[1]))
        if not values:
            raise AttributeError_(f"attribute {oid} has no value")
        out.append(RawAttribute(oid, values))
    return out


def _check_der(buf: memoryview, tlv: der.Tlv, depth: int = 0) -> None:
    """Definite, minimal lengths everywhere and SET OF components in DER order (X.690 §10-11)."""
    if tlv.indefinite:
        raise AttributeError_("indefinite length in a DER structure")
    expected = len(der.encode_length(tlv.content_length))
    if tlv.content_start - tlv.start != _identifier_length(tlv) + expected:
        raise AttributeError_("non-minimal length in a DER structure")
    if not tlv.constructed:
        return
    if tlv.is_universal(der.OCTET_STRING) or tlv.is_universal(der.BIT_STRING):
        raise AttributeError_("constructed string in a DER structure")
    items = der.children(buf, tlv, depth)
    if tlv.is_universal(der.SET) or (depth == 0 and tlv.cls == der.CONTEXT):
        encodings = [bytes(buf[c.start : c.end]) for c in items]
        width = max((len(e) for e in encodings), default=0)
        padded = [e.ljust(width, b"\x00") for e in encodings]
        if padded != sorted(padded):
            raise AttributeError_("SET OF components not in DER order")
    for child in items:
        _check_der(buf, child, depth + 1)


def _identifier_length(tlv: der.Tlv) -> int:
    if tlv.number < 0x1F:
        return 1
    n, count = tlv.number, 0
    while n:
        n >>= 7
        count += 1
    return 1 + count


# --- pyasn1 helpers ----------------------------------------------------------------------------


def _decode(value: bytes, spec: Any, what: str) -> Any:
    """Decode DER with pyasn1 and insist that it re-encodes to the same octets (DER check)."""
    try:
        obj, rest = der_decoder.decode(value, asn1Spec=spec)
        if rest:
            raise AttributeError_(f"{what}: trailing octets")
        if der_encoder.encode(obj) != value:
            raise AttributeError_(f"{what}: not DER encoded")
    except PyAsn1Error as exc:
        raise AttributeError_(f"{what}: {exc}") from None
    return obj


def _oid_value(value: bytes, what: str) -> str:
    buf = memoryview(value)
    try:
        tlv = der.read_single(buf)
        der.expect(tlv, der.UNIVERSAL, der.OBJECT_IDENTIFIER, False, what)
        return der.decode_oid(buf[tlv.content_start : tlv.content_end])
    except der.DerError as exc:
        raise AttributeError_(str(exc)) from None


def _octets_value(value: bytes, what: str) -> bytes:
    buf = memoryview(value)
    try:
        tlv = der.read_single(buf)
        der.expect(tlv, der.UNIVERSAL, der.OCTET_STRING, False, what)
    except der.DerError as exc:
        raise AttributeError_(str(exc)) from None
    return der.content_bytes(buf, tlv)


# --- CMS attributes (RFC 5652 §11) -------------------------------------------------------------


def encode_content_type(oid: str) -> bytes:
    return der.encode_oid(oid)


def decode_content_type(value: bytes) -> str:
    return _oid_value(value, "content-type")


def encode_message_digest(digest: bytes) -> bytes:
    return der.encode_octet_string(digest)


def decode_message_digest(value: bytes) -> bytes:
    return _octets_value(value, "message-digest")


def encode_signing_time(when: _dt.datetime) -> bytes:
    """``Time``: UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5652 §11.3)."""
    when = when.astimezone(_dt.UTC).replace(microsecond=0)
    if 1950 <= when.year < 2050:
        return der.tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return der.tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def decode_signing_time(value: bytes) -> _dt.datetime:
    buf = memoryview(value)
    try:
        tlv = der.read_single(buf)
        text = der.content_bytes(buf, tlv).decode("ascii")
        if tlv.is_universal(der.UTC_TIME) and len(text) == 13 and text.endswith("Z"):
            parsed = _dt.datetime.strptime(text, "%y%m%d%H%M%SZ")
            year = parsed.year if parsed.year < 2050 else parsed.year - 100
            return parsed.replace(year=year, tzinfo=_dt.UTC)
        if tlv.is_universal(der.GENERALIZED_TIME) and len(text) == 15 and text.endswith("Z"):
            return _dt.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=_dt.UTC)
    except (der.DerError, UnicodeDecodeError, ValueError) as exc:
        raise AttributeError_(f"signing-time: {exc}") from None
    raise AttributeError_("signing-time: not a DER UTCTime or GeneralizedTime")


# --- ESS attributes (RFC 2634) -----------------------------------------------------------------


def encode_content_hints(description: str | None, content_type: str) -> bytes:
    """``ContentHints`` (RFC 2634 §2.9; RFC 4108 §2.2.12 wants both fields)."""
    desc = der.tlv(0x0C, description.encode("utf-8")) if description is not None else b""
    return der.sequence(desc, der.encode_oid(content_type))


def decode_content_hints(value: bytes) -> ContentHints:
    buf = memoryview(value)
    try:
        top = der.read_single(buf)
        der.expect(top, der.UNIVERSAL, der.SEQUENCE, True, "content-hints")
        parts = der.children(buf, top)
        description = None
        if len(parts) == 2:
            der.expect(parts[0], der.UNIVERSAL, der.UTF8_STRING, False, "contentDescription")
            description = der.content_bytes(buf, parts[0]).decode("utf-8")
        elif len(parts) != 1:
            raise der.DerError("content-hints: wrong number of fields")
        der.expect(parts[-1], der.UNIVERSAL, der.OBJECT_IDENTIFIER, False, "contentType")
        ctype = der.decode_oid(buf[parts[-1].content_start : parts[-1].content_end])
    except (der.DerError, UnicodeDecodeError) as exc:
        raise AttributeError_(f"content-hints: {exc}") from None
    return ContentHints(description, ctype)


def encode_signing_certificate(cert: x509.Certificate) -> bytes:
    """``SigningCertificate`` with one ``ESSCertID`` (RFC 2634 §5.4; RFC 4108 §2.2.13: the SHA-1
    hash of the certificate, and the issuer and serial number)."""
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    issuer = der.sequence(der.tlv(0xA4, cert.issuer.public_bytes()))
    issuer_serial = der.sequence(issuer, der.encode_integer(cert.serial_number))
    ess_cert_id = der.sequence(
        der.encode_octet_string(hashlib.sha1(cert_der).digest()), issuer_serial
    )
    return der.sequence(der.sequence(ess_cert_id))


def decode_signing_certificate(value: bytes) -> tuple[bytes, ...]:
    """The SHA-1 certificate hashes of a ``SigningCertificate``."""
    buf = memoryview(value)
    try:
        top = der.read_single(buf)
        der.expect(top, der.UNIVERSAL, der.SEQUENCE, True, "signing-certificate")
        parts = der.children(buf, top)
        if not parts:
            raise der.DerError("signing-certificate: certs missing")
        der.expect(parts[0], der.UNIVERSAL, der.SEQUENCE, True, "certs")
        hashes = []
        for cert_id in der.children(buf, parts[0]):
            der.expect(cert_id, der.UNIVERSAL, der.SEQUENCE, True, "ESSCertID")
            fields = der.children(buf, cert_id)
            if not fields:
                raise der.DerError("ESSCertID: certHash missing")
            der.expect(fields[0], der.UNIVERSAL, der.OCTET_STRING, False, "certHash")
            hashes.append(der.content_bytes(buf, fields[0]))
    except der.DerError as exc:
        raise AttributeError_(str(exc)) from None
    if not hashes:
        raise AttributeError_("signing-certificate: no certificate identifier")
    return tuple(hashes)


# --- RFC 4108 §2.2 attributes ------------------------------------------------------------------


def package_name_asn1(name: PackageName) -> Any:
    obj = rfc4108.PreferredOrLegacyPackageIdentifier()
    if isinstance(name, PreferredName):
        pref = obj.getComponentByName("preferred")
        pref["fwPkgID"] = univ.ObjectIdentifier(name.oid)
        pref["verNum"] = name.version
    else:
        obj["legacy"] = name.name
    return obj


def package_name_from_asn1(obj: Any) -> PackageName:
    which = obj.getName()
    if which == "preferred":
        pref = obj["preferred"]
        return PreferredName(str(pref["fwPkgID"]), int(pref["verNum"]))
    return LegacyName(bytes(obj["legacy"]))


def encode_package_id(pid: FirmwarePackageId) -> bytes:
    """``FirmwarePackageIdentifier`` (RFC 4108 §2.2.3)."""
    obj = rfc4108.FirmwarePackageIdentifier()
    obj["name"] = package_name_asn1(pid.name)
    if pid.stale is not None:
        stale = obj.getComponentByName("stale")
        if isinstance(pid.stale, int):
            stale["preferredStaleVerNum"] = pid.stale
        else:
            stale["legacyStaleVersion"] = pid.stale
    return bytes(der_encoder.encode(obj))


def decode_package_id(value: bytes) -> FirmwarePackageId:
    obj = _decode(value, rfc4108.FirmwarePackageIdentifier(), "firmware-package-identifier")
    name = package_name_from_asn1(obj["name"])
    stale: int | bytes | None = None
    if obj["stale"].isValue:
        which = obj["stale"].getName()
        stale = (
            int(obj["stale"]["preferredStaleVerNum"])
            if which == "preferredStaleVerNum"
            else bytes(obj["stale"]["legacyStaleVersion"])
        )
    if (isinstance(name, PreferredName) and isinstance(stale, bytes)) or (
        isinstance(name, LegacyName) and isinstance(stale, int)
    ):
        raise AttributeError_(
            "firmware-package-identifier: stale version form does not match the name form"
        )
    return FirmwarePackageId(name, stale)


def encode_oid_list(oids: Iterable[str]) -> bytes:
    """``SEQUENCE OF OBJECT IDENTIFIER`` (target hardware, implemented algorithms)."""
    return der.sequence(*(der.encode_oid(o) for o in oids))


def decode_oid_list(value: bytes, what: str) -> tuple[str, ...]:
    obj = _decode(value, rfc4108.TargetHardwareIdentifiers(), what)
    return tuple(str(o) for o in obj)


def encode_decrypt_key_id(key_id: bytes) -> bytes:
    return der.encode_octet_string(key_id)


def decode_decrypt_key_id(value: bytes) -> bytes:
    return _octets_value(value, "decrypt-key-identifier")


def encode_community_ids(ids: Sequence[CommunityId]) -> bytes:
    """``CommunityIdentifiers`` (RFC 4108 §2.2.8)."""
    seq = rfc4108.CommunityIdentifiers()
    for i, ident in enumerate(ids):
        item = rfc4108.CommunityIdentifier()
        if isinstance(ident, str):
            item["communityOID"] = univ.ObjectIdentifier(ident)
        else:
            hw = item.getComponentByName("hwModuleList")
            hw["hwType"] = univ.ObjectIdentifier(ident.hw_type)
            entries = hw.getComponentByName("hwSerialEntries")
            for j, entry in enumerate(ident.serials):
                e = rfc4108.HardwareSerialEntry()
                if isinstance(entry, AllSerials):
                    e["all"] = univ.Null("")
                elif isinstance(entry, bytes):
                    e["single"] = entry
                else:
                    block = e.getComponentByName("block")
                    block["low"] = entry.low
                    block["high"] = entry.high
                entries.setComponentByPosition(j, e)
        seq.setComponentByPosition(i, item)
    return bytes(der_encoder.encode(seq))


def decode_community_ids(value: bytes) -> tuple[CommunityId, ...]:
    obj = _decode(value, rfc4108.CommunityIdentifiers(), "community-identifiers")
    out: list[CommunityId] = []
    for item in obj:
        if item.getName() == "communityOID":
            out.append(str(item["communityOID"]))
            continue
        hw = item["hwModuleList"]
        serials: list[SerialEntry] = []
        for entry in hw["hwSerialEntries"]:
            which = entry.getName()
            if which == "all":
                serials.append(AllSerials())
            elif which == "single":
                serials.append(bytes(entry["single"]))
            else:
                serials.append(
                    SerialRange(bytes(entry["block"]["low"]), bytes(entry["block"]["high"]))
                )
        out.append(HardwareModules(str(hw["hwType"]), tuple(serials)))
    if not out:
        raise AttributeError_("community-identifiers: empty list")
    return tuple(out)


def encode_package_info(info: FirmwarePackageInfo) -> bytes:
    """``FirmwarePackageInfo`` (RFC 4108 §2.2.9)."""
    obj = rfc4108.FirmwarePackageInfo()
    if info.package_type is not None:
        obj["fwPkgType"] = info.package_type
    if info.dependencies is not None:
        deps = obj.getComponentByName("dependencies")
        for i, dep in enumerate(info.dependencies):
            deps.setComponentByPosition(i, package_name_asn1(dep))
    return bytes(der_encoder.encode(obj))


def decode_package_info(value: bytes) -> FirmwarePackageInfo:
    obj = _decode(value, rfc4108.FirmwarePackageInfo(), "firmware-package-info")
    ptype = int(obj["fwPkgType"]) if obj["fwPkgType"].isValue else None
    deps = (
        tuple(package_name_from_asn1(d) for d in obj["dependencies"])
        if obj["dependencies"].isValue
        else None
    )
    if ptype is None and deps is None:
        raise AttributeError_("firmware-package-info: both fields absent")
    return FirmwarePackageInfo(ptype, deps)


def encode_fw_message_digest(md: FirmwareMessageDigest) -> bytes:
    """``FirmwarePackageMessageDigest`` (RFC 4108 §2.2.10)."""
    return der.sequence(AlgorithmId(md.algorithm).encode(), der.encode_octet_string(md.digest))


def decode_fw_message_digest(value: bytes) -> FirmwareMessageDigest:
    obj = _decode(value, rfc4108.FirmwarePackageMessageDigest(), "firmware-package-message-digest")
    alg = AlgorithmId.decode(der_encoder.encode(obj["algorithm"]))
    try:
        digest_alg = DigestAlgorithm(alg.oid)
    except ValueError:
        raise AttributeError_(
            f"firmware-package-message-digest: unsupported digest {alg.oid}"
        ) from None
    if not alg.params_absent_or_null or digest_alg is DigestAlgorithm.SHA1:
        raise AttributeError_("firmware-package-message-digest: unsupported digest parameters")
    return FirmwareMessageDigest(digest_alg, bytes(obj["msgDigest"]))


#: Attribute types whose values this module decodes (the rest are "unrecognized" and, as
#: RFC 4108 §2.1.2.1 requires, ignored).
KNOWN_SIGNED_ATTRIBUTES = frozenset(
    {
        AttributeType.CONTENT_TYPE,
        AttributeType.MESSAGE_DIGEST,
        AttributeType.SIGNING_TIME,
        AttributeType.CONTENT_HINTS,
        AttributeType.SIGNING_CERTIFICATE,
        AttributeType.FIRMWARE_PACKAGE_ID,
        AttributeType.TARGET_HARDWARE_IDS,
        AttributeType.DECRYPT_KEY_ID,
        AttributeType.IMPL_CRYPTO_ALGS,
        AttributeType.IMPL_COMPRESS_ALGS,
        AttributeType.COMMUNITY_IDENTIFIERS,
        AttributeType.FIRMWARE_PACKAGE_INFO,
        AttributeType.FW_PKG_MESSAGE_DIGEST,
    }
)
