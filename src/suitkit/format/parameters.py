"""SUIT_Parameters (manifest §8.4.8 "SUIT_Parameters"): typed values, one codec per parameter.

A :class:`Parameters` value is an immutable mapping from parameter code to a typed value:

=========================  ================================================================
parameter                  Python type
=========================  ================================================================
vendor-identifier          ``uuid.UUID``, or :class:`CborPen` (``#6.112(bstr)``, §8.4.8.2)
class-identifier           ``uuid.UUID``
device-identifier          ``uuid.UUID``
image-digest               :class:`~suitkit.format.digest.Digest` (``bstr .cbor SUIT_Digest``)
image-size                 ``int`` (uint)
component-slot             ``int`` (uint)
source-component           ``int`` (uint)
uri                        ``str``
content, invoke-args,      ``bytes``
fetch-arguments
strict-order, soft-failure ``bool``
encryption-info            :class:`EncryptionInfo` (bstr-wrapped COSE_Encrypt, firmware
                           encryption §4; decoded by the encryption module)
others                     kept as decoded, re-encoded unchanged
=========================  ================================================================
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from suitkit.errors import DecodeError
from suitkit.format import cbor
from suitkit.format.codepoints import Parameter, Tag
from suitkit.format.digest import Digest


@dataclass(frozen=True, slots=True)
class CborPen:
    """A vendor identifier given as a CBOR PEN: ``#6.112(bstr)`` (manifest §8.4.8.1)."""

    oid: bytes

    def to_cbor(self) -> cbor.CBORTag:
        return cbor.CBORTag(Tag.CBOR_PEN, self.oid)


@dataclass(frozen=True, slots=True)
class EncryptionInfo:
    """suit-parameter-encryption-info: ``bstr .cbor SUIT_Encryption_Info`` (a COSE_Encrypt or
    COSE_Encrypt0, firmware encryption §4). The bytes are kept; the encryption module parses them.
    """

    encoded: bytes


@dataclass(frozen=True, slots=True)
class BstrCbor:
    """Any other ``bstr .cbor X`` parameter (update management's wait-info, component-metadata):
    kept as bytes, shown decoded."""

    encoded: bytes


def _uuid(value: Any, path: str) -> uuid.UUID:
    if type(value) is not bytes or len(value) != 16:
        raise DecodeError("expected a UUID: a byte string of 16 bytes (RFC 4122_UUID)", path=path)
    return uuid.UUID(bytes=value)


def _vendor(value: Any, path: str) -> uuid.UUID | CborPen:
    if type(value) is cbor.CBORTag:
        if value.tag != Tag.CBOR_PEN or type(value.value) is not bytes:
            raise DecodeError("vendor-identifier tag must be #6.112(bstr) (CBOR PEN)", path=path)
        return CborPen(value.value)
    return _uuid(value, path)


def _uint(value: Any, path: str) -> int:
    if type(value) is not int or value < 0:
        raise DecodeError("expected an unsigned integer", path=path)
    return value


def _bstr(value: Any, path: str) -> bytes:
    if type(value) is not bytes:
        raise DecodeError("expected a byte string", path=path)
    return value


def _tstr(value: Any, path: str) -> str:
    if type(value) is not str:
        raise DecodeError("expected a text string", path=path)
    return value


def _bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        raise DecodeError("expected true or false", path=path)
    return value


def _digest(value: Any, path: str) -> Digest:
    if type(value) is not bytes:
        raise DecodeError("image-digest must be a bstr-wrapped SUIT_Digest", path=path)
    return Digest.decode(value, path)


def _encryption_info(value: Any, path: str) -> EncryptionInfo:
    if type(value) is not bytes:
        raise DecodeError("encryption-info must be a bstr-wrapped COSE_Encrypt", path=path)
    return EncryptionInfo(value)


def _bstr_cbor(value: Any, path: str) -> BstrCbor:
    if type(value) is not bytes:
        raise DecodeError("expected a bstr-wrapped CBOR item", path=path)
    return BstrCbor(value)


def _custom(value: Any, path: str) -> Any:
    # suit-parameter-custom => int / bool / tstr / bstr (manifest Appendix A)
    if type(value) not in (int, bool, str, bytes):
        raise DecodeError("a custom parameter must be an int, bool, tstr or bstr", path=path)
    return value


_DECODERS: dict[int, Callable[[Any, str], Any]] = {
    Parameter.VENDOR_IDENTIFIER: _vendor,
    Parameter.CLASS_IDENTIFIER: _uuid,
    Parameter.DEVICE_IDENTIFIER: _uuid,
    Parameter.IMAGE_DIGEST: _digest,
    Parameter.IMAGE_SIZE: _uint,
    Parameter.COMPONENT_SLOT: _uint,
    Parameter.SOURCE_COMPONENT: _uint,
    Parameter.URI: _tstr,
    Parameter.CONTENT: _bstr,
    Parameter.INVOKE_ARGS: _bstr,
    Parameter.FETCH_ARGUMENTS: _bstr,
    Parameter.STRICT_ORDER: _bool,
    Parameter.SOFT_FAILURE: _bool,
    Parameter.ENCRYPTION_INFO: _encryption_info,
    Parameter.USE_BEFORE: _uint,
    Parameter.MINIMUM_BATTERY: _uint,
    Parameter.WAIT_INFO: _bstr_cbor,
    Parameter.COMPONENT_METADATA: _bstr_cbor,
}

_PARAM_NAMES = {int(p): p.spec_name for p in Parameter}


def parameter_name(code: int) -> str:
    """The spec name of a parameter code (``custom(-300)`` for a custom one)."""
    name = _PARAM_NAMES.get(code)
    if name is not None:
        return name
    return f"custom({code})" if code < 0 else f"unknown({code})"


def encode_value(code: int, value: Any) -> Any:
    """The CBOR form of a typed parameter value."""
    t = type(value)
    if t is uuid.UUID:
        return value.bytes
    if t is Digest or t is EncryptionInfo or t is BstrCbor:
        return value.encoded
    if t is CborPen:
        return value.to_cbor()
    return value


def value_to_diag(code: int, value: Any) -> Any:
    t = type(value)
    if t is uuid.UUID:
        return cbor.Comment(value.bytes, str(value), after=True)
    if t is Digest:
        return cbor.Wrapped(value.to_diag())
    if t is EncryptionInfo or t is BstrCbor:
        try:
            return cbor.Wrapped(cbor.cose_diag(cbor.loads(value.encoded)))
        except DecodeError:
            return value.encoded
    if t is CborPen:
        return value.to_cbor()
    return value


def value_to_json(value: Any) -> Any:
    t = type(value)
    if t is uuid.UUID:
        return str(value)
    if t is Digest:
        return value.to_json()
    if t is bytes:
        return value.hex()
    if t is EncryptionInfo or t is BstrCbor:
        return value.encoded.hex()
    if t is CborPen:
        return {"cbor-pen": value.oid.hex()}
    if isinstance(value, int | str | bool) or value is None:
        return value
    return repr(value)


class Parameters(Mapping[int, Any]):
    """An immutable map of SUIT parameters, in the order they were given."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[int, Any] | None = None, /, **named: Any) -> None:
        d: dict[int, Any] = dict(items) if items else {}
        for name, value in named.items():
            d[int(Parameter[name.upper()])] = value
        self._items = d

    @classmethod
    def from_cbor(cls, value: Any, path: str = "parameters") -> Parameters:
        if type(value) is not dict:
            raise DecodeError("parameters must be a map {+ $$SUIT_Parameters}", path=path)
        if not value:
            raise DecodeError("parameters map must not be empty", path=path)
        out: dict[int, Any] = {}
        for code, v in value.items():
            if type(code) is not int:
                raise DecodeError(f"parameter key {code!r} is not an integer", path=path)
            dec = _DECODERS.get(code)
            if dec is not None:
                out[code] = dec(v, f"{path}/{parameter_name(code)}")
            elif code < 0:
                out[code] = _custom(v, f"{path}/{parameter_name(code)}")
            else:
                out[code] = v  # registered by a later document, or unknown: kept as is
        p = cls.__new__(cls)
        p._items = out
        return p

    def to_cbor(self) -> dict[int, Any]:
        return {k: encode_value(k, v) for k, v in self._items.items()}

    def to_diag(self) -> dict[Any, Any]:
        return {
            cbor.Comment(k, parameter_name(k)): value_to_diag(k, v) for k, v in self._items.items()
        }

    def to_json(self) -> dict[str, Any]:
        return {parameter_name(k): value_to_json(v) for k, v in self._items.items()}

    def __getitem__(self, key: int) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[int]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Parameters):
            return self._items == other._items
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._items))

    def __repr__(self) -> str:
        inner = ", ".join(f"{parameter_name(k)}={v!r}" for k, v in self._items.items())
        return f"Parameters({inner})"

    # typed accessors for the core parameters
    @property
    def vendor_identifier(self) -> uuid.UUID | CborPen | None:
        return self._items.get(Parameter.VENDOR_IDENTIFIER)

    @property
    def class_identifier(self) -> uuid.UUID | None:
        return self._items.get(Parameter.CLASS_IDENTIFIER)

    @property
    def device_identifier(self) -> uuid.UUID | None:
        return self._items.get(Parameter.DEVICE_IDENTIFIER)

    @property
    def image_digest(self) -> Digest | None:
        return self._items.get(Parameter.IMAGE_DIGEST)

    @property
    def image_size(self) -> int | None:
        return self._items.get(Parameter.IMAGE_SIZE)

    @property
    def uri(self) -> str | None:
        return self._items.get(Parameter.URI)
