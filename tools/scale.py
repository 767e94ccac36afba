"""The batch layer at growing data sizes: the daily fit, then an hourly refresh an hour later.

For each size: generate the synthetic data in its own var directory, run ``recs_daily``,
write the next hour of events from the same generator, run ``recs_hourly`` for that hour.
Every run is the real ``blink run-dag`` (Airflow ``dags test``); while it runs, the resident
memory of its whole process tree (Airflow, the Spark driver JVM, Python workers) is sampled
and attributed to the task that was running. Per task: seconds (from the version's
task_seconds.json), peak RSS; per run: wall time, rows in the lake, the precompute rate in
head users/s. Writes ``report.json`` and ``scale.png`` under var/reports/scale/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from blink import layout

DONE = re.compile(r"done (\w+)\s+\((\d+)s\)")
SAMPLE_S = 0.5


def _tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (gone ones count 0)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_dag(env: dict[str, str], args: list[str], log: Path) -> dict[str, Any]:
    """Run ``blink run-dag args``; per finished task its peak RSS while it ran, and the wall time."""
    blink = str(Path(sys.executable).parent / "blink")
    started = time.perf_counter()
    peaks: dict[str, int] = {}
    current = {"peak": 0}
    with open(log, "w") as out:
        proc = subprocess.Popen([blink, "run-dag", *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        watched = psutil.Process(proc.pid)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(SAMPLE_S):
                current["peak"] = max(current["peak"], _tree_rss(watched))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if m := DONE.search(line):  # tasks run one at a time under `dags test`
                peaks[m.group(1)] = current["peak"]
                current["peak"] = 0
        code = proc.wait()
        stop.set()
        sampler.join()
    if code != 0:
        raise RuntimeError(f"blink run-dag {' '.join(args)} failed (exit {code}); see {log}")
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_rss_gib": {
        k: round(v / 2**30, 2) for k, v in peaks.items()}}


def measure(size: str, root: Path, seed: int = 7) -> dict[str, Any]:
    """Daily then hourly at one size, in ``root/<size>/var``."""
    import pandas as pd

    from blink import config
    from tools import synth

    var = root / size / "var"
    env = {**os.environ, "BLINK_PATHS__VAR_DIR": str(var), "BLINK_DATA__SIZE": size,
           "BLINK_REDIS__KEY_PREFIX": f"scale-{size}"}
    env.setdefault("BLINK_ENV", "bench" if size == "bench" else "dev")
    env.pop("REDIS_URL", None)  # Blink starts and uses its own server for this var dir
    blink = str(Path(sys.executable).parent / "blink")
    logs = root / size
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([blink, "generate", "--size", size, "--seed", str(seed)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    generate_s = round(time.perf_counter() - t0, 1)
    daily = run_dag(env, ["--dag", "daily"], logs / "daily.log")
    cfg = config.load(environ=env)
    fit = cfg.layout.version(cfg.layout.latest_fit.read_text().strip())
    as_of = int(json.loads((fit / layout.MANIFEST).read_text())["as_of_ms"])
    hour = synth.next_hour(size, seed, as_of)
    hour.to_parquet(cfg.layout.landing / "events" / f"next-hour-{as_of}.parquet", index=False)
    date = pd.Timestamp(as_of + synth.HOUR_MS, unit="ms", tz="UTC").isoformat()  # as of the hour's end
    hourly = run_dag(env, ["--dag", "hourly", "--date", date], logs / "hourly.log")
    versions = sorted((p for p in cfg.layout.artifacts.iterdir() if (p / layout.MANIFEST).exists()),
                      key=lambda p: p.stat().st_mtime)
    result: dict[str, Any] = {"size": size, "generate_s": generate_s, "hour_events": len(hour)}
    for name, run, directory in (("daily", daily, fit), ("hourly", hourly, versions[-1])):
        manifest = json.loads((directory / layout.MANIFEST).read_text())
        tasks = manifest["tasks"]
        result[name] = {**run, "version": directory.name, "task_s": tasks,
                        "head_users": manifest["head_users"],
                        "precompute_users_per_s": round(manifest["head_users"] / tasks["precompute"], 1)
                        if tasks.get("precompute") else None}
    result["lake_events"] = int(pd.read_parquet(cfg.layout.table("events"), columns=["event_id"]).shape[0])
    subprocess.run([blink, "stop"], env=env, check=False, stdout=subprocess.DEVNULL)  # this size's redis-server
    return result


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Left: task seconds of the daily and hourly run at the largest size; right: each task's
    seconds against the number of events (log-log), the scaling curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, curve) = plt.subplots(1, 2, figsize=(14, 5))
    big = results[-1]
    for offset, name in ((-0.2, "daily"), (0.2, "hourly")):
        tasks = big[name]["task_s"]
        names = list(big["daily"]["task_s"]) + [t for t in big["hourly"]["task_s"] if t not in big["daily"]["task_s"]]
        bars.bar([j + offset for j in range(len(names))], [tasks.get(t, 0) for t in names], width=0.4, label=name)
        bars.set_xticks(range(len(names)), names, rotation=45, ha="right")
    bars.set_ylabel("seconds")
    bars.set_title(f"task durations at {big['size']} ({big['lake_events']:,} events)")
    bars.legend()
    events = [r["lake_events"] for r in results]
    for name in ("daily", "hourly"):
        for task in results[-1][name]["task_s"]:
            ys = [r[name]["task_s"].get(task) for r in results]
            if all(y for y in ys):
                curve.plot(events, ys, marker="o", label=f"{name}:{task}", linestyle="-" if name == "daily" else "--")
    curve.set_xscale("log")
    curve.set_yscale("log")
    curve.set_xlabel("events in the lake")
    curve.set_ylabel("seconds")
    curve.set_title("how each task grows with the data")
    curve.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(sizes: list[str], out: Path) -> Path:
    """Measure every size (smallest first) and write the report; returns report.json."""
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    results = []
    for size in sizes:
        results.append(measure(size, out / "runs"))
        print(json.dumps({k: v for k, v in results[-1].items()}, indent=1), flush=True)
    report = {"machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                          "load_before": load, "load_after": os.getloadavg()}, "sizes": results}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot(results, out / "scale.png")
    return out / "report.json"
