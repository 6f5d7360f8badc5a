"""The six MTI profiles of draft-ietf-suit-mti: build, sign, encrypt and decrypt with each;
anything outside a profile is alg-unsupported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from suitkit.author.builder import assemble
from suitkit.author.signing import MacKey, sign_envelope
from suitkit.cose import CoseKey, KeySigner
from suitkit.encryption import Recipient, encrypt_payload
from suitkit.encryption.builder import EncryptedComponent
from suitkit.encryption.profiles import (
    PROFILES,
    Profile,
    check_build,
    check_encryption_info,
    check_envelope,
    get_profile,
)
from suitkit.errors import AlgorithmUnsupportedError
from suitkit.format.authentication import authenticate
from suitkit.format.codepoints import CoseAlgorithm, CoseCurve, ManifestKey, Parameter
from suitkit.format.commands import (
    CommandSequence,
    ConditionImageMatch,
    OverrideParameters,
    TryEach,
)
from suitkit.format.digest import Digest
from suitkit.format.envelope import Envelope
from suitkit.format.parameters import EncryptionInfo, Parameters

from ._util import SMALL_HSS, MiniDevice

A = CoseAlgorithm
TARGET = (b"fw",)
STAGING = (b"fw", b"encrypted")

#: draft-ietf-suit-mti §6, the Descriptor Arrays
DESCRIPTORS = {
    "suit-sha256-hmac-a128kw-a128ctr": (-16, 5, -3, -65534),
    "suit-sha256-esp256-ecdh-a128ctr": (-16, -9, -29, -65534),
    "suit-sha256-ed25519-ecdh-a128ctr": (-16, -19, -29, -65534),
    "suit-sha256-esp256-ecdh-a128gcm": (-16, -9, -29, 1),
    "suit-sha256-ed25519-ecdh-chacha-poly": (-16, -19, -29, 24),
    "suit-sha256-hsslms-a256kw-a256ctr": (-16, -46, -5, -65532),
}


def test_the_six_profiles_and_their_descriptor_arrays() -> None:
    assert {name: p.descriptor for name, p in PROFILES.items()} == DESCRIPTORS
    assert all(p.status == "MANDATORY" for p in PROFILES.values())
    assert get_profile("SUIT-SHA256-HMAC-A128KW-A128CTR").authentication is A.HMAC_256_256
    with pytest.raises(AlgorithmUnsupportedError, match="unknown algorithm profile"):
        get_profile("suit-sha512-rsa")


def auth_key(p: Profile, tmp_path: Path) -> CoseKey:
    if p.authentication is A.HSS_LMS:
        return CoseKey.generate(A.HSS_LMS, hss=SMALL_HSS, state_file=tmp_path / "hss.cose_key")
    return CoseKey.generate(p.authentication)


def device_key(p: Profile, kid: bytes) -> CoseKey:
    if p.ecdh_curve is not None:
        return CoseKey.generate(A.ECDH_ES_A128KW, kid, curve=p.ecdh_curve).with_alg(None)
    return CoseKey.generate(p.key_exchange, kid)


def recipient_for(p: Profile, device: CoseKey) -> Recipient:
    key = device if device.is_symmetric else device.public_key()
    return Recipient(key, p.key_exchange)


def build(
    p: Profile, recipients: list[Recipient], payload: bytes, digest_alg: int = A.SHA_256
) -> tuple[Envelope, EncryptedComponent]:
    """A two-component manifest: the ciphertext is an integrated payload fetched into a staging
    component, image-matched, then decrypted by copy into the target and image-matched."""
    ciphertext, info = encrypt_payload(payload, p.encryption, recipients)
    enc = EncryptedComponent(
        p.encryption,
        EncryptionInfo(info),
        Digest.compute(payload, digest_alg),
        len(payload),
        Digest.compute(ciphertext, digest_alg),
        len(ciphertext),
        ciphertext=ciphertext,
    )
    install = enc.install_commands(0, staging=1, uri="#fw.enc")
    env = assemble(
        sequence_number=1,
        components=(TARGET, STAGING),
        shared_sequence=None,
        sequences={ManifestKey.INSTALL: CommandSequence(install)},
        integrated_payloads={"#fw.enc": ciphertext},
        digest_algorithm=digest_alg,
    )
    return env, enc


@pytest.mark.parametrize("name", list(PROFILES))
def test_build_sign_encrypt_decrypt_with_each_profile(name: str, tmp_path: Path) -> None:
    p = PROFILES[name]
    signer = auth_key(p, tmp_path)
    devices = [device_key(p, b"device-1"), device_key(p, b"device-2")]
    recipients = [recipient_for(p, d) for d in devices]
    authenticator = MacKey(signer) if signer.is_symmetric else KeySigner(signer)
    check_build(p, signers=[authenticator], content_algorithm=p.encryption, recipients=recipients)

    payload = os.urandom(3000)
    env, _ = build(p, recipients, payload)
    check_build(p, envelope=env)
    signed = sign_envelope(env, [authenticator])
    check_build(p, envelope=signed)
    trusted = signer if signer.is_symmetric else signer.public_key()
    auth = authenticate(signed.encode(), [trusted])
    check_envelope(auth, p)
    for other in PROFILES.values():
        if other is not p:
            with pytest.raises(AlgorithmUnsupportedError) as exc:
                check_envelope(auth, other)
            assert exc.value.reason.spec_name == "alg-unsupported"

    install = auth.member(ManifestKey.INSTALL)
    assert isinstance(install, CommandSequence)
    for device in devices:  # each device decrypts with its own key
        dev = MiniDevice(auth.manifest.common.components, [device], chunk_size=1000)
        dev.run(install, auth.envelope.integrated_payloads)
        assert dev.content(0) == payload and dev.decrypted == [0]


def test_anything_outside_the_profile_is_refused(tmp_path: Path) -> None:
    p = PROFILES["suit-sha256-esp256-ecdh-a128ctr"]
    dev = device_key(p, b"d")
    good = recipient_for(p, dev)
    signer = CoseKey.generate(A.ESP256)

    # a second recipient with another key exchange
    env, _ = build(p, [good, Recipient(CoseKey.generate(A.A128KW))], b"fw")
    with pytest.raises(AlgorithmUnsupportedError, match="key exchange of recipient 1 A128KW"):
        check_build(p, envelope=env)
    # ECDH-ES + A256KW is not ECDH-ES + A128KW
    env, _ = build(p, [Recipient(dev.public_key(), A.ECDH_ES_A256KW)], b"fw")
    with pytest.raises(AlgorithmUnsupportedError, match="ECDH-ES \\+ A256KW"):
        check_build(p, envelope=env)
    # a SHA-384 manifest digest and image digests
    env, _ = build(p, [good], b"fw", digest_alg=A.SHA_384)
    with pytest.raises(AlgorithmUnsupportedError, match="digest sha384"):
        check_build(p, envelope=env)
    # ES256 is the polymorphic ESP256: only with allow_equivalent
    env, _ = build(p, [good], b"fw")
    signed = sign_envelope(env, [KeySigner(signer, A.ES256)])
    auth = authenticate(signed.encode(), [signer.public_key()])
    with pytest.raises(AlgorithmUnsupportedError, match="authentication ES256"):
        check_envelope(auth, p)
    check_envelope(auth, p, allow_equivalent=True)
    # the author side, piece by piece
    with pytest.raises(AlgorithmUnsupportedError, match="content encryption A128GCM"):
        check_build(p, content_algorithm=A.A128GCM)
    with pytest.raises(AlgorithmUnsupportedError, match="authentication Ed25519"):
        check_build(p, signers=[CoseKey.generate(A.ED25519)])
    with pytest.raises(AlgorithmUnsupportedError, match="key exchange A128KW"):
        check_build(p, recipients=[CoseKey.generate(A.A128KW)])
    with pytest.raises(AlgorithmUnsupportedError, match="digest"):
        check_build(p, digest_algorithm=A.SHA_512)
    check_build(p, signers=[signer], recipients=[dev.public_key()], digest_algorithm=A.SHA_256)


def test_digests_and_encryption_info_inside_nested_sequences_are_checked() -> None:
    p = PROFILES["suit-sha256-hmac-a128kw-a128ctr"]
    _, info = encrypt_payload(b"fw", A.A128GCM, [CoseKey.generate(A.A128KW)])
    nested = TryEach(
        (
            CommandSequence(
                [OverrideParameters(Parameters({Parameter.ENCRYPTION_INFO: EncryptionInfo(info)}))]
            ),
            CommandSequence([ConditionImageMatch(15)]),
        )
    )
    env = assemble(
        sequence_number=1,
        components=(TARGET,),
        shared_sequence=None,
        sequences={ManifestKey.INSTALL: CommandSequence([nested])},
    )
    with pytest.raises(AlgorithmUnsupportedError, match="content encryption A128GCM") as exc:
        check_build(p, envelope=env)
    assert exc.value.path == "manifest/install"
    shake = OverrideParameters(Parameters({Parameter.IMAGE_DIGEST: Digest(A.SHAKE128, bytes(32))}))
    env = assemble(
        sequence_number=1,
        components=(TARGET,),
        shared_sequence=CommandSequence([shake]),
        sequences={},
    )
    with pytest.raises(AlgorithmUnsupportedError, match="image-digest digest shake128"):
        check_build(p, envelope=env)


def test_severed_members_are_checked_when_supplied(tmp_path: Path) -> None:
    p = PROFILES["suit-sha256-hmac-a128kw-a128ctr"]
    mac = CoseKey.generate(A.HMAC_256_256)
    _, info = encrypt_payload(b"fw", A.A256CTR, [CoseKey.generate(A.A128KW)])
    install = CommandSequence(
        [OverrideParameters(Parameters({Parameter.ENCRYPTION_INFO: EncryptionInfo(info)}))]
    )
    env = assemble(
        sequence_number=1,
        components=(TARGET,),
        shared_sequence=None,
        sequences={ManifestKey.INSTALL: install},
        severable=frozenset({ManifestKey.INSTALL}),
    )
    signed = sign_envelope(env, [mac])
    with pytest.raises(AlgorithmUnsupportedError, match="A256CTR"):
        check_envelope(authenticate(signed.encode(), [mac]), p)
    severed = signed.sever()
    check_envelope(authenticate(severed.encode(), [mac]), p)  # not there: only its digest
    with pytest.raises(AlgorithmUnsupportedError, match="A256CTR"):
        check_envelope(authenticate(severed.encode(), [mac], severed=[install.encoded]), p)


def test_check_encryption_info_on_its_own() -> None:
    p = PROFILES["suit-sha256-ed25519-ecdh-chacha-poly"]
    dev = CoseKey.generate(A.ECDH_ES_A128KW, curve=CoseCurve.X25519)
    _, info = encrypt_payload(b"fw", A.CHACHA20_POLY1305, [dev.public_key()])
    check_encryption_info(info, p)
    check_encryption_info(EncryptionInfo(info), p.name)
    with pytest.raises(AlgorithmUnsupportedError):
        check_encryption_info(info, "suit-sha256-esp256-ecdh-a128gcm")
