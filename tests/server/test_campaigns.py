"""Campaigns: targets, waves, automatic pause, operator controls, time windows, status."""

from __future__ import annotations

import datetime as dt

from suitkit.format.codepoints import ReportReason
from suitkit.server.app import tick
from suitkit.server.models import Deployment
from suitkit.server.security import issue_nonce

from .conftest import OTHER_CLASS, Device, Server, make_report


def offered(server: Server, devs: list[Device]) -> list[Device]:
    """The devices that get an offer when they check in now."""
    return [d for d in devs if server.checkin(d, sequence_number=1).status_code == 200]


def report(server: Server, dev: Device, env: object, reason: ReportReason | None = None) -> None:
    nonce = issue_nonce(server.state.nonce_secret, _pk(server, dev), server.clock().timestamp())
    r = server.report(dev, make_report(env, dev.key, nonce=nonce, reason=reason))  # type: ignore[arg-type]
    assert r.status_code == 201, r.text


def _pk(server: Server, dev: Device) -> int:
    from sqlalchemy import select

    from suitkit.server.models import Device as D

    with server.state.db.read() as s:
        pk = s.scalar(select(D.id).where(D.device_id == dev.device_id))
    assert pk is not None
    return pk


def test_waves_open_one_after_another(server: Server) -> None:
    devs = server.register(20)
    rel, env = server.release(2)
    camp = server.campaign(rel, waves=[10, 50, 100], failure_threshold=0.5)
    st = server.status(camp["id"])
    assert [w["total"] for w in st["per_wave"]] == [2, 8, 10]
    assert st["target"] == {"all": True, "up_to_date_excluded": 0}
    first = offered(server, devs)
    assert len(first) == 2  # only wave 1 is open
    for d in first:
        report(server, d, env)
    st = server.status(camp["id"])
    assert st["current_wave"] == 1 and st["per_wave"][1]["open"]
    second = offered(server, [d for d in devs if d not in first])
    assert len(second) == 8
    for d in second:
        report(server, d, env)
    third = offered(server, [d for d in devs if d not in first + second])
    assert len(third) == 10
    for d in third:
        report(server, d, env)
    st = server.status(camp["id"])
    assert st["state"] == "completed"
    assert st["counts"]["installed"] == 20
    # campaign device list
    lst = server.client.get(
        f"/api/v1/campaigns/{camp['id']}/devices?state=installed&limit=5",
        headers=server.headers("viewer"),
    ).json()
    assert len(lst) == 5 and all(d["state"] == "installed" for d in lst)


def test_wave_assignment_is_a_deterministic_shuffle(server: Server) -> None:
    from suitkit.server.campaigns import assign_waves

    devs = server.register(60)
    rel, _ = server.release(2)
    firsts = []
    for _ in range(2):
        c = server.campaign(rel, waves=[10, 100])
        first = {
            d["device_id"]
            for d in server.client.get(
                f"/api/v1/campaigns/{c['id']}/devices?wave=0", headers=server.headers()
            ).json()
        }
        expected = assign_waves([d.device_id for d in devs], [10, 100], f"campaign-{c['id']}")
        assert first == {d for d, w in expected.items() if w == 0}
        assert len(first) == 6
        firsts.append(first)
    assert firsts[0] != firsts[1]  # each campaign draws its own (1 chance in 7.5e7 to tie)


def test_failure_rate_pauses_the_campaign(server: Server) -> None:
    devs = server.register(10)
    rel, env = server.release(2)
    camp = server.campaign(rel, waves=[50, 100], failure_threshold=0.25, min_reports=4)
    wave1 = offered(server, devs)
    assert len(wave1) == 5
    report(server, wave1[0], env, ReportReason.CONDITION_FAILED)
    report(server, wave1[1], env)
    report(server, wave1[2], env)
    assert server.status(camp["id"])["state"] == "running"  # 2 finished < min_reports
    report(server, wave1[3], env, ReportReason.OPERATION_FAILED)  # 2 of 4 failed: 50% > 25%
    st = server.status(camp["id"])
    assert st["state"] == "paused"
    assert "wave 1: 2 of 4" in st["pause_reason"]
    assert st["failure_reasons"] == {"condition-failed": 1, "operation-failed": 1}
    assert st["per_wave"][0]["failure_rate"] == 0.5
    # paused: nobody new is offered; the last device of wave 1 can still report
    rest = [d for d in devs if d not in wave1]
    assert offered(server, rest) == []
    # resume with a higher threshold; wave 1 finishes, wave 2 opens
    r = server.client.post(
        f"/api/v1/campaigns/{camp['id']}/resume",
        json={"failure_threshold": 0.6},
        headers=server.headers("release"),
    )
    assert r.status_code == 200 and r.json()["state"] == "running"
    report(server, wave1[4], env)
    assert server.status(camp["id"])["current_wave"] == 1
    assert len(offered(server, rest)) == 5


def test_pause_resume_abort_advance(server: Server) -> None:
    devs = server.register(4)
    rel, _ = server.release(2)
    camp = server.campaign(rel, waves=[25, 100])
    cid = camp["id"]
    h = server.headers("release")
    c = server.client
    assert c.post(f"/api/v1/campaigns/{cid}/pause", headers=h).json()["state"] == "paused"
    assert offered(server, devs) == []
    assert c.post(f"/api/v1/campaigns/{cid}/resume", headers=h).json()["state"] == "running"
    assert c.post(f"/api/v1/campaigns/{cid}/advance", headers=h).json()["current_wave"] == 1
    assert c.post(f"/api/v1/campaigns/{cid}/advance", headers=h).status_code == 409
    assert len(offered(server, devs)) == 4
    assert c.post(f"/api/v1/campaigns/{cid}/abort", headers=h).json()["state"] == "aborted"
    assert c.post(f"/api/v1/campaigns/{cid}/resume", headers=h).status_code == 409
    assert c.post("/api/v1/campaigns/999/pause", headers=h).status_code == 404
    assert (
        c.post(f"/api/v1/campaigns/{cid}/pause", headers=server.headers("viewer")).status_code
        == 403
    )


def test_created_paused(server: Server) -> None:
    devs = server.register(2)
    rel, _ = server.release(2)
    camp = server.campaign(rel, start=False)
    assert camp["state"] == "paused" and camp["pause_reason"] == "created paused"
    assert offered(server, devs) == []


def test_time_window(server: Server) -> None:
    devs = server.register(2)
    rel, _ = server.release(2)
    now = server.clock()
    camp = server.campaign(
        rel,
        starts_at=(now + dt.timedelta(hours=1)).isoformat(),
        ends_at=(now + dt.timedelta(hours=2)).isoformat(),
    )
    assert server.status(camp["id"])["in_window"] is False
    assert offered(server, devs) == []
    server.clock.advance(minutes=61)
    assert server.status(camp["id"])["in_window"] is True
    assert len(offered(server, devs)) == 2
    server.clock.advance(hours=1)
    assert offered(server, devs) == []
    bad = server.client.post(
        "/api/v1/campaigns",
        json={
            "name": "x",
            "release_id": rel,
            "target": {"all": True},
            "starts_at": now.isoformat(),
            "ends_at": now.isoformat(),
        },
        headers=server.headers(),
    )
    assert bad.status_code == 422


def test_targets(server: Server) -> None:
    in_group = server.register(3, group="lab")
    tagged = server.register(2, tags=["canary"])
    other_class = server.register(2, class_id=OTHER_CLASS)
    rel, _ = server.release(2)
    by_group = server.campaign(rel, target={"group": "lab"})
    assert by_group["total"] == 3
    by_tag = server.campaign(rel, target={"tag": "canary"})
    assert by_tag["total"] == 2
    explicit = server.campaign(
        rel, target={"devices": [in_group[0].device_id, tagged[0].device_id]}
    )
    assert explicit["total"] == 2
    # the manifest checks the class id: other-class devices are never targeted
    everything = server.campaign(rel, target={"all": True})
    assert everything["total"] == 5
    c, h = server.client, server.headers()

    def create(target: object, **kw: object) -> int:
        body = {"name": "x", "release_id": rel, "target": target, **kw}
        return c.post("/api/v1/campaigns", json=body, headers=h).status_code

    assert create({"devices": [other_class[0].device_id]}) == 422
    assert create({"class_id": OTHER_CLASS}) == 422  # selects nobody the release accepts
    assert create({"devices": ["00000000-0000-4000-8000-000000000000"]}) == 404
    assert create({"group": "nope"}) == 404
    assert create({}) == 422
    assert create({"all": True}, waves=[50]) == 422
    assert create({"all": True}, waves=[50, 10, 100]) == 422
    assert create({"all": True}, waves=[0, 100]) == 422
    assert create({"all": True}, failure_threshold=2) == 422
    body = {"name": "x", "release_id": 999, "target": {"all": True}}
    assert c.post("/api/v1/campaigns", json=body, headers=h).status_code == 404


def test_up_to_date_devices_are_left_out(server: Server) -> None:
    a, _ = server.register(2)
    server.checkin(a, sequence_number=7)
    rel, _ = server.release(5)
    camp = server.campaign(rel)
    assert camp["total"] == 1 and camp["target"]["up_to_date_excluded"] == 1


def test_highest_release_is_offered_first(server: Server) -> None:
    [dev] = server.register(1)
    r2, _ = server.release(2)
    r3, _ = server.release(3)
    server.campaign(r2)
    server.campaign(r3)
    assert server.checkin(dev, sequence_number=1).json()["release_id"] == r3


def test_ticker_catches_up(server: Server) -> None:
    """A wave that finished without the report transaction seeing it (concurrent writers) is
    opened by the periodic ticker."""
    devs = server.register(4)
    rel, _ = server.release(2)
    camp = server.campaign(rel, waves=[25, 100])
    first = offered(server, devs)
    assert len(first) == 1
    # mark it installed behind the server's back, as a lost race would leave it
    from sqlalchemy import update

    with server.state.db.write() as s:
        s.execute(
            update(Deployment)
            .where(Deployment.campaign_id == camp["id"], Deployment.state == "offered")
            .values(state="installed")
        )
    assert server.status(camp["id"])["current_wave"] == 0
    assert tick(server.state) == 1
    assert server.status(camp["id"])["current_wave"] == 1
    assert tick(server.state) == 0


def test_list_campaigns(server: Server) -> None:
    server.register(2)
    rel, _ = server.release(2)
    server.campaign(rel, name="one")
    server.campaign(rel, name="two")
    lst = server.client.get("/api/v1/campaigns", headers=server.headers("viewer")).json()
    assert [c["name"] for c in lst] == ["two", "one"]
    assert all(c["counts"]["pending"] == 2 for c in lst)
    assert server.client.get("/api/v1/campaigns/99", headers=server.headers()).status_code == 404
    assert (
        server.client.get("/api/v1/campaigns/99/devices", headers=server.headers()).status_code
        == 404
    )
