"""The one entry point every DAG task calls: load config, derive the interval, time the job.

Every job module has the same signature, ``run(cfg, interval) -> dict``, so this table-free
entry needs no special case per task. Modules are imported when their task runs, so
importing this file (or parsing the DAG) stays cheap.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from blink import config, layout
from blink.errors import ConfigError
from jobs.interval import Interval
from jobs.tasks import BY_NAME

log = logging.getLogger("blink.jobs")


def run_task(name: str, context: Mapping[str, Any]) -> Any:
    """Run one task for the Airflow run in ``context``; returns a small JSON-able summary."""
    cfg = config.load()
    return run_named(name, cfg, Interval.from_airflow(cfg, context))


def run_named(name: str, cfg: config.Config, interval: Interval) -> Any:
    """Run task ``name`` for ``interval`` and record its duration beside the artifacts."""
    if name not in BY_NAME:
        raise ConfigError(f"unknown task {name!r}; the tasks are {', '.join(BY_NAME)}")
    module = importlib.import_module(f"jobs.{name}")
    started = time.perf_counter()
    result = module.run(cfg, interval)
    seconds = round(time.perf_counter() - started, 2)
    timings_path = interval.artifact_dir / layout.TIMINGS
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    timings[name] = seconds
    timings_path.write_text(json.dumps(timings, indent=1))
    log.info("task %s took %.1fs: %s", name, seconds, result)
    return json.loads(json.dumps(result, default=str))
