"""Building firmware packages: the nesting and fields of RFC 4108 §2, checked with an independent
decoder (pyasn1-modules' RFC 5652 / RFC 4108 / RFC 3274 types)."""

from __future__ import annotations

import zlib

import pytest
from pyasn1.codec.der import decoder, encoder
from pyasn1_modules import rfc3274, rfc4108, rfc5652

from suitkit.cms import (
    ContentEncryptionAlgorithm,
    ContentType,
    Encryption,
    FirmwarePackageId,
    FirmwarePackageInfo,
    HardwareModules,
    LegacyName,
    PreferredName,
    SerialRange,
    Signer,
    build_package,
    open_package,
)
from suitkit.cms import attributes as attrs
from suitkit.cms.crypto import HssLmsPrivateKey
from suitkit.cms.model import AllSerials
from suitkit.cms.oids import AttributeType, DigestAlgorithm, SignatureAlgorithm
from tests.cms.helpers import COMMUNITY, HW, OTHER_HW, PKG, Pki, firmware, make_pki, new_key, spec

KEY16 = bytes(range(16))
KEY32 = bytes(range(32))


def _signed_data(der_bytes: bytes) -> rfc5652.SignedData:
    ci, rest = decoder.decode(der_bytes, asn1Spec=rfc5652.ContentInfo())
    assert not rest
    assert ci["contentType"] == rfc5652.id_signedData  # RFC 4108 §2.1.1
    sd, rest = decoder.decode(ci["content"], asn1Spec=rfc5652.SignedData())
    assert not rest
    return sd


def _attrs(sd: rfc5652.SignedData) -> dict[str, bytes]:
    out = {}
    for a in sd["signerInfos"][0]["signedAttrs"]:
        assert len(a["attrValues"]) == 1  # RFC 4108 §2.2: exactly one AttributeValue
        out[str(a["attrType"])] = encoder.encode(a["attrValues"][0])
    return out


@pytest.mark.parametrize(
    ("compress", "encrypt", "econtent_type"),
    [
        (False, False, ContentType.FIRMWARE_PACKAGE),
        (True, False, ContentType.COMPRESSED_DATA),
        (False, True, ContentType.ENCRYPTED_DATA),
        (True, True, ContentType.ENCRYPTED_DATA),
    ],
)
def test_nesting_follows_rfc4108_section2(
    pki: Pki, compress: bool, encrypt: bool, econtent_type: str
) -> None:
    fw = firmware(5000)
    enc = Encryption(KEY16, b"key-1") if encrypt else None
    pkg = build_package(fw, spec(compress=compress, encryption=enc), pki.signer)
    sd = _signed_data(pkg)
    assert int(sd["version"]) == 3  # §2.1.2
    assert len(sd["digestAlgorithms"]) == 1  # §2.1.2
    assert len(sd["signerInfos"]) == 1  # §2.1.2
    si = sd["signerInfos"][0]
    assert int(si["version"]) == 3  # §2.1.2.1
    assert si["sid"].getName() == "subjectKeyIdentifier"
    assert si["digestAlgorithm"] == sd["digestAlgorithms"][0]
    assert str(sd["encapContentInfo"]["eContentType"]) == econtent_type
    econtent = bytes(sd["encapContentInfo"]["eContent"])
    assert not si["unsignedAttrs"].isValue
    signed = _attrs(sd)
    assert (
        decoder.decode(signed[AttributeType.CONTENT_TYPE])[0]
        == decoder.decode(encoder.encode(sd["encapContentInfo"]["eContentType"]))[0]
    )  # §2.2.1
    inner = econtent
    inner_type = econtent_type
    if encrypt:
        ed, _ = decoder.decode(econtent, asn1Spec=rfc5652.EncryptedData())
        assert int(ed["version"]) == 0  # §2.1.3
        assert not ed["unprotectedAttrs"].isValue  # §2.1.3
        eci = ed["encryptedContentInfo"]
        inner_type = str(eci["contentType"])
        assert inner_type == (
            ContentType.COMPRESSED_DATA if compress else ContentType.FIRMWARE_PACKAGE
        )
        assert eci["encryptedContent"].isValue  # §2.1.3.1
        assert attrs.decode_decrypt_key_id(signed[AttributeType.DECRYPT_KEY_ID]) == b"key-1"  # §2.2
        from suitkit.cms import crypto
        from suitkit.cms.crypto import AlgorithmId

        cipher = crypto.parse_content_encryption(
            AlgorithmId.decode(encoder.encode(eci["contentEncryptionAlgorithm"]))
        )
        inner = b"".join(
            crypto.decrypt_stream(cipher, KEY16, [memoryview(bytes(eci["encryptedContent"]))])
        )
    else:
        assert AttributeType.DECRYPT_KEY_ID not in signed
    if compress:
        assert inner_type == ContentType.COMPRESSED_DATA
        cd, _ = decoder.decode(inner, asn1Spec=rfc3274.CompressedData())
        assert int(cd["version"]) == 0  # §2.1.4
        assert cd["compressionAlgorithm"]["algorithm"] == rfc3274.id_alg_zlibCompress
        assert cd["encapContentInfo"]["eContentType"] == rfc4108.id_ct_firmwarePackage  # §2.1.4.1
        inner = zlib.decompress(bytes(cd["encapContentInfo"]["eContent"]))
    assert inner == fw  # §2.1.5: FirmwarePkgData octets are the firmware


def test_signed_attributes_include_the_four_required_and_the_recommended_ones(pki: Pki) -> None:
    pkg = build_package(firmware(), spec(stale=5, description="sensor firmware"), pki.signer)
    signed = _attrs(_signed_data(pkg))
    for oid in (  # RFC 4108 §2.2: MUST
        AttributeType.CONTENT_TYPE,
        AttributeType.MESSAGE_DIGEST,
        AttributeType.FIRMWARE_PACKAGE_ID,
        AttributeType.TARGET_HARDWARE_IDS,
    ):
        assert oid in signed
    for oid in (  # RFC 4108 §2.2: SHOULD
        AttributeType.FW_PKG_MESSAGE_DIGEST,
        AttributeType.SIGNING_TIME,
        AttributeType.CONTENT_HINTS,
        AttributeType.SIGNING_CERTIFICATE,
    ):
        assert oid in signed
    pid = attrs.decode_package_id(signed[AttributeType.FIRMWARE_PACKAGE_ID])
    assert pid == FirmwarePackageId(PreferredName(PKG, 7), 5)
    assert attrs.decode_oid_list(signed[AttributeType.TARGET_HARDWARE_IDS], "t") == (HW,)
    hints = attrs.decode_content_hints(signed[AttributeType.CONTENT_HINTS])
    assert hints.content_type == ContentType.FIRMWARE_PACKAGE  # §2.2.12
    assert hints.description == "sensor firmware"


def test_signed_attributes_are_der_sorted(pki: Pki) -> None:
    pkg = build_package(firmware(), spec(), pki.signer)
    si = _signed_data(pkg)["signerInfos"][0]
    encodings = [encoder.encode(a) for a in si["signedAttrs"]]
    assert encodings == sorted(encodings)  # X.690 §11.6 (DER SET OF), RFC 4108 §2.1.2.1


def test_firmware_package_identifier_matches_the_known_der_vector() -> None:
    value = attrs.encode_package_id(FirmwarePackageId(PreferredName("1.3.6.1.4.1.99999.1", 7), 5))
    assert value.hex() == "3013300e06092b06010401868d1f01020107020105"


def test_legacy_name_and_legacy_stale_version_round_trip() -> None:
    pid = FirmwarePackageId(LegacyName(b"R1234.C0(AJ11)"), b"R1233")
    assert attrs.decode_package_id(attrs.encode_package_id(pid)) == pid


def test_optional_attributes_round_trip(pki: Pki) -> None:
    communities = (
        COMMUNITY,
        HardwareModules(HW, (b"\x01", SerialRange(b"\x10", b"\x20"), AllSerials())),
    )
    info = FirmwarePackageInfo(3, (PreferredName("1.3.6.1.4.1.99999.9", 2), LegacyName(b"boot")))
    s = spec(
        community_ids=communities,
        package_info=info,
        impl_crypto_algs=[SignatureAlgorithm.ED25519],
        impl_compress_algs=["1.2.840.113549.1.9.16.3.8"],
        target_hardware=[HW, OTHER_HW],
    )
    view = open_package(build_package(firmware(), s, pki.signer))
    a = view.attributes
    assert a.community_ids == communities
    assert a.package_info == info
    assert a.impl_crypto_algs == (SignatureAlgorithm.ED25519,)
    assert a.impl_compress_algs == ("1.2.840.113549.1.9.16.3.8",)
    assert a.target_hardware == (HW, OTHER_HW)


@pytest.mark.parametrize(
    ("kind", "sig_alg", "digest"),
    [
        ("p256", SignatureAlgorithm.ECDSA_WITH_SHA256, DigestAlgorithm.SHA256),
        ("p384", SignatureAlgorithm.ECDSA_WITH_SHA384, DigestAlgorithm.SHA384),
        ("ed25519", SignatureAlgorithm.ED25519, DigestAlgorithm.SHA512),  # RFC 8419 §3.1
        ("rsa", SignatureAlgorithm.RSASSA_PSS, DigestAlgorithm.SHA256),  # RFC 4056
    ],
)
def test_signature_algorithms_and_their_digests(kind: str, sig_alg: str, digest: str) -> None:
    p = make_pki(kind)
    sd = _signed_data(build_package(firmware(), spec(), p.signer))
    si = sd["signerInfos"][0]
    assert str(si["signatureAlgorithm"]["algorithm"]) == sig_alg
    assert str(si["digestAlgorithm"]["algorithm"]) == digest
    assert not si["digestAlgorithm"]["parameters"].isValue  # RFC 5754 §2: absent
    if sig_alg == SignatureAlgorithm.RSASSA_PSS:  # RFC 4056 §2: parameters present
        from pyasn1_modules import rfc4055

        params, _ = decoder.decode(
            si["signatureAlgorithm"]["parameters"], asn1Spec=rfc4055.RSASSA_PSS_params()
        )
        assert str(params["hashAlgorithm"]["algorithm"]) == DigestAlgorithm.SHA256
        assert int(params["saltLength"]) == 32
    else:
        assert not si["signatureAlgorithm"]["parameters"].isValue


def test_hss_lms_signer_identified_by_subject_key_identifier() -> None:
    key = HssLmsPrivateKey.generate()
    sd = _signed_data(build_package(firmware(), spec(), Signer(key)))
    si = sd["signerInfos"][0]
    assert str(si["signatureAlgorithm"]["algorithm"]) == SignatureAlgorithm.HSS_LMS  # RFC 8708 §3
    assert not si["signatureAlgorithm"]["parameters"].isValue
    assert not sd["certificates"].isValue  # a trust anchor signs directly: no certificates
    from suitkit.cms.crypto import public_key_id

    assert bytes(si["sid"]["subjectKeyIdentifier"]) == public_key_id(key.public_key())


def test_signer_certificate_is_included_with_its_subject_key_identifier(pki: Pki) -> None:
    sd = _signed_data(build_package(firmware(), spec(), pki.signer))
    assert len(sd["certificates"]) == 1
    from suitkit.cms.crypto import certificate_key_id

    assert bytes(sd["signerInfos"][0]["sid"]["subjectKeyIdentifier"]) == certificate_key_id(
        pki.leaf_cert
    )


def test_signer_without_certificate_omits_certificates() -> None:
    key = new_key("p256")
    sd = _signed_data(build_package(firmware(), spec(), Signer(key)))
    assert not sd["certificates"].isValue  # RFC 4108 §2.1.2: SHOULD be omitted


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (KEY16, ContentEncryptionAlgorithm.AES128_CBC),
        (KEY32, ContentEncryptionAlgorithm.AES256_CBC),
        (KEY16, ContentEncryptionAlgorithm.AES128_GCM),
        (KEY32, ContentEncryptionAlgorithm.AES256_GCM),
    ],
)
def test_content_encryption_algorithms(
    pki: Pki, key: bytes, algorithm: ContentEncryptionAlgorithm
) -> None:
    pkg = build_package(firmware(), spec(encryption=Encryption(key, b"k", algorithm)), pki.signer)
    ed, _ = decoder.decode(
        bytes(_signed_data(pkg)["encapContentInfo"]["eContent"]), asn1Spec=rfc5652.EncryptedData()
    )
    assert str(ed["encryptedContentInfo"]["contentEncryptionAlgorithm"]["algorithm"]) == algorithm


def test_wrapped_firmware_key_is_an_unsigned_enveloped_data(pki: Pki) -> None:
    enc = Encryption(KEY16, b"content-key", kek=KEY32, kek_id=b"kek-1")
    sd = _signed_data(build_package(firmware(), spec(encryption=enc), pki.signer))
    unsigned = sd["signerInfos"][0]["unsignedAttrs"]
    assert len(unsigned) == 1 and str(unsigned[0]["attrType"]) == AttributeType.WRAPPED_FIRMWARE_KEY
    env, _ = decoder.decode(unsigned[0]["attrValues"][0], asn1Spec=rfc5652.EnvelopedData())
    assert not env["unprotectedAttrs"].isValue  # RFC 4108 §2.3.1
    assert not env["encryptedContentInfo"]["encryptedContent"].isValue  # RFC 4108 §2.3.1
    ed, _ = decoder.decode(
        bytes(sd["encapContentInfo"]["eContent"]), asn1Spec=rfc5652.EncryptedData()
    )
    assert (
        env["encryptedContentInfo"]["contentEncryptionAlgorithm"]
        == ed["encryptedContentInfo"]["contentEncryptionAlgorithm"]
    )
    assert env["recipientInfos"][0].getName() == "kekri"


def test_builder_refuses_a_package_without_target_hardware(pki: Pki) -> None:
    with pytest.raises(ValueError, match="target hardware"):
        build_package(firmware(), spec(target_hardware=[]), pki.signer)


def test_builder_refuses_an_empty_dependency_list(pki: Pki) -> None:
    with pytest.raises(ValueError, match="dependencies"):
        build_package(firmware(), spec(package_info=FirmwarePackageInfo(1, ())), pki.signer)


def test_builder_refuses_mixed_name_and_stale_forms(pki: Pki) -> None:
    with pytest.raises(ValueError):
        build_package(firmware(), spec(stale=b"old"), pki.signer)
