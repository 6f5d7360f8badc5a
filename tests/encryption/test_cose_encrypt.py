"""SUIT_Encryption_Info decoding is strict (RFC 9052 §3, §5.1; draft §4): every malformed or
unsupported structure is a SuitError with the report reason that fits."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suitkit.encryption import CoseEncrypt, decrypt, open_decryptor
from suitkit.errors import (
    AlgorithmUnsupportedError,
    CoseUnsupportedError,
    DecodeError,
    SuitError,
)
from suitkit.format import cbor
from suitkit.format.codepoints import CoseAlgorithm

from ._util import KEK, PLAINTEXT, RECIPIENT, info_vector, payload_vector

GCM_INFO = info_vector("aes-kw-aes-gcm")
CTR_INFO = info_vector("aes-kw-aes-ctr")
ECDH_INFO = info_vector("es-ecdh-aes-gcm")


def body(raw: bytes) -> list[Any]:
    value = cbor.loads(raw)
    return list(value.value)


def encode(b: list[Any], tag: int = 96) -> bytes:
    return cbor.dumps(cbor.CBORTag(tag, b))


def mutated(raw: bytes, fn: Any) -> bytes:
    b = body(raw)
    fn(b)
    return encode(b)


def test_untagged_and_wrong_tags_are_refused() -> None:
    b = body(GCM_INFO)
    with pytest.raises(DecodeError, match="tagged"):
        CoseEncrypt.decode(cbor.dumps(b))
    with pytest.raises(CoseUnsupportedError, match="Encrypt0"):
        CoseEncrypt.decode(encode(b[:3], tag=16))
    with pytest.raises(DecodeError, match="not 96"):
        CoseEncrypt.decode(encode(b, tag=98))


@pytest.mark.parametrize(
    ("fn", "error", "match"),
    [
        (lambda b: b.pop(), DecodeError, "4 elements"),
        (lambda b: b.__setitem__(0, {1: 1}), DecodeError, "protected header must be a byte"),
        (lambda b: b.__setitem__(0, b"\xa1\x01"), DecodeError, "truncated"),
        (lambda b: b.__setitem__(0, b"\x80"), DecodeError, "decode to a map"),
        (lambda b: b.__setitem__(1, []), DecodeError, "unprotected header must be a map"),
        (lambda b: b.__setitem__(2, "text"), DecodeError, "ciphertext must be"),
        (lambda b: b.__setitem__(3, []), DecodeError, "non-empty"),
        (lambda b: b.__setitem__(3, [[b"", {}]]), DecodeError, "3 elements"),
        (lambda b: b[3][0].__setitem__(2, None), DecodeError, "wrapped content key"),
        (lambda b: b[3][0].append([]), CoseUnsupportedError, "nested recipients"),
        (lambda b: b[1].__setitem__(1, 1), DecodeError, "both protected and unprotected"),
        (lambda b: b[1].__setitem__(2, [1]), DecodeError, "crit header must be protected"),
        (lambda b: b[1].__setitem__(5, "iv"), DecodeError, "IV must be a byte string"),
        (lambda b: b[1].__setitem__(6, b"\x01"), CoseUnsupportedError, "Partial IV"),
        (lambda b: b[1].__setitem__(b"x", 1), DecodeError, "not an int or tstr"),
        (lambda b: b[3][0][1].__setitem__(4, "kid-1"), DecodeError, "kid must be a byte"),
        (lambda b: b[3][0][1].__setitem__(1, b"x"), DecodeError, "alg must be an int or tstr"),
        (
            lambda b: b.__setitem__(0, cbor.dumps({1: 1, 2: [99]})),
            CoseUnsupportedError,
            "critical header parameter 99",
        ),
        (lambda b: b.__setitem__(0, cbor.dumps({1: 1, 2: []})), DecodeError, "non-empty array"),
    ],
)
def test_malformed_structures_are_refused(fn: Any, error: type[SuitError], match: str) -> None:
    with pytest.raises(error, match=match):
        CoseEncrypt.decode(mutated(GCM_INFO, fn))


def test_trailing_bytes_and_non_bytes_input() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        CoseEncrypt.decode(GCM_INFO + b"\x00")
    with pytest.raises(TypeError):
        CoseEncrypt.decode("text")  # type: ignore[arg-type]


def test_crit_naming_understood_headers_is_accepted() -> None:
    def crit(b: list[Any]) -> None:
        b[0] = cbor.dumps({1: 1, 2: [1]})

    raw = mutated(GCM_INFO, crit)
    assert CoseEncrypt.decode(raw).alg is CoseAlgorithm.A128GCM


def test_unknown_content_algorithm_is_alg_unsupported_only_when_used() -> None:
    raw = mutated(GCM_INFO, lambda b: b.__setitem__(0, cbor.dumps({1: 10})))  # AES-CCM-16-64-128
    enc = CoseEncrypt.decode(raw)  # structurally fine
    with pytest.raises(AlgorithmUnsupportedError) as exc:
        open_decryptor(enc, [KEK])
    assert exc.value.reason.spec_name == "alg-unsupported"
    raw = mutated(GCM_INFO, lambda b: b.__setitem__(0, cbor.dumps({1: "A128GCM"})))
    with pytest.raises(AlgorithmUnsupportedError):
        open_decryptor(raw, [KEK])
    with pytest.raises(DecodeError, match="no alg"):
        open_decryptor(mutated(GCM_INFO, lambda b: b.__setitem__(0, b"")), [KEK])


def test_unknown_key_distribution_is_alg_unsupported() -> None:
    def direct(b: list[Any]) -> None:
        b[3][0][1][1] = -6  # direct: not a SUIT content key distribution

    with pytest.raises(AlgorithmUnsupportedError, match="no COSE_recipient uses a supported"):
        decrypt(mutated(GCM_INFO, direct), [KEK], payload_vector("aes-kw-aes-gcm"))


def test_iv_of_the_wrong_length_is_refused() -> None:
    def long_iv(b: list[Any]) -> None:
        b[1][5] = bytes(16)  # GCM needs 12

    with pytest.raises(DecodeError, match="IV is 16 bytes"):
        open_decryptor(mutated(GCM_INFO, long_iv), [KEK])
    with pytest.raises(DecodeError, match="no IV"):
        open_decryptor(mutated(GCM_INFO, lambda b: b[1].pop(5)), [KEK])


def test_ctr_with_a_protected_header_is_refused() -> None:
    """draft §5: without AAD, the protected header MUST be a zero-length byte string."""

    def protect(b: list[Any]) -> None:
        alg = b[1].pop(1)
        b[0] = cbor.dumps({1: alg})

    with pytest.raises(CoseUnsupportedError, match="non-empty protected header"):
        open_decryptor(mutated(CTR_INFO, protect), [KEK])


def test_bad_ephemeral_keys_are_decode_errors() -> None:
    def eph(value: Any) -> Any:
        def fn(b: list[Any]) -> None:
            b[3][0][1][-1] = value

        return fn

    good = body(ECDH_INFO)[3][0][1][-1]
    for value, match in [
        (b"\x01", "must be a COSE_Key map"),
        ({-1: 1}, "no kty"),
        ({**good, -2: bytes(32)}, "ephemeral key"),  # not on the curve
        ({**good, -4: bytes(32)}, "private part"),
    ]:
        with pytest.raises(DecodeError, match=match):
            open_decryptor(mutated(ECDH_INFO, eph(value)), [RECIPIENT])
    with pytest.raises(DecodeError, match="no ephemeral key"):
        open_decryptor(mutated(ECDH_INFO, lambda b: b[3][0][1].pop(-1)), [RECIPIENT])


def test_attached_ciphertext_is_used_when_none_is_supplied() -> None:
    raw = mutated(GCM_INFO, lambda b: b.__setitem__(2, payload_vector("aes-kw-aes-gcm")))
    assert decrypt(raw, [KEK]) == PLAINTEXT
    with pytest.raises(SuitError, match="detached"):
        decrypt(GCM_INFO, [KEK])


def test_describe_and_diag() -> None:
    enc = CoseEncrypt.decode(ECDH_INFO)
    d = enc.describe()
    assert d["content-algorithm"] == "A128GCM"
    assert d["recipients"] == [{"algorithm": "ECDH-ES + A128KW", "kid": None}]
    text = cbor.diag(enc.to_diag())
    assert text.startswith("96([") and "<< {" in text


_ALL_INFOS = [info_vector(n) for n in ("aes-kw-aes-gcm", "aes-kw-aes-ctr", "es-ecdh-aes-gcm")]


@settings(max_examples=300, deadline=None)
@given(
    which=st.integers(0, len(_ALL_INFOS) - 1),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_encryption_info_fails_only_with_suit_errors(
    which: int, flips: list[tuple[int, int]]
) -> None:
    """Untrusted input: any corruption is a SuitError (or still decrypts), never a crash."""
    data = bytearray(_ALL_INFOS[which])
    for pos, value in flips:
        data[pos % len(data)] = value
    ct = payload_vector(("aes-kw-aes-gcm", "aes-kw-aes-ctr", "es-ecdh-aes-gcm")[which])
    with contextlib.suppress(SuitError):
        decrypt(bytes(data), [KEK, RECIPIENT], ct)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    with contextlib.suppress(SuitError):
        CoseEncrypt.decode(data)
