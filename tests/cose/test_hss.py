"""HSS-LMS keys are stateful (RFC 8554 §5.2, RFC 8778 §5): a one-time key must never sign twice.

suitkit persists the advanced private state to the key file (atomically) before a signature is
returned; if that write fails the signature is discarded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from suitkit.cose import CoseKey, HssLmsParams, KeyStateError, decode, sign1
from suitkit.cose import algorithms as algs
from suitkit.format.codepoints import CoseAlgorithm

from ._util import SMALL_HSS

A = CoseAlgorithm


def leaf_index(signature: bytes) -> int:
    """q of the bottom LMS signature of a one-level HSS signature (RFC 8554 §6.2: u32str(Nspk=0)
    || LMS signature, which starts with u32str(q))."""
    assert signature[:4] == b"\x00\x00\x00\x00"
    return int.from_bytes(signature[4:8], "big")


def disk_index(path: Path) -> int:
    """The next leaf index recorded in a one-level HSS key file."""
    key = CoseKey.load(path)
    remaining = key.signatures_remaining()
    assert remaining is not None
    return 32 - remaining


def test_each_signature_uses_the_next_one_time_key(hss_key: CoseKey) -> None:
    first = algs.sign(hss_key, A.HSS_LMS, b"a")
    second = algs.sign(hss_key, A.HSS_LMS, b"a")
    assert (leaf_index(first), leaf_index(second)) == (0, 1)
    assert first != second
    assert hss_key.signatures_remaining() == 30


def test_state_is_on_disk_before_the_signature_is_returned(hss_key: CoseKey) -> None:
    path = hss_key.state_file
    assert path is not None
    for _ in range(3):
        sig = algs.sign(hss_key, A.HSS_LMS, b"m")
        assert disk_index(path) == leaf_index(sig) + 1


def test_reloaded_key_file_continues_after_the_last_index(hss_key: CoseKey) -> None:
    path = hss_key.state_file
    assert path is not None
    algs.sign(hss_key, A.HSS_LMS, b"a")
    algs.sign(hss_key, A.HSS_LMS, b"b")
    reloaded = CoseKey.load(path)
    assert reloaded.state_file == path
    assert leaf_index(algs.sign(reloaded, A.HSS_LMS, b"c")) == 2


def test_two_key_objects_on_one_file_never_reuse_an_index(hss_key: CoseKey) -> None:
    path = hss_key.state_file
    assert path is not None
    other = CoseKey.load(path)
    seen = [leaf_index(algs.sign(k, A.HSS_LMS, b"x")) for k in (hss_key, other) * 3]
    assert seen == [0, 1, 2, 3, 4, 5]


def test_failed_state_write_returns_no_signature_and_never_reuses_the_index(
    hss_key: CoseKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = hss_key.state_file
    assert path is not None
    algs.sign(hss_key, A.HSS_LMS, b"a")  # index 0
    before = path.read_bytes()

    def crash(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyStateError, match="persist"):
        algs.sign(hss_key, A.HSS_LMS, b"b")  # index 1 used in memory, signature discarded
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    # this process skips the consumed index; a restart from the file may reuse index 1, which
    # is safe because no signature made with it ever left sign()
    assert leaf_index(algs.sign(hss_key, A.HSS_LMS, b"c")) == 2


def test_failed_fsync_also_discards_the_signature(
    hss_key: CoseKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyStateError):
        sign1(b"payload", hss_key)


def test_key_without_state_file_cannot_sign() -> None:
    key = CoseKey.generate(A.HSS_LMS, hss=SMALL_HSS)
    with pytest.raises(KeyStateError, match="no state file"):
        algs.sign(key, A.HSS_LMS, b"x")


def test_key_bytes_loaded_without_a_path_cannot_sign(hss_key: CoseKey) -> None:
    key = CoseKey.load(hss_key.to_cose_key(private=True))
    with pytest.raises(KeyStateError):
        algs.sign(key, A.HSS_LMS, b"x")


def test_bound_key_is_not_copied_to_a_second_state_file(hss_key: CoseKey, tmp_path: Path) -> None:
    with pytest.raises(KeyStateError, match="bound"):
        hss_key.save(tmp_path / "copy.cose_key", private=True)
    hss_key.save(tmp_path / "public.cose_key")  # the public key may be copied freely
    assert not CoseKey.load(tmp_path / "public.cose_key").is_private


def test_older_state_on_disk_is_refused(hss_key: CoseKey) -> None:
    path = hss_key.state_file
    assert path is not None
    old = path.read_bytes()
    algs.sign(hss_key, A.HSS_LMS, b"a")
    path.write_bytes(old)  # e.g. restored from a backup
    with pytest.raises(KeyStateError, match="older state"):
        algs.sign(hss_key, A.HSS_LMS, b"b")


def test_exhausted_key_refuses_to_sign(hss_key: CoseKey) -> None:
    for _ in range(32):
        algs.sign(hss_key, A.HSS_LMS, b"x")
    assert hss_key.signatures_remaining() == 0
    with pytest.raises(KeyStateError, match="exhausted"):
        algs.sign(hss_key, A.HSS_LMS, b"x")


def test_two_level_key_with_w8_signs_and_verifies_in_sign1(tmp_path: Path) -> None:
    key = CoseKey.generate(
        A.HSS_LMS,
        hss=HssLmsParams(levels=2, height=5, w=8),
        state_file=tmp_path / "k.cose_key",
    )
    msg = sign1(b"digest", key)
    public = CoseKey.load(key.public_key().to_cose_key())
    assert decode(msg.encode()).verify([public], payload=b"digest").alg is A.HSS_LMS
    assert key.signatures_remaining() == 1023
