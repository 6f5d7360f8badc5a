"""CoseKey: loading, saving, generation, COSE_Key encoding, repr hygiene."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from suitkit.cose import CoseKey, key_id_of
from suitkit.cose.keys import HSS_LMS_PRIV, HSS_LMS_PUB, KeyStateError
from suitkit.errors import AlgorithmUnsupportedError, KeyFormatError, SuitError
from suitkit.format import cbor
from suitkit.format.codepoints import (
    CoseAlgorithm,
    CoseCurve,
    CoseKeyParam,
    CoseKeyType,
    CoseKeyTypeParam,
)

from ._util import KEYS, SIGNATURE_ALGS, SMALL_HSS, make_key

A = CoseAlgorithm
KEY_FILES = sorted([*KEYS.glob("*.cose_key"), *KEYS.glob("*.pem")])


# --- the vector keys -------------------------------------------------------------------------


@pytest.mark.parametrize("path", KEY_FILES, ids=[p.name for p in KEY_FILES])
def test_every_vector_key_file_loads(path: Path) -> None:
    key = CoseKey.load(path)
    assert key.is_private == ("private" in path.name or key.is_symmetric)


def test_vector_pem_and_cose_key_forms_are_the_same_keys() -> None:
    for stem in ("suit-example-es256", "fw-enc-dependent-es256"):
        for half in ("private", "public"):
            pem = CoseKey.load(KEYS / f"{stem}-{half}.pem")
            ck = CoseKey.load(KEYS / f"{stem}-{half}.cose_key")
            private = half == "private"
            assert pem.to_cose_key(private) == ck.to_cose_key(private)
            # the generated vector files are already deterministic CBOR
            assert ck.to_cose_key(private) == (KEYS / f"{stem}-{half}.cose_key").read_bytes()


def test_sec1_ec_private_key_pem_loads() -> None:
    data = (KEYS / "fw-enc-dependent-es256-private.pem").read_bytes()
    assert b"BEGIN EC PRIVATE KEY" in data
    key = CoseKey.from_pem(data)
    assert key.kty is CoseKeyType.EC2 and key.curve is CoseCurve.P_256 and key.is_private


def test_cose_key_kid_is_kept_and_symmetric_keys_load() -> None:
    kek = CoseKey.load(KEYS / "fw-enc-kek-a128kw-kid-1.cose_key")
    assert kek.kid == b"kid-1" and kek.is_symmetric and kek.secret() == b"a" * 16
    assert kek.supports(A.A128KW) and not kek.supports(A.HMAC_256_256)
    mac_key = CoseKey.load(KEYS / "fw-enc-hmac256-mac-key.cose_key")
    assert mac_key.kid is None and mac_key.supports(A.HMAC_256_256)
    recipient = CoseKey.load(KEYS / "fw-enc-recipient-p256-kid-2-private.cose_key")
    assert recipient.kid == b"kid-2" and recipient.supports(A.ECDH_ES_A128KW)


# --- repr hygiene ----------------------------------------------------------------------------


def test_repr_shows_type_alg_and_kid_but_never_key_material() -> None:
    key = CoseKey.load(KEYS / "suit-example-es256-private.cose_key").with_kid(b"k1")
    m = key.to_cose_key_map(private=True)
    text = repr(key) + str(key) + f"{key}"
    for label in (CoseKeyTypeParam.X, CoseKeyTypeParam.Y, CoseKeyTypeParam.D):
        assert m[label].hex() not in text
    assert "EC2" in text and "P-256" in text and "6b31" in text
    sym = CoseKey.load(KEYS / "fw-enc-hmac256-mac-key.cose_key")
    assert "6161" not in repr(sym) and "aaaa" not in repr(sym)


def test_keys_refuse_to_be_pickled() -> None:
    key = CoseKey.load(KEYS / "fw-enc-hmac256-mac-key.cose_key")
    with pytest.raises(TypeError):
        pickle.dumps(key)


# --- generation and round trips --------------------------------------------------------------


@pytest.mark.parametrize("alg", SIGNATURE_ALGS, ids=lambda a: a.spec_name)
def test_generated_signature_key_round_trips_through_cose_key(
    alg: CoseAlgorithm, tmp_path: Path
) -> None:
    key = make_key(alg, tmp_path)
    assert key.alg is alg and key.is_private
    public = CoseKey.from_cose_key(key.to_cose_key(private=False))
    assert not public.is_private
    assert public.to_cose_key() == key.public_key().to_cose_key()
    assert key_id_of(public) == key_id_of(key)
    if alg is not A.HSS_LMS:
        again = CoseKey.from_cose_key(key.to_cose_key(private=True))
        assert again.to_cose_key(private=True) == key.to_cose_key(private=True)


@pytest.mark.parametrize(
    "alg",
    [a for a in SIGNATURE_ALGS if a is not A.HSS_LMS],
    ids=lambda a: a.spec_name,
)
def test_generated_asymmetric_key_round_trips_through_pem(alg: CoseAlgorithm) -> None:
    key = CoseKey.generate(alg)
    private = CoseKey.from_pem(key.to_pem(private=True))
    assert private.to_cose_key(True) == key.with_alg(
        key.alg if key.kty is CoseKeyType.AKP else None
    ).to_cose_key(True)
    public = CoseKey.load(key.to_pem())
    assert not public.is_private and public.thumbprint() == key.thumbprint()


@pytest.mark.parametrize(
    ("alg", "size"),
    [(A.HMAC_256_256, 32), (A.A128KW, 16), (A.A192KW, 24), (A.A256KW, 32)],
    ids=lambda v: getattr(v, "spec_name", str(v)),
)
def test_generated_symmetric_keys_have_the_algorithm_key_size(
    alg: CoseAlgorithm, size: int
) -> None:
    key = CoseKey.generate(alg, kid=b"s")
    assert len(key.secret()) == size and key.alg is alg and key.kid == b"s"
    again = CoseKey.from_cose_key(key.to_cose_key(private=True))
    assert again.secret() == key.secret() and again.alg is alg


@pytest.mark.parametrize(
    "curve", [CoseCurve.P_256, CoseCurve.P_384, CoseCurve.P_521, CoseCurve.X25519]
)
def test_ecdh_keys_are_generated_on_each_curve(curve: CoseCurve) -> None:
    key = CoseKey.generate(A.ECDH_ES_A128KW, curve=curve)
    assert key.curve is curve and key.supports(A.ECDH_ES_A128KW)
    assert not key.supports(A.ESP256)
    again = CoseKey.from_pem(key.to_pem(private=True))
    assert again.to_cose_key(True) == key.with_alg(None).to_cose_key(True)


def test_generate_refuses_non_key_algorithms() -> None:
    with pytest.raises(AlgorithmUnsupportedError):
        CoseKey.generate(A.SHA_256)
    with pytest.raises(ValueError):
        CoseKey.generate(A.ESP256, curve=CoseCurve.P_384)


def test_encrypted_pkcs8_needs_the_right_password() -> None:
    key = CoseKey.generate(A.ESP256)
    pem = key.to_pem(private=True, password=b"secret")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert CoseKey.load(pem, password=b"secret").thumbprint() == key.thumbprint()
    with pytest.raises(KeyFormatError):
        CoseKey.load(pem, password=b"wrong")
    with pytest.raises(KeyFormatError):
        CoseKey.load(pem)


def test_der_keys_are_detected(example_private: CoseKey) -> None:
    der = example_private.crypto_private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert CoseKey.load(der).thumbprint() == example_private.thumbprint()


def test_save_writes_private_files_0600_and_load_detects_the_format(tmp_path: Path) -> None:
    key = CoseKey.generate(A.ED25519, kid=b"ed")
    key.save(tmp_path / "k.pem", private=True)
    key.save(tmp_path / "k.cose_key", private=True)
    key.save(tmp_path / "pub.cose_key")
    for name in ("k.pem", "k.cose_key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
        assert CoseKey.load(tmp_path / name).thumbprint() == key.thumbprint()
    assert CoseKey.load(tmp_path / "pub.cose_key").kid == b"ed"
    assert not CoseKey.load(tmp_path / "pub.cose_key").is_private


def test_symmetric_and_hss_keys_have_no_pem_form(hss_key: CoseKey) -> None:
    with pytest.raises(KeyFormatError):
        CoseKey.generate(A.A128KW).to_pem(private=True)
    with pytest.raises(KeyFormatError):
        hss_key.to_pem()


def test_symmetric_key_is_only_written_with_private_true() -> None:
    with pytest.raises(ValueError):
        CoseKey.generate(A.A256KW).to_cose_key(private=False)


def test_public_key_drops_the_private_part(example_private: CoseKey) -> None:
    pub = example_private.public_key()
    assert not pub.is_private and pub.crypto_private_key is None
    with pytest.raises(ValueError):
        pub.to_cose_key(private=True)


def test_hss_cose_key_layout(hss_key: CoseKey) -> None:
    m = cbor.loads(hss_key.to_cose_key(private=True))
    assert m[CoseKeyParam.KTY] == CoseKeyType.HSS_LMS
    assert m[CoseKeyParam.ALG] == A.HSS_LMS
    assert isinstance(m[HSS_LMS_PUB], bytes) and isinstance(m[HSS_LMS_PRIV], bytes)
    assert HSS_LMS_PRIV not in cbor.loads(hss_key.to_cose_key())


# --- kid -------------------------------------------------------------------------------------


def test_key_id_of_is_a_truncated_rfc9679_thumbprint(example_private: CoseKey) -> None:
    import hashlib

    m = example_private.to_cose_key_map(private=False)
    required = {k: m[k] for k in (1, -1, -2, -3)}
    assert example_private.thumbprint() == hashlib.sha256(cbor.dumps(required)).digest()
    assert key_id_of(example_private) == example_private.thumbprint()[:8]
    assert example_private.with_derived_kid().kid == key_id_of(example_private.public_key())
    assert example_private.with_kid(b"x").with_kid(None).kid is None


# --- bad input -------------------------------------------------------------------------------


def _ec2(**changes: object) -> dict[int, object]:
    m: dict[int, object] = dict(
        CoseKey.load(KEYS / "suit-example-es256-private.cose_key").to_cose_key_map(True)
    )
    for name, value in changes.items():
        label = {"kty": 1, "alg": 3, "kid": 2, "crv": -1, "x": -2, "y": -3, "d": -4}[name]
        if value is None:
            m.pop(label, None)
        else:
            m[label] = value
    return m


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"garbage",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"\x30\x03\x02\x01\x00",
        b"\xa1\x01",  # truncated CBOR map
        cbor.dumps({1: 99}),  # unknown kty
        cbor.dumps({2: b"x"}),  # no kty
        cbor.dumps(_ec2(x=b"\x00" * 31)),
        cbor.dumps(_ec2(d=None, x=b"\x01" * 32)),  # not on the curve
        cbor.dumps(_ec2(d=b"\x01" * 32)),  # d does not match x/y
        cbor.dumps(_ec2(crv=5)),  # X448 is not an EC2 curve suitkit supports
        cbor.dumps(_ec2(kid="text")),
        cbor.dumps(_ec2(alg=A.ES384)),  # ES384 does not fit a P-256 key
        cbor.dumps(_ec2(alg=-999)),
        cbor.dumps({1: 4, -1: b""}),
        cbor.dumps({1: 1, -1: 6, -2: b"\x00" * 31}),
        cbor.dumps({1: 5, -1: b"\x00\x00\x00\x01junk"}),
        cbor.dumps({1: 7, -1: b"\x00" * 10}),
        cbor.dumps({1: 3, -1: b"\x01", -2: b"\x01"}),  # RSA
        cbor.dumps([1, 2]),
    ],
)
def test_bad_key_input_raises_a_suit_error(bad: bytes) -> None:
    with pytest.raises(SuitError):
        CoseKey.load(bad)


def test_unsupported_pem_key_types_are_key_format_errors() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyFormatError, match="unsupported key type"):
        CoseKey.load(pem)
    k1 = ec.generate_private_key(ec.SECP256K1())
    pem = k1.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyFormatError, match="curve"):
        CoseKey.load(pem)


def test_missing_key_file_is_a_key_format_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFormatError, match="cannot read"):
        CoseKey.load(tmp_path / "nope.pem")


def test_compressed_ec2_point_is_accepted(example_public: CoseKey) -> None:
    m = dict(example_public.to_cose_key_map())
    y = m[CoseKeyTypeParam.Y]
    assert isinstance(y, bytes)
    m[CoseKeyTypeParam.Y] = bool(y[-1] & 1)
    assert CoseKey.from_cose_key(m).thumbprint() == example_public.thumbprint()


@pytest.mark.parametrize("curve", [CoseCurve.P_256, CoseCurve.P_384, CoseCurve.X25519])
def test_ecdh_exchange_agrees_on_both_sides(curve: CoseCurve) -> None:
    a = CoseKey.generate(A.ECDH_ES_HKDF_256, curve=curve)
    b = CoseKey.generate(A.ECDH_ES_HKDF_256, curve=curve)
    assert a.exchange(b.public_key()) == b.exchange(a.public_key())
    with pytest.raises(KeyFormatError):
        a.public_key().exchange(b)
    other = CoseCurve.P_521 if curve is not CoseCurve.P_521 else CoseCurve.P_256
    with pytest.raises(KeyFormatError):
        a.exchange(CoseKey.generate(A.ECDH_ES_HKDF_256, curve=other))


def test_hss_key_generation_does_not_overwrite_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "k.cose_key"
    path.write_bytes(b"precious")
    with pytest.raises(KeyStateError, match="overwrite"):
        CoseKey.generate(A.HSS_LMS, hss=SMALL_HSS, state_file=path)
    assert path.read_bytes() == b"precious"
