"""Who is calling: operators (API tokens with a role), devices (per-device tokens), and the
dashboard (a signed session cookie that stands for an API token).

401 means "no valid credential" (with ``WWW-Authenticate: Bearer``), 403 "valid, but not
allowed". A revoked token stops working at once: tokens are looked up on every request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from suitkit.server.models import ApiToken, Device, Role
from suitkit.server.security import check_session_cookie, token_hash
from suitkit.server.state import ServerState, get_state

SESSION_COOKIE = "suitkit_session"

bearer = HTTPBearer(auto_error=False, description="An API token (skt_...) or device token")


@dataclass(frozen=True, slots=True)
class Operator:
    token_id: int
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class DeviceCaller:
    pk: int
    device_id: str
    vendor_id: str
    class_id: str
    report_key_pem: str
    sequence_number: int | None
    manifest_digest: str | None
    last_seen_at: dt.datetime | None


def unauthorized(message: str = "a valid bearer token is required") -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def lookup_operator(state: ServerState, token: str) -> Operator | None:
    if not token.startswith("skt_"):
        return None
    with state.db.read() as s:
        row = s.execute(
            select(ApiToken.id, ApiToken.name, ApiToken.role).where(
                ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None)
            )
        ).first()
    return Operator(row[0], row[1], Role(row[2])) if row else None


def operator_by_id(state: ServerState, token_id: int) -> Operator | None:
    with state.db.read() as s:
        row = s.execute(
            select(ApiToken.id, ApiToken.name, ApiToken.role).where(
                ApiToken.id == token_id, ApiToken.revoked_at.is_(None)
            )
        ).first()
    return Operator(row[0], row[1], Role(row[2])) if row else None


def require(role: Role) -> Callable[..., Operator]:
    """A dependency: the caller must hold an API token of ``role`` or above."""

    def dependency(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Operator:
        state = get_state(request)
        if creds is None:
            raise unauthorized()
        op = lookup_operator(state, creds.credentials)
        if op is None:
            raise unauthorized("the token is unknown or revoked")
        if op.role.rank < role.rank:
            raise HTTPException(403, f"this needs the {role.value} role; the token is {op.role}")
        return op

    return dependency


def dashboard_operator(request: Request) -> Operator | None:
    """The operator the dashboard session cookie stands for, if any."""
    state = get_state(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    token_id = check_session_cookie(state.cookie_secret, cookie, state.now().timestamp())
    return operator_by_id(state, token_id) if token_id is not None else None


_DEVICE_BY_TOKEN = select(
    Device.id,
    Device.device_id,
    Device.vendor_id,
    Device.class_id,
    Device.report_key_pem,
    Device.sequence_number,
    Device.manifest_digest,
    Device.last_seen_at,
).where(Device.token_hash == bindparam("token_hash"))  # built once: the hot path of devices


def device_by_token(conn: Connection | Session, token: str) -> DeviceCaller | None:
    """The device a device token belongs to."""
    row = conn.execute(_DEVICE_BY_TOKEN, {"token_hash": token_hash(token)}).first()
    return None if row is None else DeviceCaller(*row)


def device_caller(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> DeviceCaller:
    """The device whose token is presented (401 otherwise); blocking (a database read)."""
    if creds is None:
        raise unauthorized("a device token is required")
    if not creds.credentials.startswith("skd_"):
        raise unauthorized("the token is not a device token")
    with get_state(request).db.connect() as conn:
        device = device_by_token(conn, creds.credentials)
    if device is None:
        raise unauthorized("the device token is unknown")
    return device


Viewer = Annotated[Operator, Depends(require(Role.VIEWER))]
ReleaseManager = Annotated[Operator, Depends(require(Role.RELEASE))]
Admin = Annotated[Operator, Depends(require(Role.ADMIN))]
