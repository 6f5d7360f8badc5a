"""The start-up fast path for PEM public keys gives exactly the key cryptography's loader gives."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from suitkit.cose.keys import _public_key_from_spki_pem


def _pem(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "private",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP521R1()),
        ed25519.Ed25519PrivateKey.generate(),
        x25519.X25519PrivateKey.generate(),
    ],
    ids=["p256", "p384", "p521", "ed25519", "x25519"],
)
def test_fast_spki_path_matches_cryptography(private: object) -> None:
    pem = _pem(private.public_key())  # type: ignore[attr-defined]
    fast = _public_key_from_spki_pem(pem)
    assert fast is not None
    assert _pem(fast) == pem


@pytest.mark.parametrize(
    "pem",
    [b"", b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
     b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n"],
)
def test_fast_spki_path_declines_what_it_does_not_know(pem: bytes) -> None:
    assert _public_key_from_spki_pem(pem) is None
