"""The FastAPI application: :func:`create_app` (tests, embedding) and :func:`app_from_env`
(the factory each uvicorn worker calls, configured by ``SUITKIT_*`` variables)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import func, select, text

from suitkit.server import campaigns as camp
from suitkit.server import logs
from suitkit.server.api_device import router as device_router
from suitkit.server.api_operator import router as operator_router
from suitkit.server.config import Settings, load_settings
from suitkit.server.db import Database
from suitkit.server.http import AccessLog, BodyLimit
from suitkit.server.metrics import Gauges
from suitkit.server.models import Campaign, Deployment, Device
from suitkit.server.security import load_secret
from suitkit.server.state import Clock, ServerState, get_state, load_trust_anchors, utc_now
from suitkit.server.storage import BlobStore

VERSION = "1"
log = logs.get()


def build_state(settings: Settings, clock: Clock = utc_now) -> ServerState:
    settings.data.mkdir(parents=True, exist_ok=True)
    db = Database.from_settings(settings)
    with db.write() as s:
        nonce_secret = load_secret(s, "report-nonce")
        cookie_secret = load_secret(s, "dashboard-cookie")
    return ServerState(
        settings=settings,
        db=db,
        blobs=BlobStore(settings.data),
        trusted_keys=load_trust_anchors(settings.trust),
        nonce_secret=nonce_secret,
        cookie_secret=cookie_secret,
        clock=clock,
    )


def tick(
    state: ServerState, since: dt.datetime | None = None, now: dt.datetime | None = None
) -> int:
    """One pass of the campaign ticker: re-evaluate every running campaign (wave advance,
    automatic pause, completion) and, given the time of the previous pass, note the campaigns
    whose time window opened since (their devices are woken, with MQTT wake-ups on).
    Returns how many changed."""
    changed = 0
    now = state.now() if now is None else now
    with state.db.read() as s:
        ids = camp.running_campaign_ids(s)
    for cid in ids:
        with state.db.write() as s:
            if camp.progress(s, cid, now) is not None:
                changed += 1
            if since is not None:
                camp.note_window_opened(s, cid, since, now)
    return changed


async def _flusher(state: ServerState) -> None:
    while True:
        await asyncio.sleep(state.settings.last_seen_flush)
        if len(state.last_seen):
            try:
                await run_in_threadpool(state.last_seen.flush, state.db.write_connection)
            except Exception:
                log.exception("writing last-seen times failed")


async def _ticker(state: ServerState) -> None:
    since = state.now()
    while True:
        await asyncio.sleep(state.settings.tick_interval)
        now = state.now()
        try:
            await run_in_threadpool(tick, state, since, now)
        except Exception:  # keep ticking; the next pass retries
            log.exception("campaign ticker failed")
        else:
            since = now


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _start_coap(state: ServerState) -> Callable[[], Awaitable[None]]:
    """The device API over CoAP (``coap-port``), in this process, on the server's state;
    returns the shutdown. With several workers every worker binds the port: aiocoap sets
    ``SO_REUSEPORT`` and the kernel hands each client (by its address and port) to one of
    them, so a client's block-wise exchanges stay with one worker."""
    import logging

    from suitkit.transport.coap_server import start_coap

    settings = state.settings
    assert settings.coap_port is not None
    if settings.log_level != "debug":
        logging.getLogger("coap-server").setLevel(logging.ERROR)  # aiocoap's chatter
    try:
        server = await start_coap(state, settings.host, settings.coap_port)
    except OSError as exc:
        log.error(
            "cannot serve CoAP",
            extra=logs.fields(host=settings.host, coap_port=settings.coap_port, error=str(exc)),
        )
        raise
    log.info("CoAP device API listening", extra=logs.fields(url=server.public_url))
    return server.shutdown


def _limits(settings: Settings) -> Callable[[str, str], int]:
    upload = settings.max_envelope * 2 + settings.max_payload * 4 + (1 << 20)

    def limit_for(method: str, path: str) -> int:
        if method == "POST" and path == "/api/v1/releases":
            return upload
        if method == "POST" and path == "/api/v1/devices/import":
            return settings.max_import
        if method == "POST" and path == "/device/v1/reports":
            return settings.max_report
        return settings.max_json

    return limit_for


def _db_gauges(state: ServerState) -> list[Gauges]:
    def devices() -> Iterable[tuple[dict[str, str], float]]:
        with state.db.read() as s:
            n = s.scalar(select(func.count()).select_from(Device)) or 0
        yield {}, float(n)

    def campaigns() -> Iterable[tuple[dict[str, str], float]]:
        with state.db.read() as s:
            rows = s.execute(select(Campaign.state, func.count()).group_by(Campaign.state)).all()
        for st, n in rows:
            yield {"state": st}, float(n)

    def deployments() -> Iterable[tuple[dict[str, str], float]]:
        with state.db.read() as s:
            rows = s.execute(
                select(Deployment.campaign_id, Deployment.state, func.count())
                .join(Campaign, Campaign.id == Deployment.campaign_id)
                .where(Campaign.state.in_(("running", "paused")))
                .group_by(Deployment.campaign_id, Deployment.state)
            ).all()
        for cid, st, n in rows:
            yield {"campaign": str(cid), "state": st}, float(n)

    return [
        Gauges("suitkit_devices", "Registered devices", devices),
        Gauges("suitkit_campaigns", "Campaigns by state", campaigns),
        Gauges(
            "suitkit_campaign_devices",
            "Devices of running or paused campaigns by state",
            deployments,
        ),
    ]


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = utc_now,
    migrate: bool = False,
    ticker: bool = True,
) -> FastAPI:
    """The application. ``migrate``: upgrade the database first (``suitkit serve`` does it
    once, before it starts workers). ``ticker``: run the campaign ticker while serving."""
    settings = settings or load_settings()
    if migrate:
        from suitkit.server.migrate import upgrade

        settings.data.mkdir(parents=True, exist_ok=True)
        db = Database.from_settings(settings)
        try:
            upgrade(db.engine)
        finally:
            db.dispose()
    state = build_state(settings, clock)
    state.metrics.extra.extend(_db_gauges(state))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(state.db.dispose)
            stack.callback(state.last_seen.flush, state.db.write_connection)
            tasks = [asyncio.create_task(_ticker(state))] if ticker else []
            if settings.last_seen_flush > 0:
                tasks.append(asyncio.create_task(_flusher(state)))
            stack.push_async_callback(_cancel, tasks)
            if settings.mqtt_url is not None:
                from suitkit.server.wakeups import Wakeups

                wakeups = Wakeups(state, settings.mqtt_url)
                await wakeups.start()
                stack.push_async_callback(wakeups.close)
                app.state.wakeups = wakeups
            if settings.coap_port is not None:
                stack.push_async_callback(await _start_coap(state))
            log.info(
                "server started",
                extra=logs.fields(
                    db=state.db.engine.dialect.name,
                    data=str(settings.data),
                    trust_anchors=len(state.trusted_keys),
                    coap_port=settings.coap_port,
                    mqtt=app.state.wakeups.broker if settings.mqtt_url else None,
                ),
            )
            yield

    app = FastAPI(
        title="suitkit update service",
        version=VERSION,
        description="RFC 9019 firmware server and status tracker for SUIT manifests: the "
        "operator API (`/api/v1`, API tokens), the device API (`/device/v1`, device tokens), "
        "and the dashboard (`/ui`).",
        lifespan=lifespan,
    )
    app.state.suitkit = state
    app.state.wakeups = None  # the MQTT wake-up publisher while serving (mqtt-url)
    # Devices first: routes are matched in order, and device traffic is most of it.
    app.include_router(device_router)
    app.include_router(operator_router)
    try:
        from suitkit.server.dashboard import router as dashboard_router
    except ModuleNotFoundError as exc:  # pragma: no cover - jinja2 is part of the extra
        if exc.name != "suitkit.server.dashboard":
            raise
    else:
        app.include_router(dashboard_router)

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request) -> JSONResponse:
        st = get_state(request)
        try:
            with st.db.read() as s:
                s.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"status": "error", "database": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "database": st.db.engine.dialect.name})

    @app.get("/metrics", tags=["service"], response_class=Response)
    def metrics(request: Request) -> Response:
        st = get_state(request)
        return Response(st.metrics.render(), media_type=st.metrics.CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    app.add_middleware(BodyLimit, limit_for=_limits(settings))
    app.add_middleware(AccessLog, metrics=state.metrics, enabled=settings.access_log)
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory (``suitkit.server.app:app_from_env``): settings from the
    environment, database already migrated by the parent process."""
    settings = load_settings()
    logs.configure(settings.log_level)
    return create_app(settings)
