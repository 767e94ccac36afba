"""Every ranking feature's name, group and meaning, in one place (no Spark, no model).

The groups, in the model's column order:

* ``user`` and ``item``: aggregates computed by the Spark ``features`` job (jobs/features.py)
  as of a cut-off time, one row per user / item, looked up by position at serve time;
* ``user_item``, ``session`` and ``context``: computed per request by
  :func:`blink.feature_matrix.feature_matrix`, the one function behind training and serving.

Missing values are NaN (never 0 standing in for "unknown"); XGBoost learns where they go.
``python -m blink.feature_matrix`` prints this registry as the table in docs/features.md.
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DEVICES = ("desktop", "mobile", "tablet", "tv")
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
WINDOWS: dict[str, int] = {"1h": HOUR_MS, "1d": DAY_MS, "7d": 7 * DAY_MS, "28d": 28 * DAY_MS}
WINDOWS_DAYS = (1, 7, 28)  # the day-sized windows, for callers that count in days
# Four six-hour parts of the (UTC) day: part = hour // 6.
DAY_PARTS = ("night", "morning", "afternoon", "evening")
# Trend = short-window rate / long-window rate (smoothed), for these window pairs.
TRENDS = (("1h", "1d"), ("1d", "7d"), ("7d", "28d"))
TOP_CANDIDATES = 10  # the head of the retrieval list that says what a query is about
PRICE = "the event's price when it carries one, else the item's catalogue price"


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    description: str


def _user() -> list[Feature]:
    def u(name: str, description: str) -> Feature:
        return Feature(name, "user", description)

    f = [u("u_events", "events before the as-of time")]
    f += [u(f"u_events_{w}", f"events in the last {w}") for w in WINDOWS]
    f += [u(f"u_{t}", f"{t} events") for t in EVENT_TYPES]
    f += [u(f"u_{t}_{w}", f"{t} events in the last {w}") for t in EVENT_TYPES for w in WINDOWS]
    f += [
        u("u_hours_since_last", "hours since the user's last event"),
        u("u_hours_since_first", "hours since the user's first event (tenure)"),
        u("u_hours_since_purchase", "hours since the user's last purchase (NaN: never bought)"),
        u("u_distinct_items", "distinct items touched"),
        u("u_distinct_categories", "distinct categories touched"),
        u("u_sessions", "distinct sessions"),
        u("u_active_days", "distinct (UTC) days with an event"),
        u("u_events_per_session", "mean events per session"),
        u("u_items_per_event", "distinct items / events (1 = never returns to an item)"),
        u("u_purchase_per_view", "purchases / views (NaN: no views)"),
        u("u_cart_per_view", "add-to-carts / views (NaN: no views)"),
    ]
    f += [u(f"u_share_{d}", f"share of the user's events on {d}") for d in DEVICES]
    f += [u(f"u_share_{p}", f"share of the user's events in the {p} (UTC hours {6 * j}-{6 * j + 6})")
          for j, p in enumerate(DAY_PARTS)]
    f += [
        u("u_mean_price", f"mean price of touched items ({PRICE}; NaN: none priced)"),
        u("u_max_price", "highest price among touched items (NaN: none priced)"),
        u("u_mean_purchase_price", "mean price of purchased items (NaN: no priced purchase)"),
        u("u_category_entropy", "entropy (nats) of the user's events over known categories"),
        u("u_top_category_share", "share of the user's categorised events in their top category"),
    ]
    return f


def _item() -> list[Feature]:
    def i(name: str, description: str) -> Feature:
        return Feature(name, "item", description)

    f = [i("i_events", "events before the as-of time")]
    f += [i(f"i_events_{w}", f"events in the last {w}") for w in WINDOWS]
    f += [i(f"i_{t}_{w}", f"{t} events in the last {w}") for t in EVENT_TYPES for w in WINDOWS]
    f += [i("i_users", "distinct known users")]
    f += [i(f"i_users_{w}", f"distinct known users in the last {w}") for w in WINDOWS]
    f += [i(f"i_trend_{s}_{long}", f"event rate in the last {s} / rate in the last {long} "
                                   f"(smoothed: n_{s} x ({long}/{s}) / (n_{long} + 1))")
          for s, long in TRENDS]
    f += [
        i("i_purchase_per_view", "purchases / views (NaN: no views)"),
        i("i_cart_per_view", "add-to-carts / views (NaN: no views)"),
        i("i_click_per_view", "clicks / views (NaN: no views)"),
        i("i_events_per_user", "events / distinct known users (NaN: no known user)"),
        i("i_hours_since_last", "hours since the item's last event (NaN: never touched)"),
    ]
    f += [i(f"i_share_{d}", f"share of the item's events on {d} (NaN: no events)") for d in DEVICES]
    f += [
        i("i_price", "catalogue price (NaN: unknown)"),
        i("i_price_vs_category", "price / median price of the item's category (NaN: no price or category)"),
        i("i_age_days", "days since the item was created (NaN: unknown)"),
        i("i_category_items", "items in the item's category (NaN: no category)"),
        i("i_category_share_7d", "share of all events in the last 7d that fell in the item's category"),
        i("i_share_of_category_7d", "the item's share of its category's events in the last 7d "
                                    "(NaN: category quiet)"),
    ]
    return f


def _cross() -> list[Feature]:
    def x(name: str, description: str) -> Feature:
        return Feature(name, "user_item", description)

    return [
        x("x_retrieval_score", "dot product of user and item vectors (the retrieval score)"),
        x("x_retrieval_rank", "rank of the item in retrieval (0 = best)"),
        x("x_score_minus_top", "retrieval score minus the best candidate's score (<= 0)"),
        x("x_category_affinity", "share of the user's events in the item's category"),
        x("x_query_category_share", f"share of the {TOP_CANDIDATES} best retrieval candidates in the item's "
                                    "category: where the query (user or session vector) points"),
        x("x_category_lift", "x_category_affinity / i_category_share_7d (> 1: the user likes it "
                             "more than traffic does)"),
        x("x_category_hours_since", "hours since the user last touched the item's category "
                                    "(NaN: never)"),
        x("x_in_top_category", "1 if the item is in the user's most-touched category"),
        x("x_price_ratio", "item price / user's mean price"),
        x("x_abs_log_price_ratio", "|log(item price / user's mean price)|: distance from the usual price"),
        x("x_price_vs_max", "item price / the highest price the user touched"),
        x("x_price_vs_purchase", "item price / user's mean purchase price (NaN: never bought)"),
        x("x_popularity_rank", "rank of the item's i_events_7d among the candidates / their number "
                               "(0 = most popular; a fraction, so 200 or 500 candidates read alike)"),
        x("x_popularity_rank_1d", "the same for i_events_1d"),
    ]


SESSION = [
    Feature("s_similarity", "session", "dot product of the item and session vectors (NaN: no session)"),
    Feature("s_category_match", "session", "1 if the item shares the category of the candidate most "
                                           "similar to the session (NaN: no session)"),
    # What the session clicked, not what its vector points at: sessions on real shops and media
    # sites stay in few categories, and this holds even when the item vectors are weak.
    Feature("s_category_share", "session", "share of the session's items in the item's category "
                                           "(NaN: no session items)"),
]
# Where a candidate came from (blink.pipeline's candidate sources): the ranker learns to merge
# them, so a source that is right for this request (popular items for a newcomer, co-visited
# items mid-session) can win over the vector neighbours.
SOURCE = [
    Feature("x_src_ann_rank", "source", "rank among the vector (ANN) neighbours of the query (NaN: not from it)"),
    Feature("x_src_covisit_rank", "source", "rank among the items co-visited with the user's or session's "
                                            "recent items (NaN: not from it)"),
    Feature("x_src_covisit_score", "source", "co-visitation score, recency-weighted over the recent items "
                                             "(NaN: not from it)"),
    Feature("x_src_popular_rank", "source", "rank in the trending list at the cut-off (NaN: not from it)"),
    Feature("x_src_sknn_rank", "source", "rank among the items of the users whose histories best match the "
                                         "recent items (session-kNN; NaN: not from it)"),
    Feature("x_src_sknn_score", "source", "session-kNN score: similarity-weighted votes of those users "
                                          "(NaN: not from it)"),
    Feature("x_src_count", "source", "how many sources proposed the item"),
]
CONTEXT = [
    Feature("c_hour_sin", "context", "hour of day (UTC), cyclical (sine)"),
    Feature("c_hour_cos", "context", "hour of day (UTC), cyclical (cosine)"),
    Feature("c_weekday_sin", "context", "day of week, cyclical (sine)"),
    Feature("c_weekday_cos", "context", "day of week, cyclical (cosine)"),
    Feature("c_is_weekend", "context", "1 on Saturday and Sunday (UTC)"),
] + [Feature(f"c_device_{d}", "context", f"request comes from {d} (NaN = unknown)") for d in DEVICES]
USER_CONTEXT = [
    Feature("c_user_device_share", "context", "share of the user's events on the request's device "
                                              "(NaN: unknown device)"),
    Feature("c_user_daypart_share", "context", "share of the user's events in the request's part of the day"),
]

USER_FEATURES = _user()
ITEM_FEATURES = _item()
CROSS = _cross()
RANKING_FEATURES = USER_FEATURES + ITEM_FEATURES + CROSS + SESSION + SOURCE + CONTEXT + USER_CONTEXT
NAMES = [f.name for f in RANKING_FEATURES]
USER_INDEX = {f.name: j for j, f in enumerate(USER_FEATURES)}
ITEM_INDEX = {f.name: j for j, f in enumerate(ITEM_FEATURES)}


def _cell(text: str) -> str:
    return text.replace("|", r"\|")  # a literal pipe would split the Markdown cell


def markdown() -> str:
    """The registry as a Markdown table (docs/features.md is this output)."""
    groups = {f.group: sum(g.group == f.group for g in RANKING_FEATURES) for f in RANKING_FEATURES}
    lines = [
        "# Ranking features",
        "",
        "Generated by `python -m blink.feature_matrix > docs/features.md` from `blink/feature_registry.py`;",
        "a test fails when this file is out of date. Columns are in the ranker's order.",
        "Missing values are NaN. User and item features are computed by the Spark `features` job",
        "as of a cut-off; the rest per request by `blink.feature_matrix.feature_matrix`.",
        "",
        f"{len(RANKING_FEATURES)} features: " + ", ".join(f"{g} {n}" for g, n in groups.items()) + ".",
        "",
        "| # | name | group | description |",
        "|---|---|---|---|",
    ]
    lines += [f"| {j} | `{f.name}` | {f.group} | {_cell(f.description)} |"
              for j, f in enumerate(RANKING_FEATURES)]
    return "\n".join(lines) + "\n"
