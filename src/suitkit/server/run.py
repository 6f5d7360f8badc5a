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


def check_coap_port(settings: Settings) -> None:
    """Before the workers start: is ``coap-port`` free (UDP and TCP, on ``host``)? The workers
    bind it with ``SO_REUSEPORT``, which would silently share it with another server already
    there; this check binds without it, so that such a clash is an error instead."""
    import socket

    from suitkit.server.config import ConfigError

    port = settings.coap_port
    if port is None:
        return
    if settings.workers > 1:
        from aiocoap.defaults import has_reuse_port  # type: ignore[import-untyped]

        if not has_reuse_port():
            raise ConfigError(
                "coap-port with several workers needs SO_REUSEPORT (Linux, BSD, macOS); "
                "run one worker, or the CoAP server as a process of its own"
            )
    host = settings.host or "::"
    for kind, name in ((socket.SOCK_DGRAM, "UDP"), (socket.SOCK_STREAM, "TCP")):
        try:
            family, _, _, _, addr = socket.getaddrinfo(host, port, type=kind)[0]
            with socket.socket(family, kind) as sock:
                if kind == socket.SOCK_STREAM:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
        except OSError as exc:
            raise ConfigError(f"coap-port {port}: cannot bind {name} {host}:{port}: "
                              f"{exc.strerror or exc}") from None


def serve(settings: Settings) -> None:
    import uvicorn

    logs.configure(settings.log_level)
    check_coap_port(settings)
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
