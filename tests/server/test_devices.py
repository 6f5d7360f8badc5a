"""Device registration, bulk import, groups and tags, status."""

from __future__ import annotations

import csv
import io
import json
import uuid

from suitkit.cose.keys import CoseKey
from suitkit.format.codepoints import CoseAlgorithm

from .conftest import CLASS, VENDOR, Server, device_keypair


def body(**kw: object) -> dict[str, object]:
    _, pem = device_keypair()
    out: dict[str, object] = {
        "device_id": str(uuid.uuid4()),
        "vendor_id": VENDOR,
        "class_id": CLASS,
        "public_key": pem,
    }
    out.update(kw)
    return out


def test_register_returns_the_token_once(server: Server) -> None:
    b = body(name="dev 1", group="lab", tags=["eu", "beta"])
    r = server.client.post("/api/v1/devices", json=b, headers=server.headers())
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["token"].startswith("skd_")
    assert d["group"] == "lab" and d["tags"] == ["beta", "eu"]
    shown = server.client.get(
        f"/api/v1/devices/{b['device_id']}", headers=server.headers("viewer")
    ).json()
    assert "token" not in shown
    assert shown["token_prefix"] == d["token"][:12]
    assert shown["history"][0]["kind"] == "registered"
    assert shown["last_report"] is None
    # the same device again
    again = server.client.post("/api/v1/devices", json=b, headers=server.headers())
    assert again.status_code == 409


def test_register_refuses_bad_keys_and_ids(server: Server) -> None:
    c, h = server.client, server.headers()
    private = CoseKey.generate(CoseAlgorithm.ES256).to_pem(private=True).decode()
    r = c.post("/api/v1/devices", json=body(public_key=private), headers=h)
    assert r.status_code == 422
    assert "private" in r.text
    assert c.post("/api/v1/devices", json=body(public_key="junk"), headers=h).status_code == 422
    assert c.post("/api/v1/devices", json=body(device_id="nope"), headers=h).status_code == 422
    assert c.post("/api/v1/devices", json=body(tags=["no spaces"]), headers=h).status_code == 422
    assert c.post("/api/v1/devices", json=body(extra=1), headers=h).status_code == 422
    assert c.get("/api/v1/devices", headers=h).json() == []


def test_import_csv_all_or_nothing(server: Server) -> None:
    rows = [body(group="fleet-a", tags="t1;t2") for _ in range(20)]
    out = io.StringIO()
    w = csv.DictWriter(
        out, fieldnames=["device_id", "vendor_id", "class_id", "public_key", "group", "tags"]
    )
    w.writeheader()
    w.writerows(rows)
    r = server.client.post(
        "/api/v1/devices/import",
        content=out.getvalue().encode(),
        headers={**server.headers(), "Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["created"] == 20
    assert len({d["token"] for d in r.json()["devices"]}) == 20
    listed = server.client.get(
        "/api/v1/devices?group=fleet-a&tag=t2&limit=1000", headers=server.headers()
    ).json()
    assert len(listed) == 20
    groups = server.client.get("/api/v1/groups", headers=server.headers()).json()
    assert groups == [
        {"id": groups[0]["id"], "name": "fleet-a", "description": None, "devices": 20}
    ]
    # one bad row: nothing of the batch is registered
    bad = [body(), body(public_key="junk"), body()]
    r = server.client.post("/api/v1/devices/import", json=bad, headers=server.headers())
    assert r.status_code == 422
    assert r.json()["detail"]["problems"][0]["row"] == 1
    assert (
        len(server.client.get("/api/v1/devices?limit=1000", headers=server.headers()).json()) == 20
    )
    # duplicates inside the batch, or already registered
    dup = body()
    r = server.client.post(
        "/api/v1/devices/import", json={"devices": [dup, dup]}, headers=server.headers()
    )
    assert r.status_code == 422
    r = server.client.post(
        "/api/v1/devices/import", json=[{**rows[0], "tags": []}], headers=server.headers()
    )
    assert r.status_code == 409


def test_import_errors(server: Server) -> None:
    c, h = server.client, server.headers()
    assert (
        c.post(
            "/api/v1/devices/import", content=b"a,b\n1,2", headers={**h, "Content-Type": "text/csv"}
        ).status_code
        == 400
    )
    assert (
        c.post(
            "/api/v1/devices/import",
            content=b"{",
            headers={**h, "Content-Type": "application/json"},
        ).status_code
        == 400
    )
    assert (
        c.post(
            "/api/v1/devices/import", content=b"x", headers={**h, "Content-Type": "image/png"}
        ).status_code
        == 415
    )
    assert (
        c.post(
            "/api/v1/devices/import", content=b"\xff\xfe", headers={**h, "Content-Type": "text/csv"}
        ).status_code
        == 400
    )
    assert c.post("/api/v1/devices/import", json=[], headers=h).status_code == 422
    assert c.post("/api/v1/devices/import", json=[{"device_id": 1}], headers=h).status_code == 422


def test_update_group_tags_key_and_delete(server: Server) -> None:
    [dev] = server.register(1)
    c, h = server.client, server.headers()
    r = c.patch(
        f"/api/v1/devices/{dev.device_id}",
        json={"group": "g1", "tags": ["a"], "name": "n"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["group"], r.json()["tags"], r.json()["name"]) == ("g1", ["a"], "n")
    r = c.patch(f"/api/v1/devices/{dev.device_id}", json={"group": "", "tags": []}, headers=h)
    assert (r.json()["group"], r.json()["tags"]) == (None, [])
    _, pem = device_keypair()
    assert (
        c.patch(f"/api/v1/devices/{dev.device_id}", json={"public_key": pem}, headers=h).status_code
        == 200
    )
    assert (
        c.patch(f"/api/v1/devices/{dev.device_id}", json={"public_key": "x"}, headers=h).status_code
        == 422
    )
    assert c.get("/api/v1/devices/not-a-uuid", headers=h).status_code == 404
    assert c.get(f"/api/v1/devices/{uuid.uuid4()}", headers=h).status_code == 404
    assert c.delete(f"/api/v1/devices/{dev.device_id}", headers=h).status_code == 204
    assert c.get(f"/api/v1/devices/{dev.device_id}", headers=h).status_code == 404
    assert server.checkin(dev).status_code == 401


def test_groups(server: Server) -> None:
    c, h = server.client, server.headers()
    assert (
        c.post("/api/v1/groups", json={"name": "g", "description": "d"}, headers=h).status_code
        == 201
    )
    assert c.post("/api/v1/groups", json={"name": "g"}, headers=h).status_code == 409
    assert c.post("/api/v1/groups", json={"name": "../x"}, headers=h).status_code == 422
    server.register(2, group="g")
    assert c.get("/api/v1/groups", headers=h).json()[0]["devices"] == 2
    assert c.delete("/api/v1/groups/g", headers=h).status_code == 204
    assert c.delete("/api/v1/groups/g", headers=h).status_code == 404
    assert all(d["group"] is None for d in c.get("/api/v1/devices", headers=h).json())


def test_list_filters(server: Server) -> None:
    other = "11111111-2222-5333-8444-555555555555"
    server.register(2)
    server.register(3, class_id=other, tags=["x"])
    c, h = server.client, server.headers("viewer")
    assert len(c.get(f"/api/v1/devices?class_id={other}", headers=h).json()) == 3
    assert len(c.get("/api/v1/devices?tag=x", headers=h).json()) == 3
    assert len(c.get("/api/v1/devices?limit=2", headers=h).json()) == 2
    assert len(c.get("/api/v1/devices?limit=2&offset=4", headers=h).json()) == 1
    assert c.get("/api/v1/devices?limit=0", headers=h).status_code == 422
    assert json.loads(c.get("/api/v1/devices?group=none", headers=h).text) == []
