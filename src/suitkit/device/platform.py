"""What a manifest processor needs from the device it runs on (manifest §6, style anchor 6).

The processor (:mod:`suitkit.device.processor`) is pure logic: every action that touches storage,
the network, the clock or persistent state goes through the :class:`Platform` protocol below, with
one method per action. Security checks stay in the processor: it hashes what :meth:`read` returns
for image-match, it counts the bytes it writes, it checks identities, sequence numbers and sizes.

Two implementations ship with suitkit:

- :class:`suitkit.device.memory.MemoryPlatform`, in memory, for tests;
- :class:`suitkit.device.simulated.SimulatedDevice`, a directory with flash files, state and a
  fault injector, used by the ``suitkit device`` commands.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from suitkit.device.events import CommandEvent, Procedure
from suitkit.format.manifest import ComponentIdentifier
from suitkit.format.parameters import CborPen

if TYPE_CHECKING:
    from suitkit.cose.keys import CoseKey

__all__ = [
    "Clock",
    "ComponentStorage",
    "ComponentWriter",
    "CustomCommands",
    "DecryptionKeys",
    "DeviceIdentity",
    "Fetcher",
    "Invoker",
    "PersistentState",
    "Platform",
    "Reporter",
]


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """The identifiers a device (or one of its components) asserts (manifest §8.4.8.1-3)."""

    vendor_id: uuid.UUID | CborPen
    class_id: uuid.UUID
    device_id: uuid.UUID | None = None


@runtime_checkable
class ComponentWriter(Protocol):
    """A streamed write into one component: chunks in order, then ``commit`` or ``abort``.

    The component was erased when the writer was opened. ``commit`` records the number of bytes
    written as the component's content length; ``abort`` leaves the component erased.
    """

    def write(self, chunk: bytes | memoryview) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class ComponentStorage(Protocol):
    """The components of the device: their slots, sizes and contents."""

    def components(self) -> Sequence[ComponentIdentifier]:
        """Every component the device has."""
        ...

    def capacity(self, component: ComponentIdentifier) -> int:
        """How many bytes the component can hold (its current slot)."""
        ...

    def slot(self, component: ComponentIdentifier) -> int | None:
        """The slot index the component designates now (manifest §8.4.9.4), None if it has none."""
        ...

    def size(self, component: ComponentIdentifier) -> int | None:
        """The length of the content the component holds, None when it is erased/empty."""
        ...

    def read(self, component: ComponentIdentifier, chunk_size: int) -> Iterator[bytes]:
        """The component's content, in chunks of at most ``chunk_size`` bytes."""
        ...

    def open_write(self, component: ComponentIdentifier, size_hint: int | None) -> ComponentWriter:
        """Erase the component and return a writer for its new content."""
        ...

    def erase(self, component: ComponentIdentifier) -> None:
        """Erase the component (its content becomes empty)."""
        ...

    def swap(self, a: ComponentIdentifier, b: ComponentIdentifier) -> None:
        """Exchange the contents of two components (manifest §8.4.10.9)."""
        ...


class Fetcher(Protocol):
    """A payload as an iterator of byte chunks (see :class:`~suitkit.device.fetch.FetcherBase`).

    ``limit`` is the most bytes the processor accepts (image-size, or the component's size): a
    fetcher that knows the payload's length before its first byte (a Content-Length, a file
    size) refuses a longer one at once, so the component is not even erased. The processor
    counts the bytes itself as well and refuses the first byte past the limit.
    """

    def fetch(
        self, uri: str, arguments: bytes | None = None, *, limit: int | None = None
    ) -> Iterator[bytes]: ...


class Invoker(Protocol):
    """Transfers execution to a component (manifest §8.4.10.7)."""

    def invoke(self, component: ComponentIdentifier, arguments: bytes | None) -> None: ...


class Clock(Protocol):
    """The current UTC time, seconds since the epoch (the processor never reads the clock)."""

    def now(self) -> float: ...


class PersistentState(Protocol):
    """State that survives a reboot: sequence numbers per manifest, installed manifests, and the
    journal that makes an interrupted update resumable (manifest §6.3)."""

    def begin_section(self, procedure: Procedure, section: int) -> None:
        """Called before each command sequence of a procedure runs (a journal point)."""
        ...

    def sequence_number(self, manifest_key: str) -> int | None:
        """The sequence number of the last manifest installed under ``manifest_key``."""
        ...

    def record_update(self, manifest_key: str, sequence_number: int, envelope: bytes) -> None:
        """Called once the Update procedure of a manifest completed: store its sequence number
        and the envelope (atomically)."""
        ...


class CustomCommands(Protocol):
    """Custom (negative) commands (manifest §8.4.11) are the platform's business."""

    def custom_commands(self) -> frozenset[int]:
        """The custom command codes this platform implements."""
        ...

    def custom_command(
        self,
        code: int,
        argument: bytes | str | int | None,
        component: ComponentIdentifier,
        parameters: Mapping[int, Any],
    ) -> None:
        """Run a custom command; a failing custom condition raises ConditionFailedError,
        a failing custom directive OperationFailedError."""
        ...


class DecryptionKeys(Protocol):
    """The device's keys for encrypted payloads (draft-ietf-suit-firmware-encryption §4)."""

    def decryption_keys(self) -> Sequence[CoseKey]:
        """AES key-encryption keys (AES-KW) and private EC2/OKP keys (ECDH-ES), each with the
        kid a COSE_recipient names it by (a key without a kid is tried for any recipient)."""
        ...


class Platform(
    ComponentStorage,
    Fetcher,
    Invoker,
    Clock,
    PersistentState,
    CustomCommands,
    DecryptionKeys,
    Protocol,
):
    """Everything the processor uses, one method per action."""

    def identity(self, component: ComponentIdentifier) -> DeviceIdentity:
        """The identity asserted for ``component`` (vendor, class, device identifiers)."""
        ...


class Reporter(Protocol):
    """The reporting engine: receives every :class:`CommandEvent` as it happens."""

    def record(self, event: CommandEvent) -> None: ...
