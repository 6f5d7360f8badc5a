"""Successful loads and the device state they change: stale versions (RFC 4108 §1.2.3.1-2),
dependencies (§1.3, §2.2.9), communities (§2.2.8), trust anchors (§1.2.4), keys (§2.2.5, §2.3.1),
BER input (§1.4) and memory use while streaming."""

from __future__ import annotations

import tracemalloc

import pytest

from suitkit.cms import (
    CmsError,
    Encryption,
    FirmwarePackageId,
    FirmwarePackageInfo,
    HardwareModules,
    LegacyName,
    LoadErrorCode,
    LoadPolicy,
    PackageSpec,
    PreferredName,
    SerialRange,
    Signer,
    TrustAnchor,
    build_package,
    der,
    load_package,
)
from suitkit.cms.crypto import HssLmsPrivateKey
from suitkit.cms.model import AllSerials, InstalledPackage
from suitkit.cms.oids import ContentEncryptionAlgorithm, ContentType
from tests.cms.helpers import (
    COMMUNITY,
    HW,
    PKG,
    PKG_B,
    SERIAL,
    Pki,
    cert_der,
    compose,
    device,
    firmware,
    make_cert,
    new_key,
    package_attrs,
    spec,
)

C = LoadErrorCode
KEY = bytes(range(16))


def load(pki: Pki, dev: object, **kw: object) -> object:
    s = spec(**kw)  # type: ignore[arg-type]
    return load_package(build_package(firmware(256), s, pki.signer), dev)  # type: ignore[arg-type]


def test_loads_the_firmware_and_records_the_package(pki: Pki) -> None:
    fw = firmware(10000)
    dev = device(pki)
    result = load_package(build_package(fw, spec(), pki.signer), dev)
    assert bytes(dev.firmware[PKG]) == fw
    assert dev.installed == [InstalledPackage(PreferredName(PKG, 7))]
    assert result.firmware_size == len(fw)
    assert result.trust_anchor.key_id == pki.anchor.key_id
    assert not result.warnings


def test_preferred_stale_version_only_ratchets_up(pki: Pki) -> None:  # RFC 4108 §1.2.3.2
    dev = device(pki)
    load(pki, dev, version=7, stale=5)
    assert dev.stale_versions[PKG] == 5
    load(pki, dev, version=8, stale=3)  # a lower stale number does not lower the stored one
    assert dev.stale_versions[PKG] == 5
    load(pki, dev, version=6)  # rollback above the stale number is allowed
    with pytest.raises(CmsError) as info:
        load(pki, dev, version=5)
    assert info.value.code is C.STALE_PACKAGE
    load(pki, dev, version=9, stale=8)
    assert dev.stale_versions[PKG] == 8
    with pytest.raises(CmsError):
        load(pki, dev, version=8)


def test_stale_numbers_are_kept_per_package_oid(pki: Pki) -> None:
    dev = device(pki, stale_versions={PKG_B: 100})
    load(pki, dev, version=1)  # PKG is not stale
    assert PKG not in dev.stale_versions


def test_reloading_the_same_version_is_allowed(pki: Pki) -> None:
    dev = device(pki)
    load(pki, dev, version=7, stale=6)
    load(pki, dev, version=7, stale=6)


def legacy_spec(name: bytes, stale: bytes | None = None) -> PackageSpec:
    return PackageSpec(FirmwarePackageId(LegacyName(name), stale), target_hardware=[HW])


def test_legacy_stale_names_form_a_list(pki: Pki) -> None:  # RFC 4108 §1.2.3.1
    dev = device(pki)
    load_package(build_package(firmware(), legacy_spec(b"R3", b"R2"), pki.signer), dev)
    load_package(build_package(firmware(), legacy_spec(b"R5", b"R4"), pki.signer), dev)
    assert dev.stale_legacy == [b"R2", b"R4"]
    for stale in (b"R2", b"R4"):
        with pytest.raises(CmsError) as info:
            load_package(build_package(firmware(), legacy_spec(stale), pki.signer), dev)
        assert info.value.code is C.STALE_PACKAGE
    load_package(build_package(firmware(), legacy_spec(b"R1"), pki.signer), dev)  # exact match only


def test_legacy_stale_order_can_come_from_the_module(pki: Pki) -> None:
    dev = device(pki, stale_legacy=[b"R2"])
    policy = LoadPolicy(legacy_not_newer=lambda name, stale: name <= stale)
    with pytest.raises(CmsError) as info:
        load_package(build_package(firmware(), legacy_spec(b"R1"), pki.signer), dev, policy)
    assert info.value.code is C.STALE_PACKAGE


def test_dependencies_satisfied_by_loaded_packages(pki: Pki) -> None:  # RFC 4108 §2.2.9
    dev = device(
        pki,
        installed=[
            InstalledPackage(PreferredName(PKG_B, 5)),
            InstalledPackage(LegacyName(b"boot")),
        ],
    )
    deps = (PreferredName(PKG_B, 4), LegacyName(b"boot"))
    load(pki, dev, package_info=FirmwarePackageInfo(2, deps))
    assert InstalledPackage(PreferredName(PKG, 7), 2, deps) in dev.installed


def test_loading_replaces_the_same_package_oid(pki: Pki) -> None:
    dev = device(pki)
    load(pki, dev, version=7)
    load(pki, dev, version=9)
    assert dev.installed == [InstalledPackage(PreferredName(PKG, 9))]


def test_warns_when_an_earlier_version_replaces_a_later_one(pki: Pki) -> None:  # §1.2.3 SHOULD
    dev = device(pki)
    load(pki, dev, version=9)
    result = load(pki, dev, version=8)
    assert result.warnings and "replaces the later version 9" in result.warnings[0]  # type: ignore[attr-defined]


def test_upgrade_keeping_dependants_satisfied_is_allowed(pki: Pki) -> None:
    needs = InstalledPackage(PreferredName(PKG_B, 1), None, (PreferredName(PKG, 7),))
    dev = device(pki, installed=[InstalledPackage(PreferredName(PKG, 7)), needs])
    load(pki, dev, version=8)


@pytest.mark.parametrize(
    "community",
    [
        COMMUNITY,
        HardwareModules(HW, (SERIAL,)),
        HardwareModules(HW, (SerialRange(b"\x00\x00\x00\x00", b"\x00\xff\xff\xff"),)),
        HardwareModules(HW, (AllSerials(),)),
    ],
)
def test_community_membership(pki: Pki, community: object) -> None:  # RFC 4108 §2.2.8
    dev = device(pki, community_ids={COMMUNITY})
    load(pki, dev, community_ids=[community])


def test_signer_key_as_trust_anchor_without_certificate() -> None:  # RFC 4108 §1.2.4
    key = new_key("ed25519")
    dev = device(anchors=[TrustAnchor.from_public_key(key.public_key())])
    load_package(build_package(firmware(), spec(), Signer(key)), dev)


def test_hss_lms_signed_package_loads() -> None:  # RFC 8708
    key = HssLmsPrivateKey.generate()
    dev = device(anchors=[TrustAnchor.from_public_key(key.public_key())])
    load_package(build_package(firmware(), spec(), Signer(key)), dev)


def test_certification_path_through_an_intermediate(pki: Pki) -> None:
    inter_key = new_key("p256")
    inter = make_cert("intermediate", inter_key, pki.ca_cert, pki.ca_key, ca=True)
    leaf_key = new_key("p384")
    leaf = make_cert("signer", leaf_key, inter, inter_key)
    signer = Signer(leaf_key, certificate=leaf, extra_certificates=[inter])
    load_package(build_package(firmware(), spec(), signer), device(pki))


def test_intermediate_that_is_not_a_ca_breaks_the_path(pki: Pki) -> None:
    inter_key = new_key("p256")
    inter = make_cert("not a CA", inter_key, pki.ca_cert, pki.ca_key, ca=False)
    leaf_key = new_key("p256")
    leaf = make_cert("signer", leaf_key, inter, inter_key)
    signer = Signer(leaf_key, certificate=leaf, extra_certificates=[inter])
    with pytest.raises(CmsError) as info:
        load_package(build_package(firmware(), spec(), signer), device(pki))
    assert info.value.code is C.NO_TRUST_ANCHOR


def test_issuer_and_serial_number_signer(pki: Pki) -> None:  # RFC 4108 §4.1.3 noTrustAnchor text
    ias = der.sequence(
        pki.leaf_cert.issuer.public_bytes(), der.encode_integer(pki.leaf_cert.serial_number)
    )
    pkg = compose(
        firmware(),
        ContentType.FIRMWARE_PACKAGE,
        pki.leaf_key,
        issuer_serial=ias,
        si_version=1,
        certs=[cert_der(pki.leaf_cert)],
    )
    load_package(pkg, device(pki))
    with pytest.raises(CmsError) as info:
        load_package(pkg, device(pki), LoadPolicy(allow_issuer_serial=False))
    assert info.value.code is C.BAD_SIGNER_INFO


@pytest.mark.parametrize("algorithm", list(ContentEncryptionAlgorithm))
@pytest.mark.parametrize("compress", [False, True])
def test_encrypted_packages_load_with_the_named_key(
    pki: Pki, algorithm: ContentEncryptionAlgorithm, compress: bool
) -> None:
    key = bytes(range(algorithm.key_size))
    fw = firmware(50000)
    dev = device(pki, keys={b"k1": key})
    pkg = build_package(
        fw, spec(encryption=Encryption(key, b"k1", algorithm), compress=compress), pki.signer
    )
    result = load_package(pkg, dev)
    assert bytes(dev.firmware[PKG]) == fw
    assert result.decrypt_key_id == b"k1" and result.encrypted and result.compressed == compress


def test_wrapped_firmware_key_unwraps_with_the_modules_kek(pki: Pki) -> None:  # RFC 4108 §2.3.1
    fw = firmware()
    enc = Encryption(KEY, b"content", kek=bytes(range(32)), kek_id=b"kek-1")
    dev = device(pki, keys={b"kek-1": bytes(range(32))})
    load_package(build_package(fw, spec(encryption=enc), pki.signer), dev)
    assert bytes(dev.firmware[PKG]) == fw


def test_unrecognized_signed_attributes_are_ignored(pki: Pki) -> None:  # §2.1.2.1
    from tests.cms.helpers import attr

    extra = [*package_attrs(), attr("1.3.6.1.4.1.99999.77", der.encode_octet_string(b"hello"))]
    key = new_key("p256")
    dev = device(anchors=[TrustAnchor.from_public_key(key.public_key())])
    result = load_package(compose(firmware(), ContentType.FIRMWARE_PACKAGE, key, extra), dev)
    assert result.attributes.other == ("1.3.6.1.4.1.99999.77",)


def _ber(pkg: bytes) -> bytes:
    """Re-encode ContentInfo/SignedData/encapContentInfo with indefinite lengths and the eContent
    as a constructed OCTET STRING of 1000-octet segments (what streaming encoders produce)."""
    buf = memoryview(pkg)
    ci = der.read_single(buf)
    oid, wrap = der.children(buf, ci)
    sd = der.children(buf, wrap)[0]
    fields = der.children(buf, sd)
    encap = fields[2]
    etype, ewrap = der.children(buf, encap)
    content = der.content_bytes(buf, der.children(buf, ewrap)[0])
    segments = b"".join(
        der.encode_octet_string(content[i : i + 1000]) for i in range(0, len(content), 1000)
    )
    econtent = b"\xa0\x80" + b"\x24\x80" + segments + b"\x00\x00" + b"\x00\x00"
    new_encap = b"\x30\x80" + der.element_bytes(buf, etype) + econtent + b"\x00\x00"
    rest = b"".join(der.element_bytes(buf, f) for f in fields[3:])
    new_sd = (
        b"\x30\x80"
        + der.element_bytes(buf, fields[0])
        + der.element_bytes(buf, fields[1])
        + new_encap
        + rest
        + b"\x00\x00"
    )
    return b"\x30\x80" + der.element_bytes(buf, oid) + b"\xa0\x80" + new_sd + b"\x00\x00\x00\x00"


@pytest.mark.parametrize("kw", [{}, {"compress": True}, {"encryption": Encryption(KEY, b"k")}])
def test_ber_indefinite_lengths_and_segmented_econtent_are_accepted(
    pki: Pki, kw: dict[str, object]
) -> None:
    fw = firmware(5000)
    ber = _ber(build_package(fw, spec(**kw), pki.signer))  # type: ignore[arg-type]
    dev = device(pki, keys={b"k": KEY})
    load_package(ber, dev)
    assert bytes(dev.firmware[PKG]) == fw


@pytest.mark.parametrize(
    ("kw", "limit"),
    [({}, 1.15), ({"compress": True}, 1.3), ({"encryption": Encryption(KEY, b"k")}, 1.3)],
)
def test_streaming_load_holds_at_most_two_copies_of_the_firmware(
    pki: Pki, kw: dict[str, object], limit: float
) -> None:
    size = 16 << 20
    fw = bytes(size) if kw.get("compress") else firmware(size)
    pkg = build_package(fw, spec(**kw), pki.signer)  # type: ignore[arg-type]
    del fw
    dev = device(pki, keys={b"k": KEY})
    tracemalloc.start()
    try:
        load_package(pkg, dev)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the package (one copy) was allocated before tracing; the device's image is the second
    assert peak < limit * size, f"peak {peak / size:.2f} x firmware size"
    assert len(dev.firmware[PKG]) == size


def test_nothing_is_written_when_verification_fails_late(pki: Pki) -> None:
    """A GCM tag mismatch is only known after all the ciphertext: still nothing is written."""
    pkg = bytearray(
        build_package(firmware(100000), spec(encryption=Encryption(KEY, b"k")), pki.signer)
    )
    dev = device(pki, keys={b"k": bytes(16)})
    with pytest.raises(CmsError) as info:
        load_package(bytes(pkg), dev)
    assert info.value.code is C.DECRYPT_FAILURE
    assert dev.writes_started == 0


def test_loads_from_an_mmap_of_the_package_file(pki: Pki, tmp_path: object) -> None:
    import mmap
    from pathlib import Path

    fw = firmware(200_000)
    path = Path(str(tmp_path)) / "pkg.der"
    path.write_bytes(build_package(fw, spec(), pki.signer))
    dev = device(pki)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        load_package(mm, dev)
    assert bytes(dev.firmware[PKG]) == fw
