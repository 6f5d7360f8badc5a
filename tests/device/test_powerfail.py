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


# --- power cuts during the bootloader's recovery ----------------------------------------------

MAKERS: dict[str, tuple[int, Callable[[int, bytes], Envelope]]] = {
    "ab": (2, ab_manifest),
    "copy": (1, lambda seq, img: staged_manifest(seq, img, "copy")),
    "swap": (1, lambda seq, img: staged_manifest(seq, img, "swap")),
}


def _installed(tmp_path: Path, kind: str) -> tuple[Path, bytes, int]:
    """A device with OLD installed and booted, the NEW update, and its number of writes."""
    slots, make = MAKERS[kind]
    base = tmp_path / "base"
    new_device(base, slots=slots)
    assert open_device(base, OLD).update(signed(make(1, OLD))).ok
    assert open_device(base).boot().ok
    update = signed(make(2, NEW))
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    dev = open_device(probe, NEW, FaultInjector())
    assert dev.update(update).ok
    shutil.rmtree(probe)
    return base, update, dev.fault.count


def _boots_old_or_new(d: Path, what: str) -> bytes:
    dev = open_device(d)
    boot = dev.boot()
    assert boot.ok, f"{what}: nothing boots ({boot.attempts})"
    booted = booted_image(dev)
    assert booted in (OLD, NEW), f"{what}: booted an invalid image"
    state = state_is_consistent(dev)
    assert state["sequence-numbers"]["root"] == (2 if booted == NEW else 1), what
    return booted


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_power_cut_at_every_write_of_the_boot_time_recovery_still_boots_a_valid_image(
    tmp_path: Path, kind: str
) -> None:
    """Manifest §6.3: the recovery (finishing a swap, reapplying a copy, reverting, closing the
    journal) is itself interrupted after each of its writes, for an update cut after each of
    its writes; the next boot still recovers and boots the old or the new image, the state is
    consistent, and the update then succeeds."""
    base, update, total = _installed(tmp_path, kind)
    combos = 0
    for n in range(total):
        cut = tmp_path / "cut"
        shutil.copytree(base, cut)
        with pytest.raises(PowerCut):
            open_device(cut, NEW, FaultInjector(cut_after=n)).update(update)
        probe = tmp_path / "probe"
        shutil.copytree(cut, probe)
        dev = open_device(probe, fault=FaultInjector())
        assert dev.boot().ok
        recovery_writes = dev.fault.count
        shutil.rmtree(probe)
        for m in range(recovery_writes):
            d = tmp_path / "cut2"
            shutil.copytree(cut, d)
            with pytest.raises(PowerCut):
                open_device(d, fault=FaultInjector(cut_after=m)).boot()
            _boots_old_or_new(d, f"update cut after {n}, recovery cut after {m}")
            if m == recovery_writes - 1:
                assert open_device(d, NEW).update(update).ok
                assert _boots_old_or_new(d, "repeat") == NEW
            shutil.rmtree(d)
            combos += 1
        shutil.rmtree(cut)
    assert combos > (50 if kind == "swap" else 5)


def test_swapped_image_that_fails_validation_is_swapped_back_even_if_the_revert_is_cut(
    tmp_path: Path,
) -> None:
    """A staged swap interrupted after the swap, whose new image then fails validation (it was
    damaged in flash): the recovery reverts the swap (journaled: ``reverting``). A power cut at
    every write of that revert is finished by the next boot, which boots the old image, and
    never swaps the damaged image back in."""
    base, update, total = _installed(tmp_path, "swap")
    for n in range(total):  # the first cut that leaves a completed swap in the journal
        cut = tmp_path / f"after-swap-{n}"
        shutil.copytree(base, cut)
        with pytest.raises(PowerCut):
            open_device(cut, NEW, FaultInjector(cut_after=n)).update(update)
        journal = open_device(cut).state["journal"]
        if journal and journal.get("swapped") and not journal.get("swap"):
            break
        shutil.rmtree(cut)
    else:
        pytest.fail("no cut leaves a completed swap")
    flash = cut / "flash" / "00.0"
    data = bytearray(flash.read_bytes())
    data[5] ^= 0xFF
    flash.write_bytes(bytes(data))
    probe = tmp_path / "probe"
    shutil.copytree(cut, probe)
    dev = open_device(probe, fault=FaultInjector())
    boot = dev.boot()
    assert boot.recovered == "interrupted swap reverted"
    assert boot.ok and booted_image(dev) == OLD
    writes = dev.fault.count
    for m in range(writes):
        d = tmp_path / f"revert-cut-{m}"
        shutil.copytree(cut, d)
        with pytest.raises(PowerCut):
            open_device(d, fault=FaultInjector(cut_after=m)).boot()
        assert _boots_old_or_new(d, f"revert cut after {m}") == OLD
        assert open_device(d, NEW).update(update).ok, f"revert cut after {m}: repeat failed"
        assert _boots_old_or_new(d, "repeat") == NEW
        shutil.rmtree(d)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_update_after_a_power_cut_without_a_boot_in_between_recovers_first(
    tmp_path: Path, kind: str
) -> None:
    """The update agent may run again before the bootloader did, with another manifest: the
    open journal of the interrupted update is recovered first (never reused for the new one),
    then the new update runs and commits its own manifest and image."""
    base, update, total = _installed(tmp_path, kind)
    newer = image(b"newer:", 2 * PAGE + 77)
    third = signed(MAKERS[kind][1](3, newer))
    for n in range(total):
        d = tmp_path / "cut"
        shutil.copytree(base, d)
        with pytest.raises(PowerCut):
            open_device(d, NEW, FaultInjector(cut_after=n)).update(update)
        assert open_device(d, newer).update(third).ok, f"cut after {n}"
        dev = open_device(d)
        state = state_is_consistent(dev)
        assert state["sequence-numbers"]["root"] == 3, f"cut after {n}"
        assert dev.boot().ok and booted_image(dev) == newer, f"cut after {n}"
        shutil.rmtree(d)
