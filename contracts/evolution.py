"""Schema evolution: each schema version must read data written with the one before it.

``check_backward(kind)`` proves it twice for every consecutive pair of versions:

- by doing it: sample records covering every enum symbol and union branch of the old schema
  are written with fastavro under the old schema and read back with ``reader_schema=new``
  (Avro schema resolution, as a consumer on the new version would read old files);
- statically, to name the field and the fix for the classic breaking changes: a new field
  without a default, an enum symbol removed, a type changed in a way Avro cannot promote.

Run it on candidate schemas before shipping them: ``python -m contracts.evolution [DIR]``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import expand_schema

from contracts.validation import KINDS, SCHEMA_DIR, Kind, describe_type, schema, versions

# Writer type -> reader types it can be read as (Avro specification, "Schema Resolution").
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = ("record", "enum", "fixed")


def check_backward(kind: Kind, directory: Path = SCHEMA_DIR) -> list[str]:
    """Problems that keep a ``kind`` schema version in ``directory`` from reading data written
    with the previous version (``[]`` when every version reads its predecessor's data)."""
    found = versions(kind, directory)
    problems: list[str] = []
    for old, new in zip(found, found[1:], strict=False):
        writer = cast(dict[str, Any], expand_schema(schema(kind, old, directory)))
        reader = cast(dict[str, Any], expand_schema(schema(kind, new, directory)))
        where = f"{kind} v{old} -> v{new}"
        static = [f"{where}: {p}" for p in _compare("", writer, reader)]
        problems += static
        failure = round_trip(writer, reader)
        if failure and not static:  # not one of the classic cases: still a failure, unnamed
            problems.append(f"{where}: v{new} cannot read records written with v{old} ({failure}); "
                            f"keep v{new} readable, see the Avro schema resolution rules")
    return problems


# --- doing it: write with the old schema, read with the new one -----------------------------


def samples(avro: Any) -> list[Any]:
    """Records valid for ``avro`` that together use every enum symbol and union branch."""
    return [_sample(avro, i) for i in range(max(2, _width(avro)))]


def round_trip(writer: dict[str, Any], reader: dict[str, Any]) -> str | None:
    """Write ``samples(writer)`` with ``writer``, read them with ``reader_schema=reader``;
    the resolution error, or None when every record reads back."""
    records = samples(writer)
    buffer = io.BytesIO()
    fastavro.writer(buffer, writer, records)
    buffer.seek(0)
    try:
        read = list(fastavro.reader(buffer, reader_schema=reader))
    except (SchemaResolutionError, ValueError, TypeError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if len(read) != len(records):
        return f"wrote {len(records)} records, read {len(read)}"
    return None


def _width(t: Any) -> int:
    """How many samples it takes to use every symbol and branch of ``t`` at least once."""
    if isinstance(t, list):
        return max([len(t), *(_width(b) for b in t)])
    if not isinstance(t, dict):
        return 1
    if t["type"] == "enum":
        return len(t["symbols"])
    if t["type"] == "record":
        return max([1, *(_width(f["type"]) for f in t["fields"])])
    if t["type"] in ("array", "map"):
        return _width(t["items"] if t["type"] == "array" else t["values"])
    return _width(t["type"]) if isinstance(t["type"], dict | list) else 1


def _sample(t: Any, i: int) -> Any:
    if isinstance(t, list):
        return _sample(t[i % len(t)], i)
    if isinstance(t, dict):
        kind = t["type"]
        if kind == "record":
            return {f["name"]: _sample(f["type"], i) for f in t["fields"]}
        if kind == "enum":
            return t["symbols"][i % len(t["symbols"])]
        if kind == "array":
            return [_sample(t["items"], i), _sample(t["items"], i + 1)]
        if kind == "map":
            return {f"k{i}": _sample(t["values"], i)}
        if kind == "fixed":
            return bytes(t["size"])
        return _sample(kind, i)  # a primitive with a logical type: write the underlying value
    primitives: dict[str, Any] = {"null": None, "boolean": i % 2 == 0, "int": i, "long": i,
                                  "float": i + 0.5, "double": i + 0.5, "string": f"s{i}",
                                  "bytes": f"b{i}".encode()}
    return primitives[t]


# --- naming the field: the classic breaking changes -----------------------------------------


def _type_of(t: Any) -> str:
    if isinstance(t, list):
        return "union"
    return t if isinstance(t, str) else _type_of(t["type"]) if isinstance(t["type"], dict) else t["type"]


def _readable(w: Any, r: Any) -> bool:
    """Whether data of writer type ``w`` resolves against reader type ``r`` (no message)."""
    return not _compare("", w, r)


def _compare(path: str, w: Any, r: Any) -> list[str]:
    """Why reader type ``r`` cannot read data of writer type ``w``, per field (``path``)."""
    wt, rt = _type_of(w), _type_of(r)
    if wt == "union":  # every branch the writer may have used must be readable
        return [p for b in w for p in _compare(path, b, r)]
    if wt == "null" and rt != "null" and not (rt == "union" and "null" in r):
        return [f"field '{path}': null no longer allowed (now {describe_type(r)}), but records "
                f"written before may hold null; keep \"null\" in its type"]
    if rt == "union":
        if any(_readable(w, b) for b in r):
            return []
        return [f"field '{path}': type changed from {describe_type(w)} to {describe_type(r)}, no "
                f"branch of which can read the old values; keep a branch of type {describe_type(w)}"]
    if wt in _NAMED and rt == wt and not _same_name(w, r):
        return [f"field '{path}': type renamed from {w['name']} to {r['name']}; add "
                f"\"aliases\": [\"{w['name']}\"] to the new type or keep its name"]
    if wt == rt == "record":
        return _compare_records(path, w, r)
    if wt == rt == "enum":
        removed = [s for s in w["symbols"] if s not in r["symbols"]]
        if removed and "default" not in r:
            return [f"field '{path}': enum symbol(s) {', '.join(removed)} removed, so old records "
                    f"holding them cannot be read; keep the symbols (or give the enum a \"default\")"]
        return []
    if wt == rt == "array":
        return _compare(f"{path}[]", w["items"], r["items"])
    if wt == rt == "map":
        return _compare(f"{path}{{}}", w["values"], r["values"])
    if wt == rt == "fixed" and w["size"] != r["size"]:
        return [f"field '{path}': fixed size changed from {w['size']} to {r['size']}; keep {w['size']}"]
    if wt == rt or rt in PROMOTIONS.get(wt, ()):
        return []
    return [f"field '{path}': type changed from {describe_type(w)} to {describe_type(r)}, which Avro "
            f"cannot promote; keep {describe_type(w)} (or add a new field and deprecate this one)"]


def _compare_records(path: str, w: dict[str, Any], r: dict[str, Any]) -> list[str]:
    old = {f["name"]: f for f in w["fields"]}
    problems: list[str] = []
    for f in r["fields"]:
        name = f"{path}.{f['name']}" if path else f["name"]
        match = next((old[n] for n in [f["name"], *f.get("aliases", [])] if n in old), None)
        if match is not None:
            problems += _compare(name, match["type"], f["type"])
        elif "default" not in f:
            problems.append(f"field '{name}' added without a default, so records written before "
                            f"have no value for it; add \"default\" (for a new optional field: "
                            f"\"type\": [\"null\", ...], \"default\": null)")
    return problems  # fields only the writer has are skipped by the reader: not a problem


def _same_name(w: dict[str, Any], r: dict[str, Any]) -> bool:
    def short(name: str) -> str:
        return name.rsplit(".", 1)[-1]

    return short(w["name"]) == short(r["name"]) or short(w["name"]) in {short(a) for a in r.get("aliases", [])}


def main(argv: list[str]) -> int:
    """Check every kind in the schema directory given (default: the shipped schemas)."""
    directory = Path(argv[0]) if argv else SCHEMA_DIR
    problems = [p for kind in KINDS for p in check_backward(kind, directory)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems)} backward-compatibility problem(s) in {directory}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
