"""recs_daily: the full refit, once a day. Orchestration only (see dags/taskflow.py).

The edges below are the data dependencies; ``jobs/tasks.py`` lists the same ones and
tests/dags/test_dag_integrity.py checks that the two agree.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag

from dags.taskflow import SETTINGS, blink_task
from jobs.tasks import DAILY

DOC = """
### recs_daily
Validates the newest data, refits every model, evaluates it against the baselines and publishes.

```
ingest -> quality -> aggregates ----------------------------> ranker -> evaluate -> precompute -> publish
                  \\-> embeddings -> index ---------------/                       /
                                \\-> session_model ------/                       /
                                 \\ (with aggregates) -> head -------------------/
```

Every task is idempotent for its data interval. A failure anywhere leaves the previously
published version serving. `recs_hourly` refreshes the latest version this DAG published.
"""


@dag(dag_id=DAILY.dag_id, schedule=DAILY.schedule, doc_md=DOC, **SETTINGS)
def recs_daily() -> None:
    def t(name: str) -> Any:
        return blink_task(DAILY, name)

    ingest, quality, aggregates = t("ingest"), t("quality"), t("aggregates")
    embeddings, index, session_model = t("embeddings"), t("index"), t("session_model")
    ranker, evaluate, head = t("ranker"), t("evaluate"), t("head")
    precompute, publish = t("precompute"), t("publish")

    ingest >> quality >> [aggregates, embeddings]
    embeddings >> [index, session_model]
    [aggregates, index, session_model] >> ranker >> evaluate
    [aggregates, embeddings] >> head
    [evaluate, head] >> precompute >> publish


recs_daily()
