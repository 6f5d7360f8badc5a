"""Encrypted payloads on the simulated device, through ``suitkit device`` (issue #5, device side):
the five complete manifests of draft-ietf-suit-firmware-encryption-24 §10 end to end, one build
per MTI profile (draft-ietf-suit-mti) installed on a device configured with that profile, and
each failure (wrong key, wrong tag, unknown kid, unsupported algorithm, outside the profiles)
as one error line with its report reason, leaving nothing bootable changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from suitkit.author.builder import build_from_description
from suitkit.author.signing import sign_envelope
from suitkit.cli.device import app, report_app
from suitkit.cose import CoseKey
from suitkit.encryption import encrypt_payload
from suitkit.encryption.profiles import PROFILES, Profile
from suitkit.format import cbor
from suitkit.format.codepoints import CoseAlgorithm
from suitkit.format.envelope import Envelope

from .conftest import CLASS, EXAMPLE_PUB, VECTORS, VENDOR, explicit, sha, sign
from .devices import snapshot

A = CoseAlgorithm
FE = VECTORS / "firmware-encryption"
KEYS = VECTORS / "keys"
PLAINTEXT = b"This is a real firmware image."
FETCH_URI = "coaps://example.com/encrypted-firmware"

root = typer.Typer()
root.add_typer(app, name="device")
root.add_typer(report_app, name="report")
runner = CliRunner()


def invoke(*args: object) -> Result:
    return runner.invoke(root, [str(a) for a in args])


def ok(r: Result) -> Result:
    assert r.exit_code == 0, r.output
    return r


def one_error(r: Result, reason: str) -> str:
    """Exit 1, one line on stderr ending in the report reason, no traceback."""
    assert r.exit_code == 1, r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith(f"[{reason}]"), lines[0]
    assert "Traceback" not in r.output
    return lines[0]


def init(d: Path, *args: object) -> None:
    ok(invoke("device", "init", d, "--vendor-id", VENDOR, "--class-id", CLASS,
              "--flash-size", 65536, "--page-size", 1024, *args))


def contents(d: Path) -> dict[tuple[str, int], bytes | None]:
    """(component key, slot) -> the bytes the slot holds (None: empty), from ``status --json``
    and the flash files."""
    st = json.loads(ok(invoke("device", "status", d, "--json")).stdout)
    out: dict[tuple[str, int], bytes | None] = {}
    for item in st["contents"]:
        key, slot, length = item["component"], item["slot"], item["length"]
        raw = (d / "flash" / f"{key}.{slot}".replace("/", "_")).read_bytes()
        out[key, slot] = None if length is None else raw[:length]
    return out


def key_of(text: str) -> str:
    """The component key of a one-part text component id."""
    return text.encode().hex()


def last_report_reason(d: Path) -> str:
    report = sorted((d / "reports").iterdir())[-1]
    r = invoke("report", "show", report, "--key", d / "device-key.pub.pem")
    assert "signature: verified" in r.stdout
    return r.stdout


# --- the draft's complete manifests (§10), end to end ----------------------------------------

MAC_KEY = KEYS / "fw-enc-hmac256-mac-key.cose_key"
KEK = KEYS / "fw-enc-kek-a128kw-kid-1.cose_key"
RECIPIENT_PEM = KEYS / "fw-enc-recipient-p256-kid-2-private.pem"  # the PEM has no kid
NAMED = ("--component", "plaintext-firmware", "--component", "encrypted-firmware")

VECTOR_CASES: dict[str, dict[str, Any]] = {
    # write: the ciphertext is parameter-content; A128KW recipient 'kid-1'; COSE_Mac0
    "aes-kw-content": {
        "init": ("--trust", MAC_KEY, "--decrypt-key", KEK, *NAMED),
        "target": key_of("plaintext-firmware"),
    },
    # fetch the ciphertext into ['encrypted-firmware'], copy decrypts into ['plaintext-firmware']
    "aes-kw": {
        "init": ("--trust", MAC_KEY, "--decrypt-key", KEK, *NAMED),
        "target": key_of("plaintext-firmware"),
        "staging": key_of("encrypted-firmware"),
    },
    # the same with component ids [h'00'] / [h'01']: the device's default components
    "aes-kw-slot": {
        "init": ("--trust", MAC_KEY, "--decrypt-key", KEK),
        "target": "00",
        "staging": "01",
    },
    # write + ECDH-ES+A128KW recipient 'kid-2' (the key given as PEM, its kid on the command
    # line); COSE_Sign1 ESP256 with the example key
    "es-ecdh-content": {
        "init": ("--trust", KEYS / "suit-example-es256-public.pem",
                 "--decrypt-key", f"kid-2={RECIPIENT_PEM}",
                 "--component", "decrypted-firmware"),
        "target": key_of("decrypted-firmware"),
    },
}


@pytest.mark.parametrize("name", list(VECTOR_CASES))
def test_the_drafts_complete_manifests_install_the_plaintext(name: str, tmp_path: Path) -> None:
    case = VECTOR_CASES[name]
    d = tmp_path / "dev"
    # the draft's examples have no shared sequence, hence no vendor/class checks (§6.2 SHOULD)
    init(d, "--no-identity-checks", *case["init"])
    ciphertext = FE / "encrypted-payload-aes-kw-aes-gcm.bin"
    r = ok(invoke("device", "update", d, FE / f"suit-manifest-{name}.suit",
                  "--payload", f"{FETCH_URI}={ciphertext}"))
    assert "update: OK (sequence number 1)" in r.stdout
    assert "encryption-info=<<COSE_Encrypt A128GCM" in r.stdout
    held = contents(d)
    # the target is the first component, two slots: the update wrote the one not booted from
    assert held[case["target"], 1] == PLAINTEXT
    assert held[case["target"], 0] is None
    if "staging" in case:  # fetch never decrypts: the staging component holds the ciphertext
        assert held[case["staging"], 0] == ciphertext.read_bytes()
    assert "result: success" in last_report_reason(d)


def test_the_dependency_manifest_stops_at_the_trust_domains_commands(tmp_path: Path) -> None:
    """suit-manifest-es-ecdh-dependency.suit (§10.4) authenticates (dependent key), then is
    refused before anything runs: condition-dependency-integrity and
    directive-process-dependency (trust domains) are not implemented."""
    d = tmp_path / "dev"
    init(d, "--no-identity-checks", "--trust", KEYS / "fw-enc-dependent-es256-public.pem",
         "--trust", KEYS / "suit-example-es256-public.pem",
         "--decrypt-key", KEYS / "fw-enc-recipient-p256-kid-2-private.cose_key",
         "--component", "decrypted-firmware")
    before = snapshot(d)
    r = invoke("device", "update", d, FE / "suit-manifest-es-ecdh-dependency.suit")
    line = one_error(r, "command-unsupported")
    assert "condition-dependency-integrity is not supported by this processor" in line
    assert "section install" in line
    assert snapshot(d) == before
    assert "reason command-unsupported" in last_report_reason(d)


def test_without_the_key_the_vector_fails_with_operation_failed(tmp_path: Path) -> None:
    d = tmp_path / "dev"
    init(d, "--no-identity-checks", "--trust", MAC_KEY, *NAMED)
    before = snapshot(d)
    r = invoke("device", "update", d, FE / "suit-manifest-aes-kw-content.suit")
    line = one_error(r, "operation-failed")
    assert "no decryption key" in line and "'kid-1'" in line
    assert snapshot(d) == before


# --- failures on an A/B device: nothing bootable changes --------------------------------------

DEVICE_KEK = CoseKey.generate(A.A128KW, b"kid-1")


def _write_manifest(seq: int, plain: bytes, ct: bytes, info: bytes) -> bytes:
    """Write form (draft §3.1) with validate and invoke, signed with the example key."""
    env = explicit(
        seq=seq,
        shared=[{"override-parameters": {"digest": sha(plain), "size": len(plain)}}],
        install=[
            {"override-parameters": {"content": f"h'{ct.hex()}'",
                                     "encryption-info": f"h'{info.hex()}'"}},
            {"write": 2},
            {"image-match": 15},
        ],
        validate=[{"image-match": 15}],
        invoke=[{"invoke": 2}],
    )
    return sign(env)


@pytest.fixture
def ab_device(tmp_path: Path) -> Path:
    """A device with [h'00'] x2 slots that booted image v1 (slot 1) from an encrypted update."""
    (tmp_path / "kek.cose_key").write_bytes(DEVICE_KEK.to_cose_key(private=True))
    d = tmp_path / "dev"
    init(d, "--trust", EXAMPLE_PUB, "--decrypt-key", tmp_path / "kek.cose_key")
    v1 = b"image v1 " * 600
    ct, info = encrypt_payload(v1, A.A128GCM, [DEVICE_KEK])
    (tmp_path / "v1.suit").write_bytes(_write_manifest(1, v1, ct, info))
    ok(invoke("device", "update", d, tmp_path / "v1.suit"))
    assert "slot 1: booted" in ok(invoke("device", "boot", d)).stdout
    assert contents(d)["00", 1] == v1
    return d


def _still_boots_v1(d: Path) -> None:
    r = ok(invoke("device", "boot", d))
    assert "slot 1: booted" in r.stdout
    held = contents(d)
    assert held["00", 1] == b"image v1 " * 600
    assert held["00", 0] is None
    raw = (d / "flash" / "00.0").read_bytes()
    assert raw == b"\xff" * len(raw)  # no plaintext (authenticated or not) left in flash
    state = json.loads((d / "state.json").read_text())
    assert state["journal"] is None and state["sequence-numbers"] == {"root": 1}


V2 = b"image v2 " * 700


def _update(d: Path, tmp_path: Path, data: bytes) -> Result:
    path = tmp_path / "v2.suit"
    path.write_bytes(data)
    return invoke("device", "update", d, path)


def test_wrong_key_is_unauthorised(ab_device: Path, tmp_path: Path) -> None:
    ct, info = encrypt_payload(V2, A.A128GCM, [CoseKey.generate(A.A128KW, b"kid-1")])
    line = one_error(_update(ab_device, tmp_path, _write_manifest(2, V2, ct, info)),
                     "unauthorised")
    assert "does not unwrap" in line
    assert "reason unauthorised" in last_report_reason(ab_device)
    _still_boots_v1(ab_device)


def test_wrong_tag_is_unauthorised_and_no_plaintext_is_committed(
    ab_device: Path, tmp_path: Path
) -> None:
    ct, info = encrypt_payload(V2, A.A128GCM, [DEVICE_KEK])
    bad = bytearray(ct)
    bad[-3] ^= 0x40  # in the tag
    r = _update(ab_device, tmp_path, _write_manifest(2, V2, bytes(bad), info))
    line = one_error(r, "unauthorised")
    assert "directive-write" in r.stdout and "FAILED" in r.stdout  # it ran, then was aborted
    assert "tag" in line
    assert "reason unauthorised" in last_report_reason(ab_device)
    _still_boots_v1(ab_device)


def test_unknown_kid_is_operation_failed(ab_device: Path, tmp_path: Path) -> None:
    ct, info = encrypt_payload(V2, A.A128CTR, [CoseKey.generate(A.A128KW, b"kid-7")])
    line = one_error(_update(ab_device, tmp_path, _write_manifest(2, V2, ct, info)),
                     "operation-failed")
    assert "'kid-7'" in line
    assert "reason operation-failed" in last_report_reason(ab_device)
    _still_boots_v1(ab_device)


def test_unsupported_algorithm_is_refused_before_anything_runs(
    ab_device: Path, tmp_path: Path
) -> None:
    _, info = encrypt_payload(V2, A.A128GCM, [DEVICE_KEK])
    body = list(cbor.loads(info).value)
    body[0] = cbor.dumps({1: 30})  # AES-CCM-16-128-128
    before = snapshot(ab_device)
    r = _update(ab_device, tmp_path, _write_manifest(2, V2, b"x" * 64, cbor.dumps(
        cbor.CBORTag(96, body))))
    line = one_error(r, "alg-unsupported")
    assert "encryption-info" in line
    assert "directive-write" not in r.stdout  # nothing ran
    assert snapshot(ab_device) == before
    _still_boots_v1(ab_device)


def test_a_missing_key_keeps_a_pending_image_intact(ab_device: Path, tmp_path: Path) -> None:
    """The content key is unwrapped before the target is opened: v2, installed into slot 0 but
    not booted yet, survives a v3 the device has no key for, and boots next."""
    ct, info = encrypt_payload(V2, A.A128GCM, [DEVICE_KEK])
    ok(_update(ab_device, tmp_path, _write_manifest(2, V2, ct, info)))
    v3 = b"image v3 " * 500
    ct3, info3 = encrypt_payload(v3, A.A128GCM, [CoseKey.generate(A.A128KW, b"kid-3")])
    one_error(_update(ab_device, tmp_path, _write_manifest(3, v3, ct3, info3)),
              "operation-failed")
    assert contents(ab_device)["00", 0] == V2
    assert "slot 0: booted" in ok(invoke("device", "boot", ab_device)).stdout


# --- one build per MTI profile ---------------------------------------------------------------


def _auth_key(p: Profile, tmp_path: Path) -> CoseKey:
    if p.authentication is A.HSS_LMS:
        from suitkit.cose.keys import HssLmsParams

        return CoseKey.generate(A.HSS_LMS, hss=HssLmsParams(levels=1, height=5, w=4),
                                state_file=tmp_path / "hss.cose_key")
    return CoseKey.generate(p.authentication)


def _device_key(p: Profile) -> CoseKey:
    if p.ecdh_curve is not None:
        return CoseKey.generate(A.ECDH_ES_A128KW, b"device-1", curve=p.ecdh_curve).with_alg(None)
    return CoseKey.generate(p.key_exchange, b"device-1")


_NAMES = {A.A128CTR: "a128ctr", A.A256CTR: "a256ctr", A.A128GCM: "a128gcm",
          A.CHACHA20_POLY1305: "chacha20-poly1305"}


def _profile_build(
    p: Profile, work: Path, encryption: CoseAlgorithm | None = None
) -> tuple[Path, Path, Path, Path, bytes]:
    """Build (``encryption:`` block, fetch form) and sign a manifest for profile ``p``; return
    (manifest, ciphertext, trust anchor, device key, plaintext)."""
    work.mkdir(exist_ok=True)
    plain = hashlib.sha256(p.name.encode()).digest() * 300
    (work / "fw.bin").write_bytes(plain)
    signer = _auth_key(p, work)
    dev_key = _device_key(p)
    (work / "device.cose_key").write_bytes(dev_key.to_cose_key(private=True))
    if dev_key.is_symmetric:
        recipient: Any = "device.cose_key"
    else:
        (work / "device.pub.cose_key").write_bytes(dev_key.public_key().to_cose_key())
        recipient = {"key": "device.pub.cose_key", "alg": "ecdh-es+a128kw", "kid": "device-1"}
    desc = {
        "sequence-number": 1,
        "components": [{
            "id": ["fw"],
            "vendor-id": VENDOR,
            "class-id": CLASS,
            "payload": "fw.bin",
            "uri": "https://example.com/fw.enc",
            "invoke": True,
            "encryption": {
                "alg": _NAMES[encryption or p.encryption],
                "recipients": [recipient],
                "payload-out": "fw.enc",
            },
        }],
    }
    env: Envelope = build_from_description(desc, work)
    (work / "m.suit").write_bytes(sign_envelope(env, [signer]).encode())
    trust = work / "trust.cose_key"
    trust.write_bytes(
        signer.to_cose_key(private=True) if signer.is_symmetric
        else signer.public_key().to_cose_key()
    )
    return work / "m.suit", work / "fw.enc", trust, work / "device.cose_key", plain


@pytest.mark.parametrize("name", list(PROFILES))
def test_each_mti_profile_builds_signs_and_installs(name: str, tmp_path: Path) -> None:
    p = PROFILES[name]
    manifest, ct, trust, dev_key, plain = _profile_build(p, tmp_path / "work")
    d = tmp_path / "dev"
    init(d, "--trust", trust, "--decrypt-key", dev_key, "--profile", name,
         "--component", "fw", "--component", "fw/encrypted")
    r = ok(invoke("device", "update", d, manifest,
                  "--payload", f"https://example.com/fw.enc={ct}"))
    assert "directive-copy" in r.stdout and "update: OK" in r.stdout
    assert "slot 1: booted" in ok(invoke("device", "boot", d)).stdout
    assert contents(d)[key_of("fw"), 1] == plain
    assert "algorithm profiles: " + name in ok(invoke("device", "status", d)).stdout


def test_a_manifest_outside_the_devices_profiles_is_alg_unsupported(tmp_path: Path) -> None:
    """Signed with ESP256 and ECDH-ES+A128KW, but A128CTR: profile
    suit-sha256-esp256-ecdh-a128ctr, not the device's suit-sha256-esp256-ecdh-a128gcm."""
    p = PROFILES["suit-sha256-esp256-ecdh-a128gcm"]
    manifest, ct, trust, dev_key, _ = _profile_build(p, tmp_path / "work", A.A128CTR)
    d = tmp_path / "dev"
    init(d, "--trust", trust, "--decrypt-key", dev_key, "--profile", p.name,
         "--component", "fw", "--component", "fw/encrypted")
    before = snapshot(d)
    r = invoke("device", "update", d, manifest, "--payload", f"https://example.com/fw.enc={ct}")
    line = one_error(r, "alg-unsupported")
    assert "outside the algorithm profiles" in line and "A128CTR" in line
    assert "directive-fetch" not in r.stdout
    assert snapshot(d) == before
    assert "reason alg-unsupported" in last_report_reason(d)
    # the same device without --profile accepts it: any supported algorithm
    d2 = tmp_path / "dev2"
    init(d2, "--trust", trust, "--decrypt-key", dev_key,
         "--component", "fw", "--component", "fw/encrypted")
    ok(invoke("device", "update", d2, manifest, "--payload", f"https://example.com/fw.enc={ct}"))


def test_es256_needs_allow_equivalent_under_an_esp256_profile(tmp_path: Path) -> None:
    """The manifest draft's own examples sign with ES256 (-7), outside the profiles' ESP256;
    --allow-equivalent accepts the polymorphic form."""
    d = tmp_path / "dev"
    init(d, "--trust", EXAMPLE_PUB, "--profile", "suit-sha256-esp256-ecdh-a128ctr")
    r = invoke("device", "update", d, VECTORS / "example0.suit")
    assert "authentication ES256 is outside profile" in one_error(r, "alg-unsupported")
    d2 = tmp_path / "dev2"
    init(d2, "--trust", EXAMPLE_PUB, "--profile", "suit-sha256-esp256-ecdh-a128ctr",
         "--allow-equivalent")
    r = invoke("device", "update", d2, VECTORS / "example0.suit")
    assert "alg-unsupported" not in r.output


def test_init_usage_errors(tmp_path: Path) -> None:
    base = ("device", "init", tmp_path / "d", "--vendor-id", VENDOR, "--class-id", CLASS,
            "--trust", EXAMPLE_PUB)
    assert invoke(*base, "--profile", "suit-sha512-rsa").exit_code == 2
    assert invoke(*base, "--component", "a", "--component", "a").exit_code == 2
    assert invoke(*base, "--decrypt-key", tmp_path / "missing.key").exit_code == 2
    r = invoke(*base, "--decrypt-key", EXAMPLE_PUB)  # a public key cannot decrypt
    assert r.exit_code == 1 and "public key cannot decrypt" in r.stderr
    assert not (tmp_path / "d").exists()


def test_status_lists_the_keys_without_their_material(tmp_path: Path) -> None:
    d = tmp_path / "dev"
    init(d, "--trust", MAC_KEY, "--decrypt-key", KEK, "--decrypt-key", f"kid-2={RECIPIENT_PEM}")
    out = ok(invoke("device", "status", d)).stdout
    assert "decryption keys: symmetric, kid 'kid-1', ec2 P_256, kid 'kid-2'" in out
    assert (d / "keys").stat().st_mode & 0o077 == 0
    for f in (d / "keys").iterdir():
        assert f.stat().st_mode & 0o077 == 0
