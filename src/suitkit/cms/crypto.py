"""Cryptographic algorithms for CMS firmware packages, on top of ``cryptography`` and ``pyhsslms``.

* digests: SHA-256/384/512 (RFC 5754 §2)
* signatures: ECDSA P-256/P-384 (RFC 5754 §3.3), Ed25519 (RFC 8419), RSASSA-PSS (RFC 4056),
  HSS/LMS (RFC 8708 / RFC 9708)
* content encryption: AES-128/256-CBC (RFC 3565) and AES-128/256-GCM (RFC 5084), streaming
* key wrap: AES key wrap (RFC 3394 / RFC 3565 §2.3.2) for the wrapped firmware key (RFC 4108 §2.3.1)

Verification failures raise :class:`suitkit.cms.errors.CmsError` with the RFC 4108 §4.1.3 code
that describes them (``badSignatureAlgorithm``, ``unsupportedKeySize``, ``unsupportedParameters``,
``signatureFailure``, ``decryptFailure``...).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, keywrap, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from suitkit.cms import der
from suitkit.cms.errors import CmsError
from suitkit.cms.oids import (
    AES_BLOCK_SIZE,
    GCM_DEFAULT_ICV_LENGTH,
    GCM_NONCE_LENGTH,
    PSS_TRAILER_FIELD,
    ContentEncryptionAlgorithm,
    DigestAlgorithm,
    KeyWrapAlgorithm,
    LoadErrorCode,
    MaskGenAlgorithm,
    PublicKeyAlgorithm,
    SignatureAlgorithm,
    oid_name,
)

E = LoadErrorCode

#: Size of the pieces large buffers are cut into before they reach a cipher or zlib.
CHUNK_SIZE = 1 << 20

_HASHLIB: dict[DigestAlgorithm, Callable[[], Any]] = {
    DigestAlgorithm.SHA1: hashlib.sha1,
    DigestAlgorithm.SHA256: hashlib.sha256,
    DigestAlgorithm.SHA384: hashlib.sha384,
    DigestAlgorithm.SHA512: hashlib.sha512,
}
_HASHES: dict[DigestAlgorithm, type[hashes.HashAlgorithm]] = {
    DigestAlgorithm.SHA256: hashes.SHA256,
    DigestAlgorithm.SHA384: hashes.SHA384,
    DigestAlgorithm.SHA512: hashes.SHA512,
}
#: Digest algorithms a firmware package, receipt or error report may name (SHA-1 is only
#: used for ESS certificate hashes, RFC 4108 §2.2.13).
MESSAGE_DIGESTS = frozenset(_HASHES)

_ECDSA_HASH = {
    SignatureAlgorithm.ECDSA_WITH_SHA256: DigestAlgorithm.SHA256,
    SignatureAlgorithm.ECDSA_WITH_SHA384: DigestAlgorithm.SHA384,
    SignatureAlgorithm.ECDSA_WITH_SHA512: DigestAlgorithm.SHA512,
}
_SUPPORTED_CURVES = {"secp256r1": DigestAlgorithm.SHA256, "secp384r1": DigestAlgorithm.SHA384}
_RSA_MIN_BITS = 2048
_RSA_MAX_BITS = 16384


# --- Digests -----------------------------------------------------------------------------------


def new_hash(algorithm: DigestAlgorithm) -> Any:
    """A hashlib object for ``algorithm``."""
    return _HASHLIB[algorithm]()


def digest_of(algorithm: DigestAlgorithm, data: bytes | memoryview) -> bytes:
    h = new_hash(algorithm)
    h.update(data)
    return bytes(h.digest())


def rechunk(chunks: Iterable[bytes | memoryview], size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """Cut large chunks into slices of at most ``size`` octets (no copies)."""
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), size):
            yield view[start : start + size]


# --- AlgorithmIdentifier -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlgorithmId:
    """An ``AlgorithmIdentifier``: the OID and the DER of the parameters (None when absent)."""

    oid: str
    params: bytes | None = None

    def encode(self) -> bytes:
        return der.sequence(der.encode_oid(self.oid), self.params or b"")

    @property
    def params_absent_or_null(self) -> bool:
        return self.params is None or self.params == b"\x05\x00"

    @classmethod
    def decode(cls, data: bytes | memoryview) -> AlgorithmId:
        """Parse the DER of an AlgorithmIdentifier (raises :class:`der.DerError`)."""
        buf = memoryview(data)
        top = der.read_single(buf)
        der.expect(top, der.UNIVERSAL, der.SEQUENCE, True, "AlgorithmIdentifier")
        parts = der.children(buf, top)
        if not 1 <= len(parts) <= 2 or not parts[0].is_universal(der.OBJECT_IDENTIFIER):
            raise der.DerError("AlgorithmIdentifier: malformed")
        oid = der.decode_oid(buf[parts[0].content_start : parts[0].content_end])
        params = der.element_bytes(buf, parts[1]) if len(parts) == 2 else None
        return cls(oid, params)


def digest_algorithm_from_id(alg: AlgorithmId) -> DigestAlgorithm:
    """The digest named by an AlgorithmIdentifier (RFC 5754 §2: parameters absent or NULL)."""
    try:
        digest = DigestAlgorithm(alg.oid)
    except ValueError:
        raise CmsError(
            E.BAD_DIGEST_ALGORITHM, f"unsupported digest algorithm {oid_name(alg.oid)}"
        ) from None
    if digest not in MESSAGE_DIGESTS or not alg.params_absent_or_null:
        raise CmsError(E.BAD_DIGEST_ALGORITHM, f"unsupported digest algorithm {oid_name(alg.oid)}")
    return digest


# --- Keys --------------------------------------------------------------------------------------


class HssLmsPublicKey:
    """An HSS/LMS public key (RFC 8554 ``hss_public_key``; RFC 8708 §4)."""

    def __init__(self, raw: bytes) -> None:
        import pyhsslms

        try:
            self._key = pyhsslms.HssPublicKey.deserialize(raw)
            levels = int(self._key.levels)
        except Exception as exc:  # pyhsslms raises ValueError, IndexError, KeyError...
            raise ValueError(f"not an HSS/LMS public key: {exc}") from None
        if not 1 <= levels <= 8:
            raise ValueError("HSS/LMS public key: bad number of levels")
        self.raw = bytes(raw)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            return bool(self._key.verify(message, signature))
        except Exception:  # malformed signatures make pyhsslms raise anything
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HssLmsPublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


class HssLmsPrivateKey:
    """A stateful HSS/LMS private key (pyhsslms); persist :meth:`serialize` after signing."""

    def __init__(self, key: Any) -> None:
        self._key = key

    @classmethod
    def generate(cls, levels: int = 1, height: int = 5) -> HssLmsPrivateKey:
        """A fresh SHA-256/M32 key with LM-OTS W8 (``height`` 5, 10, 15, 20 or 25)."""
        import pyhsslms

        lms_type = {
            5: pyhsslms.lms_sha256_m32_h5,
            10: pyhsslms.lms_sha256_m32_h10,
            15: pyhsslms.lms_sha256_m32_h15,
            20: pyhsslms.lms_sha256_m32_h20,
            25: pyhsslms.lms_sha256_m32_h25,
        }[height]
        return cls(
            pyhsslms.HssPrivateKey(
                levels=levels, lms_type=lms_type, lmots_type=pyhsslms.lmots_sha256_n32_w8
            )
        )

    @classmethod
    def deserialize(cls, data: bytes) -> HssLmsPrivateKey:
        import pyhsslms

        return cls(pyhsslms.HssPrivateKey.deserialize(data))

    def serialize(self) -> bytes:
        return bytes(self._key.serialize())

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message))

    def public_key(self) -> HssLmsPublicKey:
        return HssLmsPublicKey(bytes(self._key.publicKey().serialize()))


PublicKey: TypeAlias = (
    ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey | HssLmsPublicKey
)
PrivateKey: TypeAlias = (
    ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | HssLmsPrivateKey
)


def public_key_id(public_key: PublicKey) -> bytes:
    """RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits.

    For HSS/LMS the bits are the raw ``hss_public_key`` (RFC 9708 §4).
    """
    if isinstance(public_key, HssLmsPublicKey):
        return hashlib.sha1(public_key.raw).digest()
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


def certificate_key_id(cert: x509.Certificate) -> bytes:
    """The certificate's subjectKeyIdentifier extension, or method (1) over its key."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return bytes(ext.value.digest)
    except (x509.ExtensionNotFound, ValueError):  # absent, or extensions malformed
        return public_key_id(load_certificate_public_key(cert))


def load_certificate_public_key(cert: x509.Certificate) -> PublicKey:
    """The subject public key, including HSS/LMS keys that ``cryptography`` does not know."""
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return _hss_key_from_spki(cert.public_bytes(serialization.Encoding.DER))
    if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        return key
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def _hss_key_from_spki(cert_der: bytes) -> HssLmsPublicKey:
    buf = memoryview(cert_der)
    top = der.read_single(buf)
    tbs = der.children(buf, der.children(buf, top)[0])
    # tbsCertificate: [0] version?, serial, signature, issuer, validity, subject, spki, ...
    offset = 1 if tbs[0].is_context(0) else 0
    spki = der.children(buf, tbs[offset + 5])
    alg = AlgorithmId.decode(der.element_bytes(buf, spki[0]))
    if alg.oid != PublicKeyAlgorithm.HSS_LMS:
        raise ValueError(f"unsupported public key algorithm {oid_name(alg.oid)}")
    bits = der.content_bytes(buf, spki[1])
    if not bits or bits[0] != 0:
        raise ValueError("malformed subjectPublicKey")
    raw = bits[1:]
    # RFC 8708 §4 wrapped the key in an OCTET STRING; RFC 9708 §4 puts the raw key in the BIT
    # STRING. Accept both.
    if raw[:1] == b"\x04":
        try:
            inner = memoryview(raw)
            wrapped = der.read_single(inner)
            if wrapped.is_universal(der.OCTET_STRING) and not wrapped.constructed:
                raw = der.content_bytes(inner, wrapped)
        except der.DerError:
            pass
    return HssLmsPublicKey(raw)


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """A PEM or DER private key (EC, Ed25519 or RSA), or a serialized pyhsslms HSS key."""
    loaders = (serialization.load_pem_private_key, serialization.load_der_private_key)
    for loader in loaders:
        try:
            key = loader(data, password)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        if isinstance(
            key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        ):
            return key
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    try:
        return HssLmsPrivateKey.deserialize(data)
    except Exception:
        raise ValueError("not a PEM/DER private key nor an HSS/LMS private key") from None


def load_public_key(data: bytes) -> PublicKey:
    """A PEM/DER SubjectPublicKeyInfo, or a raw HSS/LMS public key."""
    for loader in (serialization.load_pem_public_key, serialization.load_der_public_key):
        try:
            key = loader(data)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
            return key
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    return HssLmsPublicKey(data)


# --- Signatures --------------------------------------------------------------------------------


def default_digest(key: PrivateKey | PublicKey) -> DigestAlgorithm:
    """The digest that goes with a key: SHA-512 for Ed25519 (RFC 8419 §3.1), the curve's hash for
    ECDSA (RFC 5754 §3.3 pairs P-256/SHA-256 and P-384/SHA-384), SHA-256 otherwise."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return DigestAlgorithm.SHA512
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return _SUPPORTED_CURVES.get(key.curve.name, DigestAlgorithm.SHA256)
    return DigestAlgorithm.SHA256


def _pss_params(digest: DigestAlgorithm) -> bytes:
    """RSASSA-PSS-params (RFC 4055 §3.1) with MGF1 over the same hash and a salt as long as the
    hash (RFC 4056 §3); SHA-2 parameters are omitted (RFC 5754 §2)."""
    hash_id = AlgorithmId(digest).encode()
    mgf = AlgorithmId(MaskGenAlgorithm.MGF1, hash_id).encode()
    salt = _HASHES[digest]().digest_size
    return der.sequence(
        der.tlv(0xA0, hash_id), der.tlv(0xA1, mgf), der.tlv(0xA2, der.encode_integer(salt))
    )


def sign(
    private_key: PrivateKey, digest: DigestAlgorithm, data: bytes
) -> tuple[AlgorithmId, bytes]:
    """Sign ``data`` (the DER of the signed attributes): the signatureAlgorithm and the value."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if private_key.curve.name not in _SUPPORTED_CURVES:
            raise ValueError(f"unsupported curve {private_key.curve.name}")
        oid = {v: k for k, v in _ECDSA_HASH.items()}[digest]
        return AlgorithmId(oid), private_key.sign(data, ec.ECDSA(_HASHES[digest]()))
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        if digest is not DigestAlgorithm.SHA512:
            raise ValueError("Ed25519 in CMS requires SHA-512 (RFC 8419 §3.1)")
        return AlgorithmId(SignatureAlgorithm.ED25519), private_key.sign(data)
    if isinstance(private_key, rsa.RSAPrivateKey):
        h = _HASHES[digest]()
        pss = asym_padding.PSS(mgf=asym_padding.MGF1(h), salt_length=h.digest_size)
        return (
            AlgorithmId(SignatureAlgorithm.RSASSA_PSS, _pss_params(digest)),
            private_key.sign(data, pss, h),
        )
    if isinstance(private_key, HssLmsPrivateKey):
        return AlgorithmId(SignatureAlgorithm.HSS_LMS), private_key.sign(data)
    raise TypeError(f"unsupported private key {type(private_key).__name__}")


def prepare_verifier(
    public_key: PublicKey, signature_algorithm: AlgorithmId, digest: DigestAlgorithm
) -> Callable[[bytes, bytes], bool]:
    """Check that a SignerInfo's algorithms fit the signer's key and are supported, and return
    ``verify(signature, data) -> bool``. Problems raise :class:`CmsError` with the RFC 4108 §4.1.3
    code: ``badSignatureAlgorithm``, ``unsupportedParameters``, ``unsupportedKeySize``,
    ``badDigestAlgorithm``."""
    oid = signature_algorithm.oid
    try:
        sig_alg = SignatureAlgorithm(oid)
    except ValueError:
        raise CmsError(
            E.BAD_SIGNATURE_ALGORITHM, f"unsupported signature algorithm {oid_name(oid)}"
        ) from None
    if sig_alg in _ECDSA_HASH:
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise _key_mismatch(sig_alg)
        if signature_algorithm.params is not None:  # RFC 5754 §3.3: parameters MUST be absent
            raise CmsError(E.UNSUPPORTED_PARAMETERS, f"{oid_name(oid)} with parameters")
        if public_key.curve.name not in _SUPPORTED_CURVES:
            raise CmsError(E.UNSUPPORTED_KEY_SIZE, f"unsupported curve {public_key.curve.name}")
        ecdsa = ec.ECDSA(_HASHES[_ECDSA_HASH[sig_alg]]())
        ec_key = public_key
        return lambda sig, data: _call(lambda: ec_key.verify(sig, data, ecdsa))
    if sig_alg is SignatureAlgorithm.ED25519:
        if not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise _key_mismatch(sig_alg)
        if signature_algorithm.params is not None:  # RFC 8419 §2.1: parameters MUST be absent
            raise CmsError(E.UNSUPPORTED_PARAMETERS, "id-Ed25519 with parameters")
        if digest is not DigestAlgorithm.SHA512:  # RFC 8419 §3.1
            raise CmsError(
                E.BAD_DIGEST_ALGORITHM, "Ed25519 signer must use SHA-512 (RFC 8419 §3.1)"
            )
        ed_key = public_key
        return lambda sig, data: _call(lambda: ed_key.verify(sig, data))
    if sig_alg is SignatureAlgorithm.RSASSA_PSS:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise _key_mismatch(sig_alg)
        if not _RSA_MIN_BITS <= public_key.key_size <= _RSA_MAX_BITS:
            raise CmsError(E.UNSUPPORTED_KEY_SIZE, f"RSA key of {public_key.key_size} bits")
        pss_hash, mgf_hash, salt = _parse_pss_params(signature_algorithm.params)
        h = _HASHES[pss_hash]()
        pss = asym_padding.PSS(mgf=asym_padding.MGF1(_HASHES[mgf_hash]()), salt_length=salt)
        rsa_key = public_key
        return lambda sig, data: _call(lambda: rsa_key.verify(sig, data, pss, h))
    # HSS/LMS
    if not isinstance(public_key, HssLmsPublicKey):
        raise _key_mismatch(sig_alg)
    if signature_algorithm.params is not None:  # RFC 8708 §3: parameters MUST be absent
        raise CmsError(E.UNSUPPORTED_PARAMETERS, "id-alg-hss-lms-hashsig with parameters")
    return public_key.verify


def verify(
    public_key: PublicKey,
    signature_algorithm: AlgorithmId,
    digest: DigestAlgorithm,
    signature: bytes,
    data: bytes,
) -> None:
    """Verify a SignerInfo signature over ``data``; raise :class:`CmsError` with the RFC 4108
    §4.1.3 code for what went wrong (``signatureFailure`` when it just does not verify)."""
    if not prepare_verifier(public_key, signature_algorithm, digest)(signature, data):
        raise CmsError(E.SIGNATURE_FAILURE, "the signature does not verify")


def _call(fn: Callable[[], None]) -> bool:
    try:
        fn()
    except InvalidSignature:
        return False
    return True


def _key_mismatch(sig_alg: SignatureAlgorithm) -> CmsError:
    return CmsError(
        E.BAD_SIGNATURE_ALGORITHM,
        f"signature algorithm {oid_name(sig_alg)} does not fit the signer's key",
    )


def _parse_pss_params(params: bytes | None) -> tuple[DigestAlgorithm, DigestAlgorithm, int]:
    """RSASSA-PSS-params (RFC 4055 §3.1); RFC 4056 §2 requires them to be present."""
    if params is None:
        raise CmsError(E.UNSUPPORTED_PARAMETERS, "RSASSA-PSS without parameters (RFC 4056 §2)")
    try:
        buf = memoryview(params)
        top = der.read_single(buf)
        der.expect(top, der.UNIVERSAL, der.SEQUENCE, True, "RSASSA-PSS-params")
        fields: dict[int, memoryview] = {}
        last = -1
        for part in der.children(buf, top):
            if (
                part.cls != der.CONTEXT
                or not part.constructed
                or part.number <= last
                or part.number > 3
            ):
                raise der.DerError("RSASSA-PSS-params: unexpected field")
            last = part.number
            inner = der.children(buf, part)
            if len(inner) != 1:
                raise der.DerError("RSASSA-PSS-params: malformed field")
            fields[part.number] = buf[inner[0].start : inner[0].end]
        hash_alg = (
            AlgorithmId.decode(fields[0]) if 0 in fields else AlgorithmId(DigestAlgorithm.SHA1)
        )
        if 1 in fields:
            mgf = AlgorithmId.decode(fields[1])
            if mgf.oid != MaskGenAlgorithm.MGF1 or mgf.params is None:
                raise CmsError(
                    E.UNSUPPORTED_PARAMETERS, f"unsupported mask generation {oid_name(mgf.oid)}"
                )
            mgf_hash_alg = AlgorithmId.decode(mgf.params)
        else:
            mgf_hash_alg = AlgorithmId(DigestAlgorithm.SHA1)
        salt = _small_int(fields[2]) if 2 in fields else 20
        trailer = _small_int(fields[3]) if 3 in fields else PSS_TRAILER_FIELD
    except der.DerError as exc:
        raise CmsError(
            E.UNSUPPORTED_PARAMETERS, f"malformed RSASSA-PSS parameters: {exc}"
        ) from None
    pss_hash = _pss_hash(hash_alg)
    mgf_hash = _pss_hash(mgf_hash_alg)
    if trailer != PSS_TRAILER_FIELD or not 0 <= salt <= 512:
        raise CmsError(
            E.UNSUPPORTED_PARAMETERS, "unsupported RSASSA-PSS salt length or trailer field"
        )
    return pss_hash, mgf_hash, salt


def _pss_hash(alg: AlgorithmId) -> DigestAlgorithm:
    try:
        digest = DigestAlgorithm(alg.oid)
    except ValueError:
        digest = None
    if digest is None or digest not in MESSAGE_DIGESTS or not alg.params_absent_or_null:
        raise CmsError(E.UNSUPPORTED_PARAMETERS, f"RSASSA-PSS with hash {oid_name(alg.oid)}")
    return digest


def _small_int(data: memoryview) -> int:
    tlv = der.read_single(data)
    der.expect(tlv, der.UNIVERSAL, der.INTEGER, False, "INTEGER")
    return der.decode_integer(data[tlv.content_start : tlv.content_end])


# --- Content encryption (RFC 3565, RFC 5084) ---------------------------------------------------


def content_encryption_params(
    algorithm: ContentEncryptionAlgorithm, iv: bytes, icv_length: int = 16
) -> bytes:
    """The parameters of the contentEncryptionAlgorithm: an IV (CBC) or GCMParameters."""
    if algorithm.is_gcm:
        icv = b"" if icv_length == GCM_DEFAULT_ICV_LENGTH else der.encode_integer(icv_length)
        return der.sequence(der.encode_octet_string(iv), icv)
    return der.encode_octet_string(iv)


def encrypt_content(
    algorithm: ContentEncryptionAlgorithm, key: bytes, plaintext: bytes | memoryview
) -> tuple[AlgorithmId, bytes]:
    """Encrypt ``plaintext``; AES-GCM appends its 16-octet tag to the ciphertext (EncryptedData has
    no separate MAC field; RFC 5084 §3.2 puts the ICV after the ciphertext)."""
    if len(key) != algorithm.key_size:
        raise ValueError(f"{oid_name(algorithm)} needs a {algorithm.key_size}-octet key")
    if algorithm.is_gcm:
        nonce = os.urandom(GCM_NONCE_LENGTH)
        enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        out = bytearray()
        for piece in rechunk([plaintext]):
            out += enc.update(piece)
        out += enc.finalize() + enc.tag
        return AlgorithmId(algorithm, content_encryption_params(algorithm, nonce, 16)), bytes(out)
    iv = os.urandom(AES_BLOCK_SIZE)
    cbc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    padder = padding.PKCS7(AES_BLOCK_SIZE * 8).padder()
    out = bytearray()
    for piece in rechunk([plaintext]):
        out += cbc.update(padder.update(piece))
    out += cbc.update(padder.finalize()) + cbc.finalize()
    return AlgorithmId(algorithm, content_encryption_params(algorithm, iv)), bytes(out)


@dataclass(frozen=True, slots=True)
class ContentCipher:
    """A parsed contentEncryptionAlgorithm ready to decrypt."""

    algorithm: ContentEncryptionAlgorithm
    iv: bytes
    icv_length: int


def parse_content_encryption(alg: AlgorithmId) -> ContentCipher:
    """Check a contentEncryptionAlgorithm; unknown or malformed → ``badEncryptAlgorithm``."""
    try:
        algorithm = ContentEncryptionAlgorithm(alg.oid)
    except ValueError:
        raise CmsError(
            E.BAD_ENCRYPT_ALGORITHM, f"unsupported content encryption {oid_name(alg.oid)}"
        ) from None
    if alg.params is None:
        raise CmsError(E.BAD_ENCRYPT_ALGORITHM, f"{oid_name(alg.oid)} without parameters")
    try:
        buf = memoryview(alg.params)
        top = der.read_single(buf)
        if algorithm.is_gcm:
            der.expect(top, der.UNIVERSAL, der.SEQUENCE, True, "GCMParameters")
            parts = der.children(buf, top)
            if not 1 <= len(parts) <= 2:
                raise der.DerError("GCMParameters: wrong number of fields")
            der.expect(parts[0], der.UNIVERSAL, der.OCTET_STRING, False, "aes-nonce")
            iv = der.content_bytes(buf, parts[0])
            icv = GCM_DEFAULT_ICV_LENGTH
            if len(parts) == 2:
                der.expect(parts[1], der.UNIVERSAL, der.INTEGER, False, "aes-ICVlen")
                icv = der.decode_integer(buf[parts[1].content_start : parts[1].content_end])
            if not 8 <= len(iv) <= 64 or not GCM_DEFAULT_ICV_LENGTH <= icv <= 16:
                raise der.DerError("GCMParameters: unsupported nonce or ICV length")
            return ContentCipher(algorithm, iv, icv)
        der.expect(top, der.UNIVERSAL, der.OCTET_STRING, False, "AES-IV")
        iv = der.content_bytes(buf, top)
        if len(iv) != AES_BLOCK_SIZE:
            raise der.DerError("AES-CBC IV must be 16 octets")
        return ContentCipher(algorithm, iv, 0)
    except der.DerError as exc:
        raise CmsError(E.BAD_ENCRYPT_ALGORITHM, f"{oid_name(alg.oid)}: {exc}") from None


def decrypt_stream(
    cipher: ContentCipher, key: bytes, chunks: Iterable[memoryview]
) -> Iterator[bytes]:
    """Decrypt a ciphertext given as chunks, yielding plaintext pieces.

    Failures (wrong key length, bad CBC padding, GCM tag mismatch) raise ``decryptFailure`` after
    the last piece: plaintext yielded before that is unauthenticated, so callers must not keep it
    until the generator finished (the loader only stores firmware after a full verification pass).
    """
    if len(key) != cipher.algorithm.key_size:
        raise CmsError(
            E.DECRYPT_FAILURE,
            f"decryption key has {len(key)} octets, "
            f"{oid_name(cipher.algorithm)} needs {cipher.algorithm.key_size}",
        )
    if cipher.algorithm.is_gcm:
        yield from _gcm_decrypt(cipher, key, chunks)
        return
    dec = Cipher(algorithms.AES(key), modes.CBC(cipher.iv)).decryptor()
    unpadder = padding.PKCS7(AES_BLOCK_SIZE * 8).unpadder()
    total = 0
    for piece in rechunk(chunks):
        total += len(piece)
        out = unpadder.update(dec.update(piece))
        if out:
            yield out
    if total == 0 or total % AES_BLOCK_SIZE:
        raise CmsError(E.DECRYPT_FAILURE, "AES-CBC ciphertext is not a whole number of blocks")
    try:
        out = unpadder.update(dec.finalize()) + unpadder.finalize()
    except ValueError:
        raise CmsError(
            E.DECRYPT_FAILURE, "bad AES-CBC padding (wrong key or corrupted ciphertext)"
        ) from None
    if out:
        yield out


def _gcm_decrypt(
    cipher: ContentCipher, key: bytes, chunks: Iterable[memoryview]
) -> Iterator[bytes]:
    dec = Cipher(
        algorithms.AES(key), modes.GCM(cipher.iv, min_tag_length=cipher.icv_length)
    ).decryptor()
    tail = b""
    n = cipher.icv_length
    for piece in rechunk(chunks):
        if len(piece) >= n:
            body = tail + bytes(piece[: len(piece) - n]) if tail else piece[: len(piece) - n]
            tail = bytes(piece[len(piece) - n :])
        else:
            joined = tail + bytes(piece)
            body = joined[: len(joined) - n] if len(joined) > n else b""
            tail = joined[len(joined) - n :] if len(joined) > n else joined
        if body:
            out = dec.update(body)
            if out:
                yield out
    if len(tail) != n:
        raise CmsError(E.DECRYPT_FAILURE, "AES-GCM ciphertext shorter than its tag")
    try:
        out = dec.finalize_with_tag(tail)
    except InvalidTag:
        raise CmsError(
            E.DECRYPT_FAILURE, "AES-GCM tag mismatch (wrong key or corrupted ciphertext)"
        ) from None
    if out:
        yield out


# --- Key wrap (RFC 3394, RFC 3565 §2.3.2) ------------------------------------------------------


def wrap_key(algorithm: KeyWrapAlgorithm, kek: bytes, key: bytes) -> bytes:
    if len(kek) != algorithm.key_size:
        raise ValueError(
            f"{oid_name(algorithm)} needs a {algorithm.key_size}-octet key-encryption key"
        )
    return keywrap.aes_key_wrap(kek, key)


def unwrap_key(algorithm: KeyWrapAlgorithm, kek: bytes, wrapped: bytes) -> bytes:
    if len(kek) != algorithm.key_size:
        raise CmsError(E.DECRYPT_FAILURE, "key-encryption key has the wrong length")
    try:
        return keywrap.aes_key_unwrap(kek, wrapped)
    except (keywrap.InvalidUnwrap, ValueError):
        raise CmsError(E.DECRYPT_FAILURE, "the wrapped firmware key does not unwrap") from None


def key_description(key: PublicKey | PrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA-{key.key_size}"
    return "HSS/LMS"
