"""The directory-backed CMS device: state in JSON, firmware in files, every write atomic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from suitkit.cms import CmsDevice, CmsError, Encryption, LoadErrorCode, build_package, load_package
from suitkit.cms.device_store import DirectoryDevice, atomic_write
from suitkit.cms.model import InstalledPackage, PreferredName
from tests.cms.helpers import HW, PKG, SERIAL, Pki, firmware, spec

KEY = bytes(range(16))


def make(tmp_path: Path, pki: Pki, **kw: object) -> DirectoryDevice:
    return DirectoryDevice.create(
        tmp_path / "dev",
        hw_type=HW,
        hw_serial=SERIAL,
        trust_anchor_files=[("ca.pem", pki.pem("ca_cert"), True)],
        **kw,  # type: ignore[arg-type]
    )


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_directory_device_is_a_cms_device(tmp_path: Path, pki: Pki) -> None:
    assert isinstance(make(tmp_path, pki), CmsDevice)


def test_load_writes_firmware_and_state_that_survive_a_reopen(tmp_path: Path, pki: Pki) -> None:
    dev = make(tmp_path, pki, keys={b"k": KEY})
    fw = firmware(70_000)
    load_package(
        build_package(
            fw, spec(stale=4, encryption=Encryption(KEY, b"k"), compress=True), pki.signer
        ),
        dev,
    )
    again = DirectoryDevice(dev.root)
    assert again.firmware_path(PreferredName(PKG, 7)).read_bytes() == fw
    assert again.stale_version(PKG) == 4
    assert again.installed_packages() == [InstalledPackage(PreferredName(PKG, 7))]
    assert again.hw_serial == SERIAL and again.hw_type == HW
    assert not leftovers(dev.root)
    assert oct((dev.root / "keys" / "6b.key").stat().st_mode & 0o777) == "0o600"


def test_rejected_load_leaves_no_file_behind(tmp_path: Path, pki: Pki) -> None:
    dev = make(tmp_path, pki, flash_size=100)
    with pytest.raises(CmsError) as info:
        load_package(build_package(firmware(1000), spec(), pki.signer), dev)
    assert info.value.code is LoadErrorCode.INSUFFICIENT_MEMORY
    assert not list((dev.root / "firmware").iterdir())
    assert json.loads((dev.root / "cms-state.json").read_text())["installed"] == []


def test_stale_version_in_the_store_only_ratchets_up(tmp_path: Path, pki: Pki) -> None:
    dev = make(tmp_path, pki)
    dev.set_stale_version(PKG, 5)
    dev.set_stale_version(PKG, 3)
    assert DirectoryDevice(dev.root).stale_version(PKG) == 5


def test_writer_abort_removes_the_temporary_file(tmp_path: Path, pki: Pki) -> None:
    dev = make(tmp_path, pki)
    writer = dev.begin_firmware(PreferredName(PKG, 1), 10)
    writer.write(b"12345")
    assert leftovers(dev.root)
    writer.abort()
    assert not leftovers(dev.root)
    assert not dev.firmware_path(PreferredName(PKG, 1)).exists()


def test_writer_refuses_a_short_image(tmp_path: Path, pki: Pki) -> None:
    dev = make(tmp_path, pki)
    writer = dev.begin_firmware(PreferredName(PKG, 1), 10)
    writer.write(b"12345")
    with pytest.raises(OSError):
        writer.commit()
    assert not leftovers(dev.root) and not dev.firmware_path(PreferredName(PKG, 1)).exists()


def test_atomic_write_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, b"old")
    inode = target.stat().st_ino
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_ino != inode  # a new file was renamed over the old one
    assert os.listdir(tmp_path) == ["state.json"]


def test_not_a_device_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device-init"):
        DirectoryDevice(tmp_path)


def test_corrupt_state_file_is_reported(tmp_path: Path, pki: Pki) -> None:
    dev = make(tmp_path, pki)
    (dev.root / "cms-state.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"cms-state\.json"):
        DirectoryDevice(dev.root)
