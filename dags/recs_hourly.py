"""recs_hourly: Blink's batch layer, once an hour. Orchestration only: every task calls
``jobs.entry.run_task`` and all heavy imports happen inside tasks, so parsing stays cheap.

The edges below are the data dependencies; ``jobs/tasks.py`` lists the same ones and
tests/dags/test_dag_integrity.py checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from jobs.tasks import BY_NAME

DOC = """
### recs_hourly
Validates the newest data, retrains the models and republishes recommendations.

```
ingest -> quality -> aggregates ----------------------------> ranker -> evaluate -> precompute -> publish
                  \\-> embeddings -> index ---------------/                       /
                                \\-> session_model ------/                       /
                                 \\ (with aggregates) -> head -------------------/
```

Every task is idempotent for its data interval. A failure anywhere leaves the previously
published version serving.
"""


def _task(name: str) -> Any:  # an Airflow TaskFlow task whose id and doc come from jobs/tasks.py
    @task(task_id=name, doc_md=BY_NAME[name].doc)
    def step() -> dict[str, Any]:
        from jobs.entry import run_task

        return run_task(name, get_current_context())  # type: ignore[no-any-return]

    return step()


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
    ingest, quality, aggregates = _task("ingest"), _task("quality"), _task("aggregates")
    embeddings, index, session_model = _task("embeddings"), _task("index"), _task("session_model")
    ranker, evaluate, head = _task("ranker"), _task("evaluate"), _task("head")
    precompute, publish = _task("precompute"), _task("publish")

    ingest >> quality >> [aggregates, embeddings]
    embeddings >> [index, session_model]
    [aggregates, index, session_model] >> ranker >> evaluate
    [aggregates, embeddings] >> head
    [evaluate, head] >> precompute >> publish


recs_hourly()
