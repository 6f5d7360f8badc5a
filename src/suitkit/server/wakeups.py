"""Push wake-ups, server side: when a campaign starts offering its update to more devices
(created running, resumed, a wave opened by an operator, a report or the ticker), publish to
each of those devices' MQTT topic (:func:`suitkit.transport.mqtt.wake_topic`,
``suitkit/devices/<device-id>/wake``), so that it checks in now rather than at its next poll.
On with ``suitkit serve --mqtt-url mqtt://host[:port]`` (``mqtt-url``, ``SUITKIT_MQTT_URL``).

How: :func:`suitkit.server.campaigns.watch_offers` calls :meth:`Wakeups.offered` inside the
transaction that made the change; that only hands a note to the event loop. A background task
then reads the campaign back until the change is visible, i.e. committed (a change that rolled
back never shows, and its note is dropped after ``commit_wait`` seconds), selects the devices
of the newly opened waves that have not finished, and publishes over one short-lived
connection. Nothing waits for it: no request is slowed down, and none fails because of MQTT; a
broker that is down costs a warning in the log. A wake-up is an optimisation (devices poll
anyway) and carries no authority (the device then checks in over the authenticated API).

With several workers, the worker whose transaction made the change publishes (each change is
applied once, compare-and-set), so a device gets one wake-up per change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from sqlalchemy import select

from suitkit.server import campaigns as camp
from suitkit.server import logs
from suitkit.server.models import Campaign, CampaignState, Deployment, DeploymentState, Device
from suitkit.server.state import ServerState
from suitkit.transport.mqtt import MqttError, MqttUrl, publish_wakeups

__all__ = ["Wakeups", "campaign_targets", "committed_targets", "wake_campaign"]

log = logs.get("wakeups")
_FINISHED = (DeploymentState.INSTALLED.value, DeploymentState.FAILED.value)


def committed_targets(
    state: ServerState, campaign_id: int, first_wave: int, last_wave: int
) -> list[str] | None:
    """The unfinished devices of waves ``first_wave..`` (up to the campaign's current wave)
    once the campaign, as committed, runs with wave ``last_wave`` open; ``None`` while it does
    not (the change is not committed yet, rolled back, or undone since). Empty outside the
    campaign's time window: nothing is offered then."""
    with state.db.read() as s:
        row = s.execute(
            select(Campaign.state, Campaign.current_wave, Campaign.starts_at, Campaign.ends_at)
            .where(Campaign.id == campaign_id)
        ).first()
        if row is None or row[0] != CampaignState.RUNNING or row[1] < last_wave:
            return None
        if not camp.in_window(state.now(), row[2], row[3]):
            return []
        return list(
            s.scalars(
                select(Device.device_id)
                .join(Deployment, Deployment.device_pk == Device.id)
                .where(
                    Deployment.campaign_id == campaign_id,
                    Deployment.wave >= first_wave,
                    Deployment.wave <= row[1],
                    Deployment.state.not_in(_FINISHED),
                )
            )
        )


def campaign_targets(state: ServerState, campaign_id: int) -> list[str]:
    """The devices a campaign offers its update to at their next check-in: the unfinished
    devices of its open waves, while it runs and inside its time window."""
    return committed_targets(state, campaign_id, 0, 0) or []


async def wake_campaign(state: ServerState, campaign_id: int, url: str) -> int:
    """Wake the devices :func:`campaign_targets` names, now (by hand: ``suitkit serve
    --mqtt-url`` does it by itself). :class:`MqttError` when the broker does not answer."""
    targets = await asyncio.to_thread(campaign_targets, state, campaign_id)
    if not targets:
        return 0
    return await publish_wakeups(url, targets)


class Wakeups:
    """The wake-up publisher of one server process (see the module doc). ``start`` and
    ``close`` run on the server's event loop (the app lifespan)."""

    def __init__(
        self,
        state: ServerState,
        url: str,
        *,
        connect_timeout: float = 5.0,
        commit_wait: float = 10.0,
        max_pending: int = 1000,
    ) -> None:
        broker = MqttUrl.parse(url)  # ValueError now rather than a warning per campaign
        self.broker = f"{broker.host}:{broker.port}"  # for the log: no credentials
        self.state = state
        self.url = url
        self.connect_timeout = connect_timeout
        self.commit_wait = commit_wait
        self.max_pending = max_pending
        self.sent = 0  # wake-ups published (tests, logs)
        self.failed = 0  # wake-ups not published (broker down)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._publish = asyncio.Lock()
        self._closing = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        camp.watch_offers(self.state.db.engine, self.offered)

    async def close(self) -> None:
        """Stop: no new wake-ups; those not yet sent are dropped."""
        self._closing = True
        camp.watch_offers(self.state.db.engine, None)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until every wake-up noted so far is sent or dropped (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def offered(self, campaign_id: int, first_wave: int, last_wave: int) -> None:
        """The :func:`~suitkit.server.campaigns.watch_offers` hook: called in a database
        transaction, on any thread; only hands the note to the event loop."""
        loop = self._loop
        if loop is None or self._closing:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
            loop.call_soon_threadsafe(self._spawn, campaign_id, first_wave, last_wave)

    def _spawn(self, campaign_id: int, first_wave: int, last_wave: int) -> None:
        if self._closing:
            return
        if len(self._tasks) >= self.max_pending:
            log.warning(
                "too many wake-ups pending: dropped",
                extra=logs.fields(campaign=campaign_id, pending=len(self._tasks)),
            )
            return
        task = asyncio.create_task(self._wake(campaign_id, first_wave, last_wave))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wake(self, campaign_id: int, first_wave: int, last_wave: int) -> None:
        try:
            targets = await self._committed(campaign_id, first_wave, last_wave)
            if targets:
                await self._send(campaign_id, targets)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let a wake-up take anything else down
            log.exception("wake-up failed", extra=logs.fields(campaign=campaign_id))

    async def _committed(self, campaign_id: int, first_wave: int, last_wave: int) -> list[str]:
        deadline = time.monotonic() + self.commit_wait
        delay = 0.01
        while True:
            found = await asyncio.to_thread(
                committed_targets, self.state, campaign_id, first_wave, last_wave
            )
            if found is not None:
                return found
            if time.monotonic() >= deadline:  # rolled back, or paused again meanwhile
                log.debug("no wake-up: the campaign change is not visible",
                          extra=logs.fields(campaign=campaign_id))
                return []
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _send(self, campaign_id: int, targets: list[str]) -> None:
        async with self._publish:  # one broker connection at a time
            budget = self.connect_timeout + 30.0 + len(targets) / 1000
            try:
                n = await asyncio.wait_for(
                    publish_wakeups(self.url, targets, timeout=self.connect_timeout), budget
                )
            except (MqttError, OSError, TimeoutError) as exc:
                self.failed += len(targets)
                log.warning(
                    "MQTT wake-ups not sent (devices will find the update at their next poll)",
                    extra=logs.fields(campaign=campaign_id, devices=len(targets),
                                      broker=self.broker, error=str(exc) or type(exc).__name__),
                )
                return
        self.sent += n
        log.info("wake-ups published", extra=logs.fields(campaign=campaign_id, devices=n))
