"""The offline evaluation report: HTML + PNG plots + JSON per model version.

``write_report`` reads what the batch jobs left in a version's artifact directory
(``eval.json`` from evaluate, ``ranker_importance.json`` from ranker, ``retrieval_tuning.json``
from index; the last two are optional) and writes ``<out_dir>/<version>/`` (``index.html``,
``report.json``, ``*.png``) plus ``<out_dir>/index.html`` listing every version reported.
Plots use matplotlib's Agg canvas directly (no pyplot, no display, safe in any worker).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from blink import layout
from jobs.evaluate import SYSTEMS, describe_targets, targets

REPORT_JSON = "report.json"
TOP_FEATURES = 25
BUCKETS = ("all", "head", "tail", "new")
COLOURS = {"popularity": "#9e9e9e", "retrieval": "#4c72b0", "two_stage": "#dd8452"}
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}tr.chosen{background:#fff3c4;font-weight:bold}
.met{color:#1a7f37;font-weight:bold}.missed{color:#c62828;font-weight:bold}img{max-width:100%}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid img{width:520px}"""


def _precision_section(precision: dict[str, Any] | None) -> str:
    """float32 vs int8 vs bfloat16 scoring of the index, and which one was published (jobs/index.py)."""
    if not precision:
        return "<p>No index precision comparison for this version.</p>"
    rows = precision["variants"]
    cols = [c for c in rows[0] if c != "precision"] + ["relative_loss", "within_bound"]
    cols = list(dict.fromkeys(cols))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        f"<tr{' class=chosen' if r['precision'] == precision['published'] else ''}><td class=l>"
        f"{html.escape(r['precision'])}</td>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols)
        + "</tr>" for r in rows)
    return (f"<h3>Index precision (published: {html.escape(precision['published'])}; relative recall loss "
            f"allowed {precision['max_relative_loss']:.1%})</h3><table><tr><th class=l>precision</th>{head}</tr>"
            f"{body}</table>")


def _fusion_section(fusion: dict[str, Any] | None) -> str:
    """Where the ranker is served, and the held-out NDCG that decided it (jobs/ranker.choose)."""
    if not fusion or "gate" not in fusion:
        return "<p>No ranker gate for this version (fusion.json missing).</p>"
    rows = "".join(
        f"<tr><td class=l>{html.escape(kind)}</td><td>{g['holdout_groups']}</td>"
        f"<td>{g['fused_ndcg@20']:.4f}</td><td>{g['ranker_ndcg@20']:.4f}</td>"
        f"<td class=l>{', '.join(f'{w:g}' for w in g['weights'])}</td>"
        f"<td class=l>{'ranker' if fusion['ranker'][kind] else 'fused source order'}</td></tr>"
        for kind, g in fusion["gate"].items())
    return ("<h3>Ranker or fused source order (held-out groups)</h3><table><tr><th class=l>requests</th>"
            "<th>groups</th><th>fused NDCG@20</th><th>ranker NDCG@20</th>"
            "<th class=l>weights (ann, covisit, popular)</th><th class=l>served</th></tr>" + rows + "</table>")


def write_report(artifact_dir: Path, out_dir: Path) -> Path:
    """Write the report of the version in ``artifact_dir`` under ``out_dir``; returns its index.html."""
    evaluation = json.loads((artifact_dir / layout.EVAL).read_text())
    version = str(evaluation.get("version") or artifact_dir.name)
    k = int(evaluation["k"])
    checks = evaluation.get("targets") or targets(evaluation["table"], k)
    importance = _optional_json(artifact_dir / layout.RANKER_IMPORTANCE) or []
    tuning = _optional_json(artifact_dir / layout.RETRIEVAL_TUNING)
    session = _optional_json(artifact_dir / layout.SESSION_EVAL)
    fusion = _optional_json(artifact_dir / layout.FUSION)
    target_dir = out_dir / version
    target_dir.mkdir(parents=True, exist_ok=True)

    plots = {name: _metric_chart(evaluation["table"], name, target_dir) for name in _metric_names(k)}
    importance_png = _importance_chart(importance[:TOP_FEATURES], target_dir) if importance else None
    tuning_png = _tuning_chart(tuning, target_dir) if tuning and tuning.get("grid") else None
    versus = evaluation.get("baselines")
    versus_png = _baselines_chart(versus, target_dir) if versus else None

    summary = {"version": version, "k": k, "table": evaluation["table"], "targets": checks,
               "gate": evaluation.get("gate", {}), "ranker_importance": importance[:TOP_FEATURES],
               "retrieval_tuning": tuning, "session": session, "baselines": versus,
               "baseline_gate": evaluation.get("baseline_gate", {}), "ranker_gate": fusion}
    (target_dir / REPORT_JSON).write_text(json.dumps(summary, indent=1))
    page = _page(version, k, evaluation, checks, plots, importance[:TOP_FEATURES], importance_png,
                 tuning, tuning_png, session, versus, versus_png, fusion)
    (target_dir / "index.html").write_text(page)
    write_index(out_dir)
    return target_dir / "index.html"


def write_index(out_dir: Path) -> Path:
    """``out_dir/index.html``: every reported version, newest first, with its headline numbers."""
    rows = []
    for path in sorted(out_dir.glob(f"*/{REPORT_JSON}"), reverse=True):
        data = json.loads(path.read_text())
        k, row = data["k"], data["table"].get("all", {})
        two = row.get("two_stage", {})
        gate = data.get("gate", {})
        rows.append(
            f"<tr><td class=l><a href='{html.escape(path.parent.name)}/index.html'>{html.escape(data['version'])}"
            f"</a></td><td>{row.get('users', 0)}</td><td>{two.get(f'recall@{k}', 0):.4f}</td>"
            f"<td>{two.get(f'ndcg@{k}', 0):.4f}</td><td>{_flag(data['targets'].get('met'))}</td>"
            f"<td class=l>{_flag(gate.get('passed'), 'published', 'blocked')}</td></tr>")
    body = ("<h1>Blink offline evaluation: versions</h1><table><tr><th class=l>version</th><th>users</th>"
            "<th>two-stage recall@k</th><th>two-stage ndcg@k</th><th>quality targets</th><th class=l>gate</th></tr>"
            + "".join(rows) + "</table>")
    index = out_dir / "index.html"
    out_dir.mkdir(parents=True, exist_ok=True)
    index.write_text(_html("Blink offline evaluation", body))
    return index


def _optional_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _metric_names(k: int) -> list[str]:
    return [f"recall@{k}", f"ndcg@{k}", f"mrr@{k}", "coverage"]


def _png_name(metric: str) -> str:
    return "metric_" + metric.replace("@", "_at_") + ".png"


def _save(fig: Figure, path: Path) -> str:
    FigureCanvasAgg(fig)  # the Agg canvas: rendering without any GUI backend
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path.name


def _metric_chart(table: dict[str, Any], metric: str, directory: Path) -> str:
    """Grouped bars: one group per user bucket, one bar per system."""
    buckets = [b for b in BUCKETS if b in table]
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    width = 0.8 / len(SYSTEMS)
    for j, system in enumerate(SYSTEMS):
        values = [table[b][system][metric] for b in buckets]
        bars = ax.bar([i + (j - 1) * width for i in range(len(buckets))], values, width,
                      label=system.replace("_", "-"), color=COLOURS[system])
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    ax.set_xticks(range(len(buckets)), [f"{b}\n({table[b]['users']} users)" for b in buckets])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by user bucket")
    ax.margins(y=0.15)
    ax.legend(fontsize=8)
    return _save(fig, directory / _png_name(metric))


def _importance_chart(top: list[list[Any]], directory: Path) -> str:
    names = [str(n) for n, _ in top][::-1]
    gains = [float(g) for _, g in top][::-1]
    fig = Figure(figsize=(6.4, 0.25 * len(top) + 1.2))
    ax = fig.add_subplot()
    ax.barh(names, gains, color=COLOURS["two_stage"])
    ax.set_xlabel("gain")
    ax.set_title(f"ranker feature importance (top {len(top)}, by gain)")
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, directory / "ranker_importance.png")


def _tuning_chart(tuning: dict[str, Any], directory: Path) -> str:
    """Recall@k against p50 and p99 latency: one curve per re-order size, brute force, the choice."""
    grid, chosen, k = tuning["grid"], tuning.get("chosen", {}), tuning["k"]
    fig = Figure(figsize=(11, 4))
    for col, stat in enumerate(("p50_ms", "p99_ms")):
        ax = fig.add_subplot(1, 2, col + 1)
        for reorder in sorted({p["reorder"] for p in grid if p["kind"] == "tree_ah"}):
            points = sorted((p for p in grid if p["kind"] == "tree_ah" and p["reorder"] == reorder),
                            key=lambda p: p["leaves_to_search"])
            ax.plot([p[stat] for p in points], [p["recall"] for p in points], "o-", ms=4,
                    label=f"tree, reorder {reorder}")
        for p in grid:
            if p["kind"] == "brute_force":
                ax.plot([p[stat]], [p["recall"]], "s", color="black", ms=7, label="brute force (exact)")
        if chosen:
            ax.plot([chosen[stat]], [chosen["recall"]], "*", color="red", ms=16, label=f"chosen: {_setting(chosen)}")
        ax.axhline(tuning["target_recall"], ls="--", color="grey", lw=1, label=f"target {tuning['target_recall']}")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{stat.removesuffix('_ms')} latency per query (ms, log)")
        ax.set_ylabel(f"recall@{k} vs exact search")
        ax.set_title(f"{tuning['items']} items, {tuning['queries']} queries")
        ax.grid(alpha=0.3)
        if col == 0:
            ax.legend(fontsize=7, loc="lower right")
    return _save(fig, directory / "retrieval_tuning.png")


def _setting(p: dict[str, Any]) -> str:
    if p["kind"] == "brute_force":
        return "brute force"
    return f"{p['leaves_to_search']}/{p['leaves']} leaves, reorder {p['reorder']}"


def _flag(ok: Any, yes: str = "met", no: str = "missed") -> str:
    return f"<span class={'met' if ok else 'missed'}>{yes if ok else no}</span>"


def _page(version: str, k: int, evaluation: dict[str, Any], checks: dict[str, Any], plots: dict[str, str],
          importance: list[list[Any]], importance_png: str | None, tuning: dict[str, Any] | None,
          tuning_png: str | None, session: dict[str, Any] | None = None,
          versus: dict[str, Any] | None = None, versus_png: str | None = None,
          fusion: dict[str, Any] | None = None) -> str:
    gate = evaluation.get("gate", {})
    parts = [f"<h1>Offline evaluation of {html.escape(version)}</h1>",
             "<p><a href='../index.html'>all versions</a> · <a href='report.json'>report.json</a></p>",
             f"<p>Test window, k={k}. Gate: {_flag(gate.get('passed'), 'published', 'NOT published')} "
             f"&mdash; {html.escape(str(gate.get('reason', 'n/a')))}</p>",
             "<h2>Quality targets</h2>", f"<p>{html.escape(describe_targets(checks))}</p>",
             _targets_table(checks), _baselines_section(versus, versus_png, evaluation.get("baseline_gate", {})),
             "<h2>Evaluation table</h2>", _eval_table(evaluation["table"], k),
             "<p>New users are unknown at the cut-off: every system can only answer them with popularity.</p>",
             "<div class=grid>" + "".join(f"<img src='{png}' alt='{html.escape(m)}'>" for m, png in plots.items())
             + "</div>", "<h2>Ranker feature importance</h2>"]
    if importance:
        parts.append(f"<img src='{importance_png}' alt='feature importance'>")
        parts.append("<table><tr><th>#</th><th class=l>feature</th><th>gain</th></tr>" + "".join(
            f"<tr><td>{i}</td><td class=l>{html.escape(str(n))}</td><td>{float(g):.3f}</td></tr>"
            for i, (n, g) in enumerate(importance, 1)) + "</table>")
    else:
        parts.append("<p>No ranker importance for this version (ranker_importance.json missing).</p>")
    parts.append(_fusion_section(fusion))
    parts.append("<h2>Retrieval: recall vs latency</h2>")
    if tuning and tuning_png:
        parts.append(_tuning_section(tuning, tuning_png))
    else:
        parts.append("<p>No retrieval tuning for this version (retrieval_tuning.json missing).</p>")
    parts.append(_precision_section((tuning or {}).get("precision")))
    parts.append(_session_section(session))
    return _html(f"Blink evaluation {version}", "\n".join(parts))


def _baselines_section(versus: dict[str, Any] | None, png: str | None, gate: dict[str, Any]) -> str:
    """Blink against every baseline, per question set (known users, new users after N clicks)."""
    if not versus:
        return "<h2>Blink vs strong baselines</h2><p>Not measured for this version.</p>"
    table, k = versus["table"], versus["k"]
    questions = list(table["blink"])
    head = "".join(f"<th>{q} NDCG@{k}</th><th>recall@{k}</th>" for q in questions)
    rows = []
    for system, row in table.items():
        cells = "".join(
            f"<td>{_best(row[q]['ndcg'], versus['best_baseline'].get(q) == system)}</td><td>{row[q]['recall']:.4f}</td>"
            for q in questions)
        rows.append(f"<tr><td class=l>{html.escape(system)}</td>{cells}</tr>")
    users = ", ".join(f"{q}: {table['blink'][q]['users']} users" for q in questions)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in versus.get("notes", []))
    return (f"<h2>Blink vs strong baselines</h2><p>Gate: {_flag(gate.get('passed'), 'passed', 'NOT published')} "
            f"&mdash; {html.escape(str(gate.get('reason', 'n/a')))}</p><p>{users}; the best baseline per "
            f"question is in bold.</p><table><tr><th class=l>system</th>{head}</tr>{''.join(rows)}</table>"
            + (f"<ul>{notes}</ul>" if notes else "") + (f"<img src='{png}' alt='baselines'>" if png else ""))


def _best(value: float, bold: bool) -> str:
    return f"<b>{value:.4f}</b>" if bold else f"{value:.4f}"


def _baselines_chart(versus: dict[str, Any], directory: Path) -> str:
    """NDCG@k per question set, one bar per system; Blink first."""
    table, k = versus["table"], versus["k"]
    questions, systems = list(table["blink"]), list(table)
    fig = Figure(figsize=(7.2, 3.8))
    ax = fig.add_subplot()
    width = 0.8 / len(systems)
    for j, system in enumerate(systems):
        ax.bar([i + (j - len(systems) / 2 + 0.5) * width for i in range(len(questions))],
               [table[system][q]["ndcg"] for q in questions], width, label=system,
               color=COLOURS["two_stage"] if system == "blink" else None)
    ax.set_xticks(range(len(questions)), questions)
    ax.set_ylabel(f"NDCG@{k}")
    ax.set_title("Blink vs baselines, same questions")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, directory / "baselines.png")


def _session_section(session: dict[str, Any] | None) -> str:
    """Next-item HR/MRR of the session GRU against co-occurrence and popularity."""
    if not session:
        return "<h2>Sessions: next item</h2><p>No session evaluation (session_eval.json missing).</p>"
    k = session["k"]
    rows = "".join(
        f"<tr><td class=l>{html.escape(name)}</td><td>{m[f'hr@{k}']:.4f}</td><td>{m[f'mrr@{k}']:.4f}</td>"
        f"<td>{m['predictions']}</td></tr>" for name, m in session["table"].items())
    return (f"<h2>Sessions: next item</h2><p>{session['test_sessions']} test-window sessions, GRU trained on "
            f"{session['train_sessions']} earlier ones.</p><table><tr><th class=l>system</th><th>HR@{k}</th>"
            f"<th>MRR@{k}</th><th>predictions</th></tr>{rows}</table>")


def _eval_table(table: dict[str, Any], k: int) -> str:
    metrics = _metric_names(k)
    head = ("<table><tr><th class=l>bucket</th><th>users</th><th class=l>system</th>"
            + "".join(f"<th>{m}</th>" for m in metrics) + "</tr>")
    rows = []
    for bucket in (b for b in BUCKETS if b in table):
        row = table[bucket]
        for j, system in enumerate(SYSTEMS):
            lead = (f"<td class=l rowspan={len(SYSTEMS)}>{bucket}</td><td rowspan={len(SYSTEMS)}>{row['users']}</td>"
                    if j == 0 else "")
            rows.append(f"<tr>{lead}<td class=l>{system.replace('_', '-')}</td>"
                        + "".join(f"<td>{row[system][m]:.4f}</td>" for m in metrics) + "</tr>")
    return head + "".join(rows) + "</table>"


def _targets_table(checks: dict[str, Any]) -> str:
    head = (f"<table><tr><th class=l>bucket</th><th>two-stage vs retrieval {checks['ndcg_metric']}</th>"
            f"<th>target &ge; {checks['ndcg_gain_target']:.0%}</th><th>two-stage / popularity "
            f"{checks['recall_metric']}</th><th>target &ge; {checks['recall_ratio_target']:g}&times;</th></tr>")
    rows = []
    for bucket, t in checks["by_bucket"].items():
        gain = "n/a" if t["ndcg_gain"] is None else f"{t['ndcg_gain']:+.1%}"
        ratio = "n/a" if t["recall_ratio"] is None else f"{t['recall_ratio']:.2f}&times;"
        rows.append(f"<tr><td class=l>{bucket}</td><td>{gain}</td><td>{_flag(t['ndcg_gain_met'])}</td>"
                    f"<td>{ratio}</td><td>{_flag(t['recall_ratio_met'])}</td></tr>")
    return head + "".join(rows) + "</table>"


def _tuning_section(tuning: dict[str, Any], png: str) -> str:
    chosen = tuning.get("chosen", {})
    k = tuning["k"]
    text = (f"<p>{tuning['items']} items × {tuning['dim']} dims, recall@{k} against exact numpy search over "
            f"{tuning['queries']} queries ({html.escape(str(tuning.get('query_source', 'sampled')))}), target "
            f"{tuning['target_recall']}. Chosen: <b>{html.escape(_setting(chosen))}</b> &mdash; recall "
            f"{chosen.get('recall', 0):.4f}, p50 {chosen.get('p50_ms', 0):.3f} ms, p99 {chosen.get('p99_ms', 0):.3f} ms"
            + (f"; as saved and served: recall {chosen['verified_recall']:.4f}, p99 {chosen['verified_p99_ms']:.3f} ms"
               if "verified_recall" in chosen else "")
            + f". Rule: {html.escape(str(chosen.get('rule', '')))}.</p>")
    head = ("<table><tr><th class=l>index</th><th>leaves searched</th><th>share</th><th>reorder</th>"
            f"<th>recall@{k}</th><th>p50 ms</th><th>p99 ms</th><th>answers</th></tr>")
    rows = []
    for p in tuning["grid"]:
        is_chosen = all(p.get(key) == chosen.get(key) for key in ("kind", "leaves_to_search", "reorder"))
        tree = p["kind"] == "tree_ah"
        rows.append(
            f"<tr{' class=chosen' if is_chosen else ''}><td class=l>{p['kind']}</td>"
            f"<td>{p['leaves_to_search'] if tree else ''}{'/' + str(p['leaves']) if tree else ''}</td>"
            f"<td>{format(p.get('leaf_fraction', 0), '.0%') if tree else ''}</td>"
            f"<td>{p['reorder'] if tree else ''}</td><td>{p['recall']:.4f}</td><td>{p['p50_ms']:.3f}</td>"
            f"<td>{p['p99_ms']:.3f}</td><td>{p.get('mean_results', '')}</td></tr>")
    return f"<img src='{png}' alt='retrieval recall vs latency'>" + text + head + "".join(rows) + "</table>"


def _html(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")
