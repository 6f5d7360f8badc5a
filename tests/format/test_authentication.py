"""Authentication of envelopes (manifest §6.2, §8.3, §8.5) against every spec vector."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitkit.author.signing import sign_envelope
from suitkit.cose.keys import CoseKey
from suitkit.errors import AuthenticationError, SuitError
from suitkit.format import cbor
from suitkit.format.authentication import authenticate
from suitkit.format.codepoints import EnvelopeKey, ManifestKey
from suitkit.format.envelope import Envelope
from tests.conftest import ENVELOPES, VECTORS

KEYS = VECTORS / "keys"
EXAMPLE_KEY = CoseKey.load(KEYS / "suit-example-es256-public.pem")
DEPENDENT_KEY = CoseKey.load(KEYS / "fw-enc-dependent-es256-public.pem")
MAC_KEY = CoseKey.load(KEYS / "fw-enc-hmac256-mac-key.cose_key")
ALL_KEYS = [EXAMPLE_KEY, DEPENDENT_KEY, MAC_KEY]

SIGNED = [p for p in ENVELOPES if "digest-only" not in p.name]
DIGEST_ONLY = [p for p in ENVELOPES if "digest-only" in p.name]


def _all_envelopes() -> list[tuple[str, bytes]]:
    """Every signed envelope, including the integrated dependencies inside two vectors."""
    out = [(p.name, p.read_bytes()) for p in SIGNED]
    for p in SIGNED:
        env = Envelope.decode(p.read_bytes())
        for name, payload in env.integrated_payloads.items():
            if payload[:2] == b"\xd8\x6b":
                out.append((f"{p.name}{name}", payload))
    return out


def test_all_17_signature_and_mac_blocks_of_the_vectors_verify() -> None:
    verified = 0
    for _name, data in _all_envelopes():
        result = authenticate(data, ALL_KEYS).result
        assert all(b.verified for b in result.blocks)
        verified += len(result.blocks)
    assert verified == 17


@pytest.mark.parametrize("path", SIGNED, ids=lambda p: p.name)
def test_signed_vector_verifies_with_its_published_key(path: Path) -> None:
    result = authenticate(path.read_bytes(), ALL_KEYS)
    assert result.envelope.encode() == path.read_bytes()
    assert result.result.verified_blocks


def test_example_signatures_use_es256_and_trust_domains_esp256() -> None:
    ex = authenticate((VECTORS / "example0.suit").read_bytes(), [EXAMPLE_KEY]).result
    td = authenticate(
        (VECTORS / "trust-domains/example1_process.suit").read_bytes(), [EXAMPLE_KEY]
    ).result
    assert ex.blocks[0].algorithm == "ES256"
    assert td.blocks[0].algorithm == "ESP256"


@pytest.mark.parametrize("path", DIGEST_ONLY, ids=lambda p: p.name)
def test_digest_only_envelope_is_not_authentic(path: Path) -> None:
    with pytest.raises(AuthenticationError, match="only the digest"):
        authenticate(path.read_bytes(), ALL_KEYS)


def test_wrong_key_is_rejected_with_reason_unauthorised() -> None:
    with pytest.raises(AuthenticationError) as info:
        authenticate((VECTORS / "example0.suit").read_bytes(), [DEPENDENT_KEY])
    assert info.value.reason.spec_name == "unauthorised"


def test_manifest_digest_covers_the_bstr_header() -> None:
    """§8.3: the digest is over the bstr-wrapped manifest including its CBOR header."""
    env = Envelope.decode((VECTORS / "example0.suit").read_bytes())
    from suitkit.format.digest import Digest

    assert Digest.compute(cbor.dumps(env.manifest.encoded)) == env.authentication.digest
    assert Digest.compute(env.manifest.encoded) != env.authentication.digest


def test_severable_members_are_checked_against_their_digests() -> None:
    r = authenticate((VECTORS / "example2.suit").read_bytes(), [EXAMPLE_KEY])
    assert r.result.members_checked == (ManifestKey.INSTALL, ManifestKey.TEXT)
    assert r.member(ManifestKey.INSTALL) is not None


def test_severed_envelope_verifies_and_reports_what_is_missing() -> None:
    r = authenticate((VECTORS / "example2.severed.suit").read_bytes(), [EXAMPLE_KEY])
    assert r.result.members_severed == (ManifestKey.INSTALL, ManifestKey.TEXT)
    assert r.member(ManifestKey.INSTALL) is None


def test_severed_members_can_be_supplied_separately() -> None:
    full = Envelope.decode((VECTORS / "example2.suit").read_bytes())
    install = full.severable[ManifestKey.INSTALL].encoded
    r = authenticate(
        (VECTORS / "example2.severed.suit").read_bytes(), [EXAMPLE_KEY], severed=[install]
    )
    assert r.result.members_checked == (ManifestKey.INSTALL,)
    assert r.member(ManifestKey.INSTALL) == full.severable[ManifestKey.INSTALL]


def test_a_modified_severed_member_is_rejected() -> None:
    full = Envelope.decode((VECTORS / "example2.suit").read_bytes())
    install = bytearray(full.severable[ManifestKey.INSTALL].encoded)
    install[-1] ^= 1
    with pytest.raises(AuthenticationError, match="matches no digest"):
        authenticate(
            (VECTORS / "example2.severed.suit").read_bytes(),
            [EXAMPLE_KEY],
            severed=[bytes(install)],
        )


def test_modified_member_in_the_envelope_is_rejected() -> None:
    data = (VECTORS / "example2.suit").read_bytes()
    value = cbor.loads(data)
    text = bytearray(value.value[ManifestKey.TEXT])
    text[-2] ^= 0x01
    value.value[ManifestKey.TEXT] = bytes(text)
    with pytest.raises(AuthenticationError, match="text member does not match"):
        authenticate(cbor.dumps(value), [EXAMPLE_KEY])


def test_signing_a_built_manifest_gives_a_verifying_envelope() -> None:
    unsigned = Envelope.decode((VECTORS / "example1.digest-only.suit").read_bytes())
    private = CoseKey.load(KEYS / "suit-example-es256-private.pem")
    signed = sign_envelope(unsigned, [private])
    r = authenticate(signed.encode(), [EXAMPLE_KEY])
    assert r.result.blocks[0].algorithm == "ESP256"
    assert signed.manifest.encoded == unsigned.manifest.encoded


def test_signing_refuses_a_manifest_that_does_not_match_its_digest() -> None:
    """§8.3: signers verify the SUIT_Digest before signing (TOCTOU)."""
    import dataclasses

    env = Envelope.decode((VECTORS / "example1.digest-only.suit").read_bytes())
    other = Envelope.decode((VECTORS / "example0.digest-only.suit").read_bytes())
    tampered = dataclasses.replace(env, manifest=other.manifest)
    private = CoseKey.load(KEYS / "suit-example-es256-private.pem")
    with pytest.raises(AuthenticationError, match="refusing to sign"):
        sign_envelope(tampered, [private])


_SIGNED_DATA = [p.read_bytes() for p in SIGNED]


def _integrated_ranges(data: bytes) -> list[range]:
    """Byte ranges of integrated payloads: they are not covered by the envelope's signature
    but by the image-digest a manifest sets for them, which the processor checks (§7.5).

    Also the map keys of severable members carried in the envelope: a flipped bit there can
    turn the member into an envelope extension (text, 23, becomes 22), which §8.2 allows and
    no signature covers; the envelope is then authentic with that member severed."""
    env = Envelope.decode(data)
    out = []
    for name, payload in env.integrated_payloads.items():
        entry = cbor.dumps(name) + cbor.dumps(payload)  # the map entry: key and bstr
        start = data.find(entry)
        out.append(range(start, start + len(entry)))
    for key, member in env.severable.items():
        head = cbor.dumps(key)
        start = data.find(head + cbor.dumps(member.encoded))
        out.append(range(start, start + len(head)))
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(_SIGNED_DATA), st.data())
def test_any_flipped_bit_makes_verification_fail(data: bytes, draw: st.DataObject) -> None:
    skip = _integrated_ranges(data)
    bit = draw.draw(
        st.integers(0, len(data) * 8 - 1).filter(lambda b: not any(b // 8 in r for r in skip))
    )
    mutated = bytearray(data)
    mutated[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SuitError):
        authenticate(bytes(mutated), ALL_KEYS)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_SIGNED_DATA), st.data())
def test_truncated_envelopes_fail_cleanly(data: bytes, draw: st.DataObject) -> None:
    cut = draw.draw(st.integers(0, len(data) - 1))
    with pytest.raises(SuitError):
        authenticate(data[:cut], ALL_KEYS)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_suit_errors(data: bytes) -> None:
    with pytest.raises(SuitError):
        authenticate(data, ALL_KEYS)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_SIGNED_DATA), st.data())
def test_inserted_and_deleted_map_entries_are_rejected(data: bytes, draw: st.DataObject) -> None:
    value = cbor.loads(data)
    manifest = cbor.loads(value.value[EnvelopeKey.MANIFEST])
    keys = sorted(manifest)
    if draw.draw(st.booleans()) and len(keys) > 1:
        del manifest[draw.draw(st.sampled_from(keys))]
    else:
        manifest[draw.draw(st.integers(-100, 100).filter(lambda k: k not in manifest))] = 0
    value.value[EnvelopeKey.MANIFEST] = cbor.dumps(manifest)
    with pytest.raises(SuitError):
        authenticate(cbor.dumps(value), ALL_KEYS)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([p.read_bytes() for p in ENVELOPES]), st.data())
def test_decoding_mutated_vectors_raises_only_suit_errors(data: bytes, draw: st.DataObject) -> None:
    i = draw.draw(st.integers(0, len(data) - 1))
    mutated = data[:i] + bytes([draw.draw(st.integers(0, 255))]) + data[i + 1 :]
    with contextlib.suppress(SuitError):
        Envelope.decode(mutated)


def test_a_member_supplied_again_beside_the_envelope_copy_is_accepted() -> None:
    """Operators upload severed members they saved even when the envelope still carries them."""
    full = Envelope.decode((VECTORS / "example2.suit").read_bytes())
    install = full.severable[ManifestKey.INSTALL].encoded
    r = authenticate((VECTORS / "example2.suit").read_bytes(), [EXAMPLE_KEY], severed=[install])
    assert r.result.members_checked == (ManifestKey.INSTALL, ManifestKey.TEXT)
