"""Schemathesis against the real app under gunicorn (2 workers) over HTTP on 127.0.0.1, the schema
loaded from the live /openapi.json: every operation, with a bounded, seeded and derandomized number
of generated requests (schema-valid and schema-violating, boundary cases first). Checks: no 5xx,
every status documented for its operation, the documented media type, the body matching its
schema. POST /v1/events and /admin/rollback get the token the server runs with; a wrong token
must be a documented 401."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from schemathesis import BaseSchema, Case

from tests.serving.test_gunicorn_faults import Server, publish, redis_up, start_gunicorn, stop  # noqa: F401 - fixture
from tools.redis_server import RedisServer

pytestmark = pytest.mark.integration
TOKEN = "schemathesis-t0ken"
SEED, MAX_EXAMPLES = 12, 100
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
          "unsupported_method")  # the last: an undocumented method is a 405 that lists Allow


@pytest.fixture
def live(tmp_path: Path, redis_up: RedisServer) -> Iterator[Server]:  # noqa: F811
    publish(tmp_path, redis_up)  # v2 published (u0 has a head list), v1 on disk only
    # Timeouts far above the shipped ones: this is about inputs, not latency (as in test_fuzz_http.py).
    server = start_gunicorn(tmp_path, redis_up.url, "--env", f"BLINK_SERVING__INGEST_TOKEN={TOKEN}",
                            "--env", "BLINK_REDIS__SOCKET_TIMEOUT_MS=2000", "--env", "BLINK_SERVING__DEADLINE_MS=5000")
    yield server
    stop(server)


@pytest.fixture
def api(live: Server) -> BaseSchema:
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "base-url": live.base,
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "request-timeout": 10,
        "suppress-health-check": ["too_slow"],  # timing, not data: a loaded 2-core box must not fail the run
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })
    # The live document, fetched here rather than by ``from_url``: that one leaves the schema's own
    # route (GET /openapi.json) out of the run, and every operation is to be exercised.
    document = requests.get(f"{live.base}/openapi.json", timeout=10)
    document.raise_for_status()
    return schemathesis.openapi.from_dict(document.json(), config=config)


@pytest.fixture
def sent(api: BaseSchema) -> Iterator[Counter[tuple[str, int]]]:
    """(operation, status) of every generated request; after the run, every operation was exercised."""
    counts: Counter[tuple[str, int]] = Counter()
    yield counts
    operations = {result.ok().label for result in api.get_all_operations()}
    per_operation = Counter(label for label, _ in counts.elements())
    print(f"\nschemathesis: {len(operations)} operations, {sum(counts.values())} requests")
    for label in sorted(operations):
        statuses = sorted((s, n) for (op, s), n in counts.items() if op == label)
        print(f"  {label}: {per_operation[label]} {dict(statuses)}")
    assert set(per_operation) == operations, operations - set(per_operation)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32.5's ``from_fixture`` reads and renames ``node._nodeid``, which pytest 9.2
    replaced by ``node._id``: give it the attribute (its renaming then only labels subtests)."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
        case: Case, sent: Counter[tuple[str, int]]) -> None:
    response = case.call_and_validate()
    sent[case.operation.label, response.status_code] += 1


def test_wrong_tokens_and_an_overlong_url_get_documented_answers(api: BaseSchema, live: Server) -> None:
    """The cases random generation reaches only by luck, sent on purpose and checked the same way."""
    for path, body in (("/v1/events", {"event_id": "e1"}), ("/admin/rollback", {"version": "v1"})):
        case = api[path]["POST"].Case(body=body, media_type="application/json")
        for wrong in ("Bearer wrong", TOKEN, ""):
            response = case.call_and_validate(headers={"Authorization": wrong})
            assert response.status_code == 401, (path, wrong, response.text[:300])
    # gunicorn's own answer to a request line over limit_request_line, before the app: HTML, as documented
    response = api["/v1/trending"]["GET"].Case(query={"k": "9" * 5000}).call_and_validate()
    assert response.status_code == 414 and response.headers["content-type"][0].startswith("text/html")
    assert requests.get(f"{live.base}/health/ready", timeout=10).json()["model_version"] == "v2"
