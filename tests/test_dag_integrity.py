"""The DAG folder parses cleanly (what the Airflow scheduler sees) and has the promised shape."""

from blink.config import ROOT


def test_dagbag_has_no_import_errors_and_the_expected_chain() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags.get("recs_hourly")  # from the parsed files, not the metadata DB
    assert dag is not None
    order = ["ingest", "validate", "features", "embeddings", "index", "session", "ranker", "evaluate",
             "head", "precompute", "publish"]
    assert [t.task_id for t in dag.topological_sort()] == order
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    assert dag.catchup is False
    assert dag.doc_md and "publish" in dag.doc_md
    assert all(t.retries >= 1 for t in dag.tasks)
    assert dag.schedule == "@hourly"
