"""COSE keys (RFC 9052 §7, RFC 9053 §7, RFC 8778 §2.2, draft-ietf-cose-dilithium AKP).

A :class:`CoseKey` wraps a ``cryptography`` key object (EC2 P-256/P-384/P-521, OKP Ed25519/X25519,
AKP ML-DSA-44/65/87), a ``pyhsslms`` HSS-LMS key, or the bytes of a symmetric key, together with
its COSE ``kty``, ``kid`` and ``alg``. Key material never appears in ``repr()``.

File formats (see :meth:`CoseKey.load` / :meth:`CoseKey.save`):

* PEM: PKCS#8 (``BEGIN PRIVATE KEY``, also encrypted), SEC1 (``BEGIN EC PRIVATE KEY``), SPKI
  (``BEGIN PUBLIC KEY``) and X.509 certificates (public key only). DER of the same is accepted.
* COSE_Key: one CBOR map (RFC 9052 §7), deterministic encoding when written. This is the only
  format for symmetric keys and HSS-LMS keys. HSS-LMS keys (kty 5) carry the public key under
  ``pub`` (-1, RFC 8778 §2.2) and, in a private key file, the pyhsslms private state
  (``HssPrivateKey.serialize()``) under label -2 (:data:`HSS_LMS_PRIV`; no IANA codepoint exists,
  suitkit mirrors AKP ``priv``).

An HSS-LMS private key is *stateful*: each signature consumes a one-time key. Such a key is bound
to its key file; :meth:`_HssState.sign` rewrites that file atomically (temp file + fsync + rename,
under an exclusive lock) with the advanced state *before* the signature is returned, so a crash
can never lead to a one-time key being used for two published signatures.

Key identifiers: :func:`key_id_of` derives a kid from the RFC 9679 COSE Key Thumbprint (SHA-256
over the deterministic encoding of the required public members), truncated to 8 bytes. Keys
read from files keep the kid the file gives (or none); nothing derives a kid implicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeGuard

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, x25519

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import serialization

from suitkit.cose._lazy import LazyModule
from suitkit.errors import AlgorithmUnsupportedError, KeyFormatError, SuitError
from suitkit.files import atomic_write
from suitkit.format import cbor
from suitkit.format.codepoints import (
    CoseAlgorithm,
    CoseCurve,
    CoseKeyParam,
    CoseKeyType,
    CoseKeyTypeParam,
)

if sys.platform != "win32":
    import fcntl

__all__ = [
    "HSS_LMS_PRIV",
    "HSS_LMS_PUB",
    "CoseKey",
    "HssLmsParams",
    "KeyStateError",
    "key_id_of",
]

#: RFC 8778 §2.2: the HSS-LMS public key, COSE Key Type Parameter ``pub`` (-1) of kty HSS-LMS.
HSS_LMS_PUB: Final = -1
#: suitkit-specific COSE Key Type Parameter for the HSS-LMS *private state* (pyhsslms
#: ``HssPrivateKey.serialize()``). Not registered by IANA; -2 mirrors AKP ``priv``.
HSS_LMS_PRIV: Final = -2

_KTY = CoseKeyParam.KTY
_KID = CoseKeyParam.KID
_ALG = CoseKeyParam.ALG
_CRV = CoseKeyTypeParam.CRV
_X = CoseKeyTypeParam.X
_Y = CoseKeyTypeParam.Y
_D = CoseKeyTypeParam.D
_K = CoseKeyTypeParam.K
_PUB = CoseKeyTypeParam.PUB
_PRIV = CoseKeyTypeParam.PRIV

#: Length of the kid :func:`key_id_of` derives.
KID_LENGTH: Final = 8

# pyhsslms is pure Python and only needed for HSS-LMS keys: import it on first use.
pyhsslms: Any = LazyModule("pyhsslms")


def _serialization() -> Any:
    """cryptography's serialization package, imported on first use: it costs ~20 ms of start-up
    and the common case (a P-256 / Ed25519 public key in PEM) does not need it."""
    from cryptography.hazmat.primitives import serialization

    return serialization


# DER prefixes of the SubjectPublicKeyInfo of the common key types (RFC 5480, RFC 8410): the
# key bytes follow. DER is canonical, so a key of these types always starts this way.
_SPKI_PREFIXES: tuple[tuple[bytes, int, Any], ...] = (
    (bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200"), 65, ec.SECP256R1),
    (bytes.fromhex("3076301006072a8648ce3d020106052b81040022036200"), 97, ec.SECP384R1),
    (bytes.fromhex("30819b301006072a8648ce3d020106052b810400230381860004")[:-1], 133, ec.SECP521R1),
    (bytes.fromhex("302a300506032b6570032100"), 32, ed25519.Ed25519PublicKey),
    (bytes.fromhex("302a300506032b656e032100"), 32, x25519.X25519PublicKey),
)


def _public_key_from_spki_pem(raw: bytes) -> Any | None:
    """The public key of a ``PUBLIC KEY`` PEM of a common type, without the serialization
    package; None for anything else (the caller falls back to cryptography's loader)."""
    import base64
    import binascii

    begin, end = b"-----BEGIN PUBLIC KEY-----", b"-----END PUBLIC KEY-----"
    start = raw.find(begin)
    stop = raw.find(end)
    if start < 0 or stop < start:
        return None
    try:
        der = base64.b64decode(b"".join(raw[start + len(begin) : stop].split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    for prefix, size, kind in _SPKI_PREFIXES:
        if len(der) == len(prefix) + size and der.startswith(prefix):
            body = der[len(prefix) :]
            try:
                if isinstance(kind, type) and issubclass(kind, ec.EllipticCurve):
                    return ec.EllipticCurvePublicKey.from_encoded_point(kind(), body)
                return kind.from_public_bytes(body)
            except ValueError:
                return None
    return None


class KeyStateError(KeyFormatError):
    """An HSS-LMS private key whose state cannot be used: no state file, a state file that cannot
    be written or holds another key, or an exhausted key."""


# --- algorithm / key-type tables -------------------------------------------------------------

_A = CoseAlgorithm

_EC_CURVES: Final[dict[CoseCurve, tuple[type[ec.EllipticCurve], int]]] = {
    CoseCurve.P_256: (ec.SECP256R1, 32),
    CoseCurve.P_384: (ec.SECP384R1, 48),
    CoseCurve.P_521: (ec.SECP521R1, 66),
}
_EC_CURVE_BY_NAME: Final = {
    "secp256r1": CoseCurve.P_256,
    "secp384r1": CoseCurve.P_384,
    "secp521r1": CoseCurve.P_521,
}

_ECDH_ALGS: Final = frozenset(
    {_A.ECDH_ES_HKDF_256, _A.ECDH_ES_A128KW, _A.ECDH_ES_A192KW, _A.ECDH_ES_A256KW}
)
_EC_SIGN_ALGS: Final = {
    CoseCurve.P_256: frozenset({_A.ES256, _A.ESP256}),
    CoseCurve.P_384: frozenset({_A.ES384, _A.ESP384}),
    CoseCurve.P_521: frozenset({_A.ESP512}),
}

_MLDSA: Final[dict[CoseAlgorithm, tuple[Any, Any, int]]] = {
    _A.ML_DSA_44: (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey, 1312),
    _A.ML_DSA_65: (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey, 1952),
    _A.ML_DSA_87: (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey, 2592),
}
_MLDSA_SEED_LEN: Final = 32

#: Symmetric algorithms and the key length each needs (HMAC: at least that many bytes).
_SYMMETRIC_LEN: Final = {
    _A.HMAC_256_256: 32,
    _A.A128KW: 16,
    _A.A192KW: 24,
    _A.A256KW: 32,
    _A.A128GCM: 16,
    _A.A192GCM: 24,
    _A.A256GCM: 32,
    _A.A128CTR: 16,
    _A.A192CTR: 24,
    _A.A256CTR: 32,
    _A.CHACHA20_POLY1305: 32,
}

#: Algorithms that are the same operation on the same key (manifest Appendix B signs with ES256,
#: the other drafts with ESP256; see shared/spec/README.md). A key restricted to one accepts both.
_EQUIVALENT: Final = {
    _A.ES256: frozenset({_A.ES256, _A.ESP256}),
    _A.ESP256: frozenset({_A.ES256, _A.ESP256}),
    _A.ES384: frozenset({_A.ES384, _A.ESP384}),
    _A.ESP384: frozenset({_A.ES384, _A.ESP384}),
    _A.EDDSA: frozenset({_A.EDDSA, _A.ED25519}),
    _A.ED25519: frozenset({_A.EDDSA, _A.ED25519}),
}


@dataclass(frozen=True, slots=True)
class HssLmsParams:
    """HSS-LMS parameters for key generation: ``levels`` LMS trees of LMS_SHA256_M32_H<height>
    with LMOTS_SHA256_N32_W<w> (RFC 8554). The key signs ``2**(levels*height)`` times.

    The default (2 levels of H5, W4: 1024 signatures) keeps pure-Python key generation and
    loading fast; a production signing key would use larger trees, e.g. ``height=10``.
    """

    levels: int = 2
    height: int = 5
    w: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= 8:
            raise ValueError(f"HSS levels must be 1..8, not {self.levels}")
        if self.height not in (5, 10, 15, 20, 25):
            raise ValueError(f"LMS height must be 5, 10, 15, 20 or 25, not {self.height}")
        if self.w not in (1, 2, 4, 8):
            raise ValueError(f"LM-OTS Winternitz parameter must be 1, 2, 4 or 8, not {self.w}")

    @property
    def max_signatures(self) -> int:
        return int(2 ** (self.levels * self.height))


# --- the key ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False, slots=True)
class CoseKey:
    """A COSE key: public, private or symmetric. Build it with :meth:`generate`, :meth:`load`,
    :meth:`from_pem` or :meth:`from_cose_key`; never from the constructor.

    ``algorithms`` is the set of algorithms the key may be used with (its type and, when ``alg``
    is set, restricted to ``alg`` and the algorithms that are the same operation).
    """

    kty: CoseKeyType
    kid: bytes | None = None
    alg: CoseAlgorithm | None = None
    curve: CoseCurve | None = None
    #: cryptography public key object, pyhsslms ``HssPublicKey``, or None (symmetric)
    _public: Any = None
    #: cryptography private key object, :class:`_HssState`, the secret bytes (symmetric) or None
    _private: Any = None
    algorithms: frozenset[CoseAlgorithm] = field(init=False)
    #: per-algorithm verifier cache used by suitkit.cose.algorithms
    _verifiers: dict[int, Any] = field(init=False)

    def __post_init__(self) -> None:
        natural = self._natural_algorithms()
        if self.alg is not None:
            allowed = _EQUIVALENT.get(self.alg, frozenset({self.alg}))
            if self.alg not in natural:
                raise KeyFormatError(
                    f"the key's alg {self.alg.spec_name} does not fit a {self._describe_type()} key"
                )
            natural = natural & allowed
        object.__setattr__(self, "algorithms", natural)
        object.__setattr__(self, "_verifiers", {})

    # --- properties --------------------------------------------------------------------------

    @property
    def is_private(self) -> bool:
        """True for a private or symmetric key (one that can sign, MAC or unwrap)."""
        return self._private is not None

    @property
    def is_symmetric(self) -> bool:
        return self.kty is CoseKeyType.SYMMETRIC

    def supports(self, alg: int) -> bool:
        """Whether this key may be used with ``alg``."""
        return alg in self.algorithms

    @property
    def crypto_public_key(self) -> Any:
        """The ``cryptography`` public key object (pyhsslms ``HssPublicKey`` for HSS-LMS; None
        for a symmetric key)."""
        return self._public

    @property
    def crypto_private_key(self) -> Any:
        """The ``cryptography`` private key object (None for public, symmetric and HSS-LMS keys;
        use :meth:`secret` for symmetric keys)."""
        if self.kty in (CoseKeyType.SYMMETRIC, CoseKeyType.HSS_LMS):
            return None
        return self._private

    def secret(self) -> bytes:
        """The bytes of a symmetric key (``k``)."""
        if not self.is_symmetric:
            raise ValueError("only a symmetric key has secret bytes")
        return bytes(self._private)

    def public_key(self) -> CoseKey:
        """This key without its private part (same kid and alg)."""
        if self.is_symmetric:
            raise ValueError("a symmetric key has no public part")
        if self._private is None:
            return self
        return replace(self, _private=None)

    def with_kid(self, kid: bytes | None) -> CoseKey:
        """A copy with ``kid`` (None: without a kid). An HSS-LMS private copy shares the signing
        state (and state file) of the original."""
        return replace(self, kid=None if kid is None else bytes(kid))

    def with_derived_kid(self) -> CoseKey:
        """A copy whose kid is :func:`key_id_of` this key."""
        return replace(self, kid=key_id_of(self))

    def with_alg(self, alg: CoseAlgorithm | None) -> CoseKey:
        """A copy restricted to ``alg`` (or unrestricted with None)."""
        return replace(self, alg=alg)

    def exchange(self, peer: CoseKey) -> bytes:
        """The ECDH shared secret with ``peer``'s public key (EC2: the x coordinate, RFC 9053
        §6.3.1; X25519: RFC 7748). Both keys must be on the same curve; this key private."""
        if self._private is None or self.kty not in (CoseKeyType.EC2, CoseKeyType.OKP):
            raise KeyFormatError(f"{self!r} cannot do ECDH: it is not a private EC2/OKP key")
        if self.curve is CoseCurve.ED25519 or peer.curve is not self.curve:
            raise KeyFormatError(f"cannot do ECDH between {self!r} and {peer!r}")
        try:
            if self.kty is CoseKeyType.EC2:
                return bytes(self._private.exchange(ec.ECDH(), peer._public))
            return bytes(self._private.exchange(peer._public))
        except ValueError as exc:  # e.g. an X25519 low-order point: all-zero shared secret
            raise KeyFormatError(f"ECDH with {peer!r} failed: {exc}") from None

    def signatures_remaining(self) -> int | None:
        """For an HSS-LMS private key, the number of signatures it can still make."""
        if isinstance(self._private, _HssState):
            return self._private.remaining()
        return None

    @property
    def state_file(self) -> Path | None:
        """For an HSS-LMS private key, the file its state is persisted to."""
        if isinstance(self._private, _HssState):
            return self._private.path
        return None

    def __repr__(self) -> str:
        parts = [f"kty={_label(self.kty)}"]
        if self.curve is not None:
            parts.append(f"crv={_label(self.curve)}")
        if self.alg is not None:
            parts.append(f"alg={self.alg.spec_name}")
        if self.kid is not None:
            parts.append(f"kid=h'{self.kid.hex()}'")
        parts.append("private" if self.is_private else "public")
        return f"CoseKey({', '.join(parts)})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("CoseKey cannot be pickled; use to_cose_key() or to_pem()")

    # --- generation --------------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        alg: CoseAlgorithm,
        kid: bytes | None = None,
        *,
        curve: CoseCurve | None = None,
        hss: HssLmsParams | None = None,
        state_file: str | os.PathLike[str] | None = None,
    ) -> CoseKey:
        """A fresh key for ``alg`` (the key's ``alg`` is set to it).

        Signature algorithms: ES256/ESP256 (P-256), ES384/ESP384 (P-384), ESP512 (P-521),
        EdDSA/Ed25519, HSS-LMS (``hss`` parameters; ``state_file`` binds and writes the key file
        at once, otherwise :meth:`save` it before signing), ML-DSA-44/65/87. Symmetric: HMAC
        256/256 (32 bytes), A128KW/A192KW/A256KW, A128/192/256GCM and CTR, ChaCha20/Poly1305.
        Key agreement: ECDH-ES algorithms on ``curve`` P-256 (default), P-384, P-521 or X25519.
        """
        alg = CoseAlgorithm(alg)
        if curve is not None and alg not in _ECDH_ALGS:
            raise ValueError("curve is only chosen for ECDH key agreement keys")
        if hss is not None and alg is not _A.HSS_LMS:
            raise ValueError("hss parameters are only for HSS-LMS keys")
        if state_file is not None and alg is not _A.HSS_LMS:
            raise ValueError("state_file is only for HSS-LMS keys")
        for crv, algs in _EC_SIGN_ALGS.items():
            if alg in algs:
                return cls._from_crypto(ec.generate_private_key(_EC_CURVES[crv][0]()), kid, alg)
        if alg in (_A.EDDSA, _A.ED25519):
            return cls._from_crypto(ed25519.Ed25519PrivateKey.generate(), kid, alg)
        if alg in _MLDSA:
            return cls._from_crypto(_MLDSA[alg][0].generate(), kid, alg)
        if alg in _SYMMETRIC_LEN:
            return cls(
                CoseKeyType.SYMMETRIC,
                kid,
                alg,
                None,
                None,
                os.urandom(_SYMMETRIC_LEN[alg]),
            )
        if alg in _ECDH_ALGS:
            crv = CoseCurve.P_256 if curve is None else CoseCurve(curve)
            if crv is CoseCurve.X25519:
                return cls._from_crypto(x25519.X25519PrivateKey.generate(), kid, alg)
            if crv not in _EC_CURVES:
                raise ValueError(f"ECDH keys are on P-256, P-384, P-521 or X25519, not {crv.name}")
            return cls._from_crypto(ec.generate_private_key(_EC_CURVES[crv][0]()), kid, alg)
        if alg is _A.HSS_LMS:
            params = hss or HssLmsParams()
            prv = pyhsslms.HssPrivateKey(
                levels=params.levels,
                lms_type=getattr(pyhsslms, f"lms_sha256_m32_h{params.height}"),
                lmots_type=getattr(pyhsslms, f"lmots_sha256_n32_w{params.w}"),
            )
            key = cls(CoseKeyType.HSS_LMS, kid, alg, None, prv.publicKey(), _HssState(prv, None))
            if state_file is not None:
                key.save(state_file, private=True)
            return key
        raise AlgorithmUnsupportedError(f"suitkit cannot generate a key for {alg.spec_name}")

    # --- PEM / DER -------------------------------------------------------------------------

    @classmethod
    def from_pem(
        cls,
        data: bytes | str,
        password: bytes | None = None,
        *,
        kid: bytes | None = None,
        alg: CoseAlgorithm | None = None,
    ) -> CoseKey:
        """Load a PEM key: PKCS#8 (optionally encrypted with ``password``), SEC1
        ``EC PRIVATE KEY``, SPKI ``PUBLIC KEY``, or an X.509 certificate's public key."""
        raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
        try:
            obj: Any
            if b"-----BEGIN CERTIFICATE-----" in raw:
                from cryptography import x509  # only for certificates: keeps start-up fast

                obj = x509.load_pem_x509_certificate(raw).public_key()
            elif b"PRIVATE KEY-----" in raw:
                obj = _serialization().load_pem_private_key(raw, password)
            else:
                obj = _public_key_from_spki_pem(raw) or _serialization().load_pem_public_key(raw)
        except TypeError as exc:
            raise KeyFormatError(f"cannot load PEM key: {_password_hint(exc)}") from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(f"cannot load PEM key: {exc}") from None
        return cls._from_crypto(obj, kid, alg)

    @classmethod
    def from_der(
        cls,
        data: bytes,
        password: bytes | None = None,
        *,
        kid: bytes | None = None,
        alg: CoseAlgorithm | None = None,
    ) -> CoseKey:
        """Load a DER key: PKCS#8, SEC1 or SPKI."""
        obj: Any
        try:
            obj = _serialization().load_der_private_key(data, password)
        except TypeError as exc:
            raise KeyFormatError(f"cannot load DER key: {_password_hint(exc)}") from None
        except (ValueError, UnsupportedAlgorithm):
            try:
                obj = _serialization().load_der_public_key(data)
            except (ValueError, UnsupportedAlgorithm) as exc:
                raise KeyFormatError(f"cannot load DER key: {exc}") from None
        return cls._from_crypto(obj, kid, alg)

    def to_pem(self, private: bool = False, password: bytes | None = None) -> bytes:
        """PEM: PKCS#8 for a private key (encrypted when ``password`` is given), SPKI for a
        public one. Symmetric and HSS-LMS keys have no PEM form (use :meth:`to_cose_key`)."""
        if self.kty in (CoseKeyType.SYMMETRIC, CoseKeyType.HSS_LMS):
            raise KeyFormatError(
                f"a {self._describe_type()} key has no PEM form; use to_cose_key()"
            )
        if private:
            if self._private is None:
                raise ValueError("this is a public key; it has no private PEM")
            enc: serialization.KeySerializationEncryption = (
                _serialization().NoEncryption()
                if password is None
                else _serialization().BestAvailableEncryption(password)
            )
            return bytes(
                self._private.private_bytes(
                    _serialization().Encoding.PEM, _serialization().PrivateFormat.PKCS8, enc
                )
            )
        return bytes(
            self._public.public_bytes(
                _serialization().Encoding.PEM, _serialization().PublicFormat.SubjectPublicKeyInfo
            )
        )

    @classmethod
    def _from_crypto(cls, obj: Any, kid: bytes | None, alg: CoseAlgorithm | None) -> CoseKey:
        kid = None if kid is None else bytes(kid)
        priv: Any = None
        if isinstance(obj, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            crv = _EC_CURVE_BY_NAME.get(obj.curve.name)
            if crv is None:
                raise KeyFormatError(f"unsupported elliptic curve {obj.curve.name}")
            if isinstance(obj, ec.EllipticCurvePrivateKey):
                priv, obj = obj, obj.public_key()
            return cls(CoseKeyType.EC2, kid, alg, crv, obj, priv)
        if isinstance(obj, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
            if isinstance(obj, ed25519.Ed25519PrivateKey):
                priv, obj = obj, obj.public_key()
            return cls(CoseKeyType.OKP, kid, alg, CoseCurve.ED25519, obj, priv)
        if isinstance(obj, x25519.X25519PrivateKey | x25519.X25519PublicKey):
            if isinstance(obj, x25519.X25519PrivateKey):
                priv, obj = obj, obj.public_key()
            return cls(CoseKeyType.OKP, kid, alg, CoseCurve.X25519, obj, priv)
        for mldsa_alg, (priv_cls, pub_cls, _) in _MLDSA.items():
            if isinstance(obj, priv_cls | pub_cls):
                if alg is not None and alg is not mldsa_alg:
                    raise KeyFormatError(
                        f"the key is {mldsa_alg.spec_name}, not {CoseAlgorithm(alg).spec_name}"
                    )
                if isinstance(obj, priv_cls):
                    priv, obj = obj, obj.public_key()
                return cls(CoseKeyType.AKP, kid, mldsa_alg, None, obj, priv)
        raise KeyFormatError(f"unsupported key type {type(obj).__name__.lstrip('_')}")

    # --- COSE_Key ----------------------------------------------------------------------------

    @classmethod
    def from_cose_key(cls, data: bytes | Mapping[Any, Any]) -> CoseKey:
        """Load a COSE_Key (RFC 9052 §7): its CBOR encoding or the decoded map."""
        if isinstance(data, bytes | bytearray | memoryview):
            try:
                m = cbor.loads(bytes(data), what="COSE_Key")
            except SuitError as exc:
                raise KeyFormatError(f"not a COSE_Key: {exc.message}") from None
        else:
            m = data
        if not isinstance(m, Mapping):
            raise KeyFormatError("a COSE_Key must be a CBOR map")
        kty_v = m.get(_KTY)
        if not _is_int(kty_v):
            raise KeyFormatError("COSE_Key has no integer kty (label 1)")
        try:
            kty = CoseKeyType(kty_v)
        except ValueError:
            raise KeyFormatError(f"COSE_Key has unknown kty {kty_v}") from None
        kid = m.get(_KID)
        if kid is not None and not isinstance(kid, bytes):
            raise KeyFormatError("COSE_Key kid (label 2) must be a byte string")
        alg_v = m.get(_ALG)
        alg: CoseAlgorithm | None = None
        if alg_v is not None:
            if not _is_int(alg_v):
                raise AlgorithmUnsupportedError(f"COSE_Key alg {alg_v!r} is not supported")
            try:
                alg = CoseAlgorithm(alg_v)
            except ValueError:
                raise AlgorithmUnsupportedError(f"COSE_Key alg {alg_v} is not supported") from None
        if kty is CoseKeyType.EC2:
            return cls._ec2_from_map(m, kid, alg)
        if kty is CoseKeyType.OKP:
            return cls._okp_from_map(m, kid, alg)
        if kty is CoseKeyType.SYMMETRIC:
            k = _bstr(m, _K, "k", required=True)
            assert k is not None
            if not k:
                raise KeyFormatError("symmetric COSE_Key has an empty k")
            return cls(kty, kid, alg, None, None, k)
        if kty is CoseKeyType.HSS_LMS:
            return cls._hss_from_map(m, kid, alg)
        if kty is CoseKeyType.AKP:
            return cls._akp_from_map(m, kid, alg)
        raise KeyFormatError(f"unsupported COSE_Key kty {kty.spec_name}")

    @classmethod
    def _ec2_from_map(
        cls, m: Mapping[Any, Any], kid: bytes | None, alg: CoseAlgorithm | None
    ) -> CoseKey:
        crv = _curve(m)
        if crv not in _EC_CURVES:
            raise KeyFormatError(f"EC2 COSE_Key has unsupported crv {crv.spec_name}")
        curve_cls, size = _EC_CURVES[crv]
        x = _bstr(m, _X, "x", size=size)
        y = m.get(_Y)
        d = _bstr(m, _D, "d", size=size)
        pub: Any = None
        try:
            if x is not None:
                if isinstance(y, bool):  # point compression: y is the sign bit (RFC 9053 §7.1.1)
                    point = bytes([2 + int(y)]) + x
                elif isinstance(y, bytes) and len(y) == size:
                    point = b"\x04" + x + y
                else:
                    raise KeyFormatError(f"EC2 COSE_Key y must be a {size}-byte string or a bool")
                pub = ec.EllipticCurvePublicKey.from_encoded_point(curve_cls(), point)
            elif d is None:
                raise KeyFormatError("EC2 COSE_Key has neither x nor d")
            priv = None
            if d is not None:
                priv = ec.derive_private_key(int.from_bytes(d, "big"), curve_cls())
                derived = priv.public_key()
                if pub is not None and derived.public_numbers() != pub.public_numbers():
                    raise KeyFormatError("EC2 COSE_Key d does not match x/y")
                pub = derived
        except ValueError as exc:
            raise KeyFormatError(f"invalid EC2 COSE_Key: {exc}") from None
        return cls(CoseKeyType.EC2, kid, alg, crv, pub, priv)

    @classmethod
    def _okp_from_map(
        cls, m: Mapping[Any, Any], kid: bytes | None, alg: CoseAlgorithm | None
    ) -> CoseKey:
        crv = _curve(m)
        priv_cls: Any
        pub_cls: Any
        if crv is CoseCurve.ED25519:
            priv_cls, pub_cls = ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey
        elif crv is CoseCurve.X25519:
            priv_cls, pub_cls = x25519.X25519PrivateKey, x25519.X25519PublicKey
        else:
            raise KeyFormatError(f"OKP COSE_Key has unsupported crv {crv.spec_name}")
        x = _bstr(m, _X, "x", size=32)
        d = _bstr(m, _D, "d", size=32)
        try:
            pub = None if x is None else pub_cls.from_public_bytes(x)
            priv = None if d is None else priv_cls.from_private_bytes(d)
        except ValueError as exc:
            raise KeyFormatError(f"invalid OKP COSE_Key: {exc}") from None
        if priv is not None:
            derived = priv.public_key()
            if pub is not None and derived.public_bytes_raw() != x:
                raise KeyFormatError("OKP COSE_Key d does not match x")
            pub = derived
        if pub is None:
            raise KeyFormatError("OKP COSE_Key has neither x nor d")
        return cls(CoseKeyType.OKP, kid, alg, crv, pub, priv)

    @classmethod
    def _akp_from_map(
        cls, m: Mapping[Any, Any], kid: bytes | None, alg: CoseAlgorithm | None
    ) -> CoseKey:
        pub_b = _bstr(m, _PUB, "pub")
        seed = _bstr(m, _PRIV, "priv", size=_MLDSA_SEED_LEN)
        if alg is None and pub_b is not None:
            alg = next((a for a, (_, _, n) in _MLDSA.items() if n == len(pub_b)), None)
        if alg is None or alg not in _MLDSA:
            raise KeyFormatError("AKP COSE_Key needs an ML-DSA alg (label 3)")
        priv_cls, pub_cls, pub_len = _MLDSA[alg]
        try:
            pub = None
            if pub_b is not None:
                if len(pub_b) != pub_len:
                    raise KeyFormatError(
                        f"AKP COSE_Key pub must be {pub_len} bytes for {alg.spec_name}"
                    )
                pub = pub_cls.from_public_bytes(pub_b)
            priv = None if seed is None else priv_cls.from_seed_bytes(seed)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(f"invalid AKP COSE_Key: {exc}") from None
        if priv is not None:
            derived = priv.public_key()
            if pub_b is not None and derived.public_bytes_raw() != pub_b:
                raise KeyFormatError("AKP COSE_Key priv does not match pub")
            pub = derived
        if pub is None:
            raise KeyFormatError("AKP COSE_Key has neither pub nor priv")
        return cls(CoseKeyType.AKP, kid, alg, None, pub, priv)

    @classmethod
    def _hss_from_map(
        cls, m: Mapping[Any, Any], kid: bytes | None, alg: CoseAlgorithm | None
    ) -> CoseKey:
        pub_b = _bstr(m, HSS_LMS_PUB, "pub", required=True)
        assert pub_b is not None
        pub = _hss_public(pub_b)
        state_b = _bstr(m, HSS_LMS_PRIV, "HSS-LMS private state")
        state = None
        if state_b is not None:
            prv = _hss_private(state_b)
            if prv.publicKey().serialize() != pub_b:
                raise KeyFormatError("HSS-LMS COSE_Key private state does not match pub")
            state = _HssState(prv, state_b)
        return cls(CoseKeyType.HSS_LMS, kid, alg, None, pub, state)

    def to_cose_key_map(self, private: bool = False) -> dict[int, Any]:
        """The COSE_Key map (public members only unless ``private``)."""
        if private and self._private is None:
            raise ValueError("this is a public key; it has no private members")
        if self.is_symmetric and not private:
            raise ValueError("a symmetric key is all secret: pass private=True")
        m: dict[int, Any] = {_KTY: int(self.kty)}
        if self.kid is not None:
            m[_KID] = self.kid
        if self.alg is not None:
            m[_ALG] = int(self.alg)
        m.update(self._material(private))
        return cbor.sorted_map(m)

    def to_cose_key(self, private: bool = False) -> bytes:
        """The deterministic CBOR encoding of :meth:`to_cose_key_map`."""
        return cbor.dumps(self.to_cose_key_map(private))

    def _material(self, private: bool) -> dict[int, Any]:
        """The key-type-specific members (without kty/kid/alg)."""
        kty = self.kty
        if kty is CoseKeyType.EC2:
            assert self.curve is not None
            size = _EC_CURVES[self.curve][1]
            numbers = self._public.public_numbers()  # no serialization import needed
            m: dict[int, Any] = {
                _CRV: int(self.curve),
                _X: numbers.x.to_bytes(size, "big"),
                _Y: numbers.y.to_bytes(size, "big"),
            }
            if private:
                m[_D] = self._private.private_numbers().private_value.to_bytes(size, "big")
            return m
        if kty is CoseKeyType.OKP:
            assert self.curve is not None
            m = {_CRV: int(self.curve), _X: self._public.public_bytes_raw()}
            if private:
                m[_D] = self._private.private_bytes_raw()
            return m
        if kty is CoseKeyType.SYMMETRIC:
            return {_K: bytes(self._private)}
        if kty is CoseKeyType.AKP:
            m = {_PUB: self._public.public_bytes_raw()}
            if private:
                m[_PRIV] = self._private.private_bytes_raw()
            return m
        if kty is CoseKeyType.HSS_LMS:
            m = {HSS_LMS_PUB: bytes(self._public.serialize())}
            if private:
                m[HSS_LMS_PRIV] = self._private.current_state()
            return m
        raise AssertionError(f"unexpected kty {kty}")  # pragma: no cover

    def thumbprint(self) -> bytes:
        """The RFC 9679 COSE Key Thumbprint (SHA-256): the required public members only
        (EC2: kty crv x y; OKP: kty crv x; Symmetric: kty k; AKP: kty alg pub; HSS-LMS: kty pub)."""
        m: dict[int, Any] = {_KTY: int(self.kty)}
        if self.kty is CoseKeyType.AKP:
            assert self.alg is not None
            m[_ALG] = int(self.alg)
        m.update(self._material(private=self.is_symmetric))
        return hashlib.sha256(cbor.dumps(m)).digest()

    # --- files -------------------------------------------------------------------------------

    @classmethod
    def load(cls, source: str | os.PathLike[str] | bytes, password: bytes | None = None) -> CoseKey:
        """Load a key from a file path or from bytes, detecting the format: PEM (``-----BEGIN``),
        DER (a SEQUENCE) or a COSE_Key CBOR map. An HSS-LMS private key loaded from a file is
        bound to that file: each signature rewrites it."""
        path: Path | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
        else:
            path = Path(source)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise KeyFormatError(f"cannot read key file {path}: {exc.strerror}") from None
        where = f" in {path}" if path is not None else ""
        head = data.lstrip()[:1]
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                key = cls.from_pem(data, password)
            elif head == b"\x30":
                key = cls.from_der(data, password)
            elif head and 0xA0 <= head[0] <= 0xBF:
                key = cls.from_cose_key(data)
            else:
                raise KeyFormatError("not a key: expected PEM, DER or a COSE_Key CBOR map")
        except SuitError as exc:
            if path is not None:
                exc.message = f"{exc.message}{where}"
            raise
        if path is not None and isinstance(key._private, _HssState):
            key._private.bind(path, key._file_template())
        return key

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        private: bool = False,
        password: bytes | None = None,
    ) -> None:
        """Write the key atomically: PEM when ``path`` ends in ``.pem``, else a COSE_Key.
        Private files are created with mode 0600. Saving an HSS-LMS private key binds its state
        to ``path`` (a key already bound to another file is refused: two copies of the state
        would reuse one-time keys)."""
        p = Path(path)
        if p.suffix.lower() == ".pem":
            data = self.to_pem(private=private, password=password)
        else:
            if password is not None:
                raise ValueError("only PEM files can be password-protected")
            if private and isinstance(self._private, _HssState):
                self._private.bind(p, self._file_template(), write=True)
                return
            data = self.to_cose_key(private=private)
        _atomic_write(p, data, mode=0o600 if private else 0o644)

    def _file_template(self) -> dict[int, Any]:
        """The COSE_Key map of an HSS-LMS key without its private state."""
        return self.to_cose_key_map(private=False)

    # --- helpers -----------------------------------------------------------------------------

    def _natural_algorithms(self) -> frozenset[CoseAlgorithm]:
        kty = self.kty
        if kty is CoseKeyType.EC2:
            assert self.curve is not None
            return _EC_SIGN_ALGS[self.curve] | _ECDH_ALGS
        if kty is CoseKeyType.OKP:
            if self.curve is CoseCurve.ED25519:
                return frozenset({_A.EDDSA, _A.ED25519})
            return _ECDH_ALGS
        if kty is CoseKeyType.HSS_LMS:
            return frozenset({_A.HSS_LMS})
        if kty is CoseKeyType.AKP:
            assert self.alg is not None
            return frozenset({self.alg})
        if kty is CoseKeyType.SYMMETRIC:
            n = len(self._private)
            return frozenset(
                a
                for a, need in _SYMMETRIC_LEN.items()
                if n == need or (a is _A.HMAC_256_256 and n >= need)
            )
        return frozenset()  # pragma: no cover

    def _describe_type(self) -> str:
        if self.kty is CoseKeyType.SYMMETRIC:
            return f"{len(self._private)}-byte symmetric"
        if self.curve is not None:
            return f"{_label(self.kty)} {_label(self.curve)}"
        if self.kty is CoseKeyType.AKP and self.alg is not None:
            return f"AKP {self.alg.spec_name}"
        return _label(self.kty)


def _label(member: CoseKeyType | CoseCurve) -> str:
    """``EC2``, ``P-256``, ``HSS-LMS``: the IANA spelling of a key type or curve."""
    return member.name.replace("_", "-")


def key_id_of(key: CoseKey, length: int = KID_LENGTH) -> bytes:
    """A kid derived from ``key``: the first ``length`` bytes (default 8) of its RFC 9679
    thumbprint. Public and private halves of a pair get the same kid."""
    if not 1 <= length <= 32:
        raise ValueError("kid length must be 1..32 bytes")
    return key.thumbprint()[:length]


# --- decoding helpers ------------------------------------------------------------------------


def _password_hint(exc: TypeError) -> str:
    msg = str(exc)
    if "encrypted" in msg or "Password" in msg or "password" in msg:
        return msg
    return f"bad password argument ({msg})"


def _is_int(v: Any) -> TypeGuard[int]:
    """An integer label or value (IntEnum members included, bools excluded)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _curve(m: Mapping[Any, Any]) -> CoseCurve:
    v = m.get(_CRV)
    if not _is_int(v):
        raise KeyFormatError("COSE_Key has no integer crv (label -1)")
    try:
        return CoseCurve(v)
    except ValueError:
        raise KeyFormatError(f"COSE_Key has unknown crv {v}") from None


def _bstr(
    m: Mapping[Any, Any], label: int, name: str, *, size: int | None = None, required: bool = False
) -> bytes | None:
    v = m.get(label)
    if v is None:
        if required:
            raise KeyFormatError(f"COSE_Key has no {name} (label {label})")
        return None
    if not isinstance(v, bytes):
        raise KeyFormatError(f"COSE_Key {name} (label {label}) must be a byte string")
    if size is not None and len(v) != size:
        raise KeyFormatError(f"COSE_Key {name} (label {label}) must be {size} bytes, not {len(v)}")
    return v


def _hss_public(data: bytes) -> Any:
    try:
        pub = pyhsslms.HssPublicKey.deserialize(data)
        ok = 1 <= pub.levels <= pyhsslms.pyhsslms.MaxHssLevels and pub.serialize() == data
    except Exception as exc:  # pyhsslms raises ValueError, IndexError, KeyError...
        raise KeyFormatError(f"invalid HSS-LMS public key: {exc}") from None
    if not ok:
        raise KeyFormatError("invalid HSS-LMS public key encoding")
    return pub


def _hss_private(data: bytes) -> Any:
    try:
        prv = pyhsslms.HssPrivateKey.deserialize(data)
        ok = 1 <= prv.levels <= pyhsslms.pyhsslms.MaxHssLevels
    except Exception as exc:  # pyhsslms raises ValueError, IndexError, KeyError...
        raise KeyFormatError(f"invalid HSS-LMS private state: {exc}") from None
    if not ok:
        raise KeyFormatError("invalid HSS-LMS private state")
    return prv


# --- HSS-LMS state ---------------------------------------------------------------------------


class _HssState:
    """The signing state of one HSS-LMS private key, shared by every :class:`CoseKey` copy of it.

    Invariant: a signature is returned only after the state advanced past its one-time key has
    been written to :attr:`path` (atomically, fsynced). The in-memory state advances first and
    never goes back, so a failed write only skips a one-time key, it never reuses one.
    """

    __slots__ = ("_lock", "path", "persisted", "prv", "template")

    def __init__(self, prv: Any, persisted: bytes | None) -> None:
        self._lock = threading.Lock()
        self.prv = prv
        self.path: Path | None = None
        #: the serialized state last read from or written to ``path``
        self.persisted = persisted
        #: the COSE_Key members written next to the state (kty, kid, alg, pub)
        self.template: dict[int, Any] = {}

    def remaining(self) -> int:
        with self._lock:
            return int(self.prv.remaining())

    def current_state(self) -> bytes:
        with self._lock:
            return bytes(self.prv.serialize())

    def bind(self, path: Path, template: dict[int, Any], *, write: bool = False) -> None:
        path = path.absolute()
        with self._lock:
            if self.path is not None and self.path != path:
                raise KeyStateError(
                    f"this HSS-LMS private key is bound to {self.path}; writing its state to "
                    f"{path} too would let both copies reuse one-time keys"
                )
            if write and self.path is None and path.exists():
                raise KeyStateError(
                    f"refusing to overwrite {path} with a new HSS-LMS private key state"
                )
            self.path = path
            self.template = dict(template)
            if write:
                with _file_lock(path):
                    state = bytes(self.prv.serialize())
                    self._write(path, state)

    def _encode(self, state: bytes) -> bytes:
        return cbor.dumps({**self.template, HSS_LMS_PRIV: state})

    def _write(self, path: Path, state: bytes) -> None:
        try:
            _atomic_write(path, self._encode(state), mode=0o600)
        except OSError as exc:
            raise KeyStateError(f"cannot persist the HSS-LMS key state to {path}: {exc}") from exc
        self.persisted = state

    def _sync_from_disk(self, path: Path) -> None:
        """Take the state on disk if another process (or key object) advanced it."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyStateError(f"cannot read HSS-LMS key file {path}: {exc.strerror}") from None
        try:
            m = cbor.loads(data, what="COSE_Key")
        except SuitError as exc:
            raise KeyStateError(f"HSS-LMS key file {path} is corrupt: {exc.message}") from None
        if not isinstance(m, Mapping):
            raise KeyStateError(f"HSS-LMS key file {path} is not a COSE_Key")
        state = m.get(HSS_LMS_PRIV)
        if not isinstance(state, bytes):
            raise KeyStateError(f"HSS-LMS key file {path} has no private state")
        if state == self.persisted:
            return
        if m.get(HSS_LMS_PUB) != self.template.get(HSS_LMS_PUB):
            raise KeyStateError(f"HSS-LMS key file {path} now holds a different key")
        prv = _hss_private(state)
        if prv.remaining() > self.prv.remaining():
            raise KeyStateError(
                f"HSS-LMS key file {path} holds an older state than this key has used "
                "(restored from a backup?); refusing to reuse one-time keys"
            )
        self.prv = prv
        self.persisted = state

    def sign(self, message: bytes) -> bytes:
        """Sign ``message``; the advanced state is on disk before this returns."""
        with self._lock:
            path = self.path
            if path is None:
                raise KeyStateError(
                    "this HSS-LMS private key has no state file: save() it or load() it from "
                    "a file before signing, so that its one-time key state is persisted"
                )
            with _file_lock(path):
                self._sync_from_disk(path)
                if self.prv.is_exhausted():
                    raise KeyStateError("the HSS-LMS private key is exhausted")
                try:
                    signature = bytes(self.prv.sign(message))
                except Exception as exc:  # pyhsslms raises bare ValueErrors
                    raise KeyStateError(f"HSS-LMS signing failed: {exc}") from None
                # The one-time key just used is now consumed in memory. Persist before
                # releasing the signature: if this raises, the signature is discarded.
                self._write(path, bytes(self.prv.serialize()))
            return signature


# --- files -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` (the key file itself is replaced by rename,
    so it cannot carry the lock)."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform != "win32":
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    atomic_write(path, data, mode=mode)
