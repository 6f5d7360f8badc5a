"""``suitkit device ...`` (a simulated device in a directory) and ``suitkit report ...``.

Exit status: 0 success, 1 the manifest/report was rejected or the run failed, 2 usage error.
Errors are one line on stderr (``error: <message> (<where>) [<report reason>]``), never a
traceback. Every run the device makes (an update, also one whose envelope is rejected; each boot
attempt; each recovery run) leaves a signed SUIT_Report in ``<device>/reports/``, whose path is
printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from suitkit.device.events import CommandEvent
    from suitkit.device.simulated import SimulatedDevice

app = typer.Typer(help="A simulated SUIT device in a directory.", no_args_is_help=True)
report_app = typer.Typer(help="SUIT_Report files.", no_args_is_help=True)

T = TypeVar("T")

ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]
DeviceDir = Annotated[Path, typer.Argument(help="The device directory.")]


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {_one_line(message)}", err=True)
    raise typer.Exit(code)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; a SuitError or an OSError becomes one line on stderr and exit status 1."""
    from suitkit.errors import SuitError

    try:
        return fn()
    except SuitError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))


def _uuid(value: str | None, option: str) -> Any:
    import uuid

    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a UUID", param_hint=option) from None


class _Printer:
    """A Reporter that prints each command event as it happens."""

    def record(self, event: CommandEvent) -> None:
        from suitkit.device.trace import event_line

        typer.echo(event_line(event))


def _open(directory: Path, fetcher: Any = None) -> SimulatedDevice:
    from suitkit.device.simulated import SimulatedDevice

    if not (directory / "device.json").is_file():
        _fail(f"{directory} is not a device directory (run `suitkit device init` first)")
    return _guard(lambda: SimulatedDevice(directory, fetcher=fetcher))


def _echo_reports(dev: SimulatedDevice) -> None:
    """Print the reports the device wrote during this command."""
    for path in dev.reports:
        typer.echo(f"report: {path}")


def _component_id(text: str) -> tuple[bytes, ...]:
    """``--component`` text: parts separated by ``/``, each text or ``h'HEX'``."""
    parts = []
    for part in text.split("/"):
        if part.startswith("h'") and part.endswith("'"):
            try:
                parts.append(bytes.fromhex(part[2:-1]))
            except ValueError:
                raise typer.BadParameter(f"{part!r} is not hex", param_hint="--component") from None
        elif part:
            parts.append(part.encode())
        else:
            raise typer.BadParameter(f"{text!r} has an empty part", param_hint="--component")
    return tuple(parts)


def _decryption_key(item: str) -> Any:
    """``--decrypt-key [KID=]FILE``: a COSE_Key, PEM or DER key; KID (text or h'HEX') sets or
    replaces the key's kid."""

    path, kid = Path(item), None
    if not path.is_file() and "=" in item:
        kid_text, _, file = item.partition("=")
        path = Path(file)
        if kid_text.startswith("h'") and kid_text.endswith("'"):
            try:
                kid = bytes.fromhex(kid_text[2:-1])
            except ValueError:
                raise typer.BadParameter(
                    f"{kid_text!r} is not hex", param_hint="--decrypt-key"
                ) from None
        else:
            kid = kid_text.encode()
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file", param_hint="--decrypt-key")
    key = _guard(lambda: _load_decryption_key(path))
    if not key.is_private:
        _fail(
            f"{path}: a public key cannot decrypt; give a key-encryption key (AES-KW) or a "
            "private ECDH key"
        )
    return key.with_kid(kid) if kid is not None else key


def _load_decryption_key(path: Path) -> Any:
    """A COSE_Key, PEM or DER key; else a raw symmetric key (16 or 32 octets, or their hex: the
    key files of RFC 4108 packages, `suitkit cms create --encrypt-key`)."""
    from suitkit.cose import CoseKey
    from suitkit.errors import SuitError

    try:
        return CoseKey.load(path)
    except SuitError as first:
        from suitkit.cms.keyfiles import load_symmetric_key

        try:
            secret = load_symmetric_key(path.read_bytes())
        except SuitError:
            raise first from None
        return CoseKey.from_cose_key({1: 4, -1: secret})


def _kid_text(kid: bytes | None) -> str:
    if kid is None:
        return "no kid"
    if kid and all(0x20 < b < 0x7F for b in kid):
        return f"kid '{kid.decode()}'"
    return f"kid h'{kid.hex()}'"


@app.command("init")
def init(
    directory: DeviceDir,
    vendor_id: Annotated[str, typer.Option("--vendor-id", help="Vendor ID (UUID).")],
    class_id: Annotated[str, typer.Option("--class-id", help="Class ID (UUID).")],
    trust: Annotated[
        list[Path],
        typer.Option(
            "--trust",
            exists=True,
            dir_okay=False,
            help="Trust anchor (repeatable): a public key (PEM, DER, COSE_Key), an X.509 "
            "certificate (PEM or DER), or a MAC key (COSE_Key).",
        ),
    ],
    device_id: Annotated[str | None, typer.Option("--device-id", help="Device ID (UUID).")] = None,
    slots: Annotated[int, typer.Option("--slots", min=1, max=8)] = 2,
    flash_size: Annotated[int, typer.Option("--flash-size", min=1)] = 1 << 20,
    page_size: Annotated[int, typer.Option("--page-size", min=16)] = 4096,
    component: Annotated[
        list[str] | None,
        typer.Option(
            "--component",
            help="A component (repeatable, in order; text or h'HEX' parts separated by /); the "
            "first has SLOTS slots. Default: h'00', h'01', h'02'.",
        ),
    ] = None,
    decrypt_key: Annotated[
        list[str] | None,
        typer.Option(
            "--decrypt-key",
            help="[KID=]FILE (repeatable): a key for encrypted payloads, an AES key-encryption "
            "key or a private ECDH key (COSE_Key or PEM); KID (text or h'HEX') sets its kid.",
        ),
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            help="An MTI algorithm profile the device accepts (repeatable); a manifest outside "
            "them is rejected (alg-unsupported). Default: any supported algorithm.",
        ),
    ] = None,
    allow_equivalent: Annotated[
        bool,
        typer.Option(
            "--allow-equivalent", help="With --profile: ES256/EdDSA count as ESP256/Ed25519."
        ),
    ] = False,
    no_identity_checks: Annotated[
        bool,
        typer.Option(
            "--no-identity-checks",
            help="Accept manifests whose shared sequence does not check vendor and class ids.",
        ),
    ] = False,
    hw_type: Annotated[
        str | None,
        typer.Option("--hw-type", help="Hardware module type OID (RFC 4108, `cms load`)."),
    ] = None,
    serial: Annotated[
        str | None, typer.Option("--serial", help="Hardware serial number (hex; RFC 4108).")
    ] = None,
    community: Annotated[
        list[str] | None,
        typer.Option("--community", help="Community OID the device is in (repeatable)."),
    ] = None,
) -> None:
    """Create a device: components [h'00'] (SLOTS slots), [h'01'] and [h'02'] (or the
    --component ones) of FLASH_SIZE bytes each, the trust anchors, the decryption keys, the
    accepted algorithm profiles, an empty state and a device key for signing reports."""
    from suitkit.device.simulated import ComponentConfig, DeviceConfig, SimulatedDevice

    ids = [_component_id(c) for c in component or []] or [(b"\x00",), (b"\x01",), (b"\x02",)]
    if len(set(ids)) != len(ids):
        raise typer.BadParameter("a component is named twice", param_hint="--component")
    profiles = tuple(p.strip().lower() for p in profile or [])
    if profiles:
        from suitkit.encryption.profiles import PROFILES

        for p in profiles:
            if p not in PROFILES:
                raise typer.BadParameter(
                    f"unknown profile {p!r}; one of: {', '.join(PROFILES)}", param_hint="--profile"
                )
    if allow_equivalent and not profiles:
        raise typer.BadParameter("--allow-equivalent goes with --profile")
    serial_bytes = None
    if serial is not None:
        try:
            serial_bytes = bytes.fromhex(serial.removeprefix("0x"))
        except ValueError:
            raise typer.BadParameter(f"{serial!r} is not hex", param_hint="--serial") from None
    if hw_type is not None or community:
        from suitkit.cms.der import is_valid_oid

        for oid, hint in [(hw_type, "--hw-type"), *((c, "--community") for c in community or [])]:
            if oid is not None and not is_valid_oid(oid):
                raise typer.BadParameter(f"{oid!r} is not a dotted OID", param_hint=hint)
    keys = [_decryption_key(k) for k in decrypt_key or []]
    config = DeviceConfig(
        _uuid(vendor_id, "--vendor-id"),
        _uuid(class_id, "--class-id"),
        _uuid(device_id, "--device-id"),
        tuple(
            ComponentConfig(cid, flash_size, slots if i == 0 else 1) for i, cid in enumerate(ids)
        ),
        page_size,
        profiles=profiles,
        allow_equivalent=allow_equivalent,
        require_identity_checks=not no_identity_checks,
        hw_type=hw_type,
        serial=serial_bytes,
        communities=tuple(community or ()),
    )

    def make() -> SimulatedDevice:
        from suitkit.device.simulated import load_trust_key

        for p in trust:  # every trust anchor must load as a key (or a certificate)
            load_trust_key(p.read_bytes(), p)
        # also makes the report key
        return SimulatedDevice.init(directory, config, trust, decryption_keys=keys)

    _guard(make)
    from suitkit.format.manifest import component_id_text

    names = [component_id_text(cid) for cid in ids]
    names[0] += f" x{slots} slots"
    lines = [
        f"device initialised in {directory}: components {', '.join(names)}, {flash_size} bytes "
        f"each; {len(trust)} trust anchor(s); report key {directory / 'device-key.pub.pem'}"
    ]
    if keys:
        lines.append(
            "decryption keys: "
            + ", ".join(f"{k.kty.name.lower()} ({_kid_text(k.kid)})" for k in keys)
        )
    if profiles:
        lines.append(f"algorithm profiles: {', '.join(profiles)}")
    if hw_type is not None:
        lines.append(
            f"hardware module type {hw_type}"
            + (f", serial {serial_bytes.hex()}" if serial_bytes is not None else "")
        )
    for line in lines:
        typer.echo(line)


@app.command("update")
def update(
    directory: DeviceDir,
    envelope: ExistingFile,
    severed: Annotated[
        list[Path] | None,
        typer.Option("--severed", exists=True, dir_okay=False, help="A severed member file."),
    ] = None,
    payload: Annotated[
        list[str] | None,
        typer.Option("--payload", help="URI=FILE: serve FILE for URI (repeatable)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No trace.")] = False,
) -> None:
    """Authenticate ENVELOPE with the device's trust anchors and run the Update procedure,
    printing each command, component, parameters and result. A rejected envelope (bad
    signature, unparsable...) is reported too."""
    from suitkit.device.fetch import FileFetcher, SchemeFetcher
    from suitkit.device.http_fetch import HttpFetcher
    from suitkit.device.trace import summary_line

    mapping: dict[str, Path] = {}
    for item in payload or []:
        uri, sep, file = item.rpartition("=")
        if not sep or not uri or not file:
            raise typer.BadParameter(f"{item!r} is not URI=FILE", param_hint="--payload")
        if not Path(file).is_file():
            raise typer.BadParameter(f"{file} is not a file", param_hint="--payload")
        mapping[uri] = Path(file)
    fetcher = SchemeFetcher(FileFetcher(mapping), HttpFetcher())
    dev = _open(directory, fetcher)
    data = _guard(envelope.read_bytes)
    members = [_guard(p.read_bytes) for p in severed or []]
    result = _guard(
        lambda: dev.update(data, severed=members or None, reporter=None if quiet else _Printer())
    )
    typer.echo(summary_line(result))
    _echo_reports(dev)
    if not result.ok:
        _fail(str(result.error))


@app.command("boot")
def boot(
    directory: DeviceDir,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No trace.")] = False,
) -> None:
    """Run the bootloader: recover an interrupted update, then the Invocation procedure of the
    preferred slot's manifest, falling back to the other slots."""
    from suitkit.errors import SuitError

    dev = _open(directory)
    result = _guard(lambda: dev.boot(None if quiet else _Printer()))
    if result.recovered:
        typer.echo(f"recovery: {result.recovered}")
    for slot, attempt in result.attempts:
        if isinstance(attempt, SuitError):
            typer.echo(f"slot {slot}: manifest rejected: {attempt}")
        elif attempt.ok:
            typer.echo(f"slot {slot}: booted")
        else:
            typer.echo(f"slot {slot}: validation failed: {_one_line(str(attempt.error))}")
    _echo_reports(dev)
    if not result.ok:
        if not result.attempts:
            _fail("no bootable image (no manifest is installed)")
        slot, last = result.attempts[-1]
        error = last if isinstance(last, SuitError) else last.error
        _fail(f"no bootable image; last attempt, slot {slot}: {error}")


@app.command("status")
def status(
    directory: DeviceDir,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Show the identity, components, slots (length and digest of each), boot state, sequence
    numbers, journal and trust anchors of a device."""
    dev = _open(directory)
    st = dev.status()
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    from suitkit.device.simulated import cid_from_key
    from suitkit.format.manifest import component_id_text

    ident = st["identity"]
    typer.echo(f"device {directory}")
    typer.echo(f"  vendor-id {ident['vendor-id']}  class-id {ident['class-id']}")
    if ident.get("device-id"):
        typer.echo(f"  device-id {ident['device-id']}")
    if ident.get("hw-type"):
        typer.echo(f"  hardware type {ident['hw-type']}  serial {ident.get('serial') or 'none'}")
    if ident.get("profiles"):
        typer.echo(f"  algorithm profiles: {', '.join(ident['profiles'])}")
    if not ident.get("require-identity-checks", True):
        typer.echo("  identity checks in the shared sequence: not required")
    state = st["state"]
    sizes = {c["id"]: c["size"] for c in st["components"]}
    for item in st["contents"]:
        cid, length = item["component"], item["length"]
        content = "empty" if length is None else f"{length} bytes, {item['digest']}"
        name = component_id_text(cid_from_key(cid))
        typer.echo(f"  component {name} slot {item['slot']}: {content} (of {sizes[cid]})")
    boot_state = state["boot"]
    typer.echo(f"  boot: preferred slot {boot_state['preferred']}, active {boot_state['active']}")
    for slot, name in sorted(boot_state["manifests"].items()):
        typer.echo(f"    slot {slot}: {name}")
    for key, n in sorted(state["sequence-numbers"].items()):
        typer.echo(f"  sequence number ({key}): {n}")
    typer.echo(f"  journal: {state['journal'] or 'none'}")
    typer.echo(f"  trusted keys: {', '.join(st['trust']) or 'none'}")
    keys = st.get("decryption-keys") or []
    typer.echo(f"  decryption keys: {', '.join(keys) or 'none'}")


@report_app.command("show")
def show(
    report: ExistingFile,
    key: Annotated[
        list[Path] | None,
        typer.Option("--key", exists=True, dir_okay=False, help="Public key to verify with."),
    ] = None,
) -> None:
    """Parse a SUIT_Report (COSE_Sign1-wrapped or bare) and print it; with --key the signature
    must verify."""
    from suitkit.device.report import verify_report

    def load() -> Any:
        from suitkit.cose import CoseKey

        keys = [CoseKey.load(k) for k in key] if key else None
        return verify_report(report.read_bytes(), keys)

    parsed = _guard(load)
    typer.echo(f"signature: {'verified' if key else 'not checked (no --key)'}")
    for line in parsed.lines():
        typer.echo(line)
    if not parsed.ok:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - for `python -m suitkit.cli.device`
    root = typer.Typer()
    root.add_typer(app, name="device")
    root.add_typer(report_app, name="report")
    root(prog_name="suitkit")
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
