from __future__ import annotations

import pytest

from blink.session import SessionEncoder
from tests.blink.session_data import train_encoder


@pytest.fixture(scope="session")
def encoder() -> SessionEncoder:
    """A GRU session encoder trained once per run (PyTorch, a few seconds)."""
    return train_encoder()
