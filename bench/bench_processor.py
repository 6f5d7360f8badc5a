"""Benchmark of the suitkit manifest processor (plain script).

    .venv/bin/python bench/bench_processor.py [--size-mib 256] [--runs 3000]

1. Install a payload from a local file into a simulated-device slot (fetch through the digest,
   page-granular write, image-match read-back hashed by the processor) versus a plain
   single-pass read + sha256 + write of the same file. Target: processor >= 50% of plain.
2. Peak Python memory growth (tracemalloc) of the same install for 16 MiB and for the large
   payload. Target: < 16 MiB and the same for both sizes.
3. Example 3 (Appendix B) processed after authentication on a MemoryPlatform, no payload I/O.
   Target: >= 3,000 runs/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from suitkit.author.builder import build_from_description
from suitkit.device.events import Procedure
from suitkit.device.fetch import FileFetcher
from suitkit.device.memory import MemoryComponent, MemoryPlatform
from suitkit.device.platform import DeviceIdentity
from suitkit.device.processor import Processor, ProcessorLimits
from suitkit.device.simulated import ComponentConfig, DeviceConfig, SimulatedDevice
from suitkit.format.envelope import Envelope

VENDOR = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
CLASS = "1492af14-2569-5e48-bf42-9b2d51f2ab45"
CHUNK = 1 << 20
PAGE = 256 * 1024
URI = "file:///payload.bin"
ROOT = Path(__file__).resolve().parents[1]


def make_payload(path: Path, size: int) -> str:
    h = hashlib.sha256()
    block = os.urandom(CHUNK)
    with path.open("wb") as f:
        for _ in range(size // CHUNK):
            f.write(block)
            h.update(block)
    return "sha256:" + h.hexdigest()


def plain_copy(src: Path, dst: Path) -> float:
    t = time.perf_counter()
    h = hashlib.sha256()
    with src.open("rb") as fi, dst.open("wb") as fo:
        while chunk := fi.read(CHUNK):
            h.update(chunk)
            fo.write(chunk)
        fo.flush()
        os.fsync(fo.fileno())
    h.digest()
    return time.perf_counter() - t


def install_envelope(digest: str, size: int) -> Envelope:
    return build_from_description({
        "sequence-number": 1,
        "components": [["h'00'"]],
        "shared-sequence": [
            {"override-parameters": {"vendor-id": VENDOR, "class-id": CLASS, "digest": digest,
                                     "size": size}},
            {"vendor-identifier": 15},
            {"class-identifier": 15},
        ],
        "install": [{"override-parameters": {"uri": URI}}, {"fetch": 2}, {"image-match": 15}],
    })


def device(where: Path, size: int, payload: Path) -> SimulatedDevice:
    cfg = DeviceConfig(uuid.UUID(VENDOR), uuid.UUID(CLASS), None,
                       (ComponentConfig((b"\x00",), size, 1),), PAGE)
    SimulatedDevice.init(where, cfg)
    return SimulatedDevice(where, fetcher=FileFetcher({URI: payload}, chunk_size=CHUNK),
                           limits=ProcessorLimits(chunk_size=CHUNK))


def processor_install(tmp: Path, payload: Path, digest: str, size: int, tag: str) -> float:
    dev = device(tmp / f"dev-{tag}", size, payload)
    env = install_envelope(digest, size)
    t = time.perf_counter()
    result = dev.update_envelope(env)
    elapsed = time.perf_counter() - t
    if not result.ok:
        raise SystemExit(f"install failed: {result.error}")
    shutil.rmtree(tmp / f"dev-{tag}")
    return elapsed


def peak_growth(tmp: Path, payload: Path, digest: str, size: int, tag: str) -> int:
    dev = device(tmp / f"mem-{tag}", size, payload)
    env = install_envelope(digest, size)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = dev.update_envelope(env)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert result.ok, result.error
    shutil.rmtree(tmp / f"mem-{tag}")
    return peak


def example3_rate(runs: int) -> tuple[float, float]:
    from suitkit.cose import CoseKey
    from suitkit.device.processor import authenticated_envelope

    vectors = ROOT / "tests" / "vectors"
    env = authenticated_envelope((vectors / "example3.suit").read_bytes(),
                                 [CoseKey.load(vectors / "keys/suit-example-es256-public.pem")])
    ident = DeviceIdentity(uuid.UUID(VENDOR), uuid.UUID(CLASS))
    rates = []
    for image in (None, b"z" * 76834):  # empty slot; then the slot-1 image read and hashed
        platform = MemoryPlatform.create(
            ident, {(b"\x00",): MemoryComponent(1 << 20, slot=1,
                                                content=bytearray(image) if image else None)}
        )
        proc = Processor(platform)
        proc.run(env, Procedure.INVOCATION)  # warm-up
        t = time.perf_counter()
        for _ in range(runs):
            proc.run(env, Procedure.INVOCATION)
        rates.append(runs / (time.perf_counter() - t))
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3000)
    args = ap.parse_args()
    big = args.size_mib * 1024 * 1024
    small = 16 * 1024 * 1024
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        tmp = Path(d)
        payload = tmp / "payload.bin"
        digest = make_payload(payload, big)
        plain = min(plain_copy(payload, tmp / "copy.bin") for _ in range(2))
        proc = min(processor_install(tmp, payload, digest, big, str(i)) for i in range(2))
        mib = big / (1024 * 1024)
        print(f"install {args.size_mib} MiB: plain read+sha256+write {plain:.3f} s "
              f"({mib / plain:.0f} MiB/s); processor fetch+digest+write+image-match "
              f"{proc:.3f} s ({mib / proc:.0f} MiB/s); processor/plain throughput "
              f"{plain / proc:.0%} (target >= 50%)")
        small_payload = tmp / "small.bin"
        small_digest = make_payload(small_payload, small)
        g_small = peak_growth(tmp, small_payload, small_digest, small, "s")
        g_big = peak_growth(tmp, payload, digest, big, "b")
        print(f"peak memory growth: 16 MiB payload {g_small / 1024:.0f} KiB, "
              f"{args.size_mib} MiB payload {g_big / 1024:.0f} KiB (target < 16 MiB, equal)")
    empty, with_image = example3_rate(args.runs)
    print(f"example 3 Invocation after authentication on MemoryPlatform: {empty:,.0f} runs/s "
          f"without payload I/O (target >= 3,000); {with_image:,.0f} runs/s when image-match "
          "reads and hashes the 76,834-byte slot image")


if __name__ == "__main__":
    sys.exit(main())
