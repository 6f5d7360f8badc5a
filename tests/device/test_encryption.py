"""Encrypted payloads in the processor (draft-ietf-suit-firmware-encryption-24 §3-5), on the
in-memory platform: copy and write decrypt with the platform's keys, fetch never does; the content
key is unwrapped before the target is opened; AEAD output is committed only once the tag
verified; unsupported algorithms and profiles are refused before anything runs."""

from __future__ import annotations

import os
from typing import Any

import pytest

from suitkit.cose import CoseKey
from suitkit.device.events import Procedure, RunResult
from suitkit.device.memory import MemoryComponent, MemoryPlatform
from suitkit.device.processor import Processor
from suitkit.device.report import capability_report
from suitkit.encryption import NoDecryptionKeyError, encrypt_payload
from suitkit.errors import AlgorithmUnsupportedError, AuthenticationError, OperationFailedError
from suitkit.format import cbor
from suitkit.format.codepoints import CoseAlgorithm, Parameter, ReportReason
from suitkit.format.envelope import Envelope

from .conftest import C0, C1, C2, EXAMPLE_PUB, explicit, memory_device, sha, sign

A = CoseAlgorithm
KEK = CoseKey.generate(A.A128KW, b"kid-1")
URI = "https://example.com/fw.enc"
OLD = b"the running image " * 10


def _hex(b: bytes) -> str:
    return f"h'{b.hex()}'"


def device(*keys: CoseKey, old: bytes | None = None, **payloads: bytes) -> MemoryPlatform:
    dev = memory_device(
        {URI: payloads["fetched"]} if "fetched" in payloads else None,
        components={
            C0: MemoryComponent(1 << 20, content=bytearray(old) if old is not None else None),
            C1: 1 << 20,
            C2: 1 << 20,
        },
    )
    dev.keys = keys
    return dev


def write_form(plain: bytes, ct: bytes, info: bytes, *, size: int | None = None) -> Envelope:
    return explicit(install=[
        {"override-parameters": {
            "digest": sha(plain),
            "size": len(plain) if size is None else size,
            "content": _hex(ct),
            "encryption-info": _hex(info),
        }},
        {"write": 2},
        {"image-match": 15},
    ])


def copy_form(plain: bytes, ct: bytes, info: bytes) -> Envelope:
    """Draft §3.2: fetch the ciphertext into component 1, image-match it there (before
    decryption), copy into component 0 with encryption-info, image-match the plaintext."""
    return explicit(
        components=2,
        install=[
            {"set-component-index": 1},
            {"override-parameters": {"uri": URI, "digest": sha(ct), "size": len(ct)}},
            {"fetch": 2},
            {"image-match": 15},
            {"set-component-index": 0},
            {"override-parameters": {
                "digest": sha(plain),
                "size": len(plain),
                "source-component": 1,
                "encryption-info": _hex(info),
            }},
            {"copy": 2},
            {"image-match": 15},
        ],
    )


def run(dev: MemoryPlatform, env: Envelope, **kw: Any) -> RunResult:
    return Processor(dev, **kw).run(env, Procedure.UPDATE)


def content(dev: MemoryPlatform, cid: tuple[bytes, ...] = C0) -> bytes | None:
    c = dev.components_[cid].content
    return None if c is None else bytes(c)


@pytest.mark.parametrize("alg", [A.A128CTR, A.A256CTR, A.A128GCM, A.A256GCM, A.CHACHA20_POLY1305])
def test_write_decrypts_the_content_into_the_component(alg: CoseAlgorithm) -> None:
    plain = os.urandom(200_000)  # several chunks of the processor's 64 KiB
    ct, info = encrypt_payload(plain, alg, [KEK])
    dev = device(KEK)
    result = run(dev, write_form(plain, ct, info))
    assert result.ok, result.error
    assert content(dev) == plain
    write = next(e for e in result.events if e.name == "directive-write")
    assert write.measured[Parameter.IMAGE_SIZE] == len(plain)
    assert Parameter.ENCRYPTION_INFO in write.parameters  # reported as consumed


@pytest.mark.parametrize("alg", [A.A128CTR, A.A128GCM])
def test_copy_decrypts_the_fetched_ciphertext_and_fetch_does_not(alg: CoseAlgorithm) -> None:
    plain = os.urandom(70_000)
    ct, info = encrypt_payload(plain, alg, [KEK])
    dev = device(KEK, fetched=ct)
    assert run(dev, copy_form(plain, ct, info)).ok
    assert content(dev) == plain
    assert content(dev, C1) == ct  # the staging component holds the ciphertext


def test_fetch_never_decrypts_even_with_encryption_info_set() -> None:
    plain = b"firmware" * 100
    ct, info = encrypt_payload(plain, A.A128CTR, [KEK])
    dev = device(KEK, fetched=ct)
    env = explicit(install=[
        {"override-parameters": {"uri": URI, "encryption-info": _hex(info)}},
        {"fetch": 2},
    ])
    assert run(dev, env).ok
    assert content(dev) == ct


def test_encryption_info_stays_set_for_the_component() -> None:
    """Parameters persist for the procedure: a later write into the same component, whose
    override sets only new content, decrypts as well."""
    plain = b"image " * 50
    ct, info = encrypt_payload(plain, A.A128CTR, [KEK])
    env = explicit(install=[
        {"override-parameters": {"content": _hex(ct), "encryption-info": _hex(info)}},
        {"write": 2},
        {"override-parameters": {"content": _hex(ct)}},
        {"write": 2},
        {"override-parameters": {"digest": sha(plain), "size": len(plain)}},
        {"image-match": 15},
    ])
    dev = device(KEK)
    assert run(dev, env).ok
    assert content(dev) == plain


def test_unknown_kid_fails_before_the_target_is_erased() -> None:
    plain = b"new image" * 20
    ct, info = encrypt_payload(plain, A.A128GCM, [KEK])
    dev = device(CoseKey.generate(A.A128KW, b"kid-9"), old=OLD)
    result = run(dev, write_form(plain, ct, info))
    assert isinstance(result.error, NoDecryptionKeyError)
    assert result.error.reason is ReportReason.OPERATION_FAILED
    assert "kid-1" in result.error.message
    assert content(dev) == OLD and dev.writes == 0


def test_no_decryption_key_at_all_fails_before_the_target_is_erased() -> None:
    plain = b"new image" * 20
    ct, info = encrypt_payload(plain, A.A128CTR, [KEK])
    dev = device(old=OLD)
    result = run(dev, write_form(plain, ct, info))
    assert isinstance(result.error, NoDecryptionKeyError)
    assert content(dev) == OLD and dev.writes == 0


def test_wrong_key_fails_before_the_target_is_erased() -> None:
    plain = b"new image" * 20
    ct, info = encrypt_payload(plain, A.A128GCM, [KEK])
    same_kid_other_key = CoseKey.generate(A.A128KW, b"kid-1")
    dev = device(same_kid_other_key, old=OLD)
    result = run(dev, write_form(plain, ct, info))
    assert isinstance(result.error, AuthenticationError)
    assert result.error.reason is ReportReason.UNAUTHORISED
    assert content(dev) == OLD and dev.writes == 0


def test_ecdh_wrong_private_key_is_unauthorised() -> None:
    device_key = CoseKey.generate(A.ECDH_ES_A128KW, b"dev").with_alg(None)
    plain = b"image" * 10
    ct, info = encrypt_payload(plain, A.A128GCM, [device_key.public_key()])
    other = CoseKey.generate(A.ECDH_ES_A128KW, b"dev").with_alg(None)
    dev = device(other, old=OLD)
    result = run(dev, write_form(plain, ct, info))
    assert isinstance(result.error, AuthenticationError)
    assert content(dev) == OLD and dev.writes == 0
    dev = device(device_key, old=OLD)
    assert run(dev, write_form(plain, ct, info)).ok and content(dev) == plain


@pytest.mark.parametrize("alg", [A.A128GCM, A.CHACHA20_POLY1305])
@pytest.mark.parametrize("form", ["write", "copy"])
def test_a_bad_tag_aborts_the_write_and_commits_no_plaintext(
    alg: CoseAlgorithm, form: str
) -> None:
    """The tag is checked after the last chunk: chunks were written (staged), but the writer is
    aborted, so the component is left empty, never holding unauthenticated plaintext."""
    plain = os.urandom(300_000)
    ct, info = encrypt_payload(plain, alg, [KEK])
    bad = bytearray(ct)
    bad[-1] ^= 1
    if form == "write":
        dev = device(KEK, old=OLD)
        env = write_form(plain, bytes(bad), info)
    else:
        dev = device(KEK, old=OLD, fetched=bytes(bad))
        env = explicit(
            components=2,
            install=[
                {"set-component-index": 1},
                {"override-parameters": {"uri": URI}},
                {"fetch": 2},
                {"set-component-index": 0},
                {"override-parameters": {"source-component": 1, "encryption-info": _hex(info)}},
                {"copy": 2},
            ],
        )
    result = run(dev, env)
    assert isinstance(result.error, AuthenticationError), result.error
    assert result.error.reason is ReportReason.UNAUTHORISED
    assert "tag" in result.error.message or "authentic" in result.error.message
    failing = result.failing_event()
    assert failing is not None and failing.name == f"directive-{form}"
    assert dev.writes > 0  # the plaintext was staged chunk by chunk...
    assert content(dev) is None  # ...and never committed
    assert dev.sequence_numbers == {}


def test_unsupported_content_algorithm_is_refused_before_anything_runs() -> None:
    _, info = encrypt_payload(b"fw", A.A128GCM, [KEK])
    body = list(cbor.loads(info).value)
    body[0] = cbor.dumps({1: 30})  # AES-CCM-16-128-128
    ccm = cbor.dumps(cbor.CBORTag(96, body))
    dev = device(KEK, old=OLD)
    result = run(dev, write_form(b"fw", b"xx" * 9, ccm))
    assert isinstance(result.error, AlgorithmUnsupportedError)
    assert result.error.reason is ReportReason.ALG_UNSUPPORTED
    assert "encryption-info" in result.error.message
    assert result.events == () and dev.writes == 0 and content(dev) == OLD


def test_unsupported_key_distribution_is_refused_before_anything_runs() -> None:
    _, info = encrypt_payload(b"fw", A.A128GCM, [KEK])
    body = list(cbor.loads(info).value)
    body[3][0][1][1] = -6  # direct
    direct = cbor.dumps(cbor.CBORTag(96, body))
    dev = device(KEK, old=OLD)
    result = run(dev, write_form(b"fw", b"xx" * 9, direct))
    assert isinstance(result.error, AlgorithmUnsupportedError)
    assert result.events == () and content(dev) == OLD


def test_malformed_encryption_info_is_refused_before_anything_runs() -> None:
    dev = device(KEK, old=OLD)
    result = run(dev, write_form(b"fw", b"xx" * 9, b"\xd8\x60\x84\x43"))
    assert result.error is not None
    assert result.error.reason in (ReportReason.CBOR_PARSE, ReportReason.COSE_UNSUPPORTED)
    assert result.events == () and content(dev) == OLD


@pytest.mark.parametrize("alg", [A.A128CTR, A.A128GCM])
def test_image_size_bounds_the_plaintext(alg: CoseAlgorithm) -> None:
    plain = os.urandom(5000)
    ct, info = encrypt_payload(plain, alg, [KEK])
    dev = device(KEK)
    assert run(dev, write_form(plain, ct, info, size=len(plain))).ok  # GCM: ct is 16 longer
    dev = device(KEK)
    result = run(dev, write_form(plain, ct, info, size=len(plain) - 1))
    assert isinstance(result.error, OperationFailedError)
    assert "image-size" in result.error.message
    assert content(dev) is None


def test_processor_profiles_reject_an_envelope_outside_them_before_anything_runs() -> None:
    plain = b"fw" * 100
    ct, info = encrypt_payload(plain, A.A128GCM, [KEK])  # A128KW + A128GCM: in no profile
    signed = sign(write_form(plain, ct, info))
    pub = CoseKey.load(EXAMPLE_PUB)
    dev = device(KEK)
    result = Processor(dev, profiles=["suit-sha256-esp256-ecdh-a128gcm"]).run_bytes(signed, [pub])
    assert isinstance(result.error, AlgorithmUnsupportedError)
    assert "suit-sha256-esp256-ecdh-a128gcm" in result.error.message
    assert result.events == () and dev.writes == 0
    assert Processor(dev).run_bytes(signed, [pub]).ok  # no profile: any supported algorithm


def test_capability_report_lists_the_encryption_algorithms_and_parameter() -> None:
    from suitkit.format.codepoints import CapabilityKey

    caps = capability_report([C0])
    algs = caps[CapabilityKey.CRYPT_ALGO_CAPABILITIES]
    for alg in (A.A128GCM, A.A128CTR, A.CHACHA20_POLY1305, A.A128KW, A.ECDH_ES_A128KW):
        assert int(alg) in algs
    assert int(Parameter.ENCRYPTION_INFO) in caps[CapabilityKey.PARAMETERS_CAPABILITIES]


# --- power cuts during an encrypted staged update (simulated device) -------------------------


def _encrypted_staged(seq: int, plain: bytes, ct: bytes, info: bytes) -> Envelope:
    """Draft §3.2 on the simulated device: payload-fetch stages the ciphertext in [h'02'] and
    image-matches it; install decrypts it by copy into [h'00'] (AES-GCM: staged until the tag
    verified) and image-matches the plaintext; validate and invoke as usual."""
    from .devices import URI as DEV_URI

    return explicit(
        components=3,
        seq=seq,
        shared=[
            {"set-component-index": 0},
            {"override-parameters": {"digest": sha(plain), "size": len(plain)}},
        ],
        payload_fetch=[
            {"set-component-index": 2},
            {"override-parameters": {"uri": DEV_URI, "digest": sha(ct), "size": len(ct)}},
            {"fetch": 2},
            {"image-match": 15},
        ],
        install=[
            {"set-component-index": 0},
            {"override-parameters": {"source-component": 2, "encryption-info": _hex(info)}},
            {"copy": 2},
            {"image-match": 15},
        ],
        validate=[{"set-component-index": 0}, {"image-match": 15}],
        invoke=[{"set-component-index": 0}, {"invoke": 2}],
    )


def test_power_cut_after_every_write_of_an_encrypted_update(tmp_path: Any) -> None:
    """After a cut at any write, the bootloader boots the old or the new image (never a
    partial or unauthenticated one); recovery reapplies the decrypting copy from the verified
    staging component; repeating the update then succeeds."""
    import shutil

    from suitkit.device.simulated import FaultInjector, PowerCut

    from .devices import PAGE, booted_image, image, new_device, open_device, state_is_consistent

    old, new = image(b"old-", 3 * PAGE + 100), image(b"new!!", 4 * PAGE + 9)
    ct_old, info_old = encrypt_payload(old, A.A128GCM, [KEK])
    ct_new, info_new = encrypt_payload(new, A.A128GCM, [KEK])
    base = tmp_path / "base"
    new_device(base, slots=1, keys=[KEK])
    assert open_device(base, ct_old).update(sign(_encrypted_staged(1, old, ct_old, info_old))).ok
    assert open_device(base).boot().ok
    update = sign(_encrypted_staged(2, new, ct_new, info_new))
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    dev = open_device(probe, ct_new, FaultInjector())
    assert dev.update(update).ok
    total = dev.fault.count
    assert total > 10
    for n in range(total):
        d = tmp_path / f"cut{n}"
        shutil.copytree(base, d)
        with pytest.raises(PowerCut):
            open_device(d, ct_new, FaultInjector(cut_after=n)).update(update)
        dev = open_device(d)
        boot = dev.boot()
        assert boot.ok, f"cut after write {n}: nothing boots ({boot.attempts})"
        assert booted_image(dev) in (old, new), f"cut after write {n}: invalid image booted"
        state_is_consistent(dev)
        assert open_device(d, ct_new).update(update).ok, f"cut after write {n}: repeat failed"
        dev = open_device(d)
        assert dev.boot().ok and booted_image(dev) == new
        shutil.rmtree(d)
