"""Fixtures for the agent tests: one real server process (uvicorn, SQLite) for the module
unless a test needs its own (kill -9, restarts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra (suitkit[server]) is not installed")

from .helpers import LiveServer, Operator


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("server") / "data", coap=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def operator(live: LiveServer) -> Iterator[Operator]:
    op = Operator(live.url, live.admin_token())
    try:
        yield op
    finally:
        op.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
