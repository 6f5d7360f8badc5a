"""COSE messages for SUIT authentication: COSE_Sign1, COSE_Sign, COSE_Mac0, COSE_Mac
(RFC 9052 §4, §6; draft-ietf-suit-manifest-37 §8.3).

Decoded messages keep the bytes they were decoded from: the protected header is the byte string
as received (never re-encoded), and signatures and tags are checked over the Sig_structure /
MAC_structure built from those bytes. :func:`decode` dispatches on the CBOR tag; untagged
structures are refused (SUIT_Authentication_Block is always tagged).

SUIT uses *detached payloads* (manifest §8.3): the payload field is ``null`` and the caller
passes the payload: the content of the first element of SUIT_Authentication, i.e. the encoded
SUIT_Digest. Sig_structure/MAC_structure carry the payload as a bstr, so the bytes signed hold
exactly the "bstr-wrapped SUIT_Digest" (its bstr header included). The official vectors verify
this way (tests/cose/test_vectors.py).

Verification raises (AuthenticationError when no trusted key verifies, AlgorithmUnsupportedError
for an algorithm suitkit does not implement, CoseUnsupportedError for an unknown critical
header) and otherwise returns a :class:`VerifyResult`.

Key selection: when the message names a kid, the trusted keys with that kid are tried first,
then the trusted keys that have no kid at all; keys with a *different* kid are never tried.
Without a kid, every trusted key whose type fits the algorithm is tried.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeAlias, TypeVar

from suitkit.cose.algorithms import (
    KEY_WRAP_ALGORITHMS,
    MAC_ALGORITHMS,
    KeySigner,
    Signer,
    check_key,
    default_algorithm,
    key_unwrap,
    key_wrap,
    mac_matches,
    verifier,
)
from suitkit.cose.algorithms import mac as compute_mac
from suitkit.cose.keys import CoseKey
from suitkit.errors import (
    AlgorithmUnsupportedError,
    AuthenticationError,
    CoseUnsupportedError,
    DecodeError,
    SuitError,
)
from suitkit.format import cbor
from suitkit.format.codepoints import CoseAlgorithm, CoseHeader, CoseKeyType, Tag

__all__ = [
    "CoseMac",
    "CoseMac0",
    "CoseMessage",
    "CoseRecipient",
    "CoseSign",
    "CoseSign1",
    "CoseSignature",
    "Headers",
    "Recipient",
    "VerifyResult",
    "decode",
    "mac",
    "mac0",
    "mac_structure",
    "sig_structure",
    "sig_structure1",
    "sign",
    "sign1",
    "verify",
    "verify_detached",
]

_ALG = int(CoseHeader.ALG)
_CRIT = int(CoseHeader.CRIT)
_KID = int(CoseHeader.KID)

#: Header parameters suitkit processes; any other label listed in ``crit`` is refused
#: (RFC 9052 §3.1).
_UNDERSTOOD: Final = frozenset(
    {CoseHeader.ALG, CoseHeader.CRIT, CoseHeader.CONTENT_TYPE, CoseHeader.KID}
)

_ALGORITHMS: Final[dict[int, CoseAlgorithm]] = {int(a): a for a in CoseAlgorithm}


# --- headers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Headers:
    """The two header buckets of a COSE layer (RFC 9052 §3).

    ``protected_bytes`` is the protected bucket exactly as received (empty for an empty map);
    ``protected`` is its decoded map.
    """

    protected_bytes: bytes
    protected: Mapping[Any, Any]
    unprotected: Mapping[Any, Any]

    def get(self, label: int | str, default: Any = None) -> Any:
        """A header parameter from either bucket (protected first)."""
        if label in self.protected:
            return self.protected[label]
        return self.unprotected.get(label, default)

    @property
    def kid(self) -> bytes | None:
        kid = self.protected.get(_KID)
        if kid is None:
            kid = self.unprotected.get(_KID)
        return kid

    @property
    def alg_value(self) -> Any:
        """The ``alg`` header as found (an int, a tstr, or None)."""
        alg = self.protected.get(_ALG)
        if alg is None:
            alg = self.unprotected.get(_ALG)
        return alg

    def algorithm(self, what: str = "COSE") -> CoseAlgorithm:
        """The ``alg`` header as a :class:`CoseAlgorithm`; raise if it is missing or unknown."""
        return _algorithm(self.alg_value, what)


def _algorithm(value: Any, what: str) -> CoseAlgorithm:
    """An ``alg`` header value as a :class:`CoseAlgorithm`; raise if it is missing or unknown."""
    alg = _ALGORITHMS.get(value) if type(value) is int else None
    if alg is None:
        if value is None:
            raise DecodeError(f"{what} has no alg header parameter")
        raise AlgorithmUnsupportedError(f"{what} algorithm {value!r} is not supported")
    return alg


def _encode_protected(m: Mapping[Any, Any]) -> bytes:
    """A protected bucket: deterministic CBOR, or the empty bstr for an empty map (RFC 9052 §3)."""
    return cbor.dumps(m) if m else b""


#: Protected buckets already decoded and checked (SUIT messages repeat a few short ones, such
#: as ``a10126``): bytes -> read-only map. Bounded; only short buckets are kept.
_PROTECTED_CACHE: dict[bytes, Mapping[Any, Any]] = {}
_PROTECTED_CACHE_MAX: Final = 256
_PROTECTED_CACHE_ITEM: Final = 64
_EMPTY_MAP: Final[Mapping[Any, Any]] = MappingProxyType({})


def _check_label(label: Any, what: str, path: str | None) -> None:
    if type(label) is not int and type(label) is not str:
        raise DecodeError(f"{what} header label {label!r} is not an int or tstr", path=path)


def _protected_map(protected: Any, what: str, path: str | None) -> Mapping[Any, Any]:
    """Decode and check a protected bucket: a bstr holding a map (empty bstr: empty map), int or
    tstr labels, ``crit`` naming only understood parameters, ``alg`` int/tstr, ``kid`` bstr."""
    if not isinstance(protected, bytes):
        raise DecodeError(f"{what} protected header must be a byte string", path=path)
    if not protected:
        return _EMPTY_MAP
    cached = _PROTECTED_CACHE.get(protected)
    if cached is not None:
        return cached
    pmap = cbor.loads(protected, what=f"{what} protected header", path=path)
    if not isinstance(pmap, Mapping):
        raise DecodeError(f"{what} protected header must decode to a map", path=path)
    for label in pmap:
        _check_label(label, what, path)
    crit = pmap.get(_CRIT)
    if crit is not None:
        if not isinstance(crit, list | tuple) or not crit:
            raise DecodeError(f"{what} crit header must be a non-empty array", path=path)
        for label in crit:
            _check_label(label, what, path)
            if label not in _UNDERSTOOD:
                raise CoseUnsupportedError(
                    f"{what} has critical header parameter {label!r} that suitkit does not "
                    "understand",
                    path=path,
                )
    alg = pmap.get(_ALG)
    if alg is not None and type(alg) is not int and type(alg) is not str:
        raise DecodeError(f"{what} alg must be an int or tstr", path=path)
    kid = pmap.get(_KID)
    if kid is not None and not isinstance(kid, bytes):
        raise DecodeError(f"{what} kid must be a byte string", path=path)
    frozen = MappingProxyType(dict(pmap))
    if len(protected) <= _PROTECTED_CACHE_ITEM:
        if len(_PROTECTED_CACHE) >= _PROTECTED_CACHE_MAX:
            _PROTECTED_CACHE.clear()
        _PROTECTED_CACHE[protected] = frozen
    return frozen


def _check_unprotected(
    pmap: Mapping[Any, Any],
    unprotected: Any,
    what: str,
    path: str | None,
    alg_protected: bool,
) -> None:
    """Check an unprotected bucket (a map; labels int/tstr and not also protected; no ``crit``;
    ``alg`` int/tstr, and only where allowed; ``kid`` bstr)."""
    if not isinstance(unprotected, Mapping):
        raise DecodeError(f"{what} unprotected header must be a map", path=path)
    if unprotected:
        for label in unprotected:
            _check_label(label, what, path)
        both = [k for k in unprotected if k in pmap]
        if both:
            raise DecodeError(
                f"{what} header label(s) {both} in both protected and unprotected buckets",
                path=path,
            )
        if _CRIT in unprotected:
            raise DecodeError(f"{what} crit header must be protected (RFC 9052 §3.1)", path=path)
        alg = unprotected.get(_ALG)
        if alg is not None:
            if alg_protected:
                raise CoseUnsupportedError(
                    f"{what} alg must be in the protected header (RFC 9052 §3.1)", path=path
                )
            if type(alg) is not int and type(alg) is not str:
                raise DecodeError(f"{what} alg must be an int or tstr", path=path)
        kid = unprotected.get(_KID)
        if kid is not None and not isinstance(kid, bytes):
            raise DecodeError(f"{what} kid must be a byte string", path=path)


def _parse_headers(
    protected: Any,
    unprotected: Any,
    what: str,
    path: str | None,
    *,
    alg_protected: bool,
) -> Headers:
    pmap = _protected_map(protected, what, path)
    _check_unprotected(pmap, unprotected, what, path, alg_protected)
    return Headers(protected, pmap, unprotected)


_ALG_ONLY: dict[int, bytes] = {}


def _build_headers(
    alg: int | None,
    kid: bytes | None,
    protect_kid: bool,
    extra_protected: Mapping[Any, Any] | None,
    extra_unprotected: Mapping[Any, Any] | None,
) -> Headers:
    if not extra_protected and not extra_unprotected and alg is not None and not protect_kid:
        # the common case, {1: alg} protected: its encoding is computed once per algorithm
        encoded = _ALG_ONLY.get(alg)
        if encoded is None:
            encoded = _ALG_ONLY[alg] = cbor.dumps({_ALG: int(alg)})
        return Headers(encoded, {_ALG: int(alg)}, {} if kid is None else {_KID: bytes(kid)})
    prot: dict[Any, Any] = dict(extra_protected or {})
    unprot: dict[Any, Any] = dict(extra_unprotected or {})
    for m in (prot, unprot):
        if _ALG in m:
            raise ValueError("alg is set from the signer or key, not from extra headers")
    if set(prot) & set(unprot):
        raise ValueError("a header label cannot be in both protected and unprotected")
    if alg is not None:
        prot[_ALG] = int(alg)
    if kid is not None:
        (prot if protect_kid else unprot)[_KID] = bytes(kid)
    prot = cbor.sorted_map(prot)
    return Headers(_encode_protected(prot), prot, cbor.sorted_map(unprot))


def _encode_four(tag_head: bytes, headers: Headers, body: bytes | None, last: bytes) -> bytes:
    """``tag([protected, unprotected, payload, signature-or-tag])``, encoded directly (the same
    bytes cbor.dumps gives, without building the intermediate objects)."""
    protected = headers.protected_bytes
    unprotected = cbor.dumps(headers.unprotected) if headers.unprotected else b"\xa0"
    if body is None:
        return b"".join(
            (tag_head, b"\x84", _head(len(protected)), protected, unprotected, b"\xf6",
             _head(len(last)), last)
        )  # fmt: skip
    return b"".join(
        (tag_head, b"\x84", _head(len(protected)), protected, unprotected,
         _head(len(body)), body, _head(len(last)), last)
    )  # fmt: skip


_SIGN1_HEAD: Final = cbor.dumps(cbor.CBORTag(Tag.COSE_SIGN1, None))[:-1]
_MAC0_HEAD: Final = cbor.dumps(cbor.CBORTag(Tag.COSE_MAC0, None))[:-1]


# --- ToBeSigned / ToBeMaced (RFC 9052 §4.4, §6.3) --------------------------------------------


def _head(n: int) -> bytes:
    """The CBOR head of a byte string of length ``n`` (major type 2, shortest form)."""
    if n < 0x100:
        return _SHORT_HEADS[n]
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\x5a" + n.to_bytes(4, "big")
    return b"\x5b" + n.to_bytes(8, "big")


_SHORT_HEADS: Final = tuple(
    bytes((0x40 | n,)) if n < 24 else bytes((0x58, n)) for n in range(0x100)
)
_SIGNATURE1: Final = b"\x84" + cbor.dumps("Signature1")
_SIGNATURE: Final = b"\x85" + cbor.dumps("Signature")
_MAC0: Final = b"\x84" + cbor.dumps("MAC0")
_MAC: Final = b"\x84" + cbor.dumps("MAC")


def sig_structure1(protected: bytes, external_aad: bytes, payload: bytes) -> bytes:
    """``["Signature1", body_protected, external_aad, payload]`` encoded."""
    np, na, nd = len(protected), len(external_aad), len(payload)
    return b"".join(
        (
            _SIGNATURE1,
            _SHORT_HEADS[np] if np < 0x100 else _head(np),
            protected,
            _SHORT_HEADS[na] if na < 0x100 else _head(na),
            external_aad,
            _SHORT_HEADS[nd] if nd < 0x100 else _head(nd),
            payload,
        )
    )


def sig_structure(
    body_protected: bytes, sign_protected: bytes, external_aad: bytes, payload: bytes
) -> bytes:
    """``["Signature", body_protected, sign_protected, external_aad, payload]`` encoded."""
    return b"".join(
        (
            _SIGNATURE,
            _head(len(body_protected)),
            body_protected,
            _head(len(sign_protected)),
            sign_protected,
            _head(len(external_aad)),
            external_aad,
            _head(len(payload)),
            payload,
        )
    )


def mac_structure(context: str, protected: bytes, external_aad: bytes, payload: bytes) -> bytes:
    """``[context, protected, external_aad, payload]`` encoded; context "MAC0" or "MAC"."""
    if context == "MAC0":
        prefix = _MAC0
    elif context == "MAC":
        prefix = _MAC
    else:
        raise ValueError(f"MAC_structure context is MAC0 or MAC, not {context!r}")
    return b"".join(
        (
            prefix,
            _head(len(protected)),
            protected,
            _head(len(external_aad)),
            external_aad,
            _head(len(payload)),
            payload,
        )
    )


# --- results and key selection ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What verified: the algorithm, the trusted key, the kid the message named (None if it
    named none), and for COSE_Sign / COSE_Mac the index of the COSE_Signature / recipient."""

    alg: CoseAlgorithm
    key: CoseKey
    kid: bytes | None
    index: int | None = None


def _key_tuple(keys: CoseKey | Iterable[CoseKey]) -> Sequence[CoseKey]:
    if isinstance(keys, CoseKey):
        return (keys,)
    if isinstance(keys, list | tuple):
        return keys
    return tuple(keys)


def _candidates(keys: Sequence[CoseKey], alg: int, kid: bytes | None) -> list[CoseKey]:
    if kid is None:
        return [k for k in keys if alg in k.algorithms]
    found = [k for k in keys if k.kid == kid and alg in k.algorithms]
    found.extend(k for k in keys if k.kid is None and alg in k.algorithms)
    return found


def _payload(embedded: bytes | None, supplied: bytes | None, what: str) -> bytes:
    if supplied is None:
        if embedded is None:
            raise ValueError(f"{what} has a detached payload: pass payload=")
        return embedded
    if not isinstance(supplied, bytes):
        raise TypeError(f"payload must be bytes, not {type(supplied).__name__}")
    if embedded is not None and embedded != supplied:
        raise AuthenticationError(f"{what} carries a payload that differs from the one supplied")
    return supplied


def _kid_text(kid: bytes | None) -> str:
    return "" if kid is None else f" (kid h'{kid.hex()}')"


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoseSign1:
    """COSE_Sign1 (RFC 9052 §4.2), tag 18."""

    TAG: ClassVar[Tag] = Tag.COSE_SIGN1

    headers: Headers
    payload: bytes | None
    signature: bytes
    #: the tagged CBOR encoding (as received, or as created)
    encoded: bytes = field(repr=False)

    @property
    def kid(self) -> bytes | None:
        return self.headers.kid

    def to_be_signed(self, payload: bytes | None = None, external_aad: bytes = b"") -> bytes:
        data = _payload(self.payload, payload, "COSE_Sign1")
        return sig_structure1(self.headers.protected_bytes, external_aad, data)

    def verify(
        self,
        keys: CoseKey | Iterable[CoseKey],
        *,
        payload: bytes | None = None,
        external_aad: bytes = b"",
    ) -> VerifyResult:
        """Verify with the first trusted key that fits (see the module doc for key selection).
        Raise AuthenticationError if none verifies."""
        headers = self.headers
        alg = headers.algorithm("COSE_Sign1")
        kid = headers.kid
        tbs = sig_structure1(
            headers.protected_bytes, external_aad, _payload(self.payload, payload, "COSE_Sign1")
        )
        signature = self.signature
        for key in _candidates(_key_tuple(keys), alg, kid):
            if verifier(key, alg)(tbs, signature):
                return VerifyResult(alg, key, kid)
        raise AuthenticationError(
            f"COSE_Sign1 {alg.spec_name} signature{_kid_text(kid)} does not verify with any "
            "trusted key"
        )

    def encode(self) -> bytes:
        return self.encoded

    @classmethod
    def decode(
        cls, data: bytes, *, path: str | None = None, limits: cbor.Limits = cbor.DEFAULT_LIMITS
    ) -> CoseSign1:
        """Decode ``data``, which must be a tagged COSE_Sign1."""
        return _decode_as(cls, data, path, limits)


@dataclass(frozen=True, slots=True)
class CoseSignature:
    """One COSE_Signature of a COSE_Sign (RFC 9052 §4.1)."""

    headers: Headers
    signature: bytes

    @property
    def kid(self) -> bytes | None:
        return self.headers.kid


@dataclass(frozen=True, slots=True)
class CoseSign:
    """COSE_Sign (RFC 9052 §4.1), tag 98: one payload, one or more signatures."""

    TAG: ClassVar[Tag] = Tag.COSE_SIGN

    headers: Headers
    payload: bytes | None
    signatures: tuple[CoseSignature, ...]
    encoded: bytes = field(repr=False)

    def verify(
        self,
        keys: CoseKey | Iterable[CoseKey],
        *,
        payload: bytes | None = None,
        external_aad: bytes = b"",
        require_all: bool = False,
    ) -> VerifyResult:
        """The result for the first COSE_Signature that verifies; with ``require_all`` every
        COSE_Signature must verify. Raise AuthenticationError otherwise."""
        results = self.verify_signatures(
            keys, payload=payload, external_aad=external_aad, require_all=require_all
        )
        return results[0]

    def verify_signatures(
        self,
        keys: CoseKey | Iterable[CoseKey],
        *,
        payload: bytes | None = None,
        external_aad: bytes = b"",
        require_all: bool = False,
    ) -> tuple[VerifyResult, ...]:
        """A result for every COSE_Signature that verifies (at least one, or all with
        ``require_all``)."""
        data = _payload(self.payload, payload, "COSE_Sign")
        trusted = _key_tuple(keys)
        results: list[VerifyResult] = []
        errors: list[SuitError] = []
        for index, sig in enumerate(self.signatures):
            try:
                results.append(self._verify_one(index, sig, trusted, data, external_aad))
            except (AuthenticationError, AlgorithmUnsupportedError) as exc:
                if require_all:
                    raise
                errors.append(exc)
        if not results:
            if all(isinstance(e, AlgorithmUnsupportedError) for e in errors):
                raise AlgorithmUnsupportedError(
                    "no COSE_Signature of the COSE_Sign uses a supported algorithm"
                )
            raise AuthenticationError(
                f"none of the {len(self.signatures)} COSE_Signature(s) verifies with a trusted key"
            )
        return tuple(results)

    def _verify_one(
        self,
        index: int,
        sig: CoseSignature,
        trusted: Sequence[CoseKey],
        payload: bytes,
        external_aad: bytes,
    ) -> VerifyResult:
        what = f"COSE_Signature[{index}]"
        alg = sig.headers.algorithm(what)
        kid = sig.headers.kid
        tbs = sig_structure(
            self.headers.protected_bytes, sig.headers.protected_bytes, external_aad, payload
        )
        for key in _candidates(trusted, alg, kid):
            if verifier(key, alg)(tbs, sig.signature):
                return VerifyResult(alg, key, kid, index)
        raise AuthenticationError(
            f"{what} {alg.spec_name} signature{_kid_text(kid)} does not verify with any trusted key"
        )

    def encode(self) -> bytes:
        return self.encoded

    @classmethod
    def decode(
        cls, data: bytes, *, path: str | None = None, limits: cbor.Limits = cbor.DEFAULT_LIMITS
    ) -> CoseSign:
        """Decode ``data``, which must be a tagged COSE_Sign."""
        return _decode_as(cls, data, path, limits)


@dataclass(frozen=True, slots=True)
class CoseMac0:
    """COSE_Mac0 (RFC 9052 §6.2), tag 17: a MAC with a key known to the recipient."""

    TAG: ClassVar[Tag] = Tag.COSE_MAC0

    headers: Headers
    payload: bytes | None
    tag: bytes
    encoded: bytes = field(repr=False)

    @property
    def kid(self) -> bytes | None:
        return self.headers.kid

    def verify(
        self,
        keys: CoseKey | Iterable[CoseKey],
        *,
        payload: bytes | None = None,
        external_aad: bytes = b"",
    ) -> VerifyResult:
        headers = self.headers
        alg = headers.algorithm("COSE_Mac0")
        if alg not in MAC_ALGORITHMS:
            raise AlgorithmUnsupportedError(f"COSE_Mac0 alg {alg.spec_name} is not a MAC")
        kid = headers.kid
        tbs = mac_structure(
            "MAC0",
            headers.protected_bytes,
            external_aad,
            _payload(self.payload, payload, "COSE_Mac0"),
        )
        for key in _candidates(_key_tuple(keys), alg, kid):
            if mac_matches(key, alg, tbs, self.tag):
                return VerifyResult(alg, key, kid)
        raise AuthenticationError(
            f"COSE_Mac0 {alg.spec_name} tag{_kid_text(kid)} does not verify with any trusted key"
        )

    def encode(self) -> bytes:
        return self.encoded

    @classmethod
    def decode(
        cls, data: bytes, *, path: str | None = None, limits: cbor.Limits = cbor.DEFAULT_LIMITS
    ) -> CoseMac0:
        """Decode ``data``, which must be a tagged COSE_Mac0."""
        return _decode_as(cls, data, path, limits)


@dataclass(frozen=True, slots=True)
class CoseRecipient:
    """A COSE_recipient of a COSE_Mac (RFC 9052 §5.1): ``direct`` (empty ciphertext) or AES key
    wrap (the wrapped MAC key)."""

    headers: Headers
    ciphertext: bytes | None

    @property
    def kid(self) -> bytes | None:
        return self.headers.kid


@dataclass(frozen=True, slots=True)
class CoseMac:
    """COSE_Mac (RFC 9052 §6.1), tag 97: a MAC whose key is conveyed to each recipient."""

    TAG: ClassVar[Tag] = Tag.COSE_MAC

    headers: Headers
    payload: bytes | None
    tag: bytes
    recipients: tuple[CoseRecipient, ...]
    encoded: bytes = field(repr=False)

    def verify(
        self,
        keys: CoseKey | Iterable[CoseKey],
        *,
        payload: bytes | None = None,
        external_aad: bytes = b"",
    ) -> VerifyResult:
        """Find a recipient whose key is trusted (``direct``: the MAC key itself; A*KW: the
        key-encryption key), recover the MAC key and check the tag. ``key`` in the result is
        the trusted key that was used, ``index`` the recipient."""
        headers = self.headers
        alg = headers.algorithm("COSE_Mac")
        if alg not in MAC_ALGORITHMS:
            raise AlgorithmUnsupportedError(f"COSE_Mac alg {alg.spec_name} is not a MAC")
        data = _payload(self.payload, payload, "COSE_Mac")
        tbs = mac_structure("MAC", headers.protected_bytes, external_aad, data)
        trusted = _key_tuple(keys)
        unsupported = 0
        for index, rec in enumerate(self.recipients):
            what = f"COSE_Mac recipient[{index}]"
            try:
                key_alg = rec.headers.algorithm(what)
            except AlgorithmUnsupportedError:
                unsupported += 1
                continue
            kid = rec.kid
            if key_alg is CoseAlgorithm.DIRECT:
                for key in _candidates(trusted, alg, kid):
                    if mac_matches(key, alg, tbs, self.tag):
                        return VerifyResult(alg, key, kid, index)
            elif key_alg in KEY_WRAP_ALGORITHMS:
                wrapped = rec.ciphertext
                if not wrapped:
                    continue
                for kek in _candidates(trusted, key_alg, kid):
                    try:
                        cek = key_unwrap(kek, key_alg, wrapped)
                    except AuthenticationError:
                        continue
                    mac_key = CoseKey(CoseKeyType.SYMMETRIC, None, None, None, None, cek)
                    if alg in mac_key.algorithms and mac_matches(mac_key, alg, tbs, self.tag):
                        return VerifyResult(alg, kek, kid, index)
            else:
                unsupported += 1
        if unsupported == len(self.recipients):
            raise AlgorithmUnsupportedError(
                "no COSE_Mac recipient uses a supported key distribution (direct, A128KW, "
                "A192KW, A256KW)"
            )
        raise AuthenticationError(
            f"COSE_Mac {alg.spec_name} tag does not verify with any trusted key"
        )

    def encode(self) -> bytes:
        return self.encoded

    @classmethod
    def decode(
        cls, data: bytes, *, path: str | None = None, limits: cbor.Limits = cbor.DEFAULT_LIMITS
    ) -> CoseMac:
        """Decode ``data``, which must be a tagged COSE_Mac."""
        return _decode_as(cls, data, path, limits)


CoseMessage: TypeAlias = CoseSign1 | CoseSign | CoseMac0 | CoseMac


# --- decoding --------------------------------------------------------------------------------


def decode(
    data: bytes, *, path: str | None = None, limits: cbor.Limits = cbor.DEFAULT_LIMITS
) -> CoseMessage:
    """Decode a tagged COSE_Sign1 / COSE_Sign / COSE_Mac0 / COSE_Mac, dispatching on its tag."""
    value = cbor.loads(data, what="COSE structure", path=path, limits=limits)
    return _decode_value(value, data, path)


def _decode_value(value: Any, data: bytes, path: str | None) -> CoseMessage:
    """The message from ``value``, the strictly decoded ``data``."""
    if not isinstance(value, cbor.CBORTag):
        raise DecodeError(
            "COSE structure is not tagged (SUIT requires the tagged forms)", path=path
        )
    tag = value.tag
    encoded = bytes(data)
    if tag == Tag.COSE_SIGN1:
        return _decode_sign1(value.value, encoded, path)
    if tag == Tag.COSE_SIGN:
        return _decode_sign(value.value, encoded, path)
    if tag == Tag.COSE_MAC0:
        return _decode_mac0(value.value, encoded, path)
    if tag == Tag.COSE_MAC:
        return _decode_mac(value.value, encoded, path)
    if tag in (Tag.COSE_ENCRYPT0, Tag.COSE_ENCRYPT):
        raise CoseUnsupportedError(
            f"COSE tag {tag} (encryption) is not an authentication structure", path=path
        )
    raise DecodeError(f"tag {tag} is not a COSE structure tag", path=path)


_M = TypeVar("_M", CoseSign1, CoseSign, CoseMac0, CoseMac)

#: The outcome of :func:`verify_detached`: the structure's name ("COSE_Sign1", ...), its alg
#: (None if it has none suitkit knows), the kid it names, the trusted key that verified it
#: (None if none did) and, when none did, why.
BlockOutcome: TypeAlias = tuple[str, "int | None", "bytes | None", "CoseKey | None", "str | None"]

_STRUCTURE_NAMES: Final[dict[type, str]] = {
    CoseSign1: "COSE_Sign1",
    CoseSign: "COSE_Sign",
    CoseMac0: "COSE_Mac0",
    CoseMac: "COSE_Mac",
}
_TAG_SIGN1: Final = int(Tag.COSE_SIGN1)


def verify_detached(
    data: bytes,
    keys: Sequence[CoseKey],
    payload: bytes,
    *,
    path: str | None = None,
    limits: cbor.Limits = cbor.DEFAULT_LIMITS,
) -> BlockOutcome:
    """Decode one encoded, tagged COSE authentication structure and verify it over the detached
    ``payload`` with ``keys``: what a SUIT processor does with each SUIT_Authentication_Block.

    The same checks and outcome as :func:`decode` followed by ``verify(keys, payload=payload)``
    (malformed input raises DecodeError / CoseUnsupportedError, an unknown or missing alg
    raises; a signature or tag that no trusted key verifies is *returned* as an outcome with
    ``key`` None and the reason), with a direct path for the common case, a COSE_Sign1 with a
    detached payload, that builds no message objects. Every call verifies the signature.
    """
    value: Any = None
    fields = (
        _sign1_layout(data)
        if type(data) is bytes and limits.max_depth >= 3 and len(data) <= limits.max_input
        else None
    )
    if fields is None:
        value = cbor.loads(data, what="COSE structure", path=path, limits=limits)
        if type(value) is cbor.CBORTag and value.tag == _TAG_SIGN1:
            fields = value.value
    if fields is not None and (
        type(fields) is list
        and len(fields) == 4
        and fields[2] is None
        and type(fields[1]) is dict
        and type(fields[3]) is bytes
    ):
        # exactly the checks of _decode_sign1 + CoseSign1.verify, in the same order
        prot, unprot, _, signature = fields
        pmap = _protected_map(prot, "COSE_Sign1", path)
        if unprot:
            _check_unprotected(pmap, unprot, "COSE_Sign1", path, True)
            alg_value = pmap.get(_ALG)
            if alg_value is None:
                alg_value = unprot.get(_ALG)
            kid = pmap.get(_KID)
            if kid is None:
                kid = unprot.get(_KID)
        else:
            alg_value = pmap.get(_ALG)
            kid = pmap.get(_KID)
        alg = _algorithm(alg_value, "COSE_Sign1")
        tbs = sig_structure1(prot, b"", _payload(None, payload, "COSE_Sign1"))
        for key in _candidates(keys, alg, kid):
            if verifier(key, alg)(tbs, signature):
                return "COSE_Sign1", alg, kid, key, None
        return (
            "COSE_Sign1",
            int(alg),
            kid,
            None,
            f"COSE_Sign1 {alg.spec_name} signature{_kid_text(kid)} does not verify with any "
            "trusted key",
        )
    if value is None:
        value = cbor.loads(data, what="COSE structure", path=path, limits=limits)
    msg = _decode_value(value, data, path)
    name = _STRUCTURE_NAMES.get(type(msg), "COSE")
    try:
        vr = msg.verify(keys, payload=payload)
    except AuthenticationError as exc:
        return name, _alg_or_none(msg), _kid_or_none(msg), None, exc.message
    return name, vr.alg, vr.kid, vr.key, None


#: ``18([`` and ``{}, null`` / ``{4: `` : the pieces of a COSE_Sign1 with a detached payload
_SIGN1_ARRAY: Final = b"\xd2\x84"
_EMPTY_NULL: Final = b"\xa0\xf6"
_KID_ONLY: Final = b"\xa1\x04"


def _sign1_layout(data: bytes) -> list[Any] | None:
    """The fields of ``data`` if it is exactly ``18([bstr, {}, null, bstr])`` or
    ``18([bstr, {4: bstr}, null, bstr])`` (a COSE_Sign1 with a detached payload, no or only a
    kid unprotected header), byte strings shorter than 65536 bytes: what
    :func:`suitkit.format.cbor.loads` gives for it (as a tag's content), found without the
    decoder. None for anything else, which the caller decodes in full."""
    if data[:2] != _SIGN1_ARRAY:
        return None
    pstart, pend = cbor.bstr_span(data, 2)
    if pend < 0:
        return None
    unprotected: dict[Any, Any] = {}
    if data[pend : pend + 2] == _EMPTY_NULL:
        pos = pend + 2
    elif data[pend : pend + 2] == _KID_ONLY:
        kstart, kend = cbor.bstr_span(data, pend + 2)
        if kend < 0 or data[kend : kend + 1] != b"\xf6":
            return None
        unprotected[_KID] = data[kstart:kend]
        pos = kend + 1
    else:
        return None
    sstart, send = cbor.bstr_span(data, pos)
    if send != len(data):
        return None
    return [data[pstart:pend], unprotected, None, data[sstart:send]]


def _alg_or_none(msg: CoseMessage) -> int | None:
    try:
        return int(msg.headers.algorithm("COSE"))
    except (SuitError, AttributeError):
        return None


def _kid_or_none(msg: CoseMessage) -> bytes | None:
    kid = getattr(msg, "kid", None)
    return kid if isinstance(kid, bytes) else None


def _decode_as(cls: type[_M], data: bytes, path: str | None, limits: cbor.Limits) -> _M:
    msg = decode(data, path=path, limits=limits)
    if not isinstance(msg, cls):
        raise CoseUnsupportedError(f"expected {cls.__name__}, got {type(msg).__name__}", path=path)
    return msg


def _array(value: Any, sizes: tuple[int, ...], what: str, path: str | None) -> Sequence[Any]:
    if not isinstance(value, list | tuple) or len(value) not in sizes:
        want = " or ".join(str(n) for n in sizes)
        raise DecodeError(f"{what} must be an array of {want} elements", path=path)
    return value


def _payload_field(value: Any, what: str, path: str | None) -> bytes | None:
    if value is not None and not isinstance(value, bytes):
        raise DecodeError(f"{what} payload must be a byte string or null", path=path)
    return value


def _bytes_field(value: Any, name: str, what: str, path: str | None) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"{what} {name} must be a byte string", path=path)
    return value


def _decode_sign1(value: Any, encoded: bytes, path: str | None) -> CoseSign1:
    what = "COSE_Sign1"
    prot, unprot, payload, signature = _array(value, (4,), what, path)
    headers = _parse_headers(prot, unprot, what, path, alg_protected=True)
    return CoseSign1(
        headers,
        _payload_field(payload, what, path),
        _bytes_field(signature, "signature", what, path),
        encoded,
    )


def _decode_sign(value: Any, encoded: bytes, path: str | None) -> CoseSign:
    what = "COSE_Sign"
    prot, unprot, payload, sigs = _array(value, (4,), what, path)
    headers = _parse_headers(prot, unprot, what, path, alg_protected=True)
    if not isinstance(sigs, list | tuple) or not sigs:
        raise DecodeError(f"{what} signatures must be a non-empty array", path=path)
    signatures = []
    for i, sig in enumerate(sigs):
        swhat = f"COSE_Signature[{i}]"
        sprot, sunprot, sbytes = _array(sig, (3,), swhat, path)
        signatures.append(
            CoseSignature(
                _parse_headers(sprot, sunprot, swhat, path, alg_protected=True),
                _bytes_field(sbytes, "signature", swhat, path),
            )
        )
    return CoseSign(headers, _payload_field(payload, what, path), tuple(signatures), encoded)


def _decode_mac0(value: Any, encoded: bytes, path: str | None) -> CoseMac0:
    what = "COSE_Mac0"
    prot, unprot, payload, tag = _array(value, (4,), what, path)
    headers = _parse_headers(prot, unprot, what, path, alg_protected=True)
    return CoseMac0(
        headers, _payload_field(payload, what, path), _bytes_field(tag, "tag", what, path), encoded
    )


def _decode_mac(value: Any, encoded: bytes, path: str | None) -> CoseMac:
    what = "COSE_Mac"
    prot, unprot, payload, tag, recs = _array(value, (5,), what, path)
    headers = _parse_headers(prot, unprot, what, path, alg_protected=True)
    if not isinstance(recs, list | tuple) or not recs:
        raise DecodeError(f"{what} recipients must be a non-empty array", path=path)
    recipients = []
    for i, rec in enumerate(recs):
        rwhat = f"COSE_recipient[{i}]"
        fields = _array(rec, (3, 4), rwhat, path)
        if len(fields) == 4:
            raise CoseUnsupportedError(f"{rwhat} has nested recipients", path=path)
        rprot, runprot, ciphertext = fields
        if ciphertext is not None and not isinstance(ciphertext, bytes):
            raise DecodeError(f"{rwhat} ciphertext must be a byte string or null", path=path)
        recipients.append(
            CoseRecipient(
                _parse_headers(rprot, runprot, rwhat, path, alg_protected=False), ciphertext
            )
        )
    return CoseMac(
        headers,
        _payload_field(payload, what, path),
        _bytes_field(tag, "tag", what, path),
        tuple(recipients),
        encoded,
    )


# --- creation --------------------------------------------------------------------------------


def _as_signer(signer: Signer | CoseKey) -> Signer:
    return KeySigner(signer) if isinstance(signer, CoseKey) else signer


def _check_bytes(payload: bytes, external_aad: bytes) -> None:
    if not isinstance(payload, bytes):
        raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
    if not isinstance(external_aad, bytes):
        raise TypeError(f"external_aad must be bytes, not {type(external_aad).__name__}")


def sign1(
    payload: bytes,
    signer: Signer | CoseKey,
    *,
    detached: bool = True,
    external_aad: bytes = b"",
    include_kid: bool = True,
    protect_kid: bool = False,
    protected: Mapping[Any, Any] | None = None,
    unprotected: Mapping[Any, Any] | None = None,
) -> CoseSign1:
    """Sign ``payload`` into a COSE_Sign1. The protected header is ``{1: alg}`` (plus
    ``protected`` extras, deterministically encoded); the signer's kid, if any and
    ``include_kid``, goes to the unprotected header (key 4) or, with ``protect_kid``, to the
    protected one. ``detached`` (the SUIT default) leaves the payload field ``null``."""
    _check_bytes(payload, external_aad)
    s = _as_signer(signer)
    headers = _build_headers(
        s.alg, s.kid if include_kid else None, protect_kid, protected, unprotected
    )
    signature = bytes(s.sign(sig_structure1(headers.protected_bytes, external_aad, payload)))
    body = None if detached else payload
    encoded = _encode_four(_SIGN1_HEAD, headers, body, signature)
    return CoseSign1(headers, body, signature, encoded)


def sign(
    payload: bytes,
    signers: Sequence[Signer | CoseKey],
    *,
    detached: bool = True,
    external_aad: bytes = b"",
    include_kid: bool = True,
    protect_kid: bool = False,
    protected: Mapping[Any, Any] | None = None,
    unprotected: Mapping[Any, Any] | None = None,
) -> CoseSign:
    """Sign ``payload`` into a COSE_Sign with one COSE_Signature per signer (each with
    ``{1: alg}`` protected and its kid as in :func:`sign1`). ``protected``/``unprotected`` are
    extra body headers (the body protected header is empty by default)."""
    _check_bytes(payload, external_aad)
    if not signers:
        raise ValueError("COSE_Sign needs at least one signer")
    body_headers = _build_headers(None, None, False, protected, unprotected)
    sigs: list[CoseSignature] = []
    for signer in signers:
        s = _as_signer(signer)
        h = _build_headers(s.alg, s.kid if include_kid else None, protect_kid, None, None)
        tbs = sig_structure(body_headers.protected_bytes, h.protected_bytes, external_aad, payload)
        sigs.append(CoseSignature(h, bytes(s.sign(tbs))))
    body = None if detached else payload
    encoded = cbor.dumps(
        cbor.CBORTag(
            Tag.COSE_SIGN,
            [
                body_headers.protected_bytes,
                body_headers.unprotected,
                body,
                [[x.headers.protected_bytes, x.headers.unprotected, x.signature] for x in sigs],
            ],
        )
    )
    return CoseSign(body_headers, body, tuple(sigs), encoded)


def mac0(
    payload: bytes,
    key: CoseKey,
    alg: CoseAlgorithm | None = None,
    *,
    detached: bool = True,
    external_aad: bytes = b"",
    include_kid: bool = True,
    protect_kid: bool = False,
    protected: Mapping[Any, Any] | None = None,
    unprotected: Mapping[Any, Any] | None = None,
) -> CoseMac0:
    """MAC ``payload`` into a COSE_Mac0 (``alg`` default: HMAC 256/256 for a symmetric key)."""
    _check_bytes(payload, external_aad)
    a = check_key(key, default_algorithm(key) if alg is None else alg, private=True)
    if a not in MAC_ALGORITHMS:
        raise AlgorithmUnsupportedError(f"{a.spec_name} is not a MAC algorithm")
    headers = _build_headers(
        a, key.kid if include_kid else None, protect_kid, protected, unprotected
    )
    tag = compute_mac(key, a, mac_structure("MAC0", headers.protected_bytes, external_aad, payload))
    body = None if detached else payload
    encoded = _encode_four(_MAC0_HEAD, headers, body, tag)
    return CoseMac0(headers, body, tag, encoded)


@dataclass(frozen=True, slots=True)
class Recipient:
    """How a COSE_Mac conveys its MAC key to one recipient: ``direct`` (the recipient already
    holds ``key``, which is the MAC key) or A128KW/A192KW/A256KW (``key`` is the recipient's
    key-encryption key). ``kid`` defaults to the key's kid."""

    key: CoseKey
    alg: CoseAlgorithm = CoseAlgorithm.DIRECT
    kid: bytes | None = None


def mac(
    payload: bytes,
    recipients: Sequence[Recipient | CoseKey],
    alg: CoseAlgorithm = CoseAlgorithm.HMAC_256_256,
    *,
    mac_key: CoseKey | None = None,
    detached: bool = True,
    external_aad: bytes = b"",
    protected: Mapping[Any, Any] | None = None,
    unprotected: Mapping[Any, Any] | None = None,
) -> CoseMac:
    """MAC ``payload`` into a COSE_Mac. A bare CoseKey recipient means ``direct``. With
    ``direct`` there is exactly one recipient and its key is the MAC key; with key wrap the MAC
    key is ``mac_key`` or a fresh random 32-byte key, wrapped for every recipient."""
    _check_bytes(payload, external_aad)
    if alg not in MAC_ALGORITHMS:
        raise AlgorithmUnsupportedError(f"{CoseAlgorithm(alg).spec_name} is not a MAC algorithm")
    recs = [r if isinstance(r, Recipient) else Recipient(r) for r in recipients]
    if not recs:
        raise ValueError("COSE_Mac needs at least one recipient")
    direct = [r for r in recs if r.alg is CoseAlgorithm.DIRECT]
    if direct:
        if len(recs) != 1:
            raise ValueError("direct key distribution allows exactly one recipient")
        if mac_key is not None:
            raise ValueError("with direct, the recipient's key is the MAC key")
        key = direct[0].key
    else:
        key = (
            mac_key
            if mac_key is not None
            else CoseKey(CoseKeyType.SYMMETRIC, None, None, None, None, os.urandom(32))
        )
    check_key(key, alg, private=True)
    cose_recipients: list[list[Any]] = []
    for r in recs:
        kid = r.key.kid if r.kid is None else r.kid
        if r.alg is CoseAlgorithm.DIRECT:
            ciphertext = b""
        elif r.alg in KEY_WRAP_ALGORITHMS:
            ciphertext = key_wrap(r.key, r.alg, key.secret())
        else:
            raise AlgorithmUnsupportedError(
                f"COSE_Mac recipients use direct or AES key wrap, not {r.alg.spec_name}"
            )
        h = _build_headers(None, kid, False, None, None)
        runprot = cbor.sorted_map({**h.unprotected, int(CoseHeader.ALG): int(r.alg)})
        cose_recipients.append([b"", runprot, ciphertext])
    headers = _build_headers(alg, None, False, protected, unprotected)
    tbs = mac_structure("MAC", headers.protected_bytes, external_aad, payload)
    tag = compute_mac(key, alg, tbs)
    body = None if detached else payload
    encoded = cbor.dumps(
        cbor.CBORTag(
            Tag.COSE_MAC,
            [headers.protected_bytes, headers.unprotected, body, tag, cose_recipients],
        )
    )
    recipients_t = tuple(CoseRecipient(Headers(b"", {}, r[1]), r[2]) for r in cose_recipients)
    return CoseMac(headers, body, tag, recipients_t, encoded)


def verify(
    message: CoseMessage,
    keys: CoseKey | Iterable[CoseKey],
    *,
    payload: bytes | None = None,
    external_aad: bytes = b"",
) -> VerifyResult:
    """Verify any of the four message types (see their ``verify`` methods)."""
    return message.verify(keys, payload=payload, external_aad=external_aad)
