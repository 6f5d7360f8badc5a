"""The errors suitkit raises for untrusted input.

Every error that bad input can cause is a :class:`SuitError`. It carries the SUIT_Report reason
(draft-ietf-suit-report §4.2) that a processor would report for it, and, where known, where it
happened: a path into the document (``envelope/manifest/common/shared-sequence[3]``), the manifest
section, the offset of the command in that section, and the component index.

Programming mistakes (wrong argument types passed by a caller) stay ``TypeError``/``ValueError``.
"""

from __future__ import annotations

from typing import Any

from suitkit.format.codepoints import ReportReason


class SuitError(Exception):
    """Base of every error caused by untrusted input (a manifest, a payload, a key file...)."""

    #: The SUIT_Report reason code this error maps to.
    reason: ReportReason = ReportReason.OPERATION_FAILED

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        section: int | None = None,
        offset: int | None = None,
        component_index: int | None = None,
        reason: ReportReason | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.section = section
        self.offset = offset
        self.component_index = component_index
        if reason is not None:
            self.reason = reason

    def at(self, path: str) -> SuitError:
        """Prefix ``path`` to this error's location (used while unwinding nested decoders)."""
        self.path = f"{path}/{self.path}" if self.path else path
        return self

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(f"at {self.path}")
        if self.section is not None:
            where.append(f"section {_section_name(self.section)}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.component_index is not None:
            where.append(f"component {self.component_index}")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"{self.message}{suffix} [{self.reason.spec_name}]"

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description of this error (for CLI ``--json`` output and reports)."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "reason": self.reason.spec_name,
            "reason_code": int(self.reason),
            "path": self.path,
            "section": self.section,
            "offset": self.offset,
            "component_index": self.component_index,
        }


def _section_name(section: int) -> str:
    from suitkit.format.codepoints import ManifestKey

    name = ManifestKey.name_of(section)
    return name if name is not None else str(section)


class DecodeError(SuitError):
    """Malformed CBOR, or CBOR that does not have the structure the spec's CDDL requires."""

    reason = ReportReason.CBOR_PARSE


class LimitExceededError(DecodeError):
    """Input larger or deeper than the configured :class:`suitkit.format.limits.Limits`."""


class CoseUnsupportedError(SuitError):
    """A COSE structure or header suitkit does not support (report reason cose-unsupported)."""

    reason = ReportReason.COSE_UNSUPPORTED


class AlgorithmUnsupportedError(SuitError):
    """An algorithm suitkit or this device does not support (report reason alg-unsupported)."""

    reason = ReportReason.ALG_UNSUPPORTED


class AuthenticationError(SuitError):
    """A signature, MAC or digest did not verify (report reason unauthorised)."""

    reason = ReportReason.UNAUTHORISED


class KeyFormatError(SuitError):
    """A key file that cannot be loaded, or a key that does not fit the algorithm asked for."""

    reason = ReportReason.OPERATION_FAILED


class CommandUnsupportedError(SuitError):
    """A command this processor does not implement (report reason command-unsupported)."""

    reason = ReportReason.COMMAND_UNSUPPORTED


class ComponentUnsupportedError(SuitError):
    """A component this device does not have (report reason component-unsupported)."""

    reason = ReportReason.COMPONENT_UNSUPPORTED


class ComponentUnauthorisedError(SuitError):
    """A component the signer may not touch (report reason component-unauthorised)."""

    reason = ReportReason.COMPONENT_UNAUTHORISED


class ParameterUnsupportedError(SuitError):
    """A parameter this processor does not implement (report reason parameter-unsupported)."""

    reason = ReportReason.PARAMETER_UNSUPPORTED


class SeveringUnsupportedError(SuitError):
    """A severed member that is needed but missing or does not match its digest."""

    reason = ReportReason.SEVERING_UNSUPPORTED


class ConditionFailedError(SuitError):
    """A condition failed (report reason condition-failed)."""

    reason = ReportReason.CONDITION_FAILED


class RollbackError(ConditionFailedError):
    """The manifest's sequence number is lower than the one installed (manifest §8.4.2)."""


class OperationFailedError(SuitError):
    """A directive failed: a fetch, write, copy, swap or invoke (report reason operation-failed)."""

    reason = ReportReason.OPERATION_FAILED
