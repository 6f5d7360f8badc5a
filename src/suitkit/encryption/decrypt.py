"""Device side: streaming decryption of a payload during suit-directive-copy / -write
(draft-ietf-suit-firmware-encryption-24 §3.1-3.2, §5).

When suit-parameter-encryption-info is set for the destination component, the processor decrypts
what copy or write stores. Call this module from the processor like so::

    from suitkit.encryption.decrypt import decrypt_chunks

    info = params.get(Parameter.ENCRYPTION_INFO)          # an EncryptionInfo (its .encoded)
    if info is not None:
        chunks = decrypt_chunks(info, device_keys, chunks)   # lazily: nothing runs yet
    store(component, chunks)      # writes each chunk; commits only once the iterator is exhausted

or, for finer control, :func:`open_decryptor` (``update(chunk) -> bytes``, ``finalize() -> bytes``).
:func:`check_supported` is a keyless pre-flight check (well-formed, supported algorithms) for the
pass that vets parameters before a manifest runs.

Keys: the device's ``CoseKey`` objects: AES key-encryption keys (symmetric, 16/24/32 bytes) for
AES-KW and private EC2/OKP keys for ECDH-ES; the recipient is chosen by kid
(:func:`~suitkit.encryption.recipients.unwrap_content_key`). The content key is unwrapped when the
decryptor is opened (for :func:`decrypt_chunks`: at the first ``next()``, before any chunk is
read), so a device without the key fails before it erases the destination.

**AEAD ciphers (AES-GCM, ChaCha20/Poly1305) and staging.** The tag is the last 16 bytes of the
ciphertext, so it can only be checked at the end: ``update()`` returns plaintext that is *not yet
authenticated*, and ``finalize()`` raises :class:`~suitkit.errors.AuthenticationError` when the tag
does not verify. A caller MUST write the output into a staging area (a component writer that is
not bootable until committed) and commit only after ``finalize()`` returned; on any exception it
MUST abort (erase) what it wrote. :func:`decrypt_chunks` raises from its last ``next()`` when the
tag fails, so a store loop that commits after the loop and aborts on exception does exactly this.
Memory stays constant for every algorithm (16 bytes held back for the tag; ChaCha20/Poly1305 is
streamed through its RFC 8439 primitives, without buffering the payload).

**AES-CTR** has no tag: output is final as it comes, and integrity comes from the manifest's
image-match, on the ciphertext before decryption (draft §6.1.2, RFC 9459 §8: RECOMMENDED, it also
stops battery exhaustion) and/or on the plaintext after it.

Errors: AlgorithmUnsupportedError (alg-unsupported) for a content or key distribution algorithm
suitkit lacks; NoDecryptionKeyError (operation-failed) when the device has no key for any
recipient (unknown kid); AuthenticationError (unauthorised) for a key that does not unwrap the
content key or a tag that does not verify; DecodeError (cbor-parse) / CoseUnsupportedError
(cose-unsupported) for malformed encryption info.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from typing import Final, Protocol

from suitkit.cose.keys import CoseKey
from suitkit.encryption.content import StreamCipher, content_decryptor
from suitkit.encryption.cose_encrypt import CoseEncrypt, EncryptRecipient
from suitkit.encryption.recipients import unwrap_content_key
from suitkit.errors import AlgorithmUnsupportedError, CoseUnsupportedError, OperationFailedError
from suitkit.format.codepoints import CoseAlgorithm
from suitkit.format.parameters import EncryptionInfo

__all__ = [
    "PayloadDecryptor",
    "check_supported",
    "decrypt",
    "decrypt_chunks",
    "decrypt_to",
    "open_decryptor",
    "parse_encryption_info",
    "read_chunks",
]

EncryptionInfoLike = bytes | bytearray | memoryview | EncryptionInfo | CoseEncrypt

_CHUNK: Final = 1 << 20


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


def parse_encryption_info(info: EncryptionInfoLike, *, path: str | None = None) -> CoseEncrypt:
    """The decoded SUIT_Encryption_Info (the content of parameter 19)."""
    if isinstance(info, CoseEncrypt):
        return info
    if isinstance(info, EncryptionInfo):
        return CoseEncrypt.decode(info.encoded, path=path)
    if isinstance(info, bytes | bytearray | memoryview):
        return CoseEncrypt.decode(bytes(info), path=path)
    raise TypeError(f"expected encryption info bytes, not {type(info).__name__}")


def check_supported(info: EncryptionInfoLike, *, path: str | None = None) -> CoseEncrypt:
    """Check, before anything runs, that suitkit can use this encryption info: well-formed,
    a supported content algorithm with an IV of the right length, and at least one recipient
    with a supported key distribution. For a processor's pre-flight pass over the parameters
    (no key is needed). Returns the decoded COSE_Encrypt."""
    enc = parse_encryption_info(info, path=path)
    spec = enc.content_algorithm
    enc.iv  # noqa: B018 - checks the IV length
    if not spec.aead and enc.protected_bytes:
        raise CoseUnsupportedError(
            f"{spec.alg.spec_name} encryption info has a non-empty protected header; the draft "
            "requires it empty for ciphers without AAD (draft-ietf-suit-firmware-encryption §5)",
            path=path,
        )
    errors = []
    for rec in enc.recipients:
        try:
            rec.alg  # noqa: B018
            return enc
        except AlgorithmUnsupportedError as exc:
            errors.append(exc.message)
    raise AlgorithmUnsupportedError(
        "no COSE_recipient uses a supported key distribution: " + "; ".join(errors), path=path
    )


class PayloadDecryptor:
    """Decrypts one payload, chunk by chunk: ``update(chunk) -> bytes`` any number of times, then
    ``finalize() -> bytes`` once (AEAD: checks the tag; raises AuthenticationError if it fails).

    ``aead`` tells whether the output must be staged until ``finalize()`` (see the module doc).
    """

    __slots__ = ("_cipher", "_done", "aead", "alg", "info", "key", "recipient", "update")

    def __init__(
        self, info: CoseEncrypt, cipher: StreamCipher, recipient: EncryptRecipient, key: CoseKey
    ) -> None:
        self.info = info
        self.alg: CoseAlgorithm = info.alg
        self.aead: bool = info.content_algorithm.aead
        self.recipient = recipient
        #: the device key that unwrapped the content key
        self.key = key
        self._cipher = cipher
        self._done = False
        #: ``update(chunk) -> bytes``: the cipher's own method (no extra call per chunk)
        self.update = cipher.update

    def finalize(self) -> bytes:
        if self._done:
            raise ValueError("finalize() was already called")
        self._done = True
        return self._cipher.finalize()


def open_decryptor(
    info: EncryptionInfoLike, keys: CoseKey | Iterable[CoseKey], *, path: str | None = None
) -> PayloadDecryptor:
    """Decode the encryption info, unwrap the content key with one of the device's ``keys``, and
    return a decryptor for the detached ciphertext (see the module doc for the errors)."""
    enc = check_supported(info, path=path)  # no key work for an unusable encryption info
    spec = enc.content_algorithm
    iv = enc.iv
    unwrapped = unwrap_content_key(enc, keys, key_length=spec.key_length)
    cipher = content_decryptor(spec.alg, unwrapped.cek, iv, enc.protected_bytes)
    return PayloadDecryptor(enc, cipher, unwrapped.recipient, unwrapped.key)


def decrypt_chunks(
    info: EncryptionInfoLike,
    keys: CoseKey | Iterable[CoseKey],
    chunks: Iterable[bytes | bytearray | memoryview],
    *,
    path: str | None = None,
) -> Generator[bytes, None, None]:
    """Decrypt a stream of ciphertext chunks into a stream of plaintext chunks (one out per
    chunk in, possibly empty ones are skipped; the last one comes from ``finalize()``).

    A generator: the key is unwrapped at the first ``next()``; for an AEAD cipher the last
    ``next()`` raises AuthenticationError if the tag does not verify (commit only after the
    iterator is exhausted). Closing the generator closes ``chunks`` when it can be closed.
    """
    dec = open_decryptor(info, keys, path=path)
    update = dec.update
    it = iter(chunks)
    try:
        for chunk in it:
            out = update(chunk)
            if out:
                yield out
        last = dec.finalize()
        if last:
            yield last
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def decrypt(
    info: EncryptionInfoLike,
    keys: CoseKey | Iterable[CoseKey],
    ciphertext: bytes | bytearray | memoryview | None = None,
) -> bytes:
    """Decrypt a whole payload in memory: ``ciphertext`` (detached), or the ciphertext the
    COSE_Encrypt carries when it is not detached."""
    enc = parse_encryption_info(info)
    if ciphertext is None:
        if enc.ciphertext is None:
            raise OperationFailedError(
                "the encryption info has a detached ciphertext and none was supplied"
            )
        ciphertext = enc.ciphertext
    dec = open_decryptor(enc, keys)
    return dec.update(ciphertext) + dec.finalize()


def decrypt_to(
    info: EncryptionInfoLike,
    keys: CoseKey | Iterable[CoseKey],
    source: Iterable[bytes | bytearray | memoryview],
    sink: _Writable,
) -> int:
    """Decrypt ``source`` chunks into ``sink`` (``write(bytes)``); return the plaintext size.
    The caller stages ``sink`` and commits only if this returns (see the module doc)."""
    n = 0
    for out in decrypt_chunks(info, keys, source):
        sink.write(out)
        n += len(out)
    return n


def read_chunks(f: _Readable, chunk_size: int = _CHUNK) -> Iterator[bytes]:
    """``f.read(chunk_size)`` until the end: a file as a chunk iterator."""
    while chunk := f.read(chunk_size):
        yield chunk
