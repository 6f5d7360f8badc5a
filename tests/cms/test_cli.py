"""``suitkit cms``: create, verify, show, load, receipt show, device-init (typer's CliRunner).

Exit codes: 0 ok, 1 invalid / not authentic / load error, 2 usage error; errors are one line on
stderr, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from suitkit.cli.cms import app
from suitkit.cms.crypto import HssLmsPrivateKey
from tests.cms.helpers import COMMUNITY, HW, OTHER_HW, PKG, SERIAL, Pki, make_pki

runner = CliRunner()


def cli(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def ok(r: Result) -> Result:
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r


def clean_error(r: Result, code: int) -> str:
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    if code == 1:
        assert len(lines) == 1, r.stderr
    return r.stderr


@pytest.fixture
def work(tmp_path: Path, pki: Pki) -> Path:
    (tmp_path / "fw.bin").write_bytes(bytes(range(256)) * 40)
    for name in ("ca_cert", "leaf_cert", "leaf_key"):
        (tmp_path / f"{name}.pem").write_bytes(pki.pem(name))
    (tmp_path / "aes.key").write_bytes(bytes(range(16)).hex().encode())
    return tmp_path


def create(work: Path, *extra: str, out: str = "pkg.der", version: str = "7") -> Path:
    ok(
        cli(
            "create",
            "--firmware",
            work / "fw.bin",
            "--pkg-oid",
            PKG,
            "--version",
            version,
            "--target-hw",
            HW,
            "--key",
            work / "leaf_key.pem",
            "--cert",
            work / "leaf_cert.pem",
            "-o",
            work / out,
            *extra,
        )
    )
    return work / out


def init_device(work: Path, *extra: str) -> Path:
    d = work / "dev"
    ok(
        cli(
            "device-init",
            d,
            "--hw-type",
            HW,
            "--serial",
            SERIAL.hex(),
            "--trust",
            work / "ca_cert.pem",
            *extra,
        )
    )
    return d


def test_create_verify_show_load_receipt_round_trip(work: Path) -> None:
    pkg = create(work, "--stale", "5", "--description", "demo firmware")
    r = ok(cli("verify", pkg, "--trust", work / "ca_cert.pem"))
    assert r.stdout.startswith(f"OK: {PKG} v7")
    info = json.loads(ok(cli("verify", pkg, "--trust", work / "ca_cert.pem", "--json")).stdout)
    assert info["stale"] == 5 and info["firmware_size"] == 10240
    shown = ok(cli("show", pkg)).stdout
    assert "firmware-package-identifier" in shown and "id-ct-firmwarePackage" in shown
    assert "target-hardware-module-identifiers" in shown and HW in shown
    dev = init_device(work)
    r = ok(cli("load", dev, pkg, "-o", work / "receipt.der"))
    assert "FirmwarePackageLoadReceipt" in r.stdout and "loaded" in r.stdout
    assert (dev / "firmware" / f"{PKG}.bin").read_bytes() == (work / "fw.bin").read_bytes()
    r = ok(cli("receipt", "show", work / "receipt.der"))
    assert f"hw_serial: {SERIAL.hex()}" in r.stdout
    state = json.loads((dev / "cms-state.json").read_text())
    assert state["stale_versions"] == {PKG: 5}


def test_load_failure_writes_an_error_report_and_exits_1(work: Path) -> None:
    dev = init_device(work)
    pkg = create(work, "--stale", "7")
    ok(cli("load", dev, pkg))
    r = cli("load", dev, pkg, "-o", work / "err.der")  # v7 is now stale (<= 7)
    err = clean_error(r, 1)
    assert "stalePackage" in err and "(28)" in err
    assert "FirmwarePackageLoadError" in r.stdout
    shown = json.loads(ok(cli("receipt", "show", work / "err.der", "--json")).stdout)
    assert shown["kind"] == "error" and shown["error_code"].startswith("stalePackage")


def test_signed_reports_verify_with_the_device_certificate(work: Path, tmp_path: Path) -> None:
    module = make_pki("p256")
    (work / "mod.key").write_bytes(module.pem("leaf_key"))
    (work / "mod.crt").write_bytes(module.pem("leaf_cert"))
    dev = init_device(
        work, "--report-key", str(work / "mod.key"), "--report-cert", str(work / "mod.crt")
    )
    ok(cli("load", dev, create(work), "-o", work / "r.der"))
    shown = json.loads(
        ok(cli("receipt", "show", work / "r.der", "--trust", work / "mod.crt", "--json")).stdout
    )
    assert shown["signed"] and shown["verified"] and "fw_message_digest" in shown
    clean_error(cli("receipt", "show", work / "r.der", "--trust", work / "ca_cert.pem"), 1)


def test_compressed_and_encrypted_package_with_wrapped_key(work: Path) -> None:
    (work / "kek.key").write_bytes(bytes(range(32)))
    pkg = create(
        work,
        "--compress",
        "--encrypt-key",
        str(work / "aes.key"),
        "--key-id",
        "0a0b",
        "--cipher",
        "cbc",
        "--wrap-kek",
        str(work / "kek.key"),
        "--kek-id",
        "cafe",
    )
    shown = ok(cli("show", pkg)).stdout
    assert (
        "EncryptedData" in shown
        and "id-aes128-CBC" in shown
        and "wrapped-firmware-decryption-key" in shown
    )
    r = ok(cli("verify", pkg, "--trust", work / "ca_cert.pem"))
    assert "firmware not checked" in r.stdout
    ok(
        cli(
            "verify",
            pkg,
            "--trust",
            work / "ca_cert.pem",
            "--decrypt-key",
            f"0a0b={work / 'aes.key'}",
        )
    )
    dev = init_device(work, "--decrypt-key", f"cafe={work / 'kek.key'}")
    ok(cli("load", dev, pkg))
    assert (dev / "firmware" / f"{PKG}.bin").read_bytes() == (work / "fw.bin").read_bytes()


def test_verify_fails_with_exit_1_for_the_wrong_anchor(work: Path) -> None:
    other = make_pki("p256")
    (work / "other.pem").write_bytes(other.pem("ca_cert"))
    err = clean_error(cli("verify", create(work), "--trust", work / "other.pem"), 1)
    assert "noTrustAnchor" in err


def test_verify_fails_with_exit_1_for_a_tampered_package(work: Path) -> None:
    pkg = create(work)
    data = bytearray(pkg.read_bytes())
    data[data.index(b"\x00\x01\x02\x03\x04") + 2] ^= 1
    pkg.write_bytes(bytes(data))
    assert "signatureFailure" in clean_error(cli("verify", pkg, "--trust", work / "ca_cert.pem"), 1)


def test_show_and_verify_reject_garbage_with_exit_1(work: Path) -> None:
    (work / "junk.der").write_bytes(b"not der at all")
    assert "decodeFailure" in clean_error(cli("show", work / "junk.der"), 1)
    assert "decodeFailure" in clean_error(
        cli("verify", work / "junk.der", "--trust", work / "ca_cert.pem"), 1
    )
    assert "decodeFailure" in clean_error(cli("receipt", "show", work / "junk.der"), 1)


def test_wrong_hardware_and_community(work: Path) -> None:
    dev = init_device(work, "--community", COMMUNITY)
    ok(cli("load", dev, create(work, "--community", COMMUNITY)))
    bad = create(work, "--community", "1.2.3.4", out="p2.der", version="8")
    assert "notInCommunity" in clean_error(cli("load", dev, bad), 1)
    ok(
        cli(
            "create",
            "--firmware",
            work / "fw.bin",
            "--pkg-oid",
            PKG,
            "--version",
            "9",
            "--target-hw",
            OTHER_HW,
            "--key",
            work / "leaf_key.pem",
            "--cert",
            work / "leaf_cert.pem",
            "-o",
            work / "p3.der",
        )
    )
    assert "wrongHardware" in clean_error(cli("load", dev, work / "p3.der"), 1)


def test_insufficient_memory_on_a_small_device(work: Path) -> None:
    dev = init_device(work, "--flash-size", "100")
    assert "insufficientMemory" in clean_error(cli("load", dev, create(work)), 1)
    assert not list((dev / "firmware").iterdir())


def test_dependencies_and_package_types(work: Path) -> None:
    dev = init_device(work, "--package-type", "1", "--package-type", "2")
    pkg = create(work, "--pkg-type", "2", "--depends", "1.3.6.1.4.1.99999.3:2")
    assert "missingDependency" in clean_error(cli("load", dev, pkg), 1)
    bad_type = create(work, "--pkg-type", "5", out="t.der")
    assert "unsupportedPackageType" in clean_error(cli("load", dev, bad_type), 1)


def test_legacy_names(work: Path) -> None:
    ok(
        cli(
            "create",
            "--firmware",
            work / "fw.bin",
            "--legacy-name",
            b"R2".hex(),
            "--legacy-stale",
            b"R1".hex(),
            "--target-hw",
            HW,
            "--key",
            work / "leaf_key.pem",
            "--cert",
            work / "leaf_cert.pem",
            "-o",
            work / "leg.der",
        )
    )
    dev = init_device(work)
    ok(cli("load", dev, work / "leg.der"))
    assert json.loads((dev / "cms-state.json").read_text())["stale_legacy"] == [b"R1".hex()]


def test_hss_lms_key_state_is_saved_after_signing(work: Path) -> None:
    key = HssLmsPrivateKey.generate()
    (work / "hss.key").write_bytes(key.serialize())
    (work / "hss.pub").write_bytes(key.public_key().raw)
    before = (work / "hss.key").read_bytes()
    ok(
        cli(
            "create",
            "--firmware",
            work / "fw.bin",
            "--pkg-oid",
            PKG,
            "--version",
            "1",
            "--target-hw",
            HW,
            "--key",
            work / "hss.key",
            "-o",
            work / "h.der",
        )
    )
    assert (work / "hss.key").read_bytes() != before  # the one-time key index advanced
    ok(cli("verify", work / "h.der", "--trust", work / "hss.pub"))


@pytest.mark.parametrize(
    "args",
    [
        [
            "create",
            "--firmware",
            "fw.bin",
            "--target-hw",
            HW,
            "--key",
            "leaf_key.pem",
            "-o",
            "x",
        ],  # no name
        [
            "create",
            "--firmware",
            "fw.bin",
            "--pkg-oid",
            "not-an-oid",
            "--version",
            "1",
            "--target-hw",
            HW,
            "--key",
            "leaf_key.pem",
            "-o",
            "x",
        ],
        [
            "create",
            "--firmware",
            "fw.bin",
            "--pkg-oid",
            PKG,
            "--version",
            "1",
            "--target-hw",
            HW,
            "--key",
            "leaf_key.pem",
            "-o",
            "x",
            "--encrypt-key",
            "aes.key",
        ],  # --key-id missing
        [
            "create",
            "--firmware",
            "fw.bin",
            "--pkg-oid",
            PKG,
            "--version",
            "-1",
            "--target-hw",
            HW,
            "--key",
            "leaf_key.pem",
            "-o",
            "x",
        ],
        ["verify", "x.der"],  # --trust missing
        ["load"],
        ["device-init", "d", "--hw-type", "zz", "--trust", "ca_cert.pem"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(work: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work)
    clean_error(cli(*args), 2)


def test_missing_input_file_exits_1(work: Path) -> None:
    err = clean_error(cli("show", work / "nope.der"), 1)
    assert err.startswith("suitkit: error: cannot read package")


def test_load_into_a_directory_that_is_not_a_device_exits_1(work: Path) -> None:
    assert "device-init" in clean_error(cli("load", work, create(work)), 1)


def test_cli_module_imports_no_crypto_at_startup() -> None:
    code = (
        "import sys, suitkit.cli.cms; "
        "bad = [m for m in ('pyasn1', 'cryptography', 'suitkit.cms.loader') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
