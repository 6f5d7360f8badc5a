"""What a server needs to know about a manifest, found by reading its command sequences.

The server does not run a manifest; it walks the sequences the way a processor would set
parameters (manifest §8.4.10: set-component-index, override-parameters, set-parameters,
try-each, run-sequence) to learn, per component, the vendor and class identifiers it checks,
and every image it fetches: URI, image-digest and image-size at each ``directive-fetch``.
Uploaded payloads are matched against those images; campaigns only target devices whose
vendor and class identifiers the manifest accepts.

The shared sequence runs before every other sequence, so each sequence starts from the
parameters the shared sequence left. A try-each explores every branch; after it, the first
branch's parameters stand (the common case: branches that differ in their conditions).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from suitkit.format.codepoints import Command, ManifestKey, Parameter
from suitkit.format.commands import (
    CommandSequence,
    OverrideParameters,
    RunSequence,
    SetComponentIndex,
    SetParameters,
    TryEach,
)
from suitkit.format.digest import Digest
from suitkit.format.manifest import ComponentIdentifier, Manifest, component_id_text

_SECTIONS = (
    ManifestKey.PAYLOAD_FETCH,
    ManifestKey.INSTALL,
    ManifestKey.VALIDATE,
    ManifestKey.LOAD,
    ManifestKey.INVOKE,
)


@dataclass(frozen=True, slots=True)
class Image:
    """An image a manifest fetches: where from, and what it must hash to."""

    component_index: int
    uri: str
    digest: Digest | None
    size: int | None

    @property
    def file_name(self) -> str:
        """The URI's last path segment (query and fragment removed): how an uploaded payload
        is matched to the image by default."""
        path = self.uri.split("#", 1)[0].split("?", 1)[0]
        return path.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class ComponentFacts:
    index: int
    component: ComponentIdentifier
    vendor_ids: frozenset[str]
    class_ids: frozenset[str]
    device_ids: frozenset[str]

    @property
    def text(self) -> str:
        return component_id_text(self.component)


@dataclass(frozen=True, slots=True)
class ManifestFacts:
    sequence_number: int
    reference_uri: str | None
    components: tuple[ComponentFacts, ...]
    images: tuple[Image, ...]

    @property
    def vendor_ids(self) -> frozenset[str]:
        return frozenset().union(*(c.vendor_ids for c in self.components))

    @property
    def class_ids(self) -> frozenset[str]:
        return frozenset().union(*(c.class_ids for c in self.components))

    def accepts(self, vendor_id: str, class_id: str) -> bool:
        """Could a device with these identifiers pass the manifest's identity checks? A
        manifest that checks no vendor (or no class) identifier accepts any."""
        vendors, classes = self.vendor_ids, self.class_ids
        return (not vendors or vendor_id in vendors) and (not classes or class_id in classes)


State = dict[int, dict[int, Any]]
MAX_PATHS = 256  # alternatives explored through nested try-each before giving up on more


@dataclass(slots=True)
class _Path:
    """One way through the sequences: the parameters, the current components, and the slot
    each component was assumed to be in by a ``condition-component-slot`` that passed."""

    params: State
    current: list[int]
    slots: dict[int, Any]

    def copy(self) -> _Path:
        return _Path(
            {i: dict(p) for i, p in self.params.items()}, list(self.current), dict(self.slots)
        )


_CHECKS: dict[int, int] = {
    Command.VENDOR_IDENTIFIER: Parameter.VENDOR_IDENTIFIER,
    Command.CLASS_IDENTIFIER: Parameter.CLASS_IDENTIFIER,
    Command.DEVICE_IDENTIFIER: Parameter.DEVICE_IDENTIFIER,
}


class _Walker:
    """Follows every path through try-each; a path whose component-slot conditions contradict
    each other (slot 0 in the shared sequence, slot 1 in install) is dropped, as a processor
    would fail that condition."""

    def __init__(self, n_components: int) -> None:
        self.n = n_components
        self.images: list[Image] = []
        self.checked: dict[int, dict[int, set[str]]] = {i: {} for i in range(n_components)}

    def run(self, seq: CommandSequence, paths: list[_Path]) -> list[_Path]:
        for cmd in seq:
            if not paths:
                break
            if isinstance(cmd, TryEach):
                out: list[_Path] = []
                for branch in cmd.sequences:
                    out.extend(self.run(branch, [p.copy() for p in paths]))
                if cmd.nil_terminated:
                    out.extend(paths)
                paths = out[:MAX_PATHS]
            elif isinstance(cmd, RunSequence):
                paths = self.run(cmd.sequence, paths)
            else:
                paths = [p for p in paths if self._step(cmd, p)]
        return paths

    def _step(self, cmd: Any, path: _Path) -> bool:
        """Apply one command to one path; False if the path cannot continue."""
        if isinstance(cmd, SetComponentIndex):
            path.current = self._indices(cmd.index)
            return True
        if isinstance(cmd, OverrideParameters | SetParameters):
            for i in path.current:
                params = path.params.setdefault(i, {})
                for k, v in cmd.parameters.items():
                    if isinstance(cmd, OverrideParameters) or k not in params:
                        params[k] = v
            return True
        code = cmd.code
        for i in path.current:
            params = path.params.get(i, {})
            if code in _CHECKS:
                value = params.get(_CHECKS[code])
                if isinstance(value, uuid.UUID):
                    self.checked[i].setdefault(_CHECKS[code], set()).add(str(value))
            elif code == Command.COMPONENT_SLOT and Parameter.COMPONENT_SLOT in params:
                slot = params[Parameter.COMPONENT_SLOT]
                if path.slots.setdefault(i, slot) != slot:
                    return False
            elif code == Command.FETCH:
                uri = params.get(Parameter.URI)
                if isinstance(uri, str):
                    digest = params.get(Parameter.IMAGE_DIGEST)
                    size = params.get(Parameter.IMAGE_SIZE)
                    self.images.append(
                        Image(
                            i,
                            uri,
                            digest if isinstance(digest, Digest) else None,
                            size if isinstance(size, int) else None,
                        )
                    )
        return True

    def _indices(self, index: Any) -> list[int]:
        if index is True:
            return list(range(self.n))
        if isinstance(index, tuple):
            return [i for i in index if 0 <= i < self.n]
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < self.n:
            return [index]
        return []


def manifest_facts(
    manifest: Manifest, severed: Mapping[int, object] | None = None
) -> ManifestFacts:
    """``severed``: severable sequences that are not in the manifest (supplied separately and
    checked against their digests by :func:`~suitkit.format.authentication.authenticate`)."""
    components = manifest.common.components
    walker = _Walker(len(components))
    paths = [_Path({}, [0] if components else [], {})]
    if manifest.common.shared_sequence is not None:
        paths = walker.run(manifest.common.shared_sequence, paths)
    for key in _SECTIONS:
        seq: object = manifest.sequence(key)
        if not isinstance(seq, CommandSequence) and severed is not None:
            seq = severed.get(key)
        if isinstance(seq, CommandSequence):
            walker.run(seq, [p.copy() for p in paths])
    facts = []
    for i, cid in enumerate(components):
        checked = walker.checked[i]
        facts.append(
            ComponentFacts(
                i,
                cid,
                frozenset(checked.get(Parameter.VENDOR_IDENTIFIER, ())),
                frozenset(checked.get(Parameter.CLASS_IDENTIFIER, ())),
                frozenset(checked.get(Parameter.DEVICE_IDENTIFIER, ())),
            )
        )
    return ManifestFacts(
        manifest.sequence_number,
        manifest.reference_uri,
        tuple(facts),
        tuple(_unique(walker.images)),
    )


def _unique(images: Iterable[Image]) -> list[Image]:
    seen: set[tuple[int, str, bytes | None, int | None]] = set()
    out = []
    for im in images:
        key = (im.component_index, im.uri, im.digest.encoded if im.digest else None, im.size)
        if key not in seen:
            seen.add(key)
            out.append(im)
    return out


def images_by_name(facts: ManifestFacts) -> Mapping[str, list[Image]]:
    out: dict[str, list[Image]] = {}
    for im in facts.images:
        out.setdefault(im.file_name, []).append(im)
    return out
