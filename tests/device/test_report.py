"""SUIT_Report (draft-ietf-suit-report-18) for every run, signed with COSE_Sign1 and verified."""

from __future__ import annotations

import pytest

from suitkit.cose import CoseKey
from suitkit.device.events import Procedure
from suitkit.device.processor import Processor
from suitkit.device.report import build_report, sign_report, verify_report
from suitkit.errors import AuthenticationError
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

from .conftest import example, memory_device

FAKE = {"http://example.com/file.bin": b"x" * 34768}


def test_report_of_example_1_names_the_failing_image_match_record() -> None:
    """§4: reference = manifest digest from SUIT_Authentication element 0; §4.2 result."""
    env = example(1)
    result = Processor(memory_device(FAKE)).run(env, Procedure.UPDATE)
    report = build_report(result)
    assert report.manifest_digest == env.authentication.digest
    assert report.reference_uri == ""
    assert report.result is not None
    assert report.result.reason is ReportReason.CONDITION_FAILED
    rec = report.result.record
    assert (rec.section, rec.offset, rec.component_index) == (ManifestKey.INSTALL, 35, 0)
    assert Parameter.IMAGE_DIGEST in rec.properties  # sysinfo-failure bit of policy 15


def test_records_follow_the_reporting_policy_bits() -> None:
    """Policy 15 on conditions: record + sysinfo on success and failure; policy 2 on fetch:
    a record only on failure (manifest §8.4.10, Appendix B table)."""
    result = Processor(memory_device(FAKE)).run(example(1), Procedure.UPDATE)
    report = build_report(result)
    sections_offsets = [(r.section, r.offset) for r in report.records]
    assert sections_offsets == [
        (ManifestKey.COMMON, 82),
        (ManifestKey.COMMON, 84),
        (ManifestKey.INSTALL, 35),
    ]
    assert report.records[0].properties  # vendor id measured


def test_report_result_is_true_on_success_and_has_a_capability_report() -> None:
    device = memory_device({})
    device.components_[(b"\x00",)].content = bytearray(b"x")
    from .test_threats import explicit

    env = explicit(validate=[{"override-parameters": {"content": "h'78'"}}, {"check-content": 15}])
    report = build_report(Processor(device).run(env, Procedure.INVOCATION))
    encoded = cbor.loads(report.encode())
    assert encoded[ReportKey.RESULT] is True
    caps = encoded[ReportKey.CAPABILITY_REPORT]
    assert Command.SWAP in caps[CapabilityKey.COMMAND_CAPABILITIES]
    assert CoseAlgorithm.SHA_256 in caps[CapabilityKey.CRYPT_ALGO_CAPABILITIES]


def test_signed_report_verifies_and_parses_back(tmp_path: object) -> None:
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
