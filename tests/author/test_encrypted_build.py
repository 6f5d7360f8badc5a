"""Encrypted payloads in descriptions (draft-ietf-suit-firmware-encryption §3, §6) and
`suitkit create --profile` (draft-ietf-suit-mti)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from suitkit.author.builder import build_from_description
from suitkit.cose.keys import CoseKey
from suitkit.encryption.decrypt import decrypt
from suitkit.format.codepoints import Command, CoseAlgorithm, Parameter
from suitkit.format.commands import OverrideParameters
from suitkit.format.digest import Digest

PLAINTEXT = b"firmware image " * 500


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "fw.bin").write_bytes(PLAINTEXT)
    kek = CoseKey.generate(CoseAlgorithm.A128KW, b"kek-1")
    kek.save(tmp_path / "kek.cose_key", private=True)
    return tmp_path


def _overrides(seq: object) -> dict[int, object]:
    out: dict[int, object] = {}
    for cmd in seq:  # type: ignore[attr-defined]
        if isinstance(cmd, OverrideParameters):
            out.update(cmd.parameters)
    return out


def test_fetch_form_stages_ciphertext_then_copy_decrypts(work: Path) -> None:
    desc = {
        "sequence-number": 1,
        "components": [
            {
                "payload": "fw.bin",
                "uri": "https://example.com/fw.enc",
                "encryption": {
                    "alg": "a128ctr",
                    "recipients": ["kek.cose_key"],
                    "payload-out": "fw.enc",
                },
            }
        ],
    }
    env = build_from_description(desc, work)
    m = env.manifest
    assert len(m.common.components) == 2  # the target and its staging component
    fetch = _overrides(m.payload_fetch)
    ciphertext = (work / "fw.enc").read_bytes()
    assert fetch[Parameter.URI] == "https://example.com/fw.enc"
    assert fetch[Parameter.IMAGE_DIGEST] == Digest.compute(ciphertext)  # checked before decryption
    install = _overrides(m.install)
    assert install[Parameter.SOURCE_COMPONENT] == 1
    codes = [c.code for c in m.install]  # type: ignore[union-attr]
    assert codes.index(Command.COPY) < codes.index(Command.IMAGE_MATCH)
    shared = _overrides(m.common.shared_sequence)
    assert shared[Parameter.IMAGE_DIGEST] == Digest.compute(PLAINTEXT)  # plaintext after it
    info = install[Parameter.ENCRYPTION_INFO].encoded  # type: ignore[attr-defined]
    kek = CoseKey.load(work / "kek.cose_key")
    assert decrypt(info, [kek], ciphertext) == PLAINTEXT


def test_write_form_carries_the_ciphertext_as_content(work: Path) -> None:
    desc = {
        "sequence-number": 1,
        "components": [
            {"payload": "fw.bin", "encryption": {"alg": "a128gcm", "recipients": ["kek.cose_key"]}}
        ],
    }
    env = build_from_description(desc, work)
    install = _overrides(env.manifest.install)
    kek = CoseKey.load(work / "kek.cose_key")
    info = install[Parameter.ENCRYPTION_INFO].encoded  # type: ignore[attr-defined]
    assert decrypt(info, [kek], install[Parameter.CONTENT]) == PLAINTEXT  # type: ignore[arg-type]


def _suitkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from suitkit.cli.entry import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_create_with_profile_accepts_a_conforming_build(work: Path) -> None:
    (work / "d.yaml").write_text(
        "sequence-number: 1\ncomponents:\n  - payload: fw.bin\n    uri: https://e.com/fw.enc\n"
        "    encryption: {alg: a128ctr, recipients: [kek.cose_key], payload-out: fw.enc}\n"
    )
    assert _suitkit("keygen", "--alg", "hmac256", "-o", "mac.key", cwd=work).returncode == 0
    r = _suitkit(
        "create",
        "d.yaml",
        "-o",
        "m.suit",
        "--key",
        "mac.key",
        "--profile",
        "suit-sha256-hmac-a128kw-a128ctr",
        cwd=work,
    )
    assert r.returncode == 0, r.stderr
    assert _suitkit("verify", "m.suit", "--key", "mac.key", cwd=work).returncode == 0


def test_create_with_profile_refuses_an_algorithm_outside_it(work: Path) -> None:
    (work / "d.yaml").write_text(
        "sequence-number: 1\ncomponents:\n  - payload: fw.bin\n    uri: https://e.com/fw.enc\n"
        "    encryption: {alg: a256gcm, recipients: [kek.cose_key], payload-out: fw.enc}\n"
    )
    _suitkit("keygen", "--alg", "hmac256", "-o", "mac.key", cwd=work)
    r = _suitkit(
        "create",
        "d.yaml",
        "-o",
        "m.suit",
        "--key",
        "mac.key",
        "--profile",
        "suit-sha256-hmac-a128kw-a128ctr",
        cwd=work,
    )
    assert r.returncode == 1
    assert "alg-unsupported" in r.stderr and "Traceback" not in r.stderr
    assert not (work / "m.suit").exists()
