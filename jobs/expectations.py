"""Data-quality gate: Great Expectations suites for the lake tables, Data Docs for analysts.

`validate_frame` runs one suite over one pandas frame through a file-based GX project (suite,
pandas data source, validation definition and checkpoint are all add-or-update, so a re-run of
the same DAG interval never trips over objects an earlier run created) and writes the result
into a static Data Docs site that works offline (jobs/data_docs.py). `gate` turns a failed
result into a `DataQualityError`, which the DAG lets fail the task so nothing downstream trains
or publishes on bad data.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

# Set before GX is imported: it reads the flag at import time, and an hourly job must not
# phone home or log analytics noise.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx
import great_expectations.expectations as gxe  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.checkpoint import UpdateDataDocsAction  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.store.store import DataDocsSiteConfigTypedDict  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from blink.errors import DataQualityError  # noqa: E402
from blink.feature_matrix import USER_FEATURES  # noqa: E402
from contracts.derived import table_checks  # noqa: E402
from contracts.tables import KIND_OF  # noqa: E402
from contracts.validation import (  # noqa: E402
    ITEMLESS_EVENT_TYPES,
    MAX_SKEW_MS,
    MIN_TIMESTAMP_MS,
    Kind,
)
from jobs import data_docs  # noqa: E402

SuiteName = Literal["events", "items", "features", "recommendations"]
# The contract's own floor (1990-01-01): MovieLens goes back to 1996. Seconds (~1.7e9) are far below.
MIN_TS_MS = MIN_TIMESTAMP_MS
# Columns a suite does not check, dropped by validate_frame so callers can pass a table as it
# was written. For features: the arrays (category share, consumed items). No expectation
# reads them (GX has no array checks worth having here), and `history` is by far the largest
# column, so dropping it keeps the validated batch small.
UNCHECKED_COLUMNS: dict[str, tuple[str, ...]] = {"features": ("category_share", "history")}
DATASOURCE = "blink_frames"
DOCS_SITE = "blink_docs"


@dataclass
class QualityResult:
    """The outcome of one suite over one frame."""

    suite: str
    success: bool
    evaluated: int
    failed: list[str]
    docs_index: Path


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as an ISO-8601 UTC time to the second, as reports show it."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def contract_expectations(kind: Kind, min_ts_ms: int = MIN_TS_MS,
                          max_ts_ms: int | None = None) -> list[gxe.Expectation]:
    """What the data contract demands of every row of a ``kind`` table (``contracts.derived``).

    Required fields: the column is there and never null. Nullable fields (an anonymous
    ``user_id``) get no not-null expectation: null is a valid value. The key is unique, enums
    stay within their symbols, epoch-ms timestamps within [min_ts_ms, max_ts_ms] (default: the
    contract's floor to now + its clock skew), floats are floats, non-negative fields >= 0.
    """
    if max_ts_ms is None:
        max_ts_ms = int(time.time() * 1000) + MAX_SKEW_MS
    checks = table_checks(kind)
    out: list[gxe.Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        # Extra columns (e.g. free `context`, partition columns) are allowed.
        gxe.ExpectTableColumnsToMatchSet(column_set=list(checks.required), exact_match=False),
        *(gxe.ExpectColumnValuesToNotBeNull(column=name) for name in checks.required),
    ]
    if checks.key:
        out.append(gxe.ExpectColumnValuesToBeUnique(column=checks.key))
    out += [gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(symbols))
            for name, symbols in checks.enums.items()]
    for name in checks.timestamps:
        if name in checks.required:  # a nullable one reads from Parquet as float64 (NaN = null)
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=["int64", "Int64"]))
        # Seconds or nanoseconds fall outside by orders of magnitude, so they are caught too.
        # The description is what Data Docs show: the bounds as dates, not raw epoch floats.
        out.append(gxe.ExpectColumnValuesToBeBetween(
            column=name, min_value=min_ts_ms, max_value=max_ts_ms,
            description=f"{name} values (epoch milliseconds) must be between {iso_ms(min_ts_ms)} and "
                        f"{iso_ms(max_ts_ms)} ({min_ts_ms} to {max_ts_ms})."))
    # An all-null column arrives as object dtype; GX then checks values, skipping nulls.
    out += [gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=["float64", "Float64"])
            for name in checks.floats]
    # Nulls are skipped by GX, so "price >= 0 or null" is just a lower bound.
    out += [gxe.ExpectColumnValuesToBeBetween(column=name, min_value=0) for name in checks.non_negative]
    return out


def events_suite(min_ts_ms: int = MIN_TS_MS, max_ts_ms: int | None = None) -> gx.ExpectationSuite:
    """Expectations for the events lake table: the contract's, timestamps within
    [min_ts_ms, max_ts_ms] (the DAG may narrow them to its data interval), and the item rule."""
    return gx.ExpectationSuite(
        name="events",
        expectations=[
            *contract_expectations("event", min_ts_ms, max_ts_ms),
            # The contract's record rule: only some event types (search) may lack an item. A
            # row condition states exactly that, where a `mostly` threshold would break
            # whenever searches grow past it.
            gxe.ExpectColumnValuesToNotBeNull(
                column="item_id", row_condition=f"event_type not in {list(ITEMLESS_EVENT_TYPES)!r}",
                condition_parser="pandas",
            ),
        ],
    )


def items_suite() -> gx.ExpectationSuite:
    """Expectations for the items (catalog) lake table: the contract's."""
    return gx.ExpectationSuite(name="items", expectations=contract_expectations("item"))


def features_suite(min_users: int = 1) -> gx.ExpectationSuite:
    """Expectations for the user features table (jobs/features.py), scalar columns only.

    ``min_users``: the fewest rows (known users) the table must have. A shop whose visitors
    are all anonymous has none, so the caller passes 0 when the events hold no ``user_id``
    (the contract allows that); an empty table is otherwise a broken features job.
    """
    names = [f.name for f in USER_FEATURES]
    shares = [
        gxe.ExpectColumnValuesToBeBetween(column=name, min_value=0, max_value=1)
        for name in names
        if name.startswith("u_share_")
    ]
    return gx.ExpectationSuite(
        name="features",
        expectations=[
            gxe.ExpectTableRowCountToBeBetween(min_value=min_users),
            # Serving looks the features up by position: every registered one must be there.
            gxe.ExpectTableColumnsToMatchSet(column_set=["user_id", *names], exact_match=False),
            gxe.ExpectColumnValuesToNotBeNull(column="user_id"),
            gxe.ExpectColumnValuesToBeUnique(column="user_id"),
            # A user is in the table because of at least one event.
            gxe.ExpectColumnValuesToNotBeNull(column="u_events"),
            gxe.ExpectColumnValuesToBeBetween(column="u_events", min_value=1),
            # Negative means an event after the as-of time leaked into the features.
            gxe.ExpectColumnValuesToBeBetween(column="u_hours_since_last", min_value=0),
            *shares,
        ],
    )


def recommendations_suite(k: int) -> gx.ExpectationSuite:
    """Expectations for the precomputed head lists, as summarised by `recommendations_frame`.

    `k` is the longest answer a head list must cover (the router serves `list[:k]`).
    """
    return gx.ExpectationSuite(
        name="recommendations",
        expectations=[
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectColumnValuesToBeUnique(column="user_id"),
            gxe.ExpectColumnValuesToBeBetween(column="n_items", min_value=k),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="n_distinct", column_B="n_items"),
            gxe.ExpectColumnValuesToBeBetween(column="n_consumed", min_value=0, max_value=0),
            gxe.ExpectColumnValuesToBeInSet(column="scores_sorted", value_set=[True]),
            gxe.ExpectColumnValuesToNotBeNull(column="model_version"),
        ],
    )


def recommendations_frame(
    lists: pd.DataFrame, history: dict[str, set[str]], k: int, model_version: str
) -> pd.DataFrame:
    """One row per head list, with the columns the recommendations suite checks.

    `lists` is jobs/precompute.py's output (`user_id`, `items`: JSON text of
    [[item_id, score], ...], best first); `history` maps a user to the items consumed before
    the version's as-of time. `k` is recorded in a column so the report shows what each list
    was held to; the suite takes it as its own parameter.
    """
    rows = []
    for user_id, text in zip(lists["user_id"], lists["items"], strict=True):
        try:
            pairs = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise DataQualityError(
                f"head list of user {user_id!r} is not JSON [[item_id, score], ...]: {exc}; "
                "re-run precompute for the interval"
            ) from exc
        item_ids = [item_id for item_id, _ in pairs]
        scores = [float(score) for _, score in pairs]
        seen = history.get(user_id, set())
        rows.append(
            {
                "user_id": user_id,
                "n_items": len(item_ids),
                "n_distinct": len(set(item_ids)),
                "n_consumed": sum(item_id in seen for item_id in item_ids),
                # NaN compares False, so a NaN score also counts as unsorted.
                "scores_sorted": all(a >= b for a, b in pairwise(scores)),
                "model_version": model_version,
                "k": k,
            }
        )
    columns = ["user_id", "n_items", "n_distinct", "n_consumed", "scores_sorted",
               "model_version", "k"]
    return pd.DataFrame(rows, columns=columns)


SUITES: dict[str, Callable[..., gx.ExpectationSuite]] = {
    "events": events_suite,
    "items": items_suite,
    "features": features_suite,
    "recommendations": recommendations_suite,
}


def validate_frame(
    df: pd.DataFrame,
    suite_name: SuiteName,
    run_name: str,
    gx_dir: Path,
    docs_dir: Path,
    **suite_params: Any,
) -> QualityResult:
    """Validate `df` against a named suite and add the run to the Data Docs in `docs_dir`.

    `run_name` labels the run in the docs (the DAG passes its data interval); `suite_params`
    go to the suite builder (e.g. `min_ts_ms`/`max_ts_ms` for events). Safe to call again with
    the same names and directories: every GX object is added or updated. Columns in
    `UNCHECKED_COLUMNS[suite_name]` (arrays GX cannot check) are dropped first.
    """
    suite = SUITES[suite_name](**suite_params)
    df = df.drop(columns=[c for c in UNCHECKED_COLUMNS.get(suite_name, ()) if c in df.columns])
    kind = KIND_OF.get(suite_name)
    if kind is not None:  # the contract reads an absent nullable field as null: so does the suite
        df = df.assign(**{name: None for name in table_checks(kind).nullable if name not in df.columns})
    context = _open_context(gx_dir, docs_dir)

    # Get-or-create, not add_or_update: updating a data source would drop its assets.
    source = _get_or_add(context.data_sources.get, context.data_sources.add_pandas, DATASOURCE)
    asset = _get_or_add(source.get_asset, source.add_dataframe_asset, suite_name)
    batch_def = _get_or_add(
        asset.get_batch_definition, asset.add_batch_definition_whole_dataframe, "whole"
    )
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_name, data=batch_def, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite_name,
            validation_definitions=[validation],
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[DOCS_SITE])],
            # SUMMARY keeps a sample of unexpected values for the error message.
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    outcome = checkpoint.run(
        batch_parameters={"dataframe": df}, run_id=RunIdentifier(run_name=run_name)
    )
    data_docs.make_offline(docs_dir)  # GX rebuilt pages that load CDN assets: make them local
    (result,) = outcome.run_results.values()
    return QualityResult(
        suite=suite_name,
        success=bool(outcome.success),
        evaluated=int(result.statistics["evaluated_expectations"]),
        failed=[_describe(r) for r in result.results if not r.success],
        docs_index=docs_dir / "index.html",
    )


def gate(result: QualityResult) -> None:
    """Raise `DataQualityError` unless the validation passed."""
    if result.success:
        return
    raise DataQualityError(
        f"data quality suite '{result.suite}' failed {len(result.failed)} of "
        f"{result.evaluated} expectations: {'; '.join(result.failed)}. "
        f"Fix the upstream data and re-run the interval; details in {result.docs_index}"
    )


def _open_context(gx_dir: Path, docs_dir: Path) -> Any:
    """The file-based GX project in `gx_dir` (scaffolded on first use), reporting to `docs_dir`."""
    context = gx.get_context(mode="file", project_root_dir=str(gx_dir))
    # tqdm bars per validation would flood the Airflow task log; in memory only, not saved.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    config: DataDocsSiteConfigTypedDict = {
        "class_name": "SiteBuilder",
        # Absolute, so the report location does not depend on where gx_dir is.
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir.resolve()),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    sites = context.list_data_docs_sites()
    # The scaffolded default site would be a second, never-updated report: drop it.
    if "local_site" in sites:
        context.delete_data_docs_site("local_site")
    if DOCS_SITE not in sites:
        context.add_data_docs_site(site_name=DOCS_SITE, site_config=config)
    elif sites[DOCS_SITE] != config:
        context.update_data_docs_site(site_name=DOCS_SITE, site_config=config)
    return context


def _get_or_add(get: Callable[[str], Any], add: Callable[..., Any], name: str) -> Any:
    """GX raises a LookupError (KeyError) for a missing object; create it then."""
    try:
        return get(name)
    except LookupError:
        return add(name=name)


def _describe(result: Any) -> str:
    """One failed expectation as a line an analyst can act on."""
    config = result.expectation_config
    kwargs = config.kwargs
    columns = [kwargs[c] for c in ("column", "column_A", "column_B") if kwargs.get(c)]
    label = f"{config.type}({', '.join(columns)})" if columns else config.type
    error = _error_message(result.exception_info or {})
    if error:
        return f"{label}: could not run: {error}"
    detail = result.result or {}
    if "unexpected_count" in detail:
        # Distinct values (a duplicated id would show as ['e0', 'e0']), as plain Python values.
        values = detail.get("partial_unexpected_list", [])
        sample = list(dict.fromkeys(_plain(v) for v in values))[:3]
        return f"{label}: {detail['unexpected_count']} unexpected, e.g. {sample!r}"
    missing = detail.get("details", {}).get("mismatched", {}).get("missing")
    if missing:  # column-set check: name the missing columns, not every observed one
        return f"{label}: missing columns {missing!r}"
    return f"{label}: observed {detail.get('observed_value')!r}"


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so a message reads [42], not [np.int64(42)]; a column
    pair's unexpected value is a (A, B) tuple of them."""
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    return value.item() if hasattr(value, "item") else value


def _error_message(info: dict[str, Any]) -> str | None:
    """GX reports a crash either flat or as one entry per failed metric; take the first."""
    entries = info.values() if "raised_exception" not in info else [info]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("exception_message"):
            return str(entry["exception_message"])
    return None
