"""Push wake-ups over MQTT: the server tells a device to check in now instead of at its next
poll (RFC 9019 §3: the status tracker may notify devices).

Each device subscribes to its own topic, ``suitkit/devices/<device-id>/wake`` (QoS 0, no
payload needed): a wake-up carries no authority, it only makes the device do what it would do
anyway (check in over the authenticated device API), so a spoofed or lost one is harmless.

The device side is :func:`listen`; the server side, :func:`wake_devices` (publish to given
devices) and :func:`wake_campaign` (the devices a campaign may offer its update to now).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from suitkit.agent.backoff import Backoff
from suitkit.transport.mqtt import MqttClient, MqttError

if TYPE_CHECKING:
    from suitkit.server.state import ServerState

__all__ = ["listen", "topic_for", "wake_campaign", "wake_devices"]

TOPIC = "suitkit/devices/{device_id}/wake"


def topic_for(device_id: str) -> str:
    return TOPIC.format(device_id=device_id)


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


async def wake_devices(url: str, device_ids: Iterable[str], payload: bytes = b"check-in",
                       ) -> int:
    """Publish a wake-up to each device (one connection); returns how many."""
    n = 0
    async with MqttClient.from_url(url, keepalive=0) as client:
        for dev in device_ids:
            await client.publish(topic_for(dev), payload)
            n += 1
    return n


def campaign_targets(state: ServerState, campaign_id: int) -> list[str]:
    """The devices a campaign would offer its update to at their next check-in: pending
    deployments of its open waves, while it runs."""
    from sqlalchemy import select

    from suitkit.server.models import Campaign, CampaignState, Deployment, DeploymentState, Device

    with state.db.read() as s:
        c = s.get(Campaign, campaign_id)
        if c is None or c.state != CampaignState.RUNNING:
            return []
        return list(s.scalars(
            select(Device.device_id)
            .join(Deployment, Deployment.device_pk == Device.id)
            .where(Deployment.campaign_id == campaign_id,
                   Deployment.state == DeploymentState.PENDING,
                   Deployment.wave <= c.current_wave)
        ))


async def wake_campaign(state: ServerState, campaign_id: int, url: str) -> int:
    """Wake the devices :func:`campaign_targets` names (the server's hook: after a campaign
    is created, resumed, or opens a wave). Errors are the caller's to log: a wake-up is an
    optimisation, devices poll anyway."""
    targets = await asyncio.to_thread(campaign_targets, state, campaign_id)
    if not targets:
        return 0
    return await wake_devices(url, targets)
