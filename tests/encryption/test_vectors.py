"""The firmware-encryption vectors (draft-ietf-suit-firmware-encryption-24 §5, §7): the four
SUIT_Encryption_Info + payload pairs, the KDF context, and the five complete manifests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pytest

from suitkit.encryption import (
    CoseEncrypt,
    PayloadEncryptor,
    decrypt,
    decrypt_chunks,
    kdf_context,
    open_decryptor,
)
from suitkit.encryption.profiles import PROFILES, check_envelope
from suitkit.errors import AlgorithmUnsupportedError
from suitkit.format import cbor
from suitkit.format.authentication import authenticate
from suitkit.format.codepoints import CoseAlgorithm, ManifestKey, Parameter
from suitkit.format.commands import (
    CommandSequence,
    OverrideParameters,
    SetParameters,
    SuitCommand,
)
from suitkit.format.envelope import Envelope
from suitkit.format.parameters import EncryptionInfo, Parameters

from ._util import (
    FE,
    INFO_VECTORS,
    KEK,
    PLAINTEXT,
    RECIPIENT,
    TRUSTED,
    MiniDevice,
    chunked,
    info_vector,
    payload_vector,
)

MANIFESTS = [
    "suit-manifest-aes-kw-content.suit",
    "suit-manifest-aes-kw.suit",
    "suit-manifest-aes-kw-slot.suit",
    "suit-manifest-es-ecdh-content.suit",
    "suit-manifest-es-ecdh-dependency.suit",
]

#: draft §7.2: the payload fetched from coaps://example.com/encrypted-firmware
REMOTE = {"coaps://example.com/encrypted-firmware": payload_vector("aes-kw-aes-gcm")}


def test_kdf_context_matches_the_vector_other_is_a_byte_string() -> None:
    expected = (FE / "a128kw_kdf_context.gen.cbor").read_bytes()
    assert kdf_context(CoseAlgorithm.A128KW, cbor.dumps({1: -29})) == expected
    assert cbor.loads(expected)[3][2] == b"SUIT Payload Encryption"  # bstr, not tstr


@pytest.mark.parametrize("name", INFO_VECTORS)
def test_vector_decrypts_with_the_published_keys(name: str) -> None:
    info, ct = info_vector(name), payload_vector(name)
    assert decrypt(info, [KEK, RECIPIENT], ct) == PLAINTEXT
    # streamed one byte at a time, and in chunks straddling the GCM tag
    for size in (1, 5, 16, 17, 29, 1000):
        assert b"".join(decrypt_chunks(info, [RECIPIENT, KEK], chunked(ct, size))) == PLAINTEXT


@pytest.mark.parametrize("name", INFO_VECTORS)
def test_vector_decodes_and_keeps_its_bytes(name: str) -> None:
    raw = info_vector(name)
    enc = CoseEncrypt.decode(raw)
    assert enc.encode() == raw
    assert enc.ciphertext is None  # detached
    assert len(enc.recipients) == 1
    gcm = name.endswith("gcm")
    assert enc.alg is (CoseAlgorithm.A128GCM if gcm else CoseAlgorithm.A128CTR)
    assert len(enc.iv) == (12 if gcm else 16)  # shared/spec/README.md: the GCM IV is 12 bytes
    assert (enc.protected_bytes == b"") is (not gcm)  # draft §5: empty for CTR
    rec = enc.recipients[0]
    if name.startswith("es-ecdh"):
        assert rec.alg is CoseAlgorithm.ECDH_ES_A128KW
        assert rec.headers.protected_bytes == bytes.fromhex("a101381c")
        assert rec.ephemeral_key.curve is not None and rec.ephemeral_key.curve.name == "P_256"
    else:
        assert rec.alg is CoseAlgorithm.A128KW
        assert rec.kid == b"kid-1"
        assert rec.headers.protected_bytes == b""


def test_vector_chooses_the_device_key_that_unwraps() -> None:
    dec = open_decryptor(info_vector("es-ecdh-aes-gcm"), [KEK, RECIPIENT])
    assert dec.key is RECIPIENT and dec.aead
    dec = open_decryptor(info_vector("aes-kw-aes-ctr"), [RECIPIENT, KEK])
    assert dec.key is KEK and not dec.aead


@pytest.mark.parametrize(
    ("name", "cek", "iv"),
    [
        ("aes-kw-aes-gcm", "15F785B5C931414411B4B71373A9C0F7", "F14AAB9D81D51F7AD943FE87"),
        ("aes-kw-aes-ctr", "261DE6165070FB8951EC5D7B92A065FE", "DAE613B2E0DC55F4322BE38BDBA9DC68"),
    ],
)
def test_aes_kw_vectors_are_reproduced_byte_for_byte(name: str, cek: str, iv: str) -> None:
    """AES-KW is deterministic: with the draft's CEK and IV the encoder writes the vector."""
    alg = "a128gcm" if name.endswith("gcm") else "a128ctr"
    enc = PayloadEncryptor(alg, [KEK], cek=bytes.fromhex(cek), iv=bytes.fromhex(iv))
    ciphertext = enc.update(PLAINTEXT) + enc.finalize()
    assert enc.encryption_info == info_vector(name)
    assert ciphertext == payload_vector(name)


# --- the complete manifests (draft §7) ---------------------------------------------------------


def _parameters(seq: Iterable[SuitCommand]) -> list[Parameters]:
    return [c.parameters for c in seq if isinstance(c, OverrideParameters | SetParameters)]


def _encryption_infos(seq: CommandSequence) -> list[EncryptionInfo]:
    return [
        p[Parameter.ENCRYPTION_INFO] for p in _parameters(seq) if Parameter.ENCRYPTION_INFO in p
    ]


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_authenticates_and_its_encryption_info_decrypts(name: str) -> None:
    data = (FE / name).read_bytes()
    auth = authenticate(data, TRUSTED)
    install = auth.member(ManifestKey.INSTALL)
    assert isinstance(install, CommandSequence)
    infos = _encryption_infos(install)
    assert len(infos) == 1
    params = next(p for p in _parameters(install) if Parameter.ENCRYPTION_INFO in p)
    # the content forms carry the ciphertext as parameter 18, the others fetch it
    ciphertext = params.get(Parameter.CONTENT, REMOTE["coaps://example.com/encrypted-firmware"])
    assert decrypt(infos[0], [KEK, RECIPIENT], ciphertext) == PLAINTEXT


@pytest.mark.parametrize(
    "name", ["suit-manifest-aes-kw.suit", "suit-manifest-aes-kw-slot.suit", *MANIFESTS[:1]]
)
def test_manifest_install_runs_on_a_minimal_device(name: str) -> None:
    """Fetch into the staging component, then copy (or write) decrypts into component 0."""
    auth = authenticate((FE / name).read_bytes(), TRUSTED)
    install = auth.member(ManifestKey.INSTALL)
    assert isinstance(install, CommandSequence)
    dev = MiniDevice(auth.manifest.common.components, [KEK], REMOTE)
    dev.run(install)
    assert dev.content(0) == PLAINTEXT
    assert dev.decrypted == [0]


def test_dependency_manifest_plaintext_matches_the_dependency_image_digest() -> None:
    """The dependent sets encryption-info and content; the integrated dependency writes and
    image-matches the plaintext (draft §7.4)."""
    data = (FE / "suit-manifest-es-ecdh-dependency.suit").read_bytes()
    auth = authenticate(data, TRUSTED)
    dependency = Envelope.decode(auth.envelope.integrated_payloads["#dependency-manifest"])
    shared = dependency.manifest.common.shared_sequence
    assert shared is not None
    digest = next(
        p[Parameter.IMAGE_DIGEST] for p in _parameters(shared) if Parameter.IMAGE_DIGEST in p
    )
    install = auth.member(ManifestKey.INSTALL)
    assert isinstance(install, CommandSequence)
    dev = MiniDevice(auth.manifest.common.components, [RECIPIENT])
    dev.run(CommandSequence(install[:4]))  # set-component-index 0, override (content + info)
    assert dev.params[0][Parameter.ENCRYPTION_INFO] == _encryption_infos(install)[0]
    dep_install = dependency.manifest.install
    assert isinstance(dep_install, CommandSequence)
    dev.params[0][Parameter.IMAGE_DIGEST] = digest
    dev.run(dep_install)  # write (decrypts), image-match on the plaintext
    assert dev.content(0) == PLAINTEXT
    assert digest.matches(hashlib.sha256(PLAINTEXT).digest())


def test_es_ecdh_manifests_fit_the_esp256_a128gcm_profile_and_no_other() -> None:
    for name in ("suit-manifest-es-ecdh-content.suit", "suit-manifest-es-ecdh-dependency.suit"):
        auth = authenticate((FE / name).read_bytes(), TRUSTED)
        check_envelope(auth, "suit-sha256-esp256-ecdh-a128gcm")
        for other in PROFILES:
            if other != "suit-sha256-esp256-ecdh-a128gcm":
                with pytest.raises(AlgorithmUnsupportedError):
                    check_envelope(auth, other)


@pytest.mark.parametrize("name", MANIFESTS[:3])
def test_aes_kw_manifests_fit_no_profile(name: str) -> None:
    """HMAC + A128KW + A128GCM is no MTI profile (the HMAC profile uses A128CTR)."""
    auth = authenticate((FE / name).read_bytes(), TRUSTED)
    for p in PROFILES:
        with pytest.raises(AlgorithmUnsupportedError) as exc:
            check_envelope(auth, p)
        assert exc.value.reason.spec_name == "alg-unsupported"
