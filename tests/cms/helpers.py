"""Test helpers: a small PKI, default package specs and devices, and a SignedData composer that
can produce every malformed variant the negative tests need (with valid signatures)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from suitkit.cms import attributes as attrs
from suitkit.cms import crypto, der
from suitkit.cms.crypto import AlgorithmId, PrivateKey
from suitkit.cms.device import InMemoryDevice
from suitkit.cms.model import FirmwarePackageId, PreferredName, TrustAnchor
from suitkit.cms.oids import (
    AttributeType,
    CompressionAlgorithm,
    ContentEncryptionAlgorithm,
    ContentType,
    DigestAlgorithm,
)
from suitkit.cms.package import PackageSpec
from suitkit.cms.signeddata import Signer

HW = "1.3.6.1.4.1.99999.2.1"
OTHER_HW = "1.3.6.1.4.1.99999.2.2"
PKG = "1.3.6.1.4.1.99999.1"
PKG_B = "1.3.6.1.4.1.99999.3"
COMMUNITY = "1.3.6.1.4.1.99999.5.1"
SERIAL = bytes.fromhex("00a1b2c3")
NOW = dt.datetime.now(dt.UTC)


def new_key(kind: str) -> Any:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    raise ValueError(kind)


def make_cert(
    subject: str,
    key: Any,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: Any = None,
    *,
    ca: bool = False,
    ski: bool = True,
    key_usage: x509.KeyUsage | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = issuer_cert.subject if issuer_cert is not None else name
    signing_key = issuer_key if issuer_key is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    elif ca:
        builder = builder.add_extension(_ku(cert_sign=True), critical=True)
    else:
        builder = builder.add_extension(_ku(digital_signature=True), critical=True)
    algo = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing_key, algo)


def _ku(digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Pki:
    ca_key: Any
    ca_cert: x509.Certificate
    leaf_key: Any
    leaf_cert: x509.Certificate

    @property
    def anchor(self) -> TrustAnchor:
        return TrustAnchor.from_certificate(self.ca_cert)

    @property
    def signer(self) -> Signer:
        return Signer(self.leaf_key, certificate=self.leaf_cert)

    def pem(self, which: str) -> bytes:
        if which in ("ca_cert", "leaf_cert"):
            return getattr(self, which).public_bytes(serialization.Encoding.PEM)
        return getattr(self, which).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def make_pki(kind: str = "p256", ca_kind: str = "p256") -> Pki:
    ca_key = new_key(ca_kind)
    ca = make_cert("suitkit test CA", ca_key, ca=True)
    leaf_key = new_key(kind)
    leaf = make_cert("suitkit firmware signer", leaf_key, ca, ca_key)
    return Pki(ca_key, ca, leaf_key, leaf)


def spec(version: int = 7, stale: int | bytes | None = None, **kw: Any) -> PackageSpec:
    kw.setdefault("target_hardware", [HW])
    return PackageSpec(FirmwarePackageId(PreferredName(PKG, version), stale), **kw)


def device(pki: Pki | None = None, **kw: Any) -> InMemoryDevice:
    anchors = kw.pop("anchors", [pki.anchor] if pki is not None else [])
    kw.setdefault("hw_serial", SERIAL)
    return InMemoryDevice(HW, anchors=anchors, **kw)


def firmware(size: int = 4096) -> bytes:
    return os.urandom(size)


# --- Composer ----------------------------------------------------------------------------------


def attr(oid: str, value: bytes, *more: bytes) -> bytes:
    return der.sequence(der.encode_oid(oid), der.set_of([value, *more]))


def package_attrs(
    name: Any = None,
    targets: Sequence[str] = (HW,),
    decrypt_key_id: bytes | None = None,
    stale: int | bytes | None = None,
) -> list[bytes]:
    """The RFC 4108 attributes besides content-type and message-digest."""
    out = [
        attr(
            AttributeType.FIRMWARE_PACKAGE_ID,
            attrs.encode_package_id(FirmwarePackageId(name or PreferredName(PKG, 7), stale)),
        ),
        attr(AttributeType.TARGET_HARDWARE_IDS, attrs.encode_oid_list(targets)),
    ]
    if decrypt_key_id is not None:
        out.append(attr(AttributeType.DECRYPT_KEY_ID, attrs.encode_decrypt_key_id(decrypt_key_id)))
    return out


def compose(
    econtent: bytes | None,
    econtent_type: str,
    key: PrivateKey,
    extra_attrs: Sequence[bytes] | None = None,
    *,
    content_type_attr: str | None = None,
    message_digest: bytes | None = None,
    omit_content_type: bool = False,
    sid_key_id: bytes | None = None,
    issuer_serial: bytes | None = None,
    si_version: int = 3,
    sd_version: int = 3,
    digest_alg: DigestAlgorithm | None = None,
    digest_algs: Sequence[bytes] | None = None,
    si_digest: bytes | None = None,
    certs: Sequence[bytes] = (),
    unsigned: Sequence[bytes] = (),
    sort: bool = True,
    sig_alg: AlgorithmId | None = None,
    signature: bytes | None = None,
    signer_infos: int = 1,
    ci_type: str = ContentType.SIGNED_DATA,
    no_signed_attrs: bool = False,
) -> bytes:
    """ContentInfo(SignedData) with every field under control."""
    digest_alg = digest_alg or crypto.default_digest(key)
    if extra_attrs is None:
        extra_attrs = package_attrs()
    md = message_digest
    if md is None:
        md = crypto.digest_of(digest_alg, econtent or b"")
    signed = list(extra_attrs)
    if not omit_content_type:
        signed.insert(
            0, attr(AttributeType.CONTENT_TYPE, der.encode_oid(content_type_attr or econtent_type))
        )
    signed.insert(1, attr(AttributeType.MESSAGE_DIGEST, der.encode_octet_string(md)))
    signed_set = der.set_of(signed) if sort else der.tlv(0x31, b"".join(signed))
    alg, sig = crypto.sign(key, digest_alg, signed_set)
    sid = (
        issuer_serial
        if issuer_serial is not None
        else der.tlv(
            0x80, sid_key_id if sid_key_id is not None else crypto.public_key_id(key.public_key())
        )
    )
    si = der.sequence(
        der.encode_integer(si_version),
        sid,
        si_digest if si_digest is not None else AlgorithmId(digest_alg).encode(),
        b"" if no_signed_attrs else b"\xa0" + signed_set[1:],
        (sig_alg or alg).encode(),
        der.encode_octet_string(signature if signature is not None else sig),
        der.set_of(list(unsigned), tag=0xA1) if unsigned else b"",
    )
    encap = der.sequence(
        der.encode_oid(econtent_type),
        der.tlv(0xA0, der.encode_octet_string(econtent)) if econtent is not None else b"",
    )
    sd = der.sequence(
        der.encode_integer(sd_version),
        der.set_of(
            list(digest_algs) if digest_algs is not None else [AlgorithmId(digest_alg).encode()]
        ),
        encap,
        der.tlv(0xA0, b"".join(certs)) if certs else b"",
        der.tlv(0x31, si * signer_infos),
    )
    return der.sequence(der.encode_oid(ci_type), der.tlv(0xA0, sd))


def compressed_der(
    payload: bytes,
    *,
    version: int = 0,
    alg_oid: str = CompressionAlgorithm.ZLIB,
    etype: str = ContentType.FIRMWARE_PACKAGE,
    omit_content: bool = False,
    raw: bytes | None = None,
) -> bytes:
    import zlib

    body = raw if raw is not None else zlib.compress(payload)
    encap = der.sequence(
        der.encode_oid(etype),
        b"" if omit_content else der.tlv(0xA0, der.encode_octet_string(body)),
    )
    return der.sequence(der.encode_integer(version), AlgorithmId(alg_oid).encode(), encap)


def encrypted_der(
    plaintext: bytes,
    inner_type: str,
    key: bytes,
    *,
    algorithm: ContentEncryptionAlgorithm = ContentEncryptionAlgorithm.AES128_GCM,
    version: int = 0,
    unprotected: bool = False,
    omit_ciphertext: bool = False,
    alg_override: bytes | None = None,
) -> bytes:
    alg, ct = crypto.encrypt_content(algorithm, key, plaintext)
    eci = der.sequence(
        der.encode_oid(inner_type),
        alg_override if alg_override is not None else alg.encode(),
        b"" if omit_ciphertext else der.tlv(0x80, ct),
    )
    extra = der.tlv(0xA1, attr("1.2.3.4", der.encode_octet_string(b"x"))) if unprotected else b""
    return der.sequence(der.encode_integer(version), eci, extra)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
