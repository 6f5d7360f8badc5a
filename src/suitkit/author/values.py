"""Parsing the scalar values of a manifest description (YAML/JSON) into model values.

One rule for every byte string in a description: ``h'00ff'`` (diagnostic notation) is hex,
anything else is the UTF-8 text itself. UUIDs are written in their usual text form.
"""

from __future__ import annotations

import uuid
from typing import Any

from suitkit.errors import SuitError
from suitkit.format.codepoints import CoseAlgorithm, Parameter
from suitkit.format.digest import Digest
from suitkit.format.parameters import CborPen, EncryptionInfo


class DescriptionError(SuitError):
    """A manifest description that cannot be compiled; ``path`` names the field."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message, path=where or None)


#: UUID namespace for DNS names (RFC 9562 Appendix C), used for vendor ids (manifest §8.4.8.1).
NAMESPACE_DNS = uuid.NAMESPACE_DNS


def vendor_id_from_domain(domain: str) -> uuid.UUID:
    """``Vendor ID = UUID5(DNS namespace, vendor domain name)`` (manifest §8.4.8.1)."""
    return uuid.uuid5(NAMESPACE_DNS, domain)


def class_id_from_info(vendor_id: uuid.UUID, class_info: str) -> uuid.UUID:
    """``Class ID = UUID5(Vendor ID, Class-Specific-Information)`` (manifest §8.4.8.1)."""
    return uuid.uuid5(vendor_id, class_info)


def to_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        if value.startswith("h'") and value.endswith("'"):
            try:
                return bytes.fromhex(value[2:-1])
            except ValueError:
                raise DescriptionError(f"{value!r} is not valid hex", where) from None
        return value.encode()
    raise DescriptionError(f"expected a byte string (h'..' or text), got {value!r}", where)


def to_uuid(value: Any, where: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise DescriptionError(f"{value!r} is not a UUID", where) from None


def to_uint(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DescriptionError(f"expected an unsigned integer, got {value!r}", where)
    return value


_ALG_NAMES = {
    "sha256": CoseAlgorithm.SHA_256,
    "sha-256": CoseAlgorithm.SHA_256,
    "sha384": CoseAlgorithm.SHA_384,
    "sha-384": CoseAlgorithm.SHA_384,
    "sha512": CoseAlgorithm.SHA_512,
    "sha-512": CoseAlgorithm.SHA_512,
    "shake128": CoseAlgorithm.SHAKE128,
    "shake256": CoseAlgorithm.SHAKE256,
}


def digest_algorithm(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    alg = _ALG_NAMES.get(str(value).lower())
    if alg is None:
        raise DescriptionError(
            f"unknown digest algorithm {value!r} (one of {', '.join(sorted(_ALG_NAMES))})", where
        )
    return int(alg)


def to_digest(value: Any, where: str) -> Digest:
    """``{algorithm: sha256, value: <hex>}`` or ``"sha256:<hex>"``."""
    if isinstance(value, Digest):
        return value
    if isinstance(value, str) and ":" in value:
        alg, _, hexval = value.partition(":")
        value = {"algorithm": alg, "value": hexval}
    if not isinstance(value, dict) or "value" not in value:
        raise DescriptionError("a digest is {algorithm: sha256, value: <hex>}", where)
    try:
        raw = bytes.fromhex(str(value["value"]))
    except ValueError:
        raise DescriptionError("digest value must be hex", where) from None
    return Digest(digest_algorithm(value.get("algorithm", "sha256"), where), raw)


def component_id(value: Any, where: str) -> tuple[bytes, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise DescriptionError("a component id is a list of byte strings", where)
    return tuple(to_bytes(p, f"{where}[{i}]") for i, p in enumerate(value))


_PARAM_ALIASES = {
    "vendor-id": Parameter.VENDOR_IDENTIFIER,
    "class-id": Parameter.CLASS_IDENTIFIER,
    "device-id": Parameter.DEVICE_IDENTIFIER,
    "digest": Parameter.IMAGE_DIGEST,
    "size": Parameter.IMAGE_SIZE,
    "slot": Parameter.COMPONENT_SLOT,
    "source": Parameter.SOURCE_COMPONENT,
}


def parameter_code(name: Any, where: str) -> int:
    """A parameter named by its spec name (``image-digest``, ``suit-parameter-uri``), a short
    alias (``vendor-id``), or its number."""
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    key = str(name).lower().removeprefix("suit-parameter-")
    if key in _PARAM_ALIASES:
        return int(_PARAM_ALIASES[key])
    try:
        return int(Parameter[key.upper().replace("-", "_")])
    except KeyError:
        pass
    try:
        return int(key)
    except ValueError:
        raise DescriptionError(f"unknown parameter {name!r}", where) from None


def parameter_value(code: int, value: Any, where: str) -> Any:
    """Convert a description value to the typed value the model holds for parameter ``code``."""
    if code == Parameter.VENDOR_IDENTIFIER:
        if isinstance(value, dict) and "cbor-pen" in value:
            return CborPen(to_bytes(value["cbor-pen"], where))
        return to_uuid(value, where)
    if code in (Parameter.CLASS_IDENTIFIER, Parameter.DEVICE_IDENTIFIER):
        return to_uuid(value, where)
    if code == Parameter.IMAGE_DIGEST:
        return to_digest(value, where)
    if code in (Parameter.IMAGE_SIZE, Parameter.COMPONENT_SLOT, Parameter.SOURCE_COMPONENT):
        return to_uint(value, where)
    if code == Parameter.URI:
        if not isinstance(value, str):
            raise DescriptionError("uri must be a string", where)
        return value
    if code in (Parameter.CONTENT, Parameter.INVOKE_ARGS, Parameter.FETCH_ARGUMENTS):
        return to_bytes(value, where)
    if code in (Parameter.STRICT_ORDER, Parameter.SOFT_FAILURE):
        if not isinstance(value, bool):
            raise DescriptionError("expected true or false", where)
        return value
    if code == Parameter.ENCRYPTION_INFO:
        return EncryptionInfo(to_bytes(value, where))
    return value
