"""Push wake-ups: the minimal MQTT 3.1.1 client against the Mosquitto broker on
127.0.0.1:1883 (skipped when it does not answer), and the agent's wake-up path."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from suitkit.agent.backoff import Backoff, jittered
from suitkit.agent.core import Agent
from suitkit.agent.runner import GaveUp, run_agent
from suitkit.agent.wakeup import listen, topic_for, wake_devices
from suitkit.transport.api import Offer, OfferFile, ReportAck, TransportError
from suitkit.transport.mqtt import MqttClient, MqttError, MqttUrl, _remaining_length
from tests.conftest import MQTT_URL, needs_mqtt_broker

from .helpers import new_device

URL = MQTT_URL


def test_remaining_length_encoding() -> None:
    assert _remaining_length(0) == b"\x00"
    assert _remaining_length(127) == b"\x7f"
    assert _remaining_length(128) == b"\x80\x01"
    assert _remaining_length(16_383) == b"\xff\x7f"
    assert _remaining_length(2_097_152) == b"\x80\x80\x80\x01"
    with pytest.raises(ValueError):
        _remaining_length(268_435_456)


def test_mqtt_url() -> None:
    assert MqttUrl.parse("mqtt://u:p%40ss@broker:1884") == MqttUrl("broker", 1884, "u", "p@ss")
    assert MqttUrl.parse("broker") == MqttUrl("broker", 1883)
    with pytest.raises(ValueError):
        MqttUrl.parse("http://broker")


def test_connection_refused_is_an_mqtt_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there once closed

    async def go() -> None:
        await MqttClient("127.0.0.1", port).connect(timeout=2)

    with pytest.raises(MqttError):
        asyncio.run(go())


@needs_mqtt_broker
def test_subscribe_and_publish_roundtrip() -> None:
    topic = f"suitkit/test/{uuid.uuid4()}"

    async def go() -> tuple[str, bytes]:
        async with MqttClient.from_url(URL) as sub, MqttClient.from_url(URL) as pub:
            await sub.subscribe(topic)
            await pub.publish(topic, b"hello " * 100)  # a two-byte remaining length
            msgs = sub.messages()
            return await asyncio.wait_for(msgs.__anext__(), 5)

    assert asyncio.run(go()) == (topic, b"hello " * 100)


class FakeApi:
    """A device API that fails ``failures`` times, then has nothing to offer."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.checkins = 0

    async def checkin(self, body: Any) -> Offer | None:
        self.checkins += 1
        if self.failures:
            self.failures -= 1
            raise TransportError("down (test)")
        return None

    async def download(self, file: OfferFile, part: Path, hook: Any = None) -> int:
        raise AssertionError

    async def report(self, url: str, signed_report: bytes) -> ReportAck:
        raise AssertionError

    async def aclose(self) -> None:
        pass


@needs_mqtt_broker
def test_a_wake_up_makes_the_agent_check_in_at_once(tmp_path: Path) -> None:
    dev = new_device(tmp_path / "dev")
    device_id = str(dev.config.device_id)
    api = FakeApi()

    async def go() -> int:
        wake = asyncio.Event()
        subscribed = asyncio.Event()
        listener = asyncio.create_task(listen(URL, device_id, wake, subscribed=subscribed))
        agent = Agent(dev.dir, api)
        runner = asyncio.create_task(run_agent(agent, interval=3600, wake=wake))
        try:
            await asyncio.wait_for(subscribed.wait(), 10)
            for _ in range(100):
                if api.checkins:
                    break
                await asyncio.sleep(0.02)
            assert api.checkins == 1  # the first poll; the next one is an hour away
            assert await wake_devices(URL, [device_id]) == 1
            for _ in range(250):
                if api.checkins == 2:
                    break
                await asyncio.sleep(0.02)
            return api.checkins
        finally:
            runner.cancel()
            listener.cancel()
            await asyncio.gather(runner, listener, return_exceptions=True)

    assert asyncio.run(go()) == 2
    assert topic_for(device_id) == f"suitkit/devices/{device_id}/wake"


def test_runner_backs_off_and_gives_up(tmp_path: Path) -> None:
    dev = new_device(tmp_path / "dev")
    api = FakeApi(failures=2)

    async def go() -> str:
        agent = Agent(dev.dir, api)
        result = await run_agent(agent, once=True, backoff=Backoff(base=0.01, cap=0.02))
        return result.outcome

    assert asyncio.run(go()) == "nothing" and api.checkins == 3
    assert Agent(dev.dir, api).state.counters.retries == 2

    async def never() -> None:
        await run_agent(Agent(dev.dir, FakeApi(failures=100)), once=True, max_failures=3,
                        backoff=Backoff(base=0.001, cap=0.001))

    with pytest.raises(GaveUp):
        asyncio.run(never())


def test_backoff_and_jitter_bounds() -> None:
    import random

    b = Backoff(base=1.0, cap=10.0, rng=random.Random(1))
    delays = [b.next() for _ in range(8)]
    for n, d in enumerate(delays):
        full = min(10.0, 2.0**n)
        assert full / 2 <= d <= full
    b.reset()
    assert b.next() <= 1.0
    r = random.Random(2)
    assert all(8.0 <= jittered(10.0, 0.2, r) <= 12.0 for _ in range(1000))


@needs_mqtt_broker
def test_the_server_hook_wakes_the_devices_a_campaign_may_offer_to(tmp_path: Path) -> None:
    """``wake_campaign`` over the server's own state: the pending devices of open waves."""
    from suitkit.server.app import build_state
    from suitkit.server.config import Settings
    from suitkit.server.wakeups import campaign_targets, wake_campaign

    from .helpers import AUTHOR_PUB, LiveServer, Operator, payload, release

    live = LiveServer(tmp_path / "data")
    live.start()
    try:
        op = Operator(live.url, live.admin_token())
        devs = [new_device(tmp_path / f"d{i}") for i in range(4)]
        ids = [str(d.config.device_id) for d in devs]
        for d in devs:
            op.register(d)
        fw = payload(1000, b"wake")
        rid = op.upload(release(2, fw), fw)
        camp = op.campaign(rid, ids, waves=[50, 100])
        state = build_state(Settings(data=live.data, trust=(AUTHOR_PUB,)))
        try:
            first_wave = campaign_targets(state, camp["id"])
            assert len(first_wave) == 2 and set(first_wave) <= set(ids)

            async def go() -> set[str]:
                got: set[str] = set()
                async with MqttClient.from_url(URL) as sub:
                    await sub.subscribe("suitkit/devices/+/wake")
                    assert await wake_campaign(state, camp["id"], URL) == 2
                    msgs = sub.messages()
                    for _ in range(2):
                        topic, _payload = await asyncio.wait_for(msgs.__anext__(), 5)
                        got.add(topic.split("/")[2])
                return got

            assert asyncio.run(go()) == set(first_wave)
        finally:
            state.db.dispose()
        op.close()
    finally:
        live.stop()


@needs_mqtt_broker
@pytest.mark.slow
def test_serve_with_mqtt_url_wakes_a_running_agent_at_once(tmp_path: Path) -> None:
    """``suitkit serve --mqtt-url``, ``suitkit agent run --mqtt`` polling once an hour: a new
    campaign reaches the agent in seconds, through the wake-up the server publishes."""
    import subprocess
    import sys
    import time

    from .helpers import LiveServer, Operator, enroll, payload, release

    live = LiveServer(tmp_path / "data", extra=["--mqtt-url", URL])
    live.start()
    agent: subprocess.Popen[bytes] | None = None
    op = Operator(live.url, live.admin_token())
    try:
        dev = new_device(tmp_path / "dev")
        device_id = str(dev.config.device_id)
        enroll(dev.dir, live.url, op.register(dev))
        out = tmp_path / "agent.log"
        with open(out, "wb") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "suitkit.cli.agent", "agent", "run", str(dev.dir),
                 "--interval", "3600", "--mqtt", URL],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while "listening for wake-ups" not in out.read_text():
            assert agent.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        fw = payload(3000, b"woken")
        camp = op.campaign(op.upload(release(2, fw), fw), [device_id])
        t0 = time.monotonic()
        while op.status(camp["id"])["counts"]["installed"] < 1:
            assert time.monotonic() - t0 < 30, out.read_text() + live.log.read_text()[-3000:]
            time.sleep(0.1)
        assert op.device(device_id)["sequence_number"] == 2
        assert "wake-ups published" in live.log.read_text()
        assert "woken up by a push notification" in out.read_text()
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        op.close()
        live.stop()
