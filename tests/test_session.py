"""Session vectors: the NumPy GRU step matches PyTorch, and stepping event by event through
the real Redis state gives the state of encoding the whole sequence at once."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from blink.keys import Keys
from blink.session import SessionEncoder
from blink.session_store import MemorySessions, RedisSessions, SessionUpdater
from jobs.session_model import train

DIM, HIDDEN = 8, 12
rng = np.random.default_rng(3)
ITEMS = rng.normal(size=(40, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> SessionEncoder:
    seqs = [list(rng.integers(0, 40, size=rng.integers(2, 8))) for _ in range(60)]
    return SessionEncoder(**train(seqs, ITEMS, HIDDEN, epochs=1), version="v1")


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


def test_export_round_trip(encoder: SessionEncoder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    encoder.save(tmp_path)
    loaded = SessionEncoder.load(tmp_path)
    assert loaded.version == "v1"
    assert np.array_equal(loaded.encode(ITEMS[:5]), encoder.encode(ITEMS[:5]))


def events(session: str, items: list[int], user: str | None = None, t0: int = 1_790_000_000_000) -> list[dict]:
    return [{"event_id": f"{session}-{n}", "session_id": session, "user_id": user, "item_id": f"i{i}",
             "timestamp": t0 + n} for n, i in enumerate(items)]


def item_vector(item_id: str) -> np.ndarray | None:
    pos = int(item_id[1:])
    return ITEMS[pos] if pos < len(ITEMS) else None


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_event_by_event_equals_whole_sequence(encoder: SessionEncoder, backend: str,
                                              request: pytest.FixtureRequest) -> None:
    if backend == "redis":
        client: redis.Redis = request.getfixturevalue("redis_client")
        sessions: RedisSessions | MemorySessions = RedisSessions(client, Keys("t"), ttl_s=600)
    else:
        sessions = MemorySessions()
    seq = [4, 8, 15, 16, 23, 39]
    for event in events("s1", seq):  # one request per event: only the delta is computed
        sessions.update("s1", [event], encoder, item_vector)
    state = sessions.get("s1")
    assert state is not None and state.n == len(seq)
    assert np.allclose(state.h, encoder.encode(ITEMS[seq]), atol=1e-6)
    assert state.items == [f"i{i}" for i in seq]


def test_unknown_items_are_remembered_but_not_stepped(encoder: SessionEncoder) -> None:
    sessions = MemorySessions()
    sessions.update("s", events("s", [1, 999, 2]), encoder, item_vector)
    state = sessions.get("s")
    assert state is not None and state.n == 2 and state.items == ["i1", "i999", "i2"]
    assert np.allclose(state.h, encoder.encode(ITEMS[[1, 2]]), atol=1e-6)


def test_login_merges_the_anonymous_session(encoder: SessionEncoder, redis_client: redis.Redis) -> None:
    sessions = RedisSessions(redis_client, Keys("t"), ttl_s=600)
    sessions.update("anon", events("anon", [1, 2]), encoder, item_vector)
    assert sessions.get("anon").user_id is None  # type: ignore[union-attr]
    sessions.update("anon", events("anon", [3], user="alice", t0=1_790_000_001_000), encoder, item_vector)
    assert sessions.pointer("alice") == "anon"
    state = sessions.get("anon")
    assert state is not None and state.user_id == "alice" and state.items == ["i1", "i2", "i3"]
    assert redis_client.ttl(Keys("t").global_("session", "anon")) > 0


def test_a_new_encoder_version_restarts_the_state(encoder: SessionEncoder) -> None:
    sessions = MemorySessions()
    sessions.update("s", events("s", [1, 2]), encoder, item_vector)
    newer = SessionEncoder(encoder.w_ih, encoder.w_hh, encoder.b_ih, encoder.b_hh, encoder.w_out, encoder.b_out, "v2")
    sessions.update("s", events("s", [3], t0=1_790_000_009_000), newer, item_vector)
    state = sessions.get("s")
    assert state is not None and state.version == "v2" and state.n == 1
    assert state.items == ["i1", "i2", "i3"]  # consumed items survive: they are still filtered


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
