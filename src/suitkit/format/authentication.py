"""Authenticating a SUIT envelope (manifest §6.2, §8.3, §8.5).

The order is the spec's: parse only the envelope map and the authentication wrapper; check that
the SUIT_Digest matches the bstr-wrapped manifest *including its CBOR byte-string header*; verify
the COSE authentication blocks over that digest; only then parse the manifest; then check every
severable member that is present (in the envelope, or supplied separately) against the digest the
manifest holds for it. Verification raises on failure; on success it returns what was checked.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suitkit.cose import messages as cose
from suitkit.cose.keys import CoseKey
from suitkit.errors import AuthenticationError, DecodeError, SuitError
from suitkit.format import cbor
from suitkit.format.cbor import DEFAULT_LIMITS, Limits
from suitkit.format.codepoints import CoseAlgorithm, ManifestKey
from suitkit.format.digest import Digest, Hasher
from suitkit.format.envelope import (
    Envelope,
    OuterEnvelope,
    SeverableMember,
    decode_outer,
    decode_severable_member,
)
from suitkit.format.manifest import SEVERABLE_SEQUENCES, Manifest

_COSE_NAMES = {
    cose.CoseSign1: "COSE_Sign1",
    cose.CoseSign: "COSE_Sign",
    cose.CoseMac0: "COSE_Mac0",
    cose.CoseMac: "COSE_Mac",
}


def bstr_header(length: int) -> bytes:
    """The CBOR head of a byte string of ``length`` bytes (RFC 8949 §3, major type 2)."""
    if length < 24:
        return bytes([0x40 | length])
    if length < 0x100:
        return bytes([0x58, length])
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    if length < 0x100000000:
        return b"\x5a" + length.to_bytes(4, "big")
    return b"\x5b" + length.to_bytes(8, "big")


def digest_of_wrapped(digest: Digest, content: bytes) -> bool:
    """Does ``digest`` cover ``content`` as a bstr-wrapped item (header included)? Constant-time."""
    if digest.algorithm == _SHA_256:  # the mandatory algorithm: skip the generic Hasher
        h = hashlib.sha256(bstr_header(len(content)))
        h.update(content)
        return hmac.compare_digest(digest.value, h.digest())
    hasher = Hasher(digest.algorithm)
    hasher.update(bstr_header(len(content)))
    hasher.update(content)
    return digest.matches(hasher.digest())


_SHA_256 = int(CoseAlgorithm.SHA_256)


@dataclass(frozen=True, slots=True)
class BlockResult:
    """The outcome of one SUIT_Authentication_Block."""

    index: int
    structure: str
    alg: int | None
    kid: bytes | None
    verified: bool
    key: CoseKey | None = None  # the trusted key that verified
    error: str | None = None

    @property
    def algorithm(self) -> str:
        """The algorithm's name (``ES256``), or its number if suitkit does not know it."""
        if self.alg is None:
            return "?"
        return (
            CoseAlgorithm(self.alg).spec_name if CoseAlgorithm.name_of(self.alg) else str(self.alg)
        )

    @property
    def key_id(self) -> bytes | None:
        """The verifying key's kid, or an id derived from its public key (computed on demand)."""
        return _key_id(self.key) if self.key is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "structure": self.structure,
            "algorithm": self.algorithm,
            "kid": self.kid.hex() if self.kid is not None else None,
            "verified": self.verified,
            "trusted-key-id": self.key_id.hex() if self.key_id is not None else None,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class AuthenticationResult:
    """What :func:`authenticate` checked."""

    digest: Digest
    blocks: tuple[BlockResult, ...]
    members_checked: tuple[int, ...] = ()
    members_severed: tuple[int, ...] = ()

    @property
    def verified_blocks(self) -> tuple[BlockResult, ...]:
        return tuple(b for b in self.blocks if b.verified)


class AuthenticatedEnvelope:
    """An envelope whose manifest is authentic and whose present severable members match.

    The typed manifest is parsed on first access (strictly: a malformed manifest raises
    :class:`~suitkit.errors.DecodeError` then), the way a pull parser works: authentication
    itself needs only the envelope map, the wrapper and the manifest's top-level map.
    """

    __slots__ = (
        "_data",
        "_envelope",
        "_extra",
        "_extra_bytes",
        "_limits",
        "_manifest_value",
        "_members_bytes",
        "_outer",
        "result",
    )

    def __init__(
        self,
        outer: OuterEnvelope,
        manifest_value: dict[Any, Any],
        members: Mapping[int, bytes],
        extra: Mapping[int, bytes],
        result: AuthenticationResult,
        limits: Limits,
        data: bytes,
    ) -> None:
        self._outer = outer
        self._manifest_value = manifest_value
        self._members_bytes = members
        self._extra_bytes = extra
        self.result = result
        self._limits = limits
        self._envelope: Envelope | None = None
        self._extra: dict[int, SeverableMember] | None = None
        self._data = data

    @property
    def envelope(self) -> Envelope:
        """The parsed envelope (manifest and severable members checked and decoded)."""
        if self._envelope is None:
            outer, limits = self._outer, self._limits
            manifest = Manifest.from_cbor(self._manifest_value, "envelope/manifest", limits)
            object.__setattr__(manifest, "_encoded", outer.manifest_bytes)
            members = {
                k: decode_severable_member(k, v, limits) for k, v in self._members_bytes.items()
            }
            env = Envelope(
                outer.authentication,
                manifest,
                members,
                outer.integrated_payloads,
                outer.extensions,
                outer.tagged,
            )
            object.__setattr__(env, "_encoded", self._data)
            self._extra = {
                k: decode_severable_member(k, v, limits) for k, v in self._extra_bytes.items()
            }
            self._envelope = env
        return self._envelope

    @property
    def manifest(self) -> Manifest:
        return self.envelope.manifest

    def member(self, key: int) -> SeverableMember | None:
        """A severable member by manifest key, whether it stayed in the manifest, came in the
        envelope, or was supplied separately (each one checked against its digest)."""
        env = self.envelope
        m = env.manifest
        held = m.text if key == ManifestKey.TEXT else m.sequence(key)
        if held is not None and not isinstance(held, Digest):
            return held
        assert self._extra is not None
        return env.severable.get(key) or self._extra.get(key)

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "authentic": True,
            "manifest-digest": self.result.digest.to_json(),
            "sequence-number": m.sequence_number,
            "blocks": [b.to_json() for b in self.result.blocks],
            "members-checked": [ManifestKey(k).spec_name for k in self.result.members_checked],
            "members-severed": [ManifestKey(k).spec_name for k in self.result.members_severed],
        }

    def summary_lines(self) -> list[str]:
        r = self.result
        m = self.manifest
        lines = [
            f"manifest digest: {r.digest.algorithm_name} {r.digest.value.hex()} (matches)",
        ]
        for b in r.blocks:
            kid = f" kid {b.kid.hex()}" if b.kid else ""
            if b.verified:
                key = f" by trusted key {b.key_id.hex()}" if b.key_id else ""
                lines.append(f"block {b.index}: {b.structure} {b.algorithm}{kid}: verified{key}")
            else:
                lines.append(
                    f"block {b.index}: {b.structure} {b.algorithm}{kid}: not verified ({b.error})"
                )
        for k in r.members_checked:
            lines.append(f"severable member {ManifestKey(k).spec_name}: present, digest matches")
        for k in r.members_severed:
            lines.append(f"severable member {ManifestKey(k).spec_name}: severed (not checked)")
        lines.append(
            f"OK: authentic manifest, sequence number {m.sequence_number}, "
            f"{len(m.common.components)} component(s)"
        )
        return lines


def authenticate(
    data: bytes,
    trusted_keys: Iterable[CoseKey],
    *,
    severed: Mapping[int, bytes] | Iterable[bytes] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> AuthenticatedEnvelope:
    """Authenticate an encoded envelope and return it parsed.

    ``severed`` supplies severable members that are not in the envelope: their encoded bytes
    (the content of the bstr), either keyed by manifest key or as a plain list, matched to the
    manifest's digests. Raises :class:`~suitkit.errors.AuthenticationError` if the digest does
    not match, no block verifies under a trusted key, or a member does not match its digest;
    :class:`~suitkit.errors.DecodeError` for malformed input.
    """
    keys = list(trusted_keys)
    outer = decode_outer(data, limits=limits)
    auth = outer.authentication
    # §8.3: the digest covers the bstr-wrapped manifest, CBOR header included.
    if not digest_of_wrapped(auth.digest, outer.manifest_bytes):
        raise AuthenticationError(
            "the manifest does not match the SUIT_Digest in the authentication wrapper",
            path="envelope/authentication-wrapper/digest",
        )
    if not auth.blocks:
        raise AuthenticationError(
            "the envelope is not authenticated: its authentication wrapper holds only the "
            "digest, no signature or MAC (§8.3)",
            path="envelope/authentication-wrapper",
        )
    if not keys:
        raise AuthenticationError("no trusted key was given to verify the envelope with")
    payload = auth.digest.encoded  # §8.3: the detached payload is the bstr-wrapped SUIT_Digest
    results = []
    for i, block in enumerate(auth.blocks):
        where = f"envelope/authentication-wrapper[{i + 1}]"
        msg = cose.decode(block, path=where, limits=limits)
        name = _COSE_NAMES.get(type(msg), "COSE")
        try:
            vr = msg.verify(keys, payload=payload)
        except AuthenticationError as exc:
            results.append(BlockResult(i + 1, name, _alg(msg), _kid(msg), False, error=exc.message))
            continue
        results.append(BlockResult(i + 1, name, vr.alg, vr.kid, True, key=vr.key))
    if not any(r.verified for r in results):
        reasons = "; ".join(f"block {r.index}: {r.error}" for r in results)
        raise AuthenticationError(
            f"no authentication block verifies under a trusted key ({reasons})",
            path="envelope/authentication-wrapper",
        )
    # Authentic: now the manifest may be parsed (§6.2). Only its top-level map is needed here,
    # for the digests of severable members; the typed manifest is parsed on first access.
    manifest_value = cbor.loads(
        outer.manifest_bytes, what="SUIT_Manifest", path="envelope/manifest", limits=limits
    )
    if type(manifest_value) is not dict:
        raise DecodeError("SUIT_Manifest must be a map", path="envelope/manifest")
    members, extra, checked, missing = _check_members(manifest_value, outer.severable, severed)
    result = AuthenticationResult(auth.digest, tuple(results), checked, missing)
    return AuthenticatedEnvelope(outer, manifest_value, members, extra, result, limits, data)


def _check_members(
    manifest: dict[Any, Any],
    in_envelope: Mapping[int, bytes],
    supplied: Mapping[int, bytes] | Iterable[bytes] | None,
) -> tuple[dict[int, bytes], dict[int, bytes], tuple[int, ...], tuple[int, ...]]:
    """Check severable members against the digests in the manifest's top-level map (§8.5)."""
    digests: dict[int, Digest] = {}
    for mkey in _SEVERABLE_KEYS:
        held = manifest.get(mkey)
        if type(held) is list:
            digests[mkey] = Digest.from_cbor(
                held, f"envelope/manifest/{ManifestKey(mkey).spec_name}"
            )
    members: dict[int, bytes] = {}
    for key, content in in_envelope.items():
        name = ManifestKey.name_of(key) or str(key)
        d = digests.get(key)
        if d is None:
            raise DecodeError(
                f"the envelope carries a {name} member that the manifest does not sever",
                path=f"envelope/{name}",
            )
        if not digest_of_wrapped(d, content):
            raise AuthenticationError(
                f"the {name} member does not match its digest in the manifest (§8.5)",
                path=f"envelope/{name}",
            )
        members[key] = content
    extra: dict[int, bytes] = {}
    if supplied:
        items: Sequence[tuple[int | None, bytes]]
        if isinstance(supplied, Mapping):
            items = [(k, v) for k, v in supplied.items()]
        else:
            items = [(None, v) for v in supplied]
        for skey, content in items:
            # a member supplied again although the envelope carries it too is harmless: it must
            # still match a digest, and the envelope's copy is the same bytes
            candidates = [skey] if skey is not None else list(digests)
            match = next(
                (k for k in candidates if k in digests and digest_of_wrapped(digests[k], content)),
                None,
            )
            if match is None:
                what = ManifestKey.name_of(skey) if skey is not None else "supplied"
                raise AuthenticationError(
                    f"the {what} severable member matches no digest in the manifest (§8.5)",
                    path="severed",
                )
            if match not in members:
                extra[match] = content
    checked = tuple(sorted([*members, *extra]))
    missing = tuple(sorted(k for k in digests if k not in members and k not in extra))
    return members, extra, checked, missing


_SEVERABLE_KEYS = tuple(int(k) for k in (*SEVERABLE_SEQUENCES, ManifestKey.TEXT))


def _alg(msg: Any) -> int | None:
    try:
        return int(msg.headers.algorithm("COSE"))
    except (SuitError, AttributeError):
        return None


def _kid(msg: Any) -> bytes | None:
    kid = getattr(msg, "kid", None)
    return kid if isinstance(kid, bytes) else None


def _key_id(key: CoseKey) -> bytes | None:
    if key.kid is not None:
        return key.kid
    try:
        from suitkit.cose.keys import key_id_of

        return key_id_of(key)
    except (SuitError, ValueError, TypeError):
        return None


def severed_members_from_files(paths: Iterable[Path]) -> list[bytes]:
    """Read severed members saved by ``suitkit sever --save`` (each file: the member's bytes)."""
    return [Path(p).read_bytes() for p in paths]
