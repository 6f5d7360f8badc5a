"""SUIT_Report (draft-ietf-suit-report-18): what a run did, signed by the device.

:func:`build_report` turns a :class:`~suitkit.device.events.RunResult` into a :class:`SuitReport`:

- ``suit-reference`` (99): the manifest's reference URI (empty text when it has none) and its
  digest, "exactly as reported in SUIT_Authentication, element 0" (§4);
- ``suit-report-records`` (3): for each command event (one per component, manifest §8.4.10),
  as its reporting policy asks:

  * record-on-success / record-on-failure: a SUIT_Record ``[manifest-id, section, offset,
    component-index, properties]`` (§3); the properties of a failure record are the measured
    values that led to the failure (§3: "any measured properties that led to the command
    failure", e.g. the actual image digest); a success record has none;
  * sysinfo-success / sysinfo-failure: a system-property-claims map ``{0: component-id,
    + SUIT_Parameters}`` (§4, §4.1) with the system information the command consumed (the
    device's vendor and class ids, the component's slot, the digest and size of its content,
    or of what a fetch/copy/write stored); none when the command measured nothing;

- ``suit-report-result`` (4): ``true``, or the reason code (§4.2), an internal code and the
  record of the failing command. A run rejected before any command ran (authentication,
  parsing, version, sequence number) has no command to point at: its result record names the
  manifest element that failed (e.g. suit-manifest-sequence-number, 2) or section 0 when the
  envelope itself was rejected;
- ``suit-report-capability-report`` (8): the components, commands, parameters and algorithms
  this processor supports (§5).

The reference of a run whose envelope was not authenticated has the empty URI (the manifest is
never parsed, manifest §6.2) and the digest the envelope's SUIT_Authentication claims; when not
even that could be read, the digest is :data:`UNKNOWN_DIGEST` (SHA-256 with an empty value).

:func:`sign_report` wraps the encoded report in a COSE_Sign1 (§7, tag 18, payload embedded);
:func:`verify_report` checks it and parses the report back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from suitkit.device.events import CommandEvent, RunResult
from suitkit.device.processor import IMPLEMENTED_COMMANDS, SUPPORTED_PARAMETERS
from suitkit.errors import AuthenticationError, DecodeError
from suitkit.format import cbor
from suitkit.format.codepoints import (
    DIGEST_ALGORITHMS,
    CapabilityKey,
    CoseAlgorithm,
    ManifestKey,
    RecordIndex,
    ReportingPolicy,
    ReportKey,
    ReportReason,
    Tag,
)
from suitkit.format.digest import Digest
from suitkit.format.manifest import ComponentIdentifier, component_id_text
from suitkit.format.parameters import Parameters, encode_value, parameter_name

__all__ = [
    "SIGNATURE_ALGORITHMS",
    "UNKNOWN_DIGEST",
    "ReportFailure",
    "SuitRecord",
    "SuitReport",
    "SystemProperties",
    "build_report",
    "capability_report",
    "sign_encoded_report",
    "sign_report",
    "verify_report",
]

#: Signature algorithms the device verifies manifests with (reported as crypt-algo capabilities).
SIGNATURE_ALGORITHMS = (CoseAlgorithm.ES256, CoseAlgorithm.ESP256, CoseAlgorithm.EDDSA)

#: The manifest digest of a report whose envelope could not be read far enough to know it.
UNKNOWN_DIGEST = Digest(CoseAlgorithm.SHA_256, b"")

#: ``system-component-id`` (report §4, CDDL: ``system-component-id = 0``).
SYSTEM_COMPONENT_ID = 0


@dataclass(frozen=True, slots=True)
class SuitRecord:
    """``SUIT_Record = [manifest-id, section, offset, component-index, properties]`` (§3)."""

    section: int
    offset: int
    component_index: int
    properties: Mapping[int, Any] = field(default_factory=dict)
    manifest_id: tuple[int, ...] = ()

    def to_cbor(self) -> list[Any]:
        out: list[Any] = [None] * 5
        out[RecordIndex.MANIFEST_ID] = list(self.manifest_id)
        out[RecordIndex.MANIFEST_SECTION] = self.section
        out[RecordIndex.SECTION_OFFSET] = self.offset
        out[RecordIndex.COMPONENT_INDEX] = self.component_index
        out[RecordIndex.PROPERTIES] = {k: encode_value(k, v) for k, v in self.properties.items()}
        return out

    @classmethod
    def from_cbor(cls, v: Any, path: str) -> SuitRecord:
        if type(v) is not list or len(v) < 5:
            raise DecodeError("a SUIT_Record is an array of 5 elements", path=path)
        mid, section, offset, ci, props = v[:5]
        if type(mid) is not list or not all(type(i) is int and i >= 0 for i in mid):
            raise DecodeError("suit-record-manifest-id must be [* uint]", path=path)
        if type(section) is not int or type(offset) is not int or offset < 0:
            raise DecodeError("section must be int, offset uint", path=path)
        if type(ci) is not int or ci < 0 or type(props) is not dict:
            raise DecodeError("component index must be uint, properties a map", path=path)
        typed = dict(Parameters.from_cbor(props, f"{path}/properties")) if props else {}
        return cls(section, offset, ci, typed, tuple(mid))

    def describe(self) -> str:
        name = (
            "shared-sequence"
            if self.section == ManifestKey.COMMON
            else (ManifestKey.name_of(self.section) or str(self.section))
        )
        text = f"{name}+{self.offset} component {self.component_index}"
        if self.properties:
            props = ", ".join(f"{parameter_name(k)}={_show(v)}" for k, v in self.properties.items())
            text += f" ({props})"
        return text


@dataclass(frozen=True, slots=True)
class SystemProperties:
    """``system-property-claims = {system-component-id => SUIT_Component_Identifier,
    + SUIT_Parameters}`` (report §4): measured properties of one component."""

    component: ComponentIdentifier
    properties: Mapping[int, Any]

    def to_cbor(self) -> dict[int, Any]:
        out: dict[int, Any] = {SYSTEM_COMPONENT_ID: list(self.component)}
        out.update({k: encode_value(k, v) for k, v in self.properties.items()})
        return out

    @classmethod
    def from_cbor(cls, v: Any, path: str) -> SystemProperties:
        if type(v) is not dict:
            raise DecodeError("system-property-claims must be a map", path=path)
        cid = v.get(SYSTEM_COMPONENT_ID)
        if type(cid) is not list or not all(type(p) is bytes for p in cid):
            raise DecodeError(
                "system-component-id (0) must be a SUIT_Component_Identifier", path=path
            )
        rest = {k: x for k, x in v.items() if k != SYSTEM_COMPONENT_ID}
        if not rest:
            raise DecodeError("system-property-claims holds no property", path=path)
        return cls(tuple(cid), dict(Parameters.from_cbor(rest, path)))

    def describe(self) -> str:
        props = ", ".join(f"{parameter_name(k)}={_show(v)}" for k, v in self.properties.items())
        return f"system properties of {component_id_text(self.component)}: {props}"


def _show(v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, Digest):
        return f"{v.algorithm_name}:{v.value.hex()}"
    return str(v)


@dataclass(frozen=True, slots=True)
class ReportFailure:
    """The failure form of suit-report-result: code, record and reason (§4.2)."""

    code: int
    record: SuitRecord
    reason: ReportReason


@dataclass(frozen=True, slots=True)
class SuitReport:
    """A SUIT_Report (§4). ``records`` keeps SUIT_Records and system-property-claims in the
    order they were produced (§4.1: one merged list)."""

    reference_uri: str
    manifest_digest: Digest
    records: tuple[SuitRecord | SystemProperties, ...]
    result: ReportFailure | None
    capabilities: Mapping[int, Any] | None = None
    nonce: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.result is None

    @property
    def suit_records(self) -> tuple[SuitRecord, ...]:
        return tuple(r for r in self.records if isinstance(r, SuitRecord))

    @property
    def system_properties(self) -> tuple[SystemProperties, ...]:
        """The system-property-claims (§4.1: "filter suit-report-records for maps")."""
        return tuple(r for r in self.records if isinstance(r, SystemProperties))

    def to_cbor(self) -> dict[int, Any]:
        out: dict[int, Any] = {
            ReportKey.REFERENCE: [self.reference_uri, self.manifest_digest.to_cbor()],
            ReportKey.RECORDS: [r.to_cbor() for r in self.records],
        }
        if self.nonce is not None:
            out[ReportKey.NONCE] = self.nonce
        if self.result is None:
            out[ReportKey.RESULT] = True
        else:
            out[ReportKey.RESULT] = {
                ReportKey.RESULT_CODE: self.result.code,
                ReportKey.RESULT_RECORD: self.result.record.to_cbor(),
                ReportKey.RESULT_REASON: int(self.result.reason),
            }
        if self.capabilities is not None:
            out[ReportKey.CAPABILITY_REPORT] = dict(self.capabilities)
        return out

    def encode(self) -> bytes:
        return cbor.dumps(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes) -> SuitReport:
        v = cbor.loads(data, what="SUIT_Report", path="report")
        if type(v) is not dict:
            raise DecodeError("a SUIT_Report is a map", path="report")
        ref = v.get(ReportKey.REFERENCE)
        if type(ref) is not list or len(ref) != 2 or type(ref[0]) is not str:
            raise DecodeError("suit-reference must be [tstr, SUIT_Digest]", path="report/99")
        digest = Digest.from_cbor(ref[1], "report/99/digest")
        recs = v.get(ReportKey.RECORDS)
        if type(recs) is not list:
            raise DecodeError("suit-report-records must be an array", path="report/3")
        records = tuple(
            SystemProperties.from_cbor(r, f"report/3[{i}]")
            if type(r) is dict
            else SuitRecord.from_cbor(r, f"report/3[{i}]")
            for i, r in enumerate(recs)
        )
        res = v.get(ReportKey.RESULT)
        result: ReportFailure | None
        if res is True:
            result = None
        elif type(res) is dict:
            code, rec, reason = (
                res.get(ReportKey.RESULT_CODE),
                res.get(ReportKey.RESULT_RECORD),
                res.get(ReportKey.RESULT_REASON),
            )
            if type(code) is not int or type(reason) is not int:
                raise DecodeError("result code and reason must be integers", path="report/4")
            try:
                why = ReportReason(reason)
            except ValueError:
                raise DecodeError(f"unknown report reason {reason}", path="report/4") from None
            result = ReportFailure(code, SuitRecord.from_cbor(rec, "report/4/6"), why)
        else:
            raise DecodeError("suit-report-result must be true or a map", path="report/4")
        nonce = v.get(ReportKey.NONCE)
        caps = v.get(ReportKey.CAPABILITY_REPORT)
        return cls(
            ref[0],
            digest,
            records,
            result,
            caps if type(caps) is dict else None,
            nonce if type(nonce) is bytes else None,
        )

    def lines(self) -> list[str]:
        digest = self.manifest_digest
        known = f"{digest.algorithm_name}:{digest.value.hex()}" if digest.value else "(unknown)"
        out = [
            f"manifest: {self.reference_uri or '(no reference URI)'} {known}",
            f"records: {len(self.records)}",
        ]
        out += [f"  {r.describe()}" for r in self.records]
        if self.result is None:
            out.append("result: success")
        else:
            out.append(
                f"result: FAILED, reason {self.result.reason.spec_name} "
                f"(code {self.result.code}) at {self.result.record.describe()}"
            )
        if self.capabilities:
            caps = self.capabilities
            comps = caps.get(CapabilityKey.COMPONENT_CAPABILITIES, [])
            out.append(
                f"capabilities: {len(comps)} components, "
                f"{len(caps.get(CapabilityKey.COMMAND_CAPABILITIES, []))} commands, "
                f"{len(caps.get(CapabilityKey.PARAMETERS_CAPABILITIES, []))} parameters"
            )
        return out


def capability_report(components: Sequence[ComponentIdentifier]) -> dict[int, Any]:
    """SUIT_Capability_Report (§5) of this processor on a device with ``components``."""
    from suitkit.encryption.cose_encrypt import (
        CONTENT_ALGORITHMS,
        ECDH_ALGORITHMS,
        KEY_WRAP_ALGORITHMS,
    )

    # digests, manifest signatures, and the payload encryption algorithms (content and key
    # distribution) copy and write decrypt with (draft-ietf-suit-firmware-encryption)
    algs = sorted(
        {
            *DIGEST_ALGORITHMS,
            *SIGNATURE_ALGORITHMS,
            *CONTENT_ALGORITHMS,
            *KEY_WRAP_ALGORITHMS,
            *ECDH_ALGORITHMS,
        },
        key=int,
    )
    return {
        CapabilityKey.COMPONENT_CAPABILITIES: [list(c) for c in components],
        CapabilityKey.COMMAND_CAPABILITIES: sorted(int(c) for c in IMPLEMENTED_COMMANDS),
        CapabilityKey.PARAMETERS_CAPABILITIES: sorted(int(p) for p in SUPPORTED_PARAMETERS),
        CapabilityKey.CRYPT_ALGO_CAPABILITIES: [int(a) for a in algs],
    }


def _record(ev: CommandEvent, properties: bool) -> SuitRecord:
    return SuitRecord(
        ev.section, ev.offset, ev.component_index or 0, dict(ev.measured) if properties else {}
    )


def _claims(ev: CommandEvent, components: Sequence[ComponentIdentifier]) -> SystemProperties | None:
    ci = ev.component_index
    if not ev.measured or ci is None or ci >= len(components):
        return None
    return SystemProperties(components[ci], dict(ev.measured))


def build_report(
    result: RunResult,
    *,
    components: Sequence[ComponentIdentifier] | None = None,
    nonce: bytes | None = None,
) -> SuitReport:
    """The SUIT_Report of one run; records follow the reporting policies (manifest §8.4.10):
    see the module docstring for what each bit produces."""
    records: list[SuitRecord | SystemProperties] = []
    for ev in result.events:
        if ev.ok is None or ev.component_index is None:
            continue
        policy = ev.reporting_policy
        if ev.ok:
            record_bit, sysinfo_bit = (
                ReportingPolicy.SEND_RECORD_ON_SUCCESS,
                ReportingPolicy.SEND_SYSINFO_SUCCESS,
            )
        else:
            record_bit, sysinfo_bit = (
                ReportingPolicy.SEND_RECORD_ON_FAILURE,
                ReportingPolicy.SEND_SYSINFO_FAILURE,
            )
        if policy & record_bit.mask:
            records.append(_record(ev, properties=not ev.ok))
        if policy & sysinfo_bit.mask:
            claims = _claims(ev, result.components)
            if claims is not None:
                records.append(claims)
    comps = components if components is not None else result.components
    failure = None
    if result.error is not None:
        err = result.error
        failing = result.failing_event()
        record = (
            _record(failing, True)
            if failing is not None
            else SuitRecord(err.section or 0, err.offset or 0, err.component_index or 0)
        )
        failure = ReportFailure(int(err.reason), record, err.reason)
    return SuitReport(
        reference_uri=result.reference_uri or "",
        manifest_digest=result.manifest_digest or UNKNOWN_DIGEST,
        records=tuple(records),
        result=failure,
        # the device's components (default: the manifest's); §5 needs at least one
        capabilities=capability_report(comps) if comps else None,
        nonce=nonce,
    )


def sign_report(report: SuitReport, key: Any) -> bytes:
    """A tagged COSE_Sign1 with the encoded report as its (embedded) payload (§7)."""
    return sign_encoded_report(report.encode(), key)


def sign_encoded_report(encoded: bytes, key: Any) -> bytes:
    """:func:`sign_report` of a report already encoded (``SuitReport.encode()``)."""
    from suitkit.cose import sign1

    return sign1(encoded, key, detached=False).encode()


def verify_report(data: bytes, keys: Iterable[Any] | None) -> SuitReport:
    """Parse a signed (COSE_Sign1) or bare report; with ``keys``, the signature must verify
    (AuthenticationError otherwise)."""
    value = cbor.loads(data, what="SUIT_Report", path="report")
    if isinstance(value, cbor.CBORTag):
        if value.tag != Tag.COSE_SIGN1:
            raise DecodeError(f"expected a COSE_Sign1 (tag 18), found tag {value.tag}")
        from suitkit.cose import CoseSign1, decode

        msg = decode(data)
        if not isinstance(msg, CoseSign1) or msg.payload is None:
            raise DecodeError("the COSE_Sign1 of a report must carry the report as its payload")
        if keys is not None:
            msg.verify(list(keys))
        return SuitReport.decode(msg.payload)
    if keys is not None:
        raise AuthenticationError("the report is not signed (a COSE_Sign1 was expected)")
    return SuitReport.decode(data)


def component_names(report: SuitReport) -> list[str]:
    caps = report.capabilities or {}
    return [
        component_id_text(tuple(c))
        for c in caps.get(CapabilityKey.COMPONENT_CAPABILITIES, [])
        if isinstance(c, list)
    ]
