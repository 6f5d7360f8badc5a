"""Fixtures for the update-service tests: a server on SQLite and (when it answers) PostgreSQL,
signed test releases, registered devices, and signed SUIT_Reports.

PostgreSQL: a fresh database ``suitkit_test_<random>`` on 127.0.0.1:5432 (user postgres,
trust authentication) is created for the session and dropped after it; each test starts from
empty tables. Without a server there, the PostgreSQL variants skip, saying why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server extra (suitkit[server]) is not installed")

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from suitkit.author.builder import build_from_description
from suitkit.author.signing import sign_envelope
from suitkit.cose.keys import CoseKey
from suitkit.device.report import ReportFailure, SuitRecord, SuitReport, sign_report
from suitkit.format.codepoints import CoseAlgorithm, ManifestKey, ReportReason
from suitkit.format.envelope import Envelope
from suitkit.server.app import create_app
from suitkit.server.config import Settings
from suitkit.server.db import Database
from suitkit.server.migrate import upgrade
from suitkit.server.models import Base, Role
from suitkit.server.state import ServerState

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
AUTHOR_KEY = VECTORS / "keys" / "suit-example-es256-private.pem"
AUTHOR_PUB = VECTORS / "keys" / "suit-example-es256-public.pem"
VENDOR = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
CLASS = "1492af14-2569-5e48-bf42-9b2d51f2ab45"
OTHER_CLASS = "00000000-0000-5000-8000-000000000abc"
PG_HOST, PG_PORT = "127.0.0.1", 5432
BASE_TIME = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for the session (dropped afterwards)."""
    if not _pg_answers():
        pytest.skip(f"PostgreSQL does not answer on {PG_HOST}:{PG_PORT}")
    name = f"suitkit_test_{secrets.token_hex(4)}"
    admin_url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"cannot create a PostgreSQL test database: {exc}")
    url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as c:
        c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each server test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'suitkit.db'}"
        db = Database.from_settings(Settings(data=tmp_path, db=url))
        upgrade(db.engine)
        db.dispose()
        yield url
    else:
        url = request.getfixturevalue("pg_url")
        _truncate(url)
        yield url


# --- time, keys, releases, reports -----------------------------------------------------------


class FakeClock:
    def __init__(self, start: dt.datetime = BASE_TIME) -> None:
        self.t = start

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += dt.timedelta(**kw)


def device_keypair() -> tuple[CoseKey, str]:
    key = CoseKey.generate(CoseAlgorithm.ES256)
    return key, key.public_key().to_pem().decode()


def payload_bytes(n: int = 4096, fill: int = 0x5A, tag: bytes = b"") -> bytes:
    return (tag + bytes([fill]) * n)[:n]


def release_envelope(
    seq: int,
    payload: bytes,
    *,
    uri: str = "https://updates.example.com/fw/firmware.bin",
    class_id: str = CLASS,
    key: Path | None = AUTHOR_KEY,
    severable: list[str] | None = None,
) -> Envelope:
    """An envelope for one component that fetches ``payload`` from ``uri`` (signed with the
    spec's example key unless ``key`` is None)."""
    desc: dict[str, Any] = {
        "sequence-number": seq,
        "components": [
            {
                "id": ["h'00'"],
                "vendor-id": VENDOR,
                "class-id": class_id,
                "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
                "size": len(payload),
                "uri": uri,
                "invoke": True,
            }
        ],
    }
    if severable:
        desc["severable"] = severable
        desc["text"] = {"en-US": {"manifest-description": f"release {seq}"}}
    env = build_from_description(desc)
    if key is not None:
        env = sign_envelope(env, [CoseKey.load(key)])
    return env


def manifest_digest_text(env: Envelope) -> str:
    d = env.authentication.digest
    return f"{d.algorithm_name}:{d.value.hex()}"


def make_report(
    env: Envelope,
    key: CoseKey,
    *,
    nonce: bytes | None = None,
    reason: ReportReason | None = None,
) -> bytes:
    """A signed SUIT_Report about ``env``: success, or failure with ``reason``."""
    failure = None
    if reason is not None:
        failure = ReportFailure(int(reason), SuitRecord(ManifestKey.INSTALL, 4, 0), reason)
    report = SuitReport(
        reference_uri=env.manifest.reference_uri or "",
        manifest_digest=env.authentication.digest,
        records=(),
        result=failure,
        capabilities=None,
        nonce=nonce,
    )
    return sign_report(report, key)


# --- the server ------------------------------------------------------------------------------


@dataclass
class Device:
    device_id: str
    token: str
    key: CoseKey
    vendor_id: str = VENDOR
    class_id: str = CLASS

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def identity(self, **extra: Any) -> dict[str, Any]:
        return {
            "vendor_id": self.vendor_id,
            "class_id": self.class_id,
            "device_id": self.device_id,
            **extra,
        }


@dataclass
class Server:
    client: TestClient
    state: ServerState
    clock: FakeClock
    admin: str
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.get(role, self.admin)}"}

    def register(
        self,
        n: int = 1,
        *,
        class_id: str = CLASS,
        group: str | None = None,
        tags: list[str] | None = None,
    ) -> list[Device]:
        out = []
        for _ in range(n):
            key, pem = device_keypair()
            dev_id = str(uuid.uuid4())
            body: dict[str, Any] = {
                "device_id": dev_id,
                "vendor_id": VENDOR,
                "class_id": class_id,
                "public_key": pem,
                "tags": tags or [],
            }
            if group:
                body["group"] = group
            r = self.client.post("/api/v1/devices", json=body, headers=self.headers())
            assert r.status_code == 201, r.text
            out.append(Device(dev_id, r.json()["token"], key, class_id=class_id))
        return out

    def upload(
        self,
        env: Envelope,
        payloads: dict[str, bytes] | None = None,
        *,
        severed: list[bytes] | None = None,
        mapping: dict[str, Any] | None = None,
        name: str | None = None,
        role: str = "admin",
    ) -> Any:
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            ("envelope", ("update.suit", env.encode(), "application/octet-stream"))
        ]
        for fname, data in (payloads or {}).items():
            files.append(("payload", (fname, data, "application/octet-stream")))
        for i, m in enumerate(severed or []):
            files.append(("severed", (f"member{i}.cbor", m, "application/cbor")))
        data: dict[str, str] = {}
        if mapping is not None:
            import json

            data["mapping"] = json.dumps(mapping)
        if name is not None:
            data["name"] = name
        return self.client.post(
            "/api/v1/releases", files=files, data=data, headers=self.headers(role)
        )

    def release(
        self, seq: int = 2, payload: bytes | None = None, **kw: Any
    ) -> tuple[int, Envelope]:
        payload = payload if payload is not None else payload_bytes(tag=f"fw{seq}".encode())
        env = release_envelope(seq, payload, **kw)
        r = self.upload(env, {"firmware.bin": payload})
        assert r.status_code == 201, r.text
        return r.json()["id"], env

    def campaign(self, release_id: int, **kw: Any) -> Any:
        body: dict[str, Any] = {
            "name": "rollout",
            "release_id": release_id,
            "target": {"all": True},
        }
        body.update(kw)
        r = self.client.post("/api/v1/campaigns", json=body, headers=self.headers("release"))
        assert r.status_code == 201, r.text
        return r.json()

    def checkin(self, dev: Device, **extra: Any) -> Any:
        return self.client.post(
            "/device/v1/checkin", json=dev.identity(**extra), headers=dev.headers
        )

    def report(self, dev: Device, data: bytes) -> Any:
        return self.client.post(
            "/device/v1/reports",
            content=data,
            headers={**dev.headers, "Content-Type": 'application/cose; cose-type="cose-sign1"'},
        )

    def status(self, campaign_id: int) -> Any:
        r = self.client.get(f"/api/v1/campaigns/{campaign_id}", headers=self.headers("viewer"))
        assert r.status_code == 200, r.text
        return r.json()


def new_server(tmp_path: Path, db_url: str, **settings: Any) -> Iterator[Server]:
    from suitkit.server.api_operator import create_api_token

    clock = FakeClock()
    settings.setdefault("last_seen_flush", 0)  # write last-seen at once, unless a test asks
    cfg = Settings(
        data=tmp_path / "data", db=db_url, trust=(AUTHOR_PUB,), access_log=False, **settings
    )
    app = create_app(cfg, clock=clock, ticker=False)
    state: ServerState = app.state.suitkit
    tokens = {}
    for role in Role:
        _, tok = create_api_token(state, f"test {role.value}", role)
        tokens[role.value] = tok
    with TestClient(app) as client:
        yield Server(client, state, clock, tokens["admin"], tokens)


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    yield from new_server(tmp_path, db_url)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    """For tests about the server process rather than the database."""
    url = f"sqlite:///{tmp_path / 'suitkit.db'}"
    db = Database.from_settings(Settings(data=tmp_path, db=url))
    upgrade(db.engine)
    db.dispose()
    yield from new_server(tmp_path, url)
