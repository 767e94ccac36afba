"""The ``blink`` command line: generate data, run the DAG, serve, ask, stop."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from blink import config as config_mod
from blink import layout
from blink.errors import BlinkError
from contracts.tables import KIND_OF
from tools import airflow_env, processes, redis_server

console = Console(stderr=True)


def _cfg() -> config_mod.Config:
    return config_mod.load()


@click.group()
@click.version_option(package_name="blink", prog_name="blink")
def cli() -> None:
    """Blink: real-time personalization (batch with Airflow + Spark, serving with Flask)."""


@cli.command()
@click.option("--size", type=click.Choice(["tiny", "demo", "bench"]), default=None, help="default: data.size")
@click.option("--seed", type=int, default=None, help="default: data.seed")
@click.option("--bad", type=int, default=0, help="also write N malformed events (to see the DLQ work)")
def generate(size: str | None, seed: int | None, bad: int) -> None:
    """Write synthetic items, users and events to var/landing/ as Parquet."""
    from tools import synth

    cfg = _cfg()
    size, seed = size or cfg.data.size, seed if seed is not None else cfg.data.seed
    with console.status(f"generating the {size} dataset (seed {seed})..."):
        ds = synth.generate(size, seed)
        if bad:
            ds.events = __import__("pandas").concat([ds.events, synth.corrupt(ds.events, bad, seed)])
        paths = synth.write(ds, cfg.layout.landing)
    console.print(f"[green]wrote[/] {len(ds.items):,} items, {len(ds.users):,} users, "
                  f"{len(ds.events):,} events ({bad} malformed) under {cfg.layout.landing}")
    for name, path in paths.items():
        console.print(f"  {name}: {path}")


REFIT_HOURS = 24  # recs_daily's period: an older fit is refitted, not refreshed


def _default_logical_date(cfg: config_mod.Config) -> str:
    """The hour just after the newest event in the landing files, whatever their format
    (Parquet, CSV, JSON lines; ISO-8601 times read as the contract reads them): real datasets
    are old. Values the contract would reject as a wrong unit or a bad clock are ignored."""
    from contracts.landing import newest_timestamp
    from contracts.validation import MAX_SKEW_MS, MIN_TIMESTAMP_MS

    plausible = range(MIN_TIMESTAMP_MS, int(time.time() * 1000) + MAX_SKEW_MS + 1)
    newest = newest_timestamp(cfg.layout.landing / "events", plausible)
    if newest is None:
        raise BlinkError(f"no events in {cfg.layout.landing / 'events'}: run `blink ingest FILE`, "
                         "`blink generate` or `blink import` first (or pass --date)")
    hour = math.ceil(newest / 3_600_000) * 3_600_000
    return datetime.fromtimestamp(hour / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _check_split(cfg: config_mod.Config, logical_date: str) -> None:
    """Stop before Airflow starts when the split windows leave the run nothing to train on
    (the embeddings task would fail minutes later), naming the windows to shrink and to what."""
    import numpy as np
    import pyarrow.dataset as ds

    from contracts.landing import folder_event_times
    from contracts.validation import MAX_SKEW_MS, MIN_TIMESTAMP_MS
    from tools import split_advice

    try:
        when = datetime.fromisoformat(logical_date)
    except ValueError as exc:
        raise click.BadParameter(f"{logical_date!r} is not an ISO date ({exc}); e.g. 2026-03-01T12:00:00+00:00",
                                 param_hint="--date") from None
    as_of = int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)  # Airflow: naive = UTC
    plausible = range(MIN_TIMESTAMP_MS, int(time.time() * 1000) + MAX_SKEW_MS + 1)
    times = folder_event_times(cfg.layout.landing / "events", plausible)
    lake = cfg.layout.table("events")
    if lake.exists() and any(lake.glob("date=*")):
        times += ds.dataset(lake, format="parquet", partitioning="hive").to_table(columns=["timestamp"]) \
            .column("timestamp").drop_null().to_pylist()
    problem = split_advice.check(np.asarray(times, dtype=np.int64), as_of, cfg.split.test_hours,
                                 cfg.split.label_hours)
    if problem:
        raise click.ClickException(f"{problem} (BLINK_ENV={cfg.env})")


def _untaken(cfg: config_mod.Config) -> Callable[[Path], bool]:
    """Whether no DAG run has taken a landing file yet (the ingest task's manifest)."""
    from jobs.ingest import manifest_path

    manifest = manifest_path(cfg.layout.lake)
    taken = json.loads(manifest.read_text()) if manifest.exists() else {}
    return lambda landing_file: f"{landing_file.parent.name}/{landing_file.name}" not in taken


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(sorted(KIND_OF)), default=None,
              help="what the file holds (default: told by its columns)")
def ingest(path: Path, kind: str | None) -> None:
    """Check your own Parquet/CSV/JSON-lines file against the contract and land it for the next run."""
    from rich.progress import Progress

    from contracts.dlq import DeadLetterQueue
    from contracts.landing import accept_file

    cfg = _cfg()
    with Progress(console=console, transient=True) as bar:  # drawn only on a terminal
        task = bar.add_task(f"checking {path.name}", total=None)
        report = accept_file(path, cfg.layout.landing, DeadLetterQueue(cfg.layout.dlq), kind,
                             untaken=_untaken(cfg), progress=lambda done, total: bar.update(task, completed=done,
                                                                                            total=total))
    console.print(f"{report.table}: {report.rows:,} rows = {report.accepted:,} accepted + "
                  f"{report.duplicates:,} duplicates + {report.dead_lettered:,} dead-lettered", highlight=False)
    for reason, count in report.reasons.items():
        console.print(f"  {count:,} × {reason}", markup=False, highlight=False)
    if sum(report.reasons.values()) > report.dead_lettered:
        console.print("  (a row with several problems counts under each, as in `blink dlq stats`)")
    if report.replaced_letters:
        console.print(f"this file was ingested before: its {report.replaced_letters:,} earlier dead letters "
                      "were replaced by these, not added", highlight=False)
    for earlier in report.replaced_landing:
        console.print(f"removed {earlier}: an earlier version of this file no run has ingested yet",
                      highlight=False, soft_wrap=True)
    if report.landing_file:
        console.print(f"landed as {report.landing_file}; the next `blink run-dag` ingests it", highlight=False,
                      soft_wrap=True)
    if report.dead_lettered:
        console.print("see why with `blink dlq list`; fix and `blink dlq replay`")


@cli.group("import")
def import_() -> None:
    """Map a real dataset into the event contract as landing files (see docs/importers.md)."""


def _import(fn_name: str, path: Path) -> None:
    from tools import importers

    cfg = _cfg()
    with console.status(f"importing {path}..."):
        report = getattr(importers, fn_name)(path, cfg.layout.landing)
    console.print(f"[green]{report.source}[/]: {report.rows_read:,} rows read -> {report.events:,} events, "
                  f"{report.items:,} items, {report.users:,} users")
    for reason, count in sorted(report.skipped.items(), key=lambda kv: -kv[1]):
        console.print(f"  skipped {count:,}: {reason}")
    prefix = ""
    if report.advice is not None:
        console.print(str(report.advice), highlight=False, markup=False)
        prefix = f"{report.advice.prefix} "
    console.print(f"next: `{prefix}blink run-dag` (its date defaults to the hour after the newest event)",
                  highlight=False, markup=False)


@import_.command("online-retail")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def import_online_retail(path: Path) -> None:
    """UCI Online Retail (.parquet/.csv): invoices are sessions, customers are users."""
    _import("import_online_retail", path)


@import_.command("movielens")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def import_movielens(path: Path) -> None:
    """MovieLens, CSV layout (ratings.csv, movies.csv) or '::' layout (ratings.dat, movies.dat)."""
    _import("import_movielens", path)


def _which_dag(cfg: config_mod.Config, logical_date: str) -> str:
    """recs_hourly when a fit younger than a day precedes the run's date, else recs_daily."""
    import json
    from datetime import datetime

    from blink import layout

    pointer = cfg.layout.latest_fit
    if not pointer.exists():
        return "recs_daily"
    manifest = cfg.layout.version(pointer.read_text().strip()) / layout.MANIFEST
    if not manifest.exists():
        return "recs_daily"
    fit_ms = int(json.loads(manifest.read_text())["as_of_ms"])
    run_ms = int(datetime.fromisoformat(logical_date.replace("Z", "+00:00")).timestamp() * 1000)
    return "recs_hourly" if 0 < run_ms - fit_ms < REFIT_HOURS * 3_600_000 else "recs_daily"


@cli.command("run-dag")
@click.option("--date", "logical_date", default=None, help="logical date (ISO); default: after the newest event")
@click.option("--dag", "which", type=click.Choice(["auto", "daily", "hourly"]), default="auto",
              help="daily: refit everything; hourly: refresh the latest fit; auto (default): hourly when "
                   "a fit younger than a day precedes the date, else daily")
def run_dag(logical_date: str | None, which: str) -> None:
    """One run of recs_daily or recs_hourly through `airflow dags test`, with progress per task."""
    from jobs.tasks import GRAPHS

    cfg = _cfg()
    logical_date = logical_date or _default_logical_date(cfg)
    dag_id = _which_dag(cfg, logical_date) if which == "auto" else f"recs_{which}"
    task_names = GRAPHS[dag_id].names
    if dag_id == "recs_daily":  # only a fit needs history before its validation cut
        _check_split(cfg, logical_date)
    redis_server.ensure(cfg)
    console.print(f"running {dag_id} for {logical_date}")
    logs = cfg.layout.logs
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"dag-{int(time.time())}.log"
    with console.status("preparing the Airflow metadata DB (var/airflow)..."):
        airflow_env.migrate(cfg)
    cmd = [airflow_env.airflow_bin(), "dags", "test", dag_id, logical_date]
    done: list[str] = []
    started = time.perf_counter()
    finished = re.compile(r"\[DAG TEST\] end task task_id=(\w+)")
    outcome = re.compile(r"DagRun Finished: .*? state=(\w+)")
    state = "unknown"
    with open(log_path, "w") as log, console.status(f"running {dag_id}...") as status:
        proc = subprocess.Popen(cmd, env=airflow_env.environment(cfg), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if m := outcome.search(line):
                state = m.group(1)
            m = finished.search(line)
            if m and m.group(1) in task_names and m.group(1) not in done:
                done.append(m.group(1))
                console.print(f"  [green]done[/] {m.group(1)}  ({time.perf_counter() - started:.0f}s)")
                status.update(f"running {dag_id}... {len(done)}/{len(task_names)} tasks")
        code = proc.wait()
    # "success" with fewer tasks done happens when Airflow skips them (e.g. a date before start_date)
    if code != 0 or state != "success" or len(done) < len(task_names):
        errors = [ln for ln in log_path.read_text().splitlines() if "error" in ln.lower()][-15:]
        console.print("\n".join(ln[:400] for ln in errors))
        raise click.ClickException(f"{dag_id} ended with state={state}, {len(done)} of {len(task_names)} tasks "
                                   f"done (exit {code}); "
                                   f"the previously published version keeps serving. Full log: {log_path}")
    airflow_env.fix_test_run_durations(cfg)  # the UI shows the run's real duration, not since its date
    console.print(f"[green]{dag_id} finished[/] in {time.perf_counter() - started:.0f}s; log: {log_path}")


def _port_in_use(host: str, port: int) -> bool:
    """Whether a server already listens on host:port (bound the way gunicorn binds)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _busy(host: str, port: int) -> click.ClickException:
    return click.ClickException(f"port {port} is in use on {host} (another `blink serve`, or another program): "
                                f"choose --port (e.g. --port {redis_server.free_port()}), or `blink stop` the "
                                "Blink server using it")


def _read_pid(path: Path) -> int:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else 0


def _answers(host: str, port: int) -> bool:
    import urllib.request

    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    try:
        with urllib.request.urlopen(f"http://{target}:{port}/health/live", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


BOOT_FAILED = ("Exception in worker process", "Worker failed to boot", "App failed to load", "Reason:")


def _wait_daemon(cfg: config_mod.Config, host: str, port: int, log_path: Path, offset: int) -> int:
    """The daemonized master's pid once it listens on host:port and a worker answers
    /health/live; else a clear error (and the master, if it lingers, stopped).

    gunicorn --daemon returns 0 as soon as it forks, before it binds and before any worker has
    loaded the app: success is the master's own "Listening at ... (pid)" line plus an answer,
    failure a worker that could not boot or the master exiting (the log's lines say why).
    """
    deadline = time.monotonic() + 120
    listening = re.compile(rf"Listening at: \S+:{port} \((\d+)\)")
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")[offset:] if log_path.exists() else ""
        m = listening.search(text)
        pid = int(m.group(1)) if m else _read_pid(cfg.layout.gunicorn_pid)
        if m and processes.alive(pid) and _answers(host, port):
            return pid
        if "Connection in use" in text or "Address already in use" in text:
            raise _busy(host, port)
        if any(sign in text for sign in BOOT_FAILED) or (pid and not processes.alive(pid)):
            if pid and processes.alive(pid) and _our_gunicorn(cfg, pid):
                os.kill(pid, signal.SIGTERM)  # a master whose workers cannot boot serves nothing
            reasons = [ln for ln in text.splitlines() if "Error" in ln or "Reason" in ln][-5:]
            raise click.ClickException("gunicorn did not start: " + ("; ".join(reasons) or text[-800:])
                                       + f"\nfull log: {log_path}")
        time.sleep(0.2)
    raise click.ClickException(f"gunicorn did not answer on {host}:{port} within 120 s; see {log_path}")


def _our_gunicorn(cfg: config_mod.Config, pid: int) -> bool:
    """The pid is a gunicorn serving this var/ directory (conf/gunicorn.conf.py makes the var dir
    its working directory), so a pid file copied with a var dir, or a pid reused after a reboot,
    never names a process this command may stop."""
    return "gunicorn" in " ".join(processes.cmdline(pid)) and processes.cwd(pid) == cfg.var.resolve()


@cli.command()
@click.option("--host", default=None, help="default: serving.host (127.0.0.1)")
@click.option("--port", type=int, default=None, help="default: serving.port")
@click.option("--workers", type=int, default=None, help="default: serving.workers")
@click.option("--daemon", is_flag=True, help="run in the background (pid in var/gunicorn.pid)")
def serve(host: str | None, port: int | None, workers: int | None, daemon: bool) -> None:
    """Start the serving API under gunicorn (logs: var/logs/serving.log)."""
    cfg = _cfg()
    host, port = host or cfg.serving.host, port or cfg.serving.port
    if _port_in_use(host, port):
        raise _busy(host, port)
    pid_file = cfg.layout.gunicorn_pid
    if daemon and (running := _read_pid(pid_file)) and _our_gunicorn(cfg, running):
        raise click.ClickException(f"Blink already serves from {cfg.var} (pid {running}): `blink stop` it first")
    redis_server.ensure(cfg)
    env = dict(os.environ)
    env["BLINK_SERVING__HOST"] = host
    env["BLINK_SERVING__PORT"] = str(port)
    env["BLINK_SERVING__WORKERS"] = str(workers or cfg.serving.workers)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    cmd = [gunicorn, "-c", str(config_mod.ROOT / "conf" / "gunicorn.conf.py"), "serving.wsgi:app"]
    url = f"http://{host}:{port}"
    logs = cfg.layout.logs
    logs.mkdir(parents=True, exist_ok=True)
    os.chdir(config_mod.ROOT)
    if not daemon:
        console.print(f"serving on {url} (log: {logs / 'serving.log'})")
        os.execve(gunicorn, cmd, env)  # gunicorn replaces us: signals reach it directly
    log_path = logs / "gunicorn.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    pid_file.unlink(missing_ok=True)
    code = subprocess.call(cmd + ["--daemon", "--pid", str(pid_file), "--error-logfile", str(log_path)], env=env)
    if code != 0:
        raise click.ClickException(f"gunicorn exited with {code}; see {log_path}")
    pid = _wait_daemon(cfg, host, port, log_path, offset)
    console.print(f"serving on {url} (pid {pid}; logs: {logs / 'serving.log'}, {log_path}); `blink stop` stops it")


@cli.command()
@click.argument("user_id")
@click.option("-k", type=int, default=None)
@click.option("--device", default=None)
def recommend(user_id: str, k: int | None, device: str | None) -> None:
    """Print one answer, computed in-process by the same router the API uses."""
    from blink import layout
    from serving.app import create_app

    cfg = _cfg()
    artifacts = cfg.layout.artifacts
    if not any((d / layout.MANIFEST).exists() for d in (artifacts.iterdir() if artifacts.exists() else [])):
        # Nothing to answer from: say what to do, and start nothing (no redis-server left behind).
        raise click.ClickException(f"no model version in {artifacts} yet: run `blink run-dag` first (after "
                                   "`blink generate`, `blink ingest FILE` or `blink import …`)")
    app = create_app(cfg, start_reload=False, listening=False)
    answer = app.extensions["blink"]["router"].recommend(user_id, k=k, device=device)
    click.echo(json.dumps(answer.to_dict(), indent=1))


def _print_baselines(versus: dict[str, Any]) -> None:
    """Blink and every baseline on the same questions: NDCG / recall per question set."""
    from rich.table import Table

    k, table = versus["k"], versus["table"]
    questions = list(table["blink"])
    out = Table(title=f"Blink vs strong baselines (same split and questions, k={k}; * = best baseline)")
    out.add_column("system")
    for q in questions:
        out.add_column(f"{q} ({table['blink'][q]['users']}) ndcg / recall")
    for system, row in table.items():
        out.add_row(system, *(f"{row[q]['ndcg']:.4f} / {row[q]['recall']:.4f}"
                              + (" *" if versus["best_baseline"].get(q) == system else "") for q in questions))
    Console(width=160).print(out)
    for note in versus.get("notes", []):
        console.print(f"note: {note}")


@cli.command()
def evaluate() -> None:
    """Print the offline evaluation of the version serving now."""
    from jobs.publish import published_dir

    cfg = _cfg()
    directory = published_dir(cfg)
    if directory is None:
        raise click.ClickException("no version published yet: run `blink run-dag`")
    report = json.loads((directory / layout.EVAL).read_text())
    from rich.table import Table

    k = report["k"]
    table = Table(title=f"offline evaluation of {report['version']} (test window, k={k})")
    for col in ("bucket", "users", "system", f"recall@{k}", f"ndcg@{k}", f"mrr@{k}", "coverage"):
        table.add_column(col)
    for bucket, row in report["table"].items():
        for system in ("popularity", "retrieval", "two_stage"):
            m = row[system]
            table.add_row(bucket, str(row["users"]), system, f"{m[f'recall@{k}']:.4f}",
                          f"{m[f'ndcg@{k}']:.4f}", f"{m[f'mrr@{k}']:.4f}", f"{m['coverage']:.3f}")
    Console(width=140).print(table)
    if "targets" in report:
        from jobs.evaluate import describe_targets

        console.print(f"targets: {describe_targets(report['targets'])}")
    console.print(f"gate: {report['gate']['reason']}")
    if "baselines" in report:
        _print_baselines(report["baselines"])
        console.print(f"gate vs baselines: {report['baseline_gate']['reason']}")
    session_file = directory / layout.SESSION_EVAL
    if session_file.exists():
        sess = json.loads(session_file.read_text())
        stable = Table(title=f"next-item in test-window sessions ({sess['test_sessions']} sessions)")
        for col in ("system", f"hr@{sess['k']}", f"mrr@{sess['k']}", "predictions"):
            stable.add_column(col)
        for system, m in sess["table"].items():
            stable.add_row(system, f"{m['hr@' + str(sess['k'])]:.4f}", f"{m['mrr@' + str(sess['k'])]:.4f}",
                           str(m["predictions"]))
        Console(width=140).print(stable)
    report_html = cfg.layout.eval_reports / directory.name / "index.html"
    if report_html.exists():
        console.print(f"report: {report_html}")


def _store(cfg: config_mod.Config) -> Any:
    """The recommendation store (Redis), or a clear error when it cannot be reached."""
    import redis

    from blink import redis_client
    from blink.keys import Keys
    from blink.store import RedisStore

    store = RedisStore(redis_client.client(cfg, timeout_s=5.0), Keys(cfg.redis.key_prefix))
    try:
        store.r.ping()
    except redis.RedisError as exc:
        raise click.ClickException(f"the store ({redis_client.url(cfg)}) is unreachable: {exc}; "
                                   "`blink serve` starts Blink's own redis-server") from None
    return store


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else "-"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object per version instead of a table")
def versions(as_json: bool) -> None:
    """Model versions on disk and in the store: data cut-off, publish time, evaluation, which is served."""
    from rich.table import Table

    from serving.rollback import list_versions

    cfg = _cfg()
    found = list_versions(_store(cfg), cfg.layout.artifacts)
    if as_json:
        for v in found:
            click.echo(json.dumps(v.to_dict()))
        return
    k = cfg.eval.k
    table = Table(title=f"model versions in {cfg.layout.artifacts} (newest published first)")
    for col in ("", "version", "as of (UTC)", "published (UTC)", f"ndcg@{k}", f"recall@{k}", "fitted from",
                "rollback target"):
        table.add_column(col)
    for v in found:
        blink_row = (v.eval or {}).get("two_stage", {})
        ndcg, recall = blink_row.get(f"ndcg@{k}"), blink_row.get(f"recall@{k}")
        target = "yes" if v.complete and v.in_store else ("no: incomplete" if not v.complete else "no: expired")
        table.add_row("▶ served" if v.served else "", v.version, _when(v.as_of_ms), _when(v.published_at_ms),
                      f"{ndcg:.4f}" if ndcg is not None else "-", f"{recall:.4f}" if recall is not None else "-",
                      v.fitted_from or "-", target)
    Console(width=160).print(table)
    if not found:
        console.print("no versions yet: `blink run-dag` publishes the first")


@cli.command("rollback")
@click.argument("version")
def rollback_(version: str) -> None:
    """Serve VERSION again: one atomic switch of the store's pointer (workers follow on their next poll)."""
    from serving.rollback import rollback

    cfg = _cfg()
    previous = rollback(_store(cfg), cfg.layout.artifacts, version)
    undo = f" `blink rollback {previous}` undoes this." if previous and previous != version else ""
    console.print(f"[green]the store now names {version}[/] (was {previous}); running workers swap to it within "
                  f"{cfg.serving.reload_seconds:g} s.{undo}", highlight=False)


@cli.command()
@click.option("--rate", type=float, default=100.0, help="requests per second, per scenario")
@click.option("--seconds", type=float, default=10.0, help="duration of each scenario")
@click.option("--highest-rate", "rates", default="",
              help="also step these rates (e.g. 100,200,300,400,600) per path until it misses its p99 target")
def bench(rate: float, seconds: float, rates: str) -> None:
    """Open-loop load test of the published version over HTTP on 127.0.0.1: head, tail, session,
    unknown, events, similar, and a realistic mix of them; prints p50/p99/p99.9 (client from the
    intended send time, and server) and writes var/reports/bench/<time>/ (JSON + PNG)."""
    from blink.model import Model
    from jobs.publish import published_dir
    from tools import bench as b

    cfg = _cfg()
    directory = published_dir(cfg)
    if directory is None:
        raise click.ClickException("no version published yet: run `make demo` (or blink run-dag, or "
                                   "blink serving-model) first")
    steps = [float(r) for r in rates.split(",") if r.strip()]
    model = Model.load(directory, "serve", retriever=False, ranker=False)
    head = json.loads((directory / layout.HEAD_USERS).read_text())
    head_set = set(head)
    tail = [u for j, u in enumerate(model.user_ids) if u not in head_set and not math.isnan(model.user_vectors[j, 0])]
    people = b.Population(head, tail, [str(i) for i in model.item_ids], int(time.time() * 1000))
    meta = {"version": directory.name, "items": len(model.item_ids), "users": len(model.user_ids),
            "head_users": len(head), "rate": rate, "seconds": seconds, "workers": cfg.serving.workers,
            "worker_class": "gthread", "threads": cfg.serving.threads, "deadline_ms": cfg.serving.deadline_ms,
            "machine_before": b.machine()}
    del model
    port = redis_server.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    highest: list[dict[str, Any]] = []
    try:
        from tools.demo import wait_ready

        wait_ready(base, timeout=600)
        token = cfg.serving.ingest_token
        auth = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        results = []
        for scenario in people.scenarios():
            with console.status(f"{scenario.name}: {rate:.0f} req/s for {seconds:.0f}s..."):
                results.append(b.run_open_loop(base, scenario, rate, seconds, headers=auth))
        for scenario in (s for s in people.scenarios() if steps and s.name in b.TARGET_P99_MS):
            with console.status(f"{scenario.name}: highest rate within p99 {b.TARGET_P99_MS[scenario.name]} ms..."):
                highest.append(b.highest_rate(base, scenario, steps, seconds, b.TARGET_P99_MS[scenario.name], auth))
    finally:
        os.killpg(proc.pid, 15)
    meta["machine_after"] = b.machine()
    out = b.write_report(results, cfg.layout.bench_reports / time.strftime("%Y%m%dT%H%M%S"), meta, highest)
    from rich.table import Table

    table = Table(title=f"open-loop, {rate:.0f} req/s per scenario, model {directory.name} "
                        f"({meta['items']:,} items, {meta['users']:,} users) (ms)")
    for col in ("scenario", "sent", "errors", "client p50", "client p99", "client p99.9", "server path",
                "server p50", "server p99", "server p99.9"):
        table.add_column(col)
    for r in results:
        s = r.summary()
        c = s["client_ms"]
        for path, sv in (s["server_ms"] or {"-": {}}).items():
            table.add_row(r.name, str(s["sent"]), str(s["errors"]), f"{c.get('p50', 0):.2f}", f"{c.get('p99', 0):.2f}",
                          f"{c.get('p99.9', 0):.2f}", path, f"{sv.get('p50', 0):.2f}", f"{sv.get('p99', 0):.2f}",
                          f"{sv.get('p99.9', 0):.2f}")
    Console(width=160).print(table)
    for h in highest:
        console.print(f"{h['scenario']}: highest rate within server p99 {h['target_p99_ms']} ms: "
                      f"{h['highest_rate']:.0f} req/s (steps: "
                      + ", ".join(f"{x['rate']:.0f}->{x['server_p99_ms']:.1f} ms" for x in h["steps"]) + ")")
    console.print(f"machine: {meta['machine_before']} -> {meta['machine_after']}")
    console.print(f"report: {out / 'report.json'}  picture: {out / 'latency.png'}")


@cli.command("serving-model")
@click.option("--scale", type=click.Choice(["tiny", "demo", "bench"]), default="bench", show_default=True)
def serving_model(scale: str) -> None:
    """Build and publish a version at SCALE directly (no batch run), to benchmark serving at the
    SPEC's size: real tuned ScaNN index, a ranker of the configured size, head lists through the
    pipeline. Then `blink bench`."""
    from tools import serving_model as sm

    cfg = _cfg()
    redis_server.ensure(cfg)
    directory = cfg.layout.version(time.strftime("%Y%m%dT%H%M") + f"-serving-{scale}")
    with console.status(f"building a {scale}-scale version in {directory}..."):
        built = sm.build(cfg, scale, directory)
    with console.status("head lists through the pipeline, then publish..."):
        published = sm.precompute_and_publish(cfg, scale, directory)
    console.print(f"[green]published[/] {directory.name}: {json.dumps({**built, **published})}", highlight=False)


@cli.command("bench-scale")
@click.option("--sizes", default="tiny,demo", show_default=True,
              help="comma-separated data sizes, smallest first (add bench: 3.4 GiB, hours)")
def bench_scale(sizes: str) -> None:
    """The daily fit and an hourly refresh at each size: task times, peak memory, scaling plot."""
    from tools import scale

    cfg = _cfg()
    chosen = [s.strip() for s in sizes.split(",") if s.strip()]
    unknown = set(chosen) - {"tiny", "demo", "bench"}
    if unknown:
        raise click.BadParameter(f"unknown size(s) {sorted(unknown)}; choose from tiny, demo, bench",
                                 param_hint="--sizes")
    report = scale.main(chosen, cfg.layout.reports / "scale")
    console.print(f"[green]wrote[/] {report} and {report.parent / 'scale.png'}")


@cli.command()
def stop() -> None:
    """Stop what Blink started for this var/ directory: its gunicorn and its own redis-server
    (never REDIS_URL's, never another instance's: each pid is checked against the process)."""
    cfg = _cfg()
    pid_file = cfg.layout.gunicorn_pid
    if pid_file.exists():
        pid = _read_pid(pid_file)
        if not pid or not processes.alive(pid):
            console.print("no Blink gunicorn running (stale pid file removed)")
        elif not processes.can_verify():
            console.print(f"cannot verify that pid {pid} is this var dir's gunicorn (no /proc): stop it by hand")
        elif not _our_gunicorn(cfg, pid):
            console.print(f"{pid_file} names pid {pid}, which is not a gunicorn serving {cfg.var} "
                          "(another instance's, or a copied var dir): left it alone")
        else:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):  # graceful_timeout is 10 s
                if not processes.alive(pid):
                    break
                time.sleep(0.1)
            console.print(f"stopped gunicorn (pid {pid})")
        pid_file.unlink(missing_ok=True)
    console.print(redis_server.stop(cfg))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@cli.command("airflow-ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="address the Airflow UI listens on")
@click.option("--port", type=int, default=airflow_env.UI_PORT, show_default=True,
              help="Airflow UI port (not blink serve's 8080)")
def airflow_ui(host: str, port: int) -> None:
    """Airflow 3 (API server + UI, scheduler, DAG processor, triggerer) with Blink's AIRFLOW_HOME
    and DAG folder, on 127.0.0.1:8088. Prints the admin login; unpauses recs_hourly, so the
    scheduler runs it every hour while this runs. Component logs: var/logs/airflow-ui/."""
    import threading

    cfg = _cfg()
    if _port_in_use(host, port):
        raise click.ClickException(f"port {port} is in use on {host}: choose --port")
    redis_server.ensure(cfg)
    user, password = airflow_env.admin_login(cfg)
    env = airflow_env.environment(cfg) | airflow_env.ui_environment(cfg, host, port)
    with console.status("preparing the Airflow metadata DB (var/airflow)..."):
        airflow_env.migrate(cfg)
    fixed = airflow_env.fix_test_run_durations(cfg)
    logs = cfg.layout.logs / "airflow-ui"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, args in airflow_env.component_commands(host, port).items():
        with open(logs / f"{name}.log", "ab") as out:
            procs[name] = subprocess.Popen([airflow_env.airflow_bin(), *args], env=env, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)

    def stop_all(*_: object) -> None:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def unpause() -> None:
        ok = airflow_env.unpause(cfg)
        console.print("recs_hourly [green]unpaused[/]: the scheduler runs it every hour while Airflow runs"
                      if ok else "[yellow]recs_hourly was not registered within 5 min; unpause it in the UI[/]")

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the components as Ctrl-C does
    code = 0
    try:
        with console.status(f"starting Airflow on http://{host}:{port} ..."):
            deadline = time.monotonic() + 180
            while not _port_in_use(host, port) and time.monotonic() < deadline:
                if any(p.poll() is not None for p in procs.values()):
                    break
                time.sleep(0.5)
        console.rule("[bold]Airflow")
        console.print(f"  UI:     http://{host}:{port}")
        console.print(f"  login:  user [bold]{user}[/]  password [bold]{password}[/]")
        console.print(f"          (kept in {airflow_env.passwords_file(cfg)}, readable by you only)")
        console.print(f"  logs:   {logs}/<component>.log; task logs in {cfg.layout.logs / 'airflow'}")
        if fixed:
            console.print(f"  {fixed} run(s) made by `blink run-dag` now show their real duration")
        console.print("  Ctrl-C stops Airflow")
        console.rule()
        threading.Thread(target=unpause, daemon=True).start()
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        dead = [name for name, p in procs.items() if p.poll() is not None]
        console.print(f"[red]Airflow {', '.join(dead)} stopped; see {logs}[/]")
        code = 1
    except KeyboardInterrupt:
        pass
    finally:
        stop_all()
    raise SystemExit(code)


def _register_groups() -> None:
    from tools.dlq_cli import dlq

    cli.add_command(dlq)


_register_groups()


def main() -> None:
    # Everything Blink writes (dead letters, landing files, the lake, logs, Redis' AOF) is
    # owner-only; the processes it starts (gunicorn, redis-server, Airflow tasks) inherit this.
    os.umask(0o077)
    try:
        cli()
    except BlinkError as exc:
        console.print(f"[red]blink: {exc}[/]")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
