"""Every SUIT and COSE codepoint suitkit knows, one ``IntEnum`` per IANA registry.

This is the single table of numbers in suitkit: every other module names codepoints through
these enums, never as bare integers.

Sources:
- draft-ietf-suit-manifest-37 §11 (IANA) and Appendix A (CDDL)
- draft-ietf-suit-trust-domains-11 §9, draft-ietf-suit-update-management-14 §7,
  draft-ietf-suit-firmware-encryption-24 §12, draft-ietf-suit-report-18 §8
- RFC 9052/9053 (COSE), RFC 9054 (hashes), RFC 9864 (fully specified algorithms: ESP256 -9, ...),
  RFC 8778 (HSS-LMS -46), ML-DSA -48/-49/-50 (draft-ietf-cose-dilithium)
"""

from __future__ import annotations

from enum import IntEnum


def _spec_name(member: IntEnum) -> str:
    """The spec's spelling of a member name: ``IMAGE_DIGEST`` -> ``image-digest``."""
    return member.name.lower().replace("_", "-")


class _Registry(IntEnum):
    """Base class: a registry whose members print with the spec's names."""

    @property
    def spec_name(self) -> str:
        return _spec_name(self)

    @classmethod
    def name_of(cls, value: int) -> str | None:
        """The spec name of ``value`` in this registry, or None if it is not registered."""
        try:
            return _spec_name(cls(value))
        except ValueError:
            return None


# --- CBOR tags -------------------------------------------------------------------------------


class Tag(_Registry):
    """CBOR tags used by SUIT and COSE (RFC 9052 §2, manifest §11.2)."""

    COSE_ENCRYPT0 = 16
    COSE_MAC0 = 17
    COSE_SIGN1 = 18
    COSE_ENCRYPT = 96
    COSE_MAC = 97
    COSE_SIGN = 98
    SUIT_ENVELOPE = 107
    CBOR_PEN = 112
    SUIT_MANIFEST = 1070


# --- SUIT envelope and manifest --------------------------------------------------------------


class EnvelopeKey(_Registry):
    """SUIT Envelope Elements (manifest §11.3; trust domains §9.1)."""

    DELEGATION = 1  # trust domains
    AUTHENTICATION_WRAPPER = 2
    MANIFEST = 3
    PAYLOAD_FETCH = 16
    INSTALL = 20
    TEXT = 23


class ManifestKey(_Registry):
    """SUIT Manifest Elements (manifest §11.4; trust domains §9.2)."""

    MANIFEST_VERSION = 1
    MANIFEST_SEQUENCE_NUMBER = 2
    COMMON = 3
    REFERENCE_URI = 4
    MANIFEST_COMPONENT_ID = 5  # trust domains
    VALIDATE = 7
    LOAD = 8
    INVOKE = 9
    DEPENDENCY_RESOLUTION = 15  # trust domains
    PAYLOAD_FETCH = 16
    CANDIDATE_VERIFICATION = 18  # trust domains
    INSTALL = 20
    TEXT = 23
    UNINSTALL = 24  # trust domains


class CommonKey(_Registry):
    """SUIT Common Elements (manifest §11.5; trust domains §9.3)."""

    DEPENDENCIES = 1  # trust domains
    COMPONENTS = 2
    SHARED_SEQUENCE = 4


class DependencyKey(_Registry):
    """SUIT_Dependency map keys (trust domains §5.2.1)."""

    DEPENDENCY_PREFIX = 1


class Command(_Registry):
    """SUIT Commands: conditions and directives (manifest §11.6; trust domains §9.4;
    update management §7.1)."""

    VENDOR_IDENTIFIER = 1
    CLASS_IDENTIFIER = 2
    IMAGE_MATCH = 3
    USE_BEFORE = 4  # update management
    COMPONENT_SLOT = 5
    CHECK_CONTENT = 6
    DEPENDENCY_INTEGRITY = 7  # trust domains
    IS_DEPENDENCY = 8  # trust domains
    PROCESS_DEPENDENCY = 11  # trust domains
    SET_COMPONENT_INDEX = 12
    ABORT = 14
    TRY_EACH = 15
    WRITE = 18
    SET_PARAMETERS = 19  # trust domains
    OVERRIDE_PARAMETERS = 20
    FETCH = 21
    COPY = 22
    INVOKE = 23
    DEVICE_IDENTIFIER = 24
    IMAGE_NOT_MATCH = 25  # update management
    MINIMUM_BATTERY = 26  # update management
    UPDATE_AUTHORIZED = 27  # update management
    VERSION = 28  # update management
    WAIT = 29  # update management
    SWAP = 31
    RUN_SEQUENCE = 32
    UNLINK = 33  # trust domains
    OVERRIDE_MULTIPLE = 34  # update management
    COPY_PARAMS = 35  # update management

    @property
    def is_condition(self) -> bool:
        return self in _CONDITIONS

    @property
    def spec_name(self) -> str:
        prefix = "condition-" if self.is_condition else "directive-"
        return prefix + _spec_name(self)


_CONDITIONS = frozenset(
    {
        Command.VENDOR_IDENTIFIER,
        Command.CLASS_IDENTIFIER,
        Command.IMAGE_MATCH,
        Command.USE_BEFORE,
        Command.COMPONENT_SLOT,
        Command.CHECK_CONTENT,
        Command.DEPENDENCY_INTEGRITY,
        Command.IS_DEPENDENCY,
        Command.ABORT,
        Command.DEVICE_IDENTIFIER,
        Command.IMAGE_NOT_MATCH,
        Command.MINIMUM_BATTERY,
        Command.UPDATE_AUTHORIZED,
        Command.VERSION,
    }
)

#: Commands whose argument is a SUIT_Rep_Policy (manifest §8.4.10 and Appendix A).
REPORTING_POLICY_COMMANDS = frozenset(
    {
        Command.VENDOR_IDENTIFIER,
        Command.CLASS_IDENTIFIER,
        Command.IMAGE_MATCH,
        Command.USE_BEFORE,
        Command.COMPONENT_SLOT,
        Command.CHECK_CONTENT,
        Command.DEPENDENCY_INTEGRITY,
        Command.IS_DEPENDENCY,
        Command.PROCESS_DEPENDENCY,
        Command.ABORT,
        Command.WRITE,
        Command.FETCH,
        Command.COPY,
        Command.INVOKE,
        Command.DEVICE_IDENTIFIER,
        Command.IMAGE_NOT_MATCH,
        Command.MINIMUM_BATTERY,
        Command.UPDATE_AUTHORIZED,
        Command.VERSION,
        Command.SWAP,
        Command.UNLINK,
    }
)


class Parameter(_Registry):
    """SUIT Parameters (manifest §11.7; update management §7.2; firmware encryption §12)."""

    VENDOR_IDENTIFIER = 1
    CLASS_IDENTIFIER = 2
    IMAGE_DIGEST = 3
    USE_BEFORE = 4  # update management
    COMPONENT_SLOT = 5
    STRICT_ORDER = 12
    SOFT_FAILURE = 13
    IMAGE_SIZE = 14
    CONTENT = 18
    ENCRYPTION_INFO = 19  # firmware encryption
    URI = 21
    SOURCE_COMPONENT = 22
    INVOKE_ARGS = 23
    DEVICE_IDENTIFIER = 24
    FETCH_ARGUMENTS = 25  # in the CDDL, missing from the IANA table (see shared/spec/README.md)
    MINIMUM_BATTERY = 26  # update management
    UPDATE_PRIORITY = 27  # update management
    VERSION = 28  # update management
    WAIT_INFO = 29  # update management
    COMPONENT_METADATA = 30  # update management


class ReportingPolicy(_Registry):
    """Bits of SUIT_Rep_Policy (manifest §8.4.10)."""

    SEND_RECORD_ON_SUCCESS = 0
    SEND_RECORD_ON_FAILURE = 1
    SEND_SYSINFO_SUCCESS = 2
    SEND_SYSINFO_FAILURE = 3

    @property
    def mask(self) -> int:
        return 1 << self.value


class TextKey(_Registry):
    """SUIT Text Values, manifest level (manifest §11.8; update management §7.3)."""

    MANIFEST_DESCRIPTION = 1
    UPDATE_DESCRIPTION = 2
    MANIFEST_JSON_SOURCE = 3
    MANIFEST_YAML_SOURCE = 4
    VERSION_REQUIRED = 7  # update management
    CURRENT_VERSION = 8  # update management


class TextComponentKey(_Registry):
    """SUIT Component Text Values (manifest §11.9)."""

    VENDOR_NAME = 1
    MODEL_NAME = 2
    VENDOR_DOMAIN = 3
    MODEL_INFO = 4
    COMPONENT_DESCRIPTION = 5
    COMPONENT_VERSION = 6


# --- companion documents ---------------------------------------------------------------------


class VersionComparison(_Registry):
    """suit-condition-version comparison types (update management §5.3)."""

    GREATER = 1
    GREATER_EQUAL = 2
    EQUAL = 3
    LESSER_EQUAL = 4
    LESSER = 5


class WaitEvent(_Registry):
    """suit-directive-wait events (update management §5.6)."""

    AUTHORIZATION = 1
    POWER = 2
    NETWORK = 3
    OTHER_DEVICE_VERSION = 4
    TIME = 5
    TIME_OF_DAY = 6
    DAY_OF_WEEK = 7
    TIME_OF_DAY_UTC = 8
    DAY_OF_WEEK_UTC = 9


class ReportKey(_Registry):
    """SUIT_Report map keys (report §4)."""

    NONCE = 2
    RECORDS = 3
    RESULT = 4
    RESULT_CODE = 5
    RESULT_RECORD = 6
    RESULT_REASON = 7
    CAPABILITY_REPORT = 8
    REFERENCE = 99


class RecordIndex(_Registry):
    """Positions in a SUIT_Record array (report §4.1)."""

    MANIFEST_ID = 0
    MANIFEST_SECTION = 1
    SECTION_OFFSET = 2
    COMPONENT_INDEX = 3
    PROPERTIES = 4


class CapabilityKey(_Registry):
    """SUIT_Capability_Report keys (report §4.3)."""

    COMPONENT_CAPABILITIES = 1
    COMMAND_CAPABILITIES = 2
    PARAMETERS_CAPABILITIES = 3
    CRYPT_ALGO_CAPABILITIES = 4
    ENVELOPE_CAPABILITIES = 5
    MANIFEST_CAPABILITIES = 6
    COMMON_CAPABILITIES = 7
    TEXT_CAPABILITIES = 8
    TEXT_COMPONENT_CAPABILITIES = 9
    DEPENDENCY_CAPABILITIES = 10


class ReportReason(_Registry):
    """SUIT_Report Reasons (report §4.2, IANA §8.4). Every ``SuitError`` carries one."""

    OK = 0
    CBOR_PARSE = 1
    COSE_UNSUPPORTED = 2
    ALG_UNSUPPORTED = 3
    UNAUTHORISED = 4
    COMMAND_UNSUPPORTED = 5
    COMPONENT_UNSUPPORTED = 6
    COMPONENT_UNAUTHORISED = 7
    PARAMETER_UNSUPPORTED = 8
    SEVERING_UNSUPPORTED = 9
    CONDITION_FAILED = 10
    OPERATION_FAILED = 11
    INVOKE_PENDING = 12


# --- COSE ------------------------------------------------------------------------------------


class CoseHeader(_Registry):
    """COSE Header Parameters (RFC 9052 §3.1, IANA "COSE Header Parameters")."""

    ALG = 1
    CRIT = 2
    CONTENT_TYPE = 3
    KID = 4
    IV = 5
    PARTIAL_IV = 6
    COUNTER_SIGNATURE = 7
    EPHEMERAL_KEY = -1  # RFC 9053 §6.4.1
    STATIC_KEY = -2
    STATIC_KEY_ID = -3
    SALT = -20  # RFC 9053 §5.1
    PARTY_U_IDENTITY = -21
    PARTY_U_NONCE = -22
    PARTY_U_OTHER = -23
    PARTY_V_IDENTITY = -24
    PARTY_V_NONCE = -25
    PARTY_V_OTHER = -26


class CoseAlgorithm(_Registry):
    """COSE Algorithms suitkit implements or names (IANA "COSE Algorithms")."""

    # digests (RFC 9054)
    SHA_256 = -16
    SHAKE128 = -18
    SHA_384 = -43
    SHA_512 = -44
    SHAKE256 = -45
    # signatures
    ES256 = -7
    ESP256 = -9
    ES384 = -35
    ESP384 = -51
    ESP512 = -52
    EDDSA = -8
    ED25519 = -19
    HSS_LMS = -46
    ML_DSA_44 = -48
    ML_DSA_65 = -49
    ML_DSA_87 = -50
    # MAC
    HMAC_256_256 = 5
    # content encryption (RFC 9053 §4; RFC 9459 for CTR)
    A128GCM = 1
    A192GCM = 2
    A256GCM = 3
    CHACHA20_POLY1305 = 24
    A128CTR = -65534
    A192CTR = -65533
    A256CTR = -65532
    # key distribution (RFC 9053 §6)
    A128KW = -3
    A192KW = -4
    A256KW = -5
    DIRECT = -6
    ECDH_ES_HKDF_256 = -25
    ECDH_ES_A128KW = -29
    ECDH_ES_A192KW = -30
    ECDH_ES_A256KW = -31

    @property
    def spec_name(self) -> str:
        return _ALG_NAMES.get(self, _spec_name(self))


_ALG_NAMES = {
    CoseAlgorithm.SHA_256: "sha256",
    CoseAlgorithm.SHA_384: "sha384",
    CoseAlgorithm.SHA_512: "sha512",
    CoseAlgorithm.SHAKE128: "shake128",
    CoseAlgorithm.SHAKE256: "shake256",
    CoseAlgorithm.ES256: "ES256",
    CoseAlgorithm.ESP256: "ESP256",
    CoseAlgorithm.ES384: "ES384",
    CoseAlgorithm.ESP384: "ESP384",
    CoseAlgorithm.ESP512: "ESP512",
    CoseAlgorithm.EDDSA: "EdDSA",
    CoseAlgorithm.ED25519: "Ed25519",
    CoseAlgorithm.HSS_LMS: "HSS-LMS",
    CoseAlgorithm.ML_DSA_44: "ML-DSA-44",
    CoseAlgorithm.ML_DSA_65: "ML-DSA-65",
    CoseAlgorithm.ML_DSA_87: "ML-DSA-87",
    CoseAlgorithm.HMAC_256_256: "HMAC 256/256",
    CoseAlgorithm.A128GCM: "A128GCM",
    CoseAlgorithm.A192GCM: "A192GCM",
    CoseAlgorithm.A256GCM: "A256GCM",
    CoseAlgorithm.CHACHA20_POLY1305: "ChaCha20/Poly1305",
    CoseAlgorithm.A128CTR: "A128CTR",
    CoseAlgorithm.A192CTR: "A192CTR",
    CoseAlgorithm.A256CTR: "A256CTR",
    CoseAlgorithm.A128KW: "A128KW",
    CoseAlgorithm.A192KW: "A192KW",
    CoseAlgorithm.A256KW: "A256KW",
    CoseAlgorithm.DIRECT: "direct",
    CoseAlgorithm.ECDH_ES_HKDF_256: "ECDH-ES + HKDF-256",
    CoseAlgorithm.ECDH_ES_A128KW: "ECDH-ES + A128KW",
    CoseAlgorithm.ECDH_ES_A192KW: "ECDH-ES + A192KW",
    CoseAlgorithm.ECDH_ES_A256KW: "ECDH-ES + A256KW",
}

#: The digest algorithms of suit-cose-hash-algs (manifest §8.4.7 / Appendix A).
DIGEST_ALGORITHMS = frozenset(
    {
        CoseAlgorithm.SHA_256,
        CoseAlgorithm.SHAKE128,
        CoseAlgorithm.SHA_384,
        CoseAlgorithm.SHA_512,
        CoseAlgorithm.SHAKE256,
    }
)


class CoseKeyParam(_Registry):
    """COSE Key common parameters (RFC 9052 §7.1)."""

    KTY = 1
    KID = 2
    ALG = 3
    KEY_OPS = 4
    BASE_IV = 5


class CoseKeyType(_Registry):
    """COSE Key Types (RFC 9053 §7; RFC 8778 HSS-LMS; ML-DSA AKP)."""

    OKP = 1
    EC2 = 2
    RSA = 3
    SYMMETRIC = 4
    HSS_LMS = 5
    AKP = 7


class CoseKeyTypeParam(_Registry):
    """Key-type-specific COSE Key parameters (RFC 9053 §7.1, §7.2, §6.3; AKP draft)."""

    CRV = -1  # EC2 / OKP
    X = -2
    Y = -3
    D = -4
    K = -1  # symmetric (shares -1 with crv; the meaning depends on kty)
    PUB = -1  # AKP public key
    PRIV = -2  # AKP private key (seed)


class CoseCurve(_Registry):
    """COSE Elliptic Curves (RFC 9053 §7.1)."""

    P_256 = 1
    P_384 = 2
    P_521 = 3
    X25519 = 4
    X448 = 5
    ED25519 = 6
    ED448 = 7
