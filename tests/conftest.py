"""Shared fixtures: paths to the spec vectors copied under tests/vectors/."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

VECTORS = Path(__file__).parent / "vectors"

#: Every SUIT envelope among the spec vectors.
ENVELOPES = sorted(VECTORS.rglob("*.suit"))
#: Every CBOR-encoded vector: envelopes, COSE encryption infos and the KDF context (26 in all).
CBOR_VECTORS = sorted([*ENVELOPES, *VECTORS.rglob("*.cose"), *VECTORS.rglob("*.cbor")])

EXAMPLE_KEY_PUBLIC = VECTORS / "keys" / "suit-example-es256-public.pem"
EXAMPLE_KEY_PRIVATE = VECTORS / "keys" / "suit-example-es256-private.pem"
VENDOR_ID = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
CLASS_ID = "1492af14-2569-5e48-bf42-9b2d51f2ab45"


@pytest.fixture
def vectors() -> Path:
    return VECTORS


MQTT_BROKER = ("127.0.0.1", 1883)
MQTT_URL = "mqtt://127.0.0.1:1883"


def _mqtt_broker_answers() -> bool:
    try:
        with socket.create_connection(MQTT_BROKER, timeout=0.5):
            return True
    except OSError:
        return False


#: the tests against the Mosquitto broker of this machine (``.ci/run`` starts it)
needs_mqtt_broker = pytest.mark.skipif(
    not _mqtt_broker_answers(), reason="no MQTT broker (Mosquitto) on 127.0.0.1:1883"
)
