"""Campaigns: a release rolled out to a set of devices in waves.

- **Waves** are cumulative percentages of the target, e.g. ``[1, 10, 100]``: the first wave
  is 1 % of the devices, the second brings it to 10 %, the last to all. Devices are ordered by
  a hash of the campaign and device ids (random-looking, reproducible) and each is given the
  first wave whose cut covers its rank.
- A wave **opens** when the previous one has at least ``advance_at`` (default all) of its
  devices finished (installed or failed); only devices of open waves are offered the update.
- The campaign **pauses** by itself when, in any open wave, more than ``failure_threshold`` of
  the finished devices failed, once ``min_reports`` of them (or the whole wave, if smaller)
  have finished. ``resume`` may set a new threshold.
- It **completes** when the last wave is open and every device has finished.
- Offers are made only inside the time window ``[starts_at, ends_at)`` when one is set.

:func:`evaluate` is the decision, a pure function of the counts; :func:`progress` applies it
with a compare-and-set update, so that concurrent workers (and the periodic ticker that
catches what concurrent transactions could not see) never apply a step twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from suitkit.server.models import Campaign, CampaignState, Deployment, DeploymentState

Executor = Connection | Session  # both run Core statements

#: ``hook(campaign_id, first_wave, last_wave)``: see :func:`watch_offers`.
OfferHook = Callable[[int, int, int], None]
_offer_hooks: weakref.WeakKeyDictionary[Engine, OfferHook] = weakref.WeakKeyDictionary()
_log = logging.getLogger("suitkit.server")


def _root_engine(engine: Engine) -> Engine:
    # ``engine.execution_options(...)`` makes a proxy (an OptionEngine) over the same pool
    while isinstance(proxied := getattr(engine, "_proxied", None), Engine):
        engine = proxied
    return engine


def watch_offers(engine: Engine, hook: OfferHook | None) -> None:
    """Call ``hook(campaign_id, first_wave, last_wave)`` whenever a transaction on ``engine``
    (or an engine derived from it with ``execution_options``) makes a campaign offer its
    update to the devices of waves ``first_wave..last_wave``: created running, resumed, or
    a wave opened (by an operator, a report, or the ticker). ``None`` removes the hook.

    The hook runs *inside* that transaction, which may still roll back: it must only take
    note and act once the change is committed (:mod:`suitkit.server.wakeups` reads the
    campaign back until the change is visible)."""
    root = _root_engine(engine)
    if hook is None:
        _offer_hooks.pop(root, None)
    else:
        _offer_hooks[root] = hook


def _offered(conn: Executor, campaign_id: int, first_wave: int, last_wave: int) -> None:
    if not _offer_hooks:
        return
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    engine = bind.engine if isinstance(bind, Connection) else bind
    hook = _offer_hooks.get(_root_engine(engine)) if isinstance(engine, Engine) else None
    if hook is None:
        return
    try:
        hook(campaign_id, first_wave, last_wave)
    except Exception:  # a notification must never fail the transaction
        _log.exception("campaign offer hook failed")


def note_window_opened(
    conn: Executor, campaign_id: int, since: dt.datetime, now: dt.datetime
) -> bool:
    """A running campaign whose time window opened in ``(since, now]`` starts offering its
    open waves without any change in the database: tell the offer hook (the ticker calls
    this; each server process ticks, so with several workers the devices may be woken once
    per worker, which costs them one check-in each)."""
    row = conn.execute(
        select(Campaign.state, Campaign.current_wave, Campaign.starts_at, Campaign.ends_at)
        .where(Campaign.id == campaign_id)
    ).first()
    if row is None or row[0] != CampaignState.RUNNING or row[2] is None:
        return False
    starts_at = row[2] if row[2].tzinfo is not None else row[2].replace(tzinfo=now.tzinfo)
    if not (since < starts_at <= now) or not in_window(now, starts_at, row[3]):
        return False
    _offered(conn, campaign_id, 0, row[1])
    return True


class CampaignError(ValueError):
    """A campaign request that cannot be carried out (answered with 422 or 409)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def check_waves(waves: Sequence[float]) -> list[float]:
    if not waves:
        raise CampaignError("waves: give at least one percentage, e.g. [1, 10, 100]")
    out = [float(w) for w in waves]
    if any(not 0 < w <= 100 for w in out):
        raise CampaignError("waves: each percentage must be in (0, 100]")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise CampaignError("waves: percentages are cumulative and must increase")
    if out[-1] != 100:
        raise CampaignError("waves: the last wave must reach 100 (every targeted device)")
    return out


def wave_cuts(n: int, waves: Sequence[float]) -> list[int]:
    """How many devices are in waves ``0..i`` (cumulative), for ``n`` devices."""
    return [min(n, math.ceil(n * w / 100)) for w in waves]


def rank_key(campaign_key: str, device_id: str) -> bytes:
    return hashlib.sha256(f"{campaign_key}/{device_id}".encode()).digest()


def assign_waves(
    device_ids: Sequence[str], waves: Sequence[float], campaign_key: str
) -> dict[str, int]:
    ordered = sorted(device_ids, key=lambda d: rank_key(campaign_key, d))
    cuts = wave_cuts(len(ordered), waves)
    out: dict[str, int] = {}
    wave = 0
    for rank, dev in enumerate(ordered):
        while rank >= cuts[wave]:
            wave += 1
        out[dev] = wave
    return out


@dataclass(slots=True)
class WaveStats:
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, state: DeploymentState) -> int:
        return self.counts.get(state.value, 0)

    @property
    def finished(self) -> int:
        return self[DeploymentState.INSTALLED] + self[DeploymentState.FAILED]

    @property
    def failure_rate(self) -> float:
        return self[DeploymentState.FAILED] / self.finished if self.finished else 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    state: CampaignState
    current_wave: int
    pause_reason: str | None = None


def evaluate(
    state: CampaignState,
    current_wave: int,
    n_waves: int,
    stats: Mapping[int, WaveStats],
    *,
    failure_threshold: float,
    min_reports: int,
    advance_at: float,
) -> Decision:
    """What the campaign should do next, given the counts per wave (pure)."""
    if state != CampaignState.RUNNING:
        return Decision(state, current_wave)
    wave = current_wave
    while True:
        for w in range(wave + 1):
            s = stats.get(w, WaveStats())
            if s.total == 0:
                continue
            failed = s[DeploymentState.FAILED]
            if (
                s.finished >= min(min_reports, s.total)
                and s.finished > 0
                and s.failure_rate > failure_threshold
            ):
                return Decision(
                    CampaignState.PAUSED,
                    wave,
                    f"wave {w + 1}: {failed} of {s.finished} finished devices failed "
                    f"({s.failure_rate:.0%}), more than the {failure_threshold:.0%} threshold",
                )
        s = stats.get(wave, WaveStats())
        if s.finished < math.ceil(advance_at * s.total):
            return Decision(state, wave)
        if wave + 1 < n_waves:
            wave += 1  # the next wave opens; check again (it may be empty)
            continue
        if all(x.finished == x.total for x in stats.values()):
            return Decision(CampaignState.COMPLETED, wave)
        return Decision(state, wave)


def in_window(now: dt.datetime, starts_at: dt.datetime | None, ends_at: dt.datetime | None) -> bool:
    return (starts_at is None or now >= starts_at) and (ends_at is None or now < ends_at)


# --- database side ---------------------------------------------------------------------------


def wave_stats(conn: Executor, campaign_id: int) -> dict[int, WaveStats]:
    rows = conn.execute(
        select(Deployment.wave, Deployment.state, func.count())
        .where(Deployment.campaign_id == campaign_id)
        .group_by(Deployment.wave, Deployment.state)
    ).all()
    out: dict[int, WaveStats] = {}
    for wave, state, n in rows:
        s = out.setdefault(wave, WaveStats())
        s.total += n
        s.counts[state] = s.counts.get(state, 0) + n
    return out


def failure_reasons(session: Session, campaign_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Deployment.reason, func.count())
        .where(Deployment.campaign_id == campaign_id, Deployment.state == DeploymentState.FAILED)
        .group_by(Deployment.reason)
    ).all()
    return {reason or "unknown": n for reason, n in rows}


def waves_of(c: Campaign) -> list[float]:
    return [float(w) for w in json.loads(c.waves)]


_CAMPAIGN = select(
    Campaign.state,
    Campaign.current_wave,
    Campaign.waves,
    Campaign.failure_threshold,
    Campaign.min_reports,
    Campaign.advance_at,
).where(Campaign.id == bindparam("id"))
_MOVE = (
    update(Campaign)
    .where(
        Campaign.id == bindparam("campaign"),
        Campaign.state == CampaignState.RUNNING.value,
        Campaign.current_wave == bindparam("from_wave"),
    )
    .values(
        state=bindparam("to_state"),
        current_wave=bindparam("to_wave"),
        pause_reason=bindparam("reason"),
        updated_at=bindparam("now"),
    )
)


def progress(conn: Executor, campaign_id: int, now: dt.datetime) -> Decision | None:
    """Re-evaluate one campaign and apply the decision; returns it if something changed."""
    row = conn.execute(_CAMPAIGN, {"id": campaign_id}).first()
    if row is None or row[0] != CampaignState.RUNNING:
        return None
    state, current, waves, threshold, min_reports, advance_at = row
    decision = evaluate(
        CampaignState(state),
        current,
        len(json.loads(waves)),
        wave_stats(conn, campaign_id),
        failure_threshold=threshold,
        min_reports=min_reports,
        advance_at=advance_at,
    )
    if decision.state == state and decision.current_wave == current:
        return None
    result = conn.execute(
        _MOVE,
        {
            "campaign": campaign_id,
            "from_wave": current,
            "to_state": decision.state.value,
            "to_wave": decision.current_wave,
            "reason": decision.pause_reason,
            "now": now,
        },
    )
    if getattr(result, "rowcount", 0) != 1:
        return None  # another worker moved it first
    if decision.state == CampaignState.RUNNING and decision.current_wave > current:
        _offered(conn, campaign_id, current + 1, decision.current_wave)
    return decision


_UNFINISHED = (
    select(Deployment.id)
    .where(
        Deployment.campaign_id == bindparam("campaign_id"),
        Deployment.wave <= bindparam("wave"),
        # named states, not "not in (installed, failed)": lets the (campaign, state) index
        # skip the finished deployments, which are most of them late in a campaign
        Deployment.state.in_([d.value for d in DeploymentState if not d.terminal]),
    )
    .limit(1)
)


_STEADY = select(Campaign.state, Campaign.current_wave, Campaign.advance_at).where(
    Campaign.id == bindparam("id")
)


def progress_after(
    conn: Executor,
    campaign_id: int,
    now: dt.datetime,
    *,
    failed: bool,
    known: tuple[str, int, float] | None = None,
) -> Decision | None:
    """:func:`progress` after a device finished. A success can only open the next wave or
    complete the campaign, which needs every device of the open waves finished (with the
    default ``advance_at`` of 1): one indexed look-up for an unfinished device usually shows
    that nothing can change, and spares counting the whole campaign on every report.
    ``known``: the campaign's state, current wave and advance_at, if the caller read them."""
    if not failed:
        row = known if known is not None else conn.execute(_STEADY, {"id": campaign_id}).first()
        if row is None or row[0] != CampaignState.RUNNING:
            return None
        if row[2] >= 1.0:
            busy = conn.execute(_UNFINISHED, {"campaign_id": campaign_id, "wave": row[1]}).first()
            if busy is not None:
                return None
    return progress(conn, campaign_id, now)


def running_campaign_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Campaign.id).where(Campaign.state == CampaignState.RUNNING)))


def create(
    session: Session,
    *,
    name: str,
    release_id: int,
    target: Mapping[str, Any],
    waves: Sequence[float],
    failure_threshold: float,
    min_reports: int,
    advance_at: float,
    starts_at: dt.datetime | None,
    ends_at: dt.datetime | None,
    start: bool,
    created_by: int | None,
    now: dt.datetime,
) -> Campaign:
    """Create a campaign and its deployments (one per targeted device, with its wave).

    ``target``: ``devices`` (explicit device ids: each must exist and be accepted by the
    release), or the filters ``class_id``, ``group``, ``tag`` (all given must hold), or
    ``all``. Only devices whose vendor and class identifiers the manifest accepts are
    targeted, and not those known to run the release's sequence number or a newer one.
    """
    from suitkit.server.models import Device, DeviceGroup, DeviceTag, Release, ReleaseComponent

    wave_list = check_waves(waves)
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise CampaignError("ends_at must be after starts_at")
    release = session.get(Release, release_id)
    if release is None:
        raise CampaignError(f"no release {release_id}", 404)
    comps = session.execute(
        select(ReleaseComponent.vendor_id, ReleaseComponent.class_id).where(
            ReleaseComponent.release_id == release_id
        )
    ).all()
    vendors = {v for v, _ in comps if v}
    classes = {c for _, c in comps if c}
    q = select(
        Device.id, Device.device_id, Device.vendor_id, Device.class_id, Device.sequence_number
    )
    explicit = target.get("devices")
    described: dict[str, Any] = {}
    if explicit:
        ids = sorted({str(d) for d in explicit})
        described["devices"] = len(ids)
        found = session.execute(q.where(Device.device_id.in_(ids))).all()
        missing = sorted(set(ids) - {r[1] for r in found})
        if missing:
            raise CampaignError(f"unknown device(s): {', '.join(missing[:10])}", 404)
        refused = [r[1] for r in found if not _accepts(vendors, classes, r[2], r[3])]
        if refused:
            raise CampaignError(
                "the release's manifest does not accept (vendor/class identifier) device(s): "
                + ", ".join(refused[:10])
            )
        rows = found
    else:
        filters = {k: target.get(k) for k in ("class_id", "group", "tag") if target.get(k)}
        if not filters and not target.get("all"):
            raise CampaignError("target: give devices, class_id, group, tag, or all: true")
        if target.get("class_id"):
            q = q.where(Device.class_id == str(target["class_id"]))
        if target.get("group"):
            gid = session.scalar(select(DeviceGroup.id).where(DeviceGroup.name == target["group"]))
            if gid is None:
                raise CampaignError(f"no group named {target['group']!r}", 404)
            q = q.where(Device.group_id == gid)
        if target.get("tag"):
            q = q.where(
                Device.id.in_(select(DeviceTag.device_pk).where(DeviceTag.tag == target["tag"]))
            )
        described = {k: str(v) for k, v in filters.items()} or {"all": True}
        rows = [r for r in session.execute(q).all() if _accepts(vendors, classes, r[2], r[3])]
    eligible = [r for r in rows if r[4] is None or r[4] < release.sequence_number]
    described["up_to_date_excluded"] = len(rows) - len(eligible)
    if not eligible:
        raise CampaignError("the target selects no device that could take this release")
    c = Campaign(
        name=name,
        release_id=release_id,
        state=CampaignState.RUNNING if start else CampaignState.PAUSED,
        waves=json.dumps(wave_list),
        current_wave=0,
        failure_threshold=failure_threshold,
        min_reports=min_reports,
        advance_at=advance_at,
        starts_at=starts_at,
        ends_at=ends_at,
        pause_reason=None if start else "created paused",
        target=json.dumps(described),
        created_at=now,
        updated_at=now,
        created_by=created_by,
    )
    session.add(c)
    session.flush()
    by_id = {r[1]: r[0] for r in eligible}
    assigned = assign_waves(list(by_id), wave_list, f"campaign-{c.id}")
    session.execute(
        insert(Deployment),
        [
            {
                "campaign_id": c.id,
                "device_pk": by_id[dev],
                "wave": wave,
                "state": DeploymentState.PENDING.value,
            }
            for dev, wave in assigned.items()
        ],
    )
    if start:
        _offered(session, c.id, 0, 0)
    return c


def _accepts(vendors: set[str], classes: set[str], vendor: str, class_id: str) -> bool:
    return (not vendors or vendor in vendors) and (not classes or class_id in classes)


def set_state(
    session: Session,
    campaign_id: int,
    action: str,
    now: dt.datetime,
    failure_threshold: float | None = None,
) -> Campaign:
    """``pause``, ``resume``, ``abort`` or ``advance`` (open the next wave now)."""
    c = session.get(Campaign, campaign_id)
    if c is None:
        raise CampaignError(f"no campaign {campaign_id}", 404)
    state = CampaignState(c.state)
    if state in (CampaignState.ABORTED, CampaignState.COMPLETED):
        raise CampaignError(f"the campaign is {state.value}", 409)
    if action == "pause":
        c.state, c.pause_reason = CampaignState.PAUSED, "paused by an operator"
    elif action == "resume":
        c.state, c.pause_reason = CampaignState.RUNNING, None
        if failure_threshold is not None:
            c.failure_threshold = failure_threshold
        if state == CampaignState.PAUSED:
            _offered(session, c.id, 0, c.current_wave)
    elif action == "abort":
        c.state, c.pause_reason = CampaignState.ABORTED, "aborted by an operator"
    elif action == "advance":
        if c.current_wave + 1 >= len(waves_of(c)):
            raise CampaignError("every wave is open already", 409)
        c.current_wave += 1
        if state == CampaignState.RUNNING:
            _offered(session, c.id, c.current_wave, c.current_wave)
    else:  # pragma: no cover - the router only passes the four
        raise ValueError(action)
    c.updated_at = now
    session.flush()
    return c
