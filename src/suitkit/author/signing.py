"""Signing and MACing envelopes (manifest §8.3), and the keys the CLI makes for it.

Signing is the last step of a build and goes through :class:`suitkit.cose.algorithms.Signer`,
so a key in an HSM or a cloud KMS can sign as well as a key file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from suitkit.cose import messages as cose
from suitkit.cose.algorithms import KeySigner, Signer
from suitkit.cose.keys import CoseKey
from suitkit.errors import AuthenticationError, KeyFormatError
from suitkit.format.authentication import digest_of_wrapped
from suitkit.format.codepoints import CoseAlgorithm
from suitkit.format.envelope import AuthenticationWrapper, Envelope

#: ``suitkit keygen --alg`` names.
KEY_ALGORITHMS: dict[str, CoseAlgorithm] = {
    "esp256": CoseAlgorithm.ESP256,
    "es256": CoseAlgorithm.ES256,
    "esp384": CoseAlgorithm.ESP384,
    "es384": CoseAlgorithm.ES384,
    "ed25519": CoseAlgorithm.ED25519,
    "eddsa": CoseAlgorithm.EDDSA,
    "hss-lms": CoseAlgorithm.HSS_LMS,
    "ml-dsa-44": CoseAlgorithm.ML_DSA_44,
    "ml-dsa-65": CoseAlgorithm.ML_DSA_65,
    "ml-dsa-87": CoseAlgorithm.ML_DSA_87,
    "hmac256": CoseAlgorithm.HMAC_256_256,
}


def algorithm_named(name: str) -> CoseAlgorithm:
    alg = KEY_ALGORITHMS.get(name.lower())
    if alg is None:
        raise KeyFormatError(f"unknown algorithm {name!r}; one of: {', '.join(KEY_ALGORITHMS)}")
    return alg


def generate_key(alg_name: str, kid: bytes | None = None) -> CoseKey:
    """A fresh private key for ``alg_name`` (``esp256``, ``hss-lms``, ``hmac256``, ...)."""
    return CoseKey.generate(algorithm_named(alg_name), kid)


@dataclass(frozen=True, slots=True)
class MacKey:
    """A symmetric key that authenticates with COSE_Mac0 instead of a signature."""

    key: CoseKey


Authenticator = Signer | MacKey


def signers_from_files(
    paths: Iterable[Path], alg: str | None = None, kid: bytes | None = None
) -> list[Authenticator]:
    """Load private keys; symmetric keys become MAC keys, the others signers.

    ``alg`` chooses among the algorithms a key fits (``es256`` asks for -7 with a P-256 key,
    which some processors still expect; the default is the fully specified ESP256, -9).
    """
    out: list[Authenticator] = []
    for p in paths:
        key = CoseKey.load(p)
        if kid is not None:
            key = key.with_kid(kid)
        if not key.is_private:
            raise KeyFormatError(f"{p} holds a public key; signing needs the private key")
        if key.is_symmetric:
            out.append(MacKey(key))
        else:
            out.append(KeySigner(key, algorithm_named(alg) if alg else None))
    return out


def sign_envelope(envelope: Envelope, signers: Sequence[Authenticator | CoseKey]) -> Envelope:
    """Add one COSE_Sign1 (or COSE_Mac0 for a symmetric key) per signer; existing blocks stay.

    §8.3: signers must check the SUIT_Digest against the manifest before signing, so that a
    manifest changed after its digest was computed is never signed (time-of-check to time-of-use).
    """
    auth = envelope.authentication
    if not digest_of_wrapped(auth.digest, envelope.manifest.encoded):
        raise AuthenticationError(
            "refusing to sign: the SUIT_Digest does not match the manifest (§8.3)"
        )
    payload = auth.digest.encoded
    blocks = list(auth.blocks)
    for s in signers:
        if isinstance(s, CoseKey):
            s = MacKey(s) if s.is_symmetric else KeySigner(s)
        if isinstance(s, MacKey):
            blocks.append(cose.mac0(payload, s.key).encode())
        else:
            blocks.append(cose.sign1(payload, s).encode())
    return envelope.with_authentication(AuthenticationWrapper(auth.digest, tuple(blocks)))
