"""Untrusted input never escapes as anything but a SuitError: random bytes, random CBOR shaped
like COSE, mutated vectors, random key files."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitkit.cose import CoseKey, decode
from suitkit.errors import SuitError
from suitkit.format import cbor
from suitkit.format.codepoints import Tag

from ._util import KEYS, VECTORS, auth_blocks

TRUSTED = [
    CoseKey.load(KEYS / "suit-example-es256-public.pem"),
    CoseKey.load(KEYS / "fw-enc-dependent-es256-public.pem"),
    CoseKey.load(KEYS / "fw-enc-hmac256-mac-key.cose_key"),
    CoseKey.load(KEYS / "fw-enc-kek-a128kw-kid-1.cose_key"),
]
BLOCKS = [
    (digest, block)
    for path in sorted(VECTORS.rglob("*.suit"))
    for _, digest, block in auth_blocks(path.read_bytes(), path.name)
]
KEY_FILES = [p.read_bytes() for p in sorted(KEYS.iterdir()) if not p.name.endswith(".diag")]

#: SUITKIT_FUZZ_EXAMPLES=5000 for a longer run
FUZZ = settings(
    max_examples=int(os.environ.get("SUITKIT_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def decode_and_verify(data: bytes, payload: bytes = b"payload") -> None:
    """Decode and verify; success is allowed, any failure must be a SuitError."""
    with contextlib.suppress(SuitError):
        decode(data).verify(TRUSTED, payload=payload)


# CBOR values of the kinds that appear in COSE structures, nested a little
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.sampled_from([1, 2, 4, -7, -9, -8, -19, -46, -48, 5, -6, -3, 0, 99]),
    st.binary(max_size=80),
    st.text(max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(st.integers(min_value=-10, max_value=10), st.text(max_size=3)),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
headers = st.dictionaries(
    st.sampled_from([1, 2, 3, 4, 5, -1, 99, "x"]),
    st.one_of(values, st.lists(st.sampled_from([1, 2, 4, 99, "x"]), max_size=3)),
    max_size=4,
)
protected = st.one_of(st.binary(max_size=12), headers.map(cbor.dumps), st.just(b""))


@st.composite
def cose_like(draw: st.DrawFn) -> bytes:
    tags = [Tag.COSE_SIGN1, Tag.COSE_SIGN, Tag.COSE_MAC0, Tag.COSE_MAC, Tag.COSE_ENCRYPT0]
    tag = draw(st.sampled_from(tags))
    layer: list[Any] = [
        draw(protected),
        draw(headers),
        draw(st.one_of(st.none(), st.binary(max_size=8))),
    ]
    if tag in (Tag.COSE_SIGN1, Tag.COSE_MAC0):
        layer.append(draw(st.binary(max_size=70)))
    elif tag == Tag.COSE_SIGN:
        signature = st.tuples(protected, headers, st.binary(max_size=70)).map(list)
        layer.append(draw(st.lists(signature, max_size=3)))
    elif tag == Tag.COSE_MAC:
        layer.append(draw(st.binary(max_size=40)))
        ciphertext = st.one_of(st.none(), st.binary(max_size=40))
        recipient = st.tuples(protected, headers, ciphertext).map(list)
        layer.append(draw(st.lists(recipient, max_size=3)))
    if draw(st.booleans()):
        layer = draw(st.lists(values, max_size=6)) if draw(st.booleans()) else layer[:-1]
    return cbor.dumps(cbor.CBORTag(tag, layer))


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_suit_errors(data: bytes) -> None:
    decode_and_verify(data)


@FUZZ
@given(cose_like())
def test_random_cose_shaped_cbor_only_raises_suit_errors(data: bytes) -> None:
    decode_and_verify(data)


@FUZZ
@given(st.sampled_from(BLOCKS), st.data())
def test_mutated_vector_blocks_only_raise_suit_errors(
    block: tuple[bytes, bytes], data: Any
) -> None:
    digest, encoded = block
    raw = bytearray(encoded)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        op = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(min_value=0, max_value=max(len(raw) - 1, 0)))
        if op == "set" and raw:
            raw[at] = data.draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and raw:
            del raw[at]
        else:
            del raw[at:]
    decode_and_verify(bytes(raw), digest)


@FUZZ
@given(st.sampled_from(BLOCKS), st.integers(min_value=0), st.integers(min_value=0, max_value=7))
def test_single_bit_flip_in_a_vector_never_verifies(
    block: tuple[bytes, bytes], position: int, bit: int
) -> None:
    digest, encoded = block
    i = position % len(encoded)
    tampered = encoded[:i] + bytes([encoded[i] ^ (1 << bit)]) + encoded[i + 1 :]
    try:
        decode(tampered).verify(TRUSTED, payload=digest)
    except SuitError:
        return
    raise AssertionError(f"bit {bit} of byte {i} flipped and the block still verifies")


@FUZZ
@given(st.one_of(st.binary(max_size=120), values.map(cbor.dumps)))
def test_random_key_files_only_raise_suit_errors(data: bytes) -> None:
    with contextlib.suppress(SuitError):
        CoseKey.load(data)


@FUZZ
@given(st.sampled_from(KEY_FILES), st.data())
def test_mutated_key_files_only_raise_suit_errors(key_file: bytes, data: Any) -> None:
    raw = bytearray(key_file)
    at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[at] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(SuitError):
        CoseKey.load(bytes(raw))
