"""``suitkit serve``, ``suitkit db upgrade``, ``suitkit admin token create``: the update
service (needs ``pip install suitkit[server]``).

Settings come from flags, then ``SUITKIT_*`` variables, then ``--config FILE`` (TOML), then
defaults; see :mod:`suitkit.server.config`. Heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from suitkit.cli import _common as common

if TYPE_CHECKING:
    from suitkit.server.config import Settings

app = typer.Typer(
    help="The update service: firmware server and status tracker (RFC 9019).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The server's database.", no_args_is_help=True)
admin_app = typer.Typer(help="Server administration.", no_args_is_help=True)
token_app = typer.Typer(
    help="API tokens for the operator API and the dashboard.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(token_app, name="token")

DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Data directory (blobs, default SQLite file)")
]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL: sqlite:///FILE or postgresql+psycopg://..."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (or SUITKIT_CONFIG)")
]


def _settings(config: Path | None, **flags: Any) -> Settings:
    try:
        from suitkit.server.config import ConfigError, load_settings
    except ModuleNotFoundError as exc:
        common.fail(
            f"the update service needs the server extra ({exc.name} is missing): "
            "pip install 'suitkit[server]'",
            code=1,
        )
    try:
        return load_settings(flags, config_file=config)
    except ConfigError as exc:
        common.fail(str(exc), code=2)


@app.command()
def serve(
    data: DataOpt = None,
    db: DbOpt = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option("--port", help="TCP port (default 8080)")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes (default 1)")
    ] = None,
    trust: Annotated[
        list[Path] | None,
        typer.Option(
            "--trust", help="Author public key that releases must be signed with (repeatable)"
        ),
    ] = None,
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="Base URL devices download from")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="debug, info, warning or error")
    ] = None,
    coap_port: Annotated[
        int | None,
        typer.Option(
            "--coap-port",
            help="Serve the device API over CoAP too (UDP and coap+tcp) on this port, e.g. "
            "5683 (default: off; 0 turns it off)",
        ),
    ] = None,
    mqtt_url: Annotated[
        str | None,
        typer.Option(
            "--mqtt-url",
            help="MQTT broker (mqtt://host[:port]) to wake devices through when a campaign "
            "offers them an update (default: off)",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the update service (migrates the database first)."""
    settings = _settings(
        config,
        data=data,
        db=db,
        host=host,
        port=port,
        workers=workers,
        trust=list(trust) if trust else None,
        public_url=public_url,
        log_level=log_level,
        coap_port=coap_port,
        mqtt_url=mqtt_url,
    )
    from suitkit.server.config import ConfigError
    from suitkit.server.run import serve as run_serve

    try:
        run_serve(settings)
    except ConfigError as exc:
        common.fail(str(exc), code=2)


@db_app.command("upgrade")
def db_upgrade(data: DataOpt = None, db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Apply the database migrations (``serve`` does it too, at start)."""
    settings = _settings(config, data=data, db=db)
    from suitkit.server.db import Database
    from suitkit.server.migrate import upgrade

    settings.data.mkdir(parents=True, exist_ok=True)
    database = Database.from_settings(settings)
    try:
        revision = upgrade(database.engine)
    except Exception as exc:
        common.fail(f"cannot upgrade the database: {exc}", code=1)
    finally:
        database.dispose()
    common.ok(f"database at revision {revision}")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help="admin, release or viewer")],
    name: Annotated[str, typer.Option("--name", help="What the token is for")] = "cli",
    data: DataOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an API token and print it (it is stored only hashed: keep it now)."""
    if role not in ("admin", "release", "viewer"):
        common.fail("--role: one of admin, release, viewer", code=2)
    settings = _settings(config, data=data, db=db)
    from suitkit.server.db import Database
    from suitkit.server.migrate import upgrade
    from suitkit.server.models import ApiToken
    from suitkit.server.security import API_TOKEN_PREFIX, new_token, token_hash, token_prefix
    from suitkit.server.state import utc_now

    settings.data.mkdir(parents=True, exist_ok=True)
    database = Database.from_settings(settings)
    try:
        upgrade(database.engine)
        token = new_token(API_TOKEN_PREFIX)
        with database.write() as s:
            s.add(
                ApiToken(
                    name=name,
                    role=role,
                    token_hash=token_hash(token),
                    prefix=token_prefix(token),
                    created_at=utc_now(),
                )
            )
    finally:
        database.dispose()
    common.ok(token)
