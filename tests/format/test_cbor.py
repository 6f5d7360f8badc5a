"""The CBOR layer: RFC 8949 §4.2.1 deterministic encoding and strict decoding."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suitkit.errors import DecodeError, LimitExceededError
from suitkit.format import cbor


def test_map_keys_sort_bytewise_by_encoding_not_length_first() -> None:
    # RFC 8949 §4.2.1: 24 encodes as 0x1818 and sorts before -1 (0x20); cbor2's canonical
    # (RFC 7049 length-first) order would put -1 first.
    encoded = cbor.dumps({-1: 0, 24: 0, 1: 0, "a": 0, b"x": 0})
    assert encoded.hex() == "a5" + "0100" + "181800" + "2000" + "417800" + "616100"
    assert cbor2.dumps({-1: 0, 24: 0}, canonical=True) != cbor.dumps({-1: 0, 24: 0})


def test_nested_maps_are_sorted_too() -> None:
    assert cbor.dumps([{2: 1, 1: {3: 0, -5: 0}}]) == bytes.fromhex("81a201a203002400" + "0201")


def test_raw_items_are_written_verbatim() -> None:
    assert cbor.dumps([1, cbor.Raw(b"\x18\x01")]) == b"\x82\x01\x18\x01"


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        cbor.dumps(1.5)


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        (b"\xa2\x01\x01\x01\x02", DecodeError, "Duplicate map key"),
        (b"\x9f\x01\xff", DecodeError, "indefinite"),
        (b"\x5f\x41a\xff", DecodeError, "indefinite"),
        (b"\x01\x02", DecodeError, "trailing"),
        (b"\x5a\xff\xff\xff\xff", DecodeError, "truncated"),
        (b"\x82\x01", DecodeError, "truncated"),
        (b"", DecodeError, "empty"),
        (b"\x62\xff\xfe", DecodeError, "well-formed"),
        (b"\x81" * 40 + b"\x01", LimitExceededError, "deeply"),
    ],
)
def test_strict_decoding_rejects(data: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        cbor.loads(data)


def test_input_larger_than_limit_is_refused_before_decoding() -> None:
    with pytest.raises(LimitExceededError):
        cbor.loads(b"\x41\x00", limits=cbor.Limits(max_input=1))


def test_errors_name_the_item_and_the_path() -> None:
    with pytest.raises(DecodeError) as info:
        cbor.loads(b"\x82\x01", what="SUIT_Digest", path="envelope/digest")
    assert "SUIT_Digest" in str(info.value) and "envelope/digest" in str(info.value)


def test_tagged_content_decodes_to_plain_lists_and_dicts() -> None:
    value = cbor.loads(bytes.fromhex("d86ba1018201a10203"))
    assert value == cbor.CBORTag(107, {1: [1, {2: 3}]})
    assert type(value.value) is dict and type(value.value[1]) is list


def test_diag_shows_wrapped_items_and_comments() -> None:
    text = cbor.diag({cbor.Comment(3, "manifest"): cbor.Wrapped([1, b"\x00"])})
    assert text == "{\n  / manifest / 3: << [\n    1,\n    h'00'\n  ] >>\n}"


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.integers(-30, 30) | st.text(max_size=4), children, max_size=5)
    ),
    max_leaves=30,
)


@given(cbor_values)
def test_decode_of_encode_is_identity(value: object) -> None:
    assert cbor.loads(cbor.dumps(value)) == value


@given(cbor_values)
def test_encode_of_decode_is_identity_for_deterministic_input(value: object) -> None:
    encoded = cbor.dumps(value)
    assert cbor.dumps(cbor.loads(encoded)) == encoded


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        cbor.loads(data)
