"""Session vectors: the NumPy GRU step matches PyTorch and survives export; the updater feeds
each session its events in time order. How the state is stored between events (Redis and
memory) is the behaviour suite in test_session_store.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blink.session import SessionEncoder
from blink.session_store import MemorySessions
from serving.session_updater import SessionUpdater
from tests.blink.session_data import DIM, HIDDEN, ITEMS, events, item_vector


def test_numpy_step_equals_torch_gru(encoder: SessionEncoder) -> None:
    import torch

    gru = torch.nn.GRU(DIM, HIDDEN, batch_first=True)
    with torch.no_grad():
        for name, value in (("weight_ih_l0", encoder.w_ih), ("weight_hh_l0", encoder.w_hh),
                            ("bias_ih_l0", encoder.b_ih), ("bias_hh_l0", encoder.b_hh)):
            getattr(gru, name).copy_(torch.from_numpy(value))
        seq = torch.from_numpy(ITEMS[[3, 17, 5, 9]])[None]
        _, h_torch = gru(seq)
    assert np.allclose(encoder.encode(ITEMS[[3, 17, 5, 9]]), h_torch[0, 0].numpy(), atol=1e-5)


def test_export_round_trip(encoder: SessionEncoder, tmp_path: Path) -> None:
    encoder.save(tmp_path)
    loaded = SessionEncoder.load(tmp_path)
    assert loaded.version == "v1"
    assert np.array_equal(loaded.encode(ITEMS[:5]), encoder.encode(ITEMS[:5]))


class FakeModel:
    def __init__(self, enc: SessionEncoder) -> None:
        self.session = enc

    @staticmethod
    def item_vector(item_id: str) -> np.ndarray | None:
        return item_vector(item_id)


def test_updater_groups_a_batch_by_session_in_time_order(encoder: SessionEncoder) -> None:
    sessions = MemorySessions()
    batch = events("a", [1, 2, 3]) + events("b", [5, 6])
    batch.reverse()  # arrival order is not event order
    SessionUpdater(sessions, lambda: FakeModel(encoder))(batch)
    assert np.allclose(sessions.get("a").h, encoder.encode(ITEMS[[1, 2, 3]]), atol=1e-6)  # type: ignore[union-attr]
    assert sessions.get("b").items == ["i5", "i6"]  # type: ignore[union-attr]


def test_serving_never_imports_torch() -> None:
    """The session GRU runs in NumPy at serve time: importing the app must not pull in torch."""
    import subprocess
    import sys

    code = "import sys, serving.app, serving.router, blink.session_store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
