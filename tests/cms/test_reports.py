"""Load receipts (RFC 4108 §3) and load error reports (RFC 4108 §4): produced by a load, DER,
signed or unsigned, parsed and verified back."""

from __future__ import annotations

import datetime as dt

import pytest
from pyasn1.codec.der import decoder
from pyasn1_modules import rfc4108, rfc5652

from suitkit.cms import (
    CmsError,
    Encryption,
    LoadErrorCode,
    LoadErrorReport,
    LoadReceipt,
    PreferredName,
    Signer,
    TrustAnchor,
    build_package,
    decode_report,
    encode_report,
    process_package,
)
from suitkit.cms.model import FirmwareMessageDigest, InstalledPackage, LegacyName
from suitkit.cms.oids import AttributeType, ContentType, DigestAlgorithm
from suitkit.cms.reports import FirmwareConfig
from tests.cms.helpers import (
    HW,
    OTHER_HW,
    PKG,
    PKG_B,
    SERIAL,
    Pki,
    device,
    firmware,
    make_pki,
    spec,
)

C = LoadErrorCode
KEY = bytes(range(16))


@pytest.fixture(scope="module")
def module_pki() -> Pki:
    """The hardware module's own key and certificate (RFC 4108 §5)."""
    return make_pki("p256")


def test_successful_load_gives_an_unsigned_receipt(pki: Pki) -> None:
    dev = device(pki)
    out = process_package(build_package(firmware(), spec(), pki.signer), dev)
    assert out.ok and out.report is not None
    ci, _ = decoder.decode(out.report, asn1Spec=rfc5652.ContentInfo())
    assert ci["contentType"] == rfc4108.id_ct_firmwareLoadReceipt  # RFC 4108 §3.1.1 (unsigned)
    receipt, _ = decoder.decode(ci["content"], asn1Spec=rfc4108.FirmwarePackageLoadReceipt())
    assert int(receipt["version"]) == 1  # §3.1.3: the DEFAULT v1
    assert str(receipt["hwType"]) == HW and bytes(receipt["hwSerialNum"]) == SERIAL
    assert bytes(receipt["trustAnchorKeyID"]) == pki.anchor.key_id  # SHOULD be present
    assert not receipt["decryptKeyID"].isValue  # MUST NOT unless decrypted
    parsed = decode_report(out.report)
    assert parsed.report == LoadReceipt(HW, SERIAL, PreferredName(PKG, 7), pki.anchor.key_id, None)
    assert not parsed.signed


def test_receipt_carries_the_decrypt_key_id_after_decryption(pki: Pki) -> None:  # §3.1.3
    dev = device(pki, keys={b"k9": KEY})
    out = process_package(
        build_package(firmware(), spec(encryption=Encryption(KEY, b"k9")), pki.signer), dev
    )
    report = decode_report(out.report or b"").report
    assert isinstance(report, LoadReceipt) and report.decrypt_key_id == b"k9"


def test_signed_receipt_verifies_with_the_module_certificate(pki: Pki, module_pki: Pki) -> None:
    fw = firmware()
    clock = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    dev = device(pki, clock=clock)
    out = process_package(
        build_package(fw, spec(), pki.signer), dev, report_signer=module_pki.signer
    )
    assert out.report is not None
    ci, _ = decoder.decode(out.report, asn1Spec=rfc5652.ContentInfo())
    assert ci["contentType"] == rfc5652.id_signedData  # §3.1.1 (signed)
    sd, _ = decoder.decode(ci["content"], asn1Spec=rfc5652.SignedData())
    assert int(sd["version"]) == 3 and len(sd["signerInfos"]) == 1  # §3.1.2
    assert sd["encapContentInfo"]["eContentType"] == rfc4108.id_ct_firmwareLoadReceipt
    si = sd["signerInfos"][0]
    assert not si["unsignedAttrs"].isValue  # §3.1.2.1: MUST NOT
    types = {str(a["attrType"]) for a in si["signedAttrs"]}
    assert {
        AttributeType.CONTENT_TYPE,
        AttributeType.MESSAGE_DIGEST,
        AttributeType.SIGNING_TIME,
    } <= types
    parsed = decode_report(out.report, [TrustAnchor.from_certificate(module_pki.leaf_cert)])
    assert parsed.signed and parsed.verified
    assert parsed.signing_time == clock
    import hashlib

    assert parsed.fw_message_digest == FirmwareMessageDigest(
        DigestAlgorithm.SHA256, hashlib.sha256(fw).digest()
    )


def test_signed_report_from_another_module_does_not_verify(pki: Pki, module_pki: Pki) -> None:
    out = process_package(
        build_package(firmware(), spec(), pki.signer), device(pki), report_signer=module_pki.signer
    )
    with pytest.raises(CmsError) as info:
        decode_report(out.report or b"", [pki.anchor])
    assert info.value.code is C.NO_TRUST_ANCHOR


def test_tampered_signed_receipt_fails_its_signature(pki: Pki, module_pki: Pki) -> None:
    out = process_package(
        build_package(firmware(), spec(), pki.signer), device(pki), report_signer=module_pki.signer
    )
    report = bytearray(out.report or b"")
    report[report.index(SERIAL)] ^= 1
    with pytest.raises(CmsError) as info:
        decode_report(bytes(report), [TrustAnchor.from_certificate(module_pki.leaf_cert)])
    assert info.value.code is C.SIGNATURE_FAILURE


def test_failed_load_gives_an_error_report_with_code_name_and_config(pki: Pki) -> None:  # §4.1.3
    installed = [InstalledPackage(PreferredName(PKG_B, 3), 2)]
    dev = device(pki, installed=installed)
    out = process_package(
        build_package(firmware(), spec(target_hardware=[OTHER_HW]), pki.signer), dev
    )
    assert not out.ok and out.error is not None and out.error.code is C.WRONG_HARDWARE
    ci, _ = decoder.decode(out.report or b"", asn1Spec=rfc5652.ContentInfo())
    assert ci["contentType"] == rfc4108.id_ct_firmwareLoadError  # §4.1.1 (unsigned)
    err, _ = decoder.decode(ci["content"], asn1Spec=rfc4108.FirmwarePackageLoadError())
    assert int(err["errorCode"]) == 27  # wrongHardware
    parsed = decode_report(out.report or b"")
    assert parsed.report == LoadErrorReport(
        HW,
        SERIAL,
        C.WRONG_HARDWARE,
        None,
        PreferredName(PKG, 7),
        (FirmwareConfig(PreferredName(PKG_B, 3), 2),),
    )


def test_error_report_for_undecodable_input_has_no_package_name(pki: Pki, module_pki: Pki) -> None:
    out = process_package(b"garbage", device(pki), report_signer=module_pki.signer)
    parsed = decode_report(out.report or b"", [TrustAnchor.from_certificate(module_pki.leaf_cert)])
    assert isinstance(parsed.report, LoadErrorReport)
    assert parsed.report.error_code is C.DECODE_FAILURE and parsed.report.package_name is None


def test_signed_error_report_binds_the_package_digest_attribute(pki: Pki, module_pki: Pki) -> None:
    pkg = build_package(firmware(), spec(target_hardware=[OTHER_HW]), pki.signer)
    out = process_package(pkg, device(pki), report_signer=module_pki.signer)
    parsed = decode_report(out.report or b"", [TrustAnchor.from_certificate(module_pki.leaf_cert)])
    assert parsed.fw_message_digest is not None


def test_other_error_requires_a_vendor_code() -> None:  # §4.1.3
    with pytest.raises(ValueError):
        encode_report(LoadErrorReport(HW, SERIAL, C.OTHER_ERROR))
    der_ = encode_report(LoadErrorReport(HW, SERIAL, C.OTHER_ERROR, 7))
    assert decode_report(der_).report == LoadErrorReport(HW, SERIAL, C.OTHER_ERROR, 7)


def test_legacy_name_round_trips_in_reports() -> None:
    r = LoadReceipt(HW, SERIAL, LegacyName(b"R1234"), b"ta", b"dk")
    assert decode_report(encode_report(r)).report == r


def test_no_report_without_a_serial_number(pki: Pki) -> None:  # §3: receipts need a serial
    out = process_package(
        build_package(firmware(), spec(), pki.signer), device(pki, hw_serial=None)
    )
    assert out.ok and out.report is None


def test_report_with_unknown_version_is_rejected() -> None:
    from pyasn1.codec.der import encoder
    from pyasn1.type import univ

    from suitkit.cms import der

    r = rfc4108.FirmwarePackageLoadReceipt()
    r["version"] = 2
    r["hwType"] = univ.ObjectIdentifier(HW)
    r["hwSerialNum"] = SERIAL
    r["fwPkgName"]["legacy"] = b"x"
    ci = der.sequence(
        der.encode_oid(ContentType.FIRMWARE_LOAD_RECEIPT), der.tlv(0xA0, encoder.encode(r))
    )
    with pytest.raises(CmsError):
        decode_report(ci)


def test_package_is_not_a_report(pki: Pki) -> None:
    with pytest.raises(CmsError) as info:
        decode_report(build_package(firmware(), spec(), pki.signer))
    assert info.value.code is C.BAD_ENCAP_CONTENT


def test_signed_report_with_key_identifier_only(pki: Pki) -> None:
    from tests.cms.helpers import new_key

    key = new_key("ed25519")
    out = process_package(
        build_package(firmware(), spec(), pki.signer), device(pki), report_signer=Signer(key)
    )
    parsed = decode_report(out.report or b"", [TrustAnchor.from_public_key(key.public_key())])
    assert parsed.verified
