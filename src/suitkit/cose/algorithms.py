"""COSE algorithms: signatures, MAC and AES key wrap over :class:`~suitkit.cose.keys.CoseKey`.

Encodings (RFC 9053 unless noted):

* ECDSA (§2.1; RFC 9864 §2.1 for the fully specified ESP*): the signature is ``r || s``, each
  left-padded to the curve size (64 bytes for P-256), not DER. ES256/ESP256 = P-256 + SHA-256,
  ES384/ESP384 = P-384 + SHA-384, ESP512 = P-521 + SHA-512. The polymorphic and fully specified
  identifiers are the same operation and are both accepted for a key of the right curve.
* EdDSA (§2.2) / Ed25519 (RFC 9864): PureEdDSA over the ToBeSigned bytes.
* HSS-LMS (RFC 8778 §2): the HSS signature (RFC 8554 §6.2) as it is.
* ML-DSA-44/65/87 (draft-ietf-cose-dilithium): FIPS 204 ML-DSA.Sign with an empty context.
* HMAC 256/256 (§3.1): HMAC-SHA-256, full 32-byte tag, compared in constant time.
* A128KW/A192KW/A256KW (§6.2.1): RFC 3394 AES key wrap.

Verification functions return nothing and raise :class:`AuthenticationError`; the message layer
uses the cached boolean verifiers of :func:`verifier` to try candidate keys cheaply.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Final, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from suitkit.cose._lazy import LazyModule
from suitkit.cose.keys import _EC_CURVES, CoseKey, _HssState
from suitkit.errors import AlgorithmUnsupportedError, AuthenticationError, KeyFormatError
from suitkit.format.codepoints import CoseAlgorithm, CoseCurve, CoseKeyType

__all__ = [
    "KEY_WRAP_ALGORITHMS",
    "MAC_ALGORITHMS",
    "SIGNATURE_ALGORITHMS",
    "KeySigner",
    "Signer",
    "check_key",
    "default_algorithm",
    "ecdsa_der",
    "key_unwrap",
    "key_wrap",
    "mac",
    "sign",
    "verifier",
    "verify",
    "verify_mac",
]

_A = CoseAlgorithm

#: ECDSA algorithms: curve and hash (RFC 9053 §2.1, RFC 9864 §2.1).
_ECDSA: Final[dict[CoseAlgorithm, tuple[CoseCurve, ec.ECDSA]]] = {
    _A.ES256: (CoseCurve.P_256, ec.ECDSA(hashes.SHA256())),
    _A.ESP256: (CoseCurve.P_256, ec.ECDSA(hashes.SHA256())),
    _A.ES384: (CoseCurve.P_384, ec.ECDSA(hashes.SHA384())),
    _A.ESP384: (CoseCurve.P_384, ec.ECDSA(hashes.SHA384())),
    _A.ESP512: (CoseCurve.P_521, ec.ECDSA(hashes.SHA512())),
}
_EDDSA: Final = frozenset({_A.EDDSA, _A.ED25519})
_MLDSA: Final = frozenset({_A.ML_DSA_44, _A.ML_DSA_65, _A.ML_DSA_87})

SIGNATURE_ALGORITHMS: Final = frozenset(_ECDSA) | _EDDSA | _MLDSA | {_A.HSS_LMS}
MAC_ALGORITHMS: Final = frozenset({_A.HMAC_256_256})
KEY_WRAP_ALGORITHMS: Final = {_A.A128KW: 16, _A.A192KW: 24, _A.A256KW: 32}

#: HMAC 256/256: HMAC with SHA-256, tag 256 bits (RFC 9053 §3.1).
_HMAC_TAG_LEN: Final = 32

#: Default signature algorithm per key type when neither the caller nor the key names one:
#: the fully specified identifiers of RFC 9864 (the SUIT MTI profiles use ESP256 and Ed25519).
_DEFAULT_EC: Final = {
    CoseCurve.P_256: _A.ESP256,
    CoseCurve.P_384: _A.ESP384,
    CoseCurve.P_521: _A.ESP512,
}

Verifier = Callable[[bytes, bytes], bool]

# pyhsslms is pure Python and only needed for HSS-LMS keys: import it on first use.
pyhsslms: Any = LazyModule("pyhsslms")


def _name(alg: int) -> str:
    try:
        return CoseAlgorithm(alg).spec_name
    except ValueError:
        return str(alg)


def check_key(key: CoseKey, alg: int, *, private: bool = False) -> CoseAlgorithm:
    """Check that ``key`` can be used with ``alg`` (and holds a private part if ``private``);
    return ``alg`` as a :class:`CoseAlgorithm`.

    Raises AlgorithmUnsupportedError for an algorithm suitkit does not implement, KeyFormatError
    for a key that does not fit it.
    """
    try:
        a = CoseAlgorithm(alg)
    except ValueError:
        raise AlgorithmUnsupportedError(f"algorithm {alg!r} is not supported") from None
    if a not in SIGNATURE_ALGORITHMS and a not in MAC_ALGORITHMS and a not in KEY_WRAP_ALGORITHMS:
        raise AlgorithmUnsupportedError(
            f"{a.spec_name} is not a signature, MAC or key wrap algorithm"
        )
    if a not in key.algorithms:
        raise KeyFormatError(f"{key!r} cannot be used with {a.spec_name}")
    if private and not key.is_private:
        raise KeyFormatError(f"{a.spec_name} needs a private key, {key!r} is public")
    return a


def default_algorithm(key: CoseKey) -> CoseAlgorithm:
    """The signature (or MAC) algorithm used with ``key`` when none is asked for: the key's own
    ``alg`` if it has one, else ESP256/ESP384/ESP512 by curve, Ed25519, HSS-LMS, the ML-DSA
    variant of an AKP key, or HMAC 256/256 for a symmetric key of 32 bytes or more."""
    if key.alg is not None:
        if key.alg in SIGNATURE_ALGORITHMS or key.alg in MAC_ALGORITHMS:
            return key.alg
        raise KeyFormatError(f"{key!r} is a {key.alg.spec_name} key, not a signing or MAC key")
    if key.kty is CoseKeyType.EC2 and key.curve in _DEFAULT_EC:
        return _DEFAULT_EC[key.curve]
    if key.kty is CoseKeyType.OKP and key.curve is CoseCurve.ED25519:
        return _A.ED25519
    if key.kty is CoseKeyType.HSS_LMS:
        return _A.HSS_LMS
    if key.kty is CoseKeyType.SYMMETRIC and _A.HMAC_256_256 in key.algorithms:
        return _A.HMAC_256_256
    raise KeyFormatError(f"{key!r} is not a signing or MAC key")


# --- signatures ------------------------------------------------------------------------------


def sign(key: CoseKey, alg: int, tbs: bytes) -> bytes:
    """Sign ``tbs`` (the encoded Sig_structure) with the private ``key``.

    For an HSS-LMS key the advanced private state is written to the key file before the
    signature is returned (see :class:`suitkit.cose.keys._HssState`).
    """
    a = check_key(key, alg, private=True)
    if a not in SIGNATURE_ALGORITHMS:
        raise AlgorithmUnsupportedError(f"{a.spec_name} is not a signature algorithm")
    priv: Any = key._private
    if a in _ECDSA:
        curve, ecdsa = _ECDSA[a]
        size = _EC_CURVES[curve][1]
        r, s = decode_dss_signature(priv.sign(tbs, ecdsa))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if a in _EDDSA or a in _MLDSA:
        return bytes(priv.sign(tbs))
    assert a is _A.HSS_LMS and isinstance(priv, _HssState)
    return priv.sign(tbs)


def verifier(key: CoseKey, alg: int) -> Verifier:
    """A function ``(tbs, signature) -> bool`` verifying ``alg`` signatures with ``key``,
    cached on the key (the public key object is parsed once, at key load)."""
    fn: Verifier | None = key._verifiers.get(alg)
    if fn is None:
        fn = _make_verifier(key, check_key(key, alg))
        key._verifiers[alg] = fn
    return fn


def verify(key: CoseKey, alg: int, tbs: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``tbs``; raise AuthenticationError if it does not verify."""
    if not verifier(key, alg)(tbs, signature):
        raise AuthenticationError(f"{_name(alg)} signature does not verify with {key!r}")


def ecdsa_der(sig: bytes, size: int) -> bytes:
    """The DER ``ECDSA-Sig-Value`` (what ``cryptography`` verifies) of a COSE ECDSA signature
    ``r || s`` of two ``size``-byte big-endian integers: the same bytes as
    ``encode_dss_signature(r, s)``, built without the round trip through Python ints."""
    r = sig[:size].lstrip(b"\x00")
    s = sig[size:].lstrip(b"\x00")
    if not r or r[0] & 0x80:  # INTEGER: minimal, non-negative
        r = b"\x00" + r
    if not s or s[0] & 0x80:
        s = b"\x00" + s
    n = len(r) + len(s) + 4  # at most 2 * (2 + 67) for P-521: a one- or two-byte length
    return b"".join(
        (b"\x30\x81" if n >= 0x80 else b"\x30", bytes((n,)),
         b"\x02", bytes((len(r),)), r, b"\x02", bytes((len(s),)), s)
    )  # fmt: skip


def _make_verifier(key: CoseKey, a: CoseAlgorithm) -> Verifier:
    if a not in SIGNATURE_ALGORITHMS:
        raise AlgorithmUnsupportedError(f"{a.spec_name} is not a signature algorithm")
    pub: Any = key._public
    if a in _ECDSA:
        curve, ecdsa = _ECDSA[a]
        size = _EC_CURVES[curve][1]
        sig_len = 2 * size

        def verify_ecdsa(tbs: bytes, sig: bytes) -> bool:
            if len(sig) != sig_len:
                return False
            try:
                pub.verify(ecdsa_der(sig, size), tbs, ecdsa)
            except InvalidSignature:
                return False
            return True

        return verify_ecdsa
    if a in _EDDSA or a in _MLDSA:

        def verify_raw(tbs: bytes, sig: bytes) -> bool:
            try:
                pub.verify(sig, tbs)
            except (InvalidSignature, ValueError):
                return False
            return True

        return verify_raw

    def verify_hss(tbs: bytes, sig: bytes) -> bool:
        return _hss_verify(pub, tbs, sig)

    return verify_hss


def _hss_verify(pub: Any, message: bytes, sig: bytes) -> bool:
    """RFC 8554 §6.3 HSS verification with the checks pyhsslms leaves out: the signature must be
    exactly one well-formed encoding (no trailing bytes), and every LMS signature's LMS and LM-OTS
    types must be those of the public key it is checked against (§5.4.2 steps 2c/2f)."""
    try:
        hss_sig = pyhsslms.HssSignature.deserialize(sig)
        if hss_sig.levels != pub.levels or hss_sig.serialize() != sig:
            return False
        pk = pub.pub
        for i in range(pub.levels - 1):
            child = hss_sig.pub[i]
            if not _lms_verify(pk, child.serialize(), hss_sig.sig[i]):
                return False
            pk = child
        return _lms_verify(pk, message, hss_sig.lms_sig)
    except Exception:  # pyhsslms raises ValueError, IndexError, KeyError on malformed input
        return False


def _lms_verify(pk: Any, message: bytes, lms_sig: Any) -> bool:
    if lms_sig.type != pk.lms_type or lms_sig.lmots_type != pk.lmots_type:
        return False
    return bool(pk.verify(message, lms_sig.serialize()))


# --- MAC -------------------------------------------------------------------------------------


def mac(key: CoseKey, alg: int, tbs: bytes) -> bytes:
    """The MAC tag of ``tbs`` (the encoded MAC_structure)."""
    a = check_key(key, alg, private=True)
    if a not in MAC_ALGORITHMS:
        raise AlgorithmUnsupportedError(f"{a.spec_name} is not a MAC algorithm")
    return hmac.digest(key._private, tbs, hashlib.sha256)


def mac_matches(key: CoseKey, alg: int, tbs: bytes, tag: bytes) -> bool:
    """Whether ``tag`` is the MAC of ``tbs`` (constant-time comparison)."""
    expected = mac(key, alg, tbs)
    return len(tag) == _HMAC_TAG_LEN and hmac.compare_digest(expected, tag)


def verify_mac(key: CoseKey, alg: int, tbs: bytes, tag: bytes) -> None:
    """Verify ``tag``; raise AuthenticationError if it is not the MAC of ``tbs``."""
    if not mac_matches(key, alg, tbs, tag):
        raise AuthenticationError(f"{_name(alg)} tag does not verify with {key!r}")


# --- AES key wrap ----------------------------------------------------------------------------


def key_wrap(kek: CoseKey, alg: int, cek: bytes) -> bytes:
    """Wrap ``cek`` with the key-encryption key ``kek`` (RFC 3394)."""
    a = check_key(kek, alg, private=True)
    if a not in KEY_WRAP_ALGORITHMS:
        raise AlgorithmUnsupportedError(f"{a.spec_name} is not a key wrap algorithm")
    if len(cek) < 16 or len(cek) % 8:
        raise ValueError("AES key wrap needs a key of at least 16 bytes, a multiple of 8")
    from cryptography.hazmat.primitives import keywrap  # only for AES-KW: lazy for start-up

    return keywrap.aes_key_wrap(kek._private, cek)


def key_unwrap(kek: CoseKey, alg: int, wrapped: bytes) -> bytes:
    """Unwrap ``wrapped`` with ``kek``; raise AuthenticationError if the integrity check fails."""
    a = check_key(kek, alg, private=True)
    if a not in KEY_WRAP_ALGORITHMS:
        raise AlgorithmUnsupportedError(f"{a.spec_name} is not a key wrap algorithm")
    if len(wrapped) < 24 or len(wrapped) % 8:
        raise AuthenticationError(f"{a.spec_name} wrapped key has a bad length {len(wrapped)}")
    from cryptography.hazmat.primitives import keywrap  # only for AES-KW: lazy for start-up

    try:
        return keywrap.aes_key_unwrap(kek._private, wrapped)
    except (keywrap.InvalidUnwrap, ValueError):
        raise AuthenticationError(f"{a.spec_name} key unwrap failed with {kek!r}") from None


# --- signers ---------------------------------------------------------------------------------


@runtime_checkable
class Signer(Protocol):
    """Something that signs COSE ToBeSigned bytes: a local key (:class:`KeySigner`), an HSM,
    a KMS. ``sign`` returns the COSE encoding of the signature (ECDSA: raw ``r || s``)."""

    @property
    def alg(self) -> CoseAlgorithm: ...

    @property
    def kid(self) -> bytes | None: ...

    def sign(self, tbs: bytes) -> bytes: ...


class KeySigner:
    """A :class:`Signer` over a private :class:`CoseKey`.

    ``alg`` defaults to :func:`default_algorithm` (ESP256 for a P-256 key unless the key or the
    caller asks for ES256). ``kid`` defaults to the key's kid.
    """

    __slots__ = ("_alg", "_key", "_kid")

    def __init__(
        self, key: CoseKey, alg: CoseAlgorithm | None = None, *, kid: bytes | None = None
    ) -> None:
        if not isinstance(key, CoseKey):
            raise TypeError(f"KeySigner needs a CoseKey, not {type(key).__name__}")
        a = default_algorithm(key) if alg is None else alg
        a = check_key(key, a, private=True)
        if a not in SIGNATURE_ALGORITHMS:
            raise KeyFormatError(f"{a.spec_name} is not a signature algorithm")
        self._key = key
        self._alg = a
        self._kid = key.kid if kid is None else bytes(kid)

    @property
    def alg(self) -> CoseAlgorithm:
        return self._alg

    @property
    def kid(self) -> bytes | None:
        return self._kid

    @property
    def key(self) -> CoseKey:
        return self._key

    def sign(self, tbs: bytes) -> bytes:
        return sign(self._key, self._alg, tbs)

    def __repr__(self) -> str:
        return f"KeySigner({self._key!r}, alg={self._alg.spec_name})"
