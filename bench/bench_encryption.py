"""Issue #5 benchmark: streaming decryption of an encrypted payload.

Run: .venv/bin/python bench/bench_encryption.py   (figures go to BENCHMARKS.md)

1. Throughput: a 64 MiB A128CTR payload decrypted through suitkit's streaming decryptor
   (``decrypt_chunks``: COSE_Encrypt decode, AES-KW unwrap, then chunk by chunk) with a SHA-256
   of the plaintext, against bare cryptography AES-128-CTR decryption of the same bytes plus a
   SHA-256 over them; 1 MiB chunks on both sides, side by side in one run, alternating, best of
   several rounds. Target: suitkit >= 50% of bare.
2. Peak memory (tracemalloc) of the streaming decryptor for 4, 16 and 64 MiB payloads, chunks
   produced on the fly: it must be flat in the payload size (about one chunk).
3. For information: the AEAD decryptors (AES-128-GCM, ChaCha20/Poly1305) on the same payload.
4. Installing the 64 MiB A128CTR payload on the simulated device (``SimulatedDevice``, 256 KiB
   flash pages, fsync on commit; the processor with 1 MiB chunks) with the draft's fetch + copy
   form (firmware-encryption §3.2, what ``encryption:`` in a description builds): (a) the
   decrypting install alone: directive-copy from the staging component, which decrypts,
   hashes and writes the plaintext page by page into the target, then image-match reads the
   plaintext back and hashes it; (b) the whole update: fetch of the ciphertext from a local file
   into the staging component, image-match of the ciphertext, then (a). Side by side with the
   bare AES-128-CTR + SHA-256 of the same bytes (1.), alternating, best of several rounds.
   Target: >= 50%. Peak memory (tracemalloc) of (b) for 16 and 64 MiB: flat.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from suitkit.cose.keys import CoseKey  # noqa: E402
from suitkit.encryption import PayloadEncryptor, decrypt_chunks  # noqa: E402
from suitkit.format.codepoints import CoseAlgorithm  # noqa: E402

MIB = 1 << 20
SIZE = 64 * MIB
CHUNK = MIB


def chunks_of(data: bytes, size: int = CHUNK) -> Iterator[memoryview]:
    view = memoryview(data)
    return (view[i : i + size] for i in range(0, len(view), size))


def best_time(fn: Callable[[], object], rounds: int) -> float:
    return min(_timed(fn) for _ in range(rounds))


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    kek = CoseKey.generate(CoseAlgorithm.A128KW, b"bench")
    payload = os.urandom(SIZE)
    cek, iv = os.urandom(16), os.urandom(16)
    enc = PayloadEncryptor(CoseAlgorithm.A128CTR, [kek], cek=cek, iv=iv)
    ciphertext = b"".join(enc.update(c) for c in chunks_of(payload)) + enc.finalize()
    info = enc.encryption_info
    expected = hashlib.sha256(payload).digest()

    def ours() -> bytes:
        h = hashlib.sha256()
        for chunk in decrypt_chunks(info, [kek], chunks_of(ciphertext)):
            h.update(chunk)
        return h.digest()

    def bare() -> bytes:
        h = hashlib.sha256()
        dec = Cipher(algorithms.AES(cek), modes.CTR(iv)).decryptor()
        for chunk in chunks_of(ciphertext):
            h.update(dec.update(chunk))
        h.update(dec.finalize())
        return h.digest()

    assert ours() == expected and bare() == expected
    t_ours, t_bare = [], []
    for _ in range(3):  # alternate, so that machine noise hits both sides alike
        t_ours.append(best_time(ours, 3))
        t_bare.append(best_time(bare, 3))
    to, tb = min(t_ours), min(t_bare)
    mib = SIZE / MIB
    print(
        f"decrypt 64 MiB A128CTR + SHA-256: suitkit decrypt_chunks {mib / to:,.0f} MiB/s "
        f"({to * 1000:.0f} ms); bare cryptography AES-128-CTR + SHA-256 {mib / tb:,.0f} MiB/s "
        f"({tb * 1000:.0f} ms); ratio {tb / to:.0%} (target >= 50%)"
    )

    # --- peak memory, chunks generated on the fly (nothing payload-sized exists) ---
    block = ciphertext[:CHUNK]

    def stream(total: int) -> Iterator[bytes]:
        for _ in range(total // CHUNK):
            yield block

    peaks = []
    for total in (4 * MIB, 16 * MIB, 64 * MIB):
        tracemalloc.start()
        h = hashlib.sha256()
        for chunk in decrypt_chunks(info, [kek], stream(total)):
            h.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peaks.append((total, peak))
    print(
        "peak memory (tracemalloc) of streaming A128CTR decryption: "
        + ", ".join(f"{t // MIB} MiB payload -> {p / MIB:.2f} MiB" for t, p in peaks)
        + f" (1 MiB chunks; flat: {'yes' if peaks[-1][1] < peaks[0][1] + CHUNK else 'NO'})"
    )

    # --- for information: the AEAD decryptors ---
    for alg in (CoseAlgorithm.A128GCM, CoseAlgorithm.CHACHA20_POLY1305):
        key = kek if alg is CoseAlgorithm.A128GCM else CoseKey.generate(CoseAlgorithm.A128KW)
        e = PayloadEncryptor(alg, [key])
        ct = b"".join(e.update(c) for c in chunks_of(payload)) + e.finalize()

        def aead(info: bytes = e.encryption_info, ct: bytes = ct, key: CoseKey = key) -> bytes:
            h = hashlib.sha256()
            for chunk in decrypt_chunks(info, [key], chunks_of(ct)):
                h.update(chunk)
            return h.digest()

        assert aead() == expected
        t = best_time(aead, 3)
        print(f"decrypt 64 MiB {alg.spec_name} + SHA-256 (streaming, tag checked): "
              f"{mib / t:,.0f} MiB/s ({t * 1000:.0f} ms)")  # fmt: skip

    bench_install(kek, payload, ciphertext, info, bare)


# --- 4. installing on the simulated device ----------------------------------------------------

VENDOR = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
CLASS = "1492af14-2569-5e48-bf42-9b2d51f2ab45"
URI = "file:///fw.enc"
PAGE = 256 * 1024


def _encrypted_install(ciphertext: bytes, info: bytes, plaintext_sha: bytes, size: int) -> Any:
    """The fetch + copy form: payload-fetch stages and image-matches the ciphertext, install
    decrypts it by copy into the target and image-matches the plaintext."""
    from suitkit.author.builder import build_from_description

    ct_digest = "sha256:" + hashlib.sha256(ciphertext).hexdigest()
    return build_from_description({
        "sequence-number": 1,
        "components": [["h'00'"], ["h'01'"]],
        "shared-sequence": [
            {"set-component-index": 0},
            {"override-parameters": {"vendor-id": VENDOR, "class-id": CLASS}},
            {"vendor-identifier": 15},
            {"class-identifier": 15},
        ],
        "payload-fetch": [
            {"set-component-index": 1},
            {"override-parameters": {"uri": URI, "digest": ct_digest, "size": len(ciphertext)}},
            {"fetch": 2},
            {"image-match": 15},
        ],
        "install": [
            {"set-component-index": 0},
            {"override-parameters": {
                "digest": "sha256:" + plaintext_sha.hex(),
                "size": size,
                "source-component": 1,
                "encryption-info": f"h'{info.hex()}'",
            }},
            {"copy": 2},
            {"image-match": 15},
        ],
    })


def _new_device(where: Path, size: int, payload: Path, kek: CoseKey) -> Any:
    import uuid

    from suitkit.device.fetch import FileFetcher
    from suitkit.device.processor import ProcessorLimits
    from suitkit.device.simulated import ComponentConfig, DeviceConfig, SimulatedDevice

    cfg = DeviceConfig(
        uuid.UUID(VENDOR),
        uuid.UUID(CLASS),
        None,
        (ComponentConfig((b"\x00",), size, 1), ComponentConfig((b"\x01",), size, 1)),
        PAGE,
    )
    SimulatedDevice.init(where, cfg, decryption_keys=[kek])
    return SimulatedDevice(
        where,
        fetcher=FileFetcher({URI: payload}, chunk_size=CHUNK),
        limits=ProcessorLimits(chunk_size=CHUNK),
    )


def bench_install(
    kek: CoseKey, payload: bytes, ct: bytes, info: bytes, bare: Callable[[], object]
) -> None:
    import shutil
    import tempfile

    from suitkit.device.events import Procedure
    from suitkit.format.codepoints import ManifestKey

    def encrypt(plain: bytes) -> tuple[bytes, bytes]:
        e = PayloadEncryptor(CoseAlgorithm.A128CTR, [kek])
        return b"".join(e.update(c) for c in chunks_of(plain)) + e.finalize(), e.encryption_info

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        tmp = Path(d)
        (tmp / "fw.enc").write_bytes(ct)  # the very bytes the bare decryption reads
        env = _encrypted_install(ct, info, hashlib.sha256(payload).digest(), len(payload))
        n = [0]

        def whole() -> None:  # (b): a fresh device each time (erased flash)
            n[0] += 1
            where = tmp / f"dev{n[0]}"
            dev = _new_device(where, SIZE, tmp / "fw.enc", kek)
            t = time.perf_counter()
            result = dev.update_envelope(env)
            elapsed = time.perf_counter() - t
            assert result.ok, result.error
            times_whole.append(elapsed)
            shutil.rmtree(where)

        staged = _new_device(tmp / "staged", SIZE, tmp / "fw.enc", kek)
        assert staged.update_envelope(env).ok  # the staging component now holds the ciphertext

        def install_only() -> None:  # (a): the decrypting copy + image-match of the plaintext
            proc = staged._processor()
            t = time.perf_counter()
            result = proc.run(env, Procedure.UPDATE, skip=(ManifestKey.PAYLOAD_FETCH,))
            elapsed = time.perf_counter() - t
            assert result.ok, result.error
            times_install.append(elapsed)

        times_whole: list[float] = []
        times_install: list[float] = []
        times_bare: list[float] = []
        for _ in range(5):  # alternate, so that machine noise hits every side alike
            install_only()
            times_bare.append(_timed(bare))
            whole()
        ti, tw, t_bare = min(times_install), min(times_whole), min(times_bare)
        mib = SIZE / MIB
        print(
            f"install 64 MiB A128CTR on the simulated device: decrypting copy + image-match "
            f"{mib / ti:,.0f} MiB/s ({ti * 1000:.0f} ms), {t_bare / ti:.0%} of bare "
            f"AES-128-CTR + SHA-256 ({mib / t_bare:,.0f} MiB/s); whole update (fetch + "
            f"image-match of the ciphertext, then the decrypting install) {mib / tw:,.0f} MiB/s "
            f"({tw * 1000:.0f} ms), {t_bare / tw:.0%} (target >= 50%)"
        )

        peaks = []
        for total in (16 * MIB, SIZE):
            plain = payload[:total]
            c, i = encrypt(plain)
            (tmp / "fw.enc").write_bytes(c)
            e = _encrypted_install(c, i, hashlib.sha256(plain).digest(), total)
            dev = _new_device(tmp / f"mem{total}", SIZE, tmp / "fw.enc", kek)
            del c
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            result = dev.update_envelope(e)
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            assert result.ok, result.error
            peaks.append((total, peak))
            shutil.rmtree(tmp / f"mem{total}")
        print(
            "peak memory growth (tracemalloc) of the whole encrypted update: "
            + ", ".join(f"{t // MIB} MiB payload -> {p / MIB:.2f} MiB" for t, p in peaks)
            + f" (flat: {'yes' if peaks[-1][1] < peaks[0][1] + CHUNK else 'NO'})"
        )


if __name__ == "__main__":
    main()
