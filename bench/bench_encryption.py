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
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

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


if __name__ == "__main__":
    main()
