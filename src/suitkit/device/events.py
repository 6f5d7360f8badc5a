"""What the processor tells its reporting engine (manifest §8.4.10 "Reporting Policy").

For every command it executes, the processor produces one :class:`CommandEvent` per component
(the reporting engine "MUST receive one set of information elements for each Component" when the
index is true or a list): the reporting policy, the result, the parameters the command consumed
and the system values it measured. :mod:`suitkit.device.report` turns them into SUIT_Records,
the CLI prints them as a trace.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from suitkit.errors import SuitError
from suitkit.format.codepoints import ManifestKey
from suitkit.format.digest import Digest
from suitkit.format.manifest import ComponentIdentifier
from suitkit.format.parameters import parameter_name, value_to_json


class Procedure(enum.Enum):
    """The two procedures of manifest §8.4.6: Update (payload-fetch, install, validate) and
    Invocation (validate, load, invoke), each preceded by the shared sequence."""

    UPDATE = "update"
    INVOCATION = "invocation"


@dataclass(frozen=True, slots=True)
class CommandEvent:
    """One command executed on one component.

    ``ok`` is True (succeeded), False (failed; ``error`` says why; ``soft`` when soft-failure
    absorbed it) or None for a flow-control command being entered (try-each, run-sequence),
    whose outcome follows in a second event.
    """

    section: int
    offset: int
    component_index: int | None
    code: int
    name: str
    depth: int
    reporting_policy: int
    ok: bool | None
    parameters: Mapping[int, Any] = field(default_factory=dict)
    measured: Mapping[int, Any] = field(default_factory=dict)
    error: SuitError | None = None
    soft: bool = False
    note: str = ""

    @property
    def section_name(self) -> str:
        if self.section == ManifestKey.COMMON:
            return "shared-sequence"
        return ManifestKey.name_of(self.section) or str(self.section)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "section": self.section_name,
            "offset": self.offset,
            "component-index": self.component_index,
            "command": self.name,
            "result": "entered" if self.ok is None else ("ok" if self.ok else "failed"),
        }
        if self.parameters:
            out["parameters"] = {
                parameter_name(k): value_to_json(v) for k, v in self.parameters.items()
            }
        if self.measured:
            out["measured"] = {
                parameter_name(k): value_to_json(v) for k, v in self.measured.items()
            }
        if self.error is not None:
            out["error"] = self.error.describe()
        if self.soft:
            out["soft-failure"] = True
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of one procedure: every event, the error if it failed, what was invoked.

    A run whose envelope was rejected before any command ran (authentication, parsing) is a
    run too (:meth:`rejected`): it has no events, and ``manifest_digest`` is the digest the
    envelope's SUIT_Authentication claims when it could be read at all (None otherwise);
    ``reference_uri`` and ``sequence_number`` are None since an unauthenticated manifest is
    never parsed (manifest §6.2).
    """

    procedure: Procedure
    manifest_digest: Digest | None
    reference_uri: str | None
    sequence_number: int | None
    components: tuple[ComponentIdentifier, ...]
    events: tuple[CommandEvent, ...]
    error: SuitError | None = None
    invoked: tuple[ComponentIdentifier, ...] = ()

    @classmethod
    def rejected(
        cls, procedure: Procedure, error: SuitError, manifest_digest: Digest | None = None
    ) -> RunResult:
        """The result of a run that stopped before the manifest could be processed."""
        return cls(procedure, manifest_digest, None, None, (), (), error)

    @property
    def ok(self) -> bool:
        return self.error is None

    def check(self) -> RunResult:
        """Raise the error of a failed run; return self otherwise."""
        if self.error is not None:
            raise self.error
        return self

    def failing_event(self) -> CommandEvent | None:
        """The event of the command that made the run fail (the last hard failure)."""
        for ev in reversed(self.events):
            if ev.ok is False and not ev.soft:
                return ev
        return None
