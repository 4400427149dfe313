"""Only data that passed its checks flows downstream, through the real platform (Dagster instance,
local Ray, DuckDB catalog): a meta run that fails its checks is never read by a later meta method,
nor counted as a newer input by the staleness schedule; an all-NaN evaluation is listed as failed by
method_ranks and the report instead of crashing them; a step killed after its catalog write (before
its materialisation was recorded) is never ranked; the report on a catalog ranks evaluations only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from metapb2_assets.definitions import build_definitions
from metapb2_assets.family import partition_key
from metapb2_assets.resources import RayResource, StudyStore
from metapb2_core.cli import main
from metapb2_core.store import read_record

DIVERGE = {"bounds": {"lr": [0.5, 0.9]}}  # pendulum's returns turn NaN within the first interval


@pytest.fixture(scope="module")
def platform(tmp_path_factory, ray_head):
    home = tmp_path_factory.mktemp("gating")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    store = StudyStore(root=str(home))
    defs = build_definitions(RayResource(address=ray_head), store)
    instance = dg.DagsterInstance.from_config(str(home))

    def materialise(asset: str, task: str, config: dict | None = None) -> dg.ExecuteInProcessResult:
        run_config = {"ops": {f"classic__{asset}": {"config": config}}} if config else None
        return dg.materialize(
            list(defs.assets),
            instance=instance,
            partition_key=partition_key(task, 0) if task else None,
            resources=defs.resources,
            selection=[dg.AssetKey(["classic", asset])],
            run_config=run_config,
            raise_on_error=False,
        )

    catalog = store.paths().catalog()
    assert materialise("meta_runs", "cart_pole-earth").success
    assert materialise("evaluation_taf", "acrobot-earth").success
    assert not materialise("meta_runs", "pendulum-earth", DIVERGE).success  # its blocking check fails
    assert materialise("evaluation_pbt", "acrobot-earth").success
    assert not materialise("evaluation_pbt", "pendulum-earth", DIVERGE).success
    return {"home": home, "defs": defs, "instance": instance, "catalog": catalog, "materialise": materialise}


def ranked_methods(report_dir) -> list[str]:
    return sorted(line.split(",")[0] for line in (report_dir / "rank_table.csv").read_text().splitlines()[1:])


def runs_table(platform):
    return platform["catalog"].query(
        "SELECT run_id, task, method, role, status, failed_checks FROM runs ORDER BY run_id"
    )


def test_a_failed_run_is_kept_on_disk_and_in_the_catalog_marked_failed(platform):
    runs = runs_table(platform)
    failed = runs[runs["status"] == "failed"]
    assert sorted(failed["task"]) == ["pendulum-earth", "pendulum-earth"]
    assert set(failed["failed_checks"]) == {"finite_returns"}
    assert set(runs.loc[runs["status"] != "failed", "status"]) == {"passed"}
    for rid in failed["run_id"]:
        meta = read_record(platform["home"] / "runs", rid).meta
        assert meta["status"] == "failed" and meta["failed_checks"] == ["finite_returns"]
    meta_tables = sorted(p.parent.name for p in (platform["home"] / "meta").rglob("*.parquet"))
    assert meta_tables == ["cart_pole-earth"]  # the failed meta run was never exported as meta-data


def test_a_meta_run_that_failed_its_checks_is_not_read_by_a_later_meta_method_run(platform):
    result = platform["materialise"]("evaluation_taf", "mountain_car-earth")
    assert result.success
    runs = runs_table(platform)
    (rid,) = runs.loc[(runs["method"] == "taf") & (runs["task"] == "mountain_car-earth"), "run_id"]
    meta = read_record(platform["home"] / "runs", rid).meta
    assert set(meta["meta_tasks"]) == {"cart_pole-earth"}  # pendulum's failed meta run is not there
    diags = [json.loads(d) for d in read_record(platform["home"] / "runs", rid).perturbations["diagnostics"]]
    assert all(set(d.get("meta_runs", {})) <= {"cart_pole-earth"} for d in diags)


def test_a_failed_meta_run_makes_no_evaluation_stale(platform):
    defs, instance = platform["defs"], platform["instance"]
    schedule = defs.get_schedule_def("classic_rerun_stale_evaluations")
    ctx = dg.build_schedule_context(
        instance=instance,
        resources={"store": StudyStore(root=str(platform["home"]))},
        repository_def=defs.get_repository_def(),
    )
    # the pendulum meta run was materialised after the acrobot TAF evaluation, but it failed
    requests = schedule.evaluate_tick(ctx).run_requests or []
    stale = {(r.asset_selection[0].path[-1], r.partition_key) for r in requests}
    assert ("evaluation_taf", partition_key("acrobot-earth", 0)) not in stale


def test_method_ranks_and_the_report_list_an_all_nan_run_as_failed_and_rank_the_rest(platform, capsys):
    result = platform["materialise"]("method_ranks", None, {"budget": "smoke"})
    assert result.success
    md = (
        platform["instance"]
        .get_latest_materialization_event(dg.AssetKey(["classic", "method_ranks"]))
        .asset_materialization.metadata
    )
    assert md["failed_runs"].value == 1
    assert "failed, not ranked: pbt-pendulum-earth-smoke-s0-" in md["grid"].value

    db = str(platform["catalog"].path)
    assert main(["report", db, "--out", str(platform["home"] / "rep")]) == 0
    text = capsys.readouterr().out
    assert "failed, not ranked: pbt-pendulum-earth-smoke-s0-" in text and "(finite_returns)" in text
    # roles: the catalog's meta runs are PB2 runs, and no evaluation: the report ranks pbt and taf only
    assert ranked_methods(platform["home"] / "rep") == ["pbt", "taf"]
    assert main(["report", db, "--role", "meta", "--out", str(platform["home"] / "rep_meta")]) == 0
    assert "pb2" in (platform["home"] / "rep_meta" / "rank_table.csv").read_text()


KILLED_AFTER_CATALOG_WRITE = """
import os, signal, sys
import dagster as dg
sys.path.insert(0, {tests!r})
from metapb2_core import study
from metapb2_assets import partition_runs
from metapb2_assets.definitions import build_definitions
from metapb2_assets.resources import RayResource, StudyStore

def die(*args, **kwargs):  # the step dies right after its catalog write, before publishing
    os.kill(os.getpid(), signal.SIGKILL)

partition_runs.publish_run = die
defs = build_definitions(RayResource(address={address!r}), StudyStore(root={home!r}))
dg.materialize(list(defs.assets), instance=dg.DagsterInstance.from_config({home!r}), partition_key={pk!r},
               resources=defs.resources, selection=[dg.AssetKey(["classic", "evaluation_pb2"])])
"""


def test_a_step_killed_after_its_catalog_write_is_never_ranked(platform, ray_head, capsys):
    home = str(platform["home"])
    script = KILLED_AFTER_CATALOG_WRITE.format(
        tests=os.path.dirname(__file__),
        address=ray_head,
        home=home,
        pk=str(partition_key("acrobot-earth", 0)),
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stderr[-2000:]
    runs = runs_table(platform)
    staged = runs[(runs["method"] == "pb2") & (runs["role"] == "evaluation")]
    assert staged["status"].tolist() == ["staged"]  # written, never published
    assert platform["materialise"]("method_ranks", None, {"budget": "smoke"}).success
    ranked = platform["catalog"].query("SELECT DISTINCT method FROM ranks ORDER BY method")["method"].tolist()
    assert ranked == ["pbt", "taf"]
    assert main(["report", str(platform["catalog"].path), "--out", str(platform["home"] / "rep2")]) == 0
    assert ranked_methods(platform["home"] / "rep2") == ["pbt", "taf"]
    capsys.readouterr()
