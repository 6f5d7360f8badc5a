"""The console script's entry point.

``suitkit verify`` runs in build pipelines thousands of times, so it must start fast. Importing
typer (and click) costs about 70 ms; a plain, well-formed ``verify`` call therefore parses its few
options with argparse and never imports them. Anything else (``--help``, other commands, a usage
error) goes to the typer application, which stays the one place where the CLI is defined:
``tests/cli`` checks that both paths accept the same options and give the same results.
"""

from __future__ import annotations

import sys
from typing import NoReturn


def _fast_verify(args: list[str]) -> None:
    import argparse

    class _Quiet(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise SystemExit(2)

    parser = _Quiet(prog="suitkit verify", add_help=False, allow_abbrev=False)
    parser.add_argument("envelope")
    parser.add_argument("--key", action="append", required=True)
    parser.add_argument("--severed", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    try:
        ns, rest = parser.parse_known_args(args)
    except SystemExit:
        return None  # let typer report the usage error
    if rest:
        return None
    from pathlib import Path

    from suitkit.cli._common import run_verify

    run_verify(Path(ns.envelope), [Path(k) for k in ns.key], [Path(s) for s in ns.severed], ns.json)
    sys.exit(0)


def main() -> NoReturn:
    args = sys.argv[1:]
    if args[:1] == ["verify"] and not any(a in ("-h", "--help") for a in args):
        _fast_verify(args[1:])
    from suitkit.cli.main import main as typer_main

    typer_main(args)
