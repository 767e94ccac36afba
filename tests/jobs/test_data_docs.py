"""Data Docs an analyst can read offline: real Great Expectations builds the site, then every
page is checked for assets from other hosts, links that resolve, and what it must show."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd

from contracts.dlq import DeadLetter
from jobs import data_docs
from jobs.expectations import validate_frame

NOW_MS = int(time.time() * 1000)
ASSET = re.compile(r"<link\b[^>]*href=\"(?P<link>[^\"]+)\"|<script\b[^>]*src=\"(?P<script>[^\"]+)\""
                   r"|<img\b[^>]*src=\"(?P<img>[^\"]+)\"|url\(['\"]?(?P<url>[^)'\"]+)")
HREF = re.compile(r"<a\b[^>]*href=['\"](?P<href>[^'\"#]+)['\"]")


def events(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({
        "event_id": [f"e{i}" for i in range(n)], "user_id": [None if i % 3 else f"u{i}" for i in range(n)],
        "session_id": ["s"] * n, "item_id": ["i"] * n, "event_type": ["view"] * n,
        "timestamp": pd.Series([NOW_MS - 1000 * i for i in range(n)], dtype="int64"), "device": ["tv"] * n,
    })


def assets(page: Path) -> list[str]:
    return [next(v for v in m.groupdict().values() if v) for m in ASSET.finditer(page.read_text())]


def test_every_page_works_offline_and_lists_are_static_tables(tmp_path: Path) -> None:
    gx_dir, docs = tmp_path / "gx", tmp_path / "docs"
    letters = [DeadLetter("landing:x.jsonl", "event", '{"event_id": "b1"}', "timestamp: required field is missing",
                          NOW_MS),
               DeadLetter("landing:x.jsonl", "event", "{oops", "not valid JSON: Expecting value", NOW_MS),
               DeadLetter("landing:x.jsonl", "event", '{"event_id": "b2"}', "timestamp: required field is missing",
                          NOW_MS)]
    summary = data_docs.write_dead_letters(docs, "20261202T1300", letters)
    assert summary == {"event": {"timestamp: required field is missing": 2, "not valid JSON": 1}}
    validate_frame(events(), "events", "events-20261202T1300", gx_dir, docs)
    validate_frame(events(), "events", "events-20261202T1400", gx_dir, docs)

    pages = sorted(docs.rglob("*.html"))
    assert len(pages) >= 5  # index, the suite, two validations, the dead letters
    for page in pages:
        found = assets(page)
        external = [a for a in found if re.match(r"https?:", a)]
        assert not external, (page, external)  # nothing from a CDN
        for asset in found:  # and every local asset is there
            assert (page.parent / asset.split("?")[0]).resolve().exists(), (page, asset)
        for href in (m["href"] for m in HREF.finditer(page.read_text())):
            if not re.match(r"https?:|mailto:", href):
                assert (page.parent / href).resolve().exists(), (page, href)
        if page.name != "offline.css":
            assert "static/blink/offline.css" in page.read_text(), page

    index = (docs / "index.html").read_text()
    assert "bootstrapTable" not in index and "<script" not in index.replace('<script type="text/x-', "")
    # The validation results, newest first, as rows of a plain table linking their pages.
    runs = re.findall(r'<a href="validations/events/(events-[\dT]+)/', index)
    assert runs == ["events-20261202T1400", "events-20261202T1300"]
    # The dead letters: on the index, on the run's own page and on its validation page.
    assert "Dead-lettered records" in index and "dead_letters/20261202T1300.html" in index
    assert "event timestamp: required field is missing: 2" in index
    page = (docs / "dead_letters" / "20261202T1300.html").read_text()
    assert "3 event" in page and "<td class='count'>2</td>" in page and "{oops" in page
    (validation,) = (docs / "validations" / "events" / "events-20261202T1300").rglob("*.html")
    assert "dead-lettered 3 record(s) before validation" in validation.read_text()
    (other,) = (docs / "validations" / "events" / "events-20261202T1400").rglob("*.html")
    assert "dead-lettered" not in other.read_text()


def test_timestamp_bounds_read_as_dates(tmp_path: Path) -> None:
    validate_frame(events(), "events", "run-dates", tmp_path / "gx", tmp_path / "docs",
                   min_ts_ms=1_700_000_000_000, max_ts_ms=1_800_000_000_000)
    (page,) = (tmp_path / "docs" / "validations").rglob("*.html")
    text = page.read_text()
    assert "timestamp values (epoch milliseconds) must be between 2023-11-14T22:13:20Z and " \
           "2027-01-15T08:00:00Z" in text
    assert "1700000000000.0" not in text  # no raw epoch float where a date belongs


def test_making_a_site_offline_twice_changes_nothing(tmp_path: Path) -> None:
    validate_frame(events(), "events", "run-1", tmp_path / "gx", tmp_path / "docs")
    before = {p: p.read_text() for p in (tmp_path / "docs").rglob("*.html")}
    assert data_docs.make_offline(tmp_path / "docs") == 0
    assert {p: p.read_text() for p in (tmp_path / "docs").rglob("*.html")} == before
