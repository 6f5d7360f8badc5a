"""The dashboard: sign-in, pages, campaign controls; and one run in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from suitkit.format.codepoints import ReportReason

from .conftest import (
    AUTHOR_PUB,
    Server,
    device_keypair,
    make_report,
    payload_bytes,
    release_envelope,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def login(server: Server, role: str = "admin") -> None:
    r = server.client.post("/api/v1/login-codes", headers=server.headers(role))
    assert r.status_code == 201
    url = httpx.URL(r.json()["url"])
    got = server.client.get(f"{url.path}?{url.query.decode()}", follow_redirects=False)
    assert got.status_code == 303, got.text
    assert "suitkit_session" in got.headers["set-cookie"]
    assert "HttpOnly" in got.headers["set-cookie"]


def populated(server: Server) -> dict[str, object]:
    devs = server.register(5, group="lab")
    rel, env = server.release(2)
    camp = server.campaign(rel, waves=[40, 100], failure_threshold=0.9)
    done = []
    for d in devs:
        r = server.checkin(d, sequence_number=1)
        if r.status_code == 200:
            done.append(d)
    nonce = bytes.fromhex(server.checkin(done[0], sequence_number=1).json()["report_nonce"])
    server.report(done[0], make_report(env, done[0].key, nonce=nonce))
    nonce = bytes.fromhex(server.checkin(done[1], sequence_number=1).json()["report_nonce"])
    server.report(
        done[1], make_report(env, done[1].key, nonce=nonce, reason=ReportReason.CONDITION_FAILED)
    )
    return {"devices": devs, "release": rel, "campaign": camp, "env": env}


def test_pages_need_a_session(server: Server) -> None:
    r = server.client.get("/ui/campaigns", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=/ui/campaigns"
    page = server.client.get("/ui/login")
    assert page.status_code == 200 and "API token" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # an API token in the Authorization header is not a dashboard session
    assert (
        server.client.get("/ui/", headers=server.headers(), follow_redirects=False).status_code
        == 303
    )


def test_login_link_is_single_use(server: Server) -> None:
    r = server.client.post("/api/v1/login-codes", headers=server.headers("viewer"))
    url = httpx.URL(r.json()["url"])
    path = f"{url.path}?{url.query.decode()}&next=/ui/devices"
    first = server.client.get(path, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/ui/devices"
    second = server.client.get(path, follow_redirects=False)
    assert second.status_code == 401
    server.client.cookies.clear()
    assert server.client.get("/ui/login?code=skl_bogus").status_code == 401
    # links expire
    r = server.client.post("/api/v1/login-codes", headers=server.headers("viewer"))
    url = httpx.URL(r.json()["url"])
    server.clock.advance(minutes=6)
    assert server.client.get(f"{url.path}?{url.query.decode()}").status_code == 401


def test_login_form_and_logout(server: Server) -> None:
    bad = server.client.post("/ui/login", data={"token": "skt_wrong", "next": "/ui/"})
    assert bad.status_code == 401
    ok = server.client.post(
        "/ui/login",
        data={"token": server.tokens["viewer"], "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/"
    assert server.client.get("/ui/").status_code == 200
    out = server.client.post("/ui/logout", follow_redirects=False)
    assert out.status_code == 303
    assert server.client.get("/ui/", follow_redirects=False).status_code == 303


def test_revoking_the_token_ends_the_session(server: Server) -> None:
    r = server.client.post(
        "/api/v1/tokens", json={"name": "t", "role": "viewer"}, headers=server.headers()
    )
    tok = r.json()
    server.client.post("/ui/login", data={"token": tok["token"]})
    assert server.client.get("/ui/", follow_redirects=False).status_code == 200
    server.client.delete(f"/api/v1/tokens/{tok['id']}", headers=server.headers())
    assert server.client.get("/ui/", follow_redirects=False).status_code == 303


def test_pages(server: Server) -> None:
    data = populated(server)
    login(server, "viewer")
    c = server.client
    camp = data["campaign"]
    overview = c.get("/ui/")
    assert overview.status_code == 200
    assert re.search(r'id="count-devices">5<', overview.text)
    page = c.get(f"/ui/campaigns/{camp['id']}")  # type: ignore[index]
    assert page.status_code == 200
    html = page.text
    assert 'id="bar-total"' in html and 'data-installed="1"' in html and 'data-failed="1"' in html
    assert 'id="wave-1" class="open"' in html and 'id="wave-2" class="open"' in html  # wave 1 done
    assert "condition-failed" in html
    assert "Pause" not in html  # a viewer gets no controls
    assert c.get(f"/ui/campaigns/{camp['id']}?state=failed").status_code == 200  # type: ignore[index]
    assert c.get("/ui/campaigns").status_code == 200
    rel = c.get(f"/ui/releases/{data['release']}")
    assert rel.status_code == 200
    assert "Sequence number 2" in rel.text and "manifest-sequence-number" in rel.text
    assert c.get("/ui/releases").status_code == 200
    devs = c.get("/ui/devices?group=lab")
    assert devs.status_code == 200 and "(5)" in devs.text
    dev = data["devices"][0]  # type: ignore[index]
    assert c.get(f"/ui/devices/{dev.device_id}").status_code == 200
    # report history of a device that reported
    dev_pages = [c.get(f"/ui/devices/{d.device_id}").text for d in data["devices"]]  # type: ignore[attr-defined]
    reported = [p for p in dev_pages if "/ui/reports/" in p]
    assert len(reported) == 2
    rid = re.search(r"/ui/reports/(\d+)", reported[0]).group(1)  # type: ignore[union-attr]
    rep = c.get(f"/ui/reports/{rid}")
    assert rep.status_code == 200 and "result:" in rep.text
    for missing in (
        "/ui/campaigns/99",
        "/ui/releases/99",
        "/ui/reports/99",
        "/ui/devices/00000000-0000-0000-0000-000000000000",
    ):
        assert c.get(missing).status_code == 404


def test_html_is_escaped(server: Server) -> None:
    _, pem = device_keypair()
    import uuid

    dev_id = str(uuid.uuid4())
    server.client.post(
        "/api/v1/devices",
        json={
            "device_id": dev_id,
            "vendor_id": "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
            "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
            "public_key": pem,
            "name": "<script>alert(1)</script>",
        },
        headers=server.headers(),
    )
    login(server)
    html = server.client.get(f"/ui/devices/{dev_id}").text
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_campaign_controls_need_csrf_and_role(server: Server) -> None:
    data = populated(server)
    cid = data["campaign"]["id"]  # type: ignore[index]
    login(server, "release")
    page = server.client.get(f"/ui/campaigns/{cid}").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    assert server.client.post(f"/ui/campaigns/{cid}/pause", data={"csrf": "x"}).status_code == 403
    r = server.client.post(
        f"/ui/campaigns/{cid}/pause", data={"csrf": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    assert server.status(cid)["state"] == "paused"
    assert server.client.post(f"/ui/campaigns/{cid}/resume", data={"csrf": csrf}).status_code == 200
    assert server.status(cid)["state"] == "running"
    assert (
        server.client.post(f"/ui/campaigns/{cid}/explode", data={"csrf": csrf}).status_code == 404
    )
    server.client.cookies.clear()
    login(server, "viewer")
    page = server.client.get(f"/ui/campaigns/{cid}").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is None
    assert server.client.post(f"/ui/campaigns/{cid}/pause", data={"csrf": "0"}).status_code == 403


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium (Debian packages chromium, chromium-driver) is not installed",
)
def test_campaign_progress_in_headless_chromium(tmp_path: Path) -> None:
    """A real server process; the campaign page as Chromium renders it shows the progress."""
    from .live import LiveServer, admin_token

    data = tmp_path / "data"
    with LiveServer(data, trust=AUTHOR_PUB) as live:
        token = admin_token(data)
        h = {"Authorization": f"Bearer {token}"}
        c = httpx.Client(base_url=live.url, timeout=10)
        fw = payload_bytes(3000)
        env = release_envelope(2, fw)
        r = c.post(
            "/api/v1/releases",
            headers=h,
            files=[
                ("envelope", ("u.suit", env.encode(), "application/octet-stream")),
                ("payload", ("firmware.bin", fw, "application/octet-stream")),
            ],
        )
        assert r.status_code == 201, r.text
        rel = r.json()["id"]
        import uuid

        devices = []
        for _ in range(4):
            key, pem = device_keypair()
            dev_id = str(uuid.uuid4())
            r = c.post(
                "/api/v1/devices",
                headers=h,
                json={
                    "device_id": dev_id,
                    "vendor_id": "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
                    "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
                    "public_key": pem,
                },
            )
            devices.append((dev_id, r.json()["token"], key))
        camp = c.post(
            "/api/v1/campaigns",
            headers=h,
            json={
                "name": "browser test",
                "release_id": rel,
                "target": {"all": True},
                "waves": [50, 100],
                "failure_threshold": 0.9,
            },
        ).json()
        installed = failed = 0
        for dev_id, tok, key in devices:
            if installed + failed == 2:
                break  # wave 1 (2 devices) is done; wave 2 opens, stays untouched
            ident = {
                "vendor_id": "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
                "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
                "device_id": dev_id,
                "sequence_number": 1,
            }
            dh = {"Authorization": f"Bearer {tok}"}
            offer = c.post("/device/v1/checkin", json=ident, headers=dh)
            if offer.status_code != 200:
                continue
            nonce = bytes.fromhex(offer.json()["report_nonce"])
            reason = ReportReason.OPERATION_FAILED if installed else None
            rep = c.post(
                "/device/v1/reports",
                content=make_report(env, key, nonce=nonce, reason=reason),
                headers={**dh, "Content-Type": "application/cose"},
            )
            assert rep.status_code == 201
            installed, failed = installed + (reason is None), failed + (reason is not None)
        assert (installed, failed) == (1, 1)
        link = c.post("/api/v1/login-codes", headers=h).json()["url"]
        target = f"{link}&next=/ui/campaigns/{camp['id']}"
        profile = tmp_path / "chromium-profile"
        cmd = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ]
        dom = subprocess.run(
            [*cmd, "--dump-dom", target], capture_output=True, text=True, timeout=120
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        assert "Campaign" in html and "browser test" in html, html[:2000]
        assert 'id="bar-total"' in html
        assert 'data-installed="1"' in html and 'data-failed="1"' in html
        assert 'class="seg-installed"' in html and 'class="seg-failed"' in html
        assert "operation-failed" in html
        shot = tmp_path / "campaign.png"
        profile2 = tmp_path / "chromium-profile-2"
        link2 = c.post("/api/v1/login-codes", headers=h).json()["url"]
        subprocess.run(
            [
                *[
                    a if not a.startswith("--user-data-dir") else f"--user-data-dir={profile2}"
                    for a in cmd
                ],
                f"--screenshot={shot}",
                "--window-size=1280,900",
                f"{link2}&next=/ui/campaigns/{camp['id']}",
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        assert shot.stat().st_size > 1000
        c.close()
