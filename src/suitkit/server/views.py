"""Read models: database rows turned into the API's (and the dashboard's) objects."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suitkit.server import campaigns as camp
from suitkit.server.devices import group_names, tags_of
from suitkit.server.models import (
    Campaign,
    Deployment,
    DeploymentState,
    Device,
    DeviceComponent,
    DeviceEvent,
    Release,
    ReleaseComponent,
    ReleaseFile,
    Report,
)
from suitkit.server.schemas import (
    CampaignDevice,
    CampaignInfo,
    CampaignStatus,
    ComponentState,
    DeploymentInfo,
    DeviceEventInfo,
    DeviceInfo,
    DeviceStatus,
    ReleaseComponentInfo,
    ReleaseDetail,
    ReleaseFileInfo,
    ReleaseInfo,
    ReportDetail,
    ReportSummary,
    WaveInfo,
)

STATES = [s.value for s in DeploymentState]


def release_info(session: Session, r: Release) -> ReleaseInfo:
    comps = session.scalars(
        select(ReleaseComponent)
        .where(ReleaseComponent.release_id == r.id)
        .order_by(ReleaseComponent.index)
    ).all()
    files = session.scalars(
        select(ReleaseFile).where(ReleaseFile.release_id == r.id).order_by(ReleaseFile.id)
    ).all()
    return ReleaseInfo(
        id=r.id,
        name=r.name,
        notes=r.notes,
        manifest_digest=r.manifest_digest,
        sequence_number=r.sequence_number,
        reference_uri=r.reference_uri,
        envelope_sha256=r.envelope_sha256,
        envelope_size=r.envelope_size,
        created_at=r.created_at,
        components=[
            ReleaseComponentInfo(
                index=c.index, component=c.component, vendor_id=c.vendor_id, class_id=c.class_id
            )
            for c in comps
        ],
        files=[
            ReleaseFileInfo(
                kind=f.kind,
                name=f.name,
                uri=f.uri,
                component_index=f.component_index,
                sha256=f.sha256,
                size=f.size,
            )
            for f in files
        ],
    )


def release_detail(session: Session, r: Release) -> ReleaseDetail:
    info = release_info(session, r)
    facts = json.loads(r.facts)
    return ReleaseDetail(
        **info.model_dump(),
        signers=json.loads(r.signers),
        show=json.loads(r.show_json),
        images=facts.get("images", []),
        missing_payloads=facts.get("missing-payloads", []),
    )


def device_infos(session: Session, devices: Sequence[Device]) -> list[DeviceInfo]:
    groups = group_names(session)
    tags = tags_of(session, [d.id for d in devices]) if devices else {}
    return [
        DeviceInfo(
            device_id=d.device_id,
            vendor_id=d.vendor_id,
            class_id=d.class_id,
            name=d.name,
            group=groups.get(d.group_id) if d.group_id is not None else None,
            tags=tags.get(d.id, []),
            created_at=d.created_at,
            last_seen_at=d.last_seen_at,
            sequence_number=d.sequence_number,
            manifest_digest=d.manifest_digest,
            token_prefix=d.token_prefix,
        )
        for d in devices
    ]


def report_summary(r: Report, campaign_id: int | None = None) -> ReportSummary:
    return ReportSummary(
        id=r.id,
        received_at=r.received_at,
        manifest_digest=r.manifest_digest,
        reference_uri=r.reference_uri,
        success=r.success,
        reason=r.reason,
        campaign_id=campaign_id,
    )


def report_detail(session: Session, r: Report) -> ReportDetail:
    dev_id = session.scalar(select(Device.device_id).where(Device.id == r.device_pk))
    camp_id = (
        session.scalar(select(Deployment.campaign_id).where(Deployment.id == r.deployment_id))
        if r.deployment_id is not None
        else None
    )
    return ReportDetail(
        **report_summary(r, camp_id).model_dump(),
        device_id=dev_id or "",
        lines=json.loads(r.summary),
        signed_report_b64=base64.b64encode(r.raw).decode(),
    )


def device_reports(session: Session, device_pk: int, limit: int = 50) -> list[ReportSummary]:
    rows = session.execute(
        select(Report, Deployment.campaign_id)
        .outerjoin(Deployment, Deployment.id == Report.deployment_id)
        .where(Report.device_pk == device_pk)
        .order_by(Report.received_at.desc(), Report.id.desc())
        .limit(limit)
    ).all()
    return [report_summary(r, c) for r, c in rows]


def device_status(session: Session, d: Device, history: int = 100) -> DeviceStatus:
    info = device_infos(session, [d])[0]
    comps = session.scalars(
        select(DeviceComponent)
        .where(DeviceComponent.device_pk == d.id)
        .order_by(DeviceComponent.component)
    ).all()
    reports = device_reports(session, d.id, 1)
    deps = session.execute(
        select(Deployment, Campaign.name, Campaign.release_id)
        .join(Campaign, Campaign.id == Deployment.campaign_id)
        .where(Deployment.device_pk == d.id)
        .order_by(Deployment.campaign_id.desc())
    ).all()
    events = session.scalars(
        select(DeviceEvent)
        .where(DeviceEvent.device_pk == d.id)
        .order_by(DeviceEvent.at.desc(), DeviceEvent.id.desc())
        .limit(history)
    ).all()
    return DeviceStatus(
        **info.model_dump(),
        components=[
            ComponentState(
                component=c.component,
                sequence_number=c.sequence_number,
                digest=c.digest,
                updated_at=c.updated_at,
            )
            for c in comps
        ],
        last_report=reports[0] if reports else None,
        deployments=[
            DeploymentInfo(
                campaign_id=dep.campaign_id,
                campaign=name,
                release_id=rel,
                state=dep.state,
                reason=dep.reason,
                wave=dep.wave,
            )
            for dep, name, rel in deps
        ],
        history=[
            DeviceEventInfo(at=e.at, kind=e.kind, campaign_id=e.campaign_id, detail=e.detail)
            for e in events
        ],
    )


def _totals(stats: dict[int, camp.WaveStats]) -> tuple[int, dict[str, int]]:
    counts = dict.fromkeys(STATES, 0)
    total = 0
    for s in stats.values():
        total += s.total
        for k, v in s.counts.items():
            counts[k] = counts.get(k, 0) + v
    return total, counts


def campaign_info(
    session: Session, c: Campaign, stats: dict[int, camp.WaveStats] | None = None
) -> CampaignInfo:
    stats = stats if stats is not None else camp.wave_stats(session, c.id)
    total, counts = _totals(stats)
    return CampaignInfo(
        id=c.id,
        name=c.name,
        release_id=c.release_id,
        state=c.state,
        current_wave=c.current_wave,
        waves=camp.waves_of(c),
        failure_threshold=c.failure_threshold,
        min_reports=c.min_reports,
        advance_at=c.advance_at,
        starts_at=c.starts_at,
        ends_at=c.ends_at,
        pause_reason=c.pause_reason,
        target=json.loads(c.target),
        created_at=c.created_at,
        updated_at=c.updated_at,
        total=total,
        counts=counts,
    )


def campaign_infos(session: Session, rows: Sequence[Campaign]) -> list[CampaignInfo]:
    """Many campaigns with one counting query."""
    ids = [c.id for c in rows]
    by_campaign: dict[int, dict[int, camp.WaveStats]] = {i: {} for i in ids}
    if ids:
        for cid, wave, state, n in session.execute(
            select(Deployment.campaign_id, Deployment.wave, Deployment.state, func.count())
            .where(Deployment.campaign_id.in_(ids))
            .group_by(Deployment.campaign_id, Deployment.wave, Deployment.state)
        ):
            s = by_campaign[cid].setdefault(wave, camp.WaveStats())
            s.total += n
            s.counts[state] = s.counts.get(state, 0) + n
    return [campaign_info(session, c, by_campaign[c.id]) for c in rows]


def campaign_status(session: Session, c: Campaign, now: dt.datetime) -> CampaignStatus:
    stats = camp.wave_stats(session, c.id)
    info = campaign_info(session, c, stats)
    waves = camp.waves_of(c)
    per_wave = []
    for i, pct in enumerate(waves):
        s = stats.get(i, camp.WaveStats())
        counts = dict.fromkeys(STATES, 0)
        counts.update(s.counts)
        per_wave.append(
            WaveInfo(
                wave=i,
                percent=pct,
                open=i <= c.current_wave,
                total=s.total,
                counts=counts,
                failure_rate=round(s.failure_rate, 4),
            )
        )
    return CampaignStatus(
        **info.model_dump(),
        in_window=camp.in_window(now, c.starts_at, c.ends_at),
        per_wave=per_wave,
        failure_reasons=camp.failure_reasons(session, c.id),
    )


def campaign_devices(
    session: Session,
    campaign_id: int,
    state: str | None,
    wave: int | None,
    limit: int,
    offset: int,
) -> list[CampaignDevice]:
    q = (
        select(Deployment, Device.device_id)
        .join(Device, Device.id == Deployment.device_pk)
        .where(Deployment.campaign_id == campaign_id)
    )
    if state is not None:
        q = q.where(Deployment.state == state)
    if wave is not None:
        q = q.where(Deployment.wave == wave)
    rows = session.execute(q.order_by(Deployment.wave, Deployment.id).limit(limit).offset(offset))
    return [
        CampaignDevice(
            device_id=dev_id,
            wave=d.wave,
            state=d.state,
            reason=d.reason,
            offered_at=d.offered_at,
            finished_at=d.finished_at,
        )
        for d, dev_id in rows
    ]
