"""SUIT_Report (draft-ietf-suit-report-18) for every run, signed with COSE_Sign1 and verified.

What each reporting-policy bit (manifest §8.4.10) produces is in :mod:`suitkit.device.report`:
record bits make SUIT_Records (report §3), sysinfo bits make system-property-claims (report §4,
§4.1).
"""

from __future__ import annotations

import uuid

import pytest

from suitkit.cose import CoseKey
from suitkit.device.events import Procedure
from suitkit.device.processor import Processor
from suitkit.device.report import (
    UNKNOWN_DIGEST,
    SuitRecord,
    SuitReport,
    SystemProperties,
    build_report,
    sign_report,
    verify_report,
)
from suitkit.errors import AuthenticationError, DecodeError
from suitkit.format import cbor
from suitkit.format.codepoints import (
    CapabilityKey,
    Command,
    CoseAlgorithm,
    ManifestKey,
    Parameter,
    ReportKey,
    ReportReason,
)
from suitkit.format.digest import Digest

from .conftest import (
    C0,
    C1,
    CLASS,
    EXAMPLE_PUB,
    IDENTITY,
    VENDOR,
    example,
    explicit,
    memory_device,
    sign,
)

FAKE = {"http://example.com/file.bin": b"x" * 34768}
FAKE_DIGEST = Digest.compute(b"x" * 34768)


def test_report_of_example_1_names_the_failing_image_match_record() -> None:
    """Report §4: reference = manifest digest from SUIT_Authentication element 0; §4.2 result:
    the reason and the record of the failing command, with the measured values (§3)."""
    env = example(1)
    result = Processor(memory_device(FAKE)).run(env, Procedure.UPDATE)
    report = build_report(result)
    assert report.manifest_digest == env.authentication.digest
    assert report.reference_uri == ""
    assert report.result is not None
    assert report.result.reason is ReportReason.CONDITION_FAILED
    rec = report.result.record
    assert (rec.section, rec.offset, rec.component_index) == (ManifestKey.INSTALL, 35, 0)
    assert rec.properties == {Parameter.IMAGE_DIGEST: FAKE_DIGEST, Parameter.IMAGE_SIZE: 34768}


def test_record_bits_make_records_and_sysinfo_bits_make_system_property_claims() -> None:
    """Example 1: conditions have policy 15 (Rec-Pass, Rec-Fail, Sys-Pass, Sys-Fail), fetch has 2
    (Rec-Fail only; it succeeds: nothing). A success record has no properties; the failure
    record has the measured ones (report §3); each sysinfo bit adds a system-property-claims
    map for the component (report §4)."""
    result = Processor(memory_device(FAKE)).run(example(1), Procedure.UPDATE)
    report = build_report(result)
    measured = {Parameter.IMAGE_DIGEST: FAKE_DIGEST, Parameter.IMAGE_SIZE: 34768}
    assert report.records == (
        SuitRecord(ManifestKey.COMMON, 82, 0),
        SystemProperties(C0, {Parameter.VENDOR_IDENTIFIER: IDENTITY.vendor_id}),
        SuitRecord(ManifestKey.COMMON, 84, 0),
        SystemProperties(C0, {Parameter.CLASS_IDENTIFIER: IDENTITY.class_id}),
        SuitRecord(ManifestKey.INSTALL, 35, 0, measured),
        SystemProperties(C0, measured),
    )
    assert report.system_properties == report.records[1::2]
    assert report.suit_records == report.records[0::2]


def test_system_property_claims_are_maps_keyed_by_system_component_id_0() -> None:
    """Report §4 CDDL: ``system-property-claims = {system-component-id => SUIT_Component_Identifier,
    + SUIT_Parameters}``, ``system-component-id = 0``; SUIT_Records are arrays (§4.1: a recipient
    filters the maps out of suit-report-records)."""
    result = Processor(memory_device(FAKE)).run(example(1), Procedure.UPDATE)
    encoded = cbor.loads(build_report(result).encode())
    records = encoded[ReportKey.RECORDS]
    maps = [r for r in records if isinstance(r, dict)]
    arrays = [r for r in records if isinstance(r, list)]
    assert len(maps) == 3 and len(arrays) == 3
    assert maps[0] == {0: [b"\x00"], Parameter.VENDOR_IDENTIFIER: uuid.UUID(VENDOR).bytes}
    assert maps[1] == {0: [b"\x00"], Parameter.CLASS_IDENTIFIER: uuid.UUID(CLASS).bytes}
    assert arrays[0] == [[], ManifestKey.COMMON, 82, 0, {}]
    assert SuitReport.decode(build_report(result).encode()) == build_report(result)


def test_sysinfo_bit_alone_gives_claims_without_a_record() -> None:
    """Policy 4 (suit-send-sysinfo-success only) on vendor-identifier; 1 (record only) on
    class-identifier."""
    env = explicit(identity=False, shared=[
        {"override-parameters": {"vendor-id": VENDOR, "class-id": CLASS}},
        {"vendor-identifier": 4},
        {"class-identifier": 1},
    ])
    report = build_report(Processor(memory_device()).run(env, Procedure.UPDATE))
    assert report.records == (
        SystemProperties(C0, {Parameter.VENDOR_IDENTIFIER: IDENTITY.vendor_id}),
        SuitRecord(ManifestKey.COMMON, 41, 0),
    )


def test_directive_failure_with_rec_fail_only_gives_a_record_and_no_claims() -> None:
    """Fetch with policy 2 failing: a failure record, no system-property-claims (no Sys-Fail)."""
    env = explicit(install=[{"override-parameters": {"uri": "http://nowhere/x"}}, {"fetch": 2}])
    report = build_report(Processor(memory_device()).run(env, Procedure.UPDATE))
    install = [r for r in report.records if isinstance(r, SystemProperties)
               or r.section == ManifestKey.INSTALL][2:]  # after the shared sequence's claims
    assert install == [SuitRecord(ManifestKey.INSTALL, 21, 0)]
    assert report.result is not None and report.result.reason is ReportReason.OPERATION_FAILED


def test_index_true_gives_one_record_per_component_in_order() -> None:
    """Manifest §8.4.10: with component index true the reporting engine receives one set of
    information elements for each component, in the order of the components list."""
    env = explicit(components=2, install=[
        {"set-component-index": True},
        {"override-parameters": {"vendor-id": VENDOR}},
        {"vendor-identifier": 5},
    ])
    report = build_report(Processor(memory_device()).run(env, Procedure.UPDATE))
    shared = 4  # record + claims of the shared sequence's vendor and class conditions
    assert report.records[shared:] == (
        SuitRecord(ManifestKey.INSTALL, 23, 0),
        SystemProperties(C0, {Parameter.VENDOR_IDENTIFIER: IDENTITY.vendor_id}),
        SuitRecord(ManifestKey.INSTALL, 23, 1),
        SystemProperties(C1, {Parameter.VENDOR_IDENTIFIER: IDENTITY.vendor_id}),
    )


def test_report_result_is_true_on_success_and_has_a_capability_report() -> None:
    device = memory_device({})
    device.components_[C0].content = bytearray(b"x")
    env = explicit(validate=[{"override-parameters": {"content": "h'78'"}}, {"check-content": 15}])
    report = build_report(Processor(device).run(env, Procedure.INVOCATION))
    encoded = cbor.loads(report.encode())
    assert encoded[ReportKey.RESULT] is True
    caps = encoded[ReportKey.CAPABILITY_REPORT]
    assert Command.SWAP in caps[CapabilityKey.COMMAND_CAPABILITIES]
    assert CoseAlgorithm.SHA_256 in caps[CapabilityKey.CRYPT_ALGO_CAPABILITIES]
    assert caps[CapabilityKey.COMPONENT_CAPABILITIES] == [[b"\x00"]]


def test_report_of_an_unauthenticated_envelope_has_reason_unauthorised_and_the_digest() -> None:
    """A run whose envelope does not authenticate is reported too (report §4.2 reason
    unauthorised); the reference carries the digest the envelope's SUIT_Authentication claims
    and the empty URI (the manifest is never parsed, manifest §6.2)."""
    env = explicit()
    device = memory_device()
    result = Processor(device).run_bytes(env.encode(), [CoseKey.load(EXAMPLE_PUB)])
    assert result.events == () and device.writes == 0
    report = build_report(result, components=device.components())
    assert report.result is not None
    assert report.result.reason is ReportReason.UNAUTHORISED
    assert report.manifest_digest == env.authentication.digest
    assert report.reference_uri == ""
    rec = report.result.record
    assert (rec.section, rec.offset, rec.component_index) == (0, 0, 0)
    assert report.capabilities is not None
    back = SuitReport.decode(report.encode())
    assert back == report


def test_report_of_garbage_has_reason_cbor_parse_and_an_unknown_digest() -> None:
    device = memory_device()
    result = Processor(device).run_bytes(b"\xa2\x01", [CoseKey.load(EXAMPLE_PUB)])
    report = build_report(result, components=device.components())
    assert report.result is not None and report.result.reason is ReportReason.CBOR_PARSE
    assert report.manifest_digest == UNKNOWN_DIGEST
    assert "(unknown)" in report.lines()[0]


def test_report_of_an_authentic_manifest_failing_setup_names_the_manifest_element() -> None:
    """Rollback (manifest §8.4.2): the result record names suit-manifest-sequence-number (2)."""
    device = memory_device()
    device.sequence_numbers["root"] = 9
    env = sign(explicit(seq=3))
    result = Processor(device).run_bytes(env, [CoseKey.load(EXAMPLE_PUB)])
    report = build_report(result)
    assert report.result is not None and report.result.reason is ReportReason.CONDITION_FAILED
    assert report.result.record.section == ManifestKey.MANIFEST_SEQUENCE_NUMBER
    assert report.manifest_digest == result.manifest_digest is not None


def test_signed_report_verifies_and_parses_back() -> None:
    key = CoseKey.generate(CoseAlgorithm.ESP256)
    result = Processor(memory_device(FAKE)).run(example(1), Procedure.UPDATE)
    report = build_report(result, nonce=b"\x01\x02")
    signed = sign_report(report, key)
    assert cbor.loads(signed).tag == 18
    back = verify_report(signed, [key.public_key()])
    assert back == report


def test_report_signed_by_another_key_is_rejected() -> None:
    key, other = CoseKey.generate(CoseAlgorithm.ESP256), CoseKey.generate(CoseAlgorithm.ESP256)
    result = Processor(memory_device(FAKE)).run(example(1), Procedure.UPDATE)
    signed = sign_report(build_report(result), key)
    with pytest.raises(AuthenticationError):
        verify_report(signed, [other.public_key()])


def test_tampered_signed_report_is_rejected() -> None:
    """REQ.SEC.REPORTING (RFC 9124 §4.3.16): a report changed on the way does not verify."""
    key = CoseKey.generate(CoseAlgorithm.ESP256)
    result = Processor(memory_device(FAKE)).run(example(1), Procedure.UPDATE)
    signed = bytearray(sign_report(build_report(result), key))
    signed[len(signed) // 2] ^= 0x01
    with pytest.raises((AuthenticationError, DecodeError)):
        verify_report(bytes(signed), [key.public_key()])


def test_unsigned_report_is_refused_when_a_key_is_given() -> None:
    result = Processor(memory_device(FAKE)).run(example(1), Procedure.UPDATE)
    with pytest.raises(AuthenticationError):
        verify_report(build_report(result).encode(), [CoseKey.generate(CoseAlgorithm.ESP256)])


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (cbor.CBORTag(18, [cbor.dumps({1: -999}), {}, None, b"x" * 64]),
         ReportReason.ALG_UNSUPPORTED),
        (cbor.CBORTag(16, [cbor.dumps({1: 1}), {}, b"x"]), ReportReason.COSE_UNSUPPORTED),
        (cbor.CBORTag(98, [cbor.dumps({1: -7}), {}, None, []]), ReportReason.CBOR_PARSE),
        (cbor.CBORTag(18, [cbor.dumps({1: -7}), {}, None, b"x" * 64]),
         ReportReason.UNAUTHORISED),
    ],
    ids=["alg-unsupported", "cose-unsupported", "cbor-parse", "unauthorised"],
)
def test_rejected_envelope_is_reported_with_the_reason_report_4_2_assigns(
    block: object, reason: ReportReason
) -> None:
    """An authentication block with an unknown algorithm, a COSE structure that is not an
    authentication one, a malformed one, a signature that does not verify."""
    from suitkit.format.envelope import AuthenticationWrapper

    env = explicit()
    data = env.with_authentication(
        AuthenticationWrapper(env.authentication.digest, (cbor.dumps(block),))
    ).encode()
    device = memory_device()
    result = Processor(device).run_bytes(data, [CoseKey.load(EXAMPLE_PUB)])
    report = build_report(result, components=device.components())
    assert report.result is not None and report.result.reason is reason
    assert report.manifest_digest == env.authentication.digest
    assert device.writes == 0 and device.sequence_numbers == {}
