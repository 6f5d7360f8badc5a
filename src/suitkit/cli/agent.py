"""``suitkit agent ...`` (one simulated device talking to the update service) and
``suitkit fleet ...`` (many of them in one process).

Mounted by :mod:`suitkit.cli.main` as ``agent`` (:data:`agent_app`) and ``fleet``
(:data:`fleet_app`); ``python -m suitkit.cli.agent`` runs both stand-alone. Exit status: 0
success (nothing to do, or updated), 1 the update failed or the run found a problem, 2 usage
error, 3 a simulated power cut stopped the agent (run it again: it recovers).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from suitkit.agent.fleet import FleetResult, FleetSimulator, FleetStats

agent_app = typer.Typer(
    help="The device agent: a simulated device that checks in with the update service, "
    "downloads, installs, boots and reports.",
    no_args_is_help=True,
)
fleet_app = typer.Typer(help="Simulated fleets of devices.", no_args_is_help=True)
#: The agent commands (``run``, ``enroll``, ``status``).
app = agent_app

DeviceDir = Annotated[Path, typer.Argument(help="The device directory (suitkit device init).")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"suitkit: error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def _log(quiet: bool) -> Any:
    def log(message: str) -> None:
        if not quiet:
            typer.echo(f"{time.strftime('%H:%M:%S')} {message}")

    return log


def _device_identity(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((directory / "device.json").read_text()))
    except (OSError, ValueError):
        _fail(f"{directory} is not a device directory (run `suitkit device init` first)")


def _make_api(server: str, token: str, *, durable: bool = True) -> Any:
    if server.startswith(("coap://", "coap+tcp://")):
        from suitkit.transport.coap_client import CoapDeviceApi

        return CoapDeviceApi(server, token, durable=durable)
    if server.startswith(("http://", "https://")):
        from suitkit.transport.http_client import HttpDeviceApi

        return HttpDeviceApi(server, token, durable=durable)
    raise typer.BadParameter(f"{server!r}: give an http(s):// or coap:// URL",
                             param_hint="--server")


@agent_app.command("enroll")
def enroll(
    directory: DeviceDir,
    server: Annotated[str, typer.Option("--server", help="The update service: http(s):// or "
                                        "coap:// URL.")],
    token: Annotated[str | None, typer.Option("--token", help="The device token the server "
                                              "gave at registration.")] = None,
    admin_token: Annotated[
        str | None,
        typer.Option("--admin-token", help="Register the device now (its identity and report "
                     "key, device-key.pub.pem) with this operator token (admin role) instead "
                     "of giving --token; needs an http(s) --server."),
    ] = None,
    group: Annotated[str | None, typer.Option("--group", help="With --admin-token.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="With --admin-token.")] = None,
    mqtt: Annotated[str | None, typer.Option("--mqtt", help="MQTT broker for push wake-ups, "
                                             "mqtt://host:port.")] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Polling period in "
                                            "seconds.")] = 60.0,
) -> None:
    """Store the server URL and the device's token in DEVICE_DIR/agent.json (mode 0600)."""
    from suitkit.agent.state import AgentConfig

    ident = _device_identity(directory)
    if not ident.get("device-id"):
        _fail(f"{directory}: the device has no device id (device init --device-id UUID)")
    if (token is None) == (admin_token is None):
        raise typer.BadParameter("give --token or --admin-token (one of them)")
    if admin_token is not None:
        import httpx

        if not server.startswith(("http://", "https://")):
            raise typer.BadParameter("--admin-token registers over http(s)", param_hint="--server")
        body: dict[str, Any] = {
            "device_id": ident["device-id"], "vendor_id": ident["vendor-id"],
            "class_id": ident["class-id"],
            "public_key": (directory / "device-key.pub.pem").read_text(),
            "tags": list(tag or []),
        }
        if group:
            body["group"] = group
        try:
            r = httpx.post(f"{server.rstrip('/')}/api/v1/devices", json=body, timeout=30,
                           headers={"Authorization": f"Bearer {admin_token}"})
        except httpx.HTTPError as exc:
            _fail(f"cannot reach {server}: {exc}")
        if r.status_code != 201:
            _fail(f"registration refused: {r.status_code} {r.text[:300]}")
        token = str(r.json()["token"])
    assert token is not None
    path = AgentConfig(server.rstrip("/"), token, mqtt, interval).save(directory)
    typer.echo(f"enrolled device {ident['device-id']} with {server}: credentials in {path} "
               "(mode 0600)")


@agent_app.command("run")
def run(
    directory: DeviceDir,
    server: Annotated[str | None, typer.Option("--server", help="Override the enrolled server "
                                               "URL (http(s):// or coap://).")] = None,
    interval: Annotated[float | None, typer.Option("--interval", min=0.1,
                                                   help="Polling period, seconds (jittered "
                                                   "±20%).")] = None,
    once: Annotated[bool, typer.Option("--once", help="One check-in (and the update it "
                                       "brings, retried until done), then exit.")] = False,
    mqtt: Annotated[str | None, typer.Option("--mqtt", help="MQTT broker for push wake-ups "
                                             "(mqtt://host:port).")] = None,
    max_failures: Annotated[int | None, typer.Option(
        "--max-failures", min=1, help="Give up after this many errors in a row (default: "
        "never; 20 with --once).")] = None,
    faults: Annotated[str | None, typer.Option(
        "--faults", help="Simulate faults: drop=P,corrupt=P,slow=P (see fleet simulate).")] = None,
    power_cut_after: Annotated[int | None, typer.Option(
        "--power-cut-after", min=0, help="Simulate a power cut after N flash/state writes of "
        "the next install: the agent stops (exit 3) as the device would; run it again.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Run the agent of the device in DEVICE_DIR (enrolled with `agent enroll`)."""
    from suitkit.agent.state import AgentConfig

    _device_identity(directory)
    try:
        cfg = AgentConfig.load(directory)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    url = server or cfg.server
    period = interval if interval is not None else cfg.interval
    broker = mqtt or cfg.mqtt
    limit = max_failures if max_failures is not None else (20 if once else None)
    try:
        code = asyncio.run(_run(directory, url, cfg.token, period, once, broker, limit, faults,
                                power_cut_after, _log(quiet)))
    except KeyboardInterrupt:
        typer.echo("stopped (the agent continues where it stopped when run again)", err=True)
        code = 130
    raise typer.Exit(code)


async def _run(directory: Path, server: str, token: str, interval: float, once: bool,
               mqtt: str | None, max_failures: int | None, faults: str | None,
               power_cut_after: int | None, log: Any) -> int:
    import random

    from suitkit.agent.core import Agent, AgentHooks
    from suitkit.agent.faults import DeviceFaults, FaultSpec, FaultyApi
    from suitkit.agent.runner import GaveUp, run_agent
    from suitkit.device.simulated import FaultInjector, PowerCut
    from suitkit.transport.fetchers import network_fetcher

    api = _make_api(server, token)
    drawn: DeviceFaults | None = None
    if faults:
        try:
            spec = FaultSpec.parse(faults)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--faults") from None
        drawn = DeviceFaults.draw(spec, random.Random())
        api = FaultyApi(api, drawn)
    cut = [power_cut_after]

    def install_fault() -> FaultInjector | None:
        n, cut[0] = cut[0], None
        if n is not None:
            return FaultInjector(cut_after=n)
        if drawn is not None:  # --faults powerloss=P: a cut at a random write
            offer = agent.state.current_offer
            size = sum(p.size for p in offer.payloads) if offer else 0
            page = int(_device_identity(directory).get("page-size") or 4096)
            return drawn.install_fault(size // page + 12)
        return None

    hooks = AgentHooks(install_fault=install_fault, reboot_on_power_cut=False,
                       fallback=network_fetcher())
    agent = Agent(directory, api, hooks=hooks, log=log)
    if agent.state.phase != "idle":
        log(f"continuing an interrupted update (phase {agent.state.phase})")
    wake: asyncio.Event | None = None
    listener: asyncio.Task[None] | None = None
    if mqtt:
        from suitkit.agent.wakeup import listen

        wake = asyncio.Event()
        device_id = str(agent.checkin_body()["device_id"])
        listener = asyncio.create_task(listen(mqtt, device_id, wake, log=log))
    try:
        result = await run_agent(agent, interval=interval, once=once, wake=wake,
                                 max_failures=max_failures, log=log)
    except PowerCut:
        log("POWER CUT (simulated): the device is off; run the agent again to recover")
        return 3
    except GaveUp as exc:
        log(f"giving up: {exc}")
        return 1
    finally:
        if listener is not None:
            listener.cancel()
        await api.aclose()
    if result.outcome == "nothing":
        log("nothing to do")
        return 0
    log(f"{result.outcome}" + (f": {result.reason}" if result.reason else ""))
    return 0 if result.outcome == "updated" else 1


@agent_app.command("status")
def status(
    directory: DeviceDir,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """What the agent is doing (phase, offer, counters) and what the device runs."""
    from dataclasses import asdict

    from suitkit.agent.core import running_version
    from suitkit.agent.state import AgentConfig, AgentState
    from suitkit.device.simulated import SimulatedDevice

    _device_identity(directory)
    st = AgentState.load(directory)
    seq, digest = running_version(SimulatedDevice(directory))
    try:
        server: str | None = AgentConfig.load(directory).server
    except (OSError, ValueError):
        server = None
    out = {
        "server": server, "phase": st.phase, "offer": st.offer,
        "running": {"sequence_number": seq, "manifest_digest": digest},
        "counters": asdict(st.counters), "history": st.history,
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"device {directory}: server {server or '(not enrolled)'}")
    typer.echo(f"  runs: sequence number {seq}, {digest or 'no manifest booted'}")
    typer.echo(f"  agent phase: {st.phase}")
    if st.offer:
        typer.echo(f"  offer: campaign {st.offer['campaign_id']}, sequence number "
                   f"{st.offer['sequence_number']}")
    typer.echo("  counters: " + ", ".join(f"{k} {v}" for k, v in asdict(st.counters).items()))
    for h in st.history[-5:]:
        typer.echo(f"  campaign {h['campaign_id']}: {h['outcome']}"
                   + (f" ({h['reason']})" if h.get("reason") else ""))


# --- fleet ------------------------------------------------------------------------------------


@fleet_app.command("register")
def fleet_register(
    server: Annotated[str, typer.Option("--server", help="The update service (http(s)://).")],
    devices: Annotated[int, typer.Option("--devices", min=1, help="How many devices.")],
    token: Annotated[str, typer.Option("--token", help="Operator API token (admin).")],
    vendor_id: Annotated[str, typer.Option("--vendor-id", help="Vendor UUID of the devices.")],
    class_id: Annotated[str, typer.Option("--class-id", help="Class UUID of the devices.")],
    group: Annotated[str | None, typer.Option("--group", help="Put them in this group.")] =
        None,
    devices_file: Annotated[Path, typer.Option(
        "--devices-file", help="Where to write the fleet file (mode 0600).")] =
        Path("fleet.json"),
) -> None:
    """Register DEVICES simulated devices (identities and report keys generated here) and
    write the fleet file that `fleet simulate` reads."""
    from suitkit.agent.fleet import register as register_devices

    try:
        fleet = asyncio.run(register_devices(server, token, devices, vendor_id, class_id,
                                             group=group))
    except Exception as exc:
        _fail(str(exc))
    fleet.save(devices_file)
    typer.echo(f"registered {devices} devices" + (f" in group {group}" if group else "") +
               f"; fleet file {devices_file} (mode 0600)")


@fleet_app.command("simulate")
def simulate(
    server: Annotated[str, typer.Option("--server", help="The update service (http(s)://).")],
    devices: Annotated[int, typer.Option("--devices", min=1, help="How many devices.")],
    transport: Annotated[str, typer.Option(
        "--transport", help="http, coap, or both (http,coap: devices alternate).")] = "http",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1,
                                             help="Devices inside a cycle at once.")] = 50,
    faults: Annotated[str | None, typer.Option(
        "--faults", help="drop=P,powerloss=P,corrupt=P,slow=P (probabilities).")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", help="Operator API token: register devices (admin) and watch the campaign "
        "(viewer).")] = None,
    register: Annotated[bool, typer.Option(
        "--register", help="Register DEVICES new devices (needs --token, admin) and write "
        "them to --devices-file.")] = False,
    devices_file: Annotated[Path, typer.Option(
        "--devices-file", help="The fleet file: device ids, tokens and report keys.")] =
        Path("fleet.json"),
    trust: Annotated[list[Path] | None, typer.Option(
        "--trust", exists=True, dir_okay=False,
        help="Author public key the devices trust (repeatable).")] = None,
    vendor_id: Annotated[str | None, typer.Option("--vendor-id", help="With --register.")] = None,
    class_id: Annotated[str | None, typer.Option("--class-id", help="With --register.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="With --register.")] = None,
    coap: Annotated[str | None, typer.Option(
        "--coap", help="The server's CoAP URL (default coap://<server host>:5683).")] = None,
    campaign: Annotated[int | None, typer.Option(
        "--campaign", help="The campaign to watch (default: the one offered).")] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.05,
                                            help="Polling period of each device, s.")] = 1.0,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Stop after this many "
                                           "seconds.")] = 600.0,
    flash_size: Annotated[str, typer.Option(
        "--flash-size", help="Size of each of the two slots of the device's component "
        "(64K, 1M...).")] = "1M",
    factory_image: Annotated[bool, typer.Option(
        "--factory-image/--no-factory-image",
        help="Give every device a booted image before the campaign.")] = True,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", help="Where device directories live (default: a temporary one).")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the device directories.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (faults, jitter).")] =
        None,
    as_json: Annotated[Path | None, typer.Option(
        "--json", help="Also write the outcome (summary and every device) to this file.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Run DEVICES simulated devices against the server in one process (asyncio), with Rich
    progress bars, and print the outcome: updated, failed by reason, retried, recovered from
    power loss, and that none was bricked."""
    import os
    import tempfile

    from suitkit.agent.faults import FaultSpec
    from suitkit.agent.fleet import FleetFile, FleetOptions, FleetSimulator
    from suitkit.agent.fleet import register as register_devices

    try:
        spec = FaultSpec.parse(faults)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from None
    kinds = tuple(t.strip() for t in transport.replace("both", "http,coap").split(",") if t)
    if not kinds or any(k not in ("http", "coap") for k in kinds):
        raise typer.BadParameter("http, coap or both", param_hint="--transport")
    if not trust:
        raise typer.BadParameter("give the author public key the devices trust",
                                 param_hint="--trust")
    size = _size(flash_size)
    if register:
        if not token:
            raise typer.BadParameter("--register needs --token (admin)", param_hint="--token")
        if not vendor_id or not class_id:
            raise typer.BadParameter("--register needs --vendor-id and --class-id")
        try:
            fleet = asyncio.run(register_devices(server, token, devices, vendor_id, class_id,
                                                 group=group))
        except Exception as exc:
            _fail(str(exc))
        fleet.save(devices_file)
        typer.echo(f"registered {devices} devices; fleet file {devices_file} (mode 0600)")
    else:
        try:
            fleet = FleetFile.load(devices_file)
        except (OSError, ValueError) as exc:
            _fail(f"{exc} (use --register to create it)")
        if len(fleet.devices) < devices:
            _fail(f"{devices_file} holds {len(fleet.devices)} devices, fewer than {devices}")
        fleet.devices = fleet.devices[:devices]
    coap_url = coap
    if "coap" in kinds and coap_url is None:
        from urllib.parse import urlsplit

        coap_url = f"coap://{urlsplit(server).hostname}:5683"
    opts = FleetOptions(
        concurrency=concurrency, interval=interval, faults=spec, seed=seed, timeout=timeout,
        flash_size=size, factory_image=factory_image, keep=keep, transports=kinds,
        coap_url=coap_url, operator_token=token, campaign_id=campaign,
    )
    tmp = None
    if workdir is None:
        # device directories are many small files: on tmpfs when there is one
        shm = Path("/dev/shm")
        where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
        tmp = tempfile.TemporaryDirectory(prefix="suitkit-fleet-", dir=where)
        workdir = Path(tmp.name)
    try:
        sim = FleetSimulator(server, fleet, trust, workdir, opts)
        result = asyncio.run(_simulate(sim, progress))
    finally:
        if tmp is not None and not keep:
            tmp.cleanup()
    _print_result(result, kinds, spec_text=str(spec))
    if as_json is not None:
        from dataclasses import asdict

        as_json.write_text(json.dumps({
            "summary": result.summary(), "devices": [asdict(o) for o in result.outcomes],
        }, indent=1))
    bad = result.bricked or result.count("unfinished")
    raise typer.Exit(1 if bad else 0)


def _size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in ("K", "M", "G") else t
    if not digits.isdigit() or int(digits) <= 0:
        raise typer.BadParameter(f"{text!r} is not a size", param_hint="--flash-size")
    return int(digits) * mult


async def _simulate(sim: FleetSimulator, show: bool) -> FleetResult:
    if not show:
        return await sim.run()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    stats: FleetStats = sim.stats
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[detail]}"))
    with Progress(*columns, refresh_per_second=8) as bar:
        done = bar.add_task("devices finished", total=stats.total, detail="")
        updated = bar.add_task("[green]updated", total=stats.total, detail="")
        failed = bar.add_task("[red]failed", total=stats.total, detail="")
        task = asyncio.create_task(sim.run())
        while True:
            bar.update(done, completed=stats.done,
                       detail=f"retries {stats.retries}"
                       + (f", campaign {stats.campaign_state}" if stats.campaign_state else ""))
            bar.update(updated, completed=stats.updated)
            bar.update(failed, completed=stats.failed)
            if task.done():
                return task.result()
            await asyncio.wait({task}, timeout=0.2)


def _print_result(result: FleetResult, kinds: tuple[str, ...], spec_text: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"fleet outcome: {len(result.outcomes)} devices over {'+'.join(kinds)}, "
                  f"faults {spec_text}, {result.elapsed:.1f} s")
    table = Table()
    table.add_column("outcome")
    table.add_column("devices", justify="right")
    table.add_row("[green]updated", str(result.count("updated")))
    for reason, n in sorted(result.failure_reasons.items()):
        table.add_row(f"[red]failed: {reason}", str(n))
    if result.count("not-offered"):
        table.add_row("not offered (campaign stopped / not targeted)",
                      str(result.count("not-offered")))
    if result.count("unfinished"):
        table.add_row("[yellow]unfinished (timeout)", str(result.count("unfinished")))
    table.add_section()
    table.add_row("retried (network or server errors)", str(result.retried))
    table.add_row("power cut during install", str(result.power_cuts))
    table.add_row("recovered from power loss", str(result.recovered))
    table.add_row("bricked (no bootable image)", str(result.bricked))
    console.print(table)
    c = result.campaign
    if c:
        counts = ", ".join(f"{k} {v}" for k, v in c.get("counts", {}).items())
        console.print(f"campaign {c.get('id')} ({c.get('name')}): {c.get('state')}; {counts}"
                      + (f"; {c.get('pause_reason')}" if c.get("pause_reason") else ""))


def main() -> None:  # pragma: no cover - `python -m suitkit.cli.agent`
    root = typer.Typer(no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False)
    root.add_typer(agent_app, name="agent")
    root.add_typer(fleet_app, name="fleet")
    try:
        root(prog_name="suitkit")
    except SystemExit as exc:
        sys.exit(exc.code)


if __name__ == "__main__":  # pragma: no cover
    main()
