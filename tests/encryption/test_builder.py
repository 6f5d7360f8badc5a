"""Author side: an ``encryption`` block in a component description becomes an encrypted
payload and the command sequence of draft §3 / §6.1; the manifest signs, authenticates and
installs on a minimal device."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from suitkit.author.builder import assemble
from suitkit.author.signing import sign_envelope
from suitkit.author.values import DescriptionError
from suitkit.cose import CoseKey
from suitkit.encryption import CoseEncrypt, decrypt
from suitkit.encryption.builder import (
    encrypt_component,
    staging_component_id,
)
from suitkit.errors import SuitError
from suitkit.format import cbor
from suitkit.format.authentication import authenticate
from suitkit.format.codepoints import Command, CoseAlgorithm, ManifestKey, Parameter
from suitkit.format.commands import CommandSequence

from ._util import MiniDevice

A = CoseAlgorithm
TARGET = (b"plaintext-firmware",)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "fw.bin").write_bytes(os.urandom(5000))
    CoseKey.generate(A.A128KW, b"kek-1").save(tmp_path / "kek.cose_key", private=True)
    dev = CoseKey.generate(A.ECDH_ES_A128KW, b"dev-1").with_alg(None)
    dev.save(tmp_path / "dev.cose_key", private=True)
    dev.public_key().save(tmp_path / "dev-pub.pem")
    return tmp_path


def keys(workdir: Path) -> list[CoseKey]:
    return [CoseKey.load(workdir / "kek.cose_key"), CoseKey.load(workdir / "dev.cose_key")]


def describe(**encryption: object) -> dict[str, object]:
    return {
        "id": ["plaintext-firmware"],
        "payload": "fw.bin",
        "encryption": {
            "alg": "a128ctr",
            "recipients": [
                "kek.cose_key",
                {"key": "dev-pub.pem", "alg": "ECDH-ES + A128KW", "kid": "dev-1"},
            ],
            **encryption,
        },
    }


def test_encrypt_component_measures_plaintext_and_ciphertext(workdir: Path) -> None:
    enc = encrypt_component(describe(**{"payload-out": "fw.enc"}), workdir)
    plain = (workdir / "fw.bin").read_bytes()
    cipher = (workdir / "fw.enc").read_bytes()
    assert enc.ciphertext_path == workdir / "fw.enc" and enc.ciphertext is None
    assert enc.plaintext_size == 5000 and enc.ciphertext_size == 5000
    assert enc.plaintext_digest.value == hashlib.sha256(plain).digest()
    assert enc.ciphertext_digest.value == hashlib.sha256(cipher).digest()
    info = CoseEncrypt.decode(enc.encryption_info.encoded)
    assert [r.alg for r in info.recipients] == [A.A128KW, A.ECDH_ES_A128KW]
    assert [r.kid for r in info.recipients] == [b"kek-1", b"dev-1"]
    for k in keys(workdir):
        assert decrypt(enc.encryption_info, [k], cipher) == plain


def test_in_memory_ciphertext_and_gcm(workdir: Path) -> None:
    enc = encrypt_component(describe(alg="a128gcm"), workdir)
    assert enc.ciphertext_path is None and enc.ciphertext is not None
    assert enc.ciphertext_size == 5016  # the 16-byte tag
    assert enc.ciphertext_digest.value == hashlib.sha256(enc.ciphertext_bytes()).digest()


@pytest.mark.parametrize("alg", ["a128ctr", "a256gcm", "chacha20-poly1305"])
def test_fetch_and_copy_form_installs_through_a_staging_component(workdir: Path, alg: str) -> None:
    enc = encrypt_component(describe(alg=alg, **{"payload-out": "fw.enc"}), workdir)
    staging = staging_component_id(TARGET, enc)
    assert staging == (b"plaintext-firmware", b"encrypted")
    uri = "https://example.com/fw.enc"
    install = enc.install_commands(0, staging=1, uri=uri)
    assert [c.code for c in install] == [
        Command.SET_COMPONENT_INDEX,
        Command.OVERRIDE_PARAMETERS,  # ciphertext digest + size + uri
        Command.FETCH,
        Command.IMAGE_MATCH,  # before decryption (draft §6.1.2)
        Command.SET_COMPONENT_INDEX,
        Command.OVERRIDE_PARAMETERS,  # plaintext digest + size + encryption-info + source
        Command.COPY,
        Command.IMAGE_MATCH,  # after decryption (draft §6.1.1)
    ]
    p = install[5].parameters  # type: ignore[union-attr]
    assert list(p) == [
        Parameter.IMAGE_DIGEST,
        Parameter.IMAGE_SIZE,
        Parameter.ENCRYPTION_INFO,
        Parameter.SOURCE_COMPONENT,
    ]
    env = assemble(
        sequence_number=7,
        components=(TARGET, staging),
        shared_sequence=None,
        sequences={ManifestKey.INSTALL: CommandSequence(install)},
    )
    signer = CoseKey.generate(A.ESP256)
    signed = sign_envelope(env, [signer])
    auth = authenticate(signed.encode(), [signer.public_key()])
    seq = auth.member(ManifestKey.INSTALL)
    assert isinstance(seq, CommandSequence)
    remote = {uri: (workdir / "fw.enc").read_bytes()}
    dev = MiniDevice(auth.manifest.common.components, keys(workdir)[1:], remote)
    dev.run(seq)
    assert dev.content(0) == (workdir / "fw.bin").read_bytes()
    assert dev.decrypted == [0]
    # the diag shows the encryption info as a COSE_Encrypt
    text = cbor.diag(auth.manifest.to_diag())
    assert "encryption-info" in text


def test_write_form_carries_the_ciphertext_as_content(workdir: Path) -> None:
    enc = encrypt_component(describe(alg="a128gcm"), workdir)
    install = enc.install_commands(0)
    assert [c.code for c in install] == [
        Command.SET_COMPONENT_INDEX,
        Command.OVERRIDE_PARAMETERS,
        Command.WRITE,
        Command.IMAGE_MATCH,
    ]
    assert install[1].parameters[Parameter.CONTENT] == enc.ciphertext  # type: ignore[union-attr]
    env = assemble(
        sequence_number=1,
        components=(TARGET,),
        shared_sequence=None,
        sequences={ManifestKey.INSTALL: CommandSequence(install)},
    )
    mac = CoseKey.generate(A.HMAC_256_256)
    auth = authenticate(sign_envelope(env, [mac]).encode(), [mac])
    seq = auth.member(ManifestKey.INSTALL)
    assert isinstance(seq, CommandSequence)
    dev = MiniDevice(auth.manifest.common.components, keys(workdir))
    dev.run(seq)
    assert dev.content(0) == (workdir / "fw.bin").read_bytes()


def test_integrated_payload_form(workdir: Path) -> None:
    enc = encrypt_component(describe(**{"staging-id": ["enc"]}), workdir)
    staging = staging_component_id(TARGET, enc)
    assert staging == (b"enc",)
    install = enc.install_commands(0, staging=1, uri="#fw.enc", set_plaintext_digest=False)
    env = assemble(
        sequence_number=1,
        components=(TARGET, staging),
        shared_sequence=None,
        sequences={ManifestKey.INSTALL: CommandSequence(install)},
        integrated_payloads={"#fw.enc": enc.ciphertext_bytes()},
    )
    signer = CoseKey.generate(A.ED25519)
    auth = authenticate(sign_envelope(env, [signer]).encode(), [signer.public_key()])
    seq = auth.member(ManifestKey.INSTALL)
    assert isinstance(seq, CommandSequence)
    dev = MiniDevice(auth.manifest.common.components, keys(workdir))
    # the plaintext digest is normally set by the shared sequence; set it here the same way
    dev.params[0] = {
        Parameter.IMAGE_DIGEST: enc.plaintext_digest,
        Parameter.IMAGE_SIZE: enc.plaintext_size,
    }
    dev.run(seq, auth.envelope.integrated_payloads)
    assert dev.content(0) == (workdir / "fw.bin").read_bytes()


def test_tampered_ciphertext_is_caught_before_decryption(workdir: Path) -> None:
    enc = encrypt_component(describe(**{"payload-out": "fw.enc"}), workdir)
    uri = "https://example.com/fw.enc"
    install = CommandSequence(enc.install_commands(0, staging=1, uri=uri))
    bad = bytearray((workdir / "fw.enc").read_bytes())
    bad[0] ^= 1
    dev = MiniDevice((TARGET, (b"s",)), keys(workdir), {uri: bytes(bad)})
    with pytest.raises(SuitError, match="image digest"):
        dev.run(install)
    assert dev.decrypted == []  # the copy (and its decryption) never ran


def test_install_commands_arguments(workdir: Path) -> None:
    enc = encrypt_component(describe(), workdir)
    with pytest.raises(ValueError):
        enc.install_commands(0, uri="https://x")  # no staging component
    with pytest.raises(ValueError):
        enc.install_commands(0, staging=0, uri="https://x")
    with pytest.raises(ValueError):
        enc.install_commands(0, staging=1)
    cmds = enc.install_commands(0, staging=1, uri="https://x", check_ciphertext=False)
    assert Parameter.IMAGE_DIGEST not in cmds[1].parameters  # type: ignore[union-attr]
    assert len(cmds) == 7


@pytest.mark.parametrize(
    ("component", "match"),
    [
        ({"payload": "fw.bin", "encryption": "a128ctr"}, "is a mapping"),
        ({"encryption": {"alg": "a128ctr", "recipients": ["kek.cose_key"]}}, "payload file"),
        ({"payload": "fw.bin", "encryption": {"recipients": ["kek.cose_key"]}}, "needs alg"),
        (
            {"payload": "fw.bin", "encryption": {"alg": "rot13", "recipients": ["kek.cose_key"]}},
            "unknown content encryption",
        ),
        ({"payload": "fw.bin", "encryption": {"alg": "a128ctr"}}, "at least one recipient"),
        (
            {"payload": "fw.bin", "encryption": {"alg": "a128ctr", "recipients": ["nope.pem"]}},
            "cannot read key file",
        ),
        (
            {
                "payload": "fw.bin",
                "encryption": {"alg": "a128ctr", "recipients": [{"key": "kek.cose_key", "x": 1}]},
            },
            "unknown recipient field",
        ),
        (
            {
                "payload": "fw.bin",
                "encryption": {
                    "alg": "a128ctr",
                    "recipients": [{"key": "kek.cose_key", "alg": "a256kw"}],
                },
            },
            "cannot be a key-encryption key",
        ),
        (
            {
                "payload": "fw.bin",
                "encryption": {
                    "alg": "a128ctr",
                    "recipients": [{"key": "dev-pub.pem", "alg": "rsa-oaep"}],
                },
            },
            "unknown key distribution",
        ),
        (
            {"payload": "fw.bin", "encryption": {"alg": "a128ctr", "recipients": ["k"], "y": 1}},
            "unknown encryption field",
        ),
        (
            {
                "payload": "missing.bin",
                "encryption": {"alg": "a128ctr", "recipients": ["kek.cose_key"]},
            },
            "cannot encrypt",
        ),
        (
            {
                "payload": "fw.bin",
                "content": "x",
                "encryption": {"alg": "a128ctr", "recipients": ["kek.cose_key"]},
            },
            "content is the plaintext",
        ),
        (
            {
                "payload": "fw.bin",
                "encryption": {
                    "alg": "a128ctr",
                    "recipients": ["kek.cose_key"],
                    "payload-out": "fw.bin",
                },
            },
            "must not overwrite",
        ),
    ],
)
def test_description_errors_name_the_field(
    workdir: Path, component: dict[str, object], match: str
) -> None:
    with pytest.raises(DescriptionError, match=match) as exc:
        encrypt_component(component, workdir, "components[0]")
    assert exc.value.path is not None and exc.value.path.startswith("components[0]")


def test_kid_in_description_text_and_hex(workdir: Path) -> None:
    for kid, expected in (("abc", b"abc"), ("h'0102'", b"\x01\x02")):
        enc = encrypt_component(describe(recipients=[{"key": "kek.cose_key", "kid": kid}]), workdir)
        assert CoseEncrypt.decode(enc.encryption_info.encoded).recipients[0].kid == expected
