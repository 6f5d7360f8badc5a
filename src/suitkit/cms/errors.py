"""The error every CMS firmware-package failure raises: :class:`CmsError`.

It is a :class:`suitkit.errors.SuitError` (so callers that catch the project's base class catch it
too) and carries the RFC 4108 §4.1.3 ``FirmwarePackageLoadErrorCode`` that a hardware module puts
in its ``FirmwarePackageLoadError`` report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suitkit.cms.oids import LoadErrorCode
from suitkit.errors import SuitError
from suitkit.format.codepoints import ReportReason

if TYPE_CHECKING:
    from suitkit.cms.model import FirmwareMessageDigest, PackageName

_C = LoadErrorCode

#: The SUIT_Report reason closest to each RFC 4108 error code (for the project-wide reporting).
_REASONS: dict[LoadErrorCode, ReportReason] = {
    **{
        code: ReportReason.CBOR_PARSE  # "the input could not be parsed" family
        for code in (
            _C.DECODE_FAILURE,
            _C.BAD_CONTENT_INFO,
            _C.BAD_SIGNED_DATA,
            _C.BAD_ENCAP_CONTENT,
            _C.BAD_CERTIFICATE,
            _C.BAD_SIGNER_INFO,
            _C.BAD_SIGNED_ATTRS,
            _C.BAD_UNSIGNED_ATTRS,
            _C.MISSING_CONTENT,
            _C.BAD_ENCRYPTED_DATA,
            _C.UNPROTECTED_ATTRS_PRESENT,
            _C.BAD_ENCRYPT_CONTENT,
            _C.MISSING_CIPHERTEXT,
            _C.MISSING_COMPRESSED_CONTENT,
        )
    },
    **{
        code: ReportReason.UNAUTHORISED
        for code in (
            _C.NO_TRUST_ANCHOR,
            _C.NOT_AUTHORIZED,
            _C.SIGNATURE_FAILURE,
            _C.CONTENT_TYPE_MISMATCH,
            _C.NOT_IN_COMMUNITY,
        )
    },
    **{
        code: ReportReason.ALG_UNSUPPORTED
        for code in (
            _C.BAD_DIGEST_ALGORITHM,
            _C.BAD_SIGNATURE_ALGORITHM,
            _C.UNSUPPORTED_KEY_SIZE,
            _C.BAD_ENCRYPT_ALGORITHM,
            _C.BAD_COMPRESS_ALGORITHM,
            _C.UNSUPPORTED_PARAMETERS,
        )
    },
    _C.WRONG_HARDWARE: ReportReason.COMPONENT_UNSUPPORTED,
    _C.STALE_PACKAGE: ReportReason.CONDITION_FAILED,
    _C.MISSING_DEPENDENCY: ReportReason.CONDITION_FAILED,
    _C.WRONG_DEPENDENCY_VERSION: ReportReason.CONDITION_FAILED,
    _C.BREAKS_DEPENDENCY: ReportReason.CONDITION_FAILED,
    _C.UNSUPPORTED_PACKAGE_TYPE: ReportReason.COMPONENT_UNSUPPORTED,
}


class CmsError(SuitError):
    """A CMS-protected firmware package (or receipt / error report) was rejected.

    ``code`` is the RFC 4108 §4.1.3 ``FirmwarePackageLoadErrorCode``; ``vendor_code`` the optional
    ``VendorLoadErrorCode`` (RFC 4108 §4.1.3 requires one with ``otherError``). When the loader got
    far enough to read the signed attributes, ``package_name`` names the package (for the
    ``fwPkgName`` field of the error report) and ``fw_message_digest`` echoes the signer's
    firmware-package-message-digest attribute.
    """

    def __init__(
        self,
        code: LoadErrorCode,
        message: str,
        *,
        vendor_code: int | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(
            message, path=path, reason=_REASONS.get(code, ReportReason.OPERATION_FAILED)
        )
        self.code = code
        self.vendor_code = vendor_code
        self.package_name: PackageName | None = None
        self.fw_message_digest: FirmwareMessageDigest | None = None

    def __str__(self) -> str:
        where = f" (at {self.path})" if self.path else ""
        return f"{self.message}{where} [{self.code.spec_name}]"

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["code"] = int(self.code)
        out["code_name"] = self.code.spec_name
        if self.vendor_code is not None:
            out["vendor_code"] = self.vendor_code
        return out
