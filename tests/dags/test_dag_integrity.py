"""The DAG folder parses cleanly (what the Airflow scheduler sees) and has the promised graph."""

import pytest

from blink.config import ROOT
from jobs.tasks import TASKS

pytestmark = pytest.mark.integration  # loads a real Airflow DagBag


def test_dagbag_has_no_import_errors_and_the_edges_of_the_task_list() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags.get("recs_hourly")  # from the parsed files, not the metadata DB
    assert dag is not None
    assert sorted(dag.task_ids) == sorted(t.name for t in TASKS)
    for t in TASKS:  # the DAG file's explicit edges are exactly the data dependencies
        assert dag.get_task(t.name).upstream_task_ids == set(t.upstream), t.name
    # index and session_model need only the embeddings, not each other
    assert dag.get_task("index").upstream_task_ids == {"embeddings"}
    assert "index" not in dag.get_task("session_model").upstream_task_ids
    assert dag.catchup is False
    assert dag.doc_md and "publish" in dag.doc_md
    assert all(t.retries >= 1 for t in dag.tasks)
    assert dag.schedule == "@hourly"
