"""Byte offsets of the commands in an encoded SUIT_Command_Sequence.

A SUIT_Record names a command by the number of bytes into its top-level command sequence
(draft-ietf-suit-report §3, suit-record-section-offset). These helpers walk the encoded bytes
(kept as received, so the offsets are those of the signed manifest) without decoding values.
"""

from __future__ import annotations

from functools import lru_cache


def _head(data: bytes, pos: int) -> tuple[int, int, int]:
    """(major type, argument, position after the head) of the item at ``pos``."""
    ib = data[pos]
    major, info = ib >> 5, ib & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    n = 1 << (info - 24)  # 24 -> 1, 25 -> 2, 26 -> 4, 27 -> 8
    if info > 27:
        raise ValueError("indefinite or reserved CBOR length in a command sequence")
    return major, int.from_bytes(data[pos : pos + n], "big"), pos + n


def skip(data: bytes, pos: int) -> int:
    """The position just after the CBOR item at ``pos``."""
    major, arg, pos = _head(data, pos)
    if major in (2, 3):
        return pos + arg
    if major == 4:
        for _ in range(arg):
            pos = skip(data, pos)
        return pos
    if major == 5:
        for _ in range(2 * arg):
            pos = skip(data, pos)
        return pos
    if major == 6:
        return skip(data, pos)
    return pos


@lru_cache(maxsize=1024)
def command_offsets(encoded: bytes) -> tuple[tuple[int, int], ...]:
    """For each command of the sequence: (offset of its code, offset of its argument)."""
    major, n, pos = _head(encoded, 0)
    if major != 4:
        raise ValueError("a command sequence is an array")
    out = []
    for _ in range(n // 2):
        code_at = pos
        pos = skip(encoded, pos)
        out.append((code_at, pos))
        pos = skip(encoded, pos)
    return tuple(out)


@lru_cache(maxsize=1024)
def nested_offsets(encoded: bytes, arg_offset: int) -> tuple[int, ...]:
    """Where the contents of the bstr-wrapped sequences of a run-sequence (one bstr) or try-each
    (an array of bstr / nil) argument at ``arg_offset`` start."""
    major, n, pos = _head(encoded, arg_offset)
    if major == 2:
        return (pos,)
    out = []
    for _ in range(n):
        m, _, content = _head(encoded, pos)
        out.append(content if m == 2 else -1)
        pos = skip(encoded, pos)
    return tuple(out)
