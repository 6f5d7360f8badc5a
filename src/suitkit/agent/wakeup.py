"""Push wake-ups over MQTT, device side: the server tells a device to check in now instead of
at its next poll (RFC 9019 §3: the status tracker may notify devices).

Each device subscribes to its own topic, ``suitkit/devices/<device-id>/wake``
(:func:`suitkit.transport.mqtt.wake_topic`; QoS 0, no payload needed): a wake-up carries no
authority, it only makes the device do what it would do anyway (check in over the
authenticated device API), so a spoofed or lost one is harmless.

The device side is :func:`listen`. The server publishes (``suitkit serve --mqtt-url``) with
:mod:`suitkit.server.wakeups`; :func:`wake_devices` publishes by hand (tests, scripts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from suitkit.agent.backoff import Backoff
from suitkit.transport.mqtt import WAKE_TOPIC as TOPIC
from suitkit.transport.mqtt import MqttClient, MqttError, publish_wakeups
from suitkit.transport.mqtt import wake_topic as topic_for

__all__ = ["TOPIC", "listen", "topic_for", "wake_devices"]

#: Publish a wake-up to given devices (one connection); returns how many.
wake_devices = publish_wakeups


async def listen(
    url: str,
    device_id: str,
    wake: asyncio.Event,
    *,
    log: Callable[[str], None] | None = None,
    subscribed: asyncio.Event | None = None,
) -> None:
    """Keep a subscription to the device's wake-up topic and set ``wake`` for each message;
    reconnect with back-off when the broker goes away. Runs until cancelled."""
    say = log or (lambda _m: None)
    backoff = Backoff(base=1.0, cap=60.0)
    while True:
        client = MqttClient.from_url(url, client_id=f"suitkit-dev-{device_id}", keepalive=30)
        try:
            await client.connect()
            await client.subscribe(topic_for(device_id))
            say(f"listening for wake-ups on {url} ({topic_for(device_id)})")
            backoff.reset()
            if subscribed is not None:
                subscribed.set()
            async for _topic, _payload in client.messages():
                wake.set()
        except MqttError as exc:
            delay = backoff.next()
            say(f"MQTT: {exc}; reconnecting in {delay:.1f} s")
            await asyncio.sleep(delay)
        finally:
            await client.close()
