"""Package layering: which first-party packages each package may import.

Every ``.py`` file of every package is parsed with ``ast`` (nothing is imported), and every
import in it is checked: module level and inside functions or ``if TYPE_CHECKING:`` blocks,
``import x`` and ``from x import y``, relative imports (resolved against the file's package)
and ``importlib.import_module`` / ``__import__`` calls whose module name is a literal (or an
f-string with a literal prefix, like ``f"jobs.{name}"``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layer -> the first-party layers its modules may import (itself included). Why:
#   contracts -- the door: the lake, the jobs and the API all validate against it, so it
#                stands on its own (plus the BASE modules below).
#   blink     -- the shared core (config, model, pipeline, store...): used by batch and by
#                serving, so it knows neither of its users; it does not need the contract.
#   jobs      -- batch Spark jobs: core + contract; never the serving process.
#   serving   -- the Flask process: core + contract; importing jobs would pull Spark (and
#                the DAG would pull Airflow) into every gunicorn worker.
#   dags      -- orchestration only: calls into jobs (and may use the core); heavy imports
#                stay inside tasks so DAG parsing is cheap.
#   tools     -- CLI, demo, bench, importers, dev redis-server: the top; it may import
#                anything, and nothing but tools (and tests) may import it.
ALLOWED: dict[str, frozenset[str]] = {
    "contracts": frozenset({"contracts"}),
    "blink": frozenset({"blink"}),
    "jobs": frozenset({"jobs", "blink", "contracts"}),
    "serving": frozenset({"serving", "blink", "contracts"}),
    "dags": frozenset({"dags", "jobs", "blink"}),
    "tools": frozenset({"tools", "jobs", "serving", "dags", "blink", "contracts"}),
}
# The core's leaf modules, importable from every layer (the contract too): the one error
# hierarchy and the atomic file writes. They import nothing first-party (checked below), so
# contracts -> blink.errors closes no cycle.
BASE = frozenset({"blink.errors", "blink.files"})
# First-party top-level names: an import of one of these not in ALLOWED[layer] is forbidden
# (no package may import the test suite either).
FIRST_PARTY = frozenset(ALLOWED) | {"tests"}
BEYOND_TOP = "<relative import beyond the top-level package>"

def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _literal_prefix(node: ast.expr) -> str | None:
    """The module name given to import_module / __import__, or the literal start of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def imports_of(source: str, module: str, is_package: bool = False, filename: str = "<string>") -> list[
        tuple[int, str, str]]:
    """(line, top-level package, imported name) for every import in ``source``.

    ``module`` is the dotted name of the module the source belongs to (for relative imports).
    """
    tree = ast.parse(source, filename=filename)
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0], alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                name = node.module or ""
                found.append((node.lineno, name.split(".")[0], name))
            else:
                dots = "." * node.level
                if node.level - 1 >= len(package):
                    found.append((node.lineno, BEYOND_TOP, f"{dots}{node.module or ''}"))
                else:
                    base = package[:len(package) - (node.level - 1)]
                    name = ".".join([*base, *([node.module] if node.module else [])])
                    found.append((node.lineno, base[0], f"{dots}{node.module or ''} (= {name})"))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__"):
                literal = _literal_prefix(node.args[0])
                if literal:
                    found.append((node.lineno, literal.split(".")[0], literal))
    return sorted(found)


def violations(root: Path, layer: str) -> list[tuple[str, int, str, str]]:
    """(file, line, forbidden layer, import) for each forbidden import in ``root/layer``."""
    allowed = ALLOWED[layer]
    bad = []
    for path in sorted((root / layer).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(root).as_posix()
        for line, top, name in imports_of(path.read_text(), module_name(path, root),
                                          is_package=path.name == "__init__.py", filename=rel):
            if top == BEYOND_TOP or (top in FIRST_PARTY and top not in allowed and name not in BASE):
                bad.append((rel, line, top, name))
    return bad


def report(layer: str, bad: list[tuple[str, int, str, str]]) -> str:
    lines = [f"{f}:{line}: {layer} must not import {top!r} ({name})" for f, line, top, name in bad]
    return (f"{layer} may import only {sorted(ALLOWED[layer])} and {sorted(BASE)} (see ALLOWED in "
            "tests/test_layering.py):\n  "
            + "\n  ".join(lines))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    bad = violations(ROOT, layer)
    assert not bad, report(layer, bad)


def test_base_modules_import_nothing_first_party() -> None:
    """What every layer may import must itself stand alone, or BASE would smuggle a cycle in."""
    for name in sorted(BASE):
        path = ROOT / (name.replace(".", "/") + ".py")
        first_party = [(line, full) for line, top, full in imports_of(path.read_text(), name)
                       if top in FIRST_PARTY]
        assert not first_party, f"{name} is a BASE module but imports {first_party}"


def test_every_package_has_a_rule() -> None:
    """A new top-level package must be given a layer, or its imports would go unchecked."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(ALLOWED), f"packages without a rule: {sorted(packages - set(ALLOWED))}; " \
                                     f"rules for missing packages: {sorted(set(ALLOWED) - packages)}"


def test_imports_of_sees_every_kind_of_import() -> None:
    source = (
        "import os, serving.app\n"
        "from blink import config\n"
        "from . import sibling\n"
        "from ..core import thing\n"
        "def f():\n"
        "    from tools.cli import main\n"
        "    import importlib\n"
        "    importlib.import_module(f'jobs.{f}')\n"
        "    __import__('dags.recs_hourly')\n"
        "class C:\n"
        "    def g(self):\n"
        "        import tests.conftest\n"
    )
    tops = [(line, top) for line, top, _ in imports_of(source, "blink.sub.mod")]
    assert tops == [(1, "os"), (1, "serving"), (2, "blink"), (3, "blink"), (4, "blink"), (6, "tools"),
                    (7, "importlib"), (8, "jobs"), (9, "dags"), (12, "tests")]
    assert imports_of("from . import x\n", "blink", is_package=True)[0][1] == "blink"
    assert imports_of("from .. import x\n", "blink.mod")[0][1] == BEYOND_TOP


def test_checker_reports_a_violation_with_file_and_line(tmp_path: Path) -> None:
    """The rule checker can fail: a blink module importing serving and tools inside a function."""
    (tmp_path / "blink").mkdir()
    (tmp_path / "blink" / "__init__.py").write_text("")
    (tmp_path / "blink" / "ok.py").write_text("import numpy\nfrom blink import errors\nfrom . import ok\n")
    (tmp_path / "blink" / "bad.py").write_text(
        "from blink import ok\n\n\ndef handler():\n    from serving.router import Router\n    import tools.cli\n")
    bad = violations(tmp_path, "blink")
    assert bad == [("blink/bad.py", 5, "serving", "serving.router"), ("blink/bad.py", 6, "tools", "tools.cli")]
    message = report("blink", bad)
    assert "blink/bad.py:5: blink must not import 'serving' (serving.router)" in message
    assert "blink/bad.py:6: blink must not import 'tools' (tools.cli)" in message
    with pytest.raises(AssertionError, match=r"blink/bad\.py:5"):
        assert not bad, message


def test_checker_applies_each_layers_own_rule(tmp_path: Path) -> None:
    """serving may not import jobs, jobs may not import serving, contracts may import only the
    core's BASE modules, and no one but tools may import tools."""
    sources = {"serving": "import jobs.stream\n", "jobs": "from serving import app\n",
               "contracts": "from blink.errors import BadRequest\nfrom blink.model import Model\n",
               "dags": "import tools.cli\n",
               "tools": "import jobs, serving, dags, blink, contracts\n"}
    for layer, source in sources.items():
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "m.py").write_text(source)
    found = {layer: [v[2] for v in violations(tmp_path, layer)] for layer in sources}
    assert found == {"serving": ["jobs"], "jobs": ["serving"], "contracts": ["blink"], "dags": ["tools"],
                     "tools": []}
