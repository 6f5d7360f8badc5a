"""Content key distribution: AES Key Wrap and ECDH-ES + AES Key Wrap
(draft-ietf-suit-firmware-encryption-24 §4; RFC 9053 §5.2, §6.2.1, §6.4.1).

* **AES-KW** (draft §4.1): the CEK is wrapped (RFC 3394) with a key-encryption key (KEK) that the
  sender and the recipient share. The recipient's protected header is empty; ``alg`` (A128KW,
  A192KW, A256KW) and ``kid`` are unprotected.
* **ECDH-ES + AES-KW** (draft §4.2): the sender makes an ephemeral key on the recipient's curve
  (P-256, P-384, P-521 or X25519), computes the ECDH shared secret with the recipient's static
  public key and derives the KEK with HKDF-SHA-256 (RFC 9053 §5.1) over the COSE_KDF_Context of
  draft §4.2.3::

      [ AlgorithmID: the key wrap (-3/-4/-5),
        PartyUInfo: [nil, nil, nil], PartyVInfo: [nil, nil, nil],
        SuppPubInfo: [ keyDataLength (bits), recipient protected header (bstr, as sent),
                       other: h'53554954...' the *byte string* 'SUIT Payload Encryption' ] ]

  The recipient's protected header holds ``alg`` (ECDH-ES + A128KW...); the ephemeral public key
  (-1) and the recipient's ``kid`` are unprotected. A salt (-20) or PartyU/PartyV headers
  (-21..-26), when a sender puts them in, are used as RFC 9053 §5.1-5.2 say.

Key selection on the device: a recipient that names a kid is tried with the device keys that have
that kid, then with the keys that have no kid; keys with another kid are never tried. A recipient
without a kid is tried with every device key of the right type (the key wrap's integrity check
tells a wrong key apart, RFC 3394 §2.2.3).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from suitkit.cose.algorithms import key_unwrap, key_wrap
from suitkit.cose.keys import CoseKey
from suitkit.cose.messages import Headers
from suitkit.encryption.cose_encrypt import (
    ECDH_ALGORITHMS,
    KEY_WRAP_ALGORITHMS,
    CoseEncrypt,
    EncryptRecipient,
)
from suitkit.errors import (
    AlgorithmUnsupportedError,
    AuthenticationError,
    KeyFormatError,
    OperationFailedError,
)
from suitkit.format import cbor
from suitkit.format.codepoints import CoseAlgorithm, CoseCurve, CoseHeader, CoseKeyType

__all__ = [
    "KDF_CONTEXT_OTHER",
    "NoDecryptionKeyError",
    "Recipient",
    "UnwrappedKey",
    "derive_kek",
    "kdf_context",
    "unwrap_content_key",
    "wrap_content_key",
]

#: COSE_KDF_Context.SuppPubInfo.other (draft §4.2.3): a byte string, not a text string.
KDF_CONTEXT_OTHER: Final = b"SUIT Payload Encryption"

_A = CoseAlgorithm
_ALG = int(CoseHeader.ALG)
_KID = int(CoseHeader.KID)
_EPHEMERAL = int(CoseHeader.EPHEMERAL_KEY)
_SALT = int(CoseHeader.SALT)
_PARTY_U = (
    int(CoseHeader.PARTY_U_IDENTITY),
    int(CoseHeader.PARTY_U_NONCE),
    int(CoseHeader.PARTY_U_OTHER),
)
_PARTY_V = (
    int(CoseHeader.PARTY_V_IDENTITY),
    int(CoseHeader.PARTY_V_NONCE),
    int(CoseHeader.PARTY_V_OTHER),
)

#: Curves an ECDH-ES recipient key may be on.
ECDH_CURVES: Final = frozenset(
    {CoseCurve.P_256, CoseCurve.P_384, CoseCurve.P_521, CoseCurve.X25519}
)


class NoDecryptionKeyError(OperationFailedError):
    """The device holds no key for any recipient of the encryption info (unknown kid, or no
    key of the right type): the decrypting copy/write cannot run (report reason
    operation-failed)."""


# --- KDF (RFC 9053 §5.1-5.2, draft §4.2.3) -------------------------------------------------------


def kdf_context(
    kw_alg: CoseAlgorithm,
    recipient_protected: bytes,
    *,
    party_u: Sequence[bytes | None] = (None, None, None),
    party_v: Sequence[bytes | None] = (None, None, None),
) -> bytes:
    """The encoded COSE_KDF_Context of draft §4.2.3 for a key wrap algorithm and the
    recipient's protected header (the bytes as sent)."""
    if kw_alg not in KEY_WRAP_ALGORITHMS:
        raise ValueError(f"{kw_alg!r} is not an AES key wrap algorithm")
    bits = KEY_WRAP_ALGORITHMS[kw_alg] * 8
    return cbor.dumps(
        [
            int(kw_alg),
            list(party_u),
            list(party_v),
            [bits, bytes(recipient_protected), KDF_CONTEXT_OTHER],
        ]
    )


def derive_kek(shared_secret: bytes, kw_alg: CoseAlgorithm, headers: Headers) -> bytes:
    """HKDF-SHA-256 (RFC 9053 §5.1) of the ECDH shared secret over the KDF context built from
    the recipient's ``headers`` (protected bytes, salt, PartyU/PartyV)."""
    salt = headers.get(_SALT)
    context = kdf_context(
        kw_alg,
        headers.protected_bytes,
        party_u=[headers.get(h) for h in _PARTY_U],
        party_v=[headers.get(h) for h in _PARTY_V],
    )
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_WRAP_ALGORITHMS[kw_alg],
        salt=salt if salt else None,
        info=context,
    )
    return hkdf.derive(shared_secret)


def _symmetric(secret: bytes) -> CoseKey:
    return CoseKey(CoseKeyType.SYMMETRIC, None, None, None, None, bytes(secret))


# --- author side -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient of an encrypted payload.

    ``key`` is a key-encryption key (a symmetric key: AES-KW) or the recipient's public key
    (EC2 P-256/P-384/P-521 or OKP X25519: ECDH-ES + AES-KW). ``alg`` defaults to the key's own
    ``alg`` when that is a key distribution algorithm, else A128KW/A192KW/A256KW by the KEK's
    length, or ECDH-ES + A128KW for a public key (the MTI profiles' choice). ``kid`` defaults to
    the key's kid; ``include_kid=False`` leaves it out of the header.
    """

    key: CoseKey
    alg: CoseAlgorithm | None = None
    kid: bytes | None = None
    include_kid: bool = True

    @property
    def algorithm(self) -> CoseAlgorithm:
        """The key distribution algorithm used for this recipient (checked against the key)."""
        key = self.key
        alg = self.alg
        if (
            alg is None
            and key.alg is not None
            and (key.alg in KEY_WRAP_ALGORITHMS or key.alg in ECDH_ALGORITHMS)
        ):
            alg = key.alg
        if alg is None:
            if key.kty is CoseKeyType.SYMMETRIC:
                n = len(key.secret())
                alg = next((a for a, size in KEY_WRAP_ALGORITHMS.items() if size == n), None)
                if alg is None:
                    raise KeyFormatError(
                        f"a {n}-byte key cannot be an AES key-encryption key (16, 24 or 32 bytes)"
                    )
            else:
                alg = _A.ECDH_ES_A128KW
        alg = CoseAlgorithm(alg)
        if alg in KEY_WRAP_ALGORITHMS:
            if key.kty is not CoseKeyType.SYMMETRIC or not key.supports(alg):
                raise KeyFormatError(f"{key!r} cannot be a key-encryption key for {alg.spec_name}")
        elif alg in ECDH_ALGORITHMS:
            if key.kty not in (CoseKeyType.EC2, CoseKeyType.OKP) or key.curve not in ECDH_CURVES:
                raise KeyFormatError(
                    f"{alg.spec_name} needs a P-256, P-384, P-521 or X25519 public key, not {key!r}"
                )
            if not key.supports(alg):
                raise KeyFormatError(
                    f"{key!r} is restricted to another algorithm than {alg.spec_name}"
                )
        else:
            raise AlgorithmUnsupportedError(
                f"{alg.spec_name} is not a content key distribution algorithm (A128KW, A192KW, "
                "A256KW, ECDH-ES + A128KW/A192KW/A256KW)"
            )
        return alg

    @property
    def header_kid(self) -> bytes | None:
        if not self.include_kid:
            return None
        return self.kid if self.kid is not None else self.key.kid


def wrap_content_key(
    recipient: Recipient, cek: bytes
) -> tuple[dict[int, Any], dict[int, Any], bytes]:
    """The ``(protected, unprotected, wrapped CEK)`` of one COSE_recipient for ``cek``."""
    alg = recipient.algorithm
    kid = recipient.header_kid
    unprotected: dict[int, Any] = {}
    if alg in KEY_WRAP_ALGORITHMS:
        # draft §4.1: AES-KW has no per-message parameters: empty protected header
        unprotected[_ALG] = int(alg)
        if kid is not None:
            unprotected[_KID] = bytes(kid)
        return {}, unprotected, key_wrap(recipient.key, alg, cek)
    kw = ECDH_ALGORITHMS[alg]
    peer = recipient.key
    assert peer.curve is not None
    ephemeral = CoseKey.generate(alg, curve=peer.curve).with_alg(None)
    shared = ephemeral.exchange(peer)
    protected = {_ALG: int(alg)}
    protected_bytes = cbor.dumps(protected)
    unprotected[_EPHEMERAL] = ephemeral.public_key().to_cose_key_map()
    if kid is not None:
        unprotected[_KID] = bytes(kid)
    headers = Headers(protected_bytes, protected, unprotected)
    kek = derive_kek(shared, kw, headers)
    return protected, unprotected, key_wrap(_symmetric(kek), kw, cek)


def new_content_key(length: int) -> bytes:
    """A fresh random CEK (draft §4: randomly generated, RFC 8937)."""
    return secrets.token_bytes(length)


# --- device side -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnwrappedKey:
    """The content key, the recipient it came from and the device key that unwrapped it."""

    cek: bytes
    recipient: EncryptRecipient
    key: CoseKey


def _kid_matches(key: CoseKey, kid: bytes | None) -> int:
    """0: try first (same kid, or the recipient names none), 1: try next (the key has no kid),
    -1: never (another kid)."""
    if kid is None or key.kid == kid:
        return 0
    return 1 if key.kid is None else -1


def _candidates(
    keys: Sequence[CoseKey], rec: EncryptRecipient, alg: CoseAlgorithm, curve: CoseCurve | None
) -> list[CoseKey]:
    first: list[CoseKey] = []
    then: list[CoseKey] = []
    for k in keys:
        if not k.supports(alg) or not k.is_private:
            continue
        if alg in KEY_WRAP_ALGORITHMS:
            if k.kty is not CoseKeyType.SYMMETRIC:
                continue
        elif k.kty is CoseKeyType.SYMMETRIC or k.curve is not curve:
            continue
        rank = _kid_matches(k, rec.kid)
        if rank == 0:
            first.append(k)
        elif rank == 1:
            then.append(k)
    return first + then


def _try_key(rec: EncryptRecipient, alg: CoseAlgorithm, key: CoseKey) -> bytes | None:
    """The CEK if ``key`` unwraps it, None if the key wrap's integrity check fails."""
    try:
        if alg in KEY_WRAP_ALGORITHMS:
            return key_unwrap(key, alg, rec.ciphertext)
        kw = ECDH_ALGORITHMS[alg]
        shared = key.exchange(rec.ephemeral_key)
        kek = derive_kek(shared, kw, rec.headers)
        return key_unwrap(_symmetric(kek), kw, rec.ciphertext)
    except (AuthenticationError, KeyFormatError):
        # KeyFormatError: an X25519 low-order ephemeral point (all-zero shared secret)
        return None


def unwrap_content_key(
    info: CoseEncrypt, keys: CoseKey | Iterable[CoseKey], *, key_length: int | None = None
) -> UnwrappedKey:
    """Recover the CEK with one of the device's ``keys`` (KEKs for AES-KW, private EC2/OKP keys
    for ECDH-ES), trying the recipients in order.

    Raises AlgorithmUnsupportedError when no recipient uses an algorithm suitkit implements,
    :class:`NoDecryptionKeyError` when the device has no key for any recipient (unknown kid),
    AuthenticationError when keys were tried but none unwrapped the CEK (a wrong key, or a
    corrupted wrapped key) or the CEK has the wrong length for the content algorithm.
    """
    trusted: Sequence[CoseKey] = (keys,) if isinstance(keys, CoseKey) else tuple(keys)
    unsupported: list[str] = []
    tried = 0
    kids: list[str] = []
    for rec in info.recipients:
        try:
            alg = rec.alg
        except AlgorithmUnsupportedError as exc:
            unsupported.append(exc.message)
            continue
        curve = rec.ephemeral_key.curve if alg in ECDH_ALGORITHMS else None
        if rec.kid is not None:
            kids.append(_kid_text(rec.kid))
        for key in _candidates(trusted, rec, alg, curve):
            tried += 1
            cek = _try_key(rec, alg, key)
            if cek is None:
                continue
            if key_length is not None and len(cek) != key_length:
                raise AuthenticationError(
                    f"COSE_recipient[{rec.index}] content key is {len(cek)} bytes; the content "
                    f"algorithm needs {key_length}",
                    path=info.path,
                )
            return UnwrappedKey(cek, rec, key)
    if len(unsupported) == len(info.recipients):
        raise AlgorithmUnsupportedError(
            "no COSE_recipient uses a supported key distribution: " + "; ".join(unsupported),
            path=info.path,
        )
    if tried == 0:
        named = f" (recipient kid {', '.join(kids)})" if kids else ""
        raise NoDecryptionKeyError(
            f"the device has no decryption key for any recipient of the encryption info{named}",
            path=info.path,
        )
    raise AuthenticationError(
        f"the content key does not unwrap with any of the {tried} candidate device key(s) "
        "(wrong key, or a corrupted wrapped key)",
        path=info.path,
    )


def _kid_text(kid: bytes) -> str:
    if kid and all(0x20 < b < 0x7F for b in kid) and b"'" not in kid:
        return f"'{kid.decode()}'"
    return f"h'{kid.hex()}'"
