"""Index: build the ScaNN retrieval index over the item vectors of this version."""

from __future__ import annotations

import logging

import numpy as np

from blink.config import Config
from blink.model import EMBEDDINGS
from blink.retrieval import Retriever
from jobs.run import Run

log = logging.getLogger(__name__)


def run(cfg: Config, interval: Run) -> dict[str, object]:
    vectors = np.load(interval.artifact_dir / EMBEDDINGS)["item_vectors"]
    retriever = Retriever.build(vectors, cfg.retrieval)
    retriever.save(interval.artifact_dir)
    log.info("index: %d items, %s", len(vectors), retriever.params)
    return {"items": len(vectors), **retriever.params}
