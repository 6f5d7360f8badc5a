"""Issue #2 benchmarks: decode + authentication, typed decode, build + sign, CLI start-up.

Run: .venv/bin/python bench/bench_core.py   (figures go to BENCHMARKS.md)
Each comparison is measured side by side in one run: short alternating batches of both sides,
each side's best batch (see side_by_side).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import load_pem_public_key

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suitkit.author.builder import build_from_description  # noqa: E402
from suitkit.author.signing import sign_envelope  # noqa: E402
from suitkit.cose.keys import CoseKey  # noqa: E402
from suitkit.format.authentication import authenticate  # noqa: E402
from suitkit.format.envelope import Envelope  # noqa: E402

VECTORS = ROOT / "tests" / "vectors"
EX1 = (VECTORS / "example1.suit").read_bytes()
PUB_PEM = (VECTORS / "keys" / "suit-example-es256-public.pem").read_bytes()


def rate(fn: Callable[[], Any], seconds: float = 0.4) -> float:
    """Calls per second: best of 5 rounds of ``seconds`` each."""
    best = 0.0
    for _ in range(5):
        n = 0
        t0 = time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            for _ in range(20):
                fn()
            n += 20
        best = max(best, n / elapsed)
    return best


def side_by_side(
    a: Callable[[], Any], b: Callable[[], Any], seconds: float = 8.0
) -> tuple[float, float]:
    """Calls per second of ``a`` and ``b``, measured in short alternating batches (about 5 ms
    each, the order swapped every round) for ``seconds`` in all; each side's rate is its best
    batch. Other processes on the machine can only slow a batch down, and with batches this
    short both sides see the same conditions, so the ratio stays put on a busy machine where
    long back-to-back rounds of one side and then the other drift apart."""
    sizes = []
    for fn in (a, b):
        fn()  # warm up (caches, lazily built tables)
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < 0.05:
            fn()
            n += 1
        sizes.append(max(1, int(n * 0.005 / (time.perf_counter() - t0))))
    best = [float("inf"), float("inf")]
    fns = [(0, a, sizes[0]), (1, b, sizes[1])]
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for i, fn, size in fns:
            t0 = time.perf_counter()
            for _ in range(size):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / size)
        fns.reverse()
    return 1 / best[0], 1 / best[1]


def bench_authenticate() -> None:
    key = CoseKey.load(VECTORS / "keys" / "suit-example-es256-public.pem")
    pub = load_pem_public_key(PUB_PEM)
    env = Envelope.decode(EX1)
    manifest_wrapped = cbor2.dumps(env.manifest.encoded)
    sign1 = cbor2.loads(env.authentication.blocks[0]).value
    sig = sign1[3]
    der = utils.encode_dss_signature(
        int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    )
    tbs = cbor2.dumps(["Signature1", sign1[0], b"", env.authentication.digest.encoded])
    assert isinstance(pub, ec.EllipticCurvePublicKey)

    def bare() -> None:
        hashlib.sha256(manifest_wrapped).digest()
        pub.verify(der, tbs, ec.ECDSA(hashes.SHA256()))

    def ours() -> None:
        authenticate(EX1, [key])

    r_ours, r_bare = side_by_side(ours, bare)
    print(
        f"decode + authenticate example1.suit: {r_ours:,.0f}/s "
        f"({1e6 / r_ours:.1f} us); bare ECDSA P-256 verify + SHA-256: {r_bare:,.0f}/s "
        f"({1e6 / r_bare:.1f} us); ratio {r_ours / r_bare:.0%} (target >= 80%)"
    )


def _nested(x: Any) -> Any:
    """cbor2 decode of every bstr-wrapped layer, as the issue describes the baseline."""
    t = type(x)
    if t is bytes and x[:1] and x[0] >> 5 in (4, 5, 6):
        try:
            return _nested(cbor2.loads(x))
        except Exception:
            return x
    if t is list or t is tuple:
        return [_nested(v) for v in x]
    if t is dict or isinstance(x, cbor2.frozendict):
        return {k: _nested(v) for k, v in x.items()}
    if t is cbor2.CBORTag:
        return cbor2.CBORTag(x.tag, _nested(x.value))
    return x


def bench_decode() -> None:
    def ours() -> None:
        Envelope.decode(EX1)

    def nested() -> None:
        _nested(cbor2.loads(EX1))

    r_ours, r_cbor = side_by_side(ours, nested)
    print(
        f"typed decode of example1.suit: {r_ours:,.0f}/s ({1e6 / r_ours:.1f} us); "
        f"fully nested cbor2.loads: {r_cbor:,.0f}/s ({1e6 / r_cbor:.1f} us); "
        f"ratio {r_ours / r_cbor:.0%} (target >= 25%)"
    )


def bench_build_sign() -> None:
    key = CoseKey.load(VECTORS / "keys" / "suit-example-es256-private.pem")
    digest = "sha256:" + "11" * 32
    desc = {
        "sequence-number": 9,
        "components": [
            {
                "id": ["h'00'"],
                "vendor-domain": "example.com",
                "class-info": "a",
                "digest": digest,
                "size": 1000,
                "uri": "http://example.com/a.bin",
                "invoke": True,
            },
            {"id": ["h'01'"], "digest": digest, "size": 2000, "uri": "http://example.com/b.bin"},
        ],
    }

    def build_sign() -> None:
        sign_envelope(build_from_description(desc), [key]).encode()

    r = rate(build_sign, 1.0)
    print(
        f"build + sign (ESP256) of a two-component manifest: {r:,.0f}/s "
        f"({1e6 / r:.0f} us) (target >= 3,000/s)"
    )


def bench_cli() -> None:
    # what a real install has: byte-compiled sources (an editable install, or an environment
    # with PYTHONDONTWRITEBYTECODE set, would otherwise recompile suitkit on every run)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True,
                   stdout=subprocess.DEVNULL)
    exe = ROOT / ".venv" / "bin" / "suitkit"
    cmd = [
        str(exe),
        "verify",
        str(VECTORS / "example1.suit"),
        "--key",
        str(VECTORS / "keys" / "suit-example-es256-public.pem"),
    ]
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    print(
        "CLI `suitkit verify example1.suit --key ...`: "
        f"median {statistics.median(times) * 1000:.0f} ms over 30 runs "
        f"(min {min(times) * 1000:.0f} ms) (target < 100 ms)"
    )


if __name__ == "__main__":
    print(
        f"python {sys.version.split()[0]}, cbor2 {importlib.metadata.version('cbor2')}, "
        f"{os.cpu_count()} cores"
    )
    bench_authenticate()
    bench_decode()
    bench_build_sign()
    bench_cli()
