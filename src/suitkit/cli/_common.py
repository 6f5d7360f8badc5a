"""Helpers shared by the CLI commands: one-line errors, exit codes, atomic file writes.

This module imports neither typer nor rich, so that the fast ``verify`` path stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

#: Exit codes of every suitkit command.
EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def ok(message: str) -> None:
    print(message)


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    print(f"suitkit: error: {message}", file=sys.stderr)
    sys.exit(code)


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Turn every expected failure into one line on stderr and the right exit code."""
    from suitkit.errors import SuitError

    try:
        yield
    except SuitError as exc:
        fail(str(exc), EXIT_INVALID)
    except FileNotFoundError as exc:
        fail(f"no such file: {exc.filename}", EXIT_INVALID)
    except IsADirectoryError as exc:
        fail(f"{exc.filename} is a directory", EXIT_INVALID)
    except PermissionError as exc:
        fail(f"permission denied: {exc.filename}", EXIT_INVALID)
    except OSError as exc:
        fail(f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}", EXIT_INVALID)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def read_input(path: Path, limit: int = 64 * 1024 * 1024) -> bytes:
    """Read an input file, refusing one larger than ``limit`` before reading it."""
    size = path.stat().st_size
    if size > limit:
        fail(f"{path} is {size} bytes, more than the {limit}-byte limit", EXIT_INVALID)
    return path.read_bytes()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one."""
    from suitkit.files import atomic_write

    atomic_write(Path(path), data, mode=mode)


def run_verify(envelope: Path, keys: list[Path], severed: list[Path], as_json: bool) -> None:
    """``suitkit verify``: shared by the typer command and the fast entry path."""
    with guard():
        from suitkit.cose.keys import CoseKey
        from suitkit.format.authentication import authenticate, severed_members_from_files

        data = read_input(envelope)
        trusted = [CoseKey.load(k) for k in keys]
        members = severed_members_from_files(severed) if severed else None
        result = authenticate(data, trusted, severed=members)
        if as_json:
            import json

            print(json.dumps(result.describe(), indent=2))
            return
        for line in result.summary_lines():
            print(line)
