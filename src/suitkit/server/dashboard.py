"""The dashboard, ``/ui``: server-rendered pages (Jinja2 templates in this package, no
front-end build, no JavaScript) for releases, devices and campaigns.

Signing in: a one-time link (``POST /api/v1/login-codes``, valid 5 minutes) or an API token
typed into the login form; either sets a signed, HttpOnly session cookie (12 hours) that
stands for that token, so revoking the token ends the session. Pages are read-only except
the campaign controls (pause, resume, abort), which need the ``release`` role and a CSRF
token bound to the session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select, update

from suitkit.server import campaigns as camp
from suitkit.server import views
from suitkit.server.auth import SESSION_COOKIE, Operator, dashboard_operator, lookup_operator
from suitkit.server.models import (
    Campaign,
    CampaignState,
    Device,
    DeviceGroup,
    LoginCode,
    Release,
    Report,
    Role,
)
from suitkit.server.security import session_cookie, token_hash
from suitkit.server.state import ServerState, get_state

router = APIRouter(prefix="/ui", include_in_schema=False)
SESSION_HOURS = 12
PAGE = 100
_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
COLOURS = {
    "installed": "#2e7d32",
    "failed": "#c62828",
    "downloading": "#1565c0",
    "offered": "#64b5f6",
    "pending": "#cfd8dc",
}


def _ago(value: dt.datetime | None) -> str:
    if value is None:
        return "never"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


_env.filters["when"] = _ago
_env.globals["colours"] = COLOURS


def _csrf(state: ServerState, request: Request) -> str:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hmac.new(state.cookie_secret, b"csrf" + cookie.encode(), hashlib.sha256).hexdigest()


def _render(
    request: Request, template: str, op: Operator, status: int = 200, **context: Any
) -> HTMLResponse:
    state = get_state(request)
    html = _env.get_template(template).render(
        op=op,
        csrf=_csrf(state, request),
        can_steer=op.role.rank >= Role.RELEASE.rank,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


def _signed_in(state: ServerState, op_id: int, target: str) -> RedirectResponse:
    expires = state.now() + dt.timedelta(hours=SESSION_HOURS)
    resp = RedirectResponse(target, status_code=303, headers=_HEADERS)
    resp.set_cookie(
        SESSION_COOKIE,
        session_cookie(state.cookie_secret, op_id, int(expires.timestamp())),
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="lax",
        path="/ui",
        secure=state.settings.cookie_secure,
    )
    return resp


class _NeedLogin(Exception):
    pass


def _operator(request: Request) -> Operator:
    op = dashboard_operator(request)
    if op is None:
        raise _NeedLogin
    return op


def _page(handler: Any) -> Any:
    """Wrap a page handler: unauthenticated visitors go to the login page."""
    import functools

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            result: Response = handler(*args, **kwargs)
        except _NeedLogin:
            return _login_redirect(kwargs["request"])
        return result

    return wrapper


# --- signing in ------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, code: str | None = None, next: str | None = None) -> Response:
    state = get_state(request)
    target = _safe_next(next)
    if code is not None:
        now = state.now()
        with state.db.write() as s:
            row = s.scalar(select(LoginCode).where(LoginCode.code_hash == token_hash(code)))
            used = None
            if row is not None and row.used_at is None and row.expires_at > now:
                used = s.execute(
                    update(LoginCode)
                    .where(LoginCode.id == row.id, LoginCode.used_at.is_(None))
                    .values(used_at=now)
                    .execution_options(synchronize_session=False)
                )
        if row is not None and used is not None and getattr(used, "rowcount", 0) == 1:
            return _signed_in(state, row.token_id, target)
        html = _env.get_template("login.html").render(
            next=target, error="This sign-in link is invalid, used or expired.", op=None
        )
        return HTMLResponse(html, status_code=401, headers=_HEADERS)
    html = _env.get_template("login.html").render(next=target, error=None, op=None)
    return HTMLResponse(html, headers=_HEADERS)


@router.post("/login")
def login_form(
    request: Request,
    token: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=500)] = "/ui/",
) -> Response:
    state = get_state(request)
    op = lookup_operator(state, token.strip())
    if op is None:
        html = _env.get_template("login.html").render(
            next=_safe_next(next), error="Unknown or revoked token.", op=None
        )
        return HTMLResponse(html, status_code=401, headers=_HEADERS)
    return _signed_in(state, op.token_id, _safe_next(next))


@router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/ui/login", status_code=303, headers=_HEADERS)
    resp.delete_cookie(SESSION_COOKIE, path="/ui")
    return resp


# --- pages -----------------------------------------------------------------------------------


@router.get("/")
@_page
def overview(request: Request) -> Response:
    op = _operator(request)
    state = get_state(request)
    with state.db.read() as s:
        counts = {
            "devices": s.scalar(select(func.count()).select_from(Device)) or 0,
            "releases": s.scalar(select(func.count()).select_from(Release)) or 0,
            "reports": s.scalar(select(func.count()).select_from(Report)) or 0,
        }
        active = s.scalars(
            select(Campaign)
            .where(Campaign.state.in_((CampaignState.RUNNING, CampaignState.PAUSED)))
            .order_by(Campaign.id.desc())
        ).all()
        campaigns = views.campaign_infos(s, active)
    return _render(request, "overview.html", op, counts=counts, campaigns=campaigns)


@router.get("/releases")
@_page
def releases_page(request: Request) -> Response:
    op = _operator(request)
    with get_state(request).db.read() as s:
        rows = [
            views.release_info(s, r)
            for r in s.scalars(select(Release).order_by(Release.id.desc())).all()
        ]
    return _render(request, "releases.html", op, releases=rows)


@router.get("/releases/{release_id}")
@_page
def release_page(release_id: int, request: Request) -> Response:
    op = _operator(request)
    import json

    with get_state(request).db.read() as s:
        r = s.get(Release, release_id)
        if r is None:
            raise HTTPException(404, "no such release")
        detail = views.release_detail(s, r)
        campaigns = views.campaign_infos(
            s,
            s.scalars(
                select(Campaign)
                .where(Campaign.release_id == release_id)
                .order_by(Campaign.id.desc())
            ).all(),
        )
    return _render(
        request,
        "release.html",
        op,
        release=detail,
        campaigns=campaigns,
        show=json.dumps(detail.show, indent=2),
    )


@router.get("/devices")
@_page
def devices_page(
    request: Request,
    group: str | None = None,
    tag: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    op = _operator(request)
    from suitkit.server.models import DeviceTag

    with get_state(request).db.read() as s:
        q = select(Device)
        if group:
            q = q.where(
                Device.group_id.in_(select(DeviceGroup.id).where(DeviceGroup.name == group))
            )
        if tag:
            q = q.where(Device.id.in_(select(DeviceTag.device_pk).where(DeviceTag.tag == tag)))
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = views.device_infos(
            s, s.scalars(q.order_by(Device.id).limit(PAGE).offset(offset)).all()
        )
        groups = list(s.scalars(select(DeviceGroup.name).order_by(DeviceGroup.name)))
    return _render(
        request,
        "devices.html",
        op,
        devices=rows,
        total=total,
        offset=offset,
        page=PAGE,
        group=group,
        tag=tag,
        groups=groups,
    )


@router.get("/devices/{device_id}")
@_page
def device_page(device_id: str, request: Request) -> Response:
    op = _operator(request)
    with get_state(request).db.read() as s:
        d = s.scalar(select(Device).where(Device.device_id == device_id.lower()))
        if d is None:
            raise HTTPException(404, "no such device")
        status = views.device_status(s, d)
        reports = views.device_reports(s, d.id, 100)
    return _render(request, "device.html", op, device=status, reports=reports)


@router.get("/reports/{report_id}")
@_page
def report_page(report_id: int, request: Request) -> Response:
    op = _operator(request)
    with get_state(request).db.read() as s:
        r = s.get(Report, report_id)
        if r is None:
            raise HTTPException(404, "no such report")
        detail = views.report_detail(s, r)
    return _render(request, "report.html", op, report=detail)


@router.get("/campaigns")
@_page
def campaigns_page(request: Request) -> Response:
    op = _operator(request)
    with get_state(request).db.read() as s:
        rows = views.campaign_infos(
            s, s.scalars(select(Campaign).order_by(Campaign.id.desc())).all()
        )
    return _render(request, "campaigns.html", op, campaigns=rows)


@router.get("/campaigns/{campaign_id}")
@_page
def campaign_page(
    campaign_id: int,
    request: Request,
    state_filter: Annotated[str | None, Query(alias="state")] = None,
) -> Response:
    op = _operator(request)
    st = get_state(request)
    with st.db.read() as s:
        c = s.get(Campaign, campaign_id)
        if c is None:
            raise HTTPException(404, "no such campaign")
        status = views.campaign_status(s, c, st.now())
        release = s.get(Release, c.release_id)
        devices = views.campaign_devices(s, campaign_id, state_filter, None, PAGE, 0)
    return _render(
        request,
        "campaign.html",
        op,
        c=status,
        release=release,
        devices=devices,
        state_filter=state_filter,
    )


@router.post("/campaigns/{campaign_id}/{action}")
@_page
def campaign_action(
    campaign_id: int,
    action: str,
    request: Request,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    op = _operator(request)
    st = get_state(request)
    if action not in ("pause", "resume", "abort"):
        raise HTTPException(404, "no such action")
    if op.role.rank < Role.RELEASE.rank:
        raise HTTPException(403, "this needs the release role")
    if not hmac.compare_digest(csrf, _csrf(st, request)):
        raise HTTPException(403, "the form is stale: reload the page")
    now = st.now()
    try:
        with st.db.write() as s:
            camp.set_state(s, campaign_id, action, now)
            camp.progress(s, campaign_id, now)
    except camp.CampaignError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return RedirectResponse(f"/ui/campaigns/{campaign_id}", status_code=303, headers=_HEADERS)
