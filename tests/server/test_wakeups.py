"""MQTT push wake-ups, server side (``mqtt-url``): a campaign that starts offering its update
to more devices (created running, resumed, a wave opened by an operator or by reports)
publishes to those devices' topics once the change is committed; a broker that is down costs
nothing but a warning. Against the Mosquitto broker on 127.0.0.1:1883 (skipped when it does
not answer)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suitkit.server import campaigns as camp
from suitkit.server.app import tick
from suitkit.server.config import ConfigError, Settings, load_settings
from suitkit.server.wakeups import Wakeups
from suitkit.transport.mqtt import MqttClient, wake_topic
from tests.conftest import MQTT_URL, needs_mqtt_broker

from .conftest import Device, Server, new_server
from .test_campaigns import offered, report

URL = MQTT_URL


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port  # nobody listens there once closed


class Listener:
    """A subscriber to every device's wake-up topic, on a thread (and event loop) of its own:
    the device ids woken, in order."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), f"cannot subscribe: {self._error!r}"

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by __init__ or the assertions
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with MqttClient.from_url(URL) as sub:
            await sub.subscribe(wake_topic("+"))
            self._ready.set()
            reader = asyncio.create_task(self._read(sub))
            await self._stop.wait()
            reader.cancel()

    async def _read(self, sub: MqttClient) -> None:
        async for topic, _payload in sub.messages():
            self.got.append(topic.split("/")[2])

    def woken(self, devices: list[Device], timeout: float = 10.0) -> list[str]:
        """Wait until each of ``devices`` was woken; then the wake-ups of all of them."""
        ids = {d.device_id for d in devices}
        deadline = time.monotonic() + timeout
        while not ids <= set(self.got) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ids <= set(self.got), f"not woken: {ids - set(self.got)}"
        return [d for d in self.got if d in ids]

    def more(self, n: int, start: int, timeout: float = 10.0) -> list[str]:
        """Wait for ``n`` more wake-ups than :attr:`got` held at ``start`` (taken before the
        action that publishes them: they may arrive before this is called); then those."""
        deadline = time.monotonic() + timeout
        while len(self.got) < start + n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.got[start:]

    def quiet(self, devices: list[Device], wait: float = 0.6) -> bool:
        """No wake-up for any of ``devices`` within ``wait`` seconds."""
        time.sleep(wait)
        return not {d.device_id for d in devices} & set(self.got)

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def listener() -> Iterator[Listener]:
    sub = Listener()
    try:
        yield sub
    finally:
        sub.close()


@pytest.fixture
def mqtt_server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    yield from new_server(tmp_path, db_url, mqtt_url=URL)


def wakeups(server: Server) -> Wakeups:
    w = server.client.app.state.wakeups  # type: ignore[attr-defined]
    assert isinstance(w, Wakeups)
    return w


def waves(server: Server, campaign_id: int, devs: list[Device]) -> list[list[Device]]:
    r = server.client.get(
        f"/api/v1/campaigns/{campaign_id}/devices?limit=1000", headers=server.headers("viewer")
    )
    by_id = {d.device_id: d for d in devs}
    out: list[list[Device]] = []
    for row in r.json():
        while len(out) <= row["wave"]:
            out.append([])
        out[row["wave"]].append(by_id[row["device_id"]])
    return out


@needs_mqtt_broker
def test_creating_a_campaign_wakes_its_first_wave(
    mqtt_server: Server, listener: Listener
) -> None:
    server = mqtt_server
    devs = server.register(4)
    rel, _ = server.release(2)
    t0 = time.monotonic()
    c = server.campaign(rel, waves=[50, 100])
    assert time.monotonic() - t0 < 5  # the request does not wait for the broker
    first, second = waves(server, c["id"], devs)
    assert sorted(listener.woken(first)) == sorted(d.device_id for d in first)  # once each
    assert listener.quiet(second)
    assert wakeups(server).sent == 2 and wakeups(server).failed == 0


@needs_mqtt_broker
def test_a_wave_opened_by_reports_wakes_the_next_wave(
    mqtt_server: Server, listener: Listener
) -> None:
    server = mqtt_server
    devs = server.register(4)
    rel, env = server.release(2)
    c = server.campaign(rel, waves=[50, 100])
    first, second = waves(server, c["id"], devs)
    listener.woken(first)
    assert {d.device_id for d in offered(server, devs)} == {d.device_id for d in first}
    report(server, first[0], env)
    assert listener.quiet(second)  # the first wave is not finished yet
    report(server, first[1], env)  # ... now it is: the report's transaction opens wave 2
    assert server.status(c["id"])["current_wave"] == 1
    assert sorted(listener.woken(second)) == sorted(d.device_id for d in second)


@needs_mqtt_broker
def test_resume_and_advance_wake_pause_does_not(mqtt_server: Server, listener: Listener) -> None:
    server = mqtt_server
    devs = server.register(4)
    rel, _ = server.release(2)
    c = server.campaign(rel, waves=[50, 100], start=False)
    cid, h = c["id"], server.headers("release")
    first, second = waves(server, cid, devs)
    assert listener.quiet(devs)  # created paused: nothing offered, nobody woken
    assert server.client.post(f"/api/v1/campaigns/{cid}/resume", headers=h).status_code == 200
    listener.woken(first)
    assert listener.quiet(second)
    assert server.client.post(f"/api/v1/campaigns/{cid}/advance", headers=h).status_code == 200
    assert sorted(listener.woken(second)) == sorted(d.device_id for d in second)
    n = len(listener.got)
    assert server.client.post(f"/api/v1/campaigns/{cid}/pause", headers=h).status_code == 200
    time.sleep(0.6)
    assert len(listener.got) == n
    # resuming wakes the unfinished devices of the open waves again
    assert server.client.post(f"/api/v1/campaigns/{cid}/resume", headers=h).status_code == 200
    again = listener.more(4, start=n)
    assert sorted(again) == sorted(d.device_id for d in devs)


@needs_mqtt_broker
def test_a_rolled_back_change_wakes_nobody(mqtt_server: Server, listener: Listener) -> None:
    server = mqtt_server
    devs = server.register(2)
    rel, _ = server.release(2)
    c = server.campaign(rel, waves=[50, 100])
    first, second = waves(server, c["id"], devs)
    listener.woken(first)
    w = wakeups(server)
    w.commit_wait = 0.5
    with pytest.raises(RuntimeError), server.state.db.write() as s:
        camp.set_state(s, c["id"], "advance", server.clock())  # the hook fires here ...
        raise RuntimeError("rolled back")  # ... and the change never commits
    server.client.portal.call(w.idle)  # type: ignore[union-attr]
    assert listener.quiet(second) and w.sent == 1


@needs_mqtt_broker
def test_a_time_window_that_opens_wakes_the_open_waves(
    mqtt_server: Server, listener: Listener
) -> None:
    server = mqtt_server
    devs = server.register(2)
    rel, _ = server.release(2)
    start = server.clock()
    server.campaign(
        rel,
        starts_at=(start + dt.timedelta(hours=1)).isoformat(),
        ends_at=(start + dt.timedelta(hours=2)).isoformat(),
    )
    assert listener.quiet(devs)  # running, but nothing is offered before the window opens
    server.clock.advance(minutes=30)
    tick(server.state, start, server.clock())
    assert listener.quiet(devs)
    before = server.clock()
    server.clock.advance(minutes=31)  # the ticker's pass that sees the window open ...
    tick(server.state, before, server.clock())
    assert sorted(listener.woken(devs)) == sorted(d.device_id for d in devs)
    n = len(listener.got)
    before = server.clock()
    server.clock.advance(minutes=1)  # ... and only that pass
    tick(server.state, before, server.clock())
    time.sleep(0.6)
    assert len(listener.got) == n


def test_a_broker_that_is_down_fails_no_request(tmp_path: Path, db_url: str) -> None:
    gen = new_server(tmp_path, db_url, mqtt_url=f"mqtt://127.0.0.1:{_closed_port()}")
    server = next(gen)
    try:
        devs = server.register(3)
        rel, _ = server.release(2)
        t0 = time.monotonic()
        c = server.campaign(rel)  # 201: asserted by the helper
        assert time.monotonic() - t0 < 5
        w = wakeups(server)
        server.client.portal.call(w.idle)  # type: ignore[union-attr]
        assert w.failed == 3 and w.sent == 0
        # the campaign works as without MQTT: the devices find it when they poll
        assert len(offered(server, devs)) == 3
        h = server.headers("release")
        assert server.client.post(f"/api/v1/campaigns/{c['id']}/pause", headers=h).is_success
        assert server.client.post(f"/api/v1/campaigns/{c['id']}/resume", headers=h).is_success
    finally:
        gen.close()


def test_without_mqtt_url_there_is_no_publisher(sqlite_server: Server) -> None:
    assert sqlite_server.client.app.state.wakeups is None  # type: ignore[attr-defined]
    devs = sqlite_server.register(1)
    rel, _ = sqlite_server.release(2)
    sqlite_server.campaign(rel)
    assert len(offered(sqlite_server, devs)) == 1


def test_mqtt_url_setting(tmp_path: Path) -> None:
    assert load_settings(env={}).mqtt_url is None  # off unless asked for
    s = load_settings(env={"SUITKIT_MQTT_URL": "mqtt://broker:1884"})
    assert s.mqtt_url == "mqtt://broker:1884"
    assert s.env()["SUITKIT_MQTT_URL"] == "mqtt://broker:1884"  # handed to the workers
    cfg = tmp_path / "suitkit.toml"
    cfg.write_text('mqtt-url = "mqtt://127.0.0.1"\n')
    assert load_settings(env={}, config_file=cfg).mqtt_url == "mqtt://127.0.0.1"
    with pytest.raises(ConfigError, match="mqtt-url"):
        load_settings({"mqtt_url": "http://broker"}, env={})
    assert "SUITKIT_MQTT_URL" not in Settings().env()
