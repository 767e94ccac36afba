"""What both DAG files share: a TaskFlow task per jobs/tasks.py entry, and the run settings.

Every task calls ``jobs.entry.run_task``; all heavy imports happen inside tasks, so parsing
the DAG folder stays cheap. This module defines no DAG itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import get_current_context, task

from jobs.tasks import Graph

SETTINGS: dict[str, Any] = {
    # Early, so a run can be made for any data's time (real datasets are years old); with
    # catchup off the scheduler still only runs the latest interval.
    "start_date": datetime(1990, 1, 1),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {"retries": 2, "retry_delay": timedelta(minutes=2)},
    "tags": ["blink"],
}


def blink_task(graph: Graph, name: str) -> Any:
    """The Airflow task ``name`` of ``graph``, its doc taken from jobs/tasks.py."""
    doc = next(t.doc for t in graph.tasks if t.name == name)

    @task(task_id=name, doc_md=doc)
    def step() -> dict[str, Any]:
        from jobs.entry import run_task

        return run_task(name, get_current_context())  # type: ignore[no-any-return]

    return step()
