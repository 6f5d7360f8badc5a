"""Server configuration: command-line flags, then ``SUITKIT_*`` environment variables, then a
TOML config file, then defaults (the first source that sets a value wins).

Every setting has one name used by all three sources: ``--max-payload`` on the command line,
``SUITKIT_MAX_PAYLOAD`` in the environment, ``max-payload`` (or ``max_payload``) in the file.
The file is named by ``--config`` or ``SUITKIT_CONFIG``. Sizes accept a binary suffix
(``64K``, ``512M``, ``1G``); lists (``trust``) are TOML arrays, or ``os.pathsep``-separated in
the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "SUITKIT_"


class ConfigError(ValueError):
    """A setting that cannot be used (unknown name, wrong type, unreadable file)."""


def parse_size(value: Any) -> int:
    """``1048576``, ``"1024K"``, ``"1M"``, ``"2G"`` (binary multiples) -> bytes."""
    if isinstance(value, bool):
        raise ConfigError(f"not a size: {value!r}")
    if isinstance(value, int):
        n = value
    else:
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in "KMG" and text[-1:] else text
        if not digits.isdigit():
            raise ConfigError(f"not a size: {value!r} (use bytes, or a K, M or G suffix)")
        n = int(digits) * mult
    if n <= 0:
        raise ConfigError(f"a size must be positive, not {value!r}")
    return n


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"not an integer: {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not an integer: {value!r}") from None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not a number: {value!r}") from None


def _paths(value: Any) -> tuple[Path, ...]:
    if isinstance(value, str):
        return tuple(Path(p) for p in value.split(os.pathsep) if p)
    if isinstance(value, list | tuple):
        return tuple(Path(str(p)) for p in value)
    raise ConfigError(f"not a list of paths: {value!r}")


def _optional_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _optional_port(value: Any) -> int | None:
    """A port, or off: ``0``, ``""``, ``off``, ``false``, ``none``."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and value.strip().lower() in ("", "off", "false", "no", "none"):
        return None
    port = _int(value)
    return port or None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server reads at start. Immutable; see :func:`load_settings`."""

    data: Path = Path("suitkit-data")  # blobs (content-addressed) and the default SQLite file
    db: str | None = None  # SQLAlchemy URL; default sqlite:///<data>/suitkit.db
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    trust: tuple[Path, ...] = ()  # author trust anchors: public keys (PEM, DER or COSE_Key)
    public_url: str | None = None  # base URL devices use for downloads; default: the request's
    max_envelope: int = 1 << 20
    max_payload: int = 512 << 20
    max_report: int = 64 << 10
    max_import: int = 16 << 20
    max_json: int = 1 << 20
    log_level: str = "info"
    access_log: bool = True
    sqlite_synchronous: str = "NORMAL"  # NORMAL survives a crashed process; FULL a power cut
    db_pool_size: int = 16
    tick_interval: float = 2.0  # seconds between campaign progress checks (wave advance)
    nonce_ttl: int = 7 * 24 * 3600  # how long a report nonce handed out at check-in stays valid
    last_seen_resolution: int = 60  # seconds; check-ins within it do not rewrite last-seen
    last_seen_flush: float = 1.0  # seconds between batched last-seen writes; 0: write at once
    cookie_secure: bool = False  # dashboard cookie only over HTTPS
    coap_port: int | None = None  # the device API over CoAP (UDP and TCP) too; None: off
    mqtt_url: str | None = None  # broker for push wake-ups (mqtt://host[:port]); None: off

    @property
    def db_url(self) -> str:
        if self.db:
            return self.db
        return f"sqlite:///{(self.data / 'suitkit.db').resolve()}"

    def env(self) -> dict[str, str]:
        """These settings as ``SUITKIT_*`` variables (how ``serve --workers N`` hands them to
        its worker processes)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                text = os.pathsep.join(str(p) for p in value)
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            out[ENV_PREFIX + f.name.upper()] = text
        return out


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "data": lambda v: Path(str(v)),
    "db": _optional_str,
    "host": str,
    "port": _int,
    "workers": _int,
    "trust": _paths,
    "public_url": _optional_str,
    "max_envelope": parse_size,
    "max_payload": parse_size,
    "max_report": parse_size,
    "max_import": parse_size,
    "max_json": parse_size,
    "log_level": lambda v: str(v).lower(),
    "access_log": _bool,
    "sqlite_synchronous": lambda v: str(v).upper(),
    "db_pool_size": _int,
    "tick_interval": _float,
    "nonce_ttl": _int,
    "last_seen_resolution": _int,
    "last_seen_flush": _float,
    "cookie_secure": _bool,
    "coap_port": _optional_port,
    "mqtt_url": _optional_str,
}


def _check(s: Settings) -> Settings:
    if not 0 < s.port < 65536:
        raise ConfigError(f"port {s.port} is not in 1..65535")
    if s.workers < 1:
        raise ConfigError("workers must be at least 1")
    if s.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log level {s.log_level!r}: one of debug, info, warning, error")
    if s.sqlite_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError("sqlite-synchronous: one of OFF, NORMAL, FULL, EXTRA")
    if s.last_seen_flush < 0:
        raise ConfigError("last-seen-flush must not be negative")
    if s.tick_interval <= 0:
        raise ConfigError("tick-interval must be positive")
    if s.public_url is not None and not s.public_url.startswith(("http://", "https://")):
        raise ConfigError("public-url must start with http:// or https://")
    if s.coap_port is not None and not 0 < s.coap_port < 65536:
        raise ConfigError(f"coap-port {s.coap_port} is not in 1..65535 (0 or off: no CoAP)")
    if s.mqtt_url is not None:
        from suitkit.transport.mqtt import MqttUrl

        try:
            MqttUrl.parse(s.mqtt_url)
        except ValueError:
            raise ConfigError(
                f"mqtt-url {s.mqtt_url!r}: give mqtt://[user[:password]@]host[:port]"
            ) from None
    return s


def _apply(base: Settings, values: Mapping[str, Any], source: str) -> Settings:
    changes: dict[str, Any] = {}
    for raw_name, value in values.items():
        name = raw_name.replace("-", "_").lower()
        parser = _PARSERS.get(name)
        if parser is None:
            raise ConfigError(f"{source}: unknown setting {raw_name!r}")
        try:
            changes[name] = parser(value)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {raw_name}: {exc}") from None
    return replace(base, **changes)


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    # Accept either top-level keys or a [server] table.
    table = data.get("server", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [server] must be a table")
    # Relative paths in the file are relative to the file.
    for key in ("data",):
        if isinstance(table.get(key), str) and not Path(table[key]).is_absolute():
            table[key] = str(path.parent / table[key])
    if isinstance(table.get("trust"), list):
        table["trust"] = [
            str(p) if Path(str(p)).is_absolute() else str(path.parent / str(p))
            for p in table["trust"]
        ]
    return table


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge defaults < config file < environment < flags (``None`` flags are ignored)."""
    environ = os.environ if env is None else env
    settings = Settings()
    path = config_file
    if path is None and environ.get(ENV_PREFIX + "CONFIG"):
        path = Path(environ[ENV_PREFIX + "CONFIG"])
    if path is not None:
        settings = _apply(settings, read_config_file(path), str(path))
    from_env = {
        k[len(ENV_PREFIX) :].lower(): v
        for k, v in environ.items()
        if k.startswith(ENV_PREFIX)
        and k != ENV_PREFIX + "CONFIG"
        and k[len(ENV_PREFIX) :].lower() in _PARSERS
    }
    settings = _apply(settings, from_env, "environment")
    settings = _apply(settings, {k: v for k, v in (flags or {}).items() if v is not None}, "flags")
    return _check(settings)
