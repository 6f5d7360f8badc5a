"""What the agent keeps in the device directory.

- ``agent.json`` (mode 0600): the credentials, written by ``suitkit agent enroll``: the server
  URL, the device token, optionally the MQTT broker for wake-ups;
- ``agent/state.json``: the progress of the current update (phase, offer, attempts, counters),
  rewritten atomically (temporary file, fsync, rename) at each step, so that a killed agent
  continues where it stopped;
- ``agent/downloads/<sha256>.part`` (a download in progress, resumed with ``Range``) and
  ``agent/downloads/<sha256>`` (complete);
- ``agent/report.cbor``: the SUIT_Report of the run, unsigned (it is signed, with the device's
  key, each time it is sent).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suitkit.files import atomic_write, write_all
from suitkit.transport.api import Offer

__all__ = ["AgentConfig", "AgentState", "Counters", "atomic_write", "write_file"]


CONFIG_FILE = "agent.json"
STATE_DIR = "agent"


@dataclass
class AgentConfig:
    """``agent.json``: where the device's server is and how the device proves who it is."""

    server: str
    token: str
    mqtt: str | None = None
    interval: float = 60.0

    @classmethod
    def load(cls, directory: Path) -> AgentConfig:
        path = Path(directory) / CONFIG_FILE
        try:
            data = json.loads(path.read_text())
            return cls(
                str(data["server"]),
                str(data["token"]),
                data.get("mqtt"),
                float(data.get("interval", 60.0)),
            )
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: the device is not enrolled (run `suitkit agent enroll`)"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a valid agent configuration: {exc}") from None

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CONFIG_FILE
        data = {"server": self.server, "token": self.token, "interval": self.interval}
        if self.mqtt:
            data["mqtt"] = self.mqtt
        atomic_write(path, json.dumps(data, indent=1).encode(), mode=0o600)
        return path


@dataclass
class Counters:
    retries: int = 0  # transient errors retried (network, server, digest mismatch)
    resumed: int = 0  # downloads resumed from a partial file
    redownloads: int = 0  # downloads restarted because the digest did not match
    power_cuts: int = 0
    recoveries: int = 0  # boots after an interrupted install
    bytes_received: int = 0


@dataclass
class AgentState:
    """``agent/state.json``. ``phase``: idle, downloading, installing, booting, reporting."""

    phase: str = "idle"
    offer: dict[str, Any] | None = None
    install_attempts: int = 0
    mismatches: dict[str, int] = field(default_factory=dict)
    update_ok: bool | None = None
    report_ok: bool | None = None
    report_reason: str | None = None
    drop_nonce: bool = False
    bootable: bool | None = None
    counters: Counters = field(default_factory=Counters)
    versions: dict[str, list[Any]] = field(default_factory=dict)  # manifest file -> [seq, digest]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def current_offer(self) -> Offer | None:
        return None if self.offer is None else Offer.from_json(self.offer)

    @classmethod
    def load(cls, directory: Path) -> AgentState:
        path = Path(directory) / STATE_DIR / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except ValueError as exc:
            raise ValueError(f"{path} is damaged: {exc}") from None
        counters = Counters(**data.pop("counters", {}))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known, counters=counters)

    def to_json(self) -> dict[str, Any]:
        """A shallow copy as JSON data (the nested values are JSON already)."""
        out = {f: getattr(self, f) for f in _FIELDS}
        out["counters"] = dict(vars(self.counters))
        return out

    def save(self, directory: Path, *, durable: bool = True) -> None:
        data = json.dumps(self.to_json()).encode()
        d = os.path.join(directory, STATE_DIR)
        if not durable:
            try:
                write_file(os.path.join(d, "state.json"), data, durable=False)
                return
            except FileNotFoundError:
                pass
        if not os.path.isdir(d):
            os.mkdir(d)
        write_file(os.path.join(d, "state.json"), data, durable=durable)


def write_file(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """:func:`atomic_write`; ``durable=False`` (a simulated device on throw-away storage):
    the same write and rename, without fsync and with a fixed temporary name (one writer per
    device directory)."""
    if durable:
        atomic_write(Path(path), data)
        return
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


_FIELDS = tuple(f for f in AgentState.__dataclass_fields__ if f != "counters")
