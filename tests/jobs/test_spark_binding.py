"""The Spark driver listens on 127.0.0.1 only (its RPC and block-manager ports), checked on a
real local SparkSession in a child process through /proc."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blink.config import Config, SparkConfig
from blink.errors import ConfigError
from jobs import spark
from tests import sockets

SCRIPT = """
import sys
from blink.config import Config, SparkConfig
from jobs.spark import get_spark
s = get_spark(Config(spark=SparkConfig(master="local[1]", shuffle_partitions=1, driver_memory="512m")))
assert s.sparkContext.parallelize(range(10), 2).map(lambda x: x * 2).sum() == 90  # python workers too
print("JVM", s._jvm.java.lang.ProcessHandle.current().pid(), flush=True)
sys.stdin.readline()
"""


@pytest.mark.integration
def test_the_spark_driver_listens_on_loopback_only() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = ""
        while not line.startswith("JVM "):  # the JVM prints its own warnings to stdout first
            line = proc.stdout.readline()
            assert line, "the Spark child exited before it started a session"
        jvm = int(line.split()[1])
        listening = sockets.listening(jvm) | sockets.listening(proc.pid)
        assert len(listening) >= 2, listening  # the driver's RPC and block-manager ports at least
        assert sockets.only_loopback(listening), listening
    finally:
        proc.kill()
        proc.wait()


def test_a_cluster_master_needs_a_driver_address() -> None:
    assert spark.driver_host(Config()) == "127.0.0.1"
    with pytest.raises(ConfigError, match="BLINK_SPARK__DRIVER_HOST"):
        spark.driver_host(Config(spark=SparkConfig(master="spark://10.0.0.5:7077")))
    assert spark.driver_host(Config(spark=SparkConfig(master="yarn", driver_host="10.0.0.9"))) == "10.0.0.9"
