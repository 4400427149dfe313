"""The architecture's rules (shared/design/architecture.md), read from the source: imports run one
way with no cycle anywhere (module level or inside functions, package ``__init__`` files included),
nothing under metapb2_core imports dagster, and a function-local import of our own modules exists
only where a command imports lazily to start fast."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("metapb2_core", "metapb2_assets")
# Modules whose functions may import our own modules lazily: command entry points, so that
# `metapb2 list` or a usage error answers without loading JAX, GPy and Dagster first.
LAZY_IMPORTS_ALLOWED = {"metapb2_core.cli", "metapb2_assets.study", "metapb2_assets.resources"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


MODULES = modules()


def _resolve(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> list[tuple[str, bool, int]]:
    """(imported name, inside a function or class body, line) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_pkg else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found += [(n, node.col_offset > 0, node.lineno) for n in names]
    return found


def graph() -> dict[str, set[str]]:
    """Edges between our modules. Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and
    ``a.b``, so the edge goes to each of those packages too (a cycle through a package's
    ``__init__`` fails at import time just like a direct one)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for name, _, _ in imports_of(m):
            target = _resolve(name)
            while target:
                if target != m and not m.startswith(target + "."):
                    edges[m].add(target)
                target = _resolve(target.rpartition(".")[0]) if "." in target else None
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_either_package():
    assert cycles(graph()) == []


def test_the_cycle_check_finds_a_cycle_through_a_package_init():
    # the check itself must be able to fail: a → b.c, whose package b imports a
    edges = {"a": {"b.c", "b"}, "b": {"a"}, "b.c": {"b"}}
    assert cycles(edges) == [["a", "b", "b.c"]]


def core_imports_of(top: str) -> list[str]:
    """Every import under metapb2_core of package ``top`` or one of its subpackages."""
    return [
        f"{m}:{line} imports {name}"
        for m in MODULES
        if m.startswith("metapb2_core")
        for name, _, line in imports_of(m)
        if name.split(".")[0] == top or name.split(".")[0].startswith(top + "_")
    ]


def test_metapb2_core_never_imports_dagster():
    assert core_imports_of("dagster") == []  # dagster, dagster_k8s, dagster_webserver, ...


def test_core_never_imports_the_asset_layer():
    assert core_imports_of("metapb2_assets") == []


def test_function_local_imports_of_our_modules_only_in_command_entry_points():
    nested = [
        f"{m}:{line} imports {name}"
        for m in MODULES
        if m not in LAZY_IMPORTS_ALLOWED
        for name, inside, line in imports_of(m)
        if inside and _resolve(name)
    ]
    assert nested == []


def test_one_run_id_function():
    """Run ids are formatted in run_ids.py alone: no other module writes the ``-{budget}-s{seed}``
    pattern (a second copy would drift, and a run id names exactly one request)."""
    pattern = re.compile(r"\{[^}]*budget[^}]*\}-s\{")
    found = [
        f"{m}:{i}"
        for m, path in MODULES.items()
        if m != "metapb2_core.run_ids"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
    assert pattern.search('f"{kind}-{task}-{budget}-s{seed}"')  # the check can fail


SQL_OWNERS = {"metapb2_core.store.catalog", "metapb2_core.store.duckdb_file"}
SQL = re.compile(
    r"\b(SELECT|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\S+\s+SET|CREATE\s+TABLE|ALTER\s+TABLE|JOIN)\b"
)


def sql_strings(module: str) -> list[str]:
    """The string literals of ``module`` (f-string parts included) that read as SQL."""
    tree = ast.parse(MODULES[module].read_text())
    return [
        f"{module}:{node.lineno} {node.value[:60]!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)
    ]


def test_sql_only_in_the_catalog_module():
    """The catalog's schema, readers and writers are store/catalog.py's (its engine, duckdb_file.py,
    holds the generic statements): no other module writes SQL, and only the engine connects."""
    found = [s for m in MODULES if m not in SQL_OWNERS for s in sql_strings(m)]
    assert found == []
    connects = [m for m, path in MODULES.items() if "duckdb.connect" in path.read_text()]
    assert connects == ["metapb2_core.store.duckdb_file"]
    assert sql_strings("metapb2_core.store.catalog")  # the check can fail
