"""The official SUIT vectors: every COSE_Sign1 / COSE_Mac0 in them verifies (17 blocks).

Which bytes are signed (manifest §8.3, "detached payload ... is the bstr-wrapped SUIT_Digest"):
the caller passes the *content* of SUIT_Authentication[0], i.e. the encoded SUIT_Digest array
``[-16, h'...']``. Sig_structure = ["Signature1", protected, h'', payload] encodes that payload
as a bstr, so the signed bytes contain the bstr-wrapped digest exactly as it is in the envelope.
Passing the bstr-wrapped bytes themselves would wrap them twice, and the vectors do not verify
that way (checked below).
"""

from __future__ import annotations

import pytest

from suitkit.cose import CoseKey, CoseMac0, CoseSign1, decode
from suitkit.errors import AuthenticationError
from suitkit.format import cbor
from suitkit.format.codepoints import CoseAlgorithm

from ._util import KEYS, VECTORS, auth_blocks

EXAMPLE = CoseKey.load(KEYS / "suit-example-es256-public.pem")
DEPENDENT = CoseKey.load(KEYS / "fw-enc-dependent-es256-public.pem")
MAC_KEY = CoseKey.load(KEYS / "fw-enc-hmac256-mac-key.cose_key")
TRUSTED = [EXAMPLE, DEPENDENT, MAC_KEY]

BLOCKS = [
    (where, digest, block)
    for path in sorted(VECTORS.rglob("*.suit"))
    for where, digest, block in auth_blocks(path.read_bytes(), str(path.relative_to(VECTORS)))
]


def test_vectors_hold_17_authentication_blocks_and_all_verify() -> None:
    verified = [decode(block).verify(TRUSTED, payload=digest) for _, digest, block in BLOCKS]
    assert len(BLOCKS) == 17
    assert len(verified) == 17
    algs = sorted(r.alg.spec_name for r in verified)
    assert algs.count("ES256") == 7  # manifest Appendix B
    assert algs.count("ESP256") == 7  # trust domains, firmware encryption
    assert algs.count("HMAC 256/256") == 3  # firmware encryption AES-KW manifests


@pytest.mark.parametrize(("where", "digest", "block"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_vector_block_verifies_with_its_published_key(
    where: str, digest: bytes, block: bytes
) -> None:
    msg = decode(block)
    assert msg.payload is None  # detached payload (manifest §8.3)
    expected = EXAMPLE
    if isinstance(msg, CoseMac0):
        expected = MAC_KEY
    elif where == "firmware-encryption/suit-manifest-es-ecdh-dependency.suit/authentication[1]":
        expected = DEPENDENT
    result = msg.verify([expected], payload=digest)
    assert result.key is expected
    assert msg.encode() == block


@pytest.mark.parametrize(("where", "digest", "block"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_vector_block_fails_when_the_digest_is_bstr_wrapped_twice(
    where: str, digest: bytes, block: bytes
) -> None:
    with pytest.raises(AuthenticationError):
        decode(block).verify(TRUSTED, payload=cbor.dumps(digest))


@pytest.mark.parametrize(("where", "digest", "block"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_vector_block_fails_with_another_digest(where: str, digest: bytes, block: bytes) -> None:
    tampered = digest[:-1] + bytes([digest[-1] ^ 1])
    with pytest.raises(AuthenticationError):
        decode(block).verify(TRUSTED, payload=tampered)


def test_dependency_manifest_outer_signature_does_not_verify_with_the_example_key() -> None:
    path = VECTORS / "firmware-encryption" / "suit-manifest-es-ecdh-dependency.suit"
    (_, digest, block), *_ = auth_blocks(path.read_bytes(), "dep")
    with pytest.raises(AuthenticationError):
        decode(block).verify([EXAMPLE], payload=digest)


def test_example_signatures_are_es256_with_the_spec_header_layout() -> None:
    _, _, block = next(b for b in BLOCKS if b[0] == "example0.suit/authentication[1]")
    msg = CoseSign1.decode(block)
    assert msg.headers.protected_bytes == bytes.fromhex("a10126")  # << {1: -7} >>
    assert msg.headers.unprotected == {}
    assert msg.headers.algorithm() is CoseAlgorithm.ES256
    assert len(msg.signature) == 64  # raw r || s
