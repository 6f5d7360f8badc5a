"""Encrypt and decrypt with every content algorithm and every content key distribution;
streaming in arbitrary chunks; recipient choice by kid; each failure with its report reason."""

from __future__ import annotations

import io
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from suitkit.cose import CoseKey
from suitkit.encryption import (
    CoseEncrypt,
    NoDecryptionKeyError,
    PayloadEncryptor,
    Recipient,
    decrypt,
    decrypt_chunks,
    encrypt_payload,
    open_decryptor,
)
from suitkit.encryption.content import enc_structure
from suitkit.errors import (
    AlgorithmUnsupportedError,
    AuthenticationError,
    KeyFormatError,
    SuitError,
)
from suitkit.format.codepoints import CoseAlgorithm, CoseCurve

from ._util import chunked

A = CoseAlgorithm
CONTENT = [
    A.A128GCM,
    A.A192GCM,
    A.A256GCM,
    A.CHACHA20_POLY1305,
    A.A128CTR,
    A.A192CTR,
    A.A256CTR,
]
AEAD = {A.A128GCM, A.A192GCM, A.A256GCM, A.CHACHA20_POLY1305}


def kek(alg: CoseAlgorithm, kid: bytes | None = None) -> CoseKey:
    return CoseKey.generate(alg, kid)


def ecdh(curve: CoseCurve, kid: bytes | None = None) -> CoseKey:
    return CoseKey.generate(A.ECDH_ES_A128KW, kid, curve=curve).with_alg(None)


# (device private key, how the author names the recipient)
DISTRIBUTIONS = {
    "A128KW": lambda: (k := kek(A.A128KW, b"k1"), Recipient(k)),
    "A192KW": lambda: (k := kek(A.A192KW, b"k1"), Recipient(k)),
    "A256KW": lambda: (k := kek(A.A256KW, b"k1"), Recipient(k)),
    "ECDH-ES+A128KW P-256": lambda: (k := ecdh(CoseCurve.P_256, b"d"), Recipient(k.public_key())),
    "ECDH-ES+A256KW P-256": lambda: (
        k := ecdh(CoseCurve.P_256),
        Recipient(k.public_key(), A.ECDH_ES_A256KW),
    ),
    "ECDH-ES+A128KW P-384": lambda: (k := ecdh(CoseCurve.P_384), Recipient(k.public_key())),
    "ECDH-ES+A256KW P-384": lambda: (
        k := ecdh(CoseCurve.P_384, b"d"),
        Recipient(k.public_key(), A.ECDH_ES_A256KW),
    ),
    "ECDH-ES+A192KW P-521": lambda: (
        k := ecdh(CoseCurve.P_521),
        Recipient(k.public_key(), A.ECDH_ES_A192KW),
    ),
    "ECDH-ES+A128KW X25519": lambda: (k := ecdh(CoseCurve.X25519, b"x"), Recipient(k.public_key())),
    "ECDH-ES+A256KW X25519": lambda: (
        k := ecdh(CoseCurve.X25519),
        Recipient(k.public_key(), A.ECDH_ES_A256KW),
    ),
}


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
@pytest.mark.parametrize("alg", CONTENT, ids=[a.spec_name for a in CONTENT])
def test_every_algorithm_and_key_distribution_round_trips(alg: CoseAlgorithm, dist: str) -> None:
    device, recipient = DISTRIBUTIONS[dist]()
    payload = os.urandom(1000)
    ciphertext, info = encrypt_payload(payload, alg, [recipient])
    assert len(ciphertext) == len(payload) + (16 if alg in AEAD else 0)
    assert decrypt(info, [device], ciphertext) == payload
    assert b"".join(decrypt_chunks(info, device, chunked(ciphertext, 33))) == payload
    enc = CoseEncrypt.decode(info)
    assert enc.alg is alg
    assert enc.recipients[0].alg is recipient.algorithm
    assert (enc.protected_bytes == b"") is (alg not in AEAD)


@settings(max_examples=60, deadline=None)
@given(
    alg=st.sampled_from(CONTENT),
    payload=st.binary(max_size=300),
    sizes=st.lists(st.integers(0, 70), min_size=1, max_size=20),
)
def test_any_chunking_gives_the_same_result(
    alg: CoseAlgorithm, payload: bytes, sizes: list[int]
) -> None:
    key = _SHARED_KEK
    enc = PayloadEncryptor(alg, [key])
    parts, pos = [], 0
    for n in sizes:  # encrypt in the given chunk sizes (the rest at once)
        parts.append(enc.update(payload[pos : pos + n]))
        pos += n
    parts.append(enc.update(payload[pos:]))
    ciphertext = b"".join(parts) + enc.finalize()
    chunks, pos = [], 0
    for n in reversed(sizes):  # decrypt in other chunk sizes, empty chunks included
        chunks.append(ciphertext[pos : pos + n])
        pos += n
    chunks.append(ciphertext[pos:])
    assert b"".join(decrypt_chunks(enc.encryption_info, [key], chunks)) == payload


_SHARED_KEK = CoseKey.generate(A.A128KW)


def test_aead_outputs_equal_the_one_shot_primitives() -> None:
    """The streaming GCM and the RFC 8439 composition of ChaCha20 + Poly1305 give exactly what
    cryptography's one-shot AEADs give, AAD = Enc_structure (RFC 9052 §5.3)."""
    payload = os.urandom(5000)
    for alg, aead_cls, klen in (
        (A.A128GCM, AESGCM, 16),
        (A.A256GCM, AESGCM, 32),
        (A.CHACHA20_POLY1305, ChaCha20Poly1305, 32),
    ):
        cek, iv = os.urandom(klen), os.urandom(12)
        enc = PayloadEncryptor(alg, [_SHARED_KEK], cek=cek, iv=iv)
        ours = b"".join(enc.update(c) for c in chunked(payload, 777)) + enc.finalize()
        aad = enc_structure(enc.info.protected_bytes)
        if alg is A.A128GCM:
            assert aad == b"\x83\x67Encrypt\x43\xa1\x01\x01\x40"
        assert ours == aead_cls(cek).encrypt(iv, payload, aad)


def test_ctr_equals_plain_aes_ctr_from_the_iv() -> None:
    """draft §5.2: the counter starts at the IV and increments per 16-byte block."""
    payload = os.urandom(1000)
    cek, iv = os.urandom(16), os.urandom(16)
    enc = PayloadEncryptor(A.A128CTR, [_SHARED_KEK], cek=cek, iv=iv)
    ours = enc.update(payload) + enc.finalize()
    ref = Cipher(algorithms.AES(cek), modes.CTR(iv)).encryptor().update(payload)
    assert ours == ref


def test_empty_payload() -> None:
    for alg in CONTENT:
        ciphertext, info = encrypt_payload(b"", alg, [_SHARED_KEK])
        assert decrypt(info, [_SHARED_KEK], ciphertext) == b""


def test_encrypt_payload_reads_files_and_iterables() -> None:
    payload = os.urandom(3000)
    ct, info = encrypt_payload(io.BytesIO(payload), "a128gcm", [_SHARED_KEK], chunk_size=100)
    assert decrypt(info, [_SHARED_KEK], ct) == payload
    ct, info = encrypt_payload(chunked(payload, 7), "A256CTR", [kek(A.A256KW)])
    assert len(ct) == 3000


# --- several recipients -------------------------------------------------------------------------


def test_several_recipients_share_one_ciphertext_each_device_decrypts() -> None:
    """draft §4.1.2 / §4.2.2: one CEK, one COSE_recipient per device."""
    devices = [
        kek(A.A128KW, b"dev-a"),
        kek(A.A256KW, b"dev-b"),
        ecdh(CoseCurve.P_256, b"dev-c"),
        ecdh(CoseCurve.X25519, b"dev-d"),
    ]
    recipients = [Recipient(d if d.is_symmetric else d.public_key()) for d in devices]
    payload = os.urandom(2048)
    ciphertext, info = encrypt_payload(payload, A.A128GCM, recipients)
    assert len(CoseEncrypt.decode(info).recipients) == 4
    for i, d in enumerate(devices):
        dec = open_decryptor(info, [d])
        assert dec.recipient.index == i and dec.recipient.kid == d.kid
        assert dec.update(ciphertext) + dec.finalize() == payload


def test_recipient_is_chosen_by_kid_and_other_kids_are_never_tried() -> None:
    a, b = kek(A.A128KW, b"a"), kek(A.A128KW, b"b")
    _, info = encrypt_payload(b"fw", A.A128CTR, [Recipient(a)])
    assert open_decryptor(info, [b, a]).key is a
    # a device key with the *same material* but another kid is not tried
    impostor = a.with_kid(b"z")
    with pytest.raises(NoDecryptionKeyError) as exc:
        open_decryptor(info, [impostor, b])
    assert exc.value.reason.spec_name == "operation-failed"
    assert "'a'" in exc.value.message
    # a device key without kid is tried after the ones with the named kid
    assert open_decryptor(info, [a.with_kid(None)]).key.kid is None


def test_recipient_without_kid_tries_every_fitting_key() -> None:
    good = ecdh(CoseCurve.P_256)
    others = [ecdh(CoseCurve.P_256, b"1"), ecdh(CoseCurve.P_384), kek(A.A128KW)]
    _, info = encrypt_payload(b"fw", A.A128CTR, [Recipient(good.public_key(), include_kid=False)])
    assert CoseEncrypt.decode(info).recipients[0].kid is None
    assert open_decryptor(info, [*others, good]).key is good


# --- failures ------------------------------------------------------------------------------------


def test_wrong_key_is_unauthorised() -> None:
    for device, recipient in (
        (kek(A.A128KW, b"k"), Recipient(kek(A.A128KW, b"k"))),
        (ecdh(CoseCurve.P_256, b"k"), Recipient(ecdh(CoseCurve.P_256, b"k").public_key())),
        (ecdh(CoseCurve.X25519), Recipient(ecdh(CoseCurve.X25519).public_key())),
    ):
        ct, info = encrypt_payload(b"firmware", A.A128GCM, [recipient])
        with pytest.raises(AuthenticationError, match="does not unwrap") as exc:
            decrypt(info, [device], ct)
        assert exc.value.reason.spec_name == "unauthorised"


@pytest.mark.parametrize("alg", [A.A128GCM, A.A256GCM, A.CHACHA20_POLY1305])
def test_altered_ciphertext_or_tag_fails_in_finalize(alg: CoseAlgorithm) -> None:
    payload = os.urandom(100)
    ct, info = encrypt_payload(payload, alg, [_SHARED_KEK])
    for pos in (0, 50, len(ct) - 17, len(ct) - 16, len(ct) - 1):
        bad = bytearray(ct)
        bad[pos] ^= 1
        dec = open_decryptor(info, [_SHARED_KEK])
        dec.update(bytes(bad))  # unauthenticated output: a caller stages it
        with pytest.raises(AuthenticationError, match="tag does not verify") as exc:
            dec.finalize()
        assert exc.value.reason.spec_name == "unauthorised"
    with pytest.raises(AuthenticationError, match="shorter than its 16-byte"):
        decrypt(info, [_SHARED_KEK], ct[:15])
    with pytest.raises(AuthenticationError):
        decrypt(info, [_SHARED_KEK], ct[:-1])  # truncated by one byte
    with pytest.raises(AuthenticationError):
        decrypt(info, [_SHARED_KEK], ct + b"\x00")  # one byte appended


def test_altered_protected_header_fails_the_aead_tag() -> None:
    """The protected header is authenticated through the Enc_structure (draft §5)."""
    from suitkit.format import cbor

    ct, info = encrypt_payload(b"firmware", A.A128GCM, [_SHARED_KEK])
    body = list(cbor.loads(info).value)
    body[0] = cbor.dumps({1: 1, 3: 0})  # same alg, one more (harmless) header
    altered = cbor.dumps(cbor.CBORTag(96, body))
    with pytest.raises(AuthenticationError):
        decrypt(altered, [_SHARED_KEK], ct)


def test_ctr_has_no_tag_so_alterations_pass_silently() -> None:
    """Integrity for AES-CTR comes from image-match (draft §6, RFC 9459 §8)."""
    ct, info = encrypt_payload(b"firmware", A.A128CTR, [_SHARED_KEK])
    assert decrypt(info, [_SHARED_KEK], bytes([ct[0] ^ 1]) + ct[1:]) != b"firmware"


def test_content_key_of_the_wrong_length_is_refused() -> None:
    """A sender that wrapped a 32-byte CEK for A128GCM is refused after the unwrap."""
    from suitkit.cose.algorithms import key_wrap
    from suitkit.format import cbor

    _, info = encrypt_payload(b"x", A.A128GCM, [_SHARED_KEK])
    body = list(cbor.loads(info).value)
    body[3][0][2] = key_wrap(_SHARED_KEK, A.A128KW, os.urandom(32))
    with pytest.raises(AuthenticationError, match="content key is 32 bytes"):
        open_decryptor(cbor.dumps(cbor.CBORTag(96, body)), [_SHARED_KEK])


def test_unsupported_algorithms_and_unusable_recipient_keys() -> None:
    with pytest.raises(AlgorithmUnsupportedError):
        encrypt_payload(b"x", "aes-cbc", [_SHARED_KEK])
    with pytest.raises(AlgorithmUnsupportedError):
        encrypt_payload(b"x", A.ES256, [_SHARED_KEK])
    with pytest.raises(AlgorithmUnsupportedError):
        encrypt_payload(b"x", 12345, [_SHARED_KEK])
    with pytest.raises(AlgorithmUnsupportedError):
        Recipient(_SHARED_KEK, A.DIRECT).algorithm  # noqa: B018
    with pytest.raises(KeyFormatError):
        Recipient(_SHARED_KEK, A.A256KW).algorithm  # noqa: B018 - a 16-byte KEK
    with pytest.raises(KeyFormatError):
        Recipient(ecdh(CoseCurve.P_256), A.A128KW).algorithm  # noqa: B018
    with pytest.raises(KeyFormatError):
        Recipient(_SHARED_KEK, A.ECDH_ES_A128KW).algorithm  # noqa: B018
    with pytest.raises(KeyFormatError):
        Recipient(CoseKey.generate(A.ED25519)).algorithm  # noqa: B018 - Ed25519 is no ECDH key
    with pytest.raises(KeyFormatError):
        Recipient(CoseKey.from_cose_key({1: 4, -1: bytes(20)})).algorithm  # noqa: B018
    with pytest.raises(ValueError):
        encrypt_payload(b"x", A.A128GCM, [])
    with pytest.raises(ValueError):
        PayloadEncryptor(A.A128GCM, [_SHARED_KEK], iv=bytes(16))


def test_x25519_low_order_ephemeral_key_does_not_unwrap() -> None:
    from suitkit.format import cbor

    device = ecdh(CoseCurve.X25519)
    _, info = encrypt_payload(b"x", A.A128CTR, [Recipient(device.public_key())])
    body = list(cbor.loads(info).value)
    body[3][0][1][-1][-2] = bytes(32)  # the all-zero point: shared secret all zero
    with pytest.raises(SuitError) as exc:
        open_decryptor(cbor.dumps(cbor.CBORTag(96, body)), [device])
    assert exc.value.reason.spec_name in ("unauthorised", "cbor-parse")


def test_finalize_twice_is_a_programming_error() -> None:
    ct, info = encrypt_payload(b"x", A.A128CTR, [_SHARED_KEK])
    dec = open_decryptor(info, [_SHARED_KEK])
    dec.update(ct)
    dec.finalize()
    with pytest.raises(ValueError):
        dec.finalize()
