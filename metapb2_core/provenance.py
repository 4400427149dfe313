"""What made a record: the code, the packages it ran on, and the compiled program's numerics.

- ``code_digest(module)``: a digest of the source that computes a result, derived from the code
  itself: every ``metapb2_core`` module the given one imports, directly or not, read as syntax
  trees without docstrings (so comments, docstrings and formatting do not count, anything that can
  change a number does). A run's digest covers the run executor and its own method's module, not
  the other methods' modules. Staleness compares these digests: a record made by other code is
  not current.
- ``git_state()``: the commit of the checkout the package was imported from and whether its code
  (``metapb2_core``, ``metapb2_assets``, ``pyproject.toml``, ``constraints.txt``) differed from it;
  outside a git checkout (an installed image) ``METAPB2_GIT_COMMIT`` names the commit.
- ``provenance()``: both, the versions of the packages that compute results, the SHA-256 of
  ``constraints.txt`` and the XLA flags in force. The flags matter: on a CPU with AVX-512 the
  platform compiles XLA's loops for 512-bit vectors (``xla_setup``), which rounds float32 sums in
  another order, so the same code and request give bit-identical records only on machines of one
  ``numerics`` class.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from metapb2_core.errors import MetaPB2Error

ROOT_PACKAGE = "metapb2_core"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO = PACKAGE_DIR.parent
CODE_PATHS = ("metapb2_core", "metapb2_assets", "pyproject.toml", "constraints.txt")
PACKAGES = ("jax", "jaxlib", "numpy", "scipy", "GPy", "ray", "dagster", "pandas", "duckdb", "optax")
METHODS_PACKAGE = f"{ROOT_PACKAGE}.methods"
RUN_MODULE = f"{ROOT_PACKAGE}.run"
DIGEST_LENGTH = 16


@dataclass(frozen=True)
class SourceTree:
    """Where module sources are read: the package on disk (``commit`` None) or a commit of the
    repository (``git show``), so the code version of a record made long ago can be derived from
    the code of its commit."""

    commit: str | None = None

    @functools.cached_property
    def _files(self) -> frozenset[str]:
        if self.commit is None:
            return frozenset(p.relative_to(REPO).as_posix() for p in PACKAGE_DIR.rglob("*.py"))
        listed = _git("ls-tree", "-r", "--name-only", self.commit, "--", ROOT_PACKAGE)
        if listed is None:
            raise MetaPB2Error(f"commit {self.commit} is not in the repository at {REPO}")
        return frozenset(listed.splitlines())

    def module_path(self, name: str) -> str | None:
        """The source file of a ``metapb2_core`` module in this tree (nothing is imported)."""
        parts = name.split(".")
        if parts[0] != ROOT_PACKAGE:
            return None
        base = "/".join(parts)
        return next((p for p in (f"{base}/__init__.py", f"{base}.py") if p in self._files), None)

    def read(self, path: str) -> str:
        if self.commit is None:
            return (REPO / path).read_text()
        text = _git("show", f"{self.commit}:{path}", strip=False)
        assert text is not None, path
        return text


WORKING_TREE = SourceTree()


def _imports(tree_: SourceTree, name: str, tree: ast.AST, is_package: bool) -> set[str]:
    """The ``metapb2_core`` modules a module's syntax tree imports (its parent packages included)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    mine = {m for m in found if m == ROOT_PACKAGE or m.startswith(ROOT_PACKAGE + ".")}
    with_parents = set()
    for m in mine:
        parts = m.split(".")
        with_parents |= {".".join(parts[: i + 1]) for i in range(len(parts))}
    return {m for m in with_parents if tree_.module_path(m) is not None}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_syntax(text: str) -> str:
    """What of a module's source counts for its code version: its syntax tree without docstrings
    (comments, blank lines and formatting are not in the tree)."""
    return ast.dump(_strip_docstrings(ast.parse(text)), include_attributes=False)


@functools.cache
def _parsed(tree_: SourceTree, name: str) -> tuple[str, frozenset[str]]:
    """(the module's syntax without docstrings, dumped; the metapb2_core modules it imports)."""
    path = tree_.module_path(name)
    assert path is not None, name
    text = tree_.read(path)
    deps = _imports(tree_, name, ast.parse(text, filename=path), path.endswith("__init__.py"))
    return source_syntax(text), frozenset(deps - {name})


def module_closure(
    *roots: str, leaves: frozenset[str] = frozenset(), tree: SourceTree = WORKING_TREE
) -> list[str]:
    """Every ``metapb2_core`` module the roots import, directly or not, the roots included; the
    imports of ``leaves`` are not followed (they count with their own source only)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in leaves:
            todo.extend(_parsed(tree, name)[1])
    return sorted(seen)


def _method_modules(tree: SourceTree) -> set[str]:
    prefix = METHODS_PACKAGE.replace(".", "/") + "/"
    return {
        f"{METHODS_PACKAGE}.{Path(p).stem}"
        for p in tree._files
        if p.startswith(prefix) and p.count("/") == 2 and not p.endswith("__init__.py")
    }


def digest_of(modules: list[str], tree: SourceTree = WORKING_TREE) -> str:
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode() + b"\0" + _parsed(tree, name)[0].encode() + b"\0")
    return h.hexdigest()[:DIGEST_LENGTH]


@functools.cache
def code_digest(*roots: str, tree: SourceTree = WORKING_TREE) -> str:
    """The digest of the source that computes what ``roots`` (module names) compute."""
    return digest_of(module_closure(*roots, tree=tree), tree)


@functools.cache
def run_code_digest(method_module: str, tree: SourceTree = WORKING_TREE) -> str:
    """The digest of the code a run of one method executes: the run executor's closure, without the
    modules of the registry's other methods, plus the method's own closure."""
    modules = set(module_closure(RUN_MODULE, tree=tree)) - _method_modules(tree)
    own = module_closure(method_module, leaves=frozenset({METHODS_PACKAGE}), tree=tree)
    return digest_of(sorted(modules | set(own)), tree)


def _git(*args: str, strip: bool = True) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() if strip else done.stdout


@functools.cache
def git_state() -> dict[str, Any]:
    """{"commit", "dirty"}: dirty is True when the code differs from the commit, None when unknown."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": os.environ.get("METAPB2_GIT_COMMIT") or None, "dirty": None}
    changes = _git("status", "--porcelain", "--", *CODE_PATHS)
    return {"commit": commit, "dirty": None if changes is None else bool(changes)}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def package_versions() -> dict[str, str | None]:
    return {p: _version(p) for p in PACKAGES}


@functools.cache
def constraints_digest() -> str | None:
    path = REPO / "constraints.txt"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def numerics(xla_flags: str | None = None) -> str:
    """The class of machines on which one request gives bit-identical records, in words: the XLA
    flags that change how a program is compiled (host devices, vector width)."""
    flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    values = dict(f.lstrip("-").split("=", 1) for f in flags.split() if "=" in f)
    devices = values.get("xla_force_host_platform_device_count", "1")
    width = values.get("xla_cpu_prefer_vector_width")
    return f"{devices} XLA host device(s), {f'{width}-bit' if width else 'default'} vectors"


def provenance(code_version: str) -> dict[str, Any]:
    """The ``provenance`` block of a manifest (``code_version``: the digest staleness compares)."""
    return {
        "code_version": code_version,
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "constraints_sha256": constraints_digest(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "numerics": numerics(),
    }


def portable_source(source: str | None) -> str | None:
    """A meta-data or portfolio source as a record keeps it: no machine's absolute path. A catalog
    keeps its file name and SQL condition (a study's catalog lies in its root, so the name is
    relative to the study root); a folder or file inside the working directory stays relative to
    it, any other keeps its last part. The record's ``variant`` holds the content digest of what
    was read and ``meta_tasks`` the run ids it used."""
    if not source:
        return source
    if ".duckdb" in source:
        path, _, where = source.partition(".duckdb")
        return Path(path + ".duckdb").name + where
    p = Path(source)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            p = Path(p.name)
    return p.as_posix()


def record_provenance(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a record's manifest says made it: commit (None: not recorded), dirty (None: unknown),
    whether the commit was inferred afterwards from the repository's history, the code version and
    the numerics class ("not recorded" for records older than the field)."""
    block = manifest.get("provenance") or {}
    git = block.get("git") or {}
    machine = manifest.get("machine") or {}
    numerics_class = block.get("numerics")
    if numerics_class is None and machine:  # older records: the flags followed the CPU (xla_setup)
        width = "512-bit" if machine.get("avx512") else "default"
        numerics_class = f"{machine.get('cores')} XLA host device(s), {width} vectors (inferred from the CPU)"
    return {
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "inferred": bool(block.get("inferred", False)),
        "code_version": block.get("code_version") or manifest.get("code_version"),
        "numerics": numerics_class or "not recorded",
    }
