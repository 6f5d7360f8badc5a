"""SUIT_Digest (manifest §10 "SUIT Digest Container") and the digest algorithms it names."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from suitkit.errors import AlgorithmUnsupportedError, DecodeError
from suitkit.format import cbor
from suitkit.format.codepoints import DIGEST_ALGORITHMS, CoseAlgorithm

# hashlib constructors for suit-cose-hash-algs; SHAKE outputs 256 (SHAKE128) and 512 (SHAKE256)
# bits as RFC 9054 §3.2-3.3 specify.
_HASHES: dict[int, Callable[[], Any]] = {
    CoseAlgorithm.SHA_256: hashlib.sha256,
    CoseAlgorithm.SHA_384: hashlib.sha384,
    CoseAlgorithm.SHA_512: hashlib.sha512,
    CoseAlgorithm.SHAKE128: hashlib.shake_128,
    CoseAlgorithm.SHAKE256: hashlib.shake_256,
}
_SHAKE_LENGTH: dict[int, int] = {CoseAlgorithm.SHAKE128: 32, CoseAlgorithm.SHAKE256: 64}


class Hasher:
    """Incremental digest for one suit-cose-hash-alg: ``update()`` chunks, then ``digest()``."""

    __slots__ = ("_h", "algorithm")

    def __init__(self, algorithm: int) -> None:
        ctor = _HASHES.get(algorithm)
        if ctor is None:
            raise AlgorithmUnsupportedError(
                f"digest algorithm {_alg_name(algorithm)} is not supported"
            )
        self.algorithm = algorithm
        self._h = ctor()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        n = _SHAKE_LENGTH.get(self.algorithm)
        return bytes(self._h.digest(n)) if n is not None else bytes(self._h.digest())


def _alg_name(algorithm: int) -> str:
    name = CoseAlgorithm.name_of(algorithm)
    return f"{algorithm} ({CoseAlgorithm(algorithm).spec_name})" if name else str(algorithm)


def digest_fields(value: Any, path: str = "digest") -> tuple[int, bytes]:
    """Check the decoded SUIT_Digest array ``value``; return its algorithm-id and digest-bytes
    (what :meth:`Digest.from_cbor` checks, for callers that need no Digest object)."""
    if type(value) is not list or len(value) < 2:
        raise DecodeError("SUIT_Digest must be an array [algorithm-id, digest-bytes]", path=path)
    alg, dig = value[0], value[1]
    if type(alg) is not int:
        raise DecodeError("SUIT_Digest algorithm-id must be an integer", path=path)
    if type(dig) is not bytes:
        raise DecodeError("SUIT_Digest digest-bytes must be a byte string", path=path)
    return alg, dig


@dataclass(frozen=True, slots=True)
class Digest:
    """``SUIT_Digest = [algorithm-id, digest-bytes, * extensions]``."""

    algorithm: int
    value: bytes
    extensions: tuple[Any, ...] = ()
    _encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def compute(cls, data: bytes, algorithm: int = CoseAlgorithm.SHA_256) -> Digest:
        h = Hasher(algorithm)
        h.update(data)
        return cls(algorithm, h.digest())

    @classmethod
    def from_cbor(cls, value: Any, path: str = "digest") -> Digest:
        """Decode the SUIT_Digest array ``value`` (already CBOR-decoded)."""
        alg, dig = digest_fields(value, path)
        return cls(alg, dig, tuple(value[2:]))

    @classmethod
    def decode(cls, data: bytes, path: str = "digest") -> Digest:
        """Decode a bstr-wrapped SUIT_Digest from its encoded bytes, keeping them."""
        d = cls.from_cbor(cbor.loads(data, what="SUIT_Digest", path=path), path)
        object.__setattr__(d, "_encoded", bytes(data))
        return d

    def to_cbor(self) -> list[Any]:
        return [self.algorithm, self.value, *self.extensions]

    @property
    def encoded(self) -> bytes:
        """The encoded SUIT_Digest: the bytes it was decoded from, if it was decoded."""
        return cbor.cached_encoding(self)

    @property
    def algorithm_name(self) -> str:
        name = CoseAlgorithm.name_of(self.algorithm)
        return CoseAlgorithm(self.algorithm).spec_name if name else str(self.algorithm)

    @property
    def is_supported(self) -> bool:
        return self.algorithm in DIGEST_ALGORITHMS

    def hasher(self) -> Hasher:
        """A fresh :class:`Hasher` for this digest's algorithm."""
        return Hasher(self.algorithm)

    def matches(self, actual: bytes) -> bool:
        """Constant-time comparison of a computed digest value with this one."""
        return hmac.compare_digest(self.value, actual)

    def matches_data(self, data: bytes) -> bool:
        """Hash ``data`` with this digest's algorithm and compare in constant time."""
        h = self.hasher()
        h.update(data)
        return self.matches(h.digest())

    def to_diag(self) -> Any:
        return [cbor.Comment(self.algorithm, f'algorithm-id "{self.algorithm_name}"'), self.value]

    def to_json(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm_name, "value": self.value.hex()}
