"""Author side: encrypting a payload and writing its SUIT_Encryption_Info
(draft-ietf-suit-firmware-encryption-24 §4, §5).

One random content key (CEK) and IV per payload (draft §4: "A random CEK MUST be used with every
plaintext"; §8: never the same key and IV twice), wrapped for every recipient (draft §4.1.2 and
§4.2.2, second deployment option: one ciphertext, one COSE_recipient per device or device group).
The ciphertext is detached: the encryption info is known before the first byte is encrypted, and
the payload streams through in constant memory.

Layout (as in the draft's examples):

* AES-GCM / ChaCha20-Poly1305: protected ``{1: alg}``, unprotected ``{5: IV}``; the detached
  ciphertext is ``ciphertext || 16-byte tag``.
* AES-CTR: protected empty (draft §5: no AAD, so it MUST be empty), unprotected
  ``{1: alg, 5: IV}``; the ciphertext is as long as the plaintext.

::

    ciphertext, info = encrypt_payload(firmware, CoseAlgorithm.A128CTR, [Recipient(kek)])
    result = encrypt_file(Path("fw.bin"), Path("fw.enc"), CoseAlgorithm.A128GCM, recipients)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, NamedTuple

from suitkit.cose.keys import CoseKey
from suitkit.encryption.content import content_encryptor
from suitkit.encryption.cose_encrypt import CONTENT_ALGORITHMS, CoseEncrypt
from suitkit.encryption.recipients import Recipient, new_content_key, wrap_content_key
from suitkit.errors import AlgorithmUnsupportedError
from suitkit.format.codepoints import CoseAlgorithm, CoseHeader
from suitkit.format.digest import Digest, Hasher

__all__ = [
    "EncryptedFile",
    "EncryptedPayload",
    "PayloadEncryptor",
    "content_algorithm",
    "encrypt_file",
    "encrypt_payload",
]

_CHUNK: Final = 1 << 20
_ALG = int(CoseHeader.ALG)
_IV = int(CoseHeader.IV)

#: Names accepted for content algorithms (CLI ``--alg``, descriptions' ``encryption: alg:``).
CONTENT_ALGORITHM_NAMES: Final[dict[str, CoseAlgorithm]] = {
    "a128gcm": CoseAlgorithm.A128GCM,
    "a192gcm": CoseAlgorithm.A192GCM,
    "a256gcm": CoseAlgorithm.A256GCM,
    "a128ctr": CoseAlgorithm.A128CTR,
    "a192ctr": CoseAlgorithm.A192CTR,
    "a256ctr": CoseAlgorithm.A256CTR,
    "chacha20-poly1305": CoseAlgorithm.CHACHA20_POLY1305,
    "chacha20/poly1305": CoseAlgorithm.CHACHA20_POLY1305,
    "chacha-poly": CoseAlgorithm.CHACHA20_POLY1305,
}


def content_algorithm(alg: CoseAlgorithm | int | str) -> CoseAlgorithm:
    """A content encryption algorithm from its COSE value or name (``a128ctr``, ``A128GCM``,
    ``chacha20-poly1305``); AlgorithmUnsupportedError for anything else."""
    if isinstance(alg, str):
        found = CONTENT_ALGORITHM_NAMES.get(alg.strip().lower())
        if found is None:
            raise AlgorithmUnsupportedError(
                f"unknown content encryption algorithm {alg!r}; one of: "
                + ", ".join(k for k in CONTENT_ALGORITHM_NAMES if "/" not in k)
            )
        return found
    try:
        a = CoseAlgorithm(alg)
    except ValueError:
        raise AlgorithmUnsupportedError(
            f"content encryption algorithm {alg!r} is unknown"
        ) from None
    if a not in CONTENT_ALGORITHMS:
        raise AlgorithmUnsupportedError(f"{a.spec_name} is not a content encryption algorithm")
    return a


def _recipients(recipients: Iterable[Recipient | CoseKey]) -> list[Recipient]:
    out = [r if isinstance(r, Recipient) else Recipient(r) for r in recipients]
    if not out:
        raise ValueError("an encrypted payload needs at least one recipient")
    return out


class PayloadEncryptor:
    """Encrypts one payload for ``recipients``, streaming.

    ``encryption_info`` (the encoded COSE_Encrypt, the value of parameter 19) is ready at once;
    feed the plaintext to ``update(chunk) -> ciphertext`` and end with ``finalize()``, which
    returns the 16-byte tag for AEAD algorithms (the last bytes of the detached ciphertext) and
    b"" for AES-CTR.

    ``cek`` and ``iv`` are for reproducing test vectors only: reusing a key/IV pair breaks the
    confidentiality of every payload encrypted with it (draft §8).
    """

    __slots__ = ("_cipher", "alg", "info", "update")

    def __init__(
        self,
        alg: CoseAlgorithm | int | str,
        recipients: Iterable[Recipient | CoseKey],
        *,
        cek: bytes | None = None,
        iv: bytes | None = None,
    ) -> None:
        a = content_algorithm(alg)
        spec = CONTENT_ALGORITHMS[a]
        recs = _recipients(recipients)
        key = new_content_key(spec.key_length) if cek is None else bytes(cek)
        nonce = new_content_key(spec.iv_length) if iv is None else bytes(iv)
        if len(key) != spec.key_length or len(nonce) != spec.iv_length:
            raise ValueError(
                f"{a.spec_name} needs a {spec.key_length}-byte key and a {spec.iv_length}-byte IV"
            )
        protected: dict[int, Any]
        unprotected: dict[int, Any]
        if spec.aead:
            protected, unprotected = {_ALG: int(a)}, {_IV: nonce}
        else:
            protected, unprotected = {}, {_ALG: int(a), _IV: nonce}
        wrapped = [wrap_content_key(r, key) for r in recs]
        self.info = CoseEncrypt.build(protected, unprotected, wrapped)
        self.alg = a
        self._cipher = content_encryptor(a, key, nonce, self.info.protected_bytes)
        #: ``update(plaintext chunk) -> ciphertext chunk``
        self.update = self._cipher.update

    @property
    def encryption_info(self) -> bytes:
        return self.info.encoded

    def finalize(self) -> bytes:
        return self._cipher.finalize()


class EncryptedPayload(NamedTuple):
    """``(ciphertext, encryption_info)``: the detached ciphertext and the encoded COSE_Encrypt."""

    ciphertext: bytes
    encryption_info: bytes


def _source_chunks(
    payload: bytes | bytearray | memoryview | BinaryIO | Iterable[bytes], chunk_size: int
) -> Iterable[bytes | bytearray | memoryview]:
    if isinstance(payload, bytes | bytearray | memoryview):
        return (payload,)
    read = getattr(payload, "read", None)
    if read is not None:

        def gen() -> Iterable[bytes]:
            while chunk := read(chunk_size):
                yield chunk

        return gen()
    return payload


def encrypt_payload(
    payload: bytes | bytearray | memoryview | BinaryIO | Iterable[bytes],
    alg: CoseAlgorithm | int | str,
    recipients: Iterable[Recipient | CoseKey],
    *,
    chunk_size: int = _CHUNK,
) -> EncryptedPayload:
    """Encrypt ``payload`` (bytes, a binary file object or an iterable of chunks) for
    ``recipients`` (a :class:`Recipient`, or a bare ``CoseKey`` meaning its defaults).

    The ciphertext is returned in memory; for files larger than memory use
    :func:`encrypt_file`, or :class:`PayloadEncryptor` directly.
    """
    enc = PayloadEncryptor(alg, recipients)
    parts = [enc.update(chunk) for chunk in _source_chunks(payload, chunk_size)]
    parts.append(enc.finalize())
    return EncryptedPayload(b"".join(parts), enc.encryption_info)


@dataclass(frozen=True, slots=True)
class EncryptedFile:
    """What :func:`encrypt_file` wrote and measured: the encryption info, and digest and size of
    the plaintext (for image-match after decryption) and of the ciphertext (for image-match
    before decryption, draft §6.1)."""

    path: Path
    encryption_info: bytes
    alg: CoseAlgorithm
    plaintext_digest: Digest
    plaintext_size: int
    ciphertext_digest: Digest
    ciphertext_size: int


def encrypt_stream(
    source: Iterable[bytes | bytearray | memoryview],
    sink: BinaryIO,
    alg: CoseAlgorithm | int | str,
    recipients: Iterable[Recipient | CoseKey],
    *,
    digest_algorithm: int = CoseAlgorithm.SHA_256,
) -> tuple[bytes, Digest, int, Digest, int]:
    """Encrypt ``source`` chunks into ``sink``; return ``(encryption_info, plaintext digest,
    plaintext size, ciphertext digest, ciphertext size)``. Constant memory."""
    enc = PayloadEncryptor(alg, recipients)
    hp, hc = Hasher(digest_algorithm), Hasher(digest_algorithm)
    n_plain = n_cipher = 0
    for chunk in source:
        hp.update(chunk)
        n_plain += len(chunk)
        out = enc.update(chunk)
        hc.update(out)
        n_cipher += len(out)
        sink.write(out)
    tail = enc.finalize()
    hc.update(tail)
    n_cipher += len(tail)
    sink.write(tail)
    return (
        enc.encryption_info,
        Digest(digest_algorithm, hp.digest()),
        n_plain,
        Digest(digest_algorithm, hc.digest()),
        n_cipher,
    )


def encrypt_file(
    source: Path,
    destination: Path,
    alg: CoseAlgorithm | int | str,
    recipients: Sequence[Recipient | CoseKey],
    *,
    digest_algorithm: int = CoseAlgorithm.SHA_256,
    chunk_size: int = _CHUNK,
) -> EncryptedFile:
    """Encrypt the file ``source`` into ``destination`` (written atomically: a temporary file
    renamed into place), streaming in ``chunk_size`` chunks."""
    destination = Path(destination)
    directory = destination.parent if str(destination.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{destination.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, Path(source).open("rb") as src:
            info, pd, ps, cd, cs = encrypt_stream(
                _source_chunks(src, chunk_size),
                out,
                alg,
                recipients,
                digest_algorithm=digest_algorithm,
            )
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return EncryptedFile(destination, info, content_algorithm(alg), pd, ps, cd, cs)
