"""Open-loop load test of the serving API on loopback, with a report and a latency picture.

Requests go out on a fixed schedule (rate x duration); each one's latency is counted from
its *intended* send time, so a slow server's queueing shows up instead of being hidden
(coordinated omission). The server-side time each answer reports (``latency_ms``) is
recorded too, per path. Bounded in count and time, and only ever aimed at 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

from blink.errors import ConfigError


@dataclass
class Scenario:
    name: str
    make_request: Callable[[int], tuple[str, str, Any]]  # n -> (method, path, json body)


@dataclass
class Result:
    name: str
    client_ms: list[float] = field(default_factory=list)
    server_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: int = 0
    sent: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float]) -> dict[str, float]:
            if not values:
                return {}
            a = np.asarray(values)
            return {"n": len(a), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
                    "p99.9": float(np.percentile(a, 99.9)), "max": float(a.max())}

        return {"scenario": self.name, "sent": self.sent, "errors": self.errors,
                "achieved_rps": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
                "client_ms": pct(self.client_ms), "server_ms": {p: pct(v) for p, v in self.server_ms.items()}}


def run_open_loop(base: str, scenario: Scenario, rate: float, seconds: float, workers: int = 16,
                  headers: dict[str, str] | None = None) -> Result:
    """Send ``rate`` requests/s for ``seconds``; latency from each request's scheduled time.
    ``headers`` go with every request (the ingest token for POST /v1/events)."""
    if not base.startswith(("http://127.0.0.1", "http://localhost")):
        raise ConfigError("benchmarks only target loopback (127.0.0.1): pass a http://127.0.0.1:<port> URL")
    result = Result(scenario.name)
    lock = threading.Lock()
    local = threading.local()
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2

    def one(n: int) -> None:
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        session = getattr(local, "s", None) or requests.Session()
        local.s = session
        method, path, body = scenario.make_request(n)
        try:
            r = session.request(method, base + path, json=body, timeout=5, headers=headers)
            ok = r.status_code < 500
            payload = r.json() if ok else {}
        except requests.RequestException:
            ok, payload = False, {}
        elapsed = (time.perf_counter() - scheduled) * 1000
        with lock:
            result.sent += 1
            result.client_ms.append(elapsed)
            if not ok:
                result.errors += 1
            if "latency_ms" in payload:
                result.server_ms[payload.get("path", "?")].append(float(payload["latency_ms"]))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(total)))
    result.seconds = time.perf_counter() - start
    return result


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for r in results:
        if r.client_ms:
            data = np.sort(np.asarray(r.client_ms))
            tail = 1 - np.arange(1, len(data) + 1) / (len(data) + 1)
            ax.plot(data, tail, label=r.name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency from intended send time (ms, log)")
    ax.set_ylabel("fraction of requests slower (log)")
    ax.set_title("Blink open-loop latency (complementary CDF: p99 at 1e-2, p99.9 at 1e-3)")
    for q in (1e-2, 1e-3):
        ax.axhline(q, color="grey", lw=0.5, ls="--")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: list[Result], out: Path, meta: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"meta": meta, "results": [r.summary() for r in results]}, indent=1))
    plot(results, out / "latency.png")
    return out
