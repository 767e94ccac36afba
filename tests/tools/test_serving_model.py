"""The serving benchmark's model, built directly at a scale: every file serving loads, a tuned
index, head lists equal to the tail path's answer, and a publish that serving can read."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from blink import layout
from blink.candidates import SourceSizes
from blink.config import Config
from blink.feature_matrix import Context
from blink.keys import Keys
from blink.model import Model
from blink.pipeline import Pipeline
from blink.store import RedisStore
from tools import bench, serving_model
from tools.redis_server import RedisServer


@pytest.mark.integration  # publishes into a real redis-server
def test_a_tiny_serving_model_loads_serves_and_is_published(tmp_path: Path, redis_server: RedisServer) -> None:
    cfg = Config(paths={"var_dir": tmp_path / "var"}, redis={"url": redis_server.url, "key_prefix": "sm"})
    directory = cfg.layout.version("v-serving-tiny")
    built = serving_model.build(cfg, "tiny", directory)
    scale = serving_model.SCALES["tiny"]
    assert (built["items"], built["users"]) == (scale.items, scale.users)
    tuning = json.loads((directory / layout.RETRIEVAL_TUNING).read_text())
    assert tuning["chosen"]["recall"] >= cfg.retrieval.target_recall  # the index task's own tuning ran

    published = serving_model.precompute_and_publish(cfg, "tiny", directory)
    assert published["head_users"] == scale.head_users
    store = RedisStore(__import__("redis").Redis.from_url(redis_server.url), Keys("sm"))
    assert store.current_version() == "v-serving-tiny"
    manifest = json.loads((directory / layout.MANIFEST).read_text())
    assert {layout.EMBEDDINGS, layout.RANKER, layout.SESSION_WEIGHTS} <= set(manifest["checksums"])

    model = Model.load(directory, "serve")
    assert model.booster is not None and model.session is not None and model.covisit is not None
    assert model.retriever is not None
    head = json.loads((directory / layout.HEAD_USERS).read_text())
    # the most active users are the head, and their lists are exactly the tail path's answer
    lengths = np.array([len(h) for h in model.history])
    assert min(lengths[model.user_index[u]] for u in head) >= np.sort(lengths)[-len(head)]
    pipe = Pipeline(model, sizes=SourceSizes.from_config(cfg))
    for user in head[:5]:
        stored = store.head_list("v-serving-tiny", user)
        live = pipe.recommend(user, cfg.head.list_length, Context(now_ms=model.as_of_ms))
        assert stored and [i for i, _ in stored] == [i for i, _ in live]
        assert np.allclose([s for _, s in stored], [s for _, s in live], atol=1e-6)


def test_the_mix_sends_each_request_kind_in_its_share() -> None:
    people = bench.Population(head=["h0", "h1"], tail=["t0"], items=["i0", "i1"], now_ms=1_790_000_000_000)
    mix = next(s for s in people.scenarios() if s.name == "mix")
    kinds: Counter[str] = Counter()
    for n in range(1000):
        method, path, body = mix.make_request(n)
        if method == "POST":
            kinds["events+session update"] += 1
        elif "/similar" in path:
            kinds["similar"] += 1
        elif "session_id=" in path:
            kinds["session"] += 1
        elif "/stranger-" in path:
            kinds["unknown"] += 1
        else:
            kinds["head" if path.split("/")[3].startswith("h") else "tail"] += 1
    assert kinds == Counter({name: round(share * 1000) for name, share in bench.MIX})
