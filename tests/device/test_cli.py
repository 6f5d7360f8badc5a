"""``suitkit device`` and ``suitkit report`` (README "Quickstart: device side"): exit 0 ok, 1
rejected, 2 usage; errors are one line on stderr ending in the report reason; no tracebacks."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner, Result

from suitkit.cli.device import app, report_app

from .conftest import CLASS, EXAMPLE_PUB, VECTORS, VENDOR
from .devices import URI, ab_manifest, image, signed

root = typer.Typer()
root.add_typer(app, name="device")
root.add_typer(report_app, name="report")
runner = CliRunner()
IMG = image(b"cli-firmware ", 9000)


def invoke(*args: object) -> Result:
    return runner.invoke(root, [str(a) for a in args])


def _init(d: Path) -> None:
    r = invoke("device", "init", d, "--vendor-id", VENDOR, "--class-id", CLASS,
               "--trust", EXAMPLE_PUB, "--flash-size", 65536)
    assert r.exit_code == 0, r.output


def test_init_update_boot_status_and_report_show(tmp_path: Path) -> None:
    d = tmp_path / "dev"
    _init(d)
    env = tmp_path / "fw.suit"
    env.write_bytes(signed(ab_manifest(1, IMG)))
    payload = tmp_path / "fw.bin"
    payload.write_bytes(IMG)
    r = invoke("device", "update", d, env, "--payload", f"{URI}={payload}")
    out = r.output
    assert r.exit_code == 0, out
    assert "directive-fetch" in out and "condition-image-match" in out
    assert "update: OK (sequence number 1)" in out
    r = invoke("device", "boot", d)
    assert r.exit_code == 0 and "slot 1: booted" in r.output
    r = invoke("device", "status", d)
    assert "sequence number (root): 1" in r.output
    reports = sorted((d / "reports").iterdir())
    assert len(reports) == 2
    r = invoke("report", "show", reports[0], "--key", d / "device-key.pub.pem")
    assert r.exit_code == 0, r.output
    assert "signature: verified" in r.output and "result: success" in r.output


def test_appendix_b_example_1_is_rejected_with_exit_1_and_one_line(tmp_path: Path) -> None:
    d = tmp_path / "dev"
    _init(d)
    fake = tmp_path / "file.bin"
    fake.write_bytes(b"x" * 34768)
    r = invoke("device", "update", d, VECTORS / "example1.suit",
               "--payload", f"http://example.com/file.bin={fake}")
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    assert "condition-failed" in r.output
    report = sorted((d / "reports").iterdir())[0]
    r = invoke("report", "show", report, "--key", d / "device-key.pub.pem")
    assert r.exit_code == 1 and "reason condition-failed" in r.output


def test_unsigned_envelope_is_rejected_with_exit_1_and_a_signed_report(tmp_path: Path) -> None:
    """Issue item 7: a rejected envelope still produces a signed report with the reason and
    the digest the envelope claims."""
    d = tmp_path / "dev"
    _init(d)
    env = tmp_path / "fw.suit"
    unsigned = ab_manifest(1, IMG)
    env.write_bytes(unsigned.encode())
    r = invoke("device", "update", d, env)
    assert r.exit_code == 1
    _one_error_line(r, "unauthorised")
    reports = sorted((d / "reports").iterdir())
    assert [p.name for p in reports] == ["0001-update.report"]
    assert f"report: {reports[0]}" in r.stdout
    r = invoke("report", "show", reports[0], "--key", d / "device-key.pub.pem")
    assert r.exit_code == 1
    assert "signature: verified" in r.stdout and "reason unauthorised" in r.stdout
    assert unsigned.authentication.digest.value.hex() in r.stdout


def test_garbage_envelope_is_reported_as_cbor_parse(tmp_path: Path) -> None:
    d = tmp_path / "dev"
    _init(d)
    env = tmp_path / "junk.suit"
    env.write_bytes(b"\xd8\x6b\xa1\x02")
    r = invoke("device", "update", d, env)
    assert r.exit_code == 1
    _one_error_line(r, "cbor-parse")
    r = invoke("report", "show", sorted((d / "reports").iterdir())[0])
    assert "(unknown)" in r.stdout and "reason cbor-parse" in r.stdout


def _one_error_line(r: Result, reason: str) -> None:
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith(f"[{reason}]"), lines[0]
    assert "Traceback" not in r.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    r = invoke("device", "init", tmp_path / "d", "--vendor-id", "nope", "--class-id", CLASS,
               "--trust", EXAMPLE_PUB)
    assert r.exit_code == 2
    r = invoke("device", "update", tmp_path / "d", tmp_path / "missing.suit")
    assert r.exit_code == 2


def test_boot_of_an_empty_device_fails_with_exit_1(tmp_path: Path) -> None:
    d = tmp_path / "dev"
    _init(d)
    r = invoke("device", "boot", d)
    assert r.exit_code == 1 and "no bootable image" in r.output


def test_not_a_device_directory_is_one_line_exit_1(tmp_path: Path) -> None:
    r = invoke("device", "status", tmp_path)
    assert r.exit_code == 1 and "not a device directory" in r.output


def _example2_device(tmp_path: Path) -> tuple[Path, Path]:
    """A device with the Appendix B ids, and the install member of example 2 saved by
    ``suitkit sever --save`` (the member's bytes)."""
    from suitkit.cli.main import app as main_app

    d = tmp_path / "dev"
    _init(d)
    out = tmp_path / "members"
    r = runner.invoke(main_app, ["sever", str(VECTORS / "example2.suit"), "-o",
                                 str(tmp_path / "ex2.suit"), "--save", str(out)])
    assert r.exit_code == 0, r.output
    install = out / "ex2.install.cbor"
    assert install.is_file()
    return d, install


def test_example_2_severed_install_supplied_with_severed_runs_end_to_end(tmp_path: Path) -> None:
    """Example 2 (manifest Appendix B) with its install section severed: ``--severed`` supplies
    the member, checked against its digest (§8.5), ``--payload`` serves the URI; the install
    runs (fetch, then image-match) and fails only because the example's digest is a
    placeholder: condition-failed at install+58, as in the vector's trace."""
    d, install = _example2_device(tmp_path)
    fake = tmp_path / "file.bin"
    fake.write_bytes(b"w" * 34768)
    uri = "http://example.com/very/long/path/to/file/file.bin"
    r = invoke("device", "update", d, VECTORS / "example2.severed.suit",
               "--severed", install, "--payload", f"{uri}={fake}")
    assert r.exit_code == 1
    assert f"[install+56] #0 directive-fetch uri={uri}" in r.stdout
    assert "[install+58] #0 condition-image-match" in r.stdout
    _one_error_line(r, "condition-failed")
    assert "section install, offset 58, component 0" in r.stderr
    report = sorted((d / "reports").iterdir())[-1]
    r = invoke("report", "show", report, "--key", d / "device-key.pub.pem")
    assert "manifest: https://git.io/JJYoj" in r.stdout
    assert "reason condition-failed (code 10) at install+58 component 0" in r.stdout


def test_example_2_severed_without_its_install_member_is_severing_unsupported(
    tmp_path: Path,
) -> None:
    d, _ = _example2_device(tmp_path)
    r = invoke("device", "update", d, VECTORS / "example2.severed.suit")
    assert r.exit_code == 1
    _one_error_line(r, "severing-unsupported")
    assert "directive-fetch" not in r.stdout


def test_example_2_with_a_member_that_matches_no_digest_is_unauthorised(tmp_path: Path) -> None:
    d, install = _example2_device(tmp_path)
    wrong = tmp_path / "wrong.cbor"
    wrong.write_bytes(install.read_bytes()[:-1] + b"\x0e")
    r = invoke("device", "update", d, VECTORS / "example2.severed.suit", "--severed", wrong)
    assert r.exit_code == 1
    _one_error_line(r, "unauthorised")


def test_status_json_has_identity_contents_and_state(tmp_path: Path) -> None:
    import hashlib
    import json

    d = tmp_path / "dev"
    _init(d)
    env = tmp_path / "fw.suit"
    env.write_bytes(signed(ab_manifest(1, IMG)))
    payload = tmp_path / "fw.bin"
    payload.write_bytes(IMG)
    assert invoke("device", "update", d, env, "--payload", f"{URI}={payload}", "-q").exit_code == 0
    r = invoke("device", "status", d, "--json")
    assert r.exit_code == 0
    st = json.loads(r.stdout)
    assert st["identity"]["vendor-id"] == VENDOR and st["identity"]["class-id"] == CLASS
    assert st["state"]["sequence-numbers"] == {"root": 1}
    assert st["state"]["boot"]["preferred"] == 1 and st["state"]["journal"] is None
    slot1 = next(c for c in st["contents"] if c["component"] == "00" and c["slot"] == 1)
    assert slot1 == {"component": "00", "slot": 1, "length": len(IMG),
                     "digest": "sha256:" + hashlib.sha256(IMG).hexdigest()}
    assert st["reports"] == ["0001-update.report"]
    r = invoke("device", "status", d)
    assert f"slot 1: {len(IMG)} bytes, sha256:{hashlib.sha256(IMG).hexdigest()}" in r.stdout


def test_boot_prints_a_report_for_each_attempt(tmp_path: Path) -> None:
    d = tmp_path / "dev"
    _init(d)
    env = tmp_path / "fw.suit"
    env.write_bytes(signed(ab_manifest(1, IMG)))
    payload = tmp_path / "fw.bin"
    payload.write_bytes(IMG)
    assert invoke("device", "update", d, env, "--payload", f"{URI}={payload}", "-q").exit_code == 0
    flash = d / "flash" / "00.1"
    data = bytearray(flash.read_bytes())
    data[0] ^= 1
    flash.write_bytes(bytes(data))
    r = invoke("device", "boot", d, "-q")
    assert r.exit_code == 1
    assert "slot 1: validation failed: image digest does not match" in r.stdout
    assert "report: " in r.stdout and "0002-boot-slot1.report" in r.stdout
    _one_error_line(r, "condition-failed")
    assert r.stderr.startswith("error: no bootable image; last attempt, slot 1: image digest")
