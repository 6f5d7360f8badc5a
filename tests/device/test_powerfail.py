"""Power-fail sweep (manifest §6.3 "Resilience to Disruption", RFC 9019 §3).

For every N from 0 to the number of writes of a clean update, the power is cut after the N-th
write; after each cut the device boots a valid image (the old or the new one, never neither),
its state is consistent, and repeating the update then succeeds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from suitkit.device.simulated import FaultInjector, PowerCut
from suitkit.format.envelope import Envelope

from .devices import (
    PAGE,
    ab_manifest,
    booted_image,
    image,
    new_device,
    open_device,
    signed,
    staged_manifest,
    state_is_consistent,
)

OLD, NEW = image(b"old-", 3 * PAGE + 100), image(b"new!!", 4 * PAGE + 9)


def _sweep(tmp_path: Path, slots: int, make: Callable[[int, bytes], Envelope]) -> int:
    base = tmp_path / "base"
    new_device(base, slots=slots)
    assert open_device(base, OLD).update(signed(make(1, OLD))).ok
    assert open_device(base).boot().ok
    update = signed(make(2, NEW))
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    dev = open_device(probe, NEW, FaultInjector())
    assert dev.update(update).ok
    total = dev.fault.count
    assert total > 5
    for n in range(total):
        d = tmp_path / f"cut{n}"
        shutil.copytree(base, d)
        with pytest.raises(PowerCut):
            open_device(d, NEW, FaultInjector(cut_after=n)).update(update)
        dev = open_device(d)  # power back: the bootloader, without network
        boot = dev.boot()
        assert boot.ok, f"cut after write {n}: nothing boots ({boot.attempts})"
        booted = booted_image(dev)
        assert booted in (OLD, NEW), f"cut after write {n}: booted an invalid image"
        state = state_is_consistent(dev)
        assert state["sequence-numbers"]["root"] == (2 if booted == NEW else 1)
        assert open_device(d, NEW).update(update).ok, f"cut after write {n}: repeat failed"
        dev = open_device(d)
        assert dev.boot().ok and booted_image(dev) == NEW
        state_is_consistent(dev)
        shutil.rmtree(d)
    return total


def test_power_cut_after_every_write_of_an_ab_update_leaves_a_bootable_device(
    tmp_path: Path,
) -> None:
    assert _sweep(tmp_path, 2, ab_manifest) >= 8


@pytest.mark.parametrize("how", ["copy", "swap"])
def test_power_cut_after_every_write_of_a_staged_update_is_resumed_or_reverted(
    tmp_path: Path, how: str
) -> None:
    assert _sweep(tmp_path, 1, lambda seq, img: staged_manifest(seq, img, how)) >= 10
