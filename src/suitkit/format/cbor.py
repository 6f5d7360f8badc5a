"""The CBOR layer: deterministic encoding, strict decoding, diagnostic notation.

Encoding follows RFC 8949 §4.2.1 ("Core Deterministic Encoding"): preferred (shortest) argument
encoding, definite lengths only, and map keys sorted in the *bytewise lexicographic order of their
deterministic encodings*. cbor2's ``canonical=True`` implements the older RFC 7049 length-first
order instead (it puts -1 before 24), so suitkit sorts maps itself and lets cbor2 write them in
that order.

Decoding is strict (manifest §8 asks for deterministic CBOR; RFC 8949 §5.6 for duplicate keys):
duplicate map keys, indefinite-length items, trailing bytes after the item, nesting deeper than
:attr:`Limits.max_depth`, inputs larger than :attr:`Limits.max_input` and lengths that run past the
end of the input are all :class:`~suitkit.errors.DecodeError`.

cbor2's C decoder does the work; this module adds the checks it lacks and turns its exceptions
into suitkit errors that name where the failure was.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from suitkit.errors import DecodeError, LimitExceededError

CBORTag = cbor2.CBORTag

__all__ = [
    "DEFAULT_LIMITS",
    "CBORTag",
    "Comment",
    "Limits",
    "Raw",
    "Wrapped",
    "bstr_span",
    "diag",
    "dumps",
    "key_order",
    "loads",
    "sorted_map",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on untrusted input, checked before anything is allocated for it.

    The defaults suit a gateway or a simulated device; a Class 1 device would use far smaller ones.
    """

    #: Largest CBOR input decoded at once (an envelope without integrated payloads is far smaller).
    max_input: int = 64 * 1024 * 1024
    #: Deepest container nesting inside one bstr-wrapped layer.
    max_depth: int = 16
    #: Deepest nesting of bstr-wrapped command sequences (try-each / run-sequence).
    max_sequence_depth: int = 8
    #: Most components a manifest may declare.
    max_components: int = 64
    #: Most commands in one command sequence.
    max_commands: int = 1024


DEFAULT_LIMITS = Limits()


class Raw:
    """An item that is already CBOR-encoded; :func:`dumps` writes its bytes unchanged.

    suitkit keeps the bytes it was given (bstr-wrapped layers, signed structures) and writes them
    back as they were, so digests and signatures over them stay valid.
    """

    __slots__ = ("encoded",)

    def __init__(self, encoded: bytes) -> None:
        self.encoded = encoded

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Raw) and other.encoded == self.encoded

    def __hash__(self) -> int:
        return hash(self.encoded)

    def __repr__(self) -> str:
        return f"Raw({self.encoded.hex()})"


# --- encoding --------------------------------------------------------------------------------


def key_order(key: Any) -> tuple[int, Any]:
    """Sort key giving RFC 8949 §4.2.1 order: bytewise lexicographic order of encoded keys.

    Integers are ordered without encoding them: unsigned integers (major type 0) come first in
    numeric order, then negative integers (major type 1) by increasing magnitude, which is exactly
    how their shortest encodings compare bytewise. Every other key is compared by its encoding.
    """
    if isinstance(key, int) and type(key) is not bool:
        return (0, int(key)) if key >= 0 else (1, -1 - int(key))
    return (2, dumps(key))


def sorted_map(mapping: Mapping[Any, Any]) -> dict[Any, Any]:
    """A copy of ``mapping`` with its keys in deterministic order (keys only; values untouched)."""
    return {k: mapping[k] for k in sorted(mapping, key=key_order)}


def _default(encoder: Any, value: Any) -> None:
    if isinstance(value, Raw):
        encoder.write(value.encoded)
        return
    if isinstance(value, Wrapped):
        encoder.encode(dumps(value.value))
        return
    if isinstance(value, Comment):
        encoder.encode(_normalise(value.value))
        return
    raise TypeError(f"cannot encode {type(value).__name__} as CBOR")


_LEAVES = frozenset({int, bytes, str, bool, type(None), Raw})


def _normalise(obj: Any) -> Any:
    """Sort every map (recursively) so that cbor2, which keeps insertion order, writes them
    deterministically. Leaves that need no work are returned as they are."""
    t = type(obj)
    if t in _LEAVES:
        return obj
    if t is list or t is tuple:
        return [v if type(v) in _LEAVES else _normalise(v) for v in obj]
    if t is dict:
        if len(obj) < 2:
            return {k: _normalise(v) for k, v in obj.items()}
        return {k: _normalise(obj[k]) for k in sorted(obj, key=key_order)}
    if t is CBORTag:
        return CBORTag(obj.tag, _normalise(obj.value))
    if isinstance(obj, Mapping):
        return {k: _normalise(obj[k]) for k in sorted(obj, key=key_order)}
    return obj


def cached_encoding(obj: Any) -> bytes:
    """The deterministic encoding of a frozen model object (anything with ``to_cbor()`` and an
    ``_encoded`` slot): the bytes it was decoded from, or else its encoding, computed once.
    Model objects are immutable, so the first encoding stays right."""
    encoded: bytes | None = obj._encoded
    if encoded is None:
        encoded = dumps(obj.to_cbor())
        object.__setattr__(obj, "_encoded", encoded)
    return encoded


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as deterministic CBOR (RFC 8949 §4.2.1).

    Accepts int, bool, None, bytes, str, list/tuple, dict (any Mapping), :class:`CBORTag`, and
    the markers :class:`Raw` (written verbatim) and :class:`Wrapped` (encoded, then bstr-wrapped).
    Floats are refused: SUIT has none, and deterministic float encoding is a trap.
    """
    if isinstance(obj, float):
        raise TypeError("suitkit does not encode floating-point values")
    return bytes(cbor2.dumps(_normalise(obj), default=_default))


# --- decoding --------------------------------------------------------------------------------

_local = threading.local()


def _decoder(max_depth: int) -> Any:
    dec = getattr(_local, "decoder", None)
    if dec is None or dec.max_depth != max_depth:
        dec = cbor2.CBORDecoder(
            io.BytesIO(b""),
            allow_indefinite=False,
            allow_duplicate_keys=False,
            max_depth=max_depth,
        )
        _local.decoder = dec
    return dec


def loads(
    data: bytes,
    *,
    what: str = "CBOR item",
    path: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    """Decode exactly one CBOR item from ``data``, strictly.

    ``what`` names the item in error messages ("SUIT_Manifest", "COSE_Sign1", ...); ``path`` says
    where it sits in the enclosing document.
    """
    if type(data) is not bytes:
        if not isinstance(data, bytearray | memoryview):
            raise TypeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
    n = len(data)
    if n > limits.max_input:
        raise LimitExceededError(
            f"{what} is {n} bytes, more than the limit of {limits.max_input}", path=path
        )
    if n == 0:
        raise DecodeError(f"{what} is empty", path=path)
    if n <= _FAST_PATH_MAX:
        # Fast path: cbor2's C decoder with its strict flags (no duplicate keys, no indefinite
        # lengths, bounded depth) over ``[data, nonce]``, where the nonce is a random 16-byte
        # string unknown to the sender. The result is ``[item, nonce]`` exactly when ``data``
        # holds one complete item and nothing after it (a trailing byte would be decoded as
        # the second element instead of the nonce). Any failure falls through to the strict
        # decoder below, which names the problem precisely.
        #
        # cbor2 decodes the content of a tag as immutable (tuple, frozendict), which suitkit
        # then has to thaw. For the SUIT / COSE structure tags (107, 16-18, 96-98), which cbor2
        # gives no meaning to, the tag head is stripped here and the content decoded on its own
        # (mutable), one nesting level shallower, as a tag counts as one level in cbor2.
        if not 0xD0 <= data[0] <= 0xD8:
            try:
                framed = _plain_loads(
                    b"\x82" + data + _NONCE_ITEM,
                    allow_indefinite=False,
                    allow_duplicate_keys=False,
                    max_depth=limits.max_depth + 1,
                )
            except Exception:  # the strict path below reports it
                framed = None
            # a successful decode of the definite-length framing array is a list of two
            if framed is not None and framed[1] == _NONCE:
                value = framed[0]
                return _thaw(value) if type(value) is CBORTag else value
        else:
            value = _loads_tagged(data, limits.max_depth)
            if value is not _MISS:
                return value
    stream = io.BytesIO(data)
    dec = _decoder(limits.max_depth)
    dec.fp = stream
    try:
        value = dec.decode()
    except cbor2.CBORDecodeEOF as exc:
        raise DecodeError(f"{what} is truncated: {exc}", path=path) from None
    except cbor2.CBORDecodeError as exc:
        msg = str(exc)
        if "depth" in msg:
            raise LimitExceededError(f"{what} is nested too deeply: {msg}", path=path) from None
        raise DecodeError(f"{what} is not well-formed CBOR: {msg}", path=path) from None
    except (RecursionError, MemoryError, OverflowError, ValueError, TypeError) as exc:
        raise DecodeError(f"{what} cannot be decoded: {exc}", path=path) from None
    finally:
        dec.fp = _EMPTY
    end = stream.tell()
    if end != n:
        raise DecodeError(
            f"{what} has {n - end} trailing byte(s) after the item at offset {end}", path=path
        )
    if type(value) is CBORTag:
        # cbor2 decodes the content of a tag as immutable (tuple, frozendict); suitkit's
        # decoders expect the same types everywhere, so give lists and dicts back.
        return _thaw(value)
    return value


_FROZENDICT = cbor2.frozendict


_CONTAINERS = (tuple, _FROZENDICT, CBORTag)


def _thaw(value: Any) -> Any:
    t = type(value)
    if t is tuple:
        return [_thaw(v) if type(v) in _CONTAINERS else v for v in value]
    if t is _FROZENDICT:
        return {k: _thaw(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if t is CBORTag:
        return CBORTag(value.tag, _thaw(value.value))
    return value


_MISS = object()

_NO_SPAN: tuple[int, int] = (-1, -1)


def bstr_span(data: bytes, pos: int) -> tuple[int, int]:
    """Where the content of the byte string whose head is at ``pos`` lies, ``(start, end)``;
    ``(-1, -1)`` unless a definite-length byte string (length below 65536) that ends within
    ``data`` starts there.

    For exact-layout fast paths (the envelope map, SUIT_Authentication, COSE_Sign1): a caller
    that finds its bytes laid out exactly as expected, every item accounted for up to the last
    byte, knows the value :func:`loads` would give without calling it; on anything else it calls
    :func:`loads`, which decodes strictly and reports what is wrong. Indefinite lengths and
    truncated strings never match here."""
    n = len(data)
    if pos >= n:
        return _NO_SPAN
    b = data[pos]
    if 0x40 <= b <= 0x57:
        start = pos + 1
        end = start + b - 0x40
    elif b == 0x58 and pos + 1 < n:
        start = pos + 2
        end = start + data[pos + 1]
    elif b == 0x59 and pos + 2 < n:
        start = pos + 3
        end = start + (data[pos + 1] << 8 | data[pos + 2])
    else:
        return _NO_SPAN
    return (start, end) if end <= n else _NO_SPAN


def _loads_tagged(data: bytes, max_depth: int) -> Any:
    """The fast path for an item whose first byte is 0xD0-0xD8: a SUIT / COSE structure tag
    (cbor2 has no decoder for them) has its head stripped and its content decoded on its own,
    mutable, one nesting level shallower (a tag counts as one level in cbor2). Returns
    :data:`_MISS` for anything else or any failure (the strict path then reports it)."""
    tag: int | None = _STRIP_1.get(data[0])
    if tag is not None:
        body = data[1:]
    elif data[0] == 0xD8 and len(data) > 1 and data[1] in _STRIP_TAGS:
        tag = data[1]
        body = data[2:]
    else:
        body = data
        max_depth += 1
    if not body or max_depth <= 0:
        return _MISS
    try:
        framed = _plain_loads(
            b"\x82" + body + _NONCE_ITEM,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            max_depth=max_depth,
        )
    except Exception:  # the strict path reports it
        return _MISS
    if framed[1] != _NONCE:
        return _MISS
    value = framed[0]
    if tag is None:
        return _thaw(value) if type(value) is CBORTag else value
    return CBORTag(tag, _thaw_nested(value))


def _thaw_nested(value: Any) -> Any:
    """Thaw the tags nested inside mutable containers (what :func:`_thaw` does for the content
    of a top-level tag whose head the fast path stripped): lists and dicts are walked in place,
    scalars are left alone."""
    t = type(value)
    if t is list:
        for i, v in enumerate(value):
            if v and type(v) in _NESTED:
                value[i] = _thaw_nested(v)
    elif t is dict:
        for k, v in value.items():
            if v and type(v) in _NESTED:
                value[k] = _thaw_nested(v)
    elif t is CBORTag:
        return _thaw(value)
    return value


_NESTED = frozenset({list, dict, CBORTag})
#: Tags whose content the fast path decodes without the tag (cbor2 has no decoder for them):
#: COSE_Encrypt0/Mac0/Sign1 (16-18), COSE_Encrypt/Mac/Sign (96-98), SUIT_Envelope (107).
_STRIP_TAGS = frozenset({16, 17, 18, 96, 97, 98, 107})
_STRIP_1 = {0xC0 + t: t for t in _STRIP_TAGS if t < 24}
_EMPTY = io.BytesIO(b"")
_FAST_PATH_MAX = 64 * 1024
_NONCE = os.urandom(16)
_NONCE_ITEM = b"\x50" + _NONCE  # bstr(16)
_plain_loads = cbor2.loads


def iter_items(value: Any) -> Iterator[Any]:
    """Yield every item nested in ``value`` (depth first), for callers that scan decoded data."""
    yield value
    if isinstance(value, list | tuple):
        for v in value:
            yield from iter_items(v)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from iter_items(k)
            yield from iter_items(v)
    elif isinstance(value, CBORTag):
        yield from iter_items(value.value)


# --- diagnostic notation ---------------------------------------------------------------------


class Wrapped:
    """Marks a value that is bstr-wrapped CBOR (``bstr .cbor X``): diag shows ``<< ... >>``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Comment:
    """A value with a diagnostic-notation comment (``/ name /``), shown before it, or after it
    when ``after`` is true (the spec's appendix puts UUIDs after their bytes that way)."""

    __slots__ = ("after", "comment", "value")

    def __init__(self, value: Any, comment: str, *, after: bool = False) -> None:
        self.value = value
        self.comment = comment
        self.after = after


KeyNamer = Callable[[Any], str | None]


def _diag_text(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def diag(value: Any, *, indent: int = 2, comments: bool = True) -> str:
    """Render ``value`` in CBOR diagnostic notation (RFC 8949 §8), in the layout of the SUIT
    spec's appendix: one item per line, ``<< >>`` around :class:`Wrapped` values, and
    ``/ name /`` comments from :class:`Comment` markers when ``comments`` is true."""
    lines: list[str] = []
    _diag(value, 0, indent, comments, lines, "", "")
    return "\n".join(lines)


def _scalar(value: Any) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return f"h'{bytes(value).hex()}'"
    if isinstance(value, str):
        return _diag_text(value)
    if isinstance(value, Raw):
        return f"<raw h'{value.encoded.hex()}'>"
    if value is cbor2.undefined:
        return "undefined"
    if isinstance(value, cbor2.CBORSimpleValue):
        return f"simple({value.value})"
    if isinstance(value, float):
        return repr(value)
    return None


def _diag(
    value: Any,
    level: int,
    indent: int,
    comments: bool,
    lines: list[str],
    prefix: str,
    suffix: str,
) -> None:
    pad = " " * (indent * level)
    comment = ""
    trailer = ""
    while isinstance(value, Comment):
        if comments:
            if value.after:
                trailer = f" / {value.comment} /"
            else:
                comment = f"/ {value.comment} / "
        value = value.value
    scalar = _scalar(value)
    if scalar is not None:
        lines.append(f"{pad}{prefix}{comment}{scalar}{trailer}{suffix}")
        return
    if isinstance(value, Wrapped):
        _diag(value.value, level, indent, comments, lines, f"{prefix}{comment}<< ", " >>" + suffix)
        return
    if isinstance(value, CBORTag):
        inner: list[str] = []
        _diag(value.value, level, indent, comments, inner, f"{value.tag}(", ")" + suffix)
        first = inner[0][len(pad) :]
        inner[0] = f"{pad}{prefix}{comment}{first}"
        lines.extend(inner)
        return
    if isinstance(value, Mapping):
        if not value:
            lines.append(f"{pad}{prefix}{comment}{{}}{suffix}")
            return
        lines.append(f"{pad}{prefix}{comment}{{")
        items = list(value.items())
        for i, (k, v) in enumerate(items):
            sep = "," if i < len(items) - 1 else ""
            key_text = _key_diag(k, comments)
            if key_text is not None:
                _diag(v, level + 1, indent, comments, lines, f"{key_text}: ", sep)
                continue
            # a composite key (component identifiers in SUIT_Text_LMap) spans lines too
            key_lines: list[str] = []
            _diag(k, level + 1, indent, comments, key_lines, "", "")
            value_lines: list[str] = []
            _diag(v, level + 1, indent, comments, value_lines, "", sep)
            inner_pad = " " * (indent * (level + 1))
            lines.extend(key_lines[:-1])
            lines.append(key_lines[-1] + ": " + value_lines[0][len(inner_pad) :])
            lines.extend(value_lines[1:])
        lines.append(f"{pad}}}{suffix}")
        return
    if isinstance(value, Sequence):
        if not value:
            lines.append(f"{pad}{prefix}{comment}[]{suffix}")
            return
        lines.append(f"{pad}{prefix}{comment}[")
        for i, v in enumerate(value):
            sep = "," if i < len(value) - 1 else ""
            _diag(v, level + 1, indent, comments, lines, "", sep)
        lines.append(f"{pad}]{suffix}")
        return
    raise TypeError(f"cannot show {type(value).__name__} in diagnostic notation")


def _key_diag(key: Any, comments: bool) -> str | None:
    """A scalar map key as text (with its comment); None for a composite key."""
    comment = ""
    while isinstance(key, Comment):
        if comments:
            comment = f"/ {key.comment} / "
        key = key.value
    scalar = _scalar(key)
    return None if scalar is None else f"{comment}{scalar}"


def _inline(value: Any) -> str:
    scalar = _scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_inline(k)}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, CBORTag):
        return f"{value.tag}({_inline(value.value)})"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return repr(value)


#: Tags of the COSE structures whose first element is a bstr-wrapped protected header.
_COSE_TAGS = (16, 17, 18, 96, 97, 98)  # RFC 9052 §2: Encrypt0, Mac0, Sign1, Encrypt, Mac, Sign


def cose_diag(value: Any) -> Any:
    """Diagnostic form of a COSE structure: protected headers shown as ``<< {...} >>``, and the
    same for the signers / recipients nested in it (RFC 9052 §4.1, §5.1, §6.1)."""
    if type(value) is CBORTag and value.tag in _COSE_TAGS:
        return CBORTag(value.tag, cose_diag(value.value))
    if type(value) is list and len(value) >= 3 and type(value[0]) is bytes:
        out = list(value)
        if out[0]:
            with contextlib.suppress(DecodeError):
                out[0] = Wrapped(loads(out[0]))
        for i in range(3, len(out)):
            if type(out[i]) is list and out[i] and all(type(x) is list for x in out[i]):
                out[i] = [cose_diag(x) for x in out[i]]
        return out
    return value
