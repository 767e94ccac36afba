"""Session vectors: a GRU that moves with every event, run in NumPy at serve time.

The encoder is trained with PyTorch by the batch ``session`` task (jobs/session_model.py) to
predict the next item in the *same* vector space the retrieval index uses, and exported to
``session_gru.npz``. Serving never imports torch: :meth:`SessionEncoder.step` is the GRU
cell written out in NumPy (PyTorch's gate order r, z, n), so one event costs one step --
only the delta of the new event, never a re-read of the session's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blink import layout


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class SessionEncoder:
    w_ih: np.ndarray  # [3H, D]  input weights for gates r, z, n
    w_hh: np.ndarray  # [3H, H]
    b_ih: np.ndarray  # [3H]
    b_hh: np.ndarray  # [3H]
    w_out: np.ndarray  # [D, H]  hidden state -> item vector space
    b_out: np.ndarray  # [D]
    version: str

    @property
    def hidden(self) -> int:
        return int(self.w_hh.shape[1])

    @classmethod
    def load(cls, directory: Path) -> SessionEncoder:
        w = np.load(directory / layout.SESSION_WEIGHTS, allow_pickle=False)
        def f32(name: str) -> np.ndarray:
            return w[name].astype(np.float32)

        return cls(w_ih=f32("w_ih"), w_hh=f32("w_hh"), b_ih=f32("b_ih"), b_hh=f32("b_hh"), w_out=f32("w_out"),
                   b_out=f32("b_out"), version=str(w["version"]))

    def save(self, directory: Path) -> None:
        np.savez(directory / layout.SESSION_WEIGHTS, w_ih=self.w_ih, w_hh=self.w_hh, b_ih=self.b_ih, b_hh=self.b_hh,
                 w_out=self.w_out, b_out=self.b_out, version=np.array(self.version))

    def initial(self) -> np.ndarray:
        return np.zeros(self.hidden, np.float32)

    def step(self, h: np.ndarray, x: np.ndarray) -> np.ndarray:
        """One GRU step: the new hidden state after an event on the item with vector ``x``."""
        gi = self.w_ih @ x + self.b_ih
        gh = self.w_hh @ h + self.b_hh
        n_h = self.hidden
        r = _sigmoid(gi[:n_h] + gh[:n_h])
        z = _sigmoid(gi[n_h:2 * n_h] + gh[n_h:2 * n_h])
        n = np.tanh(gi[2 * n_h:] + r * gh[2 * n_h:])
        return ((1.0 - z) * n + z * h).astype(np.float32)

    def encode(self, xs: np.ndarray) -> np.ndarray:
        """The hidden state after a whole sequence (what stepping event by event must equal)."""
        h = self.initial()
        for x in xs:
            h = self.step(h, x)
        return h

    def vector(self, h: np.ndarray, last: np.ndarray) -> np.ndarray:
        """The session's query vector in the item space (feeds retrieval and ranking): the GRU's
        output plus the last item's vector, exactly as trained (jobs/session_model.py)."""
        return (self.w_out @ h + self.b_out + last).astype(np.float32)
