"""Session test data shared by tests/blink/test_session.py and test_session_store.py: item
vectors, events on them, and a small GRU encoder trained on random sequences."""

from __future__ import annotations

from typing import Any

import numpy as np

from blink.session import SessionEncoder

DIM, HIDDEN = 8, 12
ITEMS = np.random.default_rng(3).normal(size=(40, DIM)).astype(np.float32)


def train_encoder() -> SessionEncoder:
    from jobs.session_model import train  # torch: only when a test needs the encoder

    rng = np.random.default_rng(4)
    seqs = [list(rng.integers(0, 40, size=rng.integers(2, 8))) for _ in range(60)]
    return SessionEncoder(**train(seqs, ITEMS, HIDDEN, epochs=1), version="v1")


def events(session: str, items: list[int], user: str | None = None,
           t0: int = 1_790_000_000_000) -> list[dict[str, Any]]:
    return [{"event_id": f"{session}-{n}", "session_id": session, "user_id": user, "item_id": f"i{i}",
             "timestamp": t0 + n} for n, i in enumerate(items)]


def item_vector(item_id: str) -> np.ndarray | None:
    pos = int(item_id[1:])
    return ITEMS[pos] if pos < len(ITEMS) else None
