"""Which table holds each contract kind, and the field that identifies a row of it.

The table name is also the name of the landing folder (``<var>/landing/<table>/``) and of the
lake table (``<var>/lake/<table>/``). Recommendations are answers, not data: they have none.
"""

from __future__ import annotations

from contracts.validation import Kind

TABLES: dict[Kind, str] = {"event": "events", "item": "items", "user": "users"}
KIND_OF: dict[str, Kind] = {table: kind for kind, table in TABLES.items()}
# Ingest keeps one row per key: duplicate events are dropped, the newest item or user wins.
KEYS: dict[Kind, str] = {"event": "event_id", "item": "item_id", "user": "user_id"}
