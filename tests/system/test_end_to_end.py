"""The whole system on tiny data: the real DAG through `airflow dags test`, Blink's Redis
(a redis-server these tests start), a local SparkSession, and the app under gunicorn.

The DAG runs once per session (``published``); the tests then read what it produced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from blink import config, layout
from blink.candidates import SourceSizes
from blink.feature_matrix import Context
from blink.keys import Keys
from blink.model import Model
from blink.pipeline import Pipeline
from blink.store import MemoryStore, RedisStore
from serving.registry import Registry
from serving.router import Router
from tools.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
BAD_RECORDS = 30


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[dict[str, str]]:
    var = tmp_path_factory.mktemp("e2e") / "var"
    values = {"BLINK_ENV": "test", "BLINK_PATHS__VAR_DIR": str(var), "REDIS_URL": redis_server.url,
              "BLINK_REDIS__KEY_PREFIX": "e2e"}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield {**os.environ, **values}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def cfg(env: dict[str, str]) -> config.Config:
    return config.load()


@pytest.fixture(scope="module")
def published(env: dict[str, str], cfg: config.Config) -> dict[str, Any]:
    """generate tiny data (with malformed records) and run the daily DAG once, for real."""
    subprocess.run([str(BIN / "blink"), "generate", "--size", "tiny", "--bad", str(BAD_RECORDS)],
                   env=env, check=True)
    done = subprocess.run([str(BIN / "blink"), "run-dag"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = RedisStore(__import__("redis").Redis.from_url(env["REDIS_URL"]), Keys("e2e"))
    version = store.current_version()
    assert version is not None
    return {"version": version, "dir": cfg.layout.version(version), "store": store}


def test_publish_switched_the_pointer_and_wrote_a_manifest(published: dict[str, Any]) -> None:
    manifest = json.loads((published["dir"] / layout.MANIFEST).read_text())
    assert manifest["version"] == published["version"]
    assert manifest["head_users"] > 0
    timings = manifest["tasks"]
    assert set(timings) >= {"ingest", "quality", "aggregates", "embeddings", "index", "ranker",
                            "evaluate", "head", "precompute"}


def test_lake_is_partitioned_and_accounting_holds(published: dict[str, Any], cfg: config.Config) -> None:
    import pandas as pd

    from contracts.dlq import DeadLetterQueue

    lake = cfg.layout.table("events")
    assert any(p.name.startswith("date=") for p in lake.iterdir())
    assert any(p.name.startswith("hour=") for p in next(lake.glob("date=*")).iterdir())
    landing = pd.read_parquet(cfg.layout.landing / "events")
    in_lake = len(pd.read_parquet(lake))
    dlq = DeadLetterQueue(cfg.layout.dlq)
    assert dlq.count("event") == BAD_RECORDS
    assert in_lake + dlq.count("event") == len(landing)  # sent = accepted + dead-lettered
    reasons = " ".join(letter.reason for letter in dlq.entries("event"))
    assert "seconds" in reasons and "clik" in reasons


def test_data_docs_were_published(published: dict[str, Any], cfg: config.Config) -> None:
    index = cfg.layout.data_docs / "index.html"
    assert index.exists() and "events" in index.read_text()


def test_evaluation_report_has_all_three_systems(published: dict[str, Any]) -> None:
    report = json.loads((published["dir"] / layout.EVAL).read_text())
    row = report["table"]["all"]
    assert row["users"] > 0
    assert {"popularity", "retrieval", "two_stage"} <= set(row)
    assert report["gate"]["passed"]


def test_head_list_is_exactly_what_the_tail_path_answers(published: dict[str, Any], cfg: config.Config) -> None:
    """Precompute ran the serving pipeline: the cached list equals a live tail answer."""
    heads = json.loads((published["dir"] / layout.HEAD_USERS).read_text())[:25]
    manifest = json.loads((published["dir"] / layout.MANIFEST).read_text())
    model = Model.load(published["dir"], "serve")
    # A store that knows the version but holds no head lists forces the router's tail path.
    empty = MemoryStore()
    empty.current = published["version"]
    registry = Registry(empty, cfg.layout.artifacts, SourceSizes.from_config(cfg))
    registry.pipeline = Pipeline(model, sizes=SourceSizes.from_config(cfg))
    router = Router(cfg.serving, empty, registry)
    checked = 0
    for user in heads:
        cached = published["store"].head_list(published["version"], user)
        assert cached is not None
        live = router.recommend(user, k=cfg.serving.max_k, now_ms=manifest["as_of_ms"])
        assert live.path == "tail"
        assert [(i["item_id"], round(i["score"], 6)) for i in live.items] == \
               [(i, round(s, 6)) for i, s in cached[: cfg.serving.max_k]]
        checked += 1
    assert checked == len(heads) > 0


def test_gate_blocks_a_worse_model_and_the_old_version_keeps_serving(
        published: dict[str, Any], cfg: config.Config, tmp_path: Path) -> None:
    from jobs import evaluate, spark
    from jobs.evaluate import GateFailed
    from jobs.interval import Interval

    manifest = json.loads((published["dir"] / layout.MANIFEST).read_text())
    run = Interval(cfg, manifest["run_id"], manifest["as_of_ms"])
    better = tmp_path / "published"
    better.mkdir()
    report = json.loads((published["dir"] / layout.EVAL).read_text())
    report["table"]["all"]["two_stage"][f"ndcg@{cfg.eval.k}"] = 0.99  # a published model far better
    (better / layout.EVAL).write_text(json.dumps(report))
    with pytest.raises(GateFailed, match="NOT PUBLISHED"):
        evaluate.evaluate(spark.get_spark(cfg), cfg, run, better)
    assert published["store"].current_version() == published["version"]
    # put the honest report back for the other tests
    evaluate.evaluate(spark.get_spark(cfg), cfg, run, None)


def test_ingest_rerun_is_idempotent(published: dict[str, Any], cfg: config.Config) -> None:
    import pandas as pd

    from contracts.dlq import DeadLetterQueue
    from jobs.entry import run_named
    from jobs.interval import Interval

    manifest = json.loads((published["dir"] / layout.MANIFEST).read_text())
    before = len(pd.read_parquet(cfg.layout.table("events")))
    run_named("ingest", cfg, Interval(cfg, manifest["run_id"], manifest["as_of_ms"]))
    assert len(pd.read_parquet(cfg.layout.table("events"))) == before
    assert DeadLetterQueue(cfg.layout.dlq).count("event") == BAD_RECORDS


def test_registry_refuses_a_version_without_manifest_and_serves_the_newest_good_one(
        published: dict[str, Any], cfg: config.Config) -> None:
    store = MemoryStore()
    store.current = "20990101T0000-broken"
    (cfg.layout.version(store.current)).mkdir(parents=True)
    registry = Registry(store, cfg.layout.artifacts, SourceSizes.from_config(cfg))
    # The store names a version that cannot load: the newest good version on disk serves instead.
    assert registry.refresh() is True and registry.source == "disk"
    assert registry.version == published["version"] and "no manifest" in (registry.last_error or "")
    store.current = published["version"]
    assert registry.refresh() is False and registry.source == "store"


@pytest.fixture(scope="module")
def server(published: dict[str, Any], env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    run_env = {**env, "BLINK_SERVING__PORT": str(port), "BLINK_SERVING__WORKERS": "2"}
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "conf/gunicorn.conf.py", "serving.wsgi:app"],
                            env=run_env, cwd=config.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if requests.get(f"{base}/health/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("gunicorn never became ready: " + (proc.stderr.read().decode()[-2000:] if proc.stderr else ""))
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def test_http_paths_head_tail_and_fallback(server: str, published: dict[str, Any], cfg: config.Config) -> None:
    model = Model.load(published["dir"], "serve", retriever=False, ranker=False)
    heads = json.loads((published["dir"] / layout.HEAD_USERS).read_text())
    head_user = heads[0]
    tail_user = next(u for j, u in enumerate(model.user_ids)
                     if u not in set(heads) and model.user_vectors[j, 0] == model.user_vectors[j, 0])
    answers = {}
    for user in (head_user, tail_user, "nobody-we-know"):
        r = requests.get(f"{server}/v1/recommendations/{user}", params={"k": 10}, timeout=5)
        assert r.status_code == 200, r.text
        answers[user] = r.json()
    assert answers[head_user]["path"] == "head"
    assert answers[tail_user]["path"] == "tail"
    assert answers["nobody-we-know"]["path"] == "fallback"
    for user, body in answers.items():
        assert body["model_version"] == published["version"]
        assert len(body["items"]) == 10
        scores = [i["score"] for i in body["items"]]
        assert scores == sorted(scores, reverse=True)
        pos = model.user_index.get(user)
        if pos is not None:  # consumed items are filtered on every path
            seen = {str(model.item_ids[j]) for j in model.history[pos]}
            assert not seen & {i["item_id"] for i in body["items"]}


def test_http_rejects_bad_requests_with_a_message(server: str) -> None:
    r = requests.get(f"{server}/v1/recommendations/u1", params={"k": 0}, timeout=5)
    assert r.status_code == 400 and "k must be between" in r.json()["message"]
    r = requests.get(f"{server}/v1/recommendations/u1", params={"k": "ten"}, timeout=5)
    assert r.status_code == 400 and "integer" in r.json()["message"]
    r = requests.get(f"{server}/v1/recommendations/{'x' * 500}", timeout=5)
    assert r.status_code == 400 and "user_id" in r.json()["message"]
    r = requests.get(f"{server}/v1/recommendations/a%01b", timeout=5)
    assert r.status_code == 400
    assert requests.get(f"{server}/health/live", timeout=5).status_code == 200


INGEST_SCRIPT = """
import json, sys
from blink import config
from jobs.entry import run_named
from jobs.interval import Interval
cfg = config.load()
run_named("ingest", cfg, Interval(cfg, sys.argv[1], int(sys.argv[2])))
"""


def test_http_events_land_in_the_lake_exactly_once_even_if_ingest_is_killed(
        server: str, published: dict[str, Any], cfg: config.Config, env: dict[str, str], tmp_path: Path) -> None:
    import pandas as pd

    from contracts.dlq import DeadLetterQueue

    now = int(time.time() * 1000) - 3_600_000
    events = [{"event_id": f"live-{n}", "user_id": "u0000001", "session_id": "live-s", "item_id": f"i{n:06d}",
               "event_type": "click", "timestamp": now + n, "device": "mobile"} for n in range(20)]
    bad = [{**events[0], "event_id": "live-bad-1", "timestamp": now // 1000},
           {**events[0], "event_id": "live-bad-2", "device": "toaster"},
           {**events[0], "event_id": ""}]
    dlq_before = DeadLetterQueue(cfg.layout.dlq).count("event")
    r = requests.post(f"{server}/v1/events", json=events + events[:5] + bad, timeout=10)
    assert r.status_code == 400  # some records invalid: per-record errors, the valid ones kept
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (20, 5, 3)
    assert [e["index"] for e in body["errors"]] == [25, 26, 27]
    r = requests.post(f"{server}/v1/events", json={**events[0], "event_id": "live-single"}, timeout=10)
    assert r.status_code == 202 and r.json()["accepted"] == 1
    assert DeadLetterQueue(cfg.layout.dlq).count("event") == dlq_before + 3

    # Ingest for the next interval, killed right after it drained the stream (mid-Spark) ...
    manifest = json.loads((published["dir"] / layout.MANIFEST).read_text())
    script = tmp_path / "ingest.py"
    script.write_text(INGEST_SCRIPT)
    args = [sys.executable, str(script), "kill-test", str(manifest["as_of_ms"] + 3_600_000)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = cfg.layout.lake / "_checkpoints" / "events_stream.json"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert checkpoint.exists(), "ingest never drained the stream"
    # ... and run again for the same interval: the lake holds every event exactly once.
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lake = pd.read_parquet(cfg.layout.table("events"), columns=["event_id"])
    live = lake[lake["event_id"].str.startswith("live-")]["event_id"]
    assert sorted(live) == sorted([e["event_id"] for e in events] + ["live-single"])
    assert lake["event_id"].is_unique


def test_a_corrupted_partition_fails_validation_and_nothing_is_published(
        published: dict[str, Any], cfg: config.Config) -> None:
    """Rows that bypassed the contract (written straight into the lake) are caught by GX."""
    import pandas as pd

    from blink.errors import DataQualityError
    from jobs.entry import run_named
    from jobs.interval import Interval

    manifest = json.loads((published["dir"] / layout.MANIFEST).read_text())
    run = Interval(cfg, "corrupt-test", manifest["as_of_ms"] + 7_200_000)
    part = cfg.layout.table("events") / "date=2099-01-01" / "hour=0" / f"batch={run.interval_id}"
    part.mkdir(parents=True)
    rows = pd.DataFrame({"event_id": ["x1", "x1"], "user_id": ["u1", "u2"], "session_id": ["s", "s"],
                         "item_id": ["i000001", "i000002"], "event_type": ["click", "clik"],
                         "timestamp": [manifest["as_of_ms"], manifest["as_of_ms"] * 1_000_000],
                         "device": ["mobile", "mobile"], "value": [float("nan")] * 2})
    rows.to_parquet(part / "part-0.parquet")
    try:
        with pytest.raises(DataQualityError) as failure:
            run_named("quality", cfg, run)
        message = str(failure.value)
        assert "event_type" in message and "event_id" in message and "timestamp" in message
        assert published["store"].current_version() == published["version"]
        docs = (cfg.layout.data_docs / "index.html").read_text()
        assert run.interval_id[:8] in docs or "events" in docs
    finally:
        import shutil

        shutil.rmtree(part.parent.parent)


def _categories(cfg: config.Config) -> Any:
    import pandas as pd

    return pd.read_parquet(cfg.layout.table("items")).set_index("item_id")["category"]


def _click(server: str, session: str, items: list[str], user: str | None = None) -> None:
    now = int(time.time() * 1000)
    batch = [{"event_id": f"{session}-{item}-{now}", "user_id": user, "session_id": session, "item_id": item,
              "event_type": "click", "timestamp": now + n, "device": "mobile"} for n, item in enumerate(items)]
    r = requests.post(f"{server}/v1/events", json=batch, timeout=10)
    assert r.status_code == 202, r.text


def test_a_new_user_follows_their_first_clicks_and_a_switch(
        server: str, published: dict[str, Any], cfg: config.Config) -> None:
    """Known structure: synthetic sessions stay in one category, so three clicks of one category
    should pull the next page towards it, and a switch should show in the page after."""
    model = Model.load(published["dir"], "serve", retriever=False, ranker=False)
    cats = _categories(cfg)
    sizes = cats[cats.index.isin(model.item_index)].value_counts()
    first, second = sizes.index[:2]  # the two largest categories

    def clicks_in(category: str) -> list[str]:
        items = [i for i in cats[cats == category].index if i in model.item_index]
        return sorted(items, key=lambda i: -model.item_features[model.item_index[i], 0])[:3]

    def page() -> dict[str, Any]:
        r = requests.get(f"{server}/v1/recommendations/visitor-1", params={"k": 10, "session_id": "new-s1"}, timeout=5)
        return r.json()

    before = page()
    assert before["path"] == "fallback"  # nothing known yet: trending
    _click(server, "new-s1", clicks_in(first))
    after = page()
    assert after["path"] == "session"
    share = {c: sum(cats.get(i["item_id"]) == c for i in after["items"]) / 10 for c in (first, second)}
    base = sizes[first] / sizes.sum()
    assert share[first] >= 0.5 and share[first] >= 2 * base, (share, base)
    assert not set(clicks_in(first)) & {i["item_id"] for i in after["items"]}  # clicked items filtered
    _click(server, "new-s1", clicks_in(second))
    switched = page()
    share2 = {c: sum(cats.get(i["item_id"]) == c for i in switched["items"]) / 10 for c in (first, second)}
    assert share2[second] >= 0.3 and share2[second] > share[second] and share2[first] < share[first], (share, share2)


def test_a_head_user_page_reacts_to_a_click_and_login_merges(
        server: str, published: dict[str, Any]) -> None:
    head_user = json.loads((published["dir"] / layout.HEAD_USERS).read_text())[1]
    r = requests.get(f"{server}/v1/recommendations/{head_user}", params={"k": 10}, timeout=5).json()
    assert r["path"] == "head"
    clicked = r["items"][0]["item_id"]
    _click(server, "head-s", [clicked], user=head_user)
    r2 = requests.get(f"{server}/v1/recommendations/{head_user}", params={"k": 10}, timeout=5).json()
    assert r2["path"] == "session" and clicked not in {i["item_id"] for i in r2["items"]}
    # an anonymous session that logs in becomes the user's session
    _click(server, "anon-s", [clicked])
    _click(server, "anon-s", [r["items"][1]["item_id"]], user="fresh-user")
    r3 = requests.get(f"{server}/v1/recommendations/fresh-user", params={"k": 5}, timeout=5).json()
    assert r3["path"] == "session"
    assert not {clicked, r["items"][1]["item_id"]} & {i["item_id"] for i in r3["items"]}


def test_similar_items_precomputed_for_head_items_realtime_for_the_rest(
        server: str, published: dict[str, Any]) -> None:
    import pandas as pd

    sims = pd.read_parquet(published["dir"] / "similar_lists.parquet")
    head_item = sims["item_id"].iloc[0]
    model = Model.load(published["dir"], "serve", retriever=False, ranker=False)
    tail_item = next(str(i) for i in model.item_ids if str(i) not in set(sims["item_id"]))
    a = requests.get(f"{server}/v1/items/{head_item}/similar", params={"k": 5}, timeout=5).json()
    b = requests.get(f"{server}/v1/items/{tail_item}/similar", params={"k": 5}, timeout=5).json()
    assert (a["path"], b["path"]) == ("precomputed", "realtime")
    assert len(a["items"]) == len(b["items"]) == 5
    assert head_item not in {i["item_id"] for i in a["items"]}
    assert requests.get(f"{server}/v1/items/no-such-item/similar", timeout=5).status_code == 404


def test_an_hourly_run_refreshes_the_daily_fit_and_is_idempotent(
        published: dict[str, Any], cfg: config.Config, env: dict[str, str]) -> None:
    """recs_hourly after recs_daily: an hour of new events (a brand-new user, a known user who
    came back) is ingested; the fitted models are reused by hard link, the serve-time state and
    the touched users' vectors are refreshed, the rest is unchanged; a rerun gives the same lists.
    Runs last: it moves the served version."""
    import numpy as np
    import pandas as pd

    daily = published["dir"]
    as_of = json.loads((daily / layout.MANIFEST).read_text())["as_of_ms"]
    run_ms = as_of + 3 * 3_600_000  # later than the intervals the tests above used
    landing = pd.read_parquet(cfg.layout.landing / "events" / "synthetic.parquet")  # beside drained .jsonl files
    old = landing[landing["item_id"].notna() & landing["user_id"].notna()].head(60)
    returning = str(old["user_id"].iloc[0])
    fresh = old.assign(user_id=np.where(np.arange(len(old)) < 30, returning, "hourly-new-user"),
                       session_id=np.where(np.arange(len(old)) < 30, "hourly-s1", "hourly-s2"),
                       event_id=[f"hourly-{n}" for n in range(len(old))],
                       event_type="click", timestamp=run_ms - 3_000_000 + np.arange(len(old)) * 1000)
    fresh.to_parquet(cfg.layout.landing / "events" / "hourly-test.parquet", index=False)

    def hourly() -> Path:
        date = pd.Timestamp(run_ms, unit="ms", tz="UTC").isoformat()  # the run's as-of time
        done = subprocess.run([str(BIN / "blink"), "run-dag", "--dag", "hourly", "--date", date],
                              env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        version = published["store"].current_version()
        assert version is not None and version != published["version"]
        return cfg.layout.version(version)

    first = hourly()
    manifest = json.loads((first / layout.MANIFEST).read_text())
    assert manifest["fitted_from"] == published["version"] and manifest["as_of_ms"] == run_ms
    assert set(manifest["tasks"]) == {"ingest", "quality", "refresh", "head", "precompute"}
    for name in (layout.EMBEDDINGS, layout.SESSION_WEIGHTS, layout.EVAL):  # linked, not copied
        assert (first / name).stat().st_ino == (daily / name).stat().st_ino
    before, after = (np.load(layout.user_vectors(d, "serve")) for d in (daily, first))
    b = dict(zip(before["user_ids"], before["user_vectors"], strict=True))
    a = dict(zip(after["user_ids"], after["user_vectors"], strict=True))
    assert "hourly-new-user" in a and "hourly-new-user" not in b
    assert not np.allclose(a[returning], b[returning])  # 30 new clicks moved the returning user
    # Touched = every user with an event in [fit cut-off, run) in the lake: the events posted over
    # HTTP by the tests above count too, as they would in production.
    lake = pd.read_parquet(cfg.layout.table("events"), columns=["user_id", "item_id", "timestamp"])
    window = lake[lake["item_id"].notna() & (lake["timestamp"] >= as_of) & (lake["timestamp"] < run_ms)]
    touched = set(window["user_id"].dropna())
    assert returning in touched and "hourly-new-user" in touched
    untouched = [u for u in b if u not in touched]
    assert untouched and all(np.array_equal(a[u], b[u]) for u in untouched)
    assert set(b) <= set(a) <= set(b) | touched  # nobody dropped; only touched users are new
    users = pd.read_parquet(layout.features_dir(first, "serve") / "users.parquet")
    assert "hourly-new-user" in set(users["user_id"])
    # The hourly version serves: the new user gets a personal list through the serving pipeline.
    model = Model.load(first, "serve")
    assert Pipeline(model, sizes=SourceSizes.from_config(cfg)).recommend("hourly-new-user", 10, Context(now_ms=run_ms))
    # Idempotent: the same hour again gives the same state and the same precomputed lists.
    second = hourly()
    again = np.load(layout.user_vectors(second, "serve"))
    assert np.array_equal(again["user_vectors"], after["user_vectors"])
    lists = [pd.read_parquet(d / layout.HEAD_LISTS).sort_values("user_id", ignore_index=True) for d in (first, second)]
    pd.testing.assert_frame_equal(*lists)
    assert cfg.layout.latest_fit.read_text() == published["version"]  # hourly runs never become the fit
