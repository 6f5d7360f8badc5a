"""The operator API, ``/api/v1``: tokens, releases, devices, groups, campaigns, status.

Every call needs ``Authorization: Bearer <API token>``; reading needs the ``viewer`` role,
releases and campaigns ``release``, devices, groups and tokens ``admin``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import UploadFile

from suitkit.server import campaigns as camp
from suitkit.server import logs, views
from suitkit.server.auth import Admin, ReleaseManager, Viewer
from suitkit.server.devices import (
    DeviceError,
    device_uuid,
    group_id,
    group_sizes,
    parse_import,
    register,
    set_tags,
)
from suitkit.server.devices import check_public_key as _check_key
from suitkit.server.http import blob_response
from suitkit.server.models import (
    ApiToken,
    Campaign,
    Device,
    DeviceGroup,
    LoginCode,
    Release,
    Report,
    Role,
)
from suitkit.server.releases import UploadRejected, check_name, check_release, store_release
from suitkit.server.schemas import (
    CampaignCreate,
    CampaignDevice,
    CampaignInfo,
    CampaignResume,
    CampaignStatus,
    DeviceCreate,
    DeviceCreated,
    DeviceImported,
    DeviceInfo,
    DeviceStatus,
    DeviceUpdate,
    GroupCreate,
    GroupInfo,
    ImportResult,
    LoginCodeCreated,
    ReleaseDetail,
    ReleaseInfo,
    ReportDetail,
    ReportSummary,
    TokenCreate,
    TokenCreated,
    TokenInfo,
)
from suitkit.server.security import (
    API_TOKEN_PREFIX,
    DEVICE_TOKEN_PREFIX,
    LOGIN_CODE_PREFIX,
    new_token,
    token_hash,
    token_prefix,
)
from suitkit.server.state import ServerState, get_state
from suitkit.server.storage import Staged, TooLarge

router = APIRouter(prefix="/api/v1")
log = logs.get("api")

LOGIN_CODE_TTL = dt.timedelta(minutes=5)


def _state(request: Request) -> ServerState:
    return get_state(request)


def _device_error(exc: DeviceError) -> HTTPException:
    detail: Any = {"message": str(exc), "problems": exc.detail} if exc.detail else str(exc)
    return HTTPException(exc.status, detail)


# --- tokens ----------------------------------------------------------------------------------


def create_api_token(state: ServerState, name: str, role: Role) -> tuple[ApiToken, str]:
    token = new_token(API_TOKEN_PREFIX)
    with state.db.write() as s:
        row = ApiToken(
            name=name,
            role=role.value,
            token_hash=token_hash(token),
            prefix=token_prefix(token),
            created_at=state.now(),
        )
        s.add(row)
        s.flush()
    return row, token


def _token_info(t: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=t.id,
        name=t.name,
        role=t.role,
        prefix=t.prefix,
        created_at=t.created_at,
        revoked_at=t.revoked_at,
    )


@router.post("/tokens", status_code=201, response_model=TokenCreated, tags=["tokens"])
def create_token(body: TokenCreate, request: Request, op: Admin) -> TokenCreated:
    """Create an API token (shown once)."""
    row, token = create_api_token(_state(request), body.name, Role(body.role))
    log.info("token created", extra=logs.fields(token_id=row.id, role=row.role, by=op.token_id))
    return TokenCreated(**_token_info(row).model_dump(), token=token)


@router.get("/tokens", response_model=list[TokenInfo], tags=["tokens"])
def list_tokens(request: Request, op: Admin) -> list[TokenInfo]:
    with _state(request).db.read() as s:
        return [_token_info(t) for t in s.scalars(select(ApiToken).order_by(ApiToken.id))]


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
def revoke_token(token_id: int, request: Request, op: Admin) -> Response:
    state = _state(request)
    with state.db.write() as s:
        t = s.get(ApiToken, token_id)
        if t is None:
            raise HTTPException(404, f"no token {token_id}")
        if t.revoked_at is None:
            t.revoked_at = state.now()
    log.info("token revoked", extra=logs.fields(token_id=token_id, by=op.token_id))
    return Response(status_code=204)


@router.post("/login-codes", status_code=201, response_model=LoginCodeCreated, tags=["tokens"])
def create_login_code(request: Request, op: Viewer) -> LoginCodeCreated:
    """A one-time link that signs a browser in to the dashboard as this token (5 minutes)."""
    state = _state(request)
    code = new_token(LOGIN_CODE_PREFIX)
    expires = state.now() + LOGIN_CODE_TTL
    with state.db.write() as s:
        s.add(LoginCode(code_hash=token_hash(code), token_id=op.token_id, expires_at=expires))
    base = state.settings.public_url or str(request.base_url).rstrip("/")
    return LoginCodeCreated(url=f"{base.rstrip('/')}/ui/login?code={code}", expires_at=expires)


# --- releases --------------------------------------------------------------------------------

_UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["envelope"],
                    "properties": {
                        "envelope": {
                            "type": "string",
                            "format": "binary",
                            "description": "The signed SUIT envelope",
                        },
                        "payload": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Payloads; each file name is matched to "
                            "the last path segment of an image URI",
                        },
                        "severed": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Severable members severed from the "
                            "envelope (as saved by `suitkit sever --save`)",
                        },
                        "mapping": {
                            "type": "string",
                            "description": 'JSON: {"file name": "URI" or component '
                            "index}, for payloads not named like their URI",
                        },
                        "name": {"type": "string"},
                        "notes": {"type": "string"},
                    },
                }
            }
        },
    }
}


async def _stage(state: ServerState, upload: UploadFile, limit: int) -> Staged:
    await upload.seek(0)
    return await run_in_threadpool(state.blobs.stage_file, upload.file, limit=limit)


@router.post(
    "/releases",
    status_code=201,
    response_model=ReleaseDetail,
    tags=["releases"],
    openapi_extra=_UPLOAD_DOC,
    responses={
        409: {"description": "The same manifest was uploaded before"},
        413: {"description": "Too large"},
        422: {"description": "Refused: not authentic, or a payload does not match"},
    },
)
async def upload_release(request: Request, op: ReleaseManager) -> ReleaseDetail:
    """Upload a release: the envelope, its severed members and its payloads (multipart).

    Verified before anything is stored: the envelope against the author trust anchors, the
    members against their digests, each payload against the image-digest and image-size of
    the image it stands for.
    """
    state = _state(request)
    s = state.settings
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, "send multipart/form-data")
    try:
        form = await request.form(max_files=256, max_fields=16, max_part_size=256 * 1024)
    except HTTPException:
        raise
    except Exception as exc:  # python-multipart's errors: a malformed body
        raise HTTPException(400, f"malformed multipart body: {exc}") from None
    staged: list[Staged] = []
    try:
        envelopes = [f for f in form.getlist("envelope") if isinstance(f, UploadFile)]
        if len(envelopes) != 1:
            raise UploadRejected(400, "give exactly one 'envelope' file")
        for key in form:
            if key not in ("envelope", "payload", "severed", "mapping", "name", "notes"):
                raise UploadRejected(400, f"unknown form field {key!r}")
        try:
            env = await _stage(state, envelopes[0], s.max_envelope)
            staged.append(env)
            members = []
            for f in form.getlist("severed"):
                if not isinstance(f, UploadFile):
                    raise UploadRejected(400, "'severed' must be files")
                members.append(await _stage(state, f, s.max_envelope))
                staged.append(members[-1])
            payloads: list[tuple[str, Staged]] = []
            for f in form.getlist("payload"):
                if not isinstance(f, UploadFile) or not f.filename:
                    raise UploadRejected(400, "'payload' must be files with a file name")
                check_name(f.filename, "payload")
                p = await _stage(state, f, s.max_payload)
                staged.append(p)
                payloads.append((f.filename, p))
        except TooLarge as exc:
            raise UploadRejected(
                413, f"a file is larger than the limit of {exc.limit} bytes"
            ) from None
        mapping = _mapping(form.get("mapping"))
        name = _text_field(form.get("name"), "name", 200)
        notes = _text_field(form.get("notes"), "notes", 10000)
        checked = await run_in_threadpool(
            check_release,
            env,
            state.trusted_keys,
            severed=members,
            payloads=payloads,
            mapping=mapping,
        )
        release_id = await run_in_threadpool(_store, state, checked, env, name, notes, op.token_id)
    except UploadRejected as exc:
        state.metrics.releases.inc("refused")
        log.info("release refused", extra=logs.fields(status=exc.status, reason=exc.message))
        detail: Any = {"message": exc.message, **exc.detail} if exc.detail else exc.message
        raise HTTPException(exc.status, detail) from None
    finally:
        for st in staged:
            st.discard()
        await form.close()
    state.metrics.releases.inc("stored")
    log.info("release stored", extra=logs.fields(release=release_id, by=op.token_id))
    with state.db.read() as sess:
        r = sess.get(Release, release_id)
        assert r is not None
        return views.release_detail(sess, r)


def _store(
    state: ServerState,
    checked: Any,
    env: Staged,
    name: str | None,
    notes: str | None,
    by: int,
) -> int:
    try:
        with state.db.write() as s:
            existing = s.scalar(
                select(Release.id).where(Release.manifest_digest == checked.manifest_digest)
            )
            if existing is not None:
                raise UploadRejected(
                    409, f"this manifest is release {existing} already", {"release_id": existing}
                )
            r = store_release(
                s, checked, env, name=name, notes=notes, created_by=by, now=state.now()
            )
            return r.id
    except IntegrityError:
        raise UploadRejected(409, "this manifest was uploaded at the same time") from None


def _mapping(value: Any) -> dict[str, str | int]:
    if value is None:
        return {}
    if not isinstance(value, str):
        raise UploadRejected(400, "'mapping' must be a JSON text field")
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        raise UploadRejected(400, "'mapping' is not valid JSON") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and (isinstance(v, str) or (isinstance(v, int) and v >= 0))
        for k, v in data.items()
    ):
        raise UploadRejected(400, '\'mapping\': {"file name": "URI" or component index}')
    return data


def _text_field(value: Any, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise UploadRejected(400, f"'{name}' must be text of at most {limit} characters")
    return value or None


@router.get("/releases", response_model=list[ReleaseInfo], tags=["releases"])
def list_releases(request: Request, op: Viewer) -> list[ReleaseInfo]:
    with _state(request).db.read() as s:
        rows = s.scalars(select(Release).order_by(Release.id.desc())).all()
        return [views.release_info(s, r) for r in rows]


@router.get("/releases/{release_id}", response_model=ReleaseDetail, tags=["releases"])
def show_release(release_id: int, request: Request, op: Viewer) -> ReleaseDetail:
    with _state(request).db.read() as s:
        r = s.get(Release, release_id)
        if r is None:
            raise HTTPException(404, f"no release {release_id}")
        return views.release_detail(s, r)


@router.get(
    "/releases/{release_id}/envelope",
    tags=["releases"],
    response_class=Response,
    responses={200: {"content": {"application/suit-envelope+cose": {}}}},
)
def release_envelope(release_id: int, request: Request, op: Viewer) -> Response:
    state = _state(request)
    with state.db.read() as s:
        r = s.get(Release, release_id)
        if r is None:
            raise HTTPException(404, f"no release {release_id}")
        sha, size = r.envelope_sha256, r.envelope_size
    return blob_response(
        request, state.blobs.path(sha), sha, size, "application/suit-envelope+cose"
    )


# --- devices ---------------------------------------------------------------------------------


@router.post("/devices", status_code=201, response_model=DeviceCreated, tags=["devices"])
def create_device(body: DeviceCreate, request: Request, op: Admin) -> DeviceCreated:
    """Register a device; its device-API token is in the answer, and only there."""
    state = _state(request)
    try:
        with state.db.write() as s:
            [reg] = register(s, [body], state.now())
            s.flush()
            info = views.device_infos(s, [reg.device])[0]
    except DeviceError as exc:
        raise _device_error(exc) from None
    except IntegrityError:
        raise HTTPException(409, "the device was registered at the same time") from None
    return DeviceCreated(**info.model_dump(), token=reg.token)


@router.post(
    "/devices/import",
    status_code=201,
    response_model=ImportResult,
    tags=["devices"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/DeviceCreate"},
                    }
                },
            },
        }
    },
)
async def import_devices(request: Request, op: Admin) -> ImportResult:
    """Register many devices at once from CSV (header: device_id, vendor_id, class_id,
    public_key, name, group, tags) or JSON; all or none. The tokens are in the answer only."""
    state = _state(request)
    body = await request.body()
    content_type = request.headers.get("content-type", "").lower()

    def run() -> ImportResult:
        items = parse_import(body, content_type)
        with state.db.write() as s:
            regs = register(s, items, state.now())
        return ImportResult(
            created=len(regs),
            devices=[DeviceImported(device_id=r.device.device_id, token=r.token) for r in regs],
        )

    try:
        result = await run_in_threadpool(run)
    except DeviceError as exc:
        raise _device_error(exc) from None
    except IntegrityError:
        raise HTTPException(409, "some devices were registered at the same time") from None
    log.info("devices imported", extra=logs.fields(count=result.created, by=op.token_id))
    return result


@router.get("/devices", response_model=list[DeviceInfo], tags=["devices"])
def list_devices(
    request: Request,
    op: Viewer,
    group: str | None = None,
    tag: str | None = None,
    class_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DeviceInfo]:
    from suitkit.server.models import DeviceTag

    with _state(request).db.read() as s:
        q = select(Device)
        if group is not None:
            gid = s.scalar(select(DeviceGroup.id).where(DeviceGroup.name == group))
            if gid is None:
                return []
            q = q.where(Device.group_id == gid)
        if tag is not None:
            q = q.where(Device.id.in_(select(DeviceTag.device_pk).where(DeviceTag.tag == tag)))
        if class_id is not None:
            q = q.where(Device.class_id == class_id)
        rows = s.scalars(q.order_by(Device.id).limit(limit).offset(offset)).all()
        return views.device_infos(s, rows)


def _device(s: Any, device_id: str) -> Device:
    try:
        canonical = device_uuid(device_id)
    except DeviceError as exc:
        raise _device_error(exc) from None
    d: Device | None = s.scalar(select(Device).where(Device.device_id == canonical))
    if d is None:
        raise HTTPException(404, f"no device {device_id}")
    return d


@router.get("/devices/{device_id}", response_model=DeviceStatus, tags=["devices"])
def show_device(device_id: str, request: Request, op: Viewer) -> DeviceStatus:
    """A device's status: what it runs per component, its last report, its campaigns and
    its history."""
    with _state(request).db.read() as s:
        return views.device_status(s, _device(s, device_id))


@router.patch("/devices/{device_id}", response_model=DeviceInfo, tags=["devices"])
def update_device(device_id: str, body: DeviceUpdate, request: Request, op: Admin) -> DeviceInfo:
    state = _state(request)
    try:
        with state.db.write() as s:
            d = _device(s, device_id)
            if body.name is not None:
                d.name = body.name
            if body.group is not None:
                d.group_id = group_id(s, body.group, state.now()) if body.group else None
            if body.tags is not None:
                set_tags(s, d.id, body.tags)
            if body.public_key is not None:
                d.report_key_pem = _check_key(body.public_key)
            s.flush()
            return views.device_infos(s, [d])[0]
    except DeviceError as exc:
        raise _device_error(exc) from None


@router.post("/devices/{device_id}/token", response_model=DeviceCreated, tags=["devices"])
def rotate_device_token(device_id: str, request: Request, op: Admin) -> DeviceCreated:
    """Give the device a new token; the old one stops working at once."""
    state = _state(request)
    token = new_token(DEVICE_TOKEN_PREFIX)
    with state.db.write() as s:
        d = _device(s, device_id)
        d.token_hash, d.token_prefix = token_hash(token), token_prefix(token)
        s.flush()
        info = views.device_infos(s, [d])[0]
    return DeviceCreated(**info.model_dump(), token=token)


@router.delete("/devices/{device_id}", status_code=204, tags=["devices"])
def delete_device(device_id: str, request: Request, op: Admin) -> Response:
    with _state(request).db.write() as s:
        d = _device(s, device_id)
        s.delete(d)
    return Response(status_code=204)


@router.get("/devices/{device_id}/reports", response_model=list[ReportSummary], tags=["devices"])
def device_reports(
    device_id: str,
    request: Request,
    op: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReportSummary]:
    with _state(request).db.read() as s:
        return views.device_reports(s, _device(s, device_id).id, limit)


@router.get("/reports/{report_id}", response_model=ReportDetail, tags=["devices"])
def show_report(report_id: int, request: Request, op: Viewer) -> ReportDetail:
    with _state(request).db.read() as s:
        r = s.get(Report, report_id)
        if r is None:
            raise HTTPException(404, f"no report {report_id}")
        return views.report_detail(s, r)


@router.post("/groups", status_code=201, response_model=GroupInfo, tags=["devices"])
def create_group(body: GroupCreate, request: Request, op: Admin) -> GroupInfo:
    state = _state(request)
    try:
        with state.db.write() as s:
            g = DeviceGroup(name=body.name, description=body.description, created_at=state.now())
            s.add(g)
            s.flush()
            return GroupInfo(id=g.id, name=g.name, description=g.description, devices=0)
    except IntegrityError:
        raise HTTPException(409, f"group {body.name!r} exists") from None


@router.get("/groups", response_model=list[GroupInfo], tags=["devices"])
def list_groups(request: Request, op: Viewer) -> list[GroupInfo]:
    with _state(request).db.read() as s:
        sizes = group_sizes(s)
        return [
            GroupInfo(id=g.id, name=g.name, description=g.description, devices=sizes.get(g.id, 0))
            for g in s.scalars(select(DeviceGroup).order_by(DeviceGroup.name))
        ]


@router.delete("/groups/{name}", status_code=204, tags=["devices"])
def delete_group(name: str, request: Request, op: Admin) -> Response:
    with _state(request).db.write() as s:
        n = s.execute(delete(DeviceGroup).where(DeviceGroup.name == name))
        if getattr(n, "rowcount", 0) == 0:
            raise HTTPException(404, f"no group {name!r}")
    return Response(status_code=204)


# --- campaigns -------------------------------------------------------------------------------


def _campaign_error(exc: camp.CampaignError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


@router.post("/campaigns", status_code=201, response_model=CampaignStatus, tags=["campaigns"])
def create_campaign(body: CampaignCreate, request: Request, op: ReleaseManager) -> CampaignStatus:
    """Roll a release out to a target in waves (see the campaign fields)."""
    state = _state(request)
    now = state.now()
    try:
        with state.db.write() as s:
            c = camp.create(
                s,
                name=body.name,
                release_id=body.release_id,
                target=body.target.model_dump(exclude_none=True),
                waves=body.waves,
                failure_threshold=body.failure_threshold,
                min_reports=body.min_reports,
                advance_at=body.advance_at,
                starts_at=body.starts_at,
                ends_at=body.ends_at,
                start=body.start,
                created_by=op.token_id,
                now=now,
            )
            s.flush()
            campaign_id = c.id
    except camp.CampaignError as exc:
        raise _campaign_error(exc) from None
    log.info("campaign created", extra=logs.fields(campaign=campaign_id, by=op.token_id))
    with state.db.read() as s:
        c2 = s.get(Campaign, campaign_id)
        assert c2 is not None
        return views.campaign_status(s, c2, now)


@router.get("/campaigns", response_model=list[CampaignInfo], tags=["campaigns"])
def list_campaigns(request: Request, op: Viewer) -> list[CampaignInfo]:
    with _state(request).db.read() as s:
        return views.campaign_infos(
            s, s.scalars(select(Campaign).order_by(Campaign.id.desc())).all()
        )


@router.get("/campaigns/{campaign_id}", response_model=CampaignStatus, tags=["campaigns"])
def show_campaign(campaign_id: int, request: Request, op: Viewer) -> CampaignStatus:
    """Counts by state (pending, offered, downloading, installed, failed), per wave, and the
    failure reasons."""
    state = _state(request)
    with state.db.read() as s:
        c = s.get(Campaign, campaign_id)
        if c is None:
            raise HTTPException(404, f"no campaign {campaign_id}")
        return views.campaign_status(s, c, state.now())


@router.get(
    "/campaigns/{campaign_id}/devices", response_model=list[CampaignDevice], tags=["campaigns"]
)
def campaign_devices(
    campaign_id: int,
    request: Request,
    op: Viewer,
    state: Literal["pending", "offered", "downloading", "installed", "failed"] | None = None,
    wave: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[CampaignDevice]:
    with _state(request).db.read() as s:
        if s.get(Campaign, campaign_id) is None:
            raise HTTPException(404, f"no campaign {campaign_id}")
        return views.campaign_devices(s, campaign_id, state, wave, limit, offset)


def _act(
    request: Request, campaign_id: int, action: str, op: Any, threshold: float | None = None
) -> CampaignStatus:
    state = _state(request)
    now = state.now()
    try:
        with state.db.write() as s:
            camp.set_state(s, campaign_id, action, now, threshold)
            camp.progress(s, campaign_id, now)
    except camp.CampaignError as exc:
        raise _campaign_error(exc) from None
    log.info(f"campaign {action}", extra=logs.fields(campaign=campaign_id, by=op.token_id))
    with state.db.read() as s:
        c = s.get(Campaign, campaign_id)
        assert c is not None
        return views.campaign_status(s, c, now)


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignStatus, tags=["campaigns"])
def pause_campaign(campaign_id: int, request: Request, op: ReleaseManager) -> CampaignStatus:
    return _act(request, campaign_id, "pause", op)


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignStatus, tags=["campaigns"])
def resume_campaign(
    campaign_id: int, request: Request, op: ReleaseManager, body: CampaignResume | None = None
) -> CampaignStatus:
    """Resume; optionally with a new failure threshold (else it may pause again at once)."""
    return _act(request, campaign_id, "resume", op, body.failure_threshold if body else None)


@router.post("/campaigns/{campaign_id}/abort", response_model=CampaignStatus, tags=["campaigns"])
def abort_campaign(campaign_id: int, request: Request, op: ReleaseManager) -> CampaignStatus:
    """Stop for good: no more offers, and downloads of its files are refused."""
    return _act(request, campaign_id, "abort", op)


@router.post("/campaigns/{campaign_id}/advance", response_model=CampaignStatus, tags=["campaigns"])
def advance_campaign(campaign_id: int, request: Request, op: ReleaseManager) -> CampaignStatus:
    """Open the next wave now, without waiting for the current one to finish."""
    return _act(request, campaign_id, "advance", op)
