"""``python -m suitkit.server serve ...``: the server commands without the ``suitkit`` CLI."""

from suitkit.cli.server import app

app(prog_name="suitkit")
