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
from typing import Any

from sqlalchemy import BigInteger, Connection, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from suitkit.cose import messages as cose
from suitkit.cose.keys import CoseKey
from suitkit.device.report import SuitReport, verify_report
from suitkit.errors import SuitError
from suitkit.server.db import Sql
from suitkit.server.devices import Executor, event, finish, finish_detail
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
    except SuitError as exc:
        raise ReportRejected(422, f"the report is refused: {exc}", exc.describe()) from None
    if report.nonce is not None:
        problem = check_nonce(nonce_secret, device_pk, report.nonce, ttl, now)
        if problem is not None:
            raise ReportRejected(422, problem)
        key_text = "nonce:" + report.nonce.hex()
    else:
        # keyed by the signed SUIT_Report itself: decode the COSE_Sign1 again for it (a
        # report with a nonce, the usual one, spares this)
        try:
            payload = getattr(cose.decode(data), "payload", None)
        except SuitError as exc:  # pragma: no cover - verify_report decoded it
            raise ReportRejected(422, f"the report is refused: {exc}", exc.describe()) from None
        if not isinstance(payload, bytes):  # pragma: no cover - verify_report checked it
            raise ReportRejected(422, "the report has no embedded payload")
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
    busy: bool | None = None  # another deployment of the open waves unfinished, if known


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


_EXISTING_SQL = Sql(
    "SELECT id, success, reason, deployment_id FROM reports"
    " WHERE device_pk = :device_pk AND dedup_key = :key"
)
_DEPLOYMENT_OF_SQL = Sql("SELECT campaign_id, state FROM deployments WHERE id = :dep")
_TARGET_SQL = Sql(
    """
    SELECT p.id, c.id, r.sequence_number, p.state, p.reason, c.state, c.current_wave,
           c.advance_at
    FROM deployments p
    JOIN campaigns c ON c.id = p.campaign_id
    JOIN releases r ON r.id = c.release_id
    WHERE p.device_pk = :device_pk AND r.manifest_digest = :digest
    ORDER BY c.id DESC
    LIMIT 1
    """
)
_INSERT_ONCE_SQL = Sql(
    """
    INSERT INTO reports (device_pk, dedup_key, received_at, manifest_digest, reference_uri,
                         success, reason, nonce, deployment_id, summary, raw)
    VALUES (:device_pk, :dedup_key, :received_at, :manifest_digest, :reference_uri,
            :success, :reason, :nonce, :deployment_id, :summary, :raw)
    ON CONFLICT (device_pk, dedup_key) DO NOTHING
    RETURNING id
    """
)
_INSTALLED_SQL = Sql(
    "UPDATE devices SET manifest_digest = :digest,"
    " sequence_number = COALESCE(:seq, sequence_number) WHERE id = :pk"
)


def ingest(
    conn: Executor, device_pk: int, parsed: ParsedReport, raw: bytes, now: dt.datetime
) -> Ingested:
    """Store the report and apply it (in the caller's write transaction). The insert does
    nothing if the device sent this report before (unique device + key): then the first
    one's outcome is returned, marked duplicate."""
    digest = parsed.manifest_digest
    core = isinstance(conn, Connection)  # else a Session: the SQLAlchemy statements

    def first(sql: Sql, stmt: Any, params: dict[str, Any]) -> Any:
        return sql.first(conn, params) if core else conn.execute(stmt, params).first()

    target = first(_TARGET_SQL, _TARGET, {"device_pk": device_pk, "digest": digest})
    rep = parsed.report
    dialect = conn.get_bind().dialect if isinstance(conn, Session) else conn.dialect
    values = {
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
    }
    if core and dialect.name in ("sqlite", "postgresql"):
        row = _INSERT_ONCE_SQL.first(conn, values)
        report_id = row[0] if row else None
    else:
        insert_once = _INSERT_ONCE.get(dialect.name, _INSERT_REPORT)
        report_id = conn.execute(insert_once, values).scalar()
    if report_id is None:  # received before
        key = {"device_pk": device_pk, "key": parsed.dedup_key}
        existing = first(_EXISTING_SQL, _EXISTING, key)
        assert existing is not None
        rid, ok, reason, dep_id = existing
        ok = bool(ok)  # SQLite: 0 or 1
        dep = first(_DEPLOYMENT_OF_SQL, _DEPLOYMENT_OF, {"dep": dep_id}) if dep_id else None
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
        event(conn, device_pk, now, "report", target[1] if target else None, _detail(parsed))
    if rep.ok:
        params = {"pk": device_pk, "digest": digest, "seq": target[2] if target else None}
        if core:
            _INSTALLED_SQL.rowcount(conn, params)
        else:
            conn.execute(_INSTALLED, params)
    return Ingested(
        report_id,
        False,
        rep.ok,
        parsed.reason,
        target[1] if target else None,
        state.value if state else None,
        (target[5], target[6], target[7]) if target else None,
    )


def _detail(parsed: ParsedReport) -> str:
    """The history entry of a report that changed no deployment."""
    outcome = "success" if parsed.report.ok else f"failed: {parsed.reason}"
    return f"{outcome} ({parsed.manifest_digest[:24]}...)"


_UNFINISHED = ", ".join(f"'{s.value}'" for s in DeploymentState if not s.terminal)
# PostgreSQL: a whole report in one statement, atomic on its own (autocommit): the target
# deployment, the report stored once, then, if it was new, what the generic code does
# (:func:`ingest`): the deployment finished, one history entry (the
# deployment's if its state or reason changed, else the report's), the device's version on
# success; and whether another deployment of the open waves is unfinished. One round trip
# instead of seven (BEGIN, five statements, COMMIT).
_INGEST_PG = Sql(
    f"""
    WITH t AS (
      SELECT p.id, c.id AS cid, r.sequence_number AS seq, p.state AS old_state,
             p.reason AS old_reason, c.state AS cstate, c.current_wave AS wave,
             c.advance_at
      FROM deployments p
      JOIN campaigns c ON c.id = p.campaign_id
      JOIN releases r ON r.id = c.release_id
      WHERE p.device_pk = :pk AND r.manifest_digest = CAST(:digest AS VARCHAR)
      ORDER BY c.id DESC
      LIMIT 1),
    i AS (
      INSERT INTO reports (device_pk, dedup_key, received_at, manifest_digest, reference_uri,
                           success, reason, nonce, deployment_id, summary, raw)
      SELECT :pk, :dedup_key, :now, :digest, :reference_uri, :ok, :reason, :nonce,
             (SELECT id FROM t), :summary, :raw
      ON CONFLICT (device_pk, dedup_key) DO NOTHING
      RETURNING id),
    f AS (
      UPDATE deployments SET state = CAST(:state AS VARCHAR),
             reason = CAST(:reason AS VARCHAR), finished_at = :now, report_id = i.id
      FROM i, t WHERE deployments.id = t.id
      RETURNING deployments.id),
    e AS (
      INSERT INTO device_events (device_pk, at, kind, campaign_id, detail)
      SELECT :pk, :now,
             CASE WHEN t.id IS NOT NULL AND (t.old_state IS DISTINCT FROM CAST(:state AS VARCHAR)
                       OR t.old_reason IS DISTINCT FROM CAST(:reason AS VARCHAR))
                  THEN CAST(:state AS VARCHAR) ELSE 'report' END,
             t.cid,
             CASE WHEN t.id IS NOT NULL AND (t.old_state IS DISTINCT FROM CAST(:state AS VARCHAR)
                       OR t.old_reason IS DISTINCT FROM CAST(:reason AS VARCHAR))
                  THEN CAST(:finish_detail AS TEXT) ELSE CAST(:report_detail AS TEXT) END
      FROM i LEFT OUTER JOIN t ON true
      RETURNING id),
    d AS (
      UPDATE devices SET manifest_digest = CAST(:digest AS VARCHAR),
             sequence_number = COALESCE((SELECT seq FROM t), sequence_number)
      FROM i WHERE devices.id = :pk AND CAST(:ok AS BOOLEAN)
      RETURNING devices.id)
    SELECT i.id, t.cid, t.old_state, t.cstate, t.wave, t.advance_at,
           EXISTS (SELECT 1 FROM deployments p
                   WHERE p.campaign_id = t.cid AND p.wave <= t.wave
                     AND p.state IN ({_UNFINISHED}) AND p.id <> t.id),
           (SELECT count(*) FROM f) + (SELECT count(*) FROM e) + (SELECT count(*) FROM d)
    FROM (SELECT 1) AS one LEFT OUTER JOIN i ON true LEFT OUTER JOIN t ON true
    """
)


def ingest_pg(
    conn: Any, device_pk: int, parsed: ParsedReport, raw: bytes, now: dt.datetime
) -> Ingested:
    """:func:`ingest` on PostgreSQL in one statement, atomic on its own: ``conn`` a pooled
    connection in autocommit (``Database.raw_read``). The campaign's progress, if the report
    can change it, is the caller's, in a transaction after it."""
    rep = parsed.report
    state = DeploymentState.INSTALLED if rep.ok else DeploymentState.FAILED
    row = _INGEST_PG.first(
        conn,
        {
            "pk": device_pk,
            "dedup_key": parsed.dedup_key,
            "now": now,
            "digest": parsed.manifest_digest,
            "reference_uri": rep.reference_uri or None,
            "ok": rep.ok,
            "reason": parsed.reason,
            "nonce": rep.nonce.hex() if rep.nonce is not None else None,
            "summary": json.dumps(rep.lines()),
            "raw": raw,
            "state": state.value,
            "finish_detail": finish_detail(state, parsed.reason, "report"),
            "report_detail": _detail(parsed),
        },
    )
    assert row is not None
    report_id, campaign_id, _, cstate, wave, advance_at, busy, _ = row
    if report_id is None:  # received before
        existing = _EXISTING_SQL.first(conn, {"device_pk": device_pk, "key": parsed.dedup_key})
        assert existing is not None
        rid, ok, reason, dep_id = existing
        dep = _DEPLOYMENT_OF_SQL.first(conn, {"dep": dep_id}) if dep_id else None
        return Ingested(
            rid, True, bool(ok), reason, dep[0] if dep else None, dep[1] if dep else None
        )
    found = campaign_id is not None
    return Ingested(
        report_id,
        False,
        rep.ok,
        parsed.reason,
        campaign_id,
        state.value if found else None,
        (cstate, wave, advance_at) if found else None,
        busy=bool(busy) if found else None,
    )
