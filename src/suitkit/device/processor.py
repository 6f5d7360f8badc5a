"""The manifest processor (draft-ietf-suit-manifest-37 §6 "Manifest Processor Behavior").

Pure logic over a :class:`~suitkit.device.platform.Platform`: it opens no file and no socket and
reads no clock. It takes an *authenticated* envelope (:meth:`Processor.update`,
:meth:`Processor.invoke`, :meth:`Processor.run`); the entry points for bytes,
:meth:`Processor.run_bytes` and :meth:`Processor.update_bytes`, authenticate first (§6.2: "verify
the signature of the manifest prior to parsing/executing any section"). ``run_bytes`` turns an
envelope that does not authenticate (or parse) into a rejected run with its report reason, so
that every run, this one included, can be reported (draft-ietf-suit-report §4).

Before any command runs (§6.1, §6.2): the manifest version must be 1; the sequence number must
not be lower than the one stored for that manifest (equal is allowed: a repeated update); the
manifest may not list more components than the device has, nor a component the device does not
have; each command sequence of a multi-component manifest begins with set-component-index; every
needed severed member is present and matches its digest; and every command, parameter and
image-digest algorithm in the sequences to run is one this processor implements (so an unsupported
element is refused, with the report reason of draft-ietf-suit-report §4.2, before anything is
written).

Then the abstract machine of §6.4-§6.7 runs: per-component parameters; component index integer,
list or true (§6.5); soft-failure scoped to its command sequence (§8.4.8.14); strict-order with
the Parallel Processing Interpreter's checks (§6.7), although commands run sequentially.

Payloads stream: fetch, copy and write move chunks from their source into a
:class:`~suitkit.device.platform.ComponentWriter` (through a digest when the directive's
reporting policy asks for system information on success, the only place that measurement goes),
and refuse a payload larger than image-size or than the component at the first byte past the
end; image-match reads the component back in chunks and the processor hashes it (the platform is
never asked to compare digests).

Encrypted payloads (draft-ietf-suit-firmware-encryption-24 §3-5): encryption-info (19) is
checked before anything runs (a content or key distribution algorithm suitkit lacks is
alg-unsupported); copy and write into a component whose encryption-info is set stream through
:func:`suitkit.encryption.decrypt.decrypt_chunks` with the platform's keys. The content key is
unwrapped before the target is opened for writing (a missing key, operation-failed, or a key that
does not unwrap it, unauthorised, leaves the target as it was), and the writer is committed only
once the whole ciphertext was decrypted, so an AEAD tag that does not verify (unauthorised) aborts
the write: unauthenticated plaintext never becomes the component's content. Image-size bounds the
plaintext. Fetch never decrypts.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from suitkit.device.events import CommandEvent, Procedure, RunResult
from suitkit.device.layout import command_offsets, nested_offsets
from suitkit.device.platform import Platform, Reporter
from suitkit.errors import (
    AlgorithmUnsupportedError,
    CommandUnsupportedError,
    ComponentUnsupportedError,
    ConditionFailedError,
    OperationFailedError,
    ParameterUnsupportedError,
    RollbackError,
    SeveringUnsupportedError,
    SuitError,
)
from suitkit.format import cbor
from suitkit.format.codepoints import (
    Command,
    CoseAlgorithm,
    ManifestKey,
    Parameter,
    ReportingPolicy,
    ReportReason,
)
from suitkit.format.commands import (
    CommandSequence,
    CustomCommand,
    IndexArg,
    OverrideParameters,
    PolicyCommand,
    RunSequence,
    SetComponentIndex,
    SetParameters,
    SuitCommand,
    TryEach,
    UnknownCommand,
    command_name,
)
from suitkit.format.digest import Digest, Hasher
from suitkit.format.envelope import Envelope, SeverableMember
from suitkit.format.manifest import (
    SEVERABLE_SEQUENCES,
    ComponentIdentifier,
    Manifest,
    component_id_text,
)
from suitkit.format.parameters import EncryptionInfo

if TYPE_CHECKING:
    from suitkit.cose.keys import CoseKey
    from suitkit.format.authentication import AuthenticatedEnvelope

__all__ = [
    "IMPLEMENTED_COMMANDS",
    "SUPPORTED_PARAMETERS",
    "ManifestRejectedError",
    "Processor",
    "ProcessorLimits",
    "authenticated_envelope",
    "check_profiles",
    "claimed_digest",
    "manifest_key",
]

#: The commands this processor executes (manifest §8.4.9, §8.4.10; set-parameters from trust
#: domains §6.4). Anything else, and any negative code the platform does not implement, is
#: command-unsupported.
IMPLEMENTED_COMMANDS = frozenset(
    {
        Command.VENDOR_IDENTIFIER,
        Command.CLASS_IDENTIFIER,
        Command.DEVICE_IDENTIFIER,
        Command.IMAGE_MATCH,
        Command.COMPONENT_SLOT,
        Command.CHECK_CONTENT,
        Command.ABORT,
        Command.SET_COMPONENT_INDEX,
        Command.TRY_EACH,
        Command.OVERRIDE_PARAMETERS,
        Command.SET_PARAMETERS,
        Command.FETCH,
        Command.COPY,
        Command.WRITE,
        Command.INVOKE,
        Command.SWAP,
        Command.RUN_SEQUENCE,
    }
)

#: The parameters this processor understands (manifest §8.4.8); negative (custom) parameters are
#: kept as hints (§8.4.8.15). Anything else is parameter-unsupported.
SUPPORTED_PARAMETERS = frozenset(
    {
        Parameter.VENDOR_IDENTIFIER,
        Parameter.CLASS_IDENTIFIER,
        Parameter.DEVICE_IDENTIFIER,
        Parameter.IMAGE_DIGEST,
        Parameter.IMAGE_SIZE,
        Parameter.COMPONENT_SLOT,
        Parameter.CONTENT,
        Parameter.URI,
        Parameter.SOURCE_COMPONENT,
        Parameter.INVOKE_ARGS,
        Parameter.FETCH_ARGUMENTS,
        Parameter.STRICT_ORDER,
        Parameter.SOFT_FAILURE,
        Parameter.ENCRYPTION_INFO,
    }
)

#: The parameters each command consumes (reported with its event, manifest §8.4.10).
_CONSUMES: dict[int, tuple[int, ...]] = {
    Command.VENDOR_IDENTIFIER: (Parameter.VENDOR_IDENTIFIER,),
    Command.CLASS_IDENTIFIER: (Parameter.CLASS_IDENTIFIER,),
    Command.DEVICE_IDENTIFIER: (Parameter.DEVICE_IDENTIFIER,),
    Command.IMAGE_MATCH: (Parameter.IMAGE_DIGEST, Parameter.IMAGE_SIZE),
    Command.COMPONENT_SLOT: (Parameter.COMPONENT_SLOT,),
    Command.CHECK_CONTENT: (Parameter.CONTENT,),
    Command.FETCH: (
        Parameter.URI,
        Parameter.FETCH_ARGUMENTS,
        Parameter.IMAGE_DIGEST,
        Parameter.IMAGE_SIZE,
    ),
    Command.COPY: (
        Parameter.SOURCE_COMPONENT,
        Parameter.IMAGE_DIGEST,
        Parameter.IMAGE_SIZE,
        Parameter.ENCRYPTION_INFO,
    ),
    Command.SWAP: (Parameter.SOURCE_COMPONENT,),
    Command.WRITE: (Parameter.CONTENT, Parameter.ENCRYPTION_INFO),
    Command.INVOKE: (Parameter.INVOKE_ARGS,),
}

_UPDATE_SECTIONS = (ManifestKey.PAYLOAD_FETCH, ManifestKey.INSTALL, ManifestKey.VALIDATE)
_INVOCATION_SECTIONS = (ManifestKey.VALIDATE, ManifestKey.LOAD, ManifestKey.INVOKE)


class ManifestRejectedError(SuitError):
    """The manifest breaks a rule of the processor setup (§6.1, §6.2) that has no more specific
    report reason: an unsupported manifest version, a multi-component sequence that does not
    begin with set-component-index, a shared sequence without identity checks."""

    reason = ReportReason.OPERATION_FAILED


@dataclass(frozen=True, slots=True)
class ProcessorLimits:
    """Bounds the processor applies (style anchor 8)."""

    #: Bytes per chunk when reading components and streaming payloads.
    chunk_size: int = 64 * 1024
    #: Largest payload written into one component, whatever its capacity.
    max_payload: int = 1 << 32


def authenticated_envelope(
    data: bytes,
    trusted_keys: Iterable[CoseKey],
    *,
    severed: Mapping[int, bytes] | Iterable[bytes] | None = None,
    profiles: Sequence[str] = (),
    allow_equivalent: bool = False,
) -> Envelope:
    """Authenticate ``data`` (signature, then severable members against their digests) and
    return the envelope with every supplied severed member in place (§6.2, §8.5).

    With ``profiles`` (names of draft-ietf-suit-mti algorithm profiles), the envelope must use
    the algorithms of one of them throughout (:func:`check_profiles`), else
    AlgorithmUnsupportedError (alg-unsupported) before anything of the manifest runs."""
    from suitkit.format.authentication import authenticate

    auth = authenticate(data, trusted_keys, severed=severed)
    if profiles:
        check_profiles(auth, profiles, allow_equivalent=allow_equivalent)
    env = auth.envelope
    extra: dict[int, SeverableMember] = {}
    for key in SEVERABLE_SEQUENCES:
        member = auth.member(key)
        is_severed = isinstance(env.manifest.sequence(key), Digest)
        if isinstance(member, CommandSequence) and key not in env.severable and is_severed:
            extra[int(key)] = member
    if not extra:
        return env
    return replace(env, severable={**env.severable, **extra})


def check_profiles(
    authenticated: AuthenticatedEnvelope,
    profiles: Sequence[str],
    *,
    allow_equivalent: bool = False,
) -> str:
    """The first of ``profiles`` (draft-ietf-suit-mti §5.2: a recipient "either accept[s] or
    reject[s] a manifest based on the algorithm profile it uses") whose algorithms the
    authenticated envelope uses throughout (digests, authentication, key exchange, content
    encryption); AlgorithmUnsupportedError (alg-unsupported) when it is outside all of them."""
    from suitkit.encryption.profiles import check_envelope

    reasons: list[str] = []
    for name in profiles:
        try:
            check_envelope(authenticated, name, allow_equivalent=allow_equivalent)
        except AlgorithmUnsupportedError as exc:
            reasons.append(exc.message)
            continue
        return name
    raise AlgorithmUnsupportedError(
        "the manifest is outside the algorithm profiles this device accepts ("
        + ", ".join(profiles)
        + "): "
        + "; ".join(reasons)
    )


def claimed_digest(data: bytes) -> Digest | None:
    """The manifest digest an envelope's SUIT_Authentication claims (its element 0), or None
    when the envelope cannot be read that far. Used to name the manifest in the report of a
    run whose envelope was rejected (report §4: the digest "exactly as reported in
    SUIT_Authentication, element 0"); nothing of the manifest itself is parsed."""
    from suitkit.format.envelope import decode_outer

    try:
        return decode_outer(data).authentication.digest
    except SuitError:
        return None


def manifest_key(manifest: Manifest) -> str:
    """The name under which a manifest's sequence number is stored.

    A manifest with a suit-manifest-component-id (trust domains §5.1) is stored under that id;
    every other manifest is the device's root manifest, which has one sequence number ("root"),
    so that an older manifest listing a different set of components cannot roll the device back.
    """
    if manifest.manifest_component_id is not None:
        return "manifest " + component_id_text(manifest.manifest_component_id)
    return "root"


class _SoftFailure(Exception):
    """A condition failed in a sequence whose soft-failure was true (§8.4.8.14)."""

    def __init__(self, error: ConditionFailedError) -> None:
        super().__init__(error.message)
        self.error = error


def _sequence_of(envelope: Envelope, key: int) -> CommandSequence | None:
    """The command sequence at manifest ``key``: in the manifest, or severed into the envelope
    (its digest is checked again here: cheap, and the processor does not rely on the caller)."""
    member = envelope.manifest.sequence(key)
    if member is None or isinstance(member, CommandSequence):
        return member
    name = ManifestKey.name_of(key) or str(key)
    carried = envelope.severable.get(key)
    if not isinstance(carried, CommandSequence):
        raise SeveringUnsupportedError(
            f"the {name} sequence is severed and the envelope does not carry it", section=key
        )
    h = member.hasher()
    h.update(cbor.dumps(carried.encoded))
    if not member.matches(h.digest()):
        raise SeveringUnsupportedError(
            f"the {name} sequence in the envelope does not match its digest in the manifest",
            section=key,
        )
    return carried


def _walk(seq: CommandSequence, base: int) -> Iterator[tuple[SuitCommand, int]]:
    """Every command with its offset in the top-level sequence, nested ones included."""
    encoded = seq.encoded
    offsets = command_offsets(encoded)
    for cmd, (code_at, arg_at) in zip(seq.commands, offsets, strict=True):
        yield cmd, base + code_at
        if isinstance(cmd, TryEach):
            starts = nested_offsets(encoded, arg_at)
            for alt, start in zip(cmd.sequences, starts, strict=False):
                yield from _walk(alt, base + start)
        elif isinstance(cmd, RunSequence):
            yield from _walk(cmd.sequence, base + nested_offsets(encoded, arg_at)[0])


class Processor:
    """Runs the Update and Invocation procedures of authenticated manifests on a platform.

    ``reporter`` receives every :class:`CommandEvent` as it happens. ``require_identity_checks``
    enforces §6.2's SHOULD (the shared sequence checks vendor and class identifiers).
    ``require_verified_invoke`` refuses to invoke a component whose content has not passed
    image-match (or check-content) since it was last written in this run. ``profiles`` (names
    of draft-ietf-suit-mti algorithm profiles) restricts what :meth:`run_bytes` accepts: an
    envelope outside all of them is rejected with alg-unsupported (``allow_equivalent``: ES256
    and EdDSA count as ESP256 and Ed25519).

    Encrypted payloads (draft-ietf-suit-firmware-encryption): copy and write into a component
    whose encryption-info is set decrypt with the platform's
    :meth:`~suitkit.device.platform.Platform.decryption_keys`; fetch never decrypts.
    """

    def __init__(
        self,
        platform: Platform,
        *,
        limits: ProcessorLimits | None = None,
        reporter: Reporter | None = None,
        require_identity_checks: bool = True,
        require_verified_invoke: bool = True,
        profiles: Sequence[str] = (),
        allow_equivalent: bool = False,
    ) -> None:
        self.platform = platform
        self.profiles = tuple(profiles)
        self.allow_equivalent = allow_equivalent
        self.limits = limits or ProcessorLimits()
        self.reporter = reporter
        self.require_identity_checks = require_identity_checks
        self.require_verified_invoke = require_verified_invoke

    # --- entry points ---

    def update(self, envelope: Envelope) -> RunResult:
        """Run the Update procedure (payload-fetch, install, validate); raise on failure."""
        return self.run(envelope, Procedure.UPDATE).check()

    def invoke(self, envelope: Envelope) -> RunResult:
        """Run the Invocation procedure (validate, load, invoke); raise on failure."""
        return self.run(envelope, Procedure.INVOCATION).check()

    def update_bytes(
        self,
        data: bytes,
        trusted_keys: Iterable[CoseKey],
        *,
        severed: Mapping[int, bytes] | Iterable[bytes] | None = None,
    ) -> RunResult:
        """Authenticate ``data`` against ``trusted_keys``, then run the Update procedure;
        raise on failure."""
        return self.run_bytes(data, trusted_keys, Procedure.UPDATE, severed=severed).check()

    def run_bytes(
        self,
        data: bytes,
        trusted_keys: Iterable[CoseKey],
        procedure: Procedure = Procedure.UPDATE,
        *,
        severed: Mapping[int, bytes] | Iterable[bytes] | None = None,
    ) -> RunResult:
        """Authenticate ``data`` (§6.2: before anything of the manifest is parsed), then run
        ``procedure``. Never raises a SuitError: an envelope that does not authenticate, or
        whose manifest does not parse, is a rejected run (:meth:`RunResult.rejected`) that
        carries the failure reason (unauthorised, cbor-parse, cose-unsupported...) and the
        claimed manifest digest when there is one, so that it too can be reported."""
        try:
            envelope = authenticated_envelope(
                data,
                trusted_keys,
                severed=severed,
                profiles=self.profiles,
                allow_equivalent=self.allow_equivalent,
            )
        except SuitError as exc:
            return RunResult.rejected(procedure, exc, claimed_digest(data))
        return self.run(envelope, procedure)

    def run(
        self,
        envelope: Envelope,
        procedure: Procedure,
        *,
        skip: Iterable[int] = (),
        check_rollback: bool = True,
    ) -> RunResult:
        """Run one procedure; never raises a SuitError: a failure is in ``result.error``.

        ``skip`` names sections not to run (a bootloader reapplying an interrupted install does
        not fetch again); the shared sequence always runs. ``check_rollback=False`` lets a
        bootloader fall back to an older installed manifest when the latest fails (§6.1: it
        "MAY select the next latest valid, authentic manifest")."""
        machine = _Machine(self, envelope)
        error: SuitError | None = None
        skipped = frozenset(skip)
        try:
            sections = self._prepare(envelope, procedure, skipped, check_rollback)
            for key, seq in sections:
                self.platform.begin_section(procedure, key)
                machine.run_section(key, seq)
            if procedure is Procedure.UPDATE:
                m = envelope.manifest
                self.platform.record_update(manifest_key(m), m.sequence_number, envelope.encode())
        except SuitError as exc:
            error = exc
        return RunResult(
            procedure=procedure,
            manifest_digest=envelope.authentication.digest,
            reference_uri=envelope.manifest.reference_uri,
            sequence_number=envelope.manifest.sequence_number,
            components=envelope.manifest.common.components,
            events=tuple(machine.events),
            error=error,
            invoked=tuple(machine.invoked),
        )

    # --- setup (§6.1, §6.2) ---

    def _prepare(
        self,
        envelope: Envelope,
        procedure: Procedure,
        skipped: frozenset[int] = frozenset(),
        check_rollback: bool = True,
    ) -> list[tuple[int, CommandSequence]]:
        m = envelope.manifest
        if m.version != 1:
            raise ManifestRejectedError(
                f"manifest version {m.version} is not supported (this processor reads version 1)",
                section=ManifestKey.MANIFEST_VERSION,
            )
        stored = self.platform.sequence_number(manifest_key(m))
        if check_rollback and stored is not None and m.sequence_number < stored:
            raise RollbackError(
                f"sequence number {m.sequence_number} is lower than the installed {stored}",
                section=ManifestKey.MANIFEST_SEQUENCE_NUMBER,
            )
        comps = m.common.components
        device = self.platform.components()
        if not comps:
            raise ComponentUnsupportedError(
                "the manifest lists no components", section=ManifestKey.COMMON
            )
        if len(comps) > len(device):
            raise ComponentUnsupportedError(
                f"the manifest lists {len(comps)} components, the device has {len(device)}",
                section=ManifestKey.COMMON,
            )
        known = set(device)
        for i, cid in enumerate(comps):
            if cid not in known:
                raise ComponentUnsupportedError(
                    f"the device has no component {component_id_text(cid)}",
                    section=ManifestKey.COMMON,
                    component_index=i,
                )
        keys: tuple[int, ...] = (
            _UPDATE_SECTIONS if procedure is Procedure.UPDATE else _INVOCATION_SECTIONS
        )
        sections: list[tuple[int, CommandSequence]] = []
        if m.common.shared_sequence is not None:
            sections.append((ManifestKey.COMMON, m.common.shared_sequence))
        for key in keys:
            if key in skipped:
                continue
            seq = _sequence_of(envelope, key)
            if seq is not None:
                sections.append((key, seq))
        custom = self.platform.custom_commands()
        for key, seq in sections:
            if len(comps) > 1 and not isinstance(seq.commands[0], SetComponentIndex):
                raise ManifestRejectedError(
                    "a manifest with more than one component must begin each command sequence "
                    "with set-component-index (§6.2)",
                    section=key,
                    offset=command_offsets(seq.encoded)[0][0],
                )
            for cmd, offset in _walk(seq, 0):
                self._check_supported(cmd, key, offset, custom)
        if self.require_identity_checks:
            shared = m.common.shared_sequence
            codes = {c.code for c in shared.walk()} if shared is not None else set()
            for needed in (Command.VENDOR_IDENTIFIER, Command.CLASS_IDENTIFIER):
                if needed not in codes:
                    raise ManifestRejectedError(
                        f"the shared sequence has no {needed.spec_name} (§6.2)",
                        section=ManifestKey.COMMON,
                    )
        return sections

    @staticmethod
    def _check_supported(
        cmd: SuitCommand, section: int, offset: int, custom: frozenset[int]
    ) -> None:
        if isinstance(cmd, CustomCommand):
            if section == ManifestKey.COMMON:
                raise CommandUnsupportedError(
                    f"custom command {cmd.code} in the shared sequence (§6.2 forbids it)",
                    section=section,
                    offset=offset,
                )
            if cmd.code not in custom:
                raise CommandUnsupportedError(
                    f"custom command {cmd.code} is not implemented by this device",
                    section=section,
                    offset=offset,
                )
            return
        if isinstance(cmd, UnknownCommand) or cmd.code not in IMPLEMENTED_COMMANDS:
            raise CommandUnsupportedError(
                f"{command_name(cmd.code)} is not supported by this processor",
                section=section,
                offset=offset,
            )
        if isinstance(cmd, OverrideParameters | SetParameters):
            for code, value in cmd.parameters.items():
                if code >= 0 and code not in SUPPORTED_PARAMETERS:
                    raise ParameterUnsupportedError(
                        f"parameter {Parameter.name_of(code) or code} is not supported",
                        section=section,
                        offset=offset,
                    )
                if (
                    code == Parameter.IMAGE_DIGEST
                    and isinstance(value, Digest)
                    and not value.is_supported
                ):
                    # refused here, not at the image-match after the payload was written
                    raise AlgorithmUnsupportedError(
                        f"image-digest uses digest algorithm {value.algorithm_name}, which this "
                        "processor does not implement",
                        section=section,
                        offset=offset,
                    )
                if code == Parameter.ENCRYPTION_INFO:
                    # firmware encryption §4: a content or key distribution algorithm this
                    # processor lacks (or malformed info) is refused before anything runs
                    _check_encryption_info(value, section, offset)


def _check_encryption_info(value: Any, section: int, offset: int) -> None:
    """The keyless pre-flight check of a suit-parameter-encryption-info value (well-formed, a
    supported content algorithm, a recipient with a supported key distribution)."""
    from suitkit.encryption.decrypt import check_supported

    try:
        if not isinstance(value, EncryptionInfo):
            raise ParameterUnsupportedError("encryption-info must be a bstr-wrapped COSE_Encrypt")
        check_supported(value)
    except SuitError as exc:
        if exc.section is None:
            exc.section, exc.offset = section, offset
        exc.message = f"encryption-info: {exc.message}"
        raise


_Handler = Callable[["_Machine", int, PolicyCommand, dict[int, Any]], None]


class _Machine:
    """The abstract machine of §6.4 for one procedure: parameters, component index, flags."""

    def __init__(self, processor: Processor, envelope: Envelope) -> None:
        self.platform = processor.platform
        self.limits = processor.limits
        self.reporter = processor.reporter
        self.require_verified_invoke = processor.require_verified_invoke
        self.envelope = envelope
        self.components = envelope.manifest.common.components
        self.n = len(self.components)
        # §6.1: "the manifest processor clears all parameter storage"
        self.params: list[dict[int, Any]] = [{} for _ in range(self.n)]
        self.index: IndexArg = 0
        self.soft_failure = False
        self.soft_allowed = False
        self.strict_order = True
        self.index_locked = False
        self.targets: set[int] = set()
        self.sources: set[int] = set()
        self.section = 0
        self.events: list[CommandEvent] = []
        self.verified: set[int] = set()
        self.invoked: list[ComponentIdentifier] = []

    # --- sequences ---

    def run_section(self, key: int, seq: CommandSequence) -> None:
        self.section = key
        self.index = 0
        self.soft_failure = False
        self.soft_allowed = False
        self.strict_order = True
        self.index_locked = False
        self._exec(seq, 0, 0, soft_default=False, soft_allowed=False)

    def _exec(
        self,
        seq: CommandSequence,
        base: int,
        depth: int,
        *,
        soft_default: bool,
        soft_allowed: bool,
        first_index_allowed: bool = False,
    ) -> None:
        saved = (
            self.soft_failure,
            self.soft_allowed,
            self.targets,
            self.sources,
            self.index_locked,
        )
        self.soft_failure = soft_default
        self.soft_allowed = soft_allowed
        self.targets, self.sources = set(), set()
        encoded = seq.encoded
        offsets = command_offsets(encoded)
        try:
            for i, cmd in enumerate(seq.commands):
                code_at, arg_at = offsets[i]
                if first_index_allowed and i == 0:
                    if not isinstance(cmd, SetComponentIndex):
                        raise self._locate(
                            OperationFailedError(
                                "with strict-order false, the run-sequence argument must begin "
                                "with set-component-index (§6.7)"
                            ),
                            base + code_at,
                            None,
                        )
                    self.index_locked = False
                try:
                    self._dispatch(cmd, encoded, base, base + code_at, arg_at, depth)
                except ConditionFailedError as exc:
                    if self.soft_failure:
                        raise _SoftFailure(exc) from None
                    raise
                if first_index_allowed and i == 0:
                    self.index_locked = True
        finally:
            (
                self.soft_failure,
                self.soft_allowed,
                self.targets,
                self.sources,
                self.index_locked,
            ) = saved

    def _current(self) -> tuple[int, ...]:
        idx = self.index
        if idx is True:
            return tuple(range(self.n))
        if isinstance(idx, tuple):
            return idx
        return (int(idx),)

    def _locate(self, exc: SuitError, offset: int, ci: int | None) -> SuitError:
        if exc.section is None:
            exc.section = self.section
            exc.offset = offset
            exc.component_index = ci
        return exc

    def _emit(
        self,
        cmd: SuitCommand,
        offset: int,
        ci: int | None,
        depth: int,
        ok: bool | None,
        parameters: Mapping[int, Any] | None = None,
        measured: Mapping[int, Any] | None = None,
        error: SuitError | None = None,
        soft: bool = False,
        note: str = "",
    ) -> None:
        event = CommandEvent(
            section=self.section,
            offset=offset,
            component_index=ci,
            code=cmd.code,
            name=cmd.name,
            depth=depth,
            reporting_policy=cmd.reporting_policy if isinstance(cmd, PolicyCommand) else 0,
            ok=ok,
            parameters=parameters or {},
            measured=measured or {},
            error=error,
            soft=soft,
            note=note,
        )
        self.events.append(event)
        if self.reporter is not None:
            self.reporter.record(event)

    def _dispatch(
        self, cmd: SuitCommand, encoded: bytes, base: int, offset: int, arg_at: int, depth: int
    ) -> None:
        if isinstance(cmd, SetComponentIndex):
            self._set_index(cmd, offset, depth)
            return
        if isinstance(cmd, TryEach | RunSequence):
            preset = self.index is True or isinstance(self.index, tuple)
            outer = self.index
            starts = nested_offsets(encoded, arg_at)
            try:
                for ci in self._current():
                    self.index = ci
                    if isinstance(cmd, TryEach):
                        self._try_each(cmd, starts, base, offset, ci, depth)
                    else:
                        self._run_sequence(cmd, base + starts[0], offset, ci, depth, preset)
            finally:
                self.index = outer
            return
        for ci in self._current():
            self._one(cmd, offset, ci, depth)

    def _set_index(self, cmd: SetComponentIndex, offset: int, depth: int) -> None:
        if self.index_locked:
            exc = OperationFailedError(
                "set-component-index inside a run-sequence started with strict-order false (§6.7)"
            )
            self._emit(cmd, offset, None, depth, False, error=exc)
            raise self._locate(exc, offset, None)
        idx = cmd.index
        wanted = range(self.n) if idx is True else idx if isinstance(idx, tuple) else (int(idx),)
        for i in wanted:
            if i >= self.n:
                exc2 = ComponentUnsupportedError(
                    f"component index {i} is beyond the manifest's {self.n} components"
                )
                self._emit(cmd, offset, None, depth, False, error=exc2)
                raise self._locate(exc2, offset, None)
        self.index = idx
        self._emit(cmd, offset, None, depth, True, note=f"index {cmd.argument_cbor()}")

    # --- one command on one component ---

    def _one(self, cmd: SuitCommand, offset: int, ci: int, depth: int) -> None:
        measured: dict[int, Any] = {}
        params = self.params[ci]
        consumed: Mapping[int, Any]
        try:
            if isinstance(cmd, OverrideParameters | SetParameters):
                consumed = self._set_parameters(cmd, ci)
            elif isinstance(cmd, CustomCommand):
                consumed = {}
                self.platform.custom_command(
                    cmd.code, cmd.argument, self.components[ci], MappingProxyType(params)
                )
            elif isinstance(cmd, PolicyCommand):
                handler = _HANDLERS.get(cmd.code)
                if handler is None:
                    raise CommandUnsupportedError(f"{cmd.name} is not supported")
                consumed = {k: params[k] for k in _CONSUMES.get(cmd.code, ()) if k in params}
                handler(self, ci, cmd, measured)
            else:
                raise CommandUnsupportedError(f"{cmd.name} is not supported")
        except SuitError as exc:
            self._locate(exc, offset, ci)
            consumed = {k: params[k] for k in _CONSUMES.get(cmd.code, ()) if k in params}
            soft = isinstance(exc, ConditionFailedError) and self.soft_failure
            self._emit(cmd, offset, ci, depth, False, consumed, measured, exc, soft)
            raise
        self._emit(cmd, offset, ci, depth, True, consumed, measured)

    def _set_parameters(self, cmd: OverrideParameters | SetParameters, ci: int) -> dict[int, Any]:
        override = isinstance(cmd, OverrideParameters)
        params = self.params[ci]
        for code, value in cmd.parameters.items():
            if code == Parameter.SOFT_FAILURE:
                if not self.soft_allowed:
                    raise OperationFailedError(
                        "soft-failure may only be set inside try-each or run-sequence "
                        "(§8.4.8.14): abort"
                    )
                if override or not self.soft_failure:
                    self.soft_failure = bool(value)
            elif code == Parameter.STRICT_ORDER:
                self.strict_order = bool(value)
                if self.strict_order:  # a barrier: all preceding commands have completed
                    self.targets, self.sources = set(), set()
            elif code >= 0 and code not in SUPPORTED_PARAMETERS:
                raise ParameterUnsupportedError(
                    f"parameter {Parameter.name_of(code) or code} is not supported"
                )
            elif override or code not in params:
                params[code] = value
        return dict(cmd.parameters.items())

    # --- flow control ---

    def _try_each(
        self, cmd: TryEach, starts: tuple[int, ...], base: int, offset: int, ci: int, depth: int
    ) -> None:
        self._emit(cmd, offset, ci, depth, None, note=f"{len(cmd.sequences)} alternatives")
        last: ConditionFailedError | None = None
        for j, alt in enumerate(cmd.sequences):
            self.index = ci
            try:
                self._exec(alt, base + starts[j], depth + 1, soft_default=True, soft_allowed=True)
            except _SoftFailure as sf:
                last = sf.error
                continue
            self._emit(cmd, offset, ci, depth, True, note=f"alternative {j} succeeded")
            return
        if cmd.nil_terminated:
            self._emit(cmd, offset, ci, depth, True, note="every alternative failed; nil ends it")
            return
        why = f" (last: {last.message})" if last is not None else ""
        exc = ConditionFailedError(f"every alternative of try-each failed{why}")
        self._locate(exc, offset, ci)
        self._emit(cmd, offset, ci, depth, False, error=exc, soft=self.soft_failure)
        raise exc

    def _run_sequence(
        self, cmd: RunSequence, start: int, offset: int, ci: int, depth: int, preset: bool
    ) -> None:
        isolated = not self.strict_order
        self._emit(cmd, offset, ci, depth, None, note="isolated" if isolated else "")
        saved_strict = self.strict_order
        snapshot = [dict(p) for p in self.params]
        saved_locked = self.index_locked
        if isolated:
            # §6.7: strict-order is set to true for the sequence; with an integer index it must
            # begin with set-component-index, and any further set-component-index aborts.
            self.strict_order = True
            self.index_locked = True
        try:
            self._exec(
                cmd.sequence,
                start,
                depth + 1,
                soft_default=False,
                soft_allowed=True,
                first_index_allowed=isolated and not preset,
            )
        except _SoftFailure as sf:
            self.params = snapshot  # "halts with no side-effects" (§8.4.8.14)
            self._emit(
                cmd, offset, ci, depth, True, note=f"halted by soft failure: {sf.error.message}"
            )
            return
        finally:
            self.strict_order = saved_strict
            self.index_locked = saved_locked
        self._emit(cmd, offset, ci, depth, True)

    # --- strict-order bookkeeping (§6.7) ---

    def _target(self, ci: int) -> None:
        if not self.strict_order:
            if ci in self.sources:
                raise OperationFailedError(
                    f"component {ci} is both a source and a target while strict-order is false "
                    "(§6.7): abort"
                )
            self.targets.add(ci)

    def _source(self, ci: int) -> None:
        if not self.strict_order:
            if ci in self.targets:
                raise OperationFailedError(
                    f"component {ci} is both a target and a source while strict-order is false "
                    "(§6.7): abort"
                )
            self.sources.add(ci)

    # --- streaming store (fetch, copy, write) ---

    def _bounds(self, ci: int) -> tuple[int, int | None]:
        """(the most bytes a store into component ``ci`` accepts, image-size if set); an
        image-size larger than the component is refused here, before anything is written."""
        cid = self.components[ci]
        limit = min(self.platform.capacity(cid), self.limits.max_payload)
        size = self.params[ci].get(Parameter.IMAGE_SIZE)
        if size is not None:
            if size > limit:
                raise OperationFailedError(
                    f"image-size {size} is larger than component {component_id_text(cid)} "
                    f"({limit} bytes): refused before writing"
                )
            limit = size
        return limit, size

    def _store(
        self,
        ci: int,
        chunks: Iterable[bytes | memoryview],
        what: str,
        measured: dict[int, Any],
        bounds: tuple[int, int | None] | None = None,
        *,
        cmd: PolicyCommand | None = None,
    ) -> None:
        """Stream ``chunks`` into component ``ci``: the first chunk is had before the component
        is opened (erased); past ``image-size`` (or the component's size) the write is refused;
        the writer is committed only after the last chunk, aborted on any exception.

        The size written is always measured. The digest of what was written is measured in
        the same pass (each chunk goes through the hash on its way to the flash) when the
        directive's reporting policy sends system information on success (§8.4.10: the place
        the measured digest of a successful store goes). Integrity is image-match's business:
        it reads the component back and the core hashes what the platform returns, so a
        second hash of every payload in the store would only slow the update down."""
        cid = self.components[ci]
        limit, size = bounds if bounds is not None else self._bounds(ci)
        digest = self.params[ci].get(Parameter.IMAGE_DIGEST)
        alg = (
            digest.algorithm
            if isinstance(digest, Digest) and digest.is_supported
            else CoseAlgorithm.SHA_256
        )
        sysinfo = ReportingPolicy.SEND_SYSINFO_SUCCESS.mask
        hasher = Hasher(alg) if cmd is None or cmd.reporting_policy & sysinfo else None
        it = iter(chunks)
        try:
            first = next(it, None)  # a payload that cannot be had does not erase the component
            writer = self.platform.open_write(cid, size)
            self.verified.discard(ci)  # erased: whatever passed image-match is gone
            received = 0
            try:
                chunk = first
                while chunk is not None:
                    received += len(chunk)
                    if received > limit:
                        raise OperationFailedError(
                            f"{what} is larger than {limit} bytes "
                            f"({'image-size' if size is not None else 'component size'}): "
                            f"refused at byte {limit + 1}"
                        )
                    if hasher is not None:
                        hasher.update(chunk)
                    writer.write(chunk)
                    chunk = next(it, None)
            except BaseException:
                writer.abort()
                raise
            writer.commit()
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        self.verified.discard(ci)
        measured[Parameter.IMAGE_SIZE] = received
        if hasher is not None:
            measured[Parameter.IMAGE_DIGEST] = Digest(alg, hasher.digest())

    def _source_index(self, ci: int, verb: str) -> int:
        src = self.params[ci].get(Parameter.SOURCE_COMPONENT)
        if src is None:
            raise OperationFailedError(f"{verb}: source-component is not set")
        if src >= self.n:
            raise ComponentUnsupportedError(
                f"{verb}: source component {src} is beyond the manifest's {self.n} components"
            )
        if src == ci:
            raise OperationFailedError(f"{verb}: source and destination are the same component")
        if self.platform.size(self.components[src]) is None:
            raise OperationFailedError(f"{verb}: source component {src} is empty")
        return int(src)

    def _chunks(self, data: bytes) -> Iterator[memoryview]:
        view = memoryview(data)
        step = self.limits.chunk_size
        return (view[i : i + step] for i in range(0, len(view), step))


# --- conditions (§8.4.9) ---


def _identity_condition(attr: str, param: Parameter) -> _Handler:
    def check(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
        want = m.params[ci].get(param)
        have = getattr(m.platform.identity(m.components[ci]), attr)
        if have is not None:
            measured[param] = have
        if want is None:
            raise ConditionFailedError(f"{param.spec_name} is not set")
        if have is None or want != have:
            raise ConditionFailedError(f"{param.spec_name} {want} does not match the device")

    return check


def _image_match(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
    params = m.params[ci]
    digest = params.get(Parameter.IMAGE_DIGEST)
    if digest is None:
        raise ConditionFailedError("image-digest is not set")
    cid = m.components[ci]
    hasher = digest.hasher()  # AlgorithmUnsupportedError for an unknown algorithm
    if m.platform.size(cid) is None:
        raise ConditionFailedError(f"component {component_id_text(cid)} is empty")
    n = 0
    for chunk in m.platform.read(cid, m.limits.chunk_size):
        hasher.update(chunk)
        n += len(chunk)
    actual = hasher.digest()
    measured[Parameter.IMAGE_DIGEST] = Digest(digest.algorithm, actual)
    measured[Parameter.IMAGE_SIZE] = n
    same_digest = digest.matches(actual)
    expected_size = params.get(Parameter.IMAGE_SIZE)
    if expected_size is not None and n != expected_size:
        raise ConditionFailedError(f"image is {n} bytes, image-size says {expected_size}")
    if not same_digest:
        raise ConditionFailedError("image digest does not match image-digest")
    m.verified.add(ci)


def _component_slot(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
    want = m.params[ci].get(Parameter.COMPONENT_SLOT)
    have = m.platform.slot(m.components[ci])
    if have is not None:
        measured[Parameter.COMPONENT_SLOT] = have
    if want is None:
        raise ConditionFailedError("component-slot is not set")
    if have != want:
        raise ConditionFailedError(f"component is in slot {have}, not slot {want}")


def _check_content(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
    want = m.params[ci].get(Parameter.CONTENT)
    if want is None:
        raise ConditionFailedError("content is not set")
    cid = m.components[ci]
    if m.platform.size(cid) != len(want):
        raise ConditionFailedError("component content differs from content (length)")
    # §8.4.9.3: constant time, no early exit: every chunk is compared, results are combined.
    same = True
    pos = 0
    for chunk in m.platform.read(cid, m.limits.chunk_size):
        same &= hmac.compare_digest(want[pos : pos + len(chunk)], bytes(chunk))
        pos += len(chunk)
    if not (same and pos == len(want)):
        raise ConditionFailedError("component content differs from content")
    m.verified.add(ci)


def _abort(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
    raise ConditionFailedError("condition-abort")


# --- directives (§8.4.10) ---


def _fetch(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
    params = m.params[ci]
    uri = params.get(Parameter.URI)
    if uri is None:
        raise OperationFailedError("fetch: uri is not set")
    m._target(ci)
    bounds = m._bounds(ci)
    integrated = m.envelope.integrated_payloads.get(uri)
    chunks: Iterable[bytes | memoryview]
    if integrated is not None:  # §7.5: integrated payloads, and pre-fetched ones keyed by URI
        chunks = m._chunks(integrated)
    elif uri.startswith("#"):
        raise OperationFailedError(f"integrated payload {uri} is not in the envelope")
    else:
        # the fetcher learns the limit: one that knows the length up front (Content-Length)
        # refuses a longer payload before the component is erased
        chunks = m.platform.fetch(uri, params.get(Parameter.FETCH_ARGUMENTS), limit=bounds[0])
    m._store(ci, chunks, uri, measured, bounds, cmd=cmd)


def _decrypting(
    m: _Machine, ci: int, chunks: Iterable[bytes | memoryview]
) -> Iterable[bytes | memoryview]:
    """``chunks`` decrypted when encryption-info is set for component ``ci`` (firmware
    encryption §3.1-3.2); else ``chunks`` as they are.

    Lazily: the content key is unwrapped at the first ``next()``, which :meth:`_Machine._store`
    calls before it opens the writer, so a device without the key (or whose key does not unwrap
    the content key) fails before the target is erased. An AEAD tag that does not verify raises
    AuthenticationError from the last ``next()``: the store aborts its writer, and the
    unauthenticated plaintext is never committed. Encryption-info stays set for the component
    (parameters persist for the procedure): every copy or write into it decrypts.
    """
    info = m.params[ci].get(Parameter.ENCRYPTION_INFO)
    if info is None:
        return chunks
    from suitkit.encryption.decrypt import decrypt_chunks

    return decrypt_chunks(info, m.platform.decryption_keys(), chunks)


def _copy(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
    src = m._source_index(ci, "copy")
    m._source(src)
    m._target(ci)
    m._store(
        ci,
        _decrypting(m, ci, m.platform.read(m.components[src], m.limits.chunk_size)),
        f"component {src}",
        measured,
        cmd=cmd,
    )


def _write(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
    content = m.params[ci].get(Parameter.CONTENT)
    if content is None:
        raise OperationFailedError("write: content is not set")
    m._target(ci)
    m._store(ci, _decrypting(m, ci, m._chunks(content)), "content", measured, cmd=cmd)


def _swap(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
    src = m._source_index(ci, "swap")
    m._source(src)
    m._target(ci)
    m._target(src)
    m._source(ci)
    a, b = m.components[ci], m.components[src]
    size_a, size_b = m.platform.size(a) or 0, m.platform.size(b) or 0
    if size_b > m.platform.capacity(a) or size_a > m.platform.capacity(b):
        raise OperationFailedError("swap: a component does not fit into the other")
    m.platform.swap(a, b)
    m.verified.discard(ci)
    m.verified.discard(src)


def _invoke(m: _Machine, ci: int, cmd: PolicyCommand, measured: dict[int, Any]) -> None:
    cid = m.components[ci]
    if m.require_verified_invoke and ci not in m.verified:
        raise OperationFailedError(
            f"refusing to invoke {component_id_text(cid)}: its content has not passed "
            "image-match since it was last written"
        )
    m.platform.invoke(cid, m.params[ci].get(Parameter.INVOKE_ARGS))
    m.invoked.append(cid)


_HANDLERS: dict[int, _Handler] = {
    Command.VENDOR_IDENTIFIER: _identity_condition("vendor_id", Parameter.VENDOR_IDENTIFIER),
    Command.CLASS_IDENTIFIER: _identity_condition("class_id", Parameter.CLASS_IDENTIFIER),
    Command.DEVICE_IDENTIFIER: _identity_condition("device_id", Parameter.DEVICE_IDENTIFIER),
    Command.IMAGE_MATCH: _image_match,
    Command.COMPONENT_SLOT: _component_slot,
    Command.CHECK_CONTENT: _check_content,
    Command.ABORT: _abort,
    Command.FETCH: _fetch,
    Command.COPY: _copy,
    Command.WRITE: _write,
    Command.SWAP: _swap,
    Command.INVOKE: _invoke,
}
