"""The batch layer's task graphs: each task's id, what it needs, and what it does.

Two DAGs share the task modules: ``recs_daily`` refits every model and evaluates it;
``recs_hourly`` ingests the new hour and refreshes the latest fit's state (jobs/refresh.py).
The DAG files build their graphs from these ids (and a test checks their edges equal ``upstream``),
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


@dataclass(frozen=True)
class Graph:
    dag_id: str
    schedule: str
    tasks: tuple[Task, ...]
    doc: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)


_INGEST = (
    Task("ingest", (), "landing files + live stream -> contract check -> Parquet lake; rejects -> DLQ"),
    Task("quality", ("ingest",), "Great Expectations checkpoint on the new batch; Data Docs"),
)
DAILY = Graph("recs_daily", "@daily", _INGEST + (
    Task("aggregates", ("quality",), "user and item aggregates at the train, eval and serve cut-offs"),
    Task("embeddings", ("quality",), "ALS item and user vectors, tuned on a validation cut"),
    Task("index", ("embeddings",), "ScaNN index, tuned by measured recall"),
    Task("session_model", ("embeddings",), "GRU next-item model (PyTorch), exported to NumPy"),
    Task("ranker", ("aggregates", "index", "session_model"), "XGBoost learning-to-rank, gated per request kind"),
    Task("evaluate", ("ranker",), "offline metrics against the baselines; the publish gate"),
    Task("head", ("aggregates", "embeddings"), "the most active users, whose lists are precomputed"),
    Task("precompute", ("evaluate", "head"), "head users' lists through the serving pipeline"),
    Task("publish", ("precompute",), "versioned Redis keys, then one atomic pointer switch"),
), "the full refit: every model, the evaluation and its gate")
HOURLY = Graph("recs_hourly", "@hourly", _INGEST + (
    Task("refresh", ("quality",), "the latest daily fit's models + serve-time aggregates + fold-in of "
                                  "touched users"),
    Task("head", ("refresh",), "the most active users, whose lists are precomputed"),
    Task("precompute", ("head",), "head users' lists through the serving pipeline"),
    Task("publish", ("precompute",), "versioned Redis keys, then one atomic pointer switch"),
), "an hour's work on top of the latest daily fit")
GRAPHS: dict[str, Graph] = {g.dag_id: g for g in (DAILY, HOURLY)}
TASKS: tuple[Task, ...] = DAILY.tasks  # every task module (the hourly ones but refresh are daily ones too)
BY_NAME: dict[str, Task] = {t.name: t for g in (HOURLY, DAILY) for t in g.tasks}
NAMES: tuple[str, ...] = tuple(BY_NAME)
