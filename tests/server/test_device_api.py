"""The device API: check-in, downloads (Range, ETag), signed reports."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from suitkit.device.report import SuitReport
from suitkit.format.codepoints import ReportReason
from suitkit.server.models import Report
from suitkit.server.security import issue_nonce

from .conftest import (
    OTHER_CLASS,
    Device,
    Server,
    device_keypair,
    make_report,
    manifest_digest_text,
    payload_bytes,
    release_envelope,
)


def reports_stored(server: Server) -> int:
    with server.state.db.read() as s:
        return s.scalar(select(func.count()).select_from(Report)) or 0


def offer_for(server: Server, dev: Device, **extra: object) -> dict[str, object]:
    r = server.checkin(dev, **extra)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_checkin_nothing_to_do(server: Server) -> None:
    [dev] = server.register(1)
    r = server.checkin(dev, sequence_number=1)
    assert r.status_code == 204
    assert r.content == b""
    shown = server.client.get(f"/api/v1/devices/{dev.device_id}", headers=server.headers()).json()
    assert shown["sequence_number"] == 1
    assert shown["last_seen_at"] is not None


def test_checkin_with_anothers_identity_is_forbidden(server: Server) -> None:
    a, b = server.register(2)
    r = server.client.post("/device/v1/checkin", json=b.identity(), headers=a.headers)
    assert r.status_code == 403
    wrong_class = a.identity(class_id=OTHER_CLASS)
    assert (
        server.client.post("/device/v1/checkin", json=wrong_class, headers=a.headers).status_code
        == 403
    )
    bad = server.client.post("/device/v1/checkin", json={"device_id": "x"}, headers=a.headers)
    assert bad.status_code == 422


def test_offer_contents(server: Server) -> None:
    [dev] = server.register(1)
    fw = payload_bytes(5000, tag=b"offer")
    rel_id, env = server.release(2, fw)
    camp = server.campaign(rel_id)
    offer = offer_for(server, dev, sequence_number=1)
    assert offer["campaign_id"] == camp["id"]
    assert offer["manifest_digest"] == manifest_digest_text(env)
    assert offer["envelope"]["sha256"] == hashlib.sha256(env.encode()).hexdigest()
    [p] = offer["payloads"]
    assert p["uri"] == "https://updates.example.com/fw/firmware.bin"
    assert p["sha256"] == hashlib.sha256(fw).hexdigest() and p["size"] == 5000
    assert p["url"].endswith(f"/device/v1/files/{p['sha256']}")
    assert len(bytes.fromhex(offer["report_nonce"])) == 32
    # offered once; later check-ins repeat the offer with a fresh nonce
    again = offer_for(server, dev, sequence_number=1)
    assert again["report_nonce"] != offer["report_nonce"]
    assert server.status(camp["id"])["counts"]["offered"] == 1


def test_no_rollback_and_installed_by_checkin(server: Server) -> None:
    a, b = server.register(2)
    rel_id, env = server.release(3)
    camp = server.campaign(rel_id)
    assert server.checkin(a, sequence_number=5).status_code == 204  # newer already
    # b says it runs exactly this manifest: installed, without a report
    r = server.checkin(b, sequence_number=3, manifest_digest=manifest_digest_text(env))
    assert r.status_code == 204
    st = server.status(camp["id"])
    assert st["counts"]["installed"] == 1


def test_download_range_etag(server: Server) -> None:
    [dev] = server.register(1)
    fw = bytes(range(256)) * 64  # 16 KiB
    rel_id, _ = server.release(2, fw)
    camp = server.campaign(rel_id)
    offer = offer_for(server, dev, sequence_number=1)
    url = offer["payloads"][0]["url"]  # type: ignore[index]
    c = server.client
    full = c.get(url, headers=dev.headers)
    assert full.status_code == 200
    assert full.content == fw
    assert full.headers["content-length"] == str(len(fw))
    assert full.headers["etag"] == f'"{hashlib.sha256(fw).hexdigest()}"'
    assert full.headers["accept-ranges"] == "bytes"
    etag = full.headers["etag"]
    part = c.get(url, headers={**dev.headers, "Range": "bytes=1000-"})
    assert part.status_code == 206
    assert part.content == fw[1000:]
    assert part.headers["content-range"] == f"bytes 1000-{len(fw) - 1}/{len(fw)}"
    assert part.headers["content-length"] == str(len(fw) - 1000)
    mid = c.get(url, headers={**dev.headers, "Range": "bytes=10-19"})
    assert mid.content == fw[10:20]
    tail = c.get(url, headers={**dev.headers, "Range": "bytes=-5"})
    assert tail.content == fw[-5:]
    # resume only if the file is the same one
    same = c.get(url, headers={**dev.headers, "Range": "bytes=100-", "If-Range": etag})
    assert same.status_code == 206
    changed = c.get(url, headers={**dev.headers, "Range": "bytes=100-", "If-Range": '"x"'})
    assert changed.status_code == 200 and changed.content == fw
    assert c.get(url, headers={**dev.headers, "If-None-Match": etag}).status_code == 304
    bad = c.get(url, headers={**dev.headers, "Range": f"bytes={len(fw)}-"})
    assert bad.status_code == 416
    head = c.head(url, headers=dev.headers)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(fw))
    st = server.status(camp["id"])
    assert st["counts"]["downloading"] == 1


def test_a_device_sees_only_what_targets_it(server: Server) -> None:
    a, b = server.register(2)
    other = server.register(1, class_id=OTHER_CLASS)[0]
    rel_id, _ = server.release(2)
    server.campaign(rel_id, target={"devices": [a.device_id]})
    offer = offer_for(server, a, sequence_number=1)
    url = offer["envelope"]["url"]  # type: ignore[index]
    assert server.client.get(url, headers=a.headers).status_code == 200
    # b and the other-class device: no offer, and the files are "not found" to them
    for dev in (b, other):
        assert server.checkin(dev, sequence_number=1).status_code == 204
        assert server.client.get(url, headers=dev.headers).status_code == 404
    for trick in ("../../etc/passwd", "%2e%2e%2fsuitkit.db", "0" * 63, "A" * 64, "0" * 64):
        r = server.client.get(f"/device/v1/files/{trick}", headers=a.headers)
        assert r.status_code == 404, trick


def test_pending_devices_cannot_download_before_their_offer(server: Server) -> None:
    a, b = server.register(2)
    rel_id, _ = server.release(2)
    server.campaign(rel_id)
    offer = offer_for(server, a, sequence_number=1)
    # b is targeted but has not been offered (it has not checked in): not yet
    assert server.client.get(offer["envelope"]["url"], headers=b.headers).status_code == 404


def test_aborted_campaign_stops_downloads(server: Server) -> None:
    [a] = server.register(1)
    rel_id, _ = server.release(2)
    camp = server.campaign(rel_id)
    offer = offer_for(server, a, sequence_number=1)
    r = server.client.post(f"/api/v1/campaigns/{camp['id']}/abort", headers=server.headers())
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    assert server.client.get(offer["envelope"]["url"], headers=a.headers).status_code == 404
    assert server.checkin(a, sequence_number=1).status_code == 204


def test_success_report(server: Server) -> None:
    [dev] = server.register(1)
    rel_id, env = server.release(2)
    camp = server.campaign(rel_id)
    offer = offer_for(server, dev, sequence_number=1)
    nonce = bytes.fromhex(offer["report_nonce"])  # type: ignore[arg-type]
    r = server.report(dev, make_report(env, dev.key, nonce=nonce))
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["success"] and got["campaign_id"] == camp["id"]
    assert got["deployment_state"] == "installed" and not got["duplicate"]
    status = server.client.get(f"/api/v1/devices/{dev.device_id}", headers=server.headers()).json()
    assert status["sequence_number"] == 2
    assert status["manifest_digest"] == manifest_digest_text(env)
    assert status["last_report"]["success"] is True
    kinds = [e["kind"] for e in status["history"]]
    assert kinds[:3] == ["report", "installed", "offered"] or "installed" in kinds
    detail = server.client.get(
        f"/api/v1/reports/{got['report_id']}", headers=server.headers("viewer")
    ).json()
    assert detail["lines"][-1] == "result: success"
    assert detail["device_id"] == dev.device_id
    assert server.client.get("/api/v1/reports/999", headers=server.headers()).status_code == 404
    # a check-in after the install: nothing more to do
    assert server.checkin(dev, sequence_number=2).status_code == 204


def test_failure_report_reason(server: Server) -> None:
    [dev] = server.register(1)
    rel_id, env = server.release(2)
    camp = server.campaign(rel_id)
    offer = offer_for(server, dev, sequence_number=1)
    data = make_report(
        env,
        dev.key,
        nonce=bytes.fromhex(offer["report_nonce"]),  # type: ignore[arg-type]
        reason=ReportReason.CONDITION_FAILED,
    )
    r = server.report(dev, data)
    assert r.status_code == 201
    assert r.json()["reason"] == "condition-failed"
    st = server.status(camp["id"])
    assert st["counts"]["failed"] == 1
    assert st["failure_reasons"] == {"condition-failed": 1}
    reports = server.client.get(
        f"/api/v1/devices/{dev.device_id}/reports", headers=server.headers()
    ).json()
    assert reports[0]["reason"] == "condition-failed"
    assert reports[0]["campaign_id"] == camp["id"]


def test_report_is_stored_once(server: Server) -> None:
    [dev] = server.register(1)
    rel_id, env = server.release(2)
    camp = server.campaign(rel_id)
    offer = offer_for(server, dev, sequence_number=1)
    nonce = bytes.fromhex(offer["report_nonce"])  # type: ignore[arg-type]
    first = server.report(dev, make_report(env, dev.key, nonce=nonce))
    assert first.status_code == 201
    # the same report again, and the same nonce in a re-signed report: duplicates
    again = server.report(dev, make_report(env, dev.key, nonce=nonce))
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["report_id"] == first.json()["report_id"]
    assert reports_stored(server) == 1
    assert server.status(camp["id"])["counts"]["installed"] == 1
    # without a nonce: the same signed report bytes are one report
    data = make_report(env, dev.key)
    assert server.report(dev, data).status_code == 201
    assert server.report(dev, data).json()["duplicate"] is True
    assert reports_stored(server) == 2


def test_report_nonce_must_be_ours_and_fresh(server: Server) -> None:
    a, b = server.register(2)
    rel_id, env = server.release(2)
    server.campaign(rel_id)
    offer_a = offer_for(server, a, sequence_number=1)
    nonce_a = bytes.fromhex(offer_a["report_nonce"])  # type: ignore[arg-type]
    # b cannot use a's nonce, and nobody can invent one
    assert server.report(b, make_report(env, b.key, nonce=nonce_a)).status_code == 422
    assert server.report(a, make_report(env, a.key, nonce=b"\0" * 32)).status_code == 422
    assert server.report(a, make_report(env, a.key, nonce=b"short")).status_code == 422
    old = issue_nonce(server.state.nonce_secret, 1, server.clock().timestamp() - 30 * 86400)
    r = server.report(a, make_report(env, a.key, nonce=old))
    assert r.status_code == 422 and "expired" in r.text
    assert reports_stored(server) == 0


def test_reports_must_verify_with_the_devices_key(server: Server) -> None:
    a, b = server.register(2)
    rel_id, env = server.release(2)
    server.campaign(rel_id)
    offer_for(server, a, sequence_number=1)
    # signed by b, uploaded by a
    r = server.report(a, make_report(env, b.key))
    assert r.status_code == 422
    assert r.json()["detail"]["reason"] == "unauthorised"
    stranger, _ = device_keypair()
    assert server.report(a, make_report(env, stranger)).status_code == 422
    unsigned = SuitReport("", env.authentication.digest, (), None).encode()
    assert server.report(a, unsigned).status_code == 422
    for junk in (b"\xff", b"\xd2\x84", b"\xa0", b"\x00" * 100):
        assert server.report(a, junk).status_code == 422
    assert server.report(a, b"").status_code == 422
    assert reports_stored(server) == 0


def test_report_transport_errors(tmp_path: Path, db_url: str) -> None:
    from .conftest import new_server

    gen = new_server(tmp_path, db_url, max_report=2048)
    server = next(gen)
    try:
        [dev] = server.register(1)
        env = release_envelope(2, payload_bytes())
        r = server.client.post(
            "/device/v1/reports",
            content=b"x" * 4096,
            headers={**dev.headers, "Content-Type": "application/cose"},
        )
        assert r.status_code == 413

        def chunks() -> object:
            for _ in range(10):
                yield b"x" * 1000

        r = server.client.post(
            "/device/v1/reports",
            content=chunks(),  # type: ignore[arg-type]
            headers={**dev.headers, "Content-Type": "application/cose"},
        )
        assert r.status_code == 413
        r = server.client.post(
            "/device/v1/reports",
            content=make_report(env, dev.key),
            headers={**dev.headers, "Content-Type": "text/plain"},
        )
        assert r.status_code == 415
        assert reports_stored(server) == 0
    finally:
        gen.close()


def test_report_about_an_unknown_manifest_is_kept(server: Server) -> None:
    [dev] = server.register(1)
    env = release_envelope(9, payload_bytes())
    r = server.report(dev, make_report(env, dev.key, reason=ReportReason.UNAUTHORISED))
    assert r.status_code == 201
    assert r.json()["campaign_id"] is None and r.json()["deployment_state"] is None
    shown = server.client.get(f"/api/v1/devices/{dev.device_id}", headers=server.headers()).json()
    assert shown["last_report"]["reason"] == "unauthorised"


@pytest.mark.parametrize("comp_digest", [None, "sha256:" + "ab" * 32])
def test_component_state_from_checkin(server: Server, comp_digest: str | None) -> None:
    [dev] = server.register(1)
    comps = [{"component": "[h'00']", "sequence_number": 4, "digest": comp_digest}]
    assert server.checkin(dev, sequence_number=4, components=comps).status_code == 204
    shown = server.client.get(f"/api/v1/devices/{dev.device_id}", headers=server.headers()).json()
    assert shown["components"][0]["sequence_number"] == 4
    assert shown["components"][0]["digest"] == comp_digest
    assert any(e["kind"] == "version" for e in shown["history"])
    newer = [
        {"component": "[h'00']", "sequence_number": 5, "digest": "sha256:" + "cd" * 32},
        {"component": "[h'01']", "sequence_number": 1},
    ]
    assert server.checkin(dev, sequence_number=5, components=newer).status_code == 204
    shown = server.client.get(f"/api/v1/devices/{dev.device_id}", headers=server.headers()).json()
    assert [(c["component"], c["sequence_number"]) for c in shown["components"]] == [
        ("[h'00']", 5),
        ("[h'01']", 1),
    ]
    assert shown["components"][0]["digest"] == "sha256:" + "cd" * 32
    assert shown["sequence_number"] == 5


def test_last_seen_is_written_in_batches(tmp_path: Path, db_url: str) -> None:
    from .conftest import new_server

    gen = new_server(tmp_path, db_url, last_seen_flush=60)
    server = next(gen)
    try:
        devs = server.register(3)
        for d in devs:
            assert server.checkin(d).status_code == 204
        assert len(server.state.last_seen) == 3

        def seen() -> list[object]:
            return [
                server.client.get(
                    f"/api/v1/devices/{d.device_id}", headers=server.headers()
                ).json()["last_seen_at"]
                for d in devs
            ]

        assert seen() == [None, None, None]
        assert server.state.last_seen.flush(server.state.db.write_connection) == 3
        assert all(seen())
        assert server.state.last_seen.flush(server.state.db.write_connection) == 0
        # a check-in that changes something is written at once, not batched
        assert server.checkin(devs[0], sequence_number=3).status_code == 204
        assert len(server.state.last_seen) == 0
    finally:
        gen.close()


def test_transport_neutral_handlers(server: Server) -> None:
    """The handlers other front ends (CoAP) call with a device they authenticated."""
    import asyncio
    from types import SimpleNamespace

    from fastapi import HTTPException, Response
    from fastapi.security import HTTPAuthorizationCredentials

    from suitkit.server import api_device
    from suitkit.server.auth import device_caller
    from suitkit.server.schemas import CheckIn

    class FakeRequest:
        def __init__(
            self, method: str = "POST", headers: dict[str, str] | None = None, body: bytes = b""
        ) -> None:
            self.app = SimpleNamespace(state=SimpleNamespace(suitkit=server.state))
            self.base_url = "coap://127.0.0.1:5683"
            self.method = method
            self.headers = headers or {}
            self._body = body

        async def body(self) -> bytes:
            return self._body

    [dev] = server.register(1)
    rel_id, env = server.release(2)
    server.campaign(rel_id)
    creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=dev.token)
    caller = device_caller(FakeRequest(), creds)  # type: ignore[arg-type]
    assert caller.device_id == dev.device_id
    with pytest.raises(HTTPException) as info:
        device_caller(
            FakeRequest(),
            HTTPAuthorizationCredentials(  # type: ignore[arg-type]
                scheme="Bearer", credentials="skd_x"
            ),
        )
    assert info.value.status_code == 401
    body = CheckIn.model_validate(dev.identity(sequence_number=1))
    offer = api_device.checkin(body, FakeRequest(), caller)  # type: ignore[arg-type]
    assert not isinstance(offer, Response)
    assert offer.envelope.url.startswith("coap://127.0.0.1:5683/device/v1/files/")
    resp = api_device.download(offer.envelope.sha256, FakeRequest("GET"), caller)  # type: ignore[arg-type]
    assert resp.status_code == 200 and resp.headers["content-length"] == str(len(env.encode()))
    with pytest.raises(HTTPException) as info:
        api_device.download("0" * 64, FakeRequest("GET"), caller)  # type: ignore[arg-type]
    assert info.value.status_code == 404
    st = server.status(offer.campaign_id)
    assert st["counts"]["downloading"] == 1
    report = make_report(env, dev.key, nonce=bytes.fromhex(offer.report_nonce))
    out = Response()
    req = FakeRequest(headers={"content-type": "application/cose"}, body=report)
    ack = asyncio.run(api_device.upload_report(req, caller, out))  # type: ignore[arg-type]
    assert ack.success and not ack.duplicate
    again = asyncio.run(api_device.upload_report(req, caller, out))  # type: ignore[arg-type]
    assert again.duplicate and out.status_code == 200
