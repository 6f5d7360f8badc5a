"""A readable trace of a run: one line per command event (used by ``suitkit device``)."""

from __future__ import annotations

from typing import Any

from suitkit.device.events import CommandEvent, RunResult
from suitkit.format.digest import Digest
from suitkit.format.parameters import EncryptionInfo, parameter_name


def _value(v: Any) -> str:
    if isinstance(v, Digest):
        return f"{v.algorithm_name}:{v.value.hex()}"
    if isinstance(v, bytes):
        return f"h'{v.hex()}'" if len(v) <= 32 else f"h'{v[:16].hex()}...' ({len(v)} bytes)"
    if isinstance(v, EncryptionInfo):
        return _encryption_info(v)
    return str(v)


def _encryption_info(info: EncryptionInfo) -> str:
    """``<<COSE_Encrypt A128GCM, A128KW kid 'kid-1'>>``: algorithms and kids, not the bytes."""
    from suitkit.encryption.cose_encrypt import CoseEncrypt
    from suitkit.errors import SuitError

    try:
        enc = CoseEncrypt.decode(info.encoded)
        recipients = []
        for rec in enc.recipients:
            try:
                alg = rec.alg.spec_name
            except SuitError:
                alg = "?"
            kid = rec.kid
            if kid is not None:
                shown = (
                    f"'{kid.decode()}'"
                    if kid and all(0x20 < b < 0x7F for b in kid) and b"'" not in kid
                    else f"h'{kid.hex()}'"
                )
                alg += f" kid {shown}"
            recipients.append(alg)
        return f"<<COSE_Encrypt {enc.alg.spec_name}, {'; '.join(recipients)}>>"
    except SuitError:
        return f"<<{len(info.encoded)} bytes>>"


def _params(p: Any) -> str:
    return ", ".join(f"{parameter_name(k)}={_value(v)}" for k, v in p.items())


def event_line(ev: CommandEvent) -> str:
    """``[install+3] #0 directive-fetch uri=... -> ok (size=..., digest=...)``."""
    indent = "  " * ev.depth
    comp = f"#{ev.component_index}" if ev.component_index is not None else "  "
    head = f"[{ev.section_name}+{ev.offset}] {indent}{comp} {ev.name}"
    if ev.parameters:
        head += f" {_params(ev.parameters)}"
    if ev.ok is None:
        result = "..." + (f" ({ev.note})" if ev.note else "")
        return f"{head} {result}"
    if ev.ok:
        result = "ok"
    else:
        result = "soft-failed" if ev.soft else "FAILED"
        if ev.error is not None:
            result += f": {ev.error.message} [{ev.error.reason.spec_name}]"
    extra = []
    if ev.measured:
        extra.append(f"measured {_params(ev.measured)}")
    if ev.note and ev.ok is not False:
        extra.append(ev.note)
    if extra:
        result += " (" + "; ".join(extra) + ")"
    return f"{head} -> {result}"


def summary_line(result: RunResult) -> str:
    if result.ok:
        invoked = f", invoked {len(result.invoked)} component(s)" if result.invoked else ""
        return f"{result.procedure.value}: OK (sequence number {result.sequence_number}{invoked})"
    assert result.error is not None
    return f"{result.procedure.value}: REJECTED: {result.error}"


def trace_lines(result: RunResult) -> list[str]:
    return [event_line(ev) for ev in result.events] + [summary_line(result)]
