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

    def _fetch(self, uri: str, arguments: bytes | None) -> Iterator[bytes]:
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
