"""Building manifests with encrypted payloads (draft-ietf-suit-firmware-encryption-24 §3, §6).

A high-level component description gets an ``encryption`` block::

    components:
      - id: ['plaintext-firmware']
        payload: fw.bin                     # the plaintext
        uri: coaps://example.com/fw.enc     # where the device fetches the *ciphertext*
        encryption:
          alg: a128ctr                      # a128ctr a192ctr a256ctr a128gcm a192gcm a256gcm
                                            # chacha20-poly1305
          recipients:                       # one or more; a file, or a mapping
            - kek.cose_key                  #   symmetric KEK: A128KW/A192KW/A256KW by length
            - {key: device.pem, alg: ecdh-es+a128kw, kid: device-1}   # a public key: ECDH-ES
          payload-out: fw.enc               # the ciphertext file (else kept in memory)
          staging-id: ['encrypted-firmware']   # the fetch form's staging component

:func:`encrypt_component` encrypts the payload and returns an :class:`EncryptedComponent`: the
encryption info (parameter 19), plaintext and ciphertext digests and sizes, and the ciphertext
(file and/or bytes). :meth:`EncryptedComponent.install_commands` writes the command sequence the
draft gives for it; the two forms are:

**Fetch + copy** (draft §3.2 and §6.1; the ciphertext is fetched into a staging component first,
and image-matched there *before* decryption, which draft §6.1.2 and RFC 9459 §8 recommend for
AES-CTR and which also stops battery exhaustion; then copy decrypts into the target, and the
plaintext is image-matched *after* decryption)::

    set-component-index S                  / the staging component /
    override-parameters { image-digest: digest of the ciphertext, image-size: its size,
                          uri: "https://.../fw.enc" }     / or "#key" for an integrated payload /
    fetch
    condition-image-match                  / ciphertext, before decryption /
    set-component-index T                  / the target /
    override-parameters { image-digest: digest of the plaintext, image-size: its size,
                          encryption-info: << COSE_Encrypt >>, source-component: S }
    copy                                   / decrypts S into T /
    condition-image-match                  / plaintext, after decryption /

**Write** (draft §3.1; the ciphertext is parameter-content inside the signed manifest, so its
integrity is already covered, draft §6.2 Q1)::

    set-component-index T
    override-parameters { content: ciphertext, encryption-info: << COSE_Encrypt >> }
    write                                  / decrypts content into T /
    condition-image-match                  / plaintext (digest and size set for T before) /

encryption-info MUST be set with override-parameters or set-parameters before the copy or write
that consumes it (draft §3). Once set for a component it stays set for the rest of the
procedure: every later copy/write into that component would decrypt again, so do not copy into
an encrypted component twice in one manifest. The plaintext digest is what validate and invoke
check (validate: condition-image-match on T).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from suitkit.author.values import DescriptionError, component_id, to_bytes
from suitkit.cose.keys import CoseKey
from suitkit.encryption.encrypt import (
    PayloadEncryptor,
    content_algorithm,
    encrypt_file,
)
from suitkit.encryption.recipients import Recipient
from suitkit.errors import SuitError
from suitkit.format.codepoints import CoseAlgorithm, Parameter
from suitkit.format.commands import (
    ConditionImageMatch,
    DirectiveCopy,
    DirectiveFetch,
    DirectiveWrite,
    OverrideParameters,
    SetComponentIndex,
    SuitCommand,
)
from suitkit.format.digest import Digest, Hasher
from suitkit.format.manifest import ComponentIdentifier
from suitkit.format.parameters import EncryptionInfo, Parameters

__all__ = [
    "KEY_DISTRIBUTION_NAMES",
    "EncryptedComponent",
    "encrypt_component",
    "key_distribution",
    "recipients_from_description",
    "staging_component_id",
]

_CHUNK: Final = 1 << 20

#: Names of the key distribution algorithms in descriptions and on the command line.
KEY_DISTRIBUTION_NAMES: Final[dict[str, CoseAlgorithm]] = {
    "a128kw": CoseAlgorithm.A128KW,
    "a192kw": CoseAlgorithm.A192KW,
    "a256kw": CoseAlgorithm.A256KW,
    "ecdh-es+a128kw": CoseAlgorithm.ECDH_ES_A128KW,
    "ecdh-es+a192kw": CoseAlgorithm.ECDH_ES_A192KW,
    "ecdh-es+a256kw": CoseAlgorithm.ECDH_ES_A256KW,
}


def key_distribution(name: str, where: str = "") -> CoseAlgorithm:
    """``a128kw`` / ``ECDH-ES + A128KW`` / ``ecdh-es+a256kw`` -> the COSE algorithm."""
    key = str(name).lower().replace(" ", "").replace("_", "-")
    alg = KEY_DISTRIBUTION_NAMES.get(key)
    if alg is None:
        raise DescriptionError(
            f"unknown key distribution {name!r}; one of: {', '.join(KEY_DISTRIBUTION_NAMES)}",
            where,
        )
    return alg


@dataclass(frozen=True)
class EncryptedComponent:
    """An encrypted payload, ready to be described in a manifest."""

    alg: CoseAlgorithm
    encryption_info: EncryptionInfo
    plaintext_digest: Digest
    plaintext_size: int
    ciphertext_digest: Digest
    ciphertext_size: int
    #: the ciphertext file (``payload-out``), or None when it is only in memory
    ciphertext_path: Path | None = None
    #: the ciphertext, when it was kept in memory (no ``payload-out``)
    ciphertext: bytes | None = field(default=None, repr=False)
    #: the component identifier of the staging component (fetch form), if the description names
    #: one
    staging_id: ComponentIdentifier | None = None

    def ciphertext_bytes(self) -> bytes:
        """The ciphertext (read from ``ciphertext_path`` when it is not in memory), for the write
        form (parameter-content) or an integrated payload."""
        if self.ciphertext is not None:
            return self.ciphertext
        assert self.ciphertext_path is not None
        return self.ciphertext_path.read_bytes()

    def install_commands(
        self,
        target: int,
        *,
        staging: int | None = None,
        uri: str | None = None,
        condition_policy: int = 15,
        directive_policy: int = 2,
        set_plaintext_digest: bool = True,
        check_ciphertext: bool = True,
    ) -> list[SuitCommand]:
        """The commands that deliver this payload into component ``target`` (see the module
        doc): with ``uri`` and ``staging`` the fetch + copy form, without them the write form.

        ``set_plaintext_digest=False`` leaves out the plaintext image-digest/size of the fetch
        form when the shared sequence sets them already; ``check_ciphertext=False`` leaves out
        the ciphertext image-match before decryption (then only the plaintext is checked).
        """
        info = self.encryption_info
        out: list[SuitCommand] = []
        if uri is not None:
            if staging is None:
                raise ValueError("the fetch form needs a staging component index")
            if staging == target:
                raise ValueError("the staging component must differ from the target")
            fetch: dict[int, Any] = {}
            if check_ciphertext:
                fetch[Parameter.IMAGE_DIGEST] = self.ciphertext_digest
                fetch[Parameter.IMAGE_SIZE] = self.ciphertext_size
            fetch[Parameter.URI] = uri
            out += [
                SetComponentIndex(staging),
                OverrideParameters(Parameters(fetch)),
                DirectiveFetch(directive_policy),
            ]
            if check_ciphertext:
                out.append(ConditionImageMatch(condition_policy))
            copy: dict[int, Any] = {}
            if set_plaintext_digest:
                copy[Parameter.IMAGE_DIGEST] = self.plaintext_digest
                copy[Parameter.IMAGE_SIZE] = self.plaintext_size
            copy[Parameter.ENCRYPTION_INFO] = info
            copy[Parameter.SOURCE_COMPONENT] = staging
            out += [
                SetComponentIndex(target),
                OverrideParameters(Parameters(copy)),
                DirectiveCopy(directive_policy),
                ConditionImageMatch(condition_policy),
            ]
            return out
        if staging is not None:
            raise ValueError("a staging component is only used with a uri (fetch form)")
        write: dict[int, Any] = {}
        if set_plaintext_digest:
            write[Parameter.IMAGE_DIGEST] = self.plaintext_digest
            write[Parameter.IMAGE_SIZE] = self.plaintext_size
        write[Parameter.CONTENT] = self.ciphertext_bytes()
        write[Parameter.ENCRYPTION_INFO] = info
        return [
            SetComponentIndex(target),
            OverrideParameters(Parameters(write)),
            DirectiveWrite(directive_policy),
            ConditionImageMatch(condition_policy),
        ]


def _kid(value: Any, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    text = str(value)
    if text.startswith("h'"):
        return to_bytes(text, where)
    return text.encode()


def recipients_from_description(value: Any, base: Path, where: str) -> list[Recipient]:
    """``recipients:`` of an encryption block: a key file, or ``{key: file, alg: name,
    kid: text or h'hex'}``; one or a list."""
    items = value if isinstance(value, list) else [value]
    if not items or value is None:
        raise DescriptionError("encryption needs at least one recipient", where)
    out: list[Recipient] = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]"
        if isinstance(item, str | Path):
            spec: Mapping[str, Any] = {"key": item}
        elif isinstance(item, Mapping):
            spec = item
        else:
            raise DescriptionError("a recipient is a key file or {key: file, alg:, kid:}", w)
        if "key" not in spec:
            raise DescriptionError("a recipient needs a key file (key:)", w)
        unknown = set(spec) - {"key", "alg", "kid"}
        if unknown:
            raise DescriptionError(f"unknown recipient field(s) {sorted(unknown)}", w)
        try:
            key = CoseKey.load((base / str(spec["key"])).resolve())
        except SuitError as exc:
            raise DescriptionError(exc.message, w) from None
        alg = key_distribution(spec["alg"], w) if "alg" in spec else None
        kid = _kid(spec["kid"], w) if "kid" in spec else None
        if not key.is_symmetric:
            key = key.public_key()
        rec = Recipient(key, alg, kid)
        try:
            rec.algorithm  # noqa: B018 - checks that the key fits the algorithm
        except SuitError as exc:
            raise DescriptionError(exc.message, w) from None
        out.append(rec)
    return out


def encrypt_component(
    component: Mapping[str, Any],
    base: Path,
    where: str = "component",
    *,
    digest_algorithm: int = CoseAlgorithm.SHA_256,
) -> EncryptedComponent:
    """Encrypt the ``payload`` of a component description that has an ``encryption`` block
    (see the module doc). Streams the file; with ``payload-out`` the ciphertext goes to that
    file (relative to ``base``), otherwise it is kept in memory.

    Raises DescriptionError for a bad block, AlgorithmUnsupportedError for an unknown
    algorithm, KeyFormatError for an unusable key.
    """
    block = component.get("encryption")
    w = f"{where}/encryption"
    if not isinstance(block, Mapping):
        raise DescriptionError("encryption is a mapping (alg, recipients, payload-out)", w)
    unknown = set(block) - {"alg", "recipients", "payload-out", "staging-id"}
    if unknown:
        raise DescriptionError(f"unknown encryption field(s) {sorted(unknown)}", w)
    if "payload" not in component:
        raise DescriptionError("an encrypted component needs a payload file (payload:)", where)
    if "content" in component:
        raise DescriptionError(
            "content is the plaintext of an unencrypted write; an encrypted component takes its "
            "plaintext from payload:",
            where,
        )
    if "alg" not in block:
        raise DescriptionError("encryption needs alg (a128ctr, a128gcm, ...)", w)
    try:
        alg = content_algorithm(str(block["alg"]))
    except SuitError as exc:
        raise DescriptionError(exc.message, f"{w}/alg") from None
    recipients = recipients_from_description(block.get("recipients"), base, f"{w}/recipients")
    staging_id = (
        component_id(block["staging-id"], f"{w}/staging-id") if "staging-id" in block else None
    )
    source = (base / str(component["payload"])).resolve()
    try:
        if "payload-out" in block:
            out_path = (base / str(block["payload-out"])).resolve()
            if out_path == source:
                raise DescriptionError("payload-out must not overwrite the payload", w)
            r = encrypt_file(source, out_path, alg, recipients, digest_algorithm=digest_algorithm)
            return EncryptedComponent(
                alg,
                EncryptionInfo(r.encryption_info),
                r.plaintext_digest,
                r.plaintext_size,
                r.ciphertext_digest,
                r.ciphertext_size,
                ciphertext_path=out_path,
                staging_id=staging_id,
            )
        enc = PayloadEncryptor(alg, recipients)
        hp = Hasher(digest_algorithm)
        parts: list[bytes] = []
        size = 0
        with source.open("rb") as f:
            while chunk := f.read(_CHUNK):
                hp.update(chunk)
                size += len(chunk)
                parts.append(enc.update(chunk))
        parts.append(enc.finalize())
    except OSError as exc:
        raise DescriptionError(f"cannot encrypt {source}: {exc.strerror or exc}", where) from None
    ciphertext = b"".join(parts)
    return EncryptedComponent(
        alg,
        EncryptionInfo(enc.encryption_info),
        Digest(digest_algorithm, hp.digest()),
        size,
        Digest.compute(ciphertext, digest_algorithm),
        len(ciphertext),
        ciphertext=ciphertext,
        staging_id=staging_id,
    )


def staging_component_id(
    target: ComponentIdentifier, enc: EncryptedComponent
) -> ComponentIdentifier:
    """The staging component's identifier: the one the description names, or the target's
    identifier with ``'encrypted'`` appended."""
    return enc.staging_id if enc.staging_id is not None else (*target, b"encrypted")
