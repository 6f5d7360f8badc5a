"""RFC 4108 §2 firmware packages: building them, and opening their layers for the loader.

Nesting (RFC 4108 §2)::

    ContentInfo(id-signedData)
      SignedData                                  signed attributes: RFC 4108 §2.2
        eContent: EncryptedData                   [optional, RFC 4108 §2.1.3]
                    CompressedData                [optional, RFC 4108 §2.1.4, RFC 3274]
                      FirmwarePkgData             the firmware octets (RFC 4108 §2.1.5)

When all three are used the firmware is compressed, then encrypted, then signed (RFC 4108 §1).
The firmware octets are the eContent octets themselves (like id-data); decrypted and
decompressed layers are streamed (:func:`firmware_stream`) and never held in memory whole.
"""

from __future__ import annotations

import datetime as _dt
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from suitkit.cms import attributes as attrs
from suitkit.cms import crypto, der
from suitkit.cms.crypto import AlgorithmId, ContentCipher
from suitkit.cms.errors import CmsError
from suitkit.cms.model import (
    CommunityId,
    FirmwareMessageDigest,
    FirmwarePackageId,
    FirmwarePackageInfo,
    LegacyName,
    PackageAttributes,
    PreferredName,
)
from suitkit.cms.oids import (
    COMPRESSED_DATA_VERSION,
    ENCRYPTED_DATA_VERSION,
    ENVELOPED_DATA_VERSION_KEK,
    KEK_RECIPIENT_INFO_VERSION,
    AttributeType,
    CompressionAlgorithm,
    ContentEncryptionAlgorithm,
    ContentType,
    DigestAlgorithm,
    KeyWrapAlgorithm,
    LoadErrorCode,
    oid_name,
)
from suitkit.cms.signeddata import ParsedSignedData, Signer, build_signed_data, parse_signed_data

E = LoadErrorCode

#: eContentType values a firmware package may carry (RFC 4108 §2.1.2.2).
PACKAGE_ECONTENT_TYPES = frozenset(
    {ContentType.ENCRYPTED_DATA, ContentType.COMPRESSED_DATA, ContentType.FIRMWARE_PACKAGE}
)
#: Content types EncryptedContentInfo may carry (RFC 4108 §2.1.3.1).
ENCRYPTED_CONTENT_TYPES = frozenset({ContentType.COMPRESSED_DATA, ContentType.FIRMWARE_PACKAGE})


# --- Building ----------------------------------------------------------------------------------


@dataclass
class Encryption:
    """Encrypt the package (RFC 4108 §2.1.3) with a pre-distributed key named ``key_id``.

    ``algorithm`` defaults to AES-GCM of the key's size. With ``kek``/``kek_id`` the content key
    also travels wrapped in the wrapped-firmware-decryption-key unsigned attribute (RFC 4108
    §2.3.1: an EnvelopedData with one KEKRecipientInfo, AES key wrap).
    """

    key: bytes
    key_id: bytes
    algorithm: ContentEncryptionAlgorithm | None = None
    kek: bytes | None = None
    kek_id: bytes | None = None

    @property
    def resolved_algorithm(self) -> ContentEncryptionAlgorithm:
        if self.algorithm is not None:
            return self.algorithm
        return (
            ContentEncryptionAlgorithm.AES128_GCM
            if len(self.key) == 16
            else ContentEncryptionAlgorithm.AES256_GCM
        )


@dataclass
class PackageSpec:
    """Everything that goes into a firmware package besides the firmware and the signer."""

    package_id: FirmwarePackageId
    target_hardware: Sequence[str]
    community_ids: Sequence[CommunityId] | None = None
    package_info: FirmwarePackageInfo | None = None
    impl_crypto_algs: Sequence[str] | None = None
    impl_compress_algs: Sequence[str] | None = None
    compress: bool = False
    encryption: Encryption | None = None
    signing_time: _dt.datetime | None = field(default_factory=lambda: _dt.datetime.now(_dt.UTC))
    description: str | None = None
    fw_message_digest: DigestAlgorithm | None = DigestAlgorithm.SHA256
    extra_signed_attributes: Sequence[bytes] = ()


def compressed_data(content: bytes | memoryview, level: int = 9) -> bytes:
    """``CompressedData`` (RFC 3274 §1.1) around FirmwarePkgData, zlib (RFC 1950) compressed."""
    comp = zlib.compressobj(level)
    body = bytearray()
    for piece in crypto.rechunk([content]):
        body += comp.compress(piece)
    body += comp.flush()
    encap = der.sequence(
        der.encode_oid(ContentType.FIRMWARE_PACKAGE),
        der.tlv(0xA0, der.encode_octet_string(bytes(body))),
    )
    return der.sequence(
        der.encode_integer(COMPRESSED_DATA_VERSION),
        AlgorithmId(CompressionAlgorithm.ZLIB).encode(),
        encap,
    )


def encrypted_data(
    content: bytes | memoryview, inner_type: str, enc: Encryption
) -> tuple[bytes, AlgorithmId]:
    """``EncryptedData`` (RFC 5652 §8, RFC 4108 §2.1.3): version 0, no unprotectedAttrs."""
    alg, ciphertext = crypto.encrypt_content(enc.resolved_algorithm, enc.key, content)
    eci = der.sequence(der.encode_oid(inner_type), alg.encode(), der.tlv(0x80, ciphertext))
    return der.sequence(der.encode_integer(ENCRYPTED_DATA_VERSION), eci), alg


def wrapped_firmware_key(enc: Encryption, inner_type: str, alg: AlgorithmId) -> bytes:
    """The wrapped-firmware-decryption-key value (RFC 4108 §2.3.1): an EnvelopedData whose
    EncryptedContentInfo repeats the EncryptedData's content type and algorithm and has no
    encryptedContent."""
    assert enc.kek is not None and enc.kek_id is not None
    wrap_alg = KeyWrapAlgorithm.AES128_WRAP if len(enc.kek) == 16 else KeyWrapAlgorithm.AES256_WRAP
    kekri = der.tlv(
        0xA2,  # RecipientInfo.kekri [2] IMPLICIT KEKRecipientInfo
        der.encode_integer(KEK_RECIPIENT_INFO_VERSION)
        + der.sequence(der.encode_octet_string(enc.kek_id))
        + AlgorithmId(wrap_alg).encode()
        + der.encode_octet_string(crypto.wrap_key(wrap_alg, enc.kek, enc.key)),
    )
    eci = der.sequence(der.encode_oid(inner_type), alg.encode())
    return der.sequence(der.encode_integer(ENVELOPED_DATA_VERSION_KEK), der.set_of([kekri]), eci)


def build_package_chunks(
    firmware: bytes | memoryview, spec: PackageSpec, signer: Signer
) -> list[bytes | memoryview]:
    """The DER of a protected firmware package as chunks (the firmware itself is not copied when
    neither compression nor encryption is used)."""
    if (
        not spec.target_hardware
    ):  # RFC 4108 §2.2: target-hardware-module-identifiers MUST be present
        raise ValueError("a firmware package needs at least one target hardware module type")
    _check_name(spec.package_id)
    content: bytes | memoryview = firmware
    content_type = ContentType.FIRMWARE_PACKAGE
    if spec.compress:
        content, content_type = compressed_data(firmware), ContentType.COMPRESSED_DATA
    unsigned: list[bytes] = []
    enc = spec.encryption
    if enc is not None:
        enc_der, alg = encrypted_data(content, content_type, enc)
        if enc.kek is not None:
            unsigned.append(
                attrs.encode_attribute(
                    AttributeType.WRAPPED_FIRMWARE_KEY, wrapped_firmware_key(enc, content_type, alg)
                )
            )
        content, content_type = enc_der, ContentType.ENCRYPTED_DATA
    signed = [
        attrs.encode_attribute(
            AttributeType.FIRMWARE_PACKAGE_ID, attrs.encode_package_id(spec.package_id)
        ),
        attrs.encode_attribute(
            AttributeType.TARGET_HARDWARE_IDS, attrs.encode_oid_list(spec.target_hardware)
        ),
    ]
    if enc is not None:  # RFC 4108 §2.2: MUST when encrypted
        signed.append(
            attrs.encode_attribute(
                AttributeType.DECRYPT_KEY_ID, attrs.encode_decrypt_key_id(enc.key_id)
            )
        )
    if spec.impl_crypto_algs is not None:
        signed.append(
            attrs.encode_attribute(
                AttributeType.IMPL_CRYPTO_ALGS, attrs.encode_oid_list(spec.impl_crypto_algs)
            )
        )
    if spec.impl_compress_algs is not None:
        signed.append(
            attrs.encode_attribute(
                AttributeType.IMPL_COMPRESS_ALGS, attrs.encode_oid_list(spec.impl_compress_algs)
            )
        )
    if spec.community_ids:
        signed.append(
            attrs.encode_attribute(
                AttributeType.COMMUNITY_IDENTIFIERS, attrs.encode_community_ids(spec.community_ids)
            )
        )
    if spec.package_info is not None:
        if spec.package_info.dependencies == ():  # RFC 4108 §2.2.9: MUST NOT populate it empty
            raise ValueError("dependencies must be None, not empty, when the package has none")
        signed.append(
            attrs.encode_attribute(
                AttributeType.FIRMWARE_PACKAGE_INFO, attrs.encode_package_info(spec.package_info)
            )
        )
    if spec.fw_message_digest is not None:
        md = FirmwareMessageDigest(
            spec.fw_message_digest, crypto.digest_of(spec.fw_message_digest, firmware)
        )
        signed.append(
            attrs.encode_attribute(
                AttributeType.FW_PKG_MESSAGE_DIGEST, attrs.encode_fw_message_digest(md)
            )
        )
    if spec.signing_time is not None:
        signed.append(
            attrs.encode_attribute(
                AttributeType.SIGNING_TIME, attrs.encode_signing_time(spec.signing_time)
            )
        )
    if spec.description is not None:
        signed.append(
            attrs.encode_attribute(
                AttributeType.CONTENT_HINTS,
                attrs.encode_content_hints(spec.description, ContentType.FIRMWARE_PACKAGE),
            )
        )
    if signer.certificate is not None:  # RFC 4108 §2.2.13: SHOULD with a certificate
        signed.append(
            attrs.encode_attribute(
                AttributeType.SIGNING_CERTIFICATE,
                attrs.encode_signing_certificate(signer.certificate),
            )
        )
    signed.extend(spec.extra_signed_attributes)
    return build_signed_data(content, content_type, signer, signed, unsigned)


def build_package(firmware: bytes | memoryview, spec: PackageSpec, signer: Signer) -> bytes:
    """The DER of a protected firmware package (RFC 4108 §2)."""
    return b"".join(build_package_chunks(firmware, spec, signer))


def _check_name(pid: FirmwarePackageId) -> None:
    if isinstance(pid.name, PreferredName):
        if pid.name.version < 0 or (isinstance(pid.stale, int) and pid.stale < 0):
            raise ValueError("version numbers are non-negative (RFC 4108 §2.2.3)")
        if isinstance(pid.stale, bytes):
            raise ValueError("a preferred name takes a numeric stale version")
    elif isinstance(pid.name, LegacyName) and isinstance(pid.stale, int):
        raise ValueError("a legacy name takes a legacy (octet string) stale version")


# --- Opening a package -------------------------------------------------------------------------


@dataclass
class PackageView:
    """A parsed (not yet verified) firmware package: the SignedData and its decoded attributes."""

    sd: ParsedSignedData
    attributes: PackageAttributes
    wrapped_key: bytes | None

    @property
    def encrypted(self) -> bool:
        return self.sd.econtent_type == ContentType.ENCRYPTED_DATA

    @property
    def compressed(self) -> bool:
        return self.sd.econtent_type == ContentType.COMPRESSED_DATA


_REQUIRED = (AttributeType.FIRMWARE_PACKAGE_ID, AttributeType.TARGET_HARDWARE_IDS)


def open_package(
    data: bytes | bytearray | memoryview, *, allow_issuer_serial: bool = True
) -> PackageView:
    """Parse a firmware package and decode its RFC 4108 §2.2 signed attributes.

    Structural problems get the codes of RFC 4108 §4.1.3 in the order the layers are met:
    ``decodeFailure``, ``badContentInfo``, ``badSignedData``, ``badEncapContent``,
    ``missingContent``, ``badCertificate``, ``badSignerInfo``, ``badDigestAlgorithm``,
    ``badSignedAttrs`` (missing required attribute, duplicate, malformed or non-DER value) and
    ``badUnsignedAttrs`` (anything but one wrapped-firmware-decryption-key, §2.3).
    """
    sd = parse_signed_data(
        data, econtent_types=PACKAGE_ECONTENT_TYPES, allow_issuer_serial=allow_issuer_serial
    )
    signed = sd.signer.signed_attrs
    for oid in _REQUIRED:  # RFC 4108 §2.2: MUST include these four (two checked by the CMS layer)
        if oid not in signed:
            raise CmsError(
                E.BAD_SIGNED_ATTRS, f"signed attribute {oid_name(oid)} is missing (RFC 4108 §2.2)"
            )
    if (
        sd.econtent_type == ContentType.ENCRYPTED_DATA
        and AttributeType.DECRYPT_KEY_ID not in signed
    ):
        raise CmsError(
            E.BAD_SIGNED_ATTRS, "encrypted package without a decrypt-key-identifier (RFC 4108 §2.2)"
        )
    try:
        attributes = decode_package_attributes(sd)
    except attrs.AttributeError_ as exc:
        raise CmsError(E.BAD_SIGNED_ATTRS, str(exc)) from None
    wrapped = None
    unsigned = sd.signer.unsigned_attrs
    if unsigned is not None:  # RFC 4108 §2.3: absent, or one wrapped-firmware-decryption-key
        others = [oid for oid in unsigned if oid != AttributeType.WRAPPED_FIRMWARE_KEY]
        if others:
            raise CmsError(
                E.BAD_UNSIGNED_ATTRS,
                f"unsigned attribute {oid_name(others[0])} is not allowed (RFC 4108 §2.3)",
            )
        values = unsigned[AttributeType.WRAPPED_FIRMWARE_KEY].values
        if len(values) != 1:
            raise CmsError(
                E.BAD_UNSIGNED_ATTRS, "wrapped-firmware-decryption-key must have exactly one value"
            )
        wrapped = values[0]
    return PackageView(sd, attributes, wrapped)


def decode_package_attributes(sd: ParsedSignedData) -> PackageAttributes:
    """Decode the recognised signed attributes; unrecognised ones are ignored (RFC 4108
    §2.1.2.1) and listed in ``other``. Every recognised attribute must have one value (§2.2)."""
    signed = sd.signer.signed_attrs
    for oid, attr in signed.items():
        if oid in attrs.KNOWN_SIGNED_ATTRIBUTES and len(attr.values) != 1:
            raise attrs.AttributeError_(
                f"{oid_name(oid)} must have exactly one value (RFC 4108 §2.2)"
            )

    def get(oid: str) -> bytes | None:
        a = signed.get(oid)
        return a.value if a is not None else None

    def opt(oid: str, decode: Callable[[bytes], object]) -> object:
        value = get(oid)
        return decode(value) if value is not None else None

    pkg_id = attrs.decode_package_id(signed[AttributeType.FIRMWARE_PACKAGE_ID].value)
    target = attrs.decode_oid_list(
        signed[AttributeType.TARGET_HARDWARE_IDS].value, "target-hardware-module-identifiers"
    )
    hints = opt(AttributeType.CONTENT_HINTS, attrs.decode_content_hints)
    if hints is not None and getattr(hints, "content_type", None) != ContentType.FIRMWARE_PACKAGE:
        raise attrs.AttributeError_(
            "content-hints must name id-ct-firmwarePackage (RFC 4108 §2.2.12)"
        )
    return PackageAttributes(
        content_type=sd.content_type,
        message_digest=sd.message_digest,
        package_id=pkg_id,
        target_hardware=target,
        decrypt_key_id=opt(AttributeType.DECRYPT_KEY_ID, attrs.decode_decrypt_key_id),  # type: ignore[arg-type]
        impl_crypto_algs=opt(
            AttributeType.IMPL_CRYPTO_ALGS,
            lambda v: attrs.decode_oid_list(v, "implemented-crypto-algorithms"),
        ),  # type: ignore[arg-type]
        impl_compress_algs=opt(
            AttributeType.IMPL_COMPRESS_ALGS,
            lambda v: attrs.decode_oid_list(v, "implemented-compress-algorithms"),
        ),  # type: ignore[arg-type]
        community_ids=opt(AttributeType.COMMUNITY_IDENTIFIERS, attrs.decode_community_ids),  # type: ignore[arg-type]
        package_info=opt(AttributeType.FIRMWARE_PACKAGE_INFO, attrs.decode_package_info),  # type: ignore[arg-type]
        fw_message_digest=opt(AttributeType.FW_PKG_MESSAGE_DIGEST, attrs.decode_fw_message_digest),  # type: ignore[arg-type]
        signing_time=opt(AttributeType.SIGNING_TIME, attrs.decode_signing_time),  # type: ignore[arg-type]
        content_hints=hints,  # type: ignore[arg-type]
        signing_certificate_hashes=opt(
            AttributeType.SIGNING_CERTIFICATE, attrs.decode_signing_certificate
        ),  # type: ignore[arg-type]
        other=tuple(oid for oid in signed if oid not in attrs.KNOWN_SIGNED_ATTRIBUTES),
    )


# --- EncryptedData (RFC 4108 §2.1.3) -----------------------------------------------------------


@dataclass
class EncryptedLayer:
    """The parsed EncryptedData: what is inside, how it is encrypted, where the ciphertext is."""

    inner_type: str
    algorithm: AlgorithmId
    cipher: ContentCipher
    ciphertext: list[memoryview]


def _single_buffer(segments: list[memoryview]) -> memoryview:
    """One buffer for the eContent (copies only when it was a BER constructed OCTET STRING)."""
    if len(segments) == 1:
        return segments[0]
    return memoryview(b"".join(segments))


def parse_encrypted_data(sd: ParsedSignedData) -> EncryptedLayer:
    """EncryptedData with the RFC 4108 §2.1.3 profile; defects map to ``badEncryptedData``,
    ``unprotectedAttrsPresent``, ``badEncryptContent``, ``badEncryptAlgorithm`` and
    ``missingCiphertext`` (§4.1.3)."""
    buf = _single_buffer(sd.econtent)
    try:
        top = der.read_single(buf)
        der.expect(top, der.UNIVERSAL, der.SEQUENCE, True, "EncryptedData")
        parts = der.children(buf, top)
        if len(parts) < 2:
            raise der.DerError("EncryptedData: missing fields")
        der.expect(parts[0], der.UNIVERSAL, der.INTEGER, False, "EncryptedData.version")
        version = der.decode_integer(buf[parts[0].content_start : parts[0].content_end])
        der.expect(parts[1], der.UNIVERSAL, der.SEQUENCE, True, "EncryptedContentInfo")
        rest = parts[2:]
        if rest and not (len(rest) == 1 and rest[0].is_context(1) and rest[0].constructed):
            raise der.DerError("EncryptedData: unexpected fields")
    except der.DerError as exc:
        raise CmsError(E.BAD_ENCRYPTED_DATA, str(exc)) from None
    if rest:  # RFC 4108 §2.1.3: unprotectedAttrs MUST NOT be present
        raise CmsError(
            E.UNPROTECTED_ATTRS_PRESENT, "EncryptedData carries unprotectedAttrs (RFC 4108 §2.1.3)"
        )
    if version != ENCRYPTED_DATA_VERSION:  # RFC 4108 §2.1.3: MUST be 0
        raise CmsError(E.BAD_ENCRYPTED_DATA, f"EncryptedData version {version}, expected 0")
    try:
        eci = der.children(buf, parts[1])
        if not 2 <= len(eci) <= 3 or not eci[0].is_universal(der.OBJECT_IDENTIFIER):
            raise der.DerError("EncryptedContentInfo: malformed")
        inner_type = der.decode_oid(buf[eci[0].content_start : eci[0].content_end])
        if inner_type not in ENCRYPTED_CONTENT_TYPES:
            raise der.DerError(
                f"EncryptedContentInfo holds {oid_name(inner_type)} (RFC 4108 §2.1.3.1)"
            )
        alg_bytes = der.element_bytes(buf, eci[1])
        ct_tlv = eci[2] if len(eci) == 3 else None
        if ct_tlv is not None and not ct_tlv.is_context(0):
            raise der.DerError("EncryptedContentInfo: unexpected field")
    except der.DerError as exc:
        raise CmsError(E.BAD_ENCRYPT_CONTENT, str(exc)) from None
    try:
        alg = AlgorithmId.decode(alg_bytes)
    except der.DerError as exc:
        raise CmsError(E.BAD_ENCRYPT_ALGORITHM, f"contentEncryptionAlgorithm: {exc}") from None
    cipher = crypto.parse_content_encryption(alg)
    if ct_tlv is None:  # RFC 4108 §2.1.3.1: encryptedContent MUST be present
        raise CmsError(E.MISSING_CIPHERTEXT, "EncryptedContentInfo has no encryptedContent")
    try:
        if ct_tlv.constructed:
            segments = []
            for child in der.children(buf, ct_tlv):
                if not child.is_universal(der.OCTET_STRING):
                    raise der.DerError("encryptedContent: bad segment")
                segments.extend(der.octet_string_segments(buf, child))
        else:
            segments = [buf[ct_tlv.content_start : ct_tlv.content_end]]
    except der.DerError as exc:
        raise CmsError(E.BAD_ENCRYPT_CONTENT, str(exc)) from None
    return EncryptedLayer(inner_type, alg, cipher, segments)


def unwrap_firmware_key(
    wrapped: bytes, layer: EncryptedLayer, key_lookup: Callable[[bytes], bytes | None]
) -> bytes | None:
    """The content key from a wrapped-firmware-decryption-key attribute (RFC 4108 §2.3.1), or None
    when no KEKRecipientInfo names a key-encryption key the module has.

    Profile violations (unprotectedAttrs, encryptedContent present, content type or algorithm
    not matching the EncryptedData) are ``badUnsignedAttrs``; a key that does not unwrap is
    ``decryptFailure``.
    """
    buf = memoryview(wrapped)
    try:
        top = der.read_single(buf)
        der.expect(top, der.UNIVERSAL, der.SEQUENCE, True, "EnvelopedData")
        parts = der.children(buf, top)
        if len(parts) < 3:
            raise der.DerError("EnvelopedData: missing fields")
        idx = 1
        if parts[1].is_context(0):  # originatorInfo
            idx = 2
        if len(parts) != idx + 2:  # no unprotectedAttrs (RFC 4108 §2.3.1)
            raise der.DerError("EnvelopedData: unprotectedAttrs present or fields missing")
        der.expect(parts[idx], der.UNIVERSAL, der.SET, True, "recipientInfos")
        eci = der.children(buf, parts[idx + 1])
        if len(eci) != 2:  # encryptedContent MUST NOT be present (RFC 4108 §2.3.1)
            raise der.DerError("EnvelopedData: encryptedContent must be absent")
        inner_type = der.decode_oid(buf[eci[0].content_start : eci[0].content_end])
        alg = AlgorithmId.decode(der.element_bytes(buf, eci[1]))
        if inner_type != layer.inner_type or alg != layer.algorithm:
            raise der.DerError(
                "EnvelopedData does not describe the EncryptedData (RFC 4108 §2.3.1)"
            )
        recipients = der.children(buf, parts[idx])
    except der.DerError as exc:
        raise CmsError(E.BAD_UNSIGNED_ATTRS, f"wrapped-firmware-decryption-key: {exc}") from None
    for ri in recipients:
        if not ri.is_context(2):  # only KEKRecipientInfo is supported
            continue
        try:
            fields = der.children(buf, ri)
            kekid = der.children(buf, fields[1])
            kek_id = der.content_bytes(buf, kekid[0])
            wrap_alg = AlgorithmId.decode(der.element_bytes(buf, fields[2]))
            encrypted_key = der.content_bytes(buf, fields[3])
        except (der.DerError, IndexError) as exc:
            raise CmsError(E.BAD_UNSIGNED_ATTRS, f"KEKRecipientInfo: {exc}") from None
        kek = key_lookup(kek_id)
        if kek is None:
            continue
        try:
            kw = KeyWrapAlgorithm(wrap_alg.oid)
        except ValueError:
            raise CmsError(
                E.BAD_ENCRYPT_ALGORITHM, f"unsupported key wrap {oid_name(wrap_alg.oid)}"
            ) from None
        return crypto.unwrap_key(kw, kek, encrypted_key)
    return None


# --- CompressedData (RFC 4108 §2.1.4, RFC 3274) ------------------------------------------------


def _compressed_stream(chunks: Iterable[bytes | memoryview]) -> Iterator[bytes]:
    """Parse CompressedData from a stream and yield the decompressed firmware."""
    reader = der.ChunkReader(chunks)
    ends: list[int | None] = []

    def open_constructed(what: str, number: int, cls: int = der.UNIVERSAL) -> None:
        hdr = der.read_header(reader)
        if hdr.cls != cls or hdr.number != number or not hdr.constructed:
            raise der.DerError(f"{what}: unexpected element")
        ends.append(None if hdr.length is None else reader.pos + hdr.length)

    def close() -> None:
        end = ends.pop()
        if end is None:
            der.read_eoc(reader)
        elif reader.pos != end:
            raise der.DerError("element length does not match its content")

    def small(what: str, number: int) -> bytes:
        hdr = der.read_header(reader)
        if not hdr.is_universal(number):
            raise der.DerError(f"{what}: unexpected element")
        return der.read_element(reader, hdr)

    def at_end() -> bool:
        end = ends[-1]
        if end is not None:
            return reader.pos >= end
        # indefinite: peek for end-of-contents without consuming anything else
        return False

    try:
        open_constructed("CompressedData", der.SEQUENCE)
        version = der.decode_integer(_content_of(small("CompressedData.version", der.INTEGER)))
        alg_der = small("compressionAlgorithm", der.SEQUENCE)
        if version != COMPRESSED_DATA_VERSION:  # RFC 4108 §2.1.4: MUST be 0
            raise CmsError(E.BAD_ENCAP_CONTENT, f"CompressedData version {version}, expected 0")
        try:
            alg = AlgorithmId.decode(alg_der)
        except der.DerError as exc:
            raise CmsError(E.BAD_COMPRESS_ALGORITHM, f"compressionAlgorithm: {exc}") from None
        if alg.oid != CompressionAlgorithm.ZLIB or not alg.params_absent_or_null:
            raise CmsError(E.BAD_COMPRESS_ALGORITHM, f"unsupported compression {oid_name(alg.oid)}")
        open_constructed("encapContentInfo", der.SEQUENCE)
        etype = der.decode_oid(_content_of(small("eContentType", der.OBJECT_IDENTIFIER)))
        if etype != ContentType.FIRMWARE_PACKAGE:  # RFC 4108 §2.1.4.1
            raise CmsError(
                E.BAD_ENCAP_CONTENT, f"CompressedData holds {oid_name(etype)}, not FirmwarePkgData"
            )
        if at_end():
            raise CmsError(
                E.MISSING_COMPRESSED_CONTENT, "CompressedData has no eContent (RFC 4108 §2.1.4.1)"
            )
        hdr = der.read_header(reader)
        if hdr.is_eoc and ends[-1] is None:
            raise CmsError(
                E.MISSING_COMPRESSED_CONTENT, "CompressedData has no eContent (RFC 4108 §2.1.4.1)"
            )
        if not hdr.is_context(0) or not hdr.constructed:
            raise der.DerError("CompressedData eContent: unexpected element")
        ends.append(None if hdr.length is None else reader.pos + hdr.length)
        octets = der.read_header(reader)
        if not octets.is_universal(der.OCTET_STRING):
            raise der.DerError("CompressedData eContent is not an OCTET STRING")
        yield from _inflate(der.stream_octet_string(reader, octets))
        close()
        close()
        close()
        if not reader.at_eof():
            raise der.DerError("trailing octets after CompressedData")
    except der.DerError as exc:
        raise CmsError(E.BAD_ENCAP_CONTENT, f"CompressedData: {exc}") from None


def _content_of(element: bytes) -> memoryview:
    buf = memoryview(element)
    tlv = der.read_single(buf)
    if tlv.constructed:
        raise der.DerError("primitive element expected")
    return buf[tlv.content_start : tlv.content_end]


def _inflate(chunks: Iterable[memoryview]) -> Iterator[bytes]:
    """zlib (RFC 1950) decompression in bounded pieces; errors are ``decompressFailure``."""
    d = zlib.decompressobj()
    try:
        for piece in crypto.rechunk(chunks, 1 << 16):
            if d.eof:
                raise CmsError(E.DECOMPRESS_FAILURE, "data after the end of the zlib stream")
            data: bytes | memoryview = piece
            while data:
                out = d.decompress(data, crypto.CHUNK_SIZE)
                if out:
                    yield out
                data = d.unconsumed_tail
        out = d.flush()
        if out:
            yield out
    except zlib.error as exc:
        raise CmsError(E.DECOMPRESS_FAILURE, f"zlib: {exc}") from None
    if not d.eof or d.unused_data:
        raise CmsError(
            E.DECOMPRESS_FAILURE,
            "truncated zlib stream" if not d.eof else "data after the zlib stream",
        )


# --- Streams of firmware -----------------------------------------------------------------------


def _drain_for_decrypt_error(plain: Iterator[bytes], original: CmsError) -> CmsError:
    """An inner-layer failure after decryption is reported as ``decryptFailure`` when the
    ciphertext itself does not decrypt (wrong key, tag mismatch): drain the decryptor to know."""
    try:
        for _ in plain:
            pass
    except CmsError as exc:
        if exc.code is E.DECRYPT_FAILURE:
            return exc
    return original


def firmware_stream(
    view: PackageView, key: bytes | None = None, layer: EncryptedLayer | None = None
) -> Iterator[bytes | memoryview]:
    """Yield the firmware octets, removing encryption and compression on the fly."""
    sd = view.sd
    if sd.econtent_type == ContentType.FIRMWARE_PACKAGE:
        yield from sd.econtent
        return
    if sd.econtent_type == ContentType.COMPRESSED_DATA:
        yield from _compressed_stream(sd.econtent)
        return
    assert layer is not None and key is not None
    plain = crypto.decrypt_stream(layer.cipher, key, layer.ciphertext)
    if layer.inner_type == ContentType.FIRMWARE_PACKAGE:
        yield from plain
        return
    inner = _compressed_stream(plain)
    while True:
        try:
            chunk = next(inner)
        except StopIteration:
            return
        except CmsError as exc:
            raise _drain_for_decrypt_error(plain, exc) from None
        yield chunk
