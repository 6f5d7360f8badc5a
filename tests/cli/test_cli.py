"""The suitkit CLI as a newcomer uses it: exit codes 0/1/2, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_KEY_PRIVATE, EXAMPLE_KEY_PUBLIC, VECTORS

SUITKIT = [sys.executable, "-c", "from suitkit.cli.entry import main; main()"]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUITKIT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def assert_clean_error(r: subprocess.CompletedProcess[str], code: int) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "fw.bin").write_bytes(os.urandom(3000))
    (tmp_path / "desc.yaml").write_text(
        "sequence-number: 3\n"
        "severable: [install]\n"
        "components:\n"
        "  - vendor-domain: example.com\n"
        "    class-info: sensor-v1\n"
        "    payload: fw.bin\n"
        "    uri: http://example.com/fw.bin\n"
        "    invoke: true\n"
    )
    return tmp_path


def test_keygen_create_sign_verify_show_sever_roundtrip(workdir: Path) -> None:
    assert run("keygen", "--alg", "esp256", "-o", "k.pem", cwd=workdir).returncode == 0
    assert run("pubkey", "k.pem", "-o", "pub.pem", cwd=workdir).returncode == 0
    r = run("create", "desc.yaml", "-o", "m.suit", "--key", "k.pem", cwd=workdir)
    assert r.returncode == 0, r.stderr
    r = run("verify", "m.suit", "--key", "pub.pem", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout and "OK: authentic manifest, sequence number 3" in r.stdout
    r = run("verify", "m.suit", "--key", "pub.pem", "--json", cwd=workdir)
    assert json.loads(r.stdout)["blocks"][0]["algorithm"] == "ESP256"
    r = run("show", "m.suit", cwd=workdir)
    assert r.returncode == 0 and "condition-vendor-identifier" in r.stdout
    assert "directive-fetch" in r.stdout
    r = run("show", "m.suit", "--diag", cwd=workdir)
    assert "/ manifest / 3: <<" in r.stdout
    r = run("show", "m.suit", "--json", cwd=workdir)
    assert json.loads(r.stdout)["manifest"]["manifest-sequence-number"] == 3
    r = run("sever", "m.suit", "--element", "install", "-o", "s.suit", "--save", "sev", cwd=workdir)
    assert r.returncode == 0, r.stderr
    r = run("verify", "s.suit", "--key", "pub.pem", cwd=workdir)
    assert r.returncode == 0 and "severed (not checked)" in r.stdout
    saved = next((workdir / "sev").iterdir())
    r = run("verify", "s.suit", "--key", "pub.pem", "--severed", saved, cwd=workdir)
    assert r.returncode == 0 and "install: present, digest matches" in r.stdout


def test_sign_adds_a_second_signature_and_es256_on_request(workdir: Path) -> None:
    run("keygen", "--alg", "esp256", "-o", "a.pem", cwd=workdir)
    run("keygen", "--alg", "ed25519", "-o", "b.pem", cwd=workdir)
    run("create", "desc.yaml", "-o", "u.suit", cwd=workdir)
    r = run("sign", "u.suit", "--key", "a.pem", "--alg", "es256", "-o", "s1.suit", cwd=workdir)
    assert r.returncode == 0, r.stderr
    r = run("sign", "s1.suit", "--key", "b.pem", "-o", "s2.suit", cwd=workdir)
    assert "2 authentication block(s)" in r.stdout
    run("pubkey", "b.pem", "-o", "b.pub.pem", cwd=workdir)
    r = run("verify", "s2.suit", "--key", "b.pub.pem", "--json", cwd=workdir)
    blocks = json.loads(r.stdout)["blocks"]
    assert [b["algorithm"] for b in blocks] == ["ES256", "Ed25519"]
    assert [b["verified"] for b in blocks] == [False, True]


def test_verify_of_a_spec_vector_with_its_key() -> None:
    r = run("verify", VECTORS / "example1.suit", "--key", EXAMPLE_KEY_PUBLIC)
    assert r.returncode == 0 and "ES256" in r.stdout


def test_verify_with_the_wrong_key_exits_1_with_one_line(workdir: Path) -> None:
    run("keygen", "--alg", "esp256", "-o", "other.pem", cwd=workdir)
    run("pubkey", "other.pem", "-o", "other.pub.pem", cwd=workdir)
    r = run("verify", VECTORS / "example1.suit", "--key", "other.pub.pem", cwd=workdir)
    assert_clean_error(r, 1)
    assert len(r.stderr.strip().splitlines()) == 1 and "unauthorised" in r.stderr


def test_tampered_envelope_exits_1(workdir: Path) -> None:
    data = bytearray((VECTORS / "example1.suit").read_bytes())
    data[-5] ^= 0x40
    (workdir / "bad.suit").write_bytes(bytes(data))
    r = run("verify", "bad.suit", "--key", EXAMPLE_KEY_PUBLIC, cwd=workdir)
    assert_clean_error(r, 1)


@pytest.mark.parametrize("junk", [b"", b"\x00", b"\xd8\x6b\xa0", os.urandom(64), b"\xff" * 10])
def test_malformed_input_exits_1_without_traceback(workdir: Path, junk: bytes) -> None:
    (workdir / "junk.suit").write_bytes(junk)
    for cmd in (
        ["verify", "junk.suit", "--key", str(EXAMPLE_KEY_PUBLIC)],
        ["show", "junk.suit"],
        ["sever", "junk.suit", "-o", "x.suit"],
    ):
        r = run(*cmd, cwd=workdir)
        assert_clean_error(r, 1)
        assert r.stderr.startswith("suitkit: error:")


def test_digest_only_envelope_is_not_authentic() -> None:
    r = run("verify", VECTORS / "example0.digest-only.suit", "--key", EXAMPLE_KEY_PUBLIC)
    assert_clean_error(r, 1)
    assert "only the digest" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["verify"],
        ["verify", "x.suit"],
        ["keygen", "--alg"],
        ["nonsense"],
        ["show"],
        ["sever", "x.suit", "-o", "y", "--element", "bogus"],
    ],
)
def test_usage_errors_exit_2(args: list[str], workdir: Path) -> None:
    if args[0] == "sever":
        (workdir / "x.suit").write_bytes((VECTORS / "example2.suit").read_bytes())
    assert_clean_error(run(*args, cwd=workdir), 2)


def test_unknown_algorithm_and_missing_key_file_exit_1(workdir: Path) -> None:
    assert_clean_error(run("keygen", "--alg", "rsa", "-o", "k", cwd=workdir), 1)
    assert_clean_error(
        run("verify", VECTORS / "example0.suit", "--key", "nope.pem", cwd=workdir), 1
    )


def test_every_command_has_help() -> None:
    for cmd in ("keygen", "pubkey", "create", "sign", "verify", "show", "sever"):
        r = run(cmd, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, cmd


def test_sever_of_a_member_held_in_the_manifest_is_refused(workdir: Path) -> None:
    r = run("sever", VECTORS / "example1.suit", "--element", "install", "-o", "x.suit", cwd=workdir)
    assert_clean_error(r, 1)


def test_fast_verify_path_and_typer_path_agree(workdir: Path) -> None:
    fast = run("verify", VECTORS / "example2.suit", "--key", EXAMPLE_KEY_PUBLIC, "--json")
    from typer.testing import CliRunner

    from suitkit.cli.main import app

    slow = CliRunner().invoke(
        app, ["verify", str(VECTORS / "example2.suit"), "--key", str(EXAMPLE_KEY_PUBLIC), "--json"]
    )
    assert slow.exit_code == 0
    assert json.loads(fast.stdout) == json.loads(slow.stdout)


def test_hmac_key_makes_a_cose_mac0(workdir: Path) -> None:
    assert run("keygen", "--alg", "hmac256", "-o", "mac.key", cwd=workdir).returncode == 0
    r = run("create", "desc.yaml", "-o", "m.suit", "--key", "mac.key", cwd=workdir)
    assert r.returncode == 0, r.stderr
    r = run("verify", "m.suit", "--key", "mac.key", "--json", cwd=workdir)
    assert json.loads(r.stdout)["blocks"][0]["structure"] == "COSE_Mac0"


def test_example_private_key_signs_a_description(workdir: Path) -> None:
    r = run(
        "create",
        Path(__file__).parents[1] / "descriptions" / "example1.yaml",
        "-o",
        "e1.suit",
        "--key",
        EXAMPLE_KEY_PRIVATE,
        "--alg",
        "es256",
        cwd=workdir,
    )
    assert r.returncode == 0, r.stderr
    assert run("verify", "e1.suit", "--key", EXAMPLE_KEY_PUBLIC, cwd=workdir).returncode == 0


def test_verify_fast_path_imports_no_heavy_modules() -> None:
    """Start-up budget: `suitkit verify` must not pull in typer, rich, cryptography's
    serialization package or pyhsslms (see BENCHMARKS.md, CLI start-up)."""
    code = (
        "import sys\n"
        "sys.argv = ['suitkit', 'verify', sys.argv[1], '--key', sys.argv[2]]\n"
        "from suitkit.cli import entry\n"
        "try:\n"
        "    entry.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('typer', 'rich', 'click', 'pyhsslms', "
        "'cryptography.hazmat.primitives.serialization', 'cryptography.x509') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(VECTORS / "example1.suit"), str(EXAMPLE_KEY_PUBLIC)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "OK: authentic manifest" in r.stdout, r.stderr
    assert "HEAVY []" in r.stdout


@pytest.mark.parametrize(
    ("args", "parsed"),
    [
        (["e.suit", "--key", "k"], ("e.suit", ["k"], [], False)),
        (["--key=k", "e.suit", "--json"], ("e.suit", ["k"], [], True)),
        (
            ["e.suit", "--key", "a", "--key", "b", "--severed", "s", "--severed=t"],
            ("e.suit", ["a", "b"], ["s", "t"], False),
        ),
        # everything else goes to typer, which reports the usage error
        (["e.suit"], None),
        (["--key", "k"], None),
        (["e.suit", "--key"], None),
        (["e.suit", "--key="], None),
        (["e.suit", "f.suit", "--key", "k"], None),
        (["e.suit", "--key", "k", "--keys", "x"], None),
        (["e.suit", "--key", "k", "--"], None),
        (["-", "--key", "k"], None),
    ],
)
def test_fast_verify_parses_exactly_the_verify_options(
    args: list[str], parsed: tuple[str, list[str], list[str], bool] | None
) -> None:
    from suitkit.cli.entry import _verify_args

    assert _verify_args(args) == parsed


def test_fast_verify_usage_errors_get_typers_message(workdir: Path) -> None:
    r = run("verify", VECTORS / "example1.suit", cwd=workdir)  # no --key
    assert r.returncode == 2
    assert "--key" in r.stderr and "Traceback" not in r.stderr
