"""Every reachable FirmwarePackageLoadErrorCode (RFC 4108 §4.1.3), each from the rule that
produces it. Each test also checks that a rejected package leaves the device untouched."""

from __future__ import annotations

import zlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from suitkit.cms import (
    CmsError,
    ContentType,
    Encryption,
    FirmwarePackageInfo,
    HardwareModules,
    InMemoryDevice,
    LoadErrorCode,
    PreferredName,
    Signer,
    TrustAnchor,
    build_package,
    crypto,
    der,
    load_package,
)
from suitkit.cms import attributes as attrs
from suitkit.cms.crypto import AlgorithmId
from suitkit.cms.model import FirmwareMessageDigest, InstalledPackage, SerialRange
from suitkit.cms.oids import (
    AttributeType,
    ContentEncryptionAlgorithm,
    DigestAlgorithm,
    SignatureAlgorithm,
)
from tests.cms.helpers import (
    COMMUNITY,
    HW,
    OTHER_HW,
    PKG,
    PKG_B,
    SERIAL,
    Pki,
    attr,
    compose,
    compressed_der,
    device,
    encrypted_der,
    firmware,
    make_cert,
    make_pki,
    new_key,
    package_attrs,
    spec,
)

C = LoadErrorCode
KEY = bytes(range(16))
FW = firmware(3000)


def reject(pkg: bytes, dev: InMemoryDevice, code: LoadErrorCode) -> CmsError:
    installed, stale = list(dev.installed), dict(dev.stale_versions)
    with pytest.raises(CmsError) as info:
        load_package(pkg, dev)
    assert info.value.code is code, info.value
    assert dev.writes_started == 0 and not dev.firmware  # nothing written (issue #4)
    assert dev.installed == installed and dev.stale_versions == stale
    return info.value


def key_device(**kw: object) -> tuple[object, InMemoryDevice]:
    """A raw P-256 key that is itself the trust anchor (signs directly, RFC 4108 §1.2.4)."""
    key = new_key("p256")
    return key, device(anchors=[TrustAnchor.from_public_key(key.public_key())], **kw)


# --- decoding (RFC 4108 §4.1.3: decodeFailure ... missingContent) ------------------------------


def test_decode_failure_when_input_is_not_ber() -> None:
    reject(b"\x30\x82\xff", device(), C.DECODE_FAILURE)
    reject(b"hello world", device(), C.DECODE_FAILURE)


def test_decode_failure_on_trailing_octets(pki: Pki) -> None:
    reject(build_package(FW, spec(), pki.signer) + b"\x00", device(pki), C.DECODE_FAILURE)


def test_bad_content_info_when_content_type_is_not_signed_data() -> None:
    key, dev = key_device()
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, ci_type=ContentType.DATA),
        dev,
        C.BAD_CONTENT_INFO,
    )


def test_bad_content_info_when_not_a_content_info() -> None:
    reject(der.sequence(der.encode_integer(1)), device(), C.BAD_CONTENT_INFO)


def test_bad_signed_data_when_version_is_not_3() -> None:  # RFC 4108 §2.1.2
    key, dev = key_device()
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key, sd_version=1), dev, C.BAD_SIGNED_DATA)


def test_bad_signed_data_with_two_digest_algorithms() -> None:  # RFC 4108 §2.1.2
    key, dev = key_device()
    algs = [
        AlgorithmId(DigestAlgorithm.SHA256).encode(),
        AlgorithmId(DigestAlgorithm.SHA384).encode(),
    ]
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key, digest_algs=algs), dev, C.BAD_SIGNED_DATA)


@pytest.mark.parametrize("count", [0, 2])
def test_bad_signed_data_unless_exactly_one_signer_info(count: int) -> None:  # RFC 4108 §2.1.2
    key, dev = key_device()
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, signer_infos=count), dev, C.BAD_SIGNED_DATA
    )


def test_bad_encap_content_for_an_econtent_type_outside_rfc4108() -> None:  # §2.1.2.2
    key, dev = key_device()
    reject(compose(FW, ContentType.DATA, key), dev, C.BAD_ENCAP_CONTENT)


def test_missing_content_when_econtent_is_absent() -> None:  # §4.1.3 missingContent
    key, dev = key_device()
    reject(compose(None, ContentType.FIRMWARE_PACKAGE, key), dev, C.MISSING_CONTENT)


def test_bad_certificate_for_a_malformed_certificate() -> None:
    key, dev = key_device()
    junk = der.sequence(der.encode_integer(5))
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key, certs=[junk]), dev, C.BAD_CERTIFICATE)


def test_bad_certificate_for_an_attribute_certificate(pki: Pki) -> None:  # §2.1.2: MUST NOT
    key, dev = key_device()
    v2_attr_cert = der.tlv(0xA2, der.encode_integer(1))
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, certs=[v2_attr_cert]), dev, C.BAD_CERTIFICATE
    )


def test_bad_signer_info_when_version_does_not_fit_the_sid() -> None:  # §2.1.2.1, RFC 5652 §5.3
    key, dev = key_device()
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key, si_version=1), dev, C.BAD_SIGNER_INFO)


def test_bad_signer_info_when_its_digest_differs_from_signed_data() -> None:  # §2.1.2.1
    key, dev = key_device()
    other = AlgorithmId(DigestAlgorithm.SHA384).encode()
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key, si_digest=other), dev, C.BAD_SIGNER_INFO)


@pytest.mark.parametrize(
    "missing", [AttributeType.FIRMWARE_PACKAGE_ID, AttributeType.TARGET_HARDWARE_IDS]
)
def test_bad_signed_attrs_when_a_required_attribute_is_missing(missing: str) -> None:  # §2.2
    key, dev = key_device()
    extra = [a for a in package_attrs() if der.encode_oid(missing) not in a]
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key, extra), dev, C.BAD_SIGNED_ATTRS)


def test_bad_signed_attrs_without_content_type() -> None:  # RFC 5652 §5.3
    key, dev = key_device()
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, omit_content_type=True),
        dev,
        C.BAD_SIGNED_ATTRS,
    )


def test_bad_signed_attrs_when_signed_attrs_are_absent() -> None:  # §2.1.2.1: REQUIRED
    key, dev = key_device()
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, no_signed_attrs=True),
        dev,
        C.BAD_SIGNED_ATTRS,
    )


def test_bad_signed_attrs_for_a_duplicate_attribute() -> None:  # §2.2: only one instance
    key, dev = key_device()
    extra = [
        *package_attrs(),
        attr(AttributeType.TARGET_HARDWARE_IDS, attrs.encode_oid_list([OTHER_HW])),
    ]
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key, extra), dev, C.BAD_SIGNED_ATTRS)


def test_bad_signed_attrs_for_two_attribute_values() -> None:  # §2.2: exactly one value
    key, dev = key_device()
    pid, _ = package_attrs()
    hw2 = attr(
        AttributeType.TARGET_HARDWARE_IDS,
        attrs.encode_oid_list([HW]),
        attrs.encode_oid_list([OTHER_HW]),
    )
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key, [pid, hw2]), dev, C.BAD_SIGNED_ATTRS)


def test_bad_signed_attrs_when_not_der_sorted() -> None:  # §2.1.2.1: MUST be DER
    key, dev = key_device()
    extra = list(reversed(package_attrs()))
    pkg = compose(FW, ContentType.FIRMWARE_PACKAGE, key, [*extra], sort=False)
    reject(pkg, dev, C.BAD_SIGNED_ATTRS)


def test_bad_signed_attrs_for_a_malformed_package_identifier() -> None:
    key, dev = key_device()
    bad = attr(AttributeType.FIRMWARE_PACKAGE_ID, der.sequence(der.encode_integer(-1)))
    extra = [bad, package_attrs()[1]]
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key, extra), dev, C.BAD_SIGNED_ATTRS)


def test_bad_signed_attrs_when_encrypted_without_decrypt_key_identifier() -> None:  # §2.2
    key, dev = key_device(keys={b"k": KEY})
    inner = encrypted_der(FW, ContentType.FIRMWARE_PACKAGE, KEY)
    reject(compose(inner, ContentType.ENCRYPTED_DATA, key), dev, C.BAD_SIGNED_ATTRS)


def test_bad_unsigned_attrs_for_anything_but_the_wrapped_key() -> None:  # §2.3
    key, dev = key_device()
    unsigned = [attr(AttributeType.SIGNING_TIME, attrs.encode_signing_time(crypto_now()))]
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, unsigned=unsigned), dev, C.BAD_UNSIGNED_ATTRS
    )


def crypto_now():  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime.now(dt.UTC)


# --- signer, algorithms, signature -------------------------------------------------------------


def test_no_trust_anchor_for_an_unknown_signer(pki: Pki, other_pki: Pki) -> None:
    reject(build_package(FW, spec(), pki.signer), device(other_pki), C.NO_TRUST_ANCHOR)


def test_no_trust_anchor_for_an_unknown_key_identifier() -> None:
    key, dev = key_device()
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, sid_key_id=b"nobody"), dev, C.NO_TRUST_ANCHOR
    )


def test_no_trust_anchor_for_an_expired_certificate(pki: Pki) -> None:
    import datetime as dt

    old = make_cert(
        "old signer",
        pki.leaf_key,
        pki.ca_cert,
        pki.ca_key,
        not_after=crypto_now() - dt.timedelta(days=1),
    )
    dev = device(pki, clock=crypto_now())
    reject(build_package(FW, spec(), Signer(pki.leaf_key, certificate=old)), dev, C.NO_TRUST_ANCHOR)


def test_not_authorized_when_the_anchor_is_not_a_firmware_signer(pki: Pki) -> None:  # §4.1.3
    dev = device(anchors=[TrustAnchor.from_certificate(pki.ca_cert, authorized=False)])
    reject(build_package(FW, spec(), pki.signer), dev, C.NOT_AUTHORIZED)


def test_not_authorized_when_the_signer_certificate_forbids_signatures(pki: Pki) -> None:
    from tests.cms.helpers import _ku

    cert = make_cert(
        "encipher only", pki.leaf_key, pki.ca_cert, pki.ca_key, key_usage=_ku(cert_sign=True)
    )
    reject(
        build_package(FW, spec(), Signer(pki.leaf_key, certificate=cert)),
        device(pki),
        C.NOT_AUTHORIZED,
    )


def test_bad_digest_algorithm_for_an_unknown_digest() -> None:
    key, dev = key_device()
    md5 = der.sequence(der.encode_oid("1.2.840.113549.2.5"), b"\x05\x00")
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, digest_algs=[md5], si_digest=md5),
        dev,
        C.BAD_DIGEST_ALGORITHM,
    )


def test_bad_digest_algorithm_for_ed25519_without_sha512() -> None:  # RFC 8419 §3.1
    key = new_key("ed25519")
    dev = device(anchors=[TrustAnchor.from_public_key(key.public_key())])
    # sign with the right construction, then relabel the digest as SHA-256
    pkg = compose(FW, ContentType.FIRMWARE_PACKAGE, key)
    sha512 = AlgorithmId(DigestAlgorithm.SHA512).encode()
    sha256 = AlgorithmId(DigestAlgorithm.SHA256).encode()
    reject(pkg.replace(sha512, sha256), dev, C.BAD_DIGEST_ALGORITHM)


def test_bad_signature_algorithm_for_an_unknown_algorithm() -> None:
    key, dev = key_device()
    sha256_rsa = AlgorithmId("1.2.840.113549.1.1.11", b"\x05\x00")
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, sig_alg=sha256_rsa),
        dev,
        C.BAD_SIGNATURE_ALGORITHM,
    )


def test_bad_signature_algorithm_when_it_does_not_fit_the_key() -> None:
    key, dev = key_device()
    reject(
        compose(
            FW, ContentType.FIRMWARE_PACKAGE, key, sig_alg=AlgorithmId(SignatureAlgorithm.ED25519)
        ),
        dev,
        C.BAD_SIGNATURE_ALGORITHM,
    )


def test_unsupported_key_size_for_a_small_rsa_key() -> None:
    key = rsa.generate_private_key(65537, 1024)
    dev = device(anchors=[TrustAnchor.from_public_key(key.public_key())])
    reject(compose(FW, ContentType.FIRMWARE_PACKAGE, key), dev, C.UNSUPPORTED_KEY_SIZE)


def test_unsupported_key_size_for_an_unsupported_curve() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    dev = device(anchors=[TrustAnchor.from_public_key(key.public_key())])
    p256 = new_key("p256")
    pkg = compose(
        FW, ContentType.FIRMWARE_PACKAGE, p256, sid_key_id=crypto.public_key_id(key.public_key())
    )
    reject(pkg, dev, C.UNSUPPORTED_KEY_SIZE)


def test_unsupported_parameters_for_ecdsa_with_parameters() -> None:  # RFC 5754 §3.3
    key, dev = key_device()
    alg = AlgorithmId(SignatureAlgorithm.ECDSA_WITH_SHA256, b"\x05\x00")
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, sig_alg=alg), dev, C.UNSUPPORTED_PARAMETERS
    )


def test_unsupported_parameters_for_rsa_pss_without_parameters() -> None:  # RFC 4056 §2
    key = new_key("rsa")
    dev = device(anchors=[TrustAnchor.from_public_key(key.public_key())])
    alg = AlgorithmId(SignatureAlgorithm.RSASSA_PSS)
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, sig_alg=alg), dev, C.UNSUPPORTED_PARAMETERS
    )


def test_unsupported_parameters_for_rsa_pss_with_sha1() -> None:
    key = new_key("rsa")
    dev = device(anchors=[TrustAnchor.from_public_key(key.public_key())])
    alg = AlgorithmId(SignatureAlgorithm.RSASSA_PSS, der.sequence())  # all defaults: SHA-1
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, sig_alg=alg), dev, C.UNSUPPORTED_PARAMETERS
    )


def test_signature_failure_for_a_flipped_signature_bit(pki: Pki) -> None:
    key, dev = key_device()
    good = compose(FW, ContentType.FIRMWARE_PACKAGE, key)
    sig = compose(
        FW, ContentType.FIRMWARE_PACKAGE, key, signature=b"\x30\x06\x02\x01\x01\x02\x01\x01"
    )
    assert good != sig
    reject(sig, dev, C.SIGNATURE_FAILURE)


def test_signature_failure_when_the_firmware_was_modified(pki: Pki) -> None:
    pkg = bytearray(build_package(FW, spec(), pki.signer))
    pkg[pkg.index(FW[:64]) + 10] ^= 1
    reject(bytes(pkg), device(pki), C.SIGNATURE_FAILURE)


def test_signature_failure_for_a_wrong_message_digest() -> None:
    key, dev = key_device()
    reject(
        compose(FW, ContentType.FIRMWARE_PACKAGE, key, message_digest=b"\x00" * 32),
        dev,
        C.SIGNATURE_FAILURE,
    )


def test_content_type_mismatch_between_attribute_and_econtent_type() -> None:  # §2.2.1
    key, dev = key_device()
    pkg = compose(
        compressed_der(FW),
        ContentType.COMPRESSED_DATA,
        key,
        content_type_attr=ContentType.FIRMWARE_PACKAGE,
    )
    reject(pkg, dev, C.CONTENT_TYPE_MISMATCH)


# --- authorisation of this module --------------------------------------------------------------


def test_wrong_hardware_when_type_not_listed(pki: Pki) -> None:  # §2.2.4
    reject(
        build_package(FW, spec(target_hardware=[OTHER_HW]), pki.signer),
        device(pki),
        C.WRONG_HARDWARE,
    )


def test_not_in_community_when_no_listed_community_matches(pki: Pki) -> None:  # §2.2.8
    s = spec(
        community_ids=[COMMUNITY, HardwareModules(HW, (SerialRange(b"\x01\x00", b"\x01\xff"),))]
    )
    reject(
        build_package(FW, s, pki.signer), device(pki, community_ids={"1.2.3"}), C.NOT_IN_COMMUNITY
    )


def test_not_in_community_without_a_serial_number(pki: Pki) -> None:  # §2.2.8
    s = spec(community_ids=[HardwareModules(HW, (SERIAL,))])
    reject(build_package(FW, s, pki.signer), device(pki, hw_serial=None), C.NOT_IN_COMMUNITY)


def test_stale_package_at_or_below_the_stored_stale_version(pki: Pki) -> None:  # §1.2.3.2
    dev = device(pki, stale_versions={PKG: 7})
    reject(build_package(FW, spec(version=7), pki.signer), dev, C.STALE_PACKAGE)
    reject(build_package(FW, spec(version=3), pki.signer), dev, C.STALE_PACKAGE)


def test_unsupported_package_type(pki: Pki) -> None:  # §2.2.9
    s = spec(package_info=FirmwarePackageInfo(9))
    reject(
        build_package(FW, s, pki.signer),
        device(pki, package_types={1, 2}),
        C.UNSUPPORTED_PACKAGE_TYPE,
    )


def test_missing_dependency_when_the_package_is_not_loaded(pki: Pki) -> None:  # §1.3, §2.2.9
    s = spec(package_info=FirmwarePackageInfo(None, (PreferredName(PKG_B, 2),)))
    reject(build_package(FW, s, pki.signer), device(pki), C.MISSING_DEPENDENCY)


def test_wrong_dependency_version_when_the_loaded_one_is_older(pki: Pki) -> None:  # §2.2.9
    s = spec(package_info=FirmwarePackageInfo(None, (PreferredName(PKG_B, 5),)))
    dev = device(pki, installed=[InstalledPackage(PreferredName(PKG_B, 4))])
    reject(build_package(FW, s, pki.signer), dev, C.WRONG_DEPENDENCY_VERSION)


def test_breaks_dependency_of_an_installed_package(pki: Pki) -> None:  # §1.3, §2.2.9
    needs_v7 = InstalledPackage(PreferredName(PKG_B, 1), None, (PreferredName(PKG, 7),))
    dev = device(pki, installed=[InstalledPackage(PreferredName(PKG, 8)), needs_v7])
    reject(build_package(FW, spec(version=6), pki.signer), dev, C.BREAKS_DEPENDENCY)


# --- EncryptedData -----------------------------------------------------------------------------


def enc_pkg(key: object, inner: bytes) -> bytes:
    return compose(inner, ContentType.ENCRYPTED_DATA, key, package_attrs(decrypt_key_id=b"k"))  # type: ignore[arg-type]


def test_bad_encrypted_data_when_version_is_not_0() -> None:  # §2.1.3
    key, dev = key_device(keys={b"k": KEY})
    reject(
        enc_pkg(key, encrypted_der(FW, ContentType.FIRMWARE_PACKAGE, KEY, version=2)),
        dev,
        C.BAD_ENCRYPTED_DATA,
    )


def test_bad_encrypted_data_when_not_a_sequence() -> None:
    key, dev = key_device(keys={b"k": KEY})
    reject(enc_pkg(key, der.encode_integer(0)), dev, C.BAD_ENCRYPTED_DATA)


def test_unprotected_attrs_present_in_encrypted_data() -> None:  # §2.1.3: MUST NOT
    key, dev = key_device(keys={b"k": KEY})
    inner = encrypted_der(FW, ContentType.FIRMWARE_PACKAGE, KEY, unprotected=True)
    reject(enc_pkg(key, inner), dev, C.UNPROTECTED_ATTRS_PRESENT)


def test_bad_encrypt_content_for_an_unexpected_content_type() -> None:  # §2.1.3.1
    key, dev = key_device(keys={b"k": KEY})
    reject(enc_pkg(key, encrypted_der(FW, ContentType.DATA, KEY)), dev, C.BAD_ENCRYPT_CONTENT)


def test_bad_encrypt_algorithm_for_an_unknown_cipher() -> None:
    key, dev = key_device(keys={b"k": KEY})
    des = AlgorithmId("1.3.14.3.2.7", der.encode_octet_string(b"\x00" * 8)).encode()
    inner = encrypted_der(FW, ContentType.FIRMWARE_PACKAGE, KEY, alg_override=des)
    reject(enc_pkg(key, inner), dev, C.BAD_ENCRYPT_ALGORITHM)


def test_bad_encrypt_algorithm_for_a_short_cbc_iv() -> None:
    key, dev = key_device(keys={b"k": KEY})
    bad = AlgorithmId(
        ContentEncryptionAlgorithm.AES128_CBC, der.encode_octet_string(b"\x00" * 8)
    ).encode()
    inner = encrypted_der(FW, ContentType.FIRMWARE_PACKAGE, KEY, alg_override=bad)
    reject(enc_pkg(key, inner), dev, C.BAD_ENCRYPT_ALGORITHM)


def test_missing_ciphertext() -> None:  # §2.1.3.1: encryptedContent MUST be present
    key, dev = key_device(keys={b"k": KEY})
    inner = encrypted_der(FW, ContentType.FIRMWARE_PACKAGE, KEY, omit_ciphertext=True)
    reject(enc_pkg(key, inner), dev, C.MISSING_CIPHERTEXT)


def test_no_decrypt_key_when_the_module_lacks_it(pki: Pki) -> None:  # §4.1.3 noDecryptKey
    pkg = build_package(FW, spec(encryption=Encryption(KEY, b"k")), pki.signer)
    reject(pkg, device(pki), C.NO_DECRYPT_KEY)


def test_no_decrypt_key_when_the_wrapped_key_names_an_unknown_kek(pki: Pki) -> None:
    enc = Encryption(KEY, b"k", kek=bytes(16), kek_id=b"kek")
    reject(build_package(FW, spec(encryption=enc), pki.signer), device(pki), C.NO_DECRYPT_KEY)


@pytest.mark.parametrize(
    "algorithm", [ContentEncryptionAlgorithm.AES128_GCM, ContentEncryptionAlgorithm.AES128_CBC]
)
def test_decrypt_failure_with_the_wrong_key(
    pki: Pki, algorithm: ContentEncryptionAlgorithm
) -> None:
    pkg = build_package(FW, spec(encryption=Encryption(KEY, b"k", algorithm)), pki.signer)
    reject(pkg, device(pki, keys={b"k": bytes(16)}), C.DECRYPT_FAILURE)


def test_decrypt_failure_when_the_wrapped_key_does_not_unwrap(pki: Pki) -> None:
    enc = Encryption(KEY, b"k", kek=bytes(16), kek_id=b"kek")
    dev = device(pki, keys={b"kek": b"\x01" * 16})
    reject(build_package(FW, spec(encryption=enc), pki.signer), dev, C.DECRYPT_FAILURE)


def test_decrypt_failure_for_a_truncated_gcm_ciphertext() -> None:
    key, dev = key_device(keys={b"k": KEY})
    inner = encrypted_der(b"", ContentType.FIRMWARE_PACKAGE, KEY)
    # drop the tag: the ciphertext is now shorter than its ICV
    buf = memoryview(inner)
    top = der.read_single(buf)
    eci = der.children(buf, der.children(buf, top)[1])
    short = der.sequence(
        der.encode_integer(0),
        der.sequence(
            der.element_bytes(buf, eci[0]),
            der.element_bytes(buf, eci[1]),
            der.tlv(0x80, b"\x00" * 4),
        ),
    )
    reject(enc_pkg(key, short), dev, C.DECRYPT_FAILURE)


def test_bad_unsigned_attrs_for_a_wrapped_key_with_encrypted_content(pki: Pki) -> None:  # §2.3.1
    key, dev = key_device(keys={b"k": KEY})
    inner = encrypted_der(FW, ContentType.FIRMWARE_PACKAGE, KEY)
    env = der.sequence(
        der.encode_integer(2),
        der.set_of([der.tlv(0xA2, der.encode_integer(4))]),
        der.sequence(
            der.encode_oid(ContentType.FIRMWARE_PACKAGE),
            AlgorithmId("1.2.3").encode(),
            der.tlv(0x80, b"x"),
        ),
    )
    unsigned = [attr(AttributeType.WRAPPED_FIRMWARE_KEY, env)]
    pkg = compose(
        inner,
        ContentType.ENCRYPTED_DATA,
        key,
        package_attrs(decrypt_key_id=b"zz"),
        unsigned=unsigned,
    )
    reject(pkg, dev, C.BAD_UNSIGNED_ATTRS)


# --- CompressedData ----------------------------------------------------------------------------


def comp_pkg(key: object, inner: bytes) -> bytes:
    return compose(inner, ContentType.COMPRESSED_DATA, key)  # type: ignore[arg-type]


def test_bad_compress_algorithm() -> None:  # §4.1.3 badCompressAlgorithm
    key, dev = key_device()
    reject(comp_pkg(key, compressed_der(FW, alg_oid="1.2.3.4")), dev, C.BAD_COMPRESS_ALGORITHM)


def test_bad_encap_content_for_compressed_data_version() -> None:  # §2.1.4: version MUST be 0
    key, dev = key_device()
    reject(comp_pkg(key, compressed_der(FW, version=1)), dev, C.BAD_ENCAP_CONTENT)


def test_bad_encap_content_inside_compressed_data() -> None:  # §2.1.4.1
    key, dev = key_device()
    reject(comp_pkg(key, compressed_der(FW, etype=ContentType.DATA)), dev, C.BAD_ENCAP_CONTENT)


def test_missing_compressed_content() -> None:  # §4.1.3 missingCompressedContent
    key, dev = key_device()
    reject(comp_pkg(key, compressed_der(FW, omit_content=True)), dev, C.MISSING_COMPRESSED_CONTENT)


def test_decompress_failure_for_a_corrupted_stream() -> None:
    key, dev = key_device()
    raw = bytearray(zlib.compress(FW))
    raw[len(raw) // 2] ^= 0xFF
    reject(comp_pkg(key, compressed_der(FW, raw=bytes(raw))), dev, C.DECOMPRESS_FAILURE)


def test_decompress_failure_for_a_truncated_stream() -> None:
    key, dev = key_device()
    raw = zlib.compress(FW)[:-10]
    reject(comp_pkg(key, compressed_der(FW, raw=raw)), dev, C.DECOMPRESS_FAILURE)


def test_decompress_failure_inside_a_correctly_decrypted_layer() -> None:
    key, dev = key_device(keys={b"k": KEY})
    raw = zlib.compress(FW)[:-10]
    inner = encrypted_der(compressed_der(FW, raw=raw), ContentType.COMPRESSED_DATA, KEY)
    reject(enc_pkg(key, inner), dev, C.DECOMPRESS_FAILURE)


def test_decrypt_failure_wins_over_garbage_decompression(pki: Pki) -> None:
    pkg = build_package(FW, spec(compress=True, encryption=Encryption(KEY, b"k")), pki.signer)
    reject(pkg, device(pki, keys={b"k": bytes(16)}), C.DECRYPT_FAILURE)


# --- memory, firmware, other -------------------------------------------------------------------


def test_insufficient_memory_before_anything_is_written(pki: Pki) -> None:
    reject(
        build_package(FW, spec(), pki.signer),
        device(pki, memory=len(FW) - 1),
        C.INSUFFICIENT_MEMORY,
    )


def test_insufficient_memory_for_a_compression_bomb(pki: Pki) -> None:
    bomb = bytes(8 << 20)
    pkg = build_package(bomb, spec(compress=True), pki.signer)
    assert len(pkg) < 64 << 10
    reject(pkg, device(pki, memory=1 << 20), C.INSUFFICIENT_MEMORY)


def test_bad_firmware_when_the_firmware_digest_attribute_does_not_match(
    pki: Pki,
) -> None:  # §2.2.10
    wrong = FirmwareMessageDigest(DigestAlgorithm.SHA256, bytes(32))
    extra = [attr(AttributeType.FW_PKG_MESSAGE_DIGEST, attrs.encode_fw_message_digest(wrong))]
    s = spec(fw_message_digest=None, extra_signed_attributes=extra)
    reject(build_package(FW, s, pki.signer), device(pki), C.BAD_FIRMWARE)


def test_other_error_when_the_device_cannot_write(pki: Pki) -> None:
    class FailingDevice(InMemoryDevice):
        def begin_firmware(self, name, size):  # type: ignore[no-untyped-def]
            writer = super().begin_firmware(name, size)

            def write(data: object) -> None:
                raise OSError("flash worn out")

            writer.write = write  # type: ignore[method-assign]
            return writer

    dev = FailingDevice(HW, SERIAL, anchors=[pki.anchor])
    with pytest.raises(CmsError) as info:
        load_package(build_package(FW, spec(), pki.signer), dev)
    assert info.value.code is C.OTHER_ERROR and info.value.vendor_code is not None
    assert not dev.firmware and not dev.installed


def test_every_error_code_except_other_error_has_a_test_here() -> None:
    import re
    from pathlib import Path

    text = Path(__file__).read_text()
    used = set(re.findall(r"C\.([A-Z_]+)", text))
    assert {c.name for c in LoadErrorCode} <= used


def test_error_names_the_package_once_attributes_were_read(pki: Pki) -> None:
    e = reject(
        build_package(FW, spec(target_hardware=[OTHER_HW]), pki.signer),
        device(pki),
        C.WRONG_HARDWARE,
    )
    assert e.package_name == PreferredName(PKG, 7)
    assert "wrongHardware" in str(e)


def test_p384_ed25519_and_rsa_signers_load() -> None:
    for kind in ("p384", "ed25519", "rsa"):
        p = make_pki(kind)
        dev = device(p)
        load_package(build_package(FW, spec(), p.signer), dev)
        assert bytes(dev.firmware[PKG]) == FW
