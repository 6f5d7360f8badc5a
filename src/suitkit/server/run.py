"""Running the server: migrate, sweep, then uvicorn with one or more workers."""

from __future__ import annotations

import os
from typing import Any

from suitkit.server import logs
from suitkit.server.config import Settings
from suitkit.server.db import Database
from suitkit.server.migrate import upgrade
from suitkit.server.state import load_trust_anchors
from suitkit.server.storage import BlobStore


def prepare(settings: Settings) -> str | None:
    """Everything before the workers start: the data directory, the schema (migrated once,
    here), stale temporary files, and a check of the trust anchors. Returns the revision."""
    settings.data.mkdir(parents=True, exist_ok=True)
    db = Database.from_settings(settings)
    try:
        revision = upgrade(db.engine)
    finally:
        db.dispose()
    BlobStore(settings.data).sweep()
    anchors = load_trust_anchors(settings.trust)
    log = logs.get()
    if not anchors:
        log.warning("no author trust anchor (--trust): release uploads will be refused")
    return revision


def serve(settings: Settings) -> None:
    import uvicorn

    logs.configure(settings.log_level)
    revision = prepare(settings)
    logs.get().info("database ready", extra=logs.fields(revision=revision))
    log_config = logs.uvicorn_log_config(settings.log_level)
    if settings.workers == 1:
        from suitkit.server.app import create_app

        app: Any = create_app(settings)
        factory = False
    else:
        os.environ.update(settings.env())  # the workers read their settings from here
        app, factory = "suitkit.server.app:app_from_env", True
    uvicorn.run(
        app,
        factory=factory,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        log_config=log_config,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
