"""A readable description of a firmware package's structure (``suitkit cms show``).

Nothing is verified here: the description shows what the package claims, with OID names and the
RFC 4108 §2.2 attributes decoded.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from suitkit.cms import attributes as attrs
from suitkit.cms import crypto, der
from suitkit.cms.crypto import AlgorithmId
from suitkit.cms.errors import CmsError
from suitkit.cms.model import (
    AllSerials,
    FirmwareMessageDigest,
    FirmwarePackageId,
    FirmwarePackageInfo,
    HardwareModules,
    LegacyName,
    PreferredName,
    SerialRange,
)
from suitkit.cms.oids import AttributeType, ContentType, LoadErrorCode, oid_name
from suitkit.cms.package import parse_encrypted_data
from suitkit.cms.signeddata import ParsedSignedData, parse_signed_data

E = LoadErrorCode


def _alg(alg: AlgorithmId) -> str:
    return oid_name(alg.oid) + (f" params {alg.params.hex()}" if alg.params is not None else "")


def _name(name: PreferredName | LegacyName) -> str:
    return str(name)


def _attr_value(oid: str, value: bytes) -> Any:
    decoders: dict[str, Any] = {
        AttributeType.CONTENT_TYPE: lambda v: oid_name(attrs.decode_content_type(v)),
        AttributeType.MESSAGE_DIGEST: lambda v: attrs.decode_message_digest(v).hex(),
        AttributeType.SIGNING_TIME: lambda v: attrs.decode_signing_time(v).isoformat(),
        AttributeType.CONTENT_HINTS: lambda v: _hints(attrs.decode_content_hints(v)),
        AttributeType.SIGNING_CERTIFICATE: lambda v: [
            f"sha1 {h.hex()}" for h in attrs.decode_signing_certificate(v)
        ],
        AttributeType.FIRMWARE_PACKAGE_ID: lambda v: _pkg_id(attrs.decode_package_id(v)),
        AttributeType.TARGET_HARDWARE_IDS: lambda v: list(attrs.decode_oid_list(v, "target")),
        AttributeType.DECRYPT_KEY_ID: lambda v: attrs.decode_decrypt_key_id(v).hex(),
        AttributeType.IMPL_CRYPTO_ALGS: lambda v: [
            oid_name(o) for o in attrs.decode_oid_list(v, "algs")
        ],
        AttributeType.IMPL_COMPRESS_ALGS: lambda v: [
            oid_name(o) for o in attrs.decode_oid_list(v, "algs")
        ],
        AttributeType.COMMUNITY_IDENTIFIERS: lambda v: [
            _community(c) for c in attrs.decode_community_ids(v)
        ],
        AttributeType.FIRMWARE_PACKAGE_INFO: lambda v: _info(attrs.decode_package_info(v)),
        AttributeType.FW_PKG_MESSAGE_DIGEST: lambda v: _md(attrs.decode_fw_message_digest(v)),
    }
    decode = decoders.get(oid)
    if decode is None:
        return f"(unrecognized) {value.hex()}"
    try:
        return decode(value)
    except (attrs.AttributeError_, der.DerError, ValueError) as exc:
        return f"(malformed: {exc}) {value.hex()}"


def _hints(h: Any) -> str:
    return f"{h.description!r} for {oid_name(h.content_type)}"


def _pkg_id(pid: FirmwarePackageId) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _name(pid.name)}
    if pid.stale is not None:
        out["stale"] = pid.stale if isinstance(pid.stale, int) else str(LegacyName(pid.stale))
    return out


def _community(c: str | HardwareModules) -> str:
    if isinstance(c, str):
        return f"community {c}"
    parts = []
    for s in c.serials:
        if isinstance(s, AllSerials):
            parts.append("all")
        elif isinstance(s, SerialRange):
            parts.append(f"{s.low.hex()}..{s.high.hex()}")
        else:
            parts.append(s.hex())
    return f"hardware {c.hw_type} serials {', '.join(parts)}"


def _info(info: FirmwarePackageInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if info.package_type is not None:
        out["type"] = info.package_type
    if info.dependencies is not None:
        out["dependencies"] = [_name(d) for d in info.dependencies]
    return out


def _md(md: FirmwareMessageDigest) -> str:
    return f"{oid_name(md.algorithm)} {md.digest.hex()}"


def _cert(cert: x509.Certificate) -> dict[str, Any]:
    out: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": hex(cert.serial_number),
        "notAfter": cert.not_valid_after_utc.isoformat(),
    }
    try:
        out["key"] = crypto.key_description(crypto.load_certificate_public_key(cert))
        out["subjectKeyIdentifier"] = crypto.certificate_key_id(cert).hex()
    except (ValueError, der.DerError, IndexError) as exc:
        out["key"] = f"(unsupported: {exc})"
    return out


def _layers(sd: ParsedSignedData) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if sd.econtent_type == ContentType.ENCRYPTED_DATA:
        layer = parse_encrypted_data(sd)
        out.append(
            {
                "layer": "EncryptedData",
                "contentType": oid_name(layer.inner_type),
                "contentEncryptionAlgorithm": _alg(layer.algorithm),
                "encryptedContentLength": sum(len(s) for s in layer.ciphertext),
            }
        )
        out.append({"layer": oid_name(layer.inner_type), "note": "encrypted: not shown"})
        return out
    if sd.econtent_type == ContentType.COMPRESSED_DATA:
        buf = memoryview(sd.econtent_bytes())
        try:
            top = der.read_single(buf)
            parts = der.children(buf, top)
            encap = der.children(buf, parts[2])
            octets = der.children(buf, encap[1])[0]
            out.append(
                {
                    "layer": "CompressedData",
                    "version": der.decode_integer(
                        buf[parts[0].content_start : parts[0].content_end]
                    ),
                    "compressionAlgorithm": _alg(
                        AlgorithmId.decode(der.element_bytes(buf, parts[1]))
                    ),
                    "eContentType": oid_name(
                        der.decode_oid(buf[encap[0].content_start : encap[0].content_end])
                    ),
                    "compressedLength": sum(len(s) for s in der.octet_string_segments(buf, octets)),
                }
            )
        except (der.DerError, IndexError) as exc:
            raise CmsError(E.BAD_ENCAP_CONTENT, f"CompressedData: {exc}") from None
        return out
    out.append({"layer": "FirmwarePkgData", "length": sd.econtent_length})
    return out


def describe_package(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The structure of a package as nested dicts (JSON-friendly)."""
    sd = parse_signed_data(data)
    si = sd.signer
    signed = [
        {"type": oid_name(a.oid), "value": _attr_value(a.oid, a.value)}
        for a in si.signed_attrs.values()
    ]
    unsigned = []
    for a in (si.unsigned_attrs or {}).values():
        value: Any = f"{len(a.value)} octets"
        if a.oid == AttributeType.WRAPPED_FIRMWARE_KEY:
            value = f"EnvelopedData, {len(a.value)} octets"
        unsigned.append({"type": oid_name(a.oid), "value": value})
    return {
        "contentType": oid_name(ContentType.SIGNED_DATA),
        "signedData": {
            "version": sd.version,
            "digestAlgorithm": oid_name(sd.digest_algorithm),
            "encapContentInfo": {
                "eContentType": oid_name(sd.econtent_type),
                "eContentLength": sd.econtent_length,
                "layers": _layers(sd),
            },
            "certificates": [_cert(c) for c in sd.certificates],
            "crls": sd.crls_present,
            "signerInfo": {
                "version": si.version,
                "sid": si.sid_description(),
                "digestAlgorithm": oid_name(si.digest_algorithm),
                "signatureAlgorithm": _alg(si.signature_algorithm),
                "signatureLength": len(si.signature),
                "signedAttrs": signed,
                "unsignedAttrs": unsigned or None,
            },
        },
    }


def render_tree(node: Any, indent: int = 0) -> list[str]:
    """Indented text lines for a :func:`describe_package` result."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None:
                continue
            if isinstance(value, dict | list):
                lines.append(f"{pad}{key}:")
                lines.extend(render_tree(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {value}")
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and "type" in item and "value" in item and len(item) == 2:
                if isinstance(item["value"], dict | list):
                    lines.append(f"{pad}- {item['type']}:")
                    lines.extend(render_tree(item["value"], indent + 2))
                else:
                    lines.append(f"{pad}- {item['type']}: {item['value']}")
            elif isinstance(item, dict | list):
                sub = render_tree(item, indent + 1)
                if sub:
                    lines.append(f"{pad}- {sub[0].strip()}")
                    lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {item}")
    else:
        lines.append(f"{pad}{node}")
    return lines
