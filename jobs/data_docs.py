"""Data Docs an analyst can read offline, with the run's dead letters beside its validations.

Great Expectations renders its pages against ~15 assets on public CDNs (Bootstrap, jQuery,
bootstrap-table, Font Awesome, Vega) and fills the index's result lists with JavaScript from
them, so behind a firewall the report is unstyled and its lists are empty. After every build,
``make_offline`` rewrites each page of the site:

- every ``<link>``/``<script>`` to another host is removed (and links into the site's
  ``static/`` folder are made right: GX writes them one level short on validation pages),
  and the site's own stylesheet
  (``static/blink/offline.css``, vendored from this package: the Bootstrap and Font Awesome
  classes the pages use) is linked instead; GX's logo comes from the site's ``static/images``
  (GX copies its package's static files there) instead of a tracking URL;
- each JavaScript table (bootstrap-table over inline data) is written out as a plain HTML
  table, newest run first, each row linking to its page;
- the index gets a "Dead-lettered records" table, one row per run, linking to that run's page
  of dead letters by kind and reason (``write_dead_letters``), and a validation page of a run
  says how many records the run's ingest dead-lettered.

Pages stay GX's own; the rewrite is idempotent, so it runs after every checkpoint.
"""

from __future__ import annotations

import ast
import html
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from blink.files import write_text
from contracts.dlq import DeadLetter, reason_keys

OFFLINE_CSS = Path(__file__).with_name("data_docs_offline.css")
CSS_PATH = "static/blink/offline.css"
DEAD_LETTERS = "dead_letters"
SAMPLES = 3  # payloads shown per reason
_MARK = "<!-- blink: offline -->"
_DL_START, _DL_END = "<!-- blink: dead letters -->", "<!-- /blink: dead letters -->"

_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']https?://[^>]*>\s*", re.I)
_EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>\s*", re.I)
# Inline scripts that need jQuery/bootstrap-table: dead without them, their tables are static now.
_JQUERY_SCRIPT = re.compile(r"<script>(?:(?!</script>).)*?(?:\$\(|bootstrapTable)(?:(?!</script>).)*?</script>\s*",
                            re.S)
_EXTERNAL_IMG = re.compile(r"src=\"https?://great-expectations-web-assets[^\"]*\"")
_EXTERNAL_CSS_URL = re.compile(r"url\(['\"]?https?://[^)]*\)")
# GX writes static paths one level short on validation pages (the run time is a folder too).
_STATIC_REF = re.compile(r"(?P<attr>(?:href|src)=[\"'])(?:\./|(?:\.\./)+)static/")
_TABLE_SCRIPT = re.compile(r"\$\('#(?P<id>[\w-]+)'\)\.bootstrapTable\((?P<body>(?:(?!</script>).)*)", re.S)


def make_offline(docs_dir: Path) -> int:
    """Rewrite every page under ``docs_dir`` to need nothing from the network; returns how
    many pages changed."""
    target = docs_dir / CSS_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(OFFLINE_CSS, target)
    runs = _dead_letter_runs(docs_dir)
    changed = 0
    for page in sorted(docs_dir.rglob("*.html")):
        if DEAD_LETTERS in page.relative_to(docs_dir).parts:
            continue  # ours, written offline already
        text = page.read_text(encoding="utf-8")
        root = Path(os.path.relpath(docs_dir, page.parent)).as_posix()
        new = offline_page(text, root)
        if page.parent == docs_dir and page.name == "index.html":
            new = _with_dead_letter_index(new, runs)
        else:
            new = _with_run_banner(new, page.relative_to(docs_dir), runs)
        if new != text:
            write_text(page, new)
            changed += 1
    return changed


def offline_page(text: str, root: str) -> str:
    """One page without network assets; ``root`` is the relative path to the site's root."""
    text = _static_tables(text)
    text = _EXTERNAL_LINK.sub("", text)
    text = _EXTERNAL_SCRIPT.sub("", text)
    text = _JQUERY_SCRIPT.sub("", text)
    text = _EXTERNAL_IMG.sub(f'src="{root}/static/images/logo-long.png"', text)
    text = _EXTERNAL_CSS_URL.sub("none", text)
    text = _STATIC_REF.sub(lambda m: f"{m['attr']}{root}/static/", text)
    if _MARK not in text:
        link = f'{_MARK}\n<link rel="stylesheet" href="{root}/{CSS_PATH}">\n'
        text = text.replace("</head>", link + "</head>", 1)
    return text


def _static_tables(text: str) -> str:
    """Each bootstrap-table (columns and data inline, as GX writes them) as a plain table."""
    for match in list(_TABLE_SCRIPT.finditer(text)):
        body = match["body"]
        columns = _literal(body, "columns")
        rows = _literal(body, "data")
        if columns is None or rows is None:
            continue
        options = re.search(r"'sortName': '(\w+)', 'sortOrder': '(\w+)'", body)
        if options:
            column: dict[str, Any] = next((c for c in columns if c.get("field") == options[1]), {})
            key = str(column.get("sortName", options[1]))
            rows = sorted(rows, key=lambda r: (r.get(key) is None, r.get(key, "")), reverse=options[2] == "desc")
        empty = re.search(rf"(<table\s+id=\"{re.escape(match['id'])}\"[^>]*>)\s*</table>", text)
        if empty:
            text = text[:empty.end(1)] + _html_table(columns, rows) + "</table>" + text[empty.end():]
    return text


def _literal(body: str, name: str) -> Any:
    """The Python-literal value GX wrote on the line ``<name>: [...],``."""
    found = re.search(rf"^\s*{name}: (\[.*\]),\s*$", body, re.M)
    if not found:
        return None
    try:
        return ast.literal_eval(found[1])
    except (ValueError, SyntaxError):
        return None


def _html_table(columns: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    fields = [c["field"] for c in columns]
    linked = "run_name" if "run_name" in fields else next(
        (f for f in fields if not any("<a " in str(r.get(f, "")) for r in rows)), None)
    head = "".join(f"<th>{html.escape(str(c.get('title', c['field'])))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for f in fields:
            value = str(row.get(f, ""))  # GX's own HTML for the cell, as the script would insert it
            if f == linked and row.get("_table_row_link_path"):
                value = f'<a href="{html.escape(row["_table_row_link_path"])}">{value}</a>'
            cells.append(f"<td>{value}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"


# --- dead letters ---------------------------------------------------------------------------


def write_dead_letters(docs_dir: Path, run: str, letters: Iterable[DeadLetter]) -> dict[str, dict[str, int]]:
    """The run's dead letters as ``dead_letters/<run>.html`` (counts by kind and reason, a few
    payloads each) and ``.json`` (the counts, for the index); returns kind -> reason -> count."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    samples: dict[tuple[str, str], list[str]] = defaultdict(list)
    total: Counter[str] = Counter()
    for letter in letters:
        total[letter.kind] += 1
        for key in reason_keys(letter.reason):
            counts[letter.kind][key] += 1
            if len(samples[letter.kind, key]) < SAMPLES:
                samples[letter.kind, key].append(letter.payload[:300])
    summary = {kind: dict(c.most_common()) for kind, c in sorted(counts.items())}
    folder = docs_dir / DEAD_LETTERS
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / f"{run}.json", json.dumps({"run": run, "letters": dict(total), "by_reason": summary}))
    rows = "".join(
        f"<tr><td>{html.escape(kind)}</td><td>{html.escape(reason)}</td><td class='count'>{n:,}</td><td>"
        + "<br>".join(f"<code>{html.escape(p)}</code>" for p in samples[kind, reason]) + "</td></tr>"
        for kind, reasons in summary.items() for reason, n in reasons.items())
    body = (f"<table class='table'><thead><tr><th>kind</th><th>reason (field: rule)</th><th class='count'>"
            f"records</th><th>examples (payload as received)</th></tr></thead><tbody>{rows}</tbody></table>"
            if rows else "<p>No record was dead-lettered in this run.</p>")
    totals = ", ".join(f"{n:,} {kind}" for kind, n in sorted(total.items())) or "none"
    write_text(folder / f"{run}.html", f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Dead-lettered records, run {html.escape(run)}</title>
<link rel="stylesheet" href="../{CSS_PATH}"></head>
<body><div class="container-fluid pt-4 pl-5 pr-5 blink-dead-letters">
<p><a href="../index.html">Data Docs</a> / dead-lettered records</p>
<h2>Dead-lettered records, run {html.escape(run)}</h2>
<p>Records this run's ingest rejected at the contract (landing files and the live stream): {totals}.
A record with several problems counts under each. They are in the dead-letter queue:
<code>blink dlq list</code> shows them, <code>blink dlq replay</code> re-checks them after a fix.</p>
{body}
</div></body></html>
""")
    return summary


def _dead_letter_runs(docs_dir: Path) -> list[dict[str, Any]]:
    folder = docs_dir / DEAD_LETTERS
    if not folder.is_dir():
        return []
    runs = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return sorted(runs, key=lambda r: r["run"], reverse=True)


def _with_dead_letter_index(text: str, runs: list[dict[str, Any]]) -> str:
    """The index with its "Dead-lettered records" table (one row per run) above the results."""
    start, end = text.find(_DL_START), text.find(_DL_END)
    if start >= 0 and end > start:
        text = text[:start] + text[end + len(_DL_END):]
    if not runs:
        return text
    rows = "".join(
        f"<tr><td><a href='{DEAD_LETTERS}/{html.escape(r['run'])}.html'>{html.escape(r['run'])}</a></td>"
        f"<td class='count'>{sum(r['letters'].values()):,}</td><td>"
        + "; ".join(f"{html.escape(kind)} {html.escape(reason)}: {n:,}"
                    for kind, reasons in r["by_reason"].items() for reason, n in reasons.items())
        + "</td></tr>" for r in runs)
    block = (f"{_DL_START}<div class='col-12 blink-dead-letters'><h4>Dead-lettered records</h4>"
             "<table class='table table-sm'><thead><tr><th>run</th><th class='count'>records</th>"
             f"<th>by kind and reason</th></tr></thead><tbody>{rows}</tbody></table></div>{_DL_END}")
    anchor = '<div id="section-1-content-block-2"'
    return text.replace(anchor, block + anchor, 1) if anchor in text else text.replace("</body>", block + "</body>", 1)


def _with_run_banner(text: str, page: Path, runs: list[dict[str, Any]]) -> str:
    """A validation page of run ``<suite>-<run>`` names that run's dead letters, once."""
    if len(page.parts) < 3 or page.parts[0] != "validations" or _DL_START in text:
        return text
    run_name = page.parts[2]
    run = next((r for r in runs if run_name.endswith(f"-{r['run']}")), None)
    if run is None:
        return text
    root = Path(os.path.relpath(".", page.parent)).as_posix()
    n = sum(run["letters"].values())
    banner = (f"{_DL_START}<div class='alert alert-warning blink-dead-letters'>This run's ingest "
              f"dead-lettered {n:,} record(s) before validation: <a href='{root}/{DEAD_LETTERS}/"
              f"{html.escape(run['run'])}.html'>by kind and reason</a>.</div>{_DL_END}")
    anchor = '<div id="section-1"'
    return text.replace(anchor, banner + anchor, 1) if anchor in text else text
