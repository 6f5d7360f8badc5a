"""Devices: registration (one by one or in bulk from CSV/JSON), groups and tags, and check-in.

A device is registered with its identity (vendor, class and device UUIDs, manifest §8.4.8.1),
the public key it signs its SUIT_Reports with (PEM), and receives a token for the device API,
returned once. The server never holds a device's private key: a PEM private key is refused.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    Connection,
    Integer,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.orm import Session

from suitkit.cose.keys import CoseKey
from suitkit.errors import SuitError
from suitkit.server.db import Sql
from suitkit.server.models import (
    Campaign,
    CampaignState,
    Deployment,
    DeploymentState,
    Device,
    DeviceComponent,
    DeviceEvent,
    DeviceGroup,
    DeviceTag,
    Release,
)
from suitkit.server.schemas import CheckIn, DeviceCreate
from suitkit.server.security import DEVICE_TOKEN_PREFIX, new_token, token_hash, token_prefix


class DeviceError(ValueError):
    def __init__(self, message: str, status: int = 422, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def check_public_key(pem: str) -> str:
    """The PEM if it is a public signature key; ``DeviceError`` otherwise."""
    if "PRIVATE KEY" in pem:
        raise DeviceError("give the device's public key: the server must not hold private keys")
    try:
        key = CoseKey.from_pem(pem)
    except SuitError as exc:
        raise DeviceError(f"public_key: {exc.message}") from None
    if key.is_symmetric:  # pragma: no cover - PEM cannot carry one
        raise DeviceError("public_key: a signature key is needed")
    return pem.strip() + "\n"


def group_id(
    session: Session, name: str | None, now: dt.datetime, *, create: bool = True
) -> int | None:
    if not name:
        return None
    gid = session.scalar(select(DeviceGroup.id).where(DeviceGroup.name == name))
    if gid is None:
        if not create:
            raise DeviceError(f"no group named {name!r}", 404)
        g = DeviceGroup(name=name, created_at=now)
        session.add(g)
        session.flush()
        gid = g.id
    return gid


@dataclass(frozen=True, slots=True)
class Registered:
    device: Device
    token: str


def register(session: Session, items: Sequence[DeviceCreate], now: dt.datetime) -> list[Registered]:
    """Register devices, all or none; ``DeviceError`` (409 or 422) lists every problem."""
    problems: list[dict[str, Any]] = []
    ids = [str(d.device_id) for d in items]
    seen: set[str] = set()
    for i, dev_id in enumerate(ids):
        if dev_id in seen:
            problems.append({"row": i, "device_id": dev_id, "error": "listed twice"})
        seen.add(dev_id)
    existing: set[str] = set()
    for chunk in _chunks(ids, 500):
        existing.update(
            session.scalars(select(Device.device_id).where(Device.device_id.in_(chunk)))
        )
    keys: list[str] = []
    for i, d in enumerate(items):
        if str(d.device_id) in existing:
            problems.append(
                {"row": i, "device_id": str(d.device_id), "error": "already registered"}
            )
        try:
            keys.append(check_public_key(d.public_key))
        except DeviceError as exc:
            problems.append({"row": i, "device_id": str(d.device_id), "error": str(exc)})
            keys.append("")
    if problems:
        status = 409 if all(p["error"] == "already registered" for p in problems) else 422
        raise DeviceError(f"{len(problems)} device(s) cannot be registered", status, problems)
    groups: dict[str, int | None] = {}
    out: list[Registered] = []
    for d, pem in zip(items, keys, strict=True):
        if d.group and d.group not in groups:
            groups[d.group] = group_id(session, d.group, now)
        token = new_token(DEVICE_TOKEN_PREFIX)
        row = Device(
            device_id=str(d.device_id),
            vendor_id=str(d.vendor_id),
            class_id=str(d.class_id),
            name=d.name,
            group_id=groups.get(d.group) if d.group else None,
            report_key_pem=pem,
            token_hash=token_hash(token),
            token_prefix=token_prefix(token),
            created_at=now,
        )
        out.append(Registered(row, token))
    session.add_all([r.device for r in out])
    session.flush()
    tags = [
        DeviceTag(device_pk=r.device.id, tag=t)
        for r, d in zip(out, items, strict=True)
        for t in sorted(set(d.tags))
    ]
    session.add_all(tags)
    session.add_all(
        DeviceEvent(device_pk=r.device.id, at=now, kind="registered", detail=None) for r in out
    )
    return out


def _chunks(items: Sequence[str], n: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def parse_import(body: bytes, content_type: str) -> list[DeviceCreate]:
    """Devices from CSV (header: device_id, vendor_id, class_id, public_key, name, group, tags
    separated by ';') or JSON (a list, or ``{"devices": [...]}``)."""
    rows: list[dict[str, Any]]
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DeviceError("the import is not UTF-8 text", 400) from None
    if "json" in content_type:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DeviceError(f"the import is not valid JSON: {exc}", 400) from None
        if isinstance(data, dict):
            data = data.get("devices")
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DeviceError('JSON import: a list of devices, or {"devices": [...]}', 400)
        rows = data
    elif "csv" in content_type or content_type.startswith("text/plain"):
        reader = csv.DictReader(io.StringIO(text))
        needed = {"device_id", "vendor_id", "class_id", "public_key"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise DeviceError(f"CSV import: the header must name {', '.join(sorted(needed))}", 400)
        rows = []
        for r in reader:
            item: dict[str, Any] = {k: v for k, v in r.items() if k and v not in (None, "")}
            if "tags" in item:
                item["tags"] = [t for t in str(item["tags"]).replace(",", ";").split(";") if t]
            rows.append(item)
    else:
        raise DeviceError("send text/csv or application/json", 415)
    out: list[DeviceCreate] = []
    problems = []
    for i, r in enumerate(rows):
        try:
            out.append(DeviceCreate.model_validate(r))
        except ValidationError as exc:
            problems.append(
                {
                    "row": i,
                    "errors": [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()],
                }
            )
    if problems:
        raise DeviceError(f"{len(problems)} row(s) are invalid", 422, problems)
    if not out:
        raise DeviceError("the import lists no device", 422)
    return out


def set_tags(session: Session, device_pk: int, tags: Iterable[str]) -> None:
    session.execute(delete(DeviceTag).where(DeviceTag.device_pk == device_pk))
    session.add_all(DeviceTag(device_pk=device_pk, tag=t) for t in sorted(set(tags)))


def tags_of(session: Session, device_pks: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {pk: [] for pk in device_pks}
    for pk, tag in session.execute(
        select(DeviceTag.device_pk, DeviceTag.tag)
        .where(DeviceTag.device_pk.in_(device_pks))
        .order_by(DeviceTag.tag)
    ):
        out[pk].append(tag)
    return out


def group_names(session: Session) -> dict[int, str]:
    return {gid: name for gid, name in session.execute(select(DeviceGroup.id, DeviceGroup.name))}


def group_sizes(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(Device.group_id, func.count())
        .where(Device.group_id.is_not(None))
        .group_by(Device.group_id)
    ).all()
    return {g: n for g, n in rows if g is not None}


# --- check-in --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferRef:
    deployment_id: int
    campaign_id: int
    release_id: int
    sequence_number: int
    manifest_digest: str
    first_offer: bool


# The device API's hot paths run these statements, built once (building a statement costs
# more than running it).
# constants in the SQL text, not an expanding parameter (rendered again at each execution)
_CANDIDATE_STATES: list[Any] = [
    literal_column(f"'{s.value}'")
    for s in (DeploymentState.PENDING, DeploymentState.OFFERED, DeploymentState.DOWNLOADING)
]
_OFFERS = (
    select(
        Deployment.id,
        Deployment.state,
        Campaign.id,
        Campaign.starts_at,
        Campaign.ends_at,
        Release.id,
        Release.sequence_number,
        Release.manifest_digest,
    )
    .join(Campaign, Campaign.id == Deployment.campaign_id)
    .join(Release, Release.id == Campaign.release_id)
    .where(
        Deployment.device_pk == bindparam("device_pk"),
        Deployment.state.in_(_CANDIDATE_STATES),
        Campaign.state == CampaignState.RUNNING.value,
        Deployment.wave <= Campaign.current_wave,
    )
    .order_by(Release.sequence_number.desc(), Campaign.id.desc())
)
_TOUCH = update(Device).where(Device.id == bindparam("pk")).values(last_seen_at=bindparam("now"))


_TOUCH_SQL = Sql("UPDATE devices SET last_seen_at = :now WHERE id = :pk")


def touch(conn: Executor, device_pk: int, now: dt.datetime) -> None:
    """Record a check-in that changed nothing but the time."""
    if isinstance(conn, Connection):
        _TOUCH_SQL.rowcount(conn, {"pk": device_pk, "now": now})
    else:
        conn.execute(_TOUCH, {"pk": device_pk, "now": now})


class LastSeen:
    """Last-seen times of check-ins that changed nothing else, written in one batch every
    ``last_seen_flush`` seconds instead of one transaction per check-in: on SQLite, with one
    writer at a time, this keeps the most frequent request read-only. A crash loses at most
    the last interval's times (the next check-in sets them again)."""

    def __init__(self) -> None:
        self._pending: dict[int, dt.datetime] = {}
        self._lock = threading.Lock()

    def note(self, device_pk: int, now: dt.datetime) -> None:
        with self._lock:
            self._pending[device_pk] = now

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self, write: Callable[[], AbstractContextManager[Connection]]) -> int:
        with self._lock:
            batch, self._pending = self._pending, {}
        if batch:
            with write() as conn:
                conn.execute(_TOUCH, [{"pk": pk, "now": t} for pk, t in batch.items()])
        return len(batch)


# A check-in in one statement: the device by its token, and its deployments that could be
# offered (the outer joins keep the device when there are none).
_CHECKIN = (
    select(
        Device.id,
        Device.device_id,
        Device.vendor_id,
        Device.class_id,
        Device.report_key_pem,
        Device.sequence_number,
        Device.manifest_digest,
        Device.last_seen_at,
        Deployment.id,
        Deployment.state,
        Campaign.id,
        Campaign.starts_at,
        Campaign.ends_at,
        Release.id,
        Release.sequence_number,
        Release.manifest_digest,
        Deployment.wave,
        Campaign.current_wave,
    )
    .select_from(Device)
    .outerjoin(
        Deployment,
        and_(Deployment.device_pk == Device.id, Deployment.state.in_(_CANDIDATE_STATES)),
    )
    .outerjoin(
        Campaign,
        and_(Campaign.id == Deployment.campaign_id, Campaign.state == CampaignState.RUNNING.value),
    )
    .outerjoin(Release, Release.id == Campaign.release_id)
    .where(Device.token_hash == bindparam("token_hash"))
)


_CHECKIN_SQL = Sql(
    """
    SELECT d.id, d.device_id, d.vendor_id, d.class_id, d.report_key_pem, d.sequence_number,
           d.manifest_digest, d.last_seen_at,
           p.id, p.state, c.id, c.starts_at, c.ends_at, r.id, r.sequence_number,
           r.manifest_digest, p.wave, c.current_wave
    FROM devices d
    LEFT OUTER JOIN deployments p
      ON p.device_pk = d.id AND p.state IN ('pending', 'offered', 'downloading')
    LEFT OUTER JOIN campaigns c ON c.id = p.campaign_id AND c.state = 'running'
    LEFT OUTER JOIN releases r ON r.id = c.release_id
    WHERE d.token_hash = :token_hash
    """,
    times=(7, 11, 12),
)


def checkin_lookup(conn: Any, token: str) -> tuple[Any, list[Any]] | None:
    """The device of ``token`` (the columns of ``auth.DeviceCaller``) and the rows
    :func:`pick_offer` chooses from; None for an unknown token. ``conn``: a DBAPI
    connection (:meth:`Database.raw_read`), a ``Connection`` or a ``Session``."""
    params = {"token_hash": token_hash(token)}
    if isinstance(conn, Session):
        rows: Sequence[Any] = conn.execute(_CHECKIN, params).all()
    else:
        rows = _CHECKIN_SQL.all(conn, params)
    if not rows:
        return None
    candidates = [
        r[8:16]
        for r in rows
        if r[10] is not None and r[16] is not None and r[17] is not None and r[16] <= r[17]
    ]
    candidates.sort(key=lambda r: (r[6], r[2]), reverse=True)
    return rows[0][:8], candidates


def offer_candidates(conn: Connection | Session, device_pk: int) -> list[Any]:
    """The device's deployments that could be offered, highest sequence number first."""
    return list(conn.execute(_OFFERS, {"device_pk": device_pk}).all())


def pick_offer(
    rows: Sequence[Any], device_seq: int | None, device_digest: str | None, now: dt.datetime
) -> tuple[OfferRef | None, list[int]]:
    """From the candidate deployments (highest sequence number first): the one to offer,
    and those the device shows it runs already."""
    installed: list[int] = []
    offer: OfferRef | None = None
    for dep_id, state, camp_id, starts, ends, rel_id, seq, digest in rows:
        if device_digest is not None and device_digest == digest:
            installed.append(dep_id)
            continue
        if device_seq is not None and device_seq >= seq:
            continue  # it runs this sequence number or a newer one: never offer a rollback
        if offer is not None:
            continue
        if (starts is not None and now < starts) or (ends is not None and now >= ends):
            continue
        offer = OfferRef(dep_id, camp_id, rel_id, seq, digest, state == DeploymentState.PENDING)
    return offer, installed


Executor = Connection | Session  # both run Core statements

_INSERT_EVENT = insert(DeviceEvent)
_INSERT_EVENT_SQL = Sql(
    "INSERT INTO device_events (device_pk, at, kind, campaign_id, detail)"
    " VALUES (:device_pk, :at, :kind, :campaign_id, :detail)"
)
_DEVICE_STATE = select(Device.sequence_number).where(Device.id == bindparam("pk"))
_SET_VERSION = (
    update(Device)
    .where(Device.id == bindparam("pk"))
    .values(sequence_number=bindparam("seq"), last_seen_at=bindparam("now"))
)
_SET_DIGEST = (
    update(Device).where(Device.id == bindparam("pk")).values(manifest_digest=bindparam("digest"))
)
_COMPONENT = select(DeviceComponent.sequence_number, DeviceComponent.digest).where(
    DeviceComponent.device_pk == bindparam("pk"), DeviceComponent.component == bindparam("c")
)
_INSERT_COMPONENT = insert(DeviceComponent)
_UPDATE_COMPONENT = (
    update(DeviceComponent)
    .where(
        DeviceComponent.device_pk == bindparam("pk"),
        DeviceComponent.component == bindparam("c"),
    )
    .values(
        sequence_number=bindparam("seq"), digest=bindparam("digest"), updated_at=bindparam("now")
    )
)
_OFFER = (
    update(Deployment)
    .where(Deployment.id == bindparam("dep"), Deployment.state == DeploymentState.PENDING.value)
    .values(state=DeploymentState.OFFERED.value, offered_at=bindparam("now"))
)


def event(
    conn: Executor,
    device_pk: int,
    now: dt.datetime,
    kind: str,
    campaign_id: int | None,
    detail: str | None,
) -> None:
    """Add an entry to the device's history."""
    params = {
        "device_pk": device_pk,
        "at": now,
        "kind": kind,
        "campaign_id": campaign_id,
        "detail": detail,
    }
    if isinstance(conn, Connection):
        _INSERT_EVENT_SQL.rowcount(conn, params)
    else:
        conn.execute(_INSERT_EVENT, params)


_UNKNOWN: Any = object()
_SAME_VERSION = Sql(
    "UPDATE devices SET last_seen_at = :now WHERE id = :pk AND sequence_number = :seq"
)
_NEW_VERSION = Sql(
    "UPDATE devices SET sequence_number = :seq, last_seen_at = :now"
    " WHERE id = :pk AND (sequence_number IS NULL OR sequence_number <> :seq)"
)
_OFFER_SQL = Sql(
    "UPDATE deployments SET state = 'offered', offered_at = :now"
    " WHERE id = :dep AND state = 'pending'"
)


def record_checkin(
    conn: Executor,
    device_pk: int,
    body: CheckIn,
    now: dt.datetime,
    *,
    offer: OfferRef | None,
    installed: Sequence[int],
    known_sequence: int | None = _UNKNOWN,
) -> None:
    """Write what a check-in changed (in a write transaction): the device's version and
    components, the deployments it shows installed, a first offer. ``known_sequence``: the
    sequence number the device had when the caller read it, if it did (this saves a read;
    a change in between is still seen)."""
    if body.sequence_number is None:
        touch(conn, device_pk, now)
    elif known_sequence is _UNKNOWN or not isinstance(conn, Connection):
        _record_version(conn, device_pk, body, now)
    else:
        # One conditional update, expecting what the caller saw; if the row did not match
        # (the version changed in between), the other one does.
        expect_new = body.sequence_number != known_sequence
        params = {"pk": device_pk, "seq": body.sequence_number, "now": now}
        if (_NEW_VERSION if expect_new else _SAME_VERSION).rowcount(conn, params) != 1:
            expect_new = not expect_new
            (_NEW_VERSION if expect_new else _SAME_VERSION).rowcount(conn, params)
        if expect_new:
            _version_event(conn, device_pk, body, now, body.sequence_number)
    if body.manifest_digest is not None:
        conn.execute(_SET_DIGEST, {"pk": device_pk, "digest": body.manifest_digest})
    for comp in body.components:
        row = conn.execute(_COMPONENT, {"pk": device_pk, "c": comp.component}).first()
        if row is None:
            conn.execute(
                _INSERT_COMPONENT,
                {
                    "device_pk": device_pk,
                    "component": comp.component,
                    "sequence_number": comp.sequence_number,
                    "digest": comp.digest,
                    "updated_at": now,
                },
            )
        elif (row[0], row[1]) != (comp.sequence_number, comp.digest):
            conn.execute(
                _UPDATE_COMPONENT,
                {
                    "pk": device_pk,
                    "c": comp.component,
                    "seq": comp.sequence_number,
                    "digest": comp.digest,
                    "now": now,
                },
            )
    for dep_id in installed:
        finish(conn, dep_id, DeploymentState.INSTALLED, None, now, None, "check-in")
    if offer is not None and offer.first_offer:
        params = {"dep": offer.deployment_id, "now": now}
        if isinstance(conn, Connection):
            moved = _OFFER_SQL.rowcount(conn, params)
        else:
            moved = getattr(conn.execute(_OFFER, params), "rowcount", 0)
        if moved == 1:
            event(
                conn,
                device_pk,
                now,
                "offered",
                offer.campaign_id,
                f"release {offer.release_id}, sequence number {offer.sequence_number}",
            )


# PostgreSQL: the usual check-in's writes in one statement (data-modifying CTEs), atomic
# on its own, so in autocommit: one round trip instead of BEGIN, two or three statements
# and COMMIT. The same rules as record_checkin: the version and its history entry if it
# changed, else the last-seen time; the first offer and its entry. ``v`` and ``s`` are
# exclusive (one snapshot), so the device row is updated once.
_PG_CHECKIN = Sql(
    """
    WITH v AS (
      UPDATE devices SET sequence_number = CAST(:seq AS BIGINT), last_seen_at = :now,
                         manifest_digest = COALESCE(CAST(:digest AS VARCHAR), manifest_digest)
      WHERE id = :pk AND (sequence_number IS NULL OR sequence_number <> CAST(:seq AS BIGINT))
      RETURNING id),
    ve AS (
      INSERT INTO device_events (device_pk, at, kind, campaign_id, detail)
      SELECT id, :now, 'version', NULL, CAST(:version_detail AS TEXT) FROM v RETURNING id),
    s AS (
      UPDATE devices SET last_seen_at = :now,
                         manifest_digest = COALESCE(CAST(:digest AS VARCHAR), manifest_digest)
      WHERE id = :pk AND sequence_number = CAST(:seq AS BIGINT)
      RETURNING id),
    o AS (
      UPDATE deployments SET state = 'offered', offered_at = :now
      WHERE id = CAST(:dep AS INTEGER) AND state = 'pending'
      RETURNING id),
    oe AS (
      INSERT INTO device_events (device_pk, at, kind, campaign_id, detail)
      SELECT :pk, :now, 'offered', CAST(:campaign_id AS INTEGER), CAST(:offer_detail AS TEXT)
      FROM o RETURNING id)
    SELECT (SELECT count(*) FROM v) + (SELECT count(*) FROM s),
           (SELECT count(*) FROM ve), (SELECT count(*) FROM oe)
    """
)


def record_checkin_pg(
    conn: Any, device_pk: int, body: CheckIn, now: dt.datetime, offer: OfferRef | None
) -> None:
    """:func:`record_checkin` in one statement on PostgreSQL, for a check-in that gives its
    sequence number and no components, and shows no deployment installed (the usual one).
    ``conn``: a pooled connection in autocommit (``Database.raw_read``)."""
    assert body.sequence_number is not None and not body.components
    first = offer if offer is not None and offer.first_offer else None
    detail = f"runs sequence number {body.sequence_number}"
    if body.manifest_digest:
        detail += f" ({body.manifest_digest})"
    _PG_CHECKIN.first(
        conn,
        {
            "pk": device_pk,
            "seq": body.sequence_number,
            "digest": body.manifest_digest,
            "now": now,
            "version_detail": detail,
            "dep": first.deployment_id if first else None,
            "campaign_id": first.campaign_id if first else None,
            "offer_detail": (
                f"release {first.release_id}, sequence number {first.sequence_number}"
                if first
                else None
            ),
        },
    )


def _version_event(
    conn: Executor, device_pk: int, body: CheckIn, now: dt.datetime, seq: int | None
) -> None:
    detail = f"runs sequence number {seq}"
    if body.manifest_digest:
        detail += f" ({body.manifest_digest})"
    event(conn, device_pk, now, "version", None, detail)


def _record_version(conn: Executor, device_pk: int, body: CheckIn, now: dt.datetime) -> None:
    old_seq = conn.execute(_DEVICE_STATE, {"pk": device_pk}).scalar()
    seq = body.sequence_number if body.sequence_number is not None else old_seq
    if seq != old_seq:
        _version_event(conn, device_pk, body, now, seq)
    conn.execute(_SET_VERSION, {"pk": device_pk, "seq": seq, "now": now})


_DEPLOYMENT = select(
    Deployment.device_pk, Deployment.campaign_id, Deployment.state, Deployment.reason
).where(Deployment.id == bindparam("dep"))
_FINISH = (
    update(Deployment)
    .where(Deployment.id == bindparam("dep"))
    .values(
        state=bindparam("state"),
        reason=bindparam("reason"),
        finished_at=bindparam("now"),
        report_id=func.coalesce(bindparam("report_id", type_=Integer), Deployment.report_id),
    )
)


_DEPLOYMENT_SQL = Sql(
    "SELECT device_pk, campaign_id, state, reason FROM deployments WHERE id = :dep"
)
_FINISH_SQL = Sql(
    "UPDATE deployments SET state = :state, reason = :reason, finished_at = :now,"
    " report_id = COALESCE(:report_id, report_id) WHERE id = :dep"
)


def finish(
    conn: Executor,
    deployment_id: int,
    state: DeploymentState,
    reason: str | None,
    now: dt.datetime,
    report_id: int | None,
    source: str,
    known: tuple[int, int, str, str | None] | None = None,
) -> bool:
    """Record a result for a deployment; returns whether its state changed. ``known``: its
    device, campaign, state and reason, if the caller read them."""
    core = isinstance(conn, Connection)
    row = known
    if row is None:
        row = (
            _DEPLOYMENT_SQL.first(conn, {"dep": deployment_id})
            if core
            else conn.execute(_DEPLOYMENT, {"dep": deployment_id}).first()
        )
    if row is None:
        return False
    device_pk, campaign_id, old_state, old_reason = row
    params = {
        "dep": deployment_id,
        "state": state.value,
        "reason": reason,
        "now": now,
        "report_id": report_id,
    }
    if core:
        _FINISH_SQL.rowcount(conn, params)
    else:
        conn.execute(_FINISH, params)
    changed = old_state != state or old_reason != reason
    if changed:
        event(conn, device_pk, now, state.value, campaign_id, finish_detail(state, reason, source))
    return changed


def finish_detail(state: DeploymentState, reason: str | None, source: str) -> str:
    """The history entry of a deployment that finished (its kind: the state)."""
    return f"{state.value} ({source})" + (f": {reason}" if reason else "")


def device_uuid(text: str) -> str:
    """The canonical form of a device id given in a URL (``DeviceError`` 404 if not a UUID)."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise DeviceError(f"no device {text!r}", 404) from None
