"""``suitkit encrypt`` and ``suitkit decrypt``: encrypted payloads
(draft-ietf-suit-firmware-encryption-24).

::

    suitkit encrypt fw.bin --alg a128ctr --recipient kek.cose_key [--recipient dev.pem ...] \
        -o fw.enc --info fw.info.cose
    suitkit decrypt fw.enc --info fw.info.cose --key kek.cose_key -o fw.bin

Exit codes: 0 success; 1 invalid input, wrong key, failed authentication tag; 2 usage error.
Errors are one line on stderr, never a traceback. Both commands stream: memory stays constant
whatever the payload size. ``decrypt`` writes the plaintext to a temporary file and renames it
into place only after the whole ciphertext was decrypted and, for AES-GCM and ChaCha20/Poly1305,
the authentication tag verified; on failure no output file is left behind.

The module imports only typer and the light CLI helpers; everything else is imported inside the
commands. The commands are registered on :data:`app`; the main CLI mounts them at top level.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from suitkit.cli import _common as common

app = typer.Typer(
    help="Encrypted payloads (draft-ietf-suit-firmware-encryption).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_ALGS = "a128ctr, a192ctr, a256ctr, a128gcm, a192gcm, a256gcm, chacha20-poly1305"
_KEY_WRAPS = "a128kw, a192kw, a256kw, ecdh-es+a128kw, ecdh-es+a192kw, ecdh-es+a256kw"
_CHUNK = 1 << 20


@app.command()
def encrypt(
    payload: Annotated[Path, typer.Argument(metavar="PAYLOAD", help="The plaintext payload")],
    alg: Annotated[str, typer.Option("--alg", help=f"Content encryption: {_ALGS}")],
    recipient: Annotated[
        list[Path],
        typer.Option(
            "--recipient",
            help="A key-encryption key (symmetric COSE_Key: AES-KW) or a recipient's public key "
            "(PEM or COSE_Key, P-256/P-384/X25519: ECDH-ES + AES-KW); repeatable",
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Ciphertext file to write")],
    info: Annotated[
        Path, typer.Option("--info", help="Encryption info (COSE_Encrypt, parameter 19) to write")
    ],
    key_wrap: Annotated[
        str | None,
        typer.Option(
            "--key-wrap",
            help=f"Key distribution for every recipient: {_KEY_WRAPS} (default: A*KW by the KEK's "
            "length, ECDH-ES + A128KW for a public key)",
        ),
    ] = None,
) -> None:
    """Encrypt a payload for one or more recipients (detached ciphertext + encryption info)."""
    with common.guard():
        from suitkit.encryption.builder import KEY_DISTRIBUTION_NAMES
        from suitkit.encryption.encrypt import CONTENT_ALGORITHM_NAMES

        if alg.strip().lower() not in CONTENT_ALGORITHM_NAMES:
            common.fail(f"--alg must be one of {_ALGS}; not {alg!r}", code=common.EXIT_USAGE)
        kw = None
        if key_wrap is not None:
            kw = KEY_DISTRIBUTION_NAMES.get(key_wrap.strip().lower().replace(" ", ""))
            if kw is None:
                common.fail(
                    f"--key-wrap must be one of {_KEY_WRAPS}; not {key_wrap!r}",
                    code=common.EXIT_USAGE,
                )
        if not payload.is_file():
            common.fail(f"no such file: {payload}")
        if output.resolve() == payload.resolve():
            common.fail("the ciphertext file must not overwrite the payload", code=2)

        from suitkit.cose.keys import CoseKey
        from suitkit.encryption.encrypt import encrypt_file
        from suitkit.encryption.recipients import Recipient
        from suitkit.errors import SuitError

        recipients = []
        for path in recipient:
            key = CoseKey.load(path)
            if not key.is_symmetric:
                key = key.public_key()
            rec = Recipient(key, kw)
            try:
                rec.algorithm  # noqa: B018 - check the key fits before encrypting anything
            except SuitError as exc:
                exc.message = f"{path}: {exc.message}"
                raise
            recipients.append(rec)
        result = encrypt_file(payload, output, alg, recipients)
        common.write_atomic(info, result.encryption_info)
        common.ok(
            f"wrote {output} ({result.ciphertext_size} bytes, {result.alg.spec_name}) and {info} "
            f"({len(recipients)} recipient(s)); plaintext sha256 "
            f"{result.plaintext_digest.value.hex()}, ciphertext sha256 "
            f"{result.ciphertext_digest.value.hex()}"
        )


@app.command()
def decrypt(
    ciphertext: Annotated[
        Path, typer.Argument(metavar="CIPHERTEXT", help="The detached ciphertext")
    ],
    info: Annotated[Path, typer.Option("--info", help="Encryption info (COSE_Encrypt)")],
    key: Annotated[
        list[Path],
        typer.Option(
            "--key",
            help="A device key: key-encryption key (COSE_Key) or private EC/X25519 key; "
            "repeatable, chosen by kid",
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Plaintext file to write")],
) -> None:
    """Decrypt a payload with a device key (the output appears only if it authenticates)."""
    with common.guard():
        if output.resolve() == ciphertext.resolve():
            common.fail("the plaintext file must not overwrite the ciphertext", code=2)
        from suitkit.cose.keys import CoseKey
        from suitkit.encryption.decrypt import open_decryptor

        info_bytes = common.read_input(info)
        keys = [CoseKey.load(k) for k in key]
        with ciphertext.open("rb") as src:
            dec = open_decryptor(info_bytes, keys)
            n = _stage_and_commit(output, src, dec.update, dec.finalize)
        kid = dec.recipient.kid
        who = f"recipient {dec.recipient.index}"
        if kid is not None:
            text = kid.decode() if kid.isascii() and kid.decode().isprintable() else kid.hex()
            who += f", kid {text}"
        tag = ", tag verified" if dec.aead else ""
        common.ok(f"wrote {output} ({n} bytes, {dec.alg.spec_name}{tag}, {who})")


def _stage_and_commit(
    output: Path,
    src: BinaryIO,
    update: Callable[[bytes], bytes],
    finalize: Callable[[], bytes],
) -> int:
    """Decrypt into a temporary file next to ``output``; rename it into place only when
    ``finalize()`` succeeded (AEAD: the tag verified); remove it otherwise."""
    directory = output.parent if str(output.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{output.name}.", suffix=".tmp")
    n = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(_CHUNK):
                data = update(chunk)
                out.write(data)
                n += len(data)
            data = finalize()
            out.write(data)
            n += len(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return n
