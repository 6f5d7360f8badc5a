"""Import-on-first-use for optional back ends (start-up time matters for the CLI)."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """A module imported the first time one of its attributes is used."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)
