"""SUIT_Encryption_Info: a tagged COSE_Encrypt (RFC 9052 §5.1) with detached ciphertext
(draft-ietf-suit-firmware-encryption-24 §4, §5, Appendix A).

::

    SUIT_Encryption_Info = #6.96([ protected, unprotected, ciphertext: bstr / nil,
                                   recipients: [+ COSE_recipient] ])
    COSE_recipient       = [ protected, unprotected, ciphertext: bstr ]   ; the wrapped CEK

Decoding is strict and keeps the bytes it was given: the content protected header stays the
byte string received (it is the AAD of AEAD ciphers, RFC 9052 §5.3), and every recipient's
protected header stays as received (it is part of the ES-DH KDF context, draft §5.2.3).
Algorithms are not judged here: :attr:`CoseEncrypt.alg` and :attr:`EncryptRecipient.alg` raise
:class:`~suitkit.errors.AlgorithmUnsupportedError` when they are asked for an algorithm suitkit
does not implement, so that a processor can skip a recipient it cannot use and still use another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Final

from suitkit.cose.keys import CoseKey
from suitkit.cose.messages import Headers
from suitkit.errors import (
    AlgorithmUnsupportedError,
    CoseUnsupportedError,
    DecodeError,
    KeyFormatError,
)
from suitkit.format import cbor
from suitkit.format.codepoints import CoseAlgorithm, CoseHeader, CoseKeyParam, Tag

__all__ = [
    "CONTENT_ALGORITHMS",
    "ECDH_ALGORITHMS",
    "KEY_WRAP_ALGORITHMS",
    "ContentAlgorithm",
    "CoseEncrypt",
    "EncryptRecipient",
    "algorithm_name",
]

_A = CoseAlgorithm


@dataclass(frozen=True, slots=True)
class ContentAlgorithm:
    """A content encryption algorithm: key, IV and tag lengths in bytes (RFC 9053 §4.1 and
    §4.3, RFC 9459 §4 for AES-CTR). ``aead`` algorithms authenticate the Enc_structure."""

    alg: CoseAlgorithm
    key_length: int
    iv_length: int
    tag_length: int

    @property
    def aead(self) -> bool:
        return self.tag_length > 0


#: The content encryption algorithms suitkit implements.
CONTENT_ALGORITHMS: Final[Mapping[CoseAlgorithm, ContentAlgorithm]] = MappingProxyType(
    {
        a.alg: a
        for a in (
            ContentAlgorithm(_A.A128GCM, 16, 12, 16),
            ContentAlgorithm(_A.A192GCM, 24, 12, 16),
            ContentAlgorithm(_A.A256GCM, 32, 12, 16),
            ContentAlgorithm(_A.CHACHA20_POLY1305, 32, 12, 16),
            ContentAlgorithm(_A.A128CTR, 16, 16, 0),
            ContentAlgorithm(_A.A192CTR, 24, 16, 0),
            ContentAlgorithm(_A.A256CTR, 32, 16, 0),
        )
    }
)

#: AES key wrap (RFC 9053 §6.2.1): algorithm -> KEK length in bytes (draft §4.1).
KEY_WRAP_ALGORITHMS: Final[Mapping[CoseAlgorithm, int]] = MappingProxyType(
    {_A.A128KW: 16, _A.A192KW: 24, _A.A256KW: 32}
)

#: ECDH-ES + AES key wrap (RFC 9053 §6.4.1, draft §4.2): algorithm -> the key wrap it uses.
ECDH_ALGORITHMS: Final[Mapping[CoseAlgorithm, CoseAlgorithm]] = MappingProxyType(
    {_A.ECDH_ES_A128KW: _A.A128KW, _A.ECDH_ES_A192KW: _A.A192KW, _A.ECDH_ES_A256KW: _A.A256KW}
)

_ALG = int(CoseHeader.ALG)
_CRIT = int(CoseHeader.CRIT)
_KID = int(CoseHeader.KID)
_IV = int(CoseHeader.IV)
_PARTIAL_IV = int(CoseHeader.PARTIAL_IV)
_EPHEMERAL = int(CoseHeader.EPHEMERAL_KEY)
_SALT = int(CoseHeader.SALT)
_PARTY = frozenset(
    int(h)
    for h in (
        CoseHeader.PARTY_U_IDENTITY,
        CoseHeader.PARTY_U_NONCE,
        CoseHeader.PARTY_U_OTHER,
        CoseHeader.PARTY_V_IDENTITY,
        CoseHeader.PARTY_V_NONCE,
        CoseHeader.PARTY_V_OTHER,
    )
)

#: Header parameters suitkit processes in an encryption info; another label marked critical
#: is refused (RFC 9052 §3.1).
_UNDERSTOOD: Final = frozenset(
    {_ALG, _CRIT, int(CoseHeader.CONTENT_TYPE), _KID, _IV, _EPHEMERAL, _SALT, *_PARTY}
)

_ALGORITHMS: Final[dict[int, CoseAlgorithm]] = {int(a): a for a in CoseAlgorithm}


def algorithm_name(alg: Any) -> str:
    """``A128GCM`` for 1, the value itself for an unknown one."""
    a = _ALGORITHMS.get(alg) if type(alg) is int else None
    return a.spec_name if a is not None else repr(alg)


# --- headers ---------------------------------------------------------------------------------


def _label_ok(label: Any) -> bool:
    return type(label) is int or type(label) is str


def _check_bucket(m: Mapping[Any, Any], what: str, path: str | None) -> None:
    """Type checks on the parameters of one header bucket (RFC 9052 §3.1, RFC 9053 §5.1)."""
    for label in m:
        if not _label_ok(label):
            raise DecodeError(f"{what} header label {label!r} is not an int or tstr", path=path)
    alg = m.get(_ALG)
    if alg is not None and not _label_ok(alg):
        raise DecodeError(f"{what} alg must be an int or tstr", path=path)
    for label, name in ((_KID, "kid"), (_IV, "IV"), (_SALT, "salt")):
        v = m.get(label)
        if v is not None and type(v) is not bytes:
            raise DecodeError(f"{what} {name} must be a byte string", path=path)
    if _PARTIAL_IV in m:
        raise CoseUnsupportedError(
            f"{what} uses a Partial IV, which needs a base IV from the key context; SUIT "
            "encryption info carries the full IV (draft-ietf-suit-firmware-encryption §5)",
            path=path,
        )
    for label in _PARTY:
        v = m.get(label)
        if v is not None and type(v) is not bytes:
            raise DecodeError(
                f"{what} PartyU/PartyV header {label} must be a byte string", path=path
            )


def _headers(protected: Any, unprotected: Any, what: str, path: str | None) -> Headers:
    if type(protected) is not bytes:
        raise DecodeError(f"{what} protected header must be a byte string", path=path)
    pmap: Mapping[Any, Any] = {}
    if protected:
        decoded = cbor.loads(protected, what=f"{what} protected header", path=path)
        if type(decoded) is not dict:
            raise DecodeError(f"{what} protected header must decode to a map", path=path)
        pmap = decoded
    if type(unprotected) is not dict:
        raise DecodeError(f"{what} unprotected header must be a map", path=path)
    _check_bucket(pmap, what, path)
    _check_bucket(unprotected, what, path)
    both = [k for k in unprotected if k in pmap]
    if both:
        raise DecodeError(
            f"{what} header label(s) {both} in both protected and unprotected buckets", path=path
        )
    if _CRIT in unprotected:
        raise DecodeError(f"{what} crit header must be protected (RFC 9052 §3.1)", path=path)
    crit = pmap.get(_CRIT)
    if crit is not None:
        if type(crit) is not list or not crit:
            raise DecodeError(f"{what} crit header must be a non-empty array", path=path)
        for label in crit:
            if not _label_ok(label):
                raise DecodeError(f"{what} crit label {label!r} is not an int or tstr", path=path)
            if label not in _UNDERSTOOD:
                raise CoseUnsupportedError(
                    f"{what} has critical header parameter {label!r} that suitkit does not "
                    "understand",
                    path=path,
                )
    return Headers(protected, MappingProxyType(dict(pmap)), MappingProxyType(dict(unprotected)))


def _algorithm(headers: Headers, what: str, path: str | None) -> CoseAlgorithm:
    value = headers.alg_value
    if value is None:
        raise DecodeError(f"{what} has no alg header parameter", path=path)
    alg = _ALGORITHMS.get(value) if type(value) is int else None
    if alg is None:
        raise AlgorithmUnsupportedError(f"{what} algorithm {value!r} is not supported", path=path)
    return alg


# --- structures ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncryptRecipient:
    """One COSE_recipient of a SUIT_Encryption_Info: AES-KW (draft §4.1: empty protected header,
    alg and kid unprotected) or ECDH-ES + AES-KW (draft §4.2: alg protected, the sender's
    ephemeral key and the recipient's kid unprotected). ``ciphertext`` is the wrapped CEK."""

    headers: Headers
    ciphertext: bytes
    index: int = 0
    path: str | None = field(default=None, compare=False)

    @property
    def kid(self) -> bytes | None:
        return self.headers.kid

    @property
    def alg(self) -> CoseAlgorithm:
        """The key distribution algorithm; AlgorithmUnsupportedError if suitkit has none such."""
        what = f"COSE_recipient[{self.index}]"
        alg = _algorithm(self.headers, what, self.path)
        if alg not in KEY_WRAP_ALGORITHMS and alg not in ECDH_ALGORITHMS:
            raise AlgorithmUnsupportedError(
                f"{what} key distribution {alg.spec_name} is not supported (A128KW, A192KW, "
                "A256KW, ECDH-ES + A128KW/A192KW/A256KW are)",
                path=self.path,
            )
        return alg

    @property
    def ephemeral_key(self) -> CoseKey:
        """The sender's ephemeral public key (header -1, RFC 9053 §6.4.1)."""
        what = f"COSE_recipient[{self.index}]"
        m = self.headers.get(_EPHEMERAL)
        if m is None:
            raise DecodeError(f"{what} has no ephemeral key (header -1)", path=self.path)
        if not isinstance(m, Mapping):
            raise DecodeError(f"{what} ephemeral key must be a COSE_Key map", path=self.path)
        if int(CoseKeyParam.KTY) not in m:
            raise DecodeError(f"{what} ephemeral key has no kty", path=self.path)
        if -4 in m:
            raise DecodeError(f"{what} ephemeral key carries a private part (d)", path=self.path)
        try:
            key = CoseKey.from_cose_key(m)
        except KeyFormatError as exc:
            raise DecodeError(f"{what} ephemeral key: {exc.message}", path=self.path) from None
        return key

    def to_cbor(self) -> list[Any]:
        h = self.headers
        return [h.protected_bytes, dict(h.unprotected), self.ciphertext]


@dataclass(frozen=True, slots=True)
class CoseEncrypt:
    """COSE_Encrypt (RFC 9052 §5.1), tag 96, as SUIT_Encryption_Info (draft §4).

    ``ciphertext`` is None when it is detached (the SUIT case: the payload is fetched, or it is
    the content parameter); ``encoded`` is the tagged encoding, as received or as created.
    """

    TAG: ClassVar[Tag] = Tag.COSE_ENCRYPT

    headers: Headers
    ciphertext: bytes | None
    recipients: tuple[EncryptRecipient, ...]
    encoded: bytes = field(repr=False)
    path: str | None = field(default=None, compare=False, repr=False)

    # --- content algorithm -------------------------------------------------------------------

    @property
    def alg(self) -> CoseAlgorithm:
        """The content encryption algorithm (AlgorithmUnsupportedError if suitkit has none)."""
        alg = _algorithm(self.headers, "COSE_Encrypt", self.path)
        if alg not in CONTENT_ALGORITHMS:
            raise AlgorithmUnsupportedError(
                f"COSE_Encrypt content encryption {alg.spec_name} is not supported (A128GCM, "
                "A192GCM, A256GCM, ChaCha20/Poly1305, A128CTR, A192CTR, A256CTR are)",
                path=self.path,
            )
        return alg

    @property
    def content_algorithm(self) -> ContentAlgorithm:
        return CONTENT_ALGORITHMS[self.alg]

    @property
    def iv(self) -> bytes:
        """The IV (header 5), checked against the algorithm's IV length."""
        spec = self.content_algorithm
        iv = self.headers.get(_IV)
        if iv is None:
            raise DecodeError("COSE_Encrypt has no IV (header 5)", path=self.path)
        if len(iv) != spec.iv_length:
            raise DecodeError(
                f"COSE_Encrypt IV is {len(iv)} bytes; {spec.alg.spec_name} needs {spec.iv_length}",
                path=self.path,
            )
        return bytes(iv)

    @property
    def protected_bytes(self) -> bytes:
        return self.headers.protected_bytes

    # --- codec -------------------------------------------------------------------------------

    @classmethod
    def decode(
        cls,
        data: bytes,
        *,
        path: str | None = None,
        limits: cbor.Limits = cbor.DEFAULT_LIMITS,
    ) -> CoseEncrypt:
        """Decode a tagged COSE_Encrypt strictly (structure, header types, crit)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        value = cbor.loads(data, what="SUIT_Encryption_Info", path=path, limits=limits)
        if type(value) is not cbor.CBORTag:
            raise DecodeError(
                "SUIT_Encryption_Info must be a tagged COSE_Encrypt (#6.96)", path=path
            )
        if value.tag == Tag.COSE_ENCRYPT0:
            raise CoseUnsupportedError(
                "SUIT_Encryption_Info is a COSE_Encrypt0; SUIT uses COSE_Encrypt with recipients "
                "(draft-ietf-suit-firmware-encryption §4)",
                path=path,
            )
        if value.tag != Tag.COSE_ENCRYPT:
            raise DecodeError(
                f"SUIT_Encryption_Info has tag {value.tag}, not 96 (COSE_Encrypt)", path=path
            )
        body = value.value
        if type(body) is not list or len(body) != 4:
            raise DecodeError("COSE_Encrypt must be an array of 4 elements", path=path)
        prot, unprot, ciphertext, recs = body
        headers = _headers(prot, unprot, "COSE_Encrypt", path)
        if ciphertext is not None and type(ciphertext) is not bytes:
            raise DecodeError("COSE_Encrypt ciphertext must be a byte string or null", path=path)
        if type(recs) is not list or not recs:
            raise DecodeError("COSE_Encrypt recipients must be a non-empty array", path=path)
        recipients = []
        for i, rec in enumerate(recs):
            what = f"COSE_recipient[{i}]"
            if type(rec) is not list or len(rec) not in (3, 4):
                raise DecodeError(f"{what} must be an array of 3 elements", path=path)
            if len(rec) == 4:
                raise CoseUnsupportedError(
                    f"{what} has nested recipients (not used by SUIT encryption)", path=path
                )
            rprot, runprot, wrapped = rec
            rheaders = _headers(rprot, runprot, what, path)
            if type(wrapped) is not bytes:
                raise DecodeError(
                    f"{what} ciphertext (the wrapped content key) must be a byte string", path=path
                )
            recipients.append(EncryptRecipient(rheaders, wrapped, i, path))
        return cls(headers, ciphertext, tuple(recipients), data, path)

    @classmethod
    def build(
        cls,
        protected: Mapping[int, Any],
        unprotected: Mapping[int, Any],
        recipients: Sequence[tuple[Mapping[int, Any], Mapping[int, Any], bytes]],
        ciphertext: bytes | None = None,
    ) -> CoseEncrypt:
        """A COSE_Encrypt from header maps (encoded deterministically; an empty protected map is
        the empty byte string, RFC 9052 §3) and ``(protected, unprotected, wrapped CEK)``
        recipients."""
        if not recipients:
            raise ValueError("COSE_Encrypt needs at least one recipient")

        def bucket(m: Mapping[int, Any]) -> bytes:
            return cbor.dumps(dict(m)) if m else b""

        body = [
            bucket(protected),
            cbor.sorted_map(unprotected),
            ciphertext,
            [[bucket(p), cbor.sorted_map(u), bytes(w)] for p, u, w in recipients],
        ]
        encoded = cbor.dumps(cbor.CBORTag(Tag.COSE_ENCRYPT, body))
        return cls.decode(encoded)

    def encode(self) -> bytes:
        return self.encoded

    def to_diag(self) -> Any:
        """The diagnostic form, protected headers shown as ``<< {...} >>``."""
        return cbor.cose_diag(cbor.loads(self.encoded))

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary (algorithms by name, kids in hex)."""
        out: dict[str, Any] = {
            "content-algorithm": algorithm_name(self.headers.alg_value),
            "iv": (self.headers.get(_IV) or b"").hex(),
            "detached": self.ciphertext is None,
            "recipients": [],
        }
        for r in self.recipients:
            out["recipients"].append(
                {
                    "algorithm": algorithm_name(r.headers.alg_value),
                    "kid": r.kid.hex() if r.kid is not None else None,
                }
            )
        return out
