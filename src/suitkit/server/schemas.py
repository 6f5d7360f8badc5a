"""Request and response bodies of the operator and device APIs (they make the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-][A-Za-z0-9._ -]{0,99}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
DigestText = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,32}:[0-9a-f]{2,256}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- tokens ----------------------------------------------------------------------------------


class TokenCreate(Strict):
    name: Name
    role: Literal["admin", "release", "viewer"]


class TokenInfo(BaseModel):
    id: int
    name: str
    role: str
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None


class TokenCreated(TokenInfo):
    token: str = Field(description="The token itself: shown this once, stored only hashed")


class LoginCodeCreated(BaseModel):
    url: str = Field(description="Open within expires_at to sign in to the dashboard once")
    expires_at: dt.datetime


# --- releases --------------------------------------------------------------------------------


class ReleaseFileInfo(BaseModel):
    kind: str
    name: str
    uri: str | None
    component_index: int | None
    sha256: str
    size: int


class ReleaseComponentInfo(BaseModel):
    index: int
    component: str
    vendor_id: str | None
    class_id: str | None


class ReleaseInfo(BaseModel):
    id: int
    name: str
    notes: str | None
    manifest_digest: str
    sequence_number: int
    reference_uri: str | None
    envelope_sha256: str
    envelope_size: int
    created_at: dt.datetime
    components: list[ReleaseComponentInfo] = []
    files: list[ReleaseFileInfo] = []


class ReleaseDetail(ReleaseInfo):
    signers: list[dict[str, Any]]
    show: dict[str, Any] = Field(description="The `suitkit show --json` tree of the envelope")
    images: list[dict[str, Any]] = Field(
        default=[], description="The images the manifest fetches (URI, digest, size)"
    )
    missing_payloads: list[str] = Field(
        default=[], description="URIs the manifest fetches for which no payload was uploaded"
    )


# --- devices ---------------------------------------------------------------------------------


class DeviceCreate(Strict):
    device_id: uuid.UUID
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    public_key: str = Field(description="The device's report-signing public key (PEM)")
    name: Name | None = None
    group: GroupName | None = None
    tags: list[Tag] = []


class DeviceUpdate(Strict):
    name: Name | None = None
    group: GroupName | Literal[""] | None = Field(
        default=None, description='"" takes the device out of its group'
    )
    tags: list[Tag] | None = None
    public_key: str | None = None


class ComponentState(BaseModel):
    component: str
    sequence_number: int | None
    digest: str | None
    updated_at: dt.datetime


class DeviceInfo(BaseModel):
    device_id: str
    vendor_id: str
    class_id: str
    name: str | None
    group: str | None
    tags: list[str]
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    sequence_number: int | None
    manifest_digest: str | None
    token_prefix: str


class DeviceCreated(DeviceInfo):
    token: str = Field(description="The device's API token: shown this once, stored only hashed")


class DeviceImported(BaseModel):
    device_id: str
    token: str


class ImportResult(BaseModel):
    created: int
    devices: list[DeviceImported]


class ReportSummary(BaseModel):
    id: int
    received_at: dt.datetime
    manifest_digest: str
    reference_uri: str | None
    success: bool
    reason: str | None
    campaign_id: int | None = None


class ReportDetail(ReportSummary):
    device_id: str
    lines: list[str]
    signed_report_b64: str


class DeviceEventInfo(BaseModel):
    at: dt.datetime
    kind: str
    campaign_id: int | None
    detail: str | None


class DeploymentInfo(BaseModel):
    campaign_id: int
    campaign: str
    release_id: int
    state: str
    reason: str | None
    wave: int


class DeviceStatus(DeviceInfo):
    components: list[ComponentState]
    last_report: ReportSummary | None
    deployments: list[DeploymentInfo]
    history: list[DeviceEventInfo]


class GroupCreate(Strict):
    name: GroupName
    description: str | None = None


class GroupInfo(BaseModel):
    id: int
    name: str
    description: str | None
    devices: int


# --- campaigns -------------------------------------------------------------------------------


class CampaignTarget(Strict):
    class_id: uuid.UUID | None = None
    group: GroupName | None = None
    tag: Tag | None = None
    devices: list[uuid.UUID] | None = Field(
        default=None, description="Explicit device ids (instead of the filters)"
    )
    all: bool = Field(default=False, description="Every device the release accepts")


class CampaignCreate(Strict):
    name: Name
    release_id: int
    target: CampaignTarget
    waves: list[float] = Field(default=[100.0], description="Cumulative percentages")
    failure_threshold: float = Field(default=0.2, ge=0, le=1)
    min_reports: int = Field(default=5, ge=1)
    advance_at: float = Field(default=1.0, gt=0, le=1)
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    start: bool = Field(default=True, description="false: create it paused")


class CampaignResume(Strict):
    failure_threshold: float | None = Field(default=None, ge=0, le=1)


class WaveInfo(BaseModel):
    wave: int
    percent: float
    open: bool
    total: int
    counts: dict[str, int]
    failure_rate: float


class CampaignInfo(BaseModel):
    id: int
    name: str
    release_id: int
    state: str
    current_wave: int
    waves: list[float]
    failure_threshold: float
    min_reports: int
    advance_at: float
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    pause_reason: str | None
    target: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    total: int
    counts: dict[str, int]


class CampaignStatus(CampaignInfo):
    in_window: bool
    per_wave: list[WaveInfo]
    failure_reasons: dict[str, int]


class CampaignDevice(BaseModel):
    device_id: str
    wave: int
    state: str
    reason: str | None
    offered_at: dt.datetime | None
    finished_at: dt.datetime | None


# --- device API ------------------------------------------------------------------------------


class ComponentReport(Strict):
    component: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    sequence_number: int | None = Field(default=None, ge=0)
    digest: DigestText | None = None


class CheckIn(Strict):
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    device_id: uuid.UUID
    sequence_number: int | None = Field(
        default=None, ge=0, description="Sequence number of the manifest the device runs"
    )
    manifest_digest: DigestText | None = Field(
        default=None, description="Digest of that manifest (sha256:<hex>, as in the offer)"
    )
    components: list[ComponentReport] = Field(default=[], max_length=64)


class OfferFile(BaseModel):
    url: str
    sha256: str
    size: int


class OfferMember(OfferFile):
    member: str


class OfferPayload(OfferFile):
    uri: str = Field(description="The URI in the manifest this download stands for")
    component_index: int | None


class Offer(BaseModel):
    campaign_id: int
    release_id: int
    sequence_number: int
    manifest_digest: str
    envelope: OfferFile
    members: list[OfferMember]
    payloads: list[OfferPayload]
    report_url: str
    report_nonce: str = Field(description="Hex; put it in suit-report-nonce of the report")


class ReportAccepted(BaseModel):
    report_id: int
    duplicate: bool
    success: bool
    reason: str | None
    campaign_id: int | None
    deployment_state: str | None
