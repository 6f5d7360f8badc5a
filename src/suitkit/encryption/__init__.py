"""Encrypted payloads in SUIT manifests (draft-ietf-suit-firmware-encryption-24) and the
mandatory-to-implement algorithm profiles (draft-ietf-suit-mti).

Author side::

    from suitkit.encryption import Recipient, encrypt_payload
    ciphertext, info = encrypt_payload(firmware, "a128ctr", [Recipient(kek)])
    # info is the value of suit-parameter-encryption-info (19)

Device side (see :mod:`suitkit.encryption.decrypt` for staging AEAD output)::

    from suitkit.encryption import decrypt_chunks
    for plaintext in decrypt_chunks(info, device_keys, ciphertext_chunks): ...

Modules: :mod:`.cose_encrypt` (the COSE_Encrypt codec), :mod:`.recipients` (AES-KW and
ECDH-ES + AES-KW), :mod:`.content` (streaming AES-CTR, AES-GCM, ChaCha20/Poly1305),
:mod:`.encrypt`, :mod:`.decrypt`, :mod:`.builder` (manifest descriptions with an ``encryption``
block), :mod:`.profiles` (the six MTI profiles).
"""

from suitkit.encryption.cose_encrypt import (
    CONTENT_ALGORITHMS,
    ECDH_ALGORITHMS,
    KEY_WRAP_ALGORITHMS,
    CoseEncrypt,
    EncryptRecipient,
)
from suitkit.encryption.decrypt import (
    PayloadDecryptor,
    check_supported,
    decrypt,
    decrypt_chunks,
    open_decryptor,
    parse_encryption_info,
)
from suitkit.encryption.encrypt import (
    EncryptedFile,
    EncryptedPayload,
    PayloadEncryptor,
    content_algorithm,
    encrypt_file,
    encrypt_payload,
)
from suitkit.encryption.recipients import (
    KDF_CONTEXT_OTHER,
    NoDecryptionKeyError,
    Recipient,
    kdf_context,
    unwrap_content_key,
)

__all__ = [
    "CONTENT_ALGORITHMS",
    "ECDH_ALGORITHMS",
    "KDF_CONTEXT_OTHER",
    "KEY_WRAP_ALGORITHMS",
    "CoseEncrypt",
    "EncryptRecipient",
    "EncryptedFile",
    "EncryptedPayload",
    "NoDecryptionKeyError",
    "PayloadDecryptor",
    "PayloadEncryptor",
    "Recipient",
    "check_supported",
    "content_algorithm",
    "decrypt",
    "decrypt_chunks",
    "encrypt_file",
    "encrypt_payload",
    "kdf_context",
    "open_decryptor",
    "parse_encryption_info",
    "unwrap_content_key",
]
