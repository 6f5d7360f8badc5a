"""Fixtures for the CMS firmware-package tests."""

from __future__ import annotations

import pytest

from tests.cms.helpers import Pki, make_pki


@pytest.fixture(scope="session")
def pki() -> Pki:
    """An ECDSA P-256 CA and firmware-signer certificate (shared: keys are not mutated)."""
    return make_pki("p256")


@pytest.fixture(scope="session")
def other_pki() -> Pki:
    return make_pki("p256")
