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


@app.command("init")
def init(
    directory: DeviceDir,
    vendor_id: Annotated[str, typer.Option("--vendor-id", help="Vendor ID (UUID).")],
    class_id: Annotated[str, typer.Option("--class-id", help="Class ID (UUID).")],
    trust: Annotated[
        list[Path],
        typer.Option("--trust", exists=True, dir_okay=False, help="Public key (PEM) to trust."),
    ],
    device_id: Annotated[str | None, typer.Option("--device-id", help="Device ID (UUID).")] = None,
    slots: Annotated[int, typer.Option("--slots", min=1, max=8)] = 2,
    flash_size: Annotated[int, typer.Option("--flash-size", min=1)] = 1 << 20,
    page_size: Annotated[int, typer.Option("--page-size", min=16)] = 4096,
) -> None:
    """Create a device: components [h'00'] (SLOTS slots), [h'01'] and [h'02'] of FLASH_SIZE
    bytes each, the trusted keys, an empty state and a device key for signing reports."""
    from suitkit.device.simulated import ComponentConfig, DeviceConfig, SimulatedDevice

    config = DeviceConfig(
        _uuid(vendor_id, "--vendor-id"),
        _uuid(class_id, "--class-id"),
        _uuid(device_id, "--device-id"),
        (
            ComponentConfig((b"\x00",), flash_size, slots),
            ComponentConfig((b"\x01",), flash_size),
            ComponentConfig((b"\x02",), flash_size),
        ),
        page_size,
    )

    def make() -> SimulatedDevice:
        from suitkit.cose import CoseKey

        for p in trust:  # every trust anchor must load as a key
            CoseKey.load(p)
        return SimulatedDevice.init(directory, config, trust)  # also makes the report key

    _guard(make)
    typer.echo(
        f"device initialised in {directory}: components [h'00'] x{slots} slots, [h'01'], "
        f"[h'02'], {flash_size} bytes each; {len(trust)} trusted key(s); "
        f"report key {directory / 'device-key.pub.pem'}"
    )


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
    ident = st["identity"]
    typer.echo(f"device {directory}")
    typer.echo(f"  vendor-id {ident['vendor-id']}  class-id {ident['class-id']}")
    if ident.get("device-id"):
        typer.echo(f"  device-id {ident['device-id']}")
    state = st["state"]
    sizes = {c["id"]: c["size"] for c in st["components"]}
    for item in st["contents"]:
        cid, length = item["component"], item["length"]
        content = "empty" if length is None else f"{length} bytes, {item['digest']}"
        name = "[" + ", ".join(f"h'{p}'" for p in cid.split("/")) + "]"
        typer.echo(f"  component {name} slot {item['slot']}: {content} (of {sizes[cid]})")
    boot_state = state["boot"]
    typer.echo(f"  boot: preferred slot {boot_state['preferred']}, active {boot_state['active']}")
    for slot, name in sorted(boot_state["manifests"].items()):
        typer.echo(f"    slot {slot}: {name}")
    for key, n in sorted(state["sequence-numbers"].items()):
        typer.echo(f"  sequence number ({key}): {n}")
    typer.echo(f"  journal: {state['journal'] or 'none'}")
    typer.echo(f"  trusted keys: {', '.join(st['trust']) or 'none'}")


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
