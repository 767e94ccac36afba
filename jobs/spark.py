"""One SparkSession per process, configured from Blink's config, plus the partition mapper.

``map_partitions`` is how batch jobs run the shared Python pipeline (blink.pipeline) at
scale: rows are spread over Spark partitions and each Python worker loads the model once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from blink.config import Config
from blink.errors import ConfigError


def get_spark(cfg: Config) -> Any:
    """Get or create the SparkSession (``local[*]`` by default; a cluster master in conf)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(cfg.spark.master)
        .appName("blink")
        .config("spark.sql.shuffle.partitions", cfg.spark.shuffle_partitions)
        .config("spark.driver.memory", cfg.spark.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.jsonGenerator.ignoreNullFields", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.extraJavaOptions", "-Dlog4j2.level=WARN")
        # The driver's RPC and block-manager ports listen on this address only (Spark's default
        # is the host's non-loopback address). A cluster master needs an address its executors
        # reach: set spark.driver_host.
        .config("spark.driver.bindAddress", driver_host(cfg))
        .config("spark.driver.host", driver_host(cfg))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def driver_host(cfg: Config) -> str:
    """Where the driver listens: spark.driver_host, else 127.0.0.1 for a local master."""
    if cfg.spark.driver_host:
        return cfg.spark.driver_host
    if cfg.spark.master.startswith("local"):
        return "127.0.0.1"
    raise ConfigError(f"spark.master is {cfg.spark.master!r}: set spark.driver_host (BLINK_SPARK__DRIVER_HOST) "
                      "to this host's address that the executors can reach")


def map_partitions(spark: Any, rows: Iterable[Any], fn: Callable[[Iterator[Any]], Iterator[Any]],
                   partitions: int | None = None) -> list[Any]:
    """Run ``fn`` over ``rows`` spread across Spark partitions and collect the results."""
    rows = list(rows)
    n = partitions or max(1, min(len(rows), spark.sparkContext.defaultParallelism * 2))
    return spark.sparkContext.parallelize(rows, n).mapPartitions(fn).collect()  # type: ignore[no-any-return]


@lru_cache(maxsize=4)
def cached_model(directory: str, as_of: str, ranker: bool = True) -> Any:
    """A Model loaded once per Python worker process (Spark reuses workers between tasks)."""
    from blink.model import Model

    return Model.load(Path(directory), as_of, ranker=ranker)
