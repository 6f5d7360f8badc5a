"""An in-memory :class:`~suitkit.device.platform.Platform` for tests and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from suitkit.device.events import Procedure
from suitkit.device.fetch import FetcherBase, MemoryFetcher
from suitkit.device.platform import DeviceIdentity, Platform
from suitkit.errors import OperationFailedError
from suitkit.format.manifest import ComponentIdentifier

if TYPE_CHECKING:
    from suitkit.cose.keys import CoseKey


@dataclass
class MemoryComponent:
    """One component: its capacity, the slot it designates, its content (None when erased)."""

    capacity: int
    slot: int | None = None
    content: bytearray | None = None
    identity: DeviceIdentity | None = None


class _Writer:
    __slots__ = ("_buf", "_comp", "_done", "_platform")

    def __init__(self, platform: MemoryPlatform, comp: MemoryComponent) -> None:
        self._platform = platform
        self._comp = comp
        self._buf = bytearray()
        self._done = False

    def write(self, chunk: bytes | memoryview) -> None:
        if self._done:
            raise ValueError("writer already closed")
        if len(self._buf) + len(chunk) > self._comp.capacity:
            raise OperationFailedError("write past the end of the component")
        self._buf += chunk
        self._platform.writes += 1
        self._platform.bytes_written += len(chunk)

    def commit(self) -> None:
        self._done = True
        self._comp.content = self._buf

    def abort(self) -> None:
        self._done = True
        self._comp.content = None


@dataclass
class MemoryPlatform:
    """Components in memory, an in-memory fetcher, recorded invocations, a fixed clock."""

    identity_: DeviceIdentity
    components_: dict[ComponentIdentifier, MemoryComponent]
    fetcher: FetcherBase = field(default_factory=MemoryFetcher)
    clock: float = field(default_factory=time.time)
    sequence_numbers: dict[str, int] = field(default_factory=dict)
    installed: dict[str, bytes] = field(default_factory=dict)
    invocations: list[tuple[ComponentIdentifier, bytes | None]] = field(default_factory=list)
    custom: dict[int, Callable[[Any, ComponentIdentifier, Mapping[int, Any]], None]] = field(
        default_factory=dict
    )
    sections: list[tuple[Procedure, int]] = field(default_factory=list)
    writes: int = 0
    bytes_written: int = 0
    #: AES key-encryption keys and private ECDH keys for encrypted payloads
    keys: Sequence[CoseKey] = ()

    @classmethod
    def create(
        cls,
        identity: DeviceIdentity,
        components: Mapping[ComponentIdentifier, int | MemoryComponent],
        payloads: Mapping[str, bytes] | None = None,
        keys: Sequence[CoseKey] = (),
    ) -> MemoryPlatform:
        comps = {
            cid: c if isinstance(c, MemoryComponent) else MemoryComponent(c)
            for cid, c in components.items()
        }
        return cls(identity, comps, MemoryFetcher(payloads or {}), keys=tuple(keys))

    def _get(self, cid: ComponentIdentifier) -> MemoryComponent:
        try:
            return self.components_[cid]
        except KeyError:
            raise OperationFailedError(f"no component {cid!r}") from None

    # identity, clock
    def identity(self, component: ComponentIdentifier) -> DeviceIdentity:
        return self._get(component).identity or self.identity_

    def now(self) -> float:
        return self.clock

    # storage
    def components(self) -> Sequence[ComponentIdentifier]:
        return list(self.components_)

    def capacity(self, component: ComponentIdentifier) -> int:
        return self._get(component).capacity

    def slot(self, component: ComponentIdentifier) -> int | None:
        return self._get(component).slot

    def size(self, component: ComponentIdentifier) -> int | None:
        c = self._get(component).content
        return None if c is None else len(c)

    def read(self, component: ComponentIdentifier, chunk_size: int) -> Iterator[bytes]:
        c = self._get(component).content
        if c is None:
            return iter(())
        view = memoryview(c)
        return (bytes(view[i : i + chunk_size]) for i in range(0, len(view), chunk_size))

    def open_write(self, component: ComponentIdentifier, size_hint: int | None) -> _Writer:
        comp = self._get(component)
        comp.content = None  # erased
        return _Writer(self, comp)

    def erase(self, component: ComponentIdentifier) -> None:
        self._get(component).content = None

    def swap(self, a: ComponentIdentifier, b: ComponentIdentifier) -> None:
        ca, cb = self._get(a), self._get(b)
        ca.content, cb.content = cb.content, ca.content

    # fetch, invoke
    def fetch(
        self, uri: str, arguments: bytes | None = None, *, limit: int | None = None
    ) -> Iterator[bytes]:
        return self.fetcher.fetch(uri, arguments, limit=limit)

    def invoke(self, component: ComponentIdentifier, arguments: bytes | None) -> None:
        self.invocations.append((component, arguments))

    # persistent state
    def begin_section(self, procedure: Procedure, section: int) -> None:
        self.sections.append((procedure, section))

    def sequence_number(self, manifest_key: str) -> int | None:
        return self.sequence_numbers.get(manifest_key)

    def record_update(self, manifest_key: str, sequence_number: int, envelope: bytes) -> None:
        self.sequence_numbers[manifest_key] = sequence_number
        self.installed[manifest_key] = envelope

    # keys
    def decryption_keys(self) -> Sequence[CoseKey]:
        return self.keys

    # custom commands
    def custom_commands(self) -> frozenset[int]:
        return frozenset(self.custom)

    def custom_command(
        self,
        code: int,
        argument: bytes | str | int | None,
        component: ComponentIdentifier,
        parameters: Mapping[int, Any],
    ) -> None:
        self.custom[code](argument, component, parameters)


if TYPE_CHECKING:  # mypy checks here that MemoryPlatform implements every Platform method

    def _is_a_platform(p: MemoryPlatform) -> Platform:
        return p
