"""The console script's entry point.

``suitkit verify`` runs in build pipelines thousands of times, so it must start fast. Importing
typer (and click) costs about 70 ms; a plain, well-formed ``verify`` call therefore parses its few
options with a plain loop and never imports them. Anything else (``--help``, other commands, a usage
error) goes to the typer application, which stays the one place where the CLI is defined:
``tests/cli`` checks that both paths accept the same options and give the same results.
"""

from __future__ import annotations

import sys
from typing import NoReturn


def _verify_args(args: list[str]) -> tuple[str, list[str], list[str], bool] | None:
    """``IN.suit --key K [--key K ...] [--severed F ...] [--json]`` (options also as
    ``--key=K``), or ``None`` for anything else: a plain loop, not argparse, whose import and
    help formatter (shutil, locale, gettext) cost ~5 ms of the start-up budget."""
    envelope: str | None = None
    keys: list[str] = []
    severed: list[str] = []
    as_json = False
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--json":
            as_json = True
        elif a in ("--key", "--severed") or a.startswith(("--key=", "--severed=")):
            name, eq, value = a.partition("=")
            if not eq:
                i += 1
                if i == len(args):
                    return None
                value = args[i]
            if not value:
                return None
            (keys if name == "--key" else severed).append(value)
        elif a.startswith("-") or envelope is not None:
            return None  # an unknown option, "--", "-", or a second argument: typer says
        else:
            envelope = a
        i += 1
    if envelope is None or not keys:
        return None
    return envelope, keys, severed, as_json


def _fast_verify(args: list[str]) -> None:
    parsed = _verify_args(args)
    if parsed is None:
        return None  # let typer parse it, and report a usage error
    envelope, keys, severed, as_json = parsed
    from pathlib import Path

    from suitkit.cli._common import run_verify

    run_verify(Path(envelope), [Path(k) for k in keys], [Path(s) for s in severed], as_json)
    sys.exit(0)


def main() -> NoReturn:
    args = sys.argv[1:]
    if args[:1] == ["verify"] and not any(a in ("-h", "--help") for a in args):
        _fast_verify(args[1:])
    from suitkit.cli.main import main as typer_main

    typer_main(args)
