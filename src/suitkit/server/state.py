"""What every request handler shares: settings, database, blob store, trust anchors, metrics,
secrets and the clock (injectable, so that tests can move time)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from fastapi import Request

from suitkit.cose.keys import CoseKey
from suitkit.server.config import ConfigError, Settings
from suitkit.server.db import Database
from suitkit.server.devices import LastSeen
from suitkit.server.metrics import Metrics
from suitkit.server.storage import BlobStore

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_trust_anchors(paths: tuple[Path, ...]) -> list[CoseKey]:
    keys = []
    for p in paths:
        try:
            key = CoseKey.load(p)
        except OSError as exc:
            raise ConfigError(f"trust anchor {p}: {exc.strerror}") from None
        except Exception as exc:  # KeyFormatError and friends: a bad file is a config error
            raise ConfigError(f"trust anchor {p}: {exc}") from None
        if key.is_symmetric:
            keys.append(key)  # a COSE_Mac0 key shared with the author
        else:
            keys.append(key.public_key())
    return keys


@lru_cache(maxsize=65536)
def device_key(pem: str) -> CoseKey:
    """A device's report key, parsed once per process."""
    return CoseKey.from_pem(pem)


@dataclass
class ServerState:
    settings: Settings
    db: Database
    blobs: BlobStore
    trusted_keys: list[CoseKey]
    nonce_secret: bytes
    cookie_secret: bytes
    clock: Clock = utc_now
    metrics: Metrics = field(default_factory=Metrics)
    last_seen: LastSeen = field(default_factory=LastSeen)

    def now(self) -> dt.datetime:
        return self.clock()


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.suitkit
    return state
