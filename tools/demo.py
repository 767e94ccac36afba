"""`make demo`: generate -> run the real DAG -> start gunicorn -> ask over HTTP -> report.

Every step is the real command a user would type (blink generate, blink run-dag,
blink serve); this script only strings them together and prints what happened.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

from blink import config, layout
from blink.client import Answer, BlinkClient
from tools import redis_server

console = Console(width=140)


def blink(*args: str) -> None:
    cmd = [str(Path(sys.executable).with_name("blink")), *args]
    console.rule(f"[bold]$ blink {' '.join(args)}")
    subprocess.run(cmd, check=True)


def wait_ready(base: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{base}/health/ready", timeout=1)
            if r.status_code == 200:
                return r.json()
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"gunicorn did not become ready in {timeout:.0f}s; see var/logs/gunicorn.log")


def token(cfg: config.Config) -> str | None:
    return cfg.serving.ingest_token.get_secret_value() if cfg.serving.ingest_token else None


def show_new_visitor(base: str, cfg: config.Config, model: object) -> None:
    """A brand-new visitor: trending first, then personal after three clicks in one category."""
    import pandas as pd

    cats = pd.read_parquet(cfg.layout.table("items")).set_index("item_id")["category"]
    category = cats.value_counts().index[0]
    clicks = [i for i in cats[cats == category].index if i in model.item_index][:3]  # type: ignore[attr-defined]
    session = f"demo-{int(time.time())}"

    client = BlinkClient(base, token=token(cfg), timeout_s=5)

    def page() -> Answer:
        return client.recommend("new-visitor", k=8, session_id=session)

    def describe(body: Answer) -> str:
        return ", ".join(f"{i['item_id']}({cats.get(i['item_id'], '?')})" for i in body["items"])

    before = page()
    now = int(time.time() * 1000)
    events = [{"event_id": f"{session}-{n}", "user_id": None, "session_id": session, "item_id": item,
               "event_type": "click", "timestamp": now + n, "device": "mobile"} for n, item in enumerate(clicks)]
    posted = client.send_events(events)
    after = page()
    console.print(f"[bold]A new visitor[/] (session {session})\n  before: path={before['path']}: {describe(before)}\n"
                  f"  clicks three items of {category}: {', '.join(clicks)} -> {posted['accepted']} accepted\n"
                  f"  after:  path={after['path']}: {describe(after)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="demo", choices=["tiny", "demo", "bench"])
    args = parser.parse_args()
    started = time.perf_counter()
    cfg = config.load()
    subprocess.run([str(Path(sys.executable).with_name("blink")), "stop"], check=False)
    console.print(f"Redis: {redis_server.ensure(cfg)} (Blink's own server, data and AOF in {cfg.layout.redis})")
    blink("generate", "--size", args.size, "--bad", "50")
    blink("run-dag")
    port = redis_server.free_port() if cfg.serving.port == 8080 else cfg.serving.port
    blink("serve", "--daemon", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    ready = wait_ready(base)
    version = ready["model_version"]
    art = cfg.layout.version(version)
    head = json.loads((art / layout.HEAD_USERS).read_text())
    from blink.model import Model

    model = Model.load(art, "serve", retriever=False, ranker=False)
    head_set = set(head)
    # A tail user: personalisable (has a vector) but not in the precomputed head.
    tail = next(u for j, u in enumerate(model.user_ids)
                if u not in head_set and not math.isnan(model.user_vectors[j, 0]))
    table = Table(title=f"GET {base}/v1/recommendations/<user>?k=5   (model {version})")
    for col in ("user", "path", "reason", "server ms", "round trip ms", "top items"):
        table.add_column(col)
    client = BlinkClient(base, timeout_s=5)
    for user in (head[0], tail, "new-visitor-42"):
        t = time.perf_counter()
        body = client.recommend(user, k=5)
        rtt = (time.perf_counter() - t) * 1000
        table.add_row(user, body["path"], body.get("reason") or "", f"{body['latency_ms']:.2f}", f"{rtt:.1f}",
                      ", ".join(i["item_id"] for i in body["items"]))
    console.print(table)

    show_new_visitor(base, cfg, model)

    timings = json.loads((art / "task_seconds.json").read_text())
    console.print("DAG task seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    ev = json.loads((art / layout.EVAL).read_text())
    k = ev["k"]
    allrow = ev["table"]["all"]
    console.print(f"offline eval on the held-out window ({allrow['users']} users): recall@{k} "
                  f"two-stage {allrow['two_stage'][f'recall@{k}']:.3f} vs popularity "
                  f"{allrow['popularity'][f'recall@{k}']:.3f} vs retrieval-only "
                  f"{allrow['retrieval'][f'recall@{k}']:.3f}  (details: blink evaluate)")
    from contracts.dlq import DeadLetterQueue

    dlq = DeadLetterQueue(cfg.layout.dlq)
    console.print(f"dead-letter queue: {dlq.count()} records, by reason: {json.dumps(dlq.stats())}")
    console.print(f"\n[bold]Where to look[/]\n  API:            {base}/v1/recommendations/<user_id>?k=10\n"
                  f"  data quality:   {cfg.layout.data_docs / 'index.html'}\n"
                  f"  Airflow UI:     make airflow-ui  (http://127.0.0.1:8088, the login is printed)\n"
                  f"  logs:           {cfg.layout.logs}  (DAG runs, gunicorn)\n"
                  f"  stop it all:    make stop\n"
                  f"demo took {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
