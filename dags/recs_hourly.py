"""recs_hourly: an hour's work on top of the latest daily fit. Orchestration only.

The edges below are the data dependencies; ``jobs/tasks.py`` lists the same ones and
tests/dags/test_dag_integrity.py checks that the two agree.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag

from dags.taskflow import SETTINGS, blink_task
from jobs.tasks import HOURLY

DOC = """
### recs_hourly
Ingests the new hour and republishes with fresh state; refits nothing.

```
ingest -> quality -> refresh -> head -> precompute -> publish
```

`refresh` links the models of the latest version `recs_daily` published, recomputes the
serve-time aggregates and folds the users who acted since then into the fixed item vectors.
A failure anywhere leaves the previously published version serving.
"""


@dag(dag_id=HOURLY.dag_id, schedule=HOURLY.schedule, doc_md=DOC, **SETTINGS)
def recs_hourly() -> None:
    def t(name: str) -> Any:
        return blink_task(HOURLY, name)

    t("ingest") >> t("quality") >> t("refresh") >> t("head") >> t("precompute") >> t("publish")


recs_hourly()
