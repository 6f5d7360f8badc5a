"""Loading certificates, keys and trust anchors from files (PEM or DER) for the CLI and stores.

Malformed files raise :class:`suitkit.errors.KeyFormatError`.
"""

from __future__ import annotations

from cryptography import x509

from suitkit.cms import crypto
from suitkit.cms.crypto import PrivateKey
from suitkit.cms.model import TrustAnchor
from suitkit.errors import KeyFormatError


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate in PEM or DER."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise KeyFormatError(f"not a certificate: {exc}") from None


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """One or more certificates (a PEM bundle, or one DER certificate)."""
    if b"-----BEGIN" in data:
        try:
            return list(x509.load_pem_x509_certificates(data))
        except ValueError as exc:
            raise KeyFormatError(f"not a certificate bundle: {exc}") from None
    return [load_certificate(data)]


def load_trust_anchor(data: bytes, *, authorized: bool = True, label: str = "") -> TrustAnchor:
    """A trust anchor from a certificate (key, key identifier and name, RFC 4108 §1.2.4) or from
    a bare public key (PEM/DER SubjectPublicKeyInfo, or a raw HSS/LMS public key)."""
    if b"CERTIFICATE" in data or data[:1] == b"\x30":
        try:
            return TrustAnchor.from_certificate(
                load_certificate(data), authorized=authorized, label=label
            )
        except (KeyFormatError, ValueError):
            pass
    try:
        key = crypto.load_public_key(data)
    except ValueError as exc:
        raise KeyFormatError(f"not a certificate or public key: {exc}") from None
    return TrustAnchor.from_public_key(key, authorized=authorized, label=label)


def load_private_key(data: bytes) -> PrivateKey:
    try:
        return crypto.load_private_key(data)
    except ValueError as exc:
        raise KeyFormatError(str(exc)) from None


def load_symmetric_key(data: bytes) -> bytes:
    """A 16- or 32-octet key: its hex text (preferred when the file is hex), or the raw octets."""
    text = data.strip()
    if len(text) in (32, 64) and all(c in b"0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text.decode("ascii"))
    if len(data) not in (16, 32):
        raise KeyFormatError(
            f"symmetric key file of {len(data)} octets: 16 or 32 raw octets, or their hex, expected"
        )
    return data
