"""The environment Blink runs Airflow with: AIRFLOW_HOME under var/, SQLite, our dags/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from blink.config import ROOT, Config


def environment(cfg: Config) -> dict[str, str]:
    home = cfg.layout.airflow
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(cfg.layout.logs / "airflow"),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "GX_ANALYTICS_ENABLED": "false",
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    })
    return env


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def migrate(cfg: Config) -> None:
    """Create or upgrade the metadata DB (idempotent; quick when already current)."""
    env = environment(cfg)
    subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
