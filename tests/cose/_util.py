"""Helpers shared by the COSE tests: vector keys, SUIT envelope walking, small HSS-LMS keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from suitkit.cose import CoseKey, HssLmsParams
from suitkit.format import cbor
from suitkit.format.codepoints import CoseAlgorithm, EnvelopeKey, Tag

VECTORS = Path(__file__).parent.parent / "vectors"
KEYS = VECTORS / "keys"

#: One LMS tree of height 5 (32 signatures), W4: key generation takes a few hundredths of a second.
SMALL_HSS = HssLmsParams(levels=1, height=5, w=4)

SIGNATURE_ALGS = [
    CoseAlgorithm.ES256,
    CoseAlgorithm.ESP256,
    CoseAlgorithm.ES384,
    CoseAlgorithm.ESP384,
    CoseAlgorithm.ESP512,
    CoseAlgorithm.EDDSA,
    CoseAlgorithm.ED25519,
    CoseAlgorithm.HSS_LMS,
    CoseAlgorithm.ML_DSA_44,
    CoseAlgorithm.ML_DSA_65,
    CoseAlgorithm.ML_DSA_87,
]


def make_key(alg: CoseAlgorithm, tmp_path: Path) -> CoseKey:
    """A fresh private key for ``alg`` (an HSS-LMS key gets its state file under ``tmp_path``)."""
    if alg is CoseAlgorithm.HSS_LMS:
        return CoseKey.generate(alg, hss=SMALL_HSS, state_file=tmp_path / "hss.cose_key")
    return CoseKey.generate(alg)


def auth_blocks(envelope: bytes, name: str) -> Iterator[tuple[str, bytes, bytes]]:
    """Every (where, detached payload, COSE block) of a SUIT envelope and of the dependency
    envelopes integrated in it (text keys such as ``"#dependent.suit"``).

    SUIT_Authentication = [bstr .cbor SUIT_Digest, * bstr .cbor SUIT_Authentication_Block]
    (manifest §8.3). The detached payload is the *content* of the first bstr, i.e. the encoded
    SUIT_Digest; COSE puts it into Sig_structure / MAC_structure as a bstr, which re-creates the
    "bstr-wrapped SUIT_Digest" exactly as it appears in the envelope.
    """
    env = cbor.loads(envelope)
    assert isinstance(env, cbor.CBORTag) and env.tag == Tag.SUIT_ENVELOPE
    members: dict[Any, Any] = env.value
    auth = cbor.loads(members[EnvelopeKey.AUTHENTICATION_WRAPPER])
    digest = auth[0]
    for i, block in enumerate(auth[1:], start=1):
        yield f"{name}/authentication[{i}]", digest, block
    for key, value in members.items():
        if isinstance(key, str):
            yield from auth_blocks(value, f"{name}/{key}")
