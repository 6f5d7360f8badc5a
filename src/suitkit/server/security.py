"""Credentials: API and device tokens, report nonces, dashboard session cookies.

Tokens are 256-bit random strings shown once; the database keeps their SHA-256. A fast hash
is the right one here: a slow password hash protects low-entropy secrets against guessing,
and a 256-bit token cannot be guessed, while every device check-in has to look its token up.

Report nonces (draft-ietf-suit-report §4, suit-report-nonce) are handed out with each offer
and come back inside the signed report. They need no table: a nonce is its issue time, random
bytes, and an HMAC over both and the device, under a server secret, so the server recognises
its own nonces for that device, refuses expired or foreign ones, and stores each report once
per nonce (a unique key in the reports table).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import struct
import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suitkit.server.models import ServerSecret

API_TOKEN_PREFIX = "skt_"
DEVICE_TOKEN_PREFIX = "skd_"
LOGIN_CODE_PREFIX = "skl_"
NONCE_LENGTH = 32
_NONCE_CONTEXT = b"suitkit report nonce v1"
_COOKIE_CONTEXT = b"suitkit dashboard session v1"


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_prefix(token: str) -> str:
    """The first characters, kept in clear to tell tokens apart in listings."""
    return token[:12]


def load_secret(session: Session, name: str) -> bytes:
    """The server secret ``name``, created on first use (race-free across workers)."""
    row = session.get(ServerSecret, name)
    if row is not None:
        return row.value
    # if another worker created it first, the insert fails and its value is read below
    with contextlib.suppress(IntegrityError), session.begin_nested():
        session.add(ServerSecret(name=name, value=secrets.token_bytes(32)))
    value = session.scalar(select(ServerSecret.value).where(ServerSecret.name == name))
    assert value is not None
    return value


def issue_nonce(secret: bytes, device_pk: int, now: float | None = None) -> bytes:
    issued = int(time.time() if now is None else now)
    head = struct.pack(">Q", issued) + secrets.token_bytes(8)
    mac = hmac.new(secret, _NONCE_CONTEXT + struct.pack(">Q", device_pk) + head, "sha256")
    return head + mac.digest()[:16]


def check_nonce(
    secret: bytes, device_pk: int, nonce: bytes, ttl: float, now: float | None = None
) -> str | None:
    """``None`` if ``nonce`` was issued to this device less than ``ttl`` seconds ago, else why
    not."""
    if len(nonce) != NONCE_LENGTH:
        return "the report nonce was not issued by this server"
    head, tag = nonce[:16], nonce[16:]
    mac = hmac.new(secret, _NONCE_CONTEXT + struct.pack(">Q", device_pk) + head, "sha256")
    if not hmac.compare_digest(mac.digest()[:16], tag):
        return "the report nonce was not issued by this server to this device"
    issued = struct.unpack(">Q", head[:8])[0]
    current = time.time() if now is None else now
    if current - issued > ttl:
        return "the report nonce has expired"
    return None


def session_cookie(secret: bytes, token_id: int, expires: int) -> str:
    body = f"{token_id}.{expires}"
    mac = hmac.new(secret, _COOKIE_CONTEXT + body.encode(), "sha256").hexdigest()
    return f"{body}.{mac}"


def check_session_cookie(secret: bytes, value: str, now: float | None = None) -> int | None:
    """The token id a valid, unexpired cookie stands for."""
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    body = f"{parts[0]}.{parts[1]}"
    mac = hmac.new(secret, _COOKIE_CONTEXT + body.encode(), "sha256").hexdigest()
    if not hmac.compare_digest(mac, parts[2]):
        return None
    if int(parts[1]) < (time.time() if now is None else now):
        return None
    return int(parts[0])
