"""Importers: real datasets mapped into Blink's event, item and user contract as landing files.

Each importer reads one public dataset with vectorised pandas, maps it to the contract
(``contracts/schemas/*.avsc``), checks every output record at the contract's door
(``contracts.intake``) and writes ``<landing>/<table>/<tag>.parquet`` in the contract's Arrow
schema (``contracts.derived``), the layout ``blink.synth.write`` uses and the DAG's ingest
reads. Nothing is dropped silently: every source row becomes exactly one event or is counted
once in ``ImportReport.skipped`` under its reason, so ``rows_read == events +
sum(skipped.values())``. The mappings and the counts they give on the shared datasets are in
docs/importers.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from blink.errors import DatasetError
from contracts import intake
from contracts.derived import arrow_schema, table_checks
from contracts.dlq import reason_keys
from contracts.tables import TABLES
from contracts.validation import Kind
from tools import split_advice

log = logging.getLogger(__name__)

RETAIL_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                  "UnitPrice", "CustomerID", "Country")
# Money lines, not products: letters-only codes (POST, DOT, M, D, S, B, CRUK, PADS, AMAZONFEE,
# BANK CHARGES), carriage (C2) and gift vouchers (gift_0001_10...). Product codes have digits,
# except the gift shop's own listings (DCGSSBOY "BOYS PARTY BAG"), which are products.
NON_PRODUCT_CODE = r"(?!DCGS)[A-Za-z ]+|C2|gift_\d+_\d+"
ML_LAYOUTS = {"csv": ("ratings.csv", "movies.csv"), "::": ("ratings.dat", "movies.dat")}
ML_NO_GENRE = "(no genres listed)"



@dataclass
class ImportReport:
    """What an import read and wrote; ``skipped`` maps a reason to the source rows it dropped."""

    source: str
    rows_read: int
    events: int
    items: int
    users: int
    skipped: dict[str, int]
    files: dict[str, Path] = field(default_factory=dict)
    advice: split_advice.Advice | None = None  # which BLINK_ENV / split the data needs


# --- Online Retail ----------------------------------------------------------------------------


def import_online_retail(path: Path, landing: Path, tag: str = "online-retail") -> ImportReport:
    """UCI Online Retail (a .parquet or .csv file, or a folder holding online_retail.*).

    Invoices are sessions, customers are users, rows without a customer are anonymous; each
    kept row is one ``purchase`` event with ``value`` = quantity and ``price`` = unit price,
    as event v2 defines them (see docs/importers.md).
    """
    df = _read_retail(Path(path))
    line = df.groupby("InvoiceNo", sort=False, dropna=False).cumcount()  # position in invoice
    keep, skipped = _first_reason(len(df), [  # first match wins: each row counted once
        ("missing_field", df[["InvoiceNo", "StockCode", "InvoiceDate", "Quantity",
                              "UnitPrice"]].isna().any(axis=1)),
        ("cancellation", df["InvoiceNo"].str.startswith("C")),
        ("non_product_code", df["StockCode"].str.fullmatch(NON_PRODUCT_CODE)),
        ("non_positive_quantity", df["Quantity"] <= 0),
        ("non_positive_price", df["UnitPrice"] <= 0),
    ])
    rows = df[keep]
    # Minute-resolution times: the line's position in its invoice, as extra ms, keeps order.
    ts = _epoch_ms(rows["InvoiceDate"]) + line[keep].to_numpy()
    customer = rows["CustomerID"].round().astype("Int64").astype(str)
    country = rows["Country"].astype(object).where(rows["Country"].notna(), None)
    events = pd.DataFrame({
        "event_id": "or-" + rows["InvoiceNo"] + "-" + rows.index.astype(str).to_numpy(),
        "user_id": ("c" + customer).where(rows["CustomerID"].notna(), None),
        "session_id": "inv-" + rows["InvoiceNo"],
        "item_id": rows["StockCode"].str.upper(),  # 85123a and 85123A are the same product
        "event_type": "purchase",
        "timestamp": ts,
        "device": "unknown",
        "value": rows["Quantity"].astype(float),
        "context": [{"quantity": str(q)} if c is None else {"country": c, "quantity": str(q)}
                    for c, q in zip(country, rows["Quantity"], strict=True)],
        "price": rows["UnitPrice"].astype(float),
    })
    by_item = events.groupby("item_id", sort=True)
    titles = rows["Description"].str.strip().replace("", None)
    items = pd.DataFrame({
        "item_id": by_item.size().index,
        "category": "sc" + by_item.size().index.str[:3],
        "price": by_item["price"].median().to_numpy(),
        "created_at": by_item["timestamp"].min().to_numpy(),
    })
    items["title"] = items["item_id"].map(_most_common(events["item_id"], titles))
    known = events["user_id"].notna()
    users = pd.DataFrame({"user_id": np.sort(events.loc[known, "user_id"].unique()),
                          "signup_at": None})
    users["country"] = users["user_id"].map(_most_common(events["user_id"], country))
    return _finish(str(path), len(df), skipped, events, items, users, landing, tag, env="retail")


def _read_retail(path: Path) -> pd.DataFrame:
    if path.is_dir():
        found = sorted(path.glob("online_retail.parquet")) or sorted(path.glob("online_retail.csv"))
        if not found:
            raise DatasetError(f"{path}: expected online_retail.parquet or online_retail.csv "
                               f"(UCI Online Retail) in this folder")
        path = found[0]
    if path.suffix == ".parquet" and path.is_file():
        df = pd.read_parquet(path)
    elif path.suffix == ".csv" and path.is_file():
        df = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "Description": str,
                                      "Country": str}, parse_dates=["InvoiceDate"])
    else:
        raise DatasetError(f"{path}: expected an existing .parquet or .csv file of UCI Online "
                           f"Retail (columns {', '.join(RETAIL_COLUMNS)})")
    missing = [c for c in RETAIL_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: not UCI Online Retail, missing columns {', '.join(missing)}; "
                           f"expected {', '.join(RETAIL_COLUMNS)}")
    return df.reset_index(drop=True)  # the index is the source row, used in event ids


# --- MovieLens --------------------------------------------------------------------------------


def import_movielens(path: Path, landing: Path, tag: str = "movielens") -> ImportReport:
    """MovieLens from a folder with ratings.csv + movies.csv, or ratings.dat + movies.dat (ML-1M).

    Every rating is a ``rating`` event; a user's ratings on one UTC day form one session.
    Items are every movie of the movies file (also those nobody rated).
    """
    ratings, movies = _read_movielens(Path(path))
    earlier = ratings.sort_values("timestamp", kind="stable") \
        .duplicated(["userId", "movieId"], keep="last").reindex(ratings.index)
    keep, skipped = _first_reason(len(ratings), [
        ("missing_field", ratings.isna().any(axis=1)),
        ("unknown_movie", ~ratings["movieId"].isin(movies["movieId"])),
        ("duplicate_rating", earlier),  # the user's latest rating of the movie is kept
    ])
    rows = ratings[keep].astype({"userId": "int64", "movieId": "int64", "timestamp": "int64"})
    user = "m" + rows["userId"].astype(str)
    day = rows["timestamp"].to_numpy().astype("datetime64[s]").astype("datetime64[D]").astype(str)
    events = pd.DataFrame({
        "event_id": "ml-" + rows["userId"].astype(str) + "-" + rows["movieId"].astype(str),
        "user_id": user,
        "session_id": user + "-" + day,
        "item_id": "mv" + rows["movieId"].astype(str),
        "event_type": "rating",
        "timestamp": rows["timestamp"] * 1000,
        "device": "unknown",
        "value": rows["rating"].astype(float),
        "context": [{} for _ in range(len(rows))],
        "price": None,
    })
    genre = movies["genres"].fillna("").str.split("|").str[0].str.strip()
    items = pd.DataFrame({
        "item_id": "mv" + movies["movieId"].astype(str),
        "category": genre.where(~genre.isin(["", ML_NO_GENRE]), "unknown"),
        "price": None,
        "title": movies["title"].str.strip().replace("", None),
    })
    first_rated = events.groupby("item_id")["timestamp"].min()
    items["created_at"] = items["item_id"].map(first_rated).astype("Int64")  # null: never rated
    users = pd.DataFrame({"user_id": np.sort(events["user_id"].unique()), "signup_at": None,
                          "country": None})
    return _finish(str(path), len(ratings), skipped, events, items, users, landing, tag, env="movielens")


def _read_movielens(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    layout = next((name for name, files in ML_LAYOUTS.items()
                   if all((path / f).is_file() for f in files)), None)
    if layout is None:
        found = sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else []
        raise DatasetError(
            f"{path}: not a MovieLens folder; expected ratings.csv + movies.csv (CSV layout, "
            f"ml-latest-small) or ratings.dat + movies.dat ('::' layout, ML-1M), "
            f"found {found or 'no such folder'}")
    types = {"userId": "Int64", "movieId": "Int64", "rating": "float64", "timestamp": "Int64"}
    try:
        if layout == "csv":
            ratings = pd.read_csv(path / "ratings.csv", usecols=list(types), dtype=types)
            movies = pd.read_csv(path / "movies.csv", usecols=["movieId", "title", "genres"],
                                 dtype={"movieId": "int64", "title": str, "genres": str})
        else:
            # UserID::MovieID::Rating::Timestamp. Split on ':' (C parser, fast): fields 0,2,4,6.
            ratings = pd.read_csv(path / "ratings.dat", sep=":", header=None,
                                  usecols=[0, 2, 4, 6], names=list(range(7)), encoding="latin-1")
            ratings = ratings.set_axis(list(types), axis=1).astype(types)
            # Titles may hold ':' and '"', so movies.dat is split by hand on the first two '::'.
            lines = (path / "movies.dat").read_text(encoding="latin-1").splitlines()
            movies = pd.DataFrame([ln.split("::", 2) for ln in lines if ln.strip()],
                                  columns=["movieId", "title", "genres"])
            movies["movieId"] = movies["movieId"].astype("int64")
    except (ValueError, KeyError) as exc:
        raise DatasetError(f"{path}: MovieLens {layout} files do not parse ({exc}); expected "
                           f"userId,movieId,rating,timestamp and movieId,title,genres") from exc
    return ratings, movies.drop_duplicates("movieId").reset_index(drop=True)


# --- shared steps -----------------------------------------------------------------------------


def _first_reason(n: int, rules: list[tuple[str, pd.Series]]) -> tuple[np.ndarray, dict[str, int]]:
    """Rows no rule matched, and per reason how many rows it took (first matching rule only)."""
    keep = np.ones(n, dtype=bool)
    skipped: dict[str, int] = {}
    for reason, mask in rules:
        hit = keep & mask.fillna(False).to_numpy(dtype=bool)
        if hit.any():
            skipped[reason] = int(hit.sum())
        keep &= ~hit
    return keep, skipped


def _epoch_ms(times: pd.Series) -> np.ndarray:
    """Naive datetimes read as UTC, to epoch milliseconds."""
    values = pd.to_datetime(times)
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.to_numpy().astype("datetime64[ms]").astype("int64")


def _most_common(keys: pd.Series, values: pd.Series) -> pd.Series:
    """Per key, its most frequent non-null value (ties: the alphabetically first)."""
    pairs = pd.DataFrame({"k": keys.to_numpy(), "v": values.to_numpy()}).dropna()
    counts = pairs.value_counts().rename("n").reset_index()
    best = counts.sort_values(["k", "n", "v"], ascending=[True, False, True]).drop_duplicates("k")
    return best.set_index("k")["v"]


def _rejects(kind: Kind, frame: pd.DataFrame, now_ms: int, source: str) -> pd.Series:
    """Per row, '' if the record passes the contract, else ``invalid_<kind>: <field: rule>``.

    An import counts its rejects under their reason instead of dead-lettering them: they
    come from a public dataset, and the mapping, not the data, is what to fix.
    """
    plain = frame.astype(object).where(frame.notna(), None)  # NaN / <NA> -> null
    checked = intake.split(plain.to_dict("records"), kind, source, now_ms)
    reasons = [""] * len(frame)
    for rejected in checked.rejected:
        reasons[rejected.index] = f"invalid_{kind}: {reason_keys('; '.join(rejected.problems))[0]}"
    return pd.Series(reasons, index=frame.index, dtype=object)


def _finish(source: str, rows_read: int, skipped: dict[str, int], events: pd.DataFrame,
            items: pd.DataFrame, users: pd.DataFrame, landing: Path, tag: str, env: str) -> ImportReport:
    """Validate everything, drop (and count) what fails, write the landing files, and say
    which split the data needs (``env``: the environment shipped for this dataset)."""
    now_ms = int(time.time() * 1000)
    if "attributes" not in users:
        users = users.assign(attributes=[{} for _ in range(len(users))])
    bad_item = _rejects("item", items, now_ms, source).set_axis(items["item_id"].to_numpy())
    bad_user = _rejects("user", users, now_ms, source).set_axis(users["user_id"].to_numpy())
    # An event of a rejected item or user is dropped with it, so rows stay accounted for.
    reason = events["item_id"].map(bad_item).fillna("")
    reason = reason.where(reason != "", events["user_id"].map(bad_user).fillna(""))
    ok = (reason == "").to_numpy()
    reason[ok] = _rejects("event", events[ok], now_ms, source)
    for why, count in reason[reason != ""].value_counts().sort_index().items():
        skipped[str(why)] = skipped.get(str(why), 0) + int(count)
    kept: dict[Kind, pd.DataFrame] = {
        "event": events[(reason == "").to_numpy()].sort_values("timestamp", kind="stable"),
        "item": items[(bad_item == "").to_numpy()],
        "user": users[(bad_user == "").to_numpy()],
    }
    files = {TABLES[kind]: _write(frame, kind, landing, tag) for kind, frame in kept.items()}
    report = ImportReport(source=source, rows_read=rows_read, events=len(kept["event"]),
                          items=len(kept["item"]), users=len(kept["user"]),
                          skipped=dict(sorted(skipped.items())), files=files)
    times = kept["event"]["timestamp"].to_numpy(dtype="int64")
    if len(times):  # the run date `blink run-dag` picks: the hour after the newest event
        as_of = -(-int(times.max()) // split_advice.HOUR_MS) * split_advice.HOUR_MS
        report.advice = split_advice.advise(times, as_of, prefer=env)
    log.info("imported %s: %s", source, report)
    return report


def _write(frame: pd.DataFrame, kind: Kind, landing: Path, tag: str) -> Path:
    path = Path(landing) / TABLES[kind] / f"{tag}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    schema, checks = arrow_schema(kind), table_checks(kind)
    # Fields the mapping leaves out (event v2's referrer) are null, as the contract reads them.
    frame = frame.assign(**{c: None for c in schema.names if c not in frame.columns})
    # A nullable time with gaps is float64 in pandas; Int64 keeps it an integer for Arrow.
    frame = frame[schema.names].astype({c: "Int64" for c in checks.timestamps if c in checks.nullable})
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)
    return path
