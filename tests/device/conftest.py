"""Shared fixtures for the device tests: the Appendix B identities, memory devices, builders."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from suitkit.author.builder import build_from_description
from suitkit.device.memory import MemoryComponent, MemoryPlatform
from suitkit.device.platform import DeviceIdentity
from suitkit.format.envelope import Envelope

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
VENDOR = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
CLASS = "1492af14-2569-5e48-bf42-9b2d51f2ab45"
IDENTITY = DeviceIdentity(uuid.UUID(VENDOR), uuid.UUID(CLASS), uuid.UUID(int=7))
C0, C1, C2 = (b"\x00",), (b"\x01",), (b"\x02",)


def example(n: int, severed: bool = False) -> Envelope:
    name = f"example{n}.severed.suit" if severed else f"example{n}.suit"
    return Envelope.decode((VECTORS / name).read_bytes())


def memory_device(
    payloads: Mapping[str, bytes] | None = None,
    *,
    slot: int | None = None,
    capacity: int = 1 << 20,
    components: Mapping[tuple[bytes, ...], int | MemoryComponent] | None = None,
) -> MemoryPlatform:
    comps: dict[tuple[bytes, ...], int | MemoryComponent] = dict(
        components
        or {C0: MemoryComponent(capacity, slot=slot), C1: capacity, C2: capacity}
    )
    return MemoryPlatform.create(IDENTITY, comps, payloads)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def explicit(
    *,
    components: int = 1,
    shared: list[Any] | None = None,
    seq: int = 1,
    identity: bool = True,
    **sections: Any,
) -> Envelope:
    """An unsigned envelope from an explicit description; the shared sequence checks the
    Appendix B vendor and class ids unless ``identity`` is false."""
    pre: list[Any] = []
    if components > 1:
        pre.append({"set-component-index": 0})
    if identity:
        pre += [
            {"override-parameters": {"vendor-id": VENDOR, "class-id": CLASS}},
            {"vendor-identifier": 15},
            {"class-identifier": 15},
        ]
    desc: dict[str, Any] = {
        "sequence-number": seq,
        "components": [[f"h'{i:02x}'"] for i in range(components)],
    }
    if pre or shared:
        desc["shared-sequence"] = pre + list(shared or [])
    for k, v in sections.items():
        desc[k.replace("_", "-")] = v
    return build_from_description(desc)


@pytest.fixture
def payload_files(tmp_path: Path) -> dict[str, Path]:
    """Two distinct payload files (the twins' images)."""
    out = {}
    for name, size, fill in (("file1.bin", 34768, 0x11), ("file2.bin", 76834, 0x22)):
        p = tmp_path / name
        p.write_bytes(bytes([fill]) * (size - 8) + name.encode()[:8].ljust(8, b"."))
        out[name] = p
    return out


EXAMPLE_KEY = VECTORS / "keys" / "suit-example-es256-private.pem"
EXAMPLE_PUB = VECTORS / "keys" / "suit-example-es256-public.pem"


def sign(env: Envelope, key_path: Path = EXAMPLE_KEY) -> bytes:
    """Sign an unsigned envelope with COSE_Sign1 (detached payload: the encoded SUIT_Digest)."""
    from suitkit.cose import CoseKey, sign1
    from suitkit.format.envelope import AuthenticationWrapper

    key = CoseKey.load(key_path)
    digest = env.authentication.digest
    block = sign1(digest.encoded, key).encode()
    return env.with_authentication(AuthenticationWrapper(digest, (block,))).encode()
