"""Simulated-device helpers shared by the device-directory tests."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

from suitkit.author.builder import build_from_description
from suitkit.device.fetch import MemoryFetcher
from suitkit.device.simulated import ComponentConfig, DeviceConfig, FaultInjector, SimulatedDevice
from suitkit.format.envelope import Envelope

from .conftest import CLASS, EXAMPLE_PUB, VENDOR, sign

URI = "http://example.com/firmware.bin"
PAGE = 1024


def digest_text(img: bytes) -> str:
    return "sha256:" + hashlib.sha256(img).hexdigest()


def new_device(
    path: Path, *, slots: int = 2, size: int = 16 * PAGE, keys: Any = ()
) -> SimulatedDevice:
    cfg = DeviceConfig(
        uuid.UUID(VENDOR),
        uuid.UUID(CLASS),
        uuid.UUID(int=7),
        (
            ComponentConfig((b"\x00",), size, slots),
            ComponentConfig((b"\x01",), size),
            ComponentConfig((b"\x02",), size),
        ),
        PAGE,
    )
    return SimulatedDevice.init(path, cfg, [EXAMPLE_PUB], decryption_keys=keys)


def open_device(
    path: Path, payload: bytes | None = None, fault: FaultInjector | None = None
) -> SimulatedDevice:
    """The device in ``path``; the fetcher (when ``payload`` is given) serves it at URI. No
    fsync: the power cuts here are simulated (``durable=False``)."""
    fetcher = MemoryFetcher({URI: payload}, chunk_size=700) if payload is not None else None
    return SimulatedDevice(path, fetcher=fetcher, fault=fault, durable=False)


def ab_manifest(seq: int, img: bytes) -> Envelope:
    """A/B template (§7.7): the same image for either slot, fetched in install, invoked."""
    slots = [{"slot": s, "digest": digest_text(img), "size": len(img), "uri": URI} for s in (0, 1)]
    return build_from_description({
        "sequence-number": seq,
        "components": [
            {"id": ["h'00'"], "vendor-id": VENDOR, "class-id": CLASS, "slots": slots,
             "invoke": True}
        ],
    })


def staged_manifest(seq: int, img: bytes, how: str = "copy") -> Envelope:
    """Staged update: payload-fetch into the staging component [h'02'], then copy or swap it
    into the execution component [h'00'] in install (§7.3, §7.4)."""
    d = digest_text(img)
    return build_from_description({
        "sequence-number": seq,
        "components": [["h'00'"], ["h'02'"]],
        "shared-sequence": [
            {"set-component-index": 0},
            {"override-parameters": {"vendor-id": VENDOR, "class-id": CLASS, "digest": d,
                                     "size": len(img)}},
            {"vendor-identifier": 15},
            {"class-identifier": 15},
            {"set-component-index": 1},
            {"override-parameters": {"digest": d, "size": len(img)}},
        ],
        "payload-fetch": [
            {"set-component-index": 1},
            {"override-parameters": {"uri": URI}},
            {"fetch": 2},
            {"image-match": 15},
        ],
        "install": [
            {"set-component-index": 0},
            {"override-parameters": {"source-component": 1}},
            {how: 2},
            {"image-match": 15},
        ],
        "validate": [{"set-component-index": 0}, {"image-match": 15}],
        "invoke": [{"set-component-index": 0}, {"invoke": 2}],
    })


def booted_image(dev: SimulatedDevice) -> bytes:
    cid, slot, _ = dev.invocations[-1]
    key = f"{cid[0].hex()}.{slot}"
    length = dev.state["lengths"][key] or 0
    return (dev.dir / "flash" / key).read_bytes()[:length]


def signed(env: Envelope) -> bytes:
    return sign(env)


def image(tag: bytes, size: int) -> bytes:
    return (tag * (size // len(tag) + 1))[:size]


def state_is_consistent(dev: SimulatedDevice) -> Any:
    import json

    state = json.loads((dev.dir / "state.json").read_text())
    assert state["journal"] is None
    for name in state["boot"]["manifests"].values():
        assert (dev.dir / name).is_file()
    return state


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file of a device directory but its reports: what "nothing written" compares."""
    return {
        str(f.relative_to(path)): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and f.relative_to(path).parts[0] != "reports"
    }
