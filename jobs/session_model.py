"""Session model: a compact GRU trained (PyTorch, CPU) to predict the next item of a session
in the item vector space of the retrieval index, so one ScaNN index serves users and sessions.

Trained on sessions before the ``train`` cut-off; evaluated on the sessions of the test
window [eval, serve) by next-item HR@K and MRR@K against popularity and item-to-item
co-occurrence. Exported to ``session_gru.npz`` for the NumPy step used at serve time.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from blink import layout
from blink.config import Config
from blink.errors import InsufficientData
from blink.session import SessionEncoder
from jobs.interval import Interval
from jobs.spark import get_spark

log = logging.getLogger(__name__)
MAX_LEN = 20


def sessions(spark: Any, lake_events: str, start_ms: int, end_ms: int, item_index: dict[str, int]) -> list[list[int]]:
    """Item positions of each session in [start, end), in time order (items outside the index dropped)."""
    from pyspark.sql import functions as F

    rows = (spark.read.parquet(lake_events)
            .where((F.col("timestamp") >= start_ms) & (F.col("timestamp") < end_ms) & F.col("item_id").isNotNull())
            .groupBy("session_id")
            .agg(F.sort_array(F.collect_list(F.struct("timestamp", "item_id"))).alias("ev"))
            .collect())
    out = []
    for r in rows:
        seq = [item_index[e["item_id"]] for e in r["ev"] if e["item_id"] in item_index]
        if len(seq) >= 2:
            out.append(seq[-MAX_LEN:])
    return out


def train(seqs: list[list[int]], item_vectors: np.ndarray, hidden: int, epochs: int,
          seed: int = 7) -> dict[str, np.ndarray]:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    items = torch.from_numpy(item_vectors)  # frozen: the session lives in the ALS item space
    dim = items.shape[1]
    gru, out = nn.GRU(dim, hidden, batch_first=True), nn.Linear(hidden, dim)
    opt = torch.optim.Adam([*gru.parameters(), *out.parameters()], lr=5e-3)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(seqs))
        total = 0.0
        for lo in range(0, len(order), 256):
            batch = [seqs[j] for j in order[lo:lo + 256]]
            t = max(len(s) for s in batch)
            idx = torch.zeros((len(batch), t), dtype=torch.long)
            mask = torch.zeros((len(batch), t - 1), dtype=torch.bool)
            for b, s in enumerate(batch):
                idx[b, : len(s)] = torch.tensor(s)
                mask[b, : len(s) - 1] = True
            xs = items[idx[:, :-1]]
            hs, _ = gru(xs)
            # The last item's own vector is added to the GRU's output (a residual): recency is
            # then explicit, and the GRU learns what the session adds to the last click.
            logits = (out(hs[mask]) + xs[mask]) @ items.T  # every item scored by dot product, as in retrieval
            loss = nn.functional.cross_entropy(logits, idx[:, 1:][mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        log.info("session model epoch %d: loss %.3f", epoch, total / max(len(seqs), 1))
    sd = gru.state_dict()
    return {"w_ih": sd["weight_ih_l0"].numpy(), "w_hh": sd["weight_hh_l0"].numpy(), "b_ih": sd["bias_ih_l0"].numpy(),
            "b_hh": sd["bias_hh_l0"].numpy(), "w_out": out.weight.detach().numpy(), "b_out": out.bias.detach().numpy()}


def evaluate(enc: SessionEncoder, item_vectors: np.ndarray, train_seqs: list[list[int]], test_seqs: list[list[int]],
             popular: list[int], k: int, max_predictions: int = 5000) -> dict[str, dict[str, float]]:
    """Next-item HR@k and MRR@k for every prefix of the test sessions."""
    follows: dict[int, Counter[int]] = defaultdict(Counter)
    for s in train_seqs:
        for a, b in zip(s, s[1:], strict=False):
            follows[a][b] += 1
    hits: dict[str, list[float]] = {m: [] for m in ("session_gru", "cooccurrence", "popularity")}
    done = 0
    for s in test_seqs:
        h = enc.initial()
        for t in range(len(s) - 1):
            h = enc.step(h, item_vectors[s[t]])
            target = s[t + 1]
            scores = item_vectors @ enc.vector(h, item_vectors[s[t]])
            ranked = {
                "session_gru": list(np.argsort(-scores)[:k]),
                "cooccurrence": [i for i, _ in follows[s[t]].most_common(k)] or popular[:k],
                "popularity": popular[:k],
            }
            for m, lst in ranked.items():
                hits[m].append(1.0 / (lst.index(target) + 1) if target in lst else 0.0)
            done += 1
            if done >= max_predictions:
                break
        if done >= max_predictions:
            break
    return {m: {f"hr@{k}": float(np.mean([v > 0 for v in r])) if r else 0.0,
                f"mrr@{k}": float(np.mean(r)) if r else 0.0, "predictions": len(r)} for m, r in hits.items()}


def run(cfg: Config, interval: Interval) -> dict[str, Any]:
    spark = get_spark(cfg)
    emb = np.load(interval.artifact_dir / layout.EMBEDDINGS)
    item_ids, vectors = emb["item_ids"].astype(str), emb["item_vectors"].astype(np.float32)
    index = {i: j for j, i in enumerate(item_ids)}
    lake = str(cfg.layout.table("events"))
    train_seqs = sessions(spark, lake, 0, interval.as_of("train"), index)
    if len(train_seqs) < 10:
        raise InsufficientData(f"only {len(train_seqs)} sessions with 2+ items before the train cut-off; need history")
    s = cfg.session
    weights = train(train_seqs, vectors, s.hidden, s.epochs)
    enc = SessionEncoder(**weights, version=interval.version)
    enc.save(interval.artifact_dir)
    test_seqs = sessions(spark, lake, interval.as_of("eval"), interval.as_of("serve"), index)
    counts = Counter(i for seq in train_seqs for i in seq)
    popular = [i for i, _ in counts.most_common(cfg.eval.k)]
    report = {"k": cfg.eval.k, "train_sessions": len(train_seqs), "test_sessions": len(test_seqs),
              "table": evaluate(enc, vectors, train_seqs, test_seqs, popular, cfg.eval.k)}
    (interval.artifact_dir / layout.SESSION_EVAL).write_text(json.dumps(report, indent=1))
    log.info("session model: %s", json.dumps(report))
    return report
