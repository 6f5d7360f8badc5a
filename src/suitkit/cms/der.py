"""A small BER/DER walker and encoder for the big CMS structures.

pyasn1 decodes a 64 MiB OCTET STRING slowly and copies it several times, so the layers that
carry the firmware (ContentInfo, SignedData, EncapsulatedContentInfo, EncryptedData,
CompressedData) are walked here: only identifier and length octets are read, and the content
octets stay :class:`memoryview` slices of the caller's buffer. The small structures inside
(AlgorithmIdentifier, SignerInfo, attributes) are handed to pyasn1 as bytes.

Two readers:

* random access over a buffer (:func:`read_tlv`, :func:`children`, :func:`octet_string_segments`),
  accepting BER (indefinite lengths, constructed strings) as RFC 4108 §1.4 allows for the
  unsigned layers;
* a pull reader over a stream of chunks (:class:`ChunkReader`, :func:`read_header`,
  :func:`read_element`, :func:`stream_octet_string`) for content recovered by decryption, which
  is never held in memory as a whole.

Malformed input raises :class:`DerError`; the caller turns it into the RFC 4108 error code of the
layer it was reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

#: Maximum nesting of constructed elements the walkers follow (denial-of-service bound).
MAX_DEPTH = 40
#: Maximum number of length octets (8 octets = 2**64 - 1, far beyond any real buffer).
_MAX_LENGTH_OCTETS = 8
#: Most elements one buffer may hold (OpenSSL streams 4 KiB segments: 16 Ki for 64 MiB).
MAX_ELEMENTS = 1 << 18
#: Upper bound for the small elements :func:`read_element` assembles from a stream.
SMALL_ELEMENT_LIMIT = 1 << 16

# Universal tag numbers (X.680 §8.4).
BOOLEAN = 1
INTEGER = 2
BIT_STRING = 3
OCTET_STRING = 4
NULL = 5
OBJECT_IDENTIFIER = 6
ENUMERATED = 10
UTF8_STRING = 12
SEQUENCE = 16
SET = 17
UTC_TIME = 23
GENERALIZED_TIME = 24

UNIVERSAL = 0
APPLICATION = 1
CONTEXT = 2
PRIVATE = 3


class DerError(ValueError):
    """The input is not well-formed BER (or not the element expected)."""


@dataclass(frozen=True, slots=True)
class Tlv:
    """One element located in a buffer: its tag and where its content octets are."""

    cls: int
    constructed: bool
    number: int
    start: int
    content_start: int
    content_end: int
    end: int
    indefinite: bool

    def is_universal(self, number: int) -> bool:
        return self.cls == UNIVERSAL and self.number == number

    def is_context(self, number: int) -> bool:
        return self.cls == CONTEXT and self.number == number

    @property
    def content_length(self) -> int:
        return self.content_end - self.content_start

    def describe(self) -> str:
        names = {
            UNIVERSAL: "UNIVERSAL",
            APPLICATION: "APPLICATION",
            CONTEXT: "",
            PRIVATE: "PRIVATE",
        }
        if self.cls == CONTEXT:
            return f"[{self.number}]"
        return f"{names[self.cls]} {self.number}".strip()


def _read_identifier(buf: memoryview, pos: int, limit: int) -> tuple[int, bool, int, int]:
    if pos >= limit:
        raise DerError("truncated: identifier octet missing")
    first = buf[pos]
    pos += 1
    cls = first >> 6
    constructed = bool(first & 0x20)
    number = first & 0x1F
    if number == 0x1F:
        number = 0
        count = 0
        while True:
            if pos >= limit:
                raise DerError("truncated: tag number")
            octet = buf[pos]
            pos += 1
            if count == 0 and octet == 0x80:
                raise DerError("tag number with a leading zero octet")
            number = (number << 7) | (octet & 0x7F)
            count += 1
            if count > 4:
                raise DerError("tag number too large")
            if not octet & 0x80:
                break
        if number < 0x1F:
            raise DerError("high-tag-number form for a low tag number")
    return cls, constructed, number, pos


def _read_length(buf: memoryview, pos: int, limit: int) -> tuple[int | None, int]:
    if pos >= limit:
        raise DerError("truncated: length octet missing")
    first = buf[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    if first == 0x80:
        return None, pos
    count = first & 0x7F
    if count > _MAX_LENGTH_OCTETS or first == 0xFF:
        raise DerError("length field too long")
    if pos + count > limit:
        raise DerError("truncated: length octets")
    length = int.from_bytes(buf[pos : pos + count], "big")
    return length, pos + count


def read_tlv(buf: memoryview, pos: int, limit: int | None = None, depth: int = 0) -> Tlv:
    """The element starting at ``pos`` (which must end at or before ``limit``)."""
    if limit is None:
        limit = len(buf)
    if depth > MAX_DEPTH:
        raise DerError("nesting too deep")
    cls, constructed, number, p = _read_identifier(buf, pos, limit)
    length, p = _read_length(buf, p, limit)
    if length is not None:
        end = p + length
        if end > limit:
            raise DerError(f"truncated: element at offset {pos} needs {length} content octets")
        return Tlv(cls, constructed, number, pos, p, end, end, False)
    if not constructed:
        raise DerError("indefinite length on a primitive element")
    q = p
    while True:
        if q + 2 <= limit and buf[q] == 0 and buf[q + 1] == 0:
            return Tlv(cls, constructed, number, pos, p, q, q + 2, True)
        child = read_tlv(buf, q, limit, depth + 1)
        if child.cls == UNIVERSAL and child.number == 0:
            raise DerError("malformed end-of-contents")
        q = child.end


def children(buf: memoryview, tlv: Tlv, depth: int = 0) -> list[Tlv]:
    """The elements inside a constructed element."""
    if not tlv.constructed:
        raise DerError(f"{tlv.describe()} is not constructed")
    out = []
    pos = tlv.content_start
    while pos < tlv.content_end:
        child = read_tlv(buf, pos, tlv.content_end, depth + 1)
        if child.cls == UNIVERSAL and child.number == 0:
            raise DerError("unexpected end-of-contents")
        out.append(child)
        pos = child.end
    return out


def check_tree(buf: memoryview, tlv: Tlv, depth: int = 0, budget: list[int] | None = None) -> None:
    """Raise :class:`DerError` unless every constructed descendant of ``tlv`` is well formed.

    At most :data:`MAX_ELEMENTS` elements are visited: input made of millions of tiny elements
    (legal BER, e.g. a constructed OCTET STRING of one-octet segments) is refused rather than
    walked for minutes.
    """
    if budget is None:
        budget = [MAX_ELEMENTS]
    if depth > MAX_DEPTH:
        raise DerError("nesting too deep")
    if tlv.constructed:
        for child in children(buf, tlv, depth):
            budget[0] -= 1
            if budget[0] < 0:
                raise DerError(f"more than {MAX_ELEMENTS} elements")
            check_tree(buf, child, depth + 1, budget)


def read_single(buf: memoryview) -> Tlv:
    """The one well-formed element that makes up all of ``buf`` (no trailing octets)."""
    tlv = read_tlv(buf, 0, len(buf))
    if tlv.end != len(buf):
        raise DerError(f"{len(buf) - tlv.end} trailing octets after the element")
    check_tree(buf, tlv)
    return tlv


def octet_string_segments(buf: memoryview, tlv: Tlv, depth: int = 0) -> list[memoryview]:
    """The content of an OCTET STRING (primitive or BER constructed) as buffer slices."""
    if not tlv.constructed:
        return [buf[tlv.content_start : tlv.content_end]]
    if depth > MAX_DEPTH:
        raise DerError("nesting too deep")
    out: list[memoryview] = []
    for child in children(buf, tlv, depth):
        if not child.is_universal(OCTET_STRING):
            raise DerError("constructed OCTET STRING with a non-OCTET STRING segment")
        out.extend(octet_string_segments(buf, child, depth + 1))
    return out


def element_bytes(buf: memoryview, tlv: Tlv) -> bytes:
    return bytes(buf[tlv.start : tlv.end])


def content_bytes(buf: memoryview, tlv: Tlv) -> bytes:
    return bytes(buf[tlv.content_start : tlv.content_end])


# --- Primitive value decoders ------------------------------------------------------------------


def decode_oid(content: bytes | memoryview) -> str:
    """The dotted form of OBJECT IDENTIFIER content octets (X.690 §8.19)."""
    data = bytes(content)
    if not data or data[-1] & 0x80:
        raise DerError("malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    fresh = True
    for octet in data:
        if fresh and octet == 0x80:
            raise DerError("OBJECT IDENTIFIER arc with a leading zero octet")
        value = (value << 7) | (octet & 0x7F)
        fresh = not octet & 0x80
        if fresh:
            arcs.append(value)
            value = 0
        if len(arcs) > 128 or value.bit_length() > 128:
            raise DerError("OBJECT IDENTIFIER too long")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_integer(content: bytes | memoryview) -> int:
    data = bytes(content)
    if not data:
        raise DerError("empty INTEGER")
    if len(data) > 1 and (
        (data[0] == 0 and not data[1] & 0x80) or (data[0] == 0xFF and data[1] & 0x80)
    ):
        raise DerError("INTEGER not minimally encoded")
    return int.from_bytes(data, "big", signed=True)


def expect(tlv: Tlv, cls: int, number: int, constructed: bool | None, what: str) -> None:
    if tlv.cls != cls or tlv.number != number:
        raise DerError(f"{what}: unexpected tag {tlv.describe()}")
    if constructed is not None and tlv.constructed != constructed:
        raise DerError(f"{what}: wrong primitive/constructed form")


# --- Encoders ----------------------------------------------------------------------------------


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def header(tag: int, length: int) -> bytes:
    """Identifier octet ``tag`` (single-octet tags only) and the DER length."""
    return bytes([tag]) + encode_length(length)


def tlv(tag: int, content: bytes) -> bytes:
    return header(tag, len(content)) + content


def encode_oid(oid: str) -> bytes:
    arcs = [int(a) for a in oid.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"not an OBJECT IDENTIFIER: {oid!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return tlv(0x06, bytes(out))


def encode_integer(value: int) -> bytes:
    length = max(1, (value + (value < 0)).bit_length() // 8 + 1)
    return tlv(0x02, value.to_bytes(length, "big", signed=True))


def encode_octet_string(value: bytes) -> bytes:
    return tlv(0x04, value)


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(parts: Iterable[bytes], tag: int = 0x31) -> bytes:
    """A DER SET OF: components sorted as X.690 §11.6 requires."""
    items = list(parts)
    width = max((len(p) for p in items), default=0)
    items.sort(key=lambda p: p.ljust(width, b"\x00"))
    return tlv(tag, b"".join(items))


def is_valid_oid(text: str) -> bool:
    try:
        encode_oid(text)
    except ValueError:
        return False
    return all(part.isdigit() for part in text.split("."))


# --- Streaming reader --------------------------------------------------------------------------


class ChunkReader:
    """Pull reader over an iterator of byte chunks (for decrypted, never-buffered content)."""

    def __init__(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self._it: Iterator[bytes | bytearray | memoryview] = iter(chunks)
        self._buf = memoryview(b"")
        self.pos = 0

    def _fill(self) -> bool:
        while not self._buf:
            chunk = next(self._it, None)
            if chunk is None:
                return False
            self._buf = memoryview(chunk).cast("B") if len(chunk) else memoryview(b"")
        return True

    def at_eof(self) -> bool:
        return not self._fill()

    def read_exact(self, count: int) -> bytes:
        out = bytearray()
        while len(out) < count:
            if not self._fill():
                raise DerError("truncated content")
            take = min(count - len(out), len(self._buf))
            out += self._buf[:take]
            self._buf = self._buf[take:]
        self.pos += count
        return bytes(out)

    def stream(self, count: int) -> Iterator[memoryview]:
        """Yield exactly ``count`` octets as slices of the underlying chunks."""
        left = count
        while left:
            if not self._fill():
                raise DerError("truncated content")
            take = min(left, len(self._buf))
            piece = self._buf[:take]
            self._buf = self._buf[take:]
            self.pos += take
            left -= take
            yield piece


@dataclass(frozen=True, slots=True)
class Header:
    """Identifier and length octets read from a stream."""

    cls: int
    constructed: bool
    number: int
    length: int | None
    raw: bytes

    def is_universal(self, number: int) -> bool:
        return self.cls == UNIVERSAL and self.number == number

    def is_context(self, number: int) -> bool:
        return self.cls == CONTEXT and self.number == number

    @property
    def is_eoc(self) -> bool:
        return self.cls == UNIVERSAL and self.number == 0 and not self.constructed


def read_header(reader: ChunkReader) -> Header:
    raw = bytearray(reader.read_exact(1))
    first = raw[0]
    number = first & 0x1F
    if number == 0x1F:
        number = 0
        for count in range(5):
            octet = reader.read_exact(1)[0]
            raw.append(octet)
            if count == 0 and octet == 0x80:
                raise DerError("tag number with a leading zero octet")
            number = (number << 7) | (octet & 0x7F)
            if not octet & 0x80:
                break
        else:
            raise DerError("tag number too large")
    lead = reader.read_exact(1)[0]
    raw.append(lead)
    length: int | None
    if lead < 0x80:
        length = lead
    elif lead == 0x80:
        length = None
        if not first & 0x20:
            raise DerError("indefinite length on a primitive element")
    else:
        count = lead & 0x7F
        if count > _MAX_LENGTH_OCTETS or lead == 0xFF:
            raise DerError("length field too long")
        octets = reader.read_exact(count)
        raw += octets
        length = int.from_bytes(octets, "big")
    hdr = Header(first >> 6, bool(first & 0x20), number, length, bytes(raw))
    if hdr.is_eoc and length != 0:
        raise DerError("malformed end-of-contents")
    return hdr


def read_element(
    reader: ChunkReader, hdr: Header, limit: int = SMALL_ELEMENT_LIMIT, depth: int = 0
) -> bytes:
    """The complete encoding (header included) of a small element whose header was just read."""
    if depth > MAX_DEPTH:
        raise DerError("nesting too deep")
    if hdr.length is not None:
        if hdr.length > limit:
            raise DerError("element too large")
        return hdr.raw + reader.read_exact(hdr.length)
    out = bytearray(hdr.raw)
    while True:
        child = read_header(reader)
        if child.is_eoc:
            out += child.raw
            return bytes(out)
        out += read_element(reader, child, limit - len(out), depth + 1)
        if len(out) > limit:
            raise DerError("element too large")


def read_eoc(reader: ChunkReader) -> None:
    if not read_header(reader).is_eoc:
        raise DerError("end-of-contents expected")


def stream_octet_string(reader: ChunkReader, hdr: Header, depth: int = 0) -> Iterator[memoryview]:
    """Yield the content octets of an OCTET STRING (primitive or constructed) from a stream."""
    if depth > MAX_DEPTH:
        raise DerError("nesting too deep")
    if not hdr.constructed:
        assert hdr.length is not None
        yield from reader.stream(hdr.length)
        return
    end = None if hdr.length is None else reader.pos + hdr.length
    while True:
        if end is not None and reader.pos >= end:
            if reader.pos != end:
                raise DerError("constructed OCTET STRING overruns its length")
            return
        child = read_header(reader)
        if child.is_eoc:
            if end is not None:
                raise DerError("end-of-contents inside a definite-length string")
            return
        if not child.is_universal(OCTET_STRING):
            raise DerError("constructed OCTET STRING with a non-OCTET STRING segment")
        yield from stream_octet_string(reader, child, depth + 1)
