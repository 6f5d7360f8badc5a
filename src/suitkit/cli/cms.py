"""``suitkit cms``: CMS-protected firmware packages (RFC 4108).

Exit codes: 0 success, 1 invalid / not authentic / load error, 2 usage error. Errors are one line
on stderr. Imports of suitkit.cms (pyasn1, cryptography) happen inside the commands so that the
CLI starts fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from suitkit.cms.model import PackageName

app = typer.Typer(
    help="CMS-protected firmware packages (RFC 4108): create, verify, show, load, receipts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
receipt_app = typer.Typer(
    help="Firmware package load receipts and error reports (RFC 4108 §3, §4).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(receipt_app, name="receipt")

EXIT_INVALID = 1
EXIT_USAGE = 2


def _die(message: str, code: int = EXIT_INVALID) -> NoReturn:
    typer.echo(f"suitkit: error: {message}", err=True)
    raise typer.Exit(code)


def _usage(message: str) -> NoReturn:
    _die(message, EXIT_USAGE)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _die(f"cannot read {what} {path}: {exc.strerror or exc}")


def _hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        _usage(f"{what} must be hexadecimal, got {value!r}")


def _oid(value: str, what: str) -> str:
    from suitkit.cms.der import is_valid_oid

    if not is_valid_oid(value):
        _usage(f"{what} must be a dotted OID, got {value!r}")
    return value


def _package_name(text: str) -> PackageName:
    """``OID:VERSION`` (preferred) or ``legacy:HEX`` for --depends."""
    from suitkit.cms.model import LegacyName, PreferredName

    if text.startswith("legacy:"):
        return LegacyName(_hex(text[7:], "legacy dependency"))
    oid, sep, ver = text.rpartition(":")
    if not sep or not ver.isdigit():
        _usage(f"--depends takes OID:MIN_VERSION or legacy:HEX, got {text!r}")
    return PreferredName(_oid(oid, "--depends OID"), int(ver))


def _anchors(files: list[Path]) -> list[Any]:
    from suitkit.cms.keyfiles import load_trust_anchor
    from suitkit.errors import SuitError

    out = []
    for f in files:
        try:
            out.append(load_trust_anchor(_read(f, "trust anchor"), label=str(f)))
        except SuitError as exc:
            _die(f"{f}: {exc.message}")
    return out


def _report_error(exc: Exception) -> NoReturn:
    from suitkit.cms.errors import CmsError

    if isinstance(exc, CmsError):
        _die(f"{exc.message} [{exc.code.spec_name} ({int(exc.code)})]")
    _die(str(exc))


# --- create ------------------------------------------------------------------------------------


@app.command()
def create(
    firmware: Path = typer.Option(..., "--firmware", help="The firmware image."),
    pkg_oid: str | None = typer.Option(
        None, "--pkg-oid", help="Package OID (preferred name, RFC 4108 §2.2.3)."
    ),
    version: int | None = typer.Option(None, "--version", min=0, help="Package version number."),
    stale: int | None = typer.Option(
        None, "--stale", min=0, help="Stale version number: versions up to it must no longer load."
    ),
    legacy_name: str | None = typer.Option(
        None, "--legacy-name", help="Legacy package name (hex) instead of --pkg-oid/--version."
    ),
    legacy_stale: str | None = typer.Option(
        None, "--legacy-stale", help="Stale legacy package name (hex)."
    ),
    target_hw: list[str] = typer.Option(
        ..., "--target-hw", help="Target hardware module type OID (repeatable)."
    ),
    community: list[str] = typer.Option(
        [], "--community", help="Community OID allowed to load it (repeatable)."
    ),
    pkg_type: int | None = typer.Option(
        None, "--pkg-type", help="Firmware package type (RFC 4108 §2.2.9)."
    ),
    depends: list[str] = typer.Option(
        [], "--depends", help="Dependency OID:MIN_VERSION or legacy:HEX (repeatable)."
    ),
    impl_crypto: list[str] = typer.Option(
        [], "--impl-crypto-alg", help="Algorithm OID the firmware implements (repeatable)."
    ),
    impl_compress: list[str] = typer.Option(
        [], "--impl-compress-alg", help="Compression OID the firmware implements (repeatable)."
    ),
    compress: bool = typer.Option(
        False, "--compress", help="zlib-compress the firmware (RFC 3274)."
    ),
    encrypt_key: Path | None = typer.Option(
        None, "--encrypt-key", help="Content-encryption key file (16/32 raw octets or hex)."
    ),
    key_id: str | None = typer.Option(
        None, "--key-id", help="Decrypt key identifier (hex) naming --encrypt-key."
    ),
    cipher: str = typer.Option("gcm", "--cipher", help="gcm or cbc (AES key size from the key)."),
    wrap_kek: Path | None = typer.Option(
        None, "--wrap-kek", help="Also wrap the key with this KEK (RFC 4108 §2.3.1)."
    ),
    kek_id: str | None = typer.Option(None, "--kek-id", help="Identifier (hex) of --wrap-kek."),
    key: Path = typer.Option(
        ..., "--key", help="Signer private key (PEM/DER EC, Ed25519, RSA; or HSS/LMS)."
    ),
    cert: Path | None = typer.Option(
        None, "--cert", help="Signer certificate (included in the package)."
    ),
    chain: list[Path] = typer.Option(
        [], "--chain", help="Extra certificates to include (repeatable)."
    ),
    digest: str | None = typer.Option(
        None, "--digest", help="sha256, sha384 or sha512 (default: from the key)."
    ),
    description: str | None = typer.Option(
        None, "--description", help="Text for the content-hints attribute."
    ),
    no_signing_time: bool = typer.Option(
        False, "--no-signing-time", help="Omit the signing-time attribute."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the package (DER)."),
) -> None:
    """Build a signed (optionally compressed and encrypted) firmware package (RFC 4108 §2)."""
    from suitkit.cms import crypto
    from suitkit.cms.keyfiles import (
        load_certificate,
        load_certificates,
        load_private_key,
        load_symmetric_key,
    )
    from suitkit.cms.model import FirmwarePackageId, FirmwarePackageInfo, LegacyName, PreferredName
    from suitkit.cms.oids import ContentEncryptionAlgorithm, DigestAlgorithm
    from suitkit.cms.package import Encryption, PackageSpec, build_package_chunks
    from suitkit.cms.signeddata import Signer
    from suitkit.errors import SuitError

    name: PreferredName | LegacyName
    stale_value: int | bytes | None
    if legacy_name is not None:
        if pkg_oid is not None or version is not None or stale is not None:
            _usage("--legacy-name excludes --pkg-oid, --version and --stale")
        name = LegacyName(_hex(legacy_name, "--legacy-name"))
        stale_value = _hex(legacy_stale, "--legacy-stale") if legacy_stale is not None else None
    else:
        if pkg_oid is None or version is None:
            _usage("give --pkg-oid and --version (or --legacy-name)")
        if legacy_stale is not None:
            _usage("--legacy-stale goes with --legacy-name")
        name = PreferredName(_oid(pkg_oid, "--pkg-oid"), version)
        stale_value = stale
    targets = [_oid(t, "--target-hw") for t in target_hw]
    communities = [_oid(c, "--community") for c in community]
    try:
        signing_key = load_private_key(_read(key, "key"))
        certificate = load_certificate(_read(cert, "certificate")) if cert is not None else None
        extra = [c for f in chain for c in load_certificates(_read(f, "certificate"))]
        encryption = None
        if encrypt_key is not None or key_id is not None:
            if encrypt_key is None or key_id is None:
                _usage("--encrypt-key and --key-id go together")
            content_key = load_symmetric_key(_read(encrypt_key, "key"))
            if cipher not in ("gcm", "cbc"):
                _usage("--cipher is gcm or cbc")
            algorithm = {
                ("gcm", 16): ContentEncryptionAlgorithm.AES128_GCM,
                ("gcm", 32): ContentEncryptionAlgorithm.AES256_GCM,
                ("cbc", 16): ContentEncryptionAlgorithm.AES128_CBC,
                ("cbc", 32): ContentEncryptionAlgorithm.AES256_CBC,
            }[(cipher, len(content_key))]
            kek = None
            if wrap_kek is not None or kek_id is not None:
                if wrap_kek is None or kek_id is None:
                    _usage("--wrap-kek and --kek-id go together")
                kek = load_symmetric_key(_read(wrap_kek, "KEK"))
            encryption = Encryption(
                content_key,
                _hex(key_id, "--key-id"),
                algorithm,
                kek,
                _hex(kek_id, "--kek-id") if kek_id else None,
            )
        elif wrap_kek is not None:
            _usage("--wrap-kek needs --encrypt-key")
    except SuitError as exc:
        _die(exc.message)
    digest_alg = None
    if digest is not None:
        digests = {
            "sha256": DigestAlgorithm.SHA256,
            "sha384": DigestAlgorithm.SHA384,
            "sha512": DigestAlgorithm.SHA512,
        }
        if digest not in digests:
            _usage("--digest is sha256, sha384 or sha512")
        digest_alg = digests[digest]
    info = None
    if pkg_type is not None or depends:
        info = FirmwarePackageInfo(pkg_type, tuple(_package_name(d) for d in depends) or None)
    spec = PackageSpec(
        package_id=FirmwarePackageId(name, stale_value),
        target_hardware=targets,
        community_ids=communities or None,
        package_info=info,
        impl_crypto_algs=[_oid(a, "--impl-crypto-alg") for a in impl_crypto] or None,
        impl_compress_algs=[_oid(a, "--impl-compress-alg") for a in impl_compress] or None,
        compress=compress,
        encryption=encryption,
        description=description,
    )
    if no_signing_time:
        spec.signing_time = None
    fw = _read(firmware, "firmware")
    signer = Signer(
        signing_key, certificate=certificate, digest=digest_alg, extra_certificates=extra
    )
    try:
        chunks = build_package_chunks(fw, spec, signer)
    except ValueError as exc:
        _usage(str(exc))
    from suitkit.cms.device_store import atomic_write

    try:
        atomic_write(output, b"".join(chunks))
    except OSError as exc:
        _die(f"cannot write {output}: {exc.strerror or exc}")
    if isinstance(signing_key, crypto.HssLmsPrivateKey):  # stateful key: persist the new state
        atomic_write(key, signing_key.serialize(), 0o600)
    typer.echo(f"wrote {output} ({sum(len(c) for c in chunks)} octets, package {name})")


# --- verify / show -----------------------------------------------------------------------------


@app.command()
def verify(
    package: Path = typer.Argument(..., help="The package (DER)."),
    trust: list[Path] = typer.Option(
        ..., "--trust", help="Trust anchor certificate or public key (repeatable)."
    ),
    decrypt_key: list[str] = typer.Option(
        [], "--decrypt-key", help="HEXID=FILE key to check encrypted firmware."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Verify a package's structure, attributes and signature against trust anchors."""
    import datetime as dt

    from suitkit.cms.errors import CmsError
    from suitkit.cms.keyfiles import load_symmetric_key
    from suitkit.cms.loader import verify_package
    from suitkit.cms.oids import oid_name
    from suitkit.errors import SuitError

    data = _read(package, "package")
    anchors = _anchors(trust)
    keys = {}
    for item in decrypt_key:
        kid, sep, fname = item.partition("=")
        if not sep:
            _usage("--decrypt-key takes HEXID=FILE")
        try:
            keys[_hex(kid, "key id")] = load_symmetric_key(_read(Path(fname), "key"))
        except SuitError as exc:
            _die(exc.message)
    try:
        result = verify_package(data, anchors, now=dt.datetime.now(dt.UTC), decryption_keys=keys)
    except CmsError as exc:
        _report_error(exc)
    a = result.view.attributes
    out: dict[str, Any] = {
        "valid": True,
        "package": str(a.package_id.name),
        "stale": a.package_id.stale
        if not isinstance(a.package_id.stale, bytes)
        else a.package_id.stale.hex(),
        "target_hardware": list(a.target_hardware),
        "trust_anchor": result.trust_anchor_label,
        "layers": oid_name(result.view.sd.econtent_type),
    }
    if result.firmware_size is not None and result.firmware_digest is not None:
        out["firmware_size"] = result.firmware_size
        out["firmware_digest"] = result.firmware_digest.digest.hex()
    if result.notes:
        out["notes"] = result.notes
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(f"OK: {out['package']} signed by {out['trust_anchor']}")
        for k, v in out.items():
            if k not in ("valid", "package", "trust_anchor") and v is not None:
                typer.echo(f"  {k}: {v}")


@app.command()
def show(
    package: Path = typer.Argument(..., help="The package (DER)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a package's structure with OID names and decoded attributes (nothing is verified)."""
    from suitkit.cms.describe import describe_package, render_tree
    from suitkit.cms.errors import CmsError

    try:
        tree = describe_package(_read(package, "package"))
    except CmsError as exc:
        _report_error(exc)
    typer.echo(json.dumps(tree, indent=2) if as_json else "\n".join(render_tree(tree)))


# --- device ------------------------------------------------------------------------------------


@app.command("device-init")
def device_init(
    directory: Path = typer.Argument(..., help="The device directory to create."),
    hw_type: str = typer.Option(..., "--hw-type", help="Hardware module type OID."),
    serial: str | None = typer.Option(
        None, "--serial", help="Hardware serial number (hex); needed for receipts."
    ),
    trust: list[Path] = typer.Option(
        ..., "--trust", help="Trust anchor certificate or public key (repeatable)."
    ),
    untrusted_signer: list[Path] = typer.Option(
        [], "--unauthorized-trust", help="Trust anchor that is NOT a firmware signer (repeatable)."
    ),
    community: list[str] = typer.Option(
        [], "--community", help="Community OID this module is in (repeatable)."
    ),
    flash_size: int = typer.Option(
        256 << 20, "--flash-size", min=0, help="Octets available for a firmware image."
    ),
    package_type: list[int] = typer.Option(
        [], "--package-type", help="Supported package type (repeatable; default: any)."
    ),
    decrypt_key: list[str] = typer.Option(
        [],
        "--decrypt-key",
        help="HEXID=FILE firmware-decryption or key-encryption key (repeatable).",
    ),
    report_key: Path | None = typer.Option(
        None, "--report-key", help="Private key to sign receipts and error reports."
    ),
    report_cert: Path | None = typer.Option(
        None, "--report-cert", help="Certificate of --report-key."
    ),
    no_clock: bool = typer.Option(
        False, "--no-clock", help="The module has no clock (no validity-period checks)."
    ),
) -> None:
    """Create a stand-in CMS device directory (the simulated device of `suitkit device init
    ... --hw-type OID --serial HEX` hosts RFC 4108 loads as well).

    The directory holds the module's type, serial, trust anchors, keys and state (see
    suitkit.cms.device_store); `suitkit cms load` loads packages into it.
    """
    from suitkit.cms.device_store import DirectoryDevice
    from suitkit.cms.keyfiles import load_certificate, load_private_key, load_symmetric_key
    from suitkit.errors import SuitError

    _oid(hw_type, "--hw-type")
    anchors = [(str(f), _read(f, "trust anchor"), True) for f in trust]
    anchors += [(str(f), _read(f, "trust anchor"), False) for f in untrusted_signer]
    _anchors([*trust, *untrusted_signer])  # validate now
    keys = {}
    try:
        for item in decrypt_key:
            kid, sep, fname = item.partition("=")
            if not sep:
                _usage("--decrypt-key takes HEXID=FILE")
            keys[_hex(kid, "key id")] = load_symmetric_key(_read(Path(fname), "key"))
        rkey = rcert = None
        if (report_key is None) != (report_cert is None):
            _usage("--report-key and --report-cert go together")
        if report_key is not None and report_cert is not None:
            rkey, rcert = _read(report_key, "key"), _read(report_cert, "certificate")
            load_private_key(rkey)
            load_certificate(rcert)
    except SuitError as exc:
        _die(exc.message)
    DirectoryDevice.create(
        directory,
        hw_type=hw_type,
        hw_serial=_hex(serial, "--serial") if serial is not None else None,
        trust_anchor_files=anchors,
        communities=[_oid(c, "--community") for c in community],
        flash_size=flash_size,
        package_types=package_type or None,
        keys=keys,
        report_key=rkey,
        report_cert=rcert,
        clock=not no_clock,
    )
    typer.echo(f"created CMS device directory {directory} (hardware type {hw_type})")


def _open_device(device_dir: Path, unsigned: bool, component: str | None) -> tuple[Any, Any]:
    """The device in ``device_dir`` and the signer of its reports (None: unsigned): a simulated
    device (``suitkit device init ... --hw-type OID --serial HEX``) or a stand-in directory
    (``suitkit cms device-init``)."""
    from suitkit.cms.device_store import DirectoryDevice
    from suitkit.cms.keyfiles import load_certificate, load_private_key
    from suitkit.cms.signeddata import Signer
    from suitkit.errors import SuitError

    if (device_dir / "device.json").is_file():
        from suitkit.cli.device import _component_id
        from suitkit.device.cms_host import SimulatedCmsDevice

        try:
            cid = _component_id(component) if component is not None else None
            host = SimulatedCmsDevice(device_dir, cid)
            return host, None if unsigned else host.report_signer()
        except (SuitError, OSError) as exc:
            _die(str(exc))
        except typer.BadParameter as exc:
            _usage(str(exc))
    if component is not None:
        _usage("--component applies to a simulated device (suitkit device init)")
    try:
        device = DirectoryDevice(device_dir)
    except ValueError as exc:
        _die(str(exc))
    signer = None
    files = device.report_signer_files()
    if files is not None and not unsigned:
        try:
            signer = Signer(
                load_private_key(files[0].read_bytes()),
                certificate=load_certificate(files[1].read_bytes()),
            )
        except (SuitError, OSError) as exc:
            _die(f"device report key: {exc}")
    return device, signer


@app.command()
def load(
    device_dir: Path = typer.Argument(
        ..., help="Device directory: a simulated device (suitkit device init) or device-init's."
    ),
    package: Path = typer.Argument(..., help="The package (DER)."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Also write the receipt / error report here."
    ),
    unsigned: bool = typer.Option(
        False, "--unsigned-report", help="Do not sign the report even if the device has a key."
    ),
    component: str | None = typer.Option(
        None,
        "--component",
        help="Simulated device: the component the firmware goes to (default: the execution "
        "component, into the slot it does not boot from).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Load a package into a device directory; write and print the receipt or error report.

    On a simulated device the firmware goes to its flash, the stale versions and loaded
    packages to its persistent state, and the reports (signed with its device key) to its
    reports/ folder."""
    from suitkit.cms.device_store import atomic_write
    from suitkit.cms.reports import decode_report, describe_report, process_package
    from suitkit.errors import SuitError

    device, signer = _open_device(device_dir, unsigned, component)
    data = _read(package, "package")
    try:
        outcome = process_package(data, device, report_signer=signer)
    except (SuitError, OSError) as exc:
        _report_error(exc)
    if outcome.report is not None:
        path = device.save_report(outcome.report, "receipt" if outcome.ok else "error")
        if output is not None:
            atomic_write(output, outcome.report)
        described = describe_report(decode_report(outcome.report))
        described["report_file"] = str(path)
        typer.echo(json.dumps(described, indent=2) if as_json else _format_report(described))
    if outcome.error is not None:
        _report_error(outcome.error)
    assert outcome.result is not None
    for warning in outcome.result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(
        f"loaded {outcome.result.package_id.name} "
        f"({outcome.result.firmware_size} octets) into {device_dir}"
    )


def _format_report(described: dict[str, Any]) -> str:
    title = (
        "FirmwarePackageLoadReceipt"
        if described.get("kind") == "receipt"
        else "FirmwarePackageLoadError"
    )
    lines = [title + (" (signed)" if described.get("signed") else " (unsigned)")]
    for key, value in described.items():
        if key in ("kind", "signed"):
            continue
        if isinstance(value, list):
            lines.append(f"  {key}:")
            lines.extend(f"    - {v}" for v in value)
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


@receipt_app.command("show")
def receipt_show(
    report: Path = typer.Argument(..., help="A receipt or error report (DER)."),
    trust: list[Path] = typer.Option(
        [], "--trust", help="Device certificate to verify a signed report (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Decode (and with --trust, verify) a load receipt or error report."""
    from suitkit.cms.errors import CmsError
    from suitkit.cms.reports import decode_report, describe_report

    data = _read(report, "report")
    anchors = _anchors(trust) if trust else None
    try:
        parsed = decode_report(data, anchors)
    except CmsError as exc:
        _report_error(exc)
    described = describe_report(parsed)
    typer.echo(json.dumps(described, indent=2) if as_json else _format_report(described))


def main() -> None:  # pragma: no cover - for running this sub-app alone
    app(prog_name="suitkit cms")


if __name__ == "__main__":  # pragma: no cover
    main()
