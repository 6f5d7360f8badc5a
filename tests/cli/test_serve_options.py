"""``suitkit serve --coap-port / --mqtt-url``: listed, checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_cli import assert_clean_error, run

pytest.importorskip("fastapi", reason="the server extra (suitkit[server]) is not installed")


def test_serve_help_lists_coap_and_mqtt() -> None:
    r = run("serve", "--help")
    assert r.returncode == 0, r.stderr
    assert "--coap-port" in r.stdout and "--mqtt-url" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mqtt-url", "http://broker"], "mqtt-url"),
        (["--coap-port", "70000"], "coap-port 70000"),
    ],
)
def test_serve_refuses_bad_coap_and_mqtt_settings(
    tmp_path: Path, args: list[str], message: str
) -> None:
    r = run("serve", "--data", tmp_path / "srv", "--port", "1", *args)
    assert_clean_error(r, 2)
    assert message in r.stderr
    assert not (tmp_path / "srv").exists()  # refused before the data directory is made
