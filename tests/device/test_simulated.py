"""The simulated device: flash in a directory, trust anchors, state, the bootloader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suitkit.device.events import Procedure
from suitkit.errors import AuthenticationError, ConditionFailedError, RollbackError

from .devices import (
    PAGE,
    ab_manifest,
    booted_image,
    image,
    new_device,
    open_device,
    signed,
    staged_manifest,
)

V1, V2 = image(b"v1-", 5 * PAGE + 17), image(b"v2--", 6 * PAGE + 3)


def test_init_writes_identity_components_trust_and_state(tmp_path: Path) -> None:
    dev = new_device(tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "device.json").read_text())
    assert cfg["components"][0] == {"id": "00", "size": 16 * PAGE, "slots": 2}
    assert len(dev.trusted_keys()) == 1
    assert dev.status()["state"]["journal"] is None


def test_ab_update_goes_to_the_inactive_slot_and_boot_prefers_it(tmp_path: Path) -> None:
    d = tmp_path / "d"
    new_device(d)
    dev = open_device(d, V1)
    assert dev.update(signed(ab_manifest(1, V1))).ok
    dev = open_device(d)
    boot = dev.boot()
    assert boot.slot == 1 and booted_image(dev) == V1
    dev = open_device(d, V2)
    assert dev.update(signed(ab_manifest(2, V2))).ok
    dev = open_device(d)
    assert dev.boot().slot == 0 and booted_image(dev) == V2
    assert dev.state["sequence-numbers"] == {"root": 2}


def test_bootloader_falls_back_to_the_other_slot_when_validation_fails(tmp_path: Path) -> None:
    """THREAT.IMG.REPLACE (RFC 9124 §4.2.8) on a device: the new slot's image is replaced after
    installation; validate fails, the bootloader boots the old slot, never the replaced image."""
    d = tmp_path / "d"
    new_device(d)
    open_device(d, V1).update(signed(ab_manifest(1, V1)))
    open_device(d).boot()
    open_device(d, V2).update(signed(ab_manifest(2, V2)))
    flash = d / "flash" / "00.0"
    data = bytearray(flash.read_bytes())
    data[10] ^= 0xFF
    flash.write_bytes(bytes(data))
    dev = open_device(d)
    boot = dev.boot()
    assert boot.slot == 1 and booted_image(dev) == V1
    first = boot.attempts[0][1]
    assert not isinstance(first, Exception) and isinstance(first.error, ConditionFailedError)


def test_device_update_requires_a_signature_from_a_trust_anchor(tmp_path: Path) -> None:
    d = tmp_path / "d"
    new_device(d)
    with pytest.raises(AuthenticationError):
        open_device(d, V1).update(ab_manifest(1, V1).encode())
    assert open_device(d).state["boot"]["manifests"] == {}


def test_device_refuses_a_rollback(tmp_path: Path) -> None:
    d = tmp_path / "d"
    new_device(d)
    open_device(d, V2).update(signed(ab_manifest(2, V2)))
    result = open_device(d, V1).update(signed(ab_manifest(1, V1)))
    assert isinstance(result.error, RollbackError)
    assert open_device(d).state["journal"] is None


@pytest.mark.parametrize("how", ["copy", "swap"])
def test_staged_update_installs_from_the_staging_component(tmp_path: Path, how: str) -> None:
    d = tmp_path / "d"
    new_device(d, slots=1)
    assert open_device(d, V1).update(signed(staged_manifest(1, V1, how))).ok
    dev = open_device(d)
    assert dev.boot().ok and booted_image(dev) == V1
    assert open_device(d, V2).update(signed(staged_manifest(2, V2, how))).ok
    dev = open_device(d)
    assert dev.boot().ok and booted_image(dev) == V2


def test_boot_with_nothing_installed_boots_nothing(tmp_path: Path) -> None:
    d = tmp_path / "d"
    new_device(d)
    assert not open_device(d).boot().ok


def test_invocation_runs_in_the_bootloader_without_network(tmp_path: Path) -> None:
    d = tmp_path / "d"
    new_device(d)
    open_device(d, V1).update(signed(ab_manifest(1, V1)))
    dev = open_device(d)
    boot = dev.boot()
    assert boot.result is not None and boot.result.procedure is Procedure.INVOCATION
