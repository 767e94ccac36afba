"""blink.client against the real app over HTTP (werkzeug's server on a free loopback port, the
app on an in-memory store: no Redis needed), and its retry rule against a server that fails on
purpose (an injected fault: a real Blink cannot be made to answer 503 twice on cue)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from blink.client import BlinkClient, BlinkHTTPError
from tests.serving.test_app import make_app


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, make_app(tmp_path), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_every_read_endpoint(base: str) -> None:
    blink = BlinkClient(base, timeout_s=5)
    page = blink.recommend("u0", k=5)
    assert page["user_id"] == "u0" and page["path"] == "tail" and len(page["items"]) == 5
    assert blink.recommend("nobody", k=3)["path"] == "fallback"
    assert [a["user_id"] for a in blink.recommend_many(["u0", "u1"], k=2)] == ["u0", "u1"]
    assert len(blink.trending(k=4)["items"]) == 4
    assert len(blink.similar("i3", k=4)["items"]) == 4
    assert blink.recommend("a user/with spaces é", k=2)["path"] == "fallback"  # ids are quoted


def test_a_4xx_raises_with_the_servers_message_and_is_not_retried(base: str) -> None:
    blink = BlinkClient(base, retries=3, backoff_s=10)  # a retry would make this test take 10 s+
    with pytest.raises(BlinkHTTPError) as failure:
        blink.recommend("u0", k=0)
    assert failure.value.status == 400 and "k" in str(failure.value)
    with pytest.raises(BlinkHTTPError) as failure:  # this app has no event stream: 503, said so
        BlinkClient(base, retries=0).send_events([{"event_id": "e1"}])
    assert failure.value.status == 503 and "event stream" in str(failure.value)


class Flaky(BaseHTTPRequestHandler):
    """503 for the first two requests, then 200."""

    calls = 0

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        Flaky.calls += 1
        status, body = (503, b'{"message": "not ready"}') if Flaky.calls <= 2 else (200, b'{"items": []}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_503_is_retried_with_backoff_then_raised_when_retries_run_out() -> None:
    server = HTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        Flaky.calls = 0
        assert BlinkClient(url, retries=2, backoff_s=0.01).trending() == {"items": []}
        assert Flaky.calls == 3
        Flaky.calls = 0
        with pytest.raises(BlinkHTTPError) as failure:
            BlinkClient(url, retries=1, backoff_s=0.01).trending()
        assert failure.value.status == 503 and "not ready" in str(failure.value)
    finally:
        server.shutdown()
