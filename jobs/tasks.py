"""The batch layer's one task list: each task's id, what it needs, and what it does.

The DAG file builds its graph from these ids (and a test checks its edges equal ``upstream``),
``jobs.entry`` runs ``jobs.<name>.run(cfg, interval)``, and ``blink run-dag`` reads the list
without importing Airflow. Nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str  # the Airflow task id and the module jobs/<name>.py
    upstream: tuple[str, ...]  # tasks whose output this one reads
    doc: str


TASKS: tuple[Task, ...] = (
    Task("ingest", (), "landing files + live stream -> contract check -> Parquet lake; rejects -> DLQ"),
    Task("quality", ("ingest",), "Great Expectations checkpoint on the new batch; Data Docs"),
    Task("aggregates", ("quality",), "user and item aggregates at the train, eval and serve cut-offs"),
    Task("embeddings", ("quality",), "ALS item and user vectors"),
    Task("index", ("embeddings",), "ScaNN index, tuned by measured recall"),
    Task("session_model", ("embeddings",), "GRU next-item model (PyTorch), exported to NumPy"),
    Task("ranker", ("aggregates", "index", "session_model"), "XGBoost learning-to-rank"),
    Task("evaluate", ("ranker",), "offline metrics against the baselines; the publish gate"),
    Task("head", ("aggregates", "embeddings"), "the most active users, whose lists are precomputed"),
    Task("precompute", ("evaluate", "head"), "head users' lists through the serving pipeline"),
    Task("publish", ("precompute",), "versioned Redis keys, then one atomic pointer switch"),
)
BY_NAME: dict[str, Task] = {t.name: t for t in TASKS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
