"""Every code and object identifier the CMS firmware-package path (RFC 4108) uses.

This is the single table of numbers for :mod:`suitkit.cms`: every other module names OIDs and
codes through these enums, never as bare literals. OIDs are dotted strings (``StrEnum``), so a
member compares equal to the string a decoder produces.

Sources:
- RFC 4108 §2.1.5, §2.2.3-§2.2.10, §2.3.1, §3.1.3, §4.1.3, §5 and Appendix A (ASN.1 module)
- RFC 5652 §4-§6, §11 (CMS content types and attributes), RFC 3274 §2 (compressed data)
- RFC 5754 (SHA-2 and ECDSA in CMS), RFC 8419 (Ed25519), RFC 4055/4056 (RSASSA-PSS),
  RFC 8708 / RFC 9708 (HSS/LMS), RFC 3565 (AES-CBC and AES key wrap), RFC 5084 (AES-GCM),
  RFC 2634 §2.9, §5.4 (content hints, signing certificate), RFC 5480 (EC public keys)
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


def _camel(name: str) -> str:
    """``BAD_SIGNED_ATTRS`` -> ``badSignedAttrs`` (the spelling of the RFC 4108 ASN.1 module)."""
    first, *rest = name.lower().split("_")
    return first + "".join(part.capitalize() for part in rest)


class LoadErrorCode(IntEnum):
    """``FirmwarePackageLoadErrorCode`` (RFC 4108 §4.1.3, ENUMERATED), all 37 values."""

    DECODE_FAILURE = 1
    BAD_CONTENT_INFO = 2
    BAD_SIGNED_DATA = 3
    BAD_ENCAP_CONTENT = 4
    BAD_CERTIFICATE = 5
    BAD_SIGNER_INFO = 6
    BAD_SIGNED_ATTRS = 7
    BAD_UNSIGNED_ATTRS = 8
    MISSING_CONTENT = 9
    NO_TRUST_ANCHOR = 10
    NOT_AUTHORIZED = 11
    BAD_DIGEST_ALGORITHM = 12
    BAD_SIGNATURE_ALGORITHM = 13
    UNSUPPORTED_KEY_SIZE = 14
    SIGNATURE_FAILURE = 15
    CONTENT_TYPE_MISMATCH = 16
    BAD_ENCRYPTED_DATA = 17
    UNPROTECTED_ATTRS_PRESENT = 18
    BAD_ENCRYPT_CONTENT = 19
    BAD_ENCRYPT_ALGORITHM = 20
    MISSING_CIPHERTEXT = 21
    NO_DECRYPT_KEY = 22
    DECRYPT_FAILURE = 23
    BAD_COMPRESS_ALGORITHM = 24
    MISSING_COMPRESSED_CONTENT = 25
    DECOMPRESS_FAILURE = 26
    WRONG_HARDWARE = 27
    STALE_PACKAGE = 28
    NOT_IN_COMMUNITY = 29
    UNSUPPORTED_PACKAGE_TYPE = 30
    MISSING_DEPENDENCY = 31
    WRONG_DEPENDENCY_VERSION = 32
    INSUFFICIENT_MEMORY = 33
    BAD_FIRMWARE = 34
    UNSUPPORTED_PARAMETERS = 35
    BREAKS_DEPENDENCY = 36
    OTHER_ERROR = 99

    @property
    def spec_name(self) -> str:
        """The RFC 4108 spelling, e.g. ``stalePackage``."""
        return _camel(self.name)

    @classmethod
    def name_of(cls, value: int) -> str | None:
        try:
            return cls(value).spec_name
        except ValueError:
            return None


class ContentType(StrEnum):
    """CMS content types (RFC 5652 §4-§8, RFC 3274 §2, RFC 4108 §2.1.5, §3.1.3, §4.1.3)."""

    DATA = "1.2.840.113549.1.7.1"
    SIGNED_DATA = "1.2.840.113549.1.7.2"
    ENVELOPED_DATA = "1.2.840.113549.1.7.3"
    ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
    COMPRESSED_DATA = "1.2.840.113549.1.9.16.1.9"
    FIRMWARE_PACKAGE = "1.2.840.113549.1.9.16.1.16"
    FIRMWARE_LOAD_RECEIPT = "1.2.840.113549.1.9.16.1.17"
    FIRMWARE_LOAD_ERROR = "1.2.840.113549.1.9.16.1.18"


class AttributeType(StrEnum):
    """Signed and unsigned attribute types (RFC 5652 §11, RFC 2634, RFC 4108 §2.2-§2.3)."""

    CONTENT_TYPE = "1.2.840.113549.1.9.3"
    MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
    SIGNING_TIME = "1.2.840.113549.1.9.5"
    SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
    CMS_ALGORITHM_PROTECTION = "1.2.840.113549.1.9.52"
    CONTENT_HINTS = "1.2.840.113549.1.9.16.2.4"
    SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
    SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
    FIRMWARE_PACKAGE_ID = "1.2.840.113549.1.9.16.2.35"
    TARGET_HARDWARE_IDS = "1.2.840.113549.1.9.16.2.36"
    DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.37"
    IMPL_CRYPTO_ALGS = "1.2.840.113549.1.9.16.2.38"
    WRAPPED_FIRMWARE_KEY = "1.2.840.113549.1.9.16.2.39"
    COMMUNITY_IDENTIFIERS = "1.2.840.113549.1.9.16.2.40"
    FW_PKG_MESSAGE_DIGEST = "1.2.840.113549.1.9.16.2.41"
    FIRMWARE_PACKAGE_INFO = "1.2.840.113549.1.9.16.2.42"
    IMPL_COMPRESS_ALGS = "1.2.840.113549.1.9.16.2.43"


class DigestAlgorithm(StrEnum):
    """Message digest algorithms (RFC 5754 §2; SHA-1 only names ESS certificate hashes)."""

    SHA1 = "1.3.14.3.2.26"
    SHA256 = "2.16.840.1.101.3.4.2.1"
    SHA384 = "2.16.840.1.101.3.4.2.2"
    SHA512 = "2.16.840.1.101.3.4.2.3"


class SignatureAlgorithm(StrEnum):
    """Signature algorithms a firmware signer may use (RFC 5754 §3.3, RFC 8419 §2.1,
    RFC 4056 §2, RFC 8708 §3)."""

    ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
    ECDSA_WITH_SHA384 = "1.2.840.10045.4.3.3"
    ECDSA_WITH_SHA512 = "1.2.840.10045.4.3.4"
    ED25519 = "1.3.101.112"
    RSASSA_PSS = "1.2.840.113549.1.1.10"
    HSS_LMS = "1.2.840.113549.1.9.16.3.17"


class PublicKeyAlgorithm(StrEnum):
    """SubjectPublicKeyInfo algorithms and named curves (RFC 5480, RFC 8410, RFC 8708 §4)."""

    EC_PUBLIC_KEY = "1.2.840.10045.2.1"
    RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
    ED25519 = "1.3.101.112"
    HSS_LMS = "1.2.840.113549.1.9.16.3.17"
    SECP256R1 = "1.2.840.10045.3.1.7"
    SECP384R1 = "1.3.132.0.34"


class MaskGenAlgorithm(StrEnum):
    """Mask generation functions for RSASSA-PSS (RFC 4055 §2.2)."""

    MGF1 = "1.2.840.113549.1.1.8"


class ContentEncryptionAlgorithm(StrEnum):
    """Firmware-encryption algorithms for EncryptedData (RFC 3565 §4.1, RFC 5084 §3.2)."""

    AES128_CBC = "2.16.840.1.101.3.4.1.2"
    AES256_CBC = "2.16.840.1.101.3.4.1.42"
    AES128_GCM = "2.16.840.1.101.3.4.1.6"
    AES256_GCM = "2.16.840.1.101.3.4.1.46"

    @property
    def key_size(self) -> int:
        """The key length in bytes."""
        return 16 if self in (self.AES128_CBC, self.AES128_GCM) else 32

    @property
    def is_gcm(self) -> bool:
        return self in (self.AES128_GCM, self.AES256_GCM)


class KeyWrapAlgorithm(StrEnum):
    """Key-encryption algorithms for the wrapped firmware key (RFC 3565 §2.3.2)."""

    AES128_WRAP = "2.16.840.1.101.3.4.1.5"
    AES256_WRAP = "2.16.840.1.101.3.4.1.45"

    @property
    def key_size(self) -> int:
        return 16 if self is self.AES128_WRAP else 32


class CompressionAlgorithm(StrEnum):
    """Compression algorithms for CompressedData (RFC 3274 §2)."""

    ZLIB = "1.2.840.113549.1.9.16.3.8"


class OtherNameType(StrEnum):
    """GeneralName otherName forms (RFC 4108 §5)."""

    HARDWARE_MODULE_NAME = "1.3.6.1.5.5.7.8.4"


#: The ASN.1 names of the OIDs above, for ``cms show`` and error messages.
OID_NAMES: dict[str, str] = {
    ContentType.DATA: "id-data",
    ContentType.SIGNED_DATA: "id-signedData",
    ContentType.ENVELOPED_DATA: "id-envelopedData",
    ContentType.ENCRYPTED_DATA: "id-encryptedData",
    ContentType.COMPRESSED_DATA: "id-ct-compressedData",
    ContentType.FIRMWARE_PACKAGE: "id-ct-firmwarePackage",
    ContentType.FIRMWARE_LOAD_RECEIPT: "id-ct-firmwareLoadReceipt",
    ContentType.FIRMWARE_LOAD_ERROR: "id-ct-firmwareLoadError",
    AttributeType.CONTENT_TYPE: "content-type",
    AttributeType.MESSAGE_DIGEST: "message-digest",
    AttributeType.SIGNING_TIME: "signing-time",
    AttributeType.SMIME_CAPABILITIES: "smime-capabilities",
    AttributeType.CMS_ALGORITHM_PROTECTION: "cms-algorithm-protection",
    AttributeType.CONTENT_HINTS: "content-hints",
    AttributeType.SIGNING_CERTIFICATE: "signing-certificate",
    AttributeType.SIGNING_CERTIFICATE_V2: "signing-certificate-v2",
    AttributeType.FIRMWARE_PACKAGE_ID: "firmware-package-identifier",
    AttributeType.TARGET_HARDWARE_IDS: "target-hardware-module-identifiers",
    AttributeType.DECRYPT_KEY_ID: "decrypt-key-identifier",
    AttributeType.IMPL_CRYPTO_ALGS: "implemented-crypto-algorithms",
    AttributeType.WRAPPED_FIRMWARE_KEY: "wrapped-firmware-decryption-key",
    AttributeType.COMMUNITY_IDENTIFIERS: "community-identifiers",
    AttributeType.FW_PKG_MESSAGE_DIGEST: "firmware-package-message-digest",
    AttributeType.FIRMWARE_PACKAGE_INFO: "firmware-package-info",
    AttributeType.IMPL_COMPRESS_ALGS: "implemented-compress-algorithms",
    DigestAlgorithm.SHA1: "id-sha1",
    DigestAlgorithm.SHA256: "id-sha256",
    DigestAlgorithm.SHA384: "id-sha384",
    DigestAlgorithm.SHA512: "id-sha512",
    SignatureAlgorithm.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
    SignatureAlgorithm.ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
    SignatureAlgorithm.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
    SignatureAlgorithm.ED25519: "id-Ed25519",
    SignatureAlgorithm.RSASSA_PSS: "id-RSASSA-PSS",
    SignatureAlgorithm.HSS_LMS: "id-alg-hss-lms-hashsig",
    PublicKeyAlgorithm.EC_PUBLIC_KEY: "id-ecPublicKey",
    PublicKeyAlgorithm.RSA_ENCRYPTION: "rsaEncryption",
    PublicKeyAlgorithm.SECP256R1: "secp256r1",
    PublicKeyAlgorithm.SECP384R1: "secp384r1",
    MaskGenAlgorithm.MGF1: "id-mgf1",
    ContentEncryptionAlgorithm.AES128_CBC: "id-aes128-CBC",
    ContentEncryptionAlgorithm.AES256_CBC: "id-aes256-CBC",
    ContentEncryptionAlgorithm.AES128_GCM: "id-aes128-GCM",
    ContentEncryptionAlgorithm.AES256_GCM: "id-aes256-GCM",
    KeyWrapAlgorithm.AES128_WRAP: "id-aes128-wrap",
    KeyWrapAlgorithm.AES256_WRAP: "id-aes256-wrap",
    CompressionAlgorithm.ZLIB: "id-alg-zlibCompress",
    OtherNameType.HARDWARE_MODULE_NAME: "id-on-hardwareModuleName",
}


def oid_name(oid: str) -> str:
    """``id-ct-firmwarePackage (1.2.840.113549.1.9.16.1.16)`` for a known OID, else the OID."""
    name = OID_NAMES.get(oid)
    return f"{name} ({oid})" if name else oid


# --- Protocol constants (RFC 4108 §2.1, §3.1.3, §4.1.3; RFC 5652 §5.1, §6.1, §8; RFC 3274) -----

#: SignedData.version for a firmware package (RFC 4108 §2.1.2) and signed reports (§3.1.2).
SIGNED_DATA_VERSION = 3
#: SignerInfo.version with a subjectKeyIdentifier sid (RFC 5652 §5.3, RFC 4108 §2.1.2.1).
SIGNER_INFO_VERSION_SKI = 3
#: SignerInfo.version with an issuerAndSerialNumber sid (RFC 5652 §5.3, RFC 4108 §3.1.2.1).
SIGNER_INFO_VERSION_ISSUER_SERIAL = 1
#: EncryptedData.version (RFC 4108 §2.1.3: MUST be 0 when unprotectedAttrs are absent).
ENCRYPTED_DATA_VERSION = 0
#: CompressedData.version (RFC 4108 §2.1.4, RFC 3274 §1.1).
COMPRESSED_DATA_VERSION = 0
#: EnvelopedData.version with only KEKRecipientInfo (RFC 5652 §6.1) and KEKRecipientInfo.version.
ENVELOPED_DATA_VERSION_KEK = 2
KEK_RECIPIENT_INFO_VERSION = 4
#: FWReceiptVersion / FWErrorVersion v1 (RFC 4108 §3.1.3, §4.1.3).
REPORT_VERSION_V1 = 1
#: RSASSA-PSS trailerField value (RFC 4055 §3.1: trailerFieldBC).
PSS_TRAILER_FIELD = 1
#: Default AES-GCM ICV length in bytes (RFC 5084 §3.2: aes-ICVlen DEFAULT 12).
GCM_DEFAULT_ICV_LENGTH = 12
#: AES-GCM nonce length suitkit generates (RFC 5084 §3.2 RECOMMENDS 12 octets).
GCM_NONCE_LENGTH = 12
#: AES block and CBC IV length in bytes (RFC 3565 §4.1).
AES_BLOCK_SIZE = 16
