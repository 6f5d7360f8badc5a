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
from suitkit.format.digest import Digest, Hasher, digest_fields
from suitkit.format.envelope import (
    AuthenticationWrapper,
    Envelope,
    OuterEnvelope,
    SeverableMember,
    authentication_items,
    decode_severable_member,
    envelope_map,
    envelope_members,
)
from suitkit.format.manifest import SEVERABLE_SEQUENCES, Manifest


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
    return _wrapped_matches(digest.algorithm, digest.value, content)


def _wrapped_matches(algorithm: int, value: bytes, content: bytes) -> bool:
    n = len(content)
    head = _SHORT_BSTR_HEADS[n] if n < 0x100 else bstr_header(n)
    if algorithm == _SHA_256:  # the mandatory algorithm: skip the generic Hasher
        h = hashlib.sha256(head)
        h.update(content)
        return hmac.compare_digest(value, h.digest())
    hasher = Hasher(algorithm)
    hasher.update(head)
    hasher.update(content)
    return hmac.compare_digest(value, hasher.digest())


_SHA_256 = int(CoseAlgorithm.SHA_256)
_SHORT_BSTR_HEADS = tuple(bstr_header(n) for n in range(0x100))
#: ``[-16, bstr(32)]`` up to the digest bytes: a SHA-256 SUIT_Digest, the usual one
_SHA256_DIGEST_HEAD = b"\x82\x2f\x58\x20"


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
    itself needs only the envelope map, the wrapper and the manifest's top-level map. The
    :attr:`result` record is likewise assembled on first access from what was checked.
    """

    __slots__ = (
        "_auth_items",
        "_auth_raw",
        "_blocks",
        "_data",
        "_digest",
        "_digest_value",
        "_envelope",
        "_extra",
        "_extra_bytes",
        "_limits",
        "_manifest_raw",
        "_manifest_value",
        "_members_bytes",
        "_members_checked",
        "_members_severed",
        "_outer",
        "_parts",
        "_result",
        "_tagged",
    )

    def __init__(
        self,
        data: bytes,
        tagged: bool,
        auth_raw: bytes,
        auth_items: list[bytes],
        parts: tuple[dict[int, bytes], dict[str, bytes], dict[int, Any]],
        manifest_raw: bytes,
        digest_value: list[Any],
        blocks: list[tuple[Any, ...]],
        manifest_value: dict[Any, Any],
        members: Mapping[int, bytes],
        extra: Mapping[int, bytes],
        checked: tuple[int, ...],
        severed: tuple[int, ...],
        limits: Limits,
    ) -> None:
        self._data = data
        self._tagged = tagged
        self._auth_raw = auth_raw
        self._auth_items = auth_items
        self._parts = parts
        self._manifest_raw = manifest_raw
        self._digest_value = digest_value
        self._digest: Digest | None = None
        self._blocks = blocks
        self._manifest_value = manifest_value
        self._members_bytes = members
        self._extra_bytes = extra
        self._members_checked = checked
        self._members_severed = severed
        self._limits = limits
        self._outer: OuterEnvelope | None = None
        self._result: AuthenticationResult | None = None
        self._envelope: Envelope | None = None
        self._extra: dict[int, SeverableMember] | None = None

    @property
    def digest(self) -> Digest:
        """The SUIT_Digest of the manifest that the authentication wrapper holds (and matched)."""
        if self._digest is None:
            d = Digest.from_cbor(self._digest_value, _DIGEST_PATH)
            object.__setattr__(d, "_encoded", self._auth_items[0])
            self._digest = d
        return self._digest

    @property
    def result(self) -> AuthenticationResult:
        """What was checked: the digest, every block's outcome, the severable members."""
        if self._result is None:
            self._result = AuthenticationResult(
                self.digest,
                tuple(BlockResult(*b) for b in self._blocks),
                self._members_checked,
                self._members_severed,
            )
        return self._result

    @property
    def outer(self) -> OuterEnvelope:
        """The envelope map with the authentication wrapper decoded, the manifest as bytes."""
        if self._outer is None:
            auth = AuthenticationWrapper(self.digest, tuple(self._auth_items[1:]))
            object.__setattr__(auth, "_encoded", self._auth_raw)
            severable, payloads, ext = self._parts
            self._outer = OuterEnvelope(
                auth, self._manifest_raw, severable, payloads, ext, self._tagged
            )
        return self._outer

    @property
    def envelope(self) -> Envelope:
        """The parsed envelope (manifest and severable members checked and decoded)."""
        if self._envelope is None:
            outer, limits = self.outer, self._limits
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

    This is the processor's hot path: it works on the decoded CBOR directly (the envelope map,
    the wrapper array, the COSE structures) and builds the model objects (the wrapper, the
    per-block results) only when they are asked for. Each layer is still decoded strictly,
    every signature is verified on every call, and the manifest is decoded only once a block
    has verified (§6.2).
    """
    keys = list(trusted_keys)
    value, tagged, auth_raw, manifest_raw = envelope_map(data, limits)
    items = authentication_items(auth_raw, _AUTH_PATH, limits)
    payload = items[0]  # §8.3: the detached payload is the bstr-wrapped SUIT_Digest
    if len(payload) == 36 and payload[:4] == _SHA256_DIGEST_HEAD:
        digest_value: Any = [_SHA_256, payload[4:]]  # exactly [-16, bstr(32)]
    else:
        digest_value = cbor.loads(payload, what="SUIT_Digest", path=_DIGEST_PATH)
    digest_alg, digest_bytes = digest_fields(digest_value, _DIGEST_PATH)
    parts = envelope_members(value)  # (in decode_outer's order: after the wrapper)
    # §8.3: the digest covers the bstr-wrapped manifest, CBOR header included.
    if not _wrapped_matches(digest_alg, digest_bytes, manifest_raw):
        raise AuthenticationError(
            "the manifest does not match the SUIT_Digest in the authentication wrapper",
            path=_DIGEST_PATH,
        )
    if len(items) == 1:
        raise AuthenticationError(
            "the envelope is not authenticated: its authentication wrapper holds only the "
            "digest, no signature or MAC (§8.3)",
            path=_AUTH_PATH,
        )
    if not keys:
        raise AuthenticationError("no trusted key was given to verify the envelope with")
    blocks: list[tuple[Any, ...]] = []
    verified = False
    for i in range(1, len(items)):
        where = _BLOCK_PATHS[i] if i < len(_BLOCK_PATHS) else f"{_AUTH_PATH}[{i}]"
        name, alg, kid, key, error = cose.verify_detached(
            items[i], keys, payload, path=where, limits=limits
        )
        if key is not None:
            verified = True
            blocks.append((i, name, alg, kid, True, key))
        else:
            blocks.append((i, name, alg, kid, False, None, error))
    if not verified:
        reasons = "; ".join(f"block {b[0]}: {b[6]}" for b in blocks)
        raise AuthenticationError(
            f"no authentication block verifies under a trusted key ({reasons})",
            path=_AUTH_PATH,
        )
    # Authentic: now the manifest may be parsed (§6.2). Only its top-level map is needed here,
    # for the digests of severable members; the typed manifest is parsed on first access.
    manifest_value = cbor.loads(
        manifest_raw, what="SUIT_Manifest", path="envelope/manifest", limits=limits
    )
    if type(manifest_value) is not dict:
        raise DecodeError("SUIT_Manifest must be a map", path="envelope/manifest")
    members, extra, checked, missing = _check_members(manifest_value, parts[0], severed)
    return AuthenticatedEnvelope(
        data, tagged, auth_raw, items, parts, manifest_raw, digest_value, blocks,
        manifest_value, members, extra, checked, missing, limits,
    )  # fmt: skip


_AUTH_PATH = "envelope/authentication-wrapper"
_DIGEST_PATH = "envelope/authentication-wrapper/digest"
_BLOCK_PATHS = tuple(f"{_AUTH_PATH}[{i}]" for i in range(16))


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
    if not digests and not in_envelope and not supplied:  # nothing severable: nothing to check
        return {}, {}, (), ()
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
