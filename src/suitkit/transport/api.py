"""What a transport offers the device agent: check-in, downloads with resume, report upload.

The agent speaks to the update service's device API (``/device/v1``, see
``suitkit.server.api_device``) through a :class:`DeviceApi`; HTTP and CoAP implement it. The
offer is parsed into :class:`Offer` here, so that the agent needs neither the server's schemas
nor its dependencies.

Errors say what the agent should do next:

- :class:`TransportError`: transient (no connection, timeout, 5xx, a cut transfer): back off
  and retry; a download keeps what it received, so the retry resumes (``Range``/Block2);
- :class:`Unauthorized` (a TransportError): the server refused the device's token (401/403);
  retrying is pointless until the token is fixed, but a long back-off keeps the device alive;
- :class:`NotOffered`: a file is not (or no longer) offered to this device (404): the agent
  drops the offer and checks in again;
- :class:`ReportRefused`: the report was refused for good (422 and friends);
  ``nonce_problem`` says whether a report without the nonce may be accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ChunkHook",
    "DeviceApi",
    "NotOffered",
    "Offer",
    "OfferFile",
    "ProtocolError",
    "ReportAck",
    "ReportRefused",
    "TransportError",
    "Unauthorized",
]

#: Called with (offset, chunk) for each chunk a download receives, before it is written; it
#: may return a different chunk (fault injection), sleep (throttling) or raise
#: (a dropped connection: raise TransportError).
ChunkHook = Callable[[int, bytes], Awaitable[bytes]]


class TransportError(Exception):
    """Transient: the request may succeed later (network, timeout, server error)."""


class Unauthorized(TransportError):
    """The server does not accept the device's credentials (401/403)."""


class ProtocolError(TransportError):
    """The server answered something this agent does not understand (kept transient: a
    server being upgraded may answer oddly for a moment)."""


class NotOffered(Exception):
    """The file is not offered to this device (any more): 404."""


class ReportRefused(Exception):
    """The server refused the report for good."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    @property
    def nonce_problem(self) -> bool:
        return "nonce" in self.message.lower()


@dataclass(frozen=True, slots=True)
class OfferFile:
    """One file of an offer. ``kind``: envelope, member (``name`` is the member's name) or
    payload (``name`` is the URI the manifest fetches it from)."""

    kind: str
    url: str
    sha256: str
    size: int
    name: str = ""
    component_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "url": self.url, "sha256": self.sha256, "size": self.size,
            "name": self.name, "component_index": self.component_index,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OfferFile:
        return cls(
            str(d["kind"]), str(d["url"]), str(d["sha256"]), int(d["size"]),
            str(d.get("name") or ""),
            None if d.get("component_index") is None else int(d["component_index"]),
        )


def _check_sha(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ProtocolError(f"the offer names a file by {value!r}, not a SHA-256")
    return value


@dataclass(frozen=True, slots=True)
class Offer:
    """An update offered at check-in (the server's ``Offer``)."""

    campaign_id: int
    release_id: int
    sequence_number: int
    manifest_digest: str
    envelope: OfferFile
    members: tuple[OfferFile, ...]
    payloads: tuple[OfferFile, ...]
    report_url: str
    report_nonce: bytes

    @property
    def files(self) -> tuple[OfferFile, ...]:
        return (self.envelope, *self.members, *self.payloads)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def from_server(cls, d: Mapping[str, Any]) -> Offer:
        """Parse the server's answer (JSON over HTTP, CBOR over CoAP: the same keys)."""
        try:
            env = d["envelope"]
            nonce = d["report_nonce"]
            return cls(
                campaign_id=int(d["campaign_id"]),
                release_id=int(d["release_id"]),
                sequence_number=int(d["sequence_number"]),
                manifest_digest=str(d["manifest_digest"]),
                envelope=OfferFile("envelope", str(env["url"]), _check_sha(str(env["sha256"])),
                                   int(env["size"])),
                members=tuple(
                    OfferFile("member", str(m["url"]), _check_sha(str(m["sha256"])),
                              int(m["size"]), str(m["member"]))
                    for m in d.get("members") or ()
                ),
                payloads=tuple(
                    OfferFile("payload", str(p["url"]), _check_sha(str(p["sha256"])),
                              int(p["size"]), str(p["uri"]),
                              None if p.get("component_index") is None
                              else int(p["component_index"]))
                    for p in d.get("payloads") or ()
                ),
                report_url=str(d["report_url"]),
                report_nonce=bytes.fromhex(nonce) if isinstance(nonce, str) else bytes(nonce),
            )
        except ProtocolError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed offer: {type(exc).__name__}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "release_id": self.release_id,
            "sequence_number": self.sequence_number,
            "manifest_digest": self.manifest_digest,
            "envelope": self.envelope.to_json(),
            "members": [m.to_json() for m in self.members],
            "payloads": [p.to_json() for p in self.payloads],
            "report_url": self.report_url,
            "report_nonce": self.report_nonce.hex(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Offer:
        """The inverse of :meth:`to_json` (the agent's state file)."""
        return cls(
            int(d["campaign_id"]), int(d["release_id"]), int(d["sequence_number"]),
            str(d["manifest_digest"]), OfferFile.from_json(d["envelope"]),
            tuple(OfferFile.from_json(m) for m in d["members"]),
            tuple(OfferFile.from_json(p) for p in d["payloads"]),
            str(d["report_url"]), bytes.fromhex(d["report_nonce"]),
        )


@dataclass(frozen=True, slots=True)
class ReportAck:
    report_id: int
    duplicate: bool
    success: bool
    reason: str | None
    deployment_state: str | None

    @classmethod
    def from_server(cls, d: Mapping[str, Any]) -> ReportAck:
        try:
            return cls(int(d["report_id"]), bool(d.get("duplicate")), bool(d.get("success")),
                       d.get("reason"), d.get("deployment_state"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed report answer: {exc}") from None


class DeviceApi(Protocol):
    """The device API as the agent uses it (one instance per device: it holds its token)."""

    async def checkin(self, body: Mapping[str, Any]) -> Offer | None:
        """The offer, or None when there is nothing to do."""
        ...

    async def download(self, file: OfferFile, part: Path, hook: ChunkHook | None = None) -> int:
        """Complete ``part`` (a partial download of ``file``: resume from its length, restart
        if the server's copy changed) until it holds ``file.size`` bytes. Returns how many
        bytes this call received. Raises TransportError when cut short (``part`` keeps what
        was received), NotOffered on 404."""
        ...

    async def report(self, url: str, signed_report: bytes) -> ReportAck:
        """Upload a signed SUIT_Report (COSE_Sign1)."""
        ...

    async def aclose(self) -> None: ...
