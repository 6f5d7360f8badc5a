"""``suitkit cms load`` on the simulated device (issue #4's device item): the device of
``suitkit device init ... --hw-type OID --serial HEX`` (same storage, identity and trust anchors
as for SUIT manifests; ``--trust`` takes X.509 certificates) loads RFC 4108 packages, writes and
prints a receipt or an error report, keeps stale versions in its persistent state, and refuses a
package larger than its flash (insufficientMemory) before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from suitkit.cli.cms import app as cms_app
from suitkit.cli.device import app as device_app
from suitkit.cms.model import PreferredName
from suitkit.device.cms_host import SimulatedCmsDevice
from tests.cms.helpers import HW, OTHER_HW, PKG, SERIAL, Pki, make_pki

VENDOR = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
CLASS = "1492af14-2569-5e48-bf42-9b2d51f2ab45"
FIRMWARE = bytes(range(256)) * 40  # 10240 octets

root = typer.Typer()
root.add_typer(device_app, name="device")
root.add_typer(cms_app, name="cms")
runner = CliRunner()


def cli(*args: object) -> Result:
    return runner.invoke(root, [str(a) for a in args])


def ok(r: Result) -> Result:
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r


def cms_error(r: Result) -> str:
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def work(tmp_path: Path, pki: Pki) -> Path:
    (tmp_path / "fw.bin").write_bytes(FIRMWARE)
    for name in ("ca_cert", "leaf_cert", "leaf_key"):
        (tmp_path / f"{name}.pem").write_bytes(pki.pem(name))
    (tmp_path / "aes.key").write_bytes(bytes(range(16)).hex().encode())
    return tmp_path


def create(work: Path, *extra: object, out: str = "pkg.der", version: int = 7) -> Path:
    ok(cli("cms", "create", "--firmware", work / "fw.bin", "--pkg-oid", PKG,
           "--version", version, "--key", work / "leaf_key.pem",
           "--cert", work / "leaf_cert.pem", "-o", work / out,
           *(extra or ("--target-hw", HW))))
    return work / out


def init(work: Path, *extra: object, name: str = "dev") -> Path:
    d = work / name
    r = ok(cli("device", "init", d, "--vendor-id", VENDOR, "--class-id", CLASS,
               "--trust", work / "ca_cert.pem", "--hw-type", HW, "--serial", SERIAL.hex(),
               "--page-size", 1024, "--flash-size", 65536, *extra))
    assert f"hardware module type {HW}, serial {SERIAL.hex()}" in r.stdout
    return d


def snapshot(d: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(d)): f.read_bytes()
        for f in sorted(d.rglob("*"))
        if f.is_file() and f.relative_to(d).parts[0] != "reports"
    }


def test_load_writes_the_firmware_to_flash_and_prints_a_signed_receipt(work: Path) -> None:
    d = init(work)
    pkg = create(work, "--target-hw", HW, "--stale", 5)
    r = ok(cli("cms", "load", d, pkg, "-o", work / "receipt.der"))
    assert "FirmwarePackageLoadReceipt (signed)" in r.stdout and "loaded" in r.stdout
    receipts = sorted((d / "reports").glob("cms-*-receipt.der"))
    assert len(receipts) == 1 and f"report_file: {receipts[0]}" in r.stdout
    assert receipts[0].read_bytes() == (work / "receipt.der").read_bytes()
    # the device's report key signs it (no certificate: named by its key identifier)
    shown = json.loads(ok(cli("cms", "receipt", "show", work / "receipt.der",
                              "--trust", d / "device-key.pub.pem", "--json")).stdout)
    assert shown["kind"] == "receipt" and shown["verified"]
    assert shown["hw_serial"] == SERIAL.hex() and shown["hw_type"].startswith(HW)
    # the image is in the execution component's flash, in the slot it does not boot from
    state = json.loads((d / "state.json").read_text())
    assert state["lengths"]["00.1"] == len(FIRMWARE)
    assert (d / "flash" / "00.1").read_bytes()[: len(FIRMWARE)] == FIRMWARE
    assert state["cms"]["stale-versions"] == {PKG: 5}
    assert state["cms"]["firmware"][PKG] == {"component": "00", "slot": 1,
                                             "length": len(FIRMWARE)}
    assert SimulatedCmsDevice(d).firmware(PreferredName(PKG, 7)) == FIRMWARE
    status = ok(cli("device", "status", d)).stdout
    assert f"component [h'00'] slot 1: {len(FIRMWARE)} bytes" in status


def test_stale_versions_persist_in_the_device_state(work: Path) -> None:
    d = init(work)
    ok(cli("cms", "load", d, create(work, "--target-hw", HW, "--stale", 7)))
    r = cli("cms", "load", d, create(work, out="again.der"), "-o", work / "err.der")
    line = cms_error(r)
    assert "stalePackage" in line and "(28)" in line
    assert "FirmwarePackageLoadError (signed)" in r.stdout
    assert sorted(p.name.split("-")[-1] for p in (d / "reports").glob("cms-*")) == [
        "error.der", "receipt.der"
    ]
    shown = json.loads(ok(cli("cms", "receipt", "show", work / "err.der", "--json")).stdout)
    assert shown["kind"] == "error" and shown["error_code"].startswith("stalePackage")
    # a newer version loads
    ok(cli("cms", "load", d, create(work, out="v8.der", version=8)))
    assert json.loads((d / "state.json").read_text())["cms"]["installed"][-1]["name"]


def test_a_package_larger_than_the_flash_is_insufficient_memory_before_any_write(
    work: Path,
) -> None:
    d = init(work, name="small")
    big = work / "big.bin"
    big.write_bytes(b"\x5a" * (65536 + 1))
    ok(cli("cms", "create", "--firmware", big, "--pkg-oid", PKG, "--version", 1,
           "--target-hw", HW, "--key", work / "leaf_key.pem", "--cert", work / "leaf_cert.pem",
           "-o", work / "big.der"))
    before = snapshot(d)
    r = cli("cms", "load", d, work / "big.der")
    assert "insufficientMemory" in cms_error(r)
    assert "FirmwarePackageLoadError" in r.stdout
    assert snapshot(d) == before  # not a page, not a state write


def test_wrong_hardware_and_untrusted_signer(work: Path) -> None:
    d = init(work)
    r = cli("cms", "load", d, create(work, "--target-hw", OTHER_HW))
    assert "wrongHardware" in cms_error(r)
    other = make_pki("p256")
    (work / "o_key.pem").write_bytes(other.pem("leaf_key"))
    (work / "o_cert.pem").write_bytes(other.pem("leaf_cert"))
    ok(cli("cms", "create", "--firmware", work / "fw.bin", "--pkg-oid", PKG, "--version", 9,
           "--target-hw", HW, "--key", work / "o_key.pem", "--cert", work / "o_cert.pem",
           "-o", work / "o.der"))
    assert "noTrustAnchor" in cms_error(cli("cms", "load", d, work / "o.der"))


def test_encrypted_package_with_the_devices_key(work: Path) -> None:
    pkg = create(work, "--target-hw", HW, "--encrypt-key", work / "aes.key", "--key-id", "0a0b")
    d = init(work, "--decrypt-key", f"h'0a0b'={work / 'aes.key'}")
    r = ok(cli("cms", "load", d, pkg, "--json"))
    assert json.loads(r.stdout[: r.stdout.rindex("}") + 1])["decrypt_key_id"] == "0a0b"
    assert SimulatedCmsDevice(d).firmware(PreferredName(PKG, 7)) == FIRMWARE
    d2 = init(work, name="nokey")
    assert "noDecryptKey" in cms_error(cli("cms", "load", d2, pkg))


def test_trust_accepts_der_certificates_and_the_suit_side_uses_them(work: Path) -> None:
    """`device init --trust` takes X.509 certificates (PEM or DER): the CMS loader matches the
    certificate, and a SUIT manifest signed with the certified key authenticates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from suitkit.author.builder import build_from_description
    from suitkit.author.signing import sign_envelope
    from suitkit.cose import CoseKey

    pki = make_pki("p256")
    (work / "leaf.der").write_bytes(pki.leaf_cert.public_bytes(serialization.Encoding.DER))
    assert isinstance(x509.load_der_x509_certificate((work / "leaf.der").read_bytes()),
                      x509.Certificate)
    d = work / "dev"
    ok(cli("device", "init", d, "--vendor-id", VENDOR, "--class-id", CLASS,
           "--trust", work / "leaf.der", "--hw-type", HW, "--serial", "01"))
    env = build_from_description({
        "sequence-number": 1,
        "components": [{"id": ["h'00'"], "vendor-id": VENDOR, "class-id": CLASS,
                        "content": "h'0102030405'"}],
    })
    (work / "m.suit").write_bytes(
        sign_envelope(env, [CoseKey.from_pem(pki.pem("leaf_key"))]).encode()
    )
    ok(cli("device", "update", d, work / "m.suit"))
    # a directly trusted signer certificate is a trust anchor for CMS packages too
    (work / "k.pem").write_bytes(pki.pem("leaf_key"))
    (work / "c.pem").write_bytes(pki.pem("leaf_cert"))
    ok(cli("cms", "create", "--firmware", work / "fw.bin", "--pkg-oid", PKG, "--version", 1,
           "--target-hw", HW, "--key", work / "k.pem", "--cert", work / "c.pem",
           "-o", work / "p.der"))
    ok(cli("cms", "load", d, work / "p.der"))


def test_a_cms_load_drops_the_suit_manifest_of_the_overwritten_slot(work: Path) -> None:
    """The image goes to the slot the device does not boot from; a SUIT manifest recorded for
    that slot no longer describes it, so the bootloader does not try it."""
    d = init(work)
    state = json.loads((d / "state.json").read_text())
    state["boot"]["manifests"] = {"1": "manifests/x.suit"}
    state["boot"]["preferred"] = 1
    (d / "state.json").write_text(json.dumps(state))
    (d / "manifests" / "x.suit").write_bytes(b"old")
    ok(cli("cms", "load", d, create(work)))
    state = json.loads((d / "state.json").read_text())
    assert state["boot"]["manifests"] == {} and state["boot"]["preferred"] == 0
    assert not (d / "manifests" / "x.suit").exists()


def test_errors_without_identity_or_with_a_bad_component(work: Path) -> None:
    d = work / "plain"
    ok(cli("device", "init", d, "--vendor-id", VENDOR, "--class-id", CLASS,
           "--trust", work / "ca_cert.pem"))
    line = cms_error(cli("cms", "load", d, create(work)))
    assert "no hardware module type" in line and "--hw-type" in line
    d2 = init(work)
    assert "no component" in cms_error(cli("cms", "load", d2, create(work), "--component", "x"))
    assert cli("device", "init", work / "bad", "--vendor-id", VENDOR, "--class-id", CLASS,
               "--trust", work / "ca_cert.pem", "--hw-type", "not-an-oid").exit_code == 2


def test_load_into_another_component(work: Path) -> None:
    d = init(work)
    ok(cli("cms", "load", d, create(work), "--component", "h'02'"))
    state = json.loads((d / "state.json").read_text())
    assert state["lengths"]["02.0"] == len(FIRMWARE) and state["lengths"]["00.1"] is None


def test_the_stand_in_device_init_still_works(work: Path) -> None:
    d = work / "standin"
    ok(cli("cms", "device-init", d, "--hw-type", HW, "--serial", SERIAL.hex(),
           "--trust", work / "ca_cert.pem"))
    ok(cli("cms", "load", d, create(work)))
    assert (d / "firmware" / f"{PKG}.bin").read_bytes() == FIRMWARE
