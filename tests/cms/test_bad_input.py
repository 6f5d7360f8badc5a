"""Bad input: truncated, mutated and random DER gives decodeFailure or a more specific
FirmwarePackageLoadErrorCode (RFC 4108 §4.1.3), never another exception, and never a write."""

from __future__ import annotations

import contextlib
from functools import cache, lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitkit.cms import (
    CmsError,
    Encryption,
    LoadErrorCode,
    build_package,
    decode_report,
    load_package,
    process_package,
)
from suitkit.cms.describe import describe_package
from suitkit.cms.device import InMemoryDevice
from tests.cms.helpers import Pki, device, make_pki, spec

KEY = bytes(range(16))
FW = bytes(range(256)) * 3


@lru_cache(maxsize=1)
def _pki() -> Pki:
    return make_pki("p256")


@cache
def package(kind: str) -> bytes:
    p = _pki()
    kw = {
        "plain": {},
        "compressed": {"compress": True},
        "encrypted": {"encryption": Encryption(KEY, b"k", kek=bytes(16), kek_id=b"kek")},
        "both": {"compress": True, "encryption": Encryption(KEY, b"k")},
    }[kind]
    return build_package(FW, spec(description="fuzz", **kw), p.signer)  # type: ignore[arg-type]


def fresh_device() -> InMemoryDevice:
    return device(_pki(), keys={b"k": KEY})


def check(data: bytes) -> LoadErrorCode | None:
    """Load ``data``; return the error code (None when it loaded)."""
    dev = fresh_device()
    try:
        load_package(data, dev)
    except CmsError as exc:
        assert isinstance(exc.code, LoadErrorCode)
        assert dev.writes_started == 0 and not dev.firmware
        return exc.code
    assert bytes(dev.firmware["1.3.6.1.4.1.99999.1"]) == FW  # a mutation that changes nothing
    return None


KINDS = ["plain", "compressed", "encrypted", "both"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_truncation_is_a_decode_failure(kind: str) -> None:
    data = package(kind)
    for n in range(len(data)):
        assert check(data[:n]) is LoadErrorCode.DECODE_FAILURE, n


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_are_rejected_with_a_load_error_code(data: bytes) -> None:
    assert check(data) is not None
    with pytest.raises(CmsError):
        describe_package(data)
    with pytest.raises(CmsError):
        decode_report(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), st.data())
def test_mutated_packages_are_rejected_or_unchanged(kind: str, data: st.DataObject) -> None:
    pkg = bytearray(package(kind))
    count = data.draw(st.integers(1, 4))
    for _ in range(count):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(pkg) - 1))
        if op == "flip":
            pkg[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            pkg[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            pkg.insert(pos, data.draw(st.integers(0, 255)))
        elif len(pkg) > 1:
            del pkg[pos]
    check(bytes(pkg))
    with contextlib.suppress(CmsError):
        describe_package(bytes(pkg))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KINDS), st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_mutations_in_the_header_region_map_to_specific_codes(
    kind: str, seed: int, junk: bytes
) -> None:
    """Overwrite a few octets among the first 64 (the ContentInfo / SignedData headers)."""
    pkg = bytearray(package(kind))
    pos = seed % 64
    pkg[pos : pos + len(junk)] = junk
    check(bytes(pkg))


def test_process_package_turns_garbage_into_an_error_report() -> None:
    out = process_package(b"\x30\x03\x02\x01", fresh_device())
    assert out.error is not None and out.error.code is LoadErrorCode.DECODE_FAILURE
    assert out.report is not None


def test_deeply_nested_input_is_a_decode_failure() -> None:
    nested = b"\x30\x80" * 5000 + b"\x00\x00" * 5000
    assert check(nested) is LoadErrorCode.DECODE_FAILURE


def test_huge_declared_length_is_a_decode_failure() -> None:
    assert check(b"\x30\x88\xff\xff\xff\xff\xff\xff\xff\xff") is LoadErrorCode.DECODE_FAILURE


def _mutate(data: bytes, draw: st.DataObject) -> bytes:
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        pos = draw.draw(st.integers(0, len(buf) - 1))
        op = draw.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            buf[pos] ^= 1 << draw.draw(st.integers(0, 7))
        elif op == "insert":
            buf.insert(pos, draw.draw(st.integers(0, 255)))
        elif len(buf) > 1:
            del buf[pos]
    return bytes(buf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["compressed", "encrypted", "encrypted-compressed"]), st.data())
def test_mutated_inner_layers_under_a_valid_signature(kind: str, data: st.DataObject) -> None:
    """Mutate the CompressedData / EncryptedData octets, then sign them: the inner parsers see
    arbitrary input and must answer with a load error code."""
    from suitkit.cms import TrustAnchor
    from suitkit.cms.oids import ContentType
    from tests.cms.helpers import compose, compressed_der, encrypted_der, package_attrs

    key = _signing_key()
    if kind == "compressed":
        inner, etype, extra = compressed_der(FW), ContentType.COMPRESSED_DATA, package_attrs()
    elif kind == "encrypted":
        inner = encrypted_der(FW, ContentType.FIRMWARE_PACKAGE, KEY)
        etype, extra = ContentType.ENCRYPTED_DATA, package_attrs(decrypt_key_id=b"k")
    else:
        inner = encrypted_der(compressed_der(FW), ContentType.COMPRESSED_DATA, KEY)
        etype, extra = ContentType.ENCRYPTED_DATA, package_attrs(decrypt_key_id=b"k")
    pkg = compose(_mutate(inner, data), etype, key, extra)
    dev = device(anchors=[TrustAnchor.from_public_key(key.public_key())], keys={b"k": KEY})
    try:
        load_package(pkg, dev)
    except CmsError as exc:
        assert dev.writes_started == 0
        assert exc.code not in (LoadErrorCode.SIGNATURE_FAILURE, LoadErrorCode.NO_TRUST_ANCHOR)


@lru_cache(maxsize=1)
def _signing_key():  # type: ignore[no-untyped-def]
    from tests.cms.helpers import new_key

    return new_key("p256")


def test_millions_of_tiny_segments_are_refused_quickly() -> None:
    import time

    from suitkit.cms import der

    segments = b"\x04\x01\x00" * 400_000  # legal BER, but 400 k elements
    data = der.sequence(
        der.encode_oid("1.2.840.113549.1.7.2"), der.tlv(0xA0, der.tlv(0x24, segments))
    )
    t = time.perf_counter()
    assert check(data) is LoadErrorCode.DECODE_FAILURE
    assert time.perf_counter() - t < 5
