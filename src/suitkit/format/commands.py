"""SUIT_Command_Sequence and its commands (manifest §8.4.6, §8.4.9, §8.4.10).

A command sequence is a flat CBOR array of ``command-code, argument`` pairs. Each pair decodes
by its code (never by trial) into a typed command:

- conditions and the directives whose argument is a SUIT_Rep_Policy (fetch, copy, write, invoke,
  swap, ...) become :class:`PolicyCommand` subclasses (``ConditionImageMatch(15)``);
- set-component-index, override-parameters, set-parameters, try-each and run-sequence carry
  their typed arguments;
- negative codes are :class:`CustomCommand` (§8.4.11); any other code is kept as
  :class:`UnknownCommand` with its argument, so it re-encodes unchanged and a processor can
  report it as command-unsupported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from suitkit.errors import DecodeError, LimitExceededError
from suitkit.format import cbor
from suitkit.format.cbor import DEFAULT_LIMITS, Limits
from suitkit.format.codepoints import REPORTING_POLICY_COMMANDS, Command, ReportingPolicy
from suitkit.format.parameters import Parameters


def command_name(code: int) -> str:
    """The spec name of a command code: ``condition-image-match``, ``custom(-300)``."""
    try:
        return Command(code).spec_name
    except ValueError:
        return f"custom({code})" if code < 0 else f"unknown({code})"


def policy_names(policy: int) -> list[str]:
    """The names of the reporting-policy bits set in ``policy`` (§8.4.10)."""
    return [bit.spec_name for bit in ReportingPolicy if policy & bit.mask]


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyCommand:
    """A condition or directive whose argument is a SUIT_Rep_Policy (§8.4.10)."""

    code: int
    reporting_policy: int = 0

    @property
    def name(self) -> str:
        return command_name(self.code)

    @property
    def is_condition(self) -> bool:
        try:
            return Command(self.code).is_condition
        except ValueError:
            return False

    def argument_cbor(self) -> Any:
        return self.reporting_policy

    def argument_diag(self) -> Any:
        return self.reporting_policy

    def argument_json(self) -> Any:
        return {
            "reporting-policy": self.reporting_policy,
            "bits": policy_names(self.reporting_policy),
        }


class _FixedCodeCommand(PolicyCommand):
    """A PolicyCommand whose code is fixed by its class: ``ConditionImageMatch(15)``."""

    __slots__ = ()
    CODE: ClassVar[int]

    def __init__(self, reporting_policy: int = 0) -> None:
        PolicyCommand.__init__(self, self.CODE, reporting_policy)


class ConditionVendorIdentifier(_FixedCodeCommand):
    """suit-condition-vendor-identifier (§8.4.9.1)."""

    __slots__ = ()
    CODE = Command.VENDOR_IDENTIFIER


class ConditionClassIdentifier(_FixedCodeCommand):
    """suit-condition-class-identifier (§8.4.9.1)."""

    __slots__ = ()
    CODE = Command.CLASS_IDENTIFIER


class ConditionDeviceIdentifier(_FixedCodeCommand):
    """suit-condition-device-identifier (§8.4.9.1)."""

    __slots__ = ()
    CODE = Command.DEVICE_IDENTIFIER


class ConditionImageMatch(_FixedCodeCommand):
    """suit-condition-image-match (§8.4.9.2)."""

    __slots__ = ()
    CODE = Command.IMAGE_MATCH


class ConditionCheckContent(_FixedCodeCommand):
    """suit-condition-check-content (§8.4.9.3): a constant-time comparison."""

    __slots__ = ()
    CODE = Command.CHECK_CONTENT


class ConditionComponentSlot(_FixedCodeCommand):
    """suit-condition-component-slot (§8.4.9.4)."""

    __slots__ = ()
    CODE = Command.COMPONENT_SLOT


class ConditionAbort(_FixedCodeCommand):
    """suit-condition-abort (§8.4.9.5): fails unconditionally."""

    __slots__ = ()
    CODE = Command.ABORT


class DirectiveFetch(_FixedCodeCommand):
    """suit-directive-fetch (§8.4.10.4)."""

    __slots__ = ()
    CODE = Command.FETCH


class DirectiveCopy(_FixedCodeCommand):
    """suit-directive-copy (§8.4.10.5)."""

    __slots__ = ()
    CODE = Command.COPY


class DirectiveWrite(_FixedCodeCommand):
    """suit-directive-write (§8.4.10.6)."""

    __slots__ = ()
    CODE = Command.WRITE


class DirectiveInvoke(_FixedCodeCommand):
    """suit-directive-invoke (§8.4.10.7)."""

    __slots__ = ()
    CODE = Command.INVOKE


class DirectiveSwap(_FixedCodeCommand):
    """suit-directive-swap (§8.4.10.9)."""

    __slots__ = ()
    CODE = Command.SWAP


class ConditionDependencyIntegrity(_FixedCodeCommand):
    """suit-condition-dependency-integrity (trust domains §6.2)."""

    __slots__ = ()
    CODE = Command.DEPENDENCY_INTEGRITY


class ConditionIsDependency(_FixedCodeCommand):
    """suit-condition-is-dependency (trust domains §6.1)."""

    __slots__ = ()
    CODE = Command.IS_DEPENDENCY


class DirectiveProcessDependency(_FixedCodeCommand):
    """suit-directive-process-dependency (trust domains §6.3)."""

    __slots__ = ()
    CODE = Command.PROCESS_DEPENDENCY


class DirectiveUnlink(_FixedCodeCommand):
    """suit-directive-unlink (trust domains §6.5)."""

    __slots__ = ()
    CODE = Command.UNLINK


_POLICY_CLASSES: dict[int, type[PolicyCommand]] = {
    int(c.CODE): c for c in _FixedCodeCommand.__subclasses__()
}


def policy_command(code: int, reporting_policy: int = 0) -> PolicyCommand:
    """The typed command for a reporting-policy command code (``ConditionImageMatch`` for 3)."""
    cls = _POLICY_CLASSES.get(code)
    if cls is None:
        return PolicyCommand(code, reporting_policy)
    cmd = cls.__new__(cls)
    object.__setattr__(cmd, "code", code)
    object.__setattr__(cmd, "reporting_policy", reporting_policy)
    return cmd


IndexArg = int | bool | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SetComponentIndex:
    """suit-directive-set-component-index (§8.4.10.1): ``uint / true / [+ uint]``."""

    index: IndexArg
    code: ClassVar[int] = Command.SET_COMPONENT_INDEX

    @property
    def name(self) -> str:
        return command_name(self.code)

    def argument_cbor(self) -> Any:
        return list(self.index) if isinstance(self.index, tuple) else self.index

    argument_diag = argument_cbor

    def argument_json(self) -> Any:
        return self.argument_cbor()


@dataclass(frozen=True, slots=True)
class _ParametersDirective:
    """A directive whose argument is a map of parameters."""

    parameters: Parameters
    code: ClassVar[int]

    @property
    def name(self) -> str:
        return command_name(self.code)

    def argument_cbor(self) -> Any:
        return self.parameters.to_cbor()

    def argument_diag(self) -> Any:
        return self.parameters.to_diag()

    def argument_json(self) -> Any:
        return self.parameters.to_json()


@dataclass(frozen=True, slots=True)
class OverrideParameters(_ParametersDirective):
    """suit-directive-override-parameters (§8.4.10.3): replaces the listed parameters."""

    code: ClassVar[int] = Command.OVERRIDE_PARAMETERS


@dataclass(frozen=True, slots=True)
class SetParameters(_ParametersDirective):
    """suit-directive-set-parameters (trust domains §6.4): sets only parameters not yet set."""

    code: ClassVar[int] = Command.SET_PARAMETERS


@dataclass(frozen=True, slots=True)
class TryEach:
    """suit-directive-try-each (§8.4.10.2): ``[2* bstr .cbor SUIT_Command_Sequence, ? nil]``.

    ``nil_terminated`` records the trailing nil that makes an all-failing try-each succeed.
    """

    sequences: tuple[CommandSequence, ...]
    nil_terminated: bool = False
    code: ClassVar[int] = Command.TRY_EACH

    @property
    def name(self) -> str:
        return command_name(self.code)

    def argument_cbor(self) -> Any:
        out: list[Any] = [s.encoded for s in self.sequences]
        if self.nil_terminated:
            out.append(None)
        return out

    def argument_diag(self) -> Any:
        out: list[Any] = [cbor.Wrapped(s.to_diag()) for s in self.sequences]
        if self.nil_terminated:
            out.append(None)
        return out

    def argument_json(self) -> Any:
        out: list[Any] = [s.to_json() for s in self.sequences]
        if self.nil_terminated:
            out.append(None)
        return out


@dataclass(frozen=True, slots=True)
class RunSequence:
    """suit-directive-run-sequence (§8.4.10.8): ``bstr .cbor SUIT_Command_Sequence``."""

    sequence: CommandSequence
    code: ClassVar[int] = Command.RUN_SEQUENCE

    @property
    def name(self) -> str:
        return command_name(self.code)

    def argument_cbor(self) -> Any:
        return self.sequence.encoded

    def argument_diag(self) -> Any:
        return cbor.Wrapped(self.sequence.to_diag())

    def argument_json(self) -> Any:
        return self.sequence.to_json()


@dataclass(frozen=True, slots=True)
class CustomCommand:
    """suit-command-custom (§8.4.11): a negative code with a ``bstr/tstr/int/nil`` argument."""

    code: int
    argument: bytes | str | int | None = None

    @property
    def name(self) -> str:
        return command_name(self.code)

    def argument_cbor(self) -> Any:
        return self.argument

    argument_diag = argument_cbor

    def argument_json(self) -> Any:
        return self.argument.hex() if isinstance(self.argument, bytes) else self.argument


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A command this version of suitkit does not model; kept so it re-encodes unchanged."""

    code: int
    argument: Any

    @property
    def name(self) -> str:
        return command_name(self.code)

    def argument_cbor(self) -> Any:
        return self.argument

    argument_diag = argument_cbor

    def argument_json(self) -> Any:
        return repr(self.argument)


SuitCommand = (
    PolicyCommand
    | SetComponentIndex
    | OverrideParameters
    | SetParameters
    | TryEach
    | RunSequence
    | CustomCommand
    | UnknownCommand
)

# SUIT_Shared_Sequence admits conditions and only these directives (manifest Appendix A).
_SHARED_DIRECTIVES = frozenset(
    {
        Command.SET_COMPONENT_INDEX,
        Command.RUN_SEQUENCE,
        Command.TRY_EACH,
        Command.OVERRIDE_PARAMETERS,
    }
)


@dataclass(frozen=True, slots=True)
class CommandSequence(Sequence[SuitCommand]):
    """``SUIT_Command_Sequence = [+ (command-code, argument)]``, keeping its encoded bytes."""

    commands: tuple[SuitCommand, ...]
    _encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)

    def __init__(self, commands: Sequence[SuitCommand] = ()) -> None:
        object.__setattr__(self, "commands", tuple(commands))
        object.__setattr__(self, "_encoded", None)

    # Sequence protocol
    def __getitem__(self, i: Any) -> Any:
        return self.commands[i]

    def __len__(self) -> int:
        return len(self.commands)

    def __iter__(self) -> Iterator[SuitCommand]:
        return iter(self.commands)

    @classmethod
    def decode(
        cls,
        data: bytes,
        *,
        path: str = "sequence",
        shared: bool = False,
        limits: Limits = DEFAULT_LIMITS,
        depth: int = 0,
    ) -> CommandSequence:
        """Decode a bstr-wrapped command sequence from its content bytes (kept as given)."""
        if depth > limits.max_sequence_depth:
            raise LimitExceededError(
                f"command sequences nested deeper than {limits.max_sequence_depth}", path=path
            )
        items = cbor.loads(data, what="SUIT_Command_Sequence", path=path, limits=limits)
        seq = cls.from_cbor(items, path=path, shared=shared, limits=limits, depth=depth)
        object.__setattr__(seq, "_encoded", bytes(data))
        return seq

    @classmethod
    def from_cbor(
        cls,
        items: Any,
        *,
        path: str = "sequence",
        shared: bool = False,
        limits: Limits = DEFAULT_LIMITS,
        depth: int = 0,
    ) -> CommandSequence:
        if type(items) is not list:
            raise DecodeError("a command sequence must be an array", path=path)
        n = len(items)
        if n == 0:
            raise DecodeError("a command sequence must not be empty", path=path)
        if n & 1:
            raise DecodeError(
                "a command sequence must hold (command, argument) pairs: odd number of items",
                path=path,
            )
        if n // 2 > limits.max_commands:
            raise LimitExceededError(
                f"a command sequence holds {n // 2} commands, more than {limits.max_commands}",
                path=path,
            )
        commands: list[SuitCommand] = []
        for i in range(0, n, 2):
            code, arg = items[i], items[i + 1]
            where = f"{path}[{i // 2}]"
            if type(code) is not int:
                raise DecodeError(f"command code {code!r} is not an integer", path=where)
            commands.append(_decode_command(code, arg, where, shared, limits, depth))
        seq = cls.__new__(cls)
        object.__setattr__(seq, "commands", tuple(commands))
        object.__setattr__(seq, "_encoded", None)
        return seq

    def to_cbor(self) -> list[Any]:
        out: list[Any] = []
        for c in self.commands:
            out.append(c.code)
            out.append(c.argument_cbor())
        return out

    @property
    def encoded(self) -> bytes:
        """The encoded sequence (the bytes it was decoded from, if it was decoded)."""
        return cbor.cached_encoding(self)

    def to_diag(self) -> list[Any]:
        out: list[Any] = []
        for c in self.commands:
            out.append(cbor.Comment(c.code, c.name))
            out.append(c.argument_diag())
        return out

    def to_json(self) -> list[Any]:
        return [{"command": c.name, "argument": c.argument_json()} for c in self.commands]

    def walk(self) -> Iterator[SuitCommand]:
        """Every command, including those nested in try-each and run-sequence, depth first."""
        for c in self.commands:
            yield c
            if isinstance(c, TryEach):
                for s in c.sequences:
                    yield from s.walk()
            elif isinstance(c, RunSequence):
                yield from c.sequence.walk()


# Command codes as plain ints for the decoder's hot path (an IntEnum member lookup costs far more
# than an int comparison in CPython 3.11).
_SET_COMPONENT_INDEX = int(Command.SET_COMPONENT_INDEX)
_OVERRIDE_PARAMETERS = int(Command.OVERRIDE_PARAMETERS)
_SET_PARAMETERS = int(Command.SET_PARAMETERS)
_TRY_EACH = int(Command.TRY_EACH)
_RUN_SEQUENCE = int(Command.RUN_SEQUENCE)
_SHARED_DIRECTIVE_CODES = frozenset(int(c) for c in _SHARED_DIRECTIVES)
_CONDITION_CODES = frozenset(int(c) for c in Command if c.is_condition)
_POLICY_CODES = frozenset(int(c) for c in REPORTING_POLICY_COMMANDS)


def _decode_command(
    code: int, arg: Any, path: str, shared: bool, limits: Limits, depth: int
) -> SuitCommand:
    if (
        shared
        and code >= 0
        and code not in _SHARED_DIRECTIVE_CODES
        and code not in _CONDITION_CODES
    ):
        try:
            known = Command(code)
        except ValueError:
            known = None
        if known is not None:
            raise DecodeError(
                f"{known.spec_name} is not allowed in the shared sequence "
                "(SUIT_Shared_Sequence admits conditions, set-component-index, run-sequence, "
                "try-each and override-parameters; manifest §8.4.5)",
                path=path,
            )
    if code in _POLICY_CODES:
        if type(arg) is not int or arg < 0:
            raise DecodeError(f"{command_name(code)} takes a reporting policy (uint)", path=path)
        return policy_command(code, arg)
    if code == _OVERRIDE_PARAMETERS:
        return OverrideParameters(Parameters.from_cbor(arg, path))
    if code == _SET_COMPONENT_INDEX:
        return SetComponentIndex(_index_arg(arg, path))
    if code == _TRY_EACH:
        return _try_each(arg, path, shared, limits, depth)
    if code == _RUN_SEQUENCE:
        if type(arg) is not bytes:
            raise DecodeError("run-sequence takes a bstr-wrapped command sequence", path=path)
        return RunSequence(
            CommandSequence.decode(
                arg, path=f"{path}/run-sequence", shared=shared, limits=limits, depth=depth + 1
            )
        )
    if code == _SET_PARAMETERS:
        return SetParameters(Parameters.from_cbor(arg, path))
    if code < 0:
        if arg is not None and type(arg) not in (bytes, str, int):
            raise DecodeError("a custom command takes bstr / tstr / int / nil", path=path)
        return CustomCommand(code, arg)
    return UnknownCommand(code, arg)


def _index_arg(arg: Any, path: str) -> IndexArg:
    t = type(arg)
    if t is int and arg >= 0:
        return int(arg)
    if arg is True:
        return True
    if t is list and arg and all(type(i) is int and i >= 0 for i in arg):
        return tuple(arg)
    raise DecodeError(
        "set-component-index takes uint, true, or a non-empty array of uint (§8.4.10.1)",
        path=path,
    )


def _try_each(arg: Any, path: str, shared: bool, limits: Limits, depth: int) -> TryEach:
    if type(arg) is not list:
        raise DecodeError("try-each takes an array of bstr-wrapped command sequences", path=path)
    nil = bool(arg) and arg[-1] is None
    seqs = arg[:-1] if nil else arg
    if len(seqs) < 2:
        raise DecodeError(
            "try-each needs at least two command sequences (2* bstr .cbor ...)", path=path
        )
    out = []
    for j, s in enumerate(seqs):
        if type(s) is not bytes:
            raise DecodeError(
                "each try-each alternative must be a bstr-wrapped command sequence",
                path=f"{path}/try-each[{j}]",
            )
        out.append(
            CommandSequence.decode(
                s, path=f"{path}/try-each[{j}]", shared=shared, limits=limits, depth=depth + 1
            )
        )
    return TryEach(tuple(out), nil)
