"""The decoding shortcuts of the authentication hot path give exactly what the general path gives.

Each shortcut (the tag-stripping fast path of ``cbor.loads``, the exact-layout matchers for the
envelope map, SUIT_Authentication, the SHA-256 SUIT_Digest and COSE_Sign1) must either produce
the value strict decoding produces or step aside. These tests compare both on the vectors and
on mutated, truncated and extended versions of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitkit.cose import messages as cose
from suitkit.cose.keys import CoseKey
from suitkit.errors import SuitError
from suitkit.format import cbor
from suitkit.format.envelope import authentication_items, envelope_map
from tests.conftest import CBOR_VECTORS, ENVELOPES, VECTORS

LIMITS = cbor.DEFAULT_LIMITS
EXAMPLE_KEY = CoseKey.load(VECTORS / "keys" / "suit-example-es256-public.pem")


@pytest.fixture
def strict_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(cbor, "_FAST_PATH_MAX", -1)
    yield


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except (SuitError, TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


def _layers(data: bytes) -> list[bytes]:
    """The bstr-wrapped layers of an envelope that the hot path decodes."""
    value = cbor.loads(data).value
    auth = value[2]
    return [data, auth, *cbor.loads(auth), value[3]]


_LAYERS = [layer for p in ENVELOPES for layer in _layers(p.read_bytes())]
_SAMPLES = [p.read_bytes() for p in CBOR_VECTORS] + _LAYERS


def _mutate(data: bytes, draw: st.DataObject) -> bytes:
    kind = draw.draw(st.sampled_from(["flip", "byte", "cut", "extend", "insert"]))
    i = draw.draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (1 << draw.draw(st.integers(0, 7)))]) + data[i + 1 :]
    if kind == "byte":
        return data[:i] + bytes([draw.draw(st.integers(0, 255))]) + data[i + 1 :]
    if kind == "cut":
        return data[:i]
    extra = draw.draw(st.binary(min_size=1, max_size=3))
    if kind == "extend":
        return data + extra
    return data[:i] + extra + data[i:]


# --- cbor.loads: the tag-stripping fast path --------------------------------------------------


@pytest.mark.parametrize("data", _SAMPLES[:40], ids=lambda d: d[:6].hex())
def test_fast_and_strict_decoding_agree_on_the_vectors(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = cbor.loads(data)
    monkeypatch.setattr(cbor, "_FAST_PATH_MAX", -1)
    assert cbor.loads(data) == fast


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SAMPLES), st.data())
def test_fast_and_strict_decoding_agree_on_mutated_input(data: bytes, draw: st.DataObject) -> None:
    mutated = _mutate(data, draw)
    fast = _outcome(lambda: cbor.loads(mutated))
    saved = cbor._FAST_PATH_MAX
    cbor._FAST_PATH_MAX = -1
    try:
        strict = _outcome(lambda: cbor.loads(mutated))
    finally:
        cbor._FAST_PATH_MAX = saved
    if fast[0] == "ok" or strict[0] == "ok":
        assert fast == strict
    else:
        assert fast[0] == strict[0]


@pytest.mark.parametrize(
    "data",
    [
        "d86ba10281d86b80",  # a tag nested in the content of a stripped tag: thawed too
        "d2a1018201d86ba20102030481d86b80",
        "d862840102f680",  # tag 98, two-byte head
        "d8128401a0f640",  # tag 18 in a non-preferred two-byte head: not stripped
        "d2",  # a tag head and nothing else
        "d86b",
    ],
)
def test_tagged_items_decode_the_same_either_way(
    data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = bytes.fromhex(data)
    fast = _outcome(lambda: cbor.loads(raw))
    monkeypatch.setattr(cbor, "_FAST_PATH_MAX", -1)
    strict = _outcome(lambda: cbor.loads(raw))
    assert fast[0] == strict[0]
    if fast[0] == "ok":
        assert fast == strict


def _nest(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


@pytest.mark.parametrize("tag_head", [b"", b"\xd2", b"\xd8\x6b", b"\xd8\x62"])
def test_the_depth_limit_is_the_same_with_a_stripped_tag(
    tag_head: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = cbor.Limits(max_depth=4)
    for depth in range(1, 7):
        data = tag_head + _nest(depth)

        def decode(data: bytes = data) -> Any:
            return cbor.loads(data, limits=limits)

        fast = _outcome(decode)
        monkeypatch.setattr(cbor, "_FAST_PATH_MAX", -1)
        strict = _outcome(decode)
        monkeypatch.undo()
        assert fast[0] == strict[0], (data.hex(), fast, strict)
        assert fast == strict or fast[0] != "ok"


# --- bstr_span ----------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 3))
def test_bstr_span_finds_exactly_what_the_decoder_finds(data: bytes, pos: int) -> None:
    start, end = cbor.bstr_span(data, pos)
    if end < 0:
        return
    assert cbor.loads(data[pos:end]) == data[start:end]


@pytest.mark.parametrize("n", [0, 1, 23, 24, 255, 256, 65535])
def test_bstr_span_of_every_head_size(n: int) -> None:
    item = cbor2.dumps(b"\x07" * n)
    assert cbor.bstr_span(b"\x00" + item, 1) == (1 + len(item) - n, 1 + len(item))
    assert cbor.bstr_span(b"\x00" + item[:-1], 1) == (-1, -1) or n == 0


def test_bstr_span_refuses_indefinite_and_long_heads() -> None:
    assert cbor.bstr_span(b"\x5f\x41\x00\xff", 0) == (-1, -1)
    assert cbor.bstr_span(b"\x5a\x00\x00\x00\x01\x00", 0) == (-1, -1)
    assert cbor.bstr_span(b"\x01", 0) == (-1, -1)
    assert cbor.bstr_span(b"", 0) == (-1, -1)


# --- the envelope map and SUIT_Authentication ---------------------------------------------------


def _envelope_map_general(data: bytes) -> Any:
    # a bytearray takes the general path (cbor.loads converts it); the result must be the same
    return envelope_map(bytearray(data), LIMITS)  # type: ignore[arg-type]


def _items_general(data: bytes) -> Any:
    return authentication_items(bytearray(data), "x", LIMITS)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([p.read_bytes() for p in ENVELOPES]), st.data())
def test_envelope_map_shortcut_agrees_with_decoding(data: bytes, draw: st.DataObject) -> None:
    mutated = _mutate(data, draw) if draw.draw(st.booleans()) else data
    fast = _outcome(lambda: envelope_map(mutated, LIMITS))
    general = _outcome(lambda: _envelope_map_general(mutated))
    assert fast == general


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([_layers(p.read_bytes())[1] for p in ENVELOPES]), st.data())
def test_authentication_items_shortcut_agrees_with_decoding(
    data: bytes, draw: st.DataObject
) -> None:
    mutated = _mutate(data, draw) if draw.draw(st.booleans()) else data
    fast = _outcome(lambda: authentication_items(mutated, "x", LIMITS))
    general = _outcome(lambda: _items_general(mutated))
    assert fast == general


def test_the_shortcuts_take_the_usual_envelope() -> None:
    data = (VECTORS / "example1.suit").read_bytes()
    value, tagged, auth, _manifest = envelope_map(data, LIMITS)
    assert tagged and list(value) == [2, 3]
    assert value == cbor.loads(data).value
    assert authentication_items(auth, "x", LIMITS) == cbor.loads(auth)


def test_sha256_digest_layout_is_what_it_decodes_to() -> None:
    for _ in range(20):
        value = os.urandom(32)
        encoded = b"\x82\x2f\x58\x20" + value
        assert cbor.loads(encoded) == [-16, value]


# --- COSE_Sign1 -------------------------------------------------------------------------------


def _blocks() -> list[bytes]:
    return [b for p in ENVELOPES for b in cbor.loads(_layers(p.read_bytes())[1])[1:]]


_BLOCKS = _blocks()


def _verify_outcome(data: bytes, general: bool) -> tuple[str, Any]:
    payload = b"\x82\x2f\x58\x20" + b"\x11" * 32
    arg: Any = bytearray(data) if general else data
    return _outcome(lambda: cose.verify_detached(arg, [EXAMPLE_KEY], payload, path="p"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_BLOCKS), st.data())
def test_sign1_shortcut_agrees_with_decoding(data: bytes, draw: st.DataObject) -> None:
    mutated = _mutate(data, draw) if draw.draw(st.booleans()) else data
    assert _verify_outcome(mutated, False) == _verify_outcome(mutated, True)


@pytest.mark.parametrize(
    "unprotected", [{}, {4: b"kid"}, {4: b""}, {4: b"k" * 30}, {3: 0}, {4: b"k", 3: 0}]
)
def test_sign1_shortcut_on_the_unprotected_headers(unprotected: dict[int, Any]) -> None:
    data = cbor2.dumps(cbor2.CBORTag(18, [b"\xa1\x01\x26", unprotected, None, b"\x00" * 64]))
    fast = _verify_outcome(data, False)
    assert fast == _verify_outcome(data, True)
    assert fast[0] == "ok" and fast[1][3] is None  # decoded, and no key verifies it


def test_every_vector_signature_verifies_through_the_shortcut() -> None:
    from suitkit.format.authentication import authenticate

    keys = [
        EXAMPLE_KEY,
        CoseKey.load(VECTORS / "keys" / "fw-enc-dependent-es256-public.pem"),
        CoseKey.load(VECTORS / "keys" / "fw-enc-hmac256-mac-key.cose_key"),
    ]
    verified = 0
    for p in ENVELOPES:
        if "digest-only" in p.name:
            continue
        data = p.read_bytes()
        items = cbor.loads(_layers(data)[1])
        for block in items[1:]:
            if cose._sign1_layout(block) is not None:
                name, _alg, _kid, key, error = cose.verify_detached(block, keys, items[0])
                assert name == "COSE_Sign1" and key is not None, error
                verified += 1
        assert authenticate(data, keys).result.verified_blocks
    assert verified >= 10


_PAIRS = [
    (block, items[0])
    for p in ENVELOPES
    for items in [cbor.loads(_layers(p.read_bytes())[1])]
    for block in items[1:]
]
_ALL_KEYS = [
    EXAMPLE_KEY,
    CoseKey.load(VECTORS / "keys" / "fw-enc-dependent-es256-public.pem"),
    CoseKey.load(VECTORS / "keys" / "fw-enc-hmac256-mac-key.cose_key"),
]


def _reference(block: bytes, payload: bytes) -> tuple[str, Any]:
    """What decoding the message object and calling its verify() gives."""

    def run() -> Any:
        msg = cose.decode(block, path="p")
        name = type(msg).__name__.replace("Cose", "COSE_")
        try:
            vr = msg.verify(_ALL_KEYS, payload=payload)
        except SuitError as exc:
            if type(exc).__name__ != "AuthenticationError":
                raise
            return name, cose._alg_or_none(msg), cose._kid_or_none(msg), None, exc.message
        return name, vr.alg, vr.kid, vr.key, None

    return _outcome(run)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_PAIRS), st.data())
def test_verify_detached_agrees_with_decode_and_verify(
    pair: tuple[bytes, bytes], draw: st.DataObject
) -> None:
    block, payload = pair
    if draw.draw(st.booleans()):
        block = _mutate(block, draw)
    got = _outcome(lambda: cose.verify_detached(block, _ALL_KEYS, payload, path="p"))
    assert got == _reference(block, payload)


def test_verify_detached_verifies_every_vector_block() -> None:
    for block, payload in _PAIRS:
        got = cose.verify_detached(block, _ALL_KEYS, payload)
        assert got[3] is not None, got
        assert (("ok", got)) == _reference(block, payload)
