"""Per-algorithm signing, verification, MAC and key wrap (RFC 9053, RFC 9864, RFC 8778)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from suitkit.cose import CoseKey, KeySigner, Signer
from suitkit.cose import algorithms as algs
from suitkit.errors import AlgorithmUnsupportedError, AuthenticationError, KeyFormatError
from suitkit.format.codepoints import CoseAlgorithm, CoseKeyType

from ._util import SIGNATURE_ALGS, make_key

A = CoseAlgorithm


@pytest.mark.parametrize("alg", SIGNATURE_ALGS, ids=lambda a: a.spec_name)
def test_sign_then_verify_for_every_signature_algorithm(alg: CoseAlgorithm, tmp_path: Path) -> None:
    key = make_key(alg, tmp_path)
    sig = algs.sign(key, alg, b"to be signed")
    algs.verify(key.public_key(), alg, b"to be signed", sig)
    with pytest.raises(AuthenticationError):
        algs.verify(key.public_key(), alg, b"to be signed!", sig)
    flipped = bytes([sig[0] ^ 0x80]) + sig[1:]
    with pytest.raises(AuthenticationError):
        algs.verify(key.public_key(), alg, b"to be signed", flipped)
    with pytest.raises(AuthenticationError):
        algs.verify(key.public_key(), alg, b"to be signed", sig + b"\x00")


@pytest.mark.parametrize(
    ("alg", "width", "hash_alg"),
    [
        (A.ES256, 32, hashes.SHA256()),
        (A.ESP256, 32, hashes.SHA256()),
        (A.ES384, 48, hashes.SHA384()),
        (A.ESP384, 48, hashes.SHA384()),
        (A.ESP512, 66, hashes.SHA512()),
    ],
    ids=lambda v: getattr(v, "spec_name", str(v)),
)
def test_ecdsa_signature_is_raw_r_s_of_fixed_width_not_der(
    alg: CoseAlgorithm, width: int, hash_alg: hashes.HashAlgorithm
) -> None:
    key = CoseKey.generate(alg)
    for i in range(8):  # r or s with leading zero bytes still take the full width
        msg = b"m%d" % i
        sig = algs.sign(key, alg, msg)
        assert len(sig) == 2 * width
        r, s = int.from_bytes(sig[:width], "big"), int.from_bytes(sig[width:], "big")
        key.crypto_public_key.verify(encode_dss_signature(r, s), msg, ec.ECDSA(hash_alg))


def test_es256_and_esp256_both_verify_with_a_p256_key(example_private: CoseKey) -> None:
    sig = algs.sign(example_private, A.ES256, b"x")
    algs.verify(example_private.public_key(), A.ESP256, b"x", sig)
    restricted = example_private.public_key().with_alg(A.ESP256)
    algs.verify(restricted, A.ES256, b"x", sig)


def test_ed25519_matches_rfc8032_test_vector_1() -> None:
    # RFC 8032 §7.1, TEST 1 (empty message)
    key = CoseKey.from_cose_key(
        {
            1: 1,
            -1: 6,
            -4: bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
        }
    )
    assert key.crypto_public_key.public_bytes_raw().hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert algs.sign(key, A.ED25519, b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_key_that_does_not_fit_the_algorithm_is_refused(example_private: CoseKey) -> None:
    with pytest.raises(KeyFormatError):
        algs.sign(example_private, A.ES384, b"x")
    with pytest.raises(KeyFormatError):
        algs.sign(example_private, A.ED25519, b"x")
    with pytest.raises(KeyFormatError):
        algs.sign(example_private.public_key(), A.ESP256, b"x")
    with pytest.raises(KeyFormatError):
        algs.sign(CoseKey.generate(A.ML_DSA_44), A.ML_DSA_65, b"x")
    with pytest.raises(KeyFormatError):
        algs.mac(CoseKey.generate(A.A128KW), A.HMAC_256_256, b"x")
    with pytest.raises(AlgorithmUnsupportedError):
        algs.sign(example_private, -36, b"x")  # ES512: not implemented by suitkit
    with pytest.raises(AlgorithmUnsupportedError):
        algs.sign(example_private, A.A128GCM, b"x")


def test_key_signer_defaults_to_fully_specified_algorithms(example_private: CoseKey) -> None:
    assert KeySigner(example_private).alg is A.ESP256
    assert KeySigner(example_private, A.ES256).alg is A.ES256
    assert KeySigner(CoseKey.generate(A.ESP384).with_alg(None)).alg is A.ESP384
    assert KeySigner(CoseKey.generate(A.ESP512).with_alg(None)).alg is A.ESP512
    assert KeySigner(CoseKey.generate(A.EDDSA).with_alg(None)).alg is A.ED25519
    assert KeySigner(CoseKey.generate(A.ES256)).alg is A.ES256  # the key's own alg wins
    assert isinstance(KeySigner(example_private), Signer)


def test_key_signer_refuses_public_and_non_signing_keys(example_public: CoseKey) -> None:
    with pytest.raises(KeyFormatError):
        KeySigner(example_public)
    with pytest.raises(KeyFormatError):
        KeySigner(CoseKey.generate(A.ECDH_ES_HKDF_256))
    with pytest.raises(KeyFormatError):
        KeySigner(CoseKey.generate(A.HMAC_256_256))
    with pytest.raises(TypeError):
        KeySigner(b"not a key")  # type: ignore[arg-type]


def test_hmac_256_256_is_the_full_32_byte_hmac_sha256_tag() -> None:
    import hashlib
    import hmac

    key = CoseKey.generate(A.HMAC_256_256)
    tag = algs.mac(key, A.HMAC_256_256, b"data")
    assert tag == hmac.new(key.secret(), b"data", hashlib.sha256).digest()
    algs.verify_mac(key, A.HMAC_256_256, b"data", tag)
    with pytest.raises(AuthenticationError):
        algs.verify_mac(key, A.HMAC_256_256, b"data", tag[:16])
    with pytest.raises(AuthenticationError):
        algs.verify_mac(key, A.HMAC_256_256, b"datb", tag)


def test_aes_key_wrap_matches_rfc3394_section_4_1() -> None:
    kek = CoseKey.from_cose_key({1: CoseKeyType.SYMMETRIC, -1: bytes(range(16))})
    cek = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    wrapped = algs.key_wrap(kek, A.A128KW, cek)
    assert wrapped.hex().upper() == "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"
    assert algs.key_unwrap(kek, A.A128KW, wrapped) == cek
    with pytest.raises(AuthenticationError):
        algs.key_unwrap(kek, A.A128KW, wrapped[:-1] + b"\x00")
    with pytest.raises(AuthenticationError):
        algs.key_unwrap(kek, A.A128KW, wrapped[:5])
    with pytest.raises(KeyFormatError):
        algs.key_wrap(kek, A.A256KW, cek)


def test_verifier_is_cached_per_key_and_algorithm(example_public: CoseKey) -> None:
    assert algs.verifier(example_public, A.ES256) is algs.verifier(example_public, A.ES256)


def test_hss_signature_with_trailing_bytes_is_rejected(hss_key: CoseKey) -> None:
    sig = algs.sign(hss_key, A.HSS_LMS, b"x")
    algs.verify(hss_key, A.HSS_LMS, b"x", sig)
    with pytest.raises(AuthenticationError):
        algs.verify(hss_key, A.HSS_LMS, b"x", sig + b"\x00" * 4)
    with pytest.raises(AuthenticationError):
        algs.verify(hss_key, A.HSS_LMS, b"x", sig[:-1])
    with pytest.raises(AuthenticationError):
        algs.verify(hss_key, A.HSS_LMS, b"x", b"")


@pytest.mark.parametrize("size", [32, 48, 66])
def test_ecdsa_der_is_encode_dss_signature(size: int) -> None:
    """The r || s -> DER conversion of the verify path gives the bytes cryptography's own
    encoder gives, for leading zero bytes, high bits (sign padding), zero and maximal values."""
    import os
    import random

    rng = random.Random(size)
    cases = [bytes(2 * size), b"\xff" * (2 * size), b"\x00" * size + b"\x80" * size]
    for _ in range(3000):
        sig = bytearray(os.urandom(2 * size))
        for part in (0, size):
            roll = rng.random()
            if roll < 0.3:
                zeros = rng.randint(0, size)
                sig[part : part + zeros] = bytes(zeros)
            elif roll < 0.5:
                sig[part] |= 0x80
        cases.append(bytes(sig))
    for sig in cases:
        r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
        assert algs.ecdsa_der(sig, size) == encode_dss_signature(r, s), sig.hex()
