"""End to end on smoke budgets: pb2 runs → meta-data → each meta method on another task; and the
three-step portfolio → PB2* warm. Every run records where its knowledge came from."""

import json

import pandas as pd
import pytest
from conftest import META_SOURCES as SOURCES
from conftest import META_TARGET as TARGET

from metapb2_core.budgets import get_budget
from metapb2_core.portfolio import build_portfolios
from metapb2_core.run import RunRequest, execute_run
from metapb2_core.space import SEARCH_SPACE
from metapb2_core.store import read_record


@pytest.mark.parametrize("method", ["metaprior", "multitask", "taf"])
def test_meta_methods_run_with_recorded_lineage(meta_dir, method):
    record = execute_run(RunRequest(TARGET, method, 1, "smoke", meta=str(meta_dir)))
    assert set(record.meta["meta_tasks"]) == set(SOURCES)  # leave-one-task-out: the target is not a source
    assert record.meta["meta_tasks"]["cart_pole-earth"] == ["pb2-cart_pole-earth-smoke-s0"]
    diags = [json.loads(d) for d in record.perturbations["diagnostics"]]
    assert len(diags) == 2  # smoke: 3 intervals, 2 perturbation rounds, one exploit each
    gp = [d for d in diags if d["mode"] == "gp_ucb"]
    assert gp, diags
    for d in gp:
        assert set(d["meta_weights"]) <= set(SOURCES)
        assert d["meta_weights"] or d["meta_fallback"]
        for task, runs in d["meta_runs"].items():
            assert runs == [f"pb2-{task}-smoke-s0"]


def test_meta_method_refuses_to_run_without_meta_data():
    with pytest.raises(Exception, match="needs meta-data: pass --meta"):
        execute_run(RunRequest(TARGET, "taf", 0, "smoke"))


def test_portfolio_pipeline_then_warm_start(tmp_path):
    paths = build_portfolios(
        ["mountain_car-earth", "acrobot-earth", "cart_pole-earth"],
        [TARGET],
        get_budget("smoke"),
        SEARCH_SPACE,
        tmp_path,
        n_configs=4,
        intervals=2,
        n_best=3,
    )
    entries = json.loads(paths[TARGET].read_text())
    assert len(entries) == 5  # 4 members + 1 first-round exploit
    assert all(not e["source_task"].startswith("cart_pole") for e in entries)  # target env left out
    record = execute_run(RunRequest(TARGET, "pb2_star_warm", 0, "smoke", portfolio=str(tmp_path)))
    first = record.points[record.points["training_iteration"] == 1].sort_values("member")
    assert [round(v, 12) for v in first["lr"]] == [round(e["lr"], 12) for e in entries[:4]]
    assert record.meta["portfolio"][4]["source_task"] == entries[4]["source_task"]


def test_meta_data_from_a_catalog_query_equal_the_meta_directory(tmp_path, runs_dir, meta_dir):
    import pandas as pd

    from metapb2_core.errors import MetaPB2Error
    from metapb2_core.meta.sources import load_meta
    from metapb2_core.meta.tables import load_meta_tables
    from metapb2_core.store import Catalog, Lineage, run_rows

    catalog = Catalog(tmp_path / "study.duckdb")

    def lin(task: str) -> Lineage:  # one partition per run, as meta_runs records them
        return Lineage("classic/meta_runs", f"0|{task}", "dagster-run", "v1")

    for task in SOURCES:
        rec = read_record(runs_dir, f"pb2-{task}-smoke-s0")
        catalog.write(run_rows(rec.points, rec.perturbations, rec.meta, "meta", lin(task)))
    # the target's own pb2 run is in the catalog too, and must never be read
    own = execute_run(RunRequest(TARGET, "pb2", 0, "smoke"))
    catalog.write(
        run_rows(own.points, own.perturbations, own.meta, "meta", lin(TARGET), status="passed")
    )  # readable, yet never read

    from metapb2_core.meta.tables import build_meta_dir

    # one builder: the directory and the catalog give equal tables in both modes, and the modes differ
    by_values_dir = tmp_path / "meta_by_values"
    build_meta_dir(runs_dir, by_values_dir, SEARCH_SPACE, by_values=True)
    for by_values, folder in ((False, meta_dir), (True, by_values_dir)):
        expected = load_meta_tables(folder, TARGET, by_values=by_values)
        for source in (f"{catalog.path}", f"{catalog.path}:role = 'meta' AND budget = 'smoke'"):
            got = load_meta(source, TARGET, by_values=by_values)
            assert list(got) == list(expected) == sorted(SOURCES)
            for task in expected:
                pd.testing.assert_frame_equal(got[task], expected[task], check_dtype=False)
        with pytest.raises(
            MetaPB2Error, match=f"groups transitions by {'values' if by_values else 'segment'}"
        ):
            load_meta(folder, TARGET, by_values=not by_values)  # a directory of the other mode is refused
    only = load_meta(f"{catalog.path}:task LIKE 'cart_pole%'", TARGET)
    assert list(only) == ["cart_pole-earth", "cart_pole-venus"]
    with pytest.raises(MetaPB2Error, match="no 'pb2' runs with transitions.*where budget = 'paper'"):
        load_meta(f"{catalog.path}:budget = 'paper'", TARGET)
    with pytest.raises(MetaPB2Error, match="meta-data query on .* failed"):
        load_meta(f"{catalog.path}:no_such_column = 1", TARGET)
    with pytest.raises(MetaPB2Error, match="does not exist"):
        load_meta(tmp_path / "missing.duckdb", TARGET)

    record = execute_run(RunRequest(TARGET, "taf", 1, "smoke", meta=f"{catalog.path}:role = 'meta'"))
    assert set(record.meta["meta_tasks"]) == set(SOURCES)


def test_the_faithful_grouping_changes_the_committed_studys_meta_data():
    """Q39 is not academic: of the committed study's 60 faithful PB2 meta runs, acrobot-earth
    seed 0 gives 56 transitions by values and 55 by segment (8 of the 60 differ so)."""
    from pathlib import Path

    from metapb2_core.meta.tables import meta_table_from_record

    runs = Path(__file__).resolve().parents[1] / "results" / "classic-short" / "runs"
    record = read_record(runs, "pb2-acrobot-earth-short-s0-faithful-meta")
    tables = [
        meta_table_from_record(record.points, record.perturbations, record.meta, SEARCH_SPACE, by_values)
        for by_values in (False, True)
    ]
    assert [len(t) for t in tables] == [55, 56]


def test_a_damaged_or_unlisted_meta_table_is_refused(tmp_path, meta_dir):
    import shutil

    from metapb2_core.errors import MetaPB2Error
    from metapb2_core.meta.tables import load_meta_tables

    folder = tmp_path / "meta"
    shutil.copytree(meta_dir, folder)
    table = sorted(folder.glob("*/*.parquet"))[0]
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped byte: pandas may still read it, with another r_before
    table.write_bytes(bytes(data))
    with pytest.raises(MetaPB2Error, match=f"{table.name} does not match its manifest"):
        load_meta_tables(folder, TARGET)
    with pytest.raises(MetaPB2Error, match="does not match its manifest"):
        execute_run(RunRequest(TARGET, "taf", 0, "smoke", meta=str(folder)))
    table.with_suffix(".json").unlink()
    with pytest.raises(MetaPB2Error, match=f"{table.name} has no manifest"):
        load_meta_tables(folder, TARGET)


@pytest.mark.parametrize("budget", ["smoke", pytest.param("short", marks=pytest.mark.slow)])
@pytest.mark.parametrize(
    "method, faithful",
    [("pb2", False), ("pb2", True), ("pb2_star", False), ("pb2_star", True), ("taf", False)],
)
def test_the_table_rebuilt_from_a_record_equals_the_methods_live_table(
    method, faithful, budget, meta_dir, monkeypatch
):
    """One builder (bandit.data_table) serves both: the table a PB2-family method held at its last
    suggestion of a real run equals the one meta-data are made from, rebuilt from the record
    (smoke: 2 rounds; short, with -m slow: 14 rounds, 246 s for the five)."""
    from metapb2_core.meta.tables import data_table_from_record
    from metapb2_core.run import ResolvedRun

    seen = {}
    build = ResolvedRun.build_method

    def capturing(self):
        m = build(self)
        ask = m.suggest

        def suggest(ctx):
            seen["table"], seen["method"] = ctx.table, m
            return ask(ctx)

        m.suggest = suggest
        return m

    monkeypatch.setattr(ResolvedRun, "build_method", capturing)
    rec = execute_run(RunRequest(TARGET, method, 3, budget, faithful, meta=str(meta_dir)))
    last = int(rec.perturbations["timesteps"].max())
    live = seen["method"].data_table(seen["table"])
    rebuilt = data_table_from_record(
        rec.points[rec.points["timesteps"] <= last], rec.perturbations, SEARCH_SPACE
    )
    assert len(rebuilt) == len(seen["table"]) + int(rec.perturbations["explore_time"].notna().sum())
    pd.testing.assert_frame_equal(rebuilt, live, check_dtype=False)
