"""COSE (RFC 9052/9053), implemented by suitkit: keys, algorithms, Sign1/Sign/Mac0/Mac.

SUIT authentication blocks (draft-ietf-suit-manifest-37 §8.3) use detached payloads: pass the
encoded SUIT_Digest (the content of the first SUIT_Authentication element) as ``payload``.

    key = CoseKey.load("signing-key.pem")
    block = sign1(digest_bytes, key).encode()            # COSE_Sign1, ESP256, payload null
    result = decode(block).verify([trusted], payload=digest_bytes)   # raises if it fails
"""

from suitkit.cose.algorithms import KeySigner, Signer
from suitkit.cose.keys import CoseKey, HssLmsParams, KeyStateError, key_id_of
from suitkit.cose.messages import (
    CoseMac,
    CoseMac0,
    CoseMessage,
    CoseRecipient,
    CoseSign,
    CoseSign1,
    CoseSignature,
    Headers,
    Recipient,
    VerifyResult,
    decode,
    mac,
    mac0,
    sign,
    sign1,
    verify,
)

__all__ = [
    "CoseKey",
    "CoseMac",
    "CoseMac0",
    "CoseMessage",
    "CoseRecipient",
    "CoseSign",
    "CoseSign1",
    "CoseSignature",
    "Headers",
    "HssLmsParams",
    "KeySigner",
    "KeyStateError",
    "Recipient",
    "Signer",
    "VerifyResult",
    "decode",
    "key_id_of",
    "mac",
    "mac0",
    "sign",
    "sign1",
    "verify",
]
