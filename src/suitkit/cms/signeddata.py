"""CMS ``ContentInfo`` / ``SignedData`` (RFC 5652 §3, §5) as RFC 4108 profiles them.

* :func:`build_signed_data` assembles a SignedData around content that is never copied: it
  returns the encoding as ``[prefix, content, suffix]`` chunks.
* :func:`parse_signed_data` locates every field by walking the BER headers (the eContent stays a
  list of slices of the input) and decodes the SignerInfo, mapping every defect to its RFC 4108
  §4.1.3 error code.
* :func:`resolve_signer` finds the trust anchor for the signer (directly by key identifier, or
  through a certification path from the certificates in the SignedData), and
  :func:`verify_signer_info` checks the message-digest attribute and the signature.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.utils import CryptographyDeprecationWarning

from suitkit.cms import attributes as attrs
from suitkit.cms import crypto, der
from suitkit.cms.crypto import AlgorithmId, HssLmsPublicKey, PrivateKey, PublicKey
from suitkit.cms.errors import CmsError
from suitkit.cms.model import TrustAnchor
from suitkit.cms.oids import (
    SIGNED_DATA_VERSION,
    SIGNER_INFO_VERSION_ISSUER_SERIAL,
    SIGNER_INFO_VERSION_SKI,
    AttributeType,
    ContentType,
    DigestAlgorithm,
    LoadErrorCode,
    SignatureAlgorithm,
    oid_name,
)

E = LoadErrorCode
#: Longest certification path followed from the signer to a trust anchor.
MAX_PATH_LENGTH = 8


# --- Building ----------------------------------------------------------------------------------


@dataclass
class Signer:
    """Who signs: a private key and either a certificate or just a subject key identifier.

    With a certificate, the SignerInfo ``sid`` is the certificate's subjectKeyIdentifier and the
    certificate is included in ``SignedData.certificates`` (RFC 4108 §2.1.2: SHOULD, so that a
    module can build the path to its trust anchor) unless ``include_certificate`` is False.
    Without one, ``sid`` is ``key_id`` or the RFC 5280 method-(1) identifier of the public key
    (a trust anchor signing directly, RFC 4108 §1.2.4).
    """

    private_key: PrivateKey
    certificate: x509.Certificate | None = None
    key_id: bytes | None = None
    digest: DigestAlgorithm | None = None
    include_certificate: bool = True
    extra_certificates: Sequence[x509.Certificate] = ()

    @property
    def subject_key_id(self) -> bytes:
        if self.key_id is not None:
            return self.key_id
        if self.certificate is not None:
            return crypto.certificate_key_id(self.certificate)
        return crypto.public_key_id(self.private_key.public_key())

    @property
    def digest_algorithm(self) -> DigestAlgorithm:
        return self.digest or crypto.default_digest(self.private_key)

    def certificates(self) -> list[x509.Certificate]:
        out = (
            [self.certificate] if self.certificate is not None and self.include_certificate else []
        )
        return out + list(self.extra_certificates)


def build_signed_data(
    content: bytes | memoryview,
    econtent_type: str,
    signer: Signer,
    signed_attributes: Iterable[bytes] = (),
    unsigned_attributes: Iterable[bytes] = (),
) -> list[bytes | memoryview]:
    """``ContentInfo(SignedData)`` over ``content`` as three chunks: prefix, content, suffix.

    The signed attributes always start with content-type and message-digest (RFC 5652 §5.3,
    RFC 4108 §2.2.1-§2.2.2); ``signed_attributes`` are further encoded Attributes. The set is
    DER-sorted and signed as a ``SET OF`` (RFC 5652 §5.4).
    """
    digest_alg = signer.digest_algorithm
    h = crypto.new_hash(digest_alg)
    for piece in crypto.rechunk([content]):
        h.update(piece)
    all_signed = [
        attrs.encode_attribute(
            AttributeType.CONTENT_TYPE, attrs.encode_content_type(econtent_type)
        ),
        attrs.encode_attribute(
            AttributeType.MESSAGE_DIGEST, attrs.encode_message_digest(h.digest())
        ),
        *signed_attributes,
    ]
    signed_set = der.set_of(all_signed)  # tag 0x31: what is signed (RFC 5652 §5.4)
    sig_alg, signature = crypto.sign(signer.private_key, digest_alg, signed_set)
    unsigned = list(unsigned_attributes)
    signer_info = der.sequence(
        der.encode_integer(SIGNER_INFO_VERSION_SKI),
        der.tlv(0x80, signer.subject_key_id),  # sid [0] IMPLICIT SubjectKeyIdentifier
        AlgorithmId(digest_alg).encode(),
        b"\xa0" + signed_set[1:],  # signedAttrs [0] IMPLICIT
        sig_alg.encode(),
        der.encode_octet_string(signature),
        der.set_of(unsigned, tag=0xA1) if unsigned else b"",
    )
    certs = signer.certificates()
    cert_set = (
        der.tlv(0xA0, b"".join(c.public_bytes(serialization.Encoding.DER) for c in certs))
        if certs
        else b""
    )
    econtent_hdr = der.header(0x04, len(content))
    econtent_wrap = der.header(0xA0, len(econtent_hdr) + len(content))
    oid = der.encode_oid(econtent_type)
    encap_len = len(oid) + len(econtent_wrap) + len(econtent_hdr) + len(content)
    encap_hdr = der.header(0x30, encap_len)
    version = der.encode_integer(SIGNED_DATA_VERSION)
    digest_algs = der.set_of([AlgorithmId(digest_alg).encode()])
    tail = cert_set + der.set_of([signer_info])
    sd_len = len(version) + len(digest_algs) + len(encap_hdr) + encap_len + len(tail)
    sd_hdr = der.header(0x30, sd_len)
    ci_oid = der.encode_oid(ContentType.SIGNED_DATA)
    explicit = der.header(0xA0, len(sd_hdr) + sd_len)
    ci_hdr = der.header(0x30, len(ci_oid) + len(explicit) + len(sd_hdr) + sd_len)
    prefix = b"".join(
        [
            ci_hdr,
            ci_oid,
            explicit,
            sd_hdr,
            version,
            digest_algs,
            encap_hdr,
            oid,
            econtent_wrap,
            econtent_hdr,
        ]
    )
    return [prefix, content, tail]


# --- Parsing -----------------------------------------------------------------------------------


@dataclass
class SignerInfo:
    """A decoded SignerInfo (RFC 5652 §5.3)."""

    version: int
    key_id: bytes | None
    issuer: bytes | None
    serial: int | None
    digest_algorithm: DigestAlgorithm
    signed_attrs_der: bytes
    signed_attrs: dict[str, attrs.RawAttribute]
    signature_algorithm: AlgorithmId
    signature: bytes
    unsigned_attrs: dict[str, attrs.RawAttribute] | None

    def sid_description(self) -> str:
        if self.key_id is not None:
            return f"subjectKeyIdentifier {self.key_id.hex()}"
        return f"issuerAndSerialNumber serial {self.serial}"


@dataclass
class ParsedSignedData:
    """The fields of ``ContentInfo(SignedData)``; ``econtent`` slices the input buffer."""

    version: int
    digest_algorithm: DigestAlgorithm
    econtent_type: str
    econtent: list[memoryview]
    certificates: list[x509.Certificate]
    signer: SignerInfo
    crls_present: bool = False
    content_type: str = field(default="")
    message_digest: bytes = b""

    @property
    def econtent_length(self) -> int:
        return sum(len(s) for s in self.econtent)

    def econtent_bytes(self) -> bytes:
        return b"".join(self.econtent)


def _fail(code: LoadErrorCode, message: str) -> CmsError:
    return CmsError(code, message)


def parse_content_info(buf: memoryview) -> tuple[str, memoryview, der.Tlv]:
    """``ContentInfo`` (RFC 5652 §3): its contentType and its content element.

    Input that is not a single well-formed BER element is ``decodeFailure``; a well-formed element
    that is not a ContentInfo is ``badContentInfo`` (RFC 4108 §4.1.3).
    """
    try:
        top = der.read_single(buf)
    except der.DerError as exc:
        raise _fail(E.DECODE_FAILURE, f"not BER: {exc}") from None
    try:
        der.expect(top, der.UNIVERSAL, der.SEQUENCE, True, "ContentInfo")
        parts = der.children(buf, top)
        if len(parts) != 2 or not parts[0].is_universal(der.OBJECT_IDENTIFIER):
            raise der.DerError("ContentInfo: expected contentType and content")
        der.expect(parts[1], der.CONTEXT, 0, True, "ContentInfo.content")
        inner = der.children(buf, parts[1])
        if len(inner) != 1:
            raise der.DerError("ContentInfo.content must hold one element")
        ctype = der.decode_oid(buf[parts[0].content_start : parts[0].content_end])
    except der.DerError as exc:
        raise _fail(E.BAD_CONTENT_INFO, str(exc)) from None
    return ctype, buf, inner[0]


def parse_signed_data(
    data: bytes | bytearray | memoryview,
    *,
    econtent_types: Iterable[str] | None = None,
    allow_issuer_serial: bool = True,
) -> ParsedSignedData:
    """Parse ``ContentInfo(SignedData)`` with the RFC 4108 §2.1.1-§2.1.2 profile.

    ``econtent_types`` restricts eContentType (RFC 4108 §2.1.2.2; anything else is
    ``badEncapContent``). The signed attributes must be present and DER (§2.1.2.1) and include
    content-type and message-digest (RFC 5652 §5.3).
    """
    buf = memoryview(data)
    if buf.format != "B" or buf.ndim != 1:
        buf = buf.cast("B")
    ctype, buf, sd_tlv = parse_content_info(buf)
    if ctype != ContentType.SIGNED_DATA:  # RFC 4108 §2.1.1, §3.1.1, §4.1.1
        raise _fail(E.BAD_CONTENT_INFO, f"ContentInfo holds {oid_name(ctype)}, not SignedData")
    # SignedData (RFC 5652 §5.1)
    try:
        der.expect(sd_tlv, der.UNIVERSAL, der.SEQUENCE, True, "SignedData")
        fields = der.children(buf, sd_tlv)
        if len(fields) < 4:
            raise der.DerError("SignedData: missing fields")
        ver_tlv, algs_tlv, encap_tlv = fields[0], fields[1], fields[2]
        der.expect(ver_tlv, der.UNIVERSAL, der.INTEGER, False, "SignedData.version")
        der.expect(algs_tlv, der.UNIVERSAL, der.SET, True, "digestAlgorithms")
        der.expect(encap_tlv, der.UNIVERSAL, der.SEQUENCE, True, "encapContentInfo")
        version = der.decode_integer(buf[ver_tlv.content_start : ver_tlv.content_end])
        rest = fields[3:]
        cert_tlv = crl_tlv = None
        if rest and rest[0].is_context(0):
            cert_tlv, rest = rest[0], rest[1:]
        if rest and rest[0].is_context(1):
            crl_tlv, rest = rest[0], rest[1:]
        if len(rest) != 1:
            raise der.DerError("SignedData: unexpected fields")
        der.expect(rest[0], der.UNIVERSAL, der.SET, True, "signerInfos")
        signer_tlvs = der.children(buf, rest[0])
        digest_algs = der.children(buf, algs_tlv)
    except der.DerError as exc:
        raise _fail(E.BAD_SIGNED_DATA, str(exc)) from None
    if version != SIGNED_DATA_VERSION:  # RFC 4108 §2.1.2, §3.1.2: MUST be 3
        raise _fail(
            E.BAD_SIGNED_DATA, f"SignedData version {version}, expected {SIGNED_DATA_VERSION}"
        )
    if len(digest_algs) != 1:  # RFC 4108 §2.1.2: a single digest algorithm
        raise _fail(E.BAD_SIGNED_DATA, f"{len(digest_algs)} digestAlgorithms, expected exactly one")
    if len(signer_tlvs) != 1:  # RFC 4108 §2.1.2: exactly one SignerInfo
        raise _fail(E.BAD_SIGNED_DATA, f"{len(signer_tlvs)} SignerInfos, expected exactly one")
    try:
        digest_alg = crypto.digest_algorithm_from_id(
            AlgorithmId.decode(der.element_bytes(buf, digest_algs[0]))
        )
    except der.DerError as exc:
        raise _fail(E.BAD_SIGNED_DATA, f"digestAlgorithms: {exc}") from None
    econtent_type, econtent = _parse_encap(buf, encap_tlv, econtent_types)
    certificates = _parse_certificates(buf, cert_tlv) if cert_tlv is not None else []
    signer = _parse_signer_info(buf, signer_tlvs[0], allow_issuer_serial)
    if signer.digest_algorithm is not digest_alg:  # RFC 4108 §2.1.2.1
        raise _fail(
            E.BAD_SIGNER_INFO, "SignerInfo digestAlgorithm differs from SignedData.digestAlgorithms"
        )
    parsed = ParsedSignedData(
        version=version,
        digest_algorithm=digest_alg,
        econtent_type=econtent_type,
        econtent=econtent,
        certificates=certificates,
        signer=signer,
        crls_present=crl_tlv is not None,
    )
    ct = signer.signed_attrs.get(AttributeType.CONTENT_TYPE)
    md = signer.signed_attrs.get(AttributeType.MESSAGE_DIGEST)
    if ct is None or md is None:  # RFC 5652 §5.3, RFC 4108 §2.2
        missing = "content-type" if ct is None else "message-digest"
        raise _fail(E.BAD_SIGNED_ATTRS, f"signed attribute {missing} is missing")
    try:
        if len(ct.values) != 1 or len(md.values) != 1:
            raise attrs.AttributeError_("content-type and message-digest must have one value")
        parsed.content_type = attrs.decode_content_type(ct.value)
        parsed.message_digest = attrs.decode_message_digest(md.value)
    except attrs.AttributeError_ as exc:
        raise _fail(E.BAD_SIGNED_ATTRS, str(exc)) from None
    return parsed


def _parse_encap(
    buf: memoryview, encap_tlv: der.Tlv, allowed: Iterable[str] | None
) -> tuple[str, list[memoryview]]:
    """EncapsulatedContentInfo (RFC 5652 §5.2, RFC 4108 §2.1.2.2)."""
    try:
        parts = der.children(buf, encap_tlv)
        if not 1 <= len(parts) <= 2 or not parts[0].is_universal(der.OBJECT_IDENTIFIER):
            raise der.DerError("EncapsulatedContentInfo: malformed")
        etype = der.decode_oid(buf[parts[0].content_start : parts[0].content_end])
        if allowed is not None and etype not in set(allowed):
            raise der.DerError(f"unsupported eContentType {oid_name(etype)}")
        if len(parts) == 1:
            raise _fail(E.MISSING_CONTENT, "eContent is missing (RFC 4108 requires it)")
        der.expect(parts[1], der.CONTEXT, 0, True, "eContent")
        inner = der.children(buf, parts[1])
        if len(inner) != 1 or not inner[0].is_universal(der.OCTET_STRING):
            raise der.DerError("eContent is not an OCTET STRING")
        return etype, der.octet_string_segments(buf, inner[0])
    except der.DerError as exc:
        raise _fail(E.BAD_ENCAP_CONTENT, str(exc)) from None


def _parse_certificates(buf: memoryview, cert_tlv: der.Tlv) -> list[x509.Certificate]:
    """CertificateSet: X.509 certificates only (RFC 4108 §2.1.2: extended and attribute
    certificates MUST NOT be included)."""
    out = []
    try:
        items = der.children(buf, cert_tlv)
    except der.DerError as exc:
        raise _fail(E.BAD_CERTIFICATE, str(exc)) from None
    for item in items:
        if not item.is_universal(der.SEQUENCE):
            raise _fail(E.BAD_CERTIFICATE, f"certificate choice {item.describe()} is not allowed")
        try:
            with warnings.catch_warnings():  # e.g. non-positive serial numbers
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                cert = x509.load_der_x509_certificate(der.element_bytes(buf, item))
                _touch(cert)
        except Exception as exc:  # cryptography raises ValueError, TypeError, InvalidVersion,
            # DuplicateExtension, UnsupportedAlgorithm... for malformed certificates
            raise _fail(E.BAD_CERTIFICATE, f"malformed certificate: {exc}") from None
        out.append(cert)
    return out


def _touch(cert: x509.Certificate) -> None:
    """Parse every part the loader reads (``cryptography`` parses some lazily), so that a
    malformed certificate is ``badCertificate`` here rather than an exception later."""
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    _ = (cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc)
    _ = (cert.signature, cert.tbs_certificate_bytes, cert.signature_algorithm_oid)
    for _ext in cert.extensions:
        pass
    crypto.load_certificate_public_key(cert)


def _parse_signer_info(buf: memoryview, tlv: der.Tlv, allow_issuer_serial: bool) -> SignerInfo:
    """SignerInfo (RFC 5652 §5.3) with the RFC 4108 §2.1.2.1 profile.

    RFC 4108 §2.1.2.1 says version MUST be 3 (subjectKeyIdentifier), yet §4.1.3 (noTrustAnchor)
    also describes issuerAndSerialNumber signers; suitkit accepts version 1 with
    issuerAndSerialNumber too unless ``allow_issuer_serial`` is False, and rejects any mismatch
    between version and sid form (RFC 5652 §5.3).
    """
    try:
        der.expect(tlv, der.UNIVERSAL, der.SEQUENCE, True, "SignerInfo")
        parts = der.children(buf, tlv)
        if len(parts) < 5:
            raise der.DerError("SignerInfo: missing fields")
        der.expect(parts[0], der.UNIVERSAL, der.INTEGER, False, "SignerInfo.version")
        version = der.decode_integer(buf[parts[0].content_start : parts[0].content_end])
        sid = parts[1]
        key_id = issuer = None
        serial = None
        if sid.is_context(0) and not sid.constructed:
            key_id = der.content_bytes(buf, sid)
            expected = SIGNER_INFO_VERSION_SKI
        elif sid.is_universal(der.SEQUENCE):
            ias = der.children(buf, sid)
            if (
                len(ias) != 2
                or not ias[0].is_universal(der.SEQUENCE)
                or not ias[1].is_universal(der.INTEGER)
            ):
                raise der.DerError("issuerAndSerialNumber: malformed")
            issuer = der.element_bytes(buf, ias[0])
            serial = der.decode_integer(buf[ias[1].content_start : ias[1].content_end])
            expected = SIGNER_INFO_VERSION_ISSUER_SERIAL
        else:
            raise der.DerError("SignerInfo.sid: unexpected choice")
        if version != expected or (key_id is None and not allow_issuer_serial):
            raise der.DerError(
                f"SignerInfo version {version} with "
                + ("subjectKeyIdentifier" if key_id is not None else "issuerAndSerialNumber")
            )
        digest_id = AlgorithmId.decode(der.element_bytes(buf, parts[2]))
        rest = parts[3:]
        signed_tlv = unsigned_tlv = None
        if rest and rest[0].is_context(0):
            signed_tlv, rest = rest[0], rest[1:]
        if len(rest) < 2:
            raise der.DerError("SignerInfo: signatureAlgorithm or signature missing")
        sig_alg_tlv, sig_tlv, rest = rest[0], rest[1], rest[2:]
        if rest and rest[0].is_context(1):
            unsigned_tlv, rest = rest[0], rest[1:]
        if rest:
            raise der.DerError("SignerInfo: unexpected trailing fields")
        der.expect(sig_tlv, der.UNIVERSAL, der.OCTET_STRING, False, "signature")
        signature = der.content_bytes(buf, sig_tlv)
        if signed_tlv is not None and not signed_tlv.constructed:
            raise der.DerError("signedAttrs is not constructed")
    except der.DerError as exc:
        raise _fail(E.BAD_SIGNER_INFO, str(exc)) from None
    digest_alg = crypto.digest_algorithm_from_id(digest_id)
    try:
        sig_alg = AlgorithmId.decode(der.element_bytes(buf, sig_alg_tlv))
    except der.DerError as exc:
        raise _fail(E.BAD_SIGNATURE_ALGORITHM, f"signatureAlgorithm: {exc}") from None
    if signed_tlv is None:  # RFC 4108 §2.1.2.1, §3.1.2.1: signedAttrs are REQUIRED
        raise _fail(E.BAD_SIGNED_ATTRS, "signedAttrs are missing")
    try:
        signed_list = attrs.parse_attribute_set(buf, signed_tlv, require_der=True)
    except (attrs.AttributeError_, der.DerError) as exc:
        raise _fail(E.BAD_SIGNED_ATTRS, str(exc)) from None
    signed_der = b"\x31" + bytes(buf[signed_tlv.start + 1 : signed_tlv.end])
    unsigned = None
    if unsigned_tlv is not None:
        try:
            unsigned = {
                a.oid: a for a in attrs.parse_attribute_set(buf, unsigned_tlv, require_der=False)
            }
        except (attrs.AttributeError_, der.DerError) as exc:
            raise _fail(E.BAD_UNSIGNED_ATTRS, str(exc)) from None
    return SignerInfo(
        version=version,
        key_id=key_id,
        issuer=issuer,
        serial=serial,
        digest_algorithm=digest_alg,
        signed_attrs_der=signed_der,
        signed_attrs={a.oid: a for a in signed_list},
        signature_algorithm=sig_alg,
        signature=signature,
        unsigned_attrs=unsigned,
    )


# --- Signer and trust anchor -------------------------------------------------------------------


@dataclass
class SignerPath:
    """How the signer was authenticated: the anchor, and the certificates from signer upwards."""

    trust_anchor: TrustAnchor
    public_key: PublicKey
    certificates: list[x509.Certificate]


def _matches_sid(cert: x509.Certificate, signer: SignerInfo) -> bool:
    if signer.key_id is not None:
        try:
            return crypto.certificate_key_id(cert) == signer.key_id
        except ValueError:
            return False
    return cert.serial_number == signer.serial and cert.issuer.public_bytes() == signer.issuer


def _anchor_for_key(anchors: Sequence[TrustAnchor], key: PublicKey) -> TrustAnchor | None:
    for anchor in anchors:
        if _same_key(anchor.public_key, key):
            return anchor
    return None


def _same_key(a: PublicKey, b: PublicKey) -> bool:
    if isinstance(a, HssLmsPublicKey) or isinstance(b, HssLmsPublicKey):
        return a == b
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(
        a.public_bytes(serialization.Encoding.DER, fmt)
        == b.public_bytes(serialization.Encoding.DER, fmt)
    )


def resolve_signer(
    sd: ParsedSignedData, anchors: Sequence[TrustAnchor], now: _dt.datetime | None = None
) -> SignerPath:
    """Find the trust anchor behind the signer (RFC 4108 §1.2.3, §1.2.4).

    A subjectKeyIdentifier naming an installed anchor verifies directly with it; otherwise the
    signer's certificate must be in the SignedData and chain to an anchor through the included
    certificates. No such path: ``noTrustAnchor``; the anchor is not a firmware signer:
    ``notAuthorized`` (RFC 4108 §4.1.3). ``now`` (when the module has a clock) checks validity
    periods.
    """
    signer = sd.signer
    if signer.key_id is not None:
        for anchor in anchors:
            if anchor.key_id == signer.key_id:
                _check_authorized(anchor)
                return SignerPath(anchor, anchor.public_key, [])
    leaf = next((c for c in sd.certificates if _matches_sid(c, signer)), None)
    if leaf is None:
        raise _fail(
            E.NO_TRUST_ANCHOR,
            f"no trust anchor or certificate matches the signer ({signer.sid_description()})",
        )
    _check_leaf_usage(leaf)
    chain = [leaf]
    current = leaf
    for _ in range(MAX_PATH_LENGTH):
        _check_validity(current, now)
        key = _cert_key(current)
        direct = _anchor_for_key(anchors, key)
        if direct is not None:  # the certificate carries an anchor's own key
            _check_authorized(direct)
            return SignerPath(direct, _cert_key(leaf), chain)
        for anchor in anchors:
            if (
                anchor.name is not None
                and anchor.name == current.issuer
                and _cert_signed_by(current, anchor.public_key)
            ):
                _check_authorized(anchor)
                return SignerPath(anchor, _cert_key(leaf), chain)
        issuer = next(
            (
                c
                for c in sd.certificates
                if c not in chain
                and c.subject == current.issuer
                and _is_ca(c)
                and _cert_signed_by(current, _cert_key(c))
            ),
            None,
        )
        if issuer is None:
            break
        chain.append(issuer)
        current = issuer
    raise _fail(
        E.NO_TRUST_ANCHOR,
        f"the signer's certificate ({leaf.subject.rfc4514_string()}) "
        "does not chain to an installed trust anchor",
    )


def _check_authorized(anchor: TrustAnchor) -> None:
    if not anchor.authorized:
        raise _fail(
            E.NOT_AUTHORIZED,
            f"trust anchor {anchor.label or anchor.key_id.hex()} "
            "is not an authorized firmware package signer",
        )


def _cert_key(cert: x509.Certificate) -> PublicKey:
    try:
        return crypto.load_certificate_public_key(cert)
    except (ValueError, der.DerError, IndexError) as exc:
        raise _fail(E.BAD_CERTIFICATE, f"unsupported certificate key: {exc}") from None


def _check_leaf_usage(cert: x509.Certificate) -> None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    except ValueError as exc:
        raise _fail(E.BAD_CERTIFICATE, f"malformed certificate extension: {exc}") from None
    if not (ku.digital_signature or ku.content_commitment):
        raise _fail(E.NOT_AUTHORIZED, "the signer's certificate does not allow digital signatures")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca:
            return False
    except (x509.ExtensionNotFound, ValueError):
        return False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        return bool(ku.key_cert_sign)
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False


def _check_validity(cert: x509.Certificate, now: _dt.datetime | None) -> None:
    if now is None:
        return
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise _fail(
            E.NO_TRUST_ANCHOR,
            f"certificate {cert.subject.rfc4514_string()} is outside its validity period",
        )


def _cert_signed_by(cert: x509.Certificate, key: PublicKey) -> bool:
    """Whether ``key`` verifies the signature on ``cert``."""
    try:
        sig, tbs = cert.signature, cert.tbs_certificate_bytes
        if isinstance(key, HssLmsPublicKey):
            return (
                cert.signature_algorithm_oid.dotted_string == SignatureAlgorithm.HSS_LMS
                and key.verify(sig, tbs)
            )
        hash_alg = cert.signature_hash_algorithm
        if isinstance(key, ec.EllipticCurvePublicKey):
            if hash_alg is None:
                return False
            key.verify(sig, tbs, ec.ECDSA(hash_alg))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, tbs)
        elif isinstance(key, rsa.RSAPublicKey):
            params = cert.signature_algorithm_parameters
            if hash_alg is None or not isinstance(params, asym_padding.PKCS1v15 | asym_padding.PSS):
                return False
            key.verify(sig, tbs, params, hash_alg)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def digest_econtent(sd: ParsedSignedData) -> bytes:
    h = crypto.new_hash(sd.digest_algorithm)
    for segment in sd.econtent:
        h.update(segment)
    return bytes(h.digest())


def verify_signer_info(sd: ParsedSignedData, path: SignerPath, content_digest: bytes) -> None:
    """Check the message-digest attribute against the eContent digest and the signature over the
    DER signed attributes (RFC 5652 §5.4, §5.6). Mismatch: ``signatureFailure``."""
    signer = sd.signer
    verifier = crypto.prepare_verifier(
        path.public_key, signer.signature_algorithm, signer.digest_algorithm
    )
    if content_digest != sd.message_digest:
        raise _fail(E.SIGNATURE_FAILURE, "message-digest attribute does not match the content")
    if not verifier(signer.signature, signer.signed_attrs_der):
        raise _fail(E.SIGNATURE_FAILURE, "the signature does not verify")
    hashes = signer.signed_attrs.get(AttributeType.SIGNING_CERTIFICATE)
    if hashes is not None and path.certificates:
        try:
            cert_hashes = attrs.decode_signing_certificate(hashes.value)
        except attrs.AttributeError_ as exc:
            raise _fail(E.BAD_SIGNED_ATTRS, str(exc)) from None
        leaf = path.certificates[0].public_bytes(serialization.Encoding.DER)
        if crypto.digest_of(DigestAlgorithm.SHA1, leaf) != cert_hashes[0]:
            raise _fail(
                E.SIGNATURE_FAILURE,
                "signing-certificate attribute names another certificate (RFC 2634 §5.4)",
            )


@dataclass
class VerifiedSignedData:
    """A SignedData whose signature verified (any eContentType; no RFC 4108 attribute checks)."""

    parsed: ParsedSignedData
    path: SignerPath

    @property
    def econtent_type(self) -> str:
        return self.parsed.econtent_type

    def content(self) -> bytes:
        return self.parsed.econtent_bytes()


def verify_signed_data(
    data: bytes | bytearray | memoryview,
    anchors: Sequence[TrustAnchor],
    *,
    now: _dt.datetime | None = None,
) -> VerifiedSignedData:
    """Verify any ``ContentInfo(SignedData)`` with one signer (RFC 5652 §5.6) against trust anchors.

    This is the generic CMS check underneath the firmware-package profile: it does not require the
    RFC 4108 §2.2 attributes (for example, it verifies what ``openssl cms -sign`` produces).
    """
    sd = parse_signed_data(data)
    path = resolve_signer(sd, anchors, now)
    verify_signer_info(sd, path, digest_econtent(sd))
    if sd.content_type != sd.econtent_type:  # RFC 5652 §11.1
        raise _fail(E.CONTENT_TYPE_MISMATCH, "content-type attribute does not match eContentType")
    return VerifiedSignedData(sd, path)
