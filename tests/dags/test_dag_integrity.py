"""The DAG folder parses cleanly (what the Airflow scheduler sees) and has the promised graph."""

import pytest

from blink.config import ROOT
from jobs.tasks import DAILY, GRAPHS, HOURLY

pytestmark = pytest.mark.integration  # loads a real Airflow DagBag


def test_dagbag_has_no_import_errors_and_the_edges_of_the_task_lists() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dags) == set(GRAPHS)  # from the parsed files, not the metadata DB
    for graph in GRAPHS.values():
        dag = bag.dags[graph.dag_id]
        assert sorted(dag.task_ids) == sorted(graph.names)
        for t in graph.tasks:  # the DAG file's explicit edges are exactly the data dependencies
            assert dag.get_task(t.name).upstream_task_ids == set(t.upstream), (graph.dag_id, t.name)
        assert dag.catchup is False and dag.schedule == graph.schedule
        assert dag.doc_md and "publish" in dag.doc_md
        assert all(t.retries >= 1 for t in dag.tasks)
    daily = bag.dags[DAILY.dag_id]
    # index and session_model need only the embeddings, not each other
    assert daily.get_task("index").upstream_task_ids == {"embeddings"}
    assert "index" not in daily.get_task("session_model").upstream_task_ids
    # the hourly run refits nothing
    assert not {"embeddings", "index", "session_model", "ranker", "evaluate"} & set(bag.dags[HOURLY.dag_id].task_ids)
