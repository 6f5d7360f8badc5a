"""Fixtures for the COSE tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from suitkit.cose import CoseKey
from suitkit.format.codepoints import CoseAlgorithm

from ._util import KEYS, SMALL_HSS


@pytest.fixture(scope="session")
def example_private() -> CoseKey:
    return CoseKey.load(KEYS / "suit-example-es256-private.pem")


@pytest.fixture(scope="session")
def example_public() -> CoseKey:
    return CoseKey.load(KEYS / "suit-example-es256-public.pem")


@pytest.fixture
def hss_key(tmp_path: Path) -> CoseKey:
    return CoseKey.generate(
        CoseAlgorithm.HSS_LMS, hss=SMALL_HSS, state_file=tmp_path / "hss.cose_key"
    )
