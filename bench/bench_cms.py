"""Issue #4 benchmark: verify + load a 64 MiB signed, uncompressed RFC 4108 firmware package,
side by side with ``openssl cms -verify`` on the same file, and the peak memory of a load.

Run: .venv/bin/python bench/bench_cms.py [--size-mib 64] [--rounds 5]
(figures go to BENCHMARKS.md). Each round runs every contender once, alternating; the best
round counts. Throughput is firmware octets per second of wall-clock time.

Contenders:
- openssl: ``openssl cms -verify -inform DER -binary -in PKG -CAfile CA -out FILE`` (whole
  command, process start included);
- suitkit in-process: read PKG, ``load_package`` into an in-memory device (verify + load);
- suitkit in-process, directory device: the same into the directory store (image written to a
  file and fsynced, state JSON written atomically);
- suitkit CLI: ``suitkit cms load DIR PKG`` (whole command: interpreter start, imports, load,
  receipt), with cached bytecode as an installed CLI has it (one warm-up run first).

Memory: a fresh process reads the package and loads it into an in-memory device; tracemalloc's
peak and ru_maxrss are reported as multiples of the firmware size (the package itself is one
copy, the device's image the second).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from suitkit.cms import (  # noqa: E402
    FirmwarePackageId,
    InMemoryDevice,
    PackageSpec,
    PreferredName,
    Signer,
    TrustAnchor,
    build_package_chunks,
    load_package,
)
from suitkit.cms.device_store import DirectoryDevice  # noqa: E402

HW = "1.3.6.1.4.1.99999.2.1"
PKG = "1.3.6.1.4.1.99999.1"
SUITKIT = [sys.executable, "-c", "from suitkit.cli.entry import main; main()"]


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def setup(work: Path, size: int) -> tuple[Path, Path, x509.Certificate]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("bench CA", ca_key, None, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("bench signer", key, ca, ca_key, False)
    ca_pem = work / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    firmware = os.urandom(size)
    spec = PackageSpec(FirmwarePackageId(PreferredName(PKG, 1)), target_hardware=[HW])
    pkg = work / "pkg.der"
    with open(pkg, "wb") as f:
        for chunk in build_package_chunks(firmware, spec, Signer(key, certificate=leaf)):
            f.write(chunk)
    return pkg, ca_pem, ca


def timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


def run_openssl(pkg: Path, ca: Path, out: Path) -> None:
    subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-binary",
            "-in",
            str(pkg),
            "-CAfile",
            str(ca),
            "-out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )


def run_in_memory(pkg: Path, anchor: TrustAnchor, size: int) -> None:
    data = pkg.read_bytes()
    dev = InMemoryDevice(HW, b"\x01", anchors=[anchor], memory=size)
    load_package(data, dev)


def run_directory(pkg: Path, work: Path, ca_pem: Path, round_no: int) -> None:
    d = work / f"dev{round_no}"
    dev = DirectoryDevice.create(
        d, hw_type=HW, hw_serial=b"\x01", trust_anchor_files=[("ca.pem", ca_pem.read_bytes(), True)]
    )
    load_package(pkg.read_bytes(), dev)
    shutil.rmtree(d)


def cli_env(work: Path) -> dict[str, str]:
    """As an installed CLI runs: bytecode cached (in a private prefix, not in the source tree),
    even when the caller's environment sets PYTHONDONTWRITEBYTECODE."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(ROOT / "src"), "PYTHONPYCACHEPREFIX": str(work / "pycache")}


def run_cli(pkg: Path, work: Path, ca_pem: Path, round_no: int) -> None:
    d = work / f"cli{round_no}"
    DirectoryDevice.create(
        d, hw_type=HW, hw_serial=b"\x01", trust_anchor_files=[("ca.pem", ca_pem.read_bytes(), True)]
    )
    subprocess.run(
        [*SUITKIT, "cms", "load", str(d), str(pkg)],
        check=True,
        capture_output=True,
        env=cli_env(work),
    )
    shutil.rmtree(d)


MEMORY_PROBE = r"""
import json, sys, tempfile, tracemalloc
from pathlib import Path
from suitkit.cms import InMemoryDevice, TrustAnchor, load_package
from suitkit.cms.device_store import DirectoryDevice
from suitkit.cms.keyfiles import load_certificate

def hwm():  # VmHWM: peak resident set of this process (reset by exec, unlike ru_maxrss)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0

pkg, ca, size, kind = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
anchor = TrustAnchor.from_certificate(load_certificate(ca.read_bytes()))
if kind == "memory":
    dev = InMemoryDevice("1.3.6.1.4.1.99999.2.1", b"\x01", anchors=[anchor], memory=size)
else:
    dev = DirectoryDevice.create(
        tempfile.mkdtemp(), hw_type="1.3.6.1.4.1.99999.2.1", hw_serial=b"\x01",
        trust_anchor_files=[("ca.pem", ca.read_bytes(), True)],
    )
base = hwm()
tracemalloc.start()
data = pkg.read_bytes()
load_package(data, dev)
_, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"traced_peak": peak, "hwm": hwm(), "base": base}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    size = args.size_mib << 20
    if shutil.which("openssl") is None:
        sys.exit("needs the openssl command line")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pkg, ca_pem, ca = setup(work, size)
        anchor = TrustAnchor.from_certificate(ca)
        best = {
            "openssl": float("inf"),
            "memory": float("inf"),
            "directory": float("inf"),
            "cli": float("inf"),
        }
        run_cli(pkg, work, ca_pem, -1)  # warm-up: fills the bytecode cache
        for r in range(args.rounds):
            best["openssl"] = min(
                best["openssl"], timed(lambda: run_openssl(pkg, ca_pem, work / "out.bin"))
            )
            best["memory"] = min(best["memory"], timed(lambda: run_in_memory(pkg, anchor, size)))
            best["directory"] = min(
                best["directory"], timed(lambda r=r: run_directory(pkg, work, ca_pem, r))
            )
            best["cli"] = min(best["cli"], timed(lambda r=r: run_cli(pkg, work, ca_pem, r)))
        mib = size / (1 << 20)
        version = subprocess.run(
            ["openssl", "version"], capture_output=True, text=True
        ).stdout.strip()
        print(
            f"package: {pkg.stat().st_size} octets, firmware {mib:.0f} MiB, "
            f"ECDSA P-256/SHA-256, {version}"
        )
        print(f"best of {args.rounds} rounds, alternating:")
        base = mib / best["openssl"]
        for name, label in (
            ("openssl", "openssl cms -verify (whole command)"),
            ("memory", "suitkit load_package, in-memory device"),
            ("directory", "suitkit load_package, directory device (fsync)"),
            ("cli", "suitkit cms load (whole command)"),
        ):
            tput = mib / best[name]
            print(
                f"  {label:<48} {best[name] * 1000:8.1f} ms  {tput:8.1f} MiB/s  "
                f"{tput / base * 100:5.0f}% of openssl"
            )
        print("peak memory of read + load (fresh process per device kind):")
        for kind, label in (("memory", "in-memory device"), ("directory", "directory device")):
            probe = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE, str(pkg), str(ca_pem), str(size), kind],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )
            m = json.loads(probe.stdout)
            print(
                f"  {label:<18} tracemalloc peak {m['traced_peak'] / size:.2f} x firmware, "
                f"resident-set growth {(m['hwm'] - m['base']) / size:.2f} x firmware "
                f"(VmHWM {m['hwm'] >> 20} MiB, {m['base'] >> 20} MiB before reading)"
            )


if __name__ == "__main__":
    main()
