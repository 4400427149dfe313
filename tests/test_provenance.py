"""Every record says what made it: the code version is derived from the code (a record of other
code is not current, unless certified to compute the same), the manifest names the commit, the
packages and the machine's numerics, and holds no machine's absolute path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metapb2_core import code_equivalence as ce
from metapb2_core import provenance as pv
from metapb2_core.methods import get_method
from metapb2_core.run import method_code_version
from metapb2_core.store import Catalog, Lineage, lineage_rows
from metapb2_core.store.staleness import settings_version, stale_partitions

COMMITTED_STUDY = Path(__file__).resolve().parents[1] / "results" / "classic-short"


def test_the_code_version_counts_code_not_docstrings_comments_or_layout():
    base = 'def f(x):\n    """Doc."""\n    return x + 1\n'
    assert pv.source_syntax(base) == pv.source_syntax(
        'def f(x):  # note\n    """Other."""\n\n    return (x + 1)\n'
    )
    assert pv.source_syntax(base) != pv.source_syntax('def f(x):\n    """Doc."""\n    return x + 2\n')


def test_a_method_version_covers_its_closure_and_not_the_other_methods():
    pb2 = pv.module_closure(get_method("pb2").__module__, leaves=frozenset({pv.METHODS_PACKAGE}))
    assert "metapb2_core.bandit" in pb2 and "metapb2_core.gp.model" in pb2
    assert "metapb2_core.methods.taf" not in pb2
    run = pv.module_closure(pv.RUN_MODULE)
    assert {"metapb2_core.population", "metapb2_core.ppo.trainer", "metapb2_core.envs.pendulum"} <= set(run)
    versions = {m: method_code_version(m) for m in ("pb2", "pb2_star", "taf", "pbt")}
    assert versions["pb2"] == versions["pb2_star"]  # one module, one code
    assert len({versions["pb2"], versions["taf"], versions["pbt"]}) == 3


def test_a_commits_code_version_is_read_from_the_commit():
    """A module's syntax read from HEAD's tree is what the working tree gives wherever the file is
    unchanged since HEAD, and the closure at HEAD names modules of HEAD's tree."""
    head = pv._git("rev-parse", "HEAD")
    if head is None:
        pytest.skip("not a git checkout")
    tree = pv.SourceTree(head)
    closure = pv.module_closure(pv.RUN_MODULE, tree=tree)
    assert "metapb2_core.population" in closure
    unchanged = [m for m in closure if pv._git("diff", "--quiet", "HEAD", "--", tree.module_path(m)) == ""]
    assert unchanged
    for module in unchanged:
        assert pv._parsed(tree, module)[0] == pv._parsed(pv.WORKING_TREE, module)[0], module


def test_a_manifest_names_its_code_packages_and_numerics(monkeypatch):
    monkeypatch.setenv(
        "XLA_FLAGS", "--xla_force_host_platform_device_count=2 --xla_cpu_prefer_vector_width=512"
    )
    block = pv.provenance("abc")
    assert block["code_version"] == "abc" and block["numerics"] == "2 XLA host device(s), 512-bit vectors"
    assert set(block["packages"]) >= {"jax", "numpy", "scipy", "GPy", "ray", "dagster"}
    assert all(block["packages"][p] for p in ("jax", "numpy", "scipy", "GPy", "ray", "dagster"))
    assert len(block["constraints_sha256"]) == 64
    assert set(block["git"]) == {"commit", "dirty"}


def test_sources_keep_no_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "meta").mkdir()
    assert pv.portable_source("/home/x/study/metapb2.duckdb:role = 'meta'") == "metapb2.duckdb:role = 'meta'"
    assert pv.portable_source(str(tmp_path / "meta")) == "meta"
    assert pv.portable_source("/elsewhere/portfolio") == "portfolio"
    assert pv.portable_source(None) is None


def test_a_record_of_other_code_is_stale_unless_certified(tmp_path, monkeypatch):
    cat = Catalog(tmp_path / "c.duckdb")
    made = settings_version("old1", "short", True)
    cat.write([lineage_rows(Lineage("eval", "0|a", "run", made), [])])
    now = settings_version("new1", "short", True)
    monkeypatch.setattr(ce, "LEDGER", tmp_path / "ledger.json")
    assert stale_partitions(cat, "eval", now, []) == ["0|a"]
    link = ce.Link("evaluation_pbt", "old1", "new1", "c0", "c1", 3, "ref", "box", "today")
    ce.write_links([link])
    assert ce.equivalent("new1") == {"old1", "new1"}
    assert stale_partitions(cat, "eval", now, []) == []
    # the settings still count: a record of certified code at another budget is stale
    assert stale_partitions(cat, "eval", settings_version("new1", "demo", True), []) == ["0|a"]
    ce.write_links([link])  # once only
    assert len(ce.read_links()) == 1


@pytest.mark.skipif(not (COMMITTED_STUDY / "runs").is_dir(), reason="no committed study")
def test_every_committed_manifest_names_what_made_it_and_no_machine_path():
    manifests = sorted((COMMITTED_STUDY / "runs").glob("*.json"))
    assert manifests
    for path in manifests:
        text = path.read_text()
        m = json.loads(text)
        block = m.get("provenance")
        assert block, path.name
        assert block["git"]["commit"] and len(block["git"]["commit"]) == 40, path.name
        assert block["code_version"] == m["code_version"], path.name
        assert "numerics" in block, path.name
        for key in ("meta_source", "portfolio_source"):
            value = m.get(key) or ""
            assert not value.startswith("/") and "/work/" not in value and "/tmp/" not in value, (
                path.name,
                value,
            )
