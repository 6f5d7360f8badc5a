"""Tokens and roles: 401 without a valid credential, 403 without the right role."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from suitkit.server.models import ApiToken, Device
from suitkit.server.security import token_hash

from .conftest import Server


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer skt_nope"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer " + "skt_" + "A" * 43},
    ],
)
def test_operator_api_needs_a_valid_token(server: Server, headers: dict[str, str]) -> None:
    r = server.client.get("/api/v1/releases", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_roles(server: Server) -> None:
    c = server.client
    viewer, release = server.headers("viewer"), server.headers("release")
    assert c.get("/api/v1/devices", headers=viewer).status_code == 200
    assert c.post("/api/v1/groups", json={"name": "g"}, headers=viewer).status_code == 403
    assert c.post("/api/v1/groups", json={"name": "g"}, headers=release).status_code == 403
    assert c.post("/api/v1/groups", json={"name": "g"}, headers=server.headers()).status_code == 201
    assert c.get("/api/v1/tokens", headers=release).status_code == 403
    r = c.post("/api/v1/campaigns", json={}, headers=viewer)
    assert r.status_code == 403


def test_tokens_are_stored_hashed_and_revocable(server: Server) -> None:
    c = server.client
    r = c.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"}, headers=server.headers())
    assert r.status_code == 201
    token = r.json()["token"]
    assert token.startswith("skt_") and r.json()["prefix"] == token[:12]
    with server.state.db.read() as s:
        hashes = set(s.scalars(select(ApiToken.token_hash)))
    assert token_hash(token) in hashes and token not in hashes
    listed = c.get("/api/v1/tokens", headers=server.headers()).json()
    assert all("token" not in t for t in listed)
    h = {"Authorization": f"Bearer {token}"}
    assert c.get("/api/v1/releases", headers=h).status_code == 200
    assert c.delete(f"/api/v1/tokens/{r.json()['id']}", headers=server.headers()).status_code == 204
    assert c.get("/api/v1/releases", headers=h).status_code == 401
    assert c.delete("/api/v1/tokens/9999", headers=server.headers()).status_code == 404
    bad = c.post("/api/v1/tokens", json={"name": "x", "role": "root"}, headers=server.headers())
    assert bad.status_code == 422


def test_device_and_operator_tokens_do_not_mix(server: Server) -> None:
    [dev] = server.register(1)
    c = server.client
    assert c.get("/api/v1/releases", headers=dev.headers).status_code == 401
    r = c.post("/device/v1/checkin", json=dev.identity(), headers=server.headers())
    assert r.status_code == 401
    with server.state.db.read() as s:
        stored = s.scalar(select(Device.token_hash))
    assert stored == token_hash(dev.token)


def test_device_api_needs_a_device_token(server: Server) -> None:
    [dev] = server.register(1)
    c = server.client
    for headers in ({}, {"Authorization": "Bearer skd_wrong"}):
        assert c.post("/device/v1/checkin", json=dev.identity(), headers=headers).status_code == 401
        assert c.get("/device/v1/files/" + "0" * 64, headers=headers).status_code == 401
        assert c.post("/device/v1/reports", content=b"x", headers=headers).status_code == 401


def test_rotated_device_token(server: Server) -> None:
    [dev] = server.register(1)
    r = server.client.post(f"/api/v1/devices/{dev.device_id}/token", headers=server.headers())
    assert r.status_code == 200
    assert server.checkin(dev).status_code == 401
    dev.token = r.json()["token"]
    assert server.checkin(dev).status_code == 204
