"""Migrations produce the models' schema, on both databases; the server CLI commands."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from suitkit.cli.server import app
from suitkit.server.migrate import current_revision, head_revision, upgrade
from suitkit.server.models import Base


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
        assert upgrade(engine) == head_revision()  # idempotent
    finally:
        engine.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    from suitkit.server.config import Settings
    from suitkit.server.db import Database

    db = Database.from_settings(Settings(data=tmp_path))
    try:
        with db.engine.connect() as c:
            assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert c.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        db.dispose()


runner = CliRunner()


def test_db_upgrade_and_token_create(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = runner.invoke(app, ["db", "upgrade", "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert f"revision {head_revision()}" in r.output
    assert (
        "api_tokens" in inspect(create_engine(f"sqlite:///{data / 'suitkit.db'}")).get_table_names()
    )
    r = runner.invoke(
        app, ["admin", "token", "create", "--role", "release", "--name", "ci", "--data", str(data)]
    )
    assert r.exit_code == 0, r.output
    token = r.output.strip()
    assert token.startswith("skt_")
    # the token works against a server on that data directory
    from fastapi.testclient import TestClient

    from suitkit.server.app import create_app
    from suitkit.server.config import Settings

    with TestClient(create_app(Settings(data=data), ticker=False)) as client:
        h = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/releases", headers=h).status_code == 200
        assert client.get("/api/v1/tokens", headers=h).status_code == 403  # release < admin


def test_cli_errors(tmp_path: Path) -> None:
    r = runner.invoke(app, ["admin", "token", "create", "--role", "root", "--data", str(tmp_path)])
    assert r.exit_code == 2
    r = runner.invoke(app, ["serve", "--port", "0", "--data", str(tmp_path)])
    assert r.exit_code == 2 and "port" in r.output
    bad = tmp_path / "x.toml"
    bad.write_text("what = 1\n")
    r = runner.invoke(app, ["db", "upgrade", "--config", str(bad)])
    assert r.exit_code == 2 and "unknown setting" in r.output
    r = runner.invoke(
        app, ["serve", "--data", str(tmp_path / "d"), "--trust", str(tmp_path / "missing.pem")]
    )
    assert r.exit_code == 2 and "trust anchor" in r.output
    r = runner.invoke(app, ["db", "upgrade", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/x"])
    assert r.exit_code == 1 and "cannot upgrade" in r.output
