"""Content encryption, streaming (draft-ietf-suit-firmware-encryption-24 §5).

Every cipher here takes the payload in chunks and keeps O(1) state, so a payload of any size is
encrypted or decrypted in constant memory:

* **AES-CTR** (A128CTR/A192CTR/A256CTR, RFC 9459): the 16-byte IV is the initial counter block,
  incremented by one per 16-byte block (draft §5.2). No AAD, no tag; the protected header of the
  COSE_Encrypt must be empty (draft §5). Output follows input byte for byte.
* **AES-GCM** (A128GCM/A192GCM/A256GCM, RFC 9053 §4.1): 12-byte IV, AAD = the Enc_structure
  ``["Encrypt", protected, h'']`` (draft §5, RFC 9052 §5.3), 16-byte tag appended to the
  ciphertext (the detached ciphertext is ``ciphertext || tag``). The decryptor holds back the
  last 16 bytes it has seen, since they may be the tag, and checks the tag in ``finalize()``.
* **ChaCha20/Poly1305** (RFC 9053 §4.3, RFC 8439 §2.8): cryptography has no streaming AEAD API
  for it, so it is built from its two streaming primitives exactly as RFC 8439 §2.8 composes
  them: the Poly1305 one-time key is the first 32 bytes of the ChaCha20 keystream at block
  counter 0, the payload is encrypted from block counter 1, and the tag is Poly1305 over
  ``AAD || pad16 || ciphertext || pad16 || le64(len(AAD)) || le64(len(ciphertext))``. The tests
  check it against cryptography's one-shot ``ChaCha20Poly1305``. No bounded buffer is needed.

An AEAD decryptor returns plaintext from ``update()`` *before* the tag is checked: a caller must
write it to a staging area and make it usable only after ``finalize()`` returned (see
:mod:`suitkit.encryption.decrypt`).
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import poly1305
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from suitkit.encryption.cose_encrypt import CONTENT_ALGORITHMS, ContentAlgorithm
from suitkit.errors import AuthenticationError, OperationFailedError
from suitkit.format.codepoints import CoseAlgorithm

__all__ = [
    "StreamCipher",
    "content_decryptor",
    "content_encryptor",
    "enc_structure",
]

_A = CoseAlgorithm
_TAG: Final = 16

#: RFC 8439 §2.4: a 32-bit block counter; block 0 makes the Poly1305 key, so the payload may use
#: 2**32 - 1 blocks of 64 bytes.
CHACHA_MAX_BYTES: Final = ((1 << 32) - 1) * 64
#: NIST SP 800-38D §5.2.1.1: at most 2**39 - 256 bits of plaintext per GCM invocation.
GCM_MAX_BYTES: Final = ((1 << 39) - 256) // 8


class StreamCipher(Protocol):
    """A streaming encryptor or decryptor: ``update`` chunks in order, then ``finalize`` once."""

    def update(self, data: bytes | bytearray | memoryview) -> bytes: ...

    def finalize(self) -> bytes: ...


def enc_structure(protected: bytes, external_aad: bytes = b"") -> bytes:
    """The encoded Enc_structure ``["Encrypt", protected, external_aad]`` (RFC 9052 §5.3); SUIT
    uses an empty external_aad (draft §5)."""
    return b"".join((b"\x83\x67Encrypt", _bstr_head(len(protected)), protected,
                     _bstr_head(len(external_aad)), external_aad))  # fmt: skip


def _bstr_head(n: int) -> bytes:
    if n < 24:
        return bytes((0x40 | n,))
    if n < 0x100:
        return bytes((0x58, n))
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\x5a" + n.to_bytes(4, "big")
    return b"\x5b" + n.to_bytes(8, "big")


def _check(spec: ContentAlgorithm, key: bytes, iv: bytes) -> None:
    if len(key) != spec.key_length:
        raise ValueError(f"{spec.alg.spec_name} needs a {spec.key_length}-byte key, not {len(key)}")
    if len(iv) != spec.iv_length:
        raise ValueError(f"{spec.alg.spec_name} needs a {spec.iv_length}-byte IV, not {len(iv)}")


def _spec(alg: CoseAlgorithm) -> ContentAlgorithm:
    spec = CONTENT_ALGORITHMS.get(alg)
    if spec is None:
        raise ValueError(f"{alg!r} is not a content encryption algorithm")
    return spec


# --- AES-CTR -----------------------------------------------------------------------------------


class _Ctr:
    """AES-CTR, either direction (the same keystream XOR). ``update`` is cryptography's own."""

    __slots__ = ("_ctx", "update")

    def __init__(self, key: bytes, iv: bytes, encrypt: bool) -> None:
        cipher = Cipher(algorithms.AES(key), modes.CTR(iv))
        self._ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        self.update = self._ctx.update  # the hot path: no Python frame of ours per chunk

    def finalize(self) -> bytes:
        return bytes(self._ctx.finalize())


# --- AES-GCM -----------------------------------------------------------------------------------


class _GcmEncryptor:
    __slots__ = ("_ctx", "_n")

    def __init__(self, key: bytes, iv: bytes, aad: bytes) -> None:
        self._ctx = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        self._ctx.authenticate_additional_data(aad)
        self._n = 0

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        self._n += len(data)
        if self._n > GCM_MAX_BYTES:
            raise OperationFailedError("AES-GCM payload exceeds 2**39 - 256 bits")
        return bytes(self._ctx.update(data))

    def finalize(self) -> bytes:
        out = bytes(self._ctx.finalize())
        return out + bytes(self._ctx.tag)


class _TagHoldback:
    """Keeps the last 16 bytes seen (the tag, once the input ends) and passes the rest on."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def split(self, data: bytes | bytearray | memoryview) -> tuple[bytes, memoryview]:
        """(held-back bytes to process first, then the part of ``data`` to process now)."""
        view = memoryview(data)
        n = len(view)
        if n >= _TAG:
            head, self._tail = self._tail, bytes(view[n - _TAG :])
            return head, view[: n - _TAG]
        joined = self._tail + bytes(view)
        cut = max(0, len(joined) - _TAG)
        self._tail = joined[cut:]
        return joined[:cut], view[:0]

    def tag(self, alg: str) -> bytes:
        if len(self._tail) != _TAG:
            raise AuthenticationError(
                f"{alg} ciphertext is shorter than its 16-byte authentication tag"
            )
        return self._tail


class _GcmDecryptor:
    __slots__ = ("_ctx", "_hold", "_n")

    def __init__(self, key: bytes, iv: bytes, aad: bytes) -> None:
        self._ctx = Cipher(algorithms.AES(key), modes.GCM(iv)).decryptor()
        self._ctx.authenticate_additional_data(aad)
        self._hold = _TagHoldback()
        self._n = 0

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        head, rest = self._hold.split(data)
        self._n += len(head) + len(rest)
        if self._n > GCM_MAX_BYTES:
            raise OperationFailedError("AES-GCM payload exceeds 2**39 - 256 bits")
        if head:
            return bytes(self._ctx.update(head)) + bytes(self._ctx.update(rest))
        return bytes(self._ctx.update(rest))

    def finalize(self) -> bytes:
        tag = self._hold.tag("AES-GCM")
        try:
            return bytes(self._ctx.finalize_with_tag(tag))
        except InvalidTag:
            raise AuthenticationError(
                "AES-GCM authentication tag does not verify: wrong key or altered ciphertext"
            ) from None


# --- ChaCha20/Poly1305 (RFC 8439 §2.8) -----------------------------------------------------------


def _pad16(n: int) -> bytes:
    return b"\x00" * (-n % 16)


class _ChaChaPoly:
    """RFC 8439 §2.8 AEAD from the ChaCha20 and Poly1305 primitives, either direction."""

    __slots__ = ("_aad_len", "_ctx", "_encrypt", "_hold", "_mac", "_n")

    def __init__(self, key: bytes, nonce: bytes, aad: bytes, encrypt: bool) -> None:
        # cryptography's ChaCha20 takes a 16-byte "nonce": 4-byte little-endian block counter
        # followed by the 12-byte IETF nonce (RFC 8439 §2.3).
        block0 = Cipher(algorithms.ChaCha20(key, b"\x00\x00\x00\x00" + nonce), None).encryptor()
        otk = block0.update(b"\x00" * 32)
        cipher = Cipher(algorithms.ChaCha20(key, b"\x01\x00\x00\x00" + nonce), None)
        self._ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        self._mac = poly1305.Poly1305(otk)
        self._mac.update(aad + _pad16(len(aad)))
        self._aad_len = len(aad)
        self._encrypt = encrypt
        self._hold = _TagHoldback()
        self._n = 0

    def _count(self, n: int) -> None:
        self._n += n
        if self._n > CHACHA_MAX_BYTES:
            raise OperationFailedError("ChaCha20/Poly1305 payload exceeds 2**32 - 1 blocks")

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._encrypt:
            self._count(len(data))
            out = bytes(self._ctx.update(data))
            self._mac.update(out)
            return out
        head, rest = self._hold.split(data)
        self._count(len(head) + len(rest))
        if head:
            self._mac.update(head)
            self._mac.update(rest)
            return bytes(self._ctx.update(head)) + bytes(self._ctx.update(rest))
        self._mac.update(rest)
        return bytes(self._ctx.update(rest))

    def _lengths(self) -> bytes:
        return _pad16(self._n) + struct.pack("<QQ", self._aad_len, self._n)

    def finalize(self) -> bytes:
        self._ctx.finalize()
        self._mac.update(self._lengths())
        if self._encrypt:
            return bytes(self._mac.finalize())
        tag = self._hold.tag("ChaCha20/Poly1305")
        try:
            self._mac.verify(tag)  # constant-time comparison
        except InvalidSignature:
            raise AuthenticationError(
                "ChaCha20/Poly1305 authentication tag does not verify: wrong key or altered "
                "ciphertext"
            ) from None
        return b""


# --- factories ---------------------------------------------------------------------------------


def content_encryptor(alg: CoseAlgorithm, key: bytes, iv: bytes, protected: bytes) -> StreamCipher:
    """A streaming encryptor; its ``finalize()`` returns the tag of an AEAD cipher (to append to
    the ciphertext) and b"" for AES-CTR. ``protected`` is the COSE_Encrypt protected header."""
    spec = _spec(alg)
    _check(spec, key, iv)
    if not spec.aead:
        return _Ctr(key, iv, True)
    aad = enc_structure(protected)
    if alg is _A.CHACHA20_POLY1305:
        return _ChaChaPoly(key, iv, aad, True)
    return _GcmEncryptor(key, iv, aad)


def content_decryptor(alg: CoseAlgorithm, key: bytes, iv: bytes, protected: bytes) -> StreamCipher:
    """A streaming decryptor of ``ciphertext || tag``; ``finalize()`` raises
    AuthenticationError when the tag of an AEAD cipher does not verify."""
    spec = _spec(alg)
    _check(spec, key, iv)
    if not spec.aead:
        return _Ctr(key, iv, False)
    aad = enc_structure(protected)
    if alg is _A.CHACHA20_POLY1305:
        return _ChaChaPoly(key, iv, aad, False)
    return _GcmDecryptor(key, iv, aad)
