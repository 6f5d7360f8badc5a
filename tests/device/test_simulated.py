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
    result = open_device(d, V1).update(ab_manifest(1, V1).encode())
    assert isinstance(result.error, AuthenticationError)
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


def test_bootloader_falls_back_to_the_other_slot_when_the_active_slot_is_corrupted(
    tmp_path: Path,
) -> None:
    """Manifest §6.1 ("MAY select the next latest valid, authentic manifest"): V1 boots from
    slot 1, V2 from slot 0; then the active slot's flash file (slot 0) is damaged. The
    Invocation procedure of V2 fails image-match, the bootloader boots V1 from slot 1."""
    d = tmp_path / "d"
    new_device(d)
    assert open_device(d, V1).update(signed(ab_manifest(1, V1))).ok
    assert open_device(d).boot().slot == 1
    assert open_device(d, V2).update(signed(ab_manifest(2, V2))).ok
    dev = open_device(d)
    assert dev.boot().slot == 0 and dev.state["boot"]["active"] == 0
    flash = d / "flash" / "00.0"
    data = bytearray(flash.read_bytes())
    data[3 * PAGE + 1] ^= 0x40
    flash.write_bytes(bytes(data))
    dev = open_device(d)
    boot = dev.boot()
    assert boot.slot == 1 and booted_image(dev) == V1
    assert [slot for slot, _ in boot.attempts] == [0, 1]
    first = boot.attempts[0][1]
    assert not isinstance(first, Exception)
    assert isinstance(first.error, ConditionFailedError) and first.invoked == ()
    assert [p.name.split("-", 1)[1] for p in dev.reports] == ["boot-slot0.report",
                                                              "boot-slot1.report"]
    assert open_device(d).state["boot"]["active"] == 1


def test_ab_update_with_a_wrong_payload_leaves_the_active_slot_untouched(tmp_path: Path) -> None:
    """Issue item 6: a payload whose digest does not match is never invoked; the A/B update
    wrote only the inactive slot, the active one is byte for byte the same."""
    d = tmp_path / "d"
    new_device(d)
    assert open_device(d, V1).update(signed(ab_manifest(1, V1))).ok
    assert open_device(d).boot().slot == 1
    active = (d / "flash" / "00.1").read_bytes()
    wrong = V2[:-1] + b"?"
    result = open_device(d, wrong).update(signed(ab_manifest(2, V2)))
    assert isinstance(result.error, ConditionFailedError)
    assert (d / "flash" / "00.1").read_bytes() == active
    dev = open_device(d)
    assert dev.state["sequence-numbers"] == {"root": 1} and dev.state["journal"] is None
    assert dev.boot().slot == 1 and booted_image(dev) == V1
    assert all(inv[1] == 1 for inv in dev.invocations)


def test_every_run_leaves_a_signed_report(tmp_path: Path) -> None:
    """Report §4, issue item 7: an update, a rejected (unsigned) envelope and a boot each leave
    a COSE_Sign1 report signed by the device key."""
    from suitkit.cose import CoseKey
    from suitkit.device.report import verify_report
    from suitkit.format.codepoints import ReportReason

    d = tmp_path / "d"
    new_device(d)
    pub = [CoseKey.load(d / "device-key.pub.pem")]
    dev = open_device(d, V1)
    env = ab_manifest(1, V1)
    assert dev.update(signed(env)).ok
    assert dev.update(env.encode()).error is not None
    boot_dev = open_device(d)
    assert boot_dev.boot().ok
    names = sorted(p.name for p in (d / "reports").iterdir())
    assert names == ["0001-update.report", "0002-update.report", "0003-boot-slot1.report"]
    ok, rejected, booted = (verify_report((d / "reports" / n).read_bytes(), pub) for n in names)
    assert ok.ok and booted.ok
    assert ok.manifest_digest == env.authentication.digest == booted.manifest_digest
    assert rejected.result is not None and rejected.result.reason is ReportReason.UNAUTHORISED
    assert rejected.manifest_digest == env.authentication.digest


def test_flash_is_erased_and_programmed_page_by_page(tmp_path: Path) -> None:
    """Erased flash reads 0xFF; an image's last page is padded with 0xFF; a new image erases the
    pages of the old one it does not overwrite; erase() erases the pages the content used."""
    d = tmp_path / "d"
    new_device(d)
    flash = d / "flash" / "00.1"  # both updates go to slot 1: the device never booted
    assert flash.read_bytes() == b"\xff" * 16 * PAGE
    big, small = image(b"big ", 5 * PAGE + 10), image(b"small ", PAGE + 1)
    dev = open_device(d, big)
    assert dev.update(signed(ab_manifest(1, big))).ok
    raw = flash.read_bytes()
    assert raw[: len(big)] == big and raw[len(big) :] == b"\xff" * (16 * PAGE - len(big))
    assert open_device(d, small).update(signed(ab_manifest(2, small))).ok
    raw = flash.read_bytes()
    assert raw[: len(small)] == small and set(raw[len(small) :]) == {0xFF}
    dev = open_device(d)
    dev.view = {(b"\x00",): 1}
    writes_before = dev.fault.count
    dev.erase((b"\x00",))
    assert dev.size((b"\x00",)) is None
    assert set(flash.read_bytes()) == {0xFF}
    assert dev.fault.count - writes_before == 1 + 2  # the state, then the 2 pages it used


def test_status_lists_length_and_digest_of_every_slot(tmp_path: Path) -> None:
    import hashlib

    d = tmp_path / "d"
    new_device(d)
    assert open_device(d, V1).update(signed(ab_manifest(1, V1))).ok
    contents = open_device(d).status()["contents"]
    by_slot = {(c["component"], c["slot"]): c for c in contents}
    assert by_slot[("00", 1)]["length"] == len(V1)
    assert by_slot[("00", 1)]["digest"] == "sha256:" + hashlib.sha256(V1).hexdigest()
    assert by_slot[("00", 0)] == {"component": "00", "slot": 0, "length": None, "digest": None}


def test_the_journal_opens_when_the_first_section_after_the_shared_sequence_begins(
    tmp_path: Path,
) -> None:
    """The journal (and the stored envelope) only appear when a section that may write begins."""
    from suitkit.format.codepoints import ManifestKey

    d = tmp_path / "d"
    new_device(d)
    dev = open_device(d, V1)
    seen: list[tuple[int, bool]] = []
    original = dev.begin_section

    def spy(procedure: Procedure, section: int) -> None:
        original(procedure, section)
        seen.append((section, dev.state["journal"] is not None))

    dev.begin_section = spy  # type: ignore[method-assign]
    assert dev.update(signed(ab_manifest(1, V1))).ok
    assert seen[0] == (ManifestKey.COMMON, False)
    assert all(opened for _, opened in seen[1:])
    stored = open_device(d).state["boot"]["manifests"]["1"]
    assert list((d / "manifests").iterdir()) == [d / stored]


def test_bootloader_rejects_a_stored_manifest_that_no_longer_authenticates(
    tmp_path: Path,
) -> None:
    """The bootloader authenticates the stored envelope before each Invocation (manifest §6.2;
    RFC 9124 THREAT.MFST.MODIFICATION at rest): a damaged one is rejected (reported with reason
    unauthorised) and the other slot boots."""
    from suitkit.cose import CoseKey
    from suitkit.device.report import verify_report
    from suitkit.format.codepoints import ReportReason

    d = tmp_path / "d"
    new_device(d)
    assert open_device(d, V1).update(signed(ab_manifest(1, V1))).ok
    assert open_device(d).boot().slot == 1
    assert open_device(d, V2).update(signed(ab_manifest(2, V2))).ok
    dev = open_device(d)
    stored = d / dev.state["boot"]["manifests"]["0"]
    data = bytearray(stored.read_bytes())
    data[data.find(b"example.com")] ^= 0x20
    stored.write_bytes(bytes(data))
    dev = open_device(d)
    boot = dev.boot()
    assert boot.slot == 1 and booted_image(dev) == V1
    assert isinstance(boot.attempts[0][1], AuthenticationError)
    report = verify_report(dev.reports[0].read_bytes(), [CoseKey.load(d / "device-key.pub.pem")])
    assert report.result is not None and report.result.reason is ReportReason.UNAUTHORISED
    assert report.manifest_digest == ab_manifest(2, V2).authentication.digest
