"""``suitkit encrypt`` / ``suitkit decrypt``: exit codes 0/1/2, one-line errors, no traceback,
no output file unless the payload authenticated. The commands live on
``suitkit.cli.encryption.app`` (the main CLI mounts them at top level), run here as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from suitkit.cose import CoseKey
from suitkit.encryption import CoseEncrypt
from suitkit.format.codepoints import CoseAlgorithm, CoseCurve

from ._util import FE, KEYS, PLAINTEXT

APP = [
    sys.executable,
    "-c",
    "from suitkit.cli.encryption import app; app(prog_name='suitkit')",
]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*APP, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def assert_clean(r: subprocess.CompletedProcess[str], code: int) -> None:
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    if code == 1:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("suitkit: error: ")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "fw.bin").write_bytes(os.urandom(2_500_000))
    CoseKey.generate(CoseAlgorithm.A128KW, b"kek").save(tmp_path / "kek.cose_key", private=True)
    dev = CoseKey.generate(CoseAlgorithm.ECDH_ES_A128KW, curve=CoseCurve.X25519).with_alg(None)
    dev.with_kid(b"dev").save(tmp_path / "dev.cose_key", private=True)
    dev.with_kid(b"dev").public_key().save(tmp_path / "dev-pub.cose_key")
    return tmp_path


@pytest.mark.parametrize("alg", ["a128ctr", "A256GCM", "chacha20-poly1305"])
def test_encrypt_then_decrypt_with_each_recipient(work: Path, alg: str) -> None:
    r = run(
        "encrypt", "fw.bin", "--alg", alg,
        "--recipient", "kek.cose_key", "--recipient", "dev-pub.cose_key",
        "-o", "fw.enc", "--info", "fw.cose", cwd=work,
    )  # fmt: skip
    assert_clean(r, 0)
    assert "wrote fw.enc" in r.stdout and "2 recipient(s)" in r.stdout
    info = CoseEncrypt.decode((work / "fw.cose").read_bytes())
    assert [x.kid for x in info.recipients] == [b"kek", b"dev"]
    for key in ("kek.cose_key", "dev.cose_key"):
        r = run("decrypt", "fw.enc", "--info", "fw.cose", "--key", key, "-o", "out.bin", cwd=work)
        assert_clean(r, 0)
        assert (work / "out.bin").read_bytes() == (work / "fw.bin").read_bytes()


def test_key_wrap_option(work: Path) -> None:
    r = run(
        "encrypt", "fw.bin", "--alg", "a128ctr", "--recipient", "dev-pub.cose_key",
        "--key-wrap", "ecdh-es+a256kw", "-o", "fw.enc", "--info", "fw.cose", cwd=work,
    )  # fmt: skip
    assert_clean(r, 0)
    info = CoseEncrypt.decode((work / "fw.cose").read_bytes())
    assert info.recipients[0].alg is CoseAlgorithm.ECDH_ES_A256KW


def test_decrypts_the_spec_vectors(tmp_path: Path) -> None:
    for name, key in (
        ("aes-kw-aes-gcm", "fw-enc-kek-a128kw-kid-1.cose_key"),
        ("es-ecdh-aes-ctr", "fw-enc-recipient-p256-kid-2-private.cose_key"),
    ):
        out = tmp_path / f"{name}.out"
        r = run(
            "decrypt", FE / f"encrypted-payload-{name}.bin",
            "--info", FE / f"suit-encryption-info-{name}.cose",
            "--key", KEYS / key, "-o", out,
        )  # fmt: skip
        assert_clean(r, 0)
        assert out.read_bytes() == PLAINTEXT


def test_failed_tag_leaves_no_output(work: Path) -> None:
    assert_clean(
        run(
            "encrypt", "fw.bin", "--alg", "a128gcm", "--recipient", "kek.cose_key",
            "-o", "fw.enc", "--info", "fw.cose", cwd=work,
        ),
        0,
    )  # fmt: skip
    data = bytearray((work / "fw.enc").read_bytes())
    data[-1] ^= 1
    (work / "fw.enc").write_bytes(bytes(data))
    r = run("decrypt", "fw.enc", "--info", "fw.cose", "--key", "kek.cose_key", "-o", "out.bin",
            cwd=work)  # fmt: skip
    assert_clean(r, 1)
    assert "tag does not verify" in r.stderr and "[unauthorised]" in r.stderr
    assert sorted(p.name for p in work.iterdir()) == [
        "dev-pub.cose_key", "dev.cose_key", "fw.bin", "fw.cose", "fw.enc", "kek.cose_key",
    ]  # fmt: skip


def test_errors_are_one_line_with_the_right_exit_code(work: Path) -> None:
    enc = ["encrypt", "fw.bin", "-o", "fw.enc", "--info", "fw.cose"]
    r = run(*enc, "--alg", "a128ctr", "--recipient", "kek.cose_key", cwd=work)
    assert_clean(r, 0)
    other = CoseKey.generate(CoseAlgorithm.A128KW, b"other")
    other.save(work / "other.cose_key", private=True)
    wrong = CoseKey.generate(CoseAlgorithm.A128KW, b"kek")
    wrong.save(work / "wrong.cose_key", private=True)
    dec = ["decrypt", "fw.enc", "--info", "fw.cose", "-o", "out.bin"]
    cases = [
        (run(*dec, "--key", "other.cose_key", cwd=work), 1, "no decryption key"),
        (run(*dec, "--key", "wrong.cose_key", cwd=work), 1, "does not unwrap"),
        (run(*dec, "--key", "missing.pem", cwd=work), 1, "cannot read key file"),
        (
            run(
                "decrypt",
                "fw.enc",
                "--info",
                "fw.bin",
                "--key",
                "kek.cose_key",
                "-o",
                "o",
                cwd=work,
            ),
            1,
            "cbor",
        ),
        (
            run(
                "decrypt",
                "nope.enc",
                "--info",
                "fw.cose",
                "--key",
                "kek.cose_key",
                "-o",
                "o",
                cwd=work,
            ),
            1,
            "no such file",
        ),
        (run(*enc, "--alg", "a129gcm", "--recipient", "kek.cose_key", cwd=work), 2, "--alg"),
        (
            run(
                *enc,
                "--alg",
                "a128ctr",
                "--recipient",
                "kek.cose_key",
                "--key-wrap",
                "rsa",
                cwd=work,
            ),
            2,
            "--key-wrap",
        ),
        (run(*enc, "--alg", "a128ctr", cwd=work), 2, "--recipient"),
        (
            run(
                *enc,
                "--alg",
                "a128ctr",
                "--recipient",
                "dev-pub.cose_key",
                "--key-wrap",
                "a128kw",
                cwd=work,
            ),
            1,
            "cannot be a key-encryption key",
        ),
        (
            run(
                "encrypt",
                "nope.bin",
                "--alg",
                "a128ctr",
                "--recipient",
                "kek.cose_key",
                "-o",
                "x",
                "--info",
                "y",
                cwd=work,
            ),
            1,
            "no such file",
        ),
        (
            run(
                "encrypt",
                "fw.bin",
                "--alg",
                "a128ctr",
                "--recipient",
                "kek.cose_key",
                "-o",
                "fw.bin",
                "--info",
                "y",
                cwd=work,
            ),
            2,
            "overwrite",
        ),
    ]
    for r, code, text in cases:
        assert_clean(r, code)
        assert text in r.stderr, r.stderr
    assert not (work / "out.bin").exists()


def test_module_import_is_light() -> None:
    """The CLI module imports no cryptography until a command runs."""
    code = (
        "import sys, suitkit.cli.encryption; "
        "print(any(m.startswith('cryptography') for m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False"
