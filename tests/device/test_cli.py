"""``suitkit device`` and ``suitkit report``: exit 0 ok, 1 rejected, 2 usage; no tracebacks."""

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


def test_unsigned_envelope_is_rejected_with_exit_1(tmp_path: Path) -> None:
    d = tmp_path / "dev"
    _init(d)
    env = tmp_path / "fw.suit"
    env.write_bytes(ab_manifest(1, IMG).encode())
    r = invoke("device", "update", d, env)
    assert r.exit_code == 1 and "unauthorised" in r.output


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
