"""A minimal MQTT 3.1.1 client over asyncio: CONNECT, SUBSCRIBE, PUBLISH at QoS 0, PINGREQ
keep-alive, DISCONNECT (OASIS MQTT 3.1.1, §3). Enough for push wake-ups; not a general
client: no QoS 1/2 publishing, no persistent sessions, no TLS (use a broker on loopback or
behind a TLS terminator).

The wake-up convention both sides share (the server publishes, the agent subscribes): one topic
per device, :func:`wake_topic` (``suitkit/devices/<device-id>/wake``), QoS 0, any payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["WAKE_TOPIC", "MqttClient", "MqttError", "MqttUrl", "publish_wakeups", "wake_topic"]

#: The per-device wake-up topic (see :mod:`suitkit.agent.wakeup` and
#: :mod:`suitkit.server.wakeups`).
WAKE_TOPIC = "suitkit/devices/{device_id}/wake"

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
_CONNACK_ERRORS = {
    1: "unacceptable protocol version", 2: "client identifier rejected",
    3: "server unavailable", 4: "bad user name or password", 5: "not authorised",
}


class MqttError(Exception):
    """The connection failed, was refused or was lost."""


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        """``mqtt://[user[:password]@]host[:port]`` (``tcp://`` too)."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"{url!r}: give mqtt://host[:port]")
        return cls(parts.hostname, parts.port or 1883,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return struct.pack(">H", len(data)) + data


def _remaining_length(n: int) -> bytes:
    if n > 268_435_455:
        raise ValueError("MQTT packets are at most 256 MiB")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + _remaining_length(len(body)) + body


def check_topic(topic: str, *, wildcards: bool) -> str:
    if not topic or "\0" in topic or (not wildcards and ("+" in topic or "#" in topic)):
        raise ValueError(f"invalid MQTT topic {topic!r}")
    return topic


class MqttClient:
    """One connection to a broker."""

    def __init__(self, host: str, port: int = 1883, *, client_id: str | None = None,
                 keepalive: int = 60, username: str | None = None,
                 password: str | None = None) -> None:
        self.host, self.port = host, port
        self.client_id = client_id or f"suitkit-{secrets.token_hex(6)}"
        self.keepalive = keepalive
        self.username, self.password = username, password
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._messages: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._next_id = 0
        self._closed = asyncio.Event()
        self.error: BaseException | None = None

    @classmethod
    def from_url(cls, url: str, **kw: object) -> MqttClient:
        u = MqttUrl.parse(url)
        return cls(u.host, u.port, username=u.username, password=u.password, **kw)  # type: ignore[arg-type]

    async def connect(self, timeout: float = 10.0) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout
            )
        except (TimeoutError, OSError) as exc:
            raise MqttError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        self._reader, self._writer = reader, writer
        flags = 0x02  # clean session
        payload = _string(self.client_id)
        if self.username is not None:
            flags |= 0x80
            payload += _string(self.username)
            if self.password is not None:
                flags |= 0x40
                payload += _string(self.password)
        body = _string("MQTT") + bytes([4, flags]) + struct.pack(">H", self.keepalive) + payload
        writer.write(_packet(CONNECT, 0, body))
        await writer.drain()
        try:
            kind, _flags, data = await asyncio.wait_for(self._read_packet(), timeout)
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            await self._abort()
            raise MqttError(f"no CONNACK from {self.host}:{self.port}: {exc!r}") from None
        if kind != CONNACK or len(data) != 2:
            await self._abort()
            raise MqttError(f"expected CONNACK, got packet type {kind}")
        if data[1] != 0:
            await self._abort()
            raise MqttError("connection refused: " + _CONNACK_ERRORS.get(data[1], str(data[1])))
        self._tasks = [asyncio.create_task(self._read_loop())]
        if self.keepalive:
            self._tasks.append(asyncio.create_task(self._ping_loop()))

    async def _read_packet(self) -> tuple[int, int, bytes]:
        assert self._reader is not None
        head = await self._reader.readexactly(1)
        n, shift = 0, 0
        for _ in range(4):
            b = (await self._reader.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        else:
            raise MqttError("malformed remaining length")
        data = await self._reader.readexactly(n) if n else b""
        return head[0] >> 4, head[0] & 0x0F, data

    async def _read_loop(self) -> None:
        try:
            while True:
                kind, flags, data = await self._read_packet()
                if kind == PUBLISH:
                    (tlen,) = struct.unpack(">H", data[:2])
                    topic = data[2 : 2 + tlen].decode("utf-8", "replace")
                    rest = data[2 + tlen :]
                    qos = (flags >> 1) & 3
                    if qos:  # not asked for (we subscribe at QoS 0), but acknowledge QoS 1
                        pid, rest = rest[:2], rest[2:]
                        if qos == 1:
                            await self._send(_packet(PUBACK, 0, pid))
                    self._messages.put_nowait((topic, bytes(rest)))
                elif kind == SUBACK:
                    (pid,) = struct.unpack(">H", data[:2])
                    fut = self._subacks.pop(pid, None)
                    if fut is not None and not fut.done():
                        fut.set_result(list(data[2:]))
                elif kind == PINGRESP:
                    pass
        except (asyncio.IncompleteReadError, OSError, MqttError) as exc:
            self.error = exc
        except asyncio.CancelledError:
            raise
        finally:
            self._closed.set()
            self._messages.put_nowait(None)
            for fut in self._subacks.values():
                if not fut.done():
                    fut.set_exception(MqttError("connection lost"))

    async def _ping_loop(self) -> None:
        with contextlib.suppress(MqttError, OSError):
            while True:
                await asyncio.sleep(max(1.0, self.keepalive / 2))
                await self._send(_packet(PINGREQ, 0, b""))

    async def _send(self, data: bytes) -> None:
        if self._writer is None or self._closed.is_set():
            raise MqttError("not connected")
        self._writer.write(data)
        await self._writer.drain()

    async def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        """Subscribe at QoS 0 and wait for the broker's SUBACK."""
        check_topic(topic, wildcards=True)
        self._next_id = self._next_id % 0xFFFF + 1
        pid = self._next_id
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._subacks[pid] = fut
        await self._send(_packet(SUBSCRIBE, 0x02, struct.pack(">H", pid) + _string(topic) +
                                 b"\x00"))
        try:
            codes = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise MqttError(f"no SUBACK for {topic!r}") from None
        if not codes or codes[0] == 0x80:
            raise MqttError(f"the broker refused the subscription to {topic!r}")

    async def publish(self, topic: str, payload: bytes = b"", *, retain: bool = False) -> None:
        """PUBLISH at QoS 0 (fire and forget)."""
        check_topic(topic, wildcards=False)
        await self._send(_packet(PUBLISH, 0x01 if retain else 0, _string(topic) + payload))

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """(topic, payload) of each message received; ends with MqttError when the connection
        is lost."""
        while True:
            item = await self._messages.get()
            if item is None:
                raise MqttError(f"connection to the broker lost: {self.error!r}")
            yield item

    async def _abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()

    async def close(self) -> None:
        if self._writer is not None and not self._closed.is_set():
            with contextlib.suppress(OSError, MqttError):
                await self._send(_packet(DISCONNECT, 0, b""))
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self._abort()

    async def __aenter__(self) -> MqttClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def wake_topic(device_id: str) -> str:
    """The topic a device listens on for wake-ups."""
    return WAKE_TOPIC.format(device_id=device_id)


async def publish_wakeups(url: str, device_ids: Iterable[str], payload: bytes = b"check-in",
                          *, timeout: float = 10.0) -> int:
    """Publish a wake-up to each device's topic over one connection (QoS 0); returns how
    many. ``timeout`` bounds the connection set-up; :class:`MqttError` when the broker does
    not answer or drops the connection."""
    n = 0
    client = MqttClient.from_url(url, keepalive=0)
    await client.connect(timeout=timeout)
    try:
        for dev in device_ids:
            try:
                await client.publish(wake_topic(dev), payload)
            except OSError as exc:
                raise MqttError(f"publishing to {client.host}:{client.port}: {exc}") from None
            n += 1
    finally:
        await client.close()
    return n
