"""Faults for simulated devices: ``drop=0.05,powerloss=0.02,corrupt=0.01,slow=0.1``.

- ``drop``: each request (check-in, download, report) is lost with this probability: before
  it reaches the server, or (half of the time) after the server handled it, the answer lost;
  a download is cut at a random byte and resumed on the next attempt (``Range``/Block2);
- ``powerloss``: this fraction of the devices loses power during its install, after a random
  number of flash/state writes (:class:`~suitkit.device.simulated.FaultInjector`); the
  bootloader then finishes or reverts the install, and the agent retries;
- ``corrupt``: this fraction of the devices sits behind a path that corrupts payloads (one
  byte of each payload download flipped, every time): the agent downloads it again once,
  then the processor's image-match refuses it and the device reports the failure;
- ``slow``: this fraction of the devices has a slow link (downloads throttled to
  ``SLOW_RATE`` bytes per second).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suitkit.device.simulated import FaultInjector
from suitkit.transport.api import ChunkHook, DeviceApi, Offer, OfferFile, ReportAck, TransportError

__all__ = ["SLOW_RATE", "DeviceFaults", "FaultSpec", "FaultyApi"]

SLOW_RATE = 256 * 1024  # bytes per second on a slow link


@dataclass(frozen=True)
class FaultSpec:
    drop: float = 0.0
    powerloss: float = 0.0
    corrupt: float = 0.0
    slow: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        if not text:
            return cls()
        values: dict[str, float] = {}
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in cls.__dataclass_fields__:
                raise ValueError(
                    f"{item!r}: faults are NAME=PROBABILITY with NAME one of drop, powerloss, "
                    "corrupt, slow"
                )
            try:
                p = float(value)
            except ValueError:
                raise ValueError(f"{item!r}: {value!r} is not a number") from None
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{item!r}: a probability is between 0 and 1")
            values[name] = p
        return cls(**values)

    def __str__(self) -> str:
        parts = [f"{k}={getattr(self, k):g}" for k in self.__dataclass_fields__ if getattr(self, k)]
        return ",".join(parts) or "none"


@dataclass
class DeviceFaults:
    """The faults one device meets, drawn once from a :class:`FaultSpec`."""

    spec: FaultSpec
    rng: random.Random
    corrupt: bool = False
    slow: bool = False
    power_cut: bool = False

    @classmethod
    def draw(cls, spec: FaultSpec, rng: random.Random) -> DeviceFaults:
        return cls(spec, rng, corrupt=rng.random() < spec.corrupt,
                   slow=rng.random() < spec.slow, power_cut=rng.random() < spec.powerloss)

    def install_fault(self, expected_writes: int) -> FaultInjector | None:
        """A power cut after a random write of the first install attempt (once)."""
        if not self.power_cut:
            return None
        self.power_cut = False
        return FaultInjector(cut_after=self.rng.randrange(max(1, expected_writes)))


class FaultyApi:
    """A :class:`DeviceApi` that loses requests and answers, cuts, corrupts and slows
    downloads, as :class:`DeviceFaults` says."""

    def __init__(self, inner: DeviceApi, faults: DeviceFaults) -> None:
        self.inner = inner
        self.faults = faults
        self.dropped = 0

    def _drop(self) -> str | None:
        """None, or when the request is lost: "before" or "after" the server handled it."""
        f = self.faults
        if f.spec.drop and f.rng.random() < f.spec.drop:
            self.dropped += 1
            return "before" if f.rng.random() < 0.5 else "after"
        return None

    async def checkin(self, body: Mapping[str, Any]) -> Offer | None:
        when = self._drop()
        if when == "before":
            raise TransportError("injected fault: the check-in was lost")
        offer = await self.inner.checkin(body)
        if when == "after":
            raise TransportError("injected fault: the check-in answer was lost")
        return offer

    async def download(self, file: OfferFile, part: Path, hook: ChunkHook | None = None) -> int:
        f = self.faults
        have = part.stat().st_size if part.exists() else 0
        cut_at: int | None = None
        if self._drop() is not None:
            cut_at = have + f.rng.randrange(max(1, file.size - have))
        flip_at = (file.size // 2) if f.corrupt and file.kind == "payload" else None

        async def faulty(offset: int, chunk: bytes) -> bytes:
            if hook is not None:
                chunk = await hook(offset, chunk)
            if cut_at is not None and offset + len(chunk) > cut_at:
                raise TransportError(f"injected fault: connection dropped at byte {offset}")
            if flip_at is not None and offset <= flip_at < offset + len(chunk):
                b = bytearray(chunk)
                b[flip_at - offset] ^= 0x01
                chunk = bytes(b)
            if f.slow:
                await asyncio.sleep(len(chunk) / SLOW_RATE)
            return chunk

        return await self.inner.download(file, part, faulty)

    async def report(self, url: str, signed_report: bytes) -> ReportAck:
        when = self._drop()
        if when == "before":
            raise TransportError("injected fault: the report was lost")
        ack = await self.inner.report(url, signed_report)
        if when == "after":
            raise TransportError("injected fault: the report's answer was lost")
        return ack

    async def aclose(self) -> None:
        await self.inner.aclose()
