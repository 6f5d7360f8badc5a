"""RFC 9124 threats (rfc9124-checklist.csv): each attack is rejected and nothing is written
(no component content, no sequence number, no invocation)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from suitkit.author.builder import envelope_for
from suitkit.device.events import Procedure
from suitkit.device.memory import MemoryPlatform
from suitkit.device.processor import Processor, authenticated_envelope
from suitkit.errors import (
    AuthenticationError,
    ComponentUnsupportedError,
    ConditionFailedError,
    OperationFailedError,
    RollbackError,
    SeveringUnsupportedError,
)
from suitkit.format import cbor
from suitkit.format.commands import CommandSequence
from suitkit.format.envelope import Envelope

from .conftest import C0, C1, EXAMPLE_PUB, VENDOR, explicit, memory_device, sha, sign

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
