"""recs_hourly: Blink's batch layer, once an hour. Orchestration only: every task calls
``jobs.entry.run_task`` and all heavy imports happen inside tasks, so parsing stays cheap."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task

DOC = """
### recs_hourly
Validates the newest data, retrains the models and republishes recommendations.

`ingest` (landing files -> contract check -> Parquet lake, rejects -> DLQ) ->
`validate` (Great Expectations checkpoint, Data Docs in var/reports/) -> `features` ->
`embeddings` (Spark ALS) -> `index` (ScaNN) -> `session` (GRU next-item model, PyTorch) ->
`ranker` (XGBoost LTR) -> `evaluate`
(offline metrics + publish gate) -> `head` (top users) -> `precompute` (Spark, the serving
pipeline) -> `publish` (versioned Redis keys, then one atomic pointer switch).

Every task is idempotent for its data interval. A failure anywhere leaves the previously
published version serving.
"""

TASK_NAMES = ["ingest", "validate", "features", "embeddings", "index", "session", "ranker", "evaluate",
              "head", "precompute", "publish"]


def _make_task(name: str):  # noqa: ANN202 - returns an Airflow task decorator result
    @task(task_id=name)
    def step() -> dict:
        from jobs.entry import run_task

        return run_task(name, get_current_context())

    return step


@dag(
    dag_id="recs_hourly",
    schedule="@hourly",
    # Early, so a run can be made for any data's time (real datasets are years old); with
    # catchup off the scheduler still only runs the latest interval.
    start_date=datetime(1990, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    doc_md=DOC,
    tags=["blink"],
)
def recs_hourly() -> None:
    previous = None
    for name in TASK_NAMES:
        current = _make_task(name)()
        if previous is not None:
            previous >> current
        previous = current


recs_hourly()
