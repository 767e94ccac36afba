"""The one entry point every DAG task calls: load config, derive the run, time the job.

Keeping this out of the DAG file keeps parsing cheap (no Spark or model imports there) and
lets the CLI and tests run any task without Airflow.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from blink import config
from jobs.run import Run

log = logging.getLogger("blink.jobs")
TIMINGS = "task_seconds.json"


def _ingest(cfg: config.Config, run: Run) -> Any:
    from jobs import ingest, spark

    return ingest.run(spark.session(cfg), cfg, run)


def _validate(cfg: config.Config, run: Run) -> Any:
    from jobs import validate

    return validate.run(cfg, run)


def _features(cfg: config.Config, run: Run) -> Any:
    from jobs import features, spark

    return features.run(spark.session(cfg), cfg, run)


def _embeddings(cfg: config.Config, run: Run) -> Any:
    from jobs import embeddings, spark

    return embeddings.run(spark.session(cfg), cfg, run)


def _index(cfg: config.Config, run: Run) -> Any:
    from jobs import index

    return index.run(cfg, run)


def _session(cfg: config.Config, run: Run) -> Any:
    from jobs import session_model, spark

    return session_model.run(spark.session(cfg), cfg, run)


def _ranker(cfg: config.Config, run: Run) -> Any:
    from jobs import ranker, spark

    return ranker.run(spark.session(cfg), cfg, run)


def _evaluate(cfg: config.Config, run: Run) -> Any:
    from jobs import evaluate, publish, spark

    return evaluate.run(spark.session(cfg), cfg, run, publish.published_dir(cfg))


def _head(cfg: config.Config, run: Run) -> Any:
    from jobs import head

    return head.run(cfg, run)


def _precompute(cfg: config.Config, run: Run) -> Any:
    from jobs import precompute, spark

    return precompute.run(spark.session(cfg), cfg, run)


def _publish(cfg: config.Config, run: Run) -> Any:
    from jobs import publish

    timings = run.artifact_dir / TIMINGS
    return publish.run(cfg, run, json.loads(timings.read_text()) if timings.exists() else {})


TASKS: dict[str, Callable[[config.Config, Run], Any]] = {
    "ingest": _ingest, "validate": _validate, "features": _features, "embeddings": _embeddings,
    "index": _index, "session": _session, "ranker": _ranker, "evaluate": _evaluate, "head": _head,
    "precompute": _precompute, "publish": _publish,
}


def run_task(name: str, context: dict[str, Any]) -> Any:
    """Run one task for the Airflow run in ``context``; returns a small JSON-able summary."""
    cfg = config.load()
    run = Run.from_airflow(cfg, context)
    return run_named(name, cfg, run)


def run_named(name: str, cfg: config.Config, run: Run) -> Any:
    started = time.perf_counter()
    result = TASKS[name](cfg, run)
    seconds = round(time.perf_counter() - started, 2)
    timings_path = run.artifact_dir / TIMINGS
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    timings[name] = seconds
    timings_path.write_text(json.dumps(timings, indent=1))
    log.info("task %s took %.1fs: %s", name, seconds, result)
    return json.loads(json.dumps(result, default=str))
