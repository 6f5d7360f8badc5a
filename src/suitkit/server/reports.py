"""Report ingestion: a device's signed SUIT_Report becomes its state and its campaign's.

The report is a COSE_Sign1 whose payload is the SUIT_Report (draft-ietf-suit-report §7). It
must verify under the key registered for the device that uploads it; it is parsed with
:func:`suitkit.device.report.verify_report`. Then:

- it is stored once: the key is its nonce (suit-report-nonce, which must be one this server
  handed to this device at check-in and not expired), or, for a report without a nonce, the
  SHA-256 of the signed SUIT_Report; an upload of the same report again is answered as a
  duplicate and changes nothing;
- its suit-reference digest names the manifest; the device's deployment of the release with
  that manifest digest becomes ``installed`` (result true) or ``failed`` with the report's
  reason (suit-report-result-reason, e.g. ``condition-failed``);
- on success the device's current sequence number and manifest digest become the release's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import BigInteger, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from suitkit.cose import messages as cose
from suitkit.cose.keys import CoseKey
from suitkit.device.report import SuitReport, verify_report
from suitkit.errors import SuitError
from suitkit.server.devices import Executor, event, finish
from suitkit.server.models import (
    Campaign,
    Deployment,
    DeploymentState,
    Device,
    Release,
    Report,
)
from suitkit.server.releases import digest_text
from suitkit.server.security import check_nonce


class ReportRejected(Exception):
    def __init__(self, status: int, message: str, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or {}


@dataclass(frozen=True, slots=True)
class ParsedReport:
    report: SuitReport
    dedup_key: str

    @property
    def manifest_digest(self) -> str:
        return digest_text(self.report.manifest_digest)

    @property
    def reason(self) -> str | None:
        return None if self.report.result is None else self.report.result.reason.spec_name


def parse_signed_report(
    data: bytes, key: CoseKey, *, nonce_secret: bytes, device_pk: int, ttl: float, now: float
) -> ParsedReport:
    """Verify and parse; raises :class:`ReportRejected` (422) with the reason."""
    try:
        report = verify_report(data, [key])
        msg = cose.decode(data)
    except SuitError as exc:
        raise ReportRejected(422, f"the report is refused: {exc}", exc.describe()) from None
    payload = getattr(msg, "payload", None)
    if not isinstance(payload, bytes):  # pragma: no cover - verify_report checked it
        raise ReportRejected(422, "the report has no embedded payload")
    if report.nonce is not None:
        problem = check_nonce(nonce_secret, device_pk, report.nonce, ttl, now)
        if problem is not None:
            raise ReportRejected(422, problem)
        key_text = "nonce:" + report.nonce.hex()
    else:
        key_text = "sha256:" + hashlib.sha256(payload).hexdigest()
    return ParsedReport(report, key_text)


@dataclass(frozen=True, slots=True)
class Ingested:
    report_id: int
    duplicate: bool
    success: bool
    reason: str | None
    campaign_id: int | None
    deployment_state: str | None
    campaign: tuple[str, int, float] | None = None  # state, current wave, advance_at


_EXISTING = select(Report.id, Report.success, Report.reason, Report.deployment_id).where(
    Report.device_pk == bindparam("device_pk"), Report.dedup_key == bindparam("key")
)
_DEPLOYMENT_OF = select(Deployment.campaign_id, Deployment.state).where(
    Deployment.id == bindparam("dep")
)
_TARGET = (
    select(
        Deployment.id,
        Campaign.id,
        Release.sequence_number,
        Deployment.state,
        Deployment.reason,
        Campaign.state,
        Campaign.current_wave,
        Campaign.advance_at,
    )
    .join(Campaign, Campaign.id == Deployment.campaign_id)
    .join(Release, Release.id == Campaign.release_id)
    .where(
        Deployment.device_pk == bindparam("device_pk"),
        Release.manifest_digest == bindparam("digest"),
    )
    .order_by(Campaign.id.desc())
    .limit(1)
)
_INSERT_REPORT = insert(Report).returning(Report.id)
_INSERT_ONCE = {
    "sqlite": sqlite_insert(Report)
    .on_conflict_do_nothing(index_elements=["device_pk", "dedup_key"])
    .returning(Report.id),
    "postgresql": pg_insert(Report)
    .on_conflict_do_nothing(index_elements=["device_pk", "dedup_key"])
    .returning(Report.id),
}
_INSTALLED = (
    update(Device)
    .where(Device.id == bindparam("pk"))
    .values(
        manifest_digest=bindparam("digest"),
        sequence_number=func.coalesce(bindparam("seq", type_=BigInteger), Device.sequence_number),
    )
)


def ingest(
    conn: Executor, device_pk: int, parsed: ParsedReport, raw: bytes, now: dt.datetime
) -> Ingested:
    """Store the report and apply it (in the caller's write transaction). The insert does
    nothing if the device sent this report before (unique device + key): then the first
    one's outcome is returned, marked duplicate."""
    digest = parsed.manifest_digest
    target = conn.execute(_TARGET, {"device_pk": device_pk, "digest": digest}).first()
    rep = parsed.report
    dialect = conn.get_bind().dialect if isinstance(conn, Session) else conn.dialect
    insert_once = _INSERT_ONCE.get(dialect.name, _INSERT_REPORT)
    report_id = conn.execute(
        insert_once,
        {
            "device_pk": device_pk,
            "dedup_key": parsed.dedup_key,
            "received_at": now,
            "manifest_digest": digest,
            "reference_uri": rep.reference_uri or None,
            "success": rep.ok,
            "reason": parsed.reason,
            "nonce": rep.nonce.hex() if rep.nonce is not None else None,
            "deployment_id": target[0] if target else None,
            "summary": json.dumps(rep.lines()),
            "raw": raw,
        },
    ).scalar()
    if report_id is None:  # received before
        existing = conn.execute(
            _EXISTING, {"device_pk": device_pk, "key": parsed.dedup_key}
        ).first()
        assert existing is not None
        rid, ok, reason, dep_id = existing
        dep = conn.execute(_DEPLOYMENT_OF, {"dep": dep_id}).first() if dep_id else None
        return Ingested(rid, True, ok, reason, dep[0] if dep else None, dep[1] if dep else None)
    state: DeploymentState | None = None
    changed = False
    if target is not None:
        state = DeploymentState.INSTALLED if rep.ok else DeploymentState.FAILED
        changed = finish(
            conn,
            target[0],
            state,
            parsed.reason,
            now,
            report_id,
            "report",
            known=(device_pk, target[1], target[3], target[4]),
        )
    if not changed:  # else the deployment's own history entry says it
        event(
            conn,
            device_pk,
            now,
            "report",
            target[1] if target else None,
            ("success" if rep.ok else f"failed: {parsed.reason}") + f" ({digest[:24]}...)",
        )
    if rep.ok:
        conn.execute(
            _INSTALLED,
            {"pk": device_pk, "digest": digest, "seq": target[2] if target else None},
        )
    return Ingested(
        report_id,
        False,
        rep.ok,
        parsed.reason,
        target[1] if target else None,
        state.value if state else None,
        (target[5], target[6], target[7]) if target else None,
    )
