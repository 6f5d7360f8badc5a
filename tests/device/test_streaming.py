"""Streaming (manifest §8.4.10.4-6): payloads move in chunks through the digest; no buffer ever
holds a whole payload."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from suitkit.author.builder import build_from_description
from suitkit.device.fetch import FetcherBase
from suitkit.device.simulated import SimulatedDevice

from .conftest import CLASS, VENDOR
from .devices import URI, new_device, signed

SIZE = 24 * 1024 * 1024
CHUNK = 64 * 1024


class PatternFetcher(FetcherBase):
    """Generates the payload on the fly (so the test itself holds no payload)."""

    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        block = bytes(range(256)) * (CHUNK // 256)
        for _ in range(SIZE // CHUNK):
            yield block


def _digest() -> bytes:
    h = hashlib.sha256()
    block = bytes(range(256)) * (CHUNK // 256)
    for _ in range(SIZE // CHUNK):
        h.update(block)
    return h.digest()


def test_fetch_write_and_image_match_stream_without_whole_payload_buffers(tmp_path: Path) -> None:
    d = tmp_path / "d"
    new_device(d, size=SIZE + 4096)
    d_text = "sha256:" + _digest().hex()
    env = build_from_description({
        "sequence-number": 1,
        "components": [{"id": ["h'00'"], "vendor-id": VENDOR, "class-id": CLASS, "slots": [
            {"slot": s, "digest": d_text, "size": SIZE, "uri": URI} for s in (0, 1)
        ]}],
    })
    data = signed(env)
    dev = SimulatedDevice(d, fetcher=PatternFetcher())
    tracemalloc.start()
    try:
        result = dev.update(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while streaming {SIZE} bytes"


def test_staged_copy_and_swap_stream_component_to_component(tmp_path: Path) -> None:
    """Copy (manifest §8.4.10.5) reads the source component in chunks into the writer; swap
    moves page by page through the scratch page: neither holds a whole image."""
    import uuid

    from suitkit.device.fetch import MemoryFetcher
    from suitkit.device.simulated import ComponentConfig, DeviceConfig

    from .conftest import EXAMPLE_PUB
    from .devices import staged_manifest

    size, page = 8 * 1024 * 1024, 64 * 1024
    img = bytes(range(256)) * (size // 256)
    comps = tuple(ComponentConfig((bytes([i]),), size + page) for i in range(3))
    config = DeviceConfig(uuid.UUID(VENDOR), uuid.UUID(CLASS), None, comps, page)
    for how in ("copy", "swap"):
        d = tmp_path / how
        SimulatedDevice.init(d, config, [EXAMPLE_PUB])
        env = signed(staged_manifest(1, img, how))
        dev = SimulatedDevice(d, fetcher=MemoryFetcher({URI: img}), durable=False)
        tracemalloc.start()
        try:
            result = dev.update(env)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.ok, result.error
        assert peak < 1024 * 1024, f"{how}: peak {peak} bytes for an {size}-byte image"
