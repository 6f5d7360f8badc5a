"""Service endpoints: health, metrics, OpenAPI; structured logs."""

from __future__ import annotations

import json
import logging

import pytest

from suitkit.server.logs import JsonFormatter, fields

from .conftest import Server


def test_healthz_and_docs(server: Server) -> None:
    h = server.client.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    assert server.client.get("/docs").status_code == 200
    spec = server.client.get("/openapi.json").json()
    paths = set(spec["paths"])
    for p in (
        "/api/v1/releases",
        "/api/v1/devices",
        "/api/v1/devices/import",
        "/api/v1/campaigns",
        "/api/v1/campaigns/{campaign_id}/pause",
        "/device/v1/checkin",
        "/device/v1/files/{sha256}",
        "/device/v1/reports",
    ):
        assert p in paths, p
    assert not any(p.startswith("/ui") for p in paths)
    assert (
        "multipart/form-data" in spec["paths"]["/api/v1/releases"]["post"]["requestBody"]["content"]
    )
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert server.client.get("/", follow_redirects=False).headers["location"] == "/ui/"


def test_metrics(server: Server) -> None:
    [dev] = server.register(1)
    server.checkin(dev)
    rel, _ = server.release(2)
    server.campaign(rel)
    server.checkin(dev, sequence_number=1)
    text = server.client.get("/metrics").text
    assert server.client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert "# TYPE suitkit_device_checkins_total counter" in text
    assert 'suitkit_device_checkins_total{answer="nothing",' in text
    assert 'suitkit_device_checkins_total{answer="offer",' in text
    assert 'suitkit_release_uploads_total{outcome="stored",' in text
    assert "suitkit_devices 1" in text
    assert 'suitkit_campaigns{state="running"} 1' in text
    assert 'suitkit_campaign_devices{campaign="1",state="offered"} 1' in text
    assert (
        'suitkit_http_requests_total{route="/device/v1/checkin",method="POST",status="204",' in text
    )
    assert (
        'suitkit_http_request_duration_seconds_bucket{route="/device/v1/checkin",le="+Inf",' in text
    )
    for line in text.splitlines():  # every sample line: name{labels} value
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_json_logs(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    fmt = JsonFormatter()
    with caplog.at_level(logging.INFO, logger="suitkit.server"):
        server.release(2)
    stored = [r for r in caplog.records if r.getMessage() == "release stored"]
    assert stored
    line = json.loads(fmt.format(stored[0]))
    assert line["level"] == "info" and line["logger"] == "suitkit.server.api"
    assert line["release"] == 1 and "ts" in line
    rec = logging.LogRecord("suitkit.server", logging.ERROR, __file__, 1, "boom %s", ("x",), None)
    rec.__dict__.update(fields(device="d"))  # what logger.error(..., extra=fields(...)) does
    out = json.loads(fmt.format(rec))
    assert (out["msg"], out["level"], out["device"]) == ("boom x", "error", "d")
