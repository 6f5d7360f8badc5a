"""RFC 9124 threats (rfc9124-checklist.csv): each attack is rejected and nothing is written
(no component content, no sequence number, no invocation); on the simulated device, no file
changes but the signed report, which names the reason.

Threats a device processor answers, and where:

========================= ==========================================================================
THREAT.IMG.EXPIRED        here (sequence number, processor and device)
THREAT.IMG.INCOMPATIBLE   here (vendor/class conditions, processor and device)
THREAT.IMG.FORMAT         here (a payload-format element it does not implement is refused)
THREAT.IMG.LOCATION       here (components the device does not have)
THREAT.NET.REDIRECT       test_http.py (redirects are not followed) and here (digest)
THREAT.NET.ONPATH         test_http.py (tampered in transit) and test_report.py (signed reports)
THREAT.IMG.REPLACE        here (image-match before invoke) and test_simulated.py (bootloader)
THREAT.IMG.NON_AUTH       here (signature, payload digest; processor and device)
THREAT.UPD.WRONG_PRECURSOR here (a precursor image-match condition runs before any directive)
THREAT.UPD.UNAPPROVED     here (signed by a key that is not a trust anchor)
THREAT.MFST.OVERRIDE      here (intermediary payloads, soft-failure)
THREAT.IMG.EXTRA          here (image-size, whole-image digest)
THREAT.MFST.MODIFICATION  here (manifest, severed member; processor and device)
THREAT.MFST.TOCTOU        here (immutable model, severed members re-checked at use)
========================= ==========================================================================

Not answered by the processor, hence no test here: THREAT.IMG.EXPIRED.OFFLINE needs an
expiration time (use-before, draft-ietf-suit-update-management), which this core processor does
not implement (a manifest using it is command-unsupported, tested in test_semantics.py);
THREAT.IMG.DISCLOSURE and THREAT.MFST.EXPOSURE need payload/manifest encryption, which the
device side does not implement (THREAT.IMG.FORMAT's test shows an encrypted payload is refused,
not misinterpreted); THREAT.KEY.EXPOSURE concerns how keys are stored, outside the processor.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from suitkit.author.builder import build_from_description, envelope_for
from suitkit.device.events import Procedure
from suitkit.device.memory import MemoryPlatform
from suitkit.device.processor import Processor, authenticated_envelope
from suitkit.errors import (
    AlgorithmUnsupportedError,
    AuthenticationError,
    ComponentUnsupportedError,
    ConditionFailedError,
    OperationFailedError,
    RollbackError,
    SeveringUnsupportedError,
)
from suitkit.format import cbor
from suitkit.format.codepoints import ReportReason
from suitkit.format.commands import CommandSequence
from suitkit.format.envelope import Envelope

from .conftest import C0, C1, CLASS, EXAMPLE_PUB, VENDOR, explicit, memory_device, sha, sign
from .devices import ab_manifest, booted_image, image, new_device, open_device, snapshot

IMG = b"genuine firmware " * 200
URI = "http://example.com/fw.bin"


def _install(seq: int = 3, digest: bytes = IMG, size: bool = True, **kw: object) -> Envelope:
    params: dict[str, object] = {"digest": sha(digest)}
    if size:
        params["size"] = len(digest)
    return explicit(
        seq=seq,
        shared=[{"override-parameters": params}],
        install=[{"override-parameters": {"uri": URI}}, {"fetch": 2}, {"image-match": 15}],
        validate=[{"image-match": 15}],
        invoke=[{"invoke": 2}],
        **kw,
    )


def _nothing_written(device: MemoryPlatform) -> None:
    assert device.sequence_numbers == {} or device.sequence_numbers == {"root": 5}
    assert device.installed == {}
    assert device.invocations == []


def test_THREAT_IMG_EXPIRED_old_firmware_is_rejected_by_sequence_number() -> None:
    """§4.2.1 / REQ.SEC.SEQUENCE: a lower sequence number is refused before anything runs."""
    device = memory_device({URI: IMG})
    device.sequence_numbers["root"] = 5
    result = Processor(device).run(_install(seq=4), Procedure.UPDATE)
    assert isinstance(result.error, RollbackError)
    assert result.events == () and device.writes == 0
    _nothing_written(device)


def test_THREAT_IMG_INCOMPATIBLE_other_class_is_rejected_before_any_write() -> None:
    """§4.2.3 / REQ.SEC.COMPATIBLE: the class-identifier condition of the shared sequence."""
    env = explicit(
        identity=False,
        shared=[
            {"override-parameters": {"vendor-id": VENDOR,
                                     "class-id": "00000000-0000-0000-0000-0000000000cc"}},
            {"vendor-identifier": 15},
            {"class-identifier": 15},
        ],
        install=[{"override-parameters": {"uri": URI}}, {"fetch": 2}],
    )
    device = memory_device({URI: IMG})
    result = Processor(device).run(env, Procedure.UPDATE)
    assert isinstance(result.error, ConditionFailedError)
    assert device.writes == 0
    _nothing_written(device)


def test_THREAT_IMG_NON_AUTH_unsigned_envelope_is_rejected() -> None:
    """§4.2.9 / REQ.SEC.AUTHENTIC: without a signature from a trusted key nothing is parsed."""
    from suitkit.cose import CoseKey

    with pytest.raises(AuthenticationError):
        authenticated_envelope(_install().encode(), [CoseKey.load(EXAMPLE_PUB)])


def test_THREAT_IMG_NON_AUTH_payload_not_matching_the_signed_digest_is_never_invoked() -> None:
    """§4.2.9: a payload that is not the one the signed manifest names fails image-match; the
    update is not recorded and the Invocation procedure refuses to boot it."""
    device = memory_device({URI: IMG[:-1] + b"X"})
    proc = Processor(device)
    result = proc.run(_install(), Procedure.UPDATE)
    assert isinstance(result.error, ConditionFailedError)
    boot = proc.run(_install(), Procedure.INVOCATION)
    assert isinstance(boot.error, ConditionFailedError)
    _nothing_written(device)


def test_THREAT_IMG_REPLACE_replaced_image_is_not_invoked() -> None:
    """§4.2.8 / REQ.SEC.AUTH.EXEC: the image is replaced in storage after installation."""
    device = memory_device({URI: IMG})
    proc = Processor(device)
    proc.update(_install())
    device.components_[C0].content = bytearray(b"evil" + IMG[4:])
    result = proc.run(_install(), Procedure.INVOCATION)
    assert isinstance(result.error, ConditionFailedError)
    assert device.invocations == []


def test_THREAT_IMG_REPLACE_invoke_without_image_match_is_refused() -> None:
    """A manifest that invokes without validating: the processor refuses to run unverified code."""
    env = explicit(invoke=[{"invoke": 2}])
    device = memory_device({})
    device.components_[C0].content = bytearray(b"anything")
    result = Processor(device).run(env, Procedure.INVOCATION)
    assert isinstance(result.error, OperationFailedError)
    assert device.invocations == []


def test_THREAT_IMG_EXTRA_extra_data_after_the_image_is_refused_at_the_first_byte() -> None:
    """§4.2.15 / REQ.SEC.IMG.COMPLETE_DIGEST: a payload longer than image-size is refused at
    the first byte past the end; nothing is committed to the component."""
    device = memory_device({URI: IMG + b"payload of the attacker"})
    result = Processor(device).run(_install(), Procedure.UPDATE)
    assert isinstance(result.error, OperationFailedError)
    assert "refused at byte" in result.error.message
    assert device.components_[C0].content is None
    assert device.bytes_written <= len(IMG)
    _nothing_written(device)


def test_THREAT_IMG_EXTRA_without_image_size_the_whole_image_digest_catches_it() -> None:
    device = memory_device({URI: IMG + b"extra"})
    result = Processor(device).run(_install(size=False), Procedure.UPDATE)
    assert isinstance(result.error, ConditionFailedError)
    _nothing_written(device)


def test_THREAT_IMG_LOCATION_component_the_device_lacks_is_refused() -> None:
    """§4.2.5 / REQ.SEC.AUTH.IMG_LOC: the processor only writes components the device has."""
    device = memory_device({URI: IMG}, components={C1: 1 << 20})
    result = Processor(device).run(_install(), Procedure.UPDATE)
    assert isinstance(result.error, ComponentUnsupportedError)
    assert device.writes == 0


def test_THREAT_MFST_MODIFICATION_modified_manifest_fails_authentication() -> None:
    """§4.2.17: any change to the signed manifest breaks the digest/signature check."""
    from suitkit.cose import CoseKey

    data = bytearray(sign(_install()))
    i = data.find(URI.encode())
    data[i + 7] ^= 0x01  # http://example.com -> another host
    with pytest.raises(AuthenticationError):
        authenticated_envelope(bytes(data), [CoseKey.load(EXAMPLE_PUB)])


def test_THREAT_MFST_MODIFICATION_modified_severed_member_is_refused() -> None:
    """A severed install member swapped for another one does not match its digest (§8.5)."""
    env = _install(severable=["install"])
    other = CommandSequence.from_cbor(cbor.loads(cbor.dumps(
        [20, {21: "http://evil.example/x"}, 21, 2])))
    tampered = replace(env, severable={20: other})
    device = memory_device({URI: IMG})
    result = Processor(device).run(tampered, Procedure.UPDATE)
    assert isinstance(result.error, SeveringUnsupportedError)
    assert result.events == ()
    _nothing_written(device)


def test_THREAT_MFST_TOCTOU_envelope_changed_after_authentication_is_refused() -> None:
    """§4.2.18 / REQ.SEC.MFST.CONST: the processor works on the authenticated, immutable
    model and re-checks severed members against the digests in the signed manifest at use."""
    from suitkit.cose import CoseKey

    env = authenticated_envelope(sign(_install(severable=["install"])), [CoseKey.load(EXAMPLE_PUB)])
    with pytest.raises(AttributeError):
        env.manifest.sequence_number = 99  # type: ignore[misc]
    evil = CommandSequence.from_cbor([20, {21: "http://evil.example/x"}, 21, 2])
    device = memory_device({URI: IMG})
    result = Processor(device).run(replace(env, severable={20: evil}), Procedure.UPDATE)
    assert isinstance(result.error, SeveringUnsupportedError)
    _nothing_written(device)


def test_THREAT_MFST_OVERRIDE_intermediary_payload_cannot_override_the_signed_digest() -> None:
    """§4.2.13 / REQ.SEC.ACCESS_CONTROL: an intermediary may add an integrated payload under
    the URI (§7.5), but it cannot override the digest the signer set: the image is refused."""
    env = _install()
    tampered = replace(env, integrated_payloads={URI: b"intermediary's image"})
    device = memory_device({URI: IMG})
    result = Processor(device).run(tampered, Procedure.UPDATE)
    assert isinstance(result.error, ConditionFailedError)
    _nothing_written(device)


def test_THREAT_MFST_OVERRIDE_soft_failure_cannot_be_forced_outside_try_each() -> None:
    """Critical processor parameters: soft-failure set at the top level aborts (§8.4.8.14)."""
    env = explicit(install=[{"override-parameters": {"soft-failure": True}}, {"abort": 15}])
    device = memory_device({})
    assert isinstance(Processor(device).run(env, Procedure.UPDATE).error, OperationFailedError)
    _nothing_written(device)


def test_signed_update_through_update_bytes_succeeds(tmp_path: Path) -> None:
    from suitkit.cose import CoseKey

    device = memory_device({URI: IMG})
    env = envelope_for(_install().manifest)
    Processor(device).update_bytes(sign(env), [CoseKey.load(EXAMPLE_PUB)])
    assert device.sequence_numbers == {"root": 3}


def test_THREAT_IMG_FORMAT_payload_format_the_device_does_not_implement_is_refused() -> None:
    """§4.2.4 / REQ.SEC.AUTH.IMG_TYPE: a payload described by an element this processor does not
    implement (here an encryption-info whose content algorithm, AES-CCM, suitkit lacks;
    firmware-encryption §5) is refused as alg-unsupported before anything runs, rather than
    stored and run as if it were a plain image."""
    from suitkit.cose import CoseKey
    from suitkit.encryption import encrypt_payload
    from suitkit.format.codepoints import CoseAlgorithm

    _, info = encrypt_payload(IMG, CoseAlgorithm.A128GCM, [CoseKey.generate(CoseAlgorithm.A128KW)])
    body = list(cbor.loads(info).value)
    body[0] = cbor.dumps({1: 30})  # AES-CCM-16-128-128
    ccm = cbor.dumps(cbor.CBORTag(96, body))
    env = explicit(install=[
        {"override-parameters": {"content": f"h'{IMG[:64].hex()}'",
                                 "encryption-info": f"h'{ccm.hex()}'"}},
        {"write": 2},
    ])
    device = memory_device({URI: IMG})
    result = Processor(device).run(env, Procedure.UPDATE)
    assert isinstance(result.error, AlgorithmUnsupportedError)
    assert result.error.reason is ReportReason.ALG_UNSUPPORTED
    assert result.events == () and device.writes == 0
    _nothing_written(device)


def test_THREAT_UPD_WRONG_PRECURSOR_precursor_condition_fails_before_anything_is_written() -> None:
    """§4.2.10 / REQ.SEC.AUTH.PRECURSOR: the manifest requires a precursor image (image-match on
    the component holding it) before installing; on a device with another precursor the
    condition fails and the install never writes."""
    precursor = b"precursor v1" * 50
    env = explicit(
        components=2,
        install=[
            {"set-component-index": 1},
            {"override-parameters": {"digest": sha(precursor), "size": len(precursor)}},
            {"image-match": 15},
            {"set-component-index": 0},
            {"override-parameters": {"uri": URI, "digest": sha(IMG), "size": len(IMG)}},
            {"fetch": 2},
        ],
    )
    device = memory_device({URI: IMG})
    device.components_[C1].content = bytearray(b"precursor v0" * 50)
    result = Processor(device).run(env, Procedure.UPDATE)
    assert isinstance(result.error, ConditionFailedError)
    assert result.error.component_index == 1
    assert device.writes == 0 and device.components_[C0].content is None
    _nothing_written(device)
    device.components_[C1].content = bytearray(precursor)  # the right precursor: it installs
    assert Processor(device).run(env, Procedure.UPDATE).ok


# --- the same attacks on the simulated device: nothing but the report changes ------------------

OLD_IMG = image(b"installed ", 5000)


def _installed_device(tmp_path: Path) -> Path:
    d = tmp_path / "dev"
    new_device(d)
    assert open_device(d, OLD_IMG).update(sign(ab_manifest(5, OLD_IMG))).ok
    assert open_device(d).boot().ok
    return d


def _rejected_with_nothing_written(d: Path, data: bytes, reason: ReportReason) -> None:
    """Update ``data``: it fails with ``reason``, no file changes but a new signed report
    naming that reason, and the device boots the image it had."""
    from suitkit.cose import CoseKey
    from suitkit.device.report import verify_report

    before = snapshot(d)
    dev = open_device(d, IMG)
    result = dev.update(data)
    assert result.error is not None and result.error.reason is reason, result.error
    assert snapshot(d) == before
    assert len(dev.reports) == 1
    report = verify_report(dev.reports[0].read_bytes(), [CoseKey.load(d / "device-key.pub.pem")])
    assert report.result is not None and report.result.reason is reason
    dev = open_device(d)
    assert dev.boot().ok and booted_image(dev) == OLD_IMG


def test_THREAT_IMG_NON_AUTH_device_rejects_an_unsigned_envelope_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """§4.2.9: the device refuses an envelope without a signature by a trust anchor; the report
    of that run carries reason unauthorised."""
    d = _installed_device(tmp_path)
    _rejected_with_nothing_written(d, ab_manifest(6, IMG).encode(), ReportReason.UNAUTHORISED)


def test_THREAT_UPD_UNAPPROVED_envelope_signed_by_an_untrusted_key_is_rejected(
    tmp_path: Path,
) -> None:
    """§4.2.11 / REQ.SEC.RIGHTS: a well-signed manifest from a party the device does not trust
    (its key is not a trust anchor) is unauthorised: nothing is written."""
    from suitkit.cose import CoseKey
    from suitkit.format.codepoints import CoseAlgorithm

    d = _installed_device(tmp_path)
    other = tmp_path / "other.pem"
    other.write_bytes(CoseKey.generate(CoseAlgorithm.ES256).to_pem(private=True))
    _rejected_with_nothing_written(
        d, sign(ab_manifest(6, IMG), other), ReportReason.UNAUTHORISED
    )


def test_THREAT_MFST_MODIFICATION_device_rejects_a_modified_manifest_and_writes_nothing(
    tmp_path: Path,
) -> None:
    d = _installed_device(tmp_path)
    data = bytearray(sign(ab_manifest(6, IMG)))
    i = data.find(b"example.com")
    data[i] ^= 0x01
    _rejected_with_nothing_written(d, bytes(data), ReportReason.UNAUTHORISED)


def test_THREAT_IMG_EXPIRED_device_refuses_an_older_manifest_and_writes_nothing(
    tmp_path: Path,
) -> None:
    d = _installed_device(tmp_path)
    _rejected_with_nothing_written(
        d, sign(ab_manifest(4, IMG)), ReportReason.CONDITION_FAILED
    )


def test_THREAT_IMG_INCOMPATIBLE_device_refuses_another_vendor_and_writes_nothing(
    tmp_path: Path,
) -> None:
    d = _installed_device(tmp_path)
    env = build_from_description({
        "sequence-number": 6,
        "components": [{
            "id": ["h'00'"], "vendor-id": "00000000-0000-0000-0000-0000000000ee",
            "class-id": CLASS, "digest": sha(IMG), "size": len(IMG),
            "uri": "http://example.com/firmware.bin",
        }],
    })
    _rejected_with_nothing_written(d, sign(env), ReportReason.CONDITION_FAILED)


def test_THREAT_IMG_LOCATION_device_refuses_a_component_it_does_not_have(
    tmp_path: Path,
) -> None:
    """§4.2.5: a signed manifest that installs into component [h'07'], which the device lacks,
    is component-unsupported before anything runs."""
    d = _installed_device(tmp_path)
    env = build_from_description({
        "sequence-number": 6,
        "components": [["h'07'"]],
        "shared-sequence": [
            {"override-parameters": {"vendor-id": VENDOR, "class-id": CLASS}},
            {"vendor-identifier": 15},
            {"class-identifier": 15},
        ],
        "install": [{"override-parameters": {"uri": URI}}, {"fetch": 2}],
    })
    _rejected_with_nothing_written(d, sign(env), ReportReason.COMPONENT_UNSUPPORTED)
