"""GET /metrics: what serving exports, and that the Grafana dashboard only asks for that.

Through the Flask test client (one process, the default registry); the multiprocess
aggregation under gunicorn is checked in tests/serving/test_gunicorn_faults.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from blink.config import ROOT
from serving import metrics
from tests.serving.test_app import make_app

DASHBOARD = Path(ROOT) / "docker" / "grafana" / "blink.json"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(client: object) -> str:
    r = client.get("/metrics")  # type: ignore[attr-defined]
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    return str(r.get_data(as_text=True))


def count(text: str, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= ls)


def test_answers_are_counted_by_path_history_and_stage(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    before = scrape(client)
    for user in ("u0", "u1", "nobody-1", "nobody-2"):
        assert client.get(f"/v1/recommendations/{user}?k=5").status_code == 200
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return count(after, name, **labels) - count(before, name, **labels)

    assert delta("blink_request_seconds_count") == 4
    assert delta("blink_request_seconds_count", path="fallback", history="0") == 2  # unknown users
    assert delta("blink_fallbacks_total", reason="no history for this user") == 2
    assert delta("blink_request_seconds_count", path="tail") == 2
    assert delta("blink_stage_seconds_count", stage="retrieval") == 2  # the two model-path answers
    assert delta("blink_request_seconds_bucket", path="tail", le="1.0") == 2
    assert 'blink_model_version_info{version="v1"} 1.0' in after


def test_history_and_reason_labels_stay_a_small_fixed_set() -> None:
    assert [metrics.history_label(n) for n in (0, 1, 10, 11, 100, 1000, 1001, 10**6)] == \
        ["0", "1-10", "1-10", "11-100", "11-100", "101-1000", "1001+", "1001+"]
    assert metrics.reason_kind("model path failed: ranker exploded at 0x7f...") == "model path failed"
    assert metrics.reason_kind("deadline") == "deadline"


def test_every_dashboard_query_names_an_exported_metric(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    exported = set(re.findall(r"^# TYPE (\S+) (\S+)", scrape(client), re.M))
    names = {name for name, _ in exported}
    # a histogram is queried as _bucket/_count/_sum, a counter as _total
    series = names | {f"{n}{s}" for n, kind in exported if kind == "histogram" for s in ("_bucket", "_count", "_sum")}
    series |= {f"{n}_total" for n, kind in exported if kind == "counter"}
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(queries) >= 10
    used = {m for q in queries for m in re.findall(r"\bblink_[a-z_]+", q)}
    assert used and used <= series, f"dashboard asks for metrics /metrics does not export: {used - series}"
    # and every metric serving defines is on the dashboard
    defined = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    assert {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in used} == defined
