"""Interoperability with the OpenSSL command line (``openssl cms``), both directions."""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from suitkit.cms import (
    CmsError,
    LoadErrorCode,
    TrustAnchor,
    build_package,
    der,
    load_package,
    open_package,
    process_package,
    verify_signed_data,
)
from suitkit.cms.oids import AttributeType, ContentType
from suitkit.cms.reports import LoadErrorReport, decode_report
from tests.cms.helpers import Pki, device, firmware, make_pki, spec

pytestmark = [
    pytest.mark.openssl,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line"),
]


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run(["openssl", *map(str, args)], capture_output=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r


def openssl_verify(
    pkg: Path, ca_file: Path, *, out: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """`openssl cms -verify -inform DER -binary -in PKG -CAfile CA [-out OUT]`: issue #4's check."""
    extra: tuple[str | Path, ...] = ("-out", out) if out is not None else ()
    return openssl(
        "cms", "-verify", "-inform", "DER", "-binary", "-in", pkg, "-CAfile", ca_file, *extra,
        check=check,
    )


def write_pki(p: Pki, tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca_cert", "leaf_cert", "leaf_key")}
    for name, path in paths.items():
        path.write_bytes(p.pem(name))
    return paths


_ED25519_CMS: dict[str, bool] = {}


def skip_unless_openssl_cms_does(kind: str, tmp_path: Path) -> None:
    """OpenSSL's CMS cannot sign or verify with Ed25519 (openssl/openssl#11915, #32248): probe."""
    if kind != "ed25519":
        return
    if "ok" not in _ED25519_CMS:
        p = make_pki("ed25519")
        paths = write_pki(p, tmp_path)
        r = subprocess.run(
            [
                "openssl",
                "cms",
                "-sign",
                "-binary",
                "-md",
                "sha512",
                "-outform",
                "DER",
                "-signer",
                str(paths["leaf_cert"]),
                "-inkey",
                str(paths["leaf_key"]),
            ],
            input=b"probe",
            capture_output=True,
            timeout=60,
        )
        _ED25519_CMS["ok"] = r.returncode == 0
    if not _ED25519_CMS["ok"]:
        pytest.skip("this openssl cannot do Ed25519 in CMS (openssl/openssl#11915, #32248)")


def _has_zlib(binary: str) -> bool:
    r = subprocess.run(
        [binary, "cms", "-compress", "-outform", "DER"],
        input=b"x",
        capture_output=True,
        timeout=60,
    )
    return r.returncode == 0


def openssl_with_zlib() -> str | None:
    """An `openssl` that can `cms -uncompress`: the system's if it has zlib (Debian's has not),
    else the one `.ci/openssl-zlib` builds from Debian's source (or $SUITKIT_OPENSSL_ZLIB)."""
    cache = Path(os.environ.get("SUITKIT_CACHE", Path.home() / ".cache" / "suitkit"))
    candidates = [
        os.environ.get("SUITKIT_OPENSSL_ZLIB"),
        shutil.which("openssl"),
        str(cache / "openssl-zlib" / "openssl"),
    ]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK) and _has_zlib(c):
            return c
    return None


@pytest.mark.parametrize("kind", ["p256", "p384", "ed25519", "rsa"])
def test_openssl_verifies_a_suitkit_package_and_returns_the_firmware(
    tmp_path: Path, kind: str
) -> None:
    skip_unless_openssl_cms_does(kind, tmp_path)
    p = make_pki(kind)
    paths = write_pki(p, tmp_path)
    fw = firmware(100_000)
    pkg = tmp_path / "pkg.der"
    pkg.write_bytes(build_package(fw, spec(description="interop"), p.signer))
    out = tmp_path / "out.bin"
    r = openssl_verify(pkg, paths["ca_cert"], out=out)
    assert b"Verification successful" in r.stderr
    assert out.read_bytes() == fw


def test_openssl_rejects_a_tampered_suitkit_package(tmp_path: Path, pki: Pki) -> None:
    paths = write_pki(pki, tmp_path)
    fw = firmware(10_000)
    data = bytearray(build_package(fw, spec(), pki.signer))
    data[data.index(fw[:32]) + 5] ^= 1
    pkg = tmp_path / "pkg.der"
    pkg.write_bytes(bytes(data))
    r = openssl_verify(pkg, paths["ca_cert"], check=False)
    assert r.returncode != 0


def _compressed_content_info(tmp_path: Path, pki: Pki, fw: bytes) -> Path:
    paths = write_pki(pki, tmp_path)
    pkg = tmp_path / "pkg.der"
    pkg.write_bytes(build_package(fw, spec(compress=True), pki.signer))
    inner = tmp_path / "compressed.der"
    openssl_verify(pkg, paths["ca_cert"], out=inner)
    # the eContent is a CompressedData; `openssl cms -uncompress` reads a ContentInfo around it
    ci = tmp_path / "compressed-ci.der"
    ci.write_bytes(
        der.sequence(der.encode_oid(ContentType.COMPRESSED_DATA), der.tlv(0xA0, inner.read_bytes()))
    )
    return ci


def test_openssl_verifies_a_compressed_package_and_parses_its_compressed_data(
    tmp_path: Path, pki: Pki
) -> None:
    fw = firmware(50_000) + bytes(50_000)
    ci = _compressed_content_info(tmp_path, pki, fw)
    r = openssl("cms", "-cmsout", "-print", "-noout", "-inform", "DER", "-in", ci)
    text = r.stdout.decode()
    assert "compressedData" in text and "zlib compression" in text
    # what openssl -uncompress would do, with Python's zlib (RFC 1950 stream)
    buf = memoryview(ci.read_bytes())
    top = der.read_single(buf)
    cd = der.children(buf, der.children(buf, top)[1])[0]
    encap = der.children(buf, cd)[2]
    octets = der.children(buf, der.children(buf, encap)[1])[0]
    assert zlib.decompress(der.content_bytes(buf, octets)) == fw


OPENSSL_ZLIB = openssl_with_zlib()


@pytest.mark.skipif(
    OPENSSL_ZLIB is None,
    reason="no openssl with zlib: Debian's is built without it; run .ci/openssl-zlib to build one",
)
def test_openssl_uncompress_returns_the_firmware(tmp_path: Path, pki: Pki) -> None:
    """RFC 4108 §2.1.1 / RFC 3274: after `openssl cms -verify`, `openssl cms -uncompress`
    gives back the firmware from suitkit's CompressedData."""
    assert OPENSSL_ZLIB is not None
    fw = firmware(50_000) + bytes(50_000)
    ci = _compressed_content_info(tmp_path, pki, fw)
    out = tmp_path / "fw.out"
    r = subprocess.run(
        [OPENSSL_ZLIB, "cms", "-uncompress", "-inform", "DER", "-in", str(ci), "-out", str(out)],
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert out.read_bytes() == fw


def _openssl_signed(tmp_path: Path, p: Pki, fw: bytes, *extra: str) -> bytes:
    paths = write_pki(p, tmp_path)
    src = tmp_path / "fw.bin"
    src.write_bytes(fw)
    out = tmp_path / "openssl.der"
    openssl(
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-econtent_type",
        "1.2.840.113549.1.9.16.1.16",
        "-in",
        src,
        "-signer",
        paths["leaf_cert"],
        "-inkey",
        paths["leaf_key"],
        "-outform",
        "DER",
        "-out",
        out,
        *extra,
    )
    return out.read_bytes()


@pytest.mark.parametrize("extra", [(), ("-keyid",)], ids=["issuer-serial", "keyid"])
def test_openssl_signed_data_is_rejected_for_lacking_the_package_identifier(
    tmp_path: Path, pki: Pki, extra: tuple[str, ...]
) -> None:
    data = _openssl_signed(tmp_path, pki, firmware(), *extra)
    with pytest.raises(CmsError) as info:
        open_package(data)
    assert info.value.code is LoadErrorCode.BAD_SIGNED_ATTRS  # RFC 4108 §2.2: MUST include it
    assert "firmware-package-identifier" in info.value.message
    dev = device(pki)
    out = process_package(data, dev)
    assert out.error is not None and out.error.code is LoadErrorCode.BAD_SIGNED_ATTRS
    report = decode_report(out.report or b"").report
    assert isinstance(report, LoadErrorReport) and report.package_name is None
    assert not dev.firmware


@pytest.mark.parametrize("kind", ["p256", "ed25519", "rsa"])
@pytest.mark.parametrize("extra", [(), ("-keyid",)], ids=["issuer-serial", "keyid"])
def test_suitkit_verifies_openssls_signature(
    tmp_path: Path, kind: str, extra: tuple[str, ...]
) -> None:
    skip_unless_openssl_cms_does(kind, tmp_path)
    p = make_pki(kind)
    fw = firmware(20_000)
    extra_args = {"rsa": ("-keyopt", "rsa_padding_mode:pss"), "ed25519": ("-md", "sha512")}.get(
        kind, ()
    )
    extra_args = (*extra, *extra_args)
    data = _openssl_signed(tmp_path, p, fw, *extra_args)
    verified = verify_signed_data(data, [TrustAnchor.from_certificate(p.ca_cert)])
    assert verified.econtent_type == ContentType.FIRMWARE_PACKAGE
    assert verified.content() == fw
    # the only RFC 4108 defect is the missing attributes
    attrs = verified.parsed.signer.signed_attrs
    assert AttributeType.FIRMWARE_PACKAGE_ID not in attrs


def test_suitkit_rejects_openssls_signature_with_the_wrong_anchor(
    tmp_path: Path, pki: Pki, other_pki: Pki
) -> None:
    data = _openssl_signed(tmp_path, pki, firmware())
    with pytest.raises(CmsError) as info:
        verify_signed_data(data, [other_pki.anchor])
    assert info.value.code is LoadErrorCode.NO_TRUST_ANCHOR


def test_openssl_streaming_ber_output_is_parsed(tmp_path: Path, pki: Pki) -> None:
    """``-stream`` gives indefinite lengths and a constructed eContent (BER, RFC 4108 §1.4)."""
    data = _openssl_signed(tmp_path, pki, firmware(30_000), "-stream")
    assert data[1] == 0x80  # indefinite length
    verified = verify_signed_data(data, [pki.anchor])
    assert len(verified.content()) == 30_000


def test_suitkit_package_loads_after_openssl_reencodes_it(tmp_path: Path, pki: Pki) -> None:
    """OpenSSL's re-encoding (``-cmsout``) of a suitkit package still loads (signature intact)."""
    fw = firmware(10_000)
    src = tmp_path / "pkg.der"
    src.write_bytes(build_package(fw, spec(), pki.signer))
    out = tmp_path / "re.der"
    openssl("cms", "-cmsout", "-inform", "DER", "-in", src, "-outform", "DER", "-out", out)
    dev = device(pki)
    load_package(out.read_bytes(), dev)
    assert bytes(dev.firmware["1.3.6.1.4.1.99999.1"]) == fw
