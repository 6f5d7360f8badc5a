"""The ``suitkit`` command line.

Exit codes: 0 success; 1 the input is invalid, not authentic, or was rejected; 2 usage error.
Errors print one line on stderr, never a traceback.

Start-up time matters (build pipelines run ``suitkit verify`` thousands of times): every heavy
import happens inside the command that needs it, and ``verify`` has a fast path that runs
before typer is even imported (:func:`main`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from suitkit.cli import _common as common

app = typer.Typer(
    name="suitkit",
    help="suitkit: IETF SUIT firmware update manifests (draft-ietf-suit-manifest-37), COSE, "
    "a reference device, CMS firmware packages (RFC 4108) and update distribution.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

KEY_ALGORITHMS = [
    "esp256",
    "es256",
    "esp384",
    "es384",
    "ed25519",
    "hss-lms",
    "ml-dsa-44",
    "ml-dsa-65",
    "ml-dsa-87",
    "hmac256",
]


@app.command()
def keygen(
    alg: Annotated[str, typer.Option("--alg", help="One of: " + ", ".join(KEY_ALGORITHMS))],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Private key file (.pem for PEM, otherwise COSE_Key CBOR)"
        ),
    ],
    kid: Annotated[
        str | None,
        typer.Option("--kid", help="Key id (text); default: derived from the public key"),
    ] = None,
) -> None:
    """Generate a signing or MAC key."""
    with common.guard():
        from suitkit.author.signing import generate_key

        key = generate_key(alg, kid.encode() if kid is not None else None)
        key.save(output, private=True)
        common.ok(f"wrote {alg} private key to {output} (kid {key.kid.hex() if key.kid else '-'})")


@app.command()
def pubkey(
    key: Annotated[Path, typer.Argument(help="Private key file")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Public key file (.pem or COSE_Key)")
    ],
) -> None:
    """Write the public key of a private key."""
    with common.guard():
        from suitkit.cose.keys import CoseKey

        k = CoseKey.load(key)
        if k.is_symmetric:
            common.fail(f"{key} is a symmetric key: it has no public half", code=1)
        k.public_key().save(output)
        common.ok(f"wrote public key to {output}")


@app.command()
def create(
    description: Annotated[Path, typer.Argument(help="Manifest description (YAML or JSON)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Envelope to write (.suit)")],
    key: Annotated[
        list[Path] | None, typer.Option("--key", help="Sign with this private key (repeatable)")
    ] = None,
    alg: Annotated[
        str | None,
        typer.Option("--alg", help="Signature algorithm for P-256 keys: esp256 (default) or es256"),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Constrain digest, signature, key exchange and content encryption to an MTI "
            "profile (draft-ietf-suit-mti), e.g. suit-sha256-esp256-ecdh-a128ctr",
        ),
    ] = None,
) -> None:
    """Build a manifest from a description, and sign it when keys are given."""
    with common.guard():
        from suitkit.author.builder import build_from_description, load_description
        from suitkit.author.signing import sign_envelope, signers_from_files

        envelope = build_from_description(load_description(description), description.parent)
        signers = signers_from_files(key, alg) if key else []
        if profile is not None:
            from suitkit.author.signing import MacKey
            from suitkit.encryption.profiles import check_build

            check_build(
                profile,
                envelope=envelope,
                signers=[s.key if isinstance(s, MacKey) else s for s in signers],
            )
        if key:
            envelope = sign_envelope(envelope, signers)
        common.write_atomic(output, envelope.encode())
        signed = f", signed by {len(key)} key(s)" if key else ", unsigned (digest only)"
        common.ok(
            f"wrote {output}: sequence number {envelope.manifest.sequence_number}, "
            f"{len(envelope.manifest.common.components)} component(s){signed}"
        )


@app.command()
def sign(
    envelope_file: Annotated[Path, typer.Argument(metavar="IN.suit", help="Envelope to sign")],
    key: Annotated[list[Path], typer.Option("--key", help="Private key (repeatable)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Signed envelope to write")],
    kid: Annotated[
        str | None, typer.Option("--kid", help="Key id to put in the COSE header")
    ] = None,
    alg: Annotated[
        str | None,
        typer.Option(
            "--alg", help="es256 asks for the older -7 with a P-256 key (default ESP256, -9)"
        ),
    ] = None,
) -> None:
    """Add signatures (or MACs) to an envelope; existing ones are kept."""
    with common.guard():
        from suitkit.author.signing import sign_envelope, signers_from_files
        from suitkit.format.envelope import Envelope

        envelope = Envelope.decode(common.read_input(envelope_file))
        signers = signers_from_files(key, alg, kid.encode() if kid is not None else None)
        envelope = sign_envelope(envelope, signers)
        common.write_atomic(output, envelope.encode())
        total = len(envelope.authentication.blocks)
        common.ok(f"wrote {output}: {total} authentication block(s)")


@app.command()
def verify(
    envelope_file: Annotated[Path, typer.Argument(metavar="IN.suit", help="Envelope to verify")],
    key: Annotated[list[Path], typer.Option("--key", help="Trusted public key (repeatable)")],
    severed: Annotated[
        list[Path] | None, typer.Option("--severed", help="A severed member's file (repeatable)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Check the manifest digest, the signatures and the severable members."""
    common.run_verify(envelope_file, key, severed or [], json_out)


@app.command()
def show(
    envelope_file: Annotated[Path, typer.Argument(metavar="IN.suit", help="Envelope to show")],
    diag: Annotated[bool, typer.Option("--diag", help="CBOR diagnostic notation")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="JSON")] = False,
    no_comments: Annotated[bool, typer.Option("--no-comments", help="Diag without names")] = False,
) -> None:
    """Show an envelope: components, command sequences, parameters (nothing is verified)."""
    with common.guard():
        from suitkit.cli.show import render
        from suitkit.format.envelope import Envelope

        envelope = Envelope.decode(common.read_input(envelope_file))
        mode = "diag" if diag else "json" if json_out else "tree"
        render(envelope, mode, comments=not no_comments)


@app.command()
def sever(
    envelope_file: Annotated[Path, typer.Argument(metavar="IN.suit")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Severed envelope to write")],
    element: Annotated[
        str, typer.Option("--element", help="install | payload-fetch | text | all")
    ] = "all",
    save_dir: Annotated[
        Path | None, typer.Option("--save", help="Also write each removed member to this folder")
    ] = None,
) -> None:
    """Remove severable members from an envelope (the signature stays valid)."""
    with common.guard():
        from suitkit.format.codepoints import ManifestKey
        from suitkit.format.envelope import Envelope

        names = {
            "install": ManifestKey.INSTALL,
            "payload-fetch": ManifestKey.PAYLOAD_FETCH,
            "text": ManifestKey.TEXT,
        }
        if element != "all" and element not in names:
            common.fail(
                f"--element must be one of install, payload-fetch, text, all; not {element!r}",
                code=2,
            )
        envelope = Envelope.decode(common.read_input(envelope_file))
        keys = None if element == "all" else [int(names[element])]
        try:
            severed = envelope.sever(keys)
        except ValueError as exc:
            common.fail(str(exc), code=1)
        removed = sorted(set(envelope.severable) - set(severed.severable))
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            for k in removed:
                name = ManifestKey(k).spec_name
                common.write_atomic(
                    save_dir / f"{output.stem}.{name}.cbor", envelope.severable[k].encoded
                )
        common.write_atomic(output, severed.encode())
        what = ", ".join(ManifestKey(k).spec_name for k in removed) or "nothing"
        common.ok(f"wrote {output}: severed {what}")


def _mount_subcommands() -> None:
    """Sub-command groups of the other roles (each keeps its heavy imports inside commands)."""
    import importlib

    for module, attr, name, helptext in (
        ("suitkit.cli.cms", "app", "cms", "CMS-protected firmware packages (RFC 4108)."),
        ("suitkit.cli.device", "app", "device", "A simulated device: init, update, boot, status."),
        ("suitkit.cli.device", "report_app", "report", "SUIT reports: show and verify."),
        (
            "suitkit.cli.encryption",
            "app",
            "",
            "Payload encryption (draft-ietf-suit-firmware-encryption).",
        ),
        (
            "suitkit.cli.server",
            "app",
            "",
            "The update service (RFC 9019 firmware server, status tracker).",
        ),
        ("suitkit.cli.agent", "agent_app", "agent", "The device agent (RFC 9019 device role)."),
        ("suitkit.cli.agent", "fleet_app", "fleet", "A fleet of simulated devices."),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # a role that is not part of this checkout, or whose extra is not installed
            # (the server needs `pip install suitkit[server]`)
            if exc.name == module or module.endswith((".server", ".agent")):
                continue
            raise
        sub = getattr(mod, attr, None)
        if sub is None:
            continue
        if name:
            app.add_typer(sub, name=name, help=helptext)
        else:  # commands that stand at the top level (suitkit encrypt, suitkit serve, ...)
            for command in sub.registered_commands:
                app.registered_commands.append(command)
            for group in sub.registered_groups:
                app.registered_groups.append(group)


_mount_subcommands()


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the typer application (the console script enters through :mod:`suitkit.cli.entry`)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="suitkit")
    except SystemExit as exc:
        sys.exit(exc.code if exc.code is not None else 0)
    sys.exit(0)
