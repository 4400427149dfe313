"""The main command's study (metapb2-study's defaults) lets every method do its real work: with the
demo budget, MultiTaskPB2 fits its multi-task model in every demo run (at smoke it never could:
its window needs two distinct times, i.e. a third perturbation round)."""

from __future__ import annotations

import json

import pytest

from metapb2_core.evaluation.fallbacks import summarise
from metapb2_core.run import RunRequest, check_run, execute_run
from metapb2_core.store import Catalog, Lineage
from metapb2_core.study import META_METHOD, META_TAG, StudyPaths, publish_run, record_run, run_request
from metapb2_core.study_spec import DEMO, load_study

DEFAULT_TASKS = list(DEMO.tasks)


@pytest.fixture(scope="module")
def demo_paths(tmp_path_factory):
    """A study catalog holding the demo's meta runs (PB2 on the demo tasks at the demo budget)."""
    root = tmp_path_factory.mktemp("demo")
    paths = StudyPaths(root, root / "metapb2.duckdb")
    budget = DEMO.budget
    for task in DEFAULT_TASKS:
        run = RunRequest(task, META_METHOD, 0, budget, tag=META_TAG).resolve()
        record = execute_run(run)
        record.meta["role"] = "meta"
        check_run(record, run)
        lin = Lineage("classic/meta_runs", f"0|{task}", "test", "v")
        record_run(record, "meta", lin, Catalog(paths.database))
        publish_run(record, lin, Catalog(paths.database))
    return paths, budget


@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_the_demos_multitask_runs_fit_the_multi_task_model(demo_paths, task):
    paths, budget = demo_paths
    assert budget == "demo"
    record = execute_run(run_request(task, "multitask", 0, budget, False, paths))
    diags = [json.loads(d) for d in record.perturbations["diagnostics"]]
    fitted = [d for d in diags if d.get("surrogate") == "lcm"]
    assert fitted, [d.get("meta_fallback") for d in diags]  # the LCM was fitted in this run
    assert all(d["meta_fallback"] is None and d["fallback"] is None for d in fitted)
    assert all(len(d["meta_weights"]) >= 1 for d in fitted)
    n, fell_back, reasons = summarise(diags)
    assert n == 3 and fell_back == 1, reasons  # round 2 (one time in the window) is PB2*'s, as designed
    assert set(reasons) == {"meta: all window rows share one time"}


def test_the_committed_study_of_the_embedded_default_is_the_demo():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "dagster_home"
    assert load_study(root / "study.yaml") == DEMO
