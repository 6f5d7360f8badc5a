"""SUIT_Envelope and SUIT_Authentication (manifest §8.1-§8.3).

Two ways in:

- :meth:`Envelope.decode` parses everything, for tools that inspect a manifest (``suitkit show``);
  it authenticates nothing.
- :func:`suitkit.format.authentication.authenticate` is what a processor uses: it parses the
  envelope map and the authentication wrapper, checks the digest and the signatures, and only
  then parses the manifest (§6.2: authenticate before you parse further).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from suitkit.errors import DecodeError
from suitkit.format import cbor
from suitkit.format.cbor import DEFAULT_LIMITS, Limits
from suitkit.format.codepoints import EnvelopeKey, ManifestKey, Tag
from suitkit.format.commands import CommandSequence
from suitkit.format.digest import Digest
from suitkit.format.manifest import SEVERABLE_SEQUENCES, Manifest, TextMap

SeverableMember = CommandSequence | TextMap


@dataclass(frozen=True, slots=True)
class AuthenticationWrapper:
    """``SUIT_Authentication = [bstr .cbor SUIT_Digest, * bstr .cbor SUIT_Authentication_Block]``.

    ``blocks`` are the encoded COSE structures (tagged COSE_Sign1 / COSE_Sign / COSE_Mac0 /
    COSE_Mac) as they were received; :mod:`suitkit.cose` decodes and verifies them.
    """

    digest: Digest
    blocks: tuple[bytes, ...] = ()
    _encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def decode(
        cls, data: bytes, path: str = "authentication-wrapper", limits: Limits = DEFAULT_LIMITS
    ) -> AuthenticationWrapper:
        return cls._from_items(authentication_items(data, path, limits), data, path)

    @classmethod
    def _from_items(cls, items: list[bytes], data: bytes, path: str) -> AuthenticationWrapper:
        w = cls(Digest.decode(items[0], f"{path}/digest"), tuple(items[1:]))
        object.__setattr__(w, "_encoded", data)
        return w

    def to_cbor(self) -> list[bytes]:
        return [self.digest.encoded, *self.blocks]

    @property
    def encoded(self) -> bytes:
        return cbor.cached_encoding(self)

    @property
    def payload(self) -> bytes:
        """The detached COSE payload (§8.3): "the bstr-wrapped SUIT_Digest", i.e. the encoded
        SUIT_Digest, which COSE's Sig_structure/MAC_structure carries as its bstr payload field.
        (Checked against every signature in the spec vectors.)"""
        return self.digest.encoded

    def to_diag(self) -> list[Any]:
        out: list[Any] = [cbor.Wrapped(self.digest.to_diag())]
        for b in self.blocks:
            try:
                out.append(cbor.Wrapped(cbor.cose_diag(cbor.loads(b))))
            except DecodeError:
                out.append(b)
        return out


@dataclass(frozen=True, slots=True)
class Envelope:
    """``SUIT_Envelope`` (§8.2), optionally tagged 107.

    ``severable`` holds the severable members carried in the envelope (keyed like the manifest:
    install 20, payload-fetch 16, text 23, ...); ``integrated_payloads`` the payloads carried
    under text keys (§7.5 "Integrated Payloads"), which are also how trust domains carries
    integrated dependencies.
    """

    authentication: AuthenticationWrapper
    manifest: Manifest
    severable: Mapping[int, SeverableMember] = field(default_factory=dict)
    integrated_payloads: Mapping[str, bytes] = field(default_factory=dict)
    extensions: Mapping[int, Any] = field(default_factory=dict)
    tagged: bool = True
    _encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)

    # --- decoding ---

    @classmethod
    def decode(cls, data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Envelope:
        """Parse a whole envelope *without authenticating it* (for inspection tools)."""
        outer = decode_outer(data, limits=limits)
        manifest = Manifest.decode(outer.manifest_bytes, "envelope/manifest", limits)
        severable = {k: decode_severable_member(k, v, limits) for k, v in outer.severable.items()}
        env = cls(
            outer.authentication,
            manifest,
            severable,
            outer.integrated_payloads,
            outer.extensions,
            outer.tagged,
        )
        object.__setattr__(env, "_encoded", bytes(data))
        return env

    # --- encoding ---

    def to_cbor(self) -> Any:
        out: dict[Any, Any] = {
            EnvelopeKey.AUTHENTICATION_WRAPPER: self.authentication.encoded,
            EnvelopeKey.MANIFEST: self.manifest.encoded,
        }
        for k, member in self.severable.items():
            out[k] = member.encoded
        out.update(self.extensions)
        out.update(self.integrated_payloads)
        return cbor.CBORTag(Tag.SUIT_ENVELOPE, out) if self.tagged else out

    def encode(self) -> bytes:
        """The encoded envelope: the bytes it was decoded from, if it was decoded."""
        return cbor.cached_encoding(self)

    # --- editing (each returns a new envelope) ---

    def with_authentication(self, authentication: AuthenticationWrapper) -> Envelope:
        return replace(self, authentication=authentication)

    def sever(self, keys: list[int] | None = None) -> Envelope:
        """Remove severable members from the envelope (§8.5): the manifest keeps their digests
        (it already does for any member that is present in the envelope), so the signature
        stays valid. ``keys=None`` severs every member; severing a member that the manifest
        holds in full is refused, since that would change the signed manifest."""
        targets = list(self.severable) if keys is None else keys
        kept = dict(self.severable)
        for k in targets:
            member = self.manifest.sequence(k) if k != ManifestKey.TEXT else self.manifest.text
            if k not in kept:
                if isinstance(member, Digest):
                    continue  # already severed
                name = ManifestKey.name_of(k) or str(k)
                if member is None:
                    raise ValueError(f"the manifest has no {name} member to sever")
                raise ValueError(
                    f"{name} is held in full inside the signed manifest; build the manifest "
                    "with it severable to be able to sever it"
                )
            del kept[k]
        return replace(self, severable=kept)

    def to_diag(self) -> Any:
        def name(k: int) -> cbor.Comment:
            return cbor.Comment(k, EnvelopeKey.name_of(k) or str(k))

        out: dict[Any, Any] = {
            name(EnvelopeKey.AUTHENTICATION_WRAPPER): cbor.Wrapped(self.authentication.to_diag()),
            name(EnvelopeKey.MANIFEST): cbor.Wrapped(self.manifest.to_diag()),
        }
        for k in sorted(self.severable):
            out[name(k)] = cbor.Wrapped(self.severable[k].to_diag())
        for k, v in self.extensions.items():
            out[name(k)] = v
        for key, payload in self.integrated_payloads.items():
            out[key] = payload
            if payload[:2] == b"\xd8\x6b":  # an integrated envelope (trust domains §5.3)
                with contextlib.suppress(DecodeError):
                    out[key] = cbor.Wrapped(Envelope.decode(payload).to_diag())
        return cbor.CBORTag(Tag.SUIT_ENVELOPE, out) if self.tagged else out


@dataclass(frozen=True, slots=True)
class OuterEnvelope:
    """The envelope map with nothing inside the manifest parsed yet (the first step of §6.2)."""

    authentication: AuthenticationWrapper
    manifest_bytes: bytes
    severable: Mapping[int, bytes]
    integrated_payloads: Mapping[str, bytes]
    extensions: Mapping[int, Any]
    tagged: bool


# Keys as plain ints for the hot path (IntEnum member lookups are slow in CPython 3.11).
_TAG_ENVELOPE = int(Tag.SUIT_ENVELOPE)
_KEY_AUTH = int(EnvelopeKey.AUTHENTICATION_WRAPPER)
_KEY_MANIFEST = int(EnvelopeKey.MANIFEST)
#: tag 107, a map of two entries, key 2: how an envelope without severable members begins
_TAGGED_MAP2_KEY2 = b"\xd8\x6b\xa2\x02"
_ENVELOPE_MEMBER_KEYS = frozenset(int(k) for k in (*SEVERABLE_SEQUENCES, ManifestKey.TEXT))


def decode_outer(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> OuterEnvelope:
    """Parse the envelope map and its authentication wrapper, leaving the manifest as bytes."""
    value, tagged, auth_raw, manifest_raw = envelope_map(data, limits)
    auth = AuthenticationWrapper.decode(auth_raw, _AUTH_PATH, limits)
    severable, payloads, ext = envelope_members(value)
    return OuterEnvelope(auth, manifest_raw, severable, payloads, ext, tagged)


_AUTH_PATH = "envelope/authentication-wrapper"


def envelope_map(data: bytes, limits: Limits) -> tuple[dict[Any, Any], bool, bytes, bytes]:
    """The first step of :func:`decode_outer`: the envelope map (strictly decoded), whether it
    was tagged, and the two bstrs every envelope has (authentication wrapper, manifest)."""
    n = len(data)
    if (
        type(data) is bytes
        and data[:4] == _TAGGED_MAP2_KEY2
        and limits.max_depth >= 2
        and n <= limits.max_input
    ):
        # exactly ``107({2: bstr, 3: bstr})``, the usual envelope: no need for the decoder
        start, end = cbor.bstr_span(data, 4)
        if 0 < end < n and data[end] == _KEY_MANIFEST:
            mstart, mend = cbor.bstr_span(data, end + 1)
            if mend == n:
                auth, manifest = data[start:end], data[mstart:mend]
                return {_KEY_AUTH: auth, _KEY_MANIFEST: manifest}, True, auth, manifest
    value = cbor.loads(data, what="SUIT_Envelope", path="envelope", limits=limits)
    tagged = False
    if type(value) is cbor.CBORTag:
        if value.tag != _TAG_ENVELOPE:
            raise DecodeError(
                f"expected a SUIT_Envelope (tag 107), found tag {value.tag}", path="envelope"
            )
        value = value.value
        tagged = True
    if type(value) is not dict:
        raise DecodeError("a SUIT_Envelope must be a map", path="envelope")
    auth_raw = value.get(_KEY_AUTH)
    if auth_raw is None:
        raise DecodeError("the authentication wrapper (key 2) is missing", path="envelope")
    if type(auth_raw) is not bytes:
        raise DecodeError(
            "the authentication wrapper must be a bstr-wrapped SUIT_Authentication",
            path=_AUTH_PATH,
        )
    manifest_raw = value.get(_KEY_MANIFEST)
    if manifest_raw is None:
        raise DecodeError("the manifest (key 3) is missing", path="envelope")
    if type(manifest_raw) is not bytes:
        raise DecodeError(
            "the manifest must be a bstr-wrapped SUIT_Manifest", path="envelope/manifest"
        )
    return value, tagged, auth_raw, manifest_raw


def authentication_items(
    data: bytes, path: str = _AUTH_PATH, limits: Limits = DEFAULT_LIMITS
) -> list[bytes]:
    """The decoded SUIT_Authentication array: the bstr-wrapped SUIT_Digest, then the blocks."""
    n = len(data)
    if (
        type(data) is bytes
        and n
        and 0x81 <= data[0] <= 0x97
        and limits.max_depth >= 1
        and n <= limits.max_input
    ):
        # an array of 1 to 23 byte strings and nothing else: no need for the decoder
        items: list[bytes] = []
        pos = 1
        for _ in range(data[0] - 0x80):
            start, pos = cbor.bstr_span(data, pos)
            if pos < 0:
                break
            items.append(data[start:pos])
        else:
            if pos == n:
                return items
    value = cbor.loads(data, what="SUIT_Authentication", path=path, limits=limits)
    if type(value) is not list or not value:
        raise DecodeError(
            "SUIT_Authentication must be an array starting with the SUIT_Digest", path=path
        )
    for v in value:
        if type(v) is not bytes:
            raise DecodeError(
                "every element of SUIT_Authentication must be a bstr-wrapped item", path=path
            )
    return value


def envelope_members(
    value: dict[Any, Any],
) -> tuple[dict[int, bytes], dict[str, bytes], dict[int, Any]]:
    """The envelope map's other members: severable members, integrated payloads, extensions."""
    severable: dict[int, bytes] = {}
    payloads: dict[str, bytes] = {}
    ext: dict[int, Any] = {}
    if len(value) == 2:  # only the wrapper and the manifest
        return severable, payloads, ext
    for k, v in value.items():
        if k in (_KEY_AUTH, _KEY_MANIFEST):
            continue
        if type(k) is str:
            if type(v) is not bytes:
                raise DecodeError(
                    f"integrated payload {k!r} must be a byte string", path="envelope"
                )
            payloads[k] = v
        elif type(k) is int:
            if k in _ENVELOPE_MEMBER_KEYS:
                if type(v) is not bytes:
                    raise DecodeError(
                        "a severable member in the envelope must be a byte string",
                        path=f"envelope/{ManifestKey.name_of(k)}",
                    )
                severable[k] = v
            else:
                ext[k] = v
        else:
            raise DecodeError(
                f"envelope key {k!r} is neither an integer nor a text string", path="envelope"
            )
    return severable, payloads, ext


def decode_severable_member(
    key: int, data: bytes, limits: Limits = DEFAULT_LIMITS
) -> SeverableMember:
    """Parse a severable member carried in the envelope (after its digest was checked)."""
    name = ManifestKey.name_of(key) or str(key)
    if key == ManifestKey.TEXT:
        return TextMap.decode(data, f"envelope/{name}", limits)
    return CommandSequence.decode(data, path=f"envelope/{name}", limits=limits)
