"""The one entry point every DAG task calls: load config, derive the run, time the job.

Keeping this out of the DAG file keeps parsing cheap (no Spark or model imports there) and
lets the CLI and tests run any task without Airflow.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from typing import Any

from blink import config
from jobs.run import Run

log = logging.getLogger("blink.jobs")
TIMINGS = "task_seconds.json"


# name -> (module in jobs/, does its run() take a SparkSession first?). Modules are imported
# when the task runs, so importing this file (or parsing the DAG) stays cheap.
TASKS: dict[str, tuple[str, bool]] = {
    "ingest": ("ingest", True), "validate": ("validate", False), "features": ("features", True),
    "embeddings": ("embeddings", True), "index": ("index", False), "session": ("session_model", True),
    "ranker": ("ranker", True), "evaluate": ("evaluate", True), "head": ("head", False),
    "precompute": ("precompute", True), "publish": ("publish", False),
}


def _call(name: str, cfg: config.Config, run: Run) -> Any:
    module_name, needs_spark = TASKS[name]
    module = importlib.import_module(f"jobs.{module_name}")
    args: list[Any] = [cfg, run]
    if needs_spark:
        from jobs import spark

        args.insert(0, spark.session(cfg))
    if name == "evaluate":  # compares with the version serving now
        from jobs.publish import published_dir

        args.append(published_dir(cfg))
    elif name == "publish":  # the manifest records every task's duration
        timings = run.artifact_dir / TIMINGS
        args.append(json.loads(timings.read_text()) if timings.exists() else {})
    return module.run(*args)


def run_task(name: str, context: dict[str, Any]) -> Any:
    """Run one task for the Airflow run in ``context``; returns a small JSON-able summary."""
    cfg = config.load()
    run = Run.from_airflow(cfg, context)
    return run_named(name, cfg, run)


def run_named(name: str, cfg: config.Config, run: Run) -> Any:
    started = time.perf_counter()
    result = _call(name, cfg, run)
    seconds = round(time.perf_counter() - started, 2)
    timings_path = run.artifact_dir / TIMINGS
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    timings[name] = seconds
    timings_path.write_text(json.dumps(timings, indent=1))
    log.info("task %s took %.1fs: %s", name, seconds, result)
    return json.loads(json.dumps(result, default=str))
