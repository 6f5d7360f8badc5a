"""Helpers for the encryption tests: vector paths and keys, and a minimal command interpreter
that runs the fetch/copy/write/image-match commands of a manifest the way the device processor
is meant to call :func:`suitkit.encryption.decrypt.decrypt_chunks` (staged writes, commit after
the iterator is exhausted)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suitkit.cose import CoseKey, HssLmsParams
from suitkit.encryption.decrypt import decrypt_chunks
from suitkit.errors import ConditionFailedError, OperationFailedError
from suitkit.format.codepoints import Command, Parameter
from suitkit.format.commands import (
    CommandSequence,
    OverrideParameters,
    PolicyCommand,
    SetComponentIndex,
    SetParameters,
)
from suitkit.format.digest import Digest
from suitkit.format.manifest import ComponentIdentifier

VECTORS = Path(__file__).parent.parent / "vectors"
FE = VECTORS / "firmware-encryption"
KEYS = VECTORS / "keys"

PLAINTEXT = b"This is a real firmware image."
KEK = CoseKey.load(KEYS / "fw-enc-kek-a128kw-kid-1.cose_key")
RECIPIENT = CoseKey.load(KEYS / "fw-enc-recipient-p256-kid-2-private.cose_key")
RECIPIENT_PUBLIC = CoseKey.load(KEYS / "fw-enc-recipient-p256-kid-2-public.cose_key")
MAC_KEY = CoseKey.load(KEYS / "fw-enc-hmac256-mac-key.cose_key")
EXAMPLE_PUBLIC = CoseKey.load(KEYS / "suit-example-es256-public.pem")
DEPENDENT_PUBLIC = CoseKey.load(KEYS / "fw-enc-dependent-es256-public.pem")
TRUSTED = [MAC_KEY, EXAMPLE_PUBLIC, DEPENDENT_PUBLIC]

#: the four SUIT_Encryption_Info vectors and their detached ciphertexts
INFO_VECTORS = ["aes-kw-aes-ctr", "aes-kw-aes-gcm", "es-ecdh-aes-ctr", "es-ecdh-aes-gcm"]

#: one LMS tree of height 5 (32 signatures): key generation in a few hundredths of a second
SMALL_HSS = HssLmsParams(levels=1, height=5, w=4)


def info_vector(name: str) -> bytes:
    return (FE / f"suit-encryption-info-{name}.cose").read_bytes()


def payload_vector(name: str) -> bytes:
    return (FE / f"encrypted-payload-{name}.bin").read_bytes()


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@dataclass
class StagedComponent:
    """A component written through a staging buffer: content appears only on commit."""

    content: bytes | None = None
    aborted: int = 0

    def store(self, chunks: Iterable[bytes]) -> None:
        staging = bytearray()
        try:
            for c in chunks:
                staging += c
        except BaseException:
            self.aborted += 1
            self.content = None  # the component is left erased
            raise
        self.content = bytes(staging)


@dataclass
class MiniDevice:
    """Runs set-component-index, override/set-parameters, fetch, copy, write and image-match;
    copy and write decrypt when encryption-info is set for the destination (draft §3)."""

    components: Sequence[ComponentIdentifier]
    keys: Sequence[CoseKey]
    remote: Mapping[str, bytes] = field(default_factory=dict)
    chunk_size: int = 7
    storage: dict[int, StagedComponent] = field(default_factory=dict)
    params: dict[int, dict[int, Any]] = field(default_factory=dict)
    decrypted: list[int] = field(default_factory=list)

    def content(self, i: int) -> bytes | None:
        return self.storage.setdefault(i, StagedComponent()).content

    def _chunks(self, data: bytes) -> list[bytes]:
        return chunked(data, self.chunk_size)

    def _maybe_decrypt(self, ci: int, chunks: Iterable[bytes]) -> Iterable[bytes]:
        info = self.params[ci].get(Parameter.ENCRYPTION_INFO)
        if info is None:
            return chunks
        self.decrypted.append(ci)
        return decrypt_chunks(info, self.keys, chunks)

    def run(self, seq: CommandSequence, integrated: Mapping[str, bytes] | None = None) -> None:
        current = [0]
        for cmd in seq:
            if isinstance(cmd, SetComponentIndex):
                assert isinstance(cmd.index, int)
                current = [cmd.index]
                continue
            for ci in current:
                p = self.params.setdefault(ci, {})
                if isinstance(cmd, OverrideParameters):
                    p.update(cmd.parameters)
                elif isinstance(cmd, SetParameters):
                    for k, v in cmd.parameters.items():
                        p.setdefault(k, v)
                elif isinstance(cmd, PolicyCommand):
                    self._policy(cmd.code, ci, integrated or {})
                else:
                    raise AssertionError(f"MiniDevice does not run {cmd.name}")

    def _policy(self, code: int, ci: int, integrated: Mapping[str, bytes]) -> None:
        p = self.params[ci]
        comp = self.storage.setdefault(ci, StagedComponent())
        if code == Command.FETCH:
            uri = p[Parameter.URI]
            data = integrated.get(uri, self.remote.get(uri))
            if data is None:
                raise OperationFailedError(f"cannot fetch {uri}")
            comp.store(self._chunks(data))  # fetch never decrypts
        elif code == Command.COPY:
            src = self.content(p[Parameter.SOURCE_COMPONENT])
            assert src is not None
            comp.store(self._maybe_decrypt(ci, self._chunks(src)))
        elif code == Command.WRITE:
            comp.store(self._maybe_decrypt(ci, self._chunks(p[Parameter.CONTENT])))
        elif code == Command.IMAGE_MATCH:
            digest: Digest = p[Parameter.IMAGE_DIGEST]
            data = comp.content
            if data is None or not digest.matches(hashlib.sha256(data).digest()):
                raise ConditionFailedError("image digest does not match")
            size = p.get(Parameter.IMAGE_SIZE)
            if size is not None and size != len(data):
                raise ConditionFailedError("image size does not match")
        else:
            raise AssertionError(f"MiniDevice does not run command {code}")
