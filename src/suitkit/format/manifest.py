"""SUIT_Manifest, SUIT_Common and SUIT_Text_Map (manifest §8.4).

Every bstr-wrapped member keeps the bytes it was decoded from, so that re-encoding a decoded
manifest gives back the same bytes and digests over its members stay valid (style: "keep the
bytes you were given").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from suitkit.errors import DecodeError, LimitExceededError
from suitkit.format import cbor
from suitkit.format.cbor import DEFAULT_LIMITS, Limits
from suitkit.format.codepoints import (
    CommonKey,
    DependencyKey,
    ManifestKey,
    TextComponentKey,
    TextKey,
)
from suitkit.format.commands import CommandSequence
from suitkit.format.digest import Digest

ComponentIdentifier = tuple[bytes, ...]
"""``SUIT_Component_Identifier = [* bstr]`` (§8.4.5.1)."""


def component_id_from_cbor(value: Any, path: str) -> ComponentIdentifier:
    if type(value) not in (list, tuple) or not all(type(p) is bytes for p in value):
        raise DecodeError("a component identifier must be an array of byte strings", path=path)
    return tuple(value)


def component_id_text(cid: ComponentIdentifier) -> str:
    """A readable form: ``[h'00']``, ``['usr', 'bin']`` for printable ASCII parts."""
    parts = []
    for p in cid:
        if p and all(0x20 < b < 0x7F for b in p) and b"'" not in p:
            parts.append(f"'{p.decode()}'")
        else:
            parts.append(f"h'{p.hex()}'")
    return "[" + ", ".join(parts) + "]"


# --- text ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextLMap:
    """One language's SUIT_Text_LMap: manifest-level texts and per-component texts (§8.4.4)."""

    texts: Mapping[int, str] = field(default_factory=dict)
    components: Mapping[ComponentIdentifier, Mapping[int, str]] = field(default_factory=dict)

    def to_cbor(self) -> dict[Any, Any]:
        out: dict[Any, Any] = dict(self.texts)
        for cid, m in self.components.items():
            out[cid] = dict(m)
        return out

    def to_diag(self) -> dict[Any, Any]:
        out: dict[Any, Any] = {
            cbor.Comment(k, TextKey.name_of(k) or str(k)): v for k, v in self.texts.items()
        }
        for cid, m in self.components.items():
            out[cid] = {
                cbor.Comment(k, TextComponentKey.name_of(k) or str(k)): v for k, v in m.items()
            }
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {TextKey.name_of(k) or str(k): v for k, v in self.texts.items()}
        for cid, m in self.components.items():
            out[component_id_text(cid)] = {
                TextComponentKey.name_of(k) or str(k): v for k, v in m.items()
            }
        return out


@dataclass(frozen=True, slots=True)
class TextMap:
    """``SUIT_Text_Map = {+ tag38-ltag => SUIT_Text_LMap}`` (§8.4.4)."""

    languages: Mapping[str, TextLMap]
    _encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def decode(cls, data: bytes, path: str = "text", limits: Limits = DEFAULT_LIMITS) -> TextMap:
        value = cbor.loads(data, what="SUIT_Text_Map", path=path, limits=limits)
        if type(value) is not dict or not value:
            raise DecodeError("SUIT_Text_Map must be a non-empty map", path=path)
        langs: dict[str, TextLMap] = {}
        for lang, lmap in value.items():
            where = f"{path}/{lang!r}"
            if type(lang) is not str:
                raise DecodeError("text map keys must be language tags (tstr)", path=where)
            if type(lmap) is not dict:
                raise DecodeError("a language's text map must be a map", path=where)
            texts: dict[int, str] = {}
            comps: dict[ComponentIdentifier, dict[int, str]] = {}
            for k, v in lmap.items():
                if type(k) is int:
                    if type(v) is not str:
                        raise DecodeError(f"text {k} must be a text string", path=where)
                    texts[k] = v
                else:
                    cid = component_id_from_cbor(k, where)
                    if type(v) is not dict or not all(
                        type(ck) is int and type(cv) is str for ck, cv in v.items()
                    ):
                        raise DecodeError(
                            "component texts must be a map of int => tstr", path=where
                        )
                    comps[cid] = v
            langs[lang] = TextLMap(texts, comps)
        t = cls(langs)
        object.__setattr__(t, "_encoded", bytes(data))
        return t

    def to_cbor(self) -> dict[str, Any]:
        return {lang: m.to_cbor() for lang, m in self.languages.items()}

    @property
    def encoded(self) -> bytes:
        return cbor.cached_encoding(self)

    def to_diag(self) -> dict[str, Any]:
        return {lang: m.to_diag() for lang, m in self.languages.items()}

    def to_json(self) -> dict[str, Any]:
        return {lang: m.to_json() for lang, m in self.languages.items()}


# --- common ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dependency:
    """A SUIT_Dependency entry of suit-dependencies (trust domains §5.2.1)."""

    prefix: ComponentIdentifier | None = None
    extensions: Mapping[int, Any] = field(default_factory=dict)

    def to_cbor(self) -> dict[int, Any]:
        out: dict[int, Any] = {}
        if self.prefix is not None:
            out[DependencyKey.DEPENDENCY_PREFIX] = list(self.prefix)
        out.update(self.extensions)
        return out


@dataclass(frozen=True, slots=True)
class Common:
    """``SUIT_Common`` (§8.4.5): components, the shared sequence, and (trust domains)
    dependencies."""

    components: tuple[ComponentIdentifier, ...] = ()
    shared_sequence: CommandSequence | None = None
    dependencies: Mapping[int, Dependency] = field(default_factory=dict)
    extensions: Mapping[int, Any] = field(default_factory=dict)
    _encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def decode(cls, data: bytes, path: str = "common", limits: Limits = DEFAULT_LIMITS) -> Common:
        value = cbor.loads(data, what="SUIT_Common", path=path, limits=limits)
        if type(value) is not dict:
            raise DecodeError("SUIT_Common must be a map", path=path)
        components: tuple[ComponentIdentifier, ...] = ()
        shared = None
        deps: dict[int, Dependency] = {}
        ext: dict[int, Any] = {}
        for k, v in value.items():
            if k == CommonKey.COMPONENTS:
                where = f"{path}/components"
                if type(v) is not list or not v:
                    raise DecodeError("suit-components must be a non-empty array", path=where)
                if len(v) > limits.max_components:
                    raise LimitExceededError(
                        f"{len(v)} components, more than the limit of {limits.max_components}",
                        path=where,
                    )
                components = tuple(
                    component_id_from_cbor(c, f"{where}[{i}]") for i, c in enumerate(v)
                )
            elif k == CommonKey.SHARED_SEQUENCE:
                if type(v) is not bytes:
                    raise DecodeError(
                        "suit-shared-sequence must be a bstr-wrapped command sequence",
                        path=f"{path}/shared-sequence",
                    )
                shared = CommandSequence.decode(
                    v, path=f"{path}/shared-sequence", shared=True, limits=limits
                )
            elif k == CommonKey.DEPENDENCIES:
                deps = _dependencies(v, f"{path}/dependencies")
            elif type(k) is int:
                ext[k] = v
            else:
                raise DecodeError(f"SUIT_Common key {k!r} is not an integer", path=path)
        c = cls(components, shared, deps, ext)
        object.__setattr__(c, "_encoded", bytes(data))
        return c

    def to_cbor(self) -> dict[int, Any]:
        out: dict[int, Any] = {}
        if self.dependencies:
            out[CommonKey.DEPENDENCIES] = {i: d.to_cbor() for i, d in self.dependencies.items()}
        if self.components:
            out[CommonKey.COMPONENTS] = [list(c) for c in self.components]
        if self.shared_sequence is not None:
            out[CommonKey.SHARED_SEQUENCE] = self.shared_sequence.encoded
        out.update(self.extensions)
        return out

    @property
    def encoded(self) -> bytes:
        return cbor.cached_encoding(self)

    def to_diag(self) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        if self.dependencies:
            out[cbor.Comment(CommonKey.DEPENDENCIES.value, "dependencies")] = {
                i: d.to_cbor() for i, d in self.dependencies.items()
            }
        if self.components:
            out[cbor.Comment(CommonKey.COMPONENTS.value, "components")] = [
                list(c) for c in self.components
            ]
        if self.shared_sequence is not None:
            out[cbor.Comment(CommonKey.SHARED_SEQUENCE.value, "shared-sequence")] = cbor.Wrapped(
                self.shared_sequence.to_diag()
            )
        out.update(self.extensions)
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"components": [component_id_text(c) for c in self.components]}
        if self.dependencies:
            out["dependencies"] = {
                str(i): component_id_text(d.prefix) if d.prefix else None
                for i, d in self.dependencies.items()
            }
        if self.shared_sequence is not None:
            out["shared-sequence"] = self.shared_sequence.to_json()
        return out


def _dependencies(value: Any, path: str) -> dict[int, Dependency]:
    if type(value) is not dict:
        raise DecodeError("suit-dependencies must be a map of component index => map", path=path)
    out: dict[int, Dependency] = {}
    for idx, d in value.items():
        if type(idx) is not int or idx < 0 or type(d) is not dict:
            raise DecodeError("suit-dependencies must map uint => SUIT_Dependency", path=path)
        prefix = None
        ext = {}
        for k, v in d.items():
            if k == DependencyKey.DEPENDENCY_PREFIX:
                prefix = component_id_from_cbor(v, f"{path}/{idx}/prefix")
            else:
                ext[k] = v
        out[idx] = Dependency(prefix, ext)
    return out


# --- manifest --------------------------------------------------------------------------------

Severable = CommandSequence | Digest
"""A severable member in the manifest: the member itself, or the digest of its severed form."""

#: Manifest members that hold a bstr-wrapped command sequence and may be severed (§8.4.6;
#: trust domains adds dependency-resolution and candidate-verification).
SEVERABLE_SEQUENCES = (
    ManifestKey.PAYLOAD_FETCH,
    ManifestKey.INSTALL,
    ManifestKey.DEPENDENCY_RESOLUTION,
    ManifestKey.CANDIDATE_VERIFICATION,
)
#: Manifest members that hold a bstr-wrapped command sequence and are never severed.
UNSEVERABLE_SEQUENCES = (
    ManifestKey.VALIDATE,
    ManifestKey.LOAD,
    ManifestKey.INVOKE,
    ManifestKey.UNINSTALL,
)

# Manifest keys as plain ints for the decoder's hot path.
_K_VERSION = int(ManifestKey.MANIFEST_VERSION)
_K_SEQUENCE = int(ManifestKey.MANIFEST_SEQUENCE_NUMBER)
_K_COMMON = int(ManifestKey.COMMON)
_K_TEXT = int(ManifestKey.TEXT)
_K_REFERENCE_URI = int(ManifestKey.REFERENCE_URI)
_K_COMPONENT_ID = int(ManifestKey.MANIFEST_COMPONENT_ID)
_SEVERABLE_CODES = frozenset(int(k) for k in SEVERABLE_SEQUENCES)

_SEQUENCE_ATTRS: dict[int, str] = {
    ManifestKey.VALIDATE: "validate",
    ManifestKey.LOAD: "load",
    ManifestKey.INVOKE: "invoke",
    ManifestKey.UNINSTALL: "uninstall",
    ManifestKey.PAYLOAD_FETCH: "payload_fetch",
    ManifestKey.INSTALL: "install",
    ManifestKey.DEPENDENCY_RESOLUTION: "dependency_resolution",
    ManifestKey.CANDIDATE_VERIFICATION: "candidate_verification",
}


@dataclass(frozen=True, slots=True)
class Manifest:
    """``SUIT_Manifest`` (§8.4).

    Severable members (``payload_fetch``, ``install``, ``text``, and trust domains'
    ``dependency_resolution`` and ``candidate_verification``) hold either the member or, when it
    has been severed, the :class:`Digest` of the member's bstr in the envelope.
    """

    sequence_number: int
    common: Common
    version: int = 1
    reference_uri: str | None = None
    manifest_component_id: ComponentIdentifier | None = None
    validate: CommandSequence | None = None
    load: CommandSequence | None = None
    invoke: CommandSequence | None = None
    uninstall: CommandSequence | None = None
    payload_fetch: Severable | None = None
    install: Severable | None = None
    dependency_resolution: Severable | None = None
    candidate_verification: Severable | None = None
    text: TextMap | Digest | None = None
    extensions: Mapping[int, Any] = field(default_factory=dict)
    _encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def decode(
        cls, data: bytes, path: str = "manifest", limits: Limits = DEFAULT_LIMITS
    ) -> Manifest:
        """Decode the bstr-wrapped manifest from its content bytes."""
        value = cbor.loads(data, what="SUIT_Manifest", path=path, limits=limits)
        m = cls.from_cbor(value, path, limits)
        object.__setattr__(m, "_encoded", bytes(data))
        return m

    @classmethod
    def from_cbor(
        cls, value: Any, path: str = "manifest", limits: Limits = DEFAULT_LIMITS
    ) -> Manifest:
        if type(value) is not dict:
            raise DecodeError("SUIT_Manifest must be a map", path=path)
        version = value.get(_K_VERSION)
        if version is None:
            raise DecodeError("suit-manifest-version is missing", path=path)
        if type(version) is not int:
            raise DecodeError("suit-manifest-version must be an integer", path=path)
        seq = value.get(_K_SEQUENCE)
        if seq is None:
            raise DecodeError("suit-manifest-sequence-number is missing", path=path)
        if type(seq) is not int or seq < 0:
            raise DecodeError("suit-manifest-sequence-number must be a uint", path=path)
        common_raw = value.get(_K_COMMON)
        if common_raw is None:
            raise DecodeError("suit-common is missing", path=path)
        if type(common_raw) is not bytes:
            raise DecodeError("suit-common must be a bstr-wrapped SUIT_Common", path=path)
        kwargs: dict[str, Any] = {
            "version": version,
            "sequence_number": seq,
            "common": Common.decode(common_raw, f"{path}/common", limits),
        }
        ext: dict[int, Any] = {}
        for k, v in value.items():
            if k in (
                _K_VERSION,
                _K_SEQUENCE,
                _K_COMMON,
            ):
                continue
            attr = _SEQUENCE_ATTRS.get(k)
            if attr is not None:
                where = f"{path}/{attr.replace('_', '-')}"
                if type(v) is bytes:
                    kwargs[attr] = CommandSequence.decode(v, path=where, limits=limits)
                elif k in _SEVERABLE_CODES and type(v) is list:
                    kwargs[attr] = Digest.from_cbor(v, where)
                else:
                    raise DecodeError(
                        "expected a bstr-wrapped command sequence"
                        + (
                            " or the SUIT_Digest of its severed form"
                            if k in _SEVERABLE_CODES
                            else ""
                        ),
                        path=where,
                    )
            elif k == _K_TEXT:
                if type(v) is bytes:
                    kwargs["text"] = TextMap.decode(v, f"{path}/text", limits)
                elif type(v) is list:
                    kwargs["text"] = Digest.from_cbor(v, f"{path}/text")
                else:
                    raise DecodeError(
                        "suit-text must be a bstr-wrapped SUIT_Text_Map or a SUIT_Digest",
                        path=f"{path}/text",
                    )
            elif k == _K_REFERENCE_URI:
                if type(v) is not str:
                    raise DecodeError("suit-reference-uri must be a text string", path=path)
                kwargs["reference_uri"] = v
            elif k == _K_COMPONENT_ID:
                kwargs["manifest_component_id"] = component_id_from_cbor(
                    v, f"{path}/manifest-component-id"
                )
            elif type(k) is int:
                ext[k] = v
            else:
                raise DecodeError(f"SUIT_Manifest key {k!r} is not an integer", path=path)
        kwargs["extensions"] = ext
        return cls(**kwargs)

    # --- encoding ---

    def to_cbor(self) -> dict[int, Any]:
        out: dict[int, Any] = {
            ManifestKey.MANIFEST_VERSION: self.version,
            ManifestKey.MANIFEST_SEQUENCE_NUMBER: self.sequence_number,
            ManifestKey.COMMON: self.common.encoded,
        }
        if self.reference_uri is not None:
            out[ManifestKey.REFERENCE_URI] = self.reference_uri
        if self.manifest_component_id is not None:
            out[ManifestKey.MANIFEST_COMPONENT_ID] = list(self.manifest_component_id)
        for key, attr in _SEQUENCE_ATTRS.items():
            member = getattr(self, attr)
            if member is None:
                continue
            out[key] = member.to_cbor() if isinstance(member, Digest) else member.encoded
        if self.text is not None:
            out[ManifestKey.TEXT] = (
                self.text.to_cbor() if isinstance(self.text, Digest) else self.text.encoded
            )
        out.update(self.extensions)
        return out

    @property
    def encoded(self) -> bytes:
        """The encoded SUIT_Manifest (the bstr content at envelope key 3)."""
        return cbor.cached_encoding(self)

    def sequence(self, key: int) -> Severable | None:
        """The member at manifest key ``key`` (a command sequence, or a severed digest)."""
        attr = _SEQUENCE_ATTRS.get(key)
        return getattr(self, attr) if attr is not None else None

    def severed(self) -> list[int]:
        """The keys of the members that are present only as a digest."""
        keys = [k for k in SEVERABLE_SEQUENCES if isinstance(self.sequence(k), Digest)]
        if isinstance(self.text, Digest):
            keys.append(ManifestKey.TEXT)
        return sorted(keys)

    def to_diag(self) -> dict[Any, Any]:
        def name(k: int) -> cbor.Comment:
            return cbor.Comment(k, ManifestKey.name_of(k) or str(k))

        out: dict[Any, Any] = {
            name(ManifestKey.MANIFEST_VERSION): self.version,
            name(ManifestKey.MANIFEST_SEQUENCE_NUMBER): self.sequence_number,
            name(ManifestKey.COMMON): cbor.Wrapped(self.common.to_diag()),
        }
        if self.reference_uri is not None:
            out[name(ManifestKey.REFERENCE_URI)] = self.reference_uri
        if self.manifest_component_id is not None:
            out[name(ManifestKey.MANIFEST_COMPONENT_ID)] = list(self.manifest_component_id)
        for key, attr in sorted(_SEQUENCE_ATTRS.items()):
            member = getattr(self, attr)
            if member is None:
                continue
            out[name(key)] = (
                member.to_diag() if isinstance(member, Digest) else cbor.Wrapped(member.to_diag())
            )
        if self.text is not None:
            out[name(ManifestKey.TEXT)] = (
                self.text.to_diag()
                if isinstance(self.text, Digest)
                else cbor.Wrapped(self.text.to_diag())
            )
        out.update(self.extensions)
        return _sort_diag(out)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manifest-version": self.version,
            "manifest-sequence-number": self.sequence_number,
        }
        if self.reference_uri is not None:
            out["reference-uri"] = self.reference_uri
        if self.manifest_component_id is not None:
            out["manifest-component-id"] = component_id_text(self.manifest_component_id)
        out["common"] = self.common.to_json()
        for _key, attr in sorted(_SEQUENCE_ATTRS.items()):
            member = getattr(self, attr)
            if member is None:
                continue
            label = attr.replace("_", "-")
            if isinstance(member, Digest):
                out[label] = {"severed": member.to_json()}
            else:
                out[label] = member.to_json()
        if isinstance(self.text, Digest):
            out["text"] = {"severed": self.text.to_json()}
        elif self.text is not None:
            out["text"] = self.text.to_json()
        if self.extensions:
            out["extensions"] = {str(k): repr(v) for k, v in self.extensions.items()}
        return out


def _sort_diag(d: dict[Any, Any]) -> dict[Any, Any]:
    """Order a diag map like its encoding: by the (bare) key's deterministic order."""

    def bare(k: Any) -> Any:
        while isinstance(k, cbor.Comment):
            k = k.value
        return int(k) if isinstance(k, int) else k

    return {k: d[k] for k in sorted(d, key=lambda k: cbor.key_order(bare(k)))}
