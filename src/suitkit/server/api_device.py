"""The device API, ``/device/v1`` (RFC 9019: the firmware server and the status tracker).

- ``POST /checkin``: the device says who it is and what it runs; the answer is 204 (nothing
  to do) or the offer: the envelope, severed members and payloads to download, and the nonce
  to put in its report.
- ``GET /files/{sha256}``: a download, with ``Range`` (resume) and ``ETag``; only files of a
  release that was offered to this very device (404 for anything else, so that a device
  learns nothing about other devices' updates).
- ``POST /reports``: a signed SUIT_Report (COSE_Sign1), verified with the device's key.

Every call carries ``Authorization: Bearer <device token>``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import Connection, bindparam, select

from suitkit.server import campaigns as camp
from suitkit.server import logs
from suitkit.server.auth import DeviceCaller, bearer, unauthorized
from suitkit.server.db import Sql, WriterBusy
from suitkit.server.devices import (
    OfferRef,
    checkin_lookup,
    event,
    offer_candidates,
    pick_offer,
    record_checkin,
    record_checkin_pg,
    touch,
)
from suitkit.server.http import CHUNK, DOWNLOAD_HEADERS, BlobStream, Plan, plan
from suitkit.server.models import (
    CampaignState,
    Deployment,
    DeploymentState,
    ReleaseFile,
)
from suitkit.server.reports import (
    Ingested,
    ParsedReport,
    ReportRejected,
    ingest,
    ingest_pg,
    parse_signed_report,
)
from suitkit.server.schemas import (
    CheckIn,
    Offer,
    OfferFile,
    OfferMember,
    OfferPayload,
    ReportAccepted,
)
from suitkit.server.security import issue_nonce, token_hash
from suitkit.server.state import ServerState, device_key, get_state
from suitkit.server.storage import check_sha256

router = APIRouter(prefix="/device/v1", tags=["device"])
log = logs.get("device")

MEDIA_TYPES = {
    "envelope": "application/suit-envelope+cose",
    "member": "application/cbor",
    "payload": "application/octet-stream",
}


def _base(state: ServerState, request: Request) -> str:
    return (state.settings.public_url or str(request.base_url)).rstrip("/")


def _token(creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None:
        raise unauthorized("a device token is required")
    if not creds.credentials.startswith("skd_"):
        raise unauthorized("the token is not a device token")
    return creds.credentials


_DEVICE_BY_TOKEN = Sql(
    """
    SELECT id, device_id, vendor_id, class_id, report_key_pem, sequence_number,
           manifest_digest, last_seen_at
    FROM devices WHERE token_hash = :token_hash
    """,
    times=(7,),
)


def _caller(conn: Any, who: str | DeviceCaller) -> DeviceCaller:
    """The device itself, authenticated already (a front end such as CoAP), or by its token
    (``conn``: a pooled connection, :meth:`Database.raw_read`)."""
    if isinstance(who, DeviceCaller):
        return who
    row = _DEVICE_BY_TOKEN.first(conn, {"token_hash": token_hash(who)})
    if row is None:
        raise unauthorized("the device token is unknown")
    return DeviceCaller(*row)


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@router.post(
    "/checkin",
    response_model=Offer,
    responses={
        204: {"description": "Nothing to do"},
        401: {"description": "No valid device token"},
        403: {"description": "The identity is not the token's device"},
    },
)
async def checkin_route(body: CheckIn, request: Request, creds: Bearer) -> Response | Offer:
    state = get_state(request)
    token = _token(creds)
    now = state.now()
    if state.db.sqlite:
        # SQLite reads in WAL mode never wait (no lock, no network): cheaper here than a
        # worker thread. Writes too, when no other writer holds the lock (a few hundred
        # microseconds); when one does, the write waits for it in a thread.
        seen = _checkin_read(state, token, body, now)
        if seen.write:
            try:
                _checkin_write(state, seen, body, now, False)
            except WriterBusy:
                await state.db.run(_checkin_write, state, seen, body, now)
        elif state.settings.last_seen_flush > 0:
            _checkin_touch(state, seen, now)  # only notes the time
        else:
            await state.db.run(_checkin_touch, state, seen, now)
    else:
        # PostgreSQL: the read and the writes it calls for in one worker thread hop
        seen = await state.db.run(_checkin_blocking, state, token, body, now)
    offer = seen.offer
    if offer is None:
        state.metrics.checkins.inc("nothing")
        return Response(status_code=204)
    state.metrics.checkins.inc("offer")
    nonce = issue_nonce(state.nonce_secret, seen.device.pk, now.timestamp()).hex()
    head = _offer_head(state, offer, _base(state, request))
    return Response(head + nonce.encode() + b'"}', media_type="application/json")


@dataclass(frozen=True, slots=True)
class _Seen:
    device: DeviceCaller
    offer: OfferRef | None
    installed: list[int]
    write: bool


def _checkin_blocking(
    state: ServerState, who: str | DeviceCaller, body: CheckIn, now: dt.datetime
) -> _Seen:
    """The whole check-in but the answer, blocking: who, what to offer, what to write."""
    seen = _checkin_read(state, who, body, now)
    if seen.write:
        if (
            state.db.sqlite
            or body.sequence_number is None
            or body.components
            or seen.installed
        ):
            _checkin_write(state, seen, body, now)
        else:  # PostgreSQL, the usual check-in: its writes in one statement
            with state.db.raw_read() as dbc:
                record_checkin_pg(dbc, seen.device.pk, body, now, seen.offer)
    else:
        _checkin_touch(state, seen, now)
    return seen


def _checkin(state: ServerState, who: str | DeviceCaller, body: CheckIn, base: str) -> Offer | None:
    """The whole check-in, blocking: who, what to offer, what to write."""
    now = state.now()
    seen = _checkin_blocking(state, who, body, now)
    return _checkin_offer(state, seen, base, now)


def _checkin_read(
    state: ServerState, who: str | DeviceCaller, body: CheckIn, now: dt.datetime
) -> _Seen:
    if isinstance(who, DeviceCaller):
        with state.db.connect() as conn:
            device, candidates = who, offer_candidates(conn, who.pk)
    else:
        with state.db.raw_read() as dbc:
            found = checkin_lookup(dbc, who)
        if found is None:
            raise unauthorized("the device token is unknown")
        device, candidates = DeviceCaller(*found[0]), found[1]
    if (str(body.device_id), str(body.vendor_id), str(body.class_id)) != (
        device.device_id,
        device.vendor_id,
        device.class_id,
    ):
        state.metrics.checkins.inc("refused")
        raise HTTPException(403, "this identity is not the one registered for the token")
    seq = body.sequence_number if body.sequence_number is not None else device.sequence_number
    digest = body.manifest_digest if body.manifest_digest is not None else device.manifest_digest
    offer, installed = pick_offer(candidates, seq, digest, now)
    changes = bool(body.components) or (
        (body.sequence_number is not None and body.sequence_number != device.sequence_number)
        or (body.manifest_digest is not None and body.manifest_digest != device.manifest_digest)
    )
    write = (offer is not None and offer.first_offer) or bool(installed) or changes
    return _Seen(device, offer, installed, write)


def _checkin_write(
    state: ServerState, seen: _Seen, body: CheckIn, now: dt.datetime, wait: bool = True
) -> None:
    with state.db.write_connection(wait) as conn:
        record_checkin(
            conn,
            seen.device.pk,
            body,
            now,
            offer=seen.offer,
            installed=seen.installed,
            known_sequence=seen.device.sequence_number,
        )
        for campaign_id in _campaigns_of(conn, seen.installed):
            camp.progress_after(conn, campaign_id, now, failed=False)


def _checkin_touch(state: ServerState, seen: _Seen, now: dt.datetime) -> None:
    """A check-in that changed nothing: its time, batched (or at once, if so configured)."""
    last = seen.device.last_seen_at
    if last is not None and (now - last).total_seconds() < state.settings.last_seen_resolution:
        return
    if state.settings.last_seen_flush > 0:
        state.last_seen.note(seen.device.pk, now)
    else:
        with state.db.write_connection() as conn:
            touch(conn, seen.device.pk, now)


def _offer_model(state: ServerState, offer: OfferRef, base: str, nonce: str) -> Offer:
    files = _release_files(state, offer.release_id)

    def url(sha: str) -> str:
        return f"{base}/device/v1/files/{sha}"

    env = next(f for f in files if f.kind == "envelope")
    return Offer(
        campaign_id=offer.campaign_id,
        release_id=offer.release_id,
        sequence_number=offer.sequence_number,
        manifest_digest=offer.manifest_digest,
        envelope=OfferFile(url=url(env.sha256), sha256=env.sha256, size=env.size),
        members=[
            OfferMember(member=f.name, url=url(f.sha256), sha256=f.sha256, size=f.size)
            for f in files
            if f.kind == "member"
        ],
        payloads=[
            OfferPayload(
                uri=f.uri or "",
                component_index=f.component_index,
                url=url(f.sha256),
                sha256=f.sha256,
                size=f.size,
            )
            for f in files
            if f.kind == "payload"
        ],
        report_url=f"{base}/device/v1/reports",
        report_nonce=nonce,
    )


def _checkin_offer(state: ServerState, seen: _Seen, base: str, now: dt.datetime) -> Offer | None:
    offer, device = seen.offer, seen.device
    if offer is None:
        state.metrics.checkins.inc("nothing")
        return None
    state.metrics.checkins.inc("offer")
    nonce = issue_nonce(state.nonce_secret, device.pk, now.timestamp()).hex()
    return _offer_model(state, offer, base, nonce)


_OFFER_TAIL = b'"report_nonce":""}'


def _offer_head(state: ServerState, offer: OfferRef, base: str) -> bytes:
    """The JSON of an offer up to its nonce, the one part that differs between devices: the
    same for every device of a campaign (a release and its files never change), serialised
    once per process."""
    memo = state.db.memo
    key = ("offer", offer.campaign_id, offer.release_id, offer.manifest_digest, base)
    head: bytes | None = memo.get(key)
    if head is None:
        text = _offer_model(state, offer, base, "").model_dump_json().encode()
        assert text.endswith(_OFFER_TAIL)
        head = text[: -len(_OFFER_TAIL)] + b'"report_nonce":"'
        if len(memo) > 4096:
            memo.clear()
        memo[key] = head
    return head


@dataclass(frozen=True, slots=True)
class _File:
    kind: str
    name: str
    uri: str | None
    component_index: int | None
    sha256: str
    size: int


_FILES = (
    select(
        ReleaseFile.kind,
        ReleaseFile.name,
        ReleaseFile.uri,
        ReleaseFile.component_index,
        ReleaseFile.sha256,
        ReleaseFile.size,
    )
    .where(ReleaseFile.release_id == bindparam("release_id"))
    .order_by(ReleaseFile.id)
)
def _release_files(state: ServerState, release_id: int) -> tuple[_File, ...]:
    """A release's files never change: read once per process (and per database)."""
    memo = state.db.memo
    key = ("files", release_id)
    files: tuple[_File, ...] | None = memo.get(key)
    if files is None:
        with state.db.connect() as conn:
            files = tuple(_File(*r) for r in conn.execute(_FILES, {"release_id": release_id}))
        if len(memo) > 4096:
            memo.clear()
        memo[key] = files
    return files


def _campaigns_of(conn: Connection, deployment_ids: list[int]) -> list[int]:
    if not deployment_ids:
        return []
    query = select(Deployment.campaign_id).where(Deployment.id.in_(deployment_ids))
    return sorted(set(conn.execute(query).scalars()))


@router.get(
    "/files/{sha256}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "Partial content (Range)"},
        304: {"description": "Not modified (If-None-Match)"},
        404: {"description": "No such file for this device"},
        416: {"description": "Range not satisfiable"},
    },
)
async def download_route(sha256: str, request: Request, creds: Bearer) -> Response:
    state = get_state(request)
    token = _token(creds)
    try:
        check_sha256(sha256)
    except ValueError:
        raise HTTPException(404, "no such file") from None
    h = request.headers
    args = (h.get("range"), h.get("if-range"), h.get("if-none-match"), request.method == "HEAD")
    if state.db.sqlite:
        # SQLite: the look-up never waits (WAL); with nothing to write and a small file
        # (read from the page cache, most likely), no worker thread at all
        found = _authorise(state, token, sha256)
        try:
            if found[2] > INLINE_READ:
                raise WriterBusy  # a large read: in a thread
            kind, size, p, fd, first = _download(
                state, token, sha256, *args, found=found, wait=False
            )
        except WriterBusy:
            kind, size, p, fd, first = await state.db.run(
                _download, state, token, sha256, *args, True, found
            )
    else:
        kind, size, p, fd, first = await state.db.run(_download, state, token, sha256, *args)
    etag = f'"{sha256}"'
    headers = {**DOWNLOAD_HEADERS, "etag": etag}
    if p.status == 304:
        return Response(status_code=304, headers=headers)
    if p.status == 416:
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
    assert fd is not None
    if request.method == "GET":
        state.metrics.download_bytes.inc(kind, amount=p.end - p.start)
    return BlobStream(
        fd,
        first,
        p,
        size,
        headers,
        MEDIA_TYPES.get(kind, "application/octet-stream"),
        request.method == "HEAD",
    )


# HEAD: the same handler (headers only), kept out of the OpenAPI document, where it would be
# a second operation with the same id
router.add_api_route(
    "/files/{sha256}", download_route, methods=["HEAD"], response_class=Response,
    include_in_schema=False,
)


_AUTHORISED = Sql(
    """
    SELECT f.kind, f.size, p.id, p.state, c.id
    FROM release_files f
    JOIN campaigns c ON c.release_id = f.release_id
    JOIN deployments p ON p.campaign_id = c.id
    WHERE f.sha256 = :sha256 AND p.device_pk = :device_pk
      AND p.state <> 'pending' AND c.state <> 'aborted'
    ORDER BY c.id DESC
    LIMIT 1
    """
)
_AUTHORISED_BY_TOKEN = Sql(
    """
    SELECT d.id, f.kind, f.size, p.id, p.state, c.id
    FROM devices d
    JOIN deployments p ON p.device_pk = d.id
    JOIN campaigns c ON c.id = p.campaign_id
    JOIN release_files f ON f.release_id = c.release_id
    WHERE d.token_hash = :token_hash AND f.sha256 = :sha256
      AND p.state <> 'pending' AND c.state <> 'aborted'
    ORDER BY c.id DESC
    LIMIT 1
    """
)
_DOWNLOADING = Sql(
    "UPDATE deployments SET state = 'downloading', downloading_at = :now"
    " WHERE id = :dep AND state = 'offered'"
)


# bytes: on SQLite, a download this small is served without a worker thread (a read of the
# page cache, most likely, and a write only if no other writer holds the lock)
INLINE_READ = 256 << 10


def _authorise(
    state: ServerState, who: str | DeviceCaller, sha256: str
) -> tuple[int, str, int, int, str, int]:
    """The device, and the file's kind and size, its deployment and that deployment's state
    and campaign (401 for an unknown token, 404 for a file not offered to this device)."""
    with state.db.raw_read() as dbc:
        if isinstance(who, DeviceCaller):
            pk = who.pk
            row = _AUTHORISED.first(dbc, {"sha256": sha256, "device_pk": pk})
        else:
            # the token and the file in one round trip; the rare miss tells 401 from 404
            found = _AUTHORISED_BY_TOKEN.first(
                dbc, {"sha256": sha256, "token_hash": token_hash(who)}
            )
            if found is None:
                _caller(dbc, who)  # 401 for an unknown token
                row = None
            else:
                pk, row = int(found[0]), found[1:]
    if row is None:
        raise HTTPException(404, "no such file for this device")
    kind, size, dep_id, dep_state, campaign_id = row
    return pk, str(kind), int(size), int(dep_id), str(dep_state), int(campaign_id)


def _download(
    state: ServerState,
    who: str | DeviceCaller,
    sha256: str,
    range_header: str | None,
    if_range: str | None,
    if_none_match: str | None,
    head_only: bool,
    open_file: bool = True,
    found: tuple[int, str, int, int, str, int] | None = None,
    wait: bool = True,
) -> tuple[str, int, Plan, int | None, bytes]:
    """Only a file of a release offered to this very device, in a campaign that is not
    aborted; the first download moves the device from offered to downloading. In the same
    worker thread: open the blob and read its first chunk (one thread hop for a download of
    up to a chunk). ``found``: :func:`_authorise`, if the caller did it."""
    device_pk, kind, size, dep_id, dep_state, campaign_id = (
        found if found is not None else _authorise(state, who, sha256)
    )
    if dep_state == DeploymentState.OFFERED:
        now = state.now()
        with state.db.write_connection(wait) as conn:
            if _DOWNLOADING.rowcount(conn, {"dep": dep_id, "now": now}) == 1:
                event(conn, device_pk, now, "downloading", campaign_id, f"{kind} {sha256[:16]}...")
    p = plan(int(size), f'"{sha256}"', range_header, if_range, if_none_match)
    if p.status in (304, 416) or not open_file:
        return str(kind), int(size), p, None, b""
    try:
        fd = os.open(state.blobs.path(sha256), os.O_RDONLY)
    except FileNotFoundError:  # pragma: no cover - the store lost a file
        log.error("blob missing", extra=logs.fields(sha256=sha256))
        raise HTTPException(404, "no such file") from None
    try:
        first = b"" if head_only else os.pread(fd, min(CHUNK, p.end - p.start), p.start)
    except BaseException:
        os.close(fd)
        raise
    return str(kind), int(size), p, fd, first


@router.post(
    "/reports",
    status_code=201,
    response_model=ReportAccepted,
    responses={
        200: {"model": ReportAccepted, "description": "Received before: nothing changed"},
        413: {"description": "Too large"},
        415: {"description": "Not a COSE message"},
        422: {
            "description": "Not verifiable with this device's key, malformed, or a nonce "
            "this server did not issue to this device"
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                'application/cose; cose-type="cose-sign1"': {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        }
    },
)
async def report_route(request: Request, creds: Bearer, response: Response) -> ReportAccepted:
    """A signed SUIT_Report (COSE_Sign1 with the report as payload, draft-ietf-suit-report
    §7). Stored once: sending it again answers 200 with ``duplicate: true``."""
    return await _report(request, _token(creds), response)


async def _report(request: Request, who: str | DeviceCaller, response: Response) -> ReportAccepted:
    state = get_state(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        if state.db.sqlite:
            # SQLite: the look-up and the verification here (a read that never waits, and
            # CPU), the write too when no other writer holds the lock, else in a thread
            checked = _ingest_check(state, who, ctype, raw)
            try:
                result = _ingest_store(state, *checked, raw, False)
            except WriterBusy:
                result = await state.db.run(_ingest_store, state, *checked, raw, True)
        else:
            result = await state.db.run(_ingest, state, who, ctype, raw)
    except ReportRejected as exc:
        state.metrics.reports.inc("refused")
        log.info("report refused", extra=logs.fields(reason=exc.message))
        detail: object = {"message": exc.message, **exc.detail} if exc.detail else exc.message
        raise HTTPException(exc.status, detail) from None
    if result.duplicate:
        response.status_code = 200
        state.metrics.reports.inc("duplicate")
    else:
        state.metrics.reports.inc("success" if result.success else "failure")
    return result


_UNFINISHED_STATES = ", ".join(f"'{s.value}'" for s in DeploymentState if not s.terminal)
_BUSY = Sql(
    f"""
    SELECT id FROM deployments
    WHERE campaign_id = :campaign_id AND wave <= :wave AND state IN ({_UNFINISHED_STATES})
    LIMIT 1
    """
)


def _progress_after(
    conn: Connection,
    campaign_id: int,
    now: dt.datetime,
    failed: bool,
    known: tuple[str, int, float] | None,
    busy: bool | None = None,
) -> None:
    """``campaigns.progress_after``, with its first look done here for a success: with the
    campaign not running, or a device of its open waves still unfinished (with the default
    ``advance_at`` of 1), nothing can change. The look-up names the unfinished states, an
    index condition: naming the finished ones (NOT IN) only filters, and PostgreSQL then
    reads every finished deployment of the campaign, on every report. ``busy``: that
    look-up's answer, if the caller has it."""
    running = known is not None and known[0] == CampaignState.RUNNING
    if not failed and running and known is not None and known[2] >= 1.0 and busy is None:
        # not looked up with the writes
        busy = _BUSY.first(conn, {"campaign_id": campaign_id, "wave": known[1]}) is not None
    if _settled(failed, known, busy):
        return
    camp.progress_after(conn, campaign_id, now, failed=failed, known=known)


def _settled(failed: bool, known: tuple[str, int, float] | None, busy: bool | None) -> bool:
    """Whether a report's outcome certainly leaves its campaign as it is: a success, with
    the campaign not running, or with a device of its open waves unfinished (and the
    default ``advance_at`` of 1)."""
    if failed or known is None:
        return False
    return known[0] != CampaignState.RUNNING or (known[2] >= 1.0 and busy is True)


def _ingest(state: ServerState, who: str | DeviceCaller, ctype: str, raw: bytes) -> ReportAccepted:
    return _ingest_store(state, *_ingest_check(state, who, ctype, raw), raw, True)


def _ingest_check(
    state: ServerState, who: str | DeviceCaller, ctype: str, raw: bytes
) -> tuple[DeviceCaller, ParsedReport, dt.datetime]:
    """Who sends it, and the report verified with that device's key."""
    now = state.now()
    with state.db.raw_read() as dbc:
        device = _caller(dbc, who)
    if ctype not in ("application/cose", "application/octet-stream", "application/cbor"):
        raise HTTPException(415, "send the COSE_Sign1 as application/cose")
    if not raw:
        raise HTTPException(422, "the report is empty")
    try:
        key = device_key(device.report_key_pem)
    except Exception as exc:  # pragma: no cover - checked at registration
        raise ReportRejected(422, f"the device's registered key cannot be used: {exc}") from None
    parsed = parse_signed_report(
        raw,
        key,
        nonce_secret=state.nonce_secret,
        device_pk=device.pk,
        ttl=state.settings.nonce_ttl,
        now=now.timestamp(),
    )
    return device, parsed, now


def _ingest_store(
    state: ServerState,
    device: DeviceCaller,
    parsed: ParsedReport,
    now: dt.datetime,
    raw: bytes,
    wait: bool,
) -> ReportAccepted:
    """Store a verified report and apply it (``wait``: see ``Database.write_connection``)."""
    if not state.db.sqlite:
        with state.db.raw_read() as dbc:
            got = ingest_pg(dbc, device.pk, parsed, raw, now)
        changes = not got.duplicate and got.campaign_id is not None
        if changes and not _settled(not got.success, got.campaign, got.busy):
            assert got.campaign_id is not None
            with state.db.write_connection() as conn:
                _progress_after(
                    conn, got.campaign_id, now, not got.success, got.campaign, got.busy
                )
        return _accepted(device, got)
    try:
        with state.db.write_connection(wait) as conn:
            got = ingest(conn, device.pk, parsed, raw, now)
            if not got.duplicate and got.campaign_id is not None:
                _progress_after(
                    conn, got.campaign_id, now, not got.success, got.campaign, got.busy
                )
    except state.db.integrity_errors:
        # The same report arrived twice at once (PostgreSQL lets both transactions start):
        # the other one stored it; this one is the duplicate.
        with state.db.write_connection(wait) as conn:
            got = ingest(conn, device.pk, parsed, raw, now)
    return _accepted(device, got)


def _accepted(device: DeviceCaller, got: Ingested) -> ReportAccepted:
    if not got.duplicate:
        log.info(
            "report stored",
            extra=logs.fields(
                device=device.device_id,
                report=got.report_id,
                success=got.success,
                reason=got.reason,
                campaign=got.campaign_id,
            ),
        )
    return ReportAccepted(
        report_id=got.report_id,
        duplicate=got.duplicate,
        success=got.success,
        reason=got.reason,
        campaign_id=got.campaign_id,
        deployment_state=got.deployment_state,
    )


# --- transport-neutral handlers ----------------------------------------------------------------
# For front ends that authenticate the device themselves and then apply the HTTP API's rules
# (``suitkit.transport.coap_server``). ``request`` needs ``app.state.suitkit``, ``base_url``,
# ``method``, ``headers`` (a mapping) and, for reports, ``await body()``.


def checkin(body: CheckIn, request: Request, device: DeviceCaller) -> Response | Offer:
    """The check-in of an authenticated device: 204 or the offer (blocking: run it in a
    worker thread)."""
    state = get_state(request)
    offer = _checkin(state, device, body, _base(state, request))
    return Response(status_code=204) if offer is None else offer


def download(sha256: str, request: Request, device: DeviceCaller) -> Response:
    """Authorise a download for an authenticated device and do its bookkeeping (offered ->
    downloading, metrics); 404 if the file is not for it. The response it returns opens the
    file only when it is sent (blocking: run it in a worker thread)."""
    state = get_state(request)
    try:
        check_sha256(sha256)
    except ValueError:
        raise HTTPException(404, "no such file") from None
    h = request.headers
    kind, size, p, _, _ = _download(
        state,
        device,
        sha256,
        h.get("range"),
        h.get("if-range"),
        h.get("if-none-match"),
        request.method == "HEAD",
        open_file=False,
    )
    etag = f'"{sha256}"'
    headers = {**DOWNLOAD_HEADERS, "etag": etag}
    if p.status == 304:
        return Response(status_code=304, headers=headers)
    if p.status == 416:
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
    if request.method == "GET":
        state.metrics.download_bytes.inc(kind, amount=p.end - p.start)
    return BlobStream(
        state.blobs.path(sha256),
        b"",
        p,
        size,
        headers,
        MEDIA_TYPES.get(kind, "application/octet-stream"),
        request.method == "HEAD",
    )


async def upload_report(
    request: Request, device: DeviceCaller, response: Response
) -> ReportAccepted:
    """A signed report from an authenticated device (``response.status_code`` becomes 200
    for a duplicate)."""
    return await _report(request, device, response)
