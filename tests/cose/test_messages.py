"""COSE_Sign1 / COSE_Sign / COSE_Mac0 / COSE_Mac: creation, decoding, verification (RFC 9052)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suitkit.cose import (
    CoseKey,
    CoseMac,
    CoseMac0,
    CoseSign,
    CoseSign1,
    KeySigner,
    Recipient,
    decode,
    mac,
    mac0,
    sign,
    sign1,
    verify,
)
from suitkit.cose import algorithms as algs
from suitkit.cose.messages import mac_structure, sig_structure, sig_structure1
from suitkit.errors import (
    AlgorithmUnsupportedError,
    AuthenticationError,
    CoseUnsupportedError,
    DecodeError,
    SuitError,
)
from suitkit.format import cbor
from suitkit.format.codepoints import CoseAlgorithm, CoseHeader, Tag

from ._util import KEYS, SIGNATURE_ALGS, make_key

A = CoseAlgorithm
PAYLOAD = bytes.fromhex("822f5820") + bytes(range(32))  # an encoded SUIT_Digest


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


# --- ToBeSigned / ToBeMaced ------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 23, 24, 255, 256, 65535, 65536])
def test_to_be_signed_structures_are_the_cbor_arrays_of_rfc9052(n: int) -> None:
    p, a, d = b"\xa1\x01\x26", b"x" * (n % 7), b"\x00" * n
    assert sig_structure1(p, a, d) == cbor.dumps(["Signature1", p, a, d])
    assert sig_structure(p, b"", a, d) == cbor.dumps(["Signature", p, b"", a, d])
    assert mac_structure("MAC0", p, a, d) == cbor.dumps(["MAC0", p, a, d])
    assert mac_structure("MAC", p, a, d) == cbor.dumps(["MAC", p, a, d])


# --- COSE_Sign1 ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", SIGNATURE_ALGS, ids=lambda a: a.spec_name)
def test_sign1_round_trip_for_every_algorithm(alg: CoseAlgorithm, tmp_path: Path) -> None:
    key = make_key(alg, tmp_path).with_kid(b"signer")
    encoded = sign1(PAYLOAD, key).encode()
    msg = decode(encoded)
    assert isinstance(msg, CoseSign1) and msg.payload is None
    result = msg.verify([key.public_key()], payload=PAYLOAD)
    assert result.alg is alg and result.kid == b"signer"
    with pytest.raises(AuthenticationError):
        msg.verify([key.public_key()], payload=flip(PAYLOAD, 5))
    other = make_key(alg, tmp_path / "other") if alg is not A.HSS_LMS else None
    if other is not None:
        with pytest.raises(AuthenticationError):
            msg.verify([other.public_key()], payload=PAYLOAD)


def test_sign1_has_the_suit_example_layout(example_private: CoseKey) -> None:
    msg = sign1(PAYLOAD, KeySigner(example_private, A.ES256))
    # 18([h'a10126', {}, null, h'<64 bytes>']), like the manifest's Appendix B examples
    assert msg.encode().startswith(bytes.fromhex("d28443a10126a0f65840"))
    assert len(msg.encode()) == 10 + 64
    assert msg.headers.protected == {1: -7} and msg.headers.unprotected == {}


def test_sign1_default_algorithm_for_a_p256_key_is_esp256(example_private: CoseKey) -> None:
    msg = sign1(PAYLOAD, example_private)
    assert msg.headers.protected_bytes == bytes.fromhex("a10128")  # {1: -9}


def test_sign1_puts_the_kid_in_the_unprotected_header_unless_asked(
    example_private: CoseKey,
) -> None:
    key = example_private.with_kid(b"k1")
    msg = sign1(PAYLOAD, key)
    assert msg.headers.unprotected == {CoseHeader.KID: b"k1"}
    assert msg.headers.protected == {CoseHeader.ALG: A.ESP256}
    protected = sign1(PAYLOAD, key, protect_kid=True)
    assert protected.headers.protected == {1: -9, 4: b"k1"}
    assert protected.headers.unprotected == {}
    assert sign1(PAYLOAD, key, include_kid=False).headers.unprotected == {}


def test_sign1_protected_header_is_deterministic_cbor(example_private: CoseKey) -> None:
    msg = sign1(PAYLOAD, example_private, protected={CoseHeader.CONTENT_TYPE: 60, "z": 1})
    assert msg.headers.protected_bytes == cbor.dumps({1: -9, 3: 60, "z": 1})
    assert list(cbor.loads(msg.headers.protected_bytes)) == [1, 3, "z"]


def test_sign1_verifies_over_bytes_as_received(example_private: CoseKey) -> None:
    # alg -7 in a non-preferred encoding (0x38 0x06): re-encoding the decoded header would
    # give a10126 and break the signature; suitkit keeps the received bytes.
    protected = bytes.fromhex("a1013806")
    tbs = sig_structure1(protected, b"", PAYLOAD)
    signature = algs.sign(example_private, A.ES256, tbs)
    encoded = cbor.dumps(cbor.CBORTag(Tag.COSE_SIGN1, [protected, {}, None, signature]))
    msg = CoseSign1.decode(encoded)
    assert msg.headers.protected_bytes == protected
    assert msg.verify([example_private.public_key()], payload=PAYLOAD).alg is A.ES256
    assert msg.encode() == encoded


def test_sign1_any_single_bit_flip_fails(example_private: CoseKey) -> None:
    encoded = sign1(PAYLOAD, example_private, protected={3: 60}).encode()
    public = example_private.public_key()
    decode(encoded).verify([public], payload=PAYLOAD)
    for i in range(len(encoded)):
        for bit in range(8):
            with pytest.raises(SuitError):
                decode(flip(encoded, i, 1 << bit)).verify([public], payload=PAYLOAD)


def test_sign1_flipped_signature_protected_header_or_payload_is_an_authentication_error(
    example_private: CoseKey,
) -> None:
    public = example_private.public_key()
    msg = sign1(PAYLOAD, example_private, protected={3: 60})
    enc = msg.encode()
    sig_at = enc.index(msg.signature)
    ct_at = enc.index(b"\x18\x3c")  # the content-type value 60 inside the protected header
    for tampered in (flip(enc, sig_at + 10), flip(enc, ct_at + 1)):
        with pytest.raises(AuthenticationError):
            decode(tampered).verify([public], payload=PAYLOAD)
    with pytest.raises(AuthenticationError):
        msg.verify([public], payload=flip(PAYLOAD, 0))
    with pytest.raises(AuthenticationError):
        msg.verify([public], payload=PAYLOAD, external_aad=b"aad")


def test_es256_and_esp256_messages_both_verify_with_a_p256_key(example_private: CoseKey) -> None:
    public = example_private.public_key()
    for alg in (A.ES256, A.ESP256):
        msg = sign1(PAYLOAD, KeySigner(example_private, alg))
        assert msg.verify([public], payload=PAYLOAD).alg is alg


def test_kid_selects_the_key_and_keys_with_another_kid_are_not_tried(
    example_private: CoseKey,
) -> None:
    other = CoseKey.generate(A.ESP256, kid=b"other")
    msg = sign1(PAYLOAD, example_private.with_kid(b"mine"))
    right = example_private.public_key()
    result = msg.verify([other, right.with_kid(b"mine")], payload=PAYLOAD)
    assert result.kid == b"mine" and result.key.kid == b"mine"
    assert msg.verify([other, right], payload=PAYLOAD).key is right  # kid-less key is tried
    with pytest.raises(AuthenticationError):
        msg.verify([right.with_kid(b"else")], payload=PAYLOAD)


def test_without_kid_every_key_that_fits_the_algorithm_is_tried(example_private: CoseKey) -> None:
    msg = sign1(PAYLOAD, example_private)
    keys = [
        CoseKey.generate(A.ED25519),
        CoseKey.generate(A.ESP256, kid=b"a"),
        CoseKey.load(KEYS / "fw-enc-hmac256-mac-key.cose_key"),
        example_private.public_key(),
    ]
    assert msg.verify(keys, payload=PAYLOAD).key is keys[3]
    with pytest.raises(AuthenticationError):
        msg.verify(keys[:3], payload=PAYLOAD)
    with pytest.raises(AuthenticationError):
        msg.verify([], payload=PAYLOAD)


def test_key_restricted_to_another_algorithm_is_not_used(example_private: CoseKey) -> None:
    msg = sign1(PAYLOAD, example_private)
    restricted = example_private.public_key().with_alg(A.ECDH_ES_A128KW)
    with pytest.raises(AuthenticationError):
        msg.verify([restricted], payload=PAYLOAD)


def test_detached_payload_must_be_supplied_and_embedded_payload_must_match(
    example_private: CoseKey,
) -> None:
    public = example_private.public_key()
    with pytest.raises(ValueError):
        sign1(PAYLOAD, example_private).verify([public])
    attached = decode(sign1(PAYLOAD, example_private, detached=False).encode())
    assert attached.payload == PAYLOAD
    attached.verify([public])
    attached.verify([public], payload=PAYLOAD)
    with pytest.raises(AuthenticationError):
        attached.verify([public], payload=b"other")


def test_custom_signer_plugs_in_like_an_hsm(example_private: CoseKey) -> None:
    class Hsm:
        alg = A.ESP256
        kid = b"hsm-slot-1"

        def __init__(self) -> None:
            self.calls: list[bytes] = []

        def sign(self, tbs: bytes) -> bytes:
            self.calls.append(tbs)
            return algs.sign(example_private, A.ESP256, tbs)

    hsm = Hsm()
    msg = sign1(PAYLOAD, hsm)
    assert hsm.calls == [sig_structure1(msg.headers.protected_bytes, b"", PAYLOAD)]
    assert msg.verify([example_private.public_key()], payload=PAYLOAD).kid == b"hsm-slot-1"


def test_verify_function_dispatches_on_message_type(example_private: CoseKey) -> None:
    msg = decode(sign1(PAYLOAD, example_private).encode())
    assert verify(msg, example_private.public_key(), payload=PAYLOAD).alg is A.ESP256


# --- header rules ----------------------------------------------------------------------------


def _sign1_with(
    key: CoseKey, protected: bytes, unprotected: dict[object, object] | None = None
) -> bytes:
    tbs = sig_structure1(protected, b"", PAYLOAD)
    sig = algs.sign(key, A.ESP256, tbs)
    return cbor.dumps(cbor.CBORTag(Tag.COSE_SIGN1, [protected, unprotected or {}, None, sig]))


def test_unknown_critical_header_is_cose_unsupported(example_private: CoseKey) -> None:
    encoded = _sign1_with(example_private, cbor.dumps({1: -9, 2: [99], 99: True}))
    with pytest.raises(CoseUnsupportedError, match="critical"):
        decode(encoded)


def test_understood_critical_header_is_accepted(example_private: CoseKey) -> None:
    encoded = _sign1_with(example_private, cbor.dumps({1: -9, 2: [1]}))
    decode(encoded).verify([example_private.public_key()], payload=PAYLOAD)


def test_unknown_non_critical_header_is_ignored(example_private: CoseKey) -> None:
    encoded = _sign1_with(example_private, cbor.dumps({1: -9, 99: "x"}), {-70000: 1})
    decode(encoded).verify([example_private.public_key()], payload=PAYLOAD)


@pytest.mark.parametrize(
    ("protected", "unprotected", "error"),
    [
        (cbor.dumps([1, -9]), {}, DecodeError),  # protected must decode to a map
        (b"\xa1\x01", {}, DecodeError),  # truncated protected map
        (cbor.dumps({1: -9}), {1: -9}, DecodeError),  # label in both buckets
        (cbor.dumps({1: -9, 2: []}), {}, DecodeError),  # empty crit
        (cbor.dumps({1: -9}), {2: [1]}, DecodeError),  # crit unprotected
        (b"", {1: -9}, CoseUnsupportedError),  # alg must be protected
        (cbor.dumps({1: -9, 4: "kid"}), {}, DecodeError),  # kid must be a bstr
        (cbor.dumps({1: 1.5}), {}, DecodeError),  # alg must be int or tstr
    ],
)
def test_malformed_headers_are_refused(
    example_private: CoseKey,
    protected: bytes,
    unprotected: dict[object, object],
    error: type[SuitError],
) -> None:
    with pytest.raises(error):
        decode(_sign1_with(example_private, protected, unprotected))


def test_missing_or_unknown_alg_is_refused_at_verification(example_private: CoseKey) -> None:
    public = example_private.public_key()
    with pytest.raises(DecodeError, match="no alg"):
        decode(_sign1_with(example_private, b"")).verify([public], payload=PAYLOAD)
    with pytest.raises(AlgorithmUnsupportedError):
        decode(_sign1_with(example_private, cbor.dumps({1: -260}))).verify(
            [public], payload=PAYLOAD
        )
    with pytest.raises(AlgorithmUnsupportedError):
        decode(_sign1_with(example_private, cbor.dumps({1: "ES256"}))).verify(
            [public], payload=PAYLOAD
        )


def test_empty_protected_header_may_be_an_empty_bstr_or_an_empty_map(
    example_private: CoseKey,
) -> None:
    for protected in (b"", b"\xa0"):
        encoded = _sign1_with(example_private, protected)
        assert decode(encoded).headers.protected == {}


# --- decoding dispatch -----------------------------------------------------------------------


def test_decode_dispatches_on_the_tag(example_private: CoseKey) -> None:
    body: list[object] = [b"\xa1\x01\x28", {}, None, b"\x00" * 64]
    mac0_body: list[object] = [b"\xa1\x01\x05", {}, None, b""]
    assert isinstance(decode(cbor.dumps(cbor.CBORTag(18, body))), CoseSign1)
    assert isinstance(decode(cbor.dumps(cbor.CBORTag(17, mac0_body))), CoseMac0)
    with pytest.raises(DecodeError, match="not tagged"):
        decode(cbor.dumps(body))
    with pytest.raises(DecodeError, match="tag 19"):
        decode(cbor.dumps(cbor.CBORTag(19, body)))
    with pytest.raises(CoseUnsupportedError):
        decode(cbor.dumps(cbor.CBORTag(16, [b"", {}, b""])))
    with pytest.raises(DecodeError):
        decode(cbor.dumps(cbor.CBORTag(18, body[:3])))
    with pytest.raises(CoseUnsupportedError, match="expected CoseSign1"):
        CoseSign1.decode(mac0(PAYLOAD, CoseKey.generate(A.HMAC_256_256)).encode())


# --- COSE_Sign -------------------------------------------------------------------------------


def test_sign_with_several_signers_verifies_each(tmp_path: Path) -> None:
    p256 = CoseKey.generate(A.ESP256, kid=b"p256")
    ed = CoseKey.generate(A.ED25519, kid=b"ed")
    mldsa = CoseKey.generate(A.ML_DSA_44, kid=b"pq")
    msg = decode(sign(PAYLOAD, [p256, ed, mldsa]).encode())
    assert isinstance(msg, CoseSign) and msg.payload is None and len(msg.signatures) == 3
    assert msg.headers.protected_bytes == b""
    assert [s.headers.protected for s in msg.signatures] == [{1: -9}, {1: -19}, {1: -48}]
    assert [s.kid for s in msg.signatures] == [b"p256", b"ed", b"pq"]
    public = [k.public_key() for k in (p256, ed, mldsa)]
    assert msg.verify([public[1]], payload=PAYLOAD).index == 1
    results = msg.verify_signatures(public, payload=PAYLOAD, require_all=True)
    assert [r.index for r in results] == [0, 1, 2]
    with pytest.raises(AuthenticationError):
        msg.verify([public[0]], payload=PAYLOAD, require_all=True)
    with pytest.raises(AuthenticationError):
        msg.verify(public, payload=flip(PAYLOAD, 3))


def test_sign_signature_covers_body_and_signer_protected_headers() -> None:
    key = CoseKey.generate(A.ESP256)
    msg = sign(PAYLOAD, [key], protected={3: 60})
    enc = msg.encode()
    public = key.public_key()
    decode(enc).verify([public], payload=PAYLOAD)
    body_ct = enc.index(b"\x18\x3c")
    with pytest.raises(AuthenticationError):
        decode(flip(enc, body_ct + 1)).verify([public], payload=PAYLOAD)


# --- COSE_Mac0 -------------------------------------------------------------------------------


def test_mac0_round_trip_and_tampering() -> None:
    key = CoseKey.generate(A.HMAC_256_256, kid=b"m")
    msg = decode(mac0(PAYLOAD, key).encode())
    assert isinstance(msg, CoseMac0) and msg.headers.protected_bytes == bytes.fromhex("a10105")
    assert msg.verify([key], payload=PAYLOAD).key is key
    with pytest.raises(AuthenticationError):
        msg.verify([key], payload=flip(PAYLOAD, 1))
    with pytest.raises(AuthenticationError):
        msg.verify([CoseKey.generate(A.HMAC_256_256, kid=b"m")], payload=PAYLOAD)
    # every bit flip fails (the unprotected header is not covered by the tag, so the flipped
    # message carries no kid: relabelling an unprotected kid is not an attack)
    plain = key.with_kid(None)
    enc = mac0(PAYLOAD, plain, include_kid=False).encode()
    for i in range(len(enc)):
        with pytest.raises(SuitError):
            decode(flip(enc, i)).verify([plain], payload=PAYLOAD)


def test_mac0_needs_a_mac_key() -> None:
    with pytest.raises(SuitError):
        mac0(PAYLOAD, CoseKey.generate(A.A128KW))
    with pytest.raises(SuitError):
        mac0(PAYLOAD, CoseKey.generate(A.ESP256))


# --- COSE_Mac --------------------------------------------------------------------------------


def test_mac_with_a_direct_recipient_and_kid() -> None:
    key = CoseKey.generate(A.HMAC_256_256, kid=b"shared")
    msg = decode(mac(PAYLOAD, [key]).encode())
    assert isinstance(msg, CoseMac)
    (rec,) = msg.recipients
    assert rec.headers.protected_bytes == b"" and rec.ciphertext == b""
    assert rec.headers.unprotected == {1: A.DIRECT, 4: b"shared"}
    result = msg.verify([CoseKey.generate(A.HMAC_256_256), key], payload=PAYLOAD)
    assert result.key is key and result.kid == b"shared" and result.index == 0
    with pytest.raises(AuthenticationError):
        msg.verify([CoseKey.generate(A.HMAC_256_256, kid=b"shared")], payload=PAYLOAD)


@pytest.mark.parametrize("kw", [A.A128KW, A.A192KW, A.A256KW], ids=lambda a: a.spec_name)
def test_mac_with_aes_key_wrap_recipients(kw: CoseAlgorithm) -> None:
    alice = CoseKey.generate(kw, kid=b"alice")
    bob = CoseKey.generate(kw, kid=b"bob")
    msg = decode(mac(PAYLOAD, [Recipient(alice, kw), Recipient(bob, kw)]).encode())
    assert isinstance(msg, CoseMac) and len(msg.recipients) == 2
    assert msg.verify([bob], payload=PAYLOAD).index == 1
    assert msg.verify([alice], payload=PAYLOAD).index == 0
    with pytest.raises(AuthenticationError):
        msg.verify([CoseKey.generate(kw, kid=b"bob")], payload=PAYLOAD)
    with pytest.raises(AuthenticationError):
        msg.verify([alice, bob], payload=flip(PAYLOAD, 2))


def test_mac_with_the_vector_kek() -> None:
    kek = CoseKey.load(KEYS / "fw-enc-kek-a128kw-kid-1.cose_key")
    msg = decode(mac(PAYLOAD, [Recipient(kek, A.A128KW)]).encode())
    assert msg.verify([kek], payload=PAYLOAD).kid == b"kid-1"


def test_mac_direct_allows_exactly_one_recipient() -> None:
    a, b = CoseKey.generate(A.HMAC_256_256), CoseKey.generate(A.HMAC_256_256)
    with pytest.raises(ValueError):
        mac(PAYLOAD, [a, b])
    with pytest.raises(ValueError):
        mac(PAYLOAD, [])


def test_mac_recipient_with_unsupported_key_distribution_is_alg_unsupported() -> None:
    key = CoseKey.generate(A.HMAC_256_256)
    enc = mac(PAYLOAD, [key]).encode()
    value = cbor.loads(enc)
    value.value[4][0][1][1] = A.ECDH_ES_A128KW
    with pytest.raises(AlgorithmUnsupportedError):
        decode(cbor.dumps(value)).verify([key], payload=PAYLOAD)


def test_mac_nested_recipients_are_cose_unsupported() -> None:
    enc = mac(PAYLOAD, [CoseKey.generate(A.HMAC_256_256)]).encode()
    value = cbor.loads(enc)
    value.value[4][0].append([])
    with pytest.raises(CoseUnsupportedError):
        decode(cbor.dumps(value))


@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("kid", [None, b"k", b"k" * 300])
@pytest.mark.parametrize("size", [0, 23, 24, 70000])
def test_created_messages_encode_as_deterministic_cbor_of_their_fields(
    example_private: CoseKey, detached: bool, kid: bytes | None, size: int
) -> None:
    payload = b"\x07" * size
    key = example_private.with_kid(kid)
    mac_key = CoseKey.generate(A.HMAC_256_256, kid=kid)
    for msg, tag in (
        (sign1(payload, key, detached=detached), Tag.COSE_SIGN1),
        (sign1(payload, key, detached=detached, protected={3: 60}), Tag.COSE_SIGN1),
        (mac0(payload, mac_key, detached=detached), Tag.COSE_MAC0),
    ):
        last = msg.signature if isinstance(msg, CoseSign1) else msg.tag
        h = msg.headers
        fields = [h.protected_bytes, dict(h.unprotected), msg.payload, last]
        assert msg.encode() == cbor.dumps(cbor.CBORTag(tag, fields))
        assert decode(msg.encode()).headers == h
