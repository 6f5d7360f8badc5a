"""Release upload: verified against the trust anchors before anything is stored."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from suitkit.author.signing import sign_envelope
from suitkit.cose.keys import CoseKey
from suitkit.format.codepoints import CoseAlgorithm, ManifestKey
from suitkit.server.models import Release, ReleaseFile

from .conftest import (
    CLASS,
    VECTORS,
    Server,
    manifest_digest_text,
    payload_bytes,
    release_envelope,
)


def stored_blobs(server: Server) -> list[Path]:
    return [p for p in (server.state.settings.data / "blobs").rglob("*") if p.is_file()]


def leftovers(server: Server) -> list[Path]:
    return list((server.state.settings.data / "tmp").iterdir())


def release_count(server: Server) -> int:
    with server.state.db.read() as s:
        return s.scalar(select(func.count()).select_from(Release)) or 0


def assert_nothing_stored(server: Server) -> None:
    assert release_count(server) == 0
    assert stored_blobs(server) == []
    assert leftovers(server) == []


def test_upload_stores_envelope_and_payload(server: Server) -> None:
    fw = payload_bytes(10000, tag=b"v2")
    env = release_envelope(2, fw)
    r = server.upload(env, {"firmware.bin": fw}, name="v2")
    assert r.status_code == 201, r.text
    rel = r.json()
    assert rel["name"] == "v2"
    assert rel["sequence_number"] == 2
    assert rel["manifest_digest"] == manifest_digest_text(env)
    assert rel["components"] == [
        {
            "index": 0,
            "component": "[h'00']",
            "vendor_id": rel["components"][0]["vendor_id"],
            "class_id": CLASS,
        }
    ]
    kinds = {f["kind"]: f for f in rel["files"]}
    assert kinds["payload"]["sha256"] == hashlib.sha256(fw).hexdigest()
    assert kinds["payload"]["uri"] == "https://updates.example.com/fw/firmware.bin"
    assert kinds["envelope"]["sha256"] == hashlib.sha256(env.encode()).hexdigest()
    assert rel["signers"][0]["verified"] is True
    assert rel["missing_payloads"] == []
    # the `suitkit show --json` tree
    assert rel["show"]["manifest"]["manifest-sequence-number"] == 2
    # content-addressed on disk
    blob = server.state.blobs.path(kinds["payload"]["sha256"])
    assert blob.read_bytes() == fw
    assert blob.parent.name == kinds["payload"]["sha256"][:2]
    assert leftovers(server) == []
    # list, show, download the envelope
    h = server.headers("viewer")
    assert [x["id"] for x in server.client.get("/api/v1/releases", headers=h).json()] == [rel["id"]]
    shown = server.client.get(f"/api/v1/releases/{rel['id']}", headers=h).json()
    assert shown["show"] == rel["show"]
    e = server.client.get(f"/api/v1/releases/{rel['id']}/envelope", headers=h)
    assert e.content == env.encode()
    assert server.client.get("/api/v1/releases/999", headers=h).status_code == 404


def test_release_role_can_upload_viewer_cannot(server: Server) -> None:
    fw = payload_bytes()
    env = release_envelope(2, fw)
    assert server.upload(env, {"firmware.bin": fw}, role="viewer").status_code == 403
    assert server.upload(env, {"firmware.bin": fw}, role="release").status_code == 201


def test_payloads_may_be_left_out(server: Server) -> None:
    env = release_envelope(3, payload_bytes())
    r = server.upload(env)
    assert r.status_code == 201, r.text
    assert r.json()["missing_payloads"] == ["https://updates.example.com/fw/firmware.bin"]


def test_duplicate_manifest_is_a_conflict(server: Server) -> None:
    fw = payload_bytes()
    env = release_envelope(2, fw)
    assert server.upload(env, {"firmware.bin": fw}).status_code == 201
    r = server.upload(env, {"firmware.bin": fw})
    assert r.status_code == 409
    assert r.json()["detail"]["release_id"] >= 1


def test_unsigned_envelope_is_refused(server: Server) -> None:
    fw = payload_bytes()
    r = server.upload(release_envelope(2, fw, key=None), {"firmware.bin": fw})
    assert r.status_code == 422
    assert "not authenticated" in r.json()["detail"]["message"]
    assert_nothing_stored(server)


def test_unknown_signer_is_refused(server: Server) -> None:
    fw = payload_bytes()
    env = release_envelope(2, fw, key=None)
    env = sign_envelope(env, [CoseKey.generate(CoseAlgorithm.ESP256)])
    r = server.upload(env, {"firmware.bin": fw})
    assert r.status_code == 422
    assert r.json()["detail"]["reason"] == "unauthorised"
    assert_nothing_stored(server)


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xff", b"not cbor at all", bytes.fromhex("d86ba0"), b"\xa1\x02\x40"]
)
def test_malformed_envelope_is_refused(server: Server, data: bytes) -> None:
    r = server.client.post(
        "/api/v1/releases",
        files=[("envelope", ("x.suit", data, "application/octet-stream"))],
        headers=server.headers(),
    )
    assert r.status_code == 422, r.text
    assert_nothing_stored(server)


def test_tampered_manifest_is_refused(server: Server) -> None:
    fw = payload_bytes()
    data = bytearray(release_envelope(2, fw).encode())
    data[-5] ^= 1  # inside the manifest: the digest no longer matches
    r = server.client.post(
        "/api/v1/releases",
        files=[("envelope", ("x.suit", bytes(data), "application/octet-stream"))],
        headers=server.headers(),
    )
    assert r.status_code == 422
    assert_nothing_stored(server)


def test_payload_digest_mismatch_is_refused(server: Server) -> None:
    fw = payload_bytes(4096)
    env = release_envelope(2, fw)
    other = payload_bytes(4096, fill=0x11)  # right size, wrong content
    r = server.upload(env, {"firmware.bin": other})
    assert r.status_code == 422
    assert "does not match" in r.json()["detail"]["message"]
    assert_nothing_stored(server)


def test_payload_size_mismatch_is_refused(server: Server) -> None:
    fw = payload_bytes(4096)
    env = release_envelope(2, fw)
    r = server.upload(env, {"firmware.bin": fw + b"x"})
    assert r.status_code == 422
    assert_nothing_stored(server)


def test_payload_that_matches_no_uri_is_refused(server: Server) -> None:
    fw = payload_bytes()
    env = release_envelope(2, fw)
    r = server.upload(env, {"other.bin": fw})
    assert r.status_code == 422
    assert "matches no image" in r.json()["detail"]["message"]
    assert_nothing_stored(server)


def test_explicit_mapping(server: Server) -> None:
    fw = payload_bytes()
    env = release_envelope(2, fw)
    uri = "https://updates.example.com/fw/firmware.bin"
    r = server.upload(env, {"build-42.bin": fw}, mapping={"build-42.bin": uri})
    assert r.status_code == 201, r.text
    assert {f["name"]: f["uri"] for f in r.json()["files"]}["build-42.bin"] == uri
    env3 = release_envelope(3, fw)
    r = server.upload(env3, {"by-index.bin": fw}, mapping={"by-index.bin": 0})
    assert r.status_code == 201, r.text
    bad = server.upload(release_envelope(4, fw), {"a.bin": fw}, mapping={"b.bin": 0})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "name",
    [
        "../firmware.bin",
        "..",
        ".hidden",
        "a/b.bin",
        "a\\b.bin",
        "x" * 129,
        "fw bin",
        "%2e%2e",
        "fw\x00.bin",
    ],
)
def test_path_tricks_in_payload_names_are_refused(server: Server, name: str) -> None:
    fw = payload_bytes()
    env = release_envelope(2, fw)
    r = server.upload(env, {name: fw}, mapping=None)
    assert r.status_code == 400, r.text
    assert "not a plain file name" in r.text
    assert_nothing_stored(server)


def test_severed_members(server: Server) -> None:
    fw = payload_bytes()
    full = release_envelope(5, fw, severable=["install", "text"])
    assert set(full.severable) == {ManifestKey.INSTALL, ManifestKey.TEXT}
    small = full.sever()
    members = [full.severable[k].encoded for k in sorted(full.severable)]
    # the install member carries the URI: without it the payload matches nothing
    assert server.upload(small, {"firmware.bin": fw}).status_code == 422
    r = server.upload(small, {"firmware.bin": fw}, severed=members)
    assert r.status_code == 201, r.text
    names = sorted(f["name"] for f in r.json()["files"] if f["kind"] == "member")
    assert names == ["install", "text"]
    # a member that belongs to another manifest is refused
    other = release_envelope(6, fw, severable=["text"])
    r = server.upload(other.sever(), severed=[members[1]])  # the text of release 5
    assert r.status_code == 422


def test_envelope_that_still_carries_its_severable_members_is_accepted(server: Server) -> None:
    """The install member in the envelope (not severed yet) names the payload's URI."""
    fw = payload_bytes()
    full = release_envelope(7, fw, severable=["install", "text"])
    r = server.upload(full, {"firmware.bin": fw})
    assert r.status_code == 201, r.text


def test_spec_example_with_two_payloads(server: Server, tmp_path: Path) -> None:
    """Example 5 of the manifest spec fetches two images; payloads whose digests do not match
    the spec's placeholder digests are refused, the envelope alone is accepted."""
    data = (VECTORS / "example5.suit").read_bytes()
    files = [
        ("envelope", ("example5.suit", data, "application/octet-stream")),
        ("payload", ("file1.bin", b"\0" * 34768, "application/octet-stream")),
    ]
    r = server.client.post("/api/v1/releases", files=files, headers=server.headers())
    assert r.status_code == 422
    r = server.client.post("/api/v1/releases", files=files[:1], headers=server.headers())
    assert r.status_code == 201, r.text
    assert r.json()["missing_payloads"] == [
        "http://example.com/file1.bin",
        "http://example.com/file2.bin",
    ]


def test_malformed_uploads(server: Server) -> None:
    h = server.headers()
    c = server.client
    assert (
        c.post(
            "/api/v1/releases", content=b"{}", headers={**h, "Content-Type": "application/json"}
        ).status_code
        == 415
    )
    bad = c.post(
        "/api/v1/releases",
        content=b"--xx\r\ngarbage",
        headers={**h, "Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert bad.status_code == 400
    no_env = c.post("/api/v1/releases", files=[("payload", ("a.bin", b"1", "x/y"))], headers=h)
    assert no_env.status_code == 400
    extra = c.post(
        "/api/v1/releases",
        files=[("envelope", ("e", b"1", "x/y")), ("sneaky", ("s", b"1", "x/y"))],
        headers=h,
    )
    assert extra.status_code == 400
    assert_nothing_stored(server)


def test_oversized_upload_is_refused_before_storing(tmp_path: Path, db_url: str) -> None:
    from .conftest import new_server

    gen = new_server(tmp_path, db_url, max_payload=1000, max_envelope=2000)
    server = next(gen)
    try:
        fw = payload_bytes(1500)
        env = release_envelope(2, fw)
        r = server.upload(env, {"firmware.bin": fw})
        assert r.status_code == 413
        assert_nothing_stored(server)
        # the whole request beyond the route's limit: refused from its Content-Length
        big = server.client.post(
            "/api/v1/releases",
            content=b"x" * (2 << 20),
            headers={**server.headers(), "Content-Type": "multipart/form-data; boundary=x"},
        )
        assert big.status_code == 413
    finally:
        gen.close()


def test_no_trust_anchor_refuses_releases(tmp_path: Path, db_url: str) -> None:
    from .conftest import new_server

    gen = new_server(tmp_path, db_url)
    server = next(gen)
    try:
        server.state.trusted_keys.clear()
        fw = payload_bytes()
        r = server.upload(release_envelope(2, fw), {"firmware.bin": fw})
        assert r.status_code == 503
    finally:
        gen.close()


def test_file_rows(server: Server) -> None:
    rel, _ = server.release(2)
    with server.state.db.read() as s:
        kinds = sorted(s.scalars(select(ReleaseFile.kind).where(ReleaseFile.release_id == rel)))
    assert kinds == ["envelope", "payload"]
