"""The agent's main loop: cycles, jittered polling, back-off on errors, push wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

from suitkit.agent.backoff import Backoff, jittered
from suitkit.agent.core import Agent, CycleResult
from suitkit.transport.api import TransportError, Unauthorized

__all__ = ["GaveUp", "run_agent"]


class GaveUp(Exception):
    """``max_failures`` transient errors in a row."""


async def _sleep(seconds: float, wake: asyncio.Event | None) -> bool:
    """Sleep; return True if woken early."""
    if wake is None:
        await asyncio.sleep(seconds)
        return False
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)
    woken = wake.is_set()
    wake.clear()
    return woken


async def run_agent(
    agent: Agent,
    *,
    interval: float = 60.0,
    once: bool = False,
    wake: asyncio.Event | None = None,
    max_failures: int | None = None,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
    log: Callable[[str], None] | None = None,
) -> CycleResult:
    """Run cycles until stopped (cancel the task); with ``once``, until one cycle completed
    (nothing offered, or an offered update carried out and reported). Transient errors are
    retried after an exponential back-off with jitter (at least a minute for a refused
    token); a push wake-up (``wake``) cuts the polling wait short, not the back-off."""
    say = log or agent.log
    r = rng or random.Random()
    b = backoff or Backoff(rng=r)
    failures = 0
    while True:
        try:
            result = await agent.cycle()
        except TransportError as exc:
            failures += 1
            agent.state.counters.retries += 1
            agent.save()
            if max_failures is not None and failures >= max_failures:
                raise GaveUp(f"{failures} failures in a row, the last: {exc}") from None
            delay = b.next()
            if isinstance(exc, Unauthorized):
                delay = max(delay, 60.0)
            say(f"{exc}; retrying in {delay:.1f} s")
            await asyncio.sleep(delay)
            continue
        failures = 0
        b.reset()
        if result.outcome == "withdrawn":
            continue
        if once:
            return result
        if result.finished:
            continue  # check in again at once: say what it runs now, maybe the next update
        if await _sleep(jittered(interval, rng=r), wake):
            say("woken up by a push notification")
