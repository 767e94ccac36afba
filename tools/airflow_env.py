"""The environment Blink runs Airflow with: AIRFLOW_HOME under var/, SQLite, our dags/.

``blink airflow-ui`` runs the Airflow 3 components itself (not ``airflow standalone``) so that
every listener is on 127.0.0.1: the API server (UI) with ``--host``, and the scheduler and
triggerer with ``--skip-serve-logs`` (their log servers bind every interface and are not needed
when tasks run on this host: the UI reads the log files directly).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from blink.config import ROOT, Config

UI_PORT = 8088  # not blink serve's 8080; the same port docker/compose.yaml publishes the UI on
ADMIN = "admin"
DAG_ID = "recs_hourly"
COMPONENTS = {  # name -> airflow arguments
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


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
        # the components and the task runner find this venv's `airflow` first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    })
    return env


def ui_environment(cfg: Config, host: str, port: int) -> dict[str, str]:
    """What the UI components add: where the API server listens and how tasks reach it, and
    SimpleAuthManager's one admin, with the password in a file Blink wrote (owner-only)."""
    base = f"http://{host}:{port}"
    return {
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",  # one person's UI: four uvicorn workers would only cost memory
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(cfg)),
        # The scheduler's health server is off (its default), so nothing else listens.
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    }


def component_commands(host: str, port: int) -> dict[str, list[str]]:
    """Every process `blink airflow-ui` runs, by name."""
    return {"api-server": ["api-server", "--host", host, "--port", str(port)],
            **{name: list(args) for name, args in COMPONENTS.items()}}


def passwords_file(cfg: Config) -> Path:
    return cfg.layout.airflow / "simple_auth_manager_passwords.json.generated"


def admin_login(cfg: Config) -> tuple[str, str]:
    """The UI's admin user and password: generated once, kept owner-only in var/airflow, and
    printed by `blink airflow-ui` (Airflow only prints a password it generates itself, once,
    among hundreds of log lines)."""
    path = passwords_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    passwords: dict[str, str] = {}
    if path.exists() and path.read_text().strip():
        passwords = json.loads(path.read_text())
    if ADMIN not in passwords:
        passwords[ADMIN] = secrets.token_urlsafe(12)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(passwords) + "\n")
    path.chmod(0o600)
    return ADMIN, passwords[ADMIN]


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def migrate(cfg: Config) -> None:
    """Create or upgrade the metadata DB (idempotent; quick when already current)."""
    env = environment(cfg)
    subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def unpause(cfg: Config, dag_id: str = DAG_ID, timeout_s: float = 300) -> bool:
    """Unpause the DAG once the DAG processor has registered it; False if it never appeared."""
    env = environment(cfg)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = subprocess.run([airflow_bin(), "dags", "unpause", dag_id], env=env, capture_output=True, text=True)
        if done.returncode == 0:
            return True
        time.sleep(5)
    return False


def is_paused(cfg: Config, dag_id: str = DAG_ID) -> bool | None:
    """The DAG's pause flag in the metadata DB (None: not registered yet)."""
    with _db(cfg) as db:
        row = db.execute("SELECT is_paused FROM dag WHERE dag_id = ?", (dag_id,)).fetchone()
    return None if row is None else bool(row[0])


def fix_test_run_durations(cfg: Config) -> int:
    """Give runs made by `airflow dags test` (what `blink run-dag` runs) their real start.

    ``dags test`` records a run's start as its logical date, so the UI shows the time from the
    data's hour to the end (33 min for a 2.6 min run). The first task's start is the real one.
    Returns the number of runs corrected. SQLite only (Blink's dev metadata DB).
    """
    if not (cfg.layout.airflow / "airflow.db").exists():
        return 0
    with _db(cfg) as db:
        changed = db.execute("""
            UPDATE dag_run SET start_date = (
                SELECT MIN(ti.start_date) FROM task_instance ti
                WHERE ti.dag_id = dag_run.dag_id AND ti.run_id = dag_run.run_id)
            WHERE triggered_by IN ('TEST', 'test')
              AND EXISTS (SELECT 1 FROM task_instance ti WHERE ti.dag_id = dag_run.dag_id
                          AND ti.run_id = dag_run.run_id AND ti.start_date IS NOT NULL)
              AND start_date IS NOT (SELECT MIN(ti.start_date) FROM task_instance ti
                                     WHERE ti.dag_id = dag_run.dag_id AND ti.run_id = dag_run.run_id)
        """).rowcount
    return int(changed)


class _db:
    """A short sqlite3 connection to the metadata DB, committed on success."""

    def __init__(self, cfg: Config) -> None:
        self.path = cfg.layout.airflow / "airflow.db"

    def __enter__(self) -> sqlite3.Connection:
        self.conn = sqlite3.connect(self.path, timeout=30)
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.conn.commit()
        self.conn.close()
