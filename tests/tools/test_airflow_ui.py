"""`blink airflow-ui` for real: Airflow 3's components on 127.0.0.1 only, on 8088's side of
blink serve, the admin login printed (and accepted by the API), recs_hourly unpaused; and runs
made by `airflow dags test` (what `blink run-dag` runs) get their real start time."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from blink import config
from tests import sockets
from tests.tools.blink_cli import BIN, env_for
from tools import airflow_env
from tools.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY_DAG = '''
import time
from datetime import datetime
from airflow.sdk import dag, task

@dag(dag_id="tiny", schedule=None, start_date=datetime(2020, 1, 1), catchup=False)
def tiny():
    @task
    def nap():
        time.sleep(2)
    nap()

tiny()
'''


def test_a_dags_test_run_gets_its_real_duration(tmp_path: Path) -> None:
    cfg = config.load(None, env_for(tmp_path / "var"))
    airflow_env.migrate(cfg)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "tiny.py").write_text(TINY_DAG)
    env = airflow_env.environment(cfg) | {"AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    done = subprocess.run([airflow_env.airflow_bin(), "dags", "test", "tiny", "2020-01-01T00:00:00+00:00"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def duration() -> float:
        with airflow_env._db(cfg) as db:
            start, end = db.execute("SELECT start_date, end_date FROM dag_run WHERE dag_id='tiny'").fetchone()
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()

    assert duration() > 3600  # from the logical date (2020) to the end: what the UI showed
    assert airflow_env.fix_test_run_durations(cfg) == 1
    assert 2 <= duration() < 120
    assert airflow_env.fix_test_run_durations(cfg) == 0  # idempotent


def test_airflow_ui_on_loopback_prints_the_login_and_unpauses(tmp_path: Path, redis_server: RedisServer) -> None:
    port = free_port()
    # no scheduled runs in a test: the scheduler must not start the real DAG on shared CPUs
    env = env_for(tmp_path / "var", REDIS_URL=redis_server.url, AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False")
    cfg = config.load(None, env)
    proc = subprocess.Popen([str(BIN / "blink"), "airflow-ui", "--port", str(port)], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(proc.stderr or []), daemon=True).start()
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and not any("unpaused" in line for line in out):
            assert proc.poll() is None, "".join(out)
            time.sleep(1)
        text = "".join(out)
        assert "unpaused" in text, text
        assert f"http://127.0.0.1:{port}" in text
        login = re.search(r"login:\s+user (\S+)\s+password (\S+)", text)
        assert login is not None, text
        assert airflow_env.is_paused(cfg) is False
        # the printed password is the one the API accepts
        r = requests.post(f"http://127.0.0.1:{port}/auth/token", timeout=10,
                          json={"username": login.group(1), "password": login.group(2)})
        assert r.status_code in (200, 201) and r.json().get("access_token"), r.text
        assert requests.post(f"http://127.0.0.1:{port}/auth/token", timeout=10,
                             json={"username": "admin", "password": "wrong"}).status_code in (401, 403)
        # every listener of every component is on loopback (no log servers on 0.0.0.0)
        listening = sockets.listening(proc.pid)
        assert ("127.0.0.1", port) in listening and sockets.only_loopback(listening), listening
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    assert not sockets.listening(proc.pid)
