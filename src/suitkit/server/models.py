"""The database schema (SQLAlchemy 2 declarative). Migrations: :mod:`suitkit.server.migrations`.

Every change here needs a new Alembic revision under ``migrations/versions``; a test compares
the migrated schema with these models.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from suitkit.server.db import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Role(enum.StrEnum):
    """API token roles, each including the rights of the ones below it."""

    VIEWER = "viewer"  # read everything
    RELEASE = "release"  # + upload releases, create and steer campaigns
    ADMIN = "admin"  # + devices, groups, tokens

    @property
    def rank(self) -> int:
        return {"viewer": 0, "release": 1, "admin": 2}[self.value]


class CampaignState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    ABORTED = "aborted"
    COMPLETED = "completed"


class DeploymentState(enum.StrEnum):
    """Where one device stands in one campaign."""

    PENDING = "pending"  # targeted; its wave has not opened, or it has not checked in since
    OFFERED = "offered"  # a check-in answered with the envelope
    DOWNLOADING = "downloading"  # it fetched the envelope, a member or a payload
    INSTALLED = "installed"  # a report (or a check-in) says it runs the release
    FAILED = "failed"  # a report gave a failure reason

    @property
    def terminal(self) -> bool:
        return self in (DeploymentState.INSTALLED, DeploymentState.FAILED)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LoginCode(Base):
    """A one-time dashboard login link (``POST /api/v1/login-codes``)."""

    __tablename__ = "login_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ServerSecret(Base):
    """Server-wide random keys (report nonces, dashboard cookies), shared by every worker."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class DeviceGroup(Base):
    __tablename__ = "device_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_class", "vendor_id", "class_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(36), unique=True)  # UUID, lower case
    vendor_id: Mapped[str] = mapped_column(String(36))
    class_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_groups.id", ondelete="SET NULL"), nullable=True, index=True
    )
    report_key_pem: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sequence_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    manifest_digest: Mapped[str | None] = mapped_column(String(200), nullable=True)


class DeviceTag(Base):
    __tablename__ = "device_tags"

    device_pk: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class DeviceComponent(Base):
    """What a device said it runs, per component, at its last check-in or report."""

    __tablename__ = "device_components"

    device_pk: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    component: Mapped[str] = mapped_column(String(200), primary_key=True)
    sequence_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    digest: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Release(Base):
    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    manifest_digest: Mapped[str] = mapped_column(String(200), unique=True)  # "sha256:<hex>"
    sequence_number: Mapped[int] = mapped_column(BigInteger)
    reference_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    envelope_sha256: Mapped[str] = mapped_column(String(64))
    envelope_size: Mapped[int] = mapped_column(BigInteger)
    show_json: Mapped[str] = mapped_column(Text)  # `suitkit show --json` of the envelope
    signers: Mapped[str] = mapped_column(Text)  # JSON: the verified blocks
    facts: Mapped[str] = mapped_column(Text)  # JSON: images fetched, payloads not uploaded
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True
    )


class ReleaseComponent(Base):
    __tablename__ = "release_components"

    release_id: Mapped[int] = mapped_column(
        ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    component: Mapped[str] = mapped_column(String(200))
    vendor_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    class_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class ReleaseFile(Base):
    """A stored blob of a release: the envelope, a severed member, or a payload."""

    __tablename__ = "release_files"
    __table_args__ = (UniqueConstraint("release_id", "kind", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # envelope | member | payload
    name: Mapped[str] = mapped_column(String(200))  # payload file name, member name
    uri: Mapped[str | None] = mapped_column(Text, nullable=True)  # the manifest's URI
    component_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    release_id: Mapped[int] = mapped_column(
        ForeignKey("releases.id", ondelete="RESTRICT"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), index=True)
    waves: Mapped[str] = mapped_column(Text)  # JSON list of cumulative percentages
    current_wave: Mapped[int] = mapped_column(Integer)
    failure_threshold: Mapped[float] = mapped_column(Float)
    min_reports: Mapped[int] = mapped_column(Integer)
    advance_at: Mapped[float] = mapped_column(Float)
    starts_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    pause_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    target: Mapped[str] = mapped_column(Text)  # JSON: how the devices were chosen
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True
    )


class Deployment(Base):
    """One device in one campaign."""

    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("campaign_id", "device_pk"),
        Index("ix_deployments_device_state", "device_pk", "state"),
        Index("ix_deployments_campaign_wave_state", "campaign_id", "wave", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    offered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    downloading_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    report_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Report(Base):
    """A signed SUIT_Report as received (verified), once per device and nonce."""

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("device_pk", "dedup_key"),
        Index("ix_reports_device_received", "device_pk", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    dedup_key: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    manifest_digest: Mapped[str] = mapped_column(String(200))
    reference_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    nonce: Mapped[str | None] = mapped_column(String(100), nullable=True)
    deployment_id: Mapped[int | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL"), nullable=True
    )
    summary: Mapped[str] = mapped_column(Text)  # JSON list of lines
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class DeviceEvent(Base):
    """A device's history: offers, downloads, results, version changes seen at check-in."""

    __tablename__ = "device_events"
    __table_args__ = (Index("ix_device_events_device_at", "device_pk", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True
    )
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
