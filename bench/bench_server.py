"""Issue #6 benchmarks: the update service under load from another process on loopback.

Run: .venv/bin/python bench/bench_server.py [--db sqlite|postgresql|both] [--workers N]
                                           [--devices 10000] [--concurrency 64] [--duration 10]

With 10,000 registered devices, a server process (``python -m suitkit.server serve``) and a
load process (httpx.AsyncClient, ``--concurrency`` requests in flight, each phase bounded in
requests and in seconds) measure:

- device check-ins/s with nothing to offer (each device's first check-in of the period, which
  records its last-seen time and sequence number);
- check-ins/s that are offers (a running campaign: the first offer is written);
- signed SUIT_Report ingestion/s (ES256 verification, nonce check, storage, campaign state);
- payload download throughput (1 MiB, the device API with its token check) against nginx
  serving the same file with the same client and concurrency (skipped without nginx).

PostgreSQL: a fresh ``suitkit_bench_<random>`` database on 127.0.0.1:5432 (user postgres),
dropped afterwards; skipped, with the reason, when it does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VECTORS = ROOT / "tests" / "vectors"
AUTHOR_KEY = VECTORS / "keys" / "suit-example-es256-private.pem"
AUTHOR_PUB = VECTORS / "keys" / "suit-example-es256-public.pem"
VENDOR = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
CLASS = "1492af14-2569-5e48-bf42-9b2d51f2ab45"
PG = ("127.0.0.1", 5432)


# --- the load process ------------------------------------------------------------------------


def _request(kind: str, item: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes]:
    if kind == "checkin":
        return (
            "POST",
            "/device/v1/checkin",
            {"Authorization": f"Bearer {item['token']}", "Content-Type": "application/json"},
            json.dumps(item["identity"]).encode(),
        )
    if kind == "report":
        return (
            "POST",
            "/device/v1/reports",
            {"Authorization": f"Bearer {item['token']}", "Content-Type": "application/cose"},
            base64.b64decode(item["report"]),
        )
    if kind == "noop":
        return (
            "POST",
            "/noop",
            {"Content-Type": "application/json"},
            json.dumps(item["identity"]).encode(),
        )
    return "GET", item["path"], dict(item.get("headers", {})), b""


class _RawConnection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (``--client raw``): a much
    lighter load generator than httpx, to see the server's own limit on a small machine."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
        ]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        data = await self.reader.readexactly(length) if length else b""
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _load(
    kind: str,
    url: str,
    items: list[Any],
    concurrency: int,
    duration: float,
    max_requests: int,
    client_kind: str = "httpx",
) -> dict[str, Any]:
    import httpx

    # httpx: one client (one keep-alive connection) per coroutine, since httpx's shared pool
    # gets slower as it grows (at 64 connections it, not the server, is the bottleneck).
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    received = 0
    answers: dict[str, str] = {}
    next_item = 0
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal next_item, received
        raw = _RawConnection(url) if client_kind == "raw" else None
        client = None if raw else httpx.AsyncClient(base_url=url, limits=limits, timeout=30)
        try:
            while time.perf_counter() < stop_at:
                i = next_item
                if i >= max_requests:
                    return
                next_item += 1
                item = items[i % len(items)]
                method, path, headers, body = _request(kind, item)
                t0 = time.perf_counter()
                if raw is not None:
                    status, data = await raw.request(method, path, headers, body)
                    size = len(data)
                elif kind == "download":
                    assert client is not None
                    size = 0
                    async with client.stream(method, path, headers=headers) as resp:
                        async for chunk in resp.aiter_raw(1 << 20):
                            size += len(chunk)
                    status, data = resp.status_code, b""
                else:
                    assert client is not None
                    resp = await client.request(method, path, headers=headers, content=body)
                    status, data, size = resp.status_code, resp.content, len(resp.content)
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
                if kind == "download":
                    received += size
                if kind == "checkin" and status == 200:
                    answers[item["identity"]["device_id"]] = json.loads(data)["report_nonce"]
        finally:
            if raw is not None:
                await raw.close()
            if client is not None:
                await client.aclose()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    n = len(latencies)
    return {
        "client": client_kind,
        "requests": n,
        "seconds": elapsed,
        "rate": n / elapsed if elapsed else 0.0,
        "statuses": statuses,
        "bytes": received,
        "mib_per_s": received / elapsed / (1 << 20) if elapsed else 0.0,
        "p50_ms": 1000 * latencies[n // 2] if n else None,
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else None,
        "answers": answers,
    }


def load_main(args: argparse.Namespace) -> None:
    items = json.loads(Path(args.input).read_text())
    result = asyncio.run(
        _load(
            args.load,
            args.url,
            items,
            args.concurrency,
            args.duration,
            args.max_requests,
            args.client,
        )
    )
    Path(args.output).write_text(json.dumps(result))


def run_load(
    kind: str,
    url: str,
    items: list[Any],
    work: Path,
    *,
    concurrency: int,
    duration: float,
    max_requests: int,
    client: str,
) -> dict[str, Any]:
    """Run one load phase in a separate process."""
    inp, out = work / f"{kind}-in.json", work / f"{kind}-out.json"
    inp.write_text(json.dumps(items))
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            kind,
            "--url",
            url,
            "--input",
            str(inp),
            "--output",
            str(out),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--max-requests",
            str(max_requests),
            "--client",
            client,
        ],
        check=True,
        timeout=duration + 120,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --- servers ---------------------------------------------------------------------------------


def _procs() -> dict[int, tuple[int, float, str]]:
    """Every process: its parent, its user + system CPU seconds, its command line."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick, cmd)
    return out


_seen: dict[int, float] = {}  # the last CPU seconds seen of each process


def cpu_of(server_pid: int, db_name: str | None) -> tuple[float, float]:
    """CPU seconds so far of the server (the process and its descendants) and of the
    PostgreSQL backends serving ``db_name`` (their process title names the database)."""
    table = _procs()
    _seen.update((pid, row[1]) for pid, row in table.items())
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    server, todo = 0.0, [server_pid]
    while todo:
        pid = todo.pop()
        if pid in table:
            server += table[pid][1]
        todo.extend(children.get(pid, ()))
    db = 0.0
    if db_name:
        db = sum(c for _, c, cmd in table.values() if f" {db_name} " in cmd)
    return server, db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def start_server(
    data: Path, db: str, workers: int, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "SUITKIT_ACCESS_LOG": "false", "SUITKIT_LOG_LEVEL": "warning"}
    with open(log, "ab") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "suitkit.server",
                "serve",
                "--data",
                str(data),
                "--db",
                db,
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--trust",
                str(AUTHOR_PUB),
            ],
            stdout=f,
            stderr=f,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc)
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_nginx(root: Path, work: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None
    port = free_port()
    prefix = work / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
        location = /noop {{ return 204; }}
    }}
}}
""")
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", proc)
    return proc, url


# --- PostgreSQL ------------------------------------------------------------------------------


def pg_database() -> tuple[str, str] | str:
    """(url, name) of a fresh database, or why there is none."""
    try:
        with socket.create_connection(PG, timeout=0.5):
            pass
    except OSError:
        return f"PostgreSQL does not answer on {PG[0]}:{PG[1]}"
    from sqlalchemy import create_engine, text

    name = f"suitkit_bench_{secrets.token_hex(4)}"
    admin = create_engine(
        f"postgresql+psycopg://postgres@{PG[0]}:{PG[1]}/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        return f"cannot create a PostgreSQL database: {exc}"
    finally:
        admin.dispose()
    return f"postgresql+psycopg://postgres@{PG[0]}:{PG[1]}/{name}", name


def drop_pg(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(
        f"postgresql+psycopg://postgres@{PG[0]}:{PG[1]}/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# --- one run ---------------------------------------------------------------------------------


def admin_token(data: Path, db: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "suitkit.server",
            "admin",
            "token",
            "create",
            "--role",
            "admin",
            "--data",
            str(data),
            "--db",
            db,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def bench_db(
    label: str,
    db: str,
    work: Path,
    args: argparse.Namespace,
    nginx: tuple[subprocess.Popen[bytes], str] | None,
    payload: bytes,
) -> dict[str, Any]:
    import httpx

    from suitkit.author.builder import build_from_description
    from suitkit.author.signing import sign_envelope
    from suitkit.cose.keys import CoseKey
    from suitkit.device.report import SuitReport, sign_report
    from suitkit.format.codepoints import CoseAlgorithm

    data = work / f"data-{label}"
    data.mkdir()
    token = admin_token(data, db)
    proc, url = start_server(data, db, args.workers, work / f"server-{label}.log")
    out: dict[str, Any] = {"db": label, "workers": args.workers}
    try:
        h = {"Authorization": f"Bearer {token}"}
        api = httpx.Client(base_url=url, timeout=300)
        env = sign_envelope(
            build_from_description(
                {
                    "sequence-number": 2,
                    "components": [
                        {
                            "id": ["h'00'"],
                            "vendor-id": VENDOR,
                            "class-id": CLASS,
                            "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
                            "size": len(payload),
                            "uri": "https://updates.example.com/fw/firmware.bin",
                        }
                    ],
                }
            ),
            [CoseKey.load(AUTHOR_KEY)],
        )
        r = api.post(
            "/api/v1/releases",
            headers=h,
            files=[
                ("envelope", ("u.suit", env.encode(), "application/octet-stream")),
                ("payload", ("firmware.bin", payload, "application/octet-stream")),
            ],
        )
        r.raise_for_status()
        release_id = r.json()["id"]

        t0 = time.perf_counter()
        keys: dict[str, CoseKey] = {}
        rows = []
        for _ in range(args.devices):
            key = CoseKey.generate(CoseAlgorithm.ES256)
            dev_id = str(uuid.uuid4())
            keys[dev_id] = key
            rows.append(
                {
                    "device_id": dev_id,
                    "vendor_id": VENDOR,
                    "class_id": CLASS,
                    "public_key": key.public_key().to_pem().decode(),
                }
            )
        tokens: dict[str, str] = {}
        for i in range(0, len(rows), 2500):
            r = api.post("/api/v1/devices/import", headers=h, json=rows[i : i + 2500])
            r.raise_for_status()
            tokens.update({d["device_id"]: d["token"] for d in r.json()["devices"]})
        out["import_s"] = time.perf_counter() - t0
        print(
            f"  [{label}] {args.devices} devices registered (import API) in "
            f"{out['import_s']:.1f} s",
            flush=True,
        )
        items = [
            {
                "token": tokens[d],
                "identity": {
                    "vendor_id": VENDOR,
                    "class_id": CLASS,
                    "device_id": d,
                    "sequence_number": 1,
                },
            }
            for d in tokens
        ]
        common = {"concurrency": args.concurrency, "duration": args.duration, "client": args.client}
        db_name = db.rsplit("/", 1)[1] if db.startswith("postgresql") else None

        def phase(kind: str, items: list[Any], max_requests: int) -> dict[str, Any]:
            """One load phase, with the server's (and PostgreSQL's) CPU per request."""
            cpu0 = cpu_of(proc.pid, db_name)
            res = run_load(kind, url, items, work, max_requests=max_requests, **common)
            cpu1 = cpu_of(proc.pid, db_name)
            n = max(1, res["requests"])
            res["server_cpu_ms"] = (cpu1[0] - cpu0[0]) * 1000 / n
            res["db_cpu_ms"] = (cpu1[1] - cpu0[1]) * 1000 / n
            return res

        def cpu_text(res: dict[str, Any]) -> str:
            text = f"server CPU {res['server_cpu_ms']:.2f} ms/request"
            if db_name:
                text += f", PostgreSQL CPU {res['db_cpu_ms']:.2f} ms/request"
            return text

        res = phase("checkin", items, len(items))
        out["checkin_idle"] = res
        print(
            f"  [{label}] idle check-ins: {res['rate']:,.0f}/s ({res['requests']} in "
            f"{res['seconds']:.1f} s, p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms,"
            f" {res['statuses']}; {cpu_text(res)})",
            flush=True,
        )

        r = api.post(
            "/api/v1/campaigns",
            headers=h,
            json={
                "name": "bench",
                "release_id": release_id,
                "target": {"all": True},
                "waves": [100],
                "failure_threshold": 1.0,
            },
        )
        r.raise_for_status()
        res = phase("checkin", items, len(items))
        out["checkin_offer"] = res
        print(
            f"  [{label}] offer check-ins: {res['rate']:,.0f}/s ({res['requests']} in "
            f"{res['seconds']:.1f} s, p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms,"
            f" {res['statuses']}; {cpu_text(res)})",
            flush=True,
        )

        nonces: dict[str, str] = res["answers"]
        reports = []
        for dev_id, nonce in nonces.items():
            rep = SuitReport("", env.authentication.digest, (), None, nonce=bytes.fromhex(nonce))
            reports.append(
                {
                    "token": tokens[dev_id],
                    "report": base64.b64encode(sign_report(rep, keys[dev_id])).decode(),
                }
            )
        res = phase("report", reports, len(reports))
        out["reports"] = res
        print(
            f"  [{label}] signed reports ingested: {res['rate']:,.0f}/s ({res['requests']} in "
            f"{res['seconds']:.1f} s, p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms,"
            f" {res['statuses']}; {cpu_text(res)})",
            flush=True,
        )
        st = api.get("/api/v1/campaigns/1", headers=h).json()
        out["campaign_counts"] = st["counts"]
        print(f"  [{label}] campaign after the reports: {st['state']}, {st['counts']}", flush=True)

        # downloads: a device with a pending offer (a new campaign, a device that has not
        # reported for it yet) fetches the payload again and again
        dev_id = next(iter(tokens))
        sha = hashlib.sha256(payload).hexdigest()
        dl = [
            {
                "path": f"/device/v1/files/{sha}",
                "headers": {"Authorization": f"Bearer {tokens[dev_id]}"},
            }
        ]
        res = run_load("download", url, dl, work, max_requests=args.max_downloads, **common)
        out["download"] = res
        print(
            f"  [{label}] payload downloads (1 MiB, concurrency {args.concurrency}): "
            f"{res['mib_per_s']:,.0f} MiB/s "
            f"({res['requests']} in {res['seconds']:.1f} s, {res['statuses']})",
            flush=True,
        )
        if nginx is not None:
            res = run_load(
                "download",
                nginx[1],
                [{"path": "/payload.bin"}],
                work,
                max_requests=args.max_downloads,
                **common,
            )
            out["nginx"] = res
            ratio = out["download"]["mib_per_s"] / res["mib_per_s"] if res["mib_per_s"] else 0
            out["download_vs_nginx"] = ratio
            print(
                f"  [{label}] nginx, same file and client: {res['mib_per_s']:,.0f} MiB/s "
                f"({res['requests']} in {res['seconds']:.1f} s, {res['statuses']}): suitkit "
                f"at {ratio:.0%}",
                flush=True,
            )
        api.close()
    finally:
        stop(proc)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=20.0, help="seconds per phase, at most")
    p.add_argument("--max-downloads", type=int, default=5000)
    p.add_argument("--json", type=Path, help="write the figures here too")
    p.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="httpx",
        help="load generator: httpx.AsyncClient (default) or a minimal asyncio "
        "HTTP/1.1 client (lighter: shows the server's own limit on a small machine)",
    )
    # the load process
    p.add_argument(
        "--load", choices=["checkin", "report", "download", "noop"], help=argparse.SUPPRESS
    )
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("--max-requests", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        load_main(args)
        return
    print(
        f"bench_server: {args.devices} devices, {args.workers} worker(s), concurrency "
        f"{args.concurrency}, at most {args.duration:.0f} s per phase; {os.cpu_count()} CPUs",
        flush=True,
    )
    results = []
    ceiling = 0.0
    payload = secrets.token_bytes(1 << 20)
    with tempfile.TemporaryDirectory(prefix="suitkit-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers run as another user
        root = work / "www"
        root.mkdir()
        (root / "payload.bin").write_bytes(payload)
        (root / "payload.bin").chmod(0o644)
        nginx = start_nginx(root, work)
        if nginx is None:
            print("  nginx is not installed: no download comparison")
        else:
            probe = [
                {
                    "identity": {
                        "vendor_id": VENDOR,
                        "class_id": CLASS,
                        "device_id": str(uuid.uuid4()),
                        "sequence_number": 1,
                    }
                }
            ]
            res = run_load(
                "noop",
                nginx[1],
                probe,
                work,
                concurrency=args.concurrency,
                duration=min(args.duration, 5),
                max_requests=10**7,
                client=args.client,
            )
            print(
                f"  load generator ceiling ({args.client} client, nginx answering 204 to the "
                f"same POST): {res['rate']:,.0f} requests/s",
                flush=True,
            )
            ceiling = res["rate"]
        try:
            if args.db in ("sqlite", "both"):
                results.append(
                    bench_db("sqlite", f"sqlite:///{work / 'bench.db'}", work, args, nginx, payload)
                )
            if args.db in ("postgresql", "both"):
                pg = pg_database()
                if isinstance(pg, str):
                    print(f"  PostgreSQL skipped: {pg}")
                else:
                    try:
                        results.append(bench_db("postgresql", pg[0], work, args, nginx, payload))
                    finally:
                        drop_pg(pg[1])
        finally:
            if nginx is not None:
                stop(nginx[0])
    for r in results:
        for k in ("checkin_idle", "checkin_offer", "reports", "download", "nginx"):
            if k in r:
                r[k].pop("answers", None)
    if args.json:
        args.json.write_text(json.dumps({"client_ceiling": ceiling, "runs": results}, indent=2))
    print(
        f"\nsummary, {args.client} client (targets: check-ins >= 1,000/s, reports >= 500/s, "
        f"downloads >= 50% of nginx); the client alone tops at {ceiling:,.0f} requests/s"
    )
    for r in results:
        line = (
            f"  {r['db']:<10} workers {r['workers']}: idle check-ins "
            f"{r['checkin_idle']['rate']:,.0f}/s, offer check-ins "
            f"{r['checkin_offer']['rate']:,.0f}/s, reports {r['reports']['rate']:,.0f}/s, "
            f"downloads {r['download']['mib_per_s']:,.0f} MiB/s"
        )
        cpu = ", ".join(
            f"{k} {r[k]['server_cpu_ms']:.2f}"
            + (f" + {r[k]['db_cpu_ms']:.2f} db" if r["db"] == "postgresql" else "")
            for k in ("checkin_idle", "checkin_offer", "reports")
        )
        line += f"\n  {'':<10} server CPU ms/request: {cpu}"
        if "download_vs_nginx" in r:
            line += f" ({r['download_vs_nginx']:.0%} of nginx {r['nginx']['mib_per_s']:,.0f})"
        print(line)


if __name__ == "__main__":
    main()
