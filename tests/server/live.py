"""A real server process (uvicorn) for the tests that need one: the headless browser, kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """``python -m suitkit.server serve`` on 127.0.0.1 and a free port."""

    def __init__(
        self,
        data: Path,
        *,
        db: str | None = None,
        trust: Path | None = None,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable,
            "-m",
            "suitkit.server",
            "serve",
            "--data",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *(extra or []),
        ]
        if db:
            self.args += ["--db", db]
        if trust:
            self.args += ["--trust", str(trust)]
        self.env = {**os.environ, "SUITKIT_TICK_INTERVAL": "0.2", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 20.0) -> LiveServer:
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=log, env=self.env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not start: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        """SIGKILL, no clean-up: what a crash or the OOM killer does."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def admin_token(data: Path, db: str | None = None) -> str:
    args = [
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
    ]
    if db:
        args += ["--db", db]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return out.stdout.strip()
