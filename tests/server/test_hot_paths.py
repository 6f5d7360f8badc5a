"""The device API's hot paths (issue #6): plain-SQL statements, the one-statement check-in
on PostgreSQL, writes done at once when SQLite's write lock is free, pre-serialised offers."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select

from suitkit.server.api_device import _offer_model
from suitkit.server.db import Sql, WriterBusy
from suitkit.server.devices import OfferRef
from suitkit.server.models import Deployment, Device, DeviceEvent

from .conftest import Server


def test_sql_parameters_for_both_drivers() -> None:
    q = Sql("SELECT a FROM t WHERE b = :b AND c = CAST(:c AS INTEGER) AND d = 'x'")
    assert q.text.endswith("b = :b AND c = CAST(:c AS INTEGER) AND d = 'x'")
    assert q.pg_text.endswith("b = %(b)s AND c = CAST(%(c)s AS INTEGER) AND d = 'x'")
    for bad in ("SELECT 1 WHERE a LIKE 'x%'", "SELECT ':b' FROM t", "SELECT 'a', ':b'"):
        with pytest.raises(ValueError):
            Sql(bad)
    Sql("UPDATE t SET s = 'offered' WHERE id = :dep AND s = 'pending'")  # ':' outside quotes


def _events(server: Server, pk: int) -> list[tuple[str, str | None]]:
    with server.state.db.read() as s:
        rows = s.execute(
            select(DeviceEvent.kind, DeviceEvent.detail)
            .where(DeviceEvent.device_pk == pk)
            .order_by(DeviceEvent.id)
        ).all()
    return [(k, d) for k, d in rows]


def _device(server: Server, device_id: str) -> Device:
    with server.state.db.read() as s:
        dev = s.scalars(select(Device).where(Device.device_id == device_id)).one()
    return dev


def test_checkin_writes(server: Server) -> None:
    """Version changes, last-seen times and the first offer, each recorded once (on
    PostgreSQL in one statement, on SQLite in one transaction)."""
    [dev] = server.register(1)
    assert server.checkin(dev, sequence_number=1).status_code == 204
    pk = _device(server, dev.device_id).id
    assert _events(server, pk)[-1] == ("version", "runs sequence number 1")
    server.clock.advance(seconds=120)
    assert server.checkin(dev, sequence_number=1).status_code == 204  # nothing new
    seen = _device(server, dev.device_id)
    assert seen.sequence_number == 1 and seen.last_seen_at == server.clock()
    assert [k for k, _ in _events(server, pk)].count("version") == 1

    rel, _ = server.release(2)
    camp = server.campaign(rel)
    server.clock.advance(seconds=120)
    digest = "sha256:" + "ab" * 32
    r = server.checkin(dev, sequence_number=1, manifest_digest=digest)
    assert r.status_code == 200
    offer = r.json()
    again = server.checkin(dev, sequence_number=1, manifest_digest=digest)
    assert again.status_code == 200
    assert {k: v for k, v in again.json().items() if k != "report_nonce"} == {
        k: v for k, v in offer.items() if k != "report_nonce"
    }
    assert again.json()["report_nonce"] != offer["report_nonce"]
    kinds = [k for k, _ in _events(server, pk)]
    assert kinds.count("offered") == 1 and kinds.count("version") == 1
    seen = _device(server, dev.device_id)
    assert seen.manifest_digest == digest and seen.last_seen_at == server.clock()
    with server.state.db.read() as s:
        state = s.scalar(select(Deployment.state).where(Deployment.campaign_id == camp["id"]))
    assert state == "offered"

    assert server.checkin(dev, sequence_number=5).status_code == 204  # runs a newer one
    assert _events(server, pk)[-1] == ("version", "runs sequence number 5")


def test_offer_json_is_the_model(server: Server) -> None:
    """The offer sent as prepared bytes is the Offer model's JSON."""
    [dev] = server.register(1)
    rel, _ = server.release(2)
    server.campaign(rel)
    r = server.checkin(dev, sequence_number=1)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    got = r.json()
    ref = OfferRef(0, got["campaign_id"], rel, 2, got["manifest_digest"], False)
    model = _offer_model(server.state, ref, "http://testserver", got["report_nonce"])
    assert got == json.loads(model.model_dump_json())


def test_paused_campaign_is_not_offered(server: Server) -> None:
    """Offers are never served from a cache: pausing stops them at the next check-in."""
    [dev] = server.register(1)
    rel, _ = server.release(2)
    camp = server.campaign(rel)
    assert server.checkin(dev, sequence_number=1).status_code == 200
    h = server.headers("release")
    r = server.client.post(f"/api/v1/campaigns/{camp['id']}/pause", headers=h)
    assert r.status_code == 200
    assert server.checkin(dev, sequence_number=1).status_code == 204
    r = server.client.post(f"/api/v1/campaigns/{camp['id']}/resume", headers=h)
    assert r.status_code == 200
    assert server.checkin(dev, sequence_number=1).status_code == 200


def test_write_without_waiting(sqlite_server: Server) -> None:
    """SQLite: ``write_connection(wait=False)`` gives up at once, before doing anything,
    while another writer holds the lock, and works when it is free."""
    db = sqlite_server.state.db
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db.write_connection():
            held.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(10)
        with pytest.raises(WriterBusy), db.write_connection(wait=False):
            pytest.fail("the block must not run")  # pragma: no cover
    finally:
        release.set()
        t.join()
    with db.write_connection(wait=False) as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


def test_raw_read_gives_connections_back_as_they_were(server: Server) -> None:
    """A connection lent for autocommit reads goes back to the pool in transaction mode,
    also when the block raises (a 401 for an unknown token, say): the next write
    transaction on it must be one."""
    db = server.state.db

    class Refused(Exception):
        pass

    for _ in range(3):
        with pytest.raises(Refused), db.raw_read() as dbc:
            assert Sql("SELECT 1").first(dbc, {}) == (1,)
            raise Refused
    with db.raw_read() as dbc:
        Sql("SELECT 1").first(dbc, {})
    for _ in range(db.concurrency):  # every connection the pool holds
        fairy = db.engine.raw_connection()
        try:
            if not db.sqlite:
                assert fairy.dbapi_connection.autocommit is False  # type: ignore[union-attr]
        finally:
            fairy.close()
    r = server.client.post(
        "/device/v1/checkin",
        json={"vendor_id": "0" * 8 + "-0000-0000-0000-" + "0" * 12},
        headers={"Authorization": "Bearer skd_unknown"},
    )
    assert r.status_code in (401, 422)


def test_report_history_and_state(server: Server) -> None:
    """What a report writes (on PostgreSQL in one statement): the deployment's state, one
    history entry (the deployment's when its state or reason changes, else the report's),
    the device's version on success; a duplicate writes nothing."""
    from suitkit.format.codepoints import ReportReason

    from .conftest import make_report

    [dev] = server.register(1)
    rel, env = server.release(2)
    camp = server.campaign(rel, failure_threshold=1.0)
    offer = server.checkin(dev, sequence_number=1).json()
    pk = _device(server, dev.device_id).id
    nonce = bytes.fromhex(offer["report_nonce"])
    failed = make_report(env, dev.key, nonce=nonce, reason=ReportReason.CONDITION_FAILED)
    r = server.report(dev, failed)
    assert r.status_code == 201 and r.json()["deployment_state"] == "failed"
    assert _events(server, pk)[-1] == ("failed", "failed (report): condition-failed")
    assert server.report(dev, failed).json()["duplicate"] is True
    again = make_report(env, dev.key, reason=ReportReason.CONDITION_FAILED)  # no nonce
    assert server.report(dev, again).status_code == 201
    kind, detail = _events(server, pk)[-1]
    assert kind == "report" and detail is not None and detail.startswith(
        "failed: condition-failed (sha256:"
    )
    assert _device(server, dev.device_id).sequence_number == 1
    ok = make_report(env, dev.key)
    r = server.report(dev, ok)
    assert r.status_code == 201 and r.json()["deployment_state"] == "installed"
    assert r.json()["campaign_id"] == camp["id"]
    assert _events(server, pk)[-1] == ("installed", "installed (report)")
    seen = _device(server, dev.device_id)
    assert seen.sequence_number == 2 and seen.manifest_digest == offer["manifest_digest"]
    kinds = [k for k, _ in _events(server, pk)]
    assert kinds.count("failed") == 1 and kinds.count("installed") == 1
    assert server.status(camp["id"])["state"] == "completed"
