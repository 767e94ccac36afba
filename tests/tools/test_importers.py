"""Importers on the real shared datasets: accounting, contract validity, determinism, layouts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from blink.errors import BlinkError
from contracts.validation import Kind, validate
from tools.importers import ImportReport, import_movielens, import_online_retail

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
RETAIL = DATA / "online-retail" / "online_retail.parquet"
MOVIELENS = DATA / "ml-latest-small"
KIND: dict[str, Kind] = {"events": "event", "items": "item", "users": "user"}

needs_data = pytest.mark.skipif(not RETAIL.exists() or not MOVIELENS.exists(),
                                reason=f"shared datasets not found under {DATA}")


def _tables(report: ImportReport) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(path) for name, path in report.files.items()}


def _records(frame: pd.DataFrame, n: int) -> list[dict[str, object]]:
    """A seeded sample as plain records: NaN -> None, Arrow maps (pairs) -> dicts."""
    sample = frame.sample(n=min(n, len(frame)), random_state=0)
    out = []
    for record in sample.astype(object).where(sample.notna(), None).to_dict("records"):
        for key in ("context", "attributes"):
            if key in record:
                record[key] = dict(record[key])
        out.append(record)
    return out


def _assert_valid(tables: dict[str, pd.DataFrame]) -> None:
    for name, frame in tables.items():
        for record in _records(frame, 5000):
            assert validate(KIND[name], record) == [], (name, record)


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImportReport, dict[str, pd.DataFrame]]:
    report = import_online_retail(RETAIL, tmp_path_factory.mktemp("retail") / "landing")
    return report, _tables(report)


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImportReport, dict[str, pd.DataFrame]]:
    report = import_movielens(MOVIELENS, tmp_path_factory.mktemp("ml") / "landing")
    return report, _tables(report)


@needs_data
def test_online_retail_accounts_for_every_row(retail: tuple[ImportReport, dict]) -> None:
    report, tables = retail
    assert report.rows_read == 541_909
    assert report.events + sum(report.skipped.values()) == report.rows_read
    assert report.skipped == {"cancellation": 9288, "non_positive_price": 1161,
                              "non_positive_quantity": 1336, "non_product_code": 2366}
    assert (report.events, report.items, report.users) == (527_758, 3798, 4334)
    assert {name: len(frame) for name, frame in tables.items()} == \
        {"events": report.events, "items": report.items, "users": report.users}
    assert report.files["events"].name == "online-retail.parquet"


@needs_data
def test_online_retail_mapping(retail: tuple[ImportReport, dict]) -> None:
    _, t = retail
    ev, items, users = t["events"], t["items"], t["users"]
    assert set(ev["event_type"]) == {"purchase"} and set(ev["device"]) == {"unknown"}
    assert not ev["session_id"].str.startswith("inv-C").any()  # no event from a cancellation
    assert not ev["item_id"].isin(["POST", "DOT", "M", "C2", "BANK CHARGES", "AMAZONFEE"]).any()
    assert (ev["value"] >= 1).all() and (ev["price"] > 0).all()  # value = quantity, price = unit price
    anonymous = ev[ev["user_id"].isna()]
    assert anonymous["session_id"].nunique() > 1000  # rows without a customer: anonymous sessions
    assert ev["event_id"].is_unique and ev["user_id"].dropna().str.fullmatch(r"c\d+").all()
    # The first line of invoice 536365 (2010-12-01 08:26), its second one a millisecond later.
    first = ev.set_index("event_id").loc[["or-536365-0", "or-536365-1"]]
    assert first["timestamp"].tolist() == [1_291_191_960_000, 1_291_191_960_001]
    assert dict(first["context"].iloc[0]) == {"country": "United Kingdom", "quantity": "6"}
    assert (first["value"].iloc[0], first["price"].iloc[0]) == (6.0, 2.55)
    assert first["user_id"].tolist() == ["c17850", "c17850"]
    assert set(ev["item_id"]) == set(items["item_id"])
    assert 20 <= items["category"].nunique() <= 200
    heart = items.set_index("item_id").loc["85123A"]  # lower-case 85123a folds into it
    assert heart["title"] == "WHITE HANGING HEART T-LIGHT HOLDER" and heart["category"] == "sc851"
    assert "85123a" not in set(items["item_id"])
    assert set(users["user_id"]) == set(ev["user_id"].dropna())
    assert users["country"].notna().all()


@needs_data
def test_online_retail_output_validates(retail: tuple[ImportReport, dict]) -> None:
    _assert_valid(retail[1])


@needs_data
def test_movielens_csv(movielens: tuple[ImportReport, dict]) -> None:
    report, t = movielens
    assert (report.rows_read, report.events, report.items, report.users) == (100_836, 100_836, 9742, 610)
    assert report.skipped == {}
    ev, items = t["events"], t["items"]
    assert set(ev["event_type"]) == {"rating"} and ev["value"].between(0.5, 5.0).all()
    row = ev.set_index("event_id").loc["ml-1-1"]  # userId 1 rated Toy Story 4.0 at 964982703 s
    assert (row["user_id"], row["item_id"], row["value"], row["timestamp"]) == \
        ("m1", "mv1", 4.0, 964_982_703_000)
    assert row["session_id"] == "m1-2000-07-30"
    toy = items.set_index("item_id").loc["mv1"]
    assert (toy["title"], toy["category"]) == ("Toy Story (1995)", "Adventure")
    assert "unknown" in set(items["category"])  # "(no genres listed)"
    _assert_valid(t)


@needs_data
def test_imports_are_deterministic(tmp_path: Path,
                                   retail: tuple[ImportReport, dict],
                                   movielens: tuple[ImportReport, dict]) -> None:
    again = [import_online_retail(RETAIL, tmp_path / "landing"),
             import_movielens(MOVIELENS, tmp_path / "landing")]
    for first, second in zip((retail[0], movielens[0]), again, strict=True):
        assert first.skipped == second.skipped
        for name, path in first.files.items():
            assert path.read_bytes() == second.files[name].read_bytes(), path


def _write_ml1m(folder: Path) -> Path:
    folder.mkdir()
    movies = ["1::Toy Story (1995)::Animation|Children's|Comedy",
              "2::Misérables, Les (1995)::Drama|Musical",
              '3::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi',
              '4::"Great Performances" Cats (1998)::Musical']
    ratings = ["1::1::5::978300760", "1::3::4::978302109", "2::2::3::978298413",
               "2::9::2::978298500",  # a movie not in movies.dat
               "2::2::4::978299000"]  # user 2 rates movie 2 again: the later rating wins
    (folder / "movies.dat").write_bytes("\n".join(movies).encode("latin-1"))
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n", encoding="latin-1")
    return folder


def test_movielens_double_colon_layout(tmp_path: Path) -> None:
    report = import_movielens(_write_ml1m(tmp_path / "ml-1m"), tmp_path / "landing")
    assert (report.rows_read, report.events, report.items, report.users) == (5, 3, 4, 2)
    assert report.skipped == {"unknown_movie": 1, "duplicate_rating": 1}
    t = _tables(report)
    ev = t["events"].set_index("event_id")
    assert ev.loc["ml-2-2", "value"] == 4.0 and ev.loc["ml-2-2", "timestamp"] == 978_299_000_000
    assert ev.loc["ml-1-1", "session_id"] == "m1-2000-12-31"
    items = t["items"].set_index("item_id")
    assert items.loc["mv2", "title"] == "Misérables, Les (1995)"  # decoded as latin-1
    assert items.loc["mv3", "title"] == "Star Wars: Episode IV - A New Hope (1977)"
    assert items.loc["mv4", "title"] == '"Great Performances" Cats (1998)'
    assert items.loc["mv1", "category"] == "Animation"
    assert pd.isna(items.loc["mv4", "created_at"])  # never rated
    _assert_valid(t)


def test_a_folder_in_neither_layout_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(BlinkError, match=r"expected ratings\.csv \+ movies\.csv .* ratings\.dat "
                                         r"\+ movies\.dat .*found \['ratings\.csv'\]"):
        import_movielens(tmp_path, tmp_path / "landing")
    with pytest.raises(BlinkError, match="no such folder"):
        import_movielens(tmp_path / "missing", tmp_path / "landing")
    with pytest.raises(BlinkError, match="expected an existing .parquet or .csv file"):
        import_online_retail(tmp_path / "ratings.txt", tmp_path / "landing")
    assert not (tmp_path / "landing").exists()


def test_online_retail_missing_columns_is_a_clear_error(tmp_path: Path) -> None:
    pd.DataFrame({"InvoiceNo": ["1"], "StockCode": ["85123A"]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(BlinkError, match="missing columns Description, Quantity"):
        import_online_retail(tmp_path / "x.parquet", tmp_path / "landing")
